//! `stasis cpuinfo dump -D DIR [-t PID]` and `stasis cpuinfo check -D DIR [--cpu-cap]`:
//! CRIU's verbs, on stasis's CPU record.
//!
//! `dump` writes `cpuinfo.img` and `stasis-cpu.json` for this host into DIR (creating
//! it), with the XSAVE state of the threads of a dump already in DIR; with `-t PID` it
//! also records the JVMs of the live tree rooted at PID, read from `/proc` and their
//! memory without stopping them. `check` runs the restore gate against this host and
//! exits 1 naming what is missing; as in CRIU, no `--cpu-cap` means every check.

use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use stasis_cpu::{image, jvm, CpuRecord, ImageCpu};
use stasis_images::ImageDir;

use crate::args::Args;

/// Runs `stasis cpuinfo dump|check`.
pub fn run(args: &Args) -> Result<ExitCode> {
    match args.rest.first().map(String::as_str) {
        Some("dump") => dump(args),
        Some("check") => check(args),
        Some(other) => bail!("unknown cpuinfo action {other:?}: expected dump or check"),
        None => bail!("cpuinfo needs an action: stasis cpuinfo dump|check -D DIR"),
    }
}

fn dump(args: &Args) -> Result<ExitCode> {
    let path = crate::images_dir(args)?;
    let dir = ImageDir::create(&path)?;
    let pids = match args.tree {
        Some(pid) => jvm::process_tree(pid).with_context(|| format!("the tree of pid {pid}"))?,
        None => Vec::new(),
    };
    let record = image::dump_record(&dir, &pids).context("describing the CPU and the JVMs")?;
    image::write(&dir, &record).with_context(|| format!("writing into {}", path.display()))?;
    log::info!(
        "recorded {} ({} thread(s), {} JVM(s)) in {}",
        record.identity(),
        record.tasks.len(),
        record.jvms.len(),
        path.display()
    );
    for j in &record.jvms {
        log::info!(
            "JVM pid {}: Java {}, features from {}: {}",
            j.pid,
            j.java_version,
            j.source,
            j.features
        );
    }
    for u in &record.unchecked_jvms {
        log::warn!("JVM pid {}: features not recorded: {}", u.pid, u.reason);
    }
    Ok(ExitCode::SUCCESS)
}

fn check(args: &Args) -> Result<ExitCode> {
    let path = crate::images_dir(args)?;
    let dir = ImageDir::open(&path)?;
    let image = ImageCpu::read(&dir).with_context(|| format!("{}", path.display()))?;
    // CRIU: `cpuinfo check` without --cpu-cap checks everything.
    let cap = image.cap(Some(args.cpu_cap.as_deref().unwrap_or("")))?;
    match image.check(&CpuRecord::host(), cap) {
        Ok(pass) => {
            for w in &pass.warnings {
                eprintln!("stasis: warning: {w}");
            }
            println!("CPU check passed ({cap}).");
            Ok(ExitCode::SUCCESS)
        }
        Err(refusal) => {
            eprintln!("stasis: {refusal}\n  (checks: {cap})");
            Ok(ExitCode::from(1))
        }
    }
}
