//! The namespaces of a restored tree. When the dumped root had namespaces of its own,
//! its restored copy is forked into new ones (`CLONE_NEWPID`, `CLONE_NEWNS`...). Before
//! anything else the root then rebuilds them from inside: the mount tree under `--root`
//! ending in `pivot_root`, the UTS names, the IPC objects. The network namespace is
//! configured from outside, by stasis, while the root waits.
//!
//! The mount tree is built in the root's own mount namespace, which is made private
//! first: nothing it mounts is ever seen by the host, and a failed restore takes every
//! mount with it when the root dies.

use crate::{RestoreError, Result};
use stasis_checkpoint::mounts::is_under;
use stasis_images::{names, pb, ImageDir, ImageKind};
use std::collections::HashMap;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

/// Namespace kinds in `task_kobj_ids_entry` order, with their clone flags.
const KINDS: [(&str, i32); 8] = [
    ("pid", libc::CLONE_NEWPID),
    ("net", libc::CLONE_NEWNET),
    ("ipc", libc::CLONE_NEWIPC),
    ("uts", libc::CLONE_NEWUTS),
    ("mnt", libc::CLONE_NEWNS),
    ("user", libc::CLONE_NEWUSER),
    ("cgroup", libc::CLONE_NEWCGROUP),
    ("time", libc::CLONE_NEWTIME),
];

/// The namespaces the restored root gets, and what goes into them.
#[derive(Clone, Debug, Default)]
pub struct NsPlan {
    /// `CLONE_NEW*` flags of the namespaces the root is forked into.
    pub flags: i32,
    pub uts: Option<pb::UtsnsEntry>,
    /// The mount tree (parents first), when the root has its own mount namespace.
    pub mounts: Vec<pb::MntEntry>,
    pub ipc_id: Option<u32>,
    pub net_id: Option<u32>,
    /// The root's network namespace was the caller's (`--external net[...]:KEY`): it
    /// joins the one given for KEY (`--inherit-fd fd[N]:KEY`) instead of a new one.
    pub net_ext_key: Option<String>,
    /// The root had a cgroup namespace of its own (rooted at its cgroups).
    pub cgroup: bool,
    /// The clocks of a time namespace of the root's own, at dump.
    pub time: Option<pb::TimensEntry>,
    /// Namespaces to join by path instead of creating (`--join-ns NS:PATH`).
    pub join: Vec<(i32, PathBuf)>,
    /// The uid and gid maps of a user namespace of the root's own: written by stasis
    /// into the new one before the root does anything in it.
    pub users: Option<pb::UsernsEntry>,
}

/// Most lines of a uid or gid map (the kernel's `UID_GID_MAP_MAX_EXTENTS`).
const MAX_EXTENTS: usize = 340;

/// A map as `/proc/PID/uid_map` takes it (one write, every line).
pub fn map_text(file: &str, map: &[pb::UidGidExtent]) -> Result<String> {
    if map.is_empty() || map.len() > MAX_EXTENTS {
        return Err(RestoreError::BadImage {
            file: file.to_string(),
            what: format!("a map of {} lines (1 to {MAX_EXTENTS})", map.len()),
        });
    }
    let mut text = String::new();
    for e in map {
        if e.count == 0 || e.first.checked_add(e.count).is_none() {
            return Err(RestoreError::BadImage {
                file: file.to_string(),
                what: format!("extent {} {} {}", e.first, e.lower_first, e.count),
            });
        }
        text.push_str(&format!("{} {} {}\n", e.first, e.lower_first, e.count));
    }
    Ok(text)
}

/// Gives the new user namespace of `pid` its maps (stasis is privileged over it: no
/// `setgroups` deny is needed).
pub fn write_id_maps(pid: i32, users: &pb::UsernsEntry) -> Result<()> {
    for (name, map) in [("uid_map", &users.uid_map), ("gid_map", &users.gid_map)] {
        let text = map_text(name, map)?;
        let path = format!("/proc/{pid}/{name}");
        std::fs::write(&path, text).map_err(|source| RestoreError::Io {
            path: path.into(),
            source,
        })?;
    }
    Ok(())
}

fn ids_of(ids: &pb::TaskKobjIdsEntry) -> [Option<u32>; 8] {
    [
        ids.pid_ns_id,
        ids.net_ns_id,
        ids.ipc_ns_id,
        ids.uts_ns_id,
        ids.mnt_ns_id,
        ids.user_ns_id,
        ids.cgroup_ns_id,
        ids.time_ns_id,
    ]
}

/// Reads which namespaces the root had of its own (its ids differ from the dumping
/// stasis's `inventory.root_ids`) and their images.
pub fn read(
    dir: &ImageDir,
    inventory: &pb::InventoryEntry,
    root: &pb::TaskKobjIdsEntry,
) -> Result<NsPlan> {
    let host = inventory.root_ids.as_ref().map(ids_of).unwrap_or_default();
    let task = ids_of(root);
    let mut plan = NsPlan::default();
    for (k, (kind, flag)) in KINDS.iter().enumerate() {
        let (Some(h), Some(t)) = (host[k], task[k]) else {
            continue;
        };
        if h == t {
            continue;
        }
        match *kind {
            "time" => {
                plan.time = Some(dir.read_one(ImageKind::TIMENS, &names::timens(t))?);
                // Entered by the root itself (its offsets are set before anyone is in
                // it), not by a clone flag.
                continue;
            }
            "cgroup" => {
                // Unshared by the root once stasis has put it into its cgroups, so that
                // they are the new namespace's root.
                plan.cgroup = true;
                continue;
            }
            "user" => {
                let name = names::userns(t);
                let users: pb::UsernsEntry = dir.read_one(ImageKind::USERNS, &name)?;
                map_text(&name, &users.uid_map)?;
                map_text(&name, &users.gid_map)?;
                plan.users = Some(users);
            }
            "uts" => {
                plan.uts = Some(dir.read_one(ImageKind::UTSNS, &names::utsns(t))?);
            }
            "mnt" => {
                plan.mounts = dir.read(ImageKind::MNTS, &names::mountpoints(t))?;
                order_mounts(&names::mountpoints(t), &mut plan.mounts)?;
            }
            "ipc" => plan.ipc_id = Some(t),
            "net" => {
                plan.net_id = Some(t);
                if let Some(entry) =
                    dir.read_if_exists::<pb::NetnsEntry>(ImageKind::NETNS, &names::netns(t))?
                {
                    plan.net_ext_key = entry.into_iter().next().and_then(|e| e.ext_key);
                }
                if plan.net_ext_key.is_some() {
                    // Joined at restore, not created.
                    continue;
                }
            }
            _ => {}
        }
        plan.flags |= flag;
    }
    Ok(plan)
}

/// Puts the root mount first and every mount after its parent; refuses a tree with no
/// root, or with mounts not reachable from it.
fn order_mounts(file: &str, mounts: &mut Vec<pb::MntEntry>) -> Result<()> {
    let bad = |what: String| RestoreError::BadImage {
        file: file.to_string(),
        what,
    };
    let ids: std::collections::HashSet<u32> = mounts.iter().map(|m| m.mnt_id).collect();
    let roots: Vec<usize> = (0..mounts.len())
        .filter(|&i| {
            mounts[i].parent_mnt_id == mounts[i].mnt_id || !ids.contains(&mounts[i].parent_mnt_id)
        })
        .collect();
    if roots.len() != 1 {
        return Err(bad(format!("{} root mounts (one expected)", roots.len())));
    }
    let mut out = vec![mounts[roots[0]].clone()];
    let mut placed: std::collections::HashSet<u32> = [out[0].mnt_id].into();
    while out.len() < mounts.len() {
        let before = out.len();
        for m in mounts.iter() {
            if !placed.contains(&m.mnt_id) && placed.contains(&m.parent_mnt_id) {
                placed.insert(m.mnt_id);
                out.push(m.clone());
            }
        }
        if out.len() == before {
            return Err(bad("mounts unreachable from the root mount".into()));
        }
    }
    *mounts = out;
    Ok(())
}

impl NsPlan {
    /// Joins namespaces given by path (`--join-ns`): they are not created and their
    /// images are not restored. Only network, IPC and UTS namespaces can be joined.
    pub fn join(&mut self, joins: &[(String, PathBuf)]) -> Result<()> {
        for (kind, path) in joins {
            let flag = match kind.as_str() {
                "net" => libc::CLONE_NEWNET,
                "ipc" => libc::CLONE_NEWIPC,
                "uts" => libc::CLONE_NEWUTS,
                k => {
                    return Err(RestoreError::Unsupported(format!(
                        "joining a {k} namespace (--join-ns {k}:{}); stasis joins net, ipc and uts",
                        path.display()
                    )))
                }
            };
            if !path.exists() {
                return Err(RestoreError::FileMissing {
                    what: format!("{kind} namespace to join"),
                    path: path.display().to_string(),
                    source: std::io::Error::from_raw_os_error(libc::ENOENT),
                });
            }
            self.flags &= !flag;
            match flag {
                libc::CLONE_NEWNET => {
                    self.net_id = None;
                    self.net_ext_key = None;
                }
                libc::CLONE_NEWIPC => self.ipc_id = None,
                _ => self.uts = None,
            }
            self.join.push((flag, path.clone()));
        }
        Ok(())
    }
}

/// What the restore was told about the mount tree.
#[derive(Clone, Debug, Default)]
pub struct MountOptions {
    /// `--root`: the directory that becomes the root mount.
    pub root: Option<PathBuf>,
    /// External mounts, key (from the image) → host path.
    pub external: Vec<(String, String)>,
    /// Ptys of the container's own devpts whose masters were outside the tree: made
    /// anew when their devpts is mounted (see [`container_ptys`]).
    pub orphan_ptys: Vec<pb::TtyInfoEntry>,
}

/// The terminals of `ttys` that lived in a devpts of the image's own mount tree (a
/// container's console): they cannot be reopened by path, their devpts is new.
pub fn container_ptys<'a>(
    plan: &NsPlan,
    ttys: impl Iterator<Item = &'a pb::TtyInfoEntry>,
) -> Vec<pb::TtyInfoEntry> {
    let devpts: Vec<u32> = plan
        .mounts
        .iter()
        .filter(|m| m.ext_key.is_none() && fs_name(m) == Some("devpts"))
        .map(|m| m.root_dev)
        .collect();
    ttys.filter(|t| t.dev.is_some_and(|d| devpts.contains(&d)))
        .cloned()
        .collect()
}

/// Checks, before anything is created, that the mount tree can be rebuilt: a root is
/// given, every external mount has a host path that exists, every tmpfs has its image.
pub fn preflight(plan: &NsPlan, dir: &ImageDir, opts: &MountOptions) -> Result<()> {
    if plan.mounts.is_empty() {
        return Ok(());
    }
    let root = opts.root.as_ref().ok_or_else(|| {
        RestoreError::Unsupported(
            "the image holds a mount namespace: give the container's root directory with --root"
                .into(),
        )
    })?;
    if !root.is_dir() {
        return Err(RestoreError::FileMissing {
            what: "--root directory".into(),
            path: root.display().to_string(),
            source: std::io::Error::from_raw_os_error(libc::ENOTDIR),
        });
    }
    for m in &plan.mounts[1..] {
        if let Some(key) = &m.ext_key {
            let host = external_source(key, &opts.external).ok_or_else(|| {
                RestoreError::Unsupported(format!(
                    "external mount {} (key {key}) has no host path: give --ext-mount-map {key}:PATH or --external mnt[{key}]:PATH",
                    m.mountpoint
                ))
            })?;
            if std::fs::symlink_metadata(&host).is_err() {
                return Err(RestoreError::FileMissing {
                    what: format!("source of external mount {}", m.mountpoint),
                    path: host,
                    source: std::io::Error::from_raw_os_error(libc::ENOENT),
                });
            }
        } else if m.fstype == 5 && m.root == "/" {
            let name = names::tmpfs_dev(m.root_dev);
            if !dir.exists(&name) {
                return Err(RestoreError::BadImage {
                    file: name,
                    what: format!("the contents of tmpfs {} are missing", m.mountpoint),
                });
            }
        }
    }
    Ok(())
}

/// The host path an external mount is bound from: the one given for its key, else the
/// key itself when it is an absolute path (CRIU's `--ext-mount-map auto` keys).
fn external_source(key: &str, given: &[(String, String)]) -> Option<String> {
    given
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.clone())
        .or_else(|| key.starts_with('/').then(|| key.to_string()))
}

fn fs_name(m: &pb::MntEntry) -> Option<&str> {
    Some(match m.fstype {
        1 => "proc",
        2 => "sysfs",
        3 => "devtmpfs",
        5 => "tmpfs",
        6 => "devpts",
        12 => "cgroup",
        14 => "mqueue",
        23 => "cgroup2",
        _ => return None,
    })
}

const PROPAGATION: u64 = libc::MS_SHARED | libc::MS_SLAVE | libc::MS_PRIVATE | libc::MS_UNBINDABLE;

/// Rebuilds the mount tree of `plan` under `opts.root` and makes it the root with
/// `pivot_root`. Runs in the restored root, in its new (copied) mount namespace.
pub fn build_mounts(
    plan: &NsPlan,
    images: BorrowedFd<'_>,
    opts: &MountOptions,
) -> std::result::Result<Vec<OwnedFd>, String> {
    use stasis_sys::ns::mount;
    let e = |e: stasis_sys::SysError| e.to_string();
    let root = opts.root.as_ref().ok_or("no --root")?;
    let root =
        std::fs::canonicalize(root).map_err(|err| format!("--root {}: {err}", root.display()))?;
    let root = root.to_string_lossy().into_owned();
    // Nothing done from here on propagates to the host: every mount of this copy of the
    // host's tree becomes a slave of its host peer group, or stays private. A bind of the
    // root or of an external path is thereby a slave of the host mount it comes from,
    // as a runtime's `rslave` mounts are; `set_propagation` settles each mount at the end.
    mount(None, "/", None, libc::MS_REC | libc::MS_SLAVE, None).map_err(e)?;
    mount(Some(&root), &root, None, libc::MS_BIND, None).map_err(e)?;
    let mut targets: HashMap<u32, String> = HashMap::new();
    let top = &plan.mounts[0];
    targets.insert(top.mnt_id, root.clone());
    let mut masters = Vec::new();
    for m in &plan.mounts[1..] {
        let target = format!("{}{}", root.trim_end_matches('/'), m.mountpoint);
        mount_one(m, &target, plan, &targets, images, opts, &mut masters).map_err(|what| {
            format!(
                "mount {} ({}): {what}",
                m.mountpoint,
                fs_name(m).or(m.fsname.as_deref()).unwrap_or("?")
            )
        })?;
        targets.insert(m.mnt_id, target);
    }
    set_propagation(&plan.mounts, &targets)?;
    std::env::set_current_dir(&root).map_err(|err| format!("chdir {root}: {err}"))?;
    stasis_sys::ns::pivot_root(".", ".").map_err(e)?;
    stasis_sys::ns::umount2(".", libc::MNT_DETACH).map_err(e)?;
    std::env::set_current_dir("/").map_err(|err| format!("chdir /: {err}"))?;
    let flags = u64::from(top.flags) & !PROPAGATION;
    if flags & libc::MS_RDONLY != 0 {
        mount(
            None,
            "/",
            None,
            libc::MS_REMOUNT | libc::MS_BIND | flags,
            None,
        )
        .map_err(e)?;
    }
    Ok(masters)
}

/// Gives the rebuilt mounts the propagation they were dumped with. The tree was built
/// with nothing propagating; now:
/// - a mount whose master is outside the tree (a runtime's `rslave` root or bind) stays
///   the slave of the host mount it was bound from, if it is one; every other mount is
///   made private first;
/// - each peer group of the tree becomes one new group: its widest member is made a slave
///   of its master's group when that group is in the tree, then shared, and the others
///   join it with `MOVE_MOUNT_SET_GROUP`, which also gives them its master;
/// - a mount that is only a slave, of a group in the tree, joins that group and is then
///   made a slave of it.
///
/// Peers outside the tree (a group the container shared with the host) are not joined:
/// the restored group is the container's own.
fn set_propagation(
    mounts: &[pb::MntEntry],
    targets: &HashMap<u32, String>,
) -> std::result::Result<(), String> {
    use stasis_sys::ns::{mount, set_mount_group};
    let path = |m: &pb::MntEntry| targets[&m.mnt_id].as_str();
    let set = |m: &pb::MntEntry, flag: u64| {
        mount(None, path(m), None, flag, None)
            .map_err(|err| format!("propagation of mount {}: {err}", m.mountpoint))
    };
    let join = |from: &pb::MntEntry, to: &pb::MntEntry| {
        set_mount_group(path(from), path(to)).map_err(|err| {
            format!(
                "mount {} cannot join the peer group of {}: {err}",
                to.mountpoint, from.mountpoint
            )
        })
    };
    // The widest member of each peer group: the others' roots lie inside its root.
    let mut first: HashMap<u32, &pb::MntEntry> = HashMap::new();
    for m in mounts {
        if let Some(id) = m.shared_id {
            let f = first.entry(id).or_insert(m);
            if m.root.len() < f.root.len() {
                *f = m;
            }
        }
    }
    let outside = |m: &pb::MntEntry| m.master_id.is_some_and(|k| !first.contains_key(&k));
    for m in mounts {
        let leads = m.shared_id.is_some_and(|id| first[&id].mnt_id == m.mnt_id);
        if !(outside(m) && (m.shared_id.is_none() || leads)) {
            set(m, libc::MS_PRIVATE)?;
        }
    }
    // Groups are set up masters first; `path` guards against a cycle in a bad image.
    fn group<'a>(
        id: u32,
        first: &HashMap<u32, &'a pb::MntEntry>,
        mounts: &'a [pb::MntEntry],
        done: &mut Vec<u32>,
        busy: &mut Vec<u32>,
        act: &mut dyn FnMut(GroupStep<'a>) -> std::result::Result<(), String>,
    ) -> std::result::Result<(), String> {
        if done.contains(&id) {
            return Ok(());
        }
        if busy.contains(&id) {
            return Err(format!("peer group {id} is its own master"));
        }
        busy.push(id);
        let f = first[&id];
        if let Some(k) = f.master_id.filter(|k| first.contains_key(k)) {
            group(k, first, mounts, done, busy, act)?;
            act(GroupStep::Slave(first[&k], f))?;
        }
        act(GroupStep::Share(f))?;
        for m in mounts
            .iter()
            .filter(|m| m.shared_id == Some(id) && m.mnt_id != f.mnt_id)
        {
            act(GroupStep::Join(f, m))?;
        }
        busy.pop();
        done.push(id);
        Ok(())
    }
    let mut act = |step: GroupStep<'_>| match step {
        GroupStep::Share(m) => set(m, libc::MS_SHARED),
        GroupStep::Join(from, to) => join(from, to),
        GroupStep::Slave(master, m) => {
            join(master, m)?;
            set(m, libc::MS_SLAVE)
        }
    };
    let (mut done, mut busy) = (Vec::new(), Vec::new());
    let mut ids: Vec<u32> = first.keys().copied().collect();
    ids.sort_unstable();
    for id in ids {
        group(id, &first, mounts, &mut done, &mut busy, &mut act)?;
    }
    for m in mounts.iter().filter(|m| m.shared_id.is_none()) {
        if let Some(k) = m.master_id.filter(|k| first.contains_key(k)) {
            act(GroupStep::Slave(first[&k], m))?;
        }
    }
    Ok(())
}

/// One step of [`set_propagation`].
enum GroupStep<'a> {
    /// Make the mount the first of a new peer group.
    Share(&'a pb::MntEntry),
    /// Make the second mount a peer of the first's group (and a slave of its master).
    Join(&'a pb::MntEntry, &'a pb::MntEntry),
    /// Make the second mount a slave of the first's peer group.
    Slave(&'a pb::MntEntry, &'a pb::MntEntry),
}

fn mount_one(
    m: &pb::MntEntry,
    target: &str,
    plan: &NsPlan,
    targets: &HashMap<u32, String>,
    images: BorrowedFd<'_>,
    opts: &MountOptions,
    masters: &mut Vec<OwnedFd>,
) -> std::result::Result<(), String> {
    use stasis_sys::ns::mount;
    let e = |e: stasis_sys::SysError| e.to_string();
    let flags = u64::from(m.flags) & !PROPAGATION;
    let bind = |source: &str| -> std::result::Result<(), String> {
        make_mountpoint(target, Path::new(source), plan.users.is_some())?;
        mount(Some(source), target, None, libc::MS_BIND, None).map_err(e)?;
        if flags != 0 {
            let f = libc::MS_REMOUNT | libc::MS_BIND | flags;
            mount(None, target, None, f, None).map_err(e)?;
        }
        Ok(())
    };
    if let Some(key) = &m.ext_key {
        let source = external_source(key, &opts.external)
            .ok_or_else(|| format!("no host path for external key {key}"))?;
        return bind(&source);
    }
    // A bind of (part of) a mount restored before it: the root's filesystem, or a
    // filesystem created fresh here (a masked path bound from /dev/null, a read-only
    // bind of /proc/sys...).
    let from = plan
        .mounts
        .iter()
        .filter(|o| {
            o.mnt_id != m.mnt_id && o.root_dev == m.root_dev && targets.contains_key(&o.mnt_id)
        })
        .filter(|o| is_under(&m.root, &o.root))
        .max_by_key(|o| o.root.len());
    if let Some(o) = from {
        let rest = if o.root == "/" {
            m.root.as_str()
        } else {
            &m.root[o.root.len()..]
        };
        let source = format!("{}{}", targets[&o.mnt_id].trim_end_matches('/'), rest);
        return bind(&source);
    }
    let fstype = fs_name(m)
        .ok_or_else(|| "cannot be created: not external and not a bind of the tree".to_string())?;
    if m.root != "/" {
        return Err(format!(
            "a {fstype} mounted from its subdirectory {} is not supported yet",
            m.root
        ));
    }
    make_mountpoint(target, Path::new("/"), plan.users.is_some())?;
    let fresh = (flags | u64::from(m.sb_flags.unwrap_or(0))) & !(libc::MS_RDONLY);
    let options = match &plan.users {
        Some(users) => options_in_userns(&m.options, users)?,
        None => m.options.clone(),
    };
    let data = (!options.is_empty()).then_some(options.as_str());
    mount(Some(&m.source), target, Some(fstype), fresh, data).map_err(e)?;
    if fstype == "tmpfs" {
        fill_tmpfs(m, target, images, plan)?;
    }
    if fstype == "devpts" {
        // Before anything binds /dev/pts/N (a runtime's /dev/console) or opens it.
        masters.extend(crate::fds::tty::make_orphans(
            target,
            m.root_dev,
            &opts.orphan_ptys,
        )?);
    }
    if flags & libc::MS_RDONLY != 0 || m.sb_flags.unwrap_or(0) & libc::MS_RDONLY as u32 != 0 {
        let f = libc::MS_REMOUNT | libc::MS_BIND | flags | libc::MS_RDONLY;
        mount(None, target, None, f, None).map_err(e)?;
    }
    Ok(())
}

/// Mount options with the ids of a user namespace of the tree's own: the kernel shows
/// `uid=`/`gid=` (tmpfs, devpts...) as the host numbers them, and parses them as the
/// mounting namespace does.
fn options_in_userns(
    options: &str,
    users: &pb::UsernsEntry,
) -> std::result::Result<String, String> {
    let inner = |map: &[pb::UidGidExtent], host: u32| {
        stasis_checkpoint::ns::id_inside(map, host)
            .ok_or_else(|| format!("mount option id {host} is not mapped by its user namespace"))
    };
    options
        .split(',')
        .map(|o| match o.split_once('=') {
            Some(("uid", v)) => match v.parse() {
                Ok(host) => inner(&users.uid_map, host).map(|i| format!("uid={i}")),
                Err(_) => Ok(o.to_string()),
            },
            Some(("gid", v)) => match v.parse() {
                Ok(host) => inner(&users.gid_map, host).map(|i| format!("gid={i}")),
                Err(_) => Ok(o.to_string()),
            },
            _ => Ok(o.to_string()),
        })
        .collect::<std::result::Result<Vec<_>, _>>()
        .map(|v| v.join(","))
}

/// Creates a missing mount point: a file when what is mounted on it is not a directory.
///
/// `in_userns`: the root is still the host's uid, which its new user namespace does not
/// map (the kernel refuses files it would own): the namespace's root creates it.
fn make_mountpoint(
    target: &str,
    source: &Path,
    in_userns: bool,
) -> std::result::Result<(), String> {
    let t = Path::new(target);
    if std::fs::symlink_metadata(t).is_ok() {
        return Ok(());
    }
    let is_dir = std::fs::metadata(source)
        .map(|m| m.is_dir())
        .unwrap_or(true);
    if in_userns {
        let mut c = std::process::Command::new("sh");
        c.args(["-c", r#"mkdir -p -- "$(dirname -- "$1")" && if [ "$2" = dir ]; then mkdir -- "$1"; else : > "$1"; fi"#, "sh", target])
            .arg(if is_dir { "dir" } else { "file" });
        as_namespace_root(&mut c);
        let out = c
            .output()
            .map_err(|err| format!("creating mount point {target}: {err}"))?;
        if !out.status.success() {
            return Err(format!(
                "creating mount point {target}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        return Ok(());
    }
    if let Some(parent) = t.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|err| format!("creating {}: {err}", parent.display()))?;
    }
    let made = if is_dir {
        std::fs::create_dir(t)
    } else {
        std::fs::File::create(t).map(drop)
    };
    made.map_err(|err| format!("creating mount point {target}: {err}"))
}

/// Makes `cmd` run as the root of the caller's user namespace: the restored root is
/// still the host's uid while it builds, which its new user namespace does not map, and
/// the kernel refuses files an unmapped uid would own.
fn as_namespace_root(cmd: &mut std::process::Command) {
    std::os::unix::process::CommandExt::uid(cmd, 0);
    std::os::unix::process::CommandExt::gid(cmd, 0);
}

/// Unpacks a tmpfs's dumped contents into its new mount.
fn fill_tmpfs(
    m: &pb::MntEntry,
    target: &str,
    images: BorrowedFd<'_>,
    plan: &NsPlan,
) -> std::result::Result<(), String> {
    let name = names::tmpfs_dev(m.root_dev);
    let file = stasis_sys::ns::open_at(images, &name).map_err(|err| err.to_string())?;
    let mut tar = std::process::Command::new("tar");
    if plan.users.is_some() {
        as_namespace_root(&mut tar);
        // The archive holds what covered a mount point at dump (the host's /dev/null
        // bound there is a device node, which the namespace may not make): the mount
        // points are made empty, and the mounts go on them.
        for o in &plan.mounts {
            if let Some(rel) = o
                .mountpoint
                .strip_prefix(m.mountpoint.trim_end_matches('/'))
                .and_then(|r| r.strip_prefix('/'))
                .filter(|r| !r.is_empty())
            {
                tar.arg(format!("--exclude=./{rel}"));
            }
        }
    }
    let out = tar
        .args([
            "--extract",
            "--gzip",
            "--no-unquote",
            "--no-wildcards",
            "--preserve-permissions",
            "--numeric-owner",
            "--directory",
            target,
        ])
        .stdin(std::fs::File::from(file))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .output()
        .map_err(|err| format!("running tar: {err}"))?;
    if !out.status.success() {
        return Err(format!(
            "unpacking {name}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(())
}

/// Gives the root a new time namespace whose CLOCK_MONOTONIC and CLOCK_BOOTTIME go on
/// from their dumped values: the offsets are written before anyone is in it, then the
/// root enters it (its children and threads are created in it).
fn enter_time_namespace(t: &pb::TimensEntry) -> std::result::Result<(), String> {
    let offset = |clock: i32, v: &pb::Timespec| -> std::result::Result<(i128, i128), String> {
        let (s, ns) = stasis_sys::fdops::clock_now(clock).map_err(|e| e.to_string())?;
        let now = i128::from(s) * 1_000_000_000 + i128::from(ns);
        let want = i128::from(v.tv_sec) * 1_000_000_000 + i128::from(v.tv_nsec);
        let d = want - now;
        Ok((d.div_euclid(1_000_000_000), d.rem_euclid(1_000_000_000)))
    };
    let (ms, mn) = offset(libc::CLOCK_MONOTONIC, &t.monotonic)?;
    let (bs, bn) = offset(libc::CLOCK_BOOTTIME, &t.boottime)?;
    stasis_sys::ns::unshare(libc::CLONE_NEWTIME).map_err(|e| e.to_string())?;
    std::fs::write(
        "/proc/self/timens_offsets",
        format!("monotonic {ms} {mn}\nboottime {bs} {bn}\n"),
    )
    .map_err(|e| format!("setting the time namespace's offsets: {e}"))?;
    let ns = std::fs::File::open("/proc/self/ns/time_for_children")
        .map_err(|e| format!("/proc/self/ns/time_for_children: {e}"))?;
    stasis_sys::ns::setns(std::os::fd::AsFd::as_fd(&ns), libc::CLONE_NEWTIME)
        .map_err(|e| format!("entering the time namespace: {e}"))
}

/// Sets the UTS names.
pub fn set_uts(uts: &pb::UtsnsEntry) -> std::result::Result<(), String> {
    stasis_sys::ns::sethostname(&uts.nodename).map_err(|e| e.to_string())?;
    stasis_sys::ns::setdomainname(&uts.domainname).map_err(|e| e.to_string())
}

/// Everything the restored root does to its new namespaces before it forks the tree.
pub fn setup_inside(
    plan: &NsPlan,
    dir: &ImageDir,
    images: BorrowedFd<'_>,
    opts: &MountOptions,
    inherited: &[(String, i32)],
) -> std::result::Result<Vec<OwnedFd>, String> {
    if let Some(t) = &plan.time {
        enter_time_namespace(t)?;
    }
    // Namespaces that are the caller's, first: everything after lives in them.
    for (flag, path) in &plan.join {
        let f = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
        stasis_sys::ns::setns(std::os::fd::AsFd::as_fd(&f), *flag)
            .map_err(|e| format!("joining {}: {e}", path.display()))?;
    }
    if let Some(key) = &plan.net_ext_key {
        let (_, fd) = inherited.iter().find(|(k, _)| k == key).ok_or_else(|| {
            format!("the network namespace is external (key {key}): give it with --inherit-fd fd[N]:{key}")
        })?;
        let ns = stasis_sys::fd::dup_number(*fd, 0).map_err(|e| e.to_string())?;
        stasis_sys::ns::setns(std::os::fd::AsFd::as_fd(&ns), libc::CLONE_NEWNET)
            .map_err(|e| format!("joining the external network namespace {key}: {e}"))?;
    }
    if let Some(uts) = &plan.uts {
        set_uts(uts)?;
    }
    // The IPC objects first: their images are read through the host's path.
    // In a user namespace of its own, stasis does it from outside (see lib.rs).
    if let (Some(id), None) = (plan.ipc_id, &plan.users) {
        crate::ipc::restore_ipc_ns(dir, id)?;
    }
    if plan.mounts.is_empty() {
        return Ok(Vec::new());
    }
    build_mounts(plan, images, opts)
}

/// Configures the new network namespace of the root (host PID `pid`) from outside:
/// from its images, or, when the dump left it out (`--empty-ns net`), with its loopback
/// up.
pub fn setup_network(
    plan: &NsPlan,
    dir: &ImageDir,
    pid: i32,
    veths: &[(String, String)],
) -> Result<()> {
    let Some(id) = plan.net_id.filter(|_| plan.net_ext_key.is_none()) else {
        return Ok(());
    };
    let failed = |what: String| RestoreError::Child { pid, what };
    if dir.exists(&names::netdev(id)) {
        return stasis_netns::restore_netns(pid, dir, id, veths)
            .map_err(|e| failed(format!("restoring its network namespace: {e}")));
    }
    let out = std::process::Command::new("nsenter")
        .args([
            format!("--net=/proc/{pid}/ns/net"),
            "ip".into(),
            "link".into(),
            "set".into(),
            "lo".into(),
            "up".into(),
        ])
        .output()
        .map_err(|e| failed(format!("running nsenter ip: {e}")))?;
    if !out.status.success() {
        return Err(failed(format!(
            "bringing up lo in its empty network namespace: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

/// Host PIDs of a tree restored in its own pid namespace: for every task (and thread)
/// under `root_host`, its PID inside the namespace → its PID on the host.
pub fn host_pids(root_host: i32) -> Result<HashMap<i32, i32>> {
    let mut map = HashMap::new();
    let mut queue = vec![root_host];
    while let Some(pid) = queue.pop() {
        let tasks =
            std::fs::read_dir(format!("/proc/{pid}/task")).map_err(|source| RestoreError::Io {
                path: format!("/proc/{pid}/task").into(),
                source,
            })?;
        for t in tasks.flatten() {
            let Ok(tid) = t.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            if let Some(v) = inner_pid(pid, tid) {
                map.insert(v, tid);
            }
            let children = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/children"))
                .unwrap_or_default();
            queue.extend(
                children
                    .split_whitespace()
                    .filter_map(|c| c.parse::<i32>().ok()),
            );
        }
    }
    Ok(map)
}

/// The PID of host task `tid` in its innermost pid namespace.
pub fn inner_pid(pid: i32, tid: i32) -> Option<i32> {
    stasis_checkpoint::ns::nspid(pid, tid).ok()?.last().copied()
}

/// The host TID of the thread with TID `inner` (in its namespace) in host process `pid`:
/// the same number outside a pid namespace of the tree's own, else found by NSpid.
pub fn host_tid(pid: i32, inner: i32) -> Option<i32> {
    if inner_pid(pid, inner) == Some(inner) {
        return Some(inner);
    }
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    tasks
        .flatten()
        .filter_map(|t| t.file_name().to_string_lossy().parse::<i32>().ok())
        .find(|&tid| inner_pid(pid, tid) == Some(inner))
}

/// Opens the images directory for use after `pivot_root` (by descriptor).
pub fn open_images(dir: &Path) -> Result<std::fs::File> {
    std::fs::File::open(dir).map_err(|source| RestoreError::Io {
        path: dir.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn users() -> pb::UsernsEntry {
        let e = |first, lower_first, count| pb::UidGidExtent {
            first,
            lower_first,
            count,
        };
        pb::UsernsEntry {
            uid_map: vec![e(0, 100_000, 65536)],
            gid_map: vec![e(0, 200_000, 65536)],
        }
    }

    #[test]
    fn mount_ids_are_given_as_the_user_namespace_numbers_them() {
        let got = options_in_userns("size=8192k,uid=100000,gid=200005,mode=755", &users());
        assert_eq!(got.unwrap(), "size=8192k,uid=0,gid=5,mode=755");
        let err = options_in_userns("uid=5", &users()).unwrap_err();
        assert!(err.contains("id 5 is not mapped"), "{err}");
    }

    #[test]
    fn maps_are_written_in_one_piece_and_bad_ones_refused() {
        assert_eq!(
            map_text("userns-5.img", &users().uid_map).unwrap(),
            "0 100000 65536\n"
        );
        assert!(map_text("userns-5.img", &[]).is_err(), "an empty map");
        let zero = pb::UidGidExtent {
            first: 0,
            lower_first: 1,
            count: 0,
        };
        let e = map_text("userns-5.img", &[zero]).unwrap_err().to_string();
        assert!(e.contains("userns-5.img"), "{e}");
        let wraps = pb::UidGidExtent {
            first: u32::MAX,
            lower_first: 1,
            count: 2,
        };
        assert!(map_text("userns-5.img", &[wraps]).is_err(), "past u32");
    }
}
