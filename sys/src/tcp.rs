//! Inet sockets and the kernel's TCP repair interface: creating, binding and connecting
//! AF_INET/AF_INET6 sockets from a [`SocketAddr`], their names, the queue-length ioctls,
//! `tcp_info`, and the `TCP_REPAIR*` options with their raw structs (`tcp_repair_opt`,
//! `tcp_repair_window`) from `include/uapi/linux/tcp.h`.
//!
//! What repair mode means and in which order the calls must come is the business of
//! `stasis-netns`'s `tcp` module; this file only crosses the system-call boundary.

use crate::error::{check, Result};
use libc::{c_long, c_void, socklen_t};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

/// `TCP_REPAIR`: 1 on, 0 off (with a window probe), -1 off without one.
pub const TCP_REPAIR: i32 = 19;
/// `TCP_REPAIR_QUEUE`: which queue `TCP_QUEUE_SEQ`, `send` and peeking act on.
pub const TCP_REPAIR_QUEUE: i32 = 20;
/// `TCP_QUEUE_SEQ`: the sequence number at the end of the selected queue
/// (`rcv_nxt` or `write_seq`); settable only before `connect`.
pub const TCP_QUEUE_SEQ: i32 = 21;
/// `TCP_REPAIR_OPTIONS`: an array of [`TcpRepairOpt`].
pub const TCP_REPAIR_OPTIONS: i32 = 22;
/// `TCP_TIMESTAMP`: the connection's timestamp clock (`tsoffset` + now).
pub const TCP_TIMESTAMP: i32 = 24;
/// `TCP_REPAIR_WINDOW`: a [`TcpRepairWindow`].
pub const TCP_REPAIR_WINDOW: i32 = 29;

pub const TCP_REPAIR_ON: i32 = 1;
pub const TCP_REPAIR_OFF: i32 = 0;
/// Leave repair mode without sending a window probe.
pub const TCP_REPAIR_OFF_NO_WP: i32 = -1;

pub const TCP_NO_QUEUE: i32 = 0;
pub const TCP_RECV_QUEUE: i32 = 1;
pub const TCP_SEND_QUEUE: i32 = 2;

/// TCP option kinds accepted by `TCP_REPAIR_OPTIONS`.
pub const TCPOPT_MAXSEG: u32 = 2;
pub const TCPOPT_WINDOW: u32 = 3;
pub const TCPOPT_SACK_PERM: u32 = 4;
pub const TCPOPT_TIMESTAMP: u32 = 8;

/// Bits of `tcp_info.tcpi_options` (CRIU's `opt_mask`).
pub const TCPI_OPT_TIMESTAMPS: u32 = 1;
pub const TCPI_OPT_SACK: u32 = 2;
pub const TCPI_OPT_WSCALE: u32 = 4;

/// `SIOCOUTQNSD`: bytes in the send queue not yet sent.
const SIOCOUTQNSD: libc::c_ulong = 0x894B;

/// `struct tcp_repair_opt`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcpRepairOpt {
    pub opt_code: u32,
    pub opt_val: u32,
}

/// `struct tcp_repair_window`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcpRepairWindow {
    pub snd_wl1: u32,
    pub snd_wnd: u32,
    pub max_window: u32,
    pub rcv_wnd: u32,
    pub rcv_wup: u32,
}

/// The head of `struct tcp_info` that a checkpoint needs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcpInfo {
    /// `TCP_ESTABLISHED`, `TCP_LISTEN`, ... (the kernel's TCP state numbering).
    pub state: u8,
    /// `TCPI_OPT_*` bits negotiated on the connection.
    pub options: u8,
    pub snd_wscale: u8,
    pub rcv_wscale: u8,
    /// For a listener: connections waiting in its accept queue (`sk_ack_backlog`).
    pub unacked: u32,
    /// For a listener: its backlog (`sk_max_ack_backlog`).
    pub sacked: u32,
}

fn raw(fd: BorrowedFd<'_>) -> RawFd {
    fd.as_raw_fd()
}

fn target(fd: BorrowedFd<'_>, what: impl std::fmt::Display) -> String {
    format!("fd {} {what}", raw(fd))
}

/// `socket(family, kind | SOCK_CLOEXEC, 0)`.
pub fn socket(family: i32, kind: i32) -> Result<OwnedFd> {
    // SAFETY: plain integer arguments.
    let ret = unsafe { libc::socket(family, kind | libc::SOCK_CLOEXEC, 0) };
    let fd = check(
        ret as c_long,
        "socket",
        format!("family {family} type {kind}"),
    )?;
    // SAFETY: the kernel just returned this descriptor to us and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// A `sockaddr_storage` holding `addr`, and its length.
fn to_sockaddr(addr: &SocketAddr) -> (libc::sockaddr_storage, socklen_t) {
    // SAFETY: sockaddr_storage is plain data; all-zero is a valid value.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match addr {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(a.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in.
            unsafe { std::ptr::write((&mut ss as *mut libc::sockaddr_storage).cast(), sin) };
            std::mem::size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: a.flowinfo().to_be(),
                sin6_addr: libc::in6_addr {
                    s6_addr: a.ip().octets(),
                },
                sin6_scope_id: a.scope_id(),
            };
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in6.
            unsafe { std::ptr::write((&mut ss as *mut libc::sockaddr_storage).cast(), sin6) };
            std::mem::size_of::<libc::sockaddr_in6>()
        }
    };
    (ss, len as socklen_t)
}

/// The address in a `sockaddr_storage` the kernel filled, if it is AF_INET or AF_INET6.
fn from_sockaddr(ss: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match ss.ss_family as i32 {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in.
            let sin: libc::sockaddr_in =
                unsafe { std::ptr::read((ss as *const libc::sockaddr_storage).cast()) };
            let ip = Ipv4Addr::from(sin.sin_addr.s_addr.to_ne_bytes());
            Some(SocketAddr::V4(SocketAddrV4::new(
                ip,
                u16::from_be(sin.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says the storage holds a sockaddr_in6.
            let sin6: libc::sockaddr_in6 =
                unsafe { std::ptr::read((ss as *const libc::sockaddr_storage).cast()) };
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(sin6.sin6_addr.s6_addr),
                u16::from_be(sin6.sin6_port),
                u32::from_be(sin6.sin6_flowinfo),
                sin6.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

/// `bind(fd, addr)`.
pub fn bind(fd: BorrowedFd<'_>, addr: &SocketAddr) -> Result<()> {
    let (ss, len) = to_sockaddr(addr);
    // SAFETY: ss holds a valid sockaddr of `len` bytes.
    let ret = unsafe { libc::bind(raw(fd), (&ss as *const libc::sockaddr_storage).cast(), len) };
    check(ret as c_long, "bind", target(fd, addr)).map(drop)
}

/// `connect(fd, addr)`. In TCP repair mode no SYN is sent: the socket is established at
/// once with the sequence numbers set beforehand.
pub fn connect(fd: BorrowedFd<'_>, addr: &SocketAddr) -> Result<()> {
    let (ss, len) = to_sockaddr(addr);
    // SAFETY: ss holds a valid sockaddr of `len` bytes.
    let ret = unsafe { libc::connect(raw(fd), (&ss as *const libc::sockaddr_storage).cast(), len) };
    check(ret as c_long, "connect", target(fd, addr)).map(drop)
}

type NameFn = unsafe extern "C" fn(i32, *mut libc::sockaddr, *mut socklen_t) -> i32;

fn name(fd: BorrowedFd<'_>, f: NameFn, op: &'static str) -> Result<Option<SocketAddr>> {
    // SAFETY: sockaddr_storage is plain data; all-zero is a valid value.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as socklen_t;
    // SAFETY: ss and len are valid out-pointers; len is the storage's size.
    let ret = unsafe {
        f(
            raw(fd),
            (&mut ss as *mut libc::sockaddr_storage).cast(),
            &mut len,
        )
    };
    match check(ret as c_long, op, target(fd, "")) {
        Ok(_) => Ok(from_sockaddr(&ss)),
        Err(e) if e.errno() == Some(libc::ENOTCONN) => Ok(None),
        Err(e) => Err(e),
    }
}

/// `getsockname(fd)`; `None` for a family other than AF_INET/AF_INET6.
pub fn local_addr(fd: BorrowedFd<'_>) -> Result<Option<SocketAddr>> {
    name(fd, libc::getsockname, "getsockname")
}

/// `getpeername(fd)`; `None` when the socket is not connected.
pub fn peer_addr(fd: BorrowedFd<'_>) -> Result<Option<SocketAddr>> {
    name(fd, libc::getpeername, "getpeername")
}

fn ioctl_int(fd: BorrowedFd<'_>, req: libc::c_ulong, op: &'static str) -> Result<u32> {
    let mut v: libc::c_int = 0;
    // SAFETY: these ioctls write one int through the pointer.
    let ret = unsafe { libc::ioctl(raw(fd), req, &mut v as *mut libc::c_int) };
    check(ret as c_long, op, target(fd, "")).map(|_| v as u32)
}

/// `SIOCINQ`: bytes in the receive queue not yet read.
pub fn inq_len(fd: BorrowedFd<'_>) -> Result<u32> {
    ioctl_int(fd, libc::FIONREAD, "ioctl(SIOCINQ)")
}

/// `SIOCOUTQ`: bytes in the send queue not yet acknowledged (sent or not).
pub fn outq_len(fd: BorrowedFd<'_>) -> Result<u32> {
    ioctl_int(fd, libc::TIOCOUTQ, "ioctl(SIOCOUTQ)")
}

/// `SIOCOUTQNSD`: bytes in the send queue not yet sent.
pub fn unsent_len(fd: BorrowedFd<'_>) -> Result<u32> {
    ioctl_int(fd, SIOCOUTQNSD, "ioctl(SIOCOUTQNSD)")
}

/// `getsockopt(IPPROTO_TCP, TCP_INFO)`, its first 32 bytes.
pub fn tcp_info(fd: BorrowedFd<'_>) -> Result<TcpInfo> {
    let mut buf = [0u8; 32];
    let mut len = buf.len() as socklen_t;
    // SAFETY: buf and len are valid out-pointers; the kernel writes at most len bytes.
    let ret = unsafe {
        libc::getsockopt(
            raw(fd),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            buf.as_mut_ptr().cast(),
            &mut len,
        )
    };
    check(ret as c_long, "getsockopt(TCP_INFO)", target(fd, ""))?;
    let word = |at: usize| u32::from_ne_bytes(buf[at..at + 4].try_into().expect("4 bytes"));
    // Byte 6 holds the bitfields `tcpi_snd_wscale:4, tcpi_rcv_wscale:4` (low nibble first).
    Ok(TcpInfo {
        state: buf[0],
        options: buf[5],
        snd_wscale: buf[6] & 0xf,
        rcv_wscale: buf[6] >> 4,
        unacked: word(24),
        sacked: word(28),
    })
}

fn set_raw<T>(fd: BorrowedFd<'_>, opt: i32, v: &[T], what: &str) -> Result<()> {
    // SAFETY: v is a valid in-pointer to `len` bytes of plain data.
    let ret = unsafe {
        libc::setsockopt(
            raw(fd),
            libc::IPPROTO_TCP,
            opt,
            v.as_ptr() as *const c_void,
            std::mem::size_of_val(v) as socklen_t,
        )
    };
    check(ret as c_long, "setsockopt", target(fd, what)).map(drop)
}

/// `TCP_REPAIR` on or off (one of the `TCP_REPAIR_*` values).
pub fn set_repair(fd: BorrowedFd<'_>, mode: i32) -> Result<()> {
    set_raw(fd, TCP_REPAIR, &[mode], &format!("TCP_REPAIR = {mode}"))
}

/// `TCP_REPAIR_QUEUE`: selects the queue the next calls act on.
pub fn set_repair_queue(fd: BorrowedFd<'_>, queue: i32) -> Result<()> {
    set_raw(
        fd,
        TCP_REPAIR_QUEUE,
        &[queue],
        &format!("TCP_REPAIR_QUEUE = {queue}"),
    )
}

/// `TCP_QUEUE_SEQ` of the selected queue.
pub fn queue_seq(fd: BorrowedFd<'_>) -> Result<u32> {
    crate::unixsock::get_int_opt(fd, libc::IPPROTO_TCP, TCP_QUEUE_SEQ).map(|v| v as u32)
}

/// Sets `TCP_QUEUE_SEQ` of the selected queue (before `connect`).
pub fn set_queue_seq(fd: BorrowedFd<'_>, seq: u32) -> Result<()> {
    set_raw(fd, TCP_QUEUE_SEQ, &[seq], &format!("TCP_QUEUE_SEQ = {seq}"))
}

/// `TCP_REPAIR_OPTIONS`: the options the handshake would have negotiated.
pub fn set_repair_options(fd: BorrowedFd<'_>, opts: &[TcpRepairOpt]) -> Result<()> {
    set_raw(fd, TCP_REPAIR_OPTIONS, opts, "TCP_REPAIR_OPTIONS")
}

/// `TCP_REPAIR_WINDOW`.
pub fn repair_window(fd: BorrowedFd<'_>) -> Result<TcpRepairWindow> {
    let mut w = TcpRepairWindow::default();
    let mut len = std::mem::size_of::<TcpRepairWindow>() as socklen_t;
    // SAFETY: w and len are valid out-pointers of the advertised size.
    let ret = unsafe {
        libc::getsockopt(
            raw(fd),
            libc::IPPROTO_TCP,
            TCP_REPAIR_WINDOW,
            (&mut w as *mut TcpRepairWindow).cast(),
            &mut len,
        )
    };
    check(
        ret as c_long,
        "getsockopt(TCP_REPAIR_WINDOW)",
        target(fd, ""),
    )
    .map(|_| w)
}

/// Sets `TCP_REPAIR_WINDOW` (the receive queue must be restored first).
pub fn set_repair_window(fd: BorrowedFd<'_>, w: &TcpRepairWindow) -> Result<()> {
    set_raw(
        fd,
        TCP_REPAIR_WINDOW,
        std::slice::from_ref(w),
        "TCP_REPAIR_WINDOW",
    )
}

/// `recv(fd, buf, MSG_PEEK | MSG_DONTWAIT)`: in repair mode, peeks at the queue chosen
/// with `TCP_REPAIR_QUEUE` without consuming it. Returns the bytes copied.
pub fn peek(fd: BorrowedFd<'_>, buf: &mut [u8]) -> Result<usize> {
    // SAFETY: buf is a valid writable buffer of its length.
    let ret = unsafe {
        libc::recv(
            raw(fd),
            buf.as_mut_ptr().cast(),
            buf.len(),
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    check(ret as c_long, "recv(MSG_PEEK)", target(fd, "")).map(|n| n as usize)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn socket_addresses_survive_the_round_trip_through_sockaddr() {
        for a in ["127.0.0.1:8080", "[::1]:443", "[fe80::1%2]:7"] {
            let addr: SocketAddr = a.parse().unwrap();
            let (ss, _) = to_sockaddr(&addr);
            assert_eq!(from_sockaddr(&ss), Some(addr));
        }
    }

    #[test]
    fn a_listener_reports_its_state_and_backlog_in_tcp_info() {
        let fd = socket(libc::AF_INET, libc::SOCK_STREAM).unwrap();
        bind(fd.as_fd(), &"127.0.0.1:0".parse().unwrap()).unwrap();
        crate::unixsock::listen(fd.as_fd(), 7).unwrap();
        let info = tcp_info(fd.as_fd()).unwrap();
        assert_eq!(info.state, 10);
        assert_eq!(info.sacked, 7);
        assert_eq!(info.unacked, 0);
        let local = local_addr(fd.as_fd()).unwrap().unwrap();
        assert_ne!(local.port(), 0);
        assert_eq!(peer_addr(fd.as_fd()).unwrap(), None);
    }
}
