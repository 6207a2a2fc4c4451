//! The process being checkpointed: `workload.c`, compiled at run time, and the protocol
//! the bench speaks with it through its log file.

use std::fs::{self, File};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use rustix::process::{kill_process, waitpid, Pid, Signal, WaitOptions};

use crate::tree::parse_stat;

const SOURCE: &str = include_str!("../workload.c");
/// Executable name; also the restored process's `comm` (at most 15 bytes).
const NAME: &str = "bench-workload";
/// Pattern seed handed to every workload.
pub const SEED: u64 = 0x5eed_0f5c_a515_0000;

/// The compiled workload program.
#[derive(Debug, Clone)]
pub struct WorkloadProgram {
    path: PathBuf,
}

impl WorkloadProgram {
    /// Compiles `workload.c` (embedded in this binary) with `gcc` into `dir`, dynamically
    /// linked like an ordinary program.
    pub fn build(dir: &Path) -> Result<Self> {
        let src = dir.join("workload.c");
        let path = dir.join(NAME);
        fs::write(&src, SOURCE).with_context(|| format!("writing {}", src.display()))?;
        let out = Command::new("gcc")
            .args(["-O2", "-Wall", "-Werror", "-o"])
            .arg(&path)
            .arg(&src)
            .output()
            .context("running gcc to build the workload (is gcc installed?)")?;
        if !out.status.success() {
            bail!(
                "gcc failed to build {}: {}\n{}",
                src.display(),
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(WorkloadProgram { path })
    }
}

/// The workload's memory region, as it announced it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Region {
    pub addr: u64,
    pub len: u64,
}

/// What the workload has written to its log so far.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Log {
    pub region: Option<Region>,
    /// Counter values, one per complete line, in file order.
    pub ticks: Vec<u64>,
}

impl Log {
    pub fn read(path: &Path) -> Result<Log> {
        match fs::read_to_string(path) {
            Ok(text) => Log::parse(&text).with_context(|| format!("in {}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Log::default()),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    /// Parses complete lines only: the last line may be in the middle of being written.
    pub fn parse(text: &str) -> Result<Log> {
        let complete = match text.rfind('\n') {
            Some(end) => &text[..end],
            None => "",
        };
        let mut log = Log::default();
        for (n, line) in complete.lines().enumerate() {
            if let Some(rest) = line.strip_prefix("ready ") {
                let (addr, len) = rest
                    .split_once(' ')
                    .with_context(|| format!("line {}: bad ready line {line:?}", n + 1))?;
                let addr = u64::from_str_radix(addr.trim_start_matches("0x"), 16)
                    .with_context(|| format!("line {}: bad address {addr:?}", n + 1))?;
                let len = len
                    .parse()
                    .with_context(|| format!("line {}: bad length {len:?}", n + 1))?;
                log.region = Some(Region { addr, len });
            } else {
                let tick = line
                    .parse()
                    .with_context(|| format!("line {}: bad counter {line:?}", n + 1))?;
                log.ticks.push(tick);
            }
        }
        Ok(log)
    }

    pub fn last_tick(&self) -> Option<u64> {
        self.ticks.last().copied()
    }
}

/// A running workload, started by the bench. Killed and reaped when dropped.
#[derive(Debug)]
pub struct Workload {
    child: Option<Child>,
    pub pid: i32,
    pub log: PathBuf,
    pub region: Region,
}

impl Workload {
    /// Starts a workload of `mib` MiB logging to `log`, and waits until its memory is
    /// filled and it has ticked three times.
    pub fn start(program: &WorkloadProgram, mib: u64, log: &Path) -> Result<Workload> {
        let _ = fs::remove_file(log);
        let child = Command::new(&program.path)
            .arg(mib.to_string())
            .arg(log)
            .arg(format!("{SEED:#x}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {}", program.path.display()))?;
        let pid = i32::try_from(child.id()).context("pid out of range")?;
        let mut workload = Workload {
            child: Some(child),
            pid,
            log: log.to_path_buf(),
            region: Region { addr: 0, len: 0 },
        };
        // Filling runs at a few GB/s; allow a generous margin for a loaded machine.
        let patience = Duration::from_secs(10 + mib / 128);
        let deadline = Instant::now() + patience;
        loop {
            let state = Log::read(log)?;
            // A few ticks in, the process has run its loop and touched what it uses.
            if let (Some(region), true) = (state.region, state.ticks.len() >= 3) {
                ensure!(
                    region.len == mib << 20,
                    "workload {pid} announced {} bytes, asked for {mib} MiB",
                    region.len
                );
                workload.region = region;
                return Ok(workload);
            }
            if let Some(status) = workload.child.as_mut().and_then(|c| c.try_wait().ok()?) {
                bail!("workload {pid} ({mib} MiB) exited before it was ready: {status}");
            }
            ensure!(
                Instant::now() < deadline,
                "workload {pid} ({mib} MiB) not ready after {patience:?} (log {})",
                log.display()
            );
            sleep(Duration::from_millis(5));
        }
    }

    /// Waits for the workload to be gone after a dump killed it, so its PID is free for
    /// the restore. Fails if it is still running.
    pub fn reap_after_dump(&mut self) -> Result<()> {
        let Some(child) = self.child.as_mut() else {
            return Ok(());
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if child.try_wait()?.is_some() {
                self.child = None;
                return Ok(());
            }
            ensure!(
                Instant::now() < deadline,
                "workload {} still runs 5 s after `stasis dump` returned (dump should kill it)",
                self.pid
            );
            sleep(Duration::from_millis(1));
        }
    }
}

impl Drop for Workload {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A process that `stasis restore -d` left running. The bench, a child subreaper,
/// inherits it when stasis exits; it is killed and reaped when dropped.
#[derive(Debug)]
pub struct RestoredProcess {
    pub pid: i32,
}

impl RestoredProcess {
    /// Takes charge of the process holding `pid` after a restore: it must be the
    /// workload and alive. A process that is not ours (neither the workload's name nor
    /// our child) is left alone; one that is ours but wrong is killed when the error
    /// drops it.
    pub fn adopt(pid: i32) -> Result<RestoredProcess> {
        let stat = fs::read_to_string(format!("/proc/{pid}/stat"))
            .with_context(|| format!("no process {pid} after `stasis restore -d` returned"))?;
        let (comm, state, ppid) =
            parse_stat(&stat).with_context(|| format!("bad /proc/{pid}/stat: {stat:?}"))?;
        let ours = ppid == rustix::process::getpid().as_raw_nonzero().get();
        ensure!(
            comm == NAME || ours,
            "process {pid} after restore is {comm:?}, not the workload {NAME:?}"
        );
        let restored = RestoredProcess { pid };
        ensure!(
            comm == NAME,
            "restored process {pid} is named {comm:?}, not {NAME:?}"
        );
        ensure!(
            !matches!(state, 'Z' | 'X'),
            "restored process {pid} is already dead (state {state})"
        );
        Ok(restored)
    }

    /// Proves the restored process went on from where the dump froze it: its next log
    /// lines continue the counter from `dumped` (the last value logged before the dump)
    /// with no gap or repeat.
    pub fn verify_continues(&self, log: &Path, lines_at_dump: usize, dumped: u64) -> Result<()> {
        const WANTED: usize = 3;
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let state = Log::read(log)?;
            let new = state.ticks.get(lines_at_dump..).unwrap_or_default();
            for (i, &tick) in new.iter().enumerate() {
                let expected = dumped + 1 + i as u64;
                ensure!(
                    tick == expected,
                    "restored process {}: counter went {dumped} -> ... -> {tick}, expected {expected} \
                     (log {})",
                    self.pid,
                    log.display()
                );
            }
            if new.len() >= WANTED {
                return Ok(());
            }
            ensure!(
                Instant::now() < deadline,
                "restored process {} did not continue: {} new tick(s) in 5 s after the dumped \
                 value {dumped} (log {})",
                self.pid,
                new.len(),
                log.display()
            );
            sleep(Duration::from_millis(5));
        }
    }

    /// Reads the workload's memory back through /proc/PID/mem and checks every word
    /// against the pattern it was filled with.
    pub fn verify_memory(&self, region: Region) -> Result<()> {
        let path = format!("/proc/{}/mem", self.pid);
        let mem = File::open(&path).with_context(|| format!("opening {path}"))?;
        let mut buf = vec![0u8; 4 << 20];
        let mut off = 0u64;
        while off < region.len {
            let n = (region.len - off).min(buf.len() as u64) as usize;
            mem.read_exact_at(&mut buf[..n], region.addr + off)
                .with_context(|| format!("reading {path} at {:#x}", region.addr + off))?;
            for (i, word) in buf[..n].chunks_exact(8).enumerate() {
                let index = off / 8 + i as u64;
                let got = u64::from_ne_bytes(word.try_into().expect("8-byte chunk"));
                let want = pattern_word(SEED, index);
                ensure!(
                    got == want,
                    "restored process {}: memory at {:#x} is {got:#018x}, was {want:#018x}",
                    self.pid,
                    region.addr + index * 8
                );
            }
            off += n as u64;
        }
        Ok(())
    }
}

impl Drop for RestoredProcess {
    fn drop(&mut self) {
        let Some(pid) = Pid::from_raw(self.pid) else {
            return;
        };
        let _ = kill_process(pid, Signal::KILL);
        // It is ours to reap when stasis handed it to us; if it is not our child, wait
        // for whoever is its parent to let the PID go.
        if waitpid(Some(pid), WaitOptions::empty()).is_err() {
            let deadline = Instant::now() + Duration::from_secs(5);
            while Path::new(&format!("/proc/{}", self.pid)).exists() && Instant::now() < deadline {
                sleep(Duration::from_millis(2));
            }
        }
    }
}

/// The word the workload stores at index `i` of its region (see workload.c).
pub fn pattern_word(seed: u64, i: u64) -> u64 {
    i.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(seed) | 1
}

/// Reaps any orphan the bench inherited as subreaper and no longer tracks. Call only
/// when no `Child` is outstanding, or its status would be taken from it.
pub fn reap_orphans() {
    while let Ok(Some(_)) = waitpid(None, WaitOptions::NOHANG) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_log_yields_region_and_complete_ticks_only() {
        let log = Log::parse("ready 0x7f0000000000 1048576\n1\n2\n3").unwrap();
        assert_eq!(
            log.region,
            Some(Region {
                addr: 0x7f00_0000_0000,
                len: 1 << 20
            })
        );
        assert_eq!(log.ticks, vec![1, 2]);
        assert_eq!(log.last_tick(), Some(2));
    }

    #[test]
    fn a_garbled_log_line_is_an_error_naming_the_line() {
        let err = Log::parse("ready 0x10 4096\n1\nxx\n").unwrap_err();
        assert!(format!("{err:#}").contains("line 3"), "{err:#}");
    }

    #[test]
    fn the_pattern_is_never_zero() {
        assert!((0..100_000).all(|i| pattern_word(SEED, i) != 0));
        assert!(pattern_word(0, 0) != 0);
    }
}
