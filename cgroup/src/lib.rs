//! Cgroups v1, v2 and hybrid hierarchies: discovering a task's cgroups, freezing and
//! thawing through the cgroup freezer (v1 `freezer.state`, v2 `cgroup.freeze`), dumping
//! and restoring controller properties, and remapping paths with `--cgroup-root`.
//!
//! Not yet implemented: the single-process engine does not touch cgroups. The container
//! issue fills this crate in; until then restore leaves tasks in stasis's own cgroup.
#![forbid(unsafe_code)]
