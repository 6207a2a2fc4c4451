//! epoll instances: an `eventpoll_file_entry` whose `tfd` entries are the registered
//! descriptors with their event mask and data, read from fdinfo's `tfd:` lines.
//!
//! An epoll item is keyed by the (file, descriptor number) it was added with. If that
//! number was since closed or now holds another file, the registration cannot be made
//! again by number, so the dump refuses it; [`check_targets`] runs once the whole fd
//! table is known.

use super::{dec, hex, pairs, OpenFd};
use crate::files::FileTable;
use crate::{DumpError, Result};
use stasis_images::pb;
use std::os::unix::fs::MetadataExt;

/// A registration to verify against the final fd table.
#[derive(Clone, Debug)]
pub struct Target {
    pub pid: i32,
    pub epoll_fd: i32,
    pub tfd: u32,
    /// The kernel's encoding of the target's device (major << 20 | minor).
    pub sdev: u32,
    pub ino: u64,
}

/// Dumps an epoll instance as file `id`.
pub fn dump(table: &mut FileTable, f: &OpenFd<'_>, id: u32) -> Result<pb::FdTypes> {
    let mut tfds = Vec::new();
    for line in f.fdinfo_lines().filter(|l| l.starts_with("tfd:")) {
        let kv = pairs(line);
        let bad = || f.bad_fdinfo(line);
        let tfd: u32 = dec(&kv, "tfd").ok_or_else(bad)?;
        let sdev: u32 = hex(&kv, "sdev").ok_or_else(bad)?;
        let ino: u64 = hex(&kv, "ino").ok_or_else(bad)?;
        tfds.push(pb::EventpollTfdEntry {
            id,
            tfd,
            events: hex(&kv, "events").ok_or_else(bad)?,
            data: hex(&kv, "data").ok_or_else(bad)?,
            dev: Some(sdev),
            inode: Some(ino),
            pos: dec(&kv, "pos"),
        });
        table.side.epoll_targets.push(Target {
            pid: f.pid,
            epoll_fd: f.fd,
            tfd,
            sdev,
            ino,
        });
    }
    table.push(pb::FileEntry {
        r#type: pb::FdTypes::Eventpoll as i32,
        id,
        epfd: Some(pb::EventpollFileEntry {
            id,
            flags: f.flags,
            fown: f.fown()?,
            tfd: tfds,
        }),
        ..Default::default()
    });
    Ok(pb::FdTypes::Eventpoll)
}

/// Refuses registrations of `pid`'s epoll instances whose descriptor number no longer
/// holds the registered file.
pub fn check_targets(table: &FileTable, pid: i32, fds: &[pb::FdinfoEntry]) -> Result<()> {
    for t in table.side.epoll_targets.iter().filter(|t| t.pid == pid) {
        let refuse = |why: &str| DumpError::Unsupported {
            pid,
            what: format!(
                "fd {} (epoll) watches descriptor {} {why}; the registration cannot be restored",
                t.epoll_fd, t.tfd
            ),
        };
        if !fds.iter().any(|e| e.fd == t.tfd) {
            return Err(refuse("which was closed"));
        }
        let meta = std::fs::metadata(format!("/proc/{pid}/fd/{}", t.tfd))
            .map_err(|_| refuse("which was closed"))?;
        let sdev = (libc::major(meta.dev()) << 20) | libc::minor(meta.dev());
        if meta.ino() != t.ino || sdev != t.sdev {
            return Err(refuse("whose number now holds another file"));
        }
    }
    Ok(())
}
