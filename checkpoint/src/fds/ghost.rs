//! Deleted-but-open regular files ("ghosts"): the descriptor is dumped as a regular
//! file with its original path, a `remap-fpath.img` entry points it at a ghost, and the
//! ghost's contents go to `ghost-file-<id>.img` — raw after the entry for small files,
//! as (offset, length) chunks of data for larger ones, so holes stay holes. Files whose
//! allocated size exceeds `--ghost-limit` are refused, as with CRIU.

use super::OpenFd;
use crate::files::FileTable;
use crate::Result;
use stasis_images::pb;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;

/// From this size on a ghost is stored in chunks (CRIU's threshold).
const CHUNKS_FROM: u64 = 3 * 4096;

/// The contents of a ghost file, as stored after its entry.
pub enum Body {
    /// The whole file, up to its size.
    Raw(Vec<u8>),
    /// The data ranges as (offset, bytes); the rest is holes.
    Chunks(Vec<(u64, Vec<u8>)>),
}

/// One ghost image to write.
pub struct Ghost {
    pub id: u32,
    pub entry: pb::GhostFileEntry,
    pub body: Body,
}

/// Dumps the deleted file behind `f` as regular file `id` remapped to a ghost.
pub fn dump(table: &mut FileTable, f: &OpenFd<'_>, id: u32) -> Result<pb::FdTypes> {
    let path = f
        .link
        .strip_suffix(" (deleted)")
        .unwrap_or(&f.link)
        .to_string();
    let key = (f.meta.dev(), f.meta.ino());
    let ghost_id = match table.side.ghost_ids.get(&key) {
        Some(&g) => g,
        None => {
            let allocated = f.meta.blocks() * 512;
            let limit = table.ghost_limit();
            if allocated > limit {
                return Err(f.unsupported(format!(
                    "a deleted file holding {allocated} bytes, more than --ghost-limit ({limit} bytes)"
                )));
            }
            let g = table.side.ghosts.len() as u32 + 1;
            let ghost = read_ghost(f, g)?;
            table.side.ghosts.push(ghost);
            table.side.ghost_ids.insert(key, g);
            g
        }
    };
    table.push_reg(id, &path, f.flags, f.pos, f.mnt_id, Some(&f.meta));
    table.side.remaps.push(pb::RemapFilePathEntry {
        orig_id: id,
        remap_id: ghost_id,
        remap_type: Some(pb::RemapType::Ghost as i32),
    });
    log::debug!(
        "pid {} fd {}: deleted file {path} ({} bytes) as ghost {ghost_id}",
        f.pid,
        f.fd,
        f.meta.len()
    );
    Ok(pb::FdTypes::Reg)
}

fn read_ghost(f: &OpenFd<'_>, id: u32) -> Result<Ghost> {
    let m = &f.meta;
    let size = m.len();
    let chunked = size >= CHUNKS_FROM;
    let entry = pb::GhostFileEntry {
        uid: m.uid(),
        gid: m.gid(),
        mode: m.mode(),
        dev: Some(m.dev() as u32),
        ino: Some(m.ino()),
        atim: Some(pb::Timeval {
            tv_sec: m.atime() as u64,
            tv_usec: (m.atime_nsec() / 1000) as u64,
        }),
        mtim: Some(pb::Timeval {
            tv_sec: m.mtime() as u64,
            tv_usec: (m.mtime_nsec() / 1000) as u64,
        }),
        chunks: chunked.then_some(true),
        size: chunked.then_some(size),
        ..Default::default()
    };
    // Reopened read-only through /proc: the task's own descriptor may be write-only.
    let path = format!("/proc/{}/fd/{}", f.pid, f.fd);
    let mut file = std::fs::File::open(&path)
        .map_err(|e| f.unsupported(format!("cannot open the deleted file to copy it: {e}")))?;
    let io = |e: std::io::Error| f.unsupported(format!("copying the deleted file: {e}"));
    let body = if chunked {
        let mut chunks = Vec::new();
        let mut at = 0u64;
        while at < size {
            let Some(start) = seek_data(&file, at).map_err(io)? else {
                break;
            };
            let end = seek_hole(&file, start).map_err(io)?.min(size);
            let mut data = vec![0u8; (end - start) as usize];
            file.seek(SeekFrom::Start(start)).map_err(io)?;
            file.read_exact(&mut data).map_err(io)?;
            chunks.push((start, data));
            at = end;
        }
        Body::Chunks(chunks)
    } else {
        let mut data = Vec::with_capacity(size as usize);
        file.by_ref()
            .take(size)
            .read_to_end(&mut data)
            .map_err(io)?;
        if data.len() as u64 != size {
            return Err(f.unsupported(format!(
                "read {} of the deleted file's {size} bytes",
                data.len()
            )));
        }
        Body::Raw(data)
    };
    Ok(Ghost { id, entry, body })
}

/// `lseek(SEEK_DATA)`: the next data offset at or after `at`, `None` past the last.
fn seek_data(file: &std::fs::File, at: u64) -> std::io::Result<Option<u64>> {
    match stasis_sys::fdops::seek_data_hole(file, at, true) {
        Ok(pos) => Ok(Some(pos)),
        Err(e) if e.errno() == Some(libc::ENXIO) => Ok(None),
        Err(e) => Err(e.source),
    }
}

/// `lseek(SEEK_HOLE)`: the next hole at or after `at` (the end counts as one).
fn seek_hole(file: &std::fs::File, at: u64) -> std::io::Result<u64> {
    stasis_sys::fdops::seek_data_hole(file, at, false).map_err(|e| e.source)
}
