//! Open files: the fd table (`fdinfo-<files_id>.img`), the file objects behind it and
//! behind cwd, root, exe and file mappings (`files.img`), the side images some objects
//! need (`pipes-data`, `fifo-data`, `sk-queues`, `remap-fpath`, `ghost-file-N`, `memfd`,
//! `filelocks`), and `fs-<pid>.img`.
//!
//! Each open file description is dumped once: a descriptor that shares its description
//! with one already dumped (a `dup`, or one inherited over fork) refers to the same id,
//! told by `kcmp(KCMP_FILE)`. The kinds themselves live in [`crate::fds`].

use crate::fds::{self, FdKind, OpenFd};
use crate::{procfs, DumpError, Result};
use stasis_images::{names, pb, ImageDir, ImageKind};
use std::collections::{HashMap, HashSet};
use std::os::fd::AsFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::PathBuf;

/// The file objects of one dump, each written once to `files.img` and referred to by id,
/// with the side images that go with them.
#[derive(Default)]
pub struct FileTable {
    entries: Vec<pb::FileEntry>,
    by_key: HashMap<(String, u32, u64), u32>,
    next_id: u32,
    /// Largest deleted file stored in a ghost image (`--ghost-limit`; CRIU's 1 MiB when
    /// unset).
    pub ghost_limit: Option<u64>,
    /// Dump file locks (`--file-locks`); without it a held lock refuses the dump.
    pub file_locks: bool,
    /// Descriptions already dumped, by (st_dev, st_ino).
    described: HashMap<(u64, u64), Vec<Described>>,
    pub(crate) side: SideImages,
}

/// A descriptor already dumped: (pid, fd, file id, fd type).
type Described = (i32, i32, u32, pb::FdTypes);

/// A lock as fdinfo shows it: (kind, type, owner pid, dev:ino, start, length).
pub type LockKey = (u32, u32, String, String, i64, i64);

/// Images beside `files.img` that the file objects fill.
#[derive(Default)]
pub struct SideImages {
    /// `seccomp.img`: every thread's filters, shared chains once.
    pub seccomp: crate::seccomp::Table,
    /// `pipes-data.img`: one entry (and its bytes) per pipe inode with a reader.
    pub pipe_data: Vec<(pb::PipeDataEntry, Vec<u8>)>,
    /// `fifo-data.img`, the same for FIFOs.
    pub fifo_data: Vec<(pb::PipeDataEntry, Vec<u8>)>,
    /// Pipe inodes whose data is already in one of the two above.
    pub pipes_dumped: HashSet<(bool, u32)>,
    /// `sk-queues.img`: queued packets, each with its bytes, in queue order.
    pub sk_queues: Vec<(pb::SkPacketEntry, Vec<u8>)>,
    /// The unix sockets of the network namespace, read once per dump.
    pub unix_diag: Option<HashMap<u32, stasis_sys::unixsock::UnixDiag>>,
    /// The unix sockets dumped so far, for the check that their peers are dumped too.
    pub unix_dumped: Vec<fds::unix::Dumped>,
    /// `remap-fpath.img`.
    pub remaps: Vec<pb::RemapFilePathEntry>,
    /// `ghost-file-<id>.img`, and the ghost id of each (st_dev, st_ino).
    pub ghosts: Vec<fds::ghost::Ghost>,
    pub ghost_ids: HashMap<(u64, u64), u32>,
    /// `memfd.img` inodes, the inode id of each (st_dev, st_ino), and their contents
    /// (written as `pagemap-shmem-<shmid>.img` and a pages image each).
    pub memfd_inodes: Vec<pb::MemfdInodeEntry>,
    pub memfd_ids: HashMap<(u64, u64), u32>,
    pub memfd_contents: Vec<fds::memfd::Contents>,
    /// Shared anonymous objects (by inode) whose contents are already in `memfd_contents`.
    pub shmem_dumped: HashSet<u64>,

    /// epoll registrations, checked against the fd table once it is complete.
    pub epoll_targets: Vec<fds::epoll::Target>,
    /// `filelocks.img`, and the locks already recorded.
    pub locks: Vec<pb::FileLockEntry>,
    pub locks_seen: HashSet<LockKey>,
    /// `tcp-stream-<ino>.img` of the established TCP connections.
    pub inet: fds::inet::Streams,
    /// `tty-info.img`: the terminals behind pty slave descriptors.
    pub ttys: fds::tty::Ttys,
}

impl FileTable {
    /// The `--ghost-limit` in effect.
    pub fn ghost_limit(&self) -> u64 {
        self.ghost_limit.unwrap_or(1 << 20)
    }

    /// A fresh id for a new file object.
    pub fn new_id(&mut self) -> u32 {
        self.next_id += 1;
        self.next_id
    }

    /// Whether object `id` can be shared by several processes at restore: every object
    /// is created once and inherited, but an epoll instance's registrations are keyed by
    /// one process's descriptor numbers.
    pub fn is_shareable(&self, id: u32) -> bool {
        self.entries.iter().any(|e| e.id == id && e.epfd.is_none())
    }

    /// Adds a finished entry to `files.img`.
    pub fn push(&mut self, entry: pb::FileEntry) {
        self.entries.push(entry);
    }

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
        let id = self.new_id();
        self.push_reg(id, path, flags, pos, mnt_id, meta);
        self.by_key.insert(key, id);
        id
    }

    /// Adds the regular-file entry `id`.
    pub fn push_reg(
        &mut self,
        id: u32,
        path: &str,
        flags: u32,
        pos: u64,
        mnt_id: i32,
        meta: Option<&std::fs::Metadata>,
    ) {
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
    }

    /// The id of an already dumped description that descriptor `fd` of `pid` shares.
    fn shared(
        &self,
        pid: i32,
        fd: i32,
        meta: &std::fs::Metadata,
    ) -> Result<Option<(u32, pb::FdTypes)>> {
        let Some(seen) = self.described.get(&(meta.dev(), meta.ino())) else {
            return Ok(None);
        };
        for &(p, f, id, ty) in seen {
            if stasis_sys::fdops::same_file(p, f, pid, fd)? {
                return Ok(Some((id, ty)));
            }
        }
        Ok(None)
    }

    fn remember(&mut self, pid: i32, fd: i32, meta: &std::fs::Metadata, id: u32, ty: pb::FdTypes) {
        self.described
            .entry((meta.dev(), meta.ino()))
            .or_default()
            .push((pid, fd, id, ty));
    }

    /// Writes `files.img` and every side image that has entries, once every process of
    /// the dump is collected (so a socket's peer may belong to any of them).
    pub fn write_images(&self, dir: &ImageDir) -> Result<()> {
        fds::unix::check_peers(self)?;
        dir.write(ImageKind::FILES, names::FILES, &self.entries)?;
        let s = &self.side;
        for (data, kind, name) in [
            (&s.pipe_data, ImageKind::PIPES_DATA, names::PIPES_DATA),
            (&s.fifo_data, ImageKind::FIFO_DATA, names::FIFO_DATA),
        ] {
            if !data.is_empty() {
                let mut w = dir.writer(kind, name)?;
                for (e, bytes) in data {
                    w.entry_with_extra(e, bytes)?;
                }
                w.commit()?;
            }
        }
        if !s.sk_queues.is_empty() {
            let mut w = dir.writer(ImageKind::SK_QUEUES, names::SK_QUEUES)?;
            for (e, bytes) in &s.sk_queues {
                w.entry_with_extra(e, bytes)?;
            }
            w.commit()?;
        }
        if !s.remaps.is_empty() {
            dir.write(ImageKind::REMAP_FPATH, names::REMAP_FPATH, &s.remaps)?;
        }
        for g in &s.ghosts {
            let mut w = dir.writer(ImageKind::GHOST_FILE, &names::ghost_file(g.id))?;
            w.entry(&g.entry)?;
            match &g.body {
                fds::ghost::Body::Raw(bytes) => w.extra(bytes)?,
                fds::ghost::Body::Chunks(chunks) => {
                    for (off, bytes) in chunks {
                        let c = pb::GhostChunkEntry {
                            len: bytes.len() as u64,
                            off: *off,
                        };
                        w.entry_with_extra(&c, bytes)?;
                    }
                }
            }
            w.commit()?;
        }
        if !s.memfd_inodes.is_empty() {
            dir.write(ImageKind::MEMFD_INODE, names::MEMFD_INODE, &s.memfd_inodes)?;
        }
        // memfd inodes and shared anonymous objects alike.
        fds::memfd::write_contents(dir, &s.memfd_contents)?;

        if !s.locks.is_empty() {
            dir.write(ImageKind::FILE_LOCKS, names::FILE_LOCKS, &s.locks)?;
        }
        fds::inet::write_images(dir, &s.inet)?;
        if !s.ttys.infos.is_empty() {
            dir.write(ImageKind::TTY_INFO, names::TTY_INFO, &s.ttys.infos)?;
        }
        Ok(())
    }
}

fn is_tty(meta: &std::fs::Metadata) -> bool {
    let major = libc::major(meta.rdev());
    // 4: /dev/ttyN, 5: /dev/tty, console, ptmx; 136..143: /dev/pts/N.
    matches!(major, 4 | 5) || (136..=143).contains(&major)
}

/// Collects the fd table of `pid` into `table`, returning the `fdinfo` entries.
/// `external_tty`: a terminal whose other end is not dumped may be (`--shell-job`, or
/// the RPC's `orphan_pts_master`).
pub fn collect_fds(
    pid: i32,
    table: &mut FileTable,
    external_tty: bool,
) -> Result<Vec<pb::FdinfoEntry>> {
    let pidfd = stasis_sys::fdops::pidfd_open(pid)?;
    let mut out = Vec::new();
    for fd in procfs::fds(pid)? {
        let link = procfs::link(pid, &format!("fd/{fd}"))?;
        let proc_path = PathBuf::from(format!("/proc/{pid}/fd/{fd}"));
        let meta = std::fs::metadata(&proc_path).map_err(|source| DumpError::Io {
            path: proc_path.clone(),
            source,
        })?;
        let info = procfs::fdinfo(pid, fd)?;
        let text = procfs::text(pid, &format!("fdinfo/{fd}"))?;
        let f = OpenFd::new(pid, fd, pidfd.as_fd(), link, meta, text, &info);
        let cloexec = info.flags & libc::O_CLOEXEC as u32 != 0;
        let (id, ty) = match table.shared(pid, fd, &f.meta)? {
            Some(found) => found,
            None => {
                let id = table.new_id();
                let ty = dump_object(table, &f, id, external_tty)?;
                table.remember(pid, fd, &f.meta, id, ty);
                (id, ty)
            }
        };
        fds::locks::collect(table, &f, id)?;
        out.push(pb::FdinfoEntry {
            id,
            flags: if cloexec { libc::FD_CLOEXEC as u32 } else { 0 },
            r#type: ty as i32,
            fd: fd as u32,
            xattr_security_selinux: None,
        });
    }
    fds::epoll::check_targets(table, pid, &out)?;
    Ok(out)
}

/// Dumps the object behind one descriptor as file `id`; returns its type.
fn dump_object(
    table: &mut FileTable,
    f: &OpenFd<'_>,
    id: u32,
    external_tty: bool,
) -> Result<pb::FdTypes> {
    match fds::classify(&f.link, &f.meta) {
        FdKind::Reg if fds::tty::is_pts(&f.meta) => fds::tty::dump_pts(table, f, id, external_tty),
        FdKind::Reg => {
            if f.link.ends_with(" (deleted)") {
                return Err(f.unsupported(
                    "a file whose name was deleted while other links to it remain; link remaps are not supported",
                ));
            }
            let ft = f.meta.file_type();
            if ft.is_char_device() && is_tty(&f.meta) && !external_tty {
                return Err(DumpError::Unsupported {
                    pid: f.pid,
                    what: format!(
                        "fd {} is a terminal ({}); dump it with --shell-job (-j)",
                        f.fd, f.link
                    ),
                });
            }
            if !(ft.is_file() || ft.is_dir() || ft.is_char_device() || ft.is_block_device()) {
                return Err(f.unsupported("a file of an unsupported type"));
            }
            table.push_reg(id, &f.link, f.flags, f.pos, f.mnt_id, Some(&f.meta));
            Ok(pb::FdTypes::Reg)
        }
        FdKind::Deleted => fds::ghost::dump(table, f, id),
        FdKind::Pipe => fds::pipe::dump_pipe(table, f, id),
        FdKind::Fifo => fds::pipe::dump_fifo(table, f, id),
        FdKind::Socket => fds::dump_socket(table, f, id),
        FdKind::Eventfd => fds::anon::dump_eventfd(table, f, id),
        FdKind::Signalfd => fds::anon::dump_signalfd(table, f, id),
        FdKind::Timerfd => fds::anon::dump_timerfd(table, f, id),
        FdKind::Epoll => fds::epoll::dump(table, f, id),
        FdKind::Inotify => fds::inotify::dump(table, f, id),
        FdKind::Memfd => fds::memfd::dump(table, f, id),
        FdKind::Other => Err(f.unsupported("an object stasis cannot checkpoint yet")),
    }
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
