//! memfd files. At plan time each inode of `memfd.img` is read with its contents
//! (`pagemap-shmem-<shmid>.img` and its pages image, bounded). In the child each inode
//! is created once with `memfd_create` (allowing seals unless it had none allowed),
//! filled, sized, owned and moded; each open file description is a reopen of it through
//! `/proc/self/fd` with its flags and offset; the seals go on last, once every
//! description exists (a write seal would refuse the writable reopens).

use super::{set_params, ChildResult};
use crate::{RestoreError, Result};
use stasis_images::{names, pagemap, pb, ImageDir, ImageKind, PE_PRESENT};
use std::collections::HashMap;
use std::io::Read;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::{FileExt, OpenOptionsExt, PermissionsExt};

const PAGE: u64 = 4096;
/// Most bytes of memfd contents stasis reads back from an image, all inodes together.
const MAX_CONTENTS: u64 = 1 << 30;

/// One memfd inode with its contents as (file offset, bytes).
#[derive(Clone, Debug)]
pub struct Inode {
    pub entry: pb::MemfdInodeEntry,
    pub chunks: Vec<(u64, Vec<u8>)>,
}

fn bad(file: &str, what: impl Into<String>) -> RestoreError {
    RestoreError::BadImage {
        file: file.to_string(),
        what: what.into(),
    }
}

/// Reads `memfd.img` and every inode's contents, by inode id.
pub fn read(dir: &ImageDir) -> Result<HashMap<u32, Inode>> {
    let mut out = HashMap::new();
    let Some(inodes) =
        dir.read_if_exists::<pb::MemfdInodeEntry>(ImageKind::MEMFD_INODE, names::MEMFD_INODE)?
    else {
        return Ok(out);
    };
    let mut total = 0u64;
    for entry in inodes {
        if entry.hugetlb_flag.is_some() {
            return Err(RestoreError::Unsupported(format!(
                "{}: memfd {:?} is on hugetlbfs",
                names::MEMFD_INODE,
                entry.name
            )));
        }
        let id = u32::try_from(entry.inode_id)
            .map_err(|_| bad(names::MEMFD_INODE, format!("inode id {}", entry.inode_id)))?;
        let chunks = read_contents(dir, &entry, &mut total)?;
        if out.insert(id, Inode { entry, chunks }).is_some() {
            return Err(bad(
                names::MEMFD_INODE,
                format!("inode id {id} appears twice"),
            ));
        }
    }
    Ok(out)
}

pub(crate) fn read_contents(
    dir: &ImageDir,
    entry: &pb::MemfdInodeEntry,
    total: &mut u64,
) -> Result<Vec<(u64, Vec<u8>)>> {
    let pm_name = names::pagemap_shmem(entry.shmid);
    if !dir.exists(&pm_name) {
        return Ok(Vec::new());
    }
    let mut r = dir.reader(ImageKind::SHMEM_PAGEMAP, &pm_name)?;
    let head: pb::PagemapHead = r.next()?.ok_or_else(|| bad(&pm_name, "no pagemap_head"))?;
    let pages_name = names::pages(head.pages_id);
    let mut pages = std::io::BufReader::new(dir.open_raw(&pages_name)?);
    let mut chunks = Vec::new();
    let mut end = 0u64;
    while let Some(mut e) = r.next::<pb::PagemapEntry>()? {
        pagemap::normalise(&mut e);
        let n = pagemap::nr_pages(&e);
        let len = n.checked_mul(PAGE).filter(|l| *l <= MAX_CONTENTS);
        let Some(len) = len.filter(|_| e.vaddr % PAGE == 0 && e.vaddr >= end) else {
            return Err(bad(
                &pm_name,
                format!(
                    "entry at {:#x} ({n} pages) is misaligned, out of order or too large",
                    e.vaddr
                ),
            ));
        };
        if e.flags != Some(PE_PRESENT) {
            return Err(RestoreError::Unsupported(format!(
                "{pm_name}: pages at {:#x} are not in this image",
                e.vaddr
            )));
        }
        *total += len;
        if *total > MAX_CONTENTS || e.vaddr + len > entry.size.div_ceil(PAGE) * PAGE {
            return Err(bad(
                &pm_name,
                format!(
                    "pages at {:#x} lie beyond the memfd's {} bytes",
                    e.vaddr, entry.size
                ),
            ));
        }
        let mut data = vec![0u8; len as usize];
        pages
            .read_exact(&mut data)
            .map_err(|source| RestoreError::Io {
                path: dir.file_path(&pages_name),
                source,
            })?;
        end = e.vaddr + len;
        chunks.push((e.vaddr, data));
    }
    Ok(chunks)
}

/// The memfd inodes created in the child, by inode id, with the seals still to add.
#[derive(Default)]
pub struct Created {
    inodes: HashMap<u32, (OwnedFd, u32)>,
}

const F_SEAL_SEAL: u32 = 1;

/// Opens the description `p` of a memfd, creating its inode the first time.
pub fn open(
    inodes: &HashMap<u32, Inode>,
    created: &mut Created,
    p: &pb::MemfdFileEntry,
) -> ChildResult<OwnedFd> {
    let err = |what: String| format!("memfd {}: {what}", p.id);
    let (inode_fd, _) = match created.inodes.entry(p.inode_id) {
        std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
        std::collections::hash_map::Entry::Vacant(slot) => {
            let inode = inodes
                .get(&p.inode_id)
                .ok_or_else(|| err(format!("no inode {} in {}", p.inode_id, names::MEMFD_INODE)))?;
            let fd = create(inode).map_err(|e| err(format!("{:?}: {e}", inode.entry.name)))?;
            slot.insert((fd, inode.entry.seals))
        }
    };
    let acc = p.flags as i32 & libc::O_ACCMODE;
    let path = format!("/proc/self/fd/{}", inode_fd.as_raw_fd());
    let file = std::fs::OpenOptions::new()
        .read(acc != libc::O_WRONLY)
        .write(acc != libc::O_RDONLY)
        .custom_flags(libc::O_CLOEXEC)
        .open(&path)
        .map_err(|e| err(format!("reopen: {e}")))?;
    let fd = OwnedFd::from(file);
    stasis_sys::process::seek_to(fd.as_raw_fd(), p.pos).map_err(|e| err(e.to_string()))?;
    set_params(fd.as_fd(), p.flags, &p.fown)?;
    Ok(fd)
}

fn create(inode: &Inode) -> std::io::Result<OwnedFd> {
    let e = &inode.entry;
    let mut flags = libc::MFD_CLOEXEC;
    if e.seals != F_SEAL_SEAL {
        flags |= libc::MFD_ALLOW_SEALING;
    }
    let fd = stasis_sys::fdops::memfd_create(&e.name, flags).map_err(|e| e.source)?;
    let file = std::fs::File::from(fd);
    for (off, data) in &inode.chunks {
        file.write_all_at(data, *off)?;
    }
    file.set_len(e.size)?;
    stasis_sys::fdops::fchown(file.as_fd(), e.uid, e.gid).map_err(|e| e.source)?;
    if let Some(mode) = e.mode {
        file.set_permissions(std::fs::Permissions::from_mode(mode & 0o7777))?;
    }
    Ok(OwnedFd::from(file))
}

/// Adds every inode's seals, once all its descriptions exist.
pub fn seal_all(created: &Created) -> ChildResult<()> {
    for (id, (fd, seals)) in &created.inodes {
        if *seals != 0 && *seals != F_SEAL_SEAL {
            stasis_sys::fdops::add_seals(fd.as_fd(), *seals)
                .map_err(|e| format!("memfd inode {id}: seals {seals:#x}: {e}"))?;
        }
    }
    Ok(())
}
