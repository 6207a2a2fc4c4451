//! A recording cgroupfs for the unit tests: directories and files in memory, every
//! mutation logged in order, writes that can be made to fail, and freezers that take a
//! given number of polls to freeze.

use crate::fs::{CgroupFs, Perms};
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Default)]
struct State {
    dirs: BTreeSet<PathBuf>,
    files: BTreeMap<PathBuf, String>,
    perms: BTreeMap<PathBuf, Perms>,
    ops: Vec<String>,
    fail: Vec<PathBuf>,
    /// Polls of a freezing freezer left before it reports frozen (`None`: never).
    freeze_polls: Option<usize>,
    polls_left: BTreeMap<PathBuf, usize>,
}

/// The fake filesystem.
#[derive(Default)]
pub struct FakeFs {
    s: RefCell<State>,
}

const DIR_PERMS: Perms = Perms {
    mode: 0o40755,
    uid: 0,
    gid: 0,
};

impl FakeFs {
    pub fn new() -> FakeFs {
        let f = FakeFs::default();
        f.s.borrow_mut().freeze_polls = Some(0);
        f
    }

    /// Adds directory `p` and its parents.
    pub fn dir(&self, p: &str) -> &Self {
        let mut s = self.s.borrow_mut();
        for a in Path::new(p).ancestors() {
            s.dirs.insert(a.to_path_buf());
        }
        self
    }

    /// Adds file `p` (and its directory) holding `v`.
    pub fn file(&self, p: &str, v: &str) -> &Self {
        self.dir(Path::new(p).parent().unwrap().to_str().unwrap());
        self.s.borrow_mut().files.insert(p.into(), v.to_string());
        self
    }

    /// Makes every write to (or mkdir of) `p` fail with EINVAL.
    pub fn fail(&self, p: &str) -> &Self {
        self.s.borrow_mut().fail.push(p.into());
        self
    }

    /// A freezer takes `n` polls to freeze; `None`: it never does.
    pub fn freeze_after(&self, n: Option<usize>) -> &Self {
        self.s.borrow_mut().freeze_polls = n;
        self
    }

    pub fn set_perms_of(&self, p: &str, perms: Perms) -> &Self {
        self.s.borrow_mut().perms.insert(p.into(), perms);
        self
    }

    /// Every mutation so far: `mkdir P`, `rmdir P`, `write P = V`, `perms P MODE UID GID`.
    pub fn ops(&self) -> Vec<String> {
        self.s.borrow().ops.clone()
    }

    pub fn clear_ops(&self) {
        self.s.borrow_mut().ops.clear();
    }

    pub fn has_dir(&self, p: &str) -> bool {
        self.s.borrow().dirs.contains(Path::new(p))
    }

    pub fn value(&self, p: &str) -> Option<String> {
        self.s.borrow().files.get(Path::new(p)).cloned()
    }
}

fn einval() -> io::Error {
    io::Error::from_raw_os_error(libc_einval())
}

const fn libc_einval() -> i32 {
    22
}

fn enoent() -> io::Error {
    io::Error::from_raw_os_error(2)
}

impl CgroupFs for FakeFs {
    fn read(&self, path: &Path) -> io::Result<String> {
        let mut s = self.s.borrow_mut();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let dir = path.parent().unwrap().to_path_buf();
        // A freezing freezer reports frozen after its polls run out.
        let freezing = match name {
            "freezer.state" => s.files.get(path).map(String::as_str) == Some("FREEZING\n"),
            "cgroup.events" => {
                s.files.get(path).is_some_and(|v| v.contains("frozen 0"))
                    && s.files.get(&dir.join("cgroup.freeze")).map(String::as_str) == Some("1\n")
            }
            _ => false,
        };
        if freezing {
            let left = s.polls_left.get(&dir).copied();
            match left {
                Some(0) => {
                    let v = if name == "freezer.state" {
                        "FROZEN\n".to_string()
                    } else {
                        "populated 1\nfrozen 1\n".to_string()
                    };
                    s.files.insert(path.to_path_buf(), v);
                }
                Some(n) => {
                    s.polls_left.insert(dir.clone(), n - 1);
                }
                None => {}
            }
        }
        s.files.get(path).cloned().ok_or_else(enoent)
    }

    fn write(&self, path: &Path, value: &str) -> io::Result<()> {
        let mut s = self.s.borrow_mut();
        s.ops.push(format!("write {} = {value}", path.display()));
        if s.fail.iter().any(|f| f == path) {
            return Err(einval());
        }
        let dir = path.parent().unwrap().to_path_buf();
        if !s.dirs.contains(&dir) {
            return Err(enoent());
        }
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let stored = match (name, value) {
            ("freezer.state", "FROZEN") => {
                let polls = s.freeze_polls;
                match polls {
                    Some(n) => s.polls_left.insert(dir.clone(), n),
                    None => s.polls_left.remove(&dir),
                };
                "FREEZING\n".to_string()
            }
            ("cgroup.freeze", "1") => {
                let polls = s.freeze_polls;
                match polls {
                    Some(n) => s.polls_left.insert(dir.clone(), n),
                    None => s.polls_left.remove(&dir),
                };
                s.files
                    .insert(dir.join("cgroup.events"), "populated 1\nfrozen 0\n".into());
                "1\n".to_string()
            }
            ("cgroup.freeze", "0") => {
                s.files
                    .insert(dir.join("cgroup.events"), "populated 1\nfrozen 0\n".into());
                "0\n".to_string()
            }
            (_, v) => format!("{v}\n"),
        };
        // Writes to cgroup.procs/tasks add a member; other files keep the value.
        if matches!(name, "cgroup.procs" | "tasks") {
            let e = s.files.entry(path.to_path_buf()).or_default();
            e.push_str(&stored);
        } else {
            s.files.insert(path.to_path_buf(), stored);
        }
        Ok(())
    }

    fn mkdir(&self, path: &Path) -> io::Result<()> {
        let mut s = self.s.borrow_mut();
        s.ops.push(format!("mkdir {}", path.display()));
        if s.fail.iter().any(|f| f == path) {
            return Err(einval());
        }
        if s.dirs.contains(path) {
            return Err(io::Error::from_raw_os_error(17));
        }
        if !s.dirs.contains(path.parent().unwrap()) {
            return Err(enoent());
        }
        s.dirs.insert(path.to_path_buf());
        Ok(())
    }

    fn rmdir(&self, path: &Path) -> io::Result<()> {
        let mut s = self.s.borrow_mut();
        s.ops.push(format!("rmdir {}", path.display()));
        if !s.dirs.remove(path) {
            return Err(enoent());
        }
        let inside: Vec<PathBuf> = s
            .files
            .keys()
            .filter(|f| f.parent() == Some(path))
            .cloned()
            .collect();
        for f in inside {
            s.files.remove(&f);
        }
        Ok(())
    }

    fn exists(&self, path: &Path) -> bool {
        let s = self.s.borrow();
        s.dirs.contains(path) || s.files.contains_key(path)
    }

    fn subdirs(&self, path: &Path) -> io::Result<Vec<String>> {
        let s = self.s.borrow();
        if !s.dirs.contains(path) {
            return Err(enoent());
        }
        Ok(s.dirs
            .iter()
            .filter(|d| d.parent() == Some(path))
            .filter_map(|d| d.file_name()?.to_str().map(str::to_string))
            .collect())
    }

    fn perms(&self, path: &Path) -> io::Result<Perms> {
        let s = self.s.borrow();
        if let Some(p) = s.perms.get(path) {
            return Ok(*p);
        }
        if s.dirs.contains(path) {
            Ok(DIR_PERMS)
        } else if s.files.contains_key(path) || path.parent().is_some_and(|d| s.dirs.contains(d)) {
            // cgroupfs makes a cgroup's interface files along with its directory.
            Ok(Perms {
                mode: 0o100644,
                uid: 0,
                gid: 0,
            })
        } else {
            Err(enoent())
        }
    }

    fn set_perms(&self, path: &Path, perms: Perms) -> io::Result<()> {
        let now = self.perms(path)?;
        if now != perms {
            let mut s = self.s.borrow_mut();
            s.ops.push(format!(
                "perms {} {:o} {} {}",
                path.display(),
                perms.mode & 0o7777,
                perms.uid,
                perms.gid
            ));
            s.perms.insert(path.to_path_buf(), perms);
        }
        Ok(())
    }

    fn sleep(&self, _d: Duration) {}
}
