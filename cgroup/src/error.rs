//! What can go wrong with cgroups. Every message names the cgroup path, file or
//! controller it is about.

use std::path::PathBuf;
use std::time::Duration;

/// A cgroup operation that failed.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    /// A cgroupfs file or directory operation failed.
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    /// A `/proc` file or an image field could not be parsed.
    #[error("{file}: {what}")]
    Parse { file: String, what: String },
    /// No hierarchy of this name is mounted where stasis can reach it.
    #[error("cgroup hierarchy {} is not mounted (no matching entry in /proc/self/mountinfo)", show_name(.name))]
    NotMounted { name: String },
    /// The cgroup lies outside the part of its hierarchy that is mounted here.
    #[error("cgroup {path} of hierarchy {} is outside its mount {mount} (mount root {root})", show_name(.name))]
    Unreachable {
        name: String,
        path: String,
        mount: PathBuf,
        root: String,
    },
    /// `--freeze-cgroup` names something that is not a freezer cgroup.
    #[error(
        "{path} is not a freezer cgroup: it has neither freezer.state (v1) nor cgroup.freeze (v2)"
    )]
    NotAFreezer { path: PathBuf },
    /// The freezer did not reach the requested state in time.
    #[error("freezer cgroup {path} is still {state} after {timeout:?}; it was put back as it was")]
    FreezeTimeout {
        path: PathBuf,
        state: String,
        timeout: Duration,
    },
    /// Freezing this cgroup would freeze stasis itself.
    #[error("freezer cgroup {path} holds stasis itself (pid {pid}); it would never thaw")]
    FreezesSelf { path: PathBuf, pid: i32 },
    /// `--manage-cgroups=strict` and the directory is already there.
    #[error(
        "cgroup {path} already exists and --manage-cgroups=strict restores only into new cgroups"
    )]
    Exists { path: PathBuf },
    /// A directory the mode needs to exist does not.
    #[error("cgroup {path} does not exist and --manage-cgroups={mode} does not create cgroups")]
    Missing { path: PathBuf, mode: &'static str },
    /// A task's cgroup is neither present nor described by the image.
    #[error("cgroup {path} (of set {set}) does not exist and cgroup.img has no directory for it")]
    NoSuchCgroup { path: PathBuf, set: u32 },
    /// The images refer to a cgroup set that `cgroup.img` does not describe.
    #[error("cgroup.img: {0}")]
    BadImage(String),
    /// A command-line or RPC value stasis cannot accept.
    #[error("{0}")]
    BadOption(String),
}

fn show_name(name: &str) -> String {
    if name.is_empty() {
        "cgroup2 (unified)".to_string()
    } else {
        name.to_string()
    }
}

/// Result with [`CgroupError`].
pub type Result<T> = std::result::Result<T, CgroupError>;

/// Maps an `io::Error` of `op` on `path` to [`CgroupError::Io`].
pub(crate) fn io(
    op: &'static str,
    path: impl Into<PathBuf>,
) -> impl FnOnce(std::io::Error) -> CgroupError {
    let path = path.into();
    move |source| CgroupError::Io { op, path, source }
}
