//! Unix sockets continue across a checkpoint: messages queued in stream,
//! datagram and seqpacket socketpairs, in an accepted connection, and in
//! datagram sockets bound to a path and to an abstract name are received
//! after the restore exactly once, in order and with their boundaries; a
//! connection still waiting in the listener's queue is accepted after the
//! restore; a shut-down and a peer-closed stream deliver their last bytes
//! and then end-of-file; the accepted socket keeps its name.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;
use stasis_e2e::log::{assert_no_fail, assert_ticks_continuous, pairs, ticks};
use stasis_e2e::proc::{fd_flags, fd_targets, flag_change};
use stasis_e2e::{crit_decode_all, dump, restore, ScratchDir, Workload, LINE_TIMEOUT};

const LAG: usize = 5;

#[test]
fn queued_unix_socket_messages_are_received_after_restore_exactly_once_in_order() {
    let dir = ScratchDir::new("unixsk");
    let images = dir.subdir("images");
    let w = Workload::start("unixsk", &dir.join("unixsk.log"), &[dir.path()], dir.path());
    let pid = w.pid();
    w.wait_ticks_after(0, 2 * LAG, LINE_TIMEOUT);
    let flags = fd_flags(pid);
    let targets = fd_targets(pid);

    dump(&images, pid, &[]).assert_success();
    w.assert_gone(Duration::from_secs(10));
    let at_dump = w.lines();
    let last_before = assert_ticks_continuous(&at_dump);
    assert_no_fail(&at_dump);

    let set = crit_decode_all(&images);
    let sockets: Vec<&Value> = set
        .entries("files.img")
        .iter()
        .filter(|e| e.get("type").and_then(Value::as_str) == Some("UNIXSK"))
        .collect();
    // 3 pairs, listener + client + accepted + pending client, bound server +
    // connected client + sendto client, abstract server + client, the shutdown
    // pair and the orphan (its peer is closed).
    assert_eq!(sockets.len(), 18, "unix sockets in files.img");
    let listen_path = format!("{}/listen.sock", dir.path().display());
    let named: Vec<String> = sockets
        .iter()
        .filter_map(|s| s.pointer("/usk/name").and_then(Value::as_str))
        // crit shows the kernel's terminating NUL of a path name as "=00".
        .map(|n| n.trim_end_matches("=00").to_string())
        .collect();
    assert!(
        named.iter().filter(|n| **n == listen_path).count() == 2,
        "the listener and the accepted socket are named {listen_path}: {named:?}"
    );
    let mut queued: BTreeMap<u64, usize> = BTreeMap::new();
    for e in set.entries("sk-queues.img") {
        *queued.entry(e["id_for"].as_u64().unwrap()).or_default() += 1;
    }
    // Six datagram receivers hold LAG (or LAG + 1) messages each.
    let dgram_queues = queued
        .values()
        .filter(|&&n| n == LAG || n == LAG + 1)
        .count();
    assert!(dgram_queues >= 6, "sk-queues.img per socket: {queued:?}");

    restore(&images, &[]).assert_success();
    assert!(w.is_alive(), "restored process {pid} {}", w.how_it_ended());
    w.wait_ticks_after(at_dump.len(), 2 * LAG, LINE_TIMEOUT);
    let lines = w.lines();
    assert_no_fail(&lines);
    assert_ticks_continuous(&lines);
    assert_eq!(
        ticks(&lines[at_dump.len()..])[0].1,
        last_before + 1,
        "first tick after restore"
    );

    let now = fd_flags(pid);
    for (fd, before) in &flags {
        let after = now
            .get(fd)
            .unwrap_or_else(|| panic!("fd {fd} ({}) is gone", targets[fd]));
        assert_eq!(
            after,
            before,
            "fd {fd} flags: {}",
            flag_change(before, after)
        );
    }
    assert!(
        std::fs::metadata(&listen_path).is_ok(),
        "the listener's socket file {listen_path} is there again"
    );

    let n = w.lines().len();
    w.signal(libc::SIGUSR1);
    let (_, line) = w.wait_line_after(n, "usr1 ", LINE_TIMEOUT);
    let kv = pairs(line.trim_start_matches("usr1 "));
    for k in ["pending", "shutdown", "orphan", "names"] {
        assert_eq!(kv[k], "ok", "{k} after restore: {line}");
    }
}
