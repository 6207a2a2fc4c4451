//! Where a dump stops to tell its caller, who may act on it or stop the dump. The RPC
//! server (`stasis swrk`) turns these stages into CRIU's notifications (`post-dump`), so
//! runc and the others see them at the moment CRIU would send them.

use std::fmt;
use std::sync::Arc;

/// A point of the dump at which [`DumpHook`] is called.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DumpStage {
    /// Every image is written and the task is still frozen: it has been neither killed
    /// nor resumed. An error from the hook here leaves it running, as a failed dump does.
    ImagesWritten,
}

impl fmt::Display for DumpStage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DumpStage::ImagesWritten => f.write_str("after the images were written"),
        }
    }
}

type StageFn = dyn Fn(DumpStage) -> Result<(), String> + Send + Sync;

/// The caller's callback at each [`DumpStage`]; `Err(reason)` stops the dump. The
/// default calls nothing.
#[derive(Clone, Default)]
pub struct DumpHook(Option<Arc<StageFn>>);

impl DumpHook {
    /// A hook that calls `f` at every stage.
    pub fn new(f: impl Fn(DumpStage) -> Result<(), String> + Send + Sync + 'static) -> Self {
        DumpHook(Some(Arc::new(f)))
    }

    /// Calls the hook, if there is one.
    pub(crate) fn call(&self, stage: DumpStage) -> Result<(), String> {
        match &self.0 {
            Some(f) => f(stage),
            None => Ok(()),
        }
    }
}

impl fmt::Debug for DumpHook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_some() {
            "DumpHook(set)"
        } else {
            "DumpHook(none)"
        })
    }
}
