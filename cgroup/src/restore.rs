//! Restoring cgroups from `cgroup.img`: remap with `--cgroup-root`, check, create,
//! move the tasks in, write the properties — in `--manage-cgroups` mode.
//!
//! ```text
//! RestorePlan::new (remap) → preflight (nothing touched) → prepare: mkdir, owner/mode,
//!   at-creation properties (cpuset.cpus/mems, subtree_control...) → fork
//!   → Prepared::enter(set, pid) → rebuild → Prepared::apply_properties (limits, freezer
//!   state last) → resume → Prepared::keep
//! ```
//!
//! The modes are CRIU's:
//!
//! | mode | a cgroup that exists | a cgroup that does not |
//! |---|---|---|
//! | `ignore` | nothing is done at all: the tasks stay in stasis's cgroups | — |
//! | `none` | tasks moved in, no property written | error |
//! | `props` | tasks moved in, properties written | error |
//! | `soft` (default) | tasks moved in, **no property written** | created with its properties |
//! | `full` | tasks moved in, properties written | created with its properties |
//! | `strict` | error | created with its properties |
//!
//! So a cgroup that the runtime already made for the restored container is never
//! written to unless `full` or `props` asks for it. The root of a hierarchy is never
//! written to in any mode. Every directory stasis creates is removed again, deepest first,
//! if the restore fails before [`Prepared::keep`] — and only those.

use crate::dump::is_under;
use crate::error::{io, CgroupError, Result};
use crate::fs::{CgroupFs, Perms};
use crate::hierarchy::{controllers_of, Hierarchies};
use crate::props::{self, When, Write};
use stasis_images::pb;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// `--manage-cgroups[=MODE]` (CRIU's `criu_cg_mode`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ManageMode {
    Ignore,
    None,
    Props,
    #[default]
    Soft,
    Full,
    Strict,
}

impl ManageMode {
    /// A mode by name; an empty name (`--manage-cgroups` alone) is `soft`.
    pub fn parse(s: &str) -> Result<ManageMode> {
        Ok(match s {
            "" | "soft" => ManageMode::Soft,
            "ignore" => ManageMode::Ignore,
            "none" => ManageMode::None,
            "props" => ManageMode::Props,
            "full" => ManageMode::Full,
            "strict" => ManageMode::Strict,
            other => {
                return Err(CgroupError::BadOption(format!(
                    "--manage-cgroups: unknown mode {other:?} (none, ignore, props, soft, full, strict)"
                )))
            }
        })
    }

    /// From the RPC's `manage_cgroups` (legacy: true is soft, false ignore) and
    /// `manage_cgroups_mode` (IGNORE=0 NONE=1 PROPS=2 SOFT=3 FULL=4 STRICT=5 DEFAULT=6),
    /// which wins; neither given is the default, soft.
    pub fn from_rpc(manage_cgroups: Option<bool>, mode: Option<i32>) -> Result<ManageMode> {
        Ok(match (mode, manage_cgroups) {
            (Some(0), _) => ManageMode::Ignore,
            (Some(1), _) => ManageMode::None,
            (Some(2), _) => ManageMode::Props,
            (Some(3) | Some(6), _) => ManageMode::Soft,
            (Some(4), _) => ManageMode::Full,
            (Some(5), _) => ManageMode::Strict,
            (Some(m), _) => {
                return Err(CgroupError::BadOption(format!(
                    "manage_cgroups_mode {m} is not a criu_cg_mode"
                )))
            }
            (None, Some(false)) => ManageMode::Ignore,
            (None, _) => ManageMode::Soft,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            ManageMode::Ignore => "ignore",
            ManageMode::None => "none",
            ManageMode::Props => "props",
            ManageMode::Soft => "soft",
            ManageMode::Full => "full",
            ManageMode::Strict => "strict",
        }
    }

    /// Whether properties go into a cgroup that already exists.
    fn writes_existing(self) -> bool {
        matches!(self, ManageMode::Props | ManageMode::Full)
    }

    fn creates(self) -> bool {
        matches!(
            self,
            ManageMode::Soft | ManageMode::Full | ManageMode::Strict
        )
    }
}

/// One `--cgroup-root`: a hierarchy (`None`: every one; `Some("")`: cgroup v2) and the
/// path its dumped root is restored at.
pub type CgroupRoot = (Option<String>, PathBuf);

/// Parses `--cgroup-root [CTRL:]PATH` (`cpu,cpuacct:/ct`, `:/ct` for cgroup v2, `/ct`).
pub fn parse_cgroup_root(arg: &str) -> Result<CgroupRoot> {
    let (ctrl, path) = match arg.split_once(':') {
        Some((c, p)) if !arg.starts_with('/') => (Some(c.to_string()), p),
        _ => (None, arg),
    };
    if !path.starts_with('/') {
        return Err(CgroupError::BadOption(format!(
            "--cgroup-root {arg:?}: the path must be absolute ([CONTROLLER:]/PATH)"
        )));
    }
    Ok((ctrl, PathBuf::from(path)))
}

/// Applies `--cgroup-root` to an image entry as CRIU does: in each hierarchy a root
/// applies to, the recorded top cgroup becomes the new root, and every task path inside
/// it moves along.
pub fn remap(entry: &mut pb::CgroupEntry, roots: &[CgroupRoot]) -> Result<()> {
    let global = roots
        .iter()
        .rev()
        .find(|(c, _)| c.is_none())
        .map(|(_, p)| p);
    for ctl in &mut entry.controllers {
        let mut chosen: Option<&PathBuf> = None;
        for (c, p) in roots {
            let Some(c) = c else { continue };
            let wanted = controllers_of(c);
            if !ctl.cnames.iter().any(|n| wanted.contains(n)) {
                continue;
            }
            if chosen.is_some_and(|q| q != p) {
                return Err(CgroupError::BadOption(format!(
                    "--cgroup-root gives hierarchy {} two roots, {} and {}",
                    ctl.cnames.join(","),
                    chosen.map(|q| q.display().to_string()).unwrap_or_default(),
                    p.display()
                )));
            }
            chosen = Some(p);
        }
        let Some(root) = chosen.or(global) else {
            continue;
        };
        let root = root.to_string_lossy().trim_end_matches('/').to_string();
        let root = if root.is_empty() {
            "/".to_string()
        } else {
            root
        };
        if ctl.dirs.len() > 1 {
            return Err(CgroupError::BadOption(format!(
                "--cgroup-root {root}: hierarchy {} holds {} separate cgroups, which cannot all move to one root",
                ctl.cnames.join(","),
                ctl.dirs.len()
            )));
        }
        let name = ctl.cnames.join(",");
        for head in &mut ctl.dirs {
            let old = format!("/{}", head.dir_name.trim_matches('/'));
            let old = if old == "/" { String::new() } else { old };
            for set in &mut entry.sets {
                for m in set.ctls.iter_mut().filter(|m| m.name == name) {
                    if !is_under(&m.path, if old.is_empty() { "/" } else { &old }) {
                        continue;
                    }
                    let rest = if old.is_empty() {
                        m.path.trim_start_matches('/').to_string()
                    } else {
                        m.path[old.len()..].trim_start_matches('/').to_string()
                    };
                    let new = match (root.as_str(), rest.is_empty()) {
                        (r, true) => r.to_string(),
                        ("/", false) => format!("/{rest}"),
                        (r, false) => format!("{r}/{rest}"),
                    };
                    log::info!("cgroup {name}:{} -> {new}", m.path);
                    // The namespace root moves along: the part of the path below it
                    // stays.
                    m.cgns_prefix = m.cgns_prefix.and_then(|n| {
                        let below = m.path.get(n as usize..)?;
                        let kept = new.strip_suffix(below)?;
                        Some(kept.len().max(1) as u32)
                    });
                    m.path = new;
                }
            }
            head.dir_name = root.trim_start_matches('/').to_string();
        }
    }
    Ok(())
}

/// What restore does with one recorded cgroup directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Create it (and write its properties).
    Create,
    /// It exists; write its properties (`full`, `props`).
    Update,
    /// It exists and is left as it is (`soft`, `none`, or a hierarchy root).
    Keep,
}

/// One recorded directory, resolved on this host.
#[derive(Clone, Debug)]
struct Dir {
    hierarchy: String,
    cnames: Vec<String>,
    /// The cgroup path in its hierarchy.
    cgroup: String,
    /// Where it is in the filesystem.
    path: PathBuf,
    props: Vec<pb::CgroupPropEntry>,
    perms: Option<pb::CgroupPerms>,
    action: Action,
}

/// `cgroup.img`, remapped, with the restore mode.
#[derive(Clone, Debug)]
pub struct RestorePlan {
    entry: pb::CgroupEntry,
    mode: ManageMode,
    root_set: Option<u32>,
}

/// What the preflight found: every directory's action and each set's directories.
#[derive(Clone, Debug, Default)]
pub struct Checked {
    dirs: Vec<Dir>,
    sets: BTreeMap<u32, Vec<PathBuf>>,
    /// Per set, where its cgroup namespace's root is in each hierarchy (the set's own
    /// cgroup when it sits at that root, or has no namespace).
    ns_roots: BTreeMap<u32, Vec<PathBuf>>,
}

impl Checked {
    /// Each directory (filesystem path) with what restore does to it, parents first.
    pub fn actions(&self) -> Vec<(PathBuf, Action)> {
        self.dirs
            .iter()
            .map(|d| (d.path.clone(), d.action.clone()))
            .collect()
    }
}

impl RestorePlan {
    /// `entry` is `cgroup.img`'s entry (`None` if the image has none), `root_set` the
    /// inventory's `root_cg_set` (the dumper's set: its tasks stay in stasis's cgroups).
    pub fn new(
        entry: Option<pb::CgroupEntry>,
        root_set: Option<u32>,
        mode: ManageMode,
        roots: &[CgroupRoot],
    ) -> Result<RestorePlan> {
        let mut entry = entry.unwrap_or_default();
        if root_set == Some(0) {
            return Err(CgroupError::BadImage(
                "inventory.img: root_cg_set is 0".into(),
            ));
        }
        let mut ids = BTreeSet::new();
        for s in &entry.sets {
            if !ids.insert(s.id) {
                return Err(CgroupError::BadImage(format!(
                    "cgroup set {} is listed twice",
                    s.id
                )));
            }
            if Some(s.id) == root_set {
                return Err(CgroupError::BadImage(format!(
                    "cgroup set {} is the dumper's own (inventory root_cg_set) and cannot be described",
                    s.id
                )));
            }
        }
        remap(&mut entry, roots)?;
        Ok(RestorePlan {
            entry,
            mode,
            root_set,
        })
    }

    pub fn mode(&self) -> ManageMode {
        self.mode
    }

    /// Whether a task of set `set` stays in stasis's cgroups (it shared the dumper's
    /// cgroups, or the image records no set for it).
    pub fn inherits(&self, set: Option<u32>) -> bool {
        match set {
            None | Some(0) => true,
            Some(s) => Some(s) == self.root_set,
        }
    }

    /// Checks, without changing anything, that the cgroups of the tasks in `sets` can be
    /// restored: hierarchies mounted, directories present or creatable as the mode
    /// demands, every task cgroup present or recorded.
    pub fn preflight(
        &self,
        fs: &impl CgroupFs,
        hier: &Hierarchies,
        sets: &[u32],
    ) -> Result<Checked> {
        let mut out = Checked::default();
        if self.mode == ManageMode::Ignore {
            return Ok(out);
        }
        let wanted: BTreeSet<u32> = sets
            .iter()
            .copied()
            .filter(|&s| !self.inherits(Some(s)))
            .collect();
        if wanted.is_empty() {
            return Ok(out);
        }
        for s in &wanted {
            if !self.entry.sets.iter().any(|e| e.id == *s) {
                return Err(CgroupError::BadImage(format!(
                    "a task is in cgroup set {s}, which cgroup.img does not describe"
                )));
            }
        }
        for ctl in &self.entry.controllers {
            let name = ctl.cnames.join(",");
            for head in &ctl.dirs {
                let cg = format!("/{}", head.dir_name.trim_matches('/'));
                self.add_missing_ancestors(fs, hier, &name, &ctl.cnames, &cg, &mut out)?;
                self.walk(fs, hier, &name, &ctl.cnames, head, &cg, &mut out)?;
            }
        }
        for set in self.entry.sets.iter().filter(|s| wanted.contains(&s.id)) {
            let mut paths = Vec::new();
            let mut ns_roots = Vec::new();
            for m in &set.ctls {
                let root = match m.cgns_prefix {
                    Some(n) => m
                        .path
                        .get(..n as usize)
                        .filter(|r| r.starts_with('/') && is_under(&m.path, r)),
                    None => None,
                };
                let root = match root {
                    Some(r) => r,
                    None if m.cgns_prefix.is_some() => {
                        return Err(CgroupError::BadImage(format!(
                            "cgroup set {}: cgns_prefix {:?} does not end a parent of {}",
                            set.id, m.cgns_prefix, m.path
                        )))
                    }
                    None => m.path.as_str(),
                };
                for (path, list) in [(m.path.as_str(), &mut paths), (root, &mut ns_roots)] {
                    let p = hier.dir(&m.name, path)?;
                    let recorded = out.dirs.iter().any(|d| d.path == p);
                    if !recorded && !fs.exists(&p) {
                        return Err(CgroupError::NoSuchCgroup {
                            path: p,
                            set: set.id,
                        });
                    }
                    list.push(p);
                }
            }
            out.sets.insert(set.id, paths);
            out.ns_roots.insert(set.id, ns_roots);
        }
        Ok(out)
    }

    /// Ancestors of a recorded top cgroup that do not exist (a new `--cgroup-root` below
    /// a missing parent) are created too, without properties.
    fn add_missing_ancestors(
        &self,
        fs: &impl CgroupFs,
        hier: &Hierarchies,
        name: &str,
        cnames: &[String],
        cgroup: &str,
        out: &mut Checked,
    ) -> Result<()> {
        let mut missing = Vec::new();
        let mut at = Path::new(cgroup).parent();
        while let Some(a) = at {
            let s = a.to_string_lossy().to_string();
            if s == "/" {
                break;
            }
            let p = hier.dir(name, &s)?;
            if fs.exists(&p) || out.dirs.iter().any(|d| d.path == p) {
                break;
            }
            missing.push((s, p));
            at = a.parent();
        }
        for (cg, path) in missing.into_iter().rev() {
            if !self.mode.creates() {
                return Err(CgroupError::Missing {
                    path,
                    mode: self.mode.name(),
                });
            }
            out.dirs.push(Dir {
                hierarchy: name.to_string(),
                cnames: cnames.to_vec(),
                cgroup: cg,
                path,
                props: Vec::new(),
                perms: None,
                action: Action::Create,
            });
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn walk(
        &self,
        fs: &impl CgroupFs,
        hier: &Hierarchies,
        name: &str,
        cnames: &[String],
        d: &pb::CgroupDirEntry,
        cgroup: &str,
        out: &mut Checked,
    ) -> Result<()> {
        let path = hier.dir(name, cgroup)?;
        let exists = fs.exists(&path);
        let action = if cgroup == "/" {
            Action::Keep
        } else if exists {
            match self.mode {
                ManageMode::Strict => return Err(CgroupError::Exists { path }),
                m if m.writes_existing() => Action::Update,
                _ => Action::Keep,
            }
        } else if self.mode.creates() {
            Action::Create
        } else {
            return Err(CgroupError::Missing {
                path,
                mode: self.mode.name(),
            });
        };
        if !out.dirs.iter().any(|x| x.path == path) {
            out.dirs.push(Dir {
                hierarchy: name.to_string(),
                cnames: cnames.to_vec(),
                cgroup: cgroup.to_string(),
                path: path.clone(),
                props: d.properties.clone(),
                perms: d.dir_perms,
                action,
            });
        }
        for c in &d.children {
            let child = if cgroup == "/" {
                format!("/{}", c.dir_name)
            } else {
                format!("{cgroup}/{}", c.dir_name)
            };
            self.walk(fs, hier, name, cnames, c, &child, out)?;
        }
        Ok(())
    }

    /// Runs the preflight, then creates the missing cgroups and writes what must be
    /// written before any task joins. Dropping the result before
    /// [`Prepared::keep`] removes what was created.
    pub fn prepare<F: CgroupFs>(
        &self,
        fs: F,
        hier: &Hierarchies,
        sets: &[u32],
    ) -> Result<Prepared<F>> {
        let checked = self.preflight(&fs, hier, sets)?;
        let mut p = Prepared {
            fs,
            created: Vec::new(),
            late: Vec::new(),
            checked,
            kept: false,
        };
        let dirs = p.checked.dirs.clone();
        for d in &dirs {
            match d.action {
                Action::Keep => continue,
                Action::Create => {
                    p.fs.mkdir(&d.path).map_err(io("mkdir", &d.path))?;
                    log::info!("created cgroup {}", d.path.display());
                    p.created.push(d.path.clone());
                    p.init_cpuset(d)?;
                }
                Action::Update => {}
            }
            if let Some(perms) = d.perms {
                p.fs.set_perms(&d.path, to_perms(perms))
                    .map_err(io("chown/chmod", &d.path))?;
            }
            for prop in &d.props {
                let (when, _, _) = props::lookup(&d.cnames, &prop.name);
                if when == When::AtCreation {
                    p.write_prop(d, prop)?;
                } else {
                    p.late.push((d.clone(), prop.clone()));
                }
            }
        }
        Ok(p)
    }
}

fn to_perms(p: pb::CgroupPerms) -> Perms {
    Perms {
        mode: p.mode,
        uid: p.uid,
        gid: p.gid,
    }
}

/// Cgroups prepared for the restored tasks.
pub struct Prepared<F: CgroupFs> {
    fs: F,
    /// Directories stasis created, parents first.
    created: Vec<PathBuf>,
    /// Properties written once the tasks are in.
    late: Vec<(Dir, pb::CgroupPropEntry)>,
    checked: Checked,
    kept: bool,
}

/// How long a removal waits for a killed task to leave its cgroup.
const RMDIR_WAIT: Duration = Duration::from_secs(3);

impl<F: CgroupFs> Prepared<F> {
    /// The directories created so far, parents first.
    pub fn created(&self) -> &[PathBuf] {
        &self.created
    }

    /// Moves task `pid` into the cgroups of set `set` (nothing for a task that stays in
    /// stasis's cgroups, or in `ignore` mode).
    pub fn enter(&self, set: u32, pid: i32) -> Result<()> {
        self.enter_paths(self.checked.sets.get(&set), pid)
    }

    /// Moves task `pid` into the roots of the cgroup namespaces of set `set`: where a
    /// task must be when it unshares the namespace that [`enter`](Self::enter) then
    /// moves it below.
    pub fn enter_ns_root(&self, set: u32, pid: i32) -> Result<()> {
        self.enter_paths(self.checked.ns_roots.get(&set), pid)
    }

    fn enter_paths(&self, paths: Option<&Vec<PathBuf>>, pid: i32) -> Result<()> {
        let Some(paths) = paths else {
            return Ok(());
        };
        for p in paths {
            let file = p.join("cgroup.procs");
            self.fs
                .write(&file, &pid.to_string())
                .map_err(|source| CgroupError::Io {
                    op: "move the task into",
                    path: file.clone(),
                    source,
                })?;
            log::debug!("pid {pid} joined {}", p.display());
        }
        Ok(())
    }

    /// Writes the properties that wait for the tasks (limits and the rest), the v1
    /// freezer state last.
    pub fn apply_properties(&mut self) -> Result<()> {
        let late = std::mem::take(&mut self.late);
        let (freezer, rest): (Vec<_>, Vec<_>) = late
            .into_iter()
            .partition(|(_, p)| p.name == props::FREEZER_STATE);
        for (d, prop) in rest.iter().chain(freezer.iter()) {
            self.write_prop(d, prop)?;
        }
        Ok(())
    }

    /// The restore succeeded: the created cgroups stay.
    pub fn keep(mut self) {
        self.kept = true;
    }

    /// A new v1 cpuset has no CPUs and no memory nodes and refuses tasks; when the image
    /// does not give them (the cpuset was a root, remapped by `--cgroup-root`), they are
    /// copied from the parent as `cgroup.clone_children` would.
    fn init_cpuset(&self, d: &Dir) -> Result<()> {
        if !d.cnames.iter().any(|c| c == "cpuset") {
            return Ok(());
        }
        let Some(parent) = d.path.parent() else {
            return Ok(());
        };
        for f in ["cpuset.cpus", "cpuset.mems"] {
            if d.props.iter().any(|p| p.name == f && !p.value.is_empty()) {
                continue;
            }
            let from = parent.join(f);
            let v = self.fs.read(&from).map_err(io("read", &from))?;
            let v = v.trim();
            if !v.is_empty() {
                let to = d.path.join(f);
                self.fs.write(&to, v).map_err(|source| CgroupError::Io {
                    op: "initialise",
                    path: to.clone(),
                    source,
                })?;
            }
        }
        Ok(())
    }

    fn write_prop(&self, d: &Dir, prop: &pb::CgroupPropEntry) -> Result<()> {
        let (_, how, skip_if) = props::lookup(&d.cnames, &prop.name);
        let file = d.path.join(&prop.name);
        if let Some(perms) = prop.perms {
            self.fs
                .set_perms(&file, to_perms(perms))
                .map_err(io("chown/chmod", &file))?;
        }
        if how == Write::PermsOnly || skip_if == Some(prop.value.as_str()) || prop.value.is_empty()
        {
            return Ok(());
        }
        let put = |file: &Path, value: &str| -> Result<()> {
            log::debug!("{} <- {value:?}", file.display());
            match self.fs.write(file, value) {
                Ok(()) => Ok(()),
                // A knob this kernel still shows but no longer takes (CRIU does the same).
                Err(e) if e.raw_os_error() == Some(95) => {
                    log::warn!(
                        "{} does not take {value:?} on this kernel: {e}",
                        file.display()
                    );
                    Ok(())
                }
                Err(source) => Err(CgroupError::Io {
                    op: "write the recorded value to",
                    path: file.to_path_buf(),
                    source,
                }),
            }
        };
        match how {
            Write::Whole => put(&file, &prop.value),
            Write::PerLine => prop
                .value
                .lines()
                .filter(|l| !l.trim().is_empty())
                .try_for_each(|l| put(&file, l)),
            Write::DevicesList => {
                put(&d.path.join("devices.deny"), "a")?;
                let allow = d.path.join("devices.allow");
                prop.value
                    .lines()
                    .filter(|l| !l.trim().is_empty())
                    .try_for_each(|l| put(&allow, l))
            }
            Write::SubtreeControl => {
                let v: Vec<String> = prop
                    .value
                    .split_whitespace()
                    .map(|c| format!("+{c}"))
                    .collect();
                put(&file, &v.join(" "))
            }
            Write::PermsOnly => Ok(()),
        }
        .map_err(|e| {
            log::error!("cgroup {}:{}: {e}", d.hierarchy, d.cgroup);
            e
        })
    }
}

impl<F: CgroupFs> Drop for Prepared<F> {
    fn drop(&mut self) {
        if self.kept {
            return;
        }
        for p in self.created.iter().rev() {
            let deadline = Instant::now() + RMDIR_WAIT;
            loop {
                match self.fs.rmdir(p) {
                    Ok(()) => {
                        log::info!("removed cgroup {}", p.display());
                        break;
                    }
                    // A killed task may not have left it yet.
                    Err(e) if e.raw_os_error() == Some(16) && Instant::now() < deadline => {
                        self.fs.sleep(Duration::from_millis(10));
                    }
                    Err(e) => {
                        log::error!(
                            "cannot remove cgroup {} that stasis created: {e}",
                            p.display()
                        );
                        break;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
