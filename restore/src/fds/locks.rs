//! File locks (`filelocks.img`): each lock of the task is taken again, once every
//! descriptor is at its number, through the descriptor it was dumped with — flock locks
//! with `flock`, POSIX and OFD locks with `F_SETLK` / `F_OFD_SETLK` — never waiting: a
//! lock some other process holds now is an error, not a hang.

use super::ChildResult;
use crate::{RestoreError, Result};
use stasis_images::{names, pb, ImageDir, ImageKind};

const FL_POSIX: u32 = 1;
const FL_FLOCK: u32 = 2;
const FL_OFDLCK: u32 = 1024;

/// Reads `filelocks.img`, checking each entry's kind and type.
pub fn read(dir: &ImageDir) -> Result<Vec<pb::FileLockEntry>> {
    let locks = dir
        .read_if_exists::<pb::FileLockEntry>(ImageKind::FILE_LOCKS, names::FILE_LOCKS)?
        .unwrap_or_default();
    for l in &locks {
        let kind_ok = [FL_POSIX, FL_FLOCK, FL_OFDLCK].contains(&l.flag);
        let type_ok = [libc::F_RDLCK as u32, libc::F_WRLCK as u32].contains(&l.r#type);
        if !kind_ok || !type_ok || l.start < 0 || l.len < 0 {
            return Err(RestoreError::BadImage {
                file: names::FILE_LOCKS.into(),
                what: format!(
                    "lock of pid {} on fd {}: kind {:#x} type {} range {}+{}",
                    l.pid, l.fd, l.flag, l.r#type, l.start, l.len
                ),
            });
        }
    }
    Ok(locks)
}

/// Takes lock `l` through descriptor `l.fd` of the calling process.
pub fn take(l: &pb::FileLockEntry) -> ChildResult<()> {
    let what = |e: stasis_sys::SysError| format!("file lock on fd {}: {e}", l.fd);
    if l.flag == FL_FLOCK {
        let op = if l.r#type == libc::F_RDLCK as u32 {
            libc::LOCK_SH
        } else {
            libc::LOCK_EX
        };
        return stasis_sys::fdops::flock(l.fd, op | libc::LOCK_NB).map_err(what);
    }
    let cmd = if l.flag == FL_OFDLCK {
        libc::F_OFD_SETLK
    } else {
        libc::F_SETLK
    };
    let lock = stasis_sys::fdops::RangeLock {
        kind: l.r#type as i16,
        start: l.start,
        len: l.len,
    };
    stasis_sys::fdops::set_range_lock(l.fd, cmd, lock).map_err(what)
}
