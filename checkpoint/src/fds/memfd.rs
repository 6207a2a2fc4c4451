//! memfd files: a `memfd_file_entry` per open file description (flags, offset) pointing
//! at a `memfd_inode_entry` in `memfd.img` (name, owner, mode, size, seals), written
//! once per inode. The contents go where CRIU puts shared memory: a
//! `pagemap-shmem-<shmid>.img` (shmid = the inode number) whose entries give file
//! offsets of the pages with data, and a `pages-<id>.img` of its own. Holes are not
//! stored.
//!
//! Mappings of a memfd are the memory dump's business (and refused there for now);
//! hugetlbfs memfds are refused here.

use super::OpenFd;
use crate::files::FileTable;
use crate::{DumpError, Result};
use stasis_images::{names, pagemap, pb, ImageDir, ImageKind};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;

const PAGE: u64 = 4096;

/// The contents of one memfd inode: its shmid and the page-aligned data ranges as
/// (file offset, bytes).
pub struct Contents {
    pub shmid: u32,
    pub chunks: Vec<(u64, Vec<u8>)>,
}

/// Dumps the memfd behind `f` as file `id`.
pub fn dump(table: &mut FileTable, f: &OpenFd<'_>, id: u32) -> Result<pb::FdTypes> {
    let key = (f.meta.dev(), f.meta.ino());
    let inode_id = match table.side.memfd_ids.get(&key) {
        Some(&i) => i,
        None => {
            let i = table.side.memfd_inodes.len() as u32 + 1;
            let (inode, contents) = read_inode(f, i)?;
            table.side.memfd_inodes.push(inode);
            table.side.memfd_contents.push(contents);
            table.side.memfd_ids.insert(key, i);
            i
        }
    };
    table.push(pb::FileEntry {
        r#type: pb::FdTypes::Memfd as i32,
        id,
        memfd: Some(pb::MemfdFileEntry {
            id,
            flags: f.flags,
            pos: f.pos,
            fown: f.fown()?,
            inode_id,
        }),
        ..Default::default()
    });
    Ok(pb::FdTypes::Memfd)
}

fn read_inode(f: &OpenFd<'_>, inode_id: u32) -> Result<(pb::MemfdInodeEntry, Contents)> {
    let m = &f.meta;
    if m.blksize() != PAGE {
        return Err(f.unsupported("a hugetlbfs memfd; not supported"));
    }
    let name = f
        .link
        .strip_prefix("/memfd:")
        .and_then(|n| n.strip_suffix(" (deleted)"))
        .unwrap_or(&f.link)
        .to_string();
    let seals = stasis_sys::fdops::seals(f.local()?)?;
    let size = m.len();
    let path = format!("/proc/{}/fd/{}", f.pid, f.fd);
    let mut file = std::fs::File::open(&path)
        .map_err(|e| f.unsupported(format!("cannot open the memfd to copy it: {e}")))?;
    let io = |e: std::io::Error| f.unsupported(format!("copying the memfd: {e}"));
    let mut chunks = Vec::new();
    let mut at = 0u64;
    while at < size {
        let start = match stasis_sys::fdops::seek_data_hole(&file, at, true) {
            Ok(p) => p / PAGE * PAGE,
            Err(e) if e.errno() == Some(libc::ENXIO) => break,
            Err(e) => return Err(e.into()),
        };
        let end = stasis_sys::fdops::seek_data_hole(&file, start, false)?.min(size);
        let end = end.div_ceil(PAGE) * PAGE;
        let mut data = vec![0u8; (end - start) as usize];
        file.seek(SeekFrom::Start(start)).map_err(io)?;
        let want = (size.min(end) - start) as usize;
        file.read_exact(&mut data[..want]).map_err(io)?;
        chunks.push((start, data));
        at = end;
    }
    let shmid = m.ino() as u32;
    let inode = pb::MemfdInodeEntry {
        name,
        uid: m.uid(),
        gid: m.gid(),
        size,
        shmid,
        seals,
        inode_id: u64::from(inode_id),
        hugetlb_flag: None,
        mode: Some(m.mode()),
    };
    Ok((inode, Contents { shmid, chunks }))
}

/// Writes each memfd's `pagemap-shmem-<shmid>.img` and `pages-<id>.img`, with page-file
/// ids after the highest the dump already used.
pub fn write_contents(dir: &ImageDir, contents: &[Contents]) -> Result<()> {
    let first = highest_pages_id(dir)? + 1;
    for (next_id, c) in (first..).zip(contents) {
        let pages_name = names::pages(next_id);
        let mut pages = dir.create_raw(&pages_name)?;
        let mut w = dir.writer(ImageKind::SHMEM_PAGEMAP, &names::pagemap_shmem(c.shmid))?;
        w.entry(&pb::PagemapHead { pages_id: next_id })?;
        for (off, data) in &c.chunks {
            w.entry(&pagemap::pagemap_entry(
                *off,
                data.len() as u64 / PAGE,
                stasis_images::PE_PRESENT,
            ))?;
            pages.write_all(data).map_err(|source| DumpError::Io {
                path: dir.file_path(&pages_name),
                source,
            })?;
        }
        w.commit()?;
    }
    Ok(())
}

fn highest_pages_id(dir: &ImageDir) -> Result<u32> {
    let list = std::fs::read_dir(dir.path()).map_err(|source| DumpError::Io {
        path: dir.path().to_path_buf(),
        source,
    })?;
    Ok(list
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            name.strip_prefix("pages-")?
                .strip_suffix(".img")?
                .parse()
                .ok()
        })
        .max()
        .unwrap_or(0))
}
