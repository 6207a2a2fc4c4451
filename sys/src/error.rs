//! The error every wrapper in this crate returns: which operation failed, on what, and
//! the kernel's errno.

use std::io;

/// A failed system call, with the operation and its target named.
#[derive(Debug, thiserror::Error)]
#[error("{op} ({target}): {source}")]
pub struct SysError {
    /// The operation, e.g. `PTRACE_SEIZE`.
    pub op: &'static str,
    /// What it was applied to, e.g. `pid 1234`.
    pub target: String,
    /// The errno the kernel returned.
    #[source]
    pub source: io::Error,
}

impl SysError {
    /// Builds an error from the current `errno`.
    pub fn last(op: &'static str, target: impl ToString) -> SysError {
        SysError {
            op,
            target: target.to_string(),
            source: io::Error::last_os_error(),
        }
    }

    /// Builds an error from an explicit errno value.
    pub fn from_errno(op: &'static str, target: impl ToString, errno: i32) -> SysError {
        SysError {
            op,
            target: target.to_string(),
            source: io::Error::from_raw_os_error(errno),
        }
    }

    /// The errno, when the error came from the kernel.
    pub fn errno(&self) -> Option<i32> {
        self.source.raw_os_error()
    }
}

/// Result of a wrapper in this crate.
pub type Result<T> = std::result::Result<T, SysError>;

/// Turns a `-1`-on-error return value into a `Result`.
pub(crate) fn check(
    ret: libc::c_long,
    op: &'static str,
    target: impl ToString,
) -> Result<libc::c_long> {
    if ret < 0 {
        Err(SysError::last(op, target))
    } else {
        Ok(ret)
    }
}
