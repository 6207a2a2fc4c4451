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
pub mod inet;
pub mod inotify;
pub mod locks;
pub mod memfd;
pub mod pipe;
pub mod tty;
pub mod unix;

use crate::{DumpError, Result};
use stasis_images::pb;
use std::cell::OnceCell;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt};

/// Dumps the socket behind `f` as file `id` with the module of its address family.
pub fn dump_socket(
    table: &mut crate::files::FileTable,
    f: &OpenFd<'_>,
    id: u32,
) -> Result<pb::FdTypes> {
    let domain = stasis_sys::unixsock::get_int_opt(f.local()?, libc::SOL_SOCKET, libc::SO_DOMAIN)?;
    match domain {
        libc::AF_INET | libc::AF_INET6 => inet::dump(table, f, id),
        _ => unix::dump(table, f, id),
    }
}

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
    /// The whole `/proc/PID/fdinfo/N` text.
    pub fdinfo: String,
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
        fdinfo: String,
        info: &crate::procfs::FdInfo,
    ) -> OpenFd<'p> {
        OpenFd {
            pid,
            fd,
            link,
            meta,
            fdinfo,
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

    /// A malformed fdinfo line.
    pub fn bad_fdinfo(&self, line: &str) -> DumpError {
        DumpError::Proc {
            path: format!("/proc/{}/fdinfo/{}", self.pid, self.fd),
            what: format!("cannot parse {line:?}"),
        }
    }

    /// The lines of the fdinfo text.
    pub fn fdinfo_lines(&self) -> impl Iterator<Item = &str> {
        self.fdinfo.lines()
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

/// The value of the `key:` line of `f`'s fdinfo, trimmed.
pub fn value<'a>(f: &'a OpenFd<'_>, key: &str) -> Result<&'a str> {
    f.fdinfo
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .map(str::trim)
        .ok_or_else(|| f.bad_fdinfo(&format!("<no {key} line>")))
}

/// The `key:` line of `f`'s fdinfo parsed as decimal.
pub fn field<T: std::str::FromStr>(f: &OpenFd<'_>, key: &str) -> Result<T> {
    let v = value(f, key)?;
    v.parse().map_err(|_| f.bad_fdinfo(&format!("{key}: {v}")))
}

/// The `key:` line of `f`'s fdinfo parsed as hex.
pub fn hex_field<T: num::FromHex>(f: &OpenFd<'_>, key: &str) -> Result<T> {
    let v = value(f, key)?;
    T::from_hex(v).ok_or_else(|| f.bad_fdinfo(&format!("{key}: {v}")))
}

/// Parses `key:value` pairs separated by blanks, as in the `tfd:`/`inotify wd:` lines
/// (values may be padded: `tfd:        5 events:       19`).
pub fn pairs(line: &str) -> Vec<(&str, &str)> {
    let mut out = Vec::new();
    let mut rest = line;
    while let Some(colon) = rest.find(':') {
        let key = rest[..colon].trim();
        let key = key.rsplit(' ').next().unwrap_or(key);
        let after = rest[colon + 1..].trim_start();
        let end = after.find(' ').unwrap_or(after.len());
        out.push((key, &after[..end]));
        rest = &after[end..];
    }
    out
}

/// The value of `key` in [`pairs`], parsed as hex.
pub fn hex<T: num::FromHex>(kv: &[(&str, &str)], key: &str) -> Option<T> {
    kv.iter()
        .find(|(k, _)| *k == key)
        .and_then(|(_, v)| T::from_hex(v.trim_start_matches("0x")))
}

/// The value of `key` in [`pairs`], parsed as decimal.
pub fn dec<T: std::str::FromStr>(kv: &[(&str, &str)], key: &str) -> Option<T> {
    kv.iter()
        .find(|(k, _)| *k == key)
        .and_then(|(_, v)| v.parse().ok())
}

pub mod num {
    //! Hex parsing for the integer widths fdinfo uses.
    pub trait FromHex: Sized {
        fn from_hex(s: &str) -> Option<Self>;
    }
    macro_rules! from_hex {
        ($($t:ty),*) => {$(
            impl FromHex for $t {
                fn from_hex(s: &str) -> Option<Self> {
                    <$t>::from_str_radix(s, 16).ok()
                }
            }
        )*};
    }
    from_hex!(u16, u32, u64, i32, i64);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_split_padded_fdinfo_lines() {
        let kv =
            pairs("tfd:        5 events:       19 data:                5  pos:0 ino:1f sdev:e");
        assert_eq!(dec::<i32>(&kv, "tfd"), Some(5));
        assert_eq!(hex::<u32>(&kv, "events"), Some(0x19));
        assert_eq!(hex::<u64>(&kv, "data"), Some(5));
        assert_eq!(hex::<u64>(&kv, "ino"), Some(0x1f));
        assert_eq!(hex::<u32>(&kv, "sdev"), Some(0xe));
        let kv = pairs("inotify wd:2 ino:1a2 sdev:800001 mask:fff ignored_mask:0 fhandle-bytes:8 fhandle-type:1 f_handle:a201000000000000");
        assert_eq!(hex::<i32>(&kv, "wd"), Some(2));
        assert_eq!(hex::<u32>(&kv, "fhandle-type"), Some(1));
        assert_eq!(
            kv.iter().find(|(k, _)| *k == "f_handle").map(|p| p.1),
            Some("a201000000000000")
        );
    }
}
