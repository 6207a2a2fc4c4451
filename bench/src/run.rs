//! One bench run: the scratch dir, the rounds of each memory workload size and of each
//! process-tree workload, and what they measured.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{ensure, Context, Result};

use crate::naive;
use crate::options::WorkloadKind;
use crate::stasis::{ImageSet, Stasis};
use crate::stats::Samples;
use crate::tree::{count_images, thread_count, RestoredTree, StartedTree, Targets, TreeWorkload};
use crate::workload::{reap_orphans, Log, RestoredProcess, Workload, WorkloadProgram};

/// The bench's own directory on the images' filesystem; removed when dropped unless kept.
#[derive(Debug)]
pub struct Scratch {
    pub root: PathBuf,
    pub keep: bool,
}

impl Scratch {
    /// `BASE/stasis-bench.PID`, with BASE from `--dir`, else /var/tmp, else /tmp.
    pub fn create(base: Option<&Path>, keep: bool) -> Result<Scratch> {
        let base = match base {
            Some(b) => b.to_path_buf(),
            None if Path::new("/var/tmp").is_dir() => PathBuf::from("/var/tmp"),
            None => std::env::temp_dir(),
        };
        let root = base.join(format!("stasis-bench.{}", std::process::id()));
        fs::create_dir_all(root.join("logs"))
            .with_context(|| format!("creating {}", root.display()))?;
        let root = fs::canonicalize(&root)?;
        Ok(Scratch { root, keep })
    }

    pub fn images(&self) -> PathBuf {
        self.root.join("images")
    }

    pub fn logs(&self) -> PathBuf {
        self.root.join("logs")
    }

    fn reset_images(&self) -> Result<PathBuf> {
        let dir = self.images();
        match fs::remove_dir_all(&dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(e).with_context(|| format!("removing {}", dir.display()))
            }
            _ => {}
        }
        fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if !self.keep {
            let _ = fs::remove_dir_all(&self.root);
        }
    }
}

/// What stasis did for one workload size.
#[derive(Debug, Clone, Default)]
pub struct StasisRounds {
    /// Seconds, spawn to exit, of each `stasis dump`.
    pub dump: Samples,
    /// Seconds, spawn to exit, of each `stasis restore -d`.
    pub restore: Samples,
    /// The images of the last round.
    pub images: ImageSet,
    /// Rounds whose restored process was proven to continue with intact memory.
    pub verified: usize,
}

/// Everything measured for one workload size.
#[derive(Debug, Clone)]
pub struct SizeResult {
    pub mib: u64,
    pub rounds: usize,
    pub naive_dump: Samples,
    pub naive_dump_bytes: u64,
    pub naive_restore: Samples,
    pub naive_restore_bytes: u64,
    /// Whether the naive restore read stasis's pages files or the naive dump's file.
    pub naive_restore_source: &'static str,
    pub stasis: Option<StasisRounds>,
    /// Why the stasis part stopped, if it did.
    pub stasis_error: Option<String>,
}

impl SizeResult {
    pub fn workload_bytes(&self) -> u64 {
        self.mib << 20
    }
}

/// Runs `rounds` rounds of a `mib` MiB workload. Each round starts a fresh workload,
/// copies it the naive way, dumps it with stasis, reads the pages back the naive way,
/// restores it with stasis and proves the restored process continues.
pub fn bench_size(
    program: &WorkloadProgram,
    stasis: Option<&Stasis>,
    scratch: &Scratch,
    mib: u64,
    rounds: usize,
) -> Result<SizeResult> {
    let mut result = SizeResult {
        mib,
        rounds,
        naive_dump: Samples::default(),
        naive_dump_bytes: 0,
        naive_restore: Samples::default(),
        naive_restore_bytes: 0,
        naive_restore_source: "naive dump file",
        stasis: stasis.map(|_| StasisRounds::default()),
        stasis_error: None,
    };
    let log = scratch.root.join("workload.log");
    let naive_file = scratch.root.join("naive-dump.bin");
    for round in 1..=rounds {
        let mut workload = Workload::start(program, mib, &log)?;
        let dumped = naive::dump(workload.pid, &naive_file)?;
        result.naive_dump.push(dumped.seconds);
        result.naive_dump_bytes = dumped.bytes;
        let mut line = format!(
            "{mib} MiB round {round}/{rounds}: naive dump {}",
            crate::report::fmt_secs(dumped.seconds)
        );

        let live_stasis = stasis.filter(|_| result.stasis_error.is_none());
        let restore_from = match live_stasis {
            Some(stasis) => {
                fs::remove_file(&naive_file)?;
                let rounds_so_far = result.stasis.get_or_insert_with(Default::default);
                match stasis_round(stasis, scratch, &mut workload, rounds_so_far, &mut line) {
                    Ok(pages) => Some(pages),
                    Err(e) => {
                        result.stasis_error = Some(format!("{e:#}"));
                        line.push_str(" — stasis FAILED");
                        None
                    }
                }
            }
            None => Some(vec![naive_file.clone()]),
        };
        if let Some(files) = restore_from.filter(|f| !f.is_empty()) {
            let read = naive::restore(&files)?;
            result.naive_restore.push(read.seconds);
            result.naive_restore_bytes = read.bytes;
            result.naive_restore_source = if live_stasis.is_some() {
                "stasis pages files"
            } else {
                "naive dump file"
            };
            line.push_str(&format!(
                ", naive restore {}",
                crate::report::fmt_secs(read.seconds)
            ));
        }
        let _ = fs::remove_file(&naive_file);
        // Freed now, so no round's dirty pages are written back during the next one's;
        // `--keep` keeps the last round's images to look at.
        if !(scratch.keep && round == rounds) {
            let _ = fs::remove_dir_all(scratch.images());
        }
        drop(workload);
        reap_orphans();
        eprintln!("{line}");
    }
    Ok(result)
}

/// One stasis round on a running workload: dump, restore, verify, kill. Returns the
/// pages files of the dump, for the naive restore to read after it, from the page
/// cache as stasis did.
fn stasis_round(
    stasis: &Stasis,
    scratch: &Scratch,
    workload: &mut Workload,
    rounds: &mut StasisRounds,
    line: &mut String,
) -> Result<Vec<PathBuf>> {
    let images = scratch.reset_images()?;
    let dump_s = stasis.dump(workload.pid, &images, &scratch.logs())?;
    workload.reap_after_dump()?;
    let state = Log::read(&workload.log)?;
    let dumped = state
        .last_tick()
        .context("the workload's log has no counter value after the dump")?;
    let image_set = ImageSet::read(&images)?;
    anyhow::ensure!(
        image_set.pages_bytes >= workload.region.len,
        "the dump's pages files hold {} bytes, less than the workload's {} bytes of memory",
        image_set.pages_bytes,
        workload.region.len
    );

    let restore_s = stasis.restore(&images, &scratch.logs());
    let restored = RestoredProcess::adopt(workload.pid);
    let restore_s = restore_s?;
    let restored = restored?;
    restored.verify_continues(&workload.log, state.ticks.len(), dumped)?;
    restored.verify_memory(workload.region)?;
    drop(restored);

    rounds.dump.push(dump_s);
    rounds.restore.push(restore_s);
    rounds.images = image_set.clone();
    rounds.verified += 1;
    line.push_str(&format!(
        ", stasis dump {}, restore {}, verified (counter {dumped} -> {}+, {} bytes of memory)",
        crate::report::fmt_secs(dump_s),
        crate::report::fmt_secs(restore_s),
        dumped + 1,
        workload.region.len
    ));
    Ok(image_set.pages_files)
}

/// Everything measured for one process-tree workload (the JVM, the ring).
#[derive(Debug, Clone)]
pub struct TreeResult {
    /// `jvm`, `ring`.
    pub name: &'static str,
    pub description: String,
    pub rounds: usize,
    pub targets: Targets,
    /// Processes and threads in the last round's dump (threads: its `core-*.img` files).
    pub processes: usize,
    pub threads: usize,
    /// Seconds, spawn to exit, of each `stasis dump` and `stasis restore -d`.
    pub dump: Samples,
    pub restore: Samples,
    /// The images of the last round.
    pub images: ImageSet,
    /// Rounds whose restored tree was proven to continue.
    pub verified: usize,
    /// Why the workload stopped, if it did: it could not be built or started, or stasis
    /// failed to dump, restore or produce a tree that continues.
    pub error: Option<String>,
}

impl TreeResult {
    /// A workload that could not be built (no javac, no gcc): no rounds ran.
    pub fn not_built(kind: WorkloadKind, rounds: usize, error: String) -> TreeResult {
        let (name, targets) = match kind {
            WorkloadKind::Jvm => ("jvm", crate::jvm::TARGETS),
            _ => ("ring", crate::ring::TARGETS),
        };
        TreeResult {
            name,
            description: "not built".into(),
            rounds,
            targets,
            processes: 0,
            threads: 0,
            dump: Samples::default(),
            restore: Samples::default(),
            images: ImageSet::default(),
            verified: 0,
            error: Some(format!("building the workload: {error}")),
        }
    }
}

/// Runs `rounds` rounds of a process-tree workload. Each round starts a fresh tree, dumps
/// it, reaps every process of it, restores it and proves it continues, then kills it.
/// The first failure ends the workload's rounds and is recorded in the result.
pub fn bench_tree(
    workload: &dyn TreeWorkload,
    stasis: &Stasis,
    scratch: &Scratch,
    rounds: usize,
) -> TreeResult {
    let mut result = TreeResult {
        name: workload.name(),
        description: workload.description(),
        rounds,
        targets: workload.targets(),
        processes: 0,
        threads: 0,
        dump: Samples::default(),
        restore: Samples::default(),
        images: ImageSet::default(),
        verified: 0,
        error: None,
    };
    let log = scratch.logs().join(format!("{}.log", workload.name()));
    for round in 1..=rounds {
        let outcome = workload
            .start(&log, &scratch.root)
            .with_context(|| format!("starting the {} workload", workload.name()))
            .and_then(|mut tree| {
                let line = tree_round(workload, stasis, scratch, &mut tree, &log, &mut result);
                drop(tree);
                line
            });
        if !(scratch.keep && round == rounds) {
            let _ = fs::remove_dir_all(scratch.images());
        }
        reap_orphans();
        match outcome {
            Ok(line) => eprintln!("{} round {round}/{rounds}: {line}", workload.name()),
            Err(e) => {
                eprintln!("{} round {round}/{rounds}: FAILED", workload.name());
                result.error = Some(format!("round {round}: {e:#}"));
                break;
            }
        }
    }
    result
}

/// One round on a started tree: dump, reap, restore, verify, kill. Returns the
/// progress line.
fn tree_round(
    workload: &dyn TreeWorkload,
    stasis: &Stasis,
    scratch: &Scratch,
    tree: &mut StartedTree,
    log: &Path,
    result: &mut TreeResult,
) -> Result<String> {
    let images = scratch.reset_images()?;
    let root = tree.root;
    let children = tree.refresh_children()?.to_vec();
    let dump_s = stasis.dump(root, &images, &scratch.logs())?;
    tree.reap_after_dump()?;
    let at = workload.at_dump(log)?;
    let image_set = ImageSet::read(&images)?;
    let threads = count_images(&images, "core-")?;
    let processes = 1 + children.len();

    let restore_s = stasis.restore(&images, &scratch.logs());
    let restored = RestoredTree::adopt(root, workload.comm(), &children);
    let restore_s = restore_s?;
    let restored = restored?;
    let threads_now = std::iter::once(root)
        .chain(children.iter().copied())
        .map(thread_count)
        .sum::<Result<usize>>()?;
    ensure!(
        threads_now == threads,
        "the restored tree has {threads_now} threads, the dump recorded {threads} (core-*.img)"
    );
    let seen = workload.verify_continues(log, &at)?;
    drop(restored);

    result.dump.push(dump_s);
    result.restore.push(restore_s);
    result.images = image_set;
    result.processes = processes;
    result.threads = threads;
    result.verified += 1;
    Ok(format!(
        "stasis dump {}, restore {}, verified ({processes} process(es), {threads} threads, {seen})",
        crate::report::fmt_secs(dump_s),
        crate::report::fmt_secs(restore_s),
    ))
}
