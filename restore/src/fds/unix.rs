//! Unix sockets, rebuilt together because they refer to each other. In order:
//!
//! 1. every socket is created with its options: connected pairs without names as a
//!    `socketpair`, the rest with `socket`; named ones are bound (a stale socket file
//!    left at the path by the dumped process is removed first) and listeners listen;
//! 2. a connection accepted from a listener is made again the same way (connect, then
//!    accept), so both ends carry the names they had;
//! 3. datagram sockets connect to their peers by name;
//! 4. each receive queue is refilled in order by the socket's peer (or, for a bound
//!    datagram socket, by a throwaway socket sending to its name; for a stream whose
//!    peer had closed, by a throwaway peer that is closed afterwards);
//! 5. connections not yet accepted connect to their listener, in their order;
//! 6. shutdown states are applied, socket files get their permissions, and names that
//!    had been unlinked are unlinked again.

use super::{set_params, ChildResult, Made, Objects};
use crate::plan::FdPlan;
use stasis_images::pb;
use stasis_sys::unixsock;
use std::collections::HashMap;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};

const TCP_ESTABLISHED: u32 = 1;
const TCP_LISTEN: u32 = 10;

fn err(s: &pb::UnixSkEntry, what: impl std::fmt::Display) -> String {
    format!("unix socket {} (ino {}): {what}", s.id, s.ino)
}

fn sys<T>(s: &pb::UnixSkEntry, r: stasis_sys::Result<T>) -> ChildResult<T> {
    r.map_err(|e| err(s, e))
}

fn is_path(name: &[u8]) -> bool {
    name.first().is_some_and(|&b| b != 0)
}

fn path_text(name: &[u8]) -> String {
    String::from_utf8_lossy(name)
        .trim_end_matches('\0')
        .to_string()
}

/// Runs `op` with the socket's name directory as working directory, for a name that is
/// relative to it.
fn in_name_dir<T>(s: &pb::UnixSkEntry, op: impl FnOnce() -> ChildResult<T>) -> ChildResult<T> {
    let Some(dir) = s.name_dir.as_deref().filter(|_| is_path(&s.name)) else {
        return op();
    };
    let back = std::env::current_dir().map_err(|e| err(s, format!("getcwd: {e}")))?;
    std::env::set_current_dir(dir).map_err(|e| err(s, format!("chdir {dir}: {e}")))?;
    let r = op();
    std::env::set_current_dir(&back)
        .map_err(|e| err(s, format!("chdir {}: {e}", back.display())))?;
    r
}

/// Binds `fd` to the name of `s`, removing a stale socket file at its path first.
fn bind(s: &pb::UnixSkEntry, fd: BorrowedFd<'_>) -> ChildResult<()> {
    in_name_dir(s, || {
        if is_path(&s.name) {
            let path = path_text(&s.name);
            if let Ok(m) = std::fs::symlink_metadata(&path) {
                if !m.file_type().is_socket() {
                    return Err(err(s, format!("{path} exists and is not a socket")));
                }
                std::fs::remove_file(&path)
                    .map_err(|e| err(s, format!("remove stale {path}: {e}")))?;
            }
        }
        sys(s, unixsock::bind(fd, &s.name))
    })
}

/// Connects `fd` to the name of `target`.
fn connect(fd: BorrowedFd<'_>, target: &pb::UnixSkEntry) -> ChildResult<()> {
    in_name_dir(target, || sys(target, unixsock::connect(fd, &target.name)))
}

/// Sets the options a unix socket carries (buffer sizes, timeouts, credentials passing).
fn set_options(s: &pb::UnixSkEntry, fd: BorrowedFd<'_>) -> ChildResult<()> {
    let o = &s.opts;
    let set = |opt, v| sys(s, unixsock::set_int_opt(fd, libc::SOL_SOCKET, opt, v));
    // The kernel doubles what is set and reports the doubled value.
    set(libc::SO_SNDBUFFORCE, (o.so_sndbuf / 2) as i32)?;
    set(libc::SO_RCVBUFFORCE, (o.so_rcvbuf / 2) as i32)?;
    sys(
        s,
        unixsock::set_time_opt(fd, libc::SO_SNDTIMEO, o.so_snd_tmo_sec, o.so_snd_tmo_usec),
    )?;
    sys(
        s,
        unixsock::set_time_opt(fd, libc::SO_RCVTIMEO, o.so_rcv_tmo_sec, o.so_rcv_tmo_usec),
    )?;
    if let Some(p) = o.so_priority.filter(|&p| p != 0) {
        set(libc::SO_PRIORITY, p as i32)?;
    }
    if let Some(l) = o.so_rcvlowat.filter(|&l| l > 1) {
        set(libc::SO_RCVLOWAT, l as i32)?;
    }
    if let Some(m) = o.so_mark.filter(|&m| m != 0) {
        set(libc::SO_MARK, m as i32)?;
    }
    if o.so_passcred == Some(true) {
        set(libc::SO_PASSCRED, 1)?;
    }
    if o.so_passsec == Some(true) {
        set(libc::SO_PASSSEC, 1)?;
    }
    Ok(())
}

/// How a connected stream or seqpacket pair is made again.
enum PairVia {
    Socketpair,
    /// (client, accepted, listener)
    Listener(u32, u32, u32),
}

/// Rebuilds every unix socket the descriptors refer to.
pub fn open_all(objs: &Objects, fds: &[FdPlan], made: &mut Made) -> ChildResult<()> {
    let mut socks: Vec<&pb::UnixSkEntry> = Vec::new();
    for f in fds {
        if let Some(s) = objs.get(f.file_id).and_then(|e| e.usk.as_ref()) {
            if !socks.iter().any(|t| t.id == s.id) {
                socks.push(s);
            }
        }
    }
    if socks.is_empty() {
        return Ok(());
    }
    socks.sort_by_key(|s| s.id);
    let by_ino: HashMap<u32, &pb::UnixSkEntry> = socks.iter().map(|s| (s.ino, *s)).collect();
    let by_id: HashMap<u32, &pb::UnixSkEntry> = socks.iter().map(|s| (s.id, *s)).collect();
    let mutual = |s: &pb::UnixSkEntry| {
        by_ino
            .get(&s.peer)
            .copied()
            .filter(|p| p.peer == s.ino && p.r#type == s.r#type && p.id != s.id)
    };
    let listener_named = |name: &[u8], dir: &Option<String>| {
        socks.iter().copied().find(|l| {
            l.state == TCP_LISTEN && !name.is_empty() && l.name == name && &l.name_dir == dir
        })
    };

    let mut live: HashMap<u32, OwnedFd> = HashMap::new();
    // Throwaway peers of streams whose peer had closed, by the socket's id.
    let mut orphans: HashMap<u32, OwnedFd> = HashMap::new();
    let mut accepts: Vec<(u32, u32, u32)> = Vec::new();
    let mut inflight: Vec<(u32, u32)> = Vec::new();
    let mut bound: Vec<u32> = Vec::new();

    // 1. Create, set options, bind, listen.
    for &s in &socks {
        if live.contains_key(&s.id) || accepts.iter().any(|a| a.1 == s.id) {
            continue;
        }
        let kind = s.r#type as i32;
        let stream_like = kind != libc::SOCK_DGRAM;
        if s.state == TCP_LISTEN {
            let fd = sys(s, unixsock::socket(kind))?;
            set_options(s, fd.as_fd())?;
            if !s.name.is_empty() {
                bind(s, fd.as_fd())?;
                bound.push(s.id);
            }
            sys(s, unixsock::listen(fd.as_fd(), s.backlog as i32))?;
            live.insert(s.id, fd);
            continue;
        }
        if let Some(p) = mutual(s) {
            let via = if !stream_like || s.state != TCP_ESTABLISHED {
                PairVia::Socketpair
            } else if let Some(l) =
                listener_named(&p.name, &p.name_dir).filter(|_| s.name != p.name)
            {
                PairVia::Listener(s.id, p.id, l.id)
            } else if let Some(l) =
                listener_named(&s.name, &s.name_dir).filter(|_| s.name != p.name)
            {
                PairVia::Listener(p.id, s.id, l.id)
            } else {
                PairVia::Socketpair
            };
            match via {
                PairVia::Listener(client, accepted, l) => {
                    let c = by_id[&client];
                    let fd = sys(c, unixsock::socket(kind))?;
                    set_options(c, fd.as_fd())?;
                    if !c.name.is_empty() {
                        bind(c, fd.as_fd())?;
                        bound.push(c.id);
                    }
                    live.insert(c.id, fd);
                    accepts.push((client, accepted, l));
                }
                PairVia::Socketpair => {
                    let named = |x: &pb::UnixSkEntry| !x.name.is_empty();
                    if stream_like && (named(s) || named(p)) {
                        return Err(err(
                            s,
                            "a connection with a name whose listening socket is not in the image",
                        ));
                    }
                    let (a, b) = sys(s, unixsock::socketpair(kind))?;
                    set_options(s, a.as_fd())?;
                    set_options(p, b.as_fd())?;
                    for (x, fd) in [(s, &a), (p, &b)] {
                        if named(x) {
                            bind(x, fd.as_fd())?;
                            bound.push(x.id);
                        }
                    }
                    live.insert(s.id, a);
                    live.insert(p.id, b);
                }
            }
            continue;
        }
        let peer = by_ino.get(&s.peer).copied();
        if stream_like && s.state == TCP_ESTABLISHED {
            match peer {
                Some(l) if l.state == TCP_LISTEN => {
                    let fd = sys(s, unixsock::socket(kind))?;
                    set_options(s, fd.as_fd())?;
                    if !s.name.is_empty() {
                        bind(s, fd.as_fd())?;
                        bound.push(s.id);
                    }
                    live.insert(s.id, fd);
                    inflight.push((s.id, l.id));
                }
                None if s.peer == 0 => {
                    // Its peer closed: a throwaway peer refills the queue, then closes.
                    let (a, b) = sys(s, unixsock::socketpair(kind))?;
                    set_options(s, a.as_fd())?;
                    live.insert(s.id, a);
                    orphans.insert(s.id, b);
                }
                _ => {
                    return Err(err(
                        s,
                        format!("connected to {}, which is not in the image", s.peer),
                    ))
                }
            }
            continue;
        }
        // Datagram sockets and unconnected stream sockets.
        let fd = sys(s, unixsock::socket(kind))?;
        set_options(s, fd.as_fd())?;
        if !s.name.is_empty() {
            bind(s, fd.as_fd())?;
            bound.push(s.id);
        }
        live.insert(s.id, fd);
    }

    // 2. Connections accepted from a listener of the image.
    for &(client, accepted, l) in &accepts {
        let (a, ls) = (by_id[&accepted], by_id[&l]);
        connect(live[&client].as_fd(), ls)?;
        let fd = sys(a, unixsock::accept(live[&l].as_fd()))?;
        set_options(a, fd.as_fd())?;
        live.insert(a.id, fd);
    }

    // 3. Datagram sockets connect to their peers.
    for &s in &socks {
        if s.r#type as i32 != libc::SOCK_DGRAM || s.peer == 0 || mutual(s).is_some() {
            continue;
        }
        let p = by_ino.get(&s.peer).ok_or_else(|| {
            err(
                s,
                format!("connected to {}, which is not in the image", s.peer),
            )
        })?;
        if p.name.is_empty() {
            return Err(err(s, format!("connected to the unnamed socket {}", p.ino)));
        }
        connect(live[&s.id].as_fd(), p)?;
    }

    // 4. Receive queues.
    for &s in &socks {
        let Some(packets) = objs.sk_queues.get(&s.id) else {
            continue;
        };
        let sender = socks
            .iter()
            .find(|q| q.peer == s.ino && q.id != s.id && live.contains_key(&q.id))
            .map(|q| (live[&q.id].as_fd(), Some(*q)));
        if let Some(o) = orphans.get(&s.id) {
            refill(s, o.as_fd(), None, packets)?;
        } else if let Some((fd, q)) = sender {
            refill(s, fd, q, packets)?;
        } else if s.r#type as i32 == libc::SOCK_DGRAM && !s.name.is_empty() {
            let tmp = sys(s, unixsock::socket(libc::SOCK_DGRAM))?;
            in_name_dir(s, || {
                for p in packets {
                    let n = sys(
                        s,
                        unixsock::send_to(tmp.as_fd(), p, libc::MSG_DONTWAIT, &s.name),
                    )?;
                    if n != p.len() {
                        return Err(err(s, format!("sent {n} of {} queued bytes", p.len())));
                    }
                }
                Ok(())
            })?;
        } else {
            return Err(err(s, "queued data but no socket in the image can send it"));
        }
    }
    orphans.clear();

    // 5. Connections not yet accepted.
    for &(client, l) in &inflight {
        connect(live[&client].as_fd(), by_id[&l])?;
    }

    // 6. Shutdown, file permissions, unlinked names, flags.
    for &s in &socks {
        let fd = live[&s.id].as_fd();
        let how = match s.shutdown.unwrap_or(0) {
            1 => Some(libc::SHUT_RD),
            2 => Some(libc::SHUT_WR),
            3 => Some(libc::SHUT_RDWR),
            _ => None,
        };
        if let Some(how) = how {
            if s.peer != 0 || s.state != TCP_ESTABLISHED {
                sys(s, unixsock::shutdown(fd, how))?;
            }
        }
    }
    for id in &bound {
        let s = by_id[id];
        if !is_path(&s.name) {
            continue;
        }
        in_name_dir(s, || {
            let path = path_text(&s.name);
            if let Some(perm) = &s.file_perms {
                std::fs::set_permissions(
                    &path,
                    std::fs::Permissions::from_mode(perm.mode & 0o7777),
                )
                .map_err(|e| err(s, format!("chmod {path}: {e}")))?;
                std::os::unix::fs::lchown(&path, Some(perm.uid), Some(perm.gid))
                    .map_err(|e| err(s, format!("chown {path}: {e}")))?;
            }
            if s.deleted == Some(true) {
                std::fs::remove_file(&path).map_err(|e| err(s, format!("unlink {path}: {e}")))?;
            }
            Ok(())
        })?;
    }
    for s in socks {
        let fd = live
            .remove(&s.id)
            .ok_or_else(|| err(s, "was not created"))?;
        set_params(fd.as_fd(), s.flags, &s.fown)?;
        made.put(s.id, fd)?;
    }
    Ok(())
}

/// Sends the queued `packets` of `s` from `sender`, its peer, in order. The sender's
/// send buffer is raised for the refill so the whole queue fits, then set back.
fn refill(
    s: &pb::UnixSkEntry,
    sender: BorrowedFd<'_>,
    sender_entry: Option<&pb::UnixSkEntry>,
    packets: &[Vec<u8>],
) -> ChildResult<()> {
    let total: usize = packets.iter().map(|p| p.len() + 1024).sum();
    let force = |v: usize| {
        sys(
            s,
            unixsock::set_int_opt(
                sender,
                libc::SOL_SOCKET,
                libc::SO_SNDBUFFORCE,
                v.min(i32::MAX as usize) as i32,
            ),
        )
    };
    force(total.max(64 << 10))?;
    for p in packets {
        let mut off = 0;
        while off < p.len() {
            let n = sys(
                s,
                unixsock::send(sender, &p[off..], libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL),
            )?;
            if n == 0 {
                return Err(err(s, "the queue refill made no progress"));
            }
            if s.r#type as i32 != libc::SOCK_STREAM && n != p.len() {
                return Err(err(s, format!("sent {n} of a {}-byte message", p.len())));
            }
            off += n;
        }
    }
    let restore_to = sender_entry.map_or(total, |q| q.opts.so_sndbuf as usize / 2);
    force(restore_to)?;
    Ok(())
}
