//! A time namespace across a checkpoint: a process in a time namespace whose clocks
//! run 100000 s (monotonic) and 200000 s (boot time) ahead of the host's is dumped,
//! left dead for a second, and restored: its CLOCK_MONOTONIC and CLOCK_BOOTTIME go on
//! from their values at the dump (as CRIU's timens image asks), never backwards, and
//! the offsets it sees are still far from the host's.

use std::time::{Duration, Instant};

use stasis_e2e::{dump, proc, restore, LogFile, ScratchDir, LINE_TIMEOUT};

fn ticks(lines: &[String]) -> Vec<(u64, i64, i64)> {
    lines
        .iter()
        .filter_map(|l| {
            let w: Vec<&str> = l.split(' ').collect();
            (w.len() == 4 && w[0] == "tick")
                .then(|| Some((w[1].parse().ok()?, w[2].parse().ok()?, w[3].parse().ok()?)))
                .flatten()
        })
        .collect()
}

/// The host's CLOCK_BOOTTIME, from /proc/uptime, in nanoseconds.
fn host_boottime() -> i64 {
    let text = std::fs::read_to_string("/proc/uptime").expect("/proc/uptime");
    let up: f64 = text
        .split_whitespace()
        .next()
        .and_then(|v| v.parse().ok())
        .expect("uptime");
    (up * 1e9) as i64
}

#[test]
fn clocks_of_a_time_namespace_continue_from_their_dumped_values() {
    let dir = ScratchDir::new("timens");
    let images = dir.subdir("images");
    proc::become_subreaper();
    let log = LogFile::new(dir.join("timens.log"));
    let mut launcher = std::process::Command::new("unshare")
        .args([
            "--time",
            "--monotonic",
            "100000",
            "--boottime",
            "200000",
            "--fork",
            "--",
        ])
        .arg(stasis_e2e::workload_bin("timens"))
        .arg(log.path())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("unshare (util-linux)");
    let pid: i32 = log.wait_for("start", LINE_TIMEOUT, |lines| {
        lines
            .iter()
            .find_map(|l| l.strip_prefix("start pid ").and_then(|p| p.parse().ok()))
    });
    let _guard = stasis_e2e::ProcessGuard::new(pid, "timens");
    log.wait_for("ticks", LINE_TIMEOUT, |lines| {
        (ticks(lines).len() >= 5).then_some(())
    });
    let boot_host = host_boottime();
    let first = ticks(&log.lines())[0];
    assert!(
        first.2 - boot_host > 199_000 * 1_000_000_000,
        "the namespace's boot time runs 200000 s ahead: {} vs host {boot_host}",
        first.2
    );

    dump(&images, pid, &[]).assert_success();
    proc::wait_gone(pid, LINE_TIMEOUT).expect("the dumped process is gone");
    let _ = launcher.wait();
    let at_dump = ticks(&log.lines());
    let last = *at_dump.last().unwrap();
    assert!(
        std::fs::read_dir(&images).unwrap().any(|e| e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .starts_with("timens-")),
        "the time namespace is in the image"
    );
    // The process is dead for a while: its clocks must not show it.
    std::thread::sleep(Duration::from_secs(1));

    let t0 = Instant::now();
    restore(&images, &[]).assert_success();
    log.wait_for("ticks after restore", LINE_TIMEOUT, |lines| {
        (ticks(lines).len() >= at_dump.len() + 5).then_some(())
    });
    let after = ticks(&log.lines());
    let next = after[at_dump.len()];
    assert_eq!(next.0, last.0 + 1, "the counter continues");
    let gap_mono = next.1 - last.1;
    let gap_boot = next.2 - last.2;
    let bound = (t0.elapsed().as_nanos() as i64) + 200_000_000;
    assert!(
        (0..bound).contains(&gap_mono) && (0..bound).contains(&gap_boot),
        "the clocks go on from the dump, not from the host's time: +{gap_mono} ns monotonic, +{gap_boot} ns boot time (dead for over 1 s)"
    );
    assert!(
        log.lines().iter().all(|l| !l.starts_with("clock FAIL")),
        "no clock went backwards"
    );
    let timens = std::fs::read_link(format!("/proc/{pid}/ns/time")).unwrap();
    let mine = std::fs::read_link("/proc/self/ns/time").unwrap();
    assert_ne!(
        timens, mine,
        "the restored process has its own time namespace"
    );
}
