//! `containerd-shim-stasis-v2`: a containerd shim v2 (task API v2, on the `containerd-shim`
//! crate pinned to 0.11.x) whose Checkpoint and create-from-checkpoint run through
//! `stasis-runc`. The ptrace engine never runs inside the shim process: ptrace is bound to
//! one thread, and the shim's reaper calls `waitpid(-1)`.
//!
//! Not yet implemented: this crate builds no binary until `stasis-runc` exists.
#![forbid(unsafe_code)]
