//! A stopped process (SIGSTOP, as a shell's Ctrl-Z or a debugger leaves it) is dumped
//! and comes back stopped: state T, not a single tick until it gets SIGCONT, and then
//! it continues from its last tick with its memory intact.

use std::time::Duration;

use stasis_e2e::counter::{filled_checksum, verify};
use stasis_e2e::log::{assert_ticks_continuous, ticks};
use stasis_e2e::{dump, proc, restore, ScratchDir, Workload, LINE_TIMEOUT};

fn state(pid: i32) -> char {
    proc::stat(pid).expect("the process exists").state
}

fn wait_state(pid: i32, want: char) {
    let until = std::time::Instant::now() + Duration::from_secs(10);
    while state(pid) != want {
        assert!(
            std::time::Instant::now() < until,
            "pid {pid} never reached state {want}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn a_stopped_process_comes_back_stopped_and_continues_on_sigcont() {
    let dir = ScratchDir::new("stopped");
    let images = dir.subdir("images");
    let w = Workload::start(
        "counter",
        &dir.join("counter.log"),
        &["4", "11"],
        dir.path(),
    );
    let pid = w.pid();
    let sum = filled_checksum(&w);
    w.wait_ticks_after(0, 3, LINE_TIMEOUT);
    proc::signal(pid, libc::SIGSTOP).unwrap();
    wait_state(pid, 'T');
    let stopped_at = w.lines().len();

    dump(&images, pid, &[]).assert_success();
    w.assert_gone(Duration::from_secs(10));
    let at_dump = w.lines();
    assert_eq!(
        at_dump.len(),
        stopped_at,
        "no tick while stopped and dumped"
    );

    restore(&images, &[]).assert_success();
    wait_state(pid, 'T');
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(state(pid), 'T', "still stopped after restore");
    assert_eq!(w.lines().len(), at_dump.len(), "not a tick while stopped");

    proc::signal(pid, libc::SIGCONT).unwrap();
    let last = assert_ticks_continuous(&at_dump);
    w.wait_ticks_after(at_dump.len(), 3, LINE_TIMEOUT);
    let lines = w.lines();
    assert_eq!(
        ticks(&lines[at_dump.len()..]).first().map(|t| t.1),
        Some(last + 1),
        "the first tick after SIGCONT follows the last one before the stop"
    );
    assert_eq!(verify(&w).checksum, sum, "memory after restore");
}
