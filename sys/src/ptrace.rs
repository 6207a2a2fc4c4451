//! ptrace requests used to seize, stop, inspect and resume tasks.
//!
//! ptrace is bound to the thread that attached: every request for a tracee must come from
//! the thread that seized it. Callers keep one engine thread for all of them.

use crate::error::{check, Result, SysError};
use libc::{c_long, c_void, pid_t};

pub const PTRACE_SEIZE: u32 = 0x4206;
pub const PTRACE_INTERRUPT: u32 = 0x4207;
pub const PTRACE_PEEKSIGINFO: u32 = 0x4209;
pub const PTRACE_GETSIGMASK: u32 = 0x420a;
pub const PTRACE_SETSIGMASK: u32 = 0x420b;
pub const PTRACE_GET_RSEQ_CONFIGURATION: u32 = 0x420f;
pub const PTRACE_GETREGSET: u32 = 0x4204;
pub const PTRACE_SETREGSET: u32 = 0x4205;
pub const PTRACE_GET_THREAD_AREA: u32 = 25;
pub const PTRACE_SET_THREAD_AREA: u32 = 26;
/// `PTRACE_PEEKSIGINFO` flag: read the process-wide (shared) queue.
pub const PTRACE_PEEKSIGINFO_SHARED: u32 = 1;
/// Register-set note type of the full XSAVE area.
pub const NT_X86_XSTATE: u32 = 0x202;
/// Register-set note type of the general-purpose registers.
pub const NT_PRSTATUS: u32 = 1;
/// `PTRACE_EVENT_STOP`, reported for `PTRACE_INTERRUPT` and group stops of seized tasks.
pub const PTRACE_EVENT_STOP: i32 = 128;

/// The general-purpose registers, as the kernel's `struct user_regs_struct`.
pub type UserRegs = libc::user_regs_struct;

/// The kernel's `struct ptrace_rseq_configuration`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RseqConfiguration {
    pub rseq_abi_pointer: u64,
    pub rseq_abi_size: u32,
    pub signature: u32,
    pub flags: u32,
    pub pad: u32,
}

/// The kernel's `struct user_desc` (one GDT TLS slot).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UserDesc {
    pub entry_number: u32,
    pub base_addr: u32,
    pub limit: u32,
    /// Bit field: seg_32bit, contents(2), read_exec_only, limit_in_pages, seg_not_present, useable, lm.
    pub flags: u32,
}

#[repr(C)]
struct PeekSiginfoArgs {
    off: u64,
    flags: u32,
    nr: i32,
}

fn raw(req: u32, pid: pid_t, addr: usize, data: usize) -> c_long {
    // SAFETY: ptrace takes plain integers or pointers to buffers the callers below own and
    // size correctly for the request; the kernel validates pid and request.
    unsafe { libc::ptrace(req as _, pid, addr as *mut c_void, data as *mut c_void) }
}

fn req(req: u32, name: &'static str, pid: pid_t, addr: usize, data: usize) -> Result<c_long> {
    check(raw(req, pid, addr, data), name, format!("pid {pid}"))
}

/// `PTRACE_SEIZE` with the given options: attaches without stopping the task.
pub fn seize(pid: pid_t, options: u32) -> Result<()> {
    req(PTRACE_SEIZE, "PTRACE_SEIZE", pid, 0, options as usize).map(drop)
}

/// `PTRACE_O_SUSPEND_SECCOMP`: the tracee's seccomp filters do not apply while it is
/// traced (so remote system calls work in a task whose filters forbid them).
pub const PTRACE_O_SUSPEND_SECCOMP: u32 = 1 << 21;
const PTRACE_SECCOMP_GET_FILTER: u32 = 0x420c;
const PTRACE_GET_SECCOMP_METADATA: u32 = 0x420d;

/// One classic-BPF seccomp filter of a task (`index` 0 is the oldest), as raw
/// `struct sock_filter` bytes; `None` past the newest.
pub fn seccomp_filter(pid: pid_t, index: u64) -> Result<Option<Vec<u8>>> {
    let n = match req(
        PTRACE_SECCOMP_GET_FILTER,
        "PTRACE_SECCOMP_GET_FILTER",
        pid,
        index as usize,
        0,
    ) {
        Ok(n) => n as usize,
        Err(e) if e.errno() == Some(libc::ENOENT) => return Ok(None),
        Err(e) => return Err(e),
    };
    // Eight bytes per instruction; the kernel caps a filter at 4096 of them.
    let mut buf = vec![0u8; n.min(4096) * 8];
    let got = req(
        PTRACE_SECCOMP_GET_FILTER,
        "PTRACE_SECCOMP_GET_FILTER",
        pid,
        index as usize,
        buf.as_mut_ptr() as usize,
    )? as usize;
    buf.truncate(got.min(n.min(4096)) * 8);
    Ok(Some(buf))
}

/// The flags (`SECCOMP_FILTER_FLAG_*`) filter `index` of a task was installed with.
pub fn seccomp_filter_flags(pid: pid_t, index: u64) -> Result<u64> {
    let mut meta = [index, 0u64];
    req(
        PTRACE_GET_SECCOMP_METADATA,
        "PTRACE_GET_SECCOMP_METADATA",
        pid,
        std::mem::size_of_val(&meta),
        meta.as_mut_ptr() as usize,
    )?;
    Ok(meta[1])
}

/// `PTRACE_INTERRUPT`: asks a seized task to stop; the stop is reported through waitpid.
pub fn interrupt(pid: pid_t) -> Result<()> {
    req(PTRACE_INTERRUPT, "PTRACE_INTERRUPT", pid, 0, 0).map(drop)
}

/// `PTRACE_DETACH`, delivering `sig` (0 for none).
pub fn detach(pid: pid_t, sig: i32) -> Result<()> {
    req(libc::PTRACE_DETACH, "PTRACE_DETACH", pid, 0, sig as usize).map(drop)
}

/// `PTRACE_CONT`, delivering `sig` (0 for none).
pub fn cont(pid: pid_t, sig: i32) -> Result<()> {
    req(libc::PTRACE_CONT, "PTRACE_CONT", pid, 0, sig as usize).map(drop)
}

/// `PTRACE_SINGLESTEP`, delivering `sig` (0 for none).
pub fn singlestep(pid: pid_t, sig: i32) -> Result<()> {
    req(
        libc::PTRACE_SINGLESTEP,
        "PTRACE_SINGLESTEP",
        pid,
        0,
        sig as usize,
    )
    .map(drop)
}

/// Reads the general-purpose registers.
pub fn get_regs(pid: pid_t) -> Result<UserRegs> {
    // SAFETY: user_regs_struct is plain old data; all-zero is a valid value.
    let mut regs: UserRegs = unsafe { std::mem::zeroed() };
    req(
        libc::PTRACE_GETREGS,
        "PTRACE_GETREGS",
        pid,
        0,
        &mut regs as *mut _ as usize,
    )?;
    Ok(regs)
}

/// Writes the general-purpose registers.
pub fn set_regs(pid: pid_t, regs: &UserRegs) -> Result<()> {
    req(
        libc::PTRACE_SETREGS,
        "PTRACE_SETREGS",
        pid,
        0,
        regs as *const _ as usize,
    )
    .map(drop)
}

/// Reads a register set into `buf`, returning the number of bytes the kernel filled.
pub fn get_regset(pid: pid_t, note: u32, buf: &mut [u8]) -> Result<usize> {
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    req(
        PTRACE_GETREGSET,
        "PTRACE_GETREGSET",
        pid,
        note as usize,
        &mut iov as *mut _ as usize,
    )?;
    Ok(iov.iov_len)
}

/// Writes a register set from `buf`.
pub fn set_regset(pid: pid_t, note: u32, buf: &[u8]) -> Result<()> {
    let mut iov = libc::iovec {
        iov_base: buf.as_ptr() as *mut c_void,
        iov_len: buf.len(),
    };
    req(
        PTRACE_SETREGSET,
        "PTRACE_SETREGSET",
        pid,
        note as usize,
        &mut iov as *mut _ as usize,
    )
    .map(drop)
}

/// Reads the blocked-signal mask.
pub fn get_sigmask(pid: pid_t) -> Result<u64> {
    let mut mask = 0u64;
    req(
        PTRACE_GETSIGMASK,
        "PTRACE_GETSIGMASK",
        pid,
        8,
        &mut mask as *mut _ as usize,
    )?;
    Ok(mask)
}

/// Sets the blocked-signal mask.
pub fn set_sigmask(pid: pid_t, mask: u64) -> Result<()> {
    req(
        PTRACE_SETSIGMASK,
        "PTRACE_SETSIGMASK",
        pid,
        8,
        &mask as *const _ as usize,
    )
    .map(drop)
}

/// Reads the pending signals of one queue (the thread's, or the shared one), as raw
/// 128-byte `siginfo_t` records, without dequeuing them.
pub fn peek_siginfo(pid: pid_t, shared: bool) -> Result<Vec<[u8; 128]>> {
    let mut out = Vec::new();
    loop {
        let mut batch = [[0u8; 128]; 32];
        let args = PeekSiginfoArgs {
            off: out.len() as u64,
            flags: if shared { PTRACE_PEEKSIGINFO_SHARED } else { 0 },
            nr: batch.len() as i32,
        };
        let n = req(
            PTRACE_PEEKSIGINFO,
            "PTRACE_PEEKSIGINFO",
            pid,
            &args as *const _ as usize,
            batch.as_mut_ptr() as usize,
        )? as usize;
        out.extend_from_slice(&batch[..n.min(batch.len())]);
        if n < batch.len() {
            return Ok(out);
        }
        if out.len() > 1 << 16 {
            return Err(SysError::from_errno(
                "PTRACE_PEEKSIGINFO",
                format!("pid {pid}"),
                libc::E2BIG,
            ));
        }
    }
}

/// Reads the task's rseq registration (all zero when none).
pub fn get_rseq_configuration(pid: pid_t) -> Result<RseqConfiguration> {
    let mut conf = RseqConfiguration::default();
    req(
        PTRACE_GET_RSEQ_CONFIGURATION,
        "PTRACE_GET_RSEQ_CONFIGURATION",
        pid,
        std::mem::size_of::<RseqConfiguration>(),
        &mut conf as *mut _ as usize,
    )?;
    Ok(conf)
}

/// Reads one GDT TLS slot (`index` 12..=14 on x86-64).
pub fn get_thread_area(pid: pid_t, index: u32) -> Result<UserDesc> {
    let mut desc = UserDesc::default();
    req(
        PTRACE_GET_THREAD_AREA,
        "PTRACE_GET_THREAD_AREA",
        pid,
        index as usize,
        &mut desc as *mut _ as usize,
    )?;
    Ok(desc)
}

/// Writes one GDT TLS slot.
pub fn set_thread_area(pid: pid_t, index: u32, desc: &UserDesc) -> Result<()> {
    req(
        PTRACE_SET_THREAD_AREA,
        "PTRACE_SET_THREAD_AREA",
        pid,
        index as usize,
        desc as *const _ as usize,
    )
    .map(drop)
}

/// How a waited-for task changed state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WaitStatus {
    /// Exited with a code.
    Exited(i32),
    /// Killed by a signal.
    Signaled(i32),
    /// Stopped: the stop signal and the ptrace event (`status >> 16`).
    Stopped { sig: i32, event: i32 },
    /// Nothing to report (`WNOHANG`).
    StillAlive,
}

/// `waitpid(pid, &status, flags | __WALL)`, retrying on EINTR.
pub fn waitpid(pid: pid_t, flags: i32) -> Result<(pid_t, WaitStatus)> {
    loop {
        let mut status = 0;
        // SAFETY: status is a valid out-pointer for the duration of the call.
        let ret = unsafe { libc::waitpid(pid, &mut status, flags | libc::__WALL) };
        if ret < 0 {
            let err = SysError::last("waitpid", format!("pid {pid}"));
            if err.errno() == Some(libc::EINTR) {
                continue;
            }
            return Err(err);
        }
        if ret == 0 {
            return Ok((0, WaitStatus::StillAlive));
        }
        let st = if libc::WIFEXITED(status) {
            WaitStatus::Exited(libc::WEXITSTATUS(status))
        } else if libc::WIFSIGNALED(status) {
            WaitStatus::Signaled(libc::WTERMSIG(status))
        } else {
            WaitStatus::Stopped {
                sig: libc::WSTOPSIG(status),
                event: (status >> 16) & 0xff,
            }
        };
        return Ok((ret, st));
    }
}
