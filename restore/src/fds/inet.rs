//! Inet sockets (AF_INET, AF_INET6) from their `inet_sk_entry`, in two passes:
//!
//! 1. listening, closed and UDP sockets: options, bind (when the dump saw a port),
//!    `listen` with the dumped backlog, `connect` for a connected UDP socket;
//! 2. established TCP connections from `tcp-stream-<ino>.img`, rebuilt in repair mode by
//!    `stasis_netns::tcp` on the ports they had — after the listeners, because a repaired
//!    socket may share its port with a listener but a listener binding after it may not.
//!
//! The connections stay in repair mode (silent, sending nothing) until the whole task is
//! rebuilt: [`repair_off`] is the parent's last step before it lets the task run. A
//! restore that fails before that closes them without a FIN or RST, so the peer still
//! waits and the restore can be tried again.

use super::{set_params, ChildResult, Made, Objects};
use crate::plan::{FdPlan, TaskPlan};
use crate::{RestoreError, Result};
use stasis_images::{names, pb, ImageDir, ImageKind};
use stasis_netns::tcp::{self, state, TcpConnection, TcpOptions, TcpRepairWindow};
use stasis_sys::unixsock::{set_int_opt, set_time_opt};
use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

/// `SO_BUF_LOCK` (Linux 5.14).
const SO_BUF_LOCK: i32 = 72;
/// The largest TCP queue accepted from an image.
const MAX_QUEUE: u32 = 256 << 20;

/// One `tcp-stream-<ino>.img`: its entry, receive-queue bytes and send-queue bytes.
#[derive(Clone, Debug, Default)]
pub struct Stream {
    pub entry: pb::TcpStreamEntry,
    pub inq: Vec<u8>,
    pub outq: Vec<u8>,
}

fn bad(file: &str, what: impl Into<String>) -> RestoreError {
    RestoreError::BadImage {
        file: file.to_string(),
        what: what.into(),
    }
}

fn is_tcp(s: &pb::InetSkEntry) -> bool {
    s.r#type == libc::SOCK_STREAM as u32 && s.proto == libc::IPPROTO_TCP as u32
}

fn is_udp(s: &pb::InetSkEntry) -> bool {
    s.r#type == libc::SOCK_DGRAM as u32 && s.proto == libc::IPPROTO_UDP as u32
}

fn established(s: &pb::InetSkEntry) -> bool {
    is_tcp(s) && s.state == state::ESTABLISHED
}

/// Checks an `inet_sk_entry` of `files.img`: a family, protocol and state stasis
/// restores, and addresses of the family's length.
pub fn check(s: &pb::InetSkEntry) -> Result<()> {
    let who = format!("inet socket {} (ino {:#x})", s.id, s.ino);
    let words = match s.family as i32 {
        libc::AF_INET => 1,
        libc::AF_INET6 => 4,
        f => return Err(bad(names::FILES, format!("{who} has address family {f}"))),
    };
    if !is_tcp(s) && !is_udp(s) {
        return Err(RestoreError::Unsupported(format!(
            "{}: {who} is of type {} protocol {}; only TCP and UDP are restored",
            names::FILES,
            s.r#type,
            s.proto
        )));
    }
    for (what, a) in [("source", &s.src_addr), ("destination", &s.dst_addr)] {
        if a.len() != words {
            return Err(bad(
                names::FILES,
                format!("{who}: its {what} address has {} words", a.len()),
            ));
        }
    }
    let supported = if is_tcp(s) {
        [state::ESTABLISHED, state::CLOSE, state::LISTEN].contains(&s.state)
    } else {
        [state::ESTABLISHED, state::CLOSE].contains(&s.state)
    };
    if !supported {
        return Err(RestoreError::Unsupported(format!(
            "{}: {who} is in state {}",
            names::FILES,
            state::name(s.state)
        )));
    }
    Ok(())
}

/// Reads the `tcp-stream-*.img` of every established connection in `entries`.
pub fn read_streams<'a>(
    dir: &ImageDir,
    entries: impl Iterator<Item = &'a pb::FileEntry>,
) -> Result<HashMap<u32, Stream>> {
    let mut out = HashMap::new();
    for s in entries
        .filter_map(|e| e.isk.as_ref())
        .filter(|s| established(s))
    {
        let name = names::tcp_stream(s.ino);
        if !dir.exists(&name) {
            return Err(bad(
                &name,
                format!("missing: the stream of established TCP socket {}", s.id),
            ));
        }
        let mut r = dir.reader(ImageKind::TCP_STREAM, &name)?;
        let entry: pb::TcpStreamEntry = r
            .next()?
            .ok_or_else(|| bad(&name, "holds no tcp_stream_entry"))?;
        for (what, len) in [("receive", entry.inq_len), ("send", entry.outq_len)] {
            if len > MAX_QUEUE {
                return Err(bad(&name, format!("a {what} queue of {len} bytes")));
            }
        }
        if entry.unsq_len.unwrap_or(0) > entry.outq_len {
            return Err(bad(&name, "more unsent bytes than the send queue holds"));
        }
        let inq = r.read_extra(entry.inq_len as usize)?;
        let outq = r.read_extra(entry.outq_len as usize)?;
        out.insert(s.ino, Stream { entry, inq, outq });
    }
    Ok(out)
}

/// Whether the images hold an established TCP connection.
pub fn has_established(objs: &Objects) -> bool {
    objs.inet_sockets().any(established)
}

/// Refuses an image with established connections unless `--tcp-established` was given
/// (as CRIU does).
pub fn check_options(objs: &Objects, tcp_established: bool) -> Result<()> {
    if tcp_established {
        return Ok(());
    }
    if let Some(s) = objs.inet_sockets().find(|s| established(s)) {
        return Err(RestoreError::Unsupported(format!(
            "the image holds an established TCP connection {}; restore it with --tcp-established",
            tuple(s)
        )));
    }
    Ok(())
}

fn ip(words: &[u32]) -> IpAddr {
    let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_ne_bytes()).collect();
    match <[u8; 16]>::try_from(bytes.as_slice()) {
        Ok(b16) => IpAddr::V6(Ipv6Addr::from(b16)),
        Err(_) => {
            let b4: [u8; 4] = bytes
                .get(..4)
                .and_then(|b| b.try_into().ok())
                .unwrap_or([0; 4]);
            IpAddr::V4(Ipv4Addr::from(b4))
        }
    }
}

fn src(s: &pb::InetSkEntry) -> SocketAddr {
    SocketAddr::new(ip(&s.src_addr), s.src_port as u16)
}

fn dst(s: &pb::InetSkEntry) -> SocketAddr {
    SocketAddr::new(ip(&s.dst_addr), s.dst_port as u16)
}

fn tuple(s: &pb::InetSkEntry) -> String {
    if s.state == state::ESTABLISHED {
        format!("{} -> {}", src(s), dst(s))
    } else {
        src(s).to_string()
    }
}

fn err(s: &pb::InetSkEntry, what: impl std::fmt::Display) -> String {
    let proto = if is_tcp(s) { "tcp" } else { "udp" };
    format!("{proto} socket {} ({}): {what}", s.id, tuple(s))
}

/// Rebuilds every inet socket the descriptors refer to.
pub fn open_all(objs: &Objects, fds: &[FdPlan], made: &mut Made) -> ChildResult<()> {
    let mut socks: Vec<&pb::InetSkEntry> = Vec::new();
    let mut seen = HashSet::new();
    for f in fds {
        if let Some(s) = objs.get(f.file_id).and_then(|e| e.isk.as_ref()) {
            if seen.insert(s.id) {
                socks.push(s);
            }
        }
    }
    // Listeners and the rest first, connections last (see the module's header).
    socks.sort_by_key(|s| (established(s), s.id));
    for s in socks {
        let fd = if established(s) {
            let stream = objs
                .tcp_streams
                .get(&s.ino)
                .ok_or_else(|| err(s, "its tcp-stream image was not read"))?;
            connection(s, stream)?
        } else {
            plain(s)?
        };
        set_params(fd.as_fd(), s.flags, &s.fown).map_err(|e| err(s, e))?;
        made.put(s.id, fd)?;
    }
    Ok(())
}

/// A listening, closed or UDP socket.
fn plain(s: &pb::InetSkEntry) -> ChildResult<OwnedFd> {
    let fd = stasis_sys::tcp::socket(s.family as i32, s.r#type as i32).map_err(|e| err(s, e))?;
    let fd_ = fd.as_fd();
    set_options(s, fd_)?;
    set_int_opt(
        fd_,
        libc::SOL_SOCKET,
        libc::SO_REUSEADDR,
        i32::from(s.opts.reuseaddr == Some(true)),
    )
    .map_err(|e| err(s, e))?;
    if s.src_port != 0 {
        stasis_sys::tcp::bind(fd_, &src(s)).map_err(|e| err(s, e))?;
    }
    if s.state == state::LISTEN {
        stasis_sys::unixsock::listen(fd_, s.backlog as i32).map_err(|e| err(s, e))?;
    } else if s.state == state::ESTABLISHED {
        stasis_sys::tcp::connect(fd_, &dst(s)).map_err(|e| err(s, e))?;
    }
    if let Some(o) = &s.tcp_opts {
        tcp_options(o).apply(fd_).map_err(|e| err(s, e))?;
    }
    Ok(fd)
}

/// An established connection, left in repair mode.
fn connection(s: &pb::InetSkEntry, stream: &Stream) -> ChildResult<OwnedFd> {
    let fd = stasis_sys::tcp::socket(s.family as i32, s.r#type as i32).map_err(|e| err(s, e))?;
    let fd_ = fd.as_fd();
    set_options(s, fd_)?;
    // Before repair mode: repair mode turns it into a forced reuse of the port, which an
    // accepted connection needs beside its listener.
    set_int_opt(fd_, libc::SOL_SOCKET, libc::SO_REUSEADDR, 1).map_err(|e| err(s, e))?;
    tcp::repair_on(fd_).map_err(|e| err(s, e))?;
    let e = &stream.entry;
    let window = e.snd_wl1.map(|snd_wl1| TcpRepairWindow {
        snd_wl1,
        snd_wnd: e.snd_wnd.unwrap_or(0),
        max_window: e.max_window.unwrap_or(0),
        rcv_wnd: e.rcv_wnd.unwrap_or(0),
        rcv_wup: e.rcv_wup.unwrap_or(0),
    });
    let conn = TcpConnection {
        local: Some(src(s)),
        peer: Some(dst(s)),
        inq_seq: e.inq_seq,
        outq_seq: e.outq_seq,
        inq: stream.inq.clone(),
        outq: stream.outq.clone(),
        unsent: e.unsq_len.unwrap_or(0),
        opt_mask: e.opt_mask,
        snd_wscale: e.snd_wscale,
        rcv_wscale: e.rcv_wscale.unwrap_or(0),
        mss_clamp: e.mss_clamp,
        timestamp: e.timestamp.unwrap_or(0),
        window,
    };
    conn.restore_into(fd_).map_err(|e| err(s, e))?;
    let mut opts = s.tcp_opts.as_ref().map(tcp_options).unwrap_or_default();
    // CRIU's older images carry nodelay and cork in the stream entry.
    opts.nodelay |= e.nodelay == Some(true);
    opts.cork |= e.cork == Some(true);
    opts.apply(fd_).map_err(|e| err(s, e))?;
    Ok(fd)
}

fn tcp_options(o: &pb::TcpOptsEntry) -> TcpOptions {
    TcpOptions {
        nodelay: o.nodelay == Some(true),
        cork: o.cork == Some(true),
        keepcnt: o.keepcnt.unwrap_or(0),
        keepidle: o.keepidle.unwrap_or(0),
        keepintvl: o.keepintvl.unwrap_or(0),
    }
}

/// The socket-level options of the entry (all but SO_REUSEADDR, which depends on the
/// kind of socket) and the IP-level ones that must precede `bind`.
fn set_options(s: &pb::InetSkEntry, fd: BorrowedFd<'_>) -> ChildResult<()> {
    let o = &s.opts;
    let set = |level, opt, v: i32| set_int_opt(fd, level, opt, v).map_err(|e| err(s, e));
    let sol = libc::SOL_SOCKET;
    // The kernel doubles what is set and reports the doubled value.
    set(sol, libc::SO_SNDBUFFORCE, (o.so_sndbuf / 2) as i32)?;
    set(sol, libc::SO_RCVBUFFORCE, (o.so_rcvbuf / 2) as i32)?;
    if let Some(lock) = o.so_buf_lock {
        // Clears the locks the forced sizes set when the dumped buffers were autotuned.
        set(sol, SO_BUF_LOCK, lock as i32)?;
    }
    set_time_opt(fd, libc::SO_SNDTIMEO, o.so_snd_tmo_sec, o.so_snd_tmo_usec)
        .map_err(|e| err(s, e))?;
    set_time_opt(fd, libc::SO_RCVTIMEO, o.so_rcv_tmo_sec, o.so_rcv_tmo_usec)
        .map_err(|e| err(s, e))?;
    for (opt, v) in [
        (libc::SO_PRIORITY, o.so_priority),
        (libc::SO_MARK, o.so_mark),
        (libc::SO_OOBINLINE, o.so_oobinline),
    ] {
        if let Some(v) = v.filter(|&v| v != 0) {
            set(sol, opt, v as i32)?;
        }
    }
    if let Some(l) = o.so_rcvlowat.filter(|&l| l > 1) {
        set(sol, libc::SO_RCVLOWAT, l as i32)?;
    }
    for (opt, v) in [
        (libc::SO_REUSEPORT, o.so_reuseport),
        (libc::SO_DONTROUTE, o.so_dontroute),
        (libc::SO_BROADCAST, o.so_broadcast),
        (libc::SO_KEEPALIVE, o.so_keepalive),
    ] {
        if v == Some(true) {
            set(sol, opt, 1)?;
        }
    }
    if s.family == libc::AF_INET6 as u32 {
        set(
            libc::IPPROTO_IPV6,
            libc::IPV6_V6ONLY,
            i32::from(s.v6only == Some(true)),
        )?;
    } else if let Some(ip) = &s.ip_opts {
        if ip.freebind == Some(true) {
            set(libc::IPPROTO_IP, libc::IP_FREEBIND, 1)?;
        }
        if let Some(tos) = ip.tos.filter(|&t| t != 0) {
            set(libc::IPPROTO_IP, libc::IP_TOS, tos as i32)?;
        }
    }
    Ok(())
}

/// The parent's last step for `plan`'s task: its connections leave repair mode (a window
/// probe tells each peer the window at once) and get the SO_REUSEADDR they had.
pub fn repair_off(pid: i32, plan: &TaskPlan) -> Result<()> {
    let objs = &plan.objects;
    let mut done = HashSet::new();
    let mut pidfd = None;
    for f in &plan.fds {
        let Some(s) = objs.get(f.file_id).and_then(|e| e.isk.as_ref()) else {
            continue;
        };
        if !established(s) || !done.insert(s.id) {
            continue;
        }
        if pidfd.is_none() {
            pidfd = Some(stasis_sys::fdops::pidfd_open(pid)?);
        }
        let pidfd = pidfd.as_ref().expect("opened above");
        let sock = stasis_sys::fdops::pidfd_getfd(pidfd.as_fd(), f.fd)?;
        let fail = |e: String| RestoreError::Child {
            pid,
            what: format!("fd {}: {}", f.fd, err(s, e)),
        };
        tcp::repair_off(sock.as_fd()).map_err(|e| fail(e.to_string()))?;
        if s.opts.reuseaddr == Some(true) {
            set_int_opt(sock.as_fd(), libc::SOL_SOCKET, libc::SO_REUSEADDR, 1)
                .map_err(|e| fail(e.to_string()))?;
        }
        log::debug!("pid {pid} fd {}: {} runs again", f.fd, tuple(s));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn criu_address_words_become_socket_addresses() {
        let s = pb::InetSkEntry {
            family: libc::AF_INET as u32,
            src_addr: vec![0x0100_007f],
            src_port: 80,
            dst_addr: vec![0],
            ..Default::default()
        };
        assert_eq!(src(&s), "127.0.0.1:80".parse().unwrap());
        assert_eq!(
            ip(&[0, 0, 0, 0x0100_0000]),
            "::1".parse::<IpAddr>().unwrap()
        );
    }
}
