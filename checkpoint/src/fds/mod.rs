//! The kinds of open file a descriptor can hold, and what the dump knows about one
//! descriptor while it collects it: its `/proc` link, `stat`, fdinfo text, and — taken
//! lazily with `pidfd_getfd` — a copy of it in stasis that reads the object's state
//! without changing it.
//!
//! One module per kind writes that kind's `files.img` payload and its side images
//! (pipe and FIFO data, socket queues, ghost files, ...) into the [`FileTable`].

pub mod anon;
pub mod epoll;
pub mod ghost;
pub mod inotify;
pub mod locks;
pub mod memfd;
pub mod pipe;
pub mod unix;

use crate::{DumpError, Result};
use stasis_images::pb;
use std::cell::OnceCell;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt};

/// What a descriptor refers to, from its `/proc/PID/fd/N` link and `stat`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FdKind {
    /// A path-backed file, directory or device.
    Reg,
    /// A regular file that was deleted while open.
    Deleted,
    Pipe,
    Fifo,
    /// A socket (unix sockets are told from the others by `SO_DOMAIN`).
    Socket,
    Eventfd,
    Epoll,
    Signalfd,
    Timerfd,
    Inotify,
    Memfd,
    /// Anything else, with its link for the refusal.
    Other,
}

/// Classifies a descriptor by its link text and file type.
pub fn classify(link: &str, meta: &std::fs::Metadata) -> FdKind {
    let ft = meta.file_type();
    if let Some(anon) = link.strip_prefix("anon_inode:") {
        return match anon {
            "[eventfd]" => FdKind::Eventfd,
            "[eventpoll]" => FdKind::Epoll,
            "[signalfd]" => FdKind::Signalfd,
            "[timerfd]" => FdKind::Timerfd,
            "inotify" => FdKind::Inotify,
            _ => FdKind::Other,
        };
    }
    if link.starts_with("pipe:[") {
        return FdKind::Pipe;
    }
    if link.starts_with("socket:[") {
        return FdKind::Socket;
    }
    if link.starts_with("/memfd:") && link.ends_with(" (deleted)") && ft.is_file() {
        return FdKind::Memfd;
    }
    if !link.starts_with('/') {
        return FdKind::Other;
    }
    if link.ends_with(" (deleted)") && meta.nlink() == 0 {
        return if ft.is_file() {
            FdKind::Deleted
        } else {
            FdKind::Other
        };
    }
    if ft.is_fifo() {
        return FdKind::Fifo;
    }
    if ft.is_socket() {
        // A socket file opened by path is not possible; a bound socket shows socket:[].
        return FdKind::Other;
    }
    FdKind::Reg
}

/// One descriptor of the dumped task, as the collectors see it.
pub struct OpenFd<'p> {
    pub pid: i32,
    pub fd: i32,
    /// The `/proc/PID/fd/N` link text.
    pub link: String,
    pub meta: std::fs::Metadata,
    /// Open flags without O_CLOEXEC (that is a descriptor flag, dumped in fdinfo).
    pub flags: u32,
    pub pos: u64,
    pub mnt_id: i32,
    pidfd: BorrowedFd<'p>,
    copy: OnceCell<OwnedFd>,
}

impl<'p> OpenFd<'p> {
    /// Gathers what `/proc` says about descriptor `fd` of `pid`, whose pidfd is `pidfd`.
    pub fn new(
        pid: i32,
        fd: i32,
        pidfd: BorrowedFd<'p>,
        link: String,
        meta: std::fs::Metadata,
        info: &crate::procfs::FdInfo,
    ) -> OpenFd<'p> {
        OpenFd {
            pid,
            fd,
            link,
            meta,
            flags: info.flags & !(libc::O_CLOEXEC as u32),
            pos: info.pos,
            mnt_id: info.mnt_id,
            pidfd,
            copy: OnceCell::new(),
        }
    }

    /// A copy of the descriptor in stasis (same open file description), taken once.
    pub fn local(&self) -> Result<BorrowedFd<'_>> {
        if self.copy.get().is_none() {
            let fd = stasis_sys::fdops::pidfd_getfd(self.pidfd, self.fd)?;
            let _ = self.copy.set(fd);
        }
        Ok(self.copy.get().expect("set above").as_fd())
    }

    /// The inode number, as CRIU's 32-bit ids of pipes and sockets use it.
    pub fn ino32(&self) -> u32 {
        self.meta.ino() as u32
    }

    /// A refusal naming the process, descriptor and object.
    pub fn unsupported(&self, what: impl std::fmt::Display) -> DumpError {
        DumpError::Unsupported {
            pid: self.pid,
            what: format!("fd {} ({}): {what}", self.fd, self.link),
        }
    }

    /// The owner that O_ASYNC signals go to (`F_GETOWN_EX`, `F_GETSIG`).
    pub fn fown(&self) -> Result<pb::FownEntry> {
        let (pid_type, pid, signum) = stasis_sys::fdops::owner(self.local()?)?;
        Ok(pb::FownEntry {
            uid: 0,
            euid: 0,
            signum: signum as u32,
            pid_type: pid_type as u32,
            pid: pid as u32,
        })
    }
}
