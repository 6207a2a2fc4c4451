//! Seccomp filters: each thread's chain of classic-BPF filters, read with
//! `PTRACE_SECCOMP_GET_FILTER`, written once each to `seccomp.img` (CRIU's
//! `seccomp_entry`: every filter with the index of the one installed before it), and
//! referenced from the thread's core (`seccomp_mode`, `seccomp_filter`: its newest).
//! Threads and processes that inherited the same chain share its entries.

use crate::Result;
use stasis_images::pb;

/// The filters of the dump, oldest of each chain first.
#[derive(Debug, Default)]
pub struct Table {
    filters: Vec<pb::SeccompFilter>,
}

impl Table {
    /// Reads the seccomp state of thread `tid` (mode from `/proc`, filters through
    /// ptrace, the thread being held) into `core`.
    pub fn collect(&mut self, pid: i32, tid: i32, core: &mut pb::ThreadCoreEntry) -> Result<()> {
        let status = crate::procfs::text(pid, &format!("task/{tid}/status"))?;
        let mode: u32 = status
            .lines()
            .find_map(|l| l.strip_prefix("Seccomp:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        if mode == 0 {
            return Ok(());
        }
        core.seccomp_mode = Some(mode as i32);
        if mode != 2 {
            return Ok(());
        }
        // The kernel counts from the oldest (index 0), as the image chains them.
        let mut chain = Vec::new();
        let mut index = 0u64;
        while let Some(bytes) = stasis_sys::ptrace::seccomp_filter(tid, index)? {
            let flags = stasis_sys::ptrace::seccomp_filter_flags(tid, index)?;
            chain.push((bytes, flags as u32));
            index += 1;
        }
        let mut prev = None;
        for (filter, flags) in chain {
            let entry = pb::SeccompFilter {
                filter,
                prev,
                flags: (flags != 0).then_some(flags),
            };
            let at = match self.filters.iter().position(|f| *f == entry) {
                Some(at) => at,
                None => {
                    self.filters.push(entry);
                    self.filters.len() - 1
                }
            };
            prev = Some(at as u32);
        }
        core.seccomp_filter = prev;
        Ok(())
    }

    /// `seccomp.img`'s entry (empty without filters, as CRIU always writes it).
    pub fn entry(&self) -> pb::SeccompEntry {
        pb::SeccompEntry {
            seccomp_filters: self.filters.clone(),
        }
    }
}
