//! Deleted-but-open files ("ghosts"). At plan time the `remap-fpath.img` entries and
//! the `ghost-file-<id>.img` contents are read (bounded). In the child each ghost is
//! created again — at its original path when that is free, so the restored descriptor
//! reads `<path> (deleted)` exactly as before, else beside it under a hidden name — with
//! its contents, holes, owner, mode and times; the descriptors open it, and it is
//! unlinked again before the child reports ready (or fails).

use super::ChildResult;
use crate::{RestoreError, Result};
use stasis_images::{names, pb, ImageDir, ImageKind};
use std::collections::HashMap;
use std::io::Write;
use std::os::fd::AsFd;
use std::os::unix::fs::{FileExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

/// The largest ghost file stasis reads back from an image.
const MAX_GHOST: u64 = 256 << 20;

/// A ghost file's metadata and contents.
#[derive(Clone, Debug)]
pub struct GhostFile {
    pub entry: pb::GhostFileEntry,
    pub size: u64,
    /// Data ranges as (offset, bytes); the rest of `size` is holes.
    pub chunks: Vec<(u64, Vec<u8>)>,
}

/// The ghosts of an image: which regular-file ids they stand for, and their contents.
#[derive(Clone, Debug, Default)]
pub struct Ghosts {
    /// Regular-file id → ghost id.
    pub remaps: HashMap<u32, u32>,
    pub files: HashMap<u32, GhostFile>,
}

fn bad(file: &str, what: impl Into<String>) -> RestoreError {
    RestoreError::BadImage {
        file: file.to_string(),
        what: what.into(),
    }
}

/// Reads `remap-fpath.img` and every ghost it names; `is_reg` tells regular-file ids.
pub fn read(dir: &ImageDir, is_reg: impl Fn(u32) -> bool) -> Result<Ghosts> {
    let mut g = Ghosts::default();
    let Some(remaps) =
        dir.read_if_exists::<pb::RemapFilePathEntry>(ImageKind::REMAP_FPATH, names::REMAP_FPATH)?
    else {
        return Ok(g);
    };
    for r in remaps {
        let kind = r.remap_type.unwrap_or(pb::RemapType::Linked as i32);
        if kind != pb::RemapType::Ghost as i32 {
            return Err(RestoreError::Unsupported(format!(
                "{}: file id {} is remapped as {}; only ghost files are supported",
                names::REMAP_FPATH,
                r.orig_id,
                pb::RemapType::try_from(kind).map_or("an unknown kind", |k| k.as_str_name())
            )));
        }
        if !is_reg(r.orig_id) {
            return Err(bad(
                names::REMAP_FPATH,
                format!("remaps file id {}, which is no regular file", r.orig_id),
            ));
        }
        if g.remaps.insert(r.orig_id, r.remap_id).is_some() {
            return Err(bad(
                names::REMAP_FPATH,
                format!("file id {} is remapped twice", r.orig_id),
            ));
        }
        if let std::collections::hash_map::Entry::Vacant(v) = g.files.entry(r.remap_id) {
            v.insert(read_ghost(dir, r.remap_id)?);
        }
    }
    Ok(g)
}

fn read_ghost(dir: &ImageDir, id: u32) -> Result<GhostFile> {
    let name = names::ghost_file(id);
    let mut r = dir.reader(ImageKind::GHOST_FILE, &name)?;
    let entry: pb::GhostFileEntry = r.next()?.ok_or_else(|| bad(&name, "no ghost_file_entry"))?;
    if entry.mode & libc::S_IFMT != libc::S_IFREG {
        return Err(RestoreError::Unsupported(format!(
            "{name}: a ghost of mode {:o}; only regular files are supported",
            entry.mode
        )));
    }
    let mut chunks = Vec::new();
    let size = if entry.chunks == Some(true) {
        let size = entry
            .size
            .ok_or_else(|| bad(&name, "chunked without a size"))?;
        if size > MAX_GHOST {
            return Err(bad(&name, format!("a ghost of {size} bytes")));
        }
        let mut end = 0u64;
        while let Some(c) = r.next::<pb::GhostChunkEntry>()? {
            let stop = c.off.checked_add(c.len).filter(|&s| s <= size);
            match stop {
                Some(stop) if c.off >= end => end = stop,
                _ => {
                    return Err(bad(
                        &name,
                        format!("chunk {}+{} is out of order or beyond {size}", c.off, c.len),
                    ))
                }
            }
            chunks.push((c.off, r.read_extra(c.len as usize)?));
        }
        size
    } else {
        let data = r.read_to_end(MAX_GHOST)?;
        let size = data.len() as u64;
        chunks.push((0, data));
        size
    };
    Ok(GhostFile {
        entry,
        size,
        chunks,
    })
}

/// Ghost files created in the child, unlinked when dropped.
#[derive(Default)]
pub struct Created {
    /// Ghost id → where it was created.
    pub paths: HashMap<u32, PathBuf>,
}

impl Drop for Created {
    fn drop(&mut self) {
        for p in self.paths.values() {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// Creates ghost `id` for the regular file at `orig`.
pub fn create(created: &mut Created, id: u32, g: &GhostFile, orig: &str) -> ChildResult<PathBuf> {
    if let Some(p) = created.paths.get(&id) {
        return Ok(p.clone());
    }
    let orig = Path::new(orig);
    let dir = orig.parent().unwrap_or(Path::new("/"));
    let base = orig
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let candidates = [
        orig.to_path_buf(),
        dir.join(format!(".{base}.stasis-ghost.{id}")),
    ];
    let mut last = String::new();
    for path in candidates {
        let open = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_CLOEXEC)
            .open(&path);
        let mut file = match open {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                last = format!("{} exists", path.display());
                continue;
            }
            Err(e) => return Err(format!("ghost {id}: create {}: {e}", path.display())),
        };
        created.paths.insert(id, path.clone());
        fill(&mut file, g).map_err(|e| format!("ghost {id}: fill {}: {e}", path.display()))?;
        return Ok(path);
    }
    Err(format!(
        "ghost {id}: no free name beside {} ({last})",
        orig.display()
    ))
}

fn fill(file: &mut std::fs::File, g: &GhostFile) -> std::io::Result<()> {
    for (off, bytes) in &g.chunks {
        file.write_all_at(bytes, *off)?;
    }
    file.set_len(g.size)?;
    file.flush()?;
    stasis_sys::fdops::fchown(file.as_fd(), g.entry.uid, g.entry.gid).map_err(|e| e.source)?;
    file.set_permissions(std::fs::Permissions::from_mode(g.entry.mode & 0o7777))?;
    let time = |t: &Option<pb::Timeval>| {
        t.as_ref()
            .map(|t| UNIX_EPOCH + Duration::new(t.tv_sec, (t.tv_usec * 1000) as u32))
    };
    let mut times = std::fs::FileTimes::new();
    if let Some(a) = time(&g.entry.atim) {
        times = times.set_accessed(a);
    }
    if let Some(m) = time(&g.entry.mtim) {
        times = times.set_modified(m);
    }
    file.set_times(times)
}
