//! Cgroups v1, v2 and hybrid hierarchies for checkpoint/restore: where a task's cgroups
//! are ([`hierarchy`]), freezing and thawing through the cgroup freezer and listing a
//! cgroup's tasks ([`freezer`]), CRIU's `cgroup.img` at dump ([`dump`]) and its restore
//! with `--manage-cgroups` and `--cgroup-root` ([`restore`]), with the controller
//! properties and their order in [`props`].
//!
//! Every file operation goes through [`CgroupFs`]: [`RealFs`] in the engine, a recording
//! fake in the unit tests, so that the order of writes — a cpuset's CPUs before its
//! tasks, limits once the tasks are in, created cgroups removed deepest first on failure —
//! is tested without a kernel. The real kernel is exercised by `test/e2e/tests/cgroups.rs`.
//!
//! # Why not the `cgroups-rs` crate
//!
//! The design card prefers `cgroups-rs` (0.5.1) where it fits. It was read for each job
//! here and fits none of them:
//!
//! * **Hybrid hosts.** Its `hierarchies::auto()` picks v2 only when `/sys/fs/cgroup` itself
//!   is cgroup2, and then hardcodes that path; otherwise its `V1` reads mountinfo for
//!   `cgroup` mounts only. On a hybrid host such as this project's (v1 controllers plus
//!   cgroup2 at `/sys/fs/cgroup/unified`) the v2 hierarchy is invisible to it, and a
//!   cgroup2 mounted anywhere else (a private mount) is never found.
//! * **The v2 freezer.** Its `FreezerController::state()` reads `cgroup.freeze`, which is
//!   the request, not the outcome: it says frozen before the tasks are. Freezing before
//!   seizing needs `cgroup.events`' `frozen 1`, and a freeze with a timeout that names the
//!   path.
//! * **Raw property dump and restore.** C/R copies interface files verbatim, in a
//!   controller-specific order, including ones the crate has no typed accessor for
//!   (`notify_on_release`, `cgroup.clone_children`, `cgroup.subtree_control`, the blkio
//!   throttles, `devices.list` rebuilt through `devices.deny`/`devices.allow`) and the
//!   owner and mode of every file. The crate exposes typed setters per controller, not
//!   "this file, this value, this owner".
//! * **A testable boundary.** Its controllers open files directly, so the ordering logic
//!   could not be unit-tested with a recording fake (STYLE.md).
//! * **Weight.** `zbus` 5.8 (a D-Bus stack) is a mandatory dependency, with `nix` 0.25 and
//!   `thiserror` 1 beside the workspace's versions, for a few hundred lines of file I/O.
//!
//! What this crate needs from the kernel is small: mountinfo, `/proc/PID/cgroup`, and
//! reads and writes of interface files; it does them itself.
#![forbid(unsafe_code)]

pub mod dump;
mod error;
pub mod freezer;
pub mod fs;
pub mod hierarchy;
pub mod props;
pub mod restore;

#[cfg(test)]
mod fake;

pub use dump::{CgroupSets, FreezerRecord};
pub use error::{CgroupError, Result};
pub use freezer::{Freezer, FreezerKind, FreezerState, Frozen, Origin};
pub use fs::{CgroupFs, Perms, RealFs};
pub use hierarchy::{Hierarchies, Member};
pub use restore::{parse_cgroup_root, Action, CgroupRoot, ManageMode, Prepared, RestorePlan};
