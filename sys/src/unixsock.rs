//! AF_UNIX sockets: creating, binding, connecting and shutting them down, their socket
//! options, peeking at a receive queue without consuming it, and the `sock_diag` netlink
//! query that reports every unix socket of the network namespace (peer, name, queue
//! lengths, shutdown state, pending connections).
//!
//! Socket names are raw bytes as the kernel reports them: a leading NUL byte marks an
//! abstract name; a path name may carry its terminating NUL.

use crate::error::{check, Result, SysError};
use libc::c_long;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

fn owned(ret: c_long, op: &'static str, target: impl ToString) -> Result<OwnedFd> {
    let fd = check(ret, op, target)?;
    // SAFETY: the kernel just returned this descriptor to us and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

fn raw(fd: BorrowedFd<'_>) -> RawFd {
    fd.as_raw_fd()
}

/// `socketpair(AF_UNIX, kind | SOCK_CLOEXEC)`.
pub fn socketpair(kind: i32) -> Result<(OwnedFd, OwnedFd)> {
    let mut fds = [-1 as RawFd; 2];
    // SAFETY: fds is a valid out-pointer to two ints.
    let ret = unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            kind | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    };
    check(ret as c_long, "socketpair", format!("type {kind}"))?;
    // SAFETY: the kernel just returned both descriptors to us and nothing else owns them.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// `socket(AF_UNIX, kind | SOCK_CLOEXEC)`.
pub fn socket(kind: i32) -> Result<OwnedFd> {
    // SAFETY: plain integer arguments.
    let ret = unsafe { libc::socket(libc::AF_UNIX, kind | libc::SOCK_CLOEXEC, 0) };
    owned(ret as c_long, "socket", format!("AF_UNIX type {kind}"))
}

/// A `sockaddr_un` for `name` (as the kernel reports it) and its length.
fn sockaddr(name: &[u8], op: &'static str) -> Result<(libc::sockaddr_un, libc::socklen_t)> {
    // SAFETY: sockaddr_un is plain data; all-zero is a valid value.
    let mut sa: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    sa.sun_family = libc::AF_UNIX as libc::sa_family_t;
    // A path name is passed without its terminating NUL (the kernel adds one).
    let name = if name.first().is_some_and(|&b| b != 0) {
        let end = name.iter().position(|&b| b == 0).unwrap_or(name.len());
        &name[..end]
    } else {
        name
    };
    if name.len() > sa.sun_path.len() {
        return Err(SysError::from_errno(
            op,
            String::from_utf8_lossy(name),
            libc::ENAMETOOLONG,
        ));
    }
    for (d, s) in sa.sun_path.iter_mut().zip(name) {
        *d = *s as libc::c_char;
    }
    let len = std::mem::size_of::<libc::sa_family_t>() + name.len();
    Ok((sa, len as libc::socklen_t))
}

fn shown(name: &[u8]) -> String {
    match name.first() {
        Some(0) => format!("@{}", String::from_utf8_lossy(&name[1..])),
        _ => String::from_utf8_lossy(name)
            .trim_end_matches('\0')
            .to_string(),
    }
}

/// `bind(fd, name)`.
pub fn bind(fd: BorrowedFd<'_>, name: &[u8]) -> Result<()> {
    let (sa, len) = sockaddr(name, "bind")?;
    // SAFETY: sa is a valid sockaddr_un of `len` meaningful bytes.
    let ret = unsafe { libc::bind(raw(fd), (&sa as *const libc::sockaddr_un).cast(), len) };
    check(ret as c_long, "bind", shown(name)).map(drop)
}

/// `connect(fd, name)`.
pub fn connect(fd: BorrowedFd<'_>, name: &[u8]) -> Result<()> {
    let (sa, len) = sockaddr(name, "connect")?;
    // SAFETY: sa is a valid sockaddr_un of `len` meaningful bytes.
    let ret = unsafe { libc::connect(raw(fd), (&sa as *const libc::sockaddr_un).cast(), len) };
    check(ret as c_long, "connect", shown(name)).map(drop)
}

/// `listen(fd, backlog)`.
pub fn listen(fd: BorrowedFd<'_>, backlog: i32) -> Result<()> {
    // SAFETY: plain integer arguments.
    let ret = unsafe { libc::listen(raw(fd), backlog) };
    check(ret as c_long, "listen", format!("fd {}", raw(fd))).map(drop)
}

/// `accept4(fd, SOCK_CLOEXEC)`.
pub fn accept(fd: BorrowedFd<'_>) -> Result<OwnedFd> {
    // SAFETY: null address pointers are allowed.
    let ret = unsafe {
        libc::accept4(
            raw(fd),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            libc::SOCK_CLOEXEC,
        )
    };
    owned(ret as c_long, "accept4", format!("fd {}", raw(fd)))
}

/// `shutdown(fd, how)` (SHUT_RD, SHUT_WR or SHUT_RDWR).
pub fn shutdown(fd: BorrowedFd<'_>, how: i32) -> Result<()> {
    // SAFETY: plain integer arguments.
    let ret = unsafe { libc::shutdown(raw(fd), how) };
    check(ret as c_long, "shutdown", format!("fd {}", raw(fd))).map(drop)
}

/// `getsockopt(fd, level, opt)` for an int-valued option.
pub fn get_int_opt(fd: BorrowedFd<'_>, level: i32, opt: i32) -> Result<i32> {
    let mut v: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: v and len are valid out-pointers of the advertised size.
    let ret =
        unsafe { libc::getsockopt(raw(fd), level, opt, (&mut v as *mut i32).cast(), &mut len) };
    check(
        ret as c_long,
        "getsockopt",
        format!("fd {} option {opt}", raw(fd)),
    )?;
    Ok(v)
}

/// `setsockopt(fd, level, opt, value)` for an int-valued option.
pub fn set_int_opt(fd: BorrowedFd<'_>, level: i32, opt: i32, value: i32) -> Result<()> {
    // SAFETY: value is a valid in-pointer to an int.
    let ret = unsafe {
        libc::setsockopt(
            raw(fd),
            level,
            opt,
            (&value as *const i32).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    check(
        ret as c_long,
        "setsockopt",
        format!("fd {} option {opt} = {value}", raw(fd)),
    )
    .map(drop)
}

/// `getsockopt(SOL_SOCKET, opt)` for a timeval option (SO_RCVTIMEO, SO_SNDTIMEO):
/// (seconds, microseconds).
pub fn get_time_opt(fd: BorrowedFd<'_>, opt: i32) -> Result<(u64, u64)> {
    let mut tv = libc::timeval {
        tv_sec: 0,
        tv_usec: 0,
    };
    let mut len = std::mem::size_of::<libc::timeval>() as libc::socklen_t;
    // SAFETY: tv and len are valid out-pointers of the advertised size.
    let ret = unsafe {
        libc::getsockopt(
            raw(fd),
            libc::SOL_SOCKET,
            opt,
            (&mut tv as *mut libc::timeval).cast(),
            &mut len,
        )
    };
    check(
        ret as c_long,
        "getsockopt",
        format!("fd {} option {opt}", raw(fd)),
    )?;
    Ok((tv.tv_sec as u64, tv.tv_usec as u64))
}

/// `setsockopt(SOL_SOCKET, opt)` for a timeval option.
pub fn set_time_opt(fd: BorrowedFd<'_>, opt: i32, sec: u64, usec: u64) -> Result<()> {
    let tv = libc::timeval {
        tv_sec: sec as libc::time_t,
        tv_usec: usec as libc::suseconds_t,
    };
    // SAFETY: tv is a valid in-pointer of the advertised size.
    let ret = unsafe {
        libc::setsockopt(
            raw(fd),
            libc::SOL_SOCKET,
            opt,
            (&tv as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    check(
        ret as c_long,
        "setsockopt",
        format!("fd {} option {opt}", raw(fd)),
    )
    .map(drop)
}

/// One message peeked from a receive queue.
#[derive(Debug)]
pub struct Peeked {
    /// Bytes copied into the caller's buffer.
    pub len: usize,
    /// The whole message's length (as `len` unless the peek asked for it with
    /// `MSG_TRUNC` and the message did not fit).
    pub full_len: usize,
    /// The message was longer than the buffer (MSG_TRUNC).
    pub truncated: bool,
    /// Control messages did not fit (MSG_CTRUNC).
    pub control_truncated: bool,
    /// Descriptors the message carries (SCM_RIGHTS), installed in the caller and owned.
    pub rights: Vec<OwnedFd>,
    /// Other control messages as (level, type).
    pub other_control: Vec<(i32, i32)>,
}

/// `recvmsg(fd, MSG_PEEK | MSG_DONTWAIT)`: copies the next message (or, for a stream,
/// the next bytes) at the socket's peek offset into `buf` without consuming it. `None`
/// when nothing more is queued (EAGAIN); a length of 0 is either a zero-length datagram
/// or, on a stream, the end of the data of a peer that shut its side down.
///
/// With `full_len` (datagram and seqpacket sockets only) the kernel reports a message's
/// whole length even when it did not fit; the peek offset still moves by the bytes
/// copied.
pub fn peek(fd: BorrowedFd<'_>, buf: &mut [u8], full_len: bool) -> Result<Option<Peeked>> {
    let mut control = [0u64; 64]; // 512 bytes, 8-byte aligned as cmsghdr needs
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: msghdr is plain data; all-zero is a valid value.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&control);
    let flags = libc::MSG_PEEK | libc::MSG_DONTWAIT | if full_len { libc::MSG_TRUNC } else { 0 };
    // SAFETY: msg points to one iovec covering `buf` and to `control`, both writable
    // for their advertised lengths.
    let ret = unsafe { libc::recvmsg(raw(fd), &mut msg, flags) };
    if ret < 0 {
        let e = SysError::last("recvmsg(MSG_PEEK)", format!("fd {}", raw(fd)));
        if e.errno() == Some(libc::EAGAIN) {
            return Ok(None);
        }
        return Err(e);
    }
    let mut out = Peeked {
        len: (ret as usize).min(buf.len()),
        full_len: ret as usize,
        truncated: msg.msg_flags & libc::MSG_TRUNC != 0,
        control_truncated: msg.msg_flags & libc::MSG_CTRUNC != 0,
        rights: Vec::new(),
        other_control: Vec::new(),
    };
    // SAFETY: the CMSG_* walk stays inside msg_control/msg_controllen as the kernel
    // shortened them; every SCM_RIGHTS descriptor was installed for us by recvmsg.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            let h = &*c;
            if h.cmsg_level == libc::SOL_SOCKET && h.cmsg_type == libc::SCM_RIGHTS {
                let n = (h.cmsg_len as usize - libc::CMSG_LEN(0) as usize) / 4;
                let data = libc::CMSG_DATA(c) as *const i32;
                for i in 0..n {
                    let fd = std::ptr::read_unaligned(data.add(i));
                    if fd >= 0 {
                        out.rights.push(OwnedFd::from_raw_fd(fd));
                    }
                }
            } else {
                out.other_control.push((h.cmsg_level, h.cmsg_type));
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
    }
    Ok(Some(out))
}

/// `send(fd, buf, flags)`: the bytes sent.
pub fn send(fd: BorrowedFd<'_>, buf: &[u8], flags: i32) -> Result<usize> {
    // SAFETY: buf is valid for reads of its length.
    let ret = unsafe { libc::send(raw(fd), buf.as_ptr().cast(), buf.len(), flags) };
    check(ret as c_long, "send", format!("fd {}", raw(fd))).map(|n| n as usize)
}

/// `sendto(fd, buf, flags, name)`: the bytes sent.
pub fn send_to(fd: BorrowedFd<'_>, buf: &[u8], flags: i32, name: &[u8]) -> Result<usize> {
    let (sa, len) = sockaddr(name, "sendto")?;
    // SAFETY: buf is valid for reads of its length; sa is a valid sockaddr_un.
    let ret = unsafe {
        libc::sendto(
            raw(fd),
            buf.as_ptr().cast(),
            buf.len(),
            flags,
            (&sa as *const libc::sockaddr_un).cast(),
            len,
        )
    };
    check(ret as c_long, "sendto", shown(name)).map(|n| n as usize)
}

/// `SIOCUNIXFILE`: an O_PATH descriptor of the file a bound socket's path name created
/// (ENOENT for an unbound or abstract socket).
pub fn socket_file(fd: BorrowedFd<'_>) -> Result<OwnedFd> {
    const SIOCUNIXFILE: libc::c_ulong = 0x89E0; // SIOCPROTOPRIVATE + 0
                                                // SAFETY: the ioctl takes no argument.
    let ret = unsafe { libc::ioctl(raw(fd), SIOCUNIXFILE) };
    owned(ret as c_long, "SIOCUNIXFILE", format!("fd {}", raw(fd)))
}

/// What `sock_diag` reports about one unix socket.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UnixDiag {
    pub ino: u32,
    /// SOCK_STREAM, SOCK_DGRAM or SOCK_SEQPACKET.
    pub kind: u32,
    /// TCP_* numbering: 1 established, 7 close, 10 listen.
    pub state: u32,
    /// The bound (or, for an accepted socket, inherited) name, as the kernel holds it.
    pub name: Option<Vec<u8>>,
    /// Device and inode of the socket file a path name created.
    pub vfs: Option<(u32, u32)>,
    /// Inode of the peer, 0 if none.
    pub peer: u32,
    /// Listening sockets: inodes of the connections not yet accepted (0 = closed).
    pub icons: Vec<u32>,
    /// Bytes (or, for a listener, connections) queued for reading, and bytes in flight
    /// (or, for a listener, the backlog).
    pub rqlen: Option<(u32, u32)>,
    /// RCV_SHUTDOWN (1) | SEND_SHUTDOWN (2).
    pub shutdown: u8,
}

const NETLINK_SOCK_DIAG: i32 = 4;
const SOCK_DIAG_BY_FAMILY: u16 = 20;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const UDIAG_SHOW_ALL: u32 = 0x1 | 0x2 | 0x4 | 0x8 | 0x10;
const UNIX_DIAG_NAME: u16 = 0;
const UNIX_DIAG_VFS: u16 = 1;
const UNIX_DIAG_PEER: u16 = 2;
const UNIX_DIAG_ICONS: u16 = 3;
const UNIX_DIAG_RQLEN: u16 = 4;
const UNIX_DIAG_SHUTDOWN: u16 = 6;

/// Every unix socket of the caller's network namespace, from one `sock_diag` dump.
pub fn unix_diag_all() -> Result<Vec<UnixDiag>> {
    // SAFETY: plain integer arguments.
    let ret = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            NETLINK_SOCK_DIAG,
        )
    };
    let nl = owned(ret as c_long, "socket", "NETLINK_SOCK_DIAG")?;
    // nlmsghdr (16 bytes) + unix_diag_req (24 bytes).
    let mut req = Vec::with_capacity(40);
    req.extend_from_slice(&40u32.to_ne_bytes());
    req.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    let flags = (libc::NLM_F_REQUEST | libc::NLM_F_DUMP) as u16;
    req.extend_from_slice(&flags.to_ne_bytes());
    req.extend_from_slice(&1u32.to_ne_bytes()); // seq
    req.extend_from_slice(&0u32.to_ne_bytes()); // pid
    req.push(libc::AF_UNIX as u8);
    req.push(0); // protocol
    req.extend_from_slice(&0u16.to_ne_bytes());
    req.extend_from_slice(&u32::MAX.to_ne_bytes()); // every state
    req.extend_from_slice(&0u32.to_ne_bytes()); // any inode
    req.extend_from_slice(&UDIAG_SHOW_ALL.to_ne_bytes());
    req.extend_from_slice(&u32::MAX.to_ne_bytes()); // no cookie
    req.extend_from_slice(&u32::MAX.to_ne_bytes());
    let mut sent = 0;
    while sent < req.len() {
        sent += send(nl.as_fd(), &req[sent..], 0)?;
    }
    let mut out = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        // SAFETY: buf is writable for its length.
        let n = unsafe { libc::recv(nl.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        let n = check(n as c_long, "recv", "NETLINK_SOCK_DIAG")? as usize;
        if n == 0 {
            return Err(SysError::from_errno(
                "recv",
                "NETLINK_SOCK_DIAG: end of stream before NLMSG_DONE",
                libc::EPROTO,
            ));
        }
        if parse_diag_messages(&buf[..n], &mut out)? {
            return Ok(out);
        }
    }
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn malformed(what: &str) -> SysError {
    SysError::from_errno(
        "sock_diag",
        format!("malformed netlink reply: {what}"),
        libc::EPROTO,
    )
}

/// Parses one datagram of netlink messages; true once NLMSG_DONE was seen.
fn parse_diag_messages(mut b: &[u8], out: &mut Vec<UnixDiag>) -> Result<bool> {
    while b.len() >= 16 {
        let len = u32_at(b, 0).ok_or_else(|| malformed("header"))? as usize;
        let kind = u16_at(b, 4).ok_or_else(|| malformed("header"))?;
        if len < 16 || len > b.len() {
            return Err(malformed("message length"));
        }
        let body = &b[16..len];
        match kind {
            NLMSG_DONE => return Ok(true),
            NLMSG_ERROR => {
                let err = u32_at(body, 0).ok_or_else(|| malformed("error"))? as i32;
                return Err(SysError::from_errno("sock_diag", "unix sockets", -err));
            }
            SOCK_DIAG_BY_FAMILY => out.push(parse_unix_diag(body)?),
            _ => {}
        }
        let next = (len + 3) & !3;
        b = b.get(next..).unwrap_or(&[]);
    }
    Ok(false)
}

fn parse_unix_diag(body: &[u8]) -> Result<UnixDiag> {
    // struct unix_diag_msg: family, type, state, pad (u8 each), ino u32, cookie [u32; 2].
    if body.len() < 16 {
        return Err(malformed("unix_diag_msg"));
    }
    let mut d = UnixDiag {
        kind: u32::from(body[1]),
        state: u32::from(body[2]),
        ino: u32_at(body, 4).ok_or_else(|| malformed("ino"))?,
        ..Default::default()
    };
    let mut attrs = &body[16..];
    while attrs.len() >= 4 {
        let alen = u16_at(attrs, 0).ok_or_else(|| malformed("attribute"))? as usize;
        let atype = u16_at(attrs, 2).ok_or_else(|| malformed("attribute"))? & 0x3fff;
        if alen < 4 || alen > attrs.len() {
            return Err(malformed("attribute length"));
        }
        let data = &attrs[4..alen];
        match atype {
            UNIX_DIAG_NAME => d.name = Some(data.to_vec()),
            UNIX_DIAG_VFS => {
                let ino = u32_at(data, 0).ok_or_else(|| malformed("vfs"))?;
                let dev = u32_at(data, 4).ok_or_else(|| malformed("vfs"))?;
                d.vfs = Some((dev, ino));
            }
            UNIX_DIAG_PEER => d.peer = u32_at(data, 0).ok_or_else(|| malformed("peer"))?,
            UNIX_DIAG_ICONS => {
                d.icons = data
                    .chunks_exact(4)
                    .map(|c| u32::from_ne_bytes([c[0], c[1], c[2], c[3]]))
                    .collect()
            }
            UNIX_DIAG_RQLEN => {
                let r = u32_at(data, 0).ok_or_else(|| malformed("rqlen"))?;
                let w = u32_at(data, 4).ok_or_else(|| malformed("rqlen"))?;
                d.rqlen = Some((r, w));
            }
            UNIX_DIAG_SHUTDOWN => {
                d.shutdown = *data.first().ok_or_else(|| malformed("shutdown"))?
            }
            _ => {}
        }
        let next = (alen + 3) & !3;
        attrs = attrs.get(next..).unwrap_or(&[]);
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_socketpair_is_reported_with_its_peer_and_queue() {
        let (a, b) = socketpair(libc::SOCK_STREAM).unwrap();
        send(a.as_fd(), b"hello", 0).unwrap();
        let ino = |fd: &OwnedFd| {
            let m = std::fs::metadata(format!("/proc/self/fd/{}", fd.as_raw_fd())).unwrap();
            std::os::unix::fs::MetadataExt::ino(&m) as u32
        };
        let all = unix_diag_all().unwrap();
        let da = all.iter().find(|d| d.ino == ino(&a)).unwrap();
        let db = all.iter().find(|d| d.ino == ino(&b)).unwrap();
        assert_eq!(da.peer, db.ino);
        assert_eq!(db.peer, da.ino);
        assert_eq!(db.rqlen.unwrap().0, 5);
        assert_eq!(da.kind, libc::SOCK_STREAM as u32);
    }

    #[test]
    fn peek_does_not_consume_and_moves_with_the_peek_offset() {
        let (a_owned, b_owned) = socketpair(libc::SOCK_DGRAM).unwrap();
        let (a, b) = (a_owned.as_fd(), b_owned.as_fd());
        send(a, b"one", 0).unwrap();
        send(a, b"three", 0).unwrap();
        set_int_opt(b, libc::SOL_SOCKET, libc::SO_PEEK_OFF, 0).unwrap();
        let mut buf = [0u8; 64];
        let p = peek(b, &mut buf, true).unwrap().unwrap();
        assert_eq!(&buf[..p.len], b"one");
        let p = peek(b, &mut buf, true).unwrap().unwrap();
        assert_eq!(&buf[..p.len], b"three");
        assert!(peek(b, &mut buf, true).unwrap().is_none());
        set_int_opt(b, libc::SOL_SOCKET, libc::SO_PEEK_OFF, -1).unwrap();
        let mut file = std::fs::File::from(b_owned.try_clone().unwrap());
        let n = std::io::Read::read(&mut file, &mut buf).unwrap();
        assert_eq!(&buf[..n], b"one");
    }

    #[test]
    fn a_datagram_larger_than_the_buffer_reports_its_whole_length() {
        let (a, b) = socketpair(libc::SOCK_DGRAM).unwrap();
        set_int_opt(a.as_fd(), libc::SOL_SOCKET, libc::SO_SNDBUFFORCE, 1 << 20).unwrap();
        let big = vec![7u8; 300_000];
        assert_eq!(send(a.as_fd(), &big, 0).unwrap(), big.len());
        set_int_opt(b.as_fd(), libc::SOL_SOCKET, libc::SO_PEEK_OFF, 0).unwrap();
        let mut small = [0u8; 1000];
        let p = peek(b.as_fd(), &mut small, true).unwrap().unwrap();
        assert_eq!((p.len, p.full_len), (1000, 300_000));
    }
}
