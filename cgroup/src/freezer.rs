//! The cgroup freezer (`--freeze-cgroup PATH`) and the task lists of a cgroup.
//!
//! v1 writes `FROZEN` to `freezer.state` and polls it until it reads `FROZEN` (it reads
//! `FREEZING` meanwhile); v2 writes `1` to `cgroup.freeze` and polls `cgroup.events` until
//! it says `frozen 1`. Which one a path is, is decided by the file it has, so a hybrid host
//! (a v1 freezer hierarchy and cgroup2 side by side) takes either.
//!
//! A freeze that does not complete in time is undone and reported with the path. A
//! cgroup that was already frozen before stasis came is left frozen on every error path,
//! and [`Freezer::restore_origin`] puts it back into that state after a dump that leaves
//! the tasks running — as CRIU does.

use crate::error::{io, CgroupError, Result};
use crate::fs::CgroupFs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Which freezer interface a cgroup has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FreezerKind {
    /// `freezer.state` (a v1 freezer hierarchy).
    V1,
    /// `cgroup.freeze` and `cgroup.events` (cgroup2).
    V2,
}

/// What a freezer reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FreezerState {
    Thawed,
    /// Asked to freeze, not every task frozen yet.
    Freezing,
    Frozen,
}

/// How often a freezing cgroup is polled.
const POLL: Duration = Duration::from_millis(5);

/// A freezer cgroup.
#[derive(Debug)]
pub struct Freezer<F: CgroupFs> {
    fs: F,
    path: PathBuf,
    kind: FreezerKind,
}

/// The state a freezer was in before stasis froze it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Origin {
    pub was_frozen: bool,
}

impl<F: CgroupFs> Freezer<F> {
    /// The freezer at `path` (a cgroup directory); an error names the path if it is not
    /// a freezer cgroup (a v1 or v2 root cgroup has no freezer file either).
    pub fn open(fs: F, path: &Path) -> Result<Freezer<F>> {
        let kind = if fs.exists(&path.join("freezer.state")) {
            FreezerKind::V1
        } else if fs.exists(&path.join("cgroup.freeze")) {
            FreezerKind::V2
        } else {
            return Err(CgroupError::NotAFreezer {
                path: path.to_path_buf(),
            });
        };
        Ok(Freezer {
            fs,
            path: path.to_path_buf(),
            kind,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn kind(&self) -> FreezerKind {
        self.kind
    }

    fn read(&self, file: &str) -> Result<String> {
        let p = self.path.join(file);
        self.fs.read(&p).map_err(io("read", p))
    }

    /// The freezer's current state.
    pub fn state(&self) -> Result<FreezerState> {
        match self.kind {
            FreezerKind::V1 => {
                let s = self.read("freezer.state")?;
                match s.trim() {
                    "THAWED" => Ok(FreezerState::Thawed),
                    "FREEZING" => Ok(FreezerState::Freezing),
                    "FROZEN" => Ok(FreezerState::Frozen),
                    other => Err(CgroupError::Parse {
                        file: self.path.join("freezer.state").display().to_string(),
                        what: format!("unknown state {other:?}"),
                    }),
                }
            }
            FreezerKind::V2 => {
                if self.read("cgroup.freeze")?.trim() == "0" {
                    return Ok(FreezerState::Thawed);
                }
                let events = self.read("cgroup.events")?;
                match events.lines().find_map(|l| l.strip_prefix("frozen ")) {
                    Some("1") => Ok(FreezerState::Frozen),
                    Some(_) => Ok(FreezerState::Freezing),
                    None => Err(CgroupError::Parse {
                        file: self.path.join("cgroup.events").display().to_string(),
                        what: "no \"frozen\" line".into(),
                    }),
                }
            }
        }
    }

    /// Asks the kernel to freeze (`true`) or thaw, without waiting.
    fn request(&self, frozen: bool) -> Result<()> {
        let (file, value) = match (self.kind, frozen) {
            (FreezerKind::V1, true) => ("freezer.state", "FROZEN"),
            (FreezerKind::V1, false) => ("freezer.state", "THAWED"),
            (FreezerKind::V2, true) => ("cgroup.freeze", "1"),
            (FreezerKind::V2, false) => ("cgroup.freeze", "0"),
        };
        let p = self.path.join(file);
        log::debug!("{} <- {value}", p.display());
        self.fs.write(&p, value).map_err(io("write", p))
    }

    /// Freezes every task of the cgroup (and of its descendants) and waits until they
    /// all are frozen, for at most `timeout`. The returned guard thaws the cgroup when it
    /// is dropped, unless it was frozen before.
    pub fn freeze(&self, timeout: Duration) -> Result<Frozen<'_, F>> {
        let me = std::process::id() as i32;
        if self.threads()?.contains(&me) {
            return Err(CgroupError::FreezesSelf {
                path: self.path.clone(),
                pid: me,
            });
        }
        let origin = self.state()?;
        let guard = Frozen {
            freezer: self,
            origin: Origin {
                was_frozen: origin != FreezerState::Thawed,
            },
            thawed: false,
        };
        if origin != FreezerState::Frozen {
            self.request(true)?;
        }
        let deadline = Instant::now() + timeout;
        loop {
            let state = self.state()?;
            if state == FreezerState::Frozen {
                log::info!("froze cgroup {}", self.path.display());
                return Ok(guard);
            }
            if Instant::now() >= deadline {
                // The guard thaws it on the way out, unless it was frozen before.
                return Err(CgroupError::FreezeTimeout {
                    path: self.path.clone(),
                    state: format!("{state:?}").to_lowercase(),
                    timeout,
                });
            }
            self.fs.sleep(POLL);
        }
    }

    /// After a dump that leaves the tasks running: freezes the cgroup again if it was
    /// frozen before stasis came.
    pub fn restore_origin(&self, origin: Origin) -> Result<()> {
        if origin.was_frozen {
            self.request(true)?;
        }
        Ok(())
    }

    /// Every thread of the cgroup and its descendants (v1 `tasks`, v2 `cgroup.threads`).
    pub fn threads(&self) -> Result<Vec<i32>> {
        threads_of(&self.fs, &self.path)
    }
}

/// A frozen cgroup. Dropping it thaws the cgroup (unless it was frozen before stasis
/// froze it): every error path of a dump leaves the tasks running.
#[must_use = "dropping it thaws the cgroup"]
pub struct Frozen<'a, F: CgroupFs> {
    freezer: &'a Freezer<F>,
    origin: Origin,
    thawed: bool,
}

impl<F: CgroupFs> Frozen<'_, F> {
    /// The state the cgroup had before.
    pub fn origin(&self) -> Origin {
        self.origin
    }

    /// Thaws the cgroup — even one that was frozen before, so that the tasks reach
    /// their ptrace stops; [`Freezer::restore_origin`] freezes it again at the end.
    pub fn thaw(mut self) -> Result<Origin> {
        self.thawed = true;
        self.freezer.request(false)?;
        log::info!("thawed cgroup {}", self.freezer.path.display());
        Ok(self.origin)
    }
}

impl<F: CgroupFs> Drop for Frozen<'_, F> {
    fn drop(&mut self) {
        if !self.thawed && !self.origin.was_frozen {
            if let Err(e) = self.freezer.request(false) {
                log::error!("cannot thaw {}: {e}", self.freezer.path.display());
            }
        }
    }
}

fn ids(fs: &impl CgroupFs, file: &Path) -> Result<Vec<i32>> {
    let text = fs.read(file).map_err(io("read", file))?;
    text.split_whitespace()
        .map(|w| {
            w.parse().map_err(|_| CgroupError::Parse {
                file: file.display().to_string(),
                what: format!("{w:?} is not a task id"),
            })
        })
        .collect()
}

fn walk(fs: &impl CgroupFs, dir: &Path, file: &str, out: &mut Vec<i32>) -> Result<()> {
    out.extend(ids(fs, &dir.join(file))?);
    for sub in fs.subdirs(dir).map_err(io("list", dir))? {
        walk(fs, &dir.join(sub), file, out)?;
    }
    Ok(())
}

/// Every thread of the cgroup at `dir` and of its descendants.
pub fn threads_of(fs: &impl CgroupFs, dir: &Path) -> Result<Vec<i32>> {
    let file = if fs.exists(&dir.join("tasks")) {
        "tasks"
    } else {
        "cgroup.threads"
    };
    let mut out = Vec::new();
    walk(fs, dir, file, &mut out)?;
    Ok(out)
}

/// Every process (thread-group leader) of the cgroup at `dir` and of its descendants.
pub fn procs_of(fs: &impl CgroupFs, dir: &Path) -> Result<Vec<i32>> {
    let mut out = Vec::new();
    walk(fs, dir, "cgroup.procs", &mut out)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::FakeFs;

    const V1: &str = "/cg/freezer/ct";
    const V2: &str = "/cg/unified/ct";

    fn v1(fs: &FakeFs) -> Freezer<&FakeFs> {
        fs.file(&format!("{V1}/freezer.state"), "THAWED\n")
            .file(&format!("{V1}/tasks"), "10\n11\n")
            .file(&format!("{V1}/sub/tasks"), "12\n");
        Freezer::open(fs, Path::new(V1)).unwrap()
    }

    fn v2(fs: &FakeFs) -> Freezer<&FakeFs> {
        fs.file(&format!("{V2}/cgroup.freeze"), "0\n")
            .file(&format!("{V2}/cgroup.events"), "populated 1\nfrozen 0\n")
            .file(&format!("{V2}/cgroup.threads"), "20\n");
        Freezer::open(fs, Path::new(V2)).unwrap()
    }

    #[test]
    fn v1_freeze_polls_freezer_state_until_frozen_and_the_guard_thaws() {
        let fs = FakeFs::new();
        fs.freeze_after(Some(3));
        let f = v1(&fs);
        assert_eq!(f.kind(), FreezerKind::V1);
        {
            let frozen = f.freeze(Duration::from_secs(5)).unwrap();
            assert_eq!(f.state().unwrap(), FreezerState::Frozen);
            assert!(!frozen.origin().was_frozen);
        }
        assert_eq!(
            fs.ops(),
            [
                format!("write {V1}/freezer.state = FROZEN"),
                format!("write {V1}/freezer.state = THAWED")
            ]
        );
        assert_eq!(
            f.threads().unwrap(),
            [10, 11, 12],
            "tasks of the cgroup and its children"
        );
    }

    #[test]
    fn v2_freeze_waits_for_cgroup_events_frozen_1() {
        let fs = FakeFs::new();
        fs.freeze_after(Some(2));
        let f = v2(&fs);
        assert_eq!(f.kind(), FreezerKind::V2);
        let frozen = f.freeze(Duration::from_secs(5)).unwrap();
        assert_eq!(f.state().unwrap(), FreezerState::Frozen);
        let origin = frozen.thaw().unwrap();
        assert!(!origin.was_frozen);
        assert_eq!(f.state().unwrap(), FreezerState::Thawed);
        assert_eq!(
            fs.ops(),
            [
                format!("write {V2}/cgroup.freeze = 1"),
                format!("write {V2}/cgroup.freeze = 0")
            ]
        );
        assert_eq!(f.threads().unwrap(), [20]);
    }

    #[test]
    fn a_freeze_that_never_completes_times_out_naming_the_path_and_is_undone() {
        let fs = FakeFs::new();
        fs.freeze_after(None);
        let f = v2(&fs);
        let e = f.freeze(Duration::from_millis(20)).err().unwrap();
        let msg = e.to_string();
        assert!(msg.contains(V2) && msg.contains("freezing"), "{msg}");
        assert_eq!(
            fs.value(&format!("{V2}/cgroup.freeze")).as_deref(),
            Some("0\n"),
            "thawed back"
        );
    }

    #[test]
    fn a_cgroup_frozen_before_stasis_stays_frozen_on_error_and_is_refrozen_at_the_end() {
        let fs = FakeFs::new();
        let f = v1(&fs);
        fs.file(&format!("{V1}/freezer.state"), "FROZEN\n");
        {
            let frozen = f.freeze(Duration::from_secs(1)).unwrap();
            assert!(frozen.origin().was_frozen);
            // Dropped on an error path: left frozen.
        }
        assert!(fs.ops().is_empty(), "{:?}", fs.ops());
        let origin = f.freeze(Duration::from_secs(1)).unwrap().thaw().unwrap();
        f.restore_origin(origin).unwrap();
        assert_eq!(
            fs.ops(),
            [
                format!("write {V1}/freezer.state = THAWED"),
                format!("write {V1}/freezer.state = FROZEN")
            ]
        );
    }

    #[test]
    fn a_directory_without_a_freezer_file_is_refused_by_path() {
        let fs = FakeFs::new();
        fs.dir("/cg/freezer");
        let e = Freezer::open(&fs, Path::new("/cg/freezer"))
            .err()
            .unwrap()
            .to_string();
        assert!(e.starts_with("/cg/freezer is not a freezer cgroup"), "{e}");
    }

    #[test]
    fn procs_are_listed_recursively() {
        let fs = FakeFs::new();
        fs.file("/cg/x/cgroup.procs", "1 2\n")
            .file("/cg/x/a/cgroup.procs", "3\n")
            .file("/cg/x/a/b/cgroup.procs", "");
        assert_eq!(procs_of(&fs, Path::new("/cg/x")).unwrap(), [1, 2, 3]);
        fs.file("/cg/y/cgroup.procs", "zz\n");
        assert!(procs_of(&fs, Path::new("/cg/y"))
            .unwrap_err()
            .to_string()
            .contains("/cg/y/cgroup.procs"));
    }
}
