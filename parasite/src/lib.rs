//! Seizing a task and running system calls inside it.
//!
//! A [`Tracee`] is a task stopped with `PTRACE_SEIZE` + `PTRACE_INTERRUPT`. A remote call
//! points the task's instruction pointer at an existing `syscall` instruction of one of
//! its executable mappings (the vDSO always has one), loads the arguments, single-steps
//! over it, and reads the result. The task's code and data are never modified and its
//! registers are put back after every call, so a dumper that dies mid-way leaves the task
//! as it was. Signals stay blocked in the task while it runs injected calls.
//!
//! Memory that results must be written into comes from a [`Scratch`] mapping the tracee
//! itself maps (and unmaps) through remote calls.
#![forbid(unsafe_code)]

mod proc_mem;
mod tracee;

pub use proc_mem::ProcMem;
pub use tracee::{Scratch, StopKind, Tracee};

/// Everything that can go wrong while seizing or driving a task.
#[derive(Debug, thiserror::Error)]
pub enum ParasiteError {
    #[error(transparent)]
    Sys(#[from] stasis_sys::SysError),
    #[error("pid {pid}: {what}")]
    Task { pid: i32, what: String },
    #[error("pid {pid}: remote {name} failed: {errno}")]
    Remote {
        pid: i32,
        name: &'static str,
        errno: std::io::Error,
    },
    #[error("pid {pid}: {path}: {source}")]
    Io {
        pid: i32,
        path: String,
        source: std::io::Error,
    },
}

/// Result of this crate's operations.
pub type Result<T> = std::result::Result<T, ParasiteError>;
