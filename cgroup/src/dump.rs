//! CRIU's `cgroup.img` from the cgroups of the dumped tasks.
//!
//! Each distinct list of (hierarchy, path) memberships is a *set* with a small id; the
//! dumper's own set comes first (id 1) and is recorded only as `inventory.root_cg_set`,
//! each thread's set goes to its `thread_core.cg_set`. `cgroup.img` is written only when
//! some task is in another set than the dumper (CRIU's rule): a task that shares every
//! cgroup with stasis restores into stasis's cgroups and needs nothing.
//!
//! For each hierarchy of the dumped sets, the cgroups the tasks are in are recorded as
//! directory trees with their controller properties and the owner and mode of every
//! directory and file: the task's cgroup and every cgroup below it (empty child cgroups of
//! a container are part of it). A task in a hierarchy's root records the root alone, with
//! no property: the root belongs to the host, and walking it would record the host's
//! whole tree.

use crate::error::{io, CgroupError, Result};
use crate::fs::{CgroupFs, Perms};
use crate::hierarchy::{controllers_of, Hierarchies, Member};
use crate::props::{self, Write};
use stasis_images::pb;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The cgroup sets met during a dump.
#[derive(Clone, Debug)]
pub struct CgroupSets {
    /// Every set, the dumper's first; ids are index + 1.
    sets: Vec<Vec<Member>>,
    used: BTreeSet<u32>,
}

/// The v1 freezer's state before `--freeze-cgroup` froze it, recorded as CRIU does.
#[derive(Clone, Debug)]
pub struct FreezerRecord {
    /// The freezer cgroup directory.
    pub dir: PathBuf,
    /// `THAWED` or `FROZEN`.
    pub state: &'static str,
}

fn perms_entry(p: Perms) -> pb::CgroupPerms {
    pb::CgroupPerms {
        mode: p.mode,
        uid: p.uid,
        gid: p.gid,
    }
}

/// Whether cgroup `path` is `head` or lies below it.
pub(crate) fn is_under(path: &str, head: &str) -> bool {
    head == "/"
        || path == head
        || path
            .strip_prefix(head)
            .is_some_and(|rest| rest.starts_with('/'))
}

impl CgroupSets {
    /// Starts with the dumper's own cgroups (set 1).
    pub fn new(dumper: Vec<Member>) -> CgroupSets {
        CgroupSets {
            sets: vec![dumper],
            used: BTreeSet::new(),
        }
    }

    /// The id of the dumper's set (`inventory.root_cg_set`).
    pub fn dumper_set(&self) -> u32 {
        1
    }

    /// The set of a task with these memberships, added if new.
    pub fn set_of(&mut self, members: Vec<Member>) -> u32 {
        let id = match self.sets.iter().position(|s| *s == members) {
            Some(i) => i as u32 + 1,
            None => {
                self.sets.push(members);
                self.sets.len() as u32
            }
        };
        self.used.insert(id);
        id
    }

    /// The memberships of set `id`.
    pub fn members(&self, id: u32) -> Option<&[Member]> {
        self.sets
            .get(id.checked_sub(1)? as usize)
            .map(Vec::as_slice)
    }

    /// Whether `cgroup.img` must be written: some task is in another set than stasis.
    pub fn needs_image(&self) -> bool {
        self.used.iter().any(|&id| id != self.dumper_set())
    }

    /// `cgroup.img`'s entry: the tasks' sets and, per hierarchy, the trees of their
    /// cgroups with properties read through `fs`. `tops` are more cgroups (hierarchy,
    /// path) whose trees are recorded: the roots of the tasks' cgroup namespaces, whose
    /// properties a restore must bring back though no task sits in them.
    pub fn image(
        &self,
        fs: &impl CgroupFs,
        hier: &Hierarchies,
        freezer: Option<&FreezerRecord>,
        tops: &[(String, String)],
    ) -> Result<pb::CgroupEntry> {
        let dumped: Vec<u32> = self
            .used
            .iter()
            .copied()
            .filter(|&id| id != self.dumper_set())
            .collect();
        let mut entry = pb::CgroupEntry::default();
        let mut names: BTreeSet<&str> = BTreeSet::new();
        for &id in &dumped {
            let members = &self.sets[id as usize - 1];
            entry.sets.push(pb::CgSetEntry {
                id,
                ctls: members
                    .iter()
                    .map(|m| pb::CgMemberEntry {
                        name: m.name.clone(),
                        path: m.path.clone(),
                        cgns_prefix: None,
                    })
                    .collect(),
            });
            names.extend(members.iter().map(|m| m.name.as_str()));
        }
        for name in names {
            let paths: BTreeSet<&str> = dumped
                .iter()
                .flat_map(|&id| self.sets[id as usize - 1].iter())
                .filter(|m| m.name == name)
                .map(|m| m.path.as_str())
                .chain(tops.iter().filter(|t| t.0 == name).map(|t| t.1.as_str()))
                .collect();
            let heads: Vec<&str> = paths
                .iter()
                .copied()
                .filter(|p| !paths.iter().any(|q| q != p && is_under(p, q)))
                .collect();
            let cnames = controllers_of(name);
            let mut dirs = Vec::with_capacity(heads.len());
            for head in heads {
                dirs.push(if head == "/" {
                    root_dir(fs, hier, name)
                } else {
                    let at = hier.dir(name, head)?;
                    dir_tree(fs, &cnames, &at, head.trim_start_matches('/'))?
                });
            }
            if let Some(f) = freezer.filter(|_| cnames.iter().any(|c| c == "freezer")) {
                record_freezer(&mut dirs, hier, name, f)?;
            }
            entry.controllers.push(pb::CgControllerEntry {
                cnames,
                dirs,
                is_threaded: None,
            });
        }
        Ok(entry)
    }
}

/// The root of a hierarchy: no property, no child.
fn root_dir(fs: &impl CgroupFs, hier: &Hierarchies, name: &str) -> pb::CgroupDirEntry {
    let perms = hier
        .dir(name, "/")
        .ok()
        .and_then(|p| fs.perms(&p).ok())
        .map(perms_entry);
    pb::CgroupDirEntry {
        dir_name: String::new(),
        children: Vec::new(),
        properties: Vec::new(),
        dir_perms: perms,
    }
}

/// The cgroup at `at` (recorded as `dir_name`) with its properties and descendants.
fn dir_tree(
    fs: &impl CgroupFs,
    cnames: &[String],
    at: &Path,
    dir_name: &str,
) -> Result<pb::CgroupDirEntry> {
    let mut properties = Vec::new();
    for p in props::for_hierarchy(cnames) {
        let file = at.join(p.name);
        if !fs.exists(&file) {
            // Not on this kernel, or its controller is not enabled here (v2).
            continue;
        }
        let value = if p.write == Write::PermsOnly {
            String::new()
        } else {
            let raw = fs.read(&file).map_err(io("read", &file))?;
            match props::normalise(p.name, &raw) {
                Some(v) => v,
                None => {
                    return Err(CgroupError::Parse {
                        file: file.display().to_string(),
                        what: format!("unexpected value {raw:?}"),
                    })
                }
            }
        };
        let perms = fs.perms(&file).map_err(io("stat", &file))?;
        log::debug!("cgroup property {} = {value:?}", file.display());
        properties.push(pb::CgroupPropEntry {
            name: p.name.to_string(),
            value,
            perms: Some(perms_entry(perms)),
        });
    }
    let mut children = Vec::new();
    for sub in fs.subdirs(at).map_err(io("list", at))? {
        children.push(dir_tree(fs, cnames, &at.join(&sub), &sub)?);
    }
    Ok(pb::CgroupDirEntry {
        dir_name: dir_name.to_string(),
        children,
        properties,
        dir_perms: Some(perms_entry(fs.perms(at).map_err(io("stat", at))?)),
    })
}

/// Adds `freezer.state` to the recorded directory of the frozen cgroup (or, if it is
/// above the tasks' cgroups, to their first one, as CRIU does).
fn record_freezer(
    dirs: &mut [pb::CgroupDirEntry],
    hier: &Hierarchies,
    name: &str,
    f: &FreezerRecord,
) -> Result<()> {
    fn find<'a>(
        d: &'a mut pb::CgroupDirEntry,
        at: &Path,
        want: &Path,
    ) -> Option<&'a mut pb::CgroupDirEntry> {
        if at == want {
            return Some(d);
        }
        let kids = &mut d.children;
        for c in kids.iter_mut() {
            let sub = at.join(&c.dir_name);
            if want.starts_with(&sub) {
                return find(c, &sub, want);
            }
        }
        None
    }
    let prop = pb::CgroupPropEntry {
        name: props::FREEZER_STATE.to_string(),
        value: f.state.to_string(),
        perms: None,
    };
    for d in dirs.iter_mut() {
        let at = hier.dir(name, &format!("/{}", d.dir_name))?;
        if let Some(target) = find(d, &at, &f.dir) {
            target.properties.push(prop);
            return Ok(());
        }
    }
    if let Some(first) = dirs.first_mut() {
        first.properties.push(prop);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::FakeFs;
    use crate::hierarchy::parse_membership;

    pub const MOUNTS: &str = "\
32 31 0:29 / /cg/cpu rw - cgroup cgroup rw,cpu
35 31 0:32 / /cg/memory rw - cgroup cgroup rw,memory
37 31 0:34 / /cg/freezer rw - cgroup cgroup rw,freezer
41 31 0:38 / /cg/unified rw - cgroup2 cgroup2 rw
";

    fn members(text: &str) -> Vec<Member> {
        parse_membership(text, "test").unwrap()
    }

    fn host() -> (FakeFs, Hierarchies) {
        let fs = FakeFs::new();
        fs.file("/cg/cpu/ct/cpu.shares", "512\n")
            .file("/cg/cpu/ct/cpu.cfs_period_us", "100000\n")
            .file("/cg/cpu/ct/cpu.cfs_quota_us", "50000\n")
            .file("/cg/cpu/ct/notify_on_release", "0\n")
            .file("/cg/cpu/ct/tasks", "42\n")
            .file("/cg/cpu/ct/empty/cpu.shares", "1024\n")
            .file("/cg/memory/ct/memory.limit_in_bytes", "67108864\n")
            .file(
                "/cg/memory/ct/memory.oom_control",
                "oom_kill_disable 1\nunder_oom 0\n",
            )
            .file("/cg/freezer/ct/freezer.state", "THAWED\n")
            .file("/cg/unified/cgroup.procs", "1\n")
            .set_perms_of(
                "/cg/cpu/ct",
                Perms {
                    mode: 0o40750,
                    uid: 1000,
                    gid: 1000,
                },
            );
        (fs, Hierarchies::parse(MOUNTS, "mountinfo").unwrap())
    }

    const TASK: &str = "4:memory:/ct\n2:freezer:/ct\n1:cpu:/ct\n0::/\n";
    const STASIS: &str = "4:memory:/\n2:freezer:/\n1:cpu:/\n0::/\n";

    #[test]
    fn a_task_in_stasis_own_cgroups_needs_no_image() {
        let mut sets = CgroupSets::new(members(STASIS));
        assert_eq!(sets.set_of(members(STASIS)), 1);
        assert!(!sets.needs_image());
        assert_eq!(sets.set_of(members(TASK)), 2);
        assert_eq!(
            sets.set_of(members(TASK)),
            2,
            "the same cgroups are the same set"
        );
        assert!(sets.needs_image());
    }

    #[test]
    fn the_image_holds_the_task_set_and_each_cgroup_tree_with_its_properties() {
        let (fs, hier) = host();
        let mut sets = CgroupSets::new(members(STASIS));
        let id = sets.set_of(members(TASK));
        let e = sets.image(&fs, &hier, None, &[]).unwrap();
        assert_eq!(e.sets.len(), 1, "the dumper's set is not recorded");
        assert_eq!(e.sets[0].id, id);
        let ctls: Vec<(&str, &str)> = e.sets[0]
            .ctls
            .iter()
            .map(|c| (c.name.as_str(), c.path.as_str()))
            .collect();
        assert_eq!(
            ctls,
            [
                ("", "/"),
                ("cpu", "/ct"),
                ("freezer", "/ct"),
                ("memory", "/ct")
            ]
        );

        let cnames: Vec<&Vec<String>> = e.controllers.iter().map(|c| &c.cnames).collect();
        assert_eq!(
            cnames,
            [
                &vec![String::new()],
                &vec!["cpu".to_string()],
                &vec!["freezer".to_string()],
                &vec!["memory".to_string()]
            ]
        );
        let v2 = &e.controllers[0].dirs;
        assert_eq!(v2.len(), 1);
        assert!(
            v2[0].dir_name.is_empty() && v2[0].properties.is_empty() && v2[0].children.is_empty(),
            "a root is recorded alone, without properties: {:?}",
            v2[0]
        );

        let cpu = &e.controllers[1].dirs[0];
        assert_eq!(cpu.dir_name, "ct");
        let props: Vec<(&str, &str)> = cpu
            .properties
            .iter()
            .map(|p| (p.name.as_str(), p.value.as_str()))
            .collect();
        assert_eq!(
            props,
            [
                ("cpu.shares", "512"),
                ("cpu.cfs_period_us", "100000"),
                ("cpu.cfs_quota_us", "50000"),
                ("notify_on_release", "0"),
                ("tasks", "")
            ]
        );
        assert_eq!(
            cpu.dir_perms,
            Some(pb::CgroupPerms {
                mode: 0o40750,
                uid: 1000,
                gid: 1000
            })
        );
        assert_eq!(
            cpu.children.len(),
            1,
            "an empty child cgroup is part of the tree"
        );
        assert_eq!(cpu.children[0].dir_name, "empty");

        let mem = &e.controllers[3].dirs[0];
        let props: Vec<(&str, &str)> = mem
            .properties
            .iter()
            .map(|p| (p.name.as_str(), p.value.as_str()))
            .collect();
        assert_eq!(
            props,
            [
                ("memory.limit_in_bytes", "67108864"),
                ("memory.oom_control", "1")
            ]
        );
    }

    #[test]
    fn the_freezer_state_before_the_freeze_is_recorded_on_the_frozen_cgroup() {
        let (fs, hier) = host();
        let mut sets = CgroupSets::new(members(STASIS));
        sets.set_of(members(TASK));
        let rec = FreezerRecord {
            dir: "/cg/freezer/ct".into(),
            state: "THAWED",
        };
        let e = sets.image(&fs, &hier, Some(&rec), &[]).unwrap();
        let freezer = &e.controllers[2].dirs[0];
        assert_eq!(
            freezer
                .properties
                .last()
                .map(|p| (p.name.as_str(), p.value.as_str())),
            Some(("freezer.state", "THAWED"))
        );
        assert!(e.controllers[1].dirs[0]
            .properties
            .iter()
            .all(|p| p.name != "freezer.state"));
    }

    #[test]
    fn nested_task_cgroups_share_one_head() {
        let (fs, hier) = host();
        fs.file("/cg/cpu/ct/sub/cpu.shares", "2\n");
        let mut sets = CgroupSets::new(members(STASIS));
        sets.set_of(members("1:cpu:/ct\n"));
        sets.set_of(members("1:cpu:/ct/sub\n"));
        let e = sets.image(&fs, &hier, None, &[]).unwrap();
        assert_eq!(e.sets.len(), 2);
        assert_eq!(e.controllers.len(), 1);
        assert_eq!(e.controllers[0].dirs.len(), 1, "/ct/sub lies inside /ct");
        let kids: Vec<&str> = e.controllers[0].dirs[0]
            .children
            .iter()
            .map(|c| c.dir_name.as_str())
            .collect();
        assert_eq!(kids, ["empty", "sub"]);
    }

    #[test]
    fn a_cgroup_namespace_root_above_the_tasks_heads_their_tree() {
        let (fs, hier) = host();
        fs.file("/cg/cpu/ct/cpu.shares", "256\n");
        fs.file("/cg/cpu/ct/init.scope/cpu.shares", "1024\n");
        let mut sets = CgroupSets::new(members(STASIS));
        sets.set_of(members("1:cpu:/ct/init.scope\n"));
        let tops = [("cpu".to_string(), "/ct".to_string())];
        let e = sets.image(&fs, &hier, None, &tops).unwrap();
        let head = &e.controllers[0].dirs;
        assert_eq!(head.len(), 1);
        assert_eq!(head[0].dir_name, "ct", "the namespace root heads the tree");
        assert!(
            head[0].properties.iter().any(|p| p.value == "256"),
            "with its properties: {:?}",
            head[0].properties
        );
        assert!(head[0].children.iter().any(|c| c.dir_name == "init.scope"));
    }

    #[test]
    fn an_unmounted_hierarchy_is_named() {
        let (fs, hier) = host();
        let mut sets = CgroupSets::new(members(STASIS));
        sets.set_of(members("7:pids:/ct\n"));
        let e = sets.image(&fs, &hier, None, &[]).unwrap_err().to_string();
        assert!(e.contains("pids is not mounted"), "{e}");
    }

    #[test]
    fn is_under_compares_whole_components() {
        assert!(is_under("/a/b", "/a"));
        assert!(is_under("/a", "/a"));
        assert!(!is_under("/ab", "/a"));
        assert!(is_under("/anything", "/"));
    }
}
