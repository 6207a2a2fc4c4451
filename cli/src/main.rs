//! `stasis`: checkpoint/restore for Linux processes, with CRIU's verbs, flags and image
//! format. Installed as `criu`, it serves the tools that drive CRIU.
#![forbid(unsafe_code)]

mod args;
mod cpuinfo;
mod inspect;
mod logger;
mod swrk;

use anyhow::{bail, Context, Result};
use args::Args;
use std::path::PathBuf;
use std::process::ExitCode;

const VERSION: &str = env!("CARGO_PKG_VERSION");

fn usage() -> &'static str {
    "usage: stasis dump -t PID -D DIR [-W DIR] [-o LOG] [-v[N]] [--leave-running] [-j] [--freeze-cgroup PATH]\n\
     \x20      stasis restore -D DIR [-W DIR] [-o LOG] [-v[N]] [-d] [--pidfile FILE] [-j] [--restore-sibling] [--check-only] [--cpu-cap[=CAPS]]\n\
     \x20                     [--manage-cgroups[=MODE]] [--cgroup-root [CTRL:]PATH]...\n\
     \x20      stasis check [--feature NAME]\n\
     \x20      stasis cpuinfo dump -D DIR [-t PID]\n\
     \x20      stasis cpuinfo check -D DIR [--cpu-cap[=CAPS]]\n\
     \x20      stasis inspect DIR --cpu [--json]\n\
     \x20      stasis swrk FD    (CRIU's RPC service worker, as runc, podman and containerd start it)\n\
     \x20      stasis --version"
}

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    if argv.first().map(String::as_str) == Some("swrk") {
        return swrk::main(&argv[1..]);
    }
    let check_only = argv.iter().any(|a| a == "--check-only");
    let argv: Vec<String> = argv.into_iter().filter(|a| a != "--check-only").collect();
    let args = match args::parse(argv) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("stasis: {e}\n{}", usage());
            return ExitCode::from(1);
        }
    };
    match run(&args, check_only) {
        Ok(code) => code,
        Err(e) => {
            log::error!("{e:#}");
            eprintln!("stasis: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn work_dir(args: &Args) -> Option<PathBuf> {
    args.work_dir.clone().or_else(|| args.images_dir.clone())
}

fn images_dir(args: &Args) -> Result<PathBuf> {
    match &args.images_dir {
        Some(d) => Ok(d.clone()),
        None => bail!("-D/--images-dir is required for {}", args.verb),
    }
}

/// `-o` is relative to the work dir, as in CRIU.
fn setup_log(args: &Args) -> Result<()> {
    let level = if args.verbosity == 0 {
        2
    } else {
        args.verbosity
    };
    let file = match (&args.log_file, work_dir(args)) {
        (Some(f), _) if f.as_os_str() == "-" => None,
        (Some(f), Some(w)) if f.is_relative() => Some(w.join(f)),
        (Some(f), _) => Some(f.clone()),
        (None, _) => None,
    };
    if let Some(f) = &file {
        if let Some(parent) = f.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating log directory {}", parent.display()))?;
        }
    }
    logger::init(file.as_deref(), level)
}

fn run(args: &Args, check_only: bool) -> Result<ExitCode> {
    if args.version {
        println!("Version: 4.2 (stasis {VERSION})");
        return Ok(ExitCode::SUCCESS);
    }
    if args.help || args.verb.is_empty() {
        println!("{}", usage());
        return Ok(if args.help {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        });
    }
    setup_log(args)?;
    match args.verb.as_str() {
        "dump" => dump(args),
        "restore" => restore(args, check_only),
        "check" => check(args),
        "cpuinfo" => cpuinfo::run(args),
        "inspect" => inspect::run(args),
        "pre-dump" => bail!("pre-dump needs dirty-page tracking, which this kernel lacks (no soft-dirty bits); stasis does not support it yet"),
        v => bail!("unknown command {v:?}\n{}", usage()),
    }
}

fn dump(args: &Args) -> Result<ExitCode> {
    let pid = args.tree.context("-t/--tree PID is required for dump")?;
    let images = images_dir(args)?;
    let opts = stasis_checkpoint::DumpOptions {
        pid,
        work_dir: work_dir(args).unwrap_or_else(|| images.clone()),
        images_dir: images,
        leave_running: args.leave_running,
        shell_job: args.shell_job,
        // CRIU's CLI has no such option: only an RPC client can receive a new master.
        orphan_pts_master: false,
        tcp_established: args.tcp_established,
        hook: Default::default(),
        timeout: std::time::Duration::from_secs(u64::from(args.timeout.unwrap_or(10))),
        freeze_cgroup: args.freeze_cgroup.clone(),
        ghost_limit: args.ghost_limit,
        file_locks: args.file_locks,
        external_mounts: args.ext_mounts.clone(),
        external_mounts_auto: args.ext_mount_auto,
        empty_ns: args.empty_ns,
        network_lock: !args.network_lock_skip,
        external_netns: args.external_netns.clone(),
    };
    let report =
        stasis_checkpoint::dump(&opts).with_context(|| format!("dump of pid {pid} failed"))?;
    log::info!(
        "dumped pid {pid}: {} pages written of {} scanned, frozen {} us",
        report.pages_written,
        report.pages_scanned,
        report.frozen_us
    );
    Ok(ExitCode::SUCCESS)
}

fn restore(args: &Args, check_only: bool) -> Result<ExitCode> {
    let images = images_dir(args)?;
    let opts = stasis_restore::RestoreOptions {
        work_dir: work_dir(args).unwrap_or_else(|| images.clone()),
        images_dir: images,
        detached: args.restore_detached,
        pidfile: args.pidfile.clone(),
        shell_job: args.shell_job,
        tcp_established: args.tcp_established,
        hook: Default::default(),
        restore_sibling: args.restore_sibling,
        check_only,
        cpu_cap: args.cpu_cap.clone(),
        manage_cgroups: args.manage_cgroups.unwrap_or_default(),
        cgroup_root: args.cgroup_root.clone(),
        root: args.root.clone(),
        external_mounts: args.ext_mounts.clone(),
        veths: args.veths.clone(),
        inherit_fds: args.inherit_fds.clone(),
        join_ns: args.join_ns.clone(),
        orphan_pts_master: false,
    };
    let outcome = stasis_restore::restore(&opts).context("restore failed")?;
    Ok(match outcome {
        stasis_restore::RestoreOutcome::Running { pid } => {
            log::info!("restored pid {pid}; it runs detached");
            ExitCode::SUCCESS
        }
        stasis_restore::RestoreOutcome::CheckedOnly => {
            println!("Restore preflight passed.");
            ExitCode::SUCCESS
        }
        stasis_restore::RestoreOutcome::Exited { pid, code } => {
            log::info!("restored pid {pid} exited with {code}");
            ExitCode::from(code as u8)
        }
        stasis_restore::RestoreOutcome::Killed { pid, signal } => {
            log::info!("restored pid {pid} was killed by signal {signal}");
            ExitCode::from(128 + signal as u8)
        }
    })
}

fn check(args: &Args) -> Result<ExitCode> {
    let problems = stasis_restore::check_kernel(args.feature.as_deref())?;
    if problems.is_empty() {
        println!("Looks good.");
        Ok(ExitCode::SUCCESS)
    } else {
        for p in &problems {
            eprintln!("stasis check: {p}");
        }
        Ok(ExitCode::from(1))
    }
}
