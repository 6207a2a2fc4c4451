//! One process of a task — the container's init or an exec — and its lifecycle:
//! created → running ⇄ paused → stopped, with an exit status once stopped.

use std::sync::{Condvar, Mutex, MutexGuard};

use containerd_shim::api::Status;
use containerd_shim::protos::protobuf::well_known_types::timestamp::Timestamp;

use crate::stdio::{ProcessIo, StdioPaths};

/// What is known about a process at one moment.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub pid: i32,
    pub status: Status,
    pub exit_status: u32,
    pub exited_at: Option<Timestamp>,
}

struct State {
    snap: Snapshot,
    io: Option<ProcessIo>,
}

/// An init or exec process.
pub struct Process {
    /// The exec id, empty for the init.
    pub exec_id: String,
    pub stdio: StdioPaths,
    /// For an exec: the OCI process spec (JSON) containerd sent.
    pub spec: Vec<u8>,
    state: Mutex<State>,
    exited: Condvar,
}

fn now() -> Timestamp {
    containerd_shim::util::timestamp().unwrap_or_default()
}

impl Process {
    pub fn new(exec_id: String, stdio: StdioPaths, spec: Vec<u8>) -> Process {
        Process {
            exec_id,
            stdio,
            spec,
            state: Mutex::new(State {
                snap: Snapshot {
                    pid: 0,
                    status: Status::CREATED,
                    exit_status: 0,
                    exited_at: None,
                },
                io: None,
            }),
            exited: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn snapshot(&self) -> Snapshot {
        self.lock().snap.clone()
    }

    pub fn pid(&self) -> i32 {
        self.lock().snap.pid
    }

    pub fn status(&self) -> Status {
        self.lock().snap.status
    }

    /// The pid is known (created, or restored); the process is not running yet.
    pub fn set_created(&self, pid: i32, io: ProcessIo) {
        let mut s = self.lock();
        s.snap.pid = pid;
        s.io = Some(io);
    }

    /// Running, unless it already exited.
    pub fn set_running(&self, pid: i32) {
        let mut s = self.lock();
        s.snap.pid = pid;
        if s.snap.status != Status::STOPPED {
            s.snap.status = Status::RUNNING;
        }
    }

    pub fn set_io(&self, io: ProcessIo) {
        self.lock().io = Some(io);
    }

    pub fn set_paused(&self, paused: bool) {
        let mut s = self.lock();
        if s.snap.status != Status::STOPPED {
            s.snap.status = if paused {
                Status::PAUSED
            } else {
                Status::RUNNING
            };
        }
    }

    /// Records the exit. Returns the snapshot the first time only.
    pub fn set_exited(&self, status: i32) -> Option<Snapshot> {
        let mut s = self.lock();
        if s.snap.status == Status::STOPPED {
            return None;
        }
        s.snap.status = Status::STOPPED;
        s.snap.exit_status = status as u32;
        s.snap.exited_at = Some(now());
        self.exited.notify_all();
        Some(s.snap.clone())
    }

    /// Blocks until the process has exited.
    pub fn wait(&self) -> Snapshot {
        let mut s = self.lock();
        while s.snap.status != Status::STOPPED {
            s = self.exited.wait(s).unwrap_or_else(|p| p.into_inner());
        }
        s.snap.clone()
    }

    /// Runs `f` on the process's stdio, if it has any yet.
    pub fn with_io<T>(&self, f: impl FnOnce(&ProcessIo) -> T) -> Option<T> {
        self.lock().io.as_ref().map(f)
    }
}
