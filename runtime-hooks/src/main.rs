//! `stasis-runc`: runc's command line; checkpoint and restore through the stasis engine.
#![forbid(unsafe_code)]

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use stasis_runc::args::Invocation;
use stasis_runc::{checkpoint, locate, restore, Error};

fn main() -> ExitCode {
    let inv = Invocation::parse(std::env::args_os().skip(1).collect());
    match run(&inv) {
        Ok(code) => code,
        Err(e) => {
            report(&inv, &e.to_string());
            ExitCode::from(1)
        }
    }
}

fn run(inv: &Invocation) -> Result<ExitCode, Error> {
    let myself = std::env::current_exe().ok();
    let path = Some(locate::effective_path(std::env::var_os("PATH")));
    let runc = locate::runc(
        std::env::var_os(locate::RUNC_ENV).as_deref(),
        path.as_deref(),
        myself.as_deref(),
    )?;
    let verb_args = match inv.verb.as_deref() {
        Some("checkpoint") => Some(checkpoint::runc_args(inv.verb_args())),
        Some("restore") => Some(restore::runc_args(inv.verb_args())),
        _ => None,
    };
    let Some(verb_args) = verb_args else {
        if inv.verb.is_none() && inv.globals.has("version") {
            return Ok(version(&runc, myself.as_deref()));
        }
        // Every other verb, and anything runc will reject: runc, argv unchanged.
        return Err(exec(Command::new(&runc).args(&inv.argv), &runc));
    };
    if let Some(flag) = &inv.globals.missing_value {
        return Err(Error::MissingValue { flag: flag.clone() });
    }
    let stasis = locate::stasis(
        std::env::var_os(locate::STASIS_ENV).as_deref(),
        path.as_deref(),
        myself.as_deref(),
    )?;
    let mut cmd = Command::new(&runc);
    cmd.arg("--criu")
        .arg(&stasis)
        .args(inv.globals_without_criu())
        .arg(inv.verb.as_deref().unwrap_or_default())
        .args(verb_args);
    Err(exec(&mut cmd, &runc))
}

/// Replaces this process with `cmd` (runc must be the caller's own child: the restored
/// init is created as a sibling of the engine, i.e. a child of runc, and runc waits for
/// it). Returns only on failure.
fn exec(cmd: &mut Command, path: &Path) -> Error {
    Error::Exec {
        path: path.to_path_buf(),
        source: cmd.exec(),
    }
}

/// `--version`: runc's own lines first (docker parses "runc version" and "commit:"), then
/// which engine checkpoint and restore use.
fn version(runc: &Path, myself: Option<&Path>) -> ExitCode {
    let status = Command::new(runc).arg("--version").status();
    println!("stasis-runc {}", env!("CARGO_PKG_VERSION"));
    let path = Some(locate::effective_path(std::env::var_os("PATH")));
    match locate::stasis(
        std::env::var_os(locate::STASIS_ENV).as_deref(),
        path.as_deref(),
        myself,
    ) {
        Ok(p) => println!("checkpoint/restore engine: {}", p.display()),
        Err(e) => println!("checkpoint/restore engine: none ({e})"),
    }
    match status {
        Ok(s) if s.success() => ExitCode::SUCCESS,
        _ => ExitCode::from(1),
    }
}

/// An error as runc reports one: a logrus line on stderr and, with `--log`, in the log file
/// in its format (containerd's shim reads the last `msg` of `log.json`).
fn report(inv: &Invocation, msg: &str) {
    eprintln!("stasis-runc: {msg}");
    let Some(log) = inv.log_file() else { return };
    let line = if inv.log_json() {
        serde_json::json!({ "level": "error", "msg": msg }).to_string()
    } else {
        format!("level=error msg={}", serde_json::Value::from(msg))
    };
    append(&log, &line);
}

fn append(path: &PathBuf, line: &str) {
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    {
        let _ = writeln!(f, "{line}");
    }
}
