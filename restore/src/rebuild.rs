//! The final metamorphosis, done from outside by remote calls: the one thing a task
//! cannot do to itself is replace its own address space.
//!
//! A trampoline page with a `syscall` instruction is mapped at an address free in both
//! layouts; through it stasis's own mappings are unmapped, the kernel's vDSO and vvar are
//! moved onto the dumped addresses, every VMA is mapped and filled from the pages image
//! (`pread64` inside the task: one copy), protections and madvise bits are set, the mm
//! fields go in with `PR_SET_MM_MAP`, then per-thread state (TID address, robust list,
//! sigaltstack, rseq, itimers, pending signals, prctls, credentials). Last, the trampoline
//! is unmapped and, at that call's stop, the dumped registers and XSAVE state are set.

use crate::layout::{self, Specials};
use crate::plan::TaskPlan;
use crate::{vma, RestoreError, Result};
use stasis_checkpoint::x86;
use stasis_images::pb;
use stasis_parasite::{ProcMem, Tracee};
use stasis_sys::ptrace;

const PAGE: u64 = 4096;
/// The trampoline: one code page, then scratch pages for arguments and results.
const TRAMPOLINE_LEN: u64 = 16 * PAGE;
const PR_SET_MM: u64 = 35;
const PR_SET_MM_MAP: u64 = 14;
const RSEQ_FLAG_UNREGISTER: u64 = 1;
const MREMAP_MAYMOVE: u64 = 1;
const MREMAP_FIXED: u64 = 2;
/// Largest single `pread64` the kernel performs.
const MAX_IO: u64 = 0x7fff_f000;

struct Ctx<'a> {
    t: &'a mut Tracee,
    mem: &'a ProcMem,
    scratch: u64,
}

impl Ctx<'_> {
    fn call(&mut self, name: &'static str, nr: i64, args: [u64; 6]) -> Result<u64> {
        Ok(self.t.syscall_ok(name, nr, args)?)
    }

    /// Writes bytes into the scratch area at `off` and returns their address.
    fn put(&self, off: u64, bytes: &[u8]) -> Result<u64> {
        debug_assert!(off + bytes.len() as u64 <= TRAMPOLINE_LEN - PAGE);
        self.mem.write(self.scratch + off, bytes)?;
        Ok(self.scratch + off)
    }

    fn open(&mut self, path: &str, flags: u32) -> Result<u64> {
        let mut bytes = path.as_bytes().to_vec();
        bytes.push(0);
        if bytes.len() as u64 > 8 * PAGE {
            return Err(RestoreError::Unsupported(format!("path too long: {path}")));
        }
        let p = self.put(4 * PAGE, &bytes)?;
        self.t
            .syscall_ok(
                "open",
                libc::SYS_open,
                [p, u64::from(flags) | libc::O_CLOEXEC as u64, 0, 0, 0, 0],
            )
            .map_err(|e| RestoreError::Rebuild(format!("opening {path} in the task: {e}")))
    }
}

fn words(ws: &[u64]) -> Vec<u8> {
    ws.iter().flat_map(|w| w.to_le_bytes()).collect()
}

/// Rebuilds the seized child into the dumped task. `pages_fd` is the child's descriptor
/// of the pages image; `extra_fds` are other descriptors of stasis's to close. Returns
/// the other threads, created and held with their final state, to be released together
/// with the leader.
pub fn rebuild(
    t: &mut Tracee,
    plan: &TaskPlan,
    pages_fd: i32,
    pages: &std::fs::File,
    shmem: &SharedObjects,
    extra_fds: &[i32],
    premaps: &[(u64, u64)],
) -> Result<Vec<Tracee>> {
    let pid = t.pid();
    // The task's copies of memory shared with its parent or children: (VMA, copy).
    let copies: Vec<(&pb::VmaEntry, u64)> = premaps
        .iter()
        .map(|&(start, at)| {
            plan.mm
                .vmas
                .iter()
                .find(|v| v.start == start && crate::plan::inheritable(v))
                .map(|v| (v, at))
                .ok_or_else(|| {
                    RestoreError::Rebuild(format!(
                        "a copy of {start:#x}, which is no VMA of the task"
                    ))
                })
        })
        .collect::<Result<_>>()?;
    let mem = ProcMem::open(pid)?;
    t.find_syscall_ip(&mem)?;

    // stasis's own rseq area is about to disappear: unregister it first.
    let rseq = ptrace::get_rseq_configuration(pid)?;
    if rseq.rseq_abi_pointer != 0 {
        t.syscall_ok(
            "rseq unregister",
            libc::SYS_rseq,
            [
                rseq.rseq_abi_pointer,
                u64::from(rseq.rseq_abi_size),
                RSEQ_FLAG_UNREGISTER,
                u64::from(rseq.signature),
                0,
                0,
            ],
        )?;
    }

    // The trampoline, free in the current and in the dumped layout.
    let current = layout::mappings(pid)?;
    let mut busy: Vec<(u64, u64)> = current.iter().map(|m| (m.0, m.1)).collect();
    busy.extend(plan.mm.vmas.iter().map(|v| (v.start, v.end)));
    let tramp = layout::free_range(&busy, 0x1000_0000, TRAMPOLINE_LEN)
        .ok_or_else(|| RestoreError::Rebuild("no free address range for the trampoline".into()))?;
    let got = t.syscall_ok(
        "mmap trampoline",
        libc::SYS_mmap,
        [
            tramp,
            TRAMPOLINE_LEN,
            (libc::PROT_READ | libc::PROT_WRITE | libc::PROT_EXEC) as u64,
            (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED_NOREPLACE) as u64,
            u64::MAX,
            0,
        ],
    )?;
    if got != tramp {
        return Err(RestoreError::Rebuild(format!(
            "trampoline landed at {got:#x}, not {tramp:#x}"
        )));
    }
    // `syscall; jmp .`: a remote call stops right after the syscall (single-step); a thread
    // created by a remote clone3 spins on the jump until it is seized.
    mem.write(tramp, &[0x0f, 0x05, 0xeb, 0xfe])?;
    t.set_syscall_ip(tramp);
    let mut c = Ctx {
        t,
        mem: &mem,
        scratch: tramp + PAGE,
    };

    // Unmap everything of stasis's but the trampoline and the kernel's special mappings.
    for (s, e, name) in layout::mappings(pid)? {
        let copy = copies
            .iter()
            .any(|(v, at)| *at <= s && e <= at + (v.end - v.start));
        let keep = s == tramp
            || copy
            || matches!(
                name.as_str(),
                "[vdso]" | "[vvar]" | "[vvar_vclock]" | "[vsyscall]"
            );
        if !keep {
            c.call("munmap", libc::SYS_munmap, [s, e - s, 0, 0, 0, 0])?;
        }
    }
    move_specials(&mut c, plan, &busy, tramp)?;
    let t0 = std::time::Instant::now();
    map_vmas(&mut c, plan, pages_fd, pages, shmem, &copies)?;
    log::debug!(
        "pid {}: {} vmas mapped and filled in {:?}",
        plan.pid,
        plan.mm.vmas.len(),
        t0.elapsed()
    );

    set_mm(&mut c, plan)?;
    set_thread_state(&mut c, plan.pid, &plan.thread_info, &plan.thread_core)?;
    set_process_state(&mut c, plan)?;
    let threads = create_threads(&mut c, plan, tramp)?;
    // After the threads: a timer may signal one of them.
    set_posix_timers(&mut c, plan)?;
    log::debug!(
        "pid {}: {} more threads created at {:?}",
        plan.pid,
        threads.len(),
        t0.elapsed()
    );

    set_seccomp(&mut c, plan, &plan.thread_core)?;
    set_creds(&mut c, &plan.thread_core)?;
    for fd in std::iter::once(pages_fd).chain(extra_fds.iter().copied()) {
        c.call("close", libc::SYS_close, [fd as u64, 0, 0, 0, 0, 0])?;
    }
    // Last call through the trampoline: unmap it. The task stops at that call's exit and
    // never executes from it again.
    c.call(
        "munmap trampoline",
        libc::SYS_munmap,
        [tramp, TRAMPOLINE_LEN, 0, 0, 0, 0],
    )?;
    set_registers(c.t, &plan.thread_info, plan.tc.blk_sigset)?;
    Ok(threads)
}

/// Creates every other thread with its dumped TID by a remote `clone3` in the leader,
/// seizes it while it spins in the trampoline, and gives it its own state.
fn create_threads(c: &mut Ctx, plan: &TaskPlan, tramp: u64) -> Result<Vec<Tracee>> {
    let flags = (libc::CLONE_VM
        | libc::CLONE_FS
        | libc::CLONE_FILES
        | libc::CLONE_SIGHAND
        | libc::CLONE_THREAD
        | libc::CLONE_SYSVSEM) as u64;
    let mut held = Vec::with_capacity(plan.threads.len());
    for th in &plan.threads {
        let set_tid = c.put(256, &(th.tid as u32).to_le_bytes())?;
        // struct clone_args: flags, pidfd, child_tid, parent_tid, exit_signal, stack,
        // stack_size, tls, set_tid, set_tid_size, cgroup.
        let args = words(&[flags, 0, 0, 0, 0, 0, 0, 0, set_tid, 1, 0]);
        let a = c.put(128, &args)?;
        let tid = c.call(
            "clone3 (thread)",
            libc::SYS_clone3,
            [a, args.len() as u64, 0, 0, 0, 0],
        )? as i32;
        if tid != th.tid {
            return Err(RestoreError::Rebuild(format!(
                "thread {} was created as {tid}",
                th.tid
            )));
        }
        // In a pid namespace of its own the thread has another TID on the host.
        let host_tid = crate::ns::host_tid(c.t.pid(), tid).ok_or_else(|| {
            RestoreError::Rebuild(format!("thread {tid} was created but is not in /proc"))
        })?;
        let mut t = Tracee::seize(host_tid)?;
        t.set_syscall_ip(tramp);
        let mut tc = Ctx {
            t: &mut t,
            mem: c.mem,
            scratch: c.scratch,
        };
        set_thread_state(&mut tc, plan.pid, &th.thread_info, &th.thread_core)?;
        set_seccomp(&mut tc, plan, &th.thread_core)?;
        set_creds(&mut tc, &th.thread_core)?;
        let mask = th.thread_core.blk_sigset.unwrap_or(plan.tc.blk_sigset);
        set_registers(&mut t, &th.thread_info, mask)?;
        held.push(t);
    }
    Ok(held)
}

/// Moves the kernel's [vvar], [vvar_vclock] and [vdso] onto the dumped addresses: first
/// aside to a free range (targets may overlap the current places), then into place.
fn move_specials(c: &mut Ctx, plan: &TaskPlan, busy: &[(u64, u64)], tramp: u64) -> Result<()> {
    let sp: Specials = layout::special_mappings(c.t.pid())?;
    let img_vdso = plan.mm.vmas.iter().find(|v| v.status & vma::VDSO != 0);
    let img_vvar = plan.mm.vmas.iter().find(|v| v.status & vma::VVAR != 0);
    let parts: Vec<(u64, u64)> = [sp.vvar, sp.vvar_vclock, sp.vdso]
        .into_iter()
        .flatten()
        .collect();
    let total: u64 = parts.iter().map(|(s, e)| e - s).sum();
    let mut busy = busy.to_vec();
    busy.push((tramp, tramp + TRAMPOLINE_LEN));
    let park = layout::free_range(&busy, 0x2000_0000, total)
        .ok_or_else(|| RestoreError::Rebuild("no free range to park the vDSO".into()))?;
    let mut parked = Vec::new();
    let mut at = park;
    for (s, e) in &parts {
        let len = e - s;
        c.call(
            "mremap (park)",
            libc::SYS_mremap,
            [*s, len, len, MREMAP_MAYMOVE | MREMAP_FIXED, at, 0],
        )?;
        parked.push((at, len));
        at += len;
    }
    // Parked pieces, in order: [vvar], [vvar_vclock], [vdso] (those the kernel has).
    let mut parked = parked.into_iter();
    let vvar_parts = [sp.vvar, sp.vvar_vclock].into_iter().flatten().count();
    let mut target = img_vvar.map(|v| v.start);
    for _ in 0..vvar_parts {
        let (from, len) = parked.next().expect("parked vvar part");
        match target {
            // [vvar] then [vvar_vclock] right after it: one dumped VVAR entry.
            Some(at) => {
                c.call(
                    "mremap vvar",
                    libc::SYS_mremap,
                    [from, len, len, MREMAP_MAYMOVE | MREMAP_FIXED, at, 0],
                )?;
                target = Some(at + len);
            }
            None => {
                c.call("munmap vvar", libc::SYS_munmap, [from, len, 0, 0, 0, 0])?;
            }
        }
    }
    match (img_vdso, parked.next()) {
        (Some(v), Some((from, len))) => {
            c.call(
                "mremap vdso",
                libc::SYS_mremap,
                [from, len, len, MREMAP_MAYMOVE | MREMAP_FIXED, v.start, 0],
            )?;
        }
        (None, Some((from, len))) => {
            c.call("munmap vdso", libc::SYS_munmap, [from, len, 0, 0, 0, 0])?;
        }
        (Some(_), None) => {
            return Err(RestoreError::Unsupported(
                "the image has a vDSO, this kernel maps none".into(),
            ))
        }
        (None, None) => {}
    }
    Ok(())
}

/// Maps every dumped VMA, fills its saved pages from the pages image, then sets its
/// final protection and madvise bits.
/// A run of pages to copy: (address in the task, length, offset in the pages image).
type PageJob = (u64, u64, u64);

/// Splits page jobs so that the first part holds `first` bytes.
fn split_jobs(jobs: Vec<PageJob>, first: u64) -> (Vec<PageJob>, Vec<PageJob>) {
    let mut a = Vec::new();
    let mut b = Vec::new();
    let mut taken = 0;
    for (vaddr, len, off) in jobs {
        if taken >= first {
            b.push((vaddr, len, off));
        } else if taken + len <= first {
            a.push((vaddr, len, off));
        } else {
            let head = first - taken;
            a.push((vaddr, head, off));
            b.push((vaddr + head, len - head, off + head));
        }
        taken += len;
    }
    (a, b)
}

/// Copies page jobs from the pages image into the task with `process_vm_writev`,
/// through a small buffer that stays in cache.
fn write_pages(pid: i32, pages: &std::fs::File, jobs: &[PageJob], name: &str) -> Result<()> {
    use std::os::unix::fs::FileExt;
    let mut buf = vec![0u8; 256 << 10];
    for &(vaddr, len, off) in jobs {
        let mut done = 0;
        while done < len {
            let n = ((len - done) as usize).min(buf.len());
            pages
                .read_exact_at(&mut buf[..n], off + done)
                .map_err(|e| RestoreError::BadImage {
                    file: name.to_string(),
                    what: format!("reading the page at {:#x}: {e}", vaddr + done),
                })?;
            let mut w = 0;
            while w < n {
                let got = stasis_sys::mem::write_remote(pid, vaddr + done + w as u64, &buf[w..n])?;
                if got == 0 {
                    return Err(RestoreError::Rebuild(format!(
                        "cannot write the page at {:#x}",
                        vaddr + done
                    )));
                }
                w += got;
            }
            done += n as u64;
        }
    }
    Ok(())
}

/// Reads page jobs from the pages image inside the task (`pread64` through the
/// trampoline: one copy, straight into the task's memory).
fn read_pages(c: &mut Ctx, pages_fd: i32, jobs: &[PageJob], name: &str) -> Result<()> {
    for &(vaddr, len, off) in jobs {
        let mut done = 0;
        while done < len {
            let n = (len - done).min(MAX_IO);
            let got = c.call(
                "pread64 pages",
                libc::SYS_pread64,
                [pages_fd as u64, vaddr + done, n, off + done, 0, 0],
            )?;
            if got == 0 {
                return Err(RestoreError::BadImage {
                    file: name.to_string(),
                    what: format!("ends before the page at {:#x}", vaddr + done),
                });
            }
            done += got;
        }
    }
    Ok(())
}

/// Shared anonymous objects: shmid -> the descriptor number every task of the tree
/// inherited it at (a memfd stasis created and filled before the first fork).
pub type SharedObjects = std::collections::HashMap<u64, i32>;

/// Attaches the SysV segment of `v` (restored with the IPC namespace) at its address,
/// with the VMA's protection.
fn attach_sysv(c: &mut Ctx, v: &pb::VmaEntry) -> Result<()> {
    let rdonly = if v.prot & libc::PROT_WRITE as u32 == 0 {
        libc::SHM_RDONLY as u64
    } else {
        0
    };
    let exec = if v.prot & libc::PROT_EXEC as u32 != 0 {
        libc::SHM_EXEC as u64
    } else {
        0
    };
    if v.pgoff != 0 {
        return Err(RestoreError::Unsupported(format!(
            "SysV segment {} attached from offset {:#x} at {:#x}",
            v.shmid, v.pgoff, v.start
        )));
    }
    let got = c.call(
        "shmat",
        libc::SYS_shmat,
        [v.shmid, v.start, rdonly | exec, 0, 0, 0],
    )?;
    if got != v.start {
        return Err(RestoreError::Rebuild(format!(
            "SysV segment {} was attached at {got:#x}, not {:#x}",
            v.shmid, v.start
        )));
    }
    Ok(())
}

fn map_vmas(
    c: &mut Ctx,
    plan: &TaskPlan,
    pages_fd: i32,
    pages: &std::fs::File,
    shmem: &SharedObjects,
    copies: &[(&pb::VmaEntry, u64)],
) -> Result<()> {
    let copy_of = |v: &pb::VmaEntry| copies.iter().find(|(c, _)| c.start == v.start).map(|c| c.1);
    // Which VMAs get pages: they are mapped writable first.
    let mut has_pages = vec![false; plan.mm.vmas.len()];
    for e in &plan.pagemap {
        let end = e.vaddr + e.nr_pages.unwrap_or(u64::from(e.compat_nr_pages)) * PAGE;
        for (i, v) in plan.mm.vmas.iter().enumerate() {
            if v.start < end && e.vaddr < v.end {
                has_pages[i] = true;
            }
        }
    }
    let mut file_fds: std::collections::HashMap<(u32, u32), u64> = std::collections::HashMap::new();
    for (i, v) in plan.mm.vmas.iter().enumerate() {
        if v.status & (vma::VDSO | vma::VVAR | vma::VSYSCALL) != 0 {
            continue;
        }
        if v.status & vma::SYSVIPC != 0 {
            attach_sysv(c, v)?;
            continue;
        }
        // Memory shared copy-on-write: the copy, already holding the task's pages, moves
        // into place (read-write until the protections are set below).
        if let Some(at) = copy_of(v) {
            let len = v.end - v.start;
            c.call(
                "mremap (copy-on-write copy)",
                libc::SYS_mremap,
                [at, len, len, MREMAP_MAYMOVE | MREMAP_FIXED, v.start, 0],
            )?;
            has_pages[i] = true;
            continue;
        }
        let keep =
            (libc::MAP_SHARED | libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_GROWSDOWN)
                as u32;
        let flags = u64::from(v.flags & keep) | libc::MAP_FIXED_NOREPLACE as u64;
        let mut prot = u64::from(v.prot);
        if has_pages[i] {
            prot |= libc::PROT_WRITE as u64;
        }
        let (fd, pgoff) = if v.status & vma::FILE_MASK != 0 {
            let f = plan
                .files
                .get(&(v.shmid as u32))
                .ok_or_else(|| RestoreError::Rebuild(format!("no file for vma {:#x}", v.start)))?;
            let open_flags = v.fdflags.unwrap_or(libc::O_RDONLY as u32);
            let key = (v.shmid as u32, open_flags);
            let fd = match file_fds.get(&key) {
                Some(&fd) => fd,
                None => {
                    let fd = c.open(&f.name, open_flags)?;
                    file_fds.insert(key, fd);
                    fd
                }
            };
            (fd, v.pgoff)
        } else if v.status & vma::ANON_SHARED != 0 {
            let fd = shmem.get(&v.shmid).ok_or_else(|| {
                RestoreError::Rebuild(format!(
                    "no shared object {} for vma {:#x}",
                    v.shmid, v.start
                ))
            })?;
            (*fd as u64, v.pgoff)
        } else {
            (u64::MAX, 0)
        };
        // A shared anonymous object is mapped from its memfd: not anonymous any more.
        let flags = if v.status & vma::ANON_SHARED != 0 {
            flags & !(libc::MAP_ANONYMOUS as u64)
        } else {
            flags
        };
        let got = c.call(
            "mmap",
            libc::SYS_mmap,
            [v.start, v.end - v.start, prot, flags, fd, pgoff],
        )?;
        if got != v.start {
            return Err(RestoreError::Rebuild(format!(
                "vma {:#x} was mapped at {got:#x}",
                v.start
            )));
        }
    }
    for fd in file_fds.into_values() {
        c.call("close", libc::SYS_close, [fd, 0, 0, 0, 0, 0])?;
    }
    // Pages: the pages image is their concatenation in pagemap order. Two copies run at
    // once, one per core: the task reads the first half itself (`pread64`), a stasis
    // thread writes the second half into it (`process_vm_writev`). Filling fresh memory
    // is the cost of a restore; the page faults are paid on both cores.
    let vdso = plan
        .mm
        .vmas
        .iter()
        .find(|v| v.status & vma::VDSO != 0)
        .map(|v| (v.start, v.end));
    let mut jobs: Vec<PageJob> = Vec::new();
    let mut off = 0u64;
    for e in &plan.pagemap {
        let len = e.nr_pages.unwrap_or(u64::from(e.compat_nr_pages)) * PAGE;
        // The dumped vDSO pages only serve the preflight comparison: the kernel's own vDSO
        // was moved here.
        // Nor do the pages of a copy: it holds them already.
        let copied = copies
            .iter()
            .any(|(v, _)| v.start <= e.vaddr && e.vaddr < v.end);
        if !vdso.is_some_and(|(s, end)| s <= e.vaddr && e.vaddr < end) && !copied {
            jobs.push((e.vaddr, len, off));
        }
        off += len;
    }
    let total: u64 = jobs.iter().map(|j| j.1).sum();
    let (mine, theirs) = split_jobs(jobs, total / 2);
    let pid = c.t.pid();
    std::thread::scope(|scope| -> Result<()> {
        let helper = scope.spawn(|| write_pages(pid, pages, &theirs, &plan.pages_name));
        let own = read_pages(c, pages_fd, &mine, &plan.pages_name);
        let theirs = helper
            .join()
            .map_err(|_| RestoreError::Rebuild("the page-writing thread panicked".into()))?;
        own.and(theirs)
    })?;
    for (i, v) in plan.mm.vmas.iter().enumerate() {
        if v.status & (vma::VDSO | vma::VVAR | vma::VSYSCALL) != 0 {
            continue;
        }
        let rw = (libc::PROT_READ | libc::PROT_WRITE) as u32;
        if (has_pages[i] && v.prot & libc::PROT_WRITE as u32 == 0)
            || (copy_of(v).is_some() && v.prot != rw)
        {
            c.call(
                "mprotect",
                libc::SYS_mprotect,
                [v.start, v.end - v.start, u64::from(v.prot), 0, 0, 0],
            )?;
        }
        let madv = v.madv.unwrap_or(0);
        for advice in 0..64u64 {
            if madv & (1 << advice) != 0 {
                c.call(
                    "madvise",
                    libc::SYS_madvise,
                    [v.start, v.end - v.start, advice, 0, 0, 0],
                )?;
            }
        }
    }
    Ok(())
}

/// `PR_SET_MM_MAP`: code/data/brk/stack/args/env/auxv and the exe file in one call.
fn set_mm(c: &mut Ctx, plan: &TaskPlan) -> Result<()> {
    let mm = &plan.mm;
    let exe_fd = c.open(&plan.exe, libc::O_RDONLY as u32)?;
    let auxv = words(&mm.mm_saved_auxv);
    let auxv_addr = c.put(2 * PAGE, &auxv)?;
    let mut map = words(&[
        mm.mm_start_code,
        mm.mm_end_code,
        mm.mm_start_data,
        mm.mm_end_data,
        mm.mm_start_brk,
        mm.mm_brk,
        mm.mm_start_stack,
        mm.mm_arg_start,
        mm.mm_arg_end,
        mm.mm_env_start,
        mm.mm_env_end,
        auxv_addr,
    ]);
    map.extend_from_slice(&(auxv.len() as u32).to_le_bytes());
    map.extend_from_slice(&(exe_fd as u32).to_le_bytes());
    let map_addr = c.put(0, &map)?;
    c.call(
        "prctl(PR_SET_MM_MAP)",
        libc::SYS_prctl,
        [PR_SET_MM, PR_SET_MM_MAP, map_addr, map.len() as u64, 0, 0],
    )?;
    c.call("close", libc::SYS_close, [exe_fd, 0, 0, 0, 0, 0])?;
    if let Some(d) = mm.dumpable.filter(|d| matches!(d, 0 | 1)) {
        c.call(
            "prctl(PR_SET_DUMPABLE)",
            libc::SYS_prctl,
            [libc::PR_SET_DUMPABLE as u64, d as u64, 0, 0, 0, 0],
        )?;
    }
    if mm.thp_disabled == Some(true) {
        c.call(
            "prctl(PR_SET_THP_DISABLE)",
            libc::SYS_prctl,
            [libc::PR_SET_THP_DISABLE as u64, 1, 0, 0, 0, 0],
        )?;
    }
    Ok(())
}

/// One thread's state that needs the final address space: TID address, robust list,
/// sigaltstack, rseq, TLS slots, parent-death signal, its private pending signals (queued
/// by the thread itself: only a task may queue a siginfo with a kernel si_code to itself).
fn set_thread_state(
    c: &mut Ctx,
    tgid: i32,
    ti: &pb::ThreadInfoX86,
    th: &pb::ThreadCoreEntry,
) -> Result<()> {
    let tid = c.t.pid();
    c.call(
        "set_tid_address",
        libc::SYS_set_tid_address,
        [ti.clear_tid_addr, 0, 0, 0, 0, 0],
    )?;
    c.call(
        "set_robust_list",
        libc::SYS_set_robust_list,
        [th.futex_rla, u64::from(th.futex_rla_len), 0, 0, 0, 0],
    )?;
    if let Some(sas) = &th.sas {
        let mode = sas.ss_flags & !(libc::SS_ONSTACK as u32);
        let ss = words(&[sas.ss_sp, u64::from(mode), sas.ss_size]);
        let a = c.put(0, &ss)?;
        c.call("sigaltstack", libc::SYS_sigaltstack, [a, 0, 0, 0, 0, 0])?;
    }
    if let Some(r) = th.rseq_entry.filter(|r| r.rseq_abi_pointer != 0) {
        c.call(
            "rseq",
            libc::SYS_rseq,
            [
                r.rseq_abi_pointer,
                u64::from(r.rseq_abi_size),
                0,
                u64::from(r.signature),
                0,
                0,
            ],
        )?;
    }
    for d in ti.tls.iter().filter(|d| d.base_addr != 0 || d.limit != 0) {
        let flags = u32::from(d.seg_32bit)
            | u32::from(d.contents_l) << 1
            | u32::from(d.contents_h) << 2
            | u32::from(d.read_exec_only) << 3
            | u32::from(d.limit_in_pages) << 4
            | u32::from(d.seg_not_present) << 5
            | u32::from(d.usable) << 6;
        let desc = ptrace::UserDesc {
            entry_number: d.entry_number,
            base_addr: d.base_addr,
            limit: d.limit,
            flags,
        };
        ptrace::set_thread_area(tid, d.entry_number, &desc)?;
    }
    if let Some(sig) = th.pdeath_sig.filter(|&s| s != 0) {
        c.call(
            "prctl(PR_SET_PDEATHSIG)",
            libc::SYS_prctl,
            [libc::PR_SET_PDEATHSIG as u64, u64::from(sig), 0, 0, 0, 0],
        )?;
    }
    if let Some(name) = th.comm.as_deref().filter(|n| !n.is_empty()) {
        let mut b = name.as_bytes()[..name.len().min(15)].to_vec();
        b.push(0);
        let a = c.put(0, &b)?;
        c.call(
            "prctl(PR_SET_NAME)",
            libc::SYS_prctl,
            [libc::PR_SET_NAME as u64, a, 0, 0, 0, 0],
        )?;
    }
    for si in th
        .signals_p
        .as_ref()
        .map(|q| q.signals.as_slice())
        .unwrap_or_default()
    {
        let (signo, a) = put_siginfo(c, si)?;
        c.call(
            "rt_tgsigqueueinfo",
            libc::SYS_rt_tgsigqueueinfo,
            [tgid as u64, tid as u64, signo, a, 0, 0],
        )?;
    }
    Ok(())
}

fn put_siginfo(c: &mut Ctx, si: &pb::SiginfoEntry) -> Result<(u64, u64)> {
    if si.siginfo.len() != 128 {
        return Err(RestoreError::BadImage {
            file: "core".into(),
            what: format!("a siginfo of {} bytes (not 128)", si.siginfo.len()),
        });
    }
    let signo = u64::from(u32::from_le_bytes(
        si.siginfo[0..4].try_into().expect("4 bytes"),
    ));
    Ok((signo, c.put(0, &si.siginfo)?))
}

/// Process-wide state, through the leader: itimers, child-subreaper, shared pending signals.
fn set_process_state(c: &mut Ctx, plan: &TaskPlan) -> Result<()> {
    let pid = c.t.pid() as u64;
    if let Some(timers) = &plan.tc.timers {
        for (which, it) in [
            (libc::ITIMER_REAL, &timers.real),
            (libc::ITIMER_VIRTUAL, &timers.virt),
            (libc::ITIMER_PROF, &timers.prof),
        ] {
            // A periodic timer that expired while the task was frozen reads as value 0
            // with its signal pending: the kernel would re-arm it (one interval on) when
            // that signal is taken, which the restored task cannot make it do. Arm it so.
            let (vsec, vusec) = match (it.vsec, it.vusec) {
                (0, 0) if it.isec != 0 || it.iusec != 0 => (it.isec, it.iusec),
                (0, 0) => continue,
                v => v,
            };
            let a = c.put(0, &words(&[it.isec, it.iusec, vsec, vusec]))?;
            c.call(
                "setitimer",
                libc::SYS_setitimer,
                [which as u64, a, 0, 0, 0, 0],
            )?;
        }
    }
    // Set either way: the root of a tree with helpers was made a reaper to adopt their
    // tasks, and goes back to what it was.
    if let Some(on) = plan.tc.child_subreaper {
        c.call(
            "prctl(PR_SET_CHILD_SUBREAPER)",
            libc::SYS_prctl,
            [
                libc::PR_SET_CHILD_SUBREAPER as u64,
                u64::from(on),
                0,
                0,
                0,
                0,
            ],
        )?;
    }
    for si in plan
        .tc
        .signals_s
        .as_ref()
        .map(|q| q.signals.as_slice())
        .unwrap_or_default()
    {
        let (signo, a) = put_siginfo(c, si)?;
        c.call(
            "rt_sigqueueinfo",
            libc::SYS_rt_sigqueueinfo,
            [pid, signo, a, 0, 0, 0],
        )?;
    }
    Ok(())
}

/// Credentials last: everything before needed stasis's privileges. Raw system calls
/// change only the calling thread's credentials, so each thread sets its own.
const SECCOMP_SET_MODE_STRICT: u64 = 0;
const SECCOMP_SET_MODE_FILTER: u64 = 1;
/// The filter flags a per-thread install keeps: LOG and SPEC_ALLOW. TSYNC would reach
/// threads whose own chains are installed separately; a NEW_LISTENER's descriptor is
/// not part of the image.
const KEPT_FLAGS: u32 = 2 | 4;

/// Sets the thread's no_new_privs bit and installs its seccomp filters, oldest first, by remote `seccomp(2)` calls in
/// the thread (filters are per thread). It runs while the thread still has stasis's
/// credentials (installing needs CAP_SYS_ADMIN or no_new_privs) and the filters do not
/// apply to it until it is released (the seize suspends them).
fn set_seccomp(c: &mut Ctx, plan: &TaskPlan, th: &pb::ThreadCoreEntry) -> Result<()> {
    // no_new_privs is per thread too, and can only be set.
    if th.creds.as_ref().and_then(|c| c.no_new_privs) == Some(1) {
        c.call(
            "prctl(PR_SET_NO_NEW_PRIVS)",
            libc::SYS_prctl,
            [libc::PR_SET_NO_NEW_PRIVS as u64, 1, 0, 0, 0, 0],
        )?;
    }
    match th.seccomp_mode.unwrap_or(0) {
        0 => Ok(()),
        1 => c
            .call(
                "seccomp (strict)",
                libc::SYS_seccomp,
                [SECCOMP_SET_MODE_STRICT, 0, 0, 0, 0, 0],
            )
            .map(drop),
        2 => {
            let mut chain = Vec::new();
            let mut at = th.seccomp_filter;
            while let Some(i) = at {
                let f = plan
                    .seccomp
                    .get(i as usize)
                    .ok_or_else(|| RestoreError::BadImage {
                        file: stasis_images::names::SECCOMP.into(),
                        what: format!("thread filter {i} is not in the image"),
                    })?;
                chain.push(f);
                at = f.prev;
            }
            for f in chain.into_iter().rev() {
                // struct sock_fprog: u16 len, padding, then the instructions' address.
                let insns = c.put(0x4000, &f.filter)?;
                let mut prog = Vec::with_capacity(16);
                prog.extend_from_slice(&((f.filter.len() / 8) as u16).to_le_bytes());
                prog.extend_from_slice(&[0u8; 6]);
                prog.extend_from_slice(&insns.to_le_bytes());
                let p = c.put(0x3f00, &prog)?;
                c.call(
                    "seccomp (filter)",
                    libc::SYS_seccomp,
                    [
                        SECCOMP_SET_MODE_FILTER,
                        u64::from(f.flags.unwrap_or(0) & KEPT_FLAGS),
                        p,
                        0,
                        0,
                        0,
                    ],
                )?;
            }
            Ok(())
        }
        m => Err(RestoreError::BadImage {
            file: stasis_images::names::SECCOMP.into(),
            what: format!("seccomp mode {m}"),
        }),
    }
}

fn set_creds(c: &mut Ctx, th: &pb::ThreadCoreEntry) -> Result<()> {
    let Some(cr) = &th.creds else {
        return Ok(());
    };
    let own = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |k: &str| {
        own.lines()
            .find(|l| l.starts_with(k))
            .map(|l| {
                l[k.len()..]
                    .split_whitespace()
                    .map(str::to_string)
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default()
    };
    let ids = |v: Vec<String>| {
        v.iter()
            .filter_map(|s| s.parse::<u32>().ok())
            .collect::<Vec<u32>>()
    };
    // Ids read from stasis's own status compare only within stasis's user namespace.
    let userns = |pid: &str| std::fs::read_link(format!("/proc/{pid}/ns/user")).ok();
    let same = userns("self") == userns(&c.t.pid().to_string())
        && ids(field("Uid:")) == [cr.uid, cr.euid, cr.suid, cr.fsuid]
        && ids(field("Gid:")) == [cr.gid, cr.egid, cr.sgid, cr.fsgid]
        && ids(field("Groups:")) == cr.groups;
    if same {
        return Ok(());
    }
    let groups: Vec<u8> = cr.groups.iter().flat_map(|g| g.to_le_bytes()).collect();
    let a = c.put(0, &groups)?;
    c.call(
        "prctl(PR_SET_KEEPCAPS)",
        libc::SYS_prctl,
        [libc::PR_SET_KEEPCAPS as u64, 1, 0, 0, 0, 0],
    )?;
    c.call(
        "setgroups",
        libc::SYS_setgroups,
        [cr.groups.len() as u64, a, 0, 0, 0, 0],
    )?;
    c.call(
        "setresgid",
        libc::SYS_setresgid,
        [
            u64::from(cr.gid),
            u64::from(cr.egid),
            u64::from(cr.sgid),
            0,
            0,
            0,
        ],
    )?;
    c.call(
        "setresuid",
        libc::SYS_setresuid,
        [
            u64::from(cr.uid),
            u64::from(cr.euid),
            u64::from(cr.suid),
            0,
            0,
            0,
        ],
    )?;
    c.call(
        "setfsgid",
        libc::SYS_setfsgid,
        [u64::from(cr.fsgid), 0, 0, 0, 0, 0],
    )?;
    c.call(
        "setfsuid",
        libc::SYS_setfsuid,
        [u64::from(cr.fsuid), 0, 0, 0, 0, 0],
    )?;
    // capset v3: header {version, pid}, then two data words {effective, permitted, inheritable}.
    let w = |v: &[u32], i: usize| v.get(i).copied().unwrap_or(0);
    let mut capdata: Vec<u8> = Vec::new();
    for i in 0..2 {
        for x in [w(&cr.cap_eff, i), w(&cr.cap_prm, i), w(&cr.cap_inh, i)] {
            capdata.extend_from_slice(&x.to_le_bytes());
        }
    }
    let hdr = c.put(
        0,
        &[0x2008_0522u32.to_le_bytes(), 0u32.to_le_bytes()].concat(),
    )?;
    let data = c.put(64, &capdata)?;
    c.call("capset", libc::SYS_capset, [hdr, data, 0, 0, 0, 0])?;
    c.call(
        "prctl(PR_SET_KEEPCAPS)",
        libc::SYS_prctl,
        [libc::PR_SET_KEEPCAPS as u64, 0, 0, 0, 0, 0],
    )?;
    c.call(
        "prctl(PR_SET_SECUREBITS)",
        libc::SYS_prctl,
        [
            libc::PR_SET_SECUREBITS as u64,
            u64::from(cr.secbits),
            0,
            0,
            0,
            0,
        ],
    )?;
    Ok(())
}

/// ERESTART* codes a task stopped inside a system call may hold in `rax`.
const ERESTARTSYS: i64 = -512;
const ERESTARTNOINTR: i64 = -513;
const ERESTARTNOHAND: i64 = -514;
const ERESTART_RESTARTBLOCK: i64 = -516;

/// Sets the dumped registers, XSAVE state and signal mask as the ones put back at
/// release. A system call the thread was inside of is restarted as the kernel would have;
/// one with a lost restart block returns EINTR (as in CRIU).
fn set_registers(t: &mut Tracee, ti: &pb::ThreadInfoX86, sigmask: u64) -> Result<()> {
    let tid = t.pid();
    let mut regs = x86::regs_from_image(&ti.gpregs, *t.regs());
    if (regs.orig_rax as i64) >= 0 {
        match regs.rax as i64 {
            ERESTARTSYS | ERESTARTNOINTR | ERESTARTNOHAND => {
                regs.rax = regs.orig_rax;
                regs.rip -= 2;
            }
            ERESTART_RESTARTBLOCK => regs.rax = (-libc::EINTR) as u64,
            _ => {}
        }
    }
    regs.orig_rax = u64::MAX;
    let mut buf = vec![0u8; 1 << 16];
    let n = ptrace::get_regset(tid, ptrace::NT_X86_XSTATE, &mut buf)?;
    buf.truncate(n);
    x86::xsave_from_image(&ti.fpregs, &mut buf).map_err(|e| RestoreError::Cpu(e.to_string()))?;
    ptrace::set_regset(tid, ptrace::NT_X86_XSTATE, &buf)?;
    t.set_saved_regs(regs);
    t.set_saved_sigmask(sigmask);
    Ok(())
}

/// `prctl` that makes `timer_create` take the id it is given (Linux 6.15+).
const PR_TIMER_CREATE_RESTORE_IDS: u64 = 77;

/// Recreates the process's POSIX timers with their ids, notification and remaining time.
fn set_posix_timers(c: &mut Ctx, plan: &TaskPlan) -> Result<()> {
    let timers = plan
        .tc
        .timers
        .as_ref()
        .map(|t| t.posix.as_slice())
        .unwrap_or_default();
    if timers.is_empty() {
        return Ok(());
    }
    c.call(
        "prctl(PR_TIMER_CREATE_RESTORE_IDS)",
        libc::SYS_prctl,
        [PR_TIMER_CREATE_RESTORE_IDS, 1, 0, 0, 0, 0],
    )
    .map_err(|e| {
        RestoreError::Unsupported(format!(
            "restoring POSIX timers with their ids needs Linux 6.15 or later: {e}"
        ))
    })?;
    for t in timers {
        // struct sigevent: value, signo, notify, then the target thread id.
        let mut ev = vec![0u8; 64];
        ev[0..8].copy_from_slice(&t.sival_ptr.to_le_bytes());
        ev[8..12].copy_from_slice(&t.si_signo.to_le_bytes());
        ev[12..16].copy_from_slice(&t.it_sigev_notify.to_le_bytes());
        ev[16..20].copy_from_slice(&t.notify_thread_id.unwrap_or(0).to_le_bytes());
        let ev_at = c.put(0, &ev)?;
        let id_at = c.put(128, &t.it_id.to_le_bytes())?;
        c.call(
            "timer_create",
            libc::SYS_timer_create,
            [u64::from(t.clock_id), ev_at, id_at, 0, 0, 0],
        )?;
        let mut got = [0u8; 4];
        c.mem.read(id_at, &mut got)?;
        if u32::from_le_bytes(got) != t.it_id {
            return Err(RestoreError::Rebuild(format!(
                "POSIX timer {} was created as {}",
                t.it_id,
                u32::from_le_bytes(got)
            )));
        }
        if t.vsec != 0 || t.vnsec != 0 {
            let spec = c.put(256, &words(&[t.isec, t.insec, t.vsec, t.vnsec]))?;
            c.call(
                "timer_settime",
                libc::SYS_timer_settime,
                [u64::from(t.it_id), 0, spec, 0, 0, 0],
            )?;
        }
    }
    c.call(
        "prctl(PR_TIMER_CREATE_RESTORE_IDS)",
        libc::SYS_prctl,
        [PR_TIMER_CREATE_RESTORE_IDS, 0, 0, 0, 0, 0],
    )?;
    Ok(())
}
