//! Running `stasis-runc` command lines.
//!
//! The Task service decides *what* to run (every argument, including runc's global flags);
//! a [`Runtime`] only runs it. The real one spawns `stasis-runc`, which the crate's reaper
//! reaps, so its exit comes through [`Exits`] rather than `Child::wait`.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;

use crate::exits::Exits;
use crate::ShimError;

/// The stdio a container process gets; `None` is /dev/null.
#[derive(Default)]
pub struct ChildStdio {
    pub stdin: Option<OwnedFd>,
    pub stdout: Option<OwnedFd>,
    pub stderr: Option<OwnedFd>,
}

/// A finished runtime command that failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunFailure {
    /// Exit status (128+signal when killed).
    pub status: i32,
    /// What it wrote to stderr (empty when its stderr was the container's).
    pub stderr: String,
}

/// Runs runtime command lines.
pub trait Runtime: Send + Sync {
    /// The runtime binary, for messages.
    fn name(&self) -> String;
    /// Runs the runtime with `args` to completion and returns its stdout. With `stdio`, the
    /// runtime's stdio is the container process's (runc passes it on); without, stdout and
    /// stderr are captured.
    fn run(&self, args: &[String], stdio: Option<ChildStdio>) -> Result<Vec<u8>, RunFailure>;
}

/// `stasis-runc`, found beside the shim binary (or named by `$STASIS_RUNTIME`, else PATH).
pub struct StasisRunc {
    pub binary: PathBuf,
    exits: Arc<Exits>,
}

/// Environment variable naming the runtime binary the shim runs.
pub const RUNTIME_ENV: &str = "STASIS_RUNTIME";

impl StasisRunc {
    pub fn new(binary: PathBuf, exits: Arc<Exits>) -> StasisRunc {
        StasisRunc { binary, exits }
    }

    /// `$STASIS_RUNTIME`, else `stasis-runc` next to this executable, else `stasis-runc`
    /// from PATH.
    pub fn locate() -> PathBuf {
        if let Some(p) = std::env::var_os(RUNTIME_ENV).filter(|p| !p.is_empty()) {
            return PathBuf::from(p);
        }
        let beside = std::env::current_exe()
            .ok()
            .and_then(|e| e.parent().map(|d| d.join("stasis-runc")));
        match beside {
            Some(b) if b.is_file() => b,
            _ => PathBuf::from("stasis-runc"),
        }
    }
}

fn read_all(mut f: File) -> Vec<u8> {
    let mut out = Vec::new();
    let _ = f.seek(SeekFrom::Start(0));
    let _ = f.read_to_end(&mut out);
    out
}

fn capture_file() -> Result<File, RunFailure> {
    tempfile::tempfile().map_err(|e| RunFailure {
        status: -1,
        stderr: format!("create a capture file: {e}"),
    })
}

impl Runtime for StasisRunc {
    fn name(&self) -> String {
        self.binary.display().to_string()
    }

    fn run(&self, args: &[String], stdio: Option<ChildStdio>) -> Result<Vec<u8>, RunFailure> {
        let out = capture_file()?;
        let err = capture_file()?;
        let mut cmd = Command::new(&self.binary);
        cmd.args(args);
        let clone = |f: &File| {
            f.try_clone()
                .map(Stdio::from)
                .unwrap_or_else(|_| Stdio::null())
        };
        match stdio {
            Some(s) => {
                let to = |fd: Option<OwnedFd>| fd.map_or_else(Stdio::null, Stdio::from);
                cmd.stdin(to(s.stdin))
                    .stdout(to(s.stdout))
                    .stderr(to(s.stderr));
            }
            None => {
                cmd.stdin(Stdio::null())
                    .stdout(clone(&out))
                    .stderr(clone(&err));
            }
        }
        let pid = {
            let mut guard = self.exits.spawning();
            let child = cmd.spawn().map_err(|e| RunFailure {
                status: -1,
                stderr: format!("cannot run {}: {e}", self.binary.display()),
            })?;
            let pid = child.id() as i32;
            guard.watch(pid);
            pid
        };
        // Closes the shim's copies of the child's stdio.
        drop(cmd);
        let status = self.exits.wait(pid);
        let stdout = read_all(out);
        if status == 0 {
            return Ok(stdout);
        }
        Err(RunFailure {
            status,
            stderr: String::from_utf8_lossy(&read_all(err)).trim().to_string(),
        })
    }
}

/// The last error runc logged to `log` (`--log-format json`), as containerd's Go shim
/// reports it.
pub fn last_logged_error(log: &Path) -> Option<String> {
    let text = std::fs::read_to_string(log).ok()?;
    text.lines().rev().find_map(|line| {
        let v: serde_json::Value = serde_json::from_str(line).ok()?;
        let level = v.get("level")?.as_str()?;
        if level != "error" && level != "fatal" {
            return None;
        }
        Some(v.get("msg")?.as_str()?.to_string())
    })
}

/// A [`RunFailure`] as a [`ShimError`], with runc's own words: its stderr, else the last
/// error in its log file.
pub fn failure(runtime: &dyn Runtime, verb: &str, f: RunFailure, log: &Path) -> ShimError {
    let message = if !f.stderr.is_empty() {
        f.stderr
    } else if let Some(m) = last_logged_error(log) {
        m
    } else {
        format!("exit status {}", f.status)
    };
    ShimError::Runtime {
        command: format!("{} {verb}", runtime.name()),
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_error_line_of_runcs_json_log_is_the_message() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log.json");
        std::fs::write(
            &log,
            concat!(
                "{\"level\":\"error\",\"msg\":\"first\",\"time\":\"t\"}\n",
                "{\"level\":\"warning\",\"msg\":\"warn\"}\n",
                "{\"level\":\"error\",\"msg\":\"criu failed: type DUMP errno 0\"}\n",
                "{\"level\":\"info\",\"msg\":\"later\"}\n",
            ),
        )
        .unwrap();
        assert_eq!(
            last_logged_error(&log).as_deref(),
            Some("criu failed: type DUMP errno 0")
        );
        assert_eq!(last_logged_error(&dir.path().join("none")), None);
    }
}
