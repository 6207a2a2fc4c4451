//! Starting the C workloads of `workloads/` and following them.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::log::{tail, LogFile};
use crate::proc::{self, Pid, ProcessGuard};
use crate::LINE_TIMEOUT;

/// The compiled workload `name` (built by build.rs into `$OUT_DIR/workloads`).
pub fn workload_bin(name: &str) -> PathBuf {
    let bin = Path::new(env!("OUT_DIR")).join("workloads").join(name);
    assert!(
        bin.is_file(),
        "workload {name} was not built: {} is missing",
        bin.display()
    );
    bin
}

/// A running workload: its pid, its log, and a guard that kills it when the
/// test ends. The guard follows the pid, so it also covers the restored
/// process, which has the same pid.
#[derive(Debug)]
pub struct Workload {
    name: String,
    pid: Pid,
    log: LogFile,
    _guard: ProcessGuard,
}

/// The processes a workload started (its children and theirs: they stay in its
/// session) are killed and reaped with it, the test passing or not; only those whose
/// arguments name the workload's log, so a recycled session id costs nobody else.
impl Drop for Workload {
    fn drop(&mut self) {
        let marker = self.log.path().to_string_lossy().into_owned();
        let Ok(dir) = std::fs::read_dir("/proc") else {
            return;
        };
        let members: Vec<Pid> = dir
            .flatten()
            .filter_map(|e| e.file_name().to_string_lossy().parse::<Pid>().ok())
            .filter(|&pid| {
                proc::stat(pid).is_some_and(|s| s.session == self.pid)
                    && proc::cmdline(pid).is_some_and(|a| a.iter().any(|a| a.contains(&marker)))
            })
            .collect();
        // All at once, leader included: its children are then reparented to the test
        // (a subreaper), which reaps them.
        for &pid in &members {
            let _ = proc::signal(pid, libc::SIGKILL);
        }
        for &pid in &members {
            let _ = proc::wait_gone(pid, std::time::Duration::from_secs(5));
        }
    }
}

impl Workload {
    /// Starts `name LOG ARGS...` in `cwd` with stdin, stdout and stderr on
    /// /dev/null, and waits until it has logged `start pid <pid>`. The log
    /// path must be unique to the test: it also marks the process.
    pub fn start<S: AsRef<OsStr>>(name: &str, log: &Path, args: &[S], cwd: &Path) -> Workload {
        proc::become_subreaper();
        let child = Command::new(workload_bin(name))
            .arg(log)
            .args(args)
            .current_dir(cwd)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start workload {name}: {e}"));
        let pid = child.id() as Pid;
        // The Child handle is dropped without waiting: from here on the pid is
        // reaped by pid (proc::try_reap), the same way as after a restore.
        drop(child);
        let w = Workload {
            name: name.to_string(),
            pid,
            log: LogFile::new(log),
            _guard: ProcessGuard::new(pid, log.to_string_lossy()),
        };
        let expected = format!("start pid {pid}");
        w.wait_for(&expected, LINE_TIMEOUT, |lines| {
            lines.iter().any(|l| l.starts_with(&expected)).then_some(())
        });
        let stat = proc::stat(pid).expect("workload vanished right after starting");
        assert_eq!(
            stat.session, pid,
            "workload {name} is not a session leader: {stat:?}"
        );
        w
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn pid(&self) -> Pid {
        self.pid
    }

    pub fn log(&self) -> &LogFile {
        &self.log
    }

    pub fn lines(&self) -> Vec<String> {
        self.log.lines()
    }

    pub fn is_alive(&self) -> bool {
        proc::is_alive(self.pid)
    }

    /// Sends `sig` (e.g. `libc::SIGUSR1`) to the workload.
    #[track_caller]
    pub fn signal(&self, sig: i32) {
        proc::signal(self.pid, sig).unwrap_or_else(|e| panic!("kill({}, {sig}): {e}", self.pid));
    }

    /// Polls the log like [`LogFile::wait_for`], but fails at once — with how
    /// the process ended — if the workload is no longer alive.
    pub fn wait_for<T>(
        &self,
        what: &str,
        timeout: Duration,
        mut found: impl FnMut(&[String]) -> Option<T>,
    ) -> T {
        self.log.wait_for(what, timeout, |lines| {
            if let Some(v) = found(lines) {
                return Some(v);
            }
            if !self.is_alive() {
                // Read again: the line may have been written just before the end.
                let lines = self.log.lines();
                if let Some(v) = found(&lines) {
                    return Some(v);
                }
                panic!(
                    "workload {} (pid {}) {} while waiting for {what}; end of {}:\n{}",
                    self.name,
                    self.pid,
                    self.how_it_ended(),
                    self.log.path().display(),
                    tail(&lines, 15)
                );
            }
            None
        })
    }

    /// Waits for a line starting with `prefix` that comes after line index
    /// `after` (a line count taken earlier); returns the line and its index.
    pub fn wait_line_after(
        &self,
        after: usize,
        prefix: &str,
        timeout: Duration,
    ) -> (usize, String) {
        self.wait_for(
            &format!("a line starting with {prefix:?} after line {after}"),
            timeout,
            |lines| {
                lines
                    .iter()
                    .enumerate()
                    .skip(after)
                    .find(|(_, l)| l.starts_with(prefix))
                    .map(|(i, l)| (i, l.clone()))
            },
        )
    }

    /// Waits until the log holds at least `n` more `tick` lines after line
    /// index `after`.
    pub fn wait_ticks_after(&self, after: usize, n: usize, timeout: Duration) {
        self.wait_for(
            &format!("{n} tick lines after line {after}"),
            timeout,
            |lines| {
                let count = lines
                    .iter()
                    .skip(after)
                    .filter(|l| l.starts_with("tick "))
                    .count();
                (count >= n).then_some(())
            },
        )
    }

    /// Reaps the workload if it is our zombie and says how it ended.
    pub fn how_it_ended(&self) -> String {
        match proc::try_reap(self.pid) {
            Some(st) if libc::WIFSIGNALED(st) => {
                format!("was killed by signal {}", libc::WTERMSIG(st))
            }
            Some(st) if libc::WIFEXITED(st) => {
                format!("exited with status {}", libc::WEXITSTATUS(st))
            }
            Some(st) => format!("ended with wait status {st:#x}"),
            None => match proc::stat(self.pid) {
                Some(s) => format!("is in state {} (parent {})", s.state, s.ppid),
                None => "is gone".to_string(),
            },
        }
    }

    /// Waits until the workload's pid is free (reaping it), e.g. after a dump
    /// that kills it. Panics if it is still there after `timeout`.
    #[track_caller]
    pub fn assert_gone(&self, timeout: Duration) {
        if let Err(e) = proc::wait_gone(self.pid, timeout) {
            panic!("workload {}: {e}", self.name);
        }
    }
}
