//! `stasis dump` and `stasis restore` as the tests invoke them: CRIU's
//! flags, a verbose log in the images dir, and that log's end attached to
//! the result for assertion messages.

use std::path::Path;

use crate::proc::Pid;
use crate::run::{stasis, Output};

/// `stasis dump -t PID -D IMAGES -o dump.log -v4 EXTRA...`.
pub fn dump(images: &Path, pid: Pid, extra: &[&str]) -> Output {
    let mut args = vec![
        "dump".to_string(),
        "-t".into(),
        pid.to_string(),
        "-D".into(),
    ];
    args.push(images.to_string_lossy().into_owned());
    args.extend(["-o", "dump.log", "-v4"].map(String::from));
    args.extend(extra.iter().map(|s| s.to_string()));
    with_log(stasis(&args), &images.join("dump.log"))
}

/// `stasis restore -D IMAGES -d -o restore.log -v4 EXTRA...`.
pub fn restore(images: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["restore".to_string(), "-D".into()];
    args.push(images.to_string_lossy().into_owned());
    args.extend(["-d", "-o", "restore.log", "-v4"].map(String::from));
    args.extend(extra.iter().map(|s| s.to_string()));
    with_log(stasis(&args), &images.join("restore.log"))
}

fn with_log(mut out: Output, log: &Path) -> Output {
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
