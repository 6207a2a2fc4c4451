//! The mount tree of a dumped mount namespace, read from the root task's mountinfo and
//! written as `mountpoints-<id>.img` (one `mnt_entry` per mount, parents first), with
//! the contents of every tmpfs as a gzipped tarball `tmpfs-dev-<dev>.tar.gz.img`.
//!
//! A mount is recreated at restore from what the entry says: a fresh filesystem (proc,
//! sysfs, devpts, mqueue, tmpfs with its contents, cgroup), a bind of another mount of
//! the tree (masked paths, read-only binds), or an *external* mount, bound from a host
//! path the restore is given (`--ext-mount-map KEY:VAL`, `--external mnt[KEY]:VAL`).
//! The root mount is the one the restore's `--root` provides. Anything else (a disk
//! filesystem mounted into the container by a path outside it) must be declared
//! external, or the dump is refused naming the mount.

use crate::{DumpError, Result};
use stasis_images::{names, pb, ImageDir, ImageKind};
use std::collections::BTreeSet;

/// One line of `/proc/PID/mountinfo`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MountInfo {
    pub id: u32,
    pub parent: u32,
    pub dev: u32,
    pub root: String,
    pub mountpoint: String,
    pub mnt_opts: String,
    pub shared: Option<u32>,
    pub master: Option<u32>,
    pub fstype: String,
    pub source: String,
    pub super_opts: String,
}

/// Undoes mountinfo's octal escapes (`\040` for a space...).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses one mountinfo line.
pub fn parse_line(line: &str) -> Option<MountInfo> {
    let (left, right) = line.split_once(" - ")?;
    let l: Vec<&str> = left.split(' ').collect();
    if l.len() < 6 {
        return None;
    }
    let (maj, min) = l[2].split_once(':')?;
    let (maj, min): (u32, u32) = (maj.parse().ok()?, min.parse().ok()?);
    let mut shared = None;
    let mut master = None;
    for opt in &l[6..] {
        if let Some(v) = opt.strip_prefix("shared:") {
            shared = v.parse().ok();
        } else if let Some(v) = opt.strip_prefix("master:") {
            master = v.parse().ok();
        }
    }
    let r: Vec<&str> = right.splitn(3, ' ').collect();
    if r.len() < 3 {
        return None;
    }
    Some(MountInfo {
        id: l[0].parse().ok()?,
        parent: l[1].parse().ok()?,
        dev: maj << 20 | min,
        root: unescape(l[3]),
        mountpoint: unescape(l[4]),
        mnt_opts: l[5].to_string(),
        shared,
        master,
        fstype: r[0].to_string(),
        source: unescape(r[1]),
        super_opts: r[2].to_string(),
    })
}

/// CRIU's fstype code for a filesystem name (AUTO, with the name in `fsname`, for the
/// ones without a code of their own).
pub fn fstype_code(name: &str) -> u32 {
    match name {
        "proc" => 1,
        "sysfs" => 2,
        "devtmpfs" => 3,
        "binfmt_misc" => 4,
        "tmpfs" => 5,
        "devpts" => 6,
        "pstore" => 8,
        "securityfs" => 9,
        "fusectl" => 10,
        "debugfs" => 11,
        "cgroup" => 12,
        "aufs" => 13,
        "mqueue" => 14,
        "fuse" => 15,
        "overlay" => 17,
        "autofs" => 18,
        "tracefs" => 19,
        "cgroup2" => 23,
        _ => 16,
    }
}

/// The `MS_*` flags of a per-mount option list (`rw,nosuid,nodev,relatime`).
pub fn mount_flags(opts: &str) -> u32 {
    // No atime option listed means strict atime (mount(2) defaults to relatime).
    let strict = !opts
        .split(',')
        .any(|o| matches!(o, "relatime" | "noatime" | "strictatime"));
    let strict = if strict {
        libc::MS_STRICTATIME as u32
    } else {
        0
    };
    strict
        | opts
            .split(',')
            .map(|o| match o {
                "ro" => libc::MS_RDONLY,
                "nosuid" => libc::MS_NOSUID,
                "nodev" => libc::MS_NODEV,
                "noexec" => libc::MS_NOEXEC,
                "noatime" => libc::MS_NOATIME,
                "nodiratime" => libc::MS_NODIRATIME,
                "relatime" => libc::MS_RELATIME,
                "strictatime" => libc::MS_STRICTATIME,
                _ => 0,
            })
            .fold(0, |a, f| a | f as u32)
}

/// The superblock flags of a super option list, and the options left for `mount(2)`'s
/// data argument.
pub fn super_flags(opts: &str) -> (u32, String) {
    let mut flags = 0u32;
    let mut rest = Vec::new();
    for o in opts.split(',') {
        match o {
            "ro" => flags |= libc::MS_RDONLY as u32,
            "rw" => {}
            "sync" => flags |= libc::MS_SYNCHRONOUS as u32,
            "dirsync" => flags |= libc::MS_DIRSYNC as u32,
            "mand" => flags |= libc::MS_MANDLOCK as u32,
            "lazytime" => flags |= libc::MS_LAZYTIME as u32,
            o => rest.push(o),
        }
    }
    (flags, rest.join(","))
}

/// The filesystems recreated fresh at restore.
fn recreatable(fstype: &str) -> bool {
    matches!(
        fstype,
        "proc" | "sysfs" | "devpts" | "mqueue" | "tmpfs" | "cgroup" | "cgroup2"
    )
}

/// Reads the mount tree of `pid`'s mount namespace (as its root sees it) and writes
/// `mountpoints-<id>.img` and the tmpfs tarballs. `external` holds the dump-time
/// `KEY:VAL` pairs: the mount at mount point KEY is external, recorded with VAL as the
/// key the restore maps to a host path.
///
/// `in_userns`: the tree has a user namespace of its own; tmpfs contents are archived
/// from inside it, so the archive holds the owners as the container sees them.
///
/// `auto` (`--ext-mount-map auto`): a mount bound from outside the container that was
/// not declared external is, keyed by the host path it is bound from.
pub fn dump(
    pid: i32,
    dir: &ImageDir,
    id: u32,
    external: &[(String, String)],
    in_userns: bool,
    auto: bool,
) -> Result<()> {
    let path = format!("/proc/{pid}/mountinfo");
    let text = std::fs::read_to_string(&path).map_err(|source| DumpError::Io {
        path: path.clone().into(),
        source,
    })?;
    let mut mounts = Vec::new();
    for line in text.lines() {
        mounts.push(parse_line(line).ok_or_else(|| DumpError::Proc {
            path: path.clone(),
            what: format!("cannot parse {line:?}"),
        })?);
    }
    let mut external = external.to_vec();
    if auto {
        auto_external(&mounts, &mut external)?;
    }
    let entries = entries(pid, &mounts, &external)?;
    for m in mounts.iter().filter(|m| m.fstype == "mqueue") {
        refuse_posix_queues(pid, m)?;
    }
    dir.write(ImageKind::MNTS, &names::mountpoints(id), &entries)?;
    let mut archived = BTreeSet::new();
    for (m, e) in mounts.iter().zip(&entries) {
        if m.fstype == "tmpfs" && e.ext_mount != Some(true) && archived.insert(m.dev) {
            archive_tmpfs(pid, m, dir, in_userns)?;
        }
    }
    Ok(())
}

/// POSIX message queues are not dumped (CRIU's image format has no place for them): a
/// container whose mqueue filesystem holds one is refused, naming them, rather than
/// restored without them.
fn refuse_posix_queues(pid: i32, m: &MountInfo) -> Result<()> {
    let path = format!("/proc/{pid}/root{}", m.mountpoint);
    let Ok(list) = std::fs::read_dir(&path) else {
        return Ok(());
    };
    let mut names: Vec<String> = list
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    if names.is_empty() {
        return Ok(());
    }
    names.sort();
    Err(DumpError::Unsupported {
        pid,
        what: format!(
            "its ipc namespace holds POSIX message queues ({} in {}); they are not dumped",
            names.join(", "),
            m.mountpoint
        ),
    })
}

/// The root mount of a tree: the one whose parent is not in it.
fn tree_root(mounts: &[MountInfo]) -> Option<&MountInfo> {
    let ids: BTreeSet<u32> = mounts.iter().map(|m| m.id).collect();
    mounts.iter().find(|m| !ids.contains(&m.parent))
}

/// Whether mount `m` can be made again from the tree alone: it is the root, a fresh
/// filesystem, or a bind of (part of) another mount of the tree — the root, a fresh
/// filesystem, or an external mount (a mask bound from the external /dev/null).
fn rebuilt_from_tree(
    m: &MountInfo,
    root: &MountInfo,
    mounts: &[MountInfo],
    external: &[(String, String)],
) -> bool {
    let fresh = recreatable(&m.fstype) && m.root == "/";
    let bound_from_tree = mounts.iter().any(|o| {
        o.id != m.id
            && o.dev == m.dev
            && (o.id == root.id
                || (recreatable(&o.fstype) && o.root == "/")
                || external.iter().any(|(k, _)| *k == o.mountpoint))
            && is_under(&m.root, &o.root)
    });
    m.id == root.id || fresh || bound_from_tree
}

/// `--ext-mount-map auto`: every mount of the tree that would be refused (not
/// recreatable, not bound from the tree, not declared external) but is bound from a
/// path of stasis's own mount namespace becomes external, keyed by that host path (the
/// restore binds it from there unless the key is mapped elsewhere). The ones found are
/// added to `external`.
fn auto_external(mounts: &[MountInfo], external: &mut Vec<(String, String)>) -> Result<()> {
    let Some(root) = tree_root(mounts) else {
        // entries() refuses the tree, naming it.
        return Ok(());
    };
    let own = std::fs::read_to_string("/proc/self/mountinfo").map_err(|source| DumpError::Io {
        path: "/proc/self/mountinfo".into(),
        source,
    })?;
    let host: Vec<MountInfo> = own.lines().filter_map(parse_line).collect();
    for m in mounts {
        // With the ones found so far: a mask bound from an auto-external /dev/null is
        // a bind of the tree, not another external mount.
        if external.iter().any(|(k, _)| *k == m.mountpoint)
            || rebuilt_from_tree(m, root, mounts, external)
        {
            continue;
        }
        let Some(h) = host
            .iter()
            .filter(|h| h.dev == m.dev && is_under(&m.root, &h.root))
            .max_by_key(|h| h.root.len())
        else {
            continue;
        };
        let rest = if h.root == "/" {
            m.root.as_str()
        } else {
            &m.root[h.root.len()..]
        };
        let path = format!("{}{}", h.mountpoint.trim_end_matches('/'), rest);
        let path = if path.is_empty() {
            "/".to_string()
        } else {
            path
        };
        log::info!(
            "mount {} is external (auto): bound from the host's {path}",
            m.mountpoint
        );
        external.push((m.mountpoint.clone(), path));
    }
    Ok(())
}

/// The image entries of a mount tree; refuses a mount that can be neither recreated,
/// nor bound from another mount of the tree, nor is declared external.
pub fn entries(
    pid: i32,
    mounts: &[MountInfo],
    external: &[(String, String)],
) -> Result<Vec<pb::MntEntry>> {
    let root = tree_root(mounts).ok_or_else(|| DumpError::Proc {
        path: format!("/proc/{pid}/mountinfo"),
        what: "no root mount".into(),
    })?;
    let mut out = Vec::with_capacity(mounts.len());
    for m in mounts {
        let ext = external
            .iter()
            .find(|(k, _)| *k == m.mountpoint)
            .map(|(_, v)| v.clone());
        let is_root = m.id == root.id;
        if ext.is_none() && !rebuilt_from_tree(m, root, mounts, external) {
            return Err(DumpError::Unsupported {
                pid,
                what: format!(
                    "mount {} ({} {}, root {}) is neither recreatable nor inside the container; declare it external with --external mnt[{}]:KEY or --ext-mount-map {}:KEY",
                    m.mountpoint, m.fstype, m.source, m.root, m.mountpoint, m.mountpoint
                ),
            });
        }
        let (sb_flags, options) = super_flags(&m.super_opts);
        let code = fstype_code(&m.fstype);
        out.push(pb::MntEntry {
            fstype: code,
            mnt_id: m.id,
            root_dev: m.dev,
            parent_mnt_id: if is_root { m.id } else { m.parent },
            flags: mount_flags(&m.mnt_opts),
            root: m.root.clone(),
            mountpoint: m.mountpoint.clone(),
            source: m.source.clone(),
            options,
            shared_id: m.shared,
            master_id: m.master,
            with_plugin: None,
            ext_mount: ext.as_ref().map(|_| true),
            fsname: (code == 16).then(|| m.fstype.clone()),
            internal_sharing: None,
            deleted: None,
            sb_flags: Some(sb_flags),
            ext_key: ext,
        });
    }
    Ok(out)
}

/// Whether path `p` is `base` or below it.
pub fn is_under(p: &str, base: &str) -> bool {
    base == "/" || p == base || p.strip_prefix(base).is_some_and(|r| r.starts_with('/'))
}

/// Writes the contents of a tmpfs mount as `tmpfs-dev-<dev>.tar.gz.img`, as CRIU does
/// (GNU tar, gzip, numeric owners, this filesystem only).
fn archive_tmpfs(pid: i32, m: &MountInfo, dir: &ImageDir, in_userns: bool) -> Result<()> {
    let src = format!("/proc/{pid}/root{}", m.mountpoint);
    let out = dir.create_raw(&names::tmpfs_dev(m.dev))?;
    let mut tar = if in_userns {
        // As the namespace's root: owners are recorded as it numbers them.
        let mut c = std::process::Command::new("nsenter");
        c.arg(format!("--user=/proc/{pid}/ns/user"))
            .args(["--", "tar"]);
        c
    } else {
        std::process::Command::new("tar")
    };
    let status = tar
        .args([
            "--create",
            "--gzip",
            "--no-unquote",
            "--no-wildcards",
            "--one-file-system",
            "--check-links",
            "--preserve-permissions",
            "--sparse",
            "--numeric-owner",
            "--directory",
            &src,
            ".",
        ])
        .stdout(out)
        .stderr(std::process::Stdio::piped())
        .output()
        .map_err(|source| DumpError::Io {
            path: "tar".into(),
            source,
        })?;
    if !status.status.success() {
        return Err(DumpError::Unsupported {
            pid,
            what: format!(
                "archiving tmpfs {}: tar failed: {}",
                m.mountpoint,
                String::from_utf8_lossy(&status.stderr).trim()
            ),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_mountinfo_lines_with_optional_fields() {
        let m = parse_line(
            "612 611 0:59 / /dev rw,nosuid shared:5 master:3 - tmpfs tmpfs rw,size=65536k,mode=755,inode64",
        )
        .unwrap();
        assert_eq!((m.id, m.parent, m.dev), (612, 611, 59));
        assert_eq!((m.shared, m.master), (Some(5), Some(3)));
        assert_eq!(m.mountpoint, "/dev");
        assert_eq!(m.fstype, "tmpfs");
        assert_eq!(
            mount_flags(&m.mnt_opts),
            (libc::MS_NOSUID | libc::MS_STRICTATIME) as u32
        );
        assert_eq!(super_flags(&m.super_opts).1, "size=65536k,mode=755,inode64");
        let s = parse_line("1 0 8:1 /a\\040b /x rw - ext4 /dev/sda1 ro").unwrap();
        assert_eq!(s.root, "/a b");
        assert_eq!(s.dev, 8 << 20 | 1);
        assert_eq!(super_flags(&s.super_opts).0, libc::MS_RDONLY as u32);
    }

    #[test]
    fn a_foreign_disk_mount_is_refused_unless_external() {
        let lines = [
            "1 0 8:1 /lab/rootfs / rw - ext4 /dev/sda1 rw",
            "2 1 0:5 / /proc rw - proc proc rw",
            "3 1 8:1 /lab/rootfs/etc /etc2 ro - ext4 /dev/sda1 rw",
            "4 1 8:2 /data /data rw - ext4 /dev/sdb1 rw",
        ];
        let m: Vec<MountInfo> = lines.iter().map(|l| parse_line(l).unwrap()).collect();
        let e = entries(1, &m, &[]).unwrap_err().to_string();
        assert!(e.contains("mount /data"), "{e}");
        let ok = entries(1, &m, &[("/data".into(), "vol".into())]).unwrap();
        assert_eq!(ok[3].ext_key.as_deref(), Some("vol"));
        assert_eq!(ok[0].parent_mnt_id, ok[0].mnt_id);
        assert_eq!(ok[2].flags, (libc::MS_RDONLY | libc::MS_STRICTATIME) as u32);
    }
}
