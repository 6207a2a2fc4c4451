//! Cgroups at dump: freezing the tasks through `--freeze-cgroup` before they are seized,
//! and `cgroup.img` with each thread's `cg_set` and the inventory's `root_cg_set`.
//!
//! With a freezer, the cgroup is frozen first; every thread in it (and in its child
//! cgroups) is then `PTRACE_SEIZE`d and interrupted while frozen, the cgroup is thawed,
//! and each thread is waited for in its ptrace stop, which holds it from then on — no
//! task of the cgroup can fork or exit between the listing and the seize. A cgroup that
//! was thawed before is thawed on every error path (the `Frozen` guard), and one that was
//! frozen before is frozen again at the end, as CRIU does.

use crate::{DumpError, Result};
use stasis_cgroup::{CgroupSets, Freezer, FreezerKind, FreezerRecord, Origin, RealFs};
use stasis_images::{names, ImageDir, ImageKind};
use stasis_parasite::Tracee;
use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

/// The threads of a `--freeze-cgroup` cgroup, seized and stopped.
pub(crate) struct FreezerHold {
    freezer: Freezer<RealFs>,
    origin: Origin,
    held: HashMap<i32, Tracee>,
}

impl FreezerHold {
    /// Freezes the cgroup at `path` (waiting at most `timeout`), seizes every thread in
    /// it while frozen, thaws it and waits for each thread's stop. `root`, the task to
    /// dump, must be one of them.
    pub(crate) fn seize(path: &Path, root: i32, timeout: Duration) -> Result<FreezerHold> {
        let freezer = Freezer::open(RealFs, path)?;
        let frozen = freezer.freeze(timeout)?;
        let tids = freezer.threads()?;
        if !tids.contains(&root) {
            return Err(DumpError::Unsupported {
                pid: root,
                what: format!(
                    "is not in the freezer cgroup {} given by --freeze-cgroup",
                    path.display()
                ),
            });
        }
        let mut seized = Vec::with_capacity(tids.len());
        let mut failure = None;
        for tid in tids {
            match Tracee::seize_nowait(tid) {
                Ok(()) => seized.push(tid),
                // It exited between the listing and the seize.
                Err(_) if !Path::new(&format!("/proc/{tid}")).exists() => {}
                Err(e) => {
                    failure = Some(DumpError::from(e));
                    break;
                }
            }
        }
        log::info!(
            "interrupted {} threads of frozen cgroup {}",
            seized.len(),
            path.display()
        );
        // The ptrace stops hold the tasks from here; a seized task stops only once thawed.
        let origin = frozen.thaw()?;
        let mut held = HashMap::with_capacity(seized.len());
        for tid in seized {
            match Tracee::wait_seized(tid) {
                Ok(t) => {
                    held.insert(tid, t);
                }
                Err(_) if !Path::new(&format!("/proc/{tid}")).exists() => {}
                Err(e) => {
                    failure.get_or_insert(DumpError::from(e));
                }
            }
        }
        let hold = FreezerHold {
            freezer,
            origin,
            held,
        };
        log::info!(
            "seized {} threads of freezer cgroup {}",
            hold.held.len(),
            path.display()
        );
        match failure {
            Some(e) => Err(e),
            None => Ok(hold),
        }
    }

    /// The dumped tasks were killed: a cgroup frozen before stays thawed (CRIU
    /// refreezes only tasks that live on).
    pub(crate) fn tasks_killed(&mut self) {
        self.origin.was_frozen = false;
    }

    /// Hands over thread `tid` if the freezer seized it.
    pub(crate) fn take(&mut self, tid: i32) -> Option<Tracee> {
        self.held.remove(&tid)
    }

    /// What `cgroup.img` records of a v1 freezer: its state before the dump.
    pub(crate) fn record(&self) -> Option<FreezerRecord> {
        (self.freezer.kind() == FreezerKind::V1).then(|| FreezerRecord {
            dir: self.freezer.path().to_path_buf(),
            state: if self.origin.was_frozen {
                "FROZEN"
            } else {
                "THAWED"
            },
        })
    }
}

impl Drop for FreezerHold {
    /// A cgroup that was frozen before stasis came is frozen again before the tasks of
    /// the cgroup that were not dumped (and, after a dump that leaves them running, the
    /// dumped ones) leave their ptrace stops.
    fn drop(&mut self) {
        if let Err(e) = self.freezer.restore_origin(self.origin) {
            log::error!("{e}");
        }
    }
}

/// Seizes thread `tid`: the freezer's hold already has it, or it is seized now.
pub(crate) fn seize(hold: &mut Option<FreezerHold>, tid: i32) -> Result<Tracee> {
    match hold.as_mut().and_then(|h| h.take(tid)) {
        Some(t) => Ok(t),
        None => Ok(Tracee::seize(tid)?),
    }
}

/// The cgroup sets of the dumped threads.
pub(crate) struct Cgroups {
    sets: CgroupSets,
    /// The roots of the tree's own cgroup namespace, per hierarchy: recorded as each
    /// member's `cgns_prefix`.
    pub(crate) cgns_roots: Vec<(String, String)>,
}

impl Cgroups {
    /// Starts with stasis's own cgroups.
    pub(crate) fn new() -> Result<Cgroups> {
        Ok(Cgroups {
            sets: CgroupSets::new(stasis_cgroup::hierarchy::own_membership()?),
            cgns_roots: Vec::new(),
        })
    }

    /// The set of thread `tid` (its `thread_core.cg_set`).
    pub(crate) fn set_of(&mut self, tid: i32) -> Result<u32> {
        Ok(self.sets.set_of(stasis_cgroup::hierarchy::membership(tid)?))
    }

    /// stasis's own set (`inventory.root_cg_set`).
    pub(crate) fn root_set(&self) -> u32 {
        self.sets.dumper_set()
    }

    /// Writes `cgroup.img` if some thread is in other cgroups than stasis.
    pub(crate) fn write(&self, dir: &ImageDir, freezer: Option<FreezerRecord>) -> Result<()> {
        if !self.sets.needs_image() {
            log::info!(
                "every task is in stasis's own cgroups: no {}",
                names::CGROUP
            );
            return Ok(());
        }
        let hier = stasis_cgroup::Hierarchies::of_self()?;
        let mut entry = self
            .sets
            .image(&RealFs, &hier, freezer.as_ref(), &self.cgns_roots)?;
        for ctl in entry.sets.iter_mut().flat_map(|s| s.ctls.iter_mut()) {
            if let Some((_, root)) = self.cgns_roots.iter().find(|(n, _)| *n == ctl.name) {
                let below =
                    root == "/" || ctl.path == *root || ctl.path.starts_with(&format!("{root}/"));
                if below {
                    ctl.cgns_prefix = Some(root.len() as u32);
                }
            }
        }
        dir.write_one(ImageKind::CGROUP, names::CGROUP, &entry)?;
        Ok(())
    }
}
