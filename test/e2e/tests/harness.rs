//! Self-checks of the harness and of the workloads' protocols, without
//! stasis: if these fail, the e2e tests cannot be trusted either way.

use std::process::Command;
use std::time::Duration;

use stasis_e2e::counter::{filled_checksum, verify};
use stasis_e2e::images::crit_bin;
use stasis_e2e::log::{assert_ticks_continuous, pairs};
use stasis_e2e::{crit_decode_all, proc, ScratchDir, Workload, COMMAND_TIMEOUT, LINE_TIMEOUT};

#[test]
fn counter_workload_ticks_and_verifies_its_pattern_on_sigusr1() {
    let dir = ScratchDir::new("self-counter");
    let w = Workload::start("counter", &dir.join("counter.log"), &["8", "7"], dir.path());
    let filled = filled_checksum(&w);
    w.wait_ticks_after(0, 3, LINE_TIMEOUT);
    let v = verify(&w);
    assert_eq!(v.checksum, filled, "checksum of verify vs fill");
    assert_eq!(
        v.rseq, "busy",
        "glibc 2.35+ registers rseq; the probe must see it"
    );
    assert_ticks_continuous(&w.lines());
}

#[test]
fn fileio_workload_writes_contiguous_records_and_keeps_its_private_mapping_change() {
    let dir = ScratchDir::new("self-fileio");
    let map: Vec<u8> = (0..16384u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(dir.join("map.bin"), &map).unwrap();
    std::fs::write(dir.join("shared.bin"), vec![0u8; 4096]).unwrap();
    let args = [
        dir.join("data.bin"),
        dir.join("map.bin"),
        dir.join("shared.bin"),
    ];
    let w = Workload::start("fileio", &dir.join("fileio.log"), &args, dir.path());
    w.wait_ticks_after(0, 5, LINE_TIMEOUT);
    let lines = w.lines();
    assert!(lines.iter().all(|l| !l.contains("FAIL")), "{lines:?}");
    for l in lines.iter().filter(|l| l.starts_with("tick ")) {
        let kv = pairs(l);
        let n: u64 = kv["tick"].parse().unwrap();
        assert_eq!(kv["off"], ((n + 1) * 13).to_string(), "{l}");
        assert_eq!(kv["map"], "ok", "{l}");
        assert_eq!(
            (kv["dup"].as_str(), kv["read"].as_str()),
            ("ok", "ok"),
            "{l}"
        );
    }
    assert_eq!(
        std::fs::read(dir.join("map.bin")).unwrap(),
        map,
        "private mapping wrote through"
    );
    let shared = std::fs::read(dir.join("shared.bin")).unwrap();
    assert!(
        shared.starts_with(b"shared "),
        "{:?}",
        String::from_utf8_lossy(&shared[..32])
    );
    let data = std::fs::read_to_string(dir.join("data.bin")).unwrap();
    assert!(data.starts_with("rec 00000000\nrec 00000001\n"), "{data:?}");
}

#[test]
fn signals_workload_reports_pending_blocked_usr2_and_delivers_it_once_unblocked() {
    let dir = ScratchDir::new("self-signals");
    let log = dir.join("signals.log");
    let w = Workload::start("signals", &log, &[] as &[&str], dir.path());
    w.wait_ticks_after(0, 2, LINE_TIMEOUT);
    let n = w.lines().len();
    w.signal(libc::SIGUSR2);
    w.signal(libc::SIGUSR1);
    w.signal(libc::SIGHUP);
    w.wait_line_after(n, "usr1 1 onstack 1 siginfo 1", LINE_TIMEOUT);
    let (_, tick) = w.wait_line_after(n, "tick ", LINE_TIMEOUT);
    let kv = pairs(&tick);
    assert_eq!(
        (kv["pending_usr2"].as_str(), kv["blocked_usr2"].as_str()),
        ("1", "1"),
        "{tick}"
    );
    assert_eq!(
        (
            kv["umask"].as_str(),
            kv["nofile_soft"].as_str(),
            kv["altstack"].as_str()
        ),
        ("027", "200", "1")
    );
    std::fs::write(format!("{}.unblock", log.display()), "").unwrap();
    let me = std::process::id();
    w.wait_line_after(n, &format!("usr2 1 from {me}"), LINE_TIMEOUT);
    std::thread::sleep(Duration::from_millis(200));
    let lines = w.lines();
    assert_eq!(
        lines.iter().filter(|l| l.starts_with("usr2 ")).count(),
        1,
        "{lines:?}"
    );
    let last = pairs(lines.iter().rev().find(|l| l.starts_with("tick ")).unwrap());
    assert!(
        last["alarms"].parse::<u32>().unwrap() >= 5,
        "itimer not counting: {last:?}"
    );
    assert!(
        w.is_alive(),
        "SIGHUP is ignored, the workload must survive it"
    );
}

#[test]
fn avx512_workload_ticks_and_its_checker_catches_a_corrupted_register() {
    let dir = ScratchDir::new("self-avx512");
    let good = Workload::start("avx512", &dir.join("good.log"), &[] as &[&str], dir.path());
    let bad = Workload::start("avx512", &dir.join("bad.log"), &["5"], dir.path());
    good.wait_ticks_after(0, 10, LINE_TIMEOUT);
    bad.wait_for("FAIL reg zmm31", LINE_TIMEOUT, |l| {
        l.iter().any(|l| l == "FAIL reg zmm31").then_some(())
    });
    assert!(
        good.lines().iter().all(|l| !l.contains("FAIL")),
        "{:?}",
        good.lines()
    );
    assert_eq!(assert_ticks_continuous(&bad.lines()), 5);
}

#[test]
fn guard_kills_and_reaps_the_workload_when_dropped() {
    let dir = ScratchDir::new("self-guard");
    let pid = {
        let w = Workload::start("counter", &dir.join("c.log"), &["1", "1"], dir.path());
        assert!(w.is_alive());
        w.pid()
    };
    assert!(
        proc::stat(pid).is_none(),
        "pid {pid} still exists after its guard was dropped"
    );
}

#[test]
fn crit_decode_all_reads_every_image_and_skips_pages() {
    let dir = ScratchDir::new("self-crit");
    let json = dir.join("pstree.json");
    std::fs::write(
        &json,
        r#"{"magic":"PSTREE","entries":[{"pid":42,"ppid":0,"pgid":42,"sid":42,"threads":[42]}]}"#,
    )
    .unwrap();
    let mut cmd = Command::new(crit_bin());
    cmd.args(["encode", "-i"])
        .arg(&json)
        .arg("-o")
        .arg(dir.join("pstree.img"));
    stasis_e2e::run::run(cmd, COMMAND_TIMEOUT).assert_success();
    std::fs::write(dir.join("pages-1.img"), vec![0u8; 4096]).unwrap();
    let set = crit_decode_all(dir.path());
    assert_eq!(set.images.keys().collect::<Vec<_>>(), ["pstree.img"]);
    assert_eq!(set.pstree(), [(42, 0, 42, 42)]);
}
