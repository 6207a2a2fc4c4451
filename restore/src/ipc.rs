//! The ipc namespace at restore: its sysctls from `ipcns-var-N`, then every System V
//! shared memory segment, message queue and semaphore set of `ipcns-{shm,msg,sem}-N`
//! recreated under its original id, key, owner, creator and mode, with its contents.
//!
//! The kernel hands out the id written to `kernel/{shm,msg,sem}_next_id` to the next
//! object created, then forgets it; each object is created right after its id is
//! written there. The `*_next_id` values of the image (what the dumped namespace had
//! asked for itself) are written back last, and so is `shm_rmid_forced`.
//!
//! Every size in an image is checked before anything is allocated or created: against
//! the namespace's limits from `ipcns-var-N` and against what the file still holds.

use stasis_images::{names, pb, ImageDir, ImageError, ImageKind, ImageReader};
use stasis_sys::ipc::{self as sys, IpcPerm};
use std::fs::File;
use std::io::BufReader;

/// Segment bytes are copied in chunks of this size.
const CHUNK: usize = 1 << 20;

/// Recreates the ipc namespace `id` of `dir` in the calling thread's ipc namespace,
/// which must be new and empty (the caller arranges that).
///
/// The calling thread becomes the creator of every segment: with `shm_rmid_forced` set
/// in the image, the kernel destroys the segments no process has attached when this
/// thread exits.
pub(crate) fn restore_ipc_ns(dir: &ImageDir, id: u32) -> Result<(), String> {
    let var = restore_objects(dir, id)?;
    write_sysctl("kernel/shm_rmid_forced", var.shm_rmid_forced)
}

/// Everything of [`restore_ipc_ns`] but `shm_rmid_forced`; returns the namespace's
/// sysctls.
fn restore_objects(dir: &ImageDir, id: u32) -> Result<pb::IpcVarEntry, String> {
    let var_name = names::ipcns_var(id);
    let var: pb::IpcVarEntry = dir
        .read_one(ImageKind::IPC_VAR, &var_name)
        .map_err(|e| e.to_string())?;
    if var.sem_ctls.len() != 4 {
        return Err(format!(
            "{}: sem_ctls holds {} values where 4 are expected",
            dir.file_path(&var_name).display(),
            var.sem_ctls.len()
        ));
    }
    ensure_empty()?;
    write_limits(&var)?;
    restore_shm(dir, &names::ipcns_shm(id), &var)?;
    restore_msg(dir, &names::ipcns_msg(id), &var)?;
    restore_sem(dir, &names::ipcns_sem(id), &var)?;
    next_ids(&var)?;
    Ok(var)
}

/// The `*_next_id` values the dumped namespace had asked for itself.
fn next_ids(var: &pb::IpcVarEntry) -> Result<(), String> {
    for (name, value) in [
        ("kernel/shm_next_id", var.shm_next_id),
        ("kernel/msg_next_id", var.msg_next_id),
        ("kernel/sem_next_id", var.sem_next_id),
    ] {
        if let Some(v) = value {
            write_sysctl(name, v)?;
        }
    }
    Ok(())
}

/// How a namespace of a user namespace of the tree's own is restored from the host (a
/// stasis thread in it): ids of the image are the namespace's, the calls take the
/// host's.
struct HostView {
    users: pb::UsernsEntry,
    /// The host uid of the namespace's root: the only one that may write its ipc
    /// sysctls (the kernel's `ipc_permissions`).
    ns_root: u32,
}

thread_local! {
    static HOST_VIEW: std::cell::RefCell<Option<HostView>> = const { std::cell::RefCell::new(None) };
}

/// The host's id for id `inner` of the namespace, by `map`.
fn to_host(map: &[pb::UidGidExtent], inner: u32) -> Result<u32, String> {
    stasis_checkpoint::ns::id_outside(map, inner)
        .ok_or_else(|| format!("id {inner} is not mapped by the user namespace"))
}

/// Recreates the ipc namespace `id` of `dir` in the ipc namespace of `pid` (new and
/// empty), which belongs to a new user namespace mapped by `users`: from a thread of
/// stasis's that joins it. Inside, the namespace's own root could not read the images;
/// from the host, the objects' owners are translated and the sysctls written as the
/// namespace's root.
pub fn restore_ipc_ns_from_host(
    pid: i32,
    dir: &ImageDir,
    id: u32,
    users: &pb::UsernsEntry,
) -> Result<(), String> {
    let ns_root = to_host(&users.uid_map, 0)?;
    let path = format!("/proc/{pid}/ns/ipc");
    let ns = File::open(&path).map_err(|e| format!("{path}: {e}"))?;
    let view = || HostView {
        users: users.clone(),
        ns_root,
    };
    let var = in_ns(&ns, &path, view(), || restore_objects(dir, id))?;
    // After the creating thread is gone: with it set, the kernel would have destroyed
    // every segment that thread created and nobody attached when it exited.
    in_ns(&ns, &path, view(), || {
        write_sysctl("kernel/shm_rmid_forced", var.shm_rmid_forced)
    })
}

/// Runs `work` in a thread of stasis's that joins the ipc namespace `ns` (`path`) with
/// the host's view `view` of it, and returns what it returned.
fn in_ns<T: Send>(
    ns: &File,
    path: &str,
    view: HostView,
    work: impl FnOnce() -> Result<T, String> + Send,
) -> Result<T, String> {
    std::thread::scope(|s| {
        s.spawn(|| {
            stasis_sys::ns::setns(std::os::fd::AsFd::as_fd(ns), libc::CLONE_NEWIPC)
                .map_err(|e| format!("joining {path}: {e}"))?;
            HOST_VIEW.with(|h| *h.borrow_mut() = Some(view));
            work()
        })
        .join()
        .unwrap_or_else(|_| Err("the thread restoring the ipc namespace panicked".into()))
    })
}

fn write_sysctl(name: &str, value: impl std::fmt::Display) -> Result<(), String> {
    let path = format!("/proc/sys/{name}");
    let write = || {
        std::fs::write(&path, value.to_string())
            .map_err(|e| format!("{path}: writing {value}: {e}"))
    };
    // The `*_next_id` ones take CAP_CHECKPOINT_RESTORE over the namespace, which stasis
    // has (and would lose as another uid); the others only the namespace's root uid.
    let as_root = HOST_VIEW
        .with(|h| h.borrow().as_ref().map(|v| v.ns_root))
        .filter(|_| !name.ends_with("_next_id"));
    match as_root {
        None => write(),
        Some(root) => {
            let (euid, _) = sys::effective_ids();
            sys::set_thread_euid(root).map_err(|e| format!("{path}: {e}"))?;
            let written = write();
            sys::set_thread_euid(euid).map_err(|e| format!("{path}: back from uid {root}: {e}"))?;
            written
        }
    }
}

fn ensure_empty() -> Result<(), String> {
    let census = [
        ("shared memory segments", sys::shm_census()),
        ("message queues", sys::msg_census()),
        ("semaphore sets", sys::sem_census()),
    ];
    for (what, c) in census {
        let n = c.map_err(|e| e.to_string())?.in_use;
        if n != 0 {
            return Err(format!(
                "the ipc namespace to restore into already holds {n} {what}; it must be new and empty"
            ));
        }
    }
    Ok(())
}

/// The limits, before any object: a segment, a message or a set the dumped namespace
/// allowed may be above this kernel's defaults.
fn write_limits(var: &pb::IpcVarEntry) -> Result<(), String> {
    let sem = var
        .sem_ctls
        .iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(" ");
    write_sysctl("kernel/sem", sem)?;
    write_sysctl("kernel/msgmax", var.msg_ctlmax)?;
    write_sysctl("kernel/msgmnb", var.msg_ctlmnb)?;
    write_sysctl("kernel/auto_msgmni", var.auto_msgmni)?;
    write_sysctl("kernel/msgmni", var.msg_ctlmni)?;
    write_sysctl("kernel/shmmax", var.shm_ctlmax)?;
    write_sysctl("kernel/shmall", var.shm_ctlall)?;
    write_sysctl("kernel/shmmni", var.shm_ctlmni)?;
    write_sysctl("fs/mqueue/queues_max", var.mq_queues_max)?;
    write_sysctl("fs/mqueue/msg_max", var.mq_msg_max)?;
    write_sysctl("fs/mqueue/msgsize_max", var.mq_msgsize_max)?;
    if let Some(v) = var.mq_msg_default {
        write_sysctl("fs/mqueue/msg_default", v)?;
    }
    if let Some(v) = var.mq_msgsize_default {
        write_sysctl("fs/mqueue/msgsize_default", v)?;
    }
    Ok(())
}

/// An image of objects opened for reading, with its length; `None` when absent (the
/// dumped namespace had no object of that kind).
struct Objects {
    reader: ImageReader<BufReader<File>>,
    len: u64,
    name: String,
}

impl Objects {
    fn open(dir: &ImageDir, kind: ImageKind, name: &str) -> Result<Option<Objects>, String> {
        let len = match dir.open_raw(name) {
            Ok(f) => f
                .metadata()
                .map_err(|e| format!("{}: {e}", dir.file_path(name).display()))?
                .len(),
            Err(ImageError::Missing { .. }) => return Ok(None),
            Err(e) => return Err(e.to_string()),
        };
        let reader = dir.reader(kind, name).map_err(|e| e.to_string())?;
        Ok(Some(Objects {
            reader,
            len,
            name: dir.file_path(name).display().to_string(),
        }))
    }

    /// Refuses a payload of `bytes` that the file cannot hold.
    fn expect(&self, bytes: u64, what: &str) -> Result<(), String> {
        let left = self.len.saturating_sub(self.reader.offset());
        if bytes > left {
            return Err(format!(
                "{}: {what} needs {bytes} bytes at offset {} but the file has {left} left",
                self.name,
                self.reader.offset()
            ));
        }
        Ok(())
    }

    fn extra(&mut self, len: usize) -> Result<Vec<u8>, String> {
        self.reader.read_extra(len).map_err(|e| e.to_string())
    }
}

fn perm_of(d: &pb::IpcDescEntry) -> Result<IpcPerm, String> {
    let (uid, gid, cuid, cgid) = HOST_VIEW.with(|h| match &*h.borrow() {
        None => Ok((d.uid, d.gid, d.cuid, d.cgid)),
        Some(v) => {
            let (u, g) = (&v.users.uid_map, &v.users.gid_map);
            Ok::<_, String>((
                to_host(u, d.uid)?,
                to_host(g, d.gid)?,
                to_host(u, d.cuid)?,
                to_host(g, d.cgid)?,
            ))
        }
    })?;
    Ok(IpcPerm {
        key: d.key as i32,
        uid,
        gid,
        cuid,
        cgid,
        mode: d.mode,
    })
}

fn object_id(kind: &str, d: &pb::IpcDescEntry, file: &str) -> Result<i32, String> {
    i32::try_from(d.id).map_err(|_| format!("{file}: {kind} id {} is not a valid id", d.id))
}

fn round_up(n: u64, to: u64) -> u64 {
    n.next_multiple_of(to)
}

/// Runs `create` with the calling thread's effective ids set to the object's creator
/// (the kernel records the creating euid/egid as `cuid`/`cgid` and IPC_SET cannot
/// change them), then switches back.
fn as_creator<T>(
    cuid: u32,
    cgid: u32,
    create: impl FnOnce() -> stasis_sys::Result<T>,
) -> Result<T, String> {
    let (euid, egid) = sys::effective_ids();
    if (euid, egid) == (cuid, cgid) {
        return create().map_err(|e| e.to_string());
    }
    // The group first: with an effective uid other than 0 the thread may not change it.
    sys::set_thread_egid(cgid).map_err(|e| format!("becoming the creator: {e}"))?;
    if let Err(e) = sys::set_thread_euid(cuid) {
        let _ = sys::set_thread_egid(egid);
        return Err(format!("becoming the creator: {e}"));
    }
    let made = create();
    // Back in the reverse order: the uid gives back the right to set the group.
    sys::set_thread_euid(euid)
        .and_then(|()| sys::set_thread_egid(egid))
        .map_err(|e| format!("switching back from the creator's ids: {e}"))?;
    made.map_err(|e| e.to_string())
}

/// Creates an object under `id`: asks for the id through `next_id_sysctl`, creates it
/// as its creator, and checks the kernel gave that id.
fn create_with_id(
    next_id_sysctl: &str,
    id: i32,
    perm: &IpcPerm,
    create: impl FnOnce() -> stasis_sys::Result<i32>,
) -> Result<(), String> {
    write_sysctl(next_id_sysctl, id)?;
    let got = as_creator(perm.cuid, perm.cgid, create)?;
    if got != id {
        return Err(format!("the kernel gave id {got} instead"));
    }
    Ok(())
}

fn create_flags(perm: &IpcPerm) -> i32 {
    (perm.mode & 0o777) as i32 | libc::IPC_CREAT | libc::IPC_EXCL
}

fn restore_shm(dir: &ImageDir, name: &str, var: &pb::IpcVarEntry) -> Result<(), String> {
    let Some(mut img) = Objects::open(dir, ImageKind::IPCNS_SHM, name)? else {
        return Ok(());
    };
    while let Some(e) = img
        .reader
        .next::<pb::IpcShmEntry>()
        .map_err(|e| e.to_string())?
    {
        let id = object_id("shm segment", &e.desc, &img.name)?;
        let perm = perm_of(&e.desc)?;
        let who = format!("shm segment id {id} (key {:#x})", e.desc.key);
        let file = img.name.clone();
        let fail = |what: String| format!("{file}: {who}: {what}");
        if e.in_pagemaps == Some(true) {
            return Err(fail(
                "its contents are in pagemap images (in_pagemaps); only inline contents are supported".into(),
            ));
        }
        if let Some(flag) = e.hugetlb_flag {
            return Err(fail(format!(
                "is a huge page segment (hugetlb_flag {flag:#x}); not supported yet"
            )));
        }
        if e.size == 0 || e.size > var.shm_ctlmax {
            return Err(fail(format!(
                "size {} is outside 1..=shmmax ({})",
                e.size, var.shm_ctlmax
            )));
        }
        let size = usize::try_from(e.size).map_err(|_| fail(format!("size {}", e.size)))?;
        let padded = round_up(e.size, 4);
        img.expect(padded, &format!("the contents of {who}"))?;

        create_with_id("kernel/shm_next_id", id, &perm, || {
            sys::shmget(perm.key, e.size, create_flags(&perm))
        })
        .map_err(&fail)?;
        sys::shm_set(id, &perm).map_err(|e| fail(e.to_string()))?;
        let seg = sys::ShmAttachment::attach(id, false).map_err(|e| fail(e.to_string()))?;
        let mut off = 0;
        while off < size {
            let n = CHUNK.min(size - off);
            let bytes = img.extra(n)?;
            seg.write_at(off, &bytes).map_err(|e| fail(e.to_string()))?;
            off += n;
        }
        img.extra((padded - e.size) as usize)?;
        seg.detach().map_err(|e| fail(e.to_string()))?;
        if perm.mode & sys::SHM_LOCKED != 0 {
            sys::shm_lock(id).map_err(|e| fail(e.to_string()))?;
        }
    }
    Ok(())
}

fn restore_msg(dir: &ImageDir, name: &str, var: &pb::IpcVarEntry) -> Result<(), String> {
    let Some(mut img) = Objects::open(dir, ImageKind::IPCNS_MSG, name)? else {
        return Ok(());
    };
    while let Some(e) = img
        .reader
        .next::<pb::IpcMsgEntry>()
        .map_err(|e| e.to_string())?
    {
        let id = object_id("message queue", &e.desc, &img.name)?;
        let perm = perm_of(&e.desc)?;
        let who = format!("message queue id {id} (key {:#x})", e.desc.key);
        let file = img.name.clone();
        let fail = |what: String| format!("{file}: {who}: {what}");
        create_with_id("kernel/msg_next_id", id, &perm, || {
            sys::msgget(perm.key, create_flags(&perm))
        })
        .map_err(&fail)?;
        // The byte limit first, so that every message fits.
        sys::msg_set(id, &perm, e.qbytes.into()).map_err(|e| fail(e.to_string()))?;
        for n in 0..e.qnum {
            let Some(m) = img.reader.next::<pb::IpcMsg>().map_err(|e| e.to_string())? else {
                return Err(fail(format!(
                    "the file ends after {n} of its {} messages",
                    e.qnum
                )));
            };
            let at = |what: String| fail(format!("message {n}: {what}"));
            if m.msize > var.msg_ctlmax {
                return Err(at(format!(
                    "{} bytes, above msgmax ({})",
                    m.msize, var.msg_ctlmax
                )));
            }
            let mtype = i64::try_from(m.mtype)
                .ok()
                .filter(|t| *t > 0)
                .ok_or_else(|| at(format!("type {} is not a positive long", m.mtype)))?;
            let padded = round_up(m.msize.into(), 8);
            img.expect(padded, &format!("message {n} of {who}"))?;
            let mut text = img.extra(padded as usize)?;
            text.truncate(m.msize as usize);
            sys::msgsnd(id, mtype, &text, libc::IPC_NOWAIT).map_err(|e| at(e.to_string()))?;
        }
    }
    Ok(())
}

fn restore_sem(dir: &ImageDir, name: &str, var: &pb::IpcVarEntry) -> Result<(), String> {
    let Some(mut img) = Objects::open(dir, ImageKind::IPCNS_SEM, name)? else {
        return Ok(());
    };
    let semmsl = var.sem_ctls[0];
    while let Some(e) = img
        .reader
        .next::<pb::IpcSemEntry>()
        .map_err(|e| e.to_string())?
    {
        let id = object_id("semaphore set", &e.desc, &img.name)?;
        let perm = perm_of(&e.desc)?;
        let who = format!("semaphore set id {id} (key {:#x})", e.desc.key);
        let file = img.name.clone();
        let fail = |what: String| format!("{file}: {who}: {what}");
        if e.nsems == 0 || e.nsems > semmsl {
            return Err(fail(format!(
                "{} semaphores, outside 1..=semmsl ({semmsl})",
                e.nsems
            )));
        }
        let padded = round_up(2 * u64::from(e.nsems), 8);
        img.expect(padded, &format!("the values of {who}"))?;
        let bytes = img.extra(padded as usize)?;
        let values: Vec<u16> = bytes
            .chunks_exact(2)
            .take(e.nsems as usize)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
            .collect();
        create_with_id("kernel/sem_next_id", id, &perm, || {
            sys::semget(perm.key, e.nsems, create_flags(&perm))
        })
        .map_err(&fail)?;
        sys::sem_set(id, &perm).map_err(|e| fail(e.to_string()))?;
        sys::sem_set_values(id, &values).map_err(|e| fail(e.to_string()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::{Path, PathBuf};
    use std::sync::atomic::{AtomicUsize, Ordering};

    const NS: u32 = 11;

    /// A scratch image directory, removed at the end of the test.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(tag: &str) -> Scratch {
            static N: AtomicUsize = AtomicUsize::new(0);
            let p = std::env::temp_dir().join(format!(
                "stasis-ipc-restore-{tag}-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            let _ = std::fs::remove_dir_all(&p);
            std::fs::create_dir_all(&p).unwrap();
            Scratch(p)
        }

        fn dir(&self) -> ImageDir {
            ImageDir::open(&self.0).unwrap()
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// Runs `f` in a thread of a new, empty ipc namespace.
    fn in_fresh_ipc_ns<T: Send>(f: impl FnOnce() -> T + Send) -> T {
        std::thread::scope(|s| {
            s.spawn(|| {
                sys::unshare(libc::CLONE_NEWIPC).expect("unshare(CLONE_NEWIPC)");
                f()
            })
            .join()
            .expect("ipc thread")
        })
    }

    fn sysctl(name: &str) -> String {
        std::fs::read_to_string(format!("/proc/sys/{name}")).unwrap()
    }

    const SYSCTLS: [&str; 16] = [
        "kernel/sem",
        "kernel/msgmax",
        "kernel/msgmnb",
        "kernel/msgmni",
        "kernel/shmmax",
        "kernel/shmall",
        "kernel/shmmni",
        "kernel/shm_rmid_forced",
        "kernel/msg_next_id",
        "kernel/sem_next_id",
        "kernel/shm_next_id",
        "fs/mqueue/queues_max",
        "fs/mqueue/msg_max",
        "fs/mqueue/msgsize_max",
        "fs/mqueue/msg_default",
        "fs/mqueue/msgsize_default",
    ];

    type Messages = Vec<(i64, Vec<u8>)>;

    /// Everything a user of the namespace can observe, read without changing it.
    #[derive(Debug, PartialEq)]
    struct Snapshot {
        shm: Vec<(i32, IpcPerm, Vec<u8>)>,
        sem: Vec<(i32, IpcPerm, Vec<u16>)>,
        msg: Vec<(i32, IpcPerm, u64, Messages)>,
        sysctls: Vec<(&'static str, String)>,
    }

    fn snapshot() -> Snapshot {
        let mut shm = Vec::new();
        for i in 0..=sys::shm_census().unwrap().max_index {
            if let Some((id, st)) = sys::shm_stat_index(i).unwrap() {
                let seg = sys::ShmAttachment::attach(id, true).unwrap();
                let mut bytes = vec![0u8; seg.len()];
                seg.read_at(0, &mut bytes).unwrap();
                shm.push((id, st.perm, bytes));
            }
        }
        let mut sem = Vec::new();
        for i in 0..=sys::sem_census().unwrap().max_index {
            if let Some((id, st)) = sys::sem_stat_index(i).unwrap() {
                sem.push((id, st.perm, sys::sem_values(id).unwrap()));
            }
        }
        let mut msg = Vec::new();
        for i in 0..=sys::msg_census().unwrap().max_index {
            if let Some((id, st)) = sys::msg_stat_index(i).unwrap() {
                let texts = (0..st.qnum)
                    .map(|n| sys::msg_copy(id, n, 1 << 16).unwrap())
                    .collect();
                msg.push((id, st.perm, st.qbytes, texts));
            }
        }
        let sysctls = SYSCTLS.iter().map(|n| (*n, sysctl(n))).collect();
        Snapshot {
            shm,
            sem,
            msg,
            sysctls,
        }
    }

    fn pattern(len: usize, seed: u8) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(7).wrapping_add(seed))
            .collect()
    }

    const SHM_SIZE: usize = 3 * 4096 + 77;
    const SHM_ID: i32 = 65541;
    const MSG_ID: i32 = 98317;

    /// Fills the calling thread's (new) namespace with one object of each kind and more.
    fn populate() {
        std::fs::write("/proc/sys/kernel/msgmax", "16384").unwrap();
        std::fs::write("/proc/sys/kernel/msgmnb", "65536").unwrap();

        // A keyed segment at a chosen id (index 5, sequence 2), owned by someone else.
        std::fs::write("/proc/sys/kernel/shm_next_id", SHM_ID.to_string()).unwrap();
        let id = sys::shmget(0x1234, SHM_SIZE as u64, libc::IPC_CREAT | 0o600).unwrap();
        assert_eq!(id, SHM_ID);
        let seg = sys::ShmAttachment::attach(id, false).unwrap();
        seg.write_at(0, &pattern(SHM_SIZE, 3)).unwrap();
        seg.detach().unwrap();
        let perm = IpcPerm {
            uid: 1000,
            gid: 1001,
            mode: 0o640,
            ..sys::shm_stat(id).unwrap().perm
        };
        sys::shm_set(id, &perm).unwrap();

        // A private segment created by another user (its cuid/cgid are not ours).
        sys::set_thread_egid(1600).unwrap();
        sys::set_thread_euid(1500).unwrap();
        let private = sys::shmget(libc::IPC_PRIVATE, 100, libc::IPC_CREAT | 0o666);
        sys::set_thread_euid(0).unwrap();
        sys::set_thread_egid(0).unwrap();
        let seg = sys::ShmAttachment::attach(private.unwrap(), false).unwrap();
        seg.write_at(0, b"hello from a private segment").unwrap();
        seg.detach().unwrap();

        let sem = sys::semget(0x5e, 4, libc::IPC_CREAT | 0o600).unwrap();
        sys::sem_set_values(sem, &[0, 7, 32767, 1]).unwrap();

        std::fs::write("/proc/sys/kernel/msg_next_id", MSG_ID.to_string()).unwrap();
        let q = sys::msgget(0x77, libc::IPC_CREAT | 0o620).unwrap();
        assert_eq!(q, MSG_ID);
        let perm = sys::msg_stat(q).unwrap().perm;
        sys::msg_set(q, &perm, 50000).unwrap();
        sys::msgsnd(q, 5, b"", 0).unwrap();
        sys::msgsnd(q, 1, b"thirteen byte", 0).unwrap();
        sys::msgsnd(q, 9, &pattern(16000, 11), 0).unwrap();

        // An id the namespace asked for itself and has not used yet.
        std::fs::write("/proc/sys/kernel/sem_next_id", "777").unwrap();
    }

    /// Dumps a populated namespace into `images`; returns what it held before and after.
    fn dump_populated(images: &Path) -> (Snapshot, Snapshot) {
        let dir = ImageDir::open(images).unwrap();
        in_fresh_ipc_ns(|| {
            populate();
            let before = snapshot();
            let ns = PathBuf::from(format!("/proc/self/task/{}/ns/ipc", sys::gettid()));
            stasis_checkpoint::ipc::dump_ipc_ns_at(&ns, &dir, NS, None).unwrap();
            (before, snapshot())
        })
    }

    fn crit(args: &[&str]) -> std::process::Output {
        let out = std::process::Command::new("/usr/bin/crit")
            .args(args)
            .output()
            .expect("/usr/bin/crit must be installed to check the images");
        assert!(
            out.status.success(),
            "crit {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    #[test]
    fn a_namespace_comes_back_with_the_same_ids_keys_owners_contents_and_sysctls() {
        let images = Scratch::new("round-trip");
        let (before, after_dump) = dump_populated(&images.0);
        // MSG_COPY left every message queued; nothing else moved either.
        assert_eq!(before, after_dump);
        assert_eq!(before.msg[0].3.len(), 3);
        assert_eq!(before.shm.len(), 2);
        assert_eq!(before.shm[0].1.cuid, 1500);

        let restored = in_fresh_ipc_ns(|| {
            restore_ipc_ns(&images.dir(), NS).unwrap();
            snapshot()
        });
        assert_eq!(restored, before);
        let shm = &restored.shm[1];
        assert_eq!((shm.0, shm.1.key, shm.2.len()), (SHM_ID, 0x1234, SHM_SIZE));
        assert_eq!(
            (shm.1.uid, shm.1.gid, shm.1.mode & 0o777),
            (1000, 1001, 0o640)
        );
        let (id, _, qbytes, messages) = &restored.msg[0];
        assert_eq!((*id, *qbytes), (MSG_ID, 50000));
        let types: Vec<i64> = messages.iter().map(|m| m.0).collect();
        assert_eq!(types, [5, 1, 9]);
        assert_eq!(messages[2].1, pattern(16000, 11));
        assert_eq!(restored.sem[0].2, [0, 7, 32767, 1]);
        assert!(restored
            .sysctls
            .contains(&("kernel/sem_next_id", "777\n".to_string())));
    }

    #[test]
    fn crit_decodes_every_image_and_encodes_it_back_byte_for_byte() {
        let images = Scratch::new("crit");
        dump_populated(&images.0);
        let mut names: Vec<String> = std::fs::read_dir(&images.0)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(
            names,
            [
                "ipcns-msg-11.img",
                "ipcns-sem-11.img",
                "ipcns-shm-11.img",
                "ipcns-var-11.img"
            ]
        );
        for (name, magic) in [
            ("ipcns-var-11.img", "IPC_VAR"),
            ("ipcns-shm-11.img", "IPCNS_SHM"),
            ("ipcns-sem-11.img", "IPCNS_SEM"),
            ("ipcns-msg-11.img", "IPCNS_MSG"),
        ] {
            let img = images.0.join(name);
            let json = images.0.join(format!("{name}.json"));
            let back = images.0.join(format!("{name}.back"));
            let out = crit(&["decode", "-i", img.to_str().unwrap(), "--pretty"]);
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(text.contains(&format!("\"magic\": \"{magic}\"")), "{text}");
            if magic == "IPCNS_SHM" {
                // crit 3.17 cannot encode segments (it hands base64 a str); compare
                // what it decoded instead.
                let extra = text.split("\"extra\": \"").nth(1).expect("extra");
                let extra = extra.split('"').next().unwrap().replace("\\n", "");
                let mut contents = b"hello from a private segment".to_vec();
                contents.resize(100, 0);
                assert_eq!(base64_decode(&extra), contents);
                continue;
            }
            crit(&[
                "decode",
                "-i",
                img.to_str().unwrap(),
                "-o",
                json.to_str().unwrap(),
            ]);
            crit(&[
                "encode",
                "-i",
                json.to_str().unwrap(),
                "-o",
                back.to_str().unwrap(),
            ]);
            assert_eq!(
                std::fs::read(&img).unwrap(),
                std::fs::read(&back).unwrap(),
                "{name} changed through crit decode/encode"
            );
        }
        let out = crit(&[
            "decode",
            "-i",
            images.0.join("ipcns-sem-11.img").to_str().unwrap(),
        ]);
        let text = String::from_utf8_lossy(&out.stdout).replace(char::is_whitespace, "");
        assert!(text.contains("\"extra\":[0,7,32767,1]"), "{text}");
    }

    fn dumped_empty_ns(images: &Path) {
        let dir = ImageDir::open(images).unwrap();
        in_fresh_ipc_ns(|| {
            let ns = PathBuf::from(format!("/proc/self/task/{}/ns/ipc", sys::gettid()));
            stasis_checkpoint::ipc::dump_ipc_ns_at(&ns, &dir, NS, None).unwrap();
        });
    }

    fn restore_error(images: &Scratch) -> String {
        in_fresh_ipc_ns(|| restore_ipc_ns(&images.dir(), NS)).unwrap_err()
    }

    fn base64_decode(text: &str) -> Vec<u8> {
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut out = Vec::new();
        let (mut acc, mut bits) = (0u32, 0);
        for c in text.bytes().filter(|&c| c != b'=') {
            let v = ALPHABET.iter().position(|&a| a == c).expect("base64") as u32;
            acc = acc << 6 | v;
            bits += 6;
            if bits >= 8 {
                bits -= 8;
                out.push((acc >> bits) as u8);
                acc &= (1 << bits) - 1;
            }
        }
        out
    }

    fn desc(id: u32) -> pb::IpcDescEntry {
        pb::IpcDescEntry {
            key: 0x99,
            uid: 0,
            gid: 0,
            cuid: 0,
            cgid: 0,
            mode: 0o600,
            id,
        }
    }

    #[test]
    fn a_truncated_segment_is_refused_naming_the_file_and_the_segment() {
        let good = Scratch::new("good");
        dump_populated(&good.0);
        let bad = Scratch::new("truncated");
        for name in ["ipcns-var-11.img", "ipcns-shm-11.img"] {
            std::fs::copy(good.0.join(name), bad.0.join(name)).unwrap();
        }
        let shm = bad.0.join("ipcns-shm-11.img");
        let len = std::fs::metadata(&shm).unwrap().len();
        let f = std::fs::OpenOptions::new().write(true).open(&shm).unwrap();
        f.set_len(len - 50).unwrap();
        let e = restore_error(&bad);
        assert!(e.contains("ipcns-shm-11.img"), "{e}");
        assert!(
            e.contains(&format!("shm segment id {SHM_ID} (key 0x1234)")),
            "{e}"
        );
    }

    #[test]
    fn a_message_above_msgmax_is_refused_before_anything_is_read() {
        let images = Scratch::new("msgmax");
        dumped_empty_ns(&images.0);
        let dir = images.dir();
        let mut w = dir
            .writer(ImageKind::IPCNS_MSG, &names::ipcns_msg(NS))
            .unwrap();
        w.entry(&pb::IpcMsgEntry {
            desc: desc(0),
            qbytes: 16384,
            qnum: 1,
        })
        .unwrap();
        w.entry(&pb::IpcMsg {
            mtype: 1,
            msize: 1 << 30,
        })
        .unwrap();
        w.commit().unwrap();
        let e = restore_error(&images);
        assert!(
            e.contains("message queue id 0 (key 0x99): message 0"),
            "{e}"
        );
        assert!(e.contains("above msgmax"), "{e}");
    }

    #[test]
    fn a_semaphore_set_larger_than_semmsl_or_cut_short_is_refused() {
        let images = Scratch::new("sem");
        dumped_empty_ns(&images.0);
        let dir = images.dir();
        let name = names::ipcns_sem(NS);
        let set = |nsems: u32| pb::IpcSemEntry {
            desc: desc(3),
            nsems,
        };
        dir.write_one(ImageKind::IPCNS_SEM, &name, &set(10_000_000))
            .unwrap();
        let e = restore_error(&images);
        assert!(e.contains("semaphore set id 3 (key 0x99)"), "{e}");
        assert!(e.contains("outside 1..=semmsl"), "{e}");

        // Four semaphores announced, only the protobuf entry present.
        dir.write_one(ImageKind::IPCNS_SEM, &name, &set(4)).unwrap();
        let e = restore_error(&images);
        assert!(e.contains("the values of semaphore set id 3"), "{e}");
    }

    #[test]
    fn an_image_of_the_wrong_kind_is_refused() {
        let images = Scratch::new("magic");
        dumped_empty_ns(&images.0);
        let src = images.0.join(names::ipcns_var(NS));
        std::fs::copy(&src, images.0.join(names::ipcns_shm(NS))).unwrap();
        let e = restore_error(&images);
        assert!(e.contains("ipcns-shm-11.img"), "{e}");
    }

    #[test]
    fn a_namespace_that_already_holds_objects_is_refused() {
        let images = Scratch::new("busy");
        dumped_empty_ns(&images.0);
        let e = in_fresh_ipc_ns(|| {
            sys::msgget(0x42, libc::IPC_CREAT | 0o600).unwrap();
            restore_ipc_ns(&images.dir(), NS)
        })
        .unwrap_err();
        assert!(e.contains("already holds 1 message queues"), "{e}");
    }

    #[test]
    fn an_empty_namespace_restores_its_sysctls_only() {
        let images = Scratch::new("empty");
        let dir = images.dir();
        let before = in_fresh_ipc_ns(|| {
            std::fs::write("/proc/sys/kernel/shmmni", "1234").unwrap();
            std::fs::write("/proc/sys/fs/mqueue/msg_max", "77").unwrap();
            let ns = PathBuf::from(format!("/proc/self/task/{}/ns/ipc", sys::gettid()));
            stasis_checkpoint::ipc::dump_ipc_ns_at(&ns, &dir, NS, None).unwrap();
            snapshot()
        });
        let after = in_fresh_ipc_ns(|| {
            restore_ipc_ns(&dir, NS).unwrap();
            snapshot()
        });
        assert_eq!(after, before);
        assert!(after
            .sysctls
            .contains(&("kernel/shmmni", "1234\n".to_string())));
    }
}
