//! `pagemap-<pid>.img`: a `pagemap_head` entry naming the `pages-<id>.img`
//! file, then one `pagemap_entry` per run of pages.
//!
//! CRIU >= 4.2 writes the page count in field 5 (`nr_pages`, u64) and leaves
//! the required field 2 (`compat_nr_pages`, u32) at 0, which older readers
//! (crit 3.x, CRIU <= 4.1) take as "no pages". stasis writes both. On read,
//! entries are normalised the way CRIU's `init_compat_pagemap_entry` does.

use crate::{magic, names, pb, ImageDir, ImageError, ImageKind, Result};

/// The pages are in the parent image set (incremental dump).
pub const PE_PARENT: u32 = 1;
/// The pages are served lazily by the page server.
pub const PE_LAZY: u32 = 2;
/// The pages are in this set's `pages-<id>.img`.
pub const PE_PRESENT: u32 = 4;

const _: () = assert!(magic::PAGEMAP == 0x5608_4025);

/// A pagemap entry with both page-count fields filled in.
pub fn pagemap_entry(vaddr: u64, nr_pages: u64, flags: u32) -> pb::PagemapEntry {
    pb::PagemapEntry {
        vaddr,
        compat_nr_pages: compat_count(nr_pages),
        in_parent: None,
        flags: Some(flags),
        nr_pages: Some(nr_pages),
    }
}

/// Field 2 can only hold counts below 2^32; like CRIU 4.2, bigger runs leave it 0.
fn compat_count(nr_pages: u64) -> u32 {
    u32::try_from(nr_pages).unwrap_or(0)
}

/// The page count of an entry: field 5 if present, else field 2.
pub fn nr_pages(e: &pb::PagemapEntry) -> u64 {
    e.nr_pages.unwrap_or(e.compat_nr_pages.into())
}

/// Apply CRIU's reading rules: `in_parent` becomes [`PE_PARENT`]; absent
/// flags mean [`PE_PRESENT`]; an absent `nr_pages` comes from
/// `compat_nr_pages`.
pub fn normalise(e: &mut pb::PagemapEntry) {
    if e.in_parent == Some(true) {
        e.flags = Some(e.flags.unwrap_or(0) | PE_PARENT);
    } else if e.flags.is_none() {
        e.flags = Some(PE_PRESENT);
    }
    if e.nr_pages.is_none() {
        e.nr_pages = Some(e.compat_nr_pages.into());
    }
}

/// Fill in whichever count field the caller left out.
fn for_writing(e: &pb::PagemapEntry) -> pb::PagemapEntry {
    let mut out = *e;
    let n = match e.nr_pages {
        Some(n) => n,
        None => e.compat_nr_pages.into(),
    };
    out.nr_pages = Some(n);
    if out.compat_nr_pages == 0 {
        out.compat_nr_pages = compat_count(n);
    }
    out
}

impl ImageDir {
    /// Write `pagemap-<pid>.img`. Each entry is written with both
    /// `compat_nr_pages` and `nr_pages` set, whichever the caller filled.
    pub fn write_pagemap(
        &self,
        pid: u32,
        head: &pb::PagemapHead,
        entries: &[pb::PagemapEntry],
    ) -> Result<()> {
        let mut w = self.writer(ImageKind::PAGEMAP, &names::pagemap(pid))?;
        w.entry(head)?;
        for e in entries {
            w.entry(&for_writing(e))?;
        }
        w.commit()
    }

    /// Read `pagemap-<pid>.img`, entries normalised (see [`normalise`]).
    pub fn read_pagemap(&self, pid: u32) -> Result<(pb::PagemapHead, Vec<pb::PagemapEntry>)> {
        let name = names::pagemap(pid);
        let mut r = self.reader(ImageKind::PAGEMAP, &name)?;
        let Some(head) = r.next::<pb::PagemapHead>()? else {
            return Err(ImageError::EntryCount {
                path: self.file_path(&name),
                expected: "a pagemap_head entry",
                found: 0,
            });
        };
        let mut entries = Vec::new();
        while let Some(mut e) = r.next::<pb::PagemapEntry>()? {
            normalise(&mut e);
            entries.push(e);
        }
        Ok((head, entries))
    }
}
