//! The shim's errors and the ttrpc status codes containerd sees for them.

use containerd_shim::protos::ttrpc::{self, Code};

/// Why a task request failed.
#[derive(Debug, thiserror::Error)]
pub enum ShimError {
    /// No container or exec process by that id.
    #[error("{what} {id} not found")]
    NotFound { what: &'static str, id: String },
    /// A container or exec with that id exists already.
    #[error("{what} {id} already exists")]
    AlreadyExists { what: &'static str, id: String },
    /// The request cannot be carried out as asked.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The process is not in a state that allows the request.
    #[error("{0}")]
    FailedPrecondition(String),
    /// The request names a feature this shim does not offer.
    #[error("{0} is not supported by the stasis shim")]
    Unimplemented(String),
    /// stasis-runc (or the runc behind it) failed.
    #[error("{command} failed: {message}")]
    Runtime { command: String, message: String },
    /// A file or system call of the shim itself failed.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// A helper of the containerd-shim crate failed (mounts, cgroups).
    #[error("{context}: {source}")]
    Shim {
        context: String,
        #[source]
        source: containerd_shim::Error,
    },
}

impl ShimError {
    pub fn io(context: impl Into<String>, source: std::io::Error) -> ShimError {
        ShimError::Io {
            context: context.into(),
            source,
        }
    }

    pub fn shim(context: impl Into<String>, source: containerd_shim::Error) -> ShimError {
        ShimError::Shim {
            context: context.into(),
            source,
        }
    }

    /// The ttrpc code containerd's errdefs maps back to its own error kinds.
    pub fn code(&self) -> Code {
        match self {
            ShimError::NotFound { .. } => Code::NOT_FOUND,
            ShimError::AlreadyExists { .. } => Code::ALREADY_EXISTS,
            ShimError::InvalidArgument(_) => Code::INVALID_ARGUMENT,
            ShimError::FailedPrecondition(_) => Code::FAILED_PRECONDITION,
            ShimError::Unimplemented(_) => Code::UNIMPLEMENTED,
            ShimError::Runtime { .. } | ShimError::Io { .. } | ShimError::Shim { .. } => {
                Code::UNKNOWN
            }
        }
    }
}

impl From<ShimError> for ttrpc::Error {
    fn from(e: ShimError) -> ttrpc::Error {
        ttrpc::Error::RpcStatus(ttrpc::get_status(e.code(), e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_of_error_reaches_containerd_as_its_errdefs_code() {
        let cases = [
            (
                ShimError::NotFound {
                    what: "container",
                    id: "c".into(),
                },
                Code::NOT_FOUND,
            ),
            (
                ShimError::AlreadyExists {
                    what: "exec",
                    id: "e".into(),
                },
                Code::ALREADY_EXISTS,
            ),
            (
                ShimError::InvalidArgument("x".into()),
                Code::INVALID_ARGUMENT,
            ),
            (
                ShimError::FailedPrecondition("x".into()),
                Code::FAILED_PRECONDITION,
            ),
            (ShimError::Unimplemented("x".into()), Code::UNIMPLEMENTED),
            (
                ShimError::Runtime {
                    command: "stasis-runc kill".into(),
                    message: "m".into(),
                },
                Code::UNKNOWN,
            ),
        ];
        for (err, code) in cases {
            let msg = err.to_string();
            match ttrpc::Error::from(err) {
                ttrpc::Error::RpcStatus(s) => {
                    assert_eq!(s.code(), code);
                    assert_eq!(s.message, msg);
                }
                other => panic!("not an rpc status: {other:?}"),
            }
        }
    }
}
