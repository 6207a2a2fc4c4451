//! Reading a connection out of a socket in repair mode (libsoccr's `libsoccr_save`).
//!
//! The queues and their sequence numbers relate as follows (seq grows to the right):
//!
//! ```text
//! send queue:  snd_una ........ snd_nxt ........ write_seq      outq_seq = write_seq
//!              |<-- sent, not acked -->|<-- unsent -->|         outq = SIOCOUTQ bytes
//! recv queue:  copied_seq ........ rcv_nxt                      inq_seq  = rcv_nxt
//!              |<-- not read yet -->|                           inq  = SIOCINQ bytes
//! ```
//!
//! A restore sets each queue's *start* (`seq - len`) and lets writing the bytes move it.

use super::{state, TcpConnection};
use crate::{NetError, Result};
use stasis_sys::tcp;
use std::os::fd::{AsRawFd, BorrowedFd};

/// The largest queue read from a socket (a receive queue is bounded by `tcp_rmem`'s
/// maximum, a send queue by `tcp_wmem`'s; both far below this).
pub const MAX_QUEUE: u32 = 256 << 20;

pub(super) fn read(fd: BorrowedFd<'_>) -> Result<TcpConnection> {
    let who = format!("tcp socket fd {}", fd.as_raw_fd());
    let info = tcp::tcp_info(fd)?;
    let st = u32::from(info.state);
    if st != state::ESTABLISHED {
        return Err(NetError::Unsupported(format!(
            "{who} is in state {}; only established connections can be repaired",
            state::name(st)
        )));
    }
    let outq_len = tcp::outq_len(fd)?;
    let unsent = tcp::unsent_len(fd)?;
    let inq_len = tcp::inq_len(fd)?;
    for (what, len) in [("receive", inq_len), ("send", outq_len)] {
        if len > MAX_QUEUE {
            return Err(NetError::Unsupported(format!(
                "{who} has {len} bytes in its {what} queue, more than {MAX_QUEUE}"
            )));
        }
    }
    // In repair mode TCP_MAXSEG reports the peer's MSS clamp, not the current MSS.
    let mss_clamp =
        stasis_sys::unixsock::get_int_opt(fd, libc::IPPROTO_TCP, libc::TCP_MAXSEG)? as u32;
    let opt_mask = u32::from(info.options);
    let (snd_wscale, rcv_wscale) = if opt_mask & tcp::TCPI_OPT_WSCALE != 0 {
        (u32::from(info.snd_wscale), u32::from(info.rcv_wscale))
    } else {
        (0, 0)
    };
    let timestamp = if opt_mask & tcp::TCPI_OPT_TIMESTAMPS != 0 {
        stasis_sys::unixsock::get_int_opt(fd, libc::IPPROTO_TCP, tcp::TCP_TIMESTAMP)? as u32
    } else {
        0
    };
    let window = Some(tcp::repair_window(fd)?);
    let (inq_seq, inq) = queue(fd, tcp::TCP_RECV_QUEUE, inq_len, &who)?;
    let (outq_seq, outq) = queue(fd, tcp::TCP_SEND_QUEUE, outq_len, &who)?;
    tcp::set_repair_queue(fd, tcp::TCP_NO_QUEUE)?;
    Ok(TcpConnection {
        local: tcp::local_addr(fd)?,
        peer: tcp::peer_addr(fd)?,
        inq_seq,
        outq_seq,
        inq,
        outq,
        unsent,
        opt_mask,
        snd_wscale,
        rcv_wscale,
        mss_clamp,
        timestamp,
        window,
    })
}

/// The end sequence number of one queue and its `len` bytes, peeked.
fn queue(fd: BorrowedFd<'_>, which: i32, len: u32, who: &str) -> Result<(u32, Vec<u8>)> {
    tcp::set_repair_queue(fd, which)?;
    let seq = tcp::queue_seq(fd)?;
    if len == 0 {
        return Ok((seq, Vec::new()));
    }
    // A receive-queue peek starts at the owner's SO_PEEK_OFF when it set one.
    let peek_off = if which == tcp::TCP_RECV_QUEUE {
        stasis_sys::unixsock::get_int_opt(fd, libc::SOL_SOCKET, libc::SO_PEEK_OFF).unwrap_or(-1)
    } else {
        -1
    };
    if peek_off > 0 {
        stasis_sys::unixsock::set_int_opt(fd, libc::SOL_SOCKET, libc::SO_PEEK_OFF, 0)?;
    }
    // One byte more than expected, to see that the queue holds exactly `len`.
    let mut buf = vec![0u8; len as usize + 1];
    let peeked = tcp::peek(fd, &mut buf);
    if peek_off > 0 {
        stasis_sys::unixsock::set_int_opt(fd, libc::SOL_SOCKET, libc::SO_PEEK_OFF, peek_off)?;
    }
    let n = peeked?;
    if n != len as usize {
        let what = if which == tcp::TCP_RECV_QUEUE {
            "receive"
        } else {
            "send"
        };
        return Err(NetError::Inconsistent(format!(
            "{who}: peeked {n} bytes of its {what} queue, but {len} are queued"
        )));
    }
    buf.truncate(n);
    Ok((seq, buf))
}
