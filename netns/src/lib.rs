//! Network namespaces: links, addresses, routes and sysctls of a dumped namespace, the
//! network lock (nftables) held across dump and restore, and TCP connection repair
//! (`TCP_REPAIR`) as a reusable module in the spirit of CRIU's libsoccr.
//!
//! * [`tcp`]: the repair of one TCP connection — reading its whole state out of a socket
//!   and building a new socket that continues it.
//! * [`ns`]: a network namespace's links (loopback, veth), addresses, routes, rules,
//!   nftables ruleset and sysctls, dumped into and restored from CRIU's images
//!   ([`dump_netns`], [`restore_netns`]), with external veths (`--external veth[IN]:OUT`).
//! * [`mod@lock`]: the nftables network lock held across dump and restore ([`lock()`],
//!   [`unlock()`], and the [`NetLock`] guard that unlocks when dropped).
#![forbid(unsafe_code)]

pub mod lock;
pub mod ns;
pub mod tcp;

pub use lock::{lock, unlock, ConnLock, NetLock};
pub use ns::{dump_netns, restore_netns, NetnsError};

/// What can go wrong while repairing a connection. Messages name the socket.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error(transparent)]
    Sys(#[from] stasis_sys::SysError),
    /// The socket is in a state the repair does not handle.
    #[error("{0}")]
    Unsupported(String),
    /// The kernel reported something inconsistent (a queue changed while frozen, ...).
    #[error("{0}")]
    Inconsistent(String),
}

/// Result of this crate.
pub type Result<T> = std::result::Result<T, NetError>;
