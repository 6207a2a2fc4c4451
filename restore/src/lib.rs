//! The restore engine: read → plan → preflight → fork with the original PID → the child
//! rebuilds what it can itself → the final metamorphosis from outside → resume.
//!
//! Nothing is created until the plan is read and every preflight check has passed. A
//! restore that fails after the fork kills the half-built task, so no process is left
//! behind; the images are only read, never changed.
//!
//! This crate uses two modules of `stasis-checkpoint` that both directions share: the
//! x86 register conversions and the VMA status bits.
#![forbid(unsafe_code)]

mod cgroups;
mod child;
mod cow;
mod cpu_gate;
mod fds;
mod hook;
mod ipc;
mod layout;
mod ns;
mod plan;
mod preflight;
mod rebuild;
mod vma;

use plan::{TaskNode, TreePlan};
use std::collections::HashMap;

pub use hook::{RestoreHook, RestoreStage};
pub use stasis_cgroup::{parse_cgroup_root, ManageMode};
use stasis_images::{names, pb, ImageDir, ImageKind};
use stasis_parasite::Tracee;
use stasis_sys::process::{self, Forked};
use stasis_sys::ptrace::{self, WaitStatus};
use std::io::Read;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// What can make a restore fail. Every message names the file, PID or object.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error("pid {pid} is already in use; the image's process needs it")]
    PidTaken { pid: i32 },
    #[error("{what} {path} is missing: {source}")]
    FileMissing {
        what: String,
        path: String,
        source: std::io::Error,
    },
    #[error("{file}: {what}")]
    BadImage { file: String, what: String },
    #[error("not supported: {0}")]
    Unsupported(String),
    #[error("CPU check: {0}")]
    Cpu(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {what}")]
    Proc { path: String, what: String },
    #[error("restoring pid {pid}: {what}")]
    Child { pid: i32, what: String },
    #[error("rebuilding the address space: {0}")]
    Rebuild(String),
    #[error("the caller stopped the restore {stage}: {what}; the task was killed")]
    Stopped { stage: RestoreStage, what: String },
    #[error(transparent)]
    Image(#[from] stasis_images::ImageError),
    #[error(transparent)]
    Cgroup(#[from] stasis_cgroup::CgroupError),
    #[error(transparent)]
    Parasite(#[from] stasis_parasite::ParasiteError),
    #[error(transparent)]
    Sys(#[from] stasis_sys::SysError),
}

/// Result of the restore engine.
pub type Result<T> = std::result::Result<T, RestoreError>;

/// What to restore and how.
#[derive(Clone, Debug, Default)]
pub struct RestoreOptions {
    pub images_dir: PathBuf,
    /// Where `stats-restore` goes.
    pub work_dir: PathBuf,
    /// Return once the task runs (`-d`), instead of waiting for it like CRIU.
    pub detached: bool,
    pub pidfile: Option<PathBuf>,
    /// The task was dumped as part of a shell job: it joins stasis's session.
    pub shell_job: bool,
    /// Restore established TCP connections (CRIU's `--tcp-established`); an image
    /// holding one is refused without it.
    pub tcp_established: bool,
    /// The restored task becomes a sibling of stasis (a child of stasis's parent).
    pub restore_sibling: bool,
    /// Run the whole preflight and stop.
    pub check_only: bool,
    /// CRIU's `--cpu-cap` value (`fpu,jvm`, `^ins`, `none`...); `None`: the default for
    /// the image, `fpu` plus `jvm` when it holds a JVM.
    pub cpu_cap: Option<String>,
    /// Called at each [`RestoreStage`]; an error stops the restore (CRIU's action scripts).
    pub hook: RestoreHook,
    /// `--manage-cgroups`: what is done with the cgroups of `cgroup.img` (soft by default).
    pub manage_cgroups: ManageMode,
    /// `--cgroup-root [CTRL:]PATH`: the recorded cgroups of a hierarchy (all, for `None`;
    /// cgroup v2 for `Some("")`) go under a new path.
    pub cgroup_root: Vec<(Option<String>, PathBuf)>,
    /// `--root`: the directory that becomes the root of a restored mount namespace.
    pub root: Option<PathBuf>,
    /// External mounts, key recorded at dump → host path (`--ext-mount-map KEY:VAL`,
    /// `--external mnt[KEY]:VAL`).
    pub external_mounts: Vec<(String, String)>,
    /// Veths of a restored network namespace: inside name → the peer's name on the
    /// host (`--external veth[IN]:OUT`, the RPC's `veths`).
    pub veths: Vec<(String, String)>,
    /// `--inherit-fd fd[N]:KEY`: the object the image knows by KEY (`pipe:[INODE]`, a
    /// file's path) is stasis's descriptor N, not recreated.
    pub inherit_fds: Vec<(String, i32)>,
    /// `--join-ns NS:PATH`: join these namespaces instead of recreating them.
    pub join_ns: Vec<(String, PathBuf)>,
    /// A pty of the container's own devpts whose master was outside the tree (its
    /// console) is made anew and its master handed to the hook
    /// ([`RestoreStage::OrphanPtsMaster`]); CRIU's RPC `orphan_pts_master`. Without it
    /// such an image is refused.
    pub orphan_pts_master: bool,
}

/// How a restore ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RestoreOutcome {
    /// The task runs (detached restore).
    Running { pid: i32 },
    /// The preflight passed; nothing was created.
    CheckedOnly,
    /// Not detached: the restored task ran and exited.
    Exited { pid: i32, code: i32 },
    /// Not detached: the restored task was killed.
    Killed { pid: i32, signal: i32 },
}

/// Restores the image set in `opts.images_dir`.
pub fn restore(opts: &RestoreOptions) -> Result<RestoreOutcome> {
    let t0 = Instant::now();
    let dir = ImageDir::open(&opts.images_dir)?;
    let mut tree = plan::read(&dir)?;
    tree.ns.join(&opts.join_ns)?;
    if let Some(key) = &tree.ns.net_ext_key {
        if !opts.inherit_fds.iter().any(|(k, _)| k == key) {
            return Err(RestoreError::Unsupported(format!(
                "the image's network namespace is external (key {key}): give it with --inherit-fd fd[N]:{key}"
            )));
        }
    }
    log::debug!(
        "read the plan of {} processes in {:?}",
        tree.tasks.len(),
        t0.elapsed()
    );
    for task in &tree.tasks {
        match task {
            TaskNode::Alive(plan) => {
                preflight::check(plan, &dir, opts.cpu_cap.as_deref(), tree.ns.flags)?;
                fds::inet::check_options(&plan.objects, opts.tcp_established)?;
            }
            TaskNode::Zombie { pid, .. }
                if tree.ns.flags & libc::CLONE_NEWPID == 0 && process::pid_in_use(*pid) =>
            {
                return Err(RestoreError::PidTaken { pid: *pid })
            }
            TaskNode::Zombie { .. } => {}
        }
    }
    for (i, t) in tree.tasks.iter().enumerate() {
        if let (TaskNode::Alive(p), true) = (t, tree.shares_fs_with_parent(i)) {
            if p.root != "/" {
                return Err(RestoreError::Unsupported(format!(
                    "pid {} shares cwd and root with its parent (CLONE_FS) inside the chroot {}",
                    p.pid, p.root
                )));
            }
        }
    }
    for h in &tree.helpers {
        if tree.ns.flags & libc::CLONE_NEWPID == 0 && process::pid_in_use(h.pid) {
            return Err(RestoreError::PidTaken { pid: h.pid });
        }
    }
    let console = match tree.root() {
        TaskNode::Alive(p) => ns::container_ptys(&tree.ns, p.objects.ttys.values()),
        TaskNode::Zombie { .. } => Vec::new(),
    };
    if let (Some(t), false) = (console.first(), opts.orphan_pts_master) {
        return Err(RestoreError::Unsupported(format!(
            "the terminal /dev/pts/{} lived in the container's own devpts with its master \
             outside the tree (a runtime's console): restore it with orphan_pts_master \
             through the RPC (runc restore --console-socket), which hands over a new master",
            t.pty.as_ref().map_or(0, |p| p.index)
        )));
    }
    let mount_opts = ns::MountOptions {
        root: opts.root.clone(),
        external: opts.external_mounts.clone(),
        orphan_ptys: console,
    };
    ns::preflight(&tree.ns, &dir, &mount_opts)?;
    let cgroups = cgroups::Cgroups::check(&dir, opts, &tree)?;
    log::debug!("preflight passed at {:?}", t0.elapsed());
    if opts.check_only {
        return Ok(RestoreOutcome::CheckedOnly);
    }
    let root = tree.root().pid();
    // Perf-data files another JVM removed since the dump; removed again if this fails.
    let mut perf_files = CreatedFiles(preflight::recreate_perf_data(&tree, &dir)?);
    let floor = child::tree_high_fd(&tree) + 2;
    log::debug!(
        "the tasks' own descriptors: pages at {}, reports at {}, stasis's from {floor}",
        floor - 2,
        floor - 1
    );
    let (shmem, shmem_fds) = shared_objects(&tree, &dir, floor)?;
    // The images directory, by descriptor: the tasks open their pages through it, even
    // after the root's pivot_root.
    let images = std::fs::File::from(stasis_sys::fdops::dup_above(
        std::os::fd::AsFd::as_fd(&ns::open_images(&opts.images_dir)?),
        floor,
    )?);
    // The child puts its pages at the tree's highest number and its report pipe just
    // above, over whatever was there: everything the root keeps of stasis's descriptors
    // (the images, the parked objects, the go pipe, the inherited files) sits at
    // `floor` or above. The inherited ones are copies; stasis keeps its originals.
    let inherited_fds: Vec<(String, std::os::fd::OwnedFd)> = opts
        .inherit_fds
        .iter()
        .map(|(key, fd)| {
            stasis_sys::fd::dup_number(*fd, floor)
                .map(|copy| (key.clone(), copy))
                .map_err(|e| RestoreError::Unsupported(format!("--inherit-fd fd[{fd}]:{key}: {e}")))
        })
        .collect::<Result<_>>()?;
    let inherited: Vec<(String, i32)> = inherited_fds
        .iter()
        .map(|(key, fd)| (key.clone(), fd.as_raw_fd()))
        .collect();
    let mut keep: Vec<i32> = shmem.values().copied().collect();
    keep.push(images.as_raw_fd());
    // Orphans of a failed restore are reparented to stasis, which reaps them.

    process::set_child_subreaper(true)?;
    // Created before the fork; removed again if the restore fails (after its tasks).
    let mut cgroups = cgroups.prepare()?;
    let (reports, writer) = std::io::pipe().map_err(|source| RestoreError::Io {
        path: "pipe".into(),
        source,
    })?;
    let with_ns = tree.ns.flags != 0 || tree.ns.cgroup;
    let (go_read, mut go_write) = if with_ns {
        let (r, w) = std::io::pipe().map_err(|source| RestoreError::Io {
            path: "pipe".into(),
            source,
        })?;
        let r = stasis_sys::fdops::dup_above(std::os::fd::AsFd::as_fd(&r), floor)?;
        (Some(std::fs::File::from(r)), Some(w))
    } else {
        (None, None)
    };
    let mut flags = tree.ns.flags as u64;
    if opts.restore_sibling {
        flags |= process::CLONE_PARENT;
    }
    // In a new pid namespace the root is its init: PID 1 there, any PID on the host.
    let set_tid: &[i32] = if tree.ns.flags & libc::CLONE_NEWPID != 0 {
        &[]
    } else {
        std::slice::from_ref(&root)
    };
    let fork_at = Instant::now();
    let root_host = match process::fork_with_pid(set_tid, flags) {
        Ok(Forked::Child) => {
            drop(reports);
            drop(go_write);
            let setup = child::RootSetup {
                dir: &opts.images_dir,
                mounts: &mount_opts,
                go: go_read,
                inherited: &inherited,
            };
            let forking = child::Forking {
                tree: &tree,
                images: &images,
                shell_job: opts.shell_job,
                extra: &keep,
            };
            child::run(forking, 0, writer.as_raw_fd(), None, Some(setup), None, &[])
        }
        Ok(Forked::Parent(pid)) => pid,
        Err(e) if e.errno() == Some(libc::EEXIST) => {
            return Err(RestoreError::PidTaken { pid: root })
        }
        Err(e) => return Err(e.into()),
    };
    drop(writer);
    drop(go_read);
    // The parked objects live on in the tree; stasis's copies go.
    drop(shmem_fds);
    drop(inherited_fds);
    let forking_us = fork_at.elapsed().as_micros() as u32;
    let own_child = !opts.restore_sibling;
    let mut reports = Reports::new(reports);
    let mut hosts = Hosts::identity();
    let built = (|| {
        if let Some(go) = go_write.as_mut() {
            // A user namespace of its own: mapped before the root does anything in it.
            if let Some(users) = &tree.ns.users {
                ns::write_id_maps(root_host, users)?;
                std::io::Write::write_all(go, b"u").map_err(|source| RestoreError::Io {
                    path: "namespace pipe".into(),
                    source,
                })?;
            }
            reports.wait_for(&[root], "N")?;
            if let (Some(id), Some(users)) = (tree.ns.ipc_id, &tree.ns.users) {
                ipc::restore_ipc_ns_from_host(root_host, &dir, id, users).map_err(|what| {
                    RestoreError::Child {
                        pid: root_host,
                        what: format!("restoring its ipc namespace: {what}"),
                    }
                })?;
            }
            ns::setup_network(&tree.ns, &dir, root_host, &opts.veths)?;
            // The root's cgroups, before it unshares its cgroup namespace (they are the
            // namespace's root) and before it allocates memory: the copies it makes of
            // memory its children share (see cow.rs) are charged there, and the tasks
            // it forks start there.
            cgroups.enter_one(root, root_host)?;
            let stage = RestoreStage::NamespacesReady { pid: root_host };
            opts.hook
                .call(stage)
                .map_err(|what| RestoreError::Stopped { stage, what })?;
            hand_over_masters(&mount_opts.orphan_ptys, root_host, &opts.hook)?;
            std::io::Write::write_all(go, b"g").map_err(|source| RestoreError::Io {
                path: "namespace pipe".into(),
                source,
            })?;
        }
        let alive: Vec<i32> = tree.alive().map(|p| p.pid).collect();
        reports.wait_for(&alive, "R")?;
        // Where each task put its pages image (a task sharing its parent's table cannot
        // use the common number) and its copies of memory shared with its parent.
        let ready: HashMap<i32, Ready> = reports
            .said
            .iter()
            .map(|(pid, text)| Ready::parse(text).map(|r| (*pid, r)))
            .collect::<Result<_>>()?;
        if tree.ns.flags & libc::CLONE_NEWPID != 0 {
            hosts = Hosts(Some(ns::host_pids(root_host)?));
        }
        cgroups.enter_all(&|p| hosts.get(p))?;
        // A namespace dumped under the network lock comes back locked, and connections
        // dumped out of a namespace that went on are still locked one by one in it:
        // unlocked once every task is rebuilt, before any runs.
        let conns_locked = tree.alive().any(|p| fds::inet::has_established(&p.objects));
        let unlock = || -> Result<()> {
            match (&tree.ns.net_id, &tree.lock_table) {
                (net, Some(table)) if net.is_some() || conns_locked => {
                    stasis_netns::unlock(root_host, table).map_err(|e| RestoreError::Child {
                        pid: root_host,
                        what: format!("unlocking its network: {e}"),
                    })
                }
                _ => Ok(()),
            }
        };
        build_all(
            &tree,
            &dir,
            &opts.hook,
            &mut cgroups,
            &shmem,
            &hosts,
            images.as_raw_fd(),
            &ready,
            &unlock,
        )
    })();
    drop(go_write);
    if let Err(e) = built {
        // Kill the half-built tree (killing a task releases it from ptrace) and reap it.
        // In its own pid namespace, killing its init kills it all (the image's PIDs are
        // not host PIDs there); else every task has its image PID.
        let _ = process::kill(root_host, libc::SIGKILL);
        if tree.ns.flags & libc::CLONE_NEWPID == 0 {
            for t in &tree.tasks {
                let _ = process::kill(t.pid(), libc::SIGKILL);
            }
        }
        reap_orphans(Duration::from_secs(2));
        return Err(e);
    }
    let root = root_host;
    cgroups.keep();
    let pages: u64 = tree.alive().map(|p| p.pages_bytes / 4096).sum();
    let stats = pb::StatsEntry {
        dump: None,
        restore: Some(pb::RestoreStatsEntry {
            pages_compared: 0,
            pages_skipped_cow: 0,
            forking_time: forking_us,
            restore_time: t0.elapsed().as_micros() as u32,
            pages_restored: Some(pages),
        }),
    };
    if let Err(e) = ImageDir::create(&opts.work_dir)
        .and_then(|w| w.write_one(ImageKind::STATS, names::STATS_RESTORE, &stats))
    {
        log::warn!("cannot write {}: {e}", names::STATS_RESTORE);
    }
    if let Some(p) = &opts.pidfile {
        std::fs::write(p, format!("{root}\n")).map_err(|source| RestoreError::Io {
            path: p.clone(),
            source,
        })?;
    }
    // The restored tree owns the recreated files now.
    perf_files.0.clear();
    log::info!(
        "restored pid {root} ({} processes) in {:?}",
        tree.tasks.len(),
        t0.elapsed()
    );
    if opts.detached || !own_child {
        return Ok(RestoreOutcome::Running { pid: root });
    }
    loop {
        match ptrace::waitpid(root, 0)?.1 {
            WaitStatus::Exited(code) => return Ok(RestoreOutcome::Exited { pid: root, code }),
            WaitStatus::Signaled(signal) => {
                return Ok(RestoreOutcome::Killed { pid: root, signal })
            }
            _ => continue,
        }
    }
}

/// Creates every shared anonymous object of the tree as a memfd filled from its images,
/// parked at `floor` or above, for the restoring tasks to inherit and map.
fn shared_objects(
    tree: &TreePlan,
    dir: &ImageDir,
    floor: i32,
) -> Result<(rebuild::SharedObjects, Vec<std::os::fd::OwnedFd>)> {
    use std::os::unix::fs::FileExt;
    let mut sizes: std::collections::BTreeMap<u64, u64> = std::collections::BTreeMap::new();
    for plan in tree.alive() {
        for v in plan
            .mm
            .vmas
            .iter()
            .filter(|v| v.status & vma::ANON_SHARED != 0)
        {
            let end = v.pgoff.saturating_add(v.end - v.start);
            let size = sizes.entry(v.shmid).or_default();
            *size = (*size).max(end);
        }
    }
    let mut numbers = rebuild::SharedObjects::new();
    let mut owned = Vec::new();
    let mut total = 0u64;
    for (shmid, size) in sizes {
        let entry = pb::MemfdInodeEntry {
            shmid: shmid as u32,
            size,
            ..Default::default()
        };
        let chunks = fds::memfd::read_contents(dir, &entry, &mut total)?;
        let fd = stasis_sys::fdops::memfd_create("dev/zero", libc::MFD_CLOEXEC)?;
        let file = std::fs::File::from(fd);
        let io = |source: std::io::Error| RestoreError::Io {
            path: format!("shared memory object {shmid}").into(),
            source,
        };
        file.set_len(size).map_err(io)?;
        for (off, data) in &chunks {
            file.write_all_at(data, *off).map_err(io)?;
        }
        let parked = stasis_sys::fdops::dup_above(std::os::fd::AsFd::as_fd(&file), floor)?;
        numbers.insert(shmid, parked.as_raw_fd());
        owned.push(parked);
    }
    Ok((numbers, owned))
}

/// Reaps whatever children stasis has, for a while: the tasks of a failed restore.
/// The masters of the ptys the root made in its new devpts, each handed to the hook
/// (which passes it on, as runc passes it to its console socket); stasis's copies close.
fn hand_over_masters(ptys: &[pb::TtyInfoEntry], root_host: i32, hook: &RestoreHook) -> Result<()> {
    if ptys.is_empty() {
        return Ok(());
    }
    let failed = |what: String| RestoreError::Child {
        pid: root_host,
        what: format!("taking the new pty masters: {what}"),
    };
    let masters = fds::tty::take_masters(root_host).map_err(failed)?;
    if masters.len() != ptys.len() {
        return Err(failed(format!(
            "{} made, {} expected",
            masters.len(),
            ptys.len()
        )));
    }
    for (index, fd) in &masters {
        let stage = RestoreStage::OrphanPtsMaster {
            fd: fd.as_raw_fd(),
            index: *index,
        };
        hook.call(stage)
            .map_err(|what| RestoreError::Stopped { stage, what })?;
    }
    Ok(())
}

fn reap_orphans(limit: Duration) {
    let until = Instant::now() + limit;
    while Instant::now() < until {
        match ptrace::waitpid(-1, libc::WNOHANG) {
            Ok((0, _)) => std::thread::sleep(Duration::from_millis(5)),
            Ok(_) => {}
            Err(_) => return,
        }
    }
}

/// What a task's ready report (`R<pages fd>[ <start>:<copy>]...`, hex addresses) says.
struct Ready {
    pages_fd: i32,
    /// (VMA start, where its copy is): memory shared copy-on-write, see [`cow`].
    premaps: Vec<(u64, u64)>,
}

impl Ready {
    fn parse(text: &str) -> Result<Ready> {
        let bad = || RestoreError::Rebuild(format!("a task's ready report reads {text:?}"));
        let mut words = text.split_whitespace();
        let pages_fd = words.next().and_then(|w| w.parse().ok()).ok_or_else(bad)?;
        let premaps = words
            .map(|w| {
                let (s, a) = w.split_once(':')?;
                Some((
                    u64::from_str_radix(s, 16).ok()?,
                    u64::from_str_radix(a, 16).ok()?,
                ))
            })
            .collect::<Option<_>>()
            .ok_or_else(bad)?;
        Ok(Ready { pages_fd, premaps })
    }
}

/// The restoring tasks' reports: one line `<pid> <kind>[text]` each, `R` (ready), `N`
/// (the root's namespaces are ready) or `E<message>` (failed).
struct Reports {
    pipe: std::io::PipeReader,
    buf: Vec<u8>,
    /// The text after the kind of each task's last awaited report (`R<pages fd>`).
    said: HashMap<i32, String>,
}

impl Reports {
    fn new(pipe: std::io::PipeReader) -> Self {
        Reports {
            pipe,
            buf: Vec::new(),
            said: HashMap::new(),
        }
    }

    /// Waits until every pid of `pids` has reported `kind`; the first `E` report (or the
    /// pipe closing first) fails the restore with its message.
    fn wait_for(&mut self, pids: &[i32], kind: &str) -> Result<()> {
        let mut waiting: std::collections::HashSet<i32> = pids.iter().copied().collect();
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut chunk = [0u8; 4096];
        while !waiting.is_empty() {
            while let Some(end) = self.buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=end).collect();
                let line = String::from_utf8_lossy(&line[..line.len() - 1]).into_owned();
                let (pid, msg) = line.split_once(' ').unwrap_or((line.as_str(), ""));
                let pid: i32 = pid.parse().unwrap_or(0);
                match msg.split_at(msg.len().min(1)) {
                    (k, text) if k == kind => {
                        waiting.remove(&pid);
                        self.said.insert(pid, text.to_string());
                    }
                    ("E", text) => {
                        return Err(RestoreError::Child {
                            pid,
                            what: text.to_string(),
                        })
                    }
                    _ => {}
                }
            }
            if waiting.is_empty() {
                break;
            }
            if Instant::now() > deadline {
                return Err(RestoreError::Child {
                    pid: *waiting.iter().next().expect("one is waited for"),
                    what: format!("no report from pids {waiting:?} in 30 s"),
                });
            }
            let n = self
                .pipe
                .read(&mut chunk)
                .map_err(|source| RestoreError::Io {
                    path: "report pipe".into(),
                    source,
                })?;
            if n == 0 {
                return Err(RestoreError::Child {
                    pid: *waiting.iter().next().expect("one is waited for"),
                    what: "the restoring task died before it was ready".into(),
                });
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
        Ok(())
    }
}

/// Host PIDs of the restored tasks: the image's own, or (in a new pid namespace) found
/// through `NSpid`.
struct Hosts(Option<std::collections::HashMap<i32, i32>>);

impl Hosts {
    fn identity() -> Self {
        Hosts(None)
    }

    /// The host PID of the task with PID `pid` in the image.
    fn get(&self, pid: i32) -> i32 {
        match &self.0 {
            None => pid,
            Some(m) => m.get(&pid).copied().unwrap_or(0),
        }
    }
}

/// Seizes and rebuilds every live task, then lets the whole tree run at once.
#[allow(clippy::too_many_arguments)]
fn build_all(
    tree: &TreePlan,
    dir: &ImageDir,
    hook: &RestoreHook,
    cgroups: &mut cgroups::Restoring,
    shmem: &rebuild::SharedObjects,
    hosts: &Hosts,
    images_fd: i32,
    ready: &HashMap<i32, Ready>,
    before_resume: &dyn Fn() -> Result<()>,
) -> Result<()> {
    let hi = child::tree_high_fd(tree);
    // The report pipe, the images directory and the shared objects are stasis's, not
    // the task's: closed in it.
    let extra: Vec<i32> = [hi + 1, images_fd]
        .into_iter()
        .chain(shmem.values().copied())
        .collect();

    let mut held: Vec<(&plan::TaskPlan, Tracee, Vec<Tracee>)> = Vec::new();
    for (index, task) in tree.tasks.iter().enumerate() {
        let TaskNode::Alive(plan) = task else {
            continue;
        };
        let plan = plan.as_ref();
        // In a table shared with the parent, the parent's rebuild (before) closed them.
        let (pages_fd, premaps) = match ready.get(&plan.pid) {
            Some(r) => (r.pages_fd, r.premaps.as_slice()),
            None => (hi, &[][..]),
        };
        let extra = match tree.shares_files_with_parent(index) {
            true => &[][..],
            false => &extra[..],
        };
        let pid = hosts.get(plan.pid);
        if !premaps.is_empty() {
            log::debug!("pid {pid}: copies shared copy-on-write (vma, copy): {premaps:x?}");
        }
        let mut tracee = Tracee::seize(pid)?;
        log::debug!("pid {pid}: its own setup is done; seized");
        let pages_path = dir.file_path(&plan.pages_name);
        let pages = std::fs::File::open(&pages_path).map_err(|source| RestoreError::Io {
            path: pages_path,
            source,
        })?;
        let threads =
            match rebuild::rebuild(&mut tracee, plan, pages_fd, &pages, shmem, extra, premaps) {
                Ok(threads) => threads,
                Err(e) => {
                    let _ = tracee.kill();
                    return Err(e);
                }
            };
        for (r, lim) in plan
            .tc
            .rlimits
            .iter()
            .flat_map(|r| r.rlimits.iter())
            .enumerate()
        {
            let l = process::Rlimit {
                cur: lim.cur,
                max: lim.max,
            };
            if let Err(e) = process::set_rlimit(pid, r as u32, l) {
                return Err(RestoreError::Child {
                    pid,
                    what: format!("resource limit {r} ({}/{}): {e}", lim.cur, lim.max),
                });
            }
        }
        held.push((plan, tracee, threads));
    }
    // The limits, now that every task is in its cgroups and rebuilt, before any resumes.
    cgroups.apply_properties()?;
    // Once, for the tree (CRIU's post-restore names the root).
    let stage = RestoreStage::Restored {
        pid: hosts.get(tree.root().pid()),
    };
    hook.call(stage)
        .map_err(|what| RestoreError::Stopped { stage, what })?;
    before_resume()?;
    // STASIS_RESTORE_STOPPED=1 leaves the tasks stopped for inspection (debugging).
    let debug_stop = std::env::var_os("STASIS_RESTORE_STOPPED").is_some();
    for (plan, _, _) in &held {
        fds::inet::repair_off(hosts.get(plan.pid), plan)?;
    }
    // Every task is ready: let them all go, children first.
    // A stopped task gets its stop signal while still held: pending when it is let go,
    // it stops before running a single instruction of its own.
    for (plan, tracee, threads) in held.into_iter().rev() {
        if plan.tc.task_state == 3 || debug_stop {
            process::kill(
                hosts.get(plan.pid),
                plan.tc.stop_signo.map_or(libc::SIGSTOP, |s| s as i32),
            )?;
        }
        for t in threads {
            t.release()?;
        }
        tracee.release()?;
    }
    Ok(())
}

/// `stasis check`: what this kernel and these privileges lack for checkpoint/restore.
pub fn check_kernel(feature: Option<&str>) -> Result<Vec<String>> {
    let mut problems = Vec::new();
    match feature {
        None => {}
        Some("mem_dirty_track") | Some("lazy_pages") => {
            problems.push(format!(
                "feature {} is not available: this kernel has no soft-dirty page tracking",
                feature.unwrap_or_default()
            ));
        }
        Some(f) if KNOWN_FEATURES.contains(&f) => {}
        Some(f) => problems.push(format!("unknown feature {f:?}")),
    }
    let status =
        std::fs::read_to_string("/proc/self/status").map_err(|source| RestoreError::Io {
            path: "/proc/self/status".into(),
            source,
        })?;
    let caps = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .unwrap_or(0);
    for (bit, name) in [
        (19, "CAP_SYS_PTRACE"),
        (21, "CAP_SYS_ADMIN"),
        (40, "CAP_CHECKPOINT_RESTORE"),
    ] {
        if caps & (1u64 << bit) == 0 {
            problems.push(format!("{name} is missing"));
        }
    }
    let me = std::process::id() as i32;
    if ptrace::get_rseq_configuration(me).is_err() && process::pid_in_use(me) {
        // The request needs a tracee; its absence is only detectable at dump time.
    }
    if layout::special_mappings(me)?.vdso.is_none() {
        problems.push("this kernel maps no [vdso]".into());
    }
    if std::fs::read_link(format!("/proc/{me}/map_files")).is_err()
        && std::fs::read_dir(format!("/proc/{me}/map_files")).is_err()
    {
        problems.push("/proc/PID/map_files is not readable".into());
    }
    Ok(problems)
}

const KNOWN_FEATURES: &[&str] = &[
    "timens",
    "pidfd_store",
    "pidfd_getfd",
    "clone3_set_tid",
    "rseq",
    "ptrace_get_rseq_conf",
];

/// Files a restore created for the tree, removed if the restore fails before it is done.
struct CreatedFiles(Vec<PathBuf>);

impl Drop for CreatedFiles {
    fn drop(&mut self) {
        for p in &self.0 {
            let _ = std::fs::remove_file(p);
        }
    }
}
