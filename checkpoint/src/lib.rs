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

mod cpu_record;
mod fds;
mod files;
mod hook;
mod memory;
mod procfs;
mod task;
pub mod x86;

pub use hook::{DumpHook, DumpStage};
pub use memory::{madv, status as vma_status, PAGE};

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
    #[error("internal error: {0}")]
    Internal(String),
}

/// Result of the dump engine.
pub type Result<T> = std::result::Result<T, DumpError>;

/// What to dump and how.
#[derive(Clone, Debug)]
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
    /// Dump established TCP connections (CRIU's `--tcp-established`); without it they
    /// are refused.
    pub tcp_established: bool,
    /// Called at each [`DumpStage`]; an error stops the dump (CRIU's action scripts).
    pub hook: DumpHook,
    /// How long freezing may take (CRIU's `--timeout`).
    pub timeout: std::time::Duration,
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

/// Everything the dump checks before it freezes anything.
fn preflight(pid: i32, shell_job: bool) -> Result<procfs::Stat> {
    let stat = procfs::stat(pid)?;
    if stat.state == 'Z' || stat.state == 'X' {
        return Err(DumpError::Unsupported {
            pid,
            what: "is a zombie".into(),
        });
    }
    for tid in procfs::threads(pid)? {
        // A thread that exits meanwhile has no children file: it has no children either.
        if !procfs::children(pid, tid).unwrap_or_default().is_empty() {
            return Err(DumpError::Unsupported {
                pid,
                what: format!(
                    "thread {tid} has child processes; process trees are not supported yet"
                ),
            });
        }
    }

    for ns in ["pid", "mnt", "net", "ipc", "uts", "user", "cgroup", "time"] {
        let mine = procfs::ns_inode(std::process::id() as i32, ns)?;
        if procfs::ns_inode(pid, ns)? != mine {
            return Err(DumpError::Unsupported {
                pid,
                what: format!("lives in its own {ns} namespace; namespaces are not supported yet"),
            });
        }
    }
    if stat.sid != pid && !shell_job {
        return Err(DumpError::Unsupported {
            pid,
            what: format!(
                "is in session {} whose leader is not dumped; dump it with --shell-job (-j)",
                stat.sid
            ),
        });
    }
    Ok(stat)
}

/// Seizes every thread of `pid`, the leader first, until no new thread appears: a thread
/// created while the others were being stopped is caught by the next pass.
fn seize_threads(pid: i32, deadline: Instant) -> Result<Vec<Tracee>> {
    let mut held: Vec<Tracee> = vec![Tracee::seize(pid)?];
    loop {
        let mut new = 0;
        for tid in procfs::threads(pid)? {
            if held.iter().any(|t| t.pid() == tid) {
                continue;
            }
            match Tracee::seize(tid) {
                Ok(t) => {
                    held.push(t);
                    new += 1;
                }
                // It exited between the listing and the seize.
                Err(_) if !std::path::Path::new(&format!("/proc/{pid}/task/{tid}")).exists() => {}
                Err(e) => return Err(e.into()),
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

fn dump_seized(opts: &DumpOptions, dir: &ImageDir) -> Result<DumpReport> {
    let pid = opts.pid;
    let t0 = Instant::now();
    preflight(pid, opts.shell_job)?;
    let mut threads = seize_threads(pid, t0 + opts.timeout)?;
    let frozen_at = Instant::now();
    log::info!(
        "seized pid {pid} ({} threads) in {:?}",
        threads.len(),
        frozen_at - t0
    );
    let mem = ProcMem::open(pid)?;
    let ip = threads[0].find_syscall_ip(&mem)?;
    for t in &mut threads[1..] {
        t.set_syscall_ip(ip);
    }
    let scratch = Scratch::map(&mut threads[0], 4096)?;
    let collected = collect(opts, dir, &mut threads, &mem, &scratch);
    // The scratch page goes before anything else happens to the task.
    let unmapped = scratch.unmap(&mut threads[0]);
    let mut report = collected?;
    unmapped?;
    report.freezing_us = (frozen_at - t0).as_micros() as u32;

    check_interrupt()?;
    write_stats(opts, &report)?;
    check_interrupt()?;
    let stage = DumpStage::ImagesWritten;
    (opts.hook.call(stage)).map_err(|what| DumpError::Stopped { stage, what })?;
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
    report.frozen_us = frozen_at.elapsed().as_micros() as u32;
    Ok(report)
}

fn collect(
    opts: &DumpOptions,
    dir: &ImageDir,
    threads: &mut [Tracee],
    mem: &ProcMem,
    scratch: &Scratch,
) -> Result<DumpReport> {
    let pid = opts.pid;
    // Re-read after the freeze: the task cannot change any more.
    let stat = preflight(pid, opts.shell_job)?;
    let status = procfs::status(pid)?;
    if status.seccomp != 0 {
        return Err(DumpError::Unsupported {
            pid,
            what: "has seccomp filters; not supported yet".into(),
        });
    }
    let timers = procfs::text(pid, "timers").unwrap_or_default();
    if !timers.trim().is_empty() {
        return Err(DumpError::Unsupported {
            pid,
            what: "has POSIX timers; not supported yet".into(),
        });
    }
    let (tc, remote_mm) = task::collect_process(&mut threads[0], mem, scratch, &stat)?;
    let mut cores = Vec::with_capacity(threads.len());
    for t in threads.iter_mut() {
        let th = task::collect_thread(t, mem, scratch, pid)?;
        let tc = (th.tid == pid).then(|| tc.clone());
        cores.push((th.tid, task::core_entry(th, tc)));
    }
    check_interrupt()?;

    let mut files = files::FileTable::default();
    let fdinfo = files::collect_fds(pid, &mut files, opts.shell_job)?;
    let fs = files::collect_fs(pid, &mut files, status.umask)?;
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
    let vmas = memory::collect_vmas(pid, &maps, &mut files)?;
    let empty: std::collections::HashSet<u64> = maps
        .iter()
        .filter(|m| !m.has_pages)
        .map(|m| m.start)
        .collect();

    let auxv = procfs::auxv(pid)?;
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
        mm_saved_auxv: auxv,
        vmas,
        dumpable: Some(remote_mm.dumpable),
        aios: Vec::new(),
        thp_disabled: Some(remote_mm.thp_disabled),
    };
    check_interrupt()?;

    let t_mem = Instant::now();
    let (pagemap, pstats) = memory::plan_pages(pid, &mm.vmas, &empty)?;

    let pages_name = names::pages(1);
    let pages_path = dir.file_path(&pages_name);
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
    let memwrite_us = t_write.elapsed().as_micros() as u32;
    let memdump_us = t_mem.elapsed().as_micros() as u32;
    check_interrupt()?;

    let ids = pb::TaskKobjIdsEntry {
        vm_id: 1,
        files_id: 2,
        fs_id: 3,
        sighand_id: 4,
        pid_ns_id: Some(5),
        net_ns_id: Some(6),
        ipc_ns_id: Some(7),
        uts_ns_id: Some(8),
        mnt_ns_id: Some(9),
        user_ns_id: Some(10),
        cgroup_ns_id: Some(11),
        time_ns_id: Some(12),
    };
    let root_ids = pb::TaskKobjIdsEntry {
        vm_id: 13,
        files_id: 14,
        fs_id: 15,
        sighand_id: 16,
        ..ids
    };
    let pstree = pb::PstreeEntry {
        pid: pid as u32,
        ppid: 0,
        pgid: stat.pgid as u32,
        sid: stat.sid as u32,
        threads: cores.iter().map(|(tid, _)| *tid as u32).collect(),
    };

    let upid = pid as u32;
    for (tid, core) in &cores {
        dir.write_one(ImageKind::CORE, &names::core(*tid as u32), core)?;
    }
    dir.write_one(ImageKind::IDS, &names::ids(upid), &ids)?;
    dir.write_one(ImageKind::MM, &names::mm(upid), &mm)?;
    dir.write_pagemap(upid, &pb::PagemapHead { pages_id: 1 }, &pagemap)?;
    dir.write(ImageKind::FDINFO, &names::fdinfo(ids.files_id), &fdinfo)?;
    dir.write_one(ImageKind::FS, &names::fs(upid), &fs)?;
    files.write_images(dir)?;
    dir.write_one(
        ImageKind::SECCOMP,
        names::SECCOMP,
        &pb::SeccompEntry::default(),
    )?;
    dir.write_one(ImageKind::PSTREE, names::PSTREE, &pstree)?;
    cpu_record::write(dir)?;
    let inventory = pb::InventoryEntry {
        img_version: 2,
        fdinfo_per_id: Some(true),
        root_ids: Some(root_ids),
        ns_per_id: Some(true),
        lsmtype: Some(pb::Lsmtype::NoLsm as i32),
        network_lock_method: Some(2),
        plugins_entry: Some(pb::PluginsEntry {
            plugins: Vec::new(),
        }),
        dump_criu_run_id: Some(run_id()),
        ..Default::default()
    };
    dir.write_one(ImageKind::INVENTORY, names::INVENTORY, &inventory)?;
    Ok(DumpReport {
        memdump_us,
        memwrite_us,
        pages_scanned: pstats.pages_scanned,
        pages_written: pstats.pages_written,
        ..Default::default()
    })
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
