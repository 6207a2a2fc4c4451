//! The address space: VMAs (`mm-<pid>.img`), which pages to save (`pagemap-<pid>.img`),
//! and their contents (`pages-<id>.img`).
//!
//! Only pages that hold data are saved: present or swapped pages of private mappings,
//! except pages of private file mappings that are still the file's own page-cache pages
//! (the file restores them). Shared file mappings keep their data in the file. `[vvar]`
//! and `[vvar_vclock]` are kernel data and are never saved; `[vdso]` is, so restore can
//! check that the running kernel's vDSO is the same.

use crate::files::FileTable;
use crate::procfs::Mapping;
use crate::{DumpError, Result};
use stasis_images::{pb, PE_PRESENT};
use std::fs::File;
use std::io::Write;
use std::os::fd::AsFd;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::mpsc;

pub const PAGE: u64 = 4096;

/// VMA status bits of the image ABI.
pub mod status {
    pub const REGULAR: u32 = 1 << 0;
    pub const STACK: u32 = 1 << 1;
    pub const VSYSCALL: u32 = 1 << 2;
    pub const VDSO: u32 = 1 << 3;
    pub const HEAP: u32 = 1 << 5;
    pub const FILE_PRIVATE: u32 = 1 << 6;
    pub const FILE_SHARED: u32 = 1 << 7;
    pub const ANON_SHARED: u32 = 1 << 8;
    pub const ANON_PRIVATE: u32 = 1 << 9;
    /// A SysV shared memory attachment (`shmat`); `shmid` is the segment's id.
    pub const SYSVIPC: u32 = 1 << 10;
    pub const VVAR: u32 = 1 << 12;
}

/// madvise advice numbers recorded in `vma_entry.madv` (bit n = advice n applied).
pub mod madv {
    pub const DONTFORK: u32 = 10;
    pub const HUGEPAGE: u32 = 14;
    pub const NOHUGEPAGE: u32 = 15;
    pub const DONTDUMP: u32 = 16;
    pub const WIPEONFORK: u32 = 18;
}

const PM_PRESENT: u64 = 1 << 63;
const PM_SWAP: u64 = 1 << 62;
const PM_FILE: u64 = 1 << 61;

fn prot_of(m: &Mapping) -> u32 {
    (if m.read { libc::PROT_READ } else { 0 }
        | if m.write { libc::PROT_WRITE } else { 0 }
        | if m.exec { libc::PROT_EXEC } else { 0 }) as u32
}

fn madv_of(m: &Mapping) -> u64 {
    let mut bits = 0u64;
    for (flag, advice) in [
        ("dc", madv::DONTFORK),
        ("hg", madv::HUGEPAGE),
        ("nh", madv::NOHUGEPAGE),
        ("dd", madv::DONTDUMP),
        ("wf", madv::WIPEONFORK),
    ] {
        if m.has_flag(flag) {
            bits |= 1 << advice;
        }
    }
    bits
}

/// Turns the task's mappings into image VMAs, registering mapped files in `files`.
pub fn collect_vmas(
    pid: i32,
    maps: &[Mapping],
    files: &mut FileTable,
) -> Result<Vec<pb::VmaEntry>> {
    let mut out: Vec<pb::VmaEntry> = Vec::with_capacity(maps.len());
    for m in maps {
        let prot = prot_of(m);
        let mut flags = if m.shared {
            libc::MAP_SHARED
        } else {
            libc::MAP_PRIVATE
        } as u32;
        if m.has_flag("gd") {
            flags |= libc::MAP_GROWSDOWN as u32;
        }
        let mut vma = pb::VmaEntry {
            start: m.start,
            end: m.end,
            pgoff: m.offset,
            shmid: 0,
            prot,
            flags,
            status: status::REGULAR,
            fd: -1,
            madv: Some(madv_of(m)).filter(|&b| b != 0),
            fdflags: None,
        };
        let unsupported = |what: &str| DumpError::Unsupported {
            pid,
            what: format!("mapping {:#x}-{:#x} {}: {what}", m.start, m.end, m.name),
        };
        match m.name.as_str() {
            "[vsyscall]" => {
                vma.status = status::VSYSCALL | status::ANON_PRIVATE;
                vma.flags |= libc::MAP_ANONYMOUS as u32;
            }
            "[vdso]" => {
                vma.status |= status::VDSO | status::ANON_PRIVATE;
                vma.flags |= libc::MAP_ANONYMOUS as u32;
            }
            "[vvar]" | "[vvar_vclock]" => {
                // One VVAR entry covers [vvar] and the [vvar_vclock] right after it.
                if let Some(prev) = out.last_mut().filter(|p| p.status & status::VVAR != 0) {
                    if prev.end != m.start {
                        return Err(unsupported("vvar pages not adjacent"));
                    }
                    prev.end = m.end;
                    continue;
                }
                vma.status |= status::VVAR | status::ANON_PRIVATE;
                vma.flags |= libc::MAP_ANONYMOUS as u32;
            }
            "[heap]" => {
                vma.status |= status::HEAP | status::ANON_PRIVATE;
                vma.flags |= libc::MAP_ANONYMOUS as u32;
                vma.pgoff = 0;
            }
            "[stack]" => {
                vma.status |= status::STACK | status::ANON_PRIVATE;
                vma.flags |= libc::MAP_ANONYMOUS as u32;
                vma.pgoff = 0;
            }
            "" if m.inode == 0 => {
                if m.shared {
                    return Err(unsupported("shared anonymous memory is not supported yet"));
                }
                vma.status |= status::ANON_PRIVATE;
                vma.flags |= libc::MAP_ANONYMOUS as u32;
                vma.pgoff = 0;
            }
            name if name.starts_with('[') => {
                return Err(unsupported("special mapping not supported"))
            }
            // Shared anonymous memory (a shmem object the kernel names /dev/zero), or
            // the memfd stasis restores it as (named "dev/zero"): one object, dumped once
            // by inode, whatever processes map it. Other memfd mappings are refused below.
            name if m.shared
                && (name.starts_with("/dev/zero") || name.starts_with("/memfd:dev/zero")) =>
            {
                vma.status |= status::ANON_SHARED;
                vma.flags |= libc::MAP_ANONYMOUS as u32;
                vma.shmid = m.inode;
            }

            // A SysV segment attached with shmat: the kernel names it after its key and
            // gives its inode the segment's id. Its bytes are dumped with the IPC
            // namespace (ipcns-shm), not with the process.
            name if m.shared && name.starts_with("/SYSV") => {
                vma.status |= status::SYSVIPC;
                vma.shmid = m.inode;
            }
            name if name.ends_with(" (deleted)") => {
                return Err(unsupported("mapped file was deleted; not supported yet"))
            }
            name if name.starts_with("/memfd:")
                || name.starts_with("/SYSV")
                || name.starts_with("/dev/zero") =>
            {
                return Err(unsupported("shared memory object not supported yet"))
            }
            name => {
                let path =
                    PathBuf::from(format!("/proc/{pid}/map_files/{:x}-{:x}", m.start, m.end));
                let meta =
                    std::fs::metadata(&path).map_err(|source| DumpError::Io { path, source })?;
                let open_flags = if m.shared && m.write {
                    libc::O_RDWR
                } else {
                    libc::O_RDONLY
                } as u32;
                vma.shmid = u64::from(files.reg(name, open_flags, 0, -1, Some(&meta)));
                vma.fdflags = Some(open_flags);
                vma.status |= if m.shared {
                    status::FILE_SHARED
                } else {
                    status::FILE_PRIVATE
                };
            }
        }
        out.push(vma);
    }
    Ok(out)
}

/// What one VMA's pages need.
fn page_policy(vma: &pb::VmaEntry) -> Option<fn(u64) -> bool> {
    // Shared objects keep their pages in the object's own images (or in the file).
    if vma.status
        & (status::VVAR
            | status::VSYSCALL
            | status::FILE_SHARED
            | status::ANON_SHARED
            | status::SYSVIPC)
        != 0
    {
        return None;
    }

    if vma.status & status::VDSO != 0 {
        return Some(|pme| pme & PM_PRESENT != 0);
    }
    if vma.status & status::FILE_PRIVATE != 0 {
        return Some(|pme| (pme & PM_PRESENT != 0 && pme & PM_FILE == 0) || pme & PM_SWAP != 0);
    }
    Some(|pme| pme & (PM_PRESENT | PM_SWAP) != 0)
}

/// Counters for `stats-dump`.
#[derive(Clone, Copy, Debug, Default)]
pub struct PageStats {
    pub pages_scanned: u64,
    pub pages_written: u64,
}

/// Decides which pages to save from `/proc/PID/pagemap`, as runs of pages.
/// `empty` holds the start addresses of mappings smaps shows without any page: their
/// pagemap is not read at all (a JVM reserves gigabytes it never touches).
pub fn plan_pages(
    pid: i32,
    vmas: &[pb::VmaEntry],
    empty: &std::collections::HashSet<u64>,
) -> Result<(Vec<pb::PagemapEntry>, PageStats)> {
    let path = PathBuf::from(format!("/proc/{pid}/pagemap"));
    let pagemap = File::open(&path).map_err(|source| DumpError::Io {
        path: path.clone(),
        source,
    })?;
    let mut entries: Vec<pb::PagemapEntry> = Vec::new();
    let mut stats = PageStats::default();
    let mut buf = vec![0u8; 8 * 65536];
    for vma in vmas {
        let Some(wanted) = page_policy(vma) else {
            continue;
        };
        if empty.contains(&vma.start) {
            // smaps counts no resident or swapped page here (a large reservation, say).
            stats.pages_scanned += (vma.end - vma.start) / PAGE;
            continue;
        }

        // Runs never cross a VMA boundary, as in CRIU.
        let first_of_vma = entries.len();
        let mut addr = vma.start;
        while addr < vma.end {
            let n = ((vma.end - addr) / PAGE).min(65536) as usize;
            let bytes = &mut buf[..n * 8];
            pagemap
                .read_exact_at(bytes, addr / PAGE * 8)
                .map_err(|source| DumpError::Io {
                    path: path.clone(),
                    source,
                })?;
            for (i, c) in bytes.chunks_exact(8).enumerate() {
                let pme = u64::from_le_bytes(c.try_into().expect("8 bytes"));
                stats.pages_scanned += 1;
                if !wanted(pme) {
                    continue;
                }
                let va = addr + i as u64 * PAGE;
                let in_this_vma = entries.len() > first_of_vma;
                match entries.last_mut().filter(|_| in_this_vma) {
                    Some(last) if last.vaddr + last.nr_pages.unwrap_or(0) * PAGE == va => {
                        let n = last.nr_pages.unwrap_or(0) + 1;
                        last.nr_pages = Some(n);
                        last.compat_nr_pages = u32::try_from(n).unwrap_or(0);
                    }
                    _ => entries.push(pb::PagemapEntry {
                        vaddr: va,
                        compat_nr_pages: 1,
                        in_parent: None,
                        flags: Some(PE_PRESENT),
                        nr_pages: Some(1),
                    }),
                }
                stats.pages_written += 1;
            }
            addr += n as u64 * PAGE;
        }
    }
    Ok((entries, stats))
}

const CHUNK: usize = 256 << 10;

/// Copies the planned pages out of the task into `out`, in pagemap order. Reading the
/// task and writing the file overlap: a second thread writes while the next chunk is read.
pub fn write_pages(
    pid: i32,
    entries: &[pb::PagemapEntry],
    out: File,
    out_path: &std::path::Path,
    interrupted: &dyn Fn() -> bool,
) -> Result<()> {
    let mem_path = PathBuf::from(format!("/proc/{pid}/mem"));
    let mem = File::open(&mem_path).map_err(|source| DumpError::Io {
        path: mem_path.clone(),
        source,
    })?;
    let total: u64 = entries
        .iter()
        .map(|e| e.nr_pages.unwrap_or(u64::from(e.compat_nr_pages)) * PAGE)
        .sum();
    // A few pages (most processes of a tree): one buffer, no writer thread.
    if total <= CHUNK as u64 {
        let mut buf = vec![0u8; total as usize];
        let mut fill = 0usize;
        for e in entries {
            let len = (e.nr_pages.unwrap_or(u64::from(e.compat_nr_pages)) * PAGE) as usize;
            read_task_memory(pid, &mem, &mem_path, e.vaddr, &mut buf[fill..fill + len])?;
            fill += len;
        }
        let mut out = out;
        return out.write_all(&buf).map_err(|source| DumpError::Io {
            path: out_path.to_path_buf(),
            source,
        });
    }
    // The size is known: reserve the blocks at once. A filesystem without fallocate
    // just gets the writes.
    if let Err(e) = stasis_sys::fdops::preallocate(out.as_fd(), total) {
        log::debug!("{}: not preallocated: {e}", out_path.display());
    }
    let (full_tx, full_rx) = mpsc::sync_channel::<(Vec<u8>, usize)>(2);
    let (empty_tx, empty_rx) = mpsc::channel::<Vec<u8>>();
    for _ in 0..4 {
        let _ = empty_tx.send(vec![0u8; CHUNK]);
    }
    let out_path_owned = out_path.to_path_buf();
    let writer = std::thread::spawn(move || -> std::io::Result<()> {
        let mut out = out;
        for (buf, len) in full_rx {
            out.write_all(&buf[..len])?;
            if empty_tx.send(buf).is_err() {
                break;
            }
        }
        out.flush()
    });
    let result = (|| -> Result<()> {
        let mut buf = empty_rx
            .recv()
            .map_err(|_| DumpError::Internal("page writer stopped".into()))?;
        let mut fill = 0usize;
        for e in entries {
            let mut addr = e.vaddr;
            let mut left = (e.nr_pages.unwrap_or(u64::from(e.compat_nr_pages)) * PAGE) as usize;
            while left > 0 {
                let n = left.min(CHUNK - fill);
                read_task_memory(pid, &mem, &mem_path, addr, &mut buf[fill..fill + n])?;
                fill += n;
                addr += n as u64;
                left -= n;
                if fill == CHUNK {
                    if interrupted() {
                        return Err(DumpError::Interrupted);
                    }
                    full_tx
                        .send((buf, fill))
                        .map_err(|_| DumpError::Internal("page writer stopped".into()))?;
                    buf = empty_rx
                        .recv()
                        .map_err(|_| DumpError::Internal("page writer stopped".into()))?;
                    fill = 0;
                }
            }
        }
        if fill > 0 {
            full_tx
                .send((buf, fill))
                .map_err(|_| DumpError::Internal("page writer stopped".into()))?;
        }
        Ok(())
    })();
    drop(full_tx);
    let written = writer
        .join()
        .map_err(|_| DumpError::Internal("page writer panicked".into()))?;
    result?;
    written.map_err(|source| DumpError::Io {
        path: out_path_owned,
        source,
    })
}

fn read_task_memory(
    pid: i32,
    mem: &File,
    mem_path: &std::path::Path,
    addr: u64,
    buf: &mut [u8],
) -> Result<()> {
    let mut done = stasis_sys::mem::read_remote(pid, addr, buf).unwrap_or(0);
    if done < buf.len() {
        // Pages without PROT_READ (or that process_vm_readv cannot reach): /proc/PID/mem
        // reads them with the ptracer's FOLL_FORCE.
        mem.read_exact_at(&mut buf[done..], addr + done as u64)
            .map_err(|source| DumpError::Io {
                path: mem_path.to_path_buf(),
                source,
            })?;
        done = buf.len();
    }
    debug_assert_eq!(done, buf.len());
    Ok(())
}

/// The contents of every shared anonymous object the task maps that is not dumped yet
/// (`done` holds the inodes already dumped, by this process or an earlier one), read
/// through `/proc/PID/map_files` without the holes.
pub fn shared_contents(
    pid: i32,
    vmas: &[pb::VmaEntry],
    done: &mut std::collections::HashSet<u64>,
) -> Result<Vec<crate::fds::memfd::Contents>> {
    use std::io::{Read, Seek, SeekFrom};
    let mut out = Vec::new();
    for v in vmas.iter().filter(|v| v.status & status::ANON_SHARED != 0) {
        if !done.insert(v.shmid) {
            continue;
        }
        let path = PathBuf::from(format!("/proc/{pid}/map_files/{:x}-{:x}", v.start, v.end));
        let io = |source: std::io::Error| DumpError::Io {
            path: path.clone(),
            source,
        };
        let mut file = File::open(&path).map_err(io)?;
        let size = file.metadata().map_err(io)?.len();
        let mut chunks = Vec::new();
        let mut at = 0u64;
        while at < size {
            let start = match stasis_sys::fdops::seek_data_hole(&file, at, true) {
                Ok(p) => p / PAGE * PAGE,
                Err(e) if e.errno() == Some(libc::ENXIO) => break,
                Err(e) => return Err(e.into()),
            };
            let end = stasis_sys::fdops::seek_data_hole(&file, start, false)?
                .min(size)
                .div_ceil(PAGE)
                * PAGE;
            let mut data = vec![0u8; (end - start) as usize];
            file.seek(SeekFrom::Start(start)).map_err(io)?;
            let want = (size.min(end) - start) as usize;
            file.read_exact(&mut data[..want]).map_err(io)?;
            chunks.push((start, data));
            at = end;
        }
        out.push(crate::fds::memfd::Contents {
            shmid: v.shmid as u32,
            chunks,
        });
    }
    Ok(out)
}

/// Key of a JVM perf-data file's saved contents among the shared-object images:
/// `pagemap-shmem-<PERF_DATA_KEY | file id>.img` (real shmem ids are inode numbers).
pub const PERF_DATA_KEY: u32 = 1 << 31;

/// Whether a mapped file is a HotSpot perf-data file (`/tmp/hsperfdata_<user>/<pid>`): any
/// JVM that starts later deletes the file of a dead pid, so its contents are kept.
pub fn is_perf_data(path: &str) -> bool {
    path.starts_with("/tmp/hsperfdata_")
}

/// The contents of the task's shared-mapped JVM perf-data files, keyed by
/// [`PERF_DATA_KEY`] and their file id, once each.
pub fn perf_data_contents(
    pid: i32,
    maps: &[Mapping],
    vmas: &[pb::VmaEntry],
    done: &mut std::collections::HashSet<u64>,
) -> Result<Vec<crate::fds::memfd::Contents>> {
    let mut out = Vec::new();
    for m in maps.iter().filter(|m| m.shared && is_perf_data(&m.name)) {
        let Some(v) = vmas
            .iter()
            .find(|v| v.start == m.start && v.status & status::FILE_SHARED != 0)
        else {
            continue;
        };
        let key = PERF_DATA_KEY | v.shmid as u32;
        if !done.insert(u64::from(key)) {
            continue;
        }
        let path = PathBuf::from(format!("/proc/{pid}/map_files/{:x}-{:x}", v.start, v.end));
        let data = std::fs::read(&path).map_err(|source| DumpError::Io { path, source })?;
        let len = (data.len() as u64).div_ceil(PAGE) * PAGE;
        let mut page_aligned = data;
        page_aligned.resize(len as usize, 0);
        out.push(crate::fds::memfd::Contents {
            shmid: key,
            chunks: vec![(0, page_aligned)],
        });
    }
    Ok(out)
}
