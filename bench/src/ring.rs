//! The ring workload: `ring.c` (embedded in this binary), a root and 10 children passing
//! a token around a ring of pipes the root created before forking, so each pipe is
//! shared by two processes. Compiled with `gcc` at run time.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};

use crate::tree::{self, Progress, StartedTree, Targets, TreeWorkload};

const SOURCE: &str = include_str!("../ring.c");
/// Executable name; also every ring process's `comm`.
const NAME: &str = "bench-ring";
/// Children of the root: a tree of 1 + 10 processes, as in issue 3.
pub const CHILDREN: u64 = 10;
/// Laps (10 ms apart) before the ring counts as started.
const READY_LAPS: usize = 3;
/// Laps after the restore that must continue the count.
const WANTED_LAPS: usize = 3;

/// The compiled ring workload.
#[derive(Debug, Clone)]
pub struct Ring {
    path: PathBuf,
}

impl Ring {
    /// Compiles `ring.c` with `gcc` into `dir`.
    pub fn build(dir: &Path) -> Result<Ring> {
        let src = dir.join("ring.c");
        let path = dir.join(NAME);
        fs::write(&src, SOURCE).with_context(|| format!("writing {}", src.display()))?;
        let out = Command::new("gcc")
            .args(["-O2", "-Wall", "-Werror", "-o"])
            .arg(&path)
            .arg(&src)
            .output()
            .context("running gcc to build the ring workload (is gcc installed?)")?;
        if !out.status.success() {
            bail!(
                "gcc failed to build {}: {}\n{}",
                src.display(),
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(Ring { path })
    }
}

/// One lap: `lap L token T`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lap {
    pub lap: u64,
    pub token: u64,
}

impl Lap {
    pub fn parse(line: &str) -> Option<Lap> {
        match line.split_ascii_whitespace().collect::<Vec<_>>().as_slice() {
            ["lap", lap, "token", token] => Some(Lap {
                lap: lap.parse().ok()?,
                token: token.parse().ok()?,
            }),
            _ => None,
        }
    }

    /// The token the root reads on lap `lap`: it starts the token at 0 and each of the
    /// 1 + CHILDREN processes adds one per lap, the root's own increment coming after
    /// it reads.
    pub fn expected_token(lap: u64) -> u64 {
        lap * (CHILDREN + 1) - 1
    }
}

/// Parses the log's complete lines: every one must be a lap.
fn laps<S: AsRef<str>>(lines: &[S]) -> Result<Vec<Lap>> {
    lines
        .iter()
        .enumerate()
        .map(|(i, l)| {
            let l = l.as_ref();
            Lap::parse(l).with_context(|| format!("line {}: not a lap: {l:?}", i + 1))
        })
        .collect()
}

/// Checks that `new` laps follow lap `last` consecutively, each with the token every
/// process passed on exactly once.
fn check_after(last: u64, new: &[Lap]) -> Result<()> {
    for (i, l) in new.iter().enumerate() {
        let lap = last + 1 + i as u64;
        ensure!(
            l.lap == lap,
            "lap went {last} -> ... -> {}, expected {lap}: the ring did not continue from where \
             it was dumped",
            l.lap
        );
        ensure!(
            l.token == Lap::expected_token(lap),
            "lap {lap}: token {}, expected {}: a token was lost, repeated or reordered",
            l.token,
            Lap::expected_token(lap)
        );
    }
    Ok(())
}

/// Issue 3: the 1+10-process ring's dump <= 60 ms; CRIU 4.2: 125 ms. No restore
/// target.
pub const TARGETS: Targets = Targets {
    dump: Some(0.060),
    restore: None,
    criu_dump: Some(0.125),
    criu_restore: None,
};

impl TreeWorkload for Ring {
    fn name(&self) -> &'static str {
        "ring"
    }

    fn description(&self) -> String {
        format!("1+{CHILDREN} processes passing a token through a ring of pipes")
    }

    fn comm(&self) -> &'static str {
        NAME
    }

    fn targets(&self) -> Targets {
        TARGETS
    }

    fn start(&self, log: &Path, cwd: &Path) -> Result<StartedTree> {
        let _ = fs::remove_file(log);
        let mut command = Command::new(&self.path);
        command.arg(log).arg(CHILDREN.to_string());
        let mut tree = StartedTree::spawn(command, cwd)?;
        tree::wait_ready(
            &mut tree,
            "the ring",
            log,
            Duration::from_secs(10),
            |tree, text| {
                let lines: Vec<&str> = tree::complete_lines(text).collect();
                let all = laps(&lines)?;
                check_after(0, &all)?;
                Ok(
                    (all.len() >= READY_LAPS && tree.refresh_children()?.len() as u64 == CHILDREN)
                        .then_some(()),
                )
            },
        )?;
        Ok(tree)
    }

    fn at_dump(&self, log: &Path) -> Result<Progress> {
        let lines = tree::read_lines(log)?;
        let all = laps(&lines).with_context(|| format!("in {}", log.display()))?;
        check_after(0, &all).with_context(|| format!("in {}", log.display()))?;
        let last = all.last().context("no lap in the ring's log at the dump")?;
        Ok(Progress {
            lines: lines.len(),
            counter: last.lap,
            last_line: lines.last().cloned().unwrap_or_default(),
        })
    }

    fn verify_continues(&self, log: &Path, at: &Progress) -> Result<String> {
        let mut seen = Vec::new();
        tree::wait_continues(log, at.lines, Duration::from_secs(5), |new| {
            seen = laps(new)?;
            check_after(at.counter, &seen)?;
            Ok(seen.len() >= WANTED_LAPS)
        })?;
        let end = seen.last().expect("laps");
        Ok(format!(
            "lap {} -> {}..{}, token {}",
            at.counter,
            at.counter + 1,
            end.lap,
            end.token
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lap(l: u64) -> Lap {
        Lap {
            lap: l,
            token: Lap::expected_token(l),
        }
    }

    #[test]
    fn the_first_lap_carries_the_token_once_around() {
        assert_eq!(Lap::expected_token(1), 10);
        assert_eq!(
            Lap::parse("lap 1 token 10"),
            Some(Lap { lap: 1, token: 10 })
        );
        assert!(laps(&["lap 1 token 10", "FAIL read token: errno 4"]).is_err());
    }

    #[test]
    fn laps_must_be_consecutive_with_the_right_token() {
        assert!(check_after(0, &[lap(1), lap(2)]).is_ok());
        assert!(check_after(5, &[lap(6), lap(7)]).is_ok());
        assert!(check_after(5, &[lap(7)]).is_err());
        assert!(check_after(5, &[lap(5)]).is_err());
        assert!(check_after(5, &[Lap { lap: 6, token: 66 }]).is_err());
    }
}
