//! `stasis-bench`: times `stasis dump` and `stasis restore` of a memory workload of a
//! few sizes, setting each against this machine's memory-copy and disk-write bandwidth,
//! measured in the same run, and against a naive /proc/PID/mem copy; and of two process
//! trees, a JVM and a ring of 1+10 processes, against issue 3's targets and CRIU. A
//! benchmark, not a test: it prints numbers; it fails only when a workload cannot be
//! run or stasis cannot produce a verified restore.
#![forbid(unsafe_code)]

mod json;
mod jvm;
mod limits;
mod naive;
mod options;
mod report;
mod ring;
mod run;
mod stasis;
mod stats;
mod tree;
mod workload;

use std::process::ExitCode;

use anyhow::{Context, Result};

use crate::jvm::Jvm;
use crate::limits::Filesystem;
use crate::options::{Options, WorkloadKind, USAGE};
use crate::report::{Limits, Machine, Report};
use crate::ring::Ring;
use crate::run::{Scratch, TreeResult};
use crate::stasis::Stasis;
use crate::tree::TreeWorkload;
use crate::workload::WorkloadProgram;

/// The write test writes at least this much, so a run of small sizes still measures
/// a bandwidth rather than a syscall.
const MIN_WRITE_BYTES: u64 = 64 << 20;

fn main() -> ExitCode {
    let opts = match Options::parse(std::env::args().skip(1)) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("stasis-bench: {e:#}");
            return ExitCode::from(2);
        }
    };
    if opts.help {
        print!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    match bench(&opts) {
        Ok(report) => {
            if opts.json {
                println!("{}", report.json());
            } else {
                print!("{}", report.table());
            }
            if report.failed() {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(e) => {
            eprintln!("stasis-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn bench(opts: &Options) -> Result<Report> {
    // Restored processes are orphaned when `stasis restore -d` exits; as subreaper the
    // bench inherits and reaps them (PID 1 here does not reap promptly).
    rustix::process::set_child_subreaper(Some(rustix::process::getpid()))
        .context("prctl(PR_SET_CHILD_SUBREAPER)")?;

    let mut machine = Machine::describe();
    let (stasis, stasis_unavailable) = if opts.skip_stasis {
        (None, None)
    } else {
        match Stasis::locate(opts.stasis.as_deref()) {
            Ok(s) => (Some(s), None),
            Err(e) => {
                eprintln!("stasis-bench: {e:#}\nstasis-bench: going on with the limits and the baseline only");
                (None, Some(format!("{e:#}")))
            }
        }
    };
    let scratch = Scratch::create(opts.dir.as_deref(), opts.keep)?;

    let mut limits = None;
    let mut sizes = Vec::new();
    if opts.runs(WorkloadKind::Memory) {
        let program = WorkloadProgram::build(&scratch.root)?;
        eprintln!("measuring memory copy bandwidth...");
        let memory =
            limits::measure_memory_copy(limits::MEMORY_COPY_BYTES, limits::MEMORY_COPY_PASSES);
        let largest = opts.sizes_mib.iter().max().copied().unwrap_or(1) << 20;
        let write_bytes = largest.max(MIN_WRITE_BYTES);
        eprintln!(
            "measuring sequential write bandwidth ({}) in {}...",
            report::fmt_bytes(write_bytes),
            scratch.root.display()
        );
        let write =
            limits::measure_sequential_write(&scratch.root, write_bytes, limits::WRITE_PASSES)?;
        limits = Some(Limits { memory, write });

        for &mib in &opts.sizes_mib {
            let rounds = opts.iterations_for(mib);
            let result = run::bench_size(&program, stasis.as_ref(), &scratch, mib, rounds)
                .with_context(|| format!("benchmarking the {mib} MiB workload"))?;
            if let Some(e) = &result.stasis_error {
                eprintln!("stasis-bench: stasis FAILED on the {mib} MiB workload: {e}");
            }
            sizes.push(result);
        }
    }

    // The JVM and the ring have no baseline of their own: without stasis there is
    // nothing to run.
    let mut trees = Vec::new();
    for kind in [WorkloadKind::Jvm, WorkloadKind::Ring] {
        let Some(stasis) = stasis.as_ref().filter(|_| opts.runs(kind)) else {
            continue;
        };
        let rounds = opts.tree_iterations();
        let built: Result<Box<dyn TreeWorkload>> = match kind {
            WorkloadKind::Jvm => {
                Jvm::build(&scratch.root.join("jvm")).map(|w| Box::new(w) as Box<dyn TreeWorkload>)
            }
            _ => Ring::build(&scratch.root).map(|w| Box::new(w) as Box<dyn TreeWorkload>),
        };
        let result = match built {
            Ok(workload) => run::bench_tree(workload.as_ref(), stasis, &scratch, rounds),
            Err(e) => TreeResult::not_built(kind, rounds, format!("{e:#}")),
        };
        if let Some(e) = &result.error {
            eprintln!("stasis-bench: the {} workload FAILED: {e}", result.name);
        }
        trees.push(result);
    }
    if opts.keep {
        eprintln!("kept {}", scratch.root.display());
    }

    machine.load_end = report::load_average();
    Ok(Report {
        machine,
        stasis_bin: stasis.as_ref().map(|s| s.bin.display().to_string()),
        stasis_version: stasis.as_ref().map(|s| s.version.clone()),
        scratch: scratch.root.display().to_string(),
        filesystem: Filesystem::holding(&scratch.root),
        workloads: opts.workloads.iter().map(|w| w.name()).collect(),
        limits,
        sizes,
        trees,
        stasis_unavailable,
        stasis_skipped: opts.skip_stasis,
    })
}
