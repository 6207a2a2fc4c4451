//! Building a socket that continues a connection (libsoccr's `libsoccr_restore`).
//!
//! The order is the kernel's: sequence numbers can be set only before `connect`; the
//! handshake options only once the socket is established; the window only once the
//! receive queue is back (the kernel checks it against `rcv_nxt`).

use super::TcpConnection;
use crate::{NetError, Result};
use stasis_sys::tcp::{self, TcpRepairOpt};
use stasis_sys::unixsock::{get_int_opt, set_int_opt};
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

pub(super) fn restore(c: &TcpConnection) -> Result<OwnedFd> {
    let local = endpoint(c.local, "local")?;
    let family = match local {
        SocketAddr::V4(_) => libc::AF_INET,
        SocketAddr::V6(_) => libc::AF_INET6,
    };
    let fd = tcp::socket(family, libc::SOCK_STREAM)?;
    // Before repair mode, which turns SO_REUSEADDR into a forced reuse (an accepted
    // connection shares its port with its listener); setting it later undoes that.
    set_int_opt(fd.as_fd(), libc::SOL_SOCKET, libc::SO_REUSEADDR, 1)?;
    super::repair_on(fd.as_fd())?;
    restore_into(c, fd.as_fd())?;
    Ok(fd)
}

fn endpoint(a: Option<SocketAddr>, what: &str) -> Result<SocketAddr> {
    a.ok_or_else(|| NetError::Inconsistent(format!("the connection has no {what} address")))
}

pub(super) fn restore_into(c: &TcpConnection, fd: BorrowedFd<'_>) -> Result<()> {
    let local = endpoint(c.local, "local")?;
    let peer = endpoint(c.peer, "peer")?;
    let who = format!("tcp {local} -> {peer}");
    if c.unsent as usize > c.outq.len() {
        return Err(NetError::Inconsistent(format!(
            "{who}: {} unsent bytes in a send queue of {}",
            c.unsent,
            c.outq.len()
        )));
    }
    tcp::bind(fd, &local)?;
    tcp::set_repair_queue(fd, tcp::TCP_RECV_QUEUE)?;
    tcp::set_queue_seq(fd, c.inq_seq.wrapping_sub(c.inq.len() as u32))?;
    tcp::set_repair_queue(fd, tcp::TCP_SEND_QUEUE)?;
    tcp::set_queue_seq(fd, c.outq_seq.wrapping_sub(c.outq.len() as u32))?;
    tcp::connect(fd, &peer)?;

    tcp::set_repair_options(fd, &handshake_options(c))?;
    if c.opt_mask & tcp::TCPI_OPT_TIMESTAMPS != 0 {
        set_int_opt(
            fd,
            libc::IPPROTO_TCP,
            tcp::TCP_TIMESTAMP,
            c.timestamp as i32,
        )?;
    }

    make_room(fd, libc::SO_RCVBUF, libc::SO_RCVBUFFORCE, c.inq.len())?;
    make_room(fd, libc::SO_SNDBUF, libc::SO_SNDBUFFORCE, c.outq.len())?;
    if !c.inq.is_empty() {
        tcp::set_repair_queue(fd, tcp::TCP_RECV_QUEUE)?;
        write_all(fd, &c.inq, 0, &who, "receive")?;
    }
    let sent = c.outq.len() - c.unsent as usize;
    if sent > 0 {
        // Sent but not acknowledged: queued as in flight, so that the peer's ACKs
        // match; the retransmission timer resends what the peer lacks.
        tcp::set_repair_queue(fd, tcp::TCP_SEND_QUEUE)?;
        write_all(fd, &c.outq[..sent], 0, &who, "send")?;
    }
    if let Some(w) = &c.window {
        tcp::set_repair_window(fd, w)?;
    }
    tcp::set_repair_queue(fd, tcp::TCP_NO_QUEUE)?;
    if c.unsent > 0 {
        // Never sent: written the ordinary way, which sends it.
        tcp::set_repair(fd, tcp::TCP_REPAIR_OFF_NO_WP)?;
        let r = write_all(fd, &c.outq[sent..], libc::MSG_DONTWAIT, &who, "unsent");
        super::repair_on(fd)?;
        r?;
    }
    Ok(())
}

/// The options the handshake negotiated, as `TCP_REPAIR_OPTIONS` takes them.
fn handshake_options(c: &TcpConnection) -> Vec<TcpRepairOpt> {
    let mut opts = Vec::with_capacity(4);
    if c.opt_mask & tcp::TCPI_OPT_SACK != 0 {
        opts.push(TcpRepairOpt {
            opt_code: tcp::TCPOPT_SACK_PERM,
            opt_val: 0,
        });
    }
    if c.opt_mask & tcp::TCPI_OPT_WSCALE != 0 {
        opts.push(TcpRepairOpt {
            opt_code: tcp::TCPOPT_WINDOW,
            opt_val: c.snd_wscale | (c.rcv_wscale << 16),
        });
    }
    if c.opt_mask & tcp::TCPI_OPT_TIMESTAMPS != 0 {
        opts.push(TcpRepairOpt {
            opt_code: tcp::TCPOPT_TIMESTAMP,
            opt_val: 0,
        });
    }
    opts.push(TcpRepairOpt {
        opt_code: tcp::TCPOPT_MAXSEG,
        opt_val: c.mss_clamp,
    });
    opts
}

/// Raises a buffer that could not hold `len` queued bytes (the kernel counts twice the
/// payload against it). A buffer large enough is left as it is, autotuning included.
fn make_room(fd: BorrowedFd<'_>, get: i32, force: i32, len: usize) -> Result<()> {
    let need = len.saturating_mul(2).min(i32::MAX as usize) as i32;
    if need > get_int_opt(fd, libc::SOL_SOCKET, get)? {
        // The kernel doubles the value it is given.
        set_int_opt(fd, libc::SOL_SOCKET, force, need / 2 + 1)?;
    }
    Ok(())
}

/// Writes `data` into the queue chosen before, in chunks the kernel accepts: a receive
/// queue is refilled one linear buffer per call, which fails with ENOMEM when too large,
/// so a refused chunk is halved down to 1 KiB before giving up.
fn write_all(fd: BorrowedFd<'_>, data: &[u8], flags: i32, who: &str, what: &str) -> Result<()> {
    let mut off = 0;
    let mut max_chunk = data.len();
    while off < data.len() {
        let chunk = (data.len() - off).min(max_chunk);
        match stasis_sys::unixsock::send(fd, &data[off..off + chunk], flags) {
            Ok(n) if n > 0 => off += n,
            Ok(_) | Err(_) if max_chunk > 1024 => max_chunk /= 2,
            Ok(_) => {
                return Err(NetError::Inconsistent(format!(
                    "{who}: the kernel took no byte of the {what} queue at offset {off}"
                )))
            }
            Err(e) => {
                return Err(NetError::Inconsistent(format!(
                    "{who}: writing the {what} queue (fd {}, {} of {} bytes written): {e}",
                    fd.as_raw_fd(),
                    off,
                    data.len()
                )))
            }
        }
    }
    Ok(())
}
