//! The namespaces of a dumped tree. The tree's root may live in namespaces of its own
//! (a container's init): those are dumped as objects of the image (`utsns-N`,
//! `mountpoints-N`, `ipcns-*-N`, `netns-N`...) and recreated at restore. Every other
//! process of the tree must share the root's namespaces.
//!
//! In its own pid namespace the root must be that namespace's init (PID 1), and every
//! PID written to the images is the PID inside that namespace (the last of `NSpid`).

use crate::{procfs, DumpError, Result};
use stasis_images::{names, pb, ImageDir, ImageKind};
use std::collections::HashMap;

/// The namespace kinds in the order of `task_kobj_ids_entry`'s ns fields.
pub const KINDS: [&str; 8] = ["pid", "net", "ipc", "uts", "mnt", "user", "cgroup", "time"];

/// Ids of the namespaces stasis itself lives in (`inventory.root_ids`).
pub const HOST_IDS: [u32; 8] = [5, 6, 7, 8, 9, 10, 11, 12];

/// Ids of the root's own namespaces, where it has one.
const OWN_IDS: [u32; 8] = [105, 106, 107, 108, 109, 110, 111, 112];

/// Which of [`KINDS`] the tree's root has of its own.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OwnNamespaces(pub [bool; 8]);

impl OwnNamespaces {
    /// The ns id recorded for kind `k`.
    pub fn id(&self, k: usize) -> u32 {
        if self.0[k] {
            OWN_IDS[k]
        } else {
            HOST_IDS[k]
        }
    }

    /// Whether the root has its own namespace of `kind` (a name of [`KINDS`]).
    pub fn has(&self, kind: &str) -> bool {
        KINDS
            .iter()
            .position(|k| *k == kind)
            .is_some_and(|k| self.0[k])
    }

    /// Fills the namespace ids of an ids entry.
    pub fn apply(&self, ids: &mut pb::TaskKobjIdsEntry) {
        ids.pid_ns_id = Some(self.id(0));
        ids.net_ns_id = Some(self.id(1));
        ids.ipc_ns_id = Some(self.id(2));
        ids.uts_ns_id = Some(self.id(3));
        ids.mnt_ns_id = Some(self.id(4));
        ids.user_ns_id = Some(self.id(5));
        ids.cgroup_ns_id = Some(self.id(6));
        ids.time_ns_id = Some(self.id(7));
    }
}

/// Compares the namespaces of the tree's root with stasis's own. In a pid namespace of
/// its own the root must be its init.
pub fn of_root(pid: i32) -> Result<OwnNamespaces> {
    let me = std::process::id() as i32;
    let mut own = OwnNamespaces::default();
    for (k, kind) in KINDS.iter().enumerate() {
        own.0[k] = procfs::ns_inode(pid, kind)? != procfs::ns_inode(me, kind)?;
    }
    if own.has("pid") {
        let ns = nspid(pid, pid)?;
        if ns.last() != Some(&1) {
            return Err(DumpError::Unsupported {
                pid,
                what: format!(
                    "is pid {} of its own pid namespace; only the namespace's init (pid 1) can be the root of a dump",
                    ns.last().copied().unwrap_or(0)
                ),
            });
        }
    }
    Ok(own)
}

/// Checks that a process of the tree (not the root) shares the root's namespaces.
pub fn same_as_root(pid: i32, root: i32) -> Result<()> {
    for kind in KINDS {
        if procfs::ns_inode(pid, kind)? != procfs::ns_inode(root, kind)? {
            return Err(DumpError::Unsupported {
                pid,
                what: format!(
                    "lives in another {kind} namespace than the root of the tree (pid {root}); nested namespaces are not supported yet"
                ),
            });
        }
    }
    Ok(())
}

/// The PIDs of a task in each pid namespace it is visible in, outermost first.
pub fn nspid(pid: i32, tid: i32) -> Result<Vec<i32>> {
    let text = procfs::text(pid, &format!("task/{tid}/status"))?;
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("NSpid:"))
        .ok_or_else(|| DumpError::Proc {
            path: format!("/proc/{pid}/task/{tid}/status"),
            what: "no NSpid line".into(),
        })?;
    Ok(line
        .split_whitespace()
        .filter_map(|s| s.parse().ok())
        .collect())
}

/// PIDs as the dumped tree sees them: host PID → PID in the root's pid namespace.
#[derive(Clone, Debug, Default)]
pub struct PidMap {
    virt: HashMap<i32, i32>,
    /// The uid and gid maps of the tree's own user namespace, if it has one.
    pub users: Option<IdMap>,
}

/// The uid and gid maps of a user namespace (`/proc/PID/uid_map`, `gid_map`): how its
/// ids are the host's. Ids the kernel shows the host's way (`/proc/PID/status`, IPC_STAT
/// from the host) are turned into the namespace's own with them, as CRIU records them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IdMap {
    pub uid: Vec<pb::UidGidExtent>,
    pub gid: Vec<pb::UidGidExtent>,
}

/// The id the kernel shows for a host id with no mapping (`/proc/sys/kernel/overflowuid`).
const OVERFLOW_ID: u32 = 65534;

/// The most lines a uid or gid map can have (the kernel's `UID_GID_MAP_MAX_EXTENTS`).
const MAX_EXTENTS: usize = 340;

impl IdMap {
    /// Reads the maps of `pid`'s user namespace.
    pub fn read(pid: i32) -> Result<IdMap> {
        Ok(IdMap {
            uid: read_extents(pid, "uid_map")?,
            gid: read_extents(pid, "gid_map")?,
        })
    }

    /// The namespace's uid for host uid `host` (the overflow uid when unmapped).
    pub fn uid(&self, host: u32) -> u32 {
        id_inside(&self.uid, host).unwrap_or(OVERFLOW_ID)
    }

    /// The namespace's gid for host gid `host`.
    pub fn gid(&self, host: u32) -> u32 {
        id_inside(&self.gid, host).unwrap_or(OVERFLOW_ID)
    }

    /// Turns host-view credentials into the namespace's own.
    pub fn creds(&self, c: &mut pb::CredsEntry) {
        for u in [&mut c.uid, &mut c.euid, &mut c.suid, &mut c.fsuid] {
            *u = self.uid(*u);
        }
        for g in [&mut c.gid, &mut c.egid, &mut c.sgid, &mut c.fsgid] {
            *g = self.gid(*g);
        }
        for g in &mut c.groups {
            *g = self.gid(*g);
        }
    }
}

/// The id a user namespace gives host id `host`, by one of its maps; `None` when the map
/// leaves it out.
pub fn id_inside(map: &[pb::UidGidExtent], host: u32) -> Option<u32> {
    map.iter()
        .find(|e| host >= e.lower_first && host - e.lower_first < e.count)
        .map(|e| e.first + (host - e.lower_first))
}

/// The host id that is id `inner` of a user namespace, by one of its maps; `None` when
/// the map leaves it out.
pub fn id_outside(map: &[pb::UidGidExtent], inner: u32) -> Option<u32> {
    map.iter()
        .find(|e| inner >= e.first && inner - e.first < e.count)
        .map(|e| e.lower_first + (inner - e.first))
}

fn read_extents(pid: i32, file: &str) -> Result<Vec<pb::UidGidExtent>> {
    let text = procfs::text(pid, file)?;
    let bad = || DumpError::Proc {
        path: format!("/proc/{pid}/{file}"),
        what: format!("unreadable map {text:?}"),
    };
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let n: Vec<u32> = line
            .split_whitespace()
            .map(|w| w.parse().map_err(|_| bad()))
            .collect::<Result<_>>()?;
        let [first, lower_first, count] = n[..] else {
            return Err(bad());
        };
        out.push(pb::UidGidExtent {
            first,
            lower_first,
            count,
        });
        if out.len() > MAX_EXTENTS {
            return Err(bad());
        }
    }
    Ok(out)
}

/// Writes `userns-<id>.img`: the maps of the root's own user namespace.
pub fn dump_userns(map: &IdMap, dir: &ImageDir, id: u32) -> Result<()> {
    let entry = pb::UsernsEntry {
        uid_map: map.uid.clone(),
        gid_map: map.gid.clone(),
    };
    dir.write_one(ImageKind::USERNS, &names::userns(id), &entry)?;
    Ok(())
}

impl PidMap {
    /// Records every task (and thread) `tids` of process `pid`.
    pub fn add(&mut self, pid: i32, tids: &[i32]) -> Result<()> {
        for &tid in tids {
            let ns = nspid(pid, tid)?;
            self.virt.insert(tid, ns.last().copied().unwrap_or(tid));
        }
        Ok(())
    }

    /// The PID inside the namespace; a PID not of the tree (a session or group leader
    /// outside it) maps to itself when there is no pid namespace, to 0 otherwise.
    pub fn virt(&self, host: i32) -> i32 {
        self.virt.get(&host).copied().unwrap_or(host)
    }

    /// Whether every PID is its own (no pid namespace of the tree's own).
    pub fn is_identity(&self) -> bool {
        self.virt.iter().all(|(h, v)| h == v)
    }

    /// A pgid or sid: translated when the leader is in the tree; outside a private pid
    /// namespace (0 when the tree has one, as the kernel reports it inside).
    pub fn virt_leader(&self, host: i32) -> i32 {
        match self.virt.get(&host) {
            Some(v) => *v,
            None if self.is_identity() => host,
            None => 0,
        }
    }
}

/// Writes `utsns-<id>.img` with the node and domain names of `pid`'s UTS namespace.
pub fn dump_uts(pid: i32, dir: &ImageDir, id: u32) -> Result<()> {
    let (nodename, domainname) = in_namespace(pid, "uts", libc::CLONE_NEWUTS, || {
        stasis_sys::ns::uts_names().map_err(|e| e.to_string())
    })?;
    dir.write_one(
        ImageKind::UTSNS,
        &names::utsns(id),
        &pb::UtsnsEntry {
            nodename,
            domainname,
        },
    )?;
    Ok(())
}

/// The roots of `pid`'s cgroup namespace, per hierarchy (`cpu,cpuacct` → `/ct1`): its
/// cgroups as the host sees them, which must be the namespace's root (the root of a
/// dump in a cgroup namespace of its own sits at that namespace's root, as a container's
/// init does).
pub fn cgroup_ns_roots(pid: i32) -> Result<Vec<(String, String)>> {
    let host = stasis_cgroup::hierarchy::membership(pid)?;
    let file = format!("/proc/{pid}/cgroup");
    let inside = in_namespace(pid, "cgroup", libc::CLONE_NEWCGROUP, || {
        let text = std::fs::read_to_string(&file).map_err(|e| format!("{file}: {e}"))?;
        stasis_cgroup::hierarchy::parse_membership(&text, &file).map_err(|e| e.to_string())
    })?;
    let mut roots = Vec::new();
    for m in host {
        let Some(i) = inside.iter().find(|i| i.name == m.name) else {
            continue;
        };
        // Seen from inside, the path below the namespace's root (a task moved into a
        // child cgroup after the unshare, as systemd does with init.scope).
        match namespace_root(&m.path, &i.path) {
            Some(root) => roots.push((m.name, root)),
            None => {
                return Err(DumpError::Unsupported {
                    pid,
                    what: format!(
                        "is in cgroup {} of hierarchy {:?}, which its cgroup namespace shows as {}: outside the namespace's root",
                        m.path, m.name, i.path
                    ),
                })
            }
        }
    }
    Ok(roots)
}

/// The root of a cgroup namespace, from a task's cgroup seen from the host (`host`) and
/// from inside the namespace (`inside`, "/" at its root); `None` for a task outside it
/// (`/../x`).
fn namespace_root(host: &str, inside: &str) -> Option<String> {
    if inside == "/" {
        return Some(host.to_string());
    }
    if inside.split('/').any(|c| c == "..") {
        return None;
    }
    let root = host.strip_suffix(inside)?;
    if root.is_empty() {
        Some("/".to_string())
    } else {
        Some(root.to_string())
    }
}

/// Writes `timens-<id>.img`: the namespace's CLOCK_MONOTONIC and CLOCK_BOOTTIME now
/// (this host's clocks plus the namespace's offsets), from which a restore continues.
pub fn dump_time(pid: i32, dir: &ImageDir, id: u32) -> Result<()> {
    let text = procfs::text(pid, "timens_offsets")?;
    let offset = |clock: &str| -> Result<i128> {
        let line = text
            .lines()
            .find(|l| l.split_whitespace().next() == Some(clock))
            .ok_or_else(|| DumpError::Proc {
                path: format!("/proc/{pid}/timens_offsets"),
                what: format!("no {clock} line in {text:?}"),
            })?;
        let v: Vec<i128> = line
            .split_whitespace()
            .skip(1)
            .filter_map(|x| x.parse().ok())
            .collect();
        match v[..] {
            [s, ns] => Ok(s * 1_000_000_000 + ns),
            _ => Err(DumpError::Proc {
                path: format!("/proc/{pid}/timens_offsets"),
                what: format!("cannot parse {line:?}"),
            }),
        }
    };
    let now = |clock: i32, name: &str| -> Result<pb::Timespec> {
        let (s, ns) = stasis_sys::fdops::clock_now(clock)?;
        let v = i128::from(s) * 1_000_000_000 + i128::from(ns) + offset(name)?;
        Ok(pb::Timespec {
            tv_sec: (v.max(0) / 1_000_000_000) as u64,
            tv_nsec: (v.max(0) % 1_000_000_000) as u64,
        })
    };
    let entry = pb::TimensEntry {
        monotonic: now(libc::CLOCK_MONOTONIC, "monotonic")?,
        boottime: now(libc::CLOCK_BOOTTIME, "boottime")?,
    };
    dir.write_one(ImageKind::TIMENS, &names::timens(id), &entry)?;
    Ok(())
}

/// Runs `f` on a thread of its own that has joined `pid`'s namespace of `kind` (UTS,
/// IPC and network namespaces can be joined by one thread of a process).
pub fn in_namespace<T: Send>(
    pid: i32,
    kind: &str,
    flag: i32,
    f: impl FnOnce() -> std::result::Result<T, String> + Send,
) -> Result<T> {
    let path = format!("/proc/{pid}/ns/{kind}");
    let ns = std::fs::File::open(&path).map_err(|source| DumpError::Io {
        path: path.clone().into(),
        source,
    })?;
    std::thread::scope(|s| {
        s.spawn(|| {
            stasis_sys::ns::setns(std::os::fd::AsFd::as_fd(&ns), flag)
                .map_err(|e| e.to_string())?;
            f()
        })
        .join()
        .unwrap_or_else(|_| Err("the namespace thread panicked".into()))
    })
    .map_err(|what| DumpError::Unsupported {
        pid,
        what: format!("in its {kind} namespace: {what}"),
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_cgroup_namespace_root_is_the_host_path_less_the_inside_one() {
        use super::namespace_root as r;
        assert_eq!(r("/ct", "/").as_deref(), Some("/ct"));
        assert_eq!(r("/ct/init.scope", "/init.scope").as_deref(), Some("/ct"));
        assert_eq!(r("/init.scope", "/init.scope").as_deref(), Some("/"));
        assert_eq!(r("/ct/a", "/b"), None);
        assert_eq!(r("/x", "/../x"), None);
    }

    use super::*;

    fn extent(first: u32, lower_first: u32, count: u32) -> pb::UidGidExtent {
        pb::UidGidExtent {
            first,
            lower_first,
            count,
        }
    }

    #[test]
    fn host_ids_become_the_namespaces_and_unmapped_ones_the_overflow_id() {
        let map = IdMap {
            uid: vec![extent(0, 100_000, 1000), extent(1000, 200_000, 10)],
            gid: vec![extent(0, 300_000, 65536)],
        };
        assert_eq!(map.uid(100_000), 0);
        assert_eq!(map.uid(100_999), 999);
        assert_eq!(map.uid(200_005), 1005);
        assert_eq!(map.uid(101_000), OVERFLOW_ID, "just past an extent");
        assert_eq!(
            map.uid(0),
            OVERFLOW_ID,
            "the host's root is not the container's"
        );
        let mut c = pb::CredsEntry {
            uid: 100_000,
            euid: 100_001,
            gid: 300_005,
            groups: vec![300_000, 7],
            ..Default::default()
        };
        map.creds(&mut c);
        assert_eq!((c.uid, c.euid, c.gid), (0, 1, 5));
        assert_eq!(c.groups, [0, OVERFLOW_ID]);
    }

    #[test]
    fn the_maps_of_this_process_are_read_as_the_kernel_prints_them() {
        let me = std::process::id() as i32;
        let map = IdMap::read(me).unwrap();
        assert_eq!(map.uid, [extent(0, 0, u32::MAX)], "the initial namespace");
        assert_eq!(map.uid(1234), 1234);
    }
}
