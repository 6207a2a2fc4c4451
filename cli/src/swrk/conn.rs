//! The RPC socket: exactly one `criu_req` or `criu_resp` per `SOCK_SEQPACKET` packet, no
//! length prefix, no magic. Every read is bounded: a packet's length is peeked first, and
//! one larger than [`MAX_REQUEST`] is discarded and answered with an error instead of
//! being allocated.

use super::error::RpcError;
use super::wire;
use prost::Message;
use rustix::net::{RecvFlags, SendFlags, SocketType};
use stasis_images::pb::rpc::{CriuReq, CriuResp};
use std::os::fd::{AsFd, OwnedFd};

/// The largest request stasis reads. runc's largest captured request is under 3 KiB,
/// and a few hundred bytes per bind mount keep even a large pod far below this; CRIU
/// itself has no limit but the sender's socket buffer (`net.core.wmem_default`, about
/// 208 KiB, or up to `wmem_max` with `SO_SNDBUF`).
pub const MAX_REQUEST: usize = 1024 * 1024;

/// go-criu reads every response into an 8 KiB buffer; a response must stay below that.
pub const MAX_RESPONSE: usize = 8 * 1024;

/// What one receive brought.
#[derive(Debug)]
pub enum Incoming {
    Request(Box<CriuReq>),
    /// The client closed its end (a packet of length 0, as CRIU reads it).
    Closed,
    /// A packet that is not a usable request; the client gets an error response.
    Bad(RpcError),
}

/// The server end of the socketpair, and who holds the other end.
#[derive(Debug)]
pub struct Conn {
    sock: OwnedFd,
    peer: Option<i32>,
}

impl Conn {
    /// Checks that `sock` is a `SOCK_SEQPACKET` socket and learns its peer's pid
    /// (`SO_PEERCRED`: for a socketpair, the process that created it, i.e. the client,
    /// whose fd numbers the request names).
    pub fn new(sock: OwnedFd) -> Result<Conn, String> {
        let ty = rustix::net::sockopt::socket_type(&sock)
            .map_err(|e| format!("it is not a socket: {e}"))?;
        if ty != SocketType::SEQPACKET {
            return Err(format!(
                "it is a {ty:?} socket; the RPC needs SOCK_SEQPACKET (one message per packet)"
            ));
        }
        let peer = stasis_sys::fd::peer_pid(sock.as_fd()).map_err(|e| e.to_string())?;
        Ok(Conn { sock, peer })
    }

    /// The pid of the client; `None` if it is not visible in stasis's pid namespace.
    pub fn peer(&self) -> Option<i32> {
        self.peer
    }

    /// Receives one packet and decodes it.
    pub fn recv(&self) -> Incoming {
        let len = match self.recv_raw(&mut [], RecvFlags::PEEK | RecvFlags::TRUNC) {
            Ok(0) => return Incoming::Closed,
            Ok(n) => n,
            Err(e) => return Incoming::Bad(RpcError::Socket(e.into())),
        };
        if len > MAX_REQUEST {
            // Consume the packet without reading it.
            if let Err(e) = self.recv_raw(&mut [], RecvFlags::TRUNC) {
                return Incoming::Bad(RpcError::Socket(e.into()));
            }
            return Incoming::Bad(RpcError::TooLarge {
                len,
                max: MAX_REQUEST,
            });
        }
        let mut buf = vec![0u8; len];
        match self.recv_raw(&mut buf, RecvFlags::empty()) {
            Ok(0) => Incoming::Closed,
            Ok(n) => {
                buf.truncate(n.min(len));
                match decode(&buf) {
                    Ok(req) => Incoming::Request(Box::new(req)),
                    Err(e) => Incoming::Bad(e),
                }
            }
            Err(e) => Incoming::Bad(RpcError::Socket(e.into())),
        }
    }

    fn recv_raw(&self, buf: &mut [u8], flags: RecvFlags) -> rustix::io::Result<usize> {
        loop {
            match rustix::net::recv(&self.sock, &mut *buf, flags) {
                Err(rustix::io::Errno::INTR) => continue,
                Ok((_, len)) => return Ok(len),
                Err(e) => return Err(e),
            }
        }
    }

    /// Sends one response in one packet.
    pub fn send(&self, resp: &CriuResp) -> Result<(), RpcError> {
        self.send_carrying(resp, None)
    }

    /// Sends one response in one packet with descriptor `fd` attached (SCM_RIGHTS), as
    /// CRIU sends `orphan-pts-master`.
    pub fn send_with_fd(
        &self,
        resp: &CriuResp,
        fd: std::os::fd::BorrowedFd<'_>,
    ) -> Result<(), RpcError> {
        self.send_carrying(resp, Some(fd))
    }

    fn send_carrying(
        &self,
        resp: &CriuResp,
        fd: Option<std::os::fd::BorrowedFd<'_>>,
    ) -> Result<(), RpcError> {
        use rustix::net::{SendAncillaryBuffer, SendAncillaryMessage};
        let bytes = resp.encode_to_vec();
        debug_assert!(
            bytes.len() < MAX_RESPONSE,
            "response of {} bytes",
            bytes.len()
        );
        let fds: Vec<_> = fd.into_iter().collect();
        let mut space = [std::mem::MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(1))];
        loop {
            let mut control = SendAncillaryBuffer::new(&mut space);
            if !fds.is_empty() && !control.push(SendAncillaryMessage::ScmRights(&fds)) {
                return Err(RpcError::Socket(std::io::Error::other(
                    "no room for the descriptor in the control message",
                )));
            }
            match rustix::net::sendmsg(
                &self.sock,
                &[std::io::IoSlice::new(&bytes)],
                &mut control,
                SendFlags::NOSIGNAL,
            ) {
                Err(rustix::io::Errno::INTR) => continue,
                Ok(_) => return Ok(()),
                Err(e) => return Err(RpcError::Socket(e.into())),
            }
        }
    }

    /// Makes the socket close when stasis execs another program (`exec_cmd`).
    pub fn close_on_exec(&self) {
        let _ = rustix::io::fcntl_setfd(&self.sock, rustix::io::FdFlags::CLOEXEC);
    }
}

/// Decodes one packet into a request, refusing what CRIU's protobuf-c refuses: a wire
/// error, or a `required` field that is missing (prost alone would read it as zero).
pub fn decode(buf: &[u8]) -> Result<CriuReq, RpcError> {
    let malformed = |why: String| RpcError::Malformed {
        len: buf.len(),
        why,
    };
    wire::check_required(buf).map_err(malformed)?;
    CriuReq::decode(buf).map_err(|e| malformed(e.to_string()))
}
