//! Process-level calls: creating a task with a chosen PID, signals, limits, and the
//! per-process attributes that can be read or set from outside.

use crate::error::{check, Result, SysError};
use libc::{c_long, pid_t};

/// `CLONE_PARENT`: the new task becomes a sibling of the caller.
pub const CLONE_PARENT: u64 = libc::CLONE_PARENT as u64;

#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

/// Which side of a fork the caller is on.
#[derive(Debug, PartialEq, Eq)]
pub enum Forked {
    /// In the parent, with the child's PID.
    Parent(pid_t),
    /// In the child.
    Child,
}

/// Forks the calling process with `clone3`, giving the child the PIDs in `set_tid`
/// (innermost namespace first; empty for any PID). The child gets SIGCHLD as exit signal
/// (with `CLONE_PARENT`, the caller's own, as the kernel requires).
///
/// The caller must be single-threaded: the child is a copy of the calling thread only.
pub fn fork_with_pid(set_tid: &[pid_t], flags: u64) -> Result<Forked> {
    // With CLONE_PARENT the child inherits the caller's own exit signal: clone3 refuses
    // (EINVAL) any other value than 0 for it.
    let exit_signal = if flags & CLONE_PARENT != 0 {
        0
    } else {
        libc::SIGCHLD as u64
    };
    let args = CloneArgs {
        flags,
        exit_signal,
        set_tid: if set_tid.is_empty() {
            0
        } else {
            set_tid.as_ptr() as u64
        },
        set_tid_size: set_tid.len() as u64,
        ..Default::default()
    };
    // SAFETY: without CLONE_VM the child runs on a copy of our address space, so returning
    // into Rust code on both sides is the same as after fork(2); args and set_tid outlive
    // the call.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &args as *const CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    let target = match set_tid.first() {
        Some(pid) => format!("pid {pid}"),
        None => "any pid".to_string(),
    };
    match check(ret, "clone3", target)? {
        0 => Ok(Forked::Child),
        pid => Ok(Forked::Parent(pid as pid_t)),
    }
}

/// Sends a signal to a process (`sig` 0 probes for existence).
pub fn kill(pid: pid_t, sig: i32) -> Result<()> {
    // SAFETY: kill takes plain integers.
    let ret = unsafe { libc::kill(pid, sig) };
    check(ret as c_long, "kill", format!("pid {pid}")).map(drop)
}

/// Whether a PID is in use (by a live task or a zombie).
pub fn pid_in_use(pid: pid_t) -> bool {
    match kill(pid, 0) {
        Ok(()) => true,
        Err(e) => e.errno() != Some(libc::ESRCH),
    }
}

/// One resource limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rlimit {
    pub cur: u64,
    pub max: u64,
}

/// Reads a resource limit of another process.
pub fn get_rlimit(pid: pid_t, resource: u32) -> Result<Rlimit> {
    let mut old = libc::rlimit64 {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: old is a valid out-pointer; a null new limit only reads.
    let ret = unsafe { libc::prlimit64(pid, resource as _, std::ptr::null(), &mut old) };
    check(
        ret as c_long,
        "prlimit64",
        format!("pid {pid} resource {resource}"),
    )?;
    Ok(Rlimit {
        cur: old.rlim_cur,
        max: old.rlim_max,
    })
}

/// Sets a resource limit of another process.
pub fn set_rlimit(pid: pid_t, resource: u32, lim: Rlimit) -> Result<()> {
    let new = libc::rlimit64 {
        rlim_cur: lim.cur,
        rlim_max: lim.max,
    };
    // SAFETY: new is a valid in-pointer; a null old limit is allowed.
    let ret = unsafe { libc::prlimit64(pid, resource as _, &new, std::ptr::null_mut()) };
    check(
        ret as c_long,
        "prlimit64",
        format!("pid {pid} resource {resource}"),
    )
    .map(drop)
}

/// The robust futex list head and length of another task.
pub fn get_robust_list(tid: pid_t) -> Result<(u64, u64)> {
    let mut head: u64 = 0;
    let mut len: usize = 0;
    // SAFETY: both out-pointers are valid for the call.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_get_robust_list,
            tid,
            &mut head as *mut u64,
            &mut len as *mut usize,
        )
    };
    check(ret, "get_robust_list", format!("tid {tid}"))?;
    Ok((head, len as u64))
}

/// Scheduling policy, static priority and nice value of a task.
pub fn get_sched(tid: pid_t) -> Result<(u32, u32, i32)> {
    // SAFETY: plain integer arguments.
    let policy = unsafe { libc::sched_getscheduler(tid) };
    check(policy as c_long, "sched_getscheduler", format!("tid {tid}"))?;
    let mut param = libc::sched_param { sched_priority: 0 };
    // SAFETY: param is a valid out-pointer.
    let ret = unsafe { libc::sched_getparam(tid, &mut param) };
    check(ret as c_long, "sched_getparam", format!("tid {tid}"))?;
    clear_errno();
    // SAFETY: plain integer arguments; -1 is a valid nice value, so errno disambiguates.
    let nice = unsafe { libc::getpriority(libc::PRIO_PROCESS, tid as libc::id_t) };
    if nice == -1 && errno() != 0 {
        return Err(SysError::last("getpriority", format!("tid {tid}")));
    }
    Ok((policy as u32, param.sched_priority as u32, nice))
}

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

fn clear_errno() {
    // SAFETY: __errno_location returns the calling thread's errno slot.
    unsafe { *libc::__errno_location() = 0 };
}

/// `prctl(PR_SET_CHILD_SUBREAPER, on)` for the calling process.
pub fn set_child_subreaper(on: bool) -> Result<()> {
    // SAFETY: plain integer arguments.
    let ret = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, on as libc::c_ulong, 0, 0, 0) };
    check(ret as c_long, "PR_SET_CHILD_SUBREAPER", "self").map(drop)
}

/// The signal set type of the kernel (64 signals on x86-64).
pub type SigMask = u64;

/// `rt_sigprocmask(how, set)` for the calling thread; returns the old mask.
pub fn sigprocmask(how: i32, set: SigMask) -> Result<SigMask> {
    let mut old: SigMask = 0;
    // SAFETY: set and old are valid pointers to 8-byte kernel sigsets.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_rt_sigprocmask,
            how,
            &set as *const u64,
            &mut old as *mut u64,
            8usize,
        )
    };
    check(ret, "rt_sigprocmask", "self")?;
    Ok(old)
}

/// The signals pending for the calling thread (own and process-wide).
pub fn sigpending() -> Result<SigMask> {
    let mut set: SigMask = 0;
    // SAFETY: set is a valid out-pointer to an 8-byte kernel sigset.
    let ret = unsafe { libc::syscall(libc::SYS_rt_sigpending, &mut set as *mut u64, 8usize) };
    check(ret, "rt_sigpending", "self")?;
    Ok(set)
}

/// The kernel's `struct sigaction` for `rt_sigaction` (not glibc's).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelSigaction {
    pub handler: u64,
    pub flags: u64,
    pub restorer: u64,
    pub mask: u64,
}

/// Installs a raw kernel sigaction in the calling process. The handler and restorer are
/// stored as given, so addresses meaningful only in another address space are accepted;
/// the caller must keep the signal blocked until that address space is in place.
pub fn set_raw_sigaction(sig: i32, act: &KernelSigaction) -> Result<()> {
    // SAFETY: act points to a correctly laid-out kernel sigaction; a null old action is allowed.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_rt_sigaction,
            sig,
            act as *const KernelSigaction,
            std::ptr::null_mut::<u8>(),
            8usize,
        )
    };
    check(ret, "rt_sigaction", format!("signal {sig}")).map(drop)
}

/// `setsid()` for the calling process.
pub fn setsid() -> Result<pid_t> {
    // SAFETY: no arguments.
    let ret = unsafe { libc::setsid() };
    check(ret as c_long, "setsid", "self").map(|v| v as pid_t)
}

/// `setpgid(pid, pgid)`.
pub fn setpgid(pid: pid_t, pgid: pid_t) -> Result<()> {
    // SAFETY: plain integer arguments.
    let ret = unsafe { libc::setpgid(pid, pgid) };
    check(ret as c_long, "setpgid", format!("pid {pid} pgid {pgid}")).map(drop)
}

/// `getpgid(0)`: the calling process's process group.
pub fn getpgrp() -> pid_t {
    // SAFETY: no arguments; getpgrp cannot fail.
    unsafe { libc::getpgrp() }
}

/// `personality(persona)` for the calling process.
pub fn set_personality(persona: u32) -> Result<()> {
    // SAFETY: plain integer argument.
    let ret = unsafe { libc::personality(persona as libc::c_ulong) };
    check(ret as c_long, "personality", persona).map(drop)
}

/// `umask(mask)` for the calling process.
pub fn set_umask(mask: u32) {
    // SAFETY: umask cannot fail.
    unsafe { libc::umask(mask as libc::mode_t) };
}

/// `dup3(old, new, flags)`.
pub fn dup3(old: i32, new: i32, flags: i32) -> Result<()> {
    // SAFETY: plain integer arguments; the caller owns the descriptor numbers.
    let ret = unsafe { libc::dup3(old, new, flags) };
    check(ret as c_long, "dup3", format!("fd {old} -> {new}")).map(drop)
}

/// `fcntl(fd, F_DUPFD, min)`: a copy of `fd` numbered at least `min`.
pub fn dup_at_least(fd: i32, min: i32) -> Result<i32> {
    // SAFETY: plain integer arguments.
    let ret = unsafe { libc::fcntl(fd, libc::F_DUPFD, min) };
    check(ret as c_long, "F_DUPFD", format!("fd {fd}")).map(|v| v as i32)
}

/// `fcntl(fd, F_SETFD, flags)`.
pub fn set_fd_flags(fd: i32, flags: i32) -> Result<()> {
    // SAFETY: plain integer arguments.
    let ret = unsafe { libc::fcntl(fd, libc::F_SETFD, flags) };
    check(ret as c_long, "F_SETFD", format!("fd {fd}")).map(drop)
}

/// `lseek(fd, pos, SEEK_SET)`.
pub fn seek_to(fd: i32, pos: u64) -> Result<()> {
    // SAFETY: plain integer arguments.
    let ret = unsafe { libc::lseek64(fd, pos as i64, libc::SEEK_SET) };
    check(ret as c_long, "lseek", format!("fd {fd}")).map(drop)
}

/// Closes every descriptor of the calling process except those in `keep`.
pub fn close_all_except(keep: &[i32]) -> Result<()> {
    let mut keep: Vec<u32> = keep.iter().map(|&f| f as u32).collect();
    keep.sort_unstable();
    let mut from = 0u32;
    for k in keep.into_iter().chain(std::iter::once(u32::MAX)) {
        if k > from {
            // SAFETY: close_range takes plain integers; closing descriptors the caller no
            // longer uses is its stated intent.
            let ret = unsafe { libc::syscall(libc::SYS_close_range, from, k - 1, 0u32) };
            check(ret, "close_range", format!("{from}..{}", k - 1))?;
        }
        from = k.saturating_add(1);
    }
    Ok(())
}

/// Writes all of `buf` to a raw descriptor (for a forked child reporting to its parent).
pub fn write_fd(fd: i32, buf: &[u8]) -> Result<()> {
    let mut off = 0;
    while off < buf.len() {
        // SAFETY: the slice is valid for reads of its length.
        let ret = unsafe { libc::write(fd, buf[off..].as_ptr().cast(), buf.len() - off) };
        if ret < 0 {
            let e = SysError::last("write", format!("fd {fd}"));
            if e.errno() == Some(libc::EINTR) {
                continue;
            }
            return Err(e);
        }
        off += ret as usize;
    }
    Ok(())
}

/// Ends the calling process at once, without running destructors or atexit handlers.
pub fn exit_now(code: i32) -> ! {
    // SAFETY: _exit never returns and has no preconditions.
    unsafe { libc::_exit(code) }
}

/// Sleeps until a signal arrives (a restoring child waits here to be seized).
pub fn pause_forever() -> ! {
    loop {
        // SAFETY: pause has no arguments and only returns on a signal.
        unsafe { libc::pause() };
    }
}

/// `prctl(PR_SET_NAME)` for the calling thread.
pub fn set_comm(name: &str) -> Result<()> {
    let mut buf = [0u8; 16];
    let n = name.len().min(15);
    buf[..n].copy_from_slice(&name.as_bytes()[..n]);
    // SAFETY: buf is a NUL-terminated 16-byte buffer.
    let ret = unsafe { libc::prctl(libc::PR_SET_NAME, buf.as_ptr() as libc::c_ulong, 0, 0, 0) };
    check(ret as c_long, "PR_SET_NAME", name).map(drop)
}

/// Sets the scheduling policy/priority and nice value of a task.
pub fn set_sched(tid: pid_t, policy: u32, prio: u32, nice: i32) -> Result<()> {
    let param = libc::sched_param {
        sched_priority: prio as i32,
    };
    // SAFETY: param is a valid in-pointer.
    let ret = unsafe { libc::sched_setscheduler(tid, policy as i32, &param) };
    check(ret as c_long, "sched_setscheduler", format!("tid {tid}"))?;
    // SAFETY: plain integer arguments.
    let ret = unsafe { libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, nice) };
    check(ret as c_long, "setpriority", format!("tid {tid}")).map(drop)
}

/// Closes one descriptor the caller owns by number.
pub fn close_fd(fd: i32) {
    // SAFETY: closing a descriptor number the caller owns and no longer uses.
    unsafe { libc::close(fd) };
}

/// Dies by `signal` with its default action (a zombie recreated as killed by a signal).
pub fn die_by_signal(signal: i32) -> ! {
    let dfl = KernelSigaction::default();
    let _ = set_raw_sigaction(signal, &dfl);
    let _ = sigprocmask(libc::SIG_UNBLOCK, 1u64 << (signal - 1));
    // SAFETY: raising a signal at ourselves has no memory-safety preconditions.
    unsafe { libc::raise(signal) };
    exit_now(128 + signal)
}

/// What two processes can share that `kcmp` compares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shared {
    /// The address space (`CLONE_VM` without `CLONE_THREAD`, e.g. vfork).
    Vm = 1,
    /// The descriptor table (`CLONE_FILES`).
    Files = 2,
    /// cwd, root and umask (`CLONE_FS`).
    Fs = 3,
}

/// Whether `pid1` and `pid2` share `what` (`kcmp`).
pub fn shares(pid1: pid_t, pid2: pid_t, what: Shared) -> Result<bool> {
    // SAFETY: kcmp takes plain integers and only compares kernel objects.
    let ret = unsafe { libc::syscall(libc::SYS_kcmp, pid1, pid2, what as i32, 0, 0) };
    check(ret, "kcmp", format!("pids {pid1} and {pid2}")).map(|r| r == 0)
}
