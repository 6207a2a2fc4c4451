//! Cgroups at restore (see `stasis_cgroup::restore`): `cgroup.img` is read and checked
//! with the preflight, the cgroups are created before the tree is forked, every task is
//! moved into its cgroups once it exists and before it is rebuilt (so its restored memory
//! is charged there), and the limits are written before the tasks resume. A restore that
//! fails removes every cgroup it created, after the tasks are gone.

use crate::plan::TreePlan;
use crate::{RestoreError, RestoreOptions, Result};
use stasis_cgroup::{Hierarchies, Prepared, RealFs, RestorePlan};
use stasis_images::{names, pb, ImageDir, ImageKind};

/// The restore's cgroup plan, checked.
pub(crate) struct Cgroups {
    plan: RestorePlan,
    hier: Hierarchies,
    /// Each live task and its set.
    sets: Vec<(i32, u32)>,
}

impl Cgroups {
    /// Reads `cgroup.img` and runs the cgroup part of the preflight: nothing is created.
    pub(crate) fn check(dir: &ImageDir, opts: &RestoreOptions, tree: &TreePlan) -> Result<Cgroups> {
        let entry = match dir.read_if_exists::<pb::CgroupEntry>(ImageKind::CGROUP, names::CGROUP)? {
            None => None,
            Some(mut v) if v.len() <= 1 => v.pop(),
            Some(v) => {
                return Err(RestoreError::BadImage {
                    file: names::CGROUP.into(),
                    what: format!("holds {} entries, one is expected", v.len()),
                })
            }
        };
        let inv: pb::InventoryEntry = dir.read_one(ImageKind::INVENTORY, names::INVENTORY)?;
        let plan = RestorePlan::new(
            entry,
            inv.root_cg_set,
            opts.manage_cgroups,
            &opts.cgroup_root,
        )?;
        let mut sets = Vec::new();
        for task in tree.alive() {
            // CRIU 3.x images have it in the task core only.
            let set = task.thread_core.cg_set.or(task.tc.cg_set);
            for t in &task.threads {
                if t.thread_core.cg_set.is_some_and(|s| Some(s) != set) {
                    return Err(RestoreError::Unsupported(format!(
                        "thread {} of pid {} was in other cgroups (set {:?}) than its process (set {set:?}); threads in their own cgroups are not supported yet",
                        t.tid, task.pid, t.thread_core.cg_set
                    )));
                }
            }
            if !plan.inherits(set) {
                sets.push((task.pid, set.unwrap_or(0)));
            }
        }
        let hier = Hierarchies::of_self()?;
        let ids: Vec<u32> = sets.iter().map(|s| s.1).collect();
        let checked = plan.preflight(&RealFs, &hier, &ids)?;
        for (path, action) in checked.actions() {
            log::debug!(
                "cgroup {}: {action:?} ({})",
                path.display(),
                plan.mode().name()
            );
        }
        Ok(Cgroups { plan, hier, sets })
    }

    /// Creates the missing cgroups and writes what must precede the tasks. The result
    /// removes them again when dropped, unless kept.
    pub(crate) fn prepare(&self) -> Result<Restoring> {
        let ids: Vec<u32> = self.sets.iter().map(|s| s.1).collect();
        Ok(Restoring {
            prepared: self.plan.prepare(RealFs, &self.hier, &ids)?,
            sets: self.sets.clone(),
        })
    }
}

/// The cgroups of a restore in progress.
pub(crate) struct Restoring {
    prepared: Prepared<RealFs>,
    sets: Vec<(i32, u32)>,
}

impl Restoring {
    /// Moves every forked task (still running stasis's code) into its cgroups.
    /// Moves every task (by its host PID, `host(image pid)`) into its cgroups.
    pub(crate) fn enter_all(&self, host: &dyn Fn(i32) -> i32) -> Result<()> {
        for &(pid, set) in &self.sets {
            self.prepared.enter(set, host(pid))?;
        }
        Ok(())
    }

    /// Moves the tree's root (image PID `pid`, host PID `host`) into its cgroups, or,
    /// in a hierarchy where it sits below its cgroup namespace's root, into that root:
    /// it unshares the namespace there, and [`enter_all`](Self::enter_all) moves it down.
    pub(crate) fn enter_one(&self, pid: i32, host: i32) -> Result<()> {
        for set in self.sets.iter().filter(|s| s.0 == pid).map(|s| s.1) {
            self.prepared.enter_ns_root(set, host)?;
        }
        Ok(())
    }

    /// Writes the limits and the other properties, once every task is rebuilt.
    pub(crate) fn apply_properties(&mut self) -> Result<()> {
        Ok(self.prepared.apply_properties()?)
    }

    /// The restore succeeded: the cgroups stay.
    pub(crate) fn keep(self) {
        self.prepared.keep()
    }
}
