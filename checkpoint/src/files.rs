//! Open files: the fd table (`fdinfo-<files_id>.img`), the file objects behind it and
//! behind cwd, root, exe and file mappings (`files.img`), and `fs-<pid>.img`.

use crate::{procfs, DumpError, Result};
use stasis_images::pb;
use std::collections::HashMap;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::PathBuf;

/// The file objects of one dump, each written once to `files.img` and referred to by id.
#[derive(Default)]
pub struct FileTable {
    entries: Vec<pb::FileEntry>,
    by_key: HashMap<(String, u32, u64), u32>,
    next_id: u32,
}

impl FileTable {
    /// Adds (or finds) a regular-file object for `path` opened with `flags`.
    pub fn reg(
        &mut self,
        path: &str,
        flags: u32,
        pos: u64,
        mnt_id: i32,
        meta: Option<&std::fs::Metadata>,
    ) -> u32 {
        let key = (path.to_string(), flags, pos);
        if let Some(&id) = self.by_key.get(&key) {
            return id;
        }
        self.next_id += 1;
        let id = self.next_id;
        self.entries.push(pb::FileEntry {
            r#type: pb::FdTypes::Reg as i32,
            id,
            reg: Some(pb::RegFileEntry {
                id,
                flags,
                pos,
                fown: pb::FownEntry::default(),
                name: path.to_string(),
                mnt_id: Some(mnt_id),
                size: meta.map(|m| m.len()),
                mode: meta.map(|m| m.mode()),
                ..Default::default()
            }),
            ..Default::default()
        });
        self.by_key.insert(key, id);
        id
    }

    /// The entries for `files.img`.
    pub fn entries(&self) -> &[pb::FileEntry] {
        &self.entries
    }
}

fn is_tty(meta: &std::fs::Metadata) -> bool {
    let major = libc::major(meta.rdev());
    // 4: /dev/ttyN, 5: /dev/tty, console, ptmx; 136..143: /dev/pts/N.
    matches!(major, 4 | 5) || (136..=143).contains(&major)
}

/// Collects the fd table of `pid` into `table`, returning the `fdinfo` entries.
pub fn collect_fds(
    pid: i32,
    table: &mut FileTable,
    shell_job: bool,
) -> Result<Vec<pb::FdinfoEntry>> {
    let mut out = Vec::new();
    for fd in procfs::fds(pid)? {
        let link = procfs::link(pid, &format!("fd/{fd}"))?;
        let proc_path = PathBuf::from(format!("/proc/{pid}/fd/{fd}"));
        let meta = std::fs::metadata(&proc_path).map_err(|source| DumpError::Io {
            path: proc_path.clone(),
            source,
        })?;
        let info = procfs::fdinfo(pid, fd)?;
        let unsupported = |kind: &str| DumpError::Unsupported {
            pid,
            what: format!("fd {fd} is {kind} ({link})"),
        };
        let ft = meta.file_type();
        if link.ends_with(" (deleted)") {
            return Err(unsupported("a deleted file"));
        }
        if !link.starts_with('/') {
            return Err(unsupported("not a path-backed file"));
        }
        if ft.is_fifo() {
            return Err(unsupported("a pipe or FIFO"));
        }
        if ft.is_socket() {
            return Err(unsupported("a socket"));
        }
        if ft.is_char_device() && is_tty(&meta) && !shell_job {
            return Err(DumpError::Unsupported {
                pid,
                what: format!("fd {fd} is a terminal ({link}); dump it with --shell-job (-j)"),
            });
        }
        if !(ft.is_file() || ft.is_dir() || ft.is_char_device() || ft.is_block_device()) {
            return Err(unsupported("of an unsupported type"));
        }
        let cloexec = info.flags & libc::O_CLOEXEC as u32 != 0;
        let flags = info.flags & !(libc::O_CLOEXEC as u32);
        let id = table.reg(&link, flags, info.pos, info.mnt_id, Some(&meta));
        out.push(pb::FdinfoEntry {
            id,
            flags: if cloexec { libc::FD_CLOEXEC as u32 } else { 0 },
            r#type: pb::FdTypes::Reg as i32,
            fd: fd as u32,
            xattr_security_selinux: None,
        });
    }
    Ok(out)
}

/// The `fs` entry: cwd and root as file objects, and the umask.
pub fn collect_fs(pid: i32, table: &mut FileTable, umask: u32) -> Result<pb::FsEntry> {
    let dir_flags = (libc::O_RDONLY | libc::O_DIRECTORY) as u32;
    let cwd = procfs::link(pid, "cwd")?;
    let root = procfs::link(pid, "root")?;
    for (what, p) in [("cwd", &cwd), ("root", &root)] {
        if p.ends_with(" (deleted)") {
            return Err(DumpError::Unsupported {
                pid,
                what: format!("its {what} {p} was deleted"),
            });
        }
    }
    Ok(pb::FsEntry {
        cwd_id: table.reg(&cwd, dir_flags, 0, -1, None),
        root_id: table.reg(&root, dir_flags, 0, -1, None),
        umask: Some(umask),
    })
}
