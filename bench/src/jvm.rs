//! The JVM workload: `BenchJvm.java` (embedded in this binary), compiled with the
//! installed `javac` at run time and run as `setsid java -cp DIR BenchJvm LOG` with
//! default JVM flags, so the tree's root is java itself (setsid execs in place: its
//! child is not a group leader) with its twenty-odd threads.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};

use crate::tree::{self, Progress, StartedTree, Targets, TreeWorkload};

const SOURCE: &str = include_str!("../BenchJvm.java");
const CLASS: &str = "BenchJvm";
/// The JVM's `comm`.
const COMM: &str = "java";
/// Ticks (20 ms apart) before the JVM counts as started: past class loading and the
/// first compilations of the tick loop.
const READY_TICKS: usize = 10;
/// A JVM starts in a second or two; much more on a loaded machine.
const START_PATIENCE: Duration = Duration::from_secs(60);
/// Ticks after the restore that must continue the count.
const WANTED_TICKS: usize = 4;
/// With this many ticks after the restore and the worker thread's count still not
/// grown, that thread did not come back.
const WORKER_PATIENCE_TICKS: usize = 25;

/// The compiled JVM workload.
#[derive(Debug, Clone)]
pub struct Jvm {
    classes: PathBuf,
    version: String,
}

impl Jvm {
    /// Writes `BenchJvm.java` into `dir` and compiles it there with `javac`.
    pub fn build(dir: &Path) -> Result<Jvm> {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let src = dir.join(format!("{CLASS}.java"));
        fs::write(&src, SOURCE).with_context(|| format!("writing {}", src.display()))?;
        let out = Command::new("javac")
            .arg("-d")
            .arg(dir)
            .arg(&src)
            .output()
            .context("running javac to build the JVM workload (is a JDK installed?)")?;
        if !out.status.success() {
            bail!(
                "javac failed to build {}: {}\n{}",
                src.display(),
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let out = Command::new("java")
            .arg("-version")
            .output()
            .context("running java -version")?;
        let version = String::from_utf8_lossy(&out.stderr)
            .lines()
            .next()
            .unwrap_or("java")
            .trim()
            .to_string();
        Ok(Jvm {
            classes: dir.to_path_buf(),
            version,
        })
    }
}

/// One line of the JVM's log: `tick N map M sum S worker W`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tick {
    pub n: u64,
    pub map: u64,
    pub sum: i64,
    pub worker: u64,
}

impl Tick {
    pub fn parse(line: &str) -> Option<Tick> {
        match line.split_ascii_whitespace().collect::<Vec<_>>().as_slice() {
            ["tick", n, "map", map, "sum", sum, "worker", worker] => Some(Tick {
                n: n.parse().ok()?,
                map: map.parse().ok()?,
                sum: sum.parse().ok()?,
                worker: worker.parse().ok()?,
            }),
            _ => None,
        }
    }
}

/// Parses the log's complete lines: every one must be a tick.
fn ticks<S: AsRef<str>>(lines: &[S]) -> Result<Vec<Tick>> {
    lines
        .iter()
        .enumerate()
        .map(|(i, l)| {
            let l = l.as_ref();
            Tick::parse(l).with_context(|| format!("line {}: not a tick: {l:?}", i + 1))
        })
        .collect()
}

/// Checks `new` ticks continue `last`: numbers consecutive, the map one entry per tick,
/// the heap checksum unchanged.
fn check_after(last: &Tick, new: &[Tick]) -> Result<()> {
    for (i, t) in new.iter().enumerate() {
        let n = last.n + 1 + i as u64;
        ensure!(
            t.n == n,
            "tick went {} -> ... -> {}, expected {n}: the JVM did not continue from where it \
             was dumped",
            last.n,
            t.n
        );
        ensure!(
            t.map == n,
            "tick {n}: the HashMap holds {} entries, expected {n}",
            t.map
        );
        ensure!(
            t.sum == last.sum,
            "tick {n}: the heap array's checksum is {}, was {}",
            t.sum,
            last.sum
        );
    }
    Ok(())
}

/// Issue 3: JVM dump <= 70 ms and restore <= 50 ms; CRIU 4.2: 139 ms / 99 ms median
/// for OpenJDK 17 with 19 threads.
pub const TARGETS: Targets = Targets {
    dump: Some(0.070),
    restore: Some(0.050),
    criu_dump: Some(0.139),
    criu_restore: Some(0.099),
};

impl TreeWorkload for Jvm {
    fn name(&self) -> &'static str {
        "jvm"
    }

    fn description(&self) -> String {
        format!("{}, {CLASS}, default flags", self.version)
    }

    fn comm(&self) -> &'static str {
        COMM
    }

    fn targets(&self) -> Targets {
        TARGETS
    }

    fn start(&self, log: &Path, cwd: &Path) -> Result<StartedTree> {
        let _ = fs::remove_file(log);
        let mut command = Command::new("setsid");
        command
            .arg("java")
            .arg("-cp")
            .arg(&self.classes)
            .arg(CLASS)
            .arg(log);
        let mut tree = StartedTree::spawn(command, cwd)?;
        tree::wait_ready(&mut tree, "the JVM", log, START_PATIENCE, |_, text| {
            let lines: Vec<&str> = tree::complete_lines(text).collect();
            ticks(&lines)?;
            Ok((lines.len() >= READY_TICKS).then_some(()))
        })?;
        let root = tree.root;
        let stat = fs::read_to_string(format!("/proc/{root}/stat"))?;
        let comm = tree::parse_stat(&stat).map(|(c, _, _)| c.to_string());
        ensure!(
            comm.as_deref() == Some(COMM),
            "process {root} is {comm:?}, not {COMM:?}: `setsid java` did not exec in place"
        );
        // The perf-data file (default flags: -XX:+UsePerfData) outlives a killed JVM.
        let maps = fs::read_to_string(format!("/proc/{root}/maps"))?;
        tree.leftovers = maps
            .lines()
            .filter_map(|l| l.split_ascii_whitespace().nth(5))
            .filter(|p| p.contains("/hsperfdata_"))
            .map(PathBuf::from)
            .take(1)
            .collect();
        tree.refresh_children()?;
        Ok(tree)
    }

    fn at_dump(&self, log: &Path) -> Result<Progress> {
        let lines = tree::read_lines(log)?;
        let all = ticks(&lines).with_context(|| format!("in {}", log.display()))?;
        let first = all
            .first()
            .context("no tick in the JVM's log at the dump")?;
        ensure!(first.n == 1, "the JVM's first tick is {}, not 1", first.n);
        check_after(first, &all[1..]).with_context(|| format!("in {}", log.display()))?;
        let last = all.last().expect("a first tick");
        Ok(Progress {
            lines: lines.len(),
            counter: last.n,
            last_line: lines.last().cloned().unwrap_or_default(),
        })
    }

    fn verify_continues(&self, log: &Path, at: &Progress) -> Result<String> {
        let last = Tick::parse(&at.last_line).context("the dumped tick")?;
        let mut seen = Vec::new();
        tree::wait_continues(log, at.lines, Duration::from_secs(5), |new| {
            seen = ticks(new)?;
            check_after(&last, &seen)?;
            let grown = seen.last().is_some_and(|t| t.worker > last.worker);
            ensure!(
                grown || seen.len() < WORKER_PATIENCE_TICKS,
                "{} ticks after the restore the worker thread's count is still {}: that \
                 thread does not run",
                seen.len(),
                last.worker
            );
            Ok(seen.len() >= WANTED_TICKS && grown)
        })?;
        let end = seen.last().expect("ticks");
        Ok(format!(
            "tick {} -> {}..{}, map {}, worker {} -> {}",
            last.n,
            last.n + 1,
            end.n,
            end.map,
            last.worker,
            end.worker
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tick(n: u64, worker: u64) -> Tick {
        Tick {
            n,
            map: n,
            sum: -42,
            worker,
        }
    }

    #[test]
    fn a_tick_line_parses_and_anything_else_does_not() {
        assert_eq!(
            Tick::parse("tick 3 map 3 sum -42 worker 17"),
            Some(tick(3, 17))
        );
        assert_eq!(Tick::parse("tick 3 map 3 sum -42"), None);
        assert!(ticks(&["tick 1 map 1 sum -42 worker 0", "oops"]).is_err());
    }

    #[test]
    fn ticks_must_continue_with_the_same_heap() {
        let last = tick(10, 40);
        assert!(check_after(&last, &[tick(11, 44), tick(12, 48)]).is_ok());
        assert!(check_after(&last, &[tick(12, 44)]).is_err());
        assert!(check_after(&last, &[tick(10, 44)]).is_err());
        let mut lost_entry = tick(11, 44);
        lost_entry.map = 10;
        assert!(check_after(&last, &[lost_entry]).is_err());
        let mut other_heap = tick(11, 44);
        other_heap.sum = 7;
        assert!(check_after(&last, &[other_heap]).is_err());
    }
}
