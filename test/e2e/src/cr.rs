//! `stasis dump` and `stasis restore` as the tests invoke them: CRIU's
//! flags, a verbose log in the images dir, and that log's end attached to
//! the result for assertion messages.

use std::path::Path;
use std::process::Command;

use crate::proc::Pid;
use crate::run::{stasis, stasis_bin, Output};

/// The arguments of `stasis dump -t PID -D IMAGES -o dump.log -v4 EXTRA...`.
pub fn dump_args(images: &Path, pid: Pid, extra: &[&str]) -> Vec<String> {
    let mut args = vec![
        "dump".to_string(),
        "-t".into(),
        pid.to_string(),
        "-D".into(),
    ];
    args.push(images.to_string_lossy().into_owned());
    args.extend(["-o", "dump.log", "-v4"].map(String::from));
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

/// `stasis dump -t PID -D IMAGES -o dump.log -v4 EXTRA...`.
pub fn dump(images: &Path, pid: Pid, extra: &[&str]) -> Output {
    with_log(
        stasis(dump_args(images, pid, extra)),
        &images.join("dump.log"),
    )
}

/// A `stasis dump` command, for tests that start it in the background.
pub fn dump_command(images: &Path, pid: Pid, extra: &[&str]) -> Command {
    let mut cmd = Command::new(stasis_bin());
    cmd.args(dump_args(images, pid, extra));
    cmd
}

/// The arguments of `stasis restore -D IMAGES -d -o restore.log -v4 EXTRA...`.
pub fn restore_args(images: &Path, extra: &[&str]) -> Vec<String> {
    let mut args = vec!["restore".to_string(), "-D".into()];
    args.push(images.to_string_lossy().into_owned());
    args.extend(["-d", "-o", "restore.log", "-v4"].map(String::from));
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

/// `stasis restore -D IMAGES -d -o restore.log -v4 EXTRA...`.
pub fn restore(images: &Path, extra: &[&str]) -> Output {
    with_log(
        stasis(restore_args(images, extra)),
        &images.join("restore.log"),
    )
}

/// [`restore`], with stasis started holding stdio and exactly `held` more descriptors
/// (3 up to `3 + held - 1`, on /dev/null), whatever the test process itself holds: so
/// the numbers stasis's own descriptors get are known, as under a runtime or a CI
/// runner that leaves some open.
pub fn restore_holding(images: &Path, held: usize, extra: &[&str]) -> Output {
    let script = format!(
        "for f in /proc/$$/fd/*; do n=${{f##*/}}; [ \"$n\" -gt 2 ] && eval \"exec $n>&-\"; done; \
         for ((i = 3; i < {}; i++)); do eval \"exec $i</dev/null\"; done; exec \"$@\"",
        3 + held
    );
    let mut cmd = Command::new("bash");
    cmd.arg("-c")
        .arg(script)
        .arg("bash")
        .arg(stasis_bin())
        .args(restore_args(images, extra));
    with_log(
        crate::run::run(cmd, crate::COMMAND_TIMEOUT),
        &images.join("restore.log"),
    )
}

/// Attaches the end of stasis's log file `log` to `out`'s notes.
pub fn with_log(mut out: Output, log: &Path) -> Output {
    if let Ok(text) = std::fs::read_to_string(log) {
        let lines: Vec<&str> = text.lines().collect();
        let start = lines.len().saturating_sub(40);
        out.notes = format!("end of {}:\n", log.display());
        for l in &lines[start..] {
            out.notes.push_str("  > ");
            out.notes.push_str(l);
            out.notes.push('\n');
        }
    }
    out
}
