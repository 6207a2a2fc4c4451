//! A seized, stopped task and the system calls run inside it.

use crate::{ParasiteError, ProcMem, Result};
use stasis_sys::ptrace::{self, UserRegs, WaitStatus};

/// How the task was stopped when it was seized.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopKind {
    /// Running (or sleeping) until we interrupted it.
    Running,
    /// Already in a group stop (SIGSTOP/SIGTSTP...): it must be left stopped.
    GroupStopped(i32),
}

/// A task held in a ptrace stop.
pub struct Tracee {
    pid: i32,
    /// Registers and signal mask the task had when seized: put back before detaching.
    regs: UserRegs,
    sigmask: u64,
    stop: StopKind,
    syscall_ip: Option<u64>,
    mask_blocked: bool,
    detached: bool,
}

const ALL_SIGNALS: u64 = !0;

impl Tracee {
    /// Seizes `pid` and stops it, reading its registers and signal mask.
    pub fn seize(pid: i32) -> Result<Tracee> {
        Self::seize_nowait(pid)?;
        Self::wait_seized(pid)
    }

    /// Seizes and interrupts `pid` without waiting for it to stop: a task of a frozen
    /// cgroup reaches its ptrace stop only once the cgroup thaws. [`Tracee::wait_seized`]
    /// then takes hold of it (and is the only way to let it go again: a task that is not
    /// stopped cannot be detached).
    pub fn seize_nowait(pid: i32) -> Result<()> {
        // Its seccomp filters are suspended while stasis holds it, so they cannot refuse
        // the remote calls; a stasis without CAP_SYS_ADMIN (or itself under seccomp)
        // seizes without that.
        match ptrace::seize(pid, ptrace::PTRACE_O_SUSPEND_SECCOMP) {
            Err(e) if matches!(e.errno(), Some(libc::EPERM) | Some(libc::EINVAL)) => {
                ptrace::seize(pid, 0)?
            }
            other => other?,
        }
        if let Err(e) = ptrace::interrupt(pid) {
            let _ = ptrace::detach(pid, 0);
            return Err(e.into());
        }
        Ok(())
    }

    /// Waits for a task seized by [`Tracee::seize_nowait`] to stop, and holds it.
    pub fn wait_seized(pid: i32) -> Result<Tracee> {
        let stop = match Self::wait_interrupt_stop(pid) {
            Ok(stop) => stop,
            Err(e) => {
                let _ = ptrace::detach(pid, 0);
                return Err(e);
            }
        };
        let mut t = Tracee {
            pid,
            regs: ptrace::get_regs(pid).inspect_err(|_| {
                let _ = ptrace::detach(pid, 0);
            })?,
            sigmask: 0,
            stop,
            syscall_ip: None,
            mask_blocked: false,
            detached: false,
        };
        t.sigmask = ptrace::get_sigmask(pid)?;
        Ok(t)
    }

    fn wait_interrupt_stop(pid: i32) -> Result<StopKind> {
        loop {
            let (_, st) = ptrace::waitpid(pid, 0)?;
            match st {
                WaitStatus::Stopped {
                    event: ptrace::PTRACE_EVENT_STOP,
                    sig,
                } => {
                    return Ok(match sig {
                        libc::SIGSTOP | libc::SIGTSTP | libc::SIGTTIN | libc::SIGTTOU => {
                            StopKind::GroupStopped(sig)
                        }
                        _ => StopKind::Running,
                    });
                }
                WaitStatus::Stopped { sig, .. } => {
                    // A signal arrived before our interrupt took effect: keep it pending by
                    // re-injecting it, and wait for the interrupt stop that follows.
                    ptrace::cont(pid, sig)?;
                    ptrace::interrupt(pid)?;
                }
                WaitStatus::Exited(_) | WaitStatus::Signaled(_) => {
                    return Err(ParasiteError::Task {
                        pid,
                        what: "exited while being seized".into(),
                    });
                }
                WaitStatus::StillAlive => {}
            }
        }
    }

    /// The task's PID.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Registers at seize time.
    pub fn regs(&self) -> &UserRegs {
        &self.regs
    }

    /// Blocked-signal mask at seize time.
    pub fn sigmask(&self) -> u64 {
        self.sigmask
    }

    /// How the task was stopped at seize time.
    pub fn stop_kind(&self) -> StopKind {
        self.stop
    }

    /// Uses the `syscall` instruction at `ip` for remote calls.
    pub fn set_syscall_ip(&mut self, ip: u64) {
        self.syscall_ip = Some(ip);
    }

    /// Finds a `syscall` instruction (`0f 05`) in the task's `[vdso]` and uses it.
    pub fn find_syscall_ip(&mut self, mem: &ProcMem) -> Result<u64> {
        let maps =
            std::fs::read_to_string(format!("/proc/{}/maps", self.pid)).map_err(|source| {
                ParasiteError::Io {
                    pid: self.pid,
                    path: format!("/proc/{}/maps", self.pid),
                    source,
                }
            })?;
        for line in maps.lines().filter(|l| l.ends_with("[vdso]")) {
            let range = line.split_whitespace().next().unwrap_or("");
            let (s, e) = range.split_once('-').unwrap_or(("0", "0"));
            let start = u64::from_str_radix(s, 16).unwrap_or(0);
            let end = u64::from_str_radix(e, 16).unwrap_or(0);
            let mut buf = vec![0u8; end.saturating_sub(start) as usize];
            mem.read(start, &mut buf)?;
            if let Some(off) = buf.windows(2).position(|w| w == [0x0f, 0x05]) {
                let ip = start + off as u64;
                self.syscall_ip = Some(ip);
                return Ok(ip);
            }
        }
        Err(ParasiteError::Task {
            pid: self.pid,
            what: "no syscall instruction found in its [vdso]".into(),
        })
    }

    /// Runs system call `nr` with `args` inside the task and returns its raw result
    /// (a negative errno on failure). The task's registers are put back afterwards.
    pub fn syscall(&mut self, nr: i64, args: [u64; 6]) -> Result<i64> {
        let ip = self.syscall_ip.ok_or_else(|| ParasiteError::Task {
            pid: self.pid,
            what: "no syscall instruction chosen for remote calls".into(),
        })?;
        if !self.mask_blocked {
            ptrace::set_sigmask(self.pid, ALL_SIGNALS)?;
            self.mask_blocked = true;
        }
        let mut r = self.regs;
        r.rip = ip;
        r.rax = nr as u64;
        r.orig_rax = u64::MAX;
        r.rdi = args[0];
        r.rsi = args[1];
        r.rdx = args[2];
        r.r10 = args[3];
        r.r8 = args[4];
        r.r9 = args[5];
        ptrace::set_regs(self.pid, &r)?;
        ptrace::singlestep(self.pid, 0)?;
        // A task that was stopped by a signal (SIGSTOP, Ctrl-Z) reports its group stop
        // again (PTRACE_EVENT_STOP) before it takes the step: step once more.
        let mut restops = 0;
        let result = loop {
            let (_, st) = ptrace::waitpid(self.pid, 0)?;
            match st {
                WaitStatus::Stopped {
                    sig: libc::SIGTRAP,
                    event: 0,
                } => {
                    break ptrace::get_regs(self.pid)?.rax as i64;
                }
                WaitStatus::Stopped {
                    event: ptrace::PTRACE_EVENT_STOP,
                    ..
                } if restops < 8 => {
                    restops += 1;
                    ptrace::singlestep(self.pid, 0)?;
                }
                WaitStatus::Exited(c) => {
                    return Err(ParasiteError::Task {
                        pid: self.pid,
                        what: format!("exited with {c} during a remote syscall {nr}"),
                    })
                }
                WaitStatus::Signaled(s) => {
                    return Err(ParasiteError::Task {
                        pid: self.pid,
                        what: format!("killed by signal {s} during a remote syscall {nr}"),
                    })
                }
                WaitStatus::Stopped { sig, event } => {
                    let _ = ptrace::set_regs(self.pid, &self.regs);
                    return Err(ParasiteError::Task {
                        pid: self.pid,
                        what: format!("unexpected stop (signal {sig}, event {event}) during remote syscall {nr}"),
                    });
                }
                WaitStatus::StillAlive => {}
            }
        };
        ptrace::set_regs(self.pid, &self.regs)?;
        Ok(result)
    }

    /// Like [`Tracee::syscall`], but a negative result is an error naming the call.
    pub fn syscall_ok(&mut self, name: &'static str, nr: i64, args: [u64; 6]) -> Result<u64> {
        let ret = self.syscall(nr, args)?;
        if (-4095..0).contains(&ret) {
            return Err(ParasiteError::Remote {
                pid: self.pid,
                name,
                errno: std::io::Error::from_raw_os_error(-ret as i32),
            });
        }
        Ok(ret as u64)
    }

    /// Replaces the registers that are put back after each call and at release (restore
    /// sets the dumped registers this way).
    pub fn set_saved_regs(&mut self, regs: UserRegs) {
        self.regs = regs;
    }

    /// Replaces the signal mask put back at release.
    pub fn set_saved_sigmask(&mut self, mask: u64) {
        self.sigmask = mask;
    }

    /// Puts back registers and signal mask and lets the task run (or stay in its group
    /// stop).
    pub fn release(mut self) -> Result<()> {
        self.put_back()?;
        self.detached = true;
        let sig = match self.stop {
            StopKind::GroupStopped(sig) => sig,
            StopKind::Running => 0,
        };
        ptrace::detach(self.pid, sig)?;
        Ok(())
    }

    fn put_back(&mut self) -> Result<()> {
        ptrace::set_regs(self.pid, &self.regs)?;
        ptrace::set_sigmask(self.pid, self.sigmask)?;
        self.mask_blocked = false;
        Ok(())
    }

    /// Lets go of a task that is gone (killed with its thread group): nothing to put back.
    pub fn forget(mut self) {
        self.detached = true;
    }

    /// Kills the task with SIGKILL while it is still held, so it never runs again.
    pub fn kill(mut self) -> Result<()> {
        self.detached = true;
        stasis_sys::process::kill(self.pid, libc::SIGKILL)?;
        let _ = ptrace::detach(self.pid, 0);
        Ok(())
    }
}

impl Drop for Tracee {
    fn drop(&mut self) {
        if !self.detached {
            // Best effort: an error path dropped us; leave the task as it was.
            if self.put_back().is_ok() {
                let sig = match self.stop {
                    StopKind::GroupStopped(sig) => sig,
                    StopKind::Running => 0,
                };
                let _ = ptrace::detach(self.pid, sig);
            }
        }
    }
}

/// An anonymous mapping the tracee made for results of remote calls; unmapped on `unmap`.
pub struct Scratch {
    pub addr: u64,
    pub len: u64,
}

impl Scratch {
    /// Maps `len` bytes (read-write) inside the tracee at an address the kernel picks.
    pub fn map(t: &mut Tracee, len: u64) -> Result<Scratch> {
        let addr = t.syscall_ok(
            "mmap",
            libc::SYS_mmap,
            [
                0,
                len,
                (libc::PROT_READ | libc::PROT_WRITE) as u64,
                (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS) as u64,
                u64::MAX,
                0,
            ],
        )?;
        Ok(Scratch { addr, len })
    }

    /// Unmaps it.
    pub fn unmap(self, t: &mut Tracee) -> Result<()> {
        t.syscall_ok(
            "munmap",
            libc::SYS_munmap,
            [self.addr, self.len, 0, 0, 0, 0],
        )
        .map(drop)
    }
}
