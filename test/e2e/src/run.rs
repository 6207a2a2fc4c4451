//! Running `stasis` (and other tools) with a timeout and captured output.

use std::ffi::OsStr;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::COMMAND_TIMEOUT;

/// The `stasis` binary under test: `$STASIS_BIN`, else
/// `<workspace>/target/release/stasis`. Panics (the test fails, it is never
/// skipped) if it does not exist.
pub fn stasis_bin() -> PathBuf {
    let bin = match std::env::var_os("STASIS_BIN") {
        Some(p) => PathBuf::from(p),
        None => workspace_root().join("target/release/stasis"),
    };
    assert!(
        bin.is_file(),
        "the stasis binary {} does not exist: build it with `cargo build --release -p stasis-cli` \
         (or point STASIS_BIN at one)",
        bin.display()
    );
    bin
}

/// The workspace root (this crate lives in `<root>/test/e2e`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("test/e2e has two ancestors")
        .to_path_buf()
}

/// What a finished command did.
#[derive(Debug)]
pub struct Output {
    pub command: String,
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    /// Extra context for assertion messages, e.g. the end of stasis's log file.
    pub notes: String,
}

impl Output {
    pub fn success(&self) -> bool {
        self.status.success()
    }

    /// Panics with the command, its status and its output unless it exited 0.
    #[track_caller]
    pub fn assert_success(&self) -> &Self {
        assert!(self.success(), "expected success:\n{self}");
        self
    }

    /// Panics unless the command exited non-zero (not by a signal: a crash is
    /// not a clean refusal).
    #[track_caller]
    pub fn assert_clean_failure(&self) -> &Self {
        assert!(
            matches!(self.status.code(), Some(c) if c != 0),
            "expected a non-zero exit status (and no crash):\n{self}"
        );
        assert!(
            !self.stderr.trim().is_empty(),
            "expected an error message on stderr:\n{self}"
        );
        self
    }
}

impl fmt::Display for Output {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "$ {}", self.command)?;
        writeln!(f, "status: {}", self.status)?;
        writeln!(f, "stdout:\n{}", indent(&self.stdout))?;
        write!(f, "stderr:\n{}", indent(&self.stderr))?;
        if !self.notes.is_empty() {
            write!(f, "\n{}", self.notes)?;
        }
        Ok(())
    }
}

fn indent(s: &str) -> String {
    if s.trim().is_empty() {
        return "  (empty)".to_string();
    }
    s.lines().map(|l| format!("  | {l}\n")).collect()
}

/// Runs `stasis ARGS` with the default timeout.
pub fn stasis<I, S>(args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut cmd = Command::new(stasis_bin());
    cmd.args(args);
    run(cmd, COMMAND_TIMEOUT)
}

static NEXT: AtomicUsize = AtomicUsize::new(0);

/// Runs `cmd` with stdin on /dev/null and stdout/stderr captured, killing it
/// after `timeout` (then panicking with what it printed).
pub fn run(cmd: Command, timeout: Duration) -> Output {
    Running::start(cmd).wait(timeout)
}

/// A command started in the background, its output captured.
///
/// Output goes through files, not pipes: a process that inherits a pipe
/// (such as a restored task, if an fd leaked into it) would otherwise keep
/// the reader waiting after the command itself has exited.
#[derive(Debug)]
pub struct Running {
    command: String,
    child: std::process::Child,
    out_path: PathBuf,
    err_path: PathBuf,
}

impl Running {
    /// Starts `cmd` with stdin on /dev/null.
    pub fn start(mut cmd: Command) -> Running {
        crate::proc::become_subreaper();
        let command = describe(&cmd);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = Path::new("/tmp/stasis-e2e");
        std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
        let out_path = dir.join(format!(".out-{}-{n}", std::process::id()));
        let err_path = dir.join(format!(".err-{}-{n}", std::process::id()));
        let out = std::fs::File::create(&out_path).expect("create stdout capture file");
        let err = std::fs::File::create(&err_path).expect("create stderr capture file");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start `{command}`: {e}"));
        Running {
            command,
            child,
            out_path,
            err_path,
        }
    }

    pub fn pid(&self) -> crate::Pid {
        self.child.id() as crate::Pid
    }

    /// True once the command has exited (it is then reaped, status kept).
    pub fn has_exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    /// Waits for the command to end, killing it after `timeout` (then
    /// panicking with what it printed).
    pub fn wait(mut self, timeout: Duration) -> Output {
        let deadline = Instant::now() + timeout;
        let (status, timed_out) = loop {
            if let Some(status) = self.child.try_wait().expect("wait for command") {
                break (status, false);
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                break (self.child.wait().expect("wait for killed command"), true);
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        let read = |p: &Path| {
            let s = String::from_utf8_lossy(&std::fs::read(p).unwrap_or_default()).into_owned();
            let _ = std::fs::remove_file(p);
            s
        };
        let output = Output {
            command: std::mem::take(&mut self.command),
            status,
            stdout: read(&self.out_path),
            stderr: read(&self.err_path),
            notes: String::new(),
        };
        assert!(
            !timed_out,
            "command timed out after {timeout:?} and was killed:\n{output}"
        );
        output
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // Only when wait() was not reached (a panicking test): stop it.
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        let _ = std::fs::remove_file(&self.out_path);
        let _ = std::fs::remove_file(&self.err_path);
    }
}

fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}
