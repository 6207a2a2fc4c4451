//! Unix sockets: a `unix_sk_entry` per socket with what `sock_diag` reports (type,
//! state, name, peer inode, shutdown, backlog) and its options, and its receive queue
//! in `sk-queues.img`, read with `MSG_PEEK` at a moving `SO_PEEK_OFF` so nothing is
//! consumed.
//!
//! Refused, with the socket named: sockets whose peer belongs to no dumped process,
//! queued messages carrying descriptors (SCM_RIGHTS) or sender credentials (a receiver
//! with SO_PASSCRED), in-flight connections with unsent data, and states other than
//! listening, connected and closed.

use super::OpenFd;
use crate::files::FileTable;
use crate::Result;
use stasis_images::pb;
use stasis_sys::unixsock;
use std::os::fd::BorrowedFd;
use std::os::unix::fs::MetadataExt;

const TCP_ESTABLISHED: u32 = 1;
const TCP_CLOSE: u32 = 7;
const TCP_LISTEN: u32 = 10;

/// A dumped socket, for the check that every peer was dumped too.
#[derive(Clone, Debug)]
pub struct Dumped {
    pub pid: i32,
    pub fd: i32,
    pub ino: u32,
    pub peer: u32,
    pub name: Vec<u8>,
    pub listening: bool,
    /// A connected stream or seqpacket socket.
    pub connection: bool,
}

/// Dumps the socket behind `f` as file `id`.
pub fn dump(table: &mut FileTable, f: &OpenFd<'_>, id: u32) -> Result<pb::FdTypes> {
    let local = f.local()?;
    let domain = unixsock::get_int_opt(local, libc::SOL_SOCKET, libc::SO_DOMAIN)?;
    if domain != libc::AF_UNIX {
        return Err(f.unsupported(format!(
            "a socket of address family {domain}; only unix sockets are supported yet"
        )));
    }
    if table.side.unix_diag.is_none() {
        let all = unixsock::unix_diag_all()?;
        table.side.unix_diag = Some(all.into_iter().map(|d| (d.ino, d)).collect());
    }
    let diag = table.side.unix_diag.as_ref().expect("filled above");
    let ino = f.ino32();
    let d = diag
        .get(&ino)
        .cloned()
        .ok_or_else(|| f.unsupported("a unix socket that sock_diag does not report"))?;
    let kind = d.kind as i32;
    if ![libc::SOCK_STREAM, libc::SOCK_DGRAM, libc::SOCK_SEQPACKET].contains(&kind) {
        return Err(f.unsupported(format!("a unix socket of type {kind}")));
    }
    if ![TCP_ESTABLISHED, TCP_CLOSE, TCP_LISTEN].contains(&d.state) {
        return Err(f.unsupported(format!("a unix socket in state {} (connecting?)", d.state)));
    }
    let (rq, wq) = d.rqlen.unwrap_or((0, 0));
    let mut peer = d.peer;
    if d.state == TCP_LISTEN {
        if d.icons.contains(&0) {
            return Err(f.unsupported(
                "a listening socket with a pending connection whose client already closed",
            ));
        }
    } else if peer == 0 && d.state == TCP_ESTABLISHED && kind != libc::SOCK_DGRAM {
        // Connected but not yet accepted: the peer is the listener's pending socket.
        match diag.values().find(|l| l.icons.contains(&ino)) {
            Some(l) if l.state == TCP_LISTEN => {
                if wq != 0 {
                    return Err(f.unsupported(format!(
                        "a connection not yet accepted with {wq} unsent bytes"
                    )));
                }
                peer = l.ino;
            }
            _ if d.shutdown == 3 => {} // its peer closed: only queued data is left
            _ => return Err(f.unsupported("a connected unix socket without a peer")),
        }
    }
    let name = d.name.clone().unwrap_or_default();
    let mut entry = pb::UnixSkEntry {
        id,
        ino,
        r#type: d.kind,
        state: d.state,
        flags: f.flags,
        uflags: 0,
        backlog: if d.state == TCP_LISTEN { wq } else { 0 },
        peer,
        fown: f.fown()?,
        opts: options(local)?,
        name: name.clone(),
        shutdown: Some(i32::from(d.shutdown & 3)),
        ..Default::default()
    };
    if name.first().is_some_and(|&b| b != 0) {
        path_name(f, local, &name, &mut entry)?;
    }
    if rq != 0 && d.state != TCP_LISTEN {
        dump_queue(table, f, local, id, kind, rq)?;
    }
    log::debug!(
        "pid {} fd {}: unix socket {ino} type {kind} state {} peer {peer} name {:?}",
        f.pid,
        f.fd,
        d.state,
        String::from_utf8_lossy(&name)
    );
    table.push(pb::FileEntry {
        r#type: pb::FdTypes::Unixsk as i32,
        id,
        usk: Some(entry),
        ..Default::default()
    });
    table.side.unix_dumped.push(Dumped {
        pid: f.pid,
        fd: f.fd,
        ino,
        peer,
        name,
        listening: d.state == TCP_LISTEN,
        connection: d.state == TCP_ESTABLISHED && kind != libc::SOCK_DGRAM,
    });
    Ok(pb::FdTypes::Unixsk)
}

/// Fills the socket file's permissions, directory (for a relative name) and whether it
/// was unlinked, from the file the bind created.
fn path_name(
    f: &OpenFd<'_>,
    local: BorrowedFd<'_>,
    name: &[u8],
    entry: &mut pb::UnixSkEntry,
) -> Result<()> {
    let file = unixsock::socket_file(local)
        .map_err(|e| f.unsupported(format!("cannot open the socket's file: {e}")))?;
    let proc = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&file));
    let meta = std::fs::metadata(&proc)
        .map_err(|e| f.unsupported(format!("cannot stat the socket's file: {e}")))?;
    let path = std::fs::read_link(&proc)
        .map_err(|e| f.unsupported(format!("cannot read the socket's path: {e}")))?
        .to_string_lossy()
        .into_owned();
    let deleted = path.ends_with(" (deleted)") && meta.nlink() == 0;
    let path = path.strip_suffix(" (deleted)").unwrap_or(&path).to_string();
    let text = String::from_utf8_lossy(name);
    let text = text.trim_end_matches('\0');
    if !text.starts_with('/') {
        let dir = path
            .strip_suffix(text)
            .map(|d| d.trim_end_matches('/'))
            .ok_or_else(|| {
                f.unsupported(format!(
                    "its relative name {text:?} is not the end of its file's path {path:?}"
                ))
            })?;
        entry.name_dir = Some(if dir.is_empty() {
            "/".into()
        } else {
            dir.into()
        });
    }
    entry.file_perms = Some(pb::FilePermsEntry {
        mode: meta.mode(),
        uid: meta.uid(),
        gid: meta.gid(),
    });
    if deleted {
        entry.deleted = Some(true);
    }
    Ok(())
}

/// The socket options CRIU's `sk_opts_entry` carries that a unix socket uses.
fn options(fd: BorrowedFd<'_>) -> Result<pb::SkOptsEntry> {
    let int = |opt| unixsock::get_int_opt(fd, libc::SOL_SOCKET, opt);
    let (snd_sec, snd_usec) = unixsock::get_time_opt(fd, libc::SO_SNDTIMEO)?;
    let (rcv_sec, rcv_usec) = unixsock::get_time_opt(fd, libc::SO_RCVTIMEO)?;
    Ok(pb::SkOptsEntry {
        so_sndbuf: int(libc::SO_SNDBUF)? as u32,
        so_rcvbuf: int(libc::SO_RCVBUF)? as u32,
        so_snd_tmo_sec: snd_sec,
        so_snd_tmo_usec: snd_usec,
        so_rcv_tmo_sec: rcv_sec,
        so_rcv_tmo_usec: rcv_usec,
        so_priority: Some(int(libc::SO_PRIORITY)? as u32),
        so_rcvlowat: Some(int(libc::SO_RCVLOWAT)? as u32),
        so_mark: Some(int(libc::SO_MARK)? as u32),
        so_passcred: Some(int(libc::SO_PASSCRED)? != 0),
        so_passsec: Some(int(libc::SO_PASSSEC)? != 0),
        ..Default::default()
    })
}

/// The peek buffer: streams are read in chunks of this size; a larger datagram grows it.
const PEEK_CHUNK: usize = 256 << 10;

/// Copies the receive queue of the socket into `sk-queues.img` entries for `id`.
fn dump_queue(
    table: &mut FileTable,
    f: &OpenFd<'_>,
    local: BorrowedFd<'_>,
    id: u32,
    kind: i32,
    rq: u32,
) -> Result<()> {
    let orig = unixsock::get_int_opt(local, libc::SOL_SOCKET, libc::SO_PEEK_OFF)?;
    unixsock::set_int_opt(local, libc::SOL_SOCKET, libc::SO_PEEK_OFF, 0)?;
    let result = peek_all(f, local, kind);
    // The task's own peek offset goes back whatever happened.
    unixsock::set_int_opt(local, libc::SOL_SOCKET, libc::SO_PEEK_OFF, orig)?;
    let packets = result?;
    let total: usize = packets.iter().map(Vec::len).sum();
    // For streams and seqpacket sock_diag counts every queued byte; for datagrams only
    // the first message.
    let expected = if kind == libc::SOCK_DGRAM {
        packets.first().map_or(0, Vec::len)
    } else {
        total
    };
    if expected != rq as usize {
        return Err(f.unsupported(format!(
            "peeked {expected} bytes but {rq} are queued; the queue changed while frozen?"
        )));
    }
    log::debug!(
        "pid {} fd {}: {} queued messages, {total} bytes",
        f.pid,
        f.fd,
        packets.len()
    );
    for data in packets {
        table.side.sk_queues.push((
            pb::SkPacketEntry {
                id_for: id,
                length: data.len() as u32,
                scm: Vec::new(),
            },
            data,
        ));
    }
    Ok(())
}

fn peek_all(f: &OpenFd<'_>, local: BorrowedFd<'_>, kind: i32) -> Result<Vec<Vec<u8>>> {
    let stream = kind == libc::SOCK_STREAM;
    let mut buf = vec![0u8; PEEK_CHUNK];
    let mut out = Vec::new();
    let mut offset = 0usize;
    while let Some(p) = unixsock::peek(local, &mut buf, !stream)? {
        if !p.rights.is_empty() {
            return Err(f.unsupported(format!(
                "its queue holds a message carrying {} descriptors (SCM_RIGHTS); not supported yet",
                p.rights.len()
            )));
        }
        if let Some(&(level, kind)) = p.other_control.first() {
            let what = if level == libc::SOL_SOCKET && kind == libc::SCM_CREDENTIALS {
                "sender credentials (the socket has SO_PASSCRED)".to_string()
            } else {
                format!("control data (level {level}, type {kind})")
            };
            return Err(f.unsupported(format!(
                "its queue holds a message with {what}, which stasis cannot queue again"
            )));
        }
        if p.control_truncated {
            return Err(f.unsupported("a queued message with more control data than stasis reads"));
        }
        if p.full_len > p.len {
            // The message did not fit: peek it again, whole, from the same offset.
            if p.full_len > MAX_PACKET {
                return Err(f.unsupported(format!("a queued message of {} bytes", p.full_len)));
            }
            buf.resize(p.full_len, 0);
            unixsock::set_int_opt(local, libc::SOL_SOCKET, libc::SO_PEEK_OFF, offset as i32)?;
            continue;
        }
        if p.len == 0 {
            if stream {
                break;
            }
            return Err(f.unsupported("a zero-length datagram is queued; not supported"));
        }
        offset += p.len;
        out.push(buf[..p.len].to_vec());
    }
    Ok(out)
}

/// The largest queued message stasis reads (a unix datagram is bounded by its sender's
/// send buffer, far below this).
const MAX_PACKET: usize = 64 << 20;

/// Refuses sockets whose peer belongs to no dumped process, and accepted connections
/// whose listening socket was closed: a connection is made again through its listener,
/// and without it the accepted end's name would be lost.
pub fn check_peers(table: &FileTable) -> Result<()> {
    let dumped = &table.side.unix_dumped;
    let refuse = |s: &Dumped, what: String| crate::DumpError::Unsupported {
        pid: s.pid,
        what: format!("fd {} (socket:[{}]) {what}", s.fd, s.ino),
    };
    for s in dumped {
        if s.peer != 0 && !dumped.iter().any(|p| p.ino == s.peer) {
            return Err(refuse(
                s,
                format!(
                    "is connected to unix socket {} which no dumped process holds (an external socket; not supported)",
                    s.peer
                ),
            ));
        }
        let listener_named = |name: &[u8]| dumped.iter().any(|l| l.listening && l.name == name);
        let peer = dumped.iter().find(|p| p.ino == s.peer);
        // The accepted end carries its listener's name; a client may have bound its own.
        let restorable = listener_named(&s.name)
            || peer.is_some_and(|p| {
                p.listening || (!p.name.is_empty() && p.name != s.name && listener_named(&p.name))
            });
        if s.connection && !s.name.is_empty() && !restorable {
            let peer_named_same = peer.is_some_and(|p| p.name == s.name);
            return Err(refuse(
                s,
                if peer_named_same {
                    "is a connection both of whose ends carry the same name; not supported".into()
                } else {
                    format!(
                        "is a connection named {:?} whose listening socket is not dumped (closed?); its name could not be restored",
                        String::from_utf8_lossy(&s.name).trim_end_matches('\0')
                    )
                },
            ));
        }
    }
    Ok(())
}
