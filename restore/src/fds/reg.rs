//! Regular files, directories and devices: reopened by path with their open flags, at
//! their offset.

use super::ChildResult;
use stasis_images::pb;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;

/// Opens `reg.name` with the dumped flags and moves to the dumped offset.
pub fn open(reg: &pb::RegFileEntry) -> ChildResult<OwnedFd> {
    open_path(&reg.name, reg.flags, reg.pos)
}

/// Opens `path` with open flags `flags` (as dumped) at offset `pos`.
pub fn open_path(path: &str, flags: u32, pos: u64) -> ChildResult<OwnedFd> {
    let acc = flags as i32 & libc::O_ACCMODE;
    let custom = flags as i32
        & !(libc::O_ACCMODE | libc::O_CREAT | libc::O_EXCL | libc::O_TRUNC | libc::O_CLOEXEC);
    let file = std::fs::OpenOptions::new()
        .read(acc == libc::O_RDONLY || acc == libc::O_RDWR)
        .write(acc == libc::O_WRONLY || acc == libc::O_RDWR)
        .custom_flags(custom)
        .open(path)
        .map_err(|e| format!("open {path}: {e}"))?;
    let fd = OwnedFd::from(file);
    if let Err(e) = stasis_sys::process::seek_to(fd.as_raw_fd(), pos) {
        if e.errno() != Some(libc::ESPIPE) {
            return Err(format!("{path}: seek to {pos}: {e}"));
        }
    }
    Ok(fd)
}
