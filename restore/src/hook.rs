//! Where a restore stops to tell its caller, who may act on it or stop the restore. The
//! RPC server (`stasis swrk`) turns these stages into CRIU's notifications
//! (`post-restore` with the pid, then `pre-resume`), so runc can adopt the restored task
//! before it runs, as it does with CRIU.

use std::fmt;
use std::sync::Arc;

/// A point of the restore at which [`RestoreHook`] is called.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RestoreStage {
    /// The root exists in its new namespaces (host PID `pid`), which it has rebuilt from
    /// inside; nothing of the tree's own runs yet. CRIU's `setup-namespaces`.
    NamespacesReady { pid: i32 },
    /// Every task of the tree is rebuilt and still stopped: none has run a single
    /// instruction of its own yet. `pid` is the root's (on the host). An error from the
    /// hook here kills the tree.
    Restored { pid: i32 },
    /// A pty the container's console was is made anew (`/dev/pts/index` in its devpts);
    /// `fd` is its master, open in stasis for the duration of the call: the caller takes
    /// its own copy (CRIU's `orphan-pts-master`, which runc sends to its console socket).
    OrphanPtsMaster { fd: std::os::fd::RawFd, index: u32 },
}

impl fmt::Display for RestoreStage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RestoreStage::Restored { pid } => write!(f, "once pid {pid} was rebuilt"),
            RestoreStage::NamespacesReady { pid } => {
                write!(f, "once the namespaces of pid {pid} were ready")
            }
            RestoreStage::OrphanPtsMaster { index, .. } => {
                write!(f, "once the master of /dev/pts/{index} was made")
            }
        }
    }
}

type StageFn = dyn Fn(RestoreStage) -> Result<(), String> + Send + Sync;

/// The caller's callback at each [`RestoreStage`]; `Err(reason)` stops the restore. The
/// default calls nothing.
#[derive(Clone, Default)]
pub struct RestoreHook(Option<Arc<StageFn>>);

impl RestoreHook {
    /// A hook that calls `f` at every stage.
    pub fn new(f: impl Fn(RestoreStage) -> Result<(), String> + Send + Sync + 'static) -> Self {
        RestoreHook(Some(Arc::new(f)))
    }

    /// Calls the hook, if there is one.
    pub(crate) fn call(&self, stage: RestoreStage) -> Result<(), String> {
        match &self.0 {
            Some(f) => f(stage),
            None => Ok(()),
        }
    }
}

impl fmt::Debug for RestoreHook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_some() {
            "RestoreHook(set)"
        } else {
            "RestoreHook(none)"
        })
    }
}
