//! TCP connections survive a checkpoint of either end (`--tcp-established`), on
//! 127.0.0.1, with the test itself as the other end: it sends N, the workload answers
//! N + 1 and the next number must be N + 2, so a byte lost, repeated or reordered across
//! the restore breaks the sequence at once. The peer's socket is never touched: the
//! connection it holds is the one the restored process continues.
//!
//! - the client side: the dump without `--tcp-established` is refused naming the fd and
//!   the connection and harms nothing; with it, the images decode with crit (an INETSK
//!   per socket, `tcp-stream-<ino>.img`), the restored client goes on counting, its own
//!   listener keeps its port and answers, its UDP pair still delivers;
//! - the server side: a listener and the connection accepted from it, restored on the
//!   same port; a new client is accepted beside the restored connection;
//! - the lock of single connections: a client that never stops sending to a server on
//!   the host's own network is not reset while the server is dumped (its segments are
//!   dropped by the connection's nftables lock, not answered by a port that no socket
//!   holds), and its stream goes on exactly after the restore, which unlocks.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use serde_json::Value;
use stasis_e2e::log::{assert_no_fail, assert_ticks_continuous, pairs};
use stasis_e2e::netpeer::{lock_tables_with, HostStream};
use stasis_e2e::proc::wait_gone;
use stasis_e2e::{crit_decode_all, dump, restore, ScratchDir, Workload, LINE_TIMEOUT};

/// The test's end of the counter protocol, on its own thread.
struct Peer {
    stop: Arc<AtomicBool>,
    rounds: Arc<AtomicU64>,
    thread: JoinHandle<Result<u64, String>>,
}

impl Peer {
    fn start(mut s: TcpStream) -> Peer {
        // Long enough for a dump and a restore between two answers.
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        s.set_nodelay(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let rounds = Arc::new(AtomicU64::new(0));
        let (stop2, rounds2) = (stop.clone(), rounds.clone());
        let thread = std::thread::spawn(move || {
            let mut n: u64 = 1000;
            while !stop2.load(Ordering::SeqCst) {
                s.write_all(&n.to_le_bytes())
                    .map_err(|e| format!("sending {n}: {e}"))?;
                let mut b = [0u8; 8];
                s.read_exact(&mut b)
                    .map_err(|e| format!("waiting for {}: {e}", n + 1))?;
                let got = u64::from_le_bytes(b);
                if got != n + 1 {
                    return Err(format!("sent {n}, got {got} back"));
                }
                n += 2;
                rounds2.fetch_add(1, Ordering::SeqCst);
            }
            Ok(rounds2.load(Ordering::SeqCst))
        });
        Peer {
            stop,
            rounds,
            thread,
        }
    }

    fn rounds(&self) -> u64 {
        self.rounds.load(Ordering::SeqCst)
    }

    /// Stops after the current round; the error if the connection broke.
    fn finish(self) -> u64 {
        self.stop.store(true, Ordering::SeqCst);
        match self.thread.join().expect("peer thread panicked") {
            Ok(n) => n,
            Err(e) => panic!("the test's end of the connection failed: {e}"),
        }
    }
}

/// The value of `word <value>` in the first log line starting with `word`.
fn logged(w: &Workload, word: &str) -> String {
    let (_, line) = w.wait_line_after(0, &format!("{word} "), LINE_TIMEOUT);
    line.split_whitespace().nth(1).unwrap().to_string()
}

/// A new connection to the workload's listener is answered with "hello".
fn assert_listener_answers(port: &str) {
    let mut s = TcpStream::connect(format!("127.0.0.1:{port}"))
        .unwrap_or_else(|e| panic!("connect to the restored listener on port {port}: {e}"));
    s.set_read_timeout(Some(LINE_TIMEOUT)).unwrap();
    let mut buf = String::new();
    s.read_to_string(&mut buf).unwrap();
    assert_eq!(buf, "hello", "the listener on port {port} answered");
}

fn inet_sockets(images: &std::path::Path) -> Vec<Value> {
    let set = crit_decode_all(images);
    let socks: Vec<Value> = set
        .entries("files.img")
        .iter()
        .filter(|e| e.get("type").and_then(Value::as_str) == Some("INETSK"))
        .cloned()
        .collect();
    for s in &socks {
        if s.pointer("/isk/state").and_then(Value::as_u64) == Some(1)
            && s.pointer("/isk/proto").and_then(Value::as_u64) == Some(6)
        {
            let ino = s.pointer("/isk/ino").and_then(Value::as_u64).unwrap();
            let name = format!("tcp-stream-{ino:x}.img");
            assert_eq!(set.magic(&name), Some("TCP_STREAM"), "{name}");
            let e = &set.entries(&name)[0];
            assert!(e["inq_seq"].as_u64().is_some(), "{name}: {e}");
        }
    }
    socks
}

fn states(socks: &[Value]) -> Vec<String> {
    let mut v: Vec<String> = socks
        .iter()
        .map(|s| {
            let proto = match s.pointer("/isk/proto").and_then(Value::as_u64) {
                Some(6) => "tcp",
                Some(17) => "udp",
                _ => "?",
            };
            let st = match s.pointer("/isk/state").and_then(Value::as_u64) {
                Some(1) => "ESTABLISHED",
                Some(7) => "CLOSE",
                Some(10) => "LISTEN",
                _ => "?",
            };
            format!("{proto} {st}")
        })
        .collect();
    v.sort();
    v
}

/// Dumps, checks the images, restores, and proves the counter went on.
fn checkpoint_and_continue(w: &Workload, images: &std::path::Path, peer: &Peer) {
    let pid = w.pid();
    dump(images, pid, &["--tcp-established"]).assert_success();
    w.assert_gone(Duration::from_secs(10));
    let at_dump = w.lines();
    assert_no_fail(&at_dump);
    let rounds_at_dump = peer.rounds();

    let socks = inet_sockets(images);
    assert_eq!(
        states(&socks),
        [
            "tcp ESTABLISHED",
            "tcp LISTEN",
            "udp CLOSE",
            "udp ESTABLISHED"
        ],
        "inet sockets in files.img: {socks:?}"
    );
    // Nothing moves while the process is gone; the peer is blocked, not reset.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(peer.rounds(), rounds_at_dump, "rounds while dumped");
    assert!(!peer.thread.is_finished(), "the peer's connection broke");

    restore(images, &["--tcp-established"]).assert_success();
    assert!(w.is_alive(), "restored process {pid} {}", w.how_it_ended());
    w.wait_ticks_after(at_dump.len(), 20, LINE_TIMEOUT);
    let lines = w.lines();
    assert_no_fail(&lines);
    assert_ticks_continuous(&lines);
    // The peer's own count may trail the workload's log by a round: give it time.
    let deadline = std::time::Instant::now() + LINE_TIMEOUT;
    while peer.rounds() < rounds_at_dump + 20 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(
        peer.rounds() >= rounds_at_dump + 20,
        "the peer completed {} rounds after the restore, not 20",
        peer.rounds() - rounds_at_dump
    );
}

#[test]
fn a_tcp_client_keeps_its_connection_across_checkpoint_and_restore() {
    let dir = ScratchDir::new("tcp-client");
    let images = dir.subdir("images");
    let server = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = server.local_addr().unwrap().port().to_string();
    let w = Workload::start(
        "tcppeer",
        &dir.join("tcppeer.log"),
        &["client", &port],
        dir.path(),
    );
    let (conn, client_addr) = server.accept().unwrap();
    let peer = Peer::start(conn);
    w.wait_ticks_after(0, 5, LINE_TIMEOUT);

    let refused = dump(&images, w.pid(), &[]);
    refused.assert_clean_failure();
    let tuple = format!("{client_addr} -> 127.0.0.1:{port}");
    assert!(
        refused.stderr.contains("--tcp-established") && refused.stderr.contains(&tuple),
        "the refusal names the connection {tuple} and the option:\n{refused}"
    );
    assert!(refused.stderr.contains("fd "), "names the fd:\n{refused}");
    let n = w.lines().len();
    w.wait_ticks_after(n, 5, LINE_TIMEOUT);

    checkpoint_and_continue(&w, &images, &peer);

    let n = w.lines().len();
    w.signal(libc::SIGUSR1);
    let (_, line) = w.wait_line_after(n, "usr1 ", LINE_TIMEOUT);
    let kv = pairs(line.trim_start_matches("usr1 "));
    for k in ["udp", "listen"] {
        assert_eq!(kv[k], "ok", "{k} after restore: {line}");
    }
    assert_listener_answers(&logged(&w, "listen"));
    let rounds = peer.finish();
    assert!(rounds > 30, "{rounds} rounds");
}

#[test]
fn a_tcp_server_keeps_its_listener_and_accepted_connection_across_restore() {
    let dir = ScratchDir::new("tcp-server");
    let images = dir.subdir("images");
    let w = Workload::start("tcppeer", &dir.join("tcppeer.log"), &["server"], dir.path());
    let port = logged(&w, "listen");
    let conn = TcpStream::connect(format!("127.0.0.1:{port}")).unwrap();
    let peer = Peer::start(conn);
    w.wait_ticks_after(0, 5, LINE_TIMEOUT);

    checkpoint_and_continue(&w, &images, &peer);

    // The listener is back on its port, beside the connection accepted from it.
    assert_listener_answers(&port);
    let n = w.lines().len();
    w.wait_ticks_after(n, 3, LINE_TIMEOUT);
    let rounds = peer.finish();
    assert!(rounds >= 28, "{rounds} rounds");
}

#[test]
fn a_streaming_client_is_not_reset_while_its_server_on_the_hosts_network_is_dumped() {
    let h = HostStream::start("tcp-host-stream");
    let images = h.dir.subdir("images");
    dump(&images, h.pid, &["--tcp-established"]).assert_success();
    wait_gone(h.pid, Duration::from_secs(10)).unwrap();
    // The connection alone is locked, both ways, in a table of the dump's.
    let (there, back) = h.tuples();
    let tables = lock_tables_with(&there);
    assert_eq!(tables.len(), 1, "one lock table holds {there}: {tables:?}");
    assert!(
        tables[0].1.contains(&back),
        "{back} is locked:\n{}",
        tables[0].1
    );
    assert!(
        tables[0].1.contains("policy accept"),
        "only the connection is locked:\n{}",
        tables[0].1
    );
    // The client goes on sending into the port no socket holds: nothing resets it.
    std::thread::sleep(Duration::from_millis(1500));
    h.client.assert_ok();

    restore(&images, &["--tcp-established"]).assert_success();
    assert!(
        lock_tables_with(&there).is_empty(),
        "the restore removed the lock of {there}"
    );
    h.finish();
}

#[test]
fn a_server_dumped_with_leave_running_is_unlocked_and_streams_on() {
    let h = HostStream::start("tcp-host-leave");
    let images = h.dir.subdir("images");
    dump(&images, h.pid, &["--tcp-established", "--leave-running"]).assert_success();
    assert!(
        stasis_e2e::proc::is_alive(h.pid),
        "the server {} runs on after the dump",
        h.pid
    );
    let (there, _) = h.tuples();
    assert!(
        lock_tables_with(&there).is_empty(),
        "a dump that leaves the server running leaves its connection unlocked: {:?}",
        lock_tables_with(&there)
    );
    h.client.assert_ok();
    h.finish();
}
