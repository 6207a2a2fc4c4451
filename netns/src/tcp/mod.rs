//! TCP connection repair, a Rust counterpart of CRIU's libsoccr.
//!
//! A socket in *repair mode* (`TCP_REPAIR`, needs CAP_NET_ADMIN) sends and receives no
//! packets on behalf of its user operations and closes without a FIN or RST. While it is
//! in that mode the kernel lets a privileged process read everything a TCP endpoint is:
//! the sequence numbers at the ends of both queues, the bytes in them (peeked, not
//! consumed), the options negotiated at the handshake, the windows and the timestamp
//! clock — and lets a new socket be given all of that back, `connect`ed without a SYN.
//!
//! ```text
//! dump:    repair on → [`TcpConnection::read`] → (the owner is killed; the socket closes
//!          silently)                          or → repair off (the owner runs on)
//! restore: [`TcpConnection::restore`] (socket in repair mode) → ... → [`repair_off`]
//! ```
//!
//! Repair mode is a property of the socket, not of the descriptor: setting it through a
//! copy taken with `pidfd_getfd` puts the owner's socket in repair mode too.
//!
//! Only established connections are handled; half-closed ones (FIN_WAIT*, CLOSE_WAIT,
//! LAST_ACK, CLOSING) and connections still in their handshake are refused by name.

mod options;
mod restore;
mod save;

pub use options::TcpOptions;

use crate::Result;
use std::net::SocketAddr;
use std::os::fd::BorrowedFd;

pub use stasis_sys::tcp::TcpRepairWindow;

/// The kernel's TCP states (`include/net/tcp_states.h`), as `tcp_info` and CRIU's
/// images number them.
pub mod state {
    pub const ESTABLISHED: u32 = 1;
    pub const SYN_SENT: u32 = 2;
    pub const SYN_RECV: u32 = 3;
    pub const FIN_WAIT1: u32 = 4;
    pub const FIN_WAIT2: u32 = 5;
    pub const TIME_WAIT: u32 = 6;
    pub const CLOSE: u32 = 7;
    pub const CLOSE_WAIT: u32 = 8;
    pub const LAST_ACK: u32 = 9;
    pub const LISTEN: u32 = 10;
    pub const CLOSING: u32 = 11;

    /// The state's name, for messages.
    pub fn name(s: u32) -> &'static str {
        match s {
            ESTABLISHED => "ESTABLISHED",
            SYN_SENT => "SYN_SENT",
            SYN_RECV => "SYN_RECV",
            FIN_WAIT1 => "FIN_WAIT1",
            FIN_WAIT2 => "FIN_WAIT2",
            TIME_WAIT => "TIME_WAIT",
            CLOSE => "CLOSE",
            CLOSE_WAIT => "CLOSE_WAIT",
            LAST_ACK => "LAST_ACK",
            LISTEN => "LISTEN",
            CLOSING => "CLOSING",
            _ => "unknown",
        }
    }
}

/// Everything that makes one established TCP endpoint, as read in repair mode: what
/// CRIU's `tcp_stream_entry` and its queue bytes carry, plus the two addresses.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TcpConnection {
    pub local: Option<SocketAddr>,
    pub peer: Option<SocketAddr>,
    /// `rcv_nxt`: the sequence number after the last byte received.
    pub inq_seq: u32,
    /// `write_seq`: the sequence number after the last byte written by the owner.
    pub outq_seq: u32,
    /// Received bytes the owner has not read yet.
    pub inq: Vec<u8>,
    /// Written bytes the peer has not acknowledged: first those already sent, then the
    /// last [`unsent`](Self::unsent) bytes, never sent.
    pub outq: Vec<u8>,
    pub unsent: u32,
    /// `TCPI_OPT_*` bits: timestamps, SACK, window scaling.
    pub opt_mask: u32,
    pub snd_wscale: u32,
    pub rcv_wscale: u32,
    /// The peer's MSS (`rx_opt.mss_clamp`).
    pub mss_clamp: u32,
    /// The connection's timestamp clock, when timestamps are on.
    pub timestamp: u32,
    /// Send and receive windows (`TCP_REPAIR_WINDOW`).
    pub window: Option<TcpRepairWindow>,
}

impl TcpConnection {
    /// Reads the state of the established connection behind `fd`, which must be in
    /// repair mode. Nothing is consumed from its queues.
    pub fn read(fd: BorrowedFd<'_>) -> Result<TcpConnection> {
        save::read(fd)
    }

    /// Builds a new socket that continues this connection: bound to [`local`], connected
    /// to [`peer`] without a handshake, with its queues, options, timestamp clock and
    /// windows. The socket is left in repair mode: take it out with [`repair_off`] once
    /// the connection may send again.
    ///
    /// [`local`]: Self::local
    /// [`peer`]: Self::peer
    pub fn restore(&self) -> Result<std::os::fd::OwnedFd> {
        restore::restore(self)
    }

    /// Like [`restore`](Self::restore), on a socket the caller created (of the right
    /// family, already in repair mode, with its socket options set).
    pub fn restore_into(&self, fd: BorrowedFd<'_>) -> Result<()> {
        restore::restore_into(self, fd)
    }
}

/// Puts the socket in repair mode.
pub fn repair_on(fd: BorrowedFd<'_>) -> Result<()> {
    use stasis_sys::tcp;
    Ok(tcp::set_repair(fd, tcp::TCP_REPAIR_ON)?)
}

/// Takes the socket out of repair mode; the kernel sends a window probe so that the peer
/// learns the connection's window at once.
pub fn repair_off(fd: BorrowedFd<'_>) -> Result<()> {
    use stasis_sys::tcp;
    Ok(tcp::set_repair(fd, tcp::TCP_REPAIR_OFF)?)
}

/// The TCP state of the socket (one of [`state`]).
pub fn tcp_state(fd: BorrowedFd<'_>) -> Result<u32> {
    Ok(u32::from(stasis_sys::tcp::tcp_info(fd)?.state))
}

#[cfg(test)]
mod tests;
