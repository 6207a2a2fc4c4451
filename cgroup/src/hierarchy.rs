//! Where cgroups are: the hierarchies mounted in stasis's mount namespace (from
//! `/proc/self/mountinfo`) and the cgroups a task belongs to (from `/proc/PID/cgroup`).
//!
//! A hierarchy is named the way `/proc/PID/cgroup` names it: the comma-separated v1
//! controllers (`cpu,cpuacct`, `memory`), a named v1 hierarchy (`name=systemd`), or the
//! empty string for cgroup v2. A hybrid host has both kinds at once — v1 controllers under
//! `/sys/fs/cgroup/<ctrl>` and cgroup2 at `/sys/fs/cgroup/unified` — and every lookup here
//! goes by name, so pure v1, pure v2 and hybrid hosts are one case.

use crate::error::{CgroupError, Result};
use std::path::{Path, PathBuf};

/// One cgroup filesystem mount.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mount {
    /// Where it is mounted.
    pub point: PathBuf,
    /// The cgroup of the hierarchy that appears at `point` (`/` unless bind-mounted).
    pub root: String,
    /// cgroup2 rather than a v1 hierarchy.
    pub v2: bool,
    /// Superblock options: the v1 controllers and `name=` are among them.
    pub options: Vec<String>,
}

/// The cgroup hierarchies mounted in a mount namespace.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Hierarchies {
    mounts: Vec<Mount>,
}

/// Undoes mountinfo's octal escapes (`\040` for a space).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = (b[i] == b'\\' && i + 3 < b.len())
            .then(|| &b[i + 1..i + 4])
            .filter(|d| d.iter().all(|c| (b'0'..=b'7').contains(c)))
            .map(|d| d.iter().fold(0u32, |v, c| v * 8 + u32::from(c - b'0')))
            .and_then(|v| u8::try_from(v).ok());
        if let Some(c) = octal {
            out.push(c);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The controllers of a hierarchy name: `cpu,cpuacct` → `["cpu", "cpuacct"]`, `""` → `[""]`.
pub fn controllers_of(name: &str) -> Vec<String> {
    if name.is_empty() {
        return vec![String::new()];
    }
    name.split(',').map(str::to_string).collect()
}

impl Hierarchies {
    /// Parses a mountinfo text, keeping the `cgroup` and `cgroup2` mounts.
    pub fn parse(mountinfo: &str, file: &str) -> Result<Hierarchies> {
        let mut mounts = Vec::new();
        for (n, line) in mountinfo.lines().enumerate() {
            let Some((left, right)) = line.split_once(" - ") else {
                return Err(CgroupError::Parse {
                    file: file.to_string(),
                    what: format!("line {}: no \" - \" separator", n + 1),
                });
            };
            let l: Vec<&str> = left.split_whitespace().collect();
            let r: Vec<&str> = right.split_whitespace().collect();
            if l.len() < 5 || r.len() < 3 {
                return Err(CgroupError::Parse {
                    file: file.to_string(),
                    what: format!("line {}: too few fields", n + 1),
                });
            }
            let v2 = match r[0] {
                "cgroup" => false,
                "cgroup2" => true,
                _ => continue,
            };
            mounts.push(Mount {
                point: PathBuf::from(unescape(l[4])),
                root: unescape(l[3]),
                v2,
                options: r[2].split(',').map(str::to_string).collect(),
            });
        }
        Ok(Hierarchies { mounts })
    }

    /// The hierarchies mounted in stasis's own mount namespace.
    pub fn of_self() -> Result<Hierarchies> {
        let file = "/proc/self/mountinfo";
        let text = std::fs::read_to_string(file).map_err(crate::error::io("read", file))?;
        Hierarchies::parse(&text, file)
    }

    /// The hierarchies mounted in the mount namespace of task `pid`.
    pub fn of_task(pid: i32) -> Result<Hierarchies> {
        let file = format!("/proc/{pid}/mountinfo");
        let text = std::fs::read_to_string(&file).map_err(crate::error::io("read", &file))?;
        Hierarchies::parse(&text, &file)
    }

    /// Every cgroup mount.
    pub fn mounts(&self) -> &[Mount] {
        &self.mounts
    }

    /// The mount of hierarchy `name` that shows the most of it: its root mount if there
    /// is one.
    pub fn mount_of(&self, name: &str) -> Option<&Mount> {
        let wanted = controllers_of(name);
        let mut found = self.mounts.iter().filter(|m| {
            if name.is_empty() {
                m.v2
            } else {
                !m.v2 && wanted.iter().all(|c| m.options.iter().any(|o| o == c))
            }
        });
        let first = found.next()?;
        if first.root == "/" {
            return Some(first);
        }
        Some(found.find(|m| m.root == "/").unwrap_or(first))
    }

    /// Where cgroup `path` of hierarchy `name` is in the filesystem.
    pub fn dir(&self, name: &str, path: &str) -> Result<PathBuf> {
        let m = self.mount_of(name).ok_or_else(|| CgroupError::NotMounted {
            name: name.to_string(),
        })?;
        let unreachable = || CgroupError::Unreachable {
            name: name.to_string(),
            path: path.to_string(),
            mount: m.point.clone(),
            root: m.root.clone(),
        };
        let rel = strip_cgroup_prefix(path, &m.root).ok_or_else(unreachable)?;
        if rel.split('/').any(|c| c == "..") {
            return Err(unreachable());
        }
        Ok(if rel.is_empty() {
            m.point.clone()
        } else {
            m.point.join(rel)
        })
    }

    /// The hierarchy and cgroup path of a directory inside a mounted hierarchy
    /// (`/sys/fs/cgroup/freezer/a/b` → `("freezer", "/a/b")`).
    pub fn locate(&self, dir: &Path) -> Option<(String, String)> {
        let m = self
            .mounts
            .iter()
            .filter(|m| dir.starts_with(&m.point))
            .max_by_key(|m| m.point.components().count())?;
        let rel = dir.strip_prefix(&m.point).ok()?;
        let root = m.root.trim_end_matches('/');
        let path = if rel.as_os_str().is_empty() {
            if root.is_empty() {
                "/".to_string()
            } else {
                root.to_string()
            }
        } else {
            format!("{root}/{}", rel.display())
        };
        let name = if m.v2 {
            String::new()
        } else {
            m.options
                .iter()
                .filter(|o| is_controller_option(o))
                .cloned()
                .collect::<Vec<_>>()
                .join(",")
        };
        Some((name, path))
    }
}

/// Whether a v1 mount option names a controller (or a named hierarchy).
fn is_controller_option(o: &str) -> bool {
    const GENERIC: &[&str] = &[
        "rw",
        "ro",
        "relatime",
        "noatime",
        "nosuid",
        "nodev",
        "noexec",
        "xattr",
        "noprefix",
        "clone_children",
        "cpuset_v2_mode",
        "none",
        "all",
        "favordynmods",
    ];
    !GENERIC.contains(&o) && !o.starts_with("release_agent=")
}

/// `path` relative to `root` when it lies under it (`"/a/b"` under `"/a"` → `"b"`).
fn strip_cgroup_prefix<'a>(path: &'a str, root: &str) -> Option<&'a str> {
    let root = root.trim_end_matches('/');
    let rest = path.strip_prefix(root)?;
    if rest.is_empty() {
        Some("")
    } else {
        rest.strip_prefix('/')
    }
}

/// One line of `/proc/PID/cgroup`: a hierarchy and the task's cgroup in it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Member {
    /// The hierarchy (`cpu,cpuacct`, `name=systemd`, `""` for v2).
    pub name: String,
    /// The cgroup, from the hierarchy's root (`/` or `/a/b`).
    pub path: String,
}

/// Parses `/proc/PID/cgroup`; the members come sorted by hierarchy name, as CRIU keeps
/// them, so two tasks in the same cgroups have equal lists.
pub fn parse_membership(text: &str, file: &str) -> Result<Vec<Member>> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let bad = |what: &str| CgroupError::Parse {
            file: file.to_string(),
            what: format!("line {}: {what}", n + 1),
        };
        let mut f = line.splitn(3, ':');
        let (Some(_id), Some(name), Some(path)) = (f.next(), f.next(), f.next()) else {
            return Err(bad("not ID:CONTROLLERS:PATH"));
        };
        if !path.starts_with('/') {
            return Err(bad("the path is not absolute"));
        }
        if path.split('/').any(|c| c == "..") {
            return Err(bad(
                "the cgroup is outside the task's cgroup namespace; cgroup namespaces are not supported yet",
            ));
        }
        out.push(Member {
            name: name.to_string(),
            path: path.to_string(),
        });
    }
    out.sort();
    Ok(out)
}

/// The cgroups of task (or thread) `tid`.
pub fn membership(tid: i32) -> Result<Vec<Member>> {
    let file = format!("/proc/{tid}/cgroup");
    let text = std::fs::read_to_string(&file).map_err(crate::error::io("read", &file))?;
    parse_membership(&text, &file)
}

/// The cgroups of stasis itself.
pub fn own_membership() -> Result<Vec<Member>> {
    let file = "/proc/self/cgroup";
    let text = std::fs::read_to_string(file).map_err(crate::error::io("read", file))?;
    parse_membership(&text, file)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// This project's lab machine: hybrid, v1 controllers plus cgroup2 at `unified`.
    pub const HYBRID: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
50 23 0:40 / /mnt/my\\040cg rw - cgroup cgroup rw,nosuid,cpu,cpuacct
51 23 0:32 /ctr /ctr-memory rw - cgroup cgroup rw,memory
";

    #[test]
    fn a_hybrid_host_has_every_v1_controller_and_the_unified_hierarchy() {
        let h = Hierarchies::parse(HYBRID, "mountinfo").unwrap();
        assert_eq!(h.mounts().len(), 10, "tmpfs is not a cgroup mount");
        assert_eq!(
            h.dir("cpu", "/a/b").unwrap(),
            Path::new("/sys/fs/cgroup/cpu/a/b")
        );
        assert_eq!(h.dir("", "/").unwrap(), Path::new("/sys/fs/cgroup/unified"));
        assert_eq!(
            h.dir("name=systemd", "/x").unwrap(),
            Path::new("/sys/fs/cgroup/systemd/x")
        );
        // Co-mounted controllers are found by their joined name; the escape is undone.
        assert_eq!(h.dir("cpu,cpuacct", "/").unwrap(), Path::new("/mnt/my cg"));
        assert!(matches!(
            h.dir("hugetlb", "/"),
            Err(CgroupError::NotMounted { .. })
        ));
    }

    #[test]
    fn the_root_mount_of_a_hierarchy_is_preferred_over_a_bind_mount_of_a_cgroup() {
        let h = Hierarchies::parse(HYBRID, "mountinfo").unwrap();
        assert_eq!(
            h.mount_of("memory").unwrap().point,
            Path::new("/sys/fs/cgroup/memory")
        );
        let only_bind = Hierarchies::parse(
            "51 23 0:32 /ctr /ctr-memory rw - cgroup cgroup rw,memory\n",
            "mountinfo",
        )
        .unwrap();
        assert_eq!(
            only_bind.dir("memory", "/ctr/x").unwrap(),
            Path::new("/ctr-memory/x")
        );
        assert_eq!(
            only_bind.dir("memory", "/ctr").unwrap(),
            Path::new("/ctr-memory")
        );
        let e = only_bind.dir("memory", "/ctrl").unwrap_err().to_string();
        assert!(e.contains("/ctrl") && e.contains("outside"), "{e}");
    }

    #[test]
    fn a_directory_is_located_in_its_hierarchy() {
        let h = Hierarchies::parse(HYBRID, "mountinfo").unwrap();
        assert_eq!(
            h.locate(Path::new("/sys/fs/cgroup/freezer/ct/1")),
            Some(("freezer".into(), "/ct/1".into()))
        );
        assert_eq!(
            h.locate(Path::new("/sys/fs/cgroup/unified")),
            Some((String::new(), "/".into()))
        );
        assert_eq!(
            h.locate(Path::new("/mnt/my cg/x")),
            Some(("cpu,cpuacct".into(), "/x".into()))
        );
        assert_eq!(
            h.locate(Path::new("/ctr-memory/y")),
            Some(("memory".into(), "/ctr/y".into()))
        );
        assert_eq!(h.locate(Path::new("/tmp")), None);
    }

    #[test]
    fn proc_cgroup_is_parsed_and_sorted_by_hierarchy() {
        let text = "9:name=systemd:/\n4:memory:/process_api/0193\n1:cpu:/\n0::/\n";
        let m = parse_membership(text, "/proc/1/cgroup").unwrap();
        let names: Vec<&str> = m.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["", "cpu", "memory", "name=systemd"]);
        assert_eq!(m[2].path, "/process_api/0193");
        let e = parse_membership("4:memory:/../x\n", "/proc/7/cgroup")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("/proc/7/cgroup: line 1") && e.contains("namespace"),
            "{e}"
        );
        assert!(parse_membership("garbage\n", "f").is_err());
    }

    #[test]
    fn a_task_s_mount_namespace_is_read_like_stasis_s_own() {
        let me = std::process::id() as i32;
        assert_eq!(
            Hierarchies::of_task(me).unwrap(),
            Hierarchies::of_self().unwrap()
        );
        let e = Hierarchies::of_task(i32::MAX).unwrap_err().to_string();
        assert!(e.contains(&format!("/proc/{}/mountinfo", i32::MAX)), "{e}");
    }

    #[test]
    fn controller_names_split_on_commas_and_v2_is_the_empty_name() {
        assert_eq!(controllers_of("cpu,cpuacct"), ["cpu", "cpuacct"]);
        assert_eq!(controllers_of(""), [""]);
        assert_eq!(controllers_of("name=systemd"), ["name=systemd"]);
    }
}
