//! What can go wrong while dumping, restoring or locking a network namespace. Every
//! message names the namespace (by the pid whose namespace it is), the step, and the link,
//! sysctl or image file involved.

use std::path::PathBuf;

/// An error of the network-namespace code.
#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    /// Reading or writing an image failed.
    #[error(transparent)]
    Image(#[from] stasis_images::ImageError),

    /// A tool (`nsenter`, `ip`, `nft`, `head`, `sh`) could not be started or waited for.
    #[error("netns of pid {pid}: {step}: cannot run `{command}`: {source}")]
    Spawn {
        pid: i32,
        step: String,
        command: String,
        #[source]
        source: std::io::Error,
    },

    /// A tool ran and reported failure.
    #[error("netns of pid {pid}: {step}: `{command}` failed ({status}): {stderr}")]
    Tool {
        pid: i32,
        step: String,
        command: String,
        status: String,
        stderr: String,
    },

    /// A tool's output could not be understood, or was larger than allowed.
    #[error("netns of pid {pid}: {step}: {detail}")]
    Output {
        pid: i32,
        step: String,
        detail: String,
    },

    /// A sysctl could not be read or written.
    #[error("netns of pid {pid}: sysctl {path}: {detail}")]
    Sysctl {
        pid: i32,
        path: String,
        detail: String,
    },

    /// A link that stasis cannot dump or recreate faithfully.
    #[error("netns of pid {pid}: link {name} (ifindex {ifindex}, kind {kind}): {reason}")]
    UnsupportedLink {
        pid: i32,
        name: String,
        ifindex: u32,
        kind: String,
        reason: String,
    },

    /// A veth whose peer lives outside the dumped namespace, restored without a
    /// `--external veth[<inside>]:<outside>` mapping.
    #[error(
        "veth {name} (ifindex {ifindex}) has its peer outside the namespace and no mapping to a \
         host-side name; pass --external veth[{name}]:<host name>"
    )]
    VethUnmapped { name: String, ifindex: u32 },

    /// An image holds something inconsistent or something stasis does not restore.
    #[error("{}: {detail}", .path.display())]
    BadImage { path: PathBuf, detail: String },

    /// The namespace to restore into already holds links other than `lo`.
    #[error("netns of pid {pid} is not empty: {detail}")]
    TargetNotEmpty { pid: i32, detail: String },

    /// A caller-supplied value (table name, veth mapping) is malformed.
    #[error("{what} {value:?}: {reason}")]
    BadArgument {
        what: &'static str,
        value: String,
        reason: String,
    },

    /// Local I/O (a pipe, a temporary file) failed.
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

/// Result of the network-namespace code.
pub type Result<T> = std::result::Result<T, NetnsError>;
