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

mod child;
mod cpu_gate;
mod fds;
mod hook;
mod layout;
mod plan;
mod preflight;
mod rebuild;
mod vma;

pub use hook::{RestoreHook, RestoreStage};
use stasis_images::{names, pb, ImageDir, ImageKind};
use stasis_parasite::Tracee;
use stasis_sys::process::{self, Forked};
use stasis_sys::ptrace::{self, WaitStatus};
use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
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
    let plan = plan::read(&dir)?;
    log::debug!("read the plan in {:?}", t0.elapsed());
    preflight::check(&plan, &dir, opts.cpu_cap.as_deref())?;
    fds::inet::check_options(&plan.objects, opts.tcp_established)?;
    log::debug!("preflight passed at {:?}", t0.elapsed());

    if opts.check_only {
        return Ok(RestoreOutcome::CheckedOnly);
    }
    let pages_path = dir.file_path(&plan.pages_name);
    let pages = std::fs::File::open(&pages_path).map_err(|source| RestoreError::Io {
        path: pages_path,
        source,
    })?;
    let (ours, theirs) = UnixStream::pair().map_err(|source| RestoreError::Io {
        path: "socketpair".into(),
        source,
    })?;
    let flags = if opts.restore_sibling {
        process::CLONE_PARENT
    } else {
        0
    };
    let fork_at = Instant::now();
    let pid = match process::fork_with_pid(&[plan.pid], flags) {
        Ok(Forked::Child) => {
            drop(ours);
            child::run(&plan, pages.as_raw_fd(), theirs.as_raw_fd(), opts.shell_job)
        }
        Ok(Forked::Parent(pid)) => pid,
        Err(e) if e.errno() == Some(libc::EEXIST) => {
            return Err(RestoreError::PidTaken { pid: plan.pid })
        }
        Err(e) => return Err(e.into()),
    };
    drop(theirs);
    let forking_us = fork_at.elapsed().as_micros() as u32;
    let own_child = !opts.restore_sibling;
    match build(pid, &plan, ours, &pages, &opts.hook) {
        Ok(()) => {}
        Err(e) => {
            let _ = process::kill(pid, libc::SIGKILL);
            if own_child {
                let _ = ptrace::waitpid(pid, 0);
            }
            return Err(e);
        }
    }
    let stats = pb::StatsEntry {
        dump: None,
        restore: Some(pb::RestoreStatsEntry {
            pages_compared: 0,
            pages_skipped_cow: 0,
            forking_time: forking_us,
            restore_time: t0.elapsed().as_micros() as u32,
            pages_restored: Some(plan.pages_bytes / 4096),
        }),
    };
    if let Err(e) = ImageDir::create(&opts.work_dir)
        .and_then(|w| w.write_one(ImageKind::STATS, names::STATS_RESTORE, &stats))
    {
        log::warn!("cannot write {}: {e}", names::STATS_RESTORE);
    }
    if let Some(p) = &opts.pidfile {
        std::fs::write(p, format!("{pid}\n")).map_err(|source| RestoreError::Io {
            path: p.clone(),
            source,
        })?;
    }
    log::info!("restored pid {pid} in {:?}", t0.elapsed());
    if opts.detached || !own_child {
        return Ok(RestoreOutcome::Running { pid });
    }
    loop {
        match ptrace::waitpid(pid, 0)?.1 {
            WaitStatus::Exited(code) => return Ok(RestoreOutcome::Exited { pid, code }),
            WaitStatus::Signaled(signal) => return Ok(RestoreOutcome::Killed { pid, signal }),
            _ => continue,
        }
    }
}

/// Waits for the child's report, seizes it, and turns it into the dumped task.
fn build(
    pid: i32,
    plan: &plan::TaskPlan,
    mut report: UnixStream,
    pages: &std::fs::File,
    hook: &RestoreHook,
) -> Result<()> {
    report
        .set_read_timeout(Some(Duration::from_secs(30)))
        .map_err(|source| RestoreError::Io {
            path: "report socket".into(),
            source,
        })?;
    let mut msg = Vec::new();
    let mut byte = [0u8; 512];
    loop {
        match report.read(&mut byte) {
            Ok(0) => break,
            Ok(n) => {
                msg.extend_from_slice(&byte[..n]);
                if msg.first() == Some(&b'R') {
                    break;
                }
            }
            Err(e) => {
                return Err(RestoreError::Child {
                    pid,
                    what: format!("no report from the restoring child: {e}"),
                })
            }
        }
    }
    match msg.split_first() {
        Some((b'R', _)) => {}
        Some((b'E', text)) => {
            return Err(RestoreError::Child {
                pid,
                what: String::from_utf8_lossy(text).into_owned(),
            })
        }
        _ => {
            return Err(RestoreError::Child {
                pid,
                what: "the restoring child died before it was ready".into(),
            })
        }
    }
    let hi = child::high_fd(plan);
    let mut tracee = Tracee::seize(pid)?;
    log::debug!("pid {pid}: its own setup is done; seized");

    let result = rebuild::rebuild(&mut tracee, plan, hi, pages, &[hi + 1]);

    match result {
        Ok(threads) => {
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
            let stage = RestoreStage::Restored { pid };
            if let Err(what) = hook.call(stage) {
                let _ = tracee.kill();
                return Err(RestoreError::Stopped { stage, what });
            }
            // STASIS_RESTORE_STOPPED=1 leaves the task stopped for inspection (debugging).
            let stopped =
                plan.tc.task_state == 3 || std::env::var_os("STASIS_RESTORE_STOPPED").is_some();
            fds::inet::repair_off(pid, plan)?;
            // Every thread is ready: let them all go at once.
            for t in threads {
                t.release()?;
            }
            tracee.release()?;
            if stopped {
                process::kill(pid, plan.tc.stop_signo.map_or(libc::SIGSTOP, |s| s as i32))?;
            }
            Ok(())
        }
        Err(e) => {
            let _ = tracee.kill();
            Err(e)
        }
    }
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
