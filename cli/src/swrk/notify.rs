//! CRIU's action-script notifications over RPC. With `notify_scripts`, each one is a
//! `criu_resp{type: NOTIFY, notify{script, pid?}}` that the client must answer with
//! `criu_req{type: NOTIFY, notify_success: true}` before stasis goes on; any other
//! answer stops the operation, as it stops CRIU.
//!
//! The scripts stasis sends, in CRIU 4.2's order (captured from runc, podman, containerd
//! and docker):
//!
//! * dump: `pre-dump` → `query-ext-files` → `post-dump` (images written, task still
//!   frozen) → DUMP response;
//! * restore: `pre-restore` → `post-restore` (pid; rebuilt, not yet running) →
//!   `pre-resume` → `post-resume` → RESTORE response.
//!
//! `network-lock`/`network-unlock`, `setup-namespaces` and `post-setup-namespaces` are
//! sent only for a task with namespaces of its own, and `orphan-pts-master` only for a
//! container's console pty (`orphan_pts_master`), with the new master attached as
//! SCM_RIGHTS, after `post-setup-namespaces`.

use super::conn::{Conn, Incoming};
use super::error::RpcError;
use super::response;
use stasis_images::pb::rpc::{CriuOpts, CriuReqType};
use std::sync::{Arc, Mutex};

/// A notification script CRIU sends over RPC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Script {
    PreDump,
    NetworkLock,
    QueryExtFiles,
    PostDump,
    PreRestore,
    SetupNamespaces,
    PostSetupNamespaces,
    PostRestore,
    NetworkUnlock,
    PreResume,
    PostResume,
    OrphanPtsMaster,
}

impl Script {
    /// The name on the wire (CRIU's `action-scripts.c`).
    pub fn name(self) -> &'static str {
        match self {
            Script::PreDump => "pre-dump",
            Script::NetworkLock => "network-lock",
            Script::QueryExtFiles => "query-ext-files",
            Script::SetupNamespaces => "setup-namespaces",
            Script::PostSetupNamespaces => "post-setup-namespaces",
            Script::NetworkUnlock => "network-unlock",
            Script::PostDump => "post-dump",
            Script::PreRestore => "pre-restore",
            Script::PostRestore => "post-restore",
            Script::PreResume => "pre-resume",
            Script::PostResume => "post-resume",
            Script::OrphanPtsMaster => "orphan-pts-master",
        }
    }
}

/// Sends notifications when the request asked for them (`notify_scripts`), and keeps the
/// first failure for the final response (the engine only sees a message).
#[derive(Clone, Debug)]
pub struct Notifier {
    conn: Arc<Conn>,
    enabled: bool,
    failure: Arc<Mutex<Option<RpcError>>>,
}

impl Notifier {
    pub fn new(conn: Arc<Conn>, enabled: bool) -> Notifier {
        Notifier {
            conn,
            enabled,
            failure: Arc::new(Mutex::new(None)),
        }
    }

    /// Sends `script` (with `pid` for post-restore) and waits for the client's answer.
    /// Returns the `opts` of the answer (a `query-ext-files` answer may carry
    /// `external` entries).
    pub fn send(&self, script: Script, pid: Option<i32>) -> Result<Option<CriuOpts>, RpcError> {
        self.send_carrying(script, pid, None)
    }

    /// [`Notifier::send`] with descriptor `fd` attached (SCM_RIGHTS).
    fn send_carrying(
        &self,
        script: Script,
        pid: Option<i32>,
        fd: Option<std::os::fd::BorrowedFd<'_>>,
    ) -> Result<Option<CriuOpts>, RpcError> {
        if !self.enabled {
            return Ok(None);
        }
        log::debug!("notify {} (pid {pid:?})", script.name());
        let name = script.name();
        let resp = response::notify(name, pid);
        let sent = match fd {
            Some(fd) => self.conn.send_with_fd(&resp, fd),
            None => self.conn.send(&resp),
        };
        sent.and_then(|()| match self.conn.recv() {
            Incoming::Request(ack) if ack.r#type == CriuReqType::Notify as i32 => {
                if ack.notify_success == Some(true) {
                    Ok(ack.opts)
                } else {
                    Err(RpcError::NotifyRefused(name))
                }
            }
            Incoming::Request(other) => Err(RpcError::Notify {
                script: name,
                why: format!(
                    "the client answered with a request of type {} instead of NOTIFY",
                    type_name(other.r#type)
                ),
            }),
            Incoming::Closed => Err(RpcError::Notify {
                script: name,
                why: "the client closed the connection".into(),
            }),
            Incoming::Bad(e) => Err(RpcError::Notify {
                script: name,
                why: e.to_string(),
            }),
        })
    }

    /// For an engine hook: sends the scripts in order; on failure keeps the error for
    /// [`Notifier::take_failure`] and gives the engine its message.
    pub fn hook(&self, scripts: &[(Script, Option<i32>)]) -> Result<(), String> {
        for &(script, pid) in scripts {
            self.send(script, pid).map_err(|e| self.keep_failure(e))?;
        }
        Ok(())
    }

    /// Keeps the first failure for the final response; the engine gets its message.
    fn keep_failure(&self, e: RpcError) -> String {
        let msg = e.to_string();
        if let Ok(mut slot) = self.failure.lock() {
            slot.get_or_insert(e);
        }
        msg
    }

    /// For an engine hook: sends `script` with descriptor `fd` (open in stasis for the
    /// duration of the call) attached. Without `notify_scripts` nobody could receive it:
    /// that is an error, as it is for CRIU (whose only receiver is the RPC client).
    pub fn hook_with_fd(&self, script: Script, fd: std::os::fd::RawFd) -> Result<(), String> {
        if !self.enabled {
            return Err(format!(
                "{} needs notify_scripts: the client is its only receiver",
                script.name()
            ));
        }
        // A copy to borrow safely: the engine's number is open only during the call.
        let copy = stasis_sys::fd::dup_number(fd, 0).map_err(|e| e.to_string())?;
        self.send_carrying(script, None, Some(std::os::fd::AsFd::as_fd(&copy)))
            .map(drop)
            .map_err(|e| self.keep_failure(e))
    }

    /// The notification failure that stopped the engine, if one did.
    pub fn take_failure(&self) -> Option<RpcError> {
        self.failure.lock().ok().and_then(|mut s| s.take())
    }
}

/// The name of a request type number, for messages.
pub fn type_name(ty: i32) -> String {
    CriuReqType::try_from(ty)
        .map(|t| t.as_str_name().to_string())
        .unwrap_or_else(|_| ty.to_string())
}
