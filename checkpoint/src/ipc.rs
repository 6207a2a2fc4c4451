//! The ipc namespace at dump: its sysctls (`ipcns-var-N`), and every System V shared
//! memory segment (`ipcns-shm-N`), semaphore set (`ipcns-sem-N`) and message queue
//! (`ipcns-msg-N`) with its contents, in CRIU's layout:
//!
//! ```text
//! ipcns-shm: (ipc_shm_entry, segment bytes padded to 4)*
//! ipcns-sem: (ipc_sem_entry, nsems u16 values padded to 8)*
//! ipcns-msg: (ipc_msg_entry, qnum × (ipc_msg entry, text padded to 8))*
//! ```
//!
//! Segment bytes are written inline (`in_pagemaps` unset), the form CRIU 3.17's `crit`
//! decodes and CRIU's restore still reads. A file is absent when its kind has no object.
//!
//! An ipc namespace is a property of a *thread*: the work runs in a thread of its own
//! that joins the namespace, so the caller's namespace never changes. Everything read
//! there — `/proc/sys/kernel/*`, `/proc/sys/fs/mqueue/*`, the `*_STAT` calls — then
//! describes the joined namespace, as long as it is opened from that thread.

use crate::ns::IdMap;
use crate::{DumpError, Result};
use stasis_images::{names, pb, ImageDir, ImageKind};
use stasis_sys::ipc::{self as sys, IpcPerm};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

/// Segment bytes are copied out in chunks of this size.
const CHUNK: usize = 1 << 20;

/// Dumps the ipc namespace of `ns_pid` into `dir` as namespace `id`.
/// `users`: the maps of the tree's own user namespace, which the objects' owners are
/// recorded in (the kernel shows them to stasis as the host's ids).
pub fn dump_ipc_ns(ns_pid: i32, dir: &ImageDir, id: u32, users: Option<&IdMap>) -> Result<()> {
    dump_ipc_ns_at(Path::new(&format!("/proc/{ns_pid}/ns/ipc")), dir, id, users)
}

/// Dumps the ipc namespace `ns_path` names (`/proc/PID/ns/ipc`, or
/// `/proc/PID/task/TID/ns/ipc` for one thread's) into `dir` as namespace `id`.
pub fn dump_ipc_ns_at(
    ns_path: &Path,
    dir: &ImageDir,
    id: u32,
    users: Option<&IdMap>,
) -> Result<()> {
    let ns = std::fs::File::open(ns_path).map_err(|source| DumpError::Io {
        path: ns_path.to_path_buf(),
        source,
    })?;
    std::thread::scope(|s| {
        s.spawn(|| {
            sys::setns(ns.as_fd(), libc::CLONE_NEWIPC)?;
            dump_current(dir, id, users)
        })
        .join()
        .unwrap_or_else(|_| {
            Err(DumpError::Internal(format!(
                "the thread dumping the ipc namespace {} panicked",
                ns_path.display()
            )))
        })
    })
}

/// Dumps the calling thread's ipc namespace.
fn dump_current(dir: &ImageDir, id: u32, users: Option<&IdMap>) -> Result<()> {
    let var = read_var()?;
    dir.write_one(ImageKind::IPC_VAR, &names::ipcns_var(id), &var)?;
    dump_shm(dir, id, users)?;
    dump_msg(dir, id, users)?;
    dump_sem(dir, id, users)
}

// ---------------------------------------------------------------- sysctls

fn sysctl_path(name: &str) -> PathBuf {
    PathBuf::from("/proc/sys").join(name)
}

/// Reads one sysctl as whitespace-separated numbers.
fn read_sysctl<T: std::str::FromStr>(name: &str) -> Result<Vec<T>> {
    let path = sysctl_path(name);
    let text = std::fs::read_to_string(&path).map_err(|source| DumpError::Io {
        path: path.clone(),
        source,
    })?;
    parse_numbers(&text).ok_or_else(|| DumpError::Proc {
        path: path.display().to_string(),
        what: format!("cannot parse {:?}", text.trim_end()),
    })
}

fn parse_numbers<T: std::str::FromStr>(text: &str) -> Option<Vec<T>> {
    text.split_whitespace().map(|w| w.parse().ok()).collect()
}

fn sysctl_one<T: std::str::FromStr>(name: &str) -> Result<T> {
    let mut v = read_sysctl::<T>(name)?;
    if v.len() != 1 {
        return Err(DumpError::Proc {
            path: sysctl_path(name).display().to_string(),
            what: format!("{} values where one was expected", v.len()),
        });
    }
    Ok(v.remove(0))
}

/// A `*_next_id` sysctl: -1 (nothing requested) is left out, as CRIU does, since it
/// cannot be written back.
fn next_id(name: &str) -> Result<Option<u32>> {
    let v: i64 = sysctl_one(name)?;
    Ok(u32::try_from(v).ok())
}

fn read_var() -> Result<pb::IpcVarEntry> {
    let sem_ctls: Vec<u32> = read_sysctl("kernel/sem")?;
    if sem_ctls.len() != 4 {
        return Err(DumpError::Proc {
            path: sysctl_path("kernel/sem").display().to_string(),
            what: format!("{} values where 4 were expected", sem_ctls.len()),
        });
    }
    Ok(pb::IpcVarEntry {
        sem_ctls,
        msg_ctlmax: sysctl_one("kernel/msgmax")?,
        msg_ctlmnb: sysctl_one("kernel/msgmnb")?,
        msg_ctlmni: sysctl_one("kernel/msgmni")?,
        auto_msgmni: sysctl_one("kernel/auto_msgmni")?,
        shm_ctlmax: sysctl_one("kernel/shmmax")?,
        shm_ctlall: sysctl_one("kernel/shmall")?,
        shm_ctlmni: sysctl_one("kernel/shmmni")?,
        shm_rmid_forced: sysctl_one("kernel/shm_rmid_forced")?,
        mq_queues_max: sysctl_one("fs/mqueue/queues_max")?,
        mq_msg_max: sysctl_one("fs/mqueue/msg_max")?,
        mq_msgsize_max: sysctl_one("fs/mqueue/msgsize_max")?,
        mq_msg_default: Some(sysctl_one("fs/mqueue/msg_default")?),
        mq_msgsize_default: Some(sysctl_one("fs/mqueue/msgsize_default")?),
        msg_next_id: next_id("kernel/msg_next_id")?,
        sem_next_id: next_id("kernel/sem_next_id")?,
        shm_next_id: next_id("kernel/shm_next_id")?,
    })
}

// ---------------------------------------------------------------- objects

fn desc(id: i32, p: &IpcPerm, users: Option<&IdMap>) -> pb::IpcDescEntry {
    let uid = |u: u32| users.map_or(u, |m| m.uid(u));
    let gid = |g: u32| users.map_or(g, |m| m.gid(g));
    pb::IpcDescEntry {
        key: p.key as u32,
        uid: uid(p.uid),
        gid: gid(p.gid),
        cuid: uid(p.cuid),
        cgid: gid(p.cgid),
        mode: p.mode,
        id: id as u32,
    }
}

fn object_error(kind: &str, id: i32, key: i32, what: impl std::fmt::Display) -> DumpError {
    DumpError::Proc {
        path: format!("ipc {kind} id {id} (key {key:#x})"),
        what: what.to_string(),
    }
}

/// Every object of one kind, by kernel index, checked against the kernel's count.
fn list<T>(
    kind: &str,
    census: sys::IpcCensus,
    stat: impl Fn(i32) -> stasis_sys::Result<Option<(i32, T)>>,
) -> Result<Vec<(i32, T)>> {
    let mut found = Vec::new();
    for index in 0..=census.max_index {
        if let Some(object) = stat(index)? {
            found.push(object);
        }
    }
    if found.len() != census.in_use as usize {
        return Err(DumpError::Proc {
            path: format!("ipc namespace {kind} list"),
            what: format!(
                "the kernel counts {} objects but {} were found; were they changing during the dump?",
                census.in_use,
                found.len()
            ),
        });
    }
    Ok(found)
}

fn pad(len: u64, to: u64) -> usize {
    (len.next_multiple_of(to) - len) as usize
}

/// Whether the mapping at `addr` of this process is backed by huge pages.
fn huge_pages_at(addr: usize) -> Result<bool> {
    let path = PathBuf::from("/proc/self/smaps");
    let text = std::fs::read_to_string(&path).map_err(|source| DumpError::Io {
        path: path.clone(),
        source,
    })?;
    let head = format!("{addr:x}-");
    let mut lines = text.lines().skip_while(|l| !l.starts_with(&head));
    lines.next().ok_or_else(|| DumpError::Proc {
        path: path.display().to_string(),
        what: format!("no mapping starts at {addr:#x}"),
    })?;
    let page_kb = lines
        .take_while(|l| !l.starts_with("VmFlags"))
        .find_map(|l| l.strip_prefix("KernelPageSize:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok());
    Ok(page_kb.is_some_and(|kb| kb > 4))
}

fn dump_shm(dir: &ImageDir, ns: u32, users: Option<&IdMap>) -> Result<()> {
    let segments = list("shm", sys::shm_census()?, sys::shm_stat_index)?;
    if segments.is_empty() {
        return Ok(());
    }
    let mut w = dir.writer(ImageKind::IPCNS_SHM, &names::ipcns_shm(ns))?;
    for (id, st) in segments {
        let err = |what: String| object_error("shm segment", id, st.perm.key, what);
        if st.perm.mode & sys::SHM_DEST != 0 {
            return Err(err(
                "is removed but still attached (SHM_DEST); it cannot be recreated".into(),
            ));
        }
        let seg = sys::ShmAttachment::attach(id, true)?;
        if huge_pages_at(seg.addr())? {
            return Err(err("is backed by huge pages; not supported yet".into()));
        }
        let size = seg.len() as u64;
        w.entry(&pb::IpcShmEntry {
            desc: desc(id, &st.perm, users),
            size,
            in_pagemaps: None,
            hugetlb_flag: None,
        })?;
        let mut buf = vec![0u8; CHUNK.min(seg.len())];
        let mut off = 0;
        while off < seg.len() {
            let n = CHUNK.min(seg.len() - off);
            seg.read_at(off, &mut buf[..n])?;
            w.extra(&buf[..n])?;
            off += n;
        }
        w.extra(&[0u8; 4][..pad(size, 4)])?;
        seg.detach()?;
    }
    w.commit()?;
    Ok(())
}

fn dump_sem(dir: &ImageDir, ns: u32, users: Option<&IdMap>) -> Result<()> {
    let sets = list("sem", sys::sem_census()?, sys::sem_stat_index)?;
    if sets.is_empty() {
        return Ok(());
    }
    let mut w = dir.writer(ImageKind::IPCNS_SEM, &names::ipcns_sem(ns))?;
    for (id, st) in sets {
        let values = sys::sem_values(id)?;
        if values.len() != st.nsems as usize {
            return Err(object_error(
                "semaphore set",
                id,
                st.perm.key,
                format!("had {} semaphores, now {}", st.nsems, values.len()),
            ));
        }
        let mut bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        bytes.resize(bytes.len() + pad(bytes.len() as u64, 8), 0);
        w.entry_with_extra(
            &pb::IpcSemEntry {
                desc: desc(id, &st.perm, users),
                nsems: st.nsems,
            },
            &bytes,
        )?;
    }
    w.commit()?;
    Ok(())
}

fn dump_msg(dir: &ImageDir, ns: u32, users: Option<&IdMap>) -> Result<()> {
    let queues = list("msg", sys::msg_census()?, sys::msg_stat_index)?;
    if queues.is_empty() {
        return Ok(());
    }
    let mut w = dir.writer(ImageKind::IPCNS_MSG, &names::ipcns_msg(ns))?;
    for (id, st) in queues {
        let err = |what: String| object_error("message queue", id, st.perm.key, what);
        let qbytes = u32::try_from(st.qbytes)
            .map_err(|_| err(format!("byte limit {} does not fit the image", st.qbytes)))?;
        let qnum = u32::try_from(st.qnum)
            .map_err(|_| err(format!("{} messages do not fit the image", st.qnum)))?;
        // No single message is larger than everything queued.
        let max_len =
            usize::try_from(st.cbytes).map_err(|_| err(format!("{} queued bytes", st.cbytes)))?;
        w.entry(&pb::IpcMsgEntry {
            desc: desc(id, &st.perm, users),
            qbytes,
            qnum,
        })?;
        for n in 0..st.qnum {
            let (mtype, text) = sys::msg_copy(id, n, max_len)
                .map_err(|e| err(format!("message {n} of {}: {e}", st.qnum)))?;
            let mut bytes = text;
            let msize = bytes.len() as u32;
            bytes.resize(bytes.len() + pad(msize.into(), 8), 0);
            w.entry_with_extra(
                &pb::IpcMsg {
                    mtype: mtype as u64,
                    msize,
                },
                &bytes,
            )?;
        }
    }
    w.commit()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sysctl_text_parses_as_numbers_or_not_at_all() {
        assert_eq!(
            parse_numbers::<u32>("32000\t1024000000\t500\t32000\n"),
            Some(vec![32000, 1024000000, 500, 32000])
        );
        assert_eq!(parse_numbers::<i64>("-1\n"), Some(vec![-1]));
        assert_eq!(
            parse_numbers::<u64>("18446744073692774399\n"),
            Some(vec![18446744073692774399])
        );
        assert_eq!(parse_numbers::<u32>("12 x\n"), None);
    }

    #[test]
    fn padding_rounds_up_to_the_boundary_only_when_needed() {
        assert_eq!(pad(0, 8), 0);
        assert_eq!(pad(6, 8), 2);
        assert_eq!(pad(8, 8), 0);
        assert_eq!(pad(12289, 4), 3);
    }

    fn temp_dir(tag: &str) -> PathBuf {
        let p = std::env::temp_dir().join(format!(
            "stasis-ipc-{tag}-{}-{}",
            std::process::id(),
            sys::gettid()
        ));
        let _ = std::fs::remove_dir_all(&p);
        p
    }

    #[test]
    fn an_empty_namespace_gives_only_its_sysctls_read_from_that_namespace() {
        let path = temp_dir("empty");
        let dir = ImageDir::create(&path).unwrap();
        std::thread::scope(|s| {
            s.spawn(|| {
                sys::unshare(libc::CLONE_NEWIPC).unwrap();
                // A value the host is unlikely to have, set only in this namespace.
                std::fs::write("/proc/sys/kernel/msgmax", "12345").unwrap();
                let tid = sys::gettid();
                let ns = PathBuf::from(format!("/proc/self/task/{tid}/ns/ipc"));
                dump_ipc_ns_at(&ns, &dir, 11, None).unwrap();
            })
            .join()
            .unwrap()
        });
        let var: pb::IpcVarEntry = dir
            .read_one(ImageKind::IPC_VAR, &names::ipcns_var(11))
            .unwrap();
        assert_eq!(var.msg_ctlmax, 12345);
        assert_eq!(var.sem_ctls.len(), 4);
        assert_eq!(var.shm_next_id, None);
        let mut files: Vec<String> = std::fs::read_dir(&path)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        files.sort();
        assert_eq!(files, ["ipcns-var-11.img"]);
        let _ = std::fs::remove_dir_all(&path);
    }

    #[test]
    fn a_namespace_that_cannot_be_opened_is_an_error_naming_it() {
        let path = temp_dir("missing");
        let dir = ImageDir::create(&path).unwrap();
        let e = dump_ipc_ns(-5, &dir, 1, None).unwrap_err().to_string();
        assert!(e.contains("/proc/-5/ns/ipc"), "{e}");
        let _ = std::fs::remove_dir_all(&path);
    }
}
