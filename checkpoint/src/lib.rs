//! The dump engine: freeze a task, collect its state, write CRIU-format images, then kill
//! or resume it.
//!
//! ```text
//! seize → check what is supported → collect (proc, ptrace, remote calls) → pages
//!       → write images (inventory last) → kill | resume
//! ```
//!
//! A dump that fails at any step — an unsupported object, an I/O error, SIGINT/SIGTERM
//! to stasis — puts the task's registers and signal mask back and detaches, so the task
//! runs on as before; the partial images are removed.
#![forbid(unsafe_code)]

mod cgroups;
mod cpu_record;
mod fds;
mod files;
mod hook;
pub mod ipc;
mod memory;
pub mod mounts;
pub mod ns;
mod procfs;
mod seccomp;
mod task;
pub mod x86;

pub use hook::{DumpHook, DumpStage};
pub use memory::{is_perf_data, madv, status as vma_status, PAGE, PERF_DATA_KEY};

use stasis_images::{names, pb, ImageDir, ImageKind};
use stasis_parasite::{ProcMem, Scratch, Tracee};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// What can make a dump fail. Every message names the task and the object.
#[derive(Debug, thiserror::Error)]
pub enum DumpError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {what}")]
    Proc { path: String, what: String },
    #[error("pid {pid}: {what}")]
    Unsupported { pid: i32, what: String },
    #[error("pid {pid} does not exist")]
    NoSuchProcess { pid: i32 },
    #[error("interrupted by a signal; the task was left running")]
    Interrupted,
    #[error("the caller stopped the dump {stage}: {what}; the task was left running")]
    Stopped { stage: DumpStage, what: String },
    #[error(transparent)]
    Parasite(#[from] stasis_parasite::ParasiteError),
    #[error(transparent)]
    Sys(#[from] stasis_sys::SysError),
    #[error(transparent)]
    Image(#[from] stasis_images::ImageError),
    #[error(transparent)]
    Cgroup(#[from] stasis_cgroup::CgroupError),
    #[error("internal error: {0}")]
    Internal(String),
}

/// Result of the dump engine.
pub type Result<T> = std::result::Result<T, DumpError>;

/// What to dump and how.
#[derive(Clone, Debug, Default)]
pub struct DumpOptions {
    /// Root of the tree to dump.
    pub pid: i32,
    /// The images directory.
    pub images_dir: PathBuf,
    /// Where `stats-dump` goes (CRIU's work dir; the images dir by default).
    pub work_dir: PathBuf,
    /// Leave the task running after the dump instead of killing it.
    pub leave_running: bool,
    /// The task belongs to a shell job: its terminal and session are external.
    pub shell_job: bool,
    /// A pty slave whose master is not in the tree (a container's console) may be
    /// dumped: the restore makes a new master for it (CRIU's RPC `orphan_pts_master`).
    pub orphan_pts_master: bool,
    /// Dump established TCP connections (CRIU's `--tcp-established`); without it they
    /// are refused.
    pub tcp_established: bool,
    /// Called at each [`DumpStage`]; an error stops the dump (CRIU's action scripts).
    pub hook: DumpHook,
    /// How long freezing may take (CRIU's `--timeout`).
    pub timeout: std::time::Duration,
    /// Largest deleted-but-open file stored in the image (`--ghost-limit`; CRIU's 1 MiB
    /// when unset).
    pub ghost_limit: Option<u64>,
    /// Dump file locks (`--file-locks`); without it a held lock refuses the dump.
    pub file_locks: bool,
    /// `--freeze-cgroup`: freeze the tasks through this freezer cgroup (v1 or v2)
    /// before seizing them.
    pub freeze_cgroup: Option<PathBuf>,
    /// External mounts, `KEY:VAL` as CRIU's `--ext-mount-map` / `--external mnt[KEY]:VAL`:
    /// the mount at mount point KEY is not dumped but recorded as external with key VAL.
    pub external_mounts: Vec<(String, String)>,
    /// `--ext-mount-map auto` (RPC `auto_ext_mnt`): a mount bound from outside the
    /// container that was not declared external is, keyed by its host path.
    pub external_mounts_auto: bool,
    /// Namespaces (clone flags) whose contents are not dumped (`--empty-ns net`): the
    /// restore gives the tree a new, empty one.
    pub empty_ns: i32,
    /// Lock the network of a network namespace of the tree's own with nftables while
    /// it is dumped (`--network-lock nftables`, the default); `false` for `skip`.
    pub network_lock: bool,
    /// Network namespaces that belong to the caller (CRIU's `--external net[INO]:KEY`):
    /// when the root's is one of them (by inode), it is recorded by KEY only, not
    /// dumped and not locked; the restore joins the one it is given for KEY.
    pub external_netns: Vec<(u64, String)>,
}

/// Timings and counters of a finished dump.
#[derive(Clone, Debug, Default)]
pub struct DumpReport {
    pub freezing_us: u32,
    pub frozen_us: u32,
    pub memdump_us: u32,
    pub memwrite_us: u32,
    pub pages_scanned: u64,
    pub pages_written: u64,
}

/// Signals that ask stasis to stop; blocked during a dump and polled between steps.
const STOP_SIGNALS: [i32; 4] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT];

fn stop_mask() -> u64 {
    STOP_SIGNALS.iter().fold(0u64, |m, s| m | 1 << (s - 1))
}

fn interrupted() -> bool {
    stasis_sys::process::sigpending()
        .map(|p| p & stop_mask() != 0)
        .unwrap_or(false)
}

fn check_interrupt() -> Result<()> {
    if interrupted() {
        Err(DumpError::Interrupted)
    } else {
        Ok(())
    }
}

/// Dumps one process. On error the process is left running as it was.
pub fn dump(opts: &DumpOptions) -> Result<DumpReport> {
    if !stasis_sys::process::pid_in_use(opts.pid) {
        return Err(DumpError::NoSuchProcess { pid: opts.pid });
    }
    let old_mask = stasis_sys::process::sigprocmask(libc::SIG_BLOCK, stop_mask())?;
    let dir = ImageDir::create(&opts.images_dir)?;
    let before: Vec<String> = list_dir(dir.path());
    fds::inet::begin(opts.tcp_established);
    let result = dump_seized(opts, &dir);
    fds::inet::settle(result.is_ok() && !opts.leave_running);
    if result.is_err() {
        remove_new_files(dir.path(), &before);
    }
    // A stop signal that arrived after the point of no return is delivered now.
    stasis_sys::process::sigprocmask(libc::SIG_SETMASK, old_mask)?;
    result
}

fn list_dir(p: &Path) -> Vec<String> {
    std::fs::read_dir(p)
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default()
}

fn remove_new_files(p: &Path, before: &[String]) {
    for name in list_dir(p) {
        if !before.contains(&name)
            && (name.ends_with(".img")
                || name.starts_with("stats-")
                || name == cpu_record::RECORD_FILE)
        {
            let _ = std::fs::remove_file(p.join(name));
        }
    }
}

/// What each process of the tree must satisfy: no namespace of its own, and a session
/// stasis can recreate (its own, or its parent's; the root's own unless a shell job).
fn preflight(
    pid: i32,
    root: i32,
    parent: Option<&procfs::Stat>,
    parent_is_root: bool,
    shell_job: bool,
) -> Result<procfs::Stat> {
    let stat = procfs::stat(pid)?;
    // A zombie has no namespaces left to compare.
    let zombie = matches!(stat.state, 'Z' | 'X');
    if pid == root {
        ns::of_root(pid)?;
    } else if !zombie {
        ns::same_as_root(pid, root)?;
    }
    match parent {
        None if stat.sid != pid && !shell_job => {
            return Err(DumpError::Unsupported {
                pid,
                what: format!(
                    "is in session {} whose leader is not dumped; dump it with --shell-job (-j)",
                    stat.sid
                ),
            })
        }
        // The root's child in a session whose leader is gone (a daemon's): a helper
        // stands in for that leader at restore, which refuse_lost_leaders checks.
        Some(p) if stat.sid != pid && stat.sid != p.sid && !parent_is_root => {
            return Err(DumpError::Unsupported {
                pid,
                what: format!(
                    "is in session {}, neither its own nor its parent's, and its parent is not the tree's root; not supported yet",
                    stat.sid
                ),
            })
        }
        // Another process's group (a pipeline's, made by a shell): that leader must be
        // in the tree too, which refuse_foreign_groups checks once the tree is known.
        _ => {}
    }
    Ok(stat)
}

/// One process of the frozen tree.
enum Member {
    /// Held: every thread seized and stopped, the leader first.
    Alive {
        pid: i32,
        ppid: i32,
        stat: procfs::Stat,
        threads: Vec<Tracee>,
    },
    /// Already dead, waiting for its parent: nothing to seize.
    Zombie {
        pid: i32,
        ppid: i32,
        stat: procfs::Stat,
    },
}

impl Member {
    /// (pid, ppid).
    fn ids(&self) -> (i32, i32) {
        match self {
            Member::Alive { pid, ppid, .. } | Member::Zombie { pid, ppid, .. } => (*pid, *ppid),
        }
    }

    fn stat(&self) -> &procfs::Stat {
        match self {
            Member::Alive { stat, .. } | Member::Zombie { stat, .. } => stat,
        }
    }
}

/// Seizes every thread of `pid`, the leader first, until no new thread appears: a thread
/// created while the others were being stopped is caught by the next pass. Threads the
/// `--freeze-cgroup` freezer already holds are taken from `hold`.
fn seize_threads(
    pid: i32,
    deadline: Instant,
    hold: &mut Option<cgroups::FreezerHold>,
) -> Result<Vec<Tracee>> {
    let mut held: Vec<Tracee> = vec![cgroups::seize(hold, pid)?];
    loop {
        let mut new = 0;
        for tid in procfs::threads(pid)? {
            if held.iter().any(|t| t.pid() == tid) {
                continue;
            }
            match cgroups::seize(hold, tid) {
                Ok(t) => {
                    held.push(t);
                    new += 1;
                }
                // It exited between the listing and the seize.
                Err(_) if !std::path::Path::new(&format!("/proc/{pid}/task/{tid}")).exists() => {}
                Err(e) => return Err(e),
            }
        }
        if new == 0 {
            return Ok(held);
        }
        if Instant::now() > deadline {
            return Err(DumpError::Unsupported {
                pid,
                what: "keeps creating threads; could not freeze it before the timeout".into(),
            });
        }
        check_interrupt()?;
    }
}

/// Freezes the tree under `root`, parents before children. A process's children are read
/// only once all its threads are stopped, so none can be created behind stasis's back.
/// On error everything already held is released (the tracees' drop puts them back).
fn freeze_tree(
    root: i32,
    shell_job: bool,
    deadline: Instant,
    hold: &mut Option<cgroups::FreezerHold>,
) -> Result<Vec<Member>> {
    let mut members: Vec<Member> = Vec::new();
    let mut queue = std::collections::VecDeque::from([(root, 0)]);
    while let Some((pid, ppid)) = queue.pop_front() {
        let parent = members.iter().find_map(|m| match m {
            Member::Alive { pid: p, stat, .. } if *p == ppid => Some(stat),
            _ => None,
        });
        // A child is held before it is looked at: running, it could still change its
        // session or group, or exit (then it is a zombie, its parent being held).
        let early = match pid == root {
            true => None,
            false => match seize_threads(pid, deadline, hold) {
                Ok(threads) => Some(threads),
                Err(e) if procfs::stat(pid).is_ok_and(|s| matches!(s.state, 'Z' | 'X')) => {
                    log::debug!("pid {pid} exited as it was seized ({e}): a zombie");
                    None
                }
                Err(e) => return Err(e),
            },
        };
        let stat = preflight(pid, root, parent, ppid == root, shell_job)?;
        if matches!(stat.state, 'Z' | 'X') {
            if pid == root {
                return Err(DumpError::Unsupported {
                    pid,
                    what: "is a zombie".into(),
                });
            }
            members.push(Member::Zombie { pid, ppid, stat });
            continue;
        }
        let threads = match early {
            Some(threads) => threads,
            None => seize_threads(pid, deadline, hold)?,
        };
        for t in &threads {
            for child in procfs::children(pid, t.pid()).unwrap_or_default() {
                queue.push_back((child, pid));
            }
        }
        members.push(Member::Alive {
            pid,
            ppid,
            stat,
            threads,
        });
        check_interrupt()?;
    }
    Ok(members)
}

/// Two processes that share an address space (vfork), a descriptor table (`CLONE_FILES`)
/// or their fs state (`CLONE_FS`) would come back with separate ones: refused for now.
fn refuse_shared_tables(members: &[Member]) -> Result<()> {
    use stasis_sys::process::{shares, Shared};
    let alive: Vec<i32> = members
        .iter()
        .filter_map(|m| match m {
            Member::Alive { pid, .. } => Some(*pid),
            Member::Zombie { .. } => None,
        })
        .collect();
    let parent_of = |pid: i32| {
        members.iter().find_map(|m| match m {
            Member::Alive { pid: p, ppid, .. } if *p == pid => Some(*ppid),
            _ => None,
        })
    };
    // The topmost process reached from `pid` through parents it shares `what` with.
    let owner = |pid: i32, what: Shared| -> Result<i32> {
        let mut at = pid;
        while let Some(p) = parent_of(at).filter(|p| alive.contains(p)) {
            if !shares(at, p, what)? {
                break;
            }
            at = p;
        }
        Ok(at)
    };
    for (i, &a) in alive.iter().enumerate() {
        for &b in &alive[i + 1..] {
            for (what, name) in [
                (Shared::Vm, "address space"),
                (Shared::Files, "descriptor table"),
                (Shared::Fs, "cwd/root/umask"),
            ] {
                // fs state or a descriptor table shared down parent-child links is
                // forked with CLONE_FS or CLONE_FILES again (collect_tree gives such a
                // child its parent's fs or files id).
                if what != Shared::Vm && owner(a, what)? == owner(b, what)? {
                    continue;
                }
                if shares(a, b, what)? {
                    return Err(DumpError::Unsupported {
                        pid: a,
                        what: format!("shares its {name} with pid {b} (clone without a new one); not supported yet"),
                    });
                }
            }
        }
    }
    Ok(())
}

/// A task's process group and session as the tree's pid namespace numbers them. Without
/// a namespace of its own they are the host's; with one, the task's own `NSpgid`/`NSsid`
/// give them, also for a leader that is gone (0 for one outside the namespace).
fn group_inside(pids: &ns::PidMap, pid: i32, stat: &procfs::Stat) -> Result<(u32, u32)> {
    if pids.is_identity() {
        return Ok((stat.pgid as u32, stat.sid as u32));
    }
    let status = procfs::status(pid)?;
    let inner = |host: i32, ns: i32| match pids.virt_leader(host) {
        0 => ns,
        v => v,
    };
    Ok((
        inner(stat.pgid, status.ns_pgid) as u32,
        inner(stat.sid, status.ns_sid) as u32,
    ))
}

/// Sessions and process groups the restore can make again. A process in another's
/// group needs that leader in the tree, in its session (the restore makes the group with
/// the leader, then moves the member in) — or, for a child of the root, a leader that is
/// gone: a helper takes its PID at restore, as for a session whose leader is gone. A
/// leader still alive outside the tree would hold that PID, so it is refused.
fn refuse_lost_leaders(members: &[Member]) -> Result<()> {
    let find = |pid: i32| members.iter().find(|m| m.ids().0 == pid).map(Member::stat);
    let root = members.first().map(|m| (m.ids().0, m.stat().sid));
    let refuse = |pid: i32, what: String| Err(DumpError::Unsupported { pid, what });
    for (i, m) in members.iter().enumerate() {
        let ((pid, ppid), stat) = (m.ids(), m.stat());
        if i == 0 {
            continue;
        }
        let adopted = root.is_some_and(|(r, _)| r == ppid);
        let root_sid = root.map_or(0, |(_, sid)| sid);
        if stat.sid != pid && adopted && stat.sid != root_sid {
            match find(stat.sid) {
                Some(_) => {
                    return refuse(pid, format!("is in session {}, whose leader is in the tree but is not its parent; not supported yet", stat.sid))
                }
                None if stasis_sys::process::pid_in_use(stat.sid) => {
                    return refuse(pid, format!("is in session {}, whose leader is alive outside the tree", stat.sid))
                }
                None => {}
            }
        }
        if stat.pgid == pid || matches!(stat.state, 'Z' | 'X') {
            continue;
        }
        if find(ppid).is_some_and(|p| p.pgid == stat.pgid) {
            continue;
        }
        match find(stat.pgid) {
            Some(l) if l.pgid == stat.pgid && l.sid == stat.sid => {}
            None if adopted && !stasis_sys::process::pid_in_use(stat.pgid) => {}
            None if adopted => {
                return refuse(pid, format!("is in process group {}, whose leader is alive outside the tree", stat.pgid))
            }
            _ => {
                return refuse(pid, format!("is in process group {}, whose leader is not a process of the tree in its session; not supported yet", stat.pgid))
            }
        }
    }
    Ok(())
}

/// The per-process object ids, with the namespace ids of `own`.
fn ids_of(index: usize, own: &ns::OwnNamespaces) -> pb::TaskKobjIdsEntry {
    let base = if index == 0 {
        1
    } else {
        13 + 4 * (index as u32 - 1)
    };
    let mut ids = pb::TaskKobjIdsEntry {
        vm_id: base,
        files_id: base + 1,
        fs_id: base + 2,
        sighand_id: base + 3,
        ..Default::default()
    };
    own.apply(&mut ids);
    ids
}

fn dump_seized(opts: &DumpOptions, dir: &ImageDir) -> Result<DumpReport> {
    let t0 = Instant::now();
    let mut hold = match &opts.freeze_cgroup {
        Some(path) => Some(cgroups::FreezerHold::seize(path, opts.pid, opts.timeout)?),
        None => None,
    };
    let mut members = freeze_tree(opts.pid, opts.shell_job, t0 + opts.timeout, &mut hold)?;
    // Declared after the held tasks, so a dump that fails settles its TCP sockets before
    // they are let go.
    let mut sockets = SettleSockets { armed: true };
    let frozen_at = Instant::now();
    log::info!(
        "froze the tree of pid {} ({} processes, {} threads) in {:?}",
        opts.pid,
        members.len(),
        members
            .iter()
            .map(|m| if let Member::Alive { threads, .. } = m {
                threads.len()
            } else {
                0
            })
            .sum::<usize>(),
        frozen_at - t0
    );
    let freezer = hold.as_ref().and_then(|h| h.record());
    refuse_shared_tables(&members)?;
    refuse_lost_leaders(&members)?;
    let own = ns::of_root(opts.pid)?;
    let mut pids = ns::PidMap::default();
    if own.has("user") {
        pids.users = Some(ns::IdMap::read(opts.pid)?);
    }
    for m in &members {
        match m {
            Member::Alive { pid, threads, .. } => {
                let tids: Vec<i32> = threads.iter().map(|t| t.pid()).collect();
                pids.add(*pid, &tids)?
            }
            Member::Zombie { pid, .. } => pids.add(*pid, &[*pid])?,
        }
    }
    let run = run_id();
    // No packet crosses the tree's own network namespace from here on: no peer sees a
    // reset while its sockets are dumped. A failed dump unlocks it (on drop).
    let external_net = external_netns(opts)?;
    let net_lock = if own.has("net") && opts.network_lock && external_net.is_none() {
        let table = stasis_netns::lock::lock_table_name(&run);
        Some(
            stasis_netns::NetLock::acquire(opts.pid, table).map_err(|e| {
                DumpError::Unsupported {
                    pid: opts.pid,
                    what: format!("locking its network: {e}"),
                }
            })?,
        )
    } else {
        if opts.network_lock {
            let table = stasis_netns::lock::lock_table_name(&run);
            fds::inet::lock_connections(opts.pid, table)?;
        }
        None
    };
    let mut report = collect_tree(opts, dir, &mut members, freezer, &own, &pids, &run)?;
    dump_namespaces(opts, dir, &own, pids.users.as_ref())?;

    report.freezing_us = (frozen_at - t0).as_micros() as u32;

    check_interrupt()?;
    // Frozen from the freeze until the images are complete (the kill or release that
    // follows takes microseconds).
    report.frozen_us = frozen_at.elapsed().as_micros() as u32;
    write_stats(opts, &report)?;
    check_interrupt()?;
    let stage = DumpStage::ImagesWritten;
    (opts.hook.call(stage)).map_err(|what| DumpError::Stopped { stage, what })?;
    // A freezer cgroup frozen before the dump is frozen again before the tasks go on,
    // and its tasks that were not dumped are let go.
    if let (Some(h), false) = (hold.as_mut(), opts.leave_running) {
        h.tasks_killed();
    }
    // The dumped namespace stays locked (as in CRIU) unless its tasks run on.
    match (net_lock, opts.leave_running) {
        (Some(l), true) => {
            if let Err(e) = l.release() {
                log::error!("unlocking the network of pid {}: {e}", opts.pid);
            }
        }
        (Some(l), false) => l.keep(),
        (None, _) => {}
    }
    drop(hold);
    // Tasks that run on get their sockets out of repair mode and unlocked first: a read
    // in repair mode fails with EPERM.
    if opts.leave_running {
        fds::inet::settle(false);
    }
    // Children first, so no parent runs while a child is still held.
    let mut killed = Vec::new();
    for m in members.into_iter().rev() {
        let Member::Alive { threads, pid, .. } = m else {
            continue;
        };
        killed.push(pid);
        let mut threads = threads.into_iter();
        let leader = threads.next().expect("the leader is held");
        if opts.leave_running {
            for t in threads {
                t.release()?;
            }
            leader.release()?;
        } else {
            leader.kill()?;
            for t in threads {
                t.forget();
            }
        }
    }
    // Past the release or the kill: sockets of tasks that run on were settled above;
    // those of killed tasks stay locked until the restore (dump() settles them so).
    sockets.armed = false;
    // A runtime asks right after the dump whether the container still runs: the killed
    // tasks are dead (zombies at most) before stasis answers.
    if !opts.leave_running {
        wait_dead(&killed, std::time::Duration::from_secs(5));
    }
    report.frozen_us = frozen_at.elapsed().as_micros() as u32;
    Ok(report)
}

/// Takes the dumped TCP sockets out of repair mode and unlocks their connections when a
/// failing dump unwinds, while its tasks are still held.
struct SettleSockets {
    armed: bool,
}

impl Drop for SettleSockets {
    fn drop(&mut self) {
        if self.armed {
            fds::inet::settle(false);
        }
    }
}

/// Waits until every process of `pids` is a zombie or gone, for at most `limit`.
fn wait_dead(pids: &[i32], limit: std::time::Duration) {
    let until = Instant::now() + limit;
    for &pid in pids {
        while procfs::stat(pid).is_ok_and(|s| !matches!(s.state, 'Z' | 'X')) {
            if Instant::now() > until {
                log::warn!("pid {pid} was killed but is not dead yet");
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }
}

/// Collects every process and writes the images of the tree, `inventory.img` last.
fn collect_tree(
    opts: &DumpOptions,
    dir: &ImageDir,
    members: &mut [Member],
    freezer: Option<stasis_cgroup::FreezerRecord>,
    own: &ns::OwnNamespaces,
    pids: &ns::PidMap,
    run: &str,
) -> Result<DumpReport> {
    let mut cgroups = cgroups::Cgroups::new()?;
    if own.has("cgroup") {
        cgroups.cgns_roots = ns::cgroup_ns_roots(opts.pid)?;
    }
    let mut files = files::FileTable::default();
    files.ghost_limit = opts.ghost_limit;
    files.file_locks = opts.file_locks;
    let mut tree = Vec::with_capacity(members.len());
    let mut report = DumpReport::default();
    let mut users: std::collections::HashMap<u32, Vec<i32>> = std::collections::HashMap::new();
    let mut given: Vec<(i32, pb::TaskKobjIdsEntry)> = Vec::new();
    for (index, m) in members.iter_mut().enumerate() {
        match m {
            Member::Alive {
                pid,
                ppid,
                stat,
                threads,
            } => {
                let mut ids = ids_of(index, own);
                // cwd, root and umask (CLONE_FS) or the descriptor table (CLONE_FILES)
                // shared with the parent: one object, the parent's id.
                if let Some((_, parent)) = given.iter().find(|(p, _)| p == ppid) {
                    use stasis_sys::process::{shares, Shared};
                    if shares(*pid, *ppid, Shared::Fs)? {
                        ids.fs_id = parent.fs_id;
                    }
                    if shares(*pid, *ppid, Shared::Files)? {
                        ids.files_id = parent.files_id;
                    }
                }
                given.push((*pid, ids));
                let (entry, r, fdinfo) = collect_process(
                    opts,
                    dir,
                    *pid,
                    *ppid,
                    stat,
                    threads,
                    &mut files,
                    &ids,
                    index as u32 + 1,
                    &mut cgroups,
                    pids,
                )?;
                // A table shared with the parent is the parent's: its uses counted there.
                let own_table = !given
                    .iter()
                    .any(|(p, i)| p == ppid && i.files_id == ids.files_id);
                for f in fdinfo.iter().filter(|_| own_table) {
                    users.entry(f.id).or_default().push(*pid);
                }
                tree.push(entry);
                report.memdump_us += r.memdump_us;
                report.memwrite_us += r.memwrite_us;
                report.pages_scanned += r.pages_scanned;
                report.pages_written += r.pages_written;
            }
            Member::Zombie { pid, ppid, stat } => {
                let core = pb::CoreEntry {
                    mtype: pb::core_entry::March::X8664 as i32,
                    tc: Some(pb::TaskCoreEntry {
                        task_state: 2,
                        exit_code: stat.exit_code as u32,
                        comm: stat.comm.clone(),
                        ..Default::default()
                    }),
                    ..Default::default()
                };
                let vpid = pids.virt(*pid) as u32;
                dir.write_one(ImageKind::CORE, &names::core(vpid), &core)?;
                let (pgid, sid) = group_inside(pids, *pid, stat)?;
                tree.push(pb::PstreeEntry {
                    pid: vpid,
                    ppid: pids.virt(*ppid) as u32,
                    pgid,
                    sid,
                    threads: vec![vpid],
                });
            }
        }
    }
    // Objects shared between processes are created once at restore and inherited; an
    // epoll instance is the exception (its registrations belong to one fd table).
    for (id, pids) in &users {
        let mut distinct = pids.clone();
        distinct.sort_unstable();
        distinct.dedup();
        if distinct.len() > 1 && !files.is_shareable(*id) {
            return Err(DumpError::Unsupported {
                pid: distinct[0],
                what: format!(
                    "shares epoll instance {id} with processes {:?}; not supported yet",
                    &distinct[1..]
                ),
            });
        }
    }
    files.side.ttys.map_leaders(|host| pids.virt_leader(host));
    files.write_images(dir)?;
    dir.write_one(
        ImageKind::SECCOMP,
        names::SECCOMP,
        &files.side.seccomp.entry(),
    )?;
    dir.write(ImageKind::PSTREE, names::PSTREE, &tree)?;
    let tree_pids: Vec<(i32, i32)> = members
        .iter()
        .map(|m| match m {
            Member::Alive { pid, .. } | Member::Zombie { pid, .. } => (*pid, pids.virt(*pid)),
        })
        .collect();
    cpu_record::write(dir, &tree_pids)?;
    cgroups.write(dir, freezer)?;
    let root_ids = pb::TaskKobjIdsEntry {
        vm_id: 13 + 4 * members.len() as u32,
        files_id: 14 + 4 * members.len() as u32,
        fs_id: 15 + 4 * members.len() as u32,
        sighand_id: 16 + 4 * members.len() as u32,
        ..ids_of(0, &ns::OwnNamespaces::default())
    };
    let inventory = pb::InventoryEntry {
        img_version: 2,
        fdinfo_per_id: Some(true),
        root_ids: Some(root_ids),
        ns_per_id: Some(true),
        lsmtype: Some(pb::Lsmtype::NoLsm as i32),
        network_lock_method: Some(if opts.network_lock { 1 } else { 2 }),
        plugins_entry: Some(pb::PluginsEntry {
            plugins: Vec::new(),
        }),
        dump_criu_run_id: Some(run.to_string()),
        root_cg_set: Some(cgroups.root_set()),
        ..Default::default()
    };
    dir.write_one(ImageKind::INVENTORY, names::INVENTORY, &inventory)?;
    Ok(report)
}

/// Collects one live process and writes its own images; returns its pstree entry, its
/// counters, and its fd table (for the check of objects shared between processes).
#[allow(clippy::too_many_arguments)]
fn collect_process(
    opts: &DumpOptions,
    dir: &ImageDir,
    pid: i32,
    ppid: i32,
    stat: &procfs::Stat,
    threads: &mut [Tracee],
    files: &mut files::FileTable,
    ids: &pb::TaskKobjIdsEntry,
    pages_id: u32,
    cgroups: &mut cgroups::Cgroups,
    pids: &ns::PidMap,
) -> Result<(pb::PstreeEntry, DumpReport, Vec<pb::FdinfoEntry>)> {
    let mem = ProcMem::open(pid)?;
    let ip = threads[0].find_syscall_ip(&mem)?;
    for t in threads.iter_mut().skip(1) {
        t.set_syscall_ip(ip);
    }
    let scratch = Scratch::map(&mut threads[0], 4096)?;
    let collected = collect_one(
        opts, dir, pid, ppid, stat, threads, &mem, &scratch, files, ids, pages_id, cgroups, pids,
    );
    // The scratch page goes before anything else happens to the task.
    let unmapped = scratch.unmap(&mut threads[0]);
    let out = collected?;
    unmapped?;
    Ok(out)
}

#[allow(clippy::too_many_arguments)]
fn collect_one(
    opts: &DumpOptions,
    dir: &ImageDir,
    pid: i32,
    ppid: i32,
    stat: &procfs::Stat,
    threads: &mut [Tracee],
    mem: &ProcMem,
    scratch: &Scratch,
    files: &mut files::FileTable,
    ids: &pb::TaskKobjIdsEntry,
    pages_id: u32,
    cgroups: &mut cgroups::Cgroups,
    pids: &ns::PidMap,
) -> Result<(pb::PstreeEntry, DumpReport, Vec<pb::FdinfoEntry>)> {
    let status = procfs::status(pid)?;
    let (tc, remote_mm) = task::collect_process(&mut threads[0], mem, scratch, stat)?;
    let mut cores = Vec::with_capacity(threads.len());
    for t in threads.iter_mut() {
        let th = task::collect_thread(t, mem, scratch, pid)?;
        let tc = (th.tid == pid).then(|| tc.clone());
        let tid = th.tid;
        let mut core = task::core_entry(th, tc);
        for t in core
            .tc
            .iter_mut()
            .filter_map(|tc| tc.timers.as_mut())
            .flat_map(|t| t.posix.iter_mut())
        {
            t.notify_thread_id = t.notify_thread_id.map(|h| pids.virt(h));
        }
        let cg_set = Some(cgroups.set_of(tid)?);
        if let Some(thread_core) = core.thread_core.as_mut() {
            thread_core.cg_set = cg_set;
            if let (Some(map), Some(creds)) = (&pids.users, thread_core.creds.as_mut()) {
                map.creds(creds);
            }
            files.side.seccomp.collect(pid, tid, thread_core)?;
        }
        // Also where CRIU 3.x (and its crit) look for the process's set.
        if let Some(tc) = core.tc.as_mut() {
            tc.cg_set = cg_set;
        }
        cores.push((tid, core));
    }
    check_interrupt()?;

    let fdinfo = files::collect_fds(pid, files, opts.shell_job || opts.orphan_pts_master)?;
    let fs = files::collect_fs(pid, files, status.umask)?;
    let exe = procfs::link(pid, "exe")?;
    let exe_meta = std::fs::metadata(format!("/proc/{pid}/exe")).ok();
    let exe_id = files.reg(&exe, libc::O_RDONLY as u32, 0, -1, exe_meta.as_ref());

    // The scratch page is ours, not the task's: cut it out of the address space (the
    // kernel may have merged it with a neighbouring anonymous mapping).
    let maps = procfs::without_range(
        procfs::smaps(pid)?,
        scratch.addr,
        scratch.addr + scratch.len,
    );
    let vmas = memory::collect_vmas(pid, &maps, files)?;
    let shared = memory::shared_contents(pid, &vmas, &mut files.side.shmem_dumped)?;
    let perf = memory::perf_data_contents(pid, &maps, &vmas, &mut files.side.shmem_dumped)?;
    files.side.memfd_contents.extend(perf);
    files.side.memfd_contents.extend(shared);

    let empty: std::collections::HashSet<u64> = maps
        .iter()
        .filter(|m| !m.has_pages)
        .map(|m| m.start)
        .collect();
    let mm = pb::MmEntry {
        mm_start_code: stat.start_code,
        mm_end_code: stat.end_code,
        mm_start_data: stat.start_data,
        mm_end_data: stat.end_data,
        mm_start_stack: stat.start_stack,
        mm_start_brk: stat.start_brk,
        mm_brk: remote_mm.brk,
        mm_arg_start: stat.arg_start,
        mm_arg_end: stat.arg_end,
        mm_env_start: stat.env_start,
        mm_env_end: stat.env_end,
        exe_file_id: exe_id,
        mm_saved_auxv: procfs::auxv(pid)?,
        vmas,
        dumpable: Some(remote_mm.dumpable),
        aios: Vec::new(),
        thp_disabled: Some(remote_mm.thp_disabled),
    };
    check_interrupt()?;

    let t_mem = Instant::now();
    let (pagemap, pstats) = memory::plan_pages(pid, &mm.vmas, &empty)?;
    let pages_path = dir.file_path(&names::pages(pages_id));
    let out = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode_0600()
        .open(&pages_path)
        .map_err(|source| DumpError::Io {
            path: pages_path.clone(),
            source,
        })?;
    let t_write = Instant::now();
    memory::write_pages(pid, &pagemap, out, &pages_path, &interrupted)?;
    let report = DumpReport {
        memwrite_us: t_write.elapsed().as_micros() as u32,
        memdump_us: t_mem.elapsed().as_micros() as u32,
        pages_scanned: pstats.pages_scanned,
        pages_written: pstats.pages_written,
        ..Default::default()
    };
    check_interrupt()?;

    let upid = pids.virt(pid) as u32;
    for (tid, core) in &cores {
        dir.write_one(ImageKind::CORE, &names::core(pids.virt(*tid) as u32), core)?;
    }
    dir.write_one(ImageKind::IDS, &names::ids(upid), ids)?;
    dir.write_one(ImageKind::MM, &names::mm(upid), &mm)?;
    dir.write_pagemap(upid, &pb::PagemapHead { pages_id }, &pagemap)?;
    dir.write(ImageKind::FDINFO, &names::fdinfo(ids.files_id), &fdinfo)?;
    dir.write_one(ImageKind::FS, &names::fs(upid), &fs)?;
    let (pgid, sid) = group_inside(pids, pid, stat)?;
    let entry = pb::PstreeEntry {
        pid: upid,
        ppid: pids.virt(ppid) as u32,
        pgid,
        sid,
        threads: cores
            .iter()
            .map(|(tid, _)| pids.virt(*tid) as u32)
            .collect(),
    };
    Ok((entry, report, fdinfo))
}

/// Writes the images of the root's own namespaces (all but the pid namespace, which is
/// the tree itself, and a network namespace asked to be restored empty).
fn dump_namespaces(
    opts: &DumpOptions,
    dir: &ImageDir,
    own: &ns::OwnNamespaces,
    users: Option<&ns::IdMap>,
) -> Result<()> {
    let pid = opts.pid;
    if let Some(map) = users {
        ns::dump_userns(map, dir, own.id(5))?;
    }
    if own.has("uts") {
        ns::dump_uts(pid, dir, own.id(3))?;
    }
    if own.has("mnt") {
        mounts::dump(
            pid,
            dir,
            own.id(4),
            &opts.external_mounts,
            users.is_some(),
            opts.external_mounts_auto,
        )?;
    }
    if own.has("time") {
        ns::dump_time(pid, dir, own.id(7))?;
    }
    if own.has("ipc") {
        ipc::dump_ipc_ns(pid, dir, own.id(2), users)?;
    }
    if let (true, Some(key)) = (own.has("net"), external_netns(opts)?) {
        let entry = pb::NetnsEntry {
            ext_key: Some(key),
            ..Default::default()
        };
        dir.write_one(ImageKind::NETNS, &names::netns(own.id(1)), &entry)?;
    } else if own.has("net") && opts.empty_ns & libc::CLONE_NEWNET == 0 {
        stasis_netns::dump_netns(pid, dir, own.id(1)).map_err(|e| DumpError::Unsupported {
            pid,
            what: format!("in its network namespace: {e}"),
        })?;
    }
    Ok(())
}

/// The key of the root's network namespace when the caller declared it external.
fn external_netns(opts: &DumpOptions) -> Result<Option<String>> {
    if opts.external_netns.is_empty() {
        return Ok(None);
    }
    let ino = procfs::ns_inode(opts.pid, "net")?;
    Ok(opts
        .external_netns
        .iter()
        .find(|(i, _)| *i == ino)
        .map(|(_, k)| k.clone()))
}

fn write_stats(opts: &DumpOptions, r: &DumpReport) -> Result<()> {
    let work = ImageDir::create(&opts.work_dir)?;
    let stats = pb::StatsEntry {
        dump: Some(pb::DumpStatsEntry {
            freezing_time: r.freezing_us,
            frozen_time: r.frozen_us,
            memdump_time: r.memdump_us,
            memwrite_time: r.memwrite_us,
            pages_scanned: r.pages_scanned,
            pages_skipped_parent: 0,
            pages_written: r.pages_written,
            pages_lazy: 0,
            ..Default::default()
        }),
        restore: None,
    };
    work.write_one(ImageKind::STATS, names::STATS_DUMP, &stats)?;
    Ok(())
}

fn run_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("stasis-{}-{nanos:x}", std::process::id())
}

trait OpenMode {
    fn mode_0600(&mut self) -> &mut Self;
}

impl OpenMode for std::fs::OpenOptions {
    fn mode_0600(&mut self) -> &mut Self {
        std::os::unix::fs::OpenOptionsExt::mode(self, 0o600)
    }
}
