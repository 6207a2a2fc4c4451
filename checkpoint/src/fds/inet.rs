//! Inet sockets (AF_INET, AF_INET6): an `inet_sk_entry` per socket with its family,
//! type, state, addresses (network-byte-order words, as CRIU stores them) and options,
//! and for an established TCP connection its repair state in `tcp-stream-<ino>.img`
//! (`tcp_stream_entry`, then the receive-queue bytes, then the send-queue bytes).
//!
//! TCP sockets that are listening, closed (bound or not) and UDP sockets (bound or
//! connected) are always dumped. An established connection only with
//! `--tcp-established`: its socket is put in repair mode (through the copy taken with
//! `pidfd_getfd` — repair mode belongs to the socket) and stays so until the dump ends.
//! If the task is killed, stasis's copies are closed last, in repair mode, so the
//! connection vanishes without a FIN or RST and the peer waits for the restore; if the
//! task runs on (`--leave-running`, or the dump failed) repair mode is turned off again.
//!
//! Refused, with the socket named: other protocols (raw, SCTP, UDP-Lite), connections
//! half-closed or still in their handshake, listeners with connections not yet accepted.

use super::OpenFd;
use crate::files::FileTable;
use crate::Result;
use stasis_images::{names, pb, ImageDir, ImageKind};
use stasis_netns::tcp::{self, state, TcpConnection, TcpOptions};
use stasis_netns::ConnLock;
use stasis_sys::unixsock::{get_int_opt, get_time_opt};
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{BorrowedFd, OwnedFd};
use std::sync::Mutex;

/// `SO_BUF_LOCK` (Linux 5.14): which of the buffer sizes the user fixed.
const SO_BUF_LOCK: i32 = 72;

/// The `tcp-stream-*.img` files of one dump.
#[derive(Default)]
pub struct Streams {
    /// (socket inode, entry, receive-queue bytes followed by send-queue bytes)
    streams: Vec<(u32, pb::TcpStreamEntry, Vec<u8>)>,
}

/// The dump in progress: whether established connections may be dumped, and the copies
/// of the sockets put in repair mode. Process-wide because the copies must outlive the
/// collection of the files, until the task is killed or let go.
struct Session {
    tcp_established: bool,
    repaired: Vec<OwnedFd>,
    /// The lock of single connections, when the tree's network namespace is not locked
    /// as a whole (see [`lock_connections`]).
    conns: Option<ConnLock>,
}

static SESSION: Mutex<Session> = Mutex::new(Session {
    tcp_established: false,
    repaired: Vec::new(),
    conns: None,
});

fn session() -> std::sync::MutexGuard<'static, Session> {
    SESSION.lock().unwrap_or_else(|p| p.into_inner())
}

/// Starts a dump: `tcp_established` is CRIU's `--tcp-established`.
pub fn begin(tcp_established: bool) {
    let mut s = session();
    s.tcp_established = tcp_established;
    release(&mut s.repaired, false);
    s.conns = None;
}

/// Each established connection is cut off on its own (table `inet <table>`) before its
/// socket enters repair mode: the dumped tasks share their network namespace with
/// processes that go on (the host's, or a runtime's), so it cannot be locked as a whole.
pub fn lock_connections(pid: i32, table: String) -> Result<()> {
    let lock = ConnLock::new(table).map_err(|e| crate::DumpError::Unsupported {
        pid,
        what: format!("the connection lock: {e}"),
    })?;
    session().conns = Some(lock);
    Ok(())
}

/// Ends a dump. `killed`: the task is dead, so the repaired sockets are closed in repair
/// mode (silently) and their connections stay locked until the restore; otherwise they
/// leave repair mode, are unlocked, and the connections carry on.
pub fn settle(killed: bool) {
    let mut s = session();
    release(&mut s.repaired, killed);
    match (s.conns.take(), killed) {
        (Some(lock), true) => lock.keep(),
        (Some(lock), false) => {
            if let Err(e) = lock.release() {
                log::error!("unlocking the dumped TCP connections: {e}");
            }
        }
        (None, _) => {}
    }
}

fn release(repaired: &mut Vec<OwnedFd>, killed: bool) {
    for fd in repaired.drain(..) {
        if !killed {
            if let Err(e) = tcp::repair_off(std::os::fd::AsFd::as_fd(&fd)) {
                log::error!("cannot take a dumped TCP socket out of repair mode: {e}");
            }
        }
    }
}

/// Dumps the AF_INET or AF_INET6 socket behind `f` as file `id`.
pub fn dump(table: &mut FileTable, f: &OpenFd<'_>, id: u32) -> Result<pb::FdTypes> {
    let local = f.local()?;
    let int = |level, opt| get_int_opt(local, level, opt);
    let family = int(libc::SOL_SOCKET, libc::SO_DOMAIN)?;
    let kind = int(libc::SOL_SOCKET, libc::SO_TYPE)?;
    let proto = int(libc::SOL_SOCKET, libc::SO_PROTOCOL)?;
    let tcp_sock = kind == libc::SOCK_STREAM && proto == libc::IPPROTO_TCP;
    let udp_sock = kind == libc::SOCK_DGRAM && proto == libc::IPPROTO_UDP;
    if !tcp_sock && !udp_sock {
        return Err(f.unsupported(format!(
            "an inet socket of type {kind} protocol {proto}; only TCP and UDP are supported"
        )));
    }
    let src = stasis_sys::tcp::local_addr(local)?;
    let dst = stasis_sys::tcp::peer_addr(local)?;
    let tuple = describe(src, dst);
    let mut entry = pb::InetSkEntry {
        id,
        ino: f.ino32(),
        family: family as u32,
        r#type: kind as u32,
        proto: proto as u32,
        state: state::CLOSE,
        src_port: src.map_or(0, |a| u32::from(a.port())),
        dst_port: dst.map_or(0, |a| u32::from(a.port())),
        flags: f.flags,
        backlog: 0,
        src_addr: words(src.map(|a| a.ip()), family),
        dst_addr: words(dst.map(|a| a.ip()), family),
        fown: f.fown()?,
        opts: options(local)?,
        ..Default::default()
    };
    if family == libc::AF_INET6 {
        entry.v6only = Some(int(libc::IPPROTO_IPV6, libc::IPV6_V6ONLY)? != 0);
    } else {
        entry.ip_opts = Some(pb::IpOptsEntry {
            freebind: Some(int(libc::IPPROTO_IP, libc::IP_FREEBIND)? != 0),
            tos: Some(int(libc::IPPROTO_IP, libc::IP_TOS)? as u32),
            ..Default::default()
        });
    }
    if udp_sock {
        if dst.is_some() {
            entry.state = state::ESTABLISHED;
        }
        let queued = stasis_sys::tcp::inq_len(local)?;
        if queued != 0 {
            log::warn!(
                "pid {} fd {}: UDP socket {tuple} has a datagram of {queued} bytes queued; \
                 queued datagrams are not dumped (they are lost, as datagrams may be)",
                f.pid,
                f.fd
            );
        }
    } else {
        entry.tcp_opts = Some(tcp_options(local)?);
        let info = stasis_sys::tcp::tcp_info(local)?;
        entry.state = u32::from(info.state);
        match entry.state {
            state::CLOSE => {}
            state::LISTEN => {
                if info.unacked != 0 {
                    return Err(f.unsupported(format!(
                        "a TCP listener on {tuple} with {} connections not yet accepted \
                         (in-flight connections are not supported)",
                        info.unacked
                    )));
                }
                entry.backlog = info.sacked;
            }
            state::ESTABLISHED => stream(table, f, &entry, (src, dst), &tuple)?,
            s => {
                return Err(f.unsupported(format!(
                    "a TCP socket {tuple} in state {}; only listening, closed and \
                     established ones are supported",
                    state::name(s)
                )))
            }
        }
    }
    log::debug!(
        "pid {} fd {}: inet socket {} {} state {}",
        f.pid,
        f.fd,
        if tcp_sock { "tcp" } else { "udp" },
        tuple,
        state::name(entry.state)
    );
    table.push(pb::FileEntry {
        r#type: pb::FdTypes::Inetsk as i32,
        id,
        isk: Some(entry),
        ..Default::default()
    });
    Ok(pb::FdTypes::Inetsk)
}

/// Repairs the established connection and records its stream.
fn stream(
    table: &mut FileTable,
    f: &OpenFd<'_>,
    e: &pb::InetSkEntry,
    (src, dst): (Option<SocketAddr>, Option<SocketAddr>),
    tuple: &str,
) -> Result<()> {
    let mut s = session();
    if !s.tcp_established {
        return Err(f.unsupported(format!(
            "an established TCP connection {tuple}; dump it with --tcp-established"
        )));
    }
    let local = f.local()?;
    if let (Some(lock), Some(src), Some(dst)) = (s.conns.as_mut(), src, dst) {
        lock.add(f.pid, src, dst)
            .map_err(|e| f.unsupported(format!("{tuple}: {e}")))?;
    }
    // A delayed ACK still pending goes out now, while the socket can send: the peer must
    // not retransmit into the port once the socket is gone.
    let _ = stasis_sys::unixsock::set_int_opt(local, libc::IPPROTO_TCP, libc::TCP_QUICKACK, 1);
    let copy = local
        .try_clone_to_owned()
        .map_err(|source| crate::DumpError::Io {
            path: format!("/proc/{}/fd/{}", f.pid, f.fd).into(),
            source,
        })?;
    tcp::repair_on(local).map_err(|e| f.unsupported(format!("{tuple}: TCP_REPAIR: {e}")))?;
    s.repaired.push(copy);
    drop(s);
    let c = TcpConnection::read(local).map_err(|e| f.unsupported(format!("{tuple}: {e}")))?;
    let w = c.window.unwrap_or_default();
    let entry = pb::TcpStreamEntry {
        inq_len: c.inq.len() as u32,
        inq_seq: c.inq_seq,
        outq_len: c.outq.len() as u32,
        outq_seq: c.outq_seq,
        opt_mask: c.opt_mask,
        snd_wscale: c.snd_wscale,
        mss_clamp: c.mss_clamp,
        rcv_wscale: Some(c.rcv_wscale),
        timestamp: Some(c.timestamp),
        cork: None,
        nodelay: None,
        unsq_len: Some(c.unsent),
        snd_wl1: c.window.map(|_| w.snd_wl1),
        snd_wnd: c.window.map(|_| w.snd_wnd),
        max_window: c.window.map(|_| w.max_window),
        rcv_wnd: c.window.map(|_| w.rcv_wnd),
        rcv_wup: c.window.map(|_| w.rcv_wup),
    };
    log::debug!(
        "pid {} fd {}: {tuple} repaired: inq {} bytes at {}, outq {} bytes ({} unsent) at {}",
        f.pid,
        f.fd,
        c.inq.len(),
        c.inq_seq,
        c.outq.len(),
        c.unsent,
        c.outq_seq
    );
    let mut bytes = c.inq;
    bytes.extend_from_slice(&c.outq);
    table.side.inet.streams.push((e.ino, entry, bytes));
    Ok(())
}

/// `a.b.c.d:p -> e.f.g.h:q`, for messages.
fn describe(src: Option<SocketAddr>, dst: Option<SocketAddr>) -> String {
    let show = |a: Option<SocketAddr>| a.map_or("*".to_string(), |a| a.to_string());
    match dst {
        Some(_) => format!("{} -> {}", show(src), show(dst)),
        None => show(src),
    }
}

/// An address as CRIU's words: each holds four bytes in network order, read as a
/// host-endian u32 (one word for IPv4, four for IPv6; zeros when unbound).
pub fn words(ip: Option<IpAddr>, family: i32) -> Vec<u32> {
    let octets: Vec<u8> = match ip {
        Some(IpAddr::V4(a)) => a.octets().to_vec(),
        Some(IpAddr::V6(a)) => a.octets().to_vec(),
        None if family == libc::AF_INET6 => vec![0; 16],
        None => vec![0; 4],
    };
    octets
        .chunks(4)
        .map(|c| u32::from_ne_bytes(c.try_into().expect("4 bytes")))
        .collect()
}

/// The socket-level options of `sk_opts_entry` an inet socket uses.
fn options(fd: BorrowedFd<'_>) -> Result<pb::SkOptsEntry> {
    let int = |opt| get_int_opt(fd, libc::SOL_SOCKET, opt);
    let (snd_sec, snd_usec) = get_time_opt(fd, libc::SO_SNDTIMEO)?;
    let (rcv_sec, rcv_usec) = get_time_opt(fd, libc::SO_RCVTIMEO)?;
    Ok(pb::SkOptsEntry {
        so_sndbuf: int(libc::SO_SNDBUF)? as u32,
        so_rcvbuf: int(libc::SO_RCVBUF)? as u32,
        so_snd_tmo_sec: snd_sec,
        so_snd_tmo_usec: snd_usec,
        so_rcv_tmo_sec: rcv_sec,
        so_rcv_tmo_usec: rcv_usec,
        reuseaddr: Some(int(libc::SO_REUSEADDR)? != 0),
        so_reuseport: Some(int(libc::SO_REUSEPORT)? != 0),
        so_priority: Some(int(libc::SO_PRIORITY)? as u32),
        so_rcvlowat: Some(int(libc::SO_RCVLOWAT)? as u32),
        so_mark: Some(int(libc::SO_MARK)? as u32),
        so_dontroute: Some(int(libc::SO_DONTROUTE)? != 0),
        so_broadcast: Some(int(libc::SO_BROADCAST)? != 0),
        so_keepalive: Some(int(libc::SO_KEEPALIVE)? != 0),
        so_oobinline: Some(int(libc::SO_OOBINLINE)? as u32),
        so_buf_lock: int(SO_BUF_LOCK).ok().map(|v| v as u32),
        ..Default::default()
    })
}

fn tcp_options(fd: BorrowedFd<'_>) -> Result<pb::TcpOptsEntry> {
    let o = TcpOptions::read(fd).map_err(|e| crate::DumpError::Internal(e.to_string()))?;
    Ok(pb::TcpOptsEntry {
        cork: Some(o.cork),
        nodelay: Some(o.nodelay),
        keepcnt: Some(o.keepcnt),
        keepidle: Some(o.keepidle),
        keepintvl: Some(o.keepintvl),
    })
}

/// Writes `tcp-stream-<ino>.img` for each repaired connection.
pub fn write_images(dir: &ImageDir, s: &Streams) -> Result<()> {
    for (ino, entry, bytes) in &s.streams {
        let mut w = dir.writer(ImageKind::TCP_STREAM, &names::tcp_stream(*ino))?;
        w.entry_with_extra(entry, bytes)?;
        w.commit()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_become_criu_words_in_network_order() {
        let lo: IpAddr = "127.0.0.1".parse().unwrap();
        assert_eq!(words(Some(lo), libc::AF_INET), vec![0x0100_007f]);
        assert_eq!(words(None, libc::AF_INET6), vec![0; 4]);
        let v6: IpAddr = "::1".parse().unwrap();
        assert_eq!(words(Some(v6), libc::AF_INET6), vec![0, 0, 0, 0x0100_0000]);
    }
}
