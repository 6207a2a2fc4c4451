//! The CLI outside checkpoint/restore proper: `check`, `--version`, and a
//! dump of a pid that does not exist.

use stasis_e2e::{dump, proc, stasis, ScratchDir};

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
