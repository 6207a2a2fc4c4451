//! Everything that makes a request fail, each with the `cr_errno` the response carries.
//! The message (`cr_errmsg`) names the field, fd, file or pid at fault.

use std::io;

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum RpcError {
    #[error("malformed criu_req ({len} bytes): {why}")]
    Malformed { len: usize, why: String },
    #[error("request of {len} bytes is larger than the {max} bytes stasis accepts")]
    TooLarge { len: usize, max: usize },
    #[error("unknown request type {0}")]
    UnknownType(i32),
    #[error("invalid request type {0}")]
    InvalidType(&'static str),
    #[error("{0} requests are not supported yet")]
    TypeNotSupported(&'static str),
    #[error("bad request: {0}")]
    BadRequest(String),
    #[error("criu_opts.{field} = {fd}: {why}")]
    ClientFd {
        field: &'static str,
        fd: i32,
        why: String,
    },
    #[error("not supported yet: {}{}", .fields.join(", "), if *.containers { " (containers: namespaces, mounts and ttys are not supported yet)" } else { "" })]
    Unsupported {
        fields: Vec<&'static str>,
        containers: bool,
    },
    /// Something this kernel cannot do; the message follows CRIU's where CRIU has one.
    #[error("{0}")]
    Kernel(String),
    #[error("config file {path}: {why}")]
    Config { path: String, why: String },
    #[error("log file {path}: {source}")]
    Log { path: String, source: io::Error },
    #[error("{path}: {source}")]
    Dir { path: String, source: io::Error },
    #[error("the client failed the {0} notification")]
    NotifyRefused(&'static str),
    #[error("{script} notification: {why}")]
    Notify { script: &'static str, why: String },
    #[error("the kernel check found problems: {}", .0.join("; "))]
    Check(Vec<String>),
    #[error("dump of pid {pid} failed: {source}")]
    Dump {
        pid: i32,
        source: stasis_checkpoint::DumpError,
    },
    #[error("restore failed: {0}")]
    Restore(#[from] stasis_restore::RestoreError),
    #[error("the socket to the client: {0}")]
    Socket(io::Error),
}

impl RpcError {
    /// The errno sent as `cr_errno`: never 0, so a client that prints only the number
    /// still learns something. Option and request errors use `EBADRQC` as CRIU's
    /// `setup_opts_from_req()` does.
    pub fn cr_errno(&self) -> i32 {
        match self {
            RpcError::Malformed { .. } => libc::EBADMSG,
            RpcError::TooLarge { .. } => libc::EMSGSIZE,
            RpcError::UnknownType(_) | RpcError::InvalidType(_) => libc::EBADRQC,
            RpcError::TypeNotSupported(_) => libc::EOPNOTSUPP,
            RpcError::BadRequest(_) => libc::EINVAL,
            RpcError::ClientFd { .. } => libc::EBADF,
            RpcError::Unsupported { .. }
            | RpcError::Kernel(_)
            | RpcError::Config { .. }
            | RpcError::Log { .. } => libc::EBADRQC,
            RpcError::Dir { source, .. } => source.raw_os_error().unwrap_or(libc::EIO),
            RpcError::NotifyRefused(_) => libc::ECANCELED,
            RpcError::Notify { .. } => libc::ECONNRESET,
            RpcError::Check(_) => libc::EOPNOTSUPP,
            RpcError::Dump { source, .. } => dump_errno(source),
            RpcError::Restore(e) => restore_errno(e),
            RpcError::Socket(e) => e.raw_os_error().unwrap_or(libc::EIO),
        }
    }
}

/// The first errno found in an error's chain of sources.
fn errno_in(e: &(dyn std::error::Error + 'static)) -> Option<i32> {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<io::Error>() {
            if let Some(n) = io.raw_os_error() {
                return Some(n);
            }
        }
        if let Some(sys) = err.downcast_ref::<stasis_sys::SysError>() {
            if let Some(n) = sys.errno() {
                return Some(n);
            }
        }
        cur = err.source();
    }
    None
}

fn dump_errno(e: &stasis_checkpoint::DumpError) -> i32 {
    use stasis_checkpoint::DumpError as E;
    match e {
        E::NoSuchProcess { .. } => libc::ESRCH,
        E::Unsupported { .. } => libc::EOPNOTSUPP,
        E::Interrupted => libc::EINTR,
        E::Stopped { .. } => libc::ECANCELED,
        other => errno_in(other).unwrap_or(libc::EIO),
    }
}

fn restore_errno(e: &stasis_restore::RestoreError) -> i32 {
    use stasis_restore::RestoreError as E;
    match e {
        E::PidTaken { .. } => libc::EEXIST,
        E::FileMissing { .. } => libc::ENOENT,
        E::Unsupported(_) => libc::EOPNOTSUPP,
        E::Stopped { .. } => libc::ECANCELED,
        other => errno_in(other).unwrap_or(libc::EIO),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsupported_fields_are_listed_by_name_and_containers_are_explained() {
        let e = RpcError::Unsupported {
            fields: vec!["root", "ext_mnt"],
            containers: true,
        };
        let text = e.to_string();
        assert!(
            text.starts_with("not supported yet: root, ext_mnt"),
            "{text}"
        );
        assert!(text.contains("containers"), "{text}");
        assert_eq!(e.cr_errno(), libc::EBADRQC);
        let e = RpcError::Unsupported {
            fields: vec!["file_locks"],
            containers: false,
        };
        assert_eq!(e.to_string(), "not supported yet: file_locks");
    }

    #[test]
    fn every_error_carries_a_nonzero_errno() {
        let io = || io::Error::from_raw_os_error(libc::ENOENT);
        let all = [
            RpcError::Malformed {
                len: 1,
                why: "x".into(),
            },
            RpcError::TooLarge { len: 2, max: 1 },
            RpcError::UnknownType(99),
            RpcError::InvalidType("EMPTY"),
            RpcError::TypeNotSupported("PAGE_SERVER"),
            RpcError::BadRequest("x".into()),
            RpcError::ClientFd {
                field: "images_dir_fd",
                fd: 9,
                why: "x".into(),
            },
            RpcError::Kernel("x".into()),
            RpcError::Config {
                path: "p".into(),
                why: "x".into(),
            },
            RpcError::Log {
                path: "p".into(),
                source: io(),
            },
            RpcError::Dir {
                path: "p".into(),
                source: io(),
            },
            RpcError::NotifyRefused("post-dump"),
            RpcError::Notify {
                script: "pre-dump",
                why: "x".into(),
            },
            RpcError::Check(vec!["x".into()]),
            RpcError::Socket(io()),
        ];
        for e in all {
            assert_ne!(e.cr_errno(), 0, "{e}");
        }
    }
}
