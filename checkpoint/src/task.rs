//! Per-task state for `core-<tid>.img`: registers, FPU/XSAVE, signals, timers, limits,
//! credentials, and what only the task itself can report (read by remote calls).

use crate::procfs::Stat;
use crate::x86;
use crate::{DumpError, Result};
use stasis_images::pb;
use stasis_parasite::{ProcMem, Scratch, StopKind, Tracee};
use stasis_sys::{process, ptrace};

/// `prctl` options read remotely.
const PR_GET_PDEATHSIG: u64 = 2;
const PR_GET_DUMPABLE: u64 = 3;
const PR_GET_SECUREBITS: u64 = 27;
const PR_GET_CHILD_SUBREAPER: u64 = 37;
const PR_GET_TID_ADDRESS: u64 = 40;
const PR_GET_THP_DISABLE: u64 = 42;

/// Number of resource limits the kernel has (`RLIM_NLIMITS`).
pub const RLIM_NLIMITS: u32 = 16;

/// What the mm image needs that comes from remote calls.
pub struct RemoteMm {
    pub brk: u64,
    pub dumpable: i32,
    pub thp_disabled: bool,
}

fn words(b: &[u8]) -> impl Iterator<Item = u64> + '_ {
    b.chunks_exact(8)
        .map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes")))
}

fn cap_words(v: u64) -> Vec<u32> {
    vec![v as u32, (v >> 32) as u32]
}

/// Per-thread state, read through that thread's own remote calls and ptrace.
pub struct ThreadState {
    pub tid: i32,
    pub thread_info: pb::ThreadInfoX86,
    pub thread_core: pb::ThreadCoreEntry,
}

/// Collects what belongs to one thread: registers, XSAVE, TLS, signal mask and private
/// queue, sigaltstack, TID address, robust list, rseq, scheduling, name, credentials.
pub fn collect_thread(
    t: &mut Tracee,
    mem: &ProcMem,
    scratch: &Scratch,
    pid: i32,
) -> Result<ThreadState> {
    let tid = t.pid();
    let s = scratch.addr;
    let mut buf = [0u8; 32];

    t.syscall_ok("sigaltstack", libc::SYS_sigaltstack, [0, s, 0, 0, 0, 0])?;
    mem.read(s, &mut buf[..24])?;
    let w: Vec<u64> = words(&buf[..24]).collect();
    let sas = pb::ThreadSasEntry {
        ss_sp: w[0],
        ss_flags: w[1] as u32,
        ss_size: w[2],
    };
    let prctl_out = |t: &mut Tracee, opt: u64| -> Result<u64> {
        t.syscall_ok("prctl", libc::SYS_prctl, [opt, s, 0, 0, 0, 0])?;
        let mut b = [0u8; 8];
        mem.read(s, &mut b)?;
        Ok(u64::from_le_bytes(b))
    };
    let clear_tid = prctl_out(t, PR_GET_TID_ADDRESS)?;
    let pdeath = prctl_out(t, PR_GET_PDEATHSIG)? as u32;
    let secbits =
        t.syscall_ok("prctl", libc::SYS_prctl, [PR_GET_SECUREBITS, 0, 0, 0, 0, 0])? as u32;

    let regs = *t.regs();
    let mut xbuf = vec![0u8; 1 << 16];
    let n = ptrace::get_regset(tid, ptrace::NT_X86_XSTATE, &mut xbuf)?;
    xbuf.truncate(n);
    let fpregs = x86::xsave_to_image(&xbuf).map_err(|e| DumpError::Unsupported {
        pid: tid,
        what: e.to_string(),
    })?;
    let mut tls = Vec::new();
    for idx in 12..15 {
        let d = ptrace::get_thread_area(tid, idx)?;
        tls.push(pb::UserDescT {
            entry_number: idx,
            base_addr: d.base_addr,
            limit: d.limit,
            seg_32bit: d.flags & 1 != 0,
            contents_h: d.flags & 4 != 0,
            contents_l: d.flags & 2 != 0,
            read_exec_only: d.flags & 8 != 0,
            limit_in_pages: d.flags & 16 != 0,
            seg_not_present: d.flags & 32 != 0,
            usable: d.flags & 64 != 0,
        });
    }
    let signals_p = signal_queue(tid, false)?;
    let (futex_rla, futex_rla_len) = process::get_robust_list(tid)?;
    let (policy, prio, nice) = process::get_sched(tid)?;
    let rseq = ptrace::get_rseq_configuration(tid)?;
    let comm = crate::procfs::text(pid, &format!("task/{tid}/comm"))?;
    let status = crate::procfs::status_of(pid, tid)?;
    let creds = pb::CredsEntry {
        uid: status.uids[0],
        euid: status.uids[1],
        suid: status.uids[2],
        fsuid: status.uids[3],
        gid: status.gids[0],
        egid: status.gids[1],
        sgid: status.gids[2],
        fsgid: status.gids[3],
        cap_inh: cap_words(status.cap_inh),
        cap_prm: cap_words(status.cap_prm),
        cap_eff: cap_words(status.cap_eff),
        cap_bnd: cap_words(status.cap_bnd),
        cap_amb: cap_words(status.cap_amb),
        secbits,
        groups: status.groups.clone(),
        no_new_privs: Some(status.no_new_privs),
        ..Default::default()
    };
    Ok(ThreadState {
        tid,
        thread_info: pb::ThreadInfoX86 {
            clear_tid_addr: clear_tid,
            gpregs: x86::regs_to_image(&regs),
            fpregs,
            tls,
        },
        thread_core: pb::ThreadCoreEntry {
            futex_rla,
            futex_rla_len: futex_rla_len as u32,
            sched_nice: Some(nice),
            sched_policy: Some(policy),
            sched_prio: Some(prio),
            blk_sigset: Some(t.sigmask()),
            sas: Some(sas),
            pdeath_sig: Some(pdeath),
            signals_p: Some(signals_p),
            creds: Some(creds),
            seccomp_mode: Some(pb::SeccompMode::Disabled as i32),
            comm: Some(comm),
            rseq_entry: Some(pb::RseqEntry {
                rseq_abi_pointer: rseq.rseq_abi_pointer,
                rseq_abi_size: rseq.rseq_abi_size,
                signature: rseq.signature,
                rseq_cs_pointer: None,
            }),
            ..Default::default()
        },
    })
}

fn signal_queue(tid: i32, shared: bool) -> Result<pb::SignalQueueEntry> {
    Ok(pb::SignalQueueEntry {
        signals: ptrace::peek_siginfo(tid, shared)?
            .into_iter()
            .map(|si| pb::SiginfoEntry {
                siginfo: si.to_vec(),
            })
            .collect(),
    })
}

/// Collects what belongs to the whole process, through the leader: signal actions,
/// itimers, the shared signal queue, rlimits, personality and the mm values only the
/// task can report. Returns the leader's `tc` entry.
pub fn collect_process(
    t: &mut Tracee,
    mem: &ProcMem,
    scratch: &Scratch,
    stat: &Stat,
) -> Result<(pb::TaskCoreEntry, RemoteMm)> {
    let pid = t.pid();
    let s = scratch.addr;
    let mut buf = [0u8; 32];
    let mut sigactions = Vec::with_capacity(62);
    // Only signals with a handler or ignored need asking (one remote call each); the
    // rest are SIG_DFL, whose flags and mask do nothing — but SIGCHLD's, where
    // SA_NOCLDSTOP and SA_NOCLDWAIT count even then.
    let status = crate::procfs::status(pid)?;
    let asked = status.sig_cgt | status.sig_ign | 1 << (libc::SIGCHLD - 1);
    for sig in 1..=64u64 {
        if sig == libc::SIGKILL as u64 || sig == libc::SIGSTOP as u64 {
            continue;
        }
        if asked & 1 << (sig - 1) == 0 {
            sigactions.push(pb::SaEntry {
                sigaction: 0,
                flags: 0,
                restorer: 0,
                mask: 0,
                compat_sigaction: None,
                mask_extended: None,
            });
            continue;
        }
        t.syscall_ok("rt_sigaction", libc::SYS_rt_sigaction, [sig, 0, s, 8, 0, 0])?;
        mem.read(s, &mut buf)?;
        let w: Vec<u64> = words(&buf).collect();
        sigactions.push(pb::SaEntry {
            sigaction: w[0],
            flags: w[1],
            restorer: w[2],
            mask: w[3],
            compat_sigaction: None,
            mask_extended: None,
        });
    }
    let mut itimer = |which: u64| -> Result<pb::ItimerEntry> {
        t.syscall_ok("getitimer", libc::SYS_getitimer, [which, s, 0, 0, 0, 0])?;
        mem.read(s, &mut buf)?;
        let w: Vec<u64> = words(&buf).collect();
        Ok(pb::ItimerEntry {
            isec: w[0],
            iusec: w[1],
            vsec: w[2],
            vusec: w[3],
        })
    };
    let timers = pb::TaskTimersEntry {
        real: itimer(libc::ITIMER_REAL as u64)?,
        virt: itimer(libc::ITIMER_VIRTUAL as u64)?,
        prof: itimer(libc::ITIMER_PROF as u64)?,
        posix: posix_timers(t, mem, scratch)?,
    };
    t.syscall_ok(
        "prctl",
        libc::SYS_prctl,
        [PR_GET_CHILD_SUBREAPER, s, 0, 0, 0, 0],
    )?;
    let mut b = [0u8; 4];
    mem.read(s, &mut b)?;
    let subreaper = u32::from_le_bytes(b) != 0;
    let dumpable = t.syscall_ok("prctl", libc::SYS_prctl, [PR_GET_DUMPABLE, 0, 0, 0, 0, 0])? as i32;
    let thp_disabled = t.syscall_ok(
        "prctl",
        libc::SYS_prctl,
        [PR_GET_THP_DISABLE, 0, 0, 0, 0, 0],
    )? != 0;
    let brk = t.syscall_ok("brk", libc::SYS_brk, [0; 6])?;

    let mut rlimits = Vec::with_capacity(RLIM_NLIMITS as usize);
    for r in 0..RLIM_NLIMITS {
        let l = process::get_rlimit(pid, r)?;
        rlimits.push(pb::RlimitEntry {
            cur: l.cur,
            max: l.max,
        });
    }
    let comm = crate::procfs::text(pid, "comm")?;
    let personality =
        u32::from_str_radix(&crate::procfs::text(pid, "personality")?, 16).map_err(|_| {
            DumpError::Proc {
                path: format!("/proc/{pid}/personality"),
                what: "not hex".into(),
            }
        })?;
    let loginuid = crate::procfs::text(pid, "loginuid")
        .ok()
        .and_then(|s| s.parse::<u32>().ok());
    let oom_score_adj = crate::procfs::text(pid, "oom_score_adj")
        .ok()
        .and_then(|s| s.parse::<i32>().ok());
    let (task_state, stop_signo) = match t.stop_kind() {
        StopKind::Running => (1, None),
        StopKind::GroupStopped(sig) => (3, Some(sig as u32)),
    };
    let tc = pb::TaskCoreEntry {
        task_state,
        exit_code: 0,
        personality,
        flags: stat.flags,
        blk_sigset: t.sigmask(),
        comm,
        timers: Some(timers),
        rlimits: Some(pb::TaskRlimitsEntry { rlimits }),
        signals_s: Some(signal_queue(pid, true)?),
        old_seccomp_mode: None,
        loginuid,
        oom_score_adj,
        sigactions,
        child_subreaper: Some(subreaper),
        stop_signo,
        ..Default::default()
    };
    Ok((
        tc,
        RemoteMm {
            brk,
            dumpable,
            thp_disabled,
        },
    ))
}

/// The core entry of one thread; the leader's carries the process-wide `tc`.
pub fn core_entry(th: ThreadState, tc: Option<pb::TaskCoreEntry>) -> pb::CoreEntry {
    pb::CoreEntry {
        mtype: pb::core_entry::March::X8664 as i32,
        thread_info: Some(th.thread_info),
        tc,
        thread_core: Some(th.thread_core),
        ..Default::default()
    }
}

/// The process's POSIX timers: what `/proc/PID/timers` says of each (id, signal, value,
/// notification, clock), and its remaining time and overrun read by remote calls.
fn posix_timers(
    t: &mut Tracee,
    mem: &ProcMem,
    scratch: &Scratch,
) -> Result<Vec<pb::PosixTimerEntry>> {
    let pid = t.pid();
    let text = crate::procfs::text(pid, "timers")?;
    let bad = |line: &str| DumpError::Proc {
        path: format!("/proc/{pid}/timers"),
        what: format!("cannot parse {line:?}"),
    };
    let mut out = Vec::new();
    let mut cur: Option<pb::PosixTimerEntry> = None;
    for line in text.lines() {
        let (key, val) = line.split_once(':').ok_or_else(|| bad(line))?;
        let val = val.trim();
        match key {
            "ID" => {
                out.extend(cur.take());
                cur = Some(pb::PosixTimerEntry {
                    it_id: val.parse().map_err(|_| bad(line))?,
                    ..Default::default()
                });
            }
            "signal" => {
                let e = cur.as_mut().ok_or_else(|| bad(line))?;
                let (signo, ptr) = val.split_once('/').ok_or_else(|| bad(line))?;
                e.si_signo = signo.parse().map_err(|_| bad(line))?;
                e.sival_ptr = u64::from_str_radix(ptr, 16).map_err(|_| bad(line))?;
            }
            "notify" => {
                // "signal/pid.N", "none/pid.N", "thread/tid.N" ...
                let e = cur.as_mut().ok_or_else(|| bad(line))?;
                let (how, target) = val.split_once('/').ok_or_else(|| bad(line))?;
                let base = match how {
                    "signal" => libc::SIGEV_SIGNAL,
                    "none" => libc::SIGEV_NONE,
                    "thread" => libc::SIGEV_THREAD,
                    _ => return Err(bad(line)),
                } as u32;
                let (kind, id) = target.split_once('.').ok_or_else(|| bad(line))?;
                if kind == "tid" {
                    e.it_sigev_notify = base | libc::SIGEV_THREAD_ID as u32;
                    e.notify_thread_id = Some(id.parse().map_err(|_| bad(line))?);
                } else {
                    e.it_sigev_notify = base;
                }
            }
            "ClockID" => {
                cur.as_mut().ok_or_else(|| bad(line))?.clock_id =
                    val.parse().map_err(|_| bad(line))?
            }
            _ => {}
        }
    }
    out.extend(cur);
    for e in &mut out {
        t.syscall_ok(
            "timer_gettime",
            libc::SYS_timer_gettime,
            [u64::from(e.it_id), scratch.addr, 0, 0, 0, 0],
        )?;
        let mut b = [0u8; 32];
        mem.read(scratch.addr, &mut b)?;
        let w: Vec<u64> = words(&b).collect();
        (e.isec, e.insec, e.vsec, e.vnsec) = (w[0], w[1], w[2], w[3]);
        e.overrun = t.syscall_ok(
            "timer_getoverrun",
            libc::SYS_timer_getoverrun,
            [u64::from(e.it_id), 0, 0, 0, 0, 0],
        )? as u32;
    }
    Ok(out)
}
