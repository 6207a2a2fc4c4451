//! `stasis-runc`: a runc-compatible OCI runtime.
//!
//! Every lifecycle verb (`create`, `start`, `run`, `state`, `exec`, `kill`, `delete`, …) is
//! handed to the real runc unchanged: stasis-runc `exec`s it in place, so the caller's child
//! *is* runc and nothing sits between them. `checkpoint` and `restore` are also run by runc,
//! but with `--criu <the stasis binary>`: runc keeps doing what it owns (its state directory,
//! the `criu-root` bind mount, cgroups, console socket, hooks, `descriptors.json`) and the
//! stasis engine does the dump and restore over CRIU's RPC. After a restore runc's state for
//! the container is therefore exactly what runc writes, so `state`, `exec`, `kill` and
//! `delete` keep working.
//!
//! What stasis-runc changes compared with plain runc:
//! - `checkpoint` and `restore` use the stasis engine (the caller's `--criu` is replaced);
//! - `--manage-cgroups-mode soft` unless the caller chooses a mode, so the restored tree goes
//!   into the new container's cgroups and runc's limits stay as runc set them.
//!
//! The engine never runs in this process: after choosing the command line, stasis-runc
//! replaces itself with runc (runc needs the restored init to be its own child, see
//! `rst_sibling`), and runc execs the engine.
#![forbid(unsafe_code)]

pub mod args;
pub mod checkpoint;
pub mod locate;
pub mod restore;

use std::path::PathBuf;

/// Why stasis-runc could not hand a command to runc.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No runc to delegate to.
    #[error(
        "cannot find runc: set STASIS_RUNC to its path or put runc in PATH ({searched} searched)"
    )]
    RuncNotFound { searched: String },
    /// `STASIS_RUNC` names something that cannot be run.
    #[error("STASIS_RUNC={path} is not an executable file")]
    RuncNotExecutable { path: PathBuf },
    /// No stasis engine to give runc as its criu.
    #[error(
        "cannot find the stasis binary: set STASIS_BIN, install `stasis` next to {beside} or put it in PATH"
    )]
    StasisNotFound { beside: String },
    /// `STASIS_BIN` names something that cannot be run.
    #[error("STASIS_BIN={path} is not an executable file")]
    StasisNotExecutable { path: PathBuf },
    /// A global flag that takes a value came last.
    #[error("flag needs an argument: -{flag}")]
    MissingValue { flag: String },
    /// exec of runc failed.
    #[error("exec {path}: {source}")]
    Exec {
        path: PathBuf,
        source: std::io::Error,
    },
}
