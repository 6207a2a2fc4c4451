//! inotify instances: created with their flags, then every watch is added again by the
//! path recorded at the dump, in ascending watch-descriptor order. The kernel hands out
//! watch descriptors cyclically from 1, so a watch whose number was preceded by a gap
//! is reached by adding and removing placeholder watches; the IN_IGNORED events those
//! removals queue are read off before the instance is handed over.

use super::{set_params, ChildResult};
use stasis_images::pb;
use stasis_sys::fdops;
use std::io::Read;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::MetadataExt;

/// Creates inotify instance `p` with its watches.
pub fn open(p: &pb::InotifyFileEntry) -> ChildResult<OwnedFd> {
    let err = |what: String| format!("inotify {}: {what}", p.id);
    let fd = fdops::inotify_init(libc::IN_CLOEXEC | libc::IN_NONBLOCK)
        .map_err(|e| err(e.to_string()))?;
    let mut watches: Vec<&pb::InotifyWdEntry> = p.wd.iter().collect();
    watches.sort_by_key(|w| w.wd);
    let mut placeholders = false;
    for w in watches {
        let path = w
            .f_handle
            .path
            .as_deref()
            .ok_or_else(|| err(format!("watch {} has no path", w.wd)))?;
        let meta =
            std::fs::metadata(path).map_err(|e| err(format!("watch {} on {path}: {e}", w.wd)))?;
        if meta.ino() != w.i_ino {
            return Err(err(format!(
                "watch {} on {path}: the path now holds another inode ({:#x}, was {:#x})",
                w.wd,
                meta.ino(),
                w.i_ino
            )));
        }
        loop {
            let got = fdops::inotify_add_watch(fd.as_fd(), path, w.mask)
                .map_err(|e| err(format!("watch {} on {path}: {e}", w.wd)))?;
            if got == w.wd as i32 {
                break;
            }
            if got > w.wd as i32 {
                return Err(err(format!(
                    "watch on {path} got descriptor {got}, past {}",
                    w.wd
                )));
            }
            fdops::inotify_rm_watch(fd.as_fd(), got).map_err(|e| err(e.to_string()))?;
            placeholders = true;
        }
    }
    if placeholders {
        let mut buf = [0u8; 4096];
        let mut file = std::fs::File::from(fd.try_clone().map_err(|e| err(e.to_string()))?);
        while matches!(file.read(&mut buf), Ok(n) if n > 0) {}
    }
    set_params(fd.as_fd(), p.flags, &p.fown)?;
    Ok(fd)
}
