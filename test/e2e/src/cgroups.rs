//! Cgroups for the tests that put workloads in them: [`TestCgroups`] creates a test's
//! cgroups under `/sys/fs/cgroup/<hierarchy>/stasis-test-<pid>-<tag>` (the lab machine's
//! hybrid layout) and removes every one it created or was told about when dropped —
//! freezers thawed, tasks killed, deepest first — the test passing or not.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::proc;

/// Where the lab machine mounts its cgroup hierarchies.
pub const ROOT: &str = "/sys/fs/cgroup";

/// The cgroup directories of one test, removed (tasks killed, freezers thawed) when
/// dropped, deepest first.
pub struct TestCgroups {
    pub name: String,
    dirs: Vec<PathBuf>,
}

impl TestCgroups {
    /// `stasis-test-<test pid>-<tag>`, nothing created yet.
    pub fn new(tag: &str) -> TestCgroups {
        TestCgroups {
            name: format!("stasis-test-{}-{tag}", std::process::id()),
            dirs: Vec::new(),
        }
    }

    /// The cgroup path (`/stasis-test-...`).
    pub fn path(&self) -> String {
        format!("/{}", self.name)
    }

    /// `/sys/fs/cgroup/<hierarchy>/<rel>`, tracked for removal.
    pub fn track(&mut self, hierarchy: &str, rel: &str) -> PathBuf {
        let mount = Path::new(ROOT).join(hierarchy);
        assert!(
            mount.join("cgroup.procs").is_file(),
            "{} is not a mounted cgroup hierarchy; these tests need the hybrid layout of the lab machine",
            mount.display()
        );
        let d = mount.join(rel);
        if !self.dirs.contains(&d) {
            self.dirs.push(d.clone());
        }
        d
    }

    /// Creates the test's cgroup in `hierarchy` with `props` written in order.
    pub fn create(&mut self, hierarchy: &str, props: &[(&str, &str)]) -> PathBuf {
        let name = self.name.clone();
        let d = self.track(hierarchy, &name);
        std::fs::create_dir(&d).unwrap_or_else(|e| panic!("mkdir {}: {e}", d.display()));
        for (k, v) in props {
            write(&d.join(k), v);
        }
        d
    }

    /// Every mounted hierarchy's `<rel>`, tracked (for what `--cgroup-root` creates).
    pub fn track_everywhere(&mut self, rel: &str) {
        for e in std::fs::read_dir(ROOT).unwrap().flatten() {
            if e.path().join("cgroup.procs").is_file() {
                let h = e.file_name().to_string_lossy().into_owned();
                self.track(&h, rel);
            }
        }
    }

    /// Removes the test's directories now (asserting it worked), as a runtime that
    /// tore the container down would.
    pub fn remove_all(&self) {
        for d in self.dirs.iter().rev() {
            if d.exists() {
                rmdir_patiently(d).unwrap_or_else(|e| panic!("{e}"));
            }
        }
    }
}

impl Drop for TestCgroups {
    fn drop(&mut self) {
        let mut dirs: Vec<&PathBuf> = self.dirs.iter().collect();
        dirs.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
        for d in dirs {
            if !d.exists() {
                continue;
            }
            // A frozen task cannot die: thaw first.
            let _ = std::fs::write(d.join("freezer.state"), "THAWED");
            let _ = std::fs::write(d.join("cgroup.freeze"), "0");
            if let Ok(procs) = std::fs::read_to_string(d.join("cgroup.procs")) {
                for pid in procs
                    .split_whitespace()
                    .filter_map(|p| p.parse::<i32>().ok())
                {
                    let _ = proc::signal(pid, libc::SIGKILL);
                    let _ = proc::try_reap(pid);
                }
            }
            if let Err(e) = rmdir_patiently(d) {
                eprintln!("cleanup: {e}");
            }
        }
    }
}

/// Removes a cgroup directory, waiting for its last (killed) task to leave it.
pub fn rmdir_patiently(d: &Path) -> Result<(), String> {
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        match std::fs::remove_dir(d) {
            Ok(()) => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && Instant::now() < until => {
                std::thread::sleep(Duration::from_millis(20))
            }
            Err(e) => return Err(format!("rmdir {}: {e}", d.display())),
        }
    }
}

#[track_caller]
pub fn write(p: &Path, v: &str) {
    std::fs::write(p, v).unwrap_or_else(|e| panic!("write {v:?} to {}: {e}", p.display()));
}

#[track_caller]
pub fn read(p: &Path) -> String {
    std::fs::read_to_string(p)
        .unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
        .trim()
        .to_string()
}

/// Moves `pid` into the cgroup at `dir`.
#[track_caller]
pub fn move_in(dir: &Path, pid: proc::Pid) {
    write(&dir.join("cgroup.procs"), &pid.to_string());
}

/// The cgroup of `pid` in `hierarchy` (`cpu`, `name=systemd`, `""` for v2).
pub fn cgroup_of(pid: proc::Pid, hierarchy: &str) -> String {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
    text.lines()
        .find_map(|l| {
            let mut f = l.splitn(3, ':');
            let (_, name, path) = (f.next()?, f.next()?, f.next()?);
            (name == hierarchy).then(|| path.to_string())
        })
        .unwrap_or_else(|| panic!("pid {pid} has no {hierarchy:?} line in:\n{text}"))
}
