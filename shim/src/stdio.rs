//! A container process's stdio as containerd hands it over: paths of fifos it created (or
//! `file://` log paths), and for a terminal a pty whose master runc sends to a console
//! socket.
//!
//! A process without a terminal gets pipes, as from containerd's Go shim: the shim copies
//! its stdout and stderr pipes into containerd's fifos (opened read-write, so the open
//! never blocks waiting for a reader and nothing dies of SIGPIPE when `ctr` goes away) and
//! feeds its stdin pipe from the stdin fifo, so that `CloseIO` can give it its EOF. Pipes,
//! not the fifos themselves, because a checkpoint records what the process's descriptors
//! are: runc hands a restored container new pipes in place of the dumped ones
//! (`inherit_fd`), while a fifo would have to be reopened by a host path that no longer
//! exists (ctr's fifo directory is gone) and is not in the container's root anyway.

use std::fs::{File, OpenOptions};
use std::io::{IoSliceMut, Read, Write};
use std::mem::MaybeUninit;
use std::os::fd::OwnedFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustix::net::{recvmsg, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags};

use crate::runtime::ChildStdio;
use crate::ShimError;

/// Where containerd wants a process's stdio.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StdioPaths {
    pub stdin: String,
    pub stdout: String,
    pub stderr: String,
    pub terminal: bool,
}

/// The shim's ends of a process's stdio.
#[derive(Default)]
pub struct ProcessIo {
    /// The pipe feeding the process's stdin (taken away by `CloseIO`).
    stdin: Arc<Mutex<Option<File>>>,
    /// The pty master of a terminal process.
    console: Option<Arc<OwnedFd>>,
}

impl ProcessIo {
    /// `CloseIO`: the process reads EOF on stdin.
    pub fn close_stdin(&self) {
        self.stdin.lock().unwrap_or_else(|p| p.into_inner()).take();
    }

    /// `ResizePty`.
    pub fn resize(&self, width: u32, height: u32) -> Result<(), ShimError> {
        let Some(master) = &self.console else {
            return Err(ShimError::FailedPrecondition(
                "the process has no terminal".into(),
            ));
        };
        let size = rustix::termios::Winsize {
            ws_row: height.min(u16::MAX as u32) as u16,
            ws_col: width.min(u16::MAX as u32) as u16,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        rustix::termios::tcsetwinsize(master.as_ref(), size)
            .map_err(|e| ShimError::io("resize the pty", e.into()))
    }
}

fn open_output(path: &str) -> Result<Option<OwnedFd>, ShimError> {
    if path.is_empty() {
        return Ok(None);
    }
    if let Some(file) = path.strip_prefix("file://") {
        let f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(file)
            .map_err(|e| ShimError::io(format!("open log file {file}"), e))?;
        return Ok(Some(f.into()));
    }
    if path.starts_with("binary://") {
        return Err(ShimError::Unimplemented(format!(
            "a logging binary ({path})"
        )));
    }
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| ShimError::io(format!("open fifo {path}"), e))?;
    Ok(Some(f.into()))
}

fn spawn_copy(name: &str, f: impl FnOnce() + Send + 'static) {
    if let Err(e) = std::thread::Builder::new().name(name.into()).spawn(f) {
        log::error!("start {name}: {e}");
    }
}

/// Copies from the fifo at `path` into `to` until EOF or until `to` is taken away.
fn feed_stdin(path: String, to: Arc<Mutex<Option<File>>>) {
    spawn_copy("stdin", move || {
        let Ok(mut from) = File::open(&path) else {
            return;
        };
        let mut buf = [0u8; 32 * 1024];
        loop {
            let n = match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let mut guard = to.lock().unwrap_or_else(|p| p.into_inner());
            let Some(w) = guard.as_mut() else { return };
            if w.write_all(&buf[..n]).is_err() {
                break;
            }
        }
        to.lock().unwrap_or_else(|p| p.into_inner()).take();
    });
}

/// A pipe whose ends are closed in every child the shim spawns (the child's own end is
/// dup'ed onto its stdio, which clears the flag there).
fn pipe() -> Result<(OwnedFd, OwnedFd), ShimError> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| ShimError::io("pipe", e.into()))
}

/// A pipe for the process's stdout or stderr, copied by the shim into `path`'s fifo or
/// file; None (the process gets /dev/null) when containerd gave no path.
fn output_pipe(name: &str, path: &str) -> Result<Option<OwnedFd>, ShimError> {
    let Some(out) = open_output(path)? else {
        return Ok(None);
    };
    let (r, w) = pipe()?;
    spawn_copy(name, move || {
        let (mut from, mut to) = (File::from(r), File::from(out));
        let _ = std::io::copy(&mut from, &mut to);
    });
    Ok(Some(w))
}

/// Opens the stdio of a process that has no terminal.
pub fn open_pipes(paths: &StdioPaths) -> Result<(ChildStdio, ProcessIo), ShimError> {
    let io = ProcessIo::default();
    let mut child = ChildStdio {
        stdout: output_pipe("stdout", &paths.stdout)?,
        stderr: output_pipe("stderr", &paths.stderr)?,
        ..ChildStdio::default()
    };
    if !paths.stdin.is_empty() {
        let (r, w) = pipe()?;
        child.stdin = Some(r);
        *io.stdin.lock().unwrap_or_else(|p| p.into_inner()) = Some(File::from(w));
        feed_stdin(paths.stdin.clone(), Arc::clone(&io.stdin));
    }
    Ok((child, io))
}

/// The socket runc sends a terminal process's pty master to (`--console-socket`).
pub struct ConsoleSocket {
    _dir: tempfile::TempDir,
    path: PathBuf,
    listener: UnixListener,
}

impl ConsoleSocket {
    pub fn new() -> Result<ConsoleSocket, ShimError> {
        let dir = tempfile::Builder::new()
            .prefix("stasis-pty")
            .tempdir()
            .map_err(|e| ShimError::io("create the console socket directory", e))?;
        let path = dir.path().join("pty.sock");
        let listener =
            UnixListener::bind(&path).map_err(|e| ShimError::io("bind the console socket", e))?;
        Ok(ConsoleSocket {
            _dir: dir,
            path,
            listener,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The pty master runc sent (runc sends it before it exits, so it waits in the backlog).
    pub fn receive(&self) -> Result<OwnedFd, ShimError> {
        self.listener
            .set_nonblocking(true)
            .map_err(|e| ShimError::io("console socket", e))?;
        let deadline = Instant::now() + Duration::from_secs(10);
        let stream: UnixStream = loop {
            match self.listener.accept() {
                Ok((s, _)) => break s,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if Instant::now() > deadline {
                        return Err(ShimError::io("no pty master on the console socket", e));
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => return Err(ShimError::io("accept on the console socket", e)),
            }
        };
        stream
            .set_nonblocking(false)
            .map_err(|e| ShimError::io("console socket", e))?;
        let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(1))];
        let mut control = RecvAncillaryBuffer::new(&mut space);
        let mut name = [0u8; 4096];
        recvmsg(
            &stream,
            &mut [IoSliceMut::new(&mut name)],
            &mut control,
            RecvFlags::empty(),
        )
        .map_err(|e| ShimError::io("receive the pty master", e.into()))?;
        for msg in control.drain() {
            if let RecvAncillaryMessage::ScmRights(mut fds) = msg {
                if let Some(fd) = fds.next() {
                    return Ok(fd);
                }
            }
        }
        Err(ShimError::io(
            "receive the pty master",
            std::io::Error::other("runc sent no file descriptor"),
        ))
    }
}

/// Connects a received pty master to containerd's fifos.
pub fn attach_console(master: OwnedFd, paths: &StdioPaths) -> Result<ProcessIo, ShimError> {
    let master = Arc::new(master);
    let reader = File::from(
        master
            .try_clone()
            .map_err(|e| ShimError::io("dup the pty master", e))?,
    );
    if !paths.stdout.is_empty() {
        let out = open_output(&paths.stdout)?.map(File::from);
        spawn_copy("pty-out", move || {
            let (mut reader, Some(mut out)) = (reader, out) else {
                return;
            };
            let _ = std::io::copy(&mut reader, &mut out);
        });
    }
    let io = ProcessIo {
        stdin: Arc::new(Mutex::new(None)),
        console: Some(Arc::clone(&master)),
    };
    if !paths.stdin.is_empty() {
        let writer = File::from(
            master
                .try_clone()
                .map_err(|e| ShimError::io("dup the pty master", e))?,
        );
        *io.stdin.lock().unwrap_or_else(|p| p.into_inner()) = Some(writer);
        feed_stdin(paths.stdin.clone(), Arc::clone(&io.stdin));
    }
    Ok(io)
}
