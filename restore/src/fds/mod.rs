//! The file objects of an image (`files.img` and the images beside it) and how the
//! restoring child rebuilds its descriptor table from them.
//!
//! [`Objects::read`] runs at plan time: every entry is decoded, checked and its side data
//! (pipe and FIFO bytes, socket queues, ...) read with bounds. [`open_all`] runs in the
//! forked child before the metamorphosis, in three steps:
//!
//! 1. create every open file description, parked on descriptors above every number the
//!    image uses (objects that need each other — the two ends of a pipe, connected
//!    sockets — are created together);
//! 2. `dup3` each onto its number(s) with its close-on-exec flag, and close the parked
//!    copies;
//! 3. what needs the final numbers: epoll registrations (an epoll item is keyed by the
//!    descriptor number it was added with).
//!
//! Nothing here logs: the child closed stasis's log file, and its descriptor number is
//! reused by the restored descriptors.

mod anon;
mod epoll;
mod ghost;
pub mod inet;
mod inotify;
mod locks;
pub(crate) mod memfd;
mod pipe;
mod reg;
#[cfg(test)]
mod tests;
pub mod tty;
mod unix;

use crate::plan::{FdPlan, TaskPlan};
use crate::{RestoreError, Result};
use stasis_images::{names, pb, ImageDir, ImageKind};
use std::collections::{HashMap, HashSet};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

/// Errors of the child are plain text, reported to the parent over the report socket.
pub type ChildResult<T> = std::result::Result<T, String>;

/// Most bytes a pipe can hold (`/proc/sys/fs/pipe-max-size` allows at most 2 GiB; images
/// claiming more than this are refused rather than allocated).
const MAX_PIPE_BYTES: u32 = 256 << 20;
/// Largest queued socket message accepted from an image.
const MAX_PACKET: u32 = 64 << 20;

/// The bytes buffered in one pipe or FIFO.
#[derive(Clone, Debug, Default)]
pub struct PipeData {
    /// The pipe's capacity (`F_SETPIPE_SZ`), when the image records it.
    pub size: Option<u32>,
    pub bytes: Vec<u8>,
}

/// Every file object of the image, with its side data.
#[derive(Clone, Debug, Default)]
pub struct Objects {
    entries: HashMap<u32, pb::FileEntry>,
    /// `pipes-data.img` by pipe inode.
    pub pipe_data: HashMap<u32, PipeData>,
    /// `fifo-data.img` by pipe inode.
    pub fifo_data: HashMap<u32, PipeData>,
    /// `sk-queues.img`: the queued messages of each socket (by its file id), in order.
    pub sk_queues: HashMap<u32, Vec<Vec<u8>>>,
    /// `tcp-stream-<ino>.img` of each established TCP connection, by socket inode.
    pub tcp_streams: HashMap<u32, inet::Stream>,
    /// Deleted files (`remap-fpath.img`, `ghost-file-N.img`).
    pub ghosts: ghost::Ghosts,
    /// memfd inodes (`memfd.img`) with their contents, by inode id.
    pub memfds: HashMap<u32, memfd::Inode>,
    /// File locks (`filelocks.img`) of every task.
    pub locks: Vec<pb::FileLockEntry>,
    /// Terminals (`tty-info.img`) by id.
    pub ttys: HashMap<u32, pb::TtyInfoEntry>,
}

fn bad(file: &str, what: impl Into<String>) -> RestoreError {
    RestoreError::BadImage {
        file: file.to_string(),
        what: what.into(),
    }
}

fn type_name(t: i32) -> String {
    pb::FdTypes::try_from(t)
        .map(|t| t.as_str_name().to_string())
        .unwrap_or_else(|_| format!("type {t}"))
}

impl Objects {
    /// Checks every entry of `files.img` and reads the side images.
    pub fn read(dir: &ImageDir, entries: Vec<pb::FileEntry>) -> Result<Objects> {
        let mut objs = Objects::default();
        for e in entries {
            check_entry(&e)?;
            if objs.entries.insert(e.id, e.clone()).is_some() {
                return Err(bad(names::FILES, format!("file id {} appears twice", e.id)));
            }
        }
        for e in objs.entries.values() {
            if let Some(fifo) = &e.fifo {
                let regf = fifo.regf_id.unwrap_or(fifo.id);
                let path_entry = objs
                    .entries
                    .values()
                    .find(|r| r.id == regf && r.reg.is_some());
                if path_entry.is_none() {
                    return Err(bad(
                        names::FILES,
                        format!(
                            "fifo {} refers to path entry {regf}, which is missing",
                            e.id
                        ),
                    ));
                }
            }
        }
        objs.pipe_data = read_pipe_data(dir, ImageKind::PIPES_DATA, names::PIPES_DATA)?;
        objs.fifo_data = read_pipe_data(dir, ImageKind::FIFO_DATA, names::FIFO_DATA)?;
        objs.sk_queues = read_sk_queues(dir)?;
        objs.tcp_streams = inet::read_streams(dir, objs.entries.values())?;
        let entries = &objs.entries;
        objs.ghosts = ghost::read(dir, |id| entries.get(&id).is_some_and(|e| e.reg.is_some()))?;
        objs.memfds = memfd::read(dir)?;
        objs.locks = locks::read(dir)?;
        objs.ttys = read_ttys(dir)?;
        for t in objs.ttys_files() {
            if !objs.ttys.contains_key(&t.tty_info_id) {
                return Err(bad(
                    names::FILES,
                    format!(
                        "terminal {} refers to tty {}, which {} lacks",
                        t.id,
                        t.tty_info_id,
                        names::TTY_INFO
                    ),
                ));
            }
            if tty::path(&objs, t).is_none() {
                return Err(bad(
                    names::FILES,
                    format!(
                        "terminal {} has no path entry (regf_id {:?})",
                        t.id, t.regf_id
                    ),
                ));
            }
        }
        for e in objs.entries.values().filter_map(|e| e.memfd.as_ref()) {
            if !objs.memfds.contains_key(&e.inode_id) {
                return Err(bad(
                    names::FILES,
                    format!(
                        "memfd {} refers to inode {}, which {} lacks",
                        e.id,
                        e.inode_id,
                        names::MEMFD_INODE
                    ),
                ));
            }
        }
        for id in objs.sk_queues.keys() {
            if objs.entries.get(id).and_then(|e| e.usk.as_ref()).is_none() {
                return Err(bad(
                    names::SK_QUEUES,
                    format!("queued messages for file id {id}, which is no unix socket"),
                ));
            }
        }
        Ok(objs)
    }

    /// The regular-file entries (paths of fds, cwd, root, exe and mappings) by id.
    pub fn regular_files(&self) -> HashMap<u32, pb::RegFileEntry> {
        self.entries
            .iter()
            .filter_map(|(id, e)| Some((*id, e.reg.clone()?)))
            .collect()
    }

    /// The terminal file objects of the image.
    pub fn ttys_files(&self) -> impl Iterator<Item = &pb::TtyFileEntry> {
        self.entries.values().filter_map(|e| e.tty.as_ref())
    }

    /// The inet sockets of the image.
    pub fn inet_sockets(&self) -> impl Iterator<Item = &pb::InetSkEntry> {
        self.entries.values().filter_map(|e| e.isk.as_ref())
    }

    /// The entry `id`.
    pub fn get(&self, id: u32) -> Option<&pb::FileEntry> {
        self.entries.get(&id)
    }

    /// Checks that fdinfo entry `e` (of image `img`) refers to an object of its type.
    pub fn check_fd(&self, e: &pb::FdinfoEntry, img: &str) -> Result<()> {
        let obj = self.entries.get(&e.id).ok_or_else(|| {
            bad(
                img,
                format!(
                    "fd {} refers to file id {}, which {} lacks",
                    e.fd,
                    e.id,
                    names::FILES
                ),
            )
        })?;
        if obj.r#type != e.r#type {
            return Err(bad(
                img,
                format!(
                    "fd {} has type {} but file id {} is {}",
                    e.fd,
                    type_name(e.r#type),
                    e.id,
                    type_name(obj.r#type)
                ),
            ));
        }
        Ok(())
    }

    /// The paths the descriptors need to exist before anything is created.
    pub fn paths_needed(&self, fds: &[FdPlan]) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        for f in fds {
            let Some(e) = self.entries.get(&f.file_id) else {
                continue;
            };
            if let Some(reg) = &e.reg {
                if self.ghosts.remaps.contains_key(&f.file_id) {
                    let dir = std::path::Path::new(&reg.name).parent();
                    let dir = dir.map_or("/".into(), |d| d.display().to_string());
                    out.push(("directory of deleted file", dir));
                } else {
                    out.push(("fd", reg.name.clone()));
                }
            }
            if let Some(ify) = &e.ify {
                for w in &ify.wd {
                    if let Some(path) = &w.f_handle.path {
                        out.push(("inotify watch", path.clone()));
                    }
                }
            }
            if let Some(fifo) = &e.fifo {
                if let Some(reg) = self
                    .entries
                    .get(&fifo.regf_id.unwrap_or(fifo.id))
                    .and_then(|r| r.reg.as_ref())
                {
                    out.push(("fifo", reg.name.clone()));
                }
            }
        }
        out
    }
}

/// Checks that an entry carries the payload of its type and that stasis restores it.
fn check_entry(e: &pb::FileEntry) -> Result<()> {
    use pb::FdTypes as T;
    let t = T::try_from(e.r#type).map_err(|_| {
        bad(
            names::FILES,
            format!("file id {} has unknown type {}", e.id, e.r#type),
        )
    })?;
    let (present, payload_id) = match t {
        T::Reg => (e.reg.is_some(), e.reg.as_ref().map(|p| p.id)),
        T::Pipe => (e.pipe.is_some(), e.pipe.as_ref().map(|p| p.id)),
        T::Fifo => (e.fifo.is_some(), e.fifo.as_ref().map(|p| p.id)),
        T::Unixsk => (e.usk.is_some(), e.usk.as_ref().map(|p| p.id)),
        T::Inetsk => (e.isk.is_some(), e.isk.as_ref().map(|p| p.id)),
        T::Eventfd => (e.efd.is_some(), e.efd.as_ref().map(|p| p.id)),
        T::Eventpoll => (e.epfd.is_some(), e.epfd.as_ref().map(|p| p.id)),
        T::Signalfd => (e.sgfd.is_some(), e.sgfd.as_ref().map(|p| p.id)),
        T::Timerfd => (e.tfd.is_some(), e.tfd.as_ref().map(|p| p.id)),
        T::Inotify => (e.ify.is_some(), e.ify.as_ref().map(|p| p.id)),
        T::Memfd => (e.memfd.is_some(), e.memfd.as_ref().map(|p| p.id)),
        T::Tty => (e.tty.is_some(), e.tty.as_ref().map(|p| p.id)),
        other => {
            return Err(RestoreError::Unsupported(format!(
                "{}: file id {} is {}; not supported yet",
                names::FILES,
                e.id,
                other.as_str_name()
            )))
        }
    };
    if !present {
        return Err(bad(
            names::FILES,
            format!(
                "file id {} of type {} lacks its payload",
                e.id,
                t.as_str_name()
            ),
        ));
    }
    if let Some(s) = &e.isk {
        inet::check(s)?;
    }
    if payload_id != Some(e.id) {
        return Err(bad(
            names::FILES,
            format!(
                "file id {} carries a payload with id {:?}",
                e.id, payload_id
            ),
        ));
    }
    Ok(())
}

fn read_pipe_data(dir: &ImageDir, kind: ImageKind, name: &str) -> Result<HashMap<u32, PipeData>> {
    let mut out = HashMap::new();
    if !dir.exists(name) {
        return Ok(out);
    }
    let mut r = dir.reader(kind, name)?;
    while let Some(e) = r.next::<pb::PipeDataEntry>()? {
        let cap = e.size.unwrap_or(MAX_PIPE_BYTES).min(MAX_PIPE_BYTES);
        if e.bytes > cap {
            return Err(bad(
                name,
                format!(
                    "pipe {:#x} claims {} bytes, more than its capacity {cap}",
                    e.pipe_id, e.bytes
                ),
            ));
        }
        let bytes = r.read_extra(e.bytes as usize)?;
        let data = PipeData {
            size: e.size,
            bytes,
        };
        if out.insert(e.pipe_id, data).is_some() {
            return Err(bad(name, format!("pipe {:#x} has data twice", e.pipe_id)));
        }
    }
    Ok(out)
}

/// Most terminals one image may describe.
const MAX_TTYS: usize = 4096;

fn read_ttys(dir: &ImageDir) -> Result<HashMap<u32, pb::TtyInfoEntry>> {
    let mut out = HashMap::new();
    if !dir.exists(names::TTY_INFO) {
        return Ok(out);
    }
    let mut r = dir.reader(ImageKind::TTY_INFO, names::TTY_INFO)?;
    while let Some(e) = r.next::<pb::TtyInfoEntry>()? {
        if e.r#type != pb::TtyType::Pty as i32 {
            return Err(RestoreError::Unsupported(format!(
                "{}: tty {} is of type {}; only ptys are restored",
                names::TTY_INFO,
                e.id,
                pb::TtyType::try_from(e.r#type)
                    .map(|t| t.as_str_name().to_string())
                    .unwrap_or_else(|_| e.r#type.to_string())
            )));
        }
        if e.termios.as_ref().is_some_and(|t| t.c_cc.len() > 32) {
            return Err(bad(
                names::TTY_INFO,
                format!("tty {} has more than 32 control characters", e.id),
            ));
        }
        let id = e.id;
        if out.insert(id, e).is_some() {
            return Err(bad(names::TTY_INFO, format!("tty {id} appears twice")));
        }
        if out.len() > MAX_TTYS {
            return Err(bad(
                names::TTY_INFO,
                format!("more than {MAX_TTYS} terminals"),
            ));
        }
    }
    Ok(out)
}

fn read_sk_queues(dir: &ImageDir) -> Result<HashMap<u32, Vec<Vec<u8>>>> {
    let mut out: HashMap<u32, Vec<Vec<u8>>> = HashMap::new();
    if !dir.exists(names::SK_QUEUES) {
        return Ok(out);
    }
    let mut r = dir.reader(ImageKind::SK_QUEUES, names::SK_QUEUES)?;
    while let Some(e) = r.next::<pb::SkPacketEntry>()? {
        if e.length > MAX_PACKET {
            return Err(bad(
                names::SK_QUEUES,
                format!("a message of {} bytes for socket {}", e.length, e.id_for),
            ));
        }
        if !e.scm.is_empty() {
            return Err(RestoreError::Unsupported(format!(
                "{}: a message for socket {} carries descriptors (SCM_RIGHTS)",
                names::SK_QUEUES,
                e.id_for
            )));
        }
        let bytes = r.read_extra(e.length as usize)?;
        out.entry(e.id_for).or_default().push(bytes);
    }
    Ok(out)
}

/// The open file descriptions the child has created, parked above every image fd.
pub struct Made {
    floor: i32,
    fds: HashMap<u32, OwnedFd>,
    /// FIFOs (by pipe inode) whose dumped bytes are already written back.
    pub fifo_filled: HashSet<u32>,
}

impl Made {
    /// Parks `fd` (moved above the image's numbers) as file `id`.
    pub fn put(&mut self, id: u32, fd: OwnedFd) -> ChildResult<()> {
        let parked = if fd.as_raw_fd() >= self.floor {
            fd
        } else {
            stasis_sys::fdops::dup_above(fd.as_fd(), self.floor).map_err(|e| e.to_string())?
        };
        self.fds.insert(id, parked);
        Ok(())
    }

    pub fn get(&self, id: u32) -> Option<BorrowedFd<'_>> {
        self.fds.get(&id).map(|f| f.as_fd())
    }

    pub fn has(&self, id: u32) -> bool {
        self.fds.contains_key(&id)
    }

    /// The descriptor numbers of every parked object (kept open across the child's
    /// clean-up of stasis's own descriptors).
    pub fn raw_fds(&self) -> Vec<i32> {
        self.fds.values().map(|f| f.as_raw_fd()).collect()
    }
}

/// Sets the open flags F_SETFL can change. The O_ASYNC owner is set by [`install`], once
/// the owning process exists.
pub fn set_params(fd: BorrowedFd<'_>, flags: u32, _fown: &pb::FownEntry) -> ChildResult<()> {
    let settable =
        libc::O_APPEND | libc::O_NONBLOCK | libc::O_ASYNC | libc::O_DIRECT | libc::O_NOATIME;
    stasis_sys::fdops::set_status_flags(fd, flags as i32 & settable).map_err(|e| e.to_string())
}

/// The O_ASYNC owner an entry records, if any.
fn owner_of(e: &pb::FileEntry) -> Option<&pb::FownEntry> {
    let fown = if let Some(p) = &e.reg {
        &p.fown
    } else if let Some(p) = &e.pipe {
        &p.fown
    } else if let Some(p) = &e.usk {
        &p.fown
    } else if let Some(p) = &e.efd {
        &p.fown
    } else if let Some(p) = &e.sgfd {
        &p.fown
    } else if let Some(p) = &e.tfd {
        &p.fown
    } else if let Some(p) = &e.epfd {
        &p.fown
    } else if let Some(p) = &e.ify {
        &p.fown
    } else if let Some(p) = &e.memfd {
        &p.fown
    } else if let Some(p) = &e.tty {
        &p.fown
    } else {
        return None;
    };
    (fown.pid != 0).then_some(fown)
}

/// Creates every open file description that `fds` refer to, once each, parked at
/// `floor` and above. For a process tree stasis runs this before the first fork with the
/// descriptors of every process, so that an object two processes share (a pipe between
/// them, say) is one object, inherited by both.
///
/// `inherited` maps CRIU's `--inherit-fd` keys (`pipe:[INODE]`, a file's path) to
/// descriptors the restorer received: an object with that key is not created but
/// taken from it (a container's stdio pipes, which belong to its runtime).
pub fn create_all(
    objs: &Objects,
    fds: &[FdPlan],
    floor: i32,
    inherited: &[(String, i32)],
) -> ChildResult<Made> {
    let mut made = Made {
        floor,
        fds: HashMap::new(),
        fifo_filled: HashSet::new(),
    };
    let plan_fds = fds;
    for f in plan_fds {
        let Some(e) = objs.get(f.file_id) else {
            continue;
        };
        let key = if let Some(p) = &e.pipe {
            format!("pipe:[{}]", p.pipe_id)
        } else if let Some(r) = &e.reg {
            r.name.clone()
        } else {
            continue;
        };
        let given = inherited
            .iter()
            .find(|(k, _)| *k == key || k.trim_start_matches('/') == key.trim_start_matches('/'));
        if let (Some((k, fd)), false) = (given, made.has(f.file_id)) {
            let dup = stasis_sys::fd::dup_number(*fd, floor)
                .map_err(|e| format!("fd {}: inherited {k} (fd {fd}): {e}", f.fd))?;
            made.put(f.file_id, dup)?;
        }
    }
    unix::open_all(objs, plan_fds, &mut made)?;
    inet::open_all(objs, plan_fds, &mut made)?;
    // Ghost files exist only while their descriptors are opened.
    let mut ghosts = ghost::Created::default();
    let mut memfds = memfd::Created::default();
    for f in plan_fds {
        if made.has(f.file_id) {
            continue;
        }
        let e = objs
            .get(f.file_id)
            .ok_or_else(|| format!("fd {}: no file id {}", f.fd, f.file_id))?;
        let what = |err: String| format!("fd {}: {err}", f.fd);
        if let Some(reg) = &e.reg {
            let fd = match objs.ghosts.remaps.get(&f.file_id) {
                Some(&g) => {
                    let ghost = &objs.ghosts.files[&g];
                    let path = ghost::create(&mut ghosts, g, ghost, &reg.name).map_err(what)?;
                    reg::open_path(&path.to_string_lossy(), reg.flags, reg.pos).map_err(what)?
                }
                None => reg::open(reg).map_err(what)?,
            };
            made.put(f.file_id, fd).map_err(what)?;
        } else if let Some(p) = &e.pipe {
            pipe::open_pipe(objs, plan_fds, p, &mut made).map_err(what)?;
        } else if let Some(p) = &e.fifo {
            pipe::open_fifo(objs, p, &mut made).map_err(what)?;
        } else if let Some(p) = &e.efd {
            made.put(f.file_id, anon::open_eventfd(p).map_err(what)?)?;
        } else if let Some(p) = &e.sgfd {
            made.put(f.file_id, anon::open_signalfd(p).map_err(what)?)?;
        } else if let Some(p) = &e.tfd {
            made.put(f.file_id, anon::open_timerfd(p).map_err(what)?)?;
        } else if let Some(p) = &e.memfd {
            made.put(
                f.file_id,
                memfd::open(&objs.memfds, &mut memfds, p).map_err(what)?,
            )?;
        } else if let Some(p) = &e.ify {
            made.put(f.file_id, inotify::open(p).map_err(what)?)?;
        } else if let Some(p) = &e.epfd {
            made.put(f.file_id, epoll::open(p).map_err(what)?)?;
        } else if let Some(t) = &e.tty {
            made.put(f.file_id, tty::open(objs, t).map_err(what)?)?;
        } else {
            return Err(format!(
                "fd {}: file id {} has no restorer",
                f.fd, f.file_id
            ));
        }
    }
    drop(ghosts);
    memfd::seal_all(&memfds)?;
    drop(memfds);
    Ok(made)
}

/// Puts `plan`'s descriptors in place from the parked objects, arms its timers and
/// registers its epoll targets; the parked copies (every object of the tree, for a tree)
/// are closed.
pub fn install(plan: &TaskPlan, made: Made) -> ChildResult<()> {
    let objs = &plan.objects;
    for f in &plan.fds {
        let src = made
            .get(f.file_id)
            .ok_or_else(|| format!("fd {}: file id {} was not created", f.fd, f.file_id))?;
        let cloexec = if f.cloexec { libc::O_CLOEXEC } else { 0 };
        stasis_sys::process::dup3(src.as_raw_fd(), f.fd, cloexec)
            .map_err(|e| format!("fd {}: {e}", f.fd))?;
    }
    // O_ASYNC owners: the owning process may be this one, which exists only now.
    let mut owned = HashSet::new();
    for f in &plan.fds {
        let Some(fown) = objs.get(f.file_id).and_then(owner_of) else {
            continue;
        };
        if owned.insert(f.file_id) {
            let fd = made.get(f.file_id).expect("created above");
            stasis_sys::fdops::set_owner(
                fd,
                fown.pid_type as i32,
                fown.pid as i32,
                fown.signum as i32,
            )
            .map_err(|e| format!("fd {}: O_ASYNC owner {}: {e}", f.fd, fown.pid))?;
        }
    }
    // Timers last, as late as the child can: they start counting when armed.
    let mut armed = HashSet::new();
    for f in &plan.fds {
        if let Some(p) = objs.get(f.file_id).and_then(|e| e.tfd.as_ref()) {
            if armed.insert(f.file_id) {
                let fd = made.get(f.file_id).expect("created above");
                anon::arm_timer(fd, p).map_err(|err| format!("fd {}: {err}", f.fd))?;
            }
        }
    }
    drop(made);
    // Registrations keyed by descriptor number, once per epoll instance.
    let mut done = HashSet::new();
    for f in &plan.fds {
        if !done.insert(f.file_id) {
            continue;
        }
        if let Some(p) = objs.get(f.file_id).and_then(|e| e.epfd.as_ref()) {
            epoll::register(f.fd, p)?;
        }
    }
    // Locks last: they need the final numbers, and the task is their owner.
    for l in objs.locks.iter().filter(|l| l.pid == plan.pid) {
        if !plan.fds.iter().any(|f| f.fd == l.fd) {
            return Err(format!(
                "a file lock on fd {}, which the task does not hold",
                l.fd
            ));
        }
        locks::take(l)?;
    }
    Ok(())
}
