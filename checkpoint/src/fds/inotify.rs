//! inotify instances: an `inotify_file_entry` with one `inotify_wd_entry` per watch
//! (watch descriptor, mask, ignored mask, the watched inode and its file handle), from
//! fdinfo's `inotify wd:` lines. The watched inode's current path is found from its
//! file handle (`open_by_handle_at` on a mount of its filesystem) and stored with the
//! handle, so the restore can watch it again by path.
//!
//! Refused: a watch on an inode that was deleted, and unread events in the queue (the
//! kernel cannot be made to queue them again).

use super::{hex, pairs, OpenFd};
use crate::files::FileTable;
use crate::Result;
use stasis_images::pb;
use stasis_sys::fdops::FileHandle;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};

/// CRIU stores a file handle as at least this many 64-bit words (`fh_entry_sizes`).
const FH_MIN_WORDS: usize = 16;

/// Dumps an inotify instance as file `id`.
pub fn dump(table: &mut FileTable, f: &OpenFd<'_>, id: u32) -> Result<pb::FdTypes> {
    let queued = stasis_sys::fdops::bytes_readable(f.local()?)?;
    if queued != 0 {
        return Err(f.unsupported(format!(
            "an inotify instance with {queued} bytes of unread events, which cannot be queued again"
        )));
    }
    let mut wds = Vec::new();
    for line in f.fdinfo_lines().filter(|l| l.starts_with("inotify ")) {
        let kv = pairs(line);
        let bad = || f.bad_fdinfo(line);
        let wd: u32 = hex(&kv, "wd").ok_or_else(bad)?;
        let i_ino: u64 = hex(&kv, "ino").ok_or_else(bad)?;
        let s_dev: u32 = hex(&kv, "sdev").ok_or_else(bad)?;
        let nbytes: u32 = hex(&kv, "fhandle-bytes").ok_or_else(bad)?;
        let htype: i32 = hex(&kv, "fhandle-type").ok_or_else(bad)?;
        let text = kv
            .iter()
            .find(|(k, _)| *k == "f_handle")
            .map(|p| p.1)
            .ok_or_else(bad)?;
        let bytes = unhex(text)
            .filter(|b| b.len() == nbytes as usize)
            .ok_or_else(bad)?;
        let handle = FileHandle {
            handle_type: htype,
            bytes: bytes.clone(),
        };
        let path = watched_path(f, wd, s_dev, i_ino, &handle)?;
        let mut words: Vec<u64> = bytes
            .chunks(8)
            .map(|c| {
                let mut w = [0u8; 8];
                w[..c.len()].copy_from_slice(c);
                u64::from_le_bytes(w)
            })
            .collect();
        words.resize(words.len().max(FH_MIN_WORDS), 0);
        wds.push(pb::InotifyWdEntry {
            id,
            i_ino,
            mask: hex(&kv, "mask").ok_or_else(bad)?,
            ignored_mask: hex(&kv, "ignored_mask").ok_or_else(bad)?,
            s_dev,
            wd,
            f_handle: pb::FhEntry {
                bytes: nbytes,
                r#type: htype as u32,
                handle: words,
                path: Some(path),
                mnt_id: None,
            },
        });
    }
    wds.sort_by_key(|w| w.wd);
    table.push(pb::FileEntry {
        r#type: pb::FdTypes::Inotify as i32,
        id,
        ify: Some(pb::InotifyFileEntry {
            id,
            flags: f.flags,
            fown: f.fown()?,
            wd: wds,
        }),
        ..Default::default()
    });
    Ok(pb::FdTypes::Inotify)
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// The current path of the watched inode, from its file handle.
fn watched_path(
    f: &OpenFd<'_>,
    wd: u32,
    sdev: u32,
    ino: u64,
    handle: &FileHandle,
) -> Result<String> {
    let (major, minor) = (sdev >> 20, sdev & 0xfffff);
    let refuse = |why: String| f.unsupported(format!("inotify watch {wd}: {why}"));
    let mount = mount_of(major, minor).ok_or_else(|| {
        refuse(format!(
            "no mount of device {major}:{minor} to find the watched inode on"
        ))
    })?;
    let dirfd = std::fs::OpenOptions::new()
        .read(true)
        // Not O_PATH: open_by_handle_at does not take an O_PATH descriptor.
        .custom_flags(libc::O_DIRECTORY)
        .open(&mount)
        .map_err(|e| refuse(format!("open {mount}: {e}")))?;
    let target: OwnedFd = stasis_sys::fdops::open_by_handle(dirfd.as_fd(), handle, libc::O_PATH)
        .map_err(|e| {
            refuse(format!(
                "the watched inode {ino:#x} cannot be opened by its handle: {e}"
            ))
        })?;
    let proc = format!("/proc/self/fd/{}", target.as_raw_fd());
    let path = std::fs::read_link(&proc)
        .map_err(|e| refuse(e.to_string()))?
        .to_string_lossy()
        .into_owned();
    let meta = std::fs::metadata(&proc).map_err(|e| refuse(e.to_string()))?;
    if path.ends_with(" (deleted)") || meta.nlink() == 0 {
        return Err(refuse(format!("the watched inode {path} was deleted")));
    }
    if meta.ino() != ino || !std::path::Path::new(&path).exists() {
        return Err(refuse(format!(
            "the watched inode has no reachable path ({path})"
        )));
    }
    Ok(path)
}

/// A mount point of the filesystem on device `major:minor`, preferring one that shows
/// the filesystem's root.
fn mount_of(major: u32, minor: u32) -> Option<String> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let want = format!("{major}:{minor}");
    let mut found = None;
    for line in text.lines() {
        let f: Vec<&str> = line.split(' ').collect();
        if f.len() < 5 || f[2] != want {
            continue;
        }
        let point = f[4].replace("\\040", " ");
        if f[3] == "/" {
            return Some(point);
        }
        found.get_or_insert(point);
    }
    found
}
