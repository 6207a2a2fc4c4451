//! A client of `stasis swrk`, as go-criu and runc are: a `SOCK_SEQPACKET` socketpair whose
//! server end the child inherits by number (`stasis swrk <fd>`), one message per packet.

#![allow(dead_code)]

use prost::Message;
use rustix::net::{AddressFamily, RecvFlags, SendFlags, SocketFlags, SocketType};
use stasis_images::pb::rpc::{CriuReq, CriuResp};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// How long any read from stasis or wait for it may take.
pub const TIMEOUT: Duration = Duration::from_secs(30);

/// In the child, between fork and exec: lets `fd` through exec (only this child gets it,
/// unlike clearing close-on-exec in the parent, which races with other tests' spawns).
fn inherit(fd: i32) -> std::io::Result<()> {
    // SAFETY: fcntl(F_SETFD) takes plain integers and touches no memory.
    if unsafe { libc::fcntl(fd, libc::F_SETFD, 0) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

pub fn stasis_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_stasis"))
}

/// One `stasis swrk` child and the client end of its socket.
pub struct Session {
    pub child: Child,
    sock: Option<OwnedFd>,
    stderr: PathBuf,
}

/// A socketpair whose first end is close-on-exec (ours) and second is not (the child's).
pub fn seqpacket_pair() -> (OwnedFd, OwnedFd) {
    let (ours, theirs) = rustix::net::socketpair(
        AddressFamily::UNIX,
        SocketType::SEQPACKET,
        SocketFlags::CLOEXEC,
        None,
    )
    .expect("socketpair");
    (ours, theirs)
}

impl Session {
    /// Starts `stasis swrk <fd>` with the server end of a fresh socketpair.
    pub fn start() -> Session {
        let (ours, theirs) = seqpacket_pair();
        Session::start_with(ours, theirs, |_| {})
    }

    /// Starts `stasis swrk <number of theirs>`; `theirs` is passed on and closed here.
    pub fn start_with(ours: OwnedFd, theirs: OwnedFd, tweak: impl FnOnce(&mut Command)) -> Session {
        let stderr = std::env::temp_dir().join(format!(
            "stasis-swrk-test-{}-{}.err",
            std::process::id(),
            theirs.as_raw_fd()
        ));
        let fd = theirs.as_raw_fd();
        let mut cmd = Command::new(stasis_bin());
        cmd.arg("swrk")
            .arg(fd.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr).expect("stderr file"));
        tweak(&mut cmd);
        // SAFETY: between fork and exec the closure only calls fcntl(2), which is
        // async-signal-safe, on a descriptor the child inherited from us.
        unsafe {
            cmd.pre_exec(move || inherit(fd));
        }
        let child = cmd.spawn().expect("spawn stasis swrk");
        drop(theirs);
        rustix::net::sockopt::set_socket_timeout(
            &ours,
            rustix::net::sockopt::Timeout::Recv,
            Some(TIMEOUT),
        )
        .expect("SO_RCVTIMEO");
        Session {
            child,
            sock: Some(ours),
            stderr,
        }
    }

    /// Our end of the socket.
    pub fn sock(&self) -> &OwnedFd {
        self.sock
            .as_ref()
            .expect("the socket is open until finish()")
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn send_raw(&self, bytes: &[u8]) {
        rustix::net::send(self.sock(), bytes, SendFlags::NOSIGNAL).expect("send to stasis");
    }

    pub fn send(&self, req: &CriuReq) {
        self.send_raw(&req.encode_to_vec());
    }

    /// Receives one response, checking it fits go-criu's 8 KiB buffer.
    pub fn recv(&self) -> CriuResp {
        let bytes = self.recv_raw();
        assert!(
            !bytes.is_empty(),
            "stasis closed the socket instead of answering"
        );
        assert!(
            bytes.len() < 8192,
            "a {}-byte response overflows go-criu",
            bytes.len()
        );
        CriuResp::decode(&bytes[..]).expect("the response decodes")
    }

    /// Receives one packet; empty when stasis has closed its end.
    pub fn recv_raw(&self) -> Vec<u8> {
        let mut buf = vec![0u8; 65536];
        let (_, n) = rustix::net::recv(self.sock(), &mut buf[..], RecvFlags::empty())
            .unwrap_or_else(|e| panic!("no answer from stasis within {TIMEOUT:?}: {e}"));
        buf.truncate(n);
        buf
    }

    /// Sends `req` and returns the answer.
    pub fn ask(&self, req: &CriuReq) -> CriuResp {
        self.send(req);
        self.recv()
    }

    /// Closes our end and waits for stasis to exit.
    pub fn finish(mut self) -> (ExitStatus, String) {
        drop(self.sock.take());
        let status = self.wait_exit("after the client closed its end");
        let err = std::fs::read_to_string(&self.stderr).unwrap_or_default();
        (status, err)
    }

    fn wait_exit(&mut self, when: &str) -> ExitStatus {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if let Some(st) = self.child.try_wait().expect("wait for stasis") {
                return st;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!("stasis swrk did not exit within {TIMEOUT:?} {when}");
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Waits for stasis to exit without closing our end first (it must exit by itself
    /// after its final response).
    pub fn exits_by_itself(mut self) -> ExitStatus {
        self.wait_exit("after its final response")
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        let _ = std::fs::remove_file(&self.stderr);
    }
}
