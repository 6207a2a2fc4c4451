//! Descriptor-level calls the fd dump and restore need: taking a descriptor out of
//! another process (`pidfd_getfd`), comparing open files (`kcmp`), pipes and `tee`,
//! status flags, and the anonymous-inode files (eventfd, epoll, signalfd, timerfd,
//! inotify, memfd) with the calls that read or set their state; and preallocating an
//! image file.
//!
//! Every wrapper that creates a descriptor returns an [`OwnedFd`], so the descriptor is
//! closed when the caller drops it.

use crate::error::{check, Result, SysError};
use libc::{c_long, pid_t};
use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

/// Turns the return value of a call that creates a descriptor into an [`OwnedFd`].
fn owned(ret: c_long, op: &'static str, target: impl ToString) -> Result<OwnedFd> {
    let fd = check(ret, op, target)?;
    // SAFETY: the kernel just returned this descriptor to us and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

fn cstring(s: &str, op: &'static str) -> Result<CString> {
    CString::new(s).map_err(|_| SysError::from_errno(op, s, libc::EINVAL))
}

/// `fallocate(fd, 0, 0, len)`: reserves `len` bytes of blocks for a file about to be
/// written whole, and sets its size. On ext4 this turns 2 GiB of buffered writes from a
/// block reservation per write into one extent allocation, about twice as fast here.
pub fn preallocate(fd: BorrowedFd<'_>, len: u64) -> Result<()> {
    let len = libc::off_t::try_from(len)
        .map_err(|_| SysError::from_errno("fallocate", "length", libc::EFBIG))?;
    // SAFETY: fallocate takes a descriptor the borrow keeps open and plain integers.
    let ret = unsafe { libc::fallocate(fd.as_raw_fd(), 0, 0, len) };
    check(ret as c_long, "fallocate", format!("fd {}", fd.as_raw_fd())).map(drop)
}

/// `pidfd_open(pid, 0)`.
pub fn pidfd_open(pid: pid_t) -> Result<OwnedFd> {
    // SAFETY: plain integer arguments.
    let ret = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0u32) };
    owned(ret, "pidfd_open", format!("pid {pid}"))
}

/// `pidfd_getfd(pidfd, fd, 0)`: a copy, in the caller, of descriptor `fd` of the process
/// behind `pidfd` — the same open file description (offset, flags, socket queues).
/// Needs ptrace-attach rights over that process.
pub fn pidfd_getfd(pidfd: BorrowedFd<'_>, fd: RawFd) -> Result<OwnedFd> {
    // SAFETY: plain integer arguments; pidfd is a live descriptor.
    let ret = unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd.as_raw_fd(), fd, 0u32) };
    owned(ret, "pidfd_getfd", format!("fd {fd}"))
}

const KCMP_FILE: i32 = 0;

/// Whether descriptor `fd1` of `pid1` and `fd2` of `pid2` are one open file description
/// (`kcmp(KCMP_FILE)`).
pub fn same_file(pid1: pid_t, fd1: RawFd, pid2: pid_t, fd2: RawFd) -> Result<bool> {
    // SAFETY: plain integer arguments.
    let ret = unsafe { libc::syscall(libc::SYS_kcmp, pid1, pid2, KCMP_FILE, fd1, fd2) };
    let order = check(
        ret,
        "kcmp",
        format!("pid {pid1} fd {fd1} / pid {pid2} fd {fd2}"),
    )?;
    Ok(order == 0)
}

/// `pipe2(flags)`: (read end, write end).
pub fn pipe2(flags: i32) -> Result<(OwnedFd, OwnedFd)> {
    let mut fds = [-1 as RawFd; 2];
    // SAFETY: fds is a valid out-pointer to two ints.
    let ret = unsafe { libc::pipe2(fds.as_mut_ptr(), flags) };
    check(ret as c_long, "pipe2", "new pipe")?;
    // SAFETY: the kernel just returned both descriptors to us and nothing else owns them.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// `tee(from, to, len, flags)`: duplicates up to `len` bytes buffered in pipe `from`
/// into pipe `to` without consuming them. Returns the byte count (0 when `from` is
/// empty and has no writers).
pub fn tee(from: BorrowedFd<'_>, to: BorrowedFd<'_>, len: usize, flags: u32) -> Result<usize> {
    // SAFETY: plain integer arguments on live descriptors.
    let ret = unsafe { libc::tee(from.as_raw_fd(), to.as_raw_fd(), len, flags) };
    check(ret as c_long, "tee", format!("fd {}", from.as_raw_fd())).map(|n| n as usize)
}

/// `fcntl(F_GETPIPE_SZ)`: the capacity of a pipe in bytes.
pub fn pipe_size(fd: BorrowedFd<'_>) -> Result<u32> {
    // SAFETY: plain integer arguments.
    let ret = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETPIPE_SZ) };
    check(
        ret as c_long,
        "F_GETPIPE_SZ",
        format!("fd {}", fd.as_raw_fd()),
    )
    .map(|n| n as u32)
}

/// `fcntl(F_SETPIPE_SZ, size)`.
pub fn set_pipe_size(fd: BorrowedFd<'_>, size: u32) -> Result<()> {
    // SAFETY: plain integer arguments.
    let ret = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETPIPE_SZ, size as i32) };
    check(
        ret as c_long,
        "F_SETPIPE_SZ",
        format!("fd {} size {size}", fd.as_raw_fd()),
    )
    .map(drop)
}

/// `fcntl(F_GETFL)`: the open flags of the description.
pub fn status_flags(fd: BorrowedFd<'_>) -> Result<i32> {
    // SAFETY: plain integer arguments.
    let ret = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) };
    check(ret as c_long, "F_GETFL", format!("fd {}", fd.as_raw_fd())).map(|n| n as i32)
}

/// `fcntl(F_SETFL, flags)`: sets the changeable open flags (O_APPEND, O_NONBLOCK,
/// O_ASYNC, O_DIRECT, O_NOATIME); the others are ignored by the kernel.
pub fn set_status_flags(fd: BorrowedFd<'_>, flags: i32) -> Result<()> {
    // SAFETY: plain integer arguments.
    let ret = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags) };
    check(
        ret as c_long,
        "F_SETFL",
        format!("fd {} flags {flags:#o}", fd.as_raw_fd()),
    )
    .map(drop)
}

/// `fcntl(F_DUPFD_CLOEXEC, min)`: a close-on-exec copy numbered at least `min`.
pub fn dup_above(fd: BorrowedFd<'_>, min: RawFd) -> Result<OwnedFd> {
    // SAFETY: plain integer arguments.
    let ret = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, min) };
    owned(
        ret as c_long,
        "F_DUPFD_CLOEXEC",
        format!("fd {}", fd.as_raw_fd()),
    )
}

const F_SETSIG: i32 = 10;
const F_GETSIG: i32 = 11;
const F_SETOWN_EX: i32 = 15;
const F_GETOWN_EX: i32 = 16;

/// The kernel's `struct f_owner_ex`.
#[repr(C)]
struct FOwnerEx {
    kind: i32,
    pid: pid_t,
}

/// `fcntl(F_SETOWN_EX)` / `F_SETSIG`: the owner signalled for O_ASYNC I/O.
pub fn set_owner(fd: BorrowedFd<'_>, pid_type: i32, pid: pid_t, signum: i32) -> Result<()> {
    let owner = FOwnerEx {
        kind: pid_type,
        pid,
    };
    // SAFETY: owner is a valid in-pointer laid out as struct f_owner_ex.
    let ret = unsafe { libc::fcntl(fd.as_raw_fd(), F_SETOWN_EX, &owner) };
    check(
        ret as c_long,
        "F_SETOWN_EX",
        format!("fd {}", fd.as_raw_fd()),
    )?;
    // SAFETY: plain integer arguments.
    let ret = unsafe { libc::fcntl(fd.as_raw_fd(), F_SETSIG, signum) };
    check(ret as c_long, "F_SETSIG", format!("fd {}", fd.as_raw_fd())).map(drop)
}

/// `fcntl(F_GETOWN_EX)` and `F_GETSIG`: (pid type, pid, signal).
pub fn owner(fd: BorrowedFd<'_>) -> Result<(i32, pid_t, i32)> {
    let mut owner = FOwnerEx { kind: 0, pid: 0 };
    // SAFETY: owner is a valid out-pointer laid out as struct f_owner_ex.
    let ret = unsafe { libc::fcntl(fd.as_raw_fd(), F_GETOWN_EX, &mut owner) };
    check(
        ret as c_long,
        "F_GETOWN_EX",
        format!("fd {}", fd.as_raw_fd()),
    )?;
    // SAFETY: plain integer arguments.
    let sig = unsafe { libc::fcntl(fd.as_raw_fd(), F_GETSIG) };
    check(sig as c_long, "F_GETSIG", format!("fd {}", fd.as_raw_fd()))?;
    Ok((owner.kind, owner.pid, sig))
}

/// `ioctl(FIONREAD)`: bytes waiting to be read (pipes, sockets, inotify).
pub fn bytes_readable(fd: BorrowedFd<'_>) -> Result<u32> {
    let mut n: libc::c_int = 0;
    // SAFETY: n is a valid out-pointer to an int.
    let ret = unsafe { libc::ioctl(fd.as_raw_fd(), libc::FIONREAD, &mut n) };
    check(ret as c_long, "FIONREAD", format!("fd {}", fd.as_raw_fd())).map(|_| n as u32)
}

/// `lseek(fd, at, SEEK_DATA)` (`data`) or `SEEK_HOLE`: the next data or hole offset at
/// or after `at`. ENXIO means no data after `at`.
pub fn seek_data_hole(fd: impl AsFd, at: u64, data: bool) -> Result<u64> {
    let whence = if data {
        libc::SEEK_DATA
    } else {
        libc::SEEK_HOLE
    };
    let raw = fd.as_fd().as_raw_fd();
    // SAFETY: plain integer arguments.
    let ret = unsafe { libc::lseek64(raw, at as i64, whence) };
    check(ret as c_long, "lseek", format!("fd {raw} at {at}")).map(|p| p as u64)
}

/// `eventfd(count, flags)`.
pub fn eventfd(count: u32, flags: i32) -> Result<OwnedFd> {
    // SAFETY: plain integer arguments.
    let ret = unsafe { libc::eventfd(count, flags) };
    owned(ret as c_long, "eventfd", format!("count {count}"))
}

/// `epoll_create1(flags)`.
pub fn epoll_create(flags: i32) -> Result<OwnedFd> {
    // SAFETY: plain integer arguments.
    let ret = unsafe { libc::epoll_create1(flags) };
    owned(ret as c_long, "epoll_create1", "new epoll")
}

/// `epoll_ctl(epfd, EPOLL_CTL_ADD, fd, {events, data})`.
pub fn epoll_add(epfd: RawFd, fd: RawFd, events: u32, data: u64) -> Result<()> {
    let mut ev = libc::epoll_event { events, u64: data };
    // SAFETY: ev is a valid in-pointer; the descriptors are plain integers the kernel checks.
    let ret = unsafe { libc::epoll_ctl(epfd, libc::EPOLL_CTL_ADD, fd, &mut ev) };
    check(
        ret as c_long,
        "EPOLL_CTL_ADD",
        format!("epoll fd {epfd} target fd {fd}"),
    )
    .map(drop)
}

/// `signalfd4(-1, mask, flags)`: a new signalfd for the signals in `mask`.
pub fn signalfd(mask: u64, flags: i32) -> Result<OwnedFd> {
    // SAFETY: mask is a valid in-pointer to an 8-byte kernel sigset.
    let ret = unsafe { libc::syscall(libc::SYS_signalfd4, -1, &mask as *const u64, 8usize, flags) };
    owned(ret, "signalfd4", format!("mask {mask:#x}"))
}

/// A timer setting: (seconds, nanoseconds) of the next expiry and of the interval.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TimerSpec {
    pub value: (i64, i64),
    pub interval: (i64, i64),
}

/// `timerfd_create(clock, flags)`.
pub fn timerfd_create(clock: i32, flags: i32) -> Result<OwnedFd> {
    // SAFETY: plain integer arguments.
    let ret = unsafe { libc::timerfd_create(clock, flags) };
    owned(ret as c_long, "timerfd_create", format!("clock {clock}"))
}

/// `timerfd_settime(fd, flags, spec)`.
pub fn timerfd_settime(fd: BorrowedFd<'_>, flags: i32, spec: TimerSpec) -> Result<()> {
    let its = libc::itimerspec {
        it_interval: libc::timespec {
            tv_sec: spec.interval.0,
            tv_nsec: spec.interval.1,
        },
        it_value: libc::timespec {
            tv_sec: spec.value.0,
            tv_nsec: spec.value.1,
        },
    };
    // SAFETY: its is a valid in-pointer; a null old value is allowed.
    let ret = unsafe { libc::timerfd_settime(fd.as_raw_fd(), flags, &its, std::ptr::null_mut()) };
    check(
        ret as c_long,
        "timerfd_settime",
        format!("fd {}", fd.as_raw_fd()),
    )
    .map(drop)
}

/// `_IOW('T', 0, u64)`: sets the expiry count of a timerfd (CONFIG_CHECKPOINT_RESTORE).
const TFD_IOC_SET_TICKS: libc::c_ulong = 0x4008_5400;

/// `ioctl(TFD_IOC_SET_TICKS)`: sets how many expirations a timerfd reports as unread.
pub fn timerfd_set_ticks(fd: BorrowedFd<'_>, ticks: u64) -> Result<()> {
    // SAFETY: ticks is a valid in-pointer to a u64.
    let ret = unsafe { libc::ioctl(fd.as_raw_fd(), TFD_IOC_SET_TICKS, &ticks as *const u64) };
    check(
        ret as c_long,
        "TFD_IOC_SET_TICKS",
        format!("fd {}", fd.as_raw_fd()),
    )
    .map(drop)
}

/// `clock_gettime(clock)` as (seconds, nanoseconds).
pub fn clock_now(clock: i32) -> Result<(i64, i64)> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid out-pointer.
    let ret = unsafe { libc::clock_gettime(clock, &mut ts) };
    check(ret as c_long, "clock_gettime", format!("clock {clock}"))?;
    Ok((ts.tv_sec, ts.tv_nsec))
}

/// `inotify_init1(flags)`.
pub fn inotify_init(flags: i32) -> Result<OwnedFd> {
    // SAFETY: plain integer arguments.
    let ret = unsafe { libc::inotify_init1(flags) };
    owned(ret as c_long, "inotify_init1", "new inotify")
}

/// `inotify_add_watch(fd, path, mask)`: the watch descriptor.
pub fn inotify_add_watch(fd: BorrowedFd<'_>, path: &str, mask: u32) -> Result<i32> {
    let c = cstring(path, "inotify_add_watch")?;
    // SAFETY: c is a valid NUL-terminated string for the duration of the call.
    let ret = unsafe { libc::inotify_add_watch(fd.as_raw_fd(), c.as_ptr(), mask) };
    check(ret as c_long, "inotify_add_watch", path).map(|wd| wd as i32)
}

/// `inotify_rm_watch(fd, wd)`.
pub fn inotify_rm_watch(fd: BorrowedFd<'_>, wd: i32) -> Result<()> {
    // SAFETY: plain integer arguments.
    let ret = unsafe { libc::inotify_rm_watch(fd.as_raw_fd(), wd) };
    check(ret as c_long, "inotify_rm_watch", format!("wd {wd}")).map(drop)
}

/// A file handle as `name_to_handle_at` returns it: type and opaque bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileHandle {
    pub handle_type: i32,
    pub bytes: Vec<u8>,
}

const MAX_HANDLE_SZ: usize = 128;

/// `open_by_handle_at(mount_fd, handle, flags)`: opens the inode behind a file handle on
/// the filesystem of `mount_fd` (needs CAP_DAC_READ_SEARCH).
pub fn open_by_handle(
    mount_fd: BorrowedFd<'_>,
    handle: &FileHandle,
    flags: i32,
) -> Result<OwnedFd> {
    if handle.bytes.len() > MAX_HANDLE_SZ {
        return Err(SysError::from_errno(
            "open_by_handle_at",
            format!("{}-byte handle", handle.bytes.len()),
            libc::EINVAL,
        ));
    }
    // struct file_handle { u32 handle_bytes; i32 handle_type; u8 f_handle[]; }
    let mut buf = vec![0u8; 8 + MAX_HANDLE_SZ];
    buf[..4].copy_from_slice(&(handle.bytes.len() as u32).to_ne_bytes());
    buf[4..8].copy_from_slice(&handle.handle_type.to_ne_bytes());
    buf[8..8 + handle.bytes.len()].copy_from_slice(&handle.bytes);
    // SAFETY: buf holds a complete struct file_handle with room for MAX_HANDLE_SZ bytes.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_open_by_handle_at,
            mount_fd.as_raw_fd(),
            buf.as_mut_ptr(),
            flags,
        )
    };
    owned(
        ret,
        "open_by_handle_at",
        format!("handle type {}", handle.handle_type),
    )
}

/// `memfd_create(name, flags)`.
pub fn memfd_create(name: &str, flags: u32) -> Result<OwnedFd> {
    let c = cstring(name, "memfd_create")?;
    // SAFETY: c is a valid NUL-terminated string for the duration of the call.
    let ret = unsafe { libc::memfd_create(c.as_ptr(), flags) };
    owned(ret as c_long, "memfd_create", name)
}

/// `fcntl(F_GET_SEALS)`.
pub fn seals(fd: BorrowedFd<'_>) -> Result<u32> {
    // SAFETY: plain integer arguments.
    let ret = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GET_SEALS) };
    check(
        ret as c_long,
        "F_GET_SEALS",
        format!("fd {}", fd.as_raw_fd()),
    )
    .map(|s| s as u32)
}

/// `fcntl(F_ADD_SEALS, seals)`.
pub fn add_seals(fd: BorrowedFd<'_>, seals: u32) -> Result<()> {
    // SAFETY: plain integer arguments.
    let ret = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_ADD_SEALS, seals as i32) };
    check(
        ret as c_long,
        "F_ADD_SEALS",
        format!("fd {}", fd.as_raw_fd()),
    )
    .map(drop)
}

/// `fchown(fd, uid, gid)`.
pub fn fchown(fd: BorrowedFd<'_>, uid: u32, gid: u32) -> Result<()> {
    // SAFETY: plain integer arguments.
    let ret = unsafe { libc::fchown(fd.as_raw_fd(), uid, gid) };
    check(ret as c_long, "fchown", format!("fd {}", fd.as_raw_fd())).map(drop)
}

/// `flock(fd, op)`.
pub fn flock(fd: RawFd, op: i32) -> Result<()> {
    // SAFETY: plain integer arguments.
    let ret = unsafe { libc::flock(fd, op) };
    check(ret as c_long, "flock", format!("fd {fd}")).map(drop)
}

/// A byte-range lock: type (F_RDLCK/F_WRLCK), start and length (0 = to the end).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RangeLock {
    pub kind: i16,
    pub start: i64,
    pub len: i64,
}

/// `fcntl(cmd, struct flock)` with `cmd` F_SETLK or F_OFD_SETLK: takes a byte-range
/// lock without waiting.
pub fn set_range_lock(fd: RawFd, cmd: i32, lock: RangeLock) -> Result<()> {
    // SAFETY: struct flock is plain data; every field is set below.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = lock.kind;
    fl.l_whence = libc::SEEK_SET as i16;
    fl.l_start = lock.start;
    fl.l_len = lock.len;
    // SAFETY: fl is a valid in-pointer to a struct flock.
    let ret = unsafe { libc::fcntl(fd, cmd, &fl) };
    check(ret as c_long, "fcntl set lock", format!("fd {fd}")).map(drop)
}
