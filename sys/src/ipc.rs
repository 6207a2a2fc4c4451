//! System V IPC of the caller's ipc namespace: entering a namespace, listing shared
//! memory segments, semaphore sets and message queues by kernel index, reading and
//! setting their attributes, and moving their contents in and out (`MSG_COPY` reads a
//! queued message without taking it off the queue).
//!
//! An ipc namespace belongs to a *thread*: `setns(CLONE_NEWIPC)` and
//! `unshare(CLONE_NEWIPC)` change only the calling thread, and every call here acts on
//! the calling thread's namespace.

use crate::error::{check, Result, SysError};
use libc::{c_int, c_long};

/// `SHM_STAT`: `shmctl` by kernel index (not exported by `libc`).
const SHM_STAT: c_int = 13;
/// `SHM_INFO`: the highest index in use (not exported by `libc`).
const SHM_INFO: c_int = 14;
/// `MSG_COPY`: `msgrcv` copies message number `msgtyp` and leaves it queued.
const MSG_COPY: c_int = 0o40000;

/// `SHM_DEST` in a segment's mode: removed, alive only while attached.
pub const SHM_DEST: u32 = 0o1000;
/// `SHM_LOCKED` in a segment's mode: locked in memory by `SHM_LOCK`.
pub const SHM_LOCKED: u32 = 0o2000;
/// `SHM_HUGETLB`, the `shmget` flag for a segment of huge pages.
pub const SHM_HUGETLB: u32 = 0o4000;

pub use crate::ns::{setns, unshare};

/// The kernel id of the calling thread.
pub fn gettid() -> i32 {
    // SAFETY: gettid takes no arguments and cannot fail.
    unsafe { libc::gettid() }
}

/// Sets the calling thread's effective uid, leaving the real and saved ones alone (a
/// raw syscall: glibc's wrapper would change every thread of the process). With a saved
/// uid of 0 the thread can switch back, which gives it its capabilities again. Used to
/// create an IPC object whose creator (`cuid`) is someone else.
pub fn set_thread_euid(uid: u32) -> Result<()> {
    let keep = u32::MAX as libc::c_ulong;
    // SAFETY: setresuid takes plain integers (-1 keeps a value).
    let r = unsafe { libc::syscall(libc::SYS_setresuid, keep, uid as libc::c_ulong, keep) };
    check(r, "setresuid", format!("euid {uid}")).map(drop)
}

/// Sets the calling thread's effective gid only (see [`set_thread_euid`]).
pub fn set_thread_egid(gid: u32) -> Result<()> {
    let keep = u32::MAX as libc::c_ulong;
    // SAFETY: setresgid takes plain integers (-1 keeps a value).
    let r = unsafe { libc::syscall(libc::SYS_setresgid, keep, gid as libc::c_ulong, keep) };
    check(r, "setresgid", format!("egid {gid}")).map(drop)
}

/// The calling thread's effective uid and gid.
pub fn effective_ids() -> (u32, u32) {
    // SAFETY: geteuid and getegid take no arguments and cannot fail.
    unsafe { (libc::geteuid(), libc::getegid()) }
}

/// What every System V IPC object carries (`struct ipc_perm`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IpcPerm {
    pub key: i32,
    pub uid: u32,
    pub gid: u32,
    pub cuid: u32,
    pub cgid: u32,
    /// Permission bits, plus `SHM_DEST`/`SHM_LOCKED` for segments.
    pub mode: u32,
}

impl IpcPerm {
    fn from_raw(p: &libc::ipc_perm) -> IpcPerm {
        IpcPerm {
            key: p.__key,
            uid: p.uid,
            gid: p.gid,
            cuid: p.cuid,
            cgid: p.cgid,
            mode: p.mode.into(),
        }
    }

    /// Copies the settable fields (owner and permission bits) into `p`.
    fn apply(&self, p: &mut libc::ipc_perm) {
        p.uid = self.uid;
        p.gid = self.gid;
        p.mode = (self.mode & 0o777) as libc::c_ushort;
    }
}

/// A shared memory segment's attributes (`struct shmid_ds`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShmStat {
    pub perm: IpcPerm,
    pub size: u64,
    pub nattch: u64,
}

/// A semaphore set's attributes (`struct semid_ds`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SemStat {
    pub perm: IpcPerm,
    pub nsems: u32,
}

/// A message queue's attributes (`struct msqid_ds`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MsgStat {
    pub perm: IpcPerm,
    /// Bytes currently queued.
    pub cbytes: u64,
    /// Messages currently queued.
    pub qnum: u64,
    /// Most bytes the queue may hold.
    pub qbytes: u64,
}

/// How many objects of a kind exist and the highest kernel index in use (-1: none).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IpcCensus {
    pub in_use: u32,
    pub max_index: i32,
}

fn zeroed<T>() -> T {
    // SAFETY: only instantiated with the plain-integer C structs of this module, for
    // which all-zero bytes are a valid value.
    unsafe { std::mem::zeroed() }
}

/// A stat-by-index result: EINVAL means the slot is empty.
fn by_index(ret: c_int, op: &'static str, index: i32) -> Result<Option<i32>> {
    if ret >= 0 {
        return Ok(Some(ret));
    }
    let e = SysError::last(op, format!("index {index}"));
    if e.errno() == Some(libc::EINVAL) {
        Ok(None)
    } else {
        Err(e)
    }
}

// ---------------------------------------------------------------- shared memory

/// The kernel's `struct shm_info` (what `SHM_INFO` fills in).
#[repr(C)]
struct ShmInfo {
    used_ids: c_int,
    shm_tot: libc::c_ulong,
    shm_rss: libc::c_ulong,
    shm_swp: libc::c_ulong,
    swap_attempts: libc::c_ulong,
    swap_successes: libc::c_ulong,
}

/// Segments in use and the highest index (`SHM_INFO`).
pub fn shm_census() -> Result<IpcCensus> {
    let mut info = ShmInfo {
        used_ids: 0,
        shm_tot: 0,
        shm_rss: 0,
        shm_swp: 0,
        swap_attempts: 0,
        swap_successes: 0,
    };
    // SAFETY: SHM_INFO writes a struct shm_info, which `info` is; shm_info is smaller
    // than shmid_ds, the type the prototype names.
    let r = unsafe {
        libc::shmctl(
            0,
            SHM_INFO,
            (&mut info as *mut ShmInfo).cast::<libc::shmid_ds>(),
        )
    };
    let max = check(r as c_long, "shmctl(SHM_INFO)", "ipc namespace")?;
    Ok(IpcCensus {
        in_use: info.used_ids.max(0) as u32,
        max_index: max as i32,
    })
}

fn shm_stat_of(ds: &libc::shmid_ds) -> ShmStat {
    ShmStat {
        perm: IpcPerm::from_raw(&ds.shm_perm),
        size: ds.shm_segsz as u64,
        nattch: ds.shm_nattch,
    }
}

/// The segment at kernel `index`, with its id; `None` for an empty slot (`SHM_STAT`).
pub fn shm_stat_index(index: i32) -> Result<Option<(i32, ShmStat)>> {
    let mut ds: libc::shmid_ds = zeroed();
    // SAFETY: SHM_STAT writes a struct shmid_ds, which `ds` is.
    let r = unsafe { libc::shmctl(index, SHM_STAT, &mut ds) };
    Ok(by_index(r, "shmctl(SHM_STAT)", index)?.map(|id| (id, shm_stat_of(&ds))))
}

/// A segment's attributes by id (`IPC_STAT`).
pub fn shm_stat(id: i32) -> Result<ShmStat> {
    let mut ds: libc::shmid_ds = zeroed();
    // SAFETY: IPC_STAT writes a struct shmid_ds, which `ds` is.
    let r = unsafe { libc::shmctl(id, libc::IPC_STAT, &mut ds) };
    check(r as c_long, "shmctl(IPC_STAT)", format!("shm id {id}"))?;
    Ok(shm_stat_of(&ds))
}

/// Sets a segment's owner and permission bits (`IPC_SET`).
pub fn shm_set(id: i32, perm: &IpcPerm) -> Result<()> {
    let mut ds: libc::shmid_ds = zeroed();
    // SAFETY: IPC_STAT writes a struct shmid_ds, which `ds` is.
    let r = unsafe { libc::shmctl(id, libc::IPC_STAT, &mut ds) };
    check(r as c_long, "shmctl(IPC_STAT)", format!("shm id {id}"))?;
    perm.apply(&mut ds.shm_perm);
    // SAFETY: IPC_SET reads a struct shmid_ds, which `ds` is.
    let r = unsafe { libc::shmctl(id, libc::IPC_SET, &mut ds) };
    check(r as c_long, "shmctl(IPC_SET)", format!("shm id {id}")).map(drop)
}

/// Locks a segment in memory (`SHM_LOCK`).
pub fn shm_lock(id: i32) -> Result<()> {
    // SAFETY: SHM_LOCK does not touch the buffer argument.
    let r = unsafe { libc::shmctl(id, libc::SHM_LOCK, std::ptr::null_mut()) };
    check(r as c_long, "shmctl(SHM_LOCK)", format!("shm id {id}")).map(drop)
}

/// `shmget(key, size, flags)`; returns the id.
pub fn shmget(key: i32, size: u64, flags: i32) -> Result<i32> {
    // SAFETY: plain integer arguments.
    let r = unsafe { libc::shmget(key, size as usize, flags) };
    check(r as c_long, "shmget", format!("key {key:#x} size {size}")).map(|id| id as i32)
}

/// A segment attached to the caller's address space, detached on drop.
///
/// Access goes through copies ([`ShmAttachment::read_at`], [`ShmAttachment::write_at`])
/// rather than slices: other processes may write the segment at any time.
#[derive(Debug)]
pub struct ShmAttachment {
    addr: *mut u8,
    len: usize,
    id: i32,
}

impl ShmAttachment {
    /// Attaches segment `id` (read-only or read-write) at an address the kernel picks.
    /// The usable length is the segment's size, read after attaching.
    pub fn attach(id: i32, read_only: bool) -> Result<ShmAttachment> {
        let flags = if read_only { libc::SHM_RDONLY } else { 0 };
        // SAFETY: a null address lets the kernel choose a free range; no existing
        // mapping of this process is replaced.
        let addr = unsafe { libc::shmat(id, std::ptr::null(), flags) };
        if addr as isize == -1 {
            return Err(SysError::last("shmat", format!("shm id {id}")));
        }
        let mut me = ShmAttachment {
            addr: addr.cast(),
            len: 0,
            id,
        };
        // The mapping covers the segment's size rounded up to pages; while attached,
        // the segment cannot go away, so its size is fixed.
        me.len = usize::try_from(shm_stat(id)?.size)
            .map_err(|_| SysError::from_errno("shmat", format!("shm id {id}"), libc::EFBIG))?;
        Ok(me)
    }

    /// The segment's size in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the segment is empty (never: the kernel refuses size 0).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The address the segment is attached at.
    pub fn addr(&self) -> usize {
        self.addr as usize
    }

    fn check_range(&self, offset: usize, n: usize, op: &'static str) -> Result<()> {
        match offset.checked_add(n) {
            Some(end) if end <= self.len => Ok(()),
            _ => Err(SysError::from_errno(
                op,
                format!(
                    "shm id {}: bytes {offset}+{n} of a {}-byte segment",
                    self.id, self.len
                ),
                libc::EINVAL,
            )),
        }
    }

    /// Copies `buf.len()` bytes at `offset` of the segment into `buf`.
    pub fn read_at(&self, offset: usize, buf: &mut [u8]) -> Result<()> {
        self.check_range(offset, buf.len(), "read shm")?;
        // SAFETY: offset..offset+len lies inside the attached mapping (checked above),
        // which stays mapped for the life of self; `buf` is a distinct, writable buffer.
        unsafe {
            std::ptr::copy_nonoverlapping(self.addr.add(offset), buf.as_mut_ptr(), buf.len())
        };
        Ok(())
    }

    /// Copies `data` into the segment at `offset` (needs a read-write attachment).
    pub fn write_at(&self, offset: usize, data: &[u8]) -> Result<()> {
        self.check_range(offset, data.len(), "write shm")?;
        // SAFETY: offset..offset+len lies inside the attached mapping (checked above),
        // which stays mapped for the life of self; a read-only attachment faults, which
        // callers avoid by attaching read-write to write.
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), self.addr.add(offset), data.len()) };
        Ok(())
    }

    /// Detaches, reporting a failure (dropping detaches silently).
    pub fn detach(mut self) -> Result<()> {
        let addr = std::mem::replace(&mut self.addr, std::ptr::null_mut());
        shmdt(addr, self.id)
    }
}

fn shmdt(addr: *mut u8, id: i32) -> Result<()> {
    // SAFETY: `addr` is the address shmat returned for this attachment, detached once.
    let r = unsafe { libc::shmdt(addr.cast()) };
    check(r as c_long, "shmdt", format!("shm id {id}")).map(drop)
}

impl Drop for ShmAttachment {
    fn drop(&mut self) {
        if !self.addr.is_null() {
            let _ = shmdt(self.addr, self.id);
        }
    }
}

// ---------------------------------------------------------------- semaphores

/// Semaphore sets in use and the highest index (`SEM_INFO`).
pub fn sem_census() -> Result<IpcCensus> {
    let mut info: libc::seminfo = zeroed();
    // SAFETY: SEM_INFO writes a struct seminfo through the semun pointer.
    let r = unsafe { libc::semctl(0, 0, libc::SEM_INFO, &mut info as *mut libc::seminfo) };
    let max = check(r as c_long, "semctl(SEM_INFO)", "ipc namespace")?;
    Ok(IpcCensus {
        in_use: info.semusz.max(0) as u32,
        max_index: max as i32,
    })
}

fn sem_stat_of(ds: &libc::semid_ds) -> SemStat {
    SemStat {
        perm: IpcPerm::from_raw(&ds.sem_perm),
        nsems: ds.sem_nsems as u32,
    }
}

/// The set at kernel `index`, with its id; `None` for an empty slot (`SEM_STAT`).
pub fn sem_stat_index(index: i32) -> Result<Option<(i32, SemStat)>> {
    let mut ds: libc::semid_ds = zeroed();
    // SAFETY: SEM_STAT writes a struct semid_ds through the semun pointer.
    let r = unsafe { libc::semctl(index, 0, libc::SEM_STAT, &mut ds as *mut libc::semid_ds) };
    Ok(by_index(r, "semctl(SEM_STAT)", index)?.map(|id| (id, sem_stat_of(&ds))))
}

/// A set's attributes by id (`IPC_STAT`).
pub fn sem_stat(id: i32) -> Result<SemStat> {
    let mut ds: libc::semid_ds = zeroed();
    // SAFETY: IPC_STAT writes a struct semid_ds through the semun pointer.
    let r = unsafe { libc::semctl(id, 0, libc::IPC_STAT, &mut ds as *mut libc::semid_ds) };
    check(r as c_long, "semctl(IPC_STAT)", format!("sem id {id}"))?;
    Ok(sem_stat_of(&ds))
}

/// Sets a set's owner and permission bits (`IPC_SET`).
pub fn sem_set(id: i32, perm: &IpcPerm) -> Result<()> {
    let mut ds: libc::semid_ds = zeroed();
    // SAFETY: IPC_STAT writes a struct semid_ds through the semun pointer.
    let r = unsafe { libc::semctl(id, 0, libc::IPC_STAT, &mut ds as *mut libc::semid_ds) };
    check(r as c_long, "semctl(IPC_STAT)", format!("sem id {id}"))?;
    perm.apply(&mut ds.sem_perm);
    // SAFETY: IPC_SET reads a struct semid_ds through the semun pointer.
    let r = unsafe { libc::semctl(id, 0, libc::IPC_SET, &mut ds as *mut libc::semid_ds) };
    check(r as c_long, "semctl(IPC_SET)", format!("sem id {id}")).map(drop)
}

/// `semget(key, nsems, flags)`; returns the id.
pub fn semget(key: i32, nsems: u32, flags: i32) -> Result<i32> {
    // SAFETY: plain integer arguments.
    let r = unsafe { libc::semget(key, nsems as c_int, flags) };
    check(r as c_long, "semget", format!("key {key:#x} nsems {nsems}")).map(|id| id as i32)
}

/// Every semaphore value of set `id` (`GETALL`).
pub fn sem_values(id: i32) -> Result<Vec<u16>> {
    // A set's size is fixed when it is created, so IPC_STAT tells how much GETALL
    // writes (a set removed and another created under the very same id in between
    // would need sem_next_id to be written by someone else meanwhile).
    let nsems = sem_stat(id)?.nsems as usize;
    let mut values = vec![0u16; nsems];
    // SAFETY: GETALL writes sem_nsems unsigned shorts through the semun pointer;
    // `values` holds that many.
    let r = unsafe { libc::semctl(id, 0, libc::GETALL, values.as_mut_ptr()) };
    check(r as c_long, "semctl(GETALL)", format!("sem id {id}"))?;
    Ok(values)
}

/// Sets every semaphore value of set `id` (`SETALL`); `values` must hold exactly
/// the set's number of semaphores.
pub fn sem_set_values(id: i32, values: &[u16]) -> Result<()> {
    let nsems = sem_stat(id)?.nsems as usize;
    if nsems != values.len() {
        return Err(SysError::from_errno(
            "semctl(SETALL)",
            format!(
                "sem id {id}: {} values for {nsems} semaphores",
                values.len()
            ),
            libc::EINVAL,
        ));
    }
    // SAFETY: SETALL reads sem_nsems unsigned shorts through the semun pointer; the
    // kernel copies them and does not write through it.
    let r = unsafe { libc::semctl(id, 0, libc::SETALL, values.as_ptr()) };
    check(r as c_long, "semctl(SETALL)", format!("sem id {id}")).map(drop)
}

// ---------------------------------------------------------------- message queues

/// Message queues in use and the highest index (`MSG_INFO`).
pub fn msg_census() -> Result<IpcCensus> {
    let mut info: libc::msginfo = zeroed();
    // SAFETY: MSG_INFO writes a struct msginfo, which is smaller than the msqid_ds the
    // prototype names.
    let r = unsafe {
        libc::msgctl(
            0,
            libc::MSG_INFO,
            (&mut info as *mut libc::msginfo).cast::<libc::msqid_ds>(),
        )
    };
    let max = check(r as c_long, "msgctl(MSG_INFO)", "ipc namespace")?;
    Ok(IpcCensus {
        in_use: info.msgpool.max(0) as u32,
        max_index: max as i32,
    })
}

fn msg_stat_of(ds: &libc::msqid_ds) -> MsgStat {
    MsgStat {
        perm: IpcPerm::from_raw(&ds.msg_perm),
        cbytes: ds.__msg_cbytes,
        qnum: ds.msg_qnum,
        qbytes: ds.msg_qbytes,
    }
}

/// The queue at kernel `index`, with its id; `None` for an empty slot (`MSG_STAT`).
pub fn msg_stat_index(index: i32) -> Result<Option<(i32, MsgStat)>> {
    let mut ds: libc::msqid_ds = zeroed();
    // SAFETY: MSG_STAT writes a struct msqid_ds, which `ds` is.
    let r = unsafe { libc::msgctl(index, libc::MSG_STAT, &mut ds) };
    Ok(by_index(r, "msgctl(MSG_STAT)", index)?.map(|id| (id, msg_stat_of(&ds))))
}

/// A queue's attributes by id (`IPC_STAT`).
pub fn msg_stat(id: i32) -> Result<MsgStat> {
    let mut ds: libc::msqid_ds = zeroed();
    // SAFETY: IPC_STAT writes a struct msqid_ds, which `ds` is.
    let r = unsafe { libc::msgctl(id, libc::IPC_STAT, &mut ds) };
    check(r as c_long, "msgctl(IPC_STAT)", format!("msg id {id}"))?;
    Ok(msg_stat_of(&ds))
}

/// Sets a queue's owner, permission bits and byte limit (`IPC_SET`; raising the limit
/// above `msgmnb` needs CAP_SYS_RESOURCE).
pub fn msg_set(id: i32, perm: &IpcPerm, qbytes: u64) -> Result<()> {
    let mut ds: libc::msqid_ds = zeroed();
    // SAFETY: IPC_STAT writes a struct msqid_ds, which `ds` is.
    let r = unsafe { libc::msgctl(id, libc::IPC_STAT, &mut ds) };
    check(r as c_long, "msgctl(IPC_STAT)", format!("msg id {id}"))?;
    perm.apply(&mut ds.msg_perm);
    ds.msg_qbytes = qbytes;
    // SAFETY: IPC_SET reads a struct msqid_ds, which `ds` is.
    let r = unsafe { libc::msgctl(id, libc::IPC_SET, &mut ds) };
    check(r as c_long, "msgctl(IPC_SET)", format!("msg id {id}")).map(drop)
}

/// `msgget(key, flags)`; returns the id.
pub fn msgget(key: i32, flags: i32) -> Result<i32> {
    // SAFETY: plain integer arguments.
    let r = unsafe { libc::msgget(key, flags) };
    check(r as c_long, "msgget", format!("key {key:#x}")).map(|id| id as i32)
}

/// The `long mtype` header of a `struct msgbuf`.
const MTYPE: usize = std::mem::size_of::<c_long>();

/// Copies message number `index` (0 = the oldest) of queue `id` without removing it
/// (`MSG_COPY | IPC_NOWAIT`); returns its type and text. A text longer than `max_len`
/// is an error (`E2BIG`); past the last message, `ENOMSG`.
pub fn msg_copy(id: i32, index: u64, max_len: usize) -> Result<(i64, Vec<u8>)> {
    // msgbuf: a long then the text; a Vec<c_long> keeps the header aligned.
    let words = max_len.div_ceil(MTYPE) + 1;
    let mut buf: Vec<c_long> = vec![0; words];
    // SAFETY: `buf` holds the mtype word plus at least max_len text bytes, and the
    // kernel writes at most max_len text bytes.
    let r = unsafe {
        libc::msgrcv(
            id,
            buf.as_mut_ptr().cast(),
            max_len,
            index as c_long,
            libc::IPC_NOWAIT | MSG_COPY,
        )
    };
    let n = check(
        r as c_long,
        "msgrcv(MSG_COPY)",
        format!("msg id {id} message {index}"),
    )? as usize;
    let mtype = buf[0] as i64;
    let bytes: Vec<u8> = buf[1..]
        .iter()
        .flat_map(|w| w.to_ne_bytes())
        .take(n)
        .collect();
    Ok((mtype, bytes))
}

/// Appends a message to queue `id` (`msgsnd`; `IPC_NOWAIT` in `flags` to fail rather
/// than wait when the queue is full).
pub fn msgsnd(id: i32, mtype: i64, text: &[u8], flags: i32) -> Result<()> {
    let mut buf: Vec<u8> = Vec::with_capacity(MTYPE + text.len());
    buf.extend_from_slice(&(mtype as c_long).to_ne_bytes());
    buf.extend_from_slice(text);
    // SAFETY: `buf` is a struct msgbuf: the mtype word then text.len() bytes, which the
    // kernel only reads.
    let r = unsafe { libc::msgsnd(id, buf.as_ptr().cast(), text.len(), flags) };
    check(
        r as c_long,
        "msgsnd",
        format!("msg id {id} type {mtype} ({} bytes)", text.len()),
    )
    .map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `f` in a thread of its own ipc namespace (needs CAP_SYS_ADMIN).
    fn in_fresh_ipc_ns<T: Send>(f: impl FnOnce() -> T + Send) -> T {
        std::thread::scope(|s| {
            s.spawn(|| {
                unshare(libc::CLONE_NEWIPC).expect("unshare(CLONE_NEWIPC)");
                f()
            })
            .join()
            .expect("ipc thread")
        })
    }

    #[test]
    fn a_fresh_namespace_has_no_objects_and_index_stat_reports_empty_slots() {
        in_fresh_ipc_ns(|| {
            for c in [shm_census(), sem_census(), msg_census()] {
                assert_eq!(c.unwrap().in_use, 0);
            }
            assert_eq!(shm_stat_index(0).unwrap(), None);
            assert_eq!(sem_stat_index(0).unwrap(), None);
            assert_eq!(msg_stat_index(0).unwrap(), None);
        });
    }

    #[test]
    fn msg_copy_reads_messages_in_order_and_leaves_them_queued() {
        in_fresh_ipc_ns(|| {
            let id = msgget(0x51, libc::IPC_CREAT | 0o600).unwrap();
            msgsnd(id, 7, b"first", 0).unwrap();
            msgsnd(id, 3, b"second message", 0).unwrap();
            assert_eq!(msg_copy(id, 0, 64).unwrap(), (7, b"first".to_vec()));
            assert_eq!(
                msg_copy(id, 1, 64).unwrap(),
                (3, b"second message".to_vec())
            );
            let e = msg_copy(id, 2, 64).unwrap_err();
            assert_eq!(e.errno(), Some(libc::ENOMSG));
            let e = msg_copy(id, 1, 4).unwrap_err();
            assert_eq!(e.errno(), Some(libc::E2BIG));
            assert_eq!(msg_stat(id).unwrap().qnum, 2);
        });
    }

    #[test]
    fn shm_attachment_copies_in_and_out_within_the_segment_only() {
        in_fresh_ipc_ns(|| {
            let id = shmget(0x52, 5000, libc::IPC_CREAT | 0o600).unwrap();
            let (found, st) = shm_stat_index(0).unwrap().expect("segment at index 0");
            assert_eq!((found, st.size, st.perm.key), (id, 5000, 0x52));
            let rw = ShmAttachment::attach(id, false).unwrap();
            assert_eq!(rw.len(), 5000);
            rw.write_at(4990, b"0123456789").unwrap();
            assert!(rw.write_at(4991, b"0123456789").is_err());
            rw.detach().unwrap();
            let ro = ShmAttachment::attach(id, true).unwrap();
            let mut back = [0u8; 10];
            ro.read_at(4990, &mut back).unwrap();
            assert_eq!(&back, b"0123456789");
        });
    }

    #[test]
    fn semaphore_values_round_trip_and_a_wrong_count_is_refused() {
        in_fresh_ipc_ns(|| {
            let id = semget(0x53, 3, libc::IPC_CREAT | 0o600).unwrap();
            sem_set_values(id, &[1, 200, 30000]).unwrap();
            assert_eq!(sem_values(id).unwrap(), [1, 200, 30000]);
            assert!(sem_set_values(id, &[1, 2]).is_err());
            let perm = IpcPerm {
                uid: 12,
                gid: 34,
                mode: 0o640,
                ..sem_stat(id).unwrap().perm
            };
            sem_set(id, &perm).unwrap();
            let got = sem_stat(id).unwrap().perm;
            assert_eq!((got.uid, got.gid, got.mode), (12, 34, 0o640));
        });
    }
}
