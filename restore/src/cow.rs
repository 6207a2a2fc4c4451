//! Private memory a parent and its child still shared copy-on-write when dumped.
//!
//! A fork shares every private page until one side writes it; a restore that gave each
//! task fresh memory would bring such pages back once per process. As CRIU does, a
//! restoring task therefore maps its own copy of each private anonymous VMA a child of
//! its has too — the same range — before it forks, and fills it with its pages; the
//! child inherits the copy and brings it to its own contents, writing only the pages
//! that differ (and dropping those it did not have), so every page both still had in
//! common stays one page. The copies sit at addresses free in every dumped layout; at
//! the rebuild stasis moves each onto its VMA with `mremap`, which keeps the sharing.
//!
//! Pages are still stored once per process in the images, as CRIU stores them.

use crate::plan::{TaskPlan, TreePlan};
use stasis_sys::mem::Region;
use std::fs::File;
use std::os::unix::fs::FileExt;

const PAGE: u64 = 4096;
/// How much is compared or copied at once.
const CHUNK: usize = 256 << 10;
/// Where the search for free addresses starts.
const SEARCH_FROM: u64 = 0x4000_0000;

/// A copy of the VMA `[start, end)` made for a child to inherit.
#[derive(Debug, Clone, Copy)]
pub struct Premap {
    pub start: u64,
    pub end: u64,
    pub region: Region,
}

/// In the restoring task `index`, before it forks: keeps each inherited copy that is one
/// of its own VMAs (brought to its own pages), drops the others, and makes copies of
/// the VMAs its children share. Returns the copies it now holds.
pub fn prepare(
    tree: &TreePlan,
    index: usize,
    plan: &TaskPlan,
    pages: &File,
    inherited: &[Premap],
) -> Result<Vec<Premap>, String> {
    let runs = runs(plan);
    let mut held = Vec::new();
    for p in inherited {
        let mine = plan
            .mm
            .vmas
            .iter()
            .any(|v| crate::plan::inheritable(v) && v.start == p.start && v.end == p.end);
        if mine {
            become_own(p, &runs, pages, &plan.pages_name)?;
            held.push(*p);
        } else {
            p.region
                .unmap()
                .map_err(|e| format!("dropping the copy of {:#x}: {e}", p.start))?;
        }
    }
    let wanted = tree.shared_with_children(index);
    if wanted.iter().all(|w| held.iter().any(|p| p.start == w.0)) {
        return Ok(held);
    }
    let mut busy: Vec<(u64, u64)> = crate::layout::mappings(std::process::id() as i32)
        .map_err(|e| e.to_string())?
        .into_iter()
        .map(|m| (m.0, m.1))
        .collect();
    busy.extend(
        tree.alive()
            .flat_map(|t| t.mm.vmas.iter().map(|v| (v.start, v.end))),
    );
    for (start, end) in wanted {
        if held.iter().any(|p| p.start == start) {
            continue;
        }
        // A page of gap on both sides: the kernel must not merge it with a neighbour.
        let len = end - start;
        let at = crate::layout::free_range(&busy, SEARCH_FROM, len + 2 * PAGE)
            .ok_or_else(|| format!("no free range for a copy of {start:#x}"))?
            + PAGE;
        busy.push((at - PAGE, at + len + PAGE));
        let region = Region::map_at(at, len).map_err(|e| format!("a copy of {start:#x}: {e}"))?;
        let p = Premap { start, end, region };
        fill(&p, &runs, pages, &plan.pages_name)?;
        held.push(p);
    }
    Ok(held)
}

/// The task's saved pages as runs: (address, length, offset in its pages image).
fn runs(plan: &TaskPlan) -> Vec<(u64, u64, u64)> {
    let mut off = 0;
    plan.pagemap
        .iter()
        .map(|e| {
            let len = e.nr_pages.unwrap_or(u64::from(e.compat_nr_pages)) * PAGE;
            let run = (e.vaddr, len, off);
            off += len;
            run
        })
        .collect()
}

/// The part of each run inside `p`: (offset in the copy, length, offset in the image).
fn inside(p: &Premap, runs: &[(u64, u64, u64)]) -> Vec<(u64, u64, u64)> {
    runs.iter()
        .filter_map(|&(a, len, off)| {
            let (s, e) = (a.max(p.start), (a + len).min(p.end));
            (s < e).then_some((s - p.start, e - s, off + (s - a)))
        })
        .collect()
}

fn read_image(pages: &File, name: &str, buf: &mut [u8], off: u64) -> Result<(), String> {
    pages
        .read_exact_at(buf, off)
        .map_err(|e| format!("{name} at offset {off:#x}: {e}"))
}

/// A fresh copy: the task's pages written in, the rest left untouched (zero).
fn fill(p: &Premap, runs: &[(u64, u64, u64)], pages: &File, name: &str) -> Result<(), String> {
    let mut buf = vec![0u8; CHUNK];
    for (at, len, off) in inside(p, runs) {
        let mut done = 0;
        while done < len {
            let n = ((len - done) as usize).min(CHUNK);
            read_image(pages, name, &mut buf[..n], off + done)?;
            p.region
                .write(at + done, &buf[..n])
                .map_err(|e| e.to_string())?;
            done += n as u64;
        }
    }
    Ok(())
}

/// An inherited copy made the task's own: pages that differ from its saved ones are
/// written, pages it did not have are dropped; the rest stay shared with the parent.
fn become_own(
    p: &Premap,
    runs: &[(u64, u64, u64)],
    pages: &File,
    name: &str,
) -> Result<(), String> {
    let mut want = vec![0u8; CHUNK];
    let mut have = vec![0u8; CHUNK];
    let mut cursor = 0;
    let len_all = p.end - p.start;
    let discard = |from: u64, to: u64| -> Result<(), String> {
        if from < to {
            p.region
                .discard(from, to - from)
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    };
    for (at, len, off) in inside(p, runs) {
        discard(cursor, at)?;
        let mut done = 0;
        while done < len {
            let n = ((len - done) as usize).min(CHUNK);
            read_image(pages, name, &mut want[..n], off + done)?;
            p.region
                .read(at + done, &mut have[..n])
                .map_err(|e| e.to_string())?;
            // Consecutive differing pages go in one write.
            let mut page = 0;
            while page < n {
                let differs = |i: usize| want[i..i + PAGE as usize] != have[i..i + PAGE as usize];
                if !differs(page) {
                    page += PAGE as usize;
                    continue;
                }
                let first = page;
                while page < n && differs(page) {
                    page += PAGE as usize;
                }
                p.region
                    .write(at + done + first as u64, &want[first..page])
                    .map_err(|e| e.to_string())?;
            }
            done += n as u64;
        }
        cursor = at + len;
    }
    discard(cursor, len_all)
}
