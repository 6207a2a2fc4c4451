//! The boundary between the cgroup logic and the kernel: [`CgroupFs`], the handful of
//! file operations cgroupfs needs. [`RealFs`] is the kernel's cgroupfs; the unit tests use
//! a recording fake, so the order of writes (cpuset before tasks, limits after) is tested
//! without a kernel.

use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::time::Duration;

/// Owner and mode of a cgroup directory or file (CRIU's `cgroup_perms`). `mode` is the
/// whole `st_mode`, as CRIU records it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Perms {
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

/// The file operations on cgroupfs that stasis performs.
pub trait CgroupFs {
    /// Reads a whole file.
    fn read(&self, path: &Path) -> io::Result<String>;
    /// Writes `value` with a single `write(2)`: cgroupfs parses each write on its own.
    fn write(&self, path: &Path, value: &str) -> io::Result<()>;
    /// Creates one directory (its parent must exist).
    fn mkdir(&self, path: &Path) -> io::Result<()>;
    /// Removes one empty cgroup directory.
    fn rmdir(&self, path: &Path) -> io::Result<()>;
    /// Whether `path` exists.
    fn exists(&self, path: &Path) -> bool;
    /// The names of the subdirectories of `path` (child cgroups), sorted.
    fn subdirs(&self, path: &Path) -> io::Result<Vec<String>>;
    /// Owner and mode of `path`.
    fn perms(&self, path: &Path) -> io::Result<Perms>;
    /// Sets the owner and mode of `path` to `perms` where they differ.
    fn set_perms(&self, path: &Path, perms: Perms) -> io::Result<()>;
    /// Waits between two polls of a freezer.
    fn sleep(&self, d: Duration) {
        std::thread::sleep(d)
    }
}

impl<T: CgroupFs + ?Sized> CgroupFs for &T {
    fn read(&self, path: &Path) -> io::Result<String> {
        (**self).read(path)
    }
    fn write(&self, path: &Path, value: &str) -> io::Result<()> {
        (**self).write(path, value)
    }
    fn mkdir(&self, path: &Path) -> io::Result<()> {
        (**self).mkdir(path)
    }
    fn rmdir(&self, path: &Path) -> io::Result<()> {
        (**self).rmdir(path)
    }
    fn exists(&self, path: &Path) -> bool {
        (**self).exists(path)
    }
    fn subdirs(&self, path: &Path) -> io::Result<Vec<String>> {
        (**self).subdirs(path)
    }
    fn perms(&self, path: &Path) -> io::Result<Perms> {
        (**self).perms(path)
    }
    fn set_perms(&self, path: &Path, perms: Perms) -> io::Result<()> {
        (**self).set_perms(path, perms)
    }
    fn sleep(&self, d: Duration) {
        (**self).sleep(d)
    }
}

/// The kernel's cgroupfs, through the paths where it is mounted.
#[derive(Clone, Copy, Debug, Default)]
pub struct RealFs;

impl CgroupFs for RealFs {
    fn read(&self, path: &Path) -> io::Result<String> {
        let mut s = String::new();
        std::fs::File::open(path)?.read_to_string(&mut s)?;
        Ok(s)
    }

    fn write(&self, path: &Path, value: &str) -> io::Result<()> {
        let mut f = std::fs::OpenOptions::new().write(true).open(path)?;
        let n = f.write(value.as_bytes())?;
        if n != value.len() {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                format!("short write: {n} of {} bytes", value.len()),
            ));
        }
        Ok(())
    }

    fn mkdir(&self, path: &Path) -> io::Result<()> {
        std::fs::create_dir(path)
    }

    fn rmdir(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_dir(path)
    }

    fn exists(&self, path: &Path) -> bool {
        path.symlink_metadata().is_ok()
    }

    fn subdirs(&self, path: &Path) -> io::Result<Vec<String>> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(path)? {
            let e = e?;
            if e.file_type()?.is_dir() {
                out.push(e.file_name().to_string_lossy().into_owned());
            }
        }
        out.sort();
        Ok(out)
    }

    fn perms(&self, path: &Path) -> io::Result<Perms> {
        let m = std::fs::metadata(path)?;
        Ok(Perms {
            mode: m.mode(),
            uid: m.uid(),
            gid: m.gid(),
        })
    }

    fn set_perms(&self, path: &Path, perms: Perms) -> io::Result<()> {
        let now = self.perms(path)?;
        if now.mode & 0o7777 != perms.mode & 0o7777 {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(perms.mode & 0o7777))?;
        }
        if (now.uid, now.gid) != (perms.uid, perms.gid) {
            std::os::unix::fs::chown(path, Some(perms.uid), Some(perms.gid))?;
        }
        Ok(())
    }
}
