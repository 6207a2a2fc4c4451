//! One bench run: the scratch dir, the rounds of each workload size, and what they
//! measured.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::naive;
use crate::stasis::{ImageSet, Stasis};
use crate::stats::Samples;
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
