//! `containerd-shim-stasis-v2`: a containerd shim v2 (task API v2, which containerd 1.6 and
//! 1.7 speak) on the `containerd-shim` crate, pinned to 0.11.0 — the last release serving
//! task API v2; 0.12 serves only v3 (containerd ≥ 2.0). 0.11.0 builds with this toolchain.
//!
//! It runs containers the way containerd's Go runc shim does, but through `stasis-runc`:
//! every task verb is a `stasis-runc` command line, `Checkpoint` writes the images where
//! containerd asks, and a task created from a checkpoint is restored at `Start`. The ptrace
//! engine never runs inside the shim process: ptrace is bound to one thread, and the
//! shim's reaper calls `waitpid(-1)`, which would steal the engine's wait statuses.
//!
//! Layout: [`service`] is the Task service (the ordering logic, unit-tested against a
//! fake [`runtime::Runtime`]); [`runtime`] builds and runs `stasis-runc` command lines;
//! [`exits`] turns the crate's reaper notifications into waitable exits; [`stdio`] opens
//! containerd's fifos and the console socket; [`process`] is one init or exec process;
//! [`options`] maps containerd's runc options and `CheckpointOptions` to flags;
//! [`shim`] is the `containerd_shim::Shim` glue (start/delete actions).
#![forbid(unsafe_code)]

pub mod error;
pub mod events;
pub mod exits;
pub mod options;
pub mod process;
pub mod runtime;
pub mod service;
pub mod shim;
pub mod stdio;

#[cfg(test)]
mod tests;

pub use error::ShimError;

/// The runtime type containerd knows this shim by.
pub const RUNTIME_ID: &str = "io.containerd.stasis.v2";
