//! The CLI outside checkpoint/restore proper: `check`, `--version`, and dump
//! failures that must leave the target alone.

use stasis_e2e::log::assert_ticks_continuous;
use stasis_e2e::{dump, proc, stasis, ScratchDir, Workload, LINE_TIMEOUT};

#[test]
fn check_says_looks_good() {
    let out = stasis(["check"]);
    out.assert_success();
    assert!(
        out.stdout.contains("Looks good."),
        "`stasis check` should print \"Looks good.\":\n{out}"
    );
}

#[test]
fn version_prints_a_version_and_exits_zero() {
    let out = stasis(["--version"]);
    out.assert_success();
    assert!(
        out.stdout.chars().any(|c| c.is_ascii_digit()),
        "no version number printed:\n{out}"
    );
}

#[test]
fn dump_of_a_pid_that_does_not_exist_fails_and_names_the_pid() {
    let dir = ScratchDir::new("dump-nopid");
    // A pid that just existed and was reaped: free, and unlikely to be reused this instant.
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let pid = child.id() as proc::Pid;
    child.wait().unwrap();
    assert!(proc::stat(pid).is_none(), "pid {pid} was reused already");
    let out = dump(&dir.subdir("images"), pid, &[]);
    out.assert_clean_failure();
    let named = out
        .stderr
        .split(|c: char| !c.is_ascii_digit())
        .any(|w| w == pid.to_string());
    assert!(named, "stderr should name pid {pid}:\n{out}");
}

#[test]
fn failed_dump_leaves_the_process_running_untouched() {
    let dir = ScratchDir::new("dump-fails");
    let w = Workload::start("counter", &dir.join("counter.log"), &["4", "8"], dir.path());
    w.wait_ticks_after(0, 3, LINE_TIMEOUT);
    // The images dir cannot exist: its parent is a regular file.
    std::fs::write(dir.join("not-a-dir"), "").unwrap();
    let start = proc::stat(w.pid()).unwrap().start_time;
    let out = dump(&dir.join("not-a-dir/images"), w.pid(), &[]);
    out.assert_clean_failure();
    assert!(
        w.is_alive(),
        "the dump failed, yet the process {}",
        w.how_it_ended()
    );
    assert_eq!(
        proc::stat(w.pid()).unwrap().start_time,
        start,
        "pid {} is not the original any more",
        w.pid()
    );
    let n = w.lines().len();
    w.wait_ticks_after(n, 5, LINE_TIMEOUT);
    assert_ticks_continuous(&w.lines());
    let st = proc::stat(w.pid()).unwrap();
    assert!(
        st.state == 'S' || st.state == 'R',
        "process left in state {} (traced or stopped?)",
        st.state
    );
}
