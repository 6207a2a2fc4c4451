//! The end-to-end harness: real processes, checkpointed and restored by the
//! `stasis` binary, proven to continue through a protocol of log lines.
//!
//! It owns the things every e2e test needs and nothing about any one workload:
//! locating the `stasis` binary and the compiled C workloads, unique scratch
//! directories, spawning a workload with its stdio on `/dev/null`, following
//! its log, running `stasis` with a timeout, decoding the image set with
//! Debian's `crit`, and the process plumbing (child subreaper, kill and reap,
//! liveness from `/proc`).
//!
//! Every wait is bounded; every workload is killed and reaped by a guard when
//! a test ends, passing or not.

pub mod cgroups;
pub mod container;
pub mod counter;
pub mod cr;
pub mod images;
pub mod log;
pub mod netpeer;
pub mod proc;
pub mod run;
pub mod runtime_env;
pub mod scratch;
pub mod ticks;
pub mod workload;

pub use cr::{dump, restore};
pub use images::{crit_decode_all, ImageSet};
pub use log::LogFile;
pub use proc::{Pid, ProcessGuard};
pub use run::{stasis, stasis_bin, Output};
pub use scratch::ScratchDir;
pub use workload::{workload_bin, Workload};

use std::time::Duration;

/// How long a workload gets to write an expected line.
pub const LINE_TIMEOUT: Duration = Duration::from_secs(20);
/// How long one `stasis` or `crit` invocation may run.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(120);
