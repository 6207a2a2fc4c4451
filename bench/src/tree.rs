//! Process trees the bench starts and the trees `stasis restore -d` leaves it: the
//! bookkeeping shared by the JVM and the ring workloads (who is in the tree, how many
//! threads, reaping every process so its PID is free again, killing what is left).
//!
//! Every tree's root calls `setsid()` (stasis restores a session leader without
//! `--shell-job`), so the root's PID is also the tree's process group: one
//! `kill(-root, SIGKILL)` stops the whole tree.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use rustix::io::Errno;
use rustix::process::{kill_process, kill_process_group, waitpid, Pid, Signal, WaitOptions};

/// How long a killed process may take to be gone.
const REAP_PATIENCE: Duration = Duration::from_secs(5);

/// The direct children of `pid`, from /proc/PID/task/PID/children, sorted.
pub fn children_of(pid: i32) -> Result<Vec<i32>> {
    let path = format!("/proc/{pid}/task/{pid}/children");
    let text = fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    let mut pids = text
        .split_ascii_whitespace()
        .map(|c| c.parse().with_context(|| format!("{path}: bad pid {c:?}")))
        .collect::<Result<Vec<i32>>>()?;
    pids.sort_unstable();
    Ok(pids)
}

/// The number of threads of `pid` (entries of /proc/PID/task).
pub fn thread_count(pid: i32) -> Result<usize> {
    let path = format!("/proc/{pid}/task");
    Ok(fs::read_dir(&path)
        .with_context(|| format!("listing {path}"))?
        .count())
}

/// `comm`, state and parent pid from /proc/PID/stat; comm may hold spaces and
/// parentheses, so the fields after it are found from the last `)`.
pub fn parse_stat(stat: &str) -> Option<(&str, char, i32)> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat.get(open + 1..close)?;
    let mut rest = stat.get(close + 1..)?.split_ascii_whitespace();
    let state = rest.next()?.chars().next()?;
    let ppid = rest.next()?.parse().ok()?;
    Some((comm, state, ppid))
}

/// `comm`, state and parent of a live process.
fn stat_of(pid: i32) -> Result<(String, char, i32)> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("no process {pid}"))?;
    let (comm, state, ppid) =
        parse_stat(&stat).with_context(|| format!("bad /proc/{pid}/stat: {stat:?}"))?;
    Ok((comm.to_string(), state, ppid))
}

/// Waits until `pid` is reaped by us (it is our child, or became one as we are a
/// subreaper) or, if it is not ours, gone from /proc. False if it is still there
/// after `patience`.
fn reap(pid: i32, patience: Duration) -> bool {
    let Some(p) = Pid::from_raw(pid) else {
        return true;
    };
    let deadline = Instant::now() + patience;
    loop {
        match waitpid(Some(p), WaitOptions::NOHANG) {
            Ok(Some(_)) => return true,
            Err(Errno::CHILD) if !Path::new(&format!("/proc/{pid}")).exists() => return true,
            Err(Errno::INTR) | Err(Errno::CHILD) | Ok(None) => {}
            Err(_) => return false,
        }
        if Instant::now() >= deadline {
            return false;
        }
        sleep(Duration::from_millis(1));
    }
}

/// SIGKILL to the tree's group (the root's PID: every root calls setsid()), its root
/// and `others`, then reaps the root first (so its children are reparented to us) and
/// then the others. The root may already be reaped: pass `None`.
fn kill_and_reap(root: Option<i32>, others: &[i32]) {
    let send = |pid: i32| {
        if let Some(p) = Pid::from_raw(pid) {
            let _ = kill_process(p, Signal::KILL);
        }
    };
    if let Some(root) = root {
        if let Some(p) = Pid::from_raw(root) {
            let _ = kill_process_group(p, Signal::KILL);
        }
        send(root);
    }
    others.iter().copied().for_each(send);
    if let Some(root) = root {
        reap(root, REAP_PATIENCE);
    }
    for &pid in others {
        reap(pid, REAP_PATIENCE);
    }
}

/// A tree the bench started: its root is the bench's child. Every process of it is
/// killed and reaped when dropped.
#[derive(Debug)]
pub struct StartedTree {
    child: Option<Child>,
    pub root: i32,
    /// The root's children as last seen.
    pub children: Vec<i32>,
    /// Files the tree leaves behind when killed (the JVM's perf-data file), removed when
    /// this is dropped: after the round, once the restored tree is gone too.
    pub leftovers: Vec<PathBuf>,
    /// Every process of the tree was reaped after the dump.
    reaped: bool,
}

impl StartedTree {
    /// Spawns `command` with stdio on /dev/null in `cwd`.
    pub fn spawn(mut command: Command, cwd: &Path) -> Result<StartedTree> {
        let shown = format!("{command:?}");
        let child = command
            .current_dir(cwd)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {shown}"))?;
        let root = i32::try_from(child.id()).context("pid out of range")?;
        Ok(StartedTree {
            child: Some(child),
            root,
            children: Vec::new(),
            leftovers: Vec::new(),
            reaped: false,
        })
    }

    /// The root's exit status if it has exited (an error while waiting for readiness).
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.as_mut().and_then(|c| c.try_wait().ok()?)
    }

    /// Reads the root's children again.
    pub fn refresh_children(&mut self) -> Result<&[i32]> {
        self.children = children_of(self.root)?;
        Ok(&self.children)
    }

    /// After a dump that killed the tree: reaps the root, then every child of it, which
    /// the bench inherited as subreaper when the root died, so that all their PIDs are
    /// free for the restore. Fails if any is still alive.
    pub fn reap_after_dump(&mut self) -> Result<()> {
        if let Some(mut child) = self.child.take() {
            let deadline = Instant::now() + REAP_PATIENCE;
            loop {
                if child.try_wait()?.is_some() {
                    break;
                }
                if Instant::now() >= deadline {
                    self.child = Some(child);
                    anyhow::bail!(
                        "process {} still runs {REAP_PATIENCE:?} after `stasis dump` returned \
                         (dump should kill the tree)",
                        self.root
                    );
                }
                sleep(Duration::from_millis(1));
            }
        }
        let alive: Vec<i32> = self
            .children
            .iter()
            .copied()
            .filter(|&c| !reap(c, REAP_PATIENCE))
            .collect();
        ensure!(
            alive.is_empty(),
            "child(ren) {alive:?} of the dumped tree still run {REAP_PATIENCE:?} after \
             `stasis dump` returned"
        );
        self.reaped = true;
        Ok(())
    }
}

impl Drop for StartedTree {
    fn drop(&mut self) {
        // Once reaped after a dump, the PIDs belong to the restored tree (or to nobody):
        // nothing of this tree is left to stop.
        if !self.reaped {
            self.stop();
        }
        for path in &self.leftovers {
            let _ = fs::remove_file(path);
        }
    }
}

impl StartedTree {
    fn stop(&mut self) {
        match self.child.take() {
            Some(mut child) => {
                if let Some(p) = Pid::from_raw(self.root) {
                    let _ = kill_process_group(p, Signal::KILL);
                }
                let _ = child.kill();
                let _ = child.wait();
                kill_and_reap(None, &self.children);
            }
            // The root is reaped already; its children may not be.
            None => kill_and_reap(None, &self.children),
        }
    }
}

/// A tree that `stasis restore -d` left running. The bench, a child subreaper, inherits
/// its root when stasis exits; every process of it is killed and reaped when dropped.
#[derive(Debug)]
pub struct RestoredTree {
    pub root: i32,
    pub children: Vec<i32>,
}

impl RestoredTree {
    /// Takes charge of the tree rooted at `root` after a restore: the root must be
    /// `comm`, alive, and have exactly the children `children` (sorted) had at dump. A
    /// process that is not ours (neither named `comm` nor our child) is left alone; one
    /// that is ours but wrong is killed when the error drops it.
    pub fn adopt(root: i32, comm: &str, children: &[i32]) -> Result<RestoredTree> {
        let (name, state, ppid) =
            stat_of(root).context("after `stasis restore -d` returned, the root")?;
        let ours = ppid == rustix::process::getpid().as_raw_nonzero().get();
        ensure!(
            name == comm || ours,
            "process {root} after restore is {name:?}, not the workload {comm:?}"
        );
        let mut tree = RestoredTree {
            root,
            children: children.to_vec(),
        };
        ensure!(
            name == comm,
            "restored process {root} is named {name:?}, not {comm:?}"
        );
        ensure!(
            !matches!(state, 'Z' | 'X'),
            "restored process {root} is already dead (state {state})"
        );
        let now = children_of(root)?;
        tree.children
            .extend(now.iter().filter(|c| !children.contains(c)));
        ensure!(
            now == children,
            "restored process {root} has children {now:?}, the dumped one had {children:?}"
        );
        for &c in children {
            let (name, state, ppid) = stat_of(c).context("a restored child")?;
            ensure!(
                name == comm && ppid == root && !matches!(state, 'Z' | 'X'),
                "restored child {c} is {name:?} in state {state} under {ppid}, expected a live \
                 {comm:?} under {root}"
            );
        }
        Ok(tree)
    }
}

impl Drop for RestoredTree {
    fn drop(&mut self) {
        kill_and_reap(Some(self.root), &self.children);
    }
}

/// The files of `images` whose names start with `prefix` (`core-` files: one per
/// thread the dump recorded).
pub fn count_images(images: &Path, prefix: &str) -> Result<usize> {
    let mut n = 0;
    for entry in fs::read_dir(images).with_context(|| format!("listing {}", images.display()))? {
        let name = entry?.file_name();
        let name = name.to_string_lossy();
        if name.starts_with(prefix) && name.ends_with(".img") {
            n += 1;
        }
    }
    Ok(n)
}

/// Waits until `ready` says the log at `log` shows the tree is ready, failing if the root
/// exits or `patience` passes.
pub fn wait_ready<T>(
    tree: &mut StartedTree,
    what: &str,
    log: &Path,
    patience: Duration,
    mut ready: impl FnMut(&mut StartedTree, &str) -> Result<Option<T>>,
) -> Result<T> {
    let deadline = Instant::now() + patience;
    loop {
        let text = match fs::read_to_string(log) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(e).with_context(|| format!("reading {}", log.display())),
        };
        if let Some(v) = ready(tree, &text)? {
            return Ok(v);
        }
        if let Some(status) = tree.exited() {
            anyhow::bail!(
                "{what} {} exited before it was ready: {status} (log {}: {:?})",
                tree.root,
                log.display(),
                crate::stasis::tail(&text, 5)
            );
        }
        ensure!(
            Instant::now() < deadline,
            "{what} {} not ready after {patience:?} (log {})",
            tree.root,
            log.display()
        );
        sleep(Duration::from_millis(5));
    }
}

/// The complete lines of a log: the last one may be in the middle of being written.
pub fn complete_lines(text: &str) -> impl Iterator<Item = &str> {
    let complete = match text.rfind('\n') {
        Some(end) => &text[..end],
        None => "",
    };
    complete.lines()
}

/// Waits until `check` accepts the log's lines written after `lines_at_dump` (it
/// returns `Ok(true)` when it has seen enough, `Err` when a line is wrong), for at most
/// `patience`.
pub fn wait_continues(
    log: &Path,
    lines_at_dump: usize,
    patience: Duration,
    mut check: impl FnMut(&[&str]) -> Result<bool>,
) -> Result<()> {
    let deadline = Instant::now() + patience;
    loop {
        let text = fs::read_to_string(log).with_context(|| format!("reading {}", log.display()))?;
        let lines: Vec<&str> = complete_lines(&text).collect();
        let new = lines.get(lines_at_dump..).unwrap_or_default();
        if check(new).with_context(|| format!("log {}", log.display()))? {
            return Ok(());
        }
        ensure!(
            Instant::now() < deadline,
            "the restored tree did not go on: {} new line(s) in {patience:?} (log {})",
            new.len(),
            log.display()
        );
        sleep(Duration::from_millis(5));
    }
}

/// A workload made of a process tree, with its own log protocol.
pub trait TreeWorkload {
    /// The name `--workloads` knows it by: `jvm`, `ring`.
    fn name(&self) -> &'static str;
    /// What it is, for the report.
    fn description(&self) -> String;
    /// The `comm` of its root (and children).
    fn comm(&self) -> &'static str;
    /// The targets and CRIU's reference times for it.
    fn targets(&self) -> Targets;
    /// Starts a fresh tree logging to `log`, with `cwd` as its working directory, and
    /// waits until it is ready; its `children` and `leftovers` are filled in.
    fn start(&self, log: &Path, cwd: &Path) -> Result<StartedTree>;
    /// Reads the log after the dump: where the tree was when it was frozen. Fails if the
    /// log so far breaks the protocol.
    fn at_dump(&self, log: &Path) -> Result<Progress>;
    /// Proves the restored tree went on from `at`; returns a short account of what was
    /// seen, for the progress line.
    fn verify_continues(&self, log: &Path, at: &Progress) -> Result<String>;
}

/// Seconds: the targets on the median, and CRIU 4.2's medians quoted by the
/// issue for the same kind of workload on this kind of machine.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Targets {
    pub dump: Option<f64>,
    pub restore: Option<f64>,
    pub criu_dump: Option<f64>,
    pub criu_restore: Option<f64>,
}

/// Where a workload's log stood when the dump froze it.
#[derive(Debug, Clone, PartialEq)]
pub struct Progress {
    /// Complete lines in the log.
    pub lines: usize,
    /// The counter of the last line (tick, lap).
    pub counter: u64,
    /// The last counter line itself.
    pub last_line: String,
}

/// Reads the complete lines of `log`.
pub fn read_lines(log: &Path) -> Result<Vec<String>> {
    let text = fs::read_to_string(log).with_context(|| format!("reading {}", log.display()))?;
    Ok(complete_lines(&text).map(str::to_string).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_comm_may_hold_parentheses() {
        assert_eq!(parse_stat("42 (a) b) S 17 2"), Some(("a) b", 'S', 17)));
    }

    #[test]
    fn only_complete_lines_count() {
        assert_eq!(
            complete_lines("a\nb\nc").collect::<Vec<_>>(),
            vec!["a", "b"]
        );
        assert_eq!(complete_lines("partial").count(), 0);
    }

    #[test]
    fn this_process_has_a_thread_and_no_children_yet() {
        let me = std::process::id() as i32;
        assert!(thread_count(me).unwrap() >= 1);
        assert!(children_of(me).is_ok());
    }
}
