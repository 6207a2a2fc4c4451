//! [`CpuRecord`]: what an image records about the CPU it was dumped on and the JVMs it
//! holds, and what the restore gate records about the host.

use serde::{Deserialize, Serialize};

use crate::cpuid::{CpuIdentity, CpuidSource, HostCpuid, RecordedCpuid};
use crate::jvm::{self, JvmRecord};
use crate::CpuError;

/// The CPU of one host (raw leaves and XCR0) and the JVMs of a process tree on it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CpuRecord {
    /// The recorded CPUID leaves and XCR0.
    pub cpuid: RecordedCpuid,
    /// The XSAVE state components the dumped tasks hold (the union of their
    /// `xstate_bv`), when the dumper recorded it; the gate falls back to XCR0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub xstate_bv: Option<u64>,
    /// Each dumped thread's `xstate_bv`, as its core image holds it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tasks: Vec<TaskXstate>,
    /// The JVMs of the tree.
    #[serde(default)]
    pub jvms: Vec<JvmRecord>,
    /// JVMs of the tree whose features could not be determined (an unknown Java
    /// version, an unreadable Java home): the gate refuses them unless told not to
    /// check JVMs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unchecked_jvms: Vec<UncheckedJvm>,
}

/// A JVM whose features could not be recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UncheckedJvm {
    /// Process id at dump time.
    pub pid: i32,
    /// The `libjvm.so` it maps.
    pub libjvm: String,
    /// Why its features are unknown.
    pub reason: String,
}

impl CpuRecord {
    /// A record of the CPU `src` with no JVM.
    pub fn of(src: &dyn CpuidSource) -> Self {
        CpuRecord {
            cpuid: RecordedCpuid::capture(src),
            xstate_bv: None,
            tasks: Vec::new(),
            jvms: Vec::new(),
            unchecked_jvms: Vec::new(),
        }
    }

    /// A record of this host with no JVM: what the restore side compares against.
    pub fn host() -> Self {
        Self::of(&HostCpuid)
    }

    /// A record of this host and of the JVMs among `pids` (read without stopping them).
    pub fn capture(pids: &[i32]) -> Result<Self, CpuError> {
        let mut r = Self::host();
        r.jvms = jvm::detect_jvms(pids)?;
        Ok(r)
    }

    /// Vendor, family, model and stepping.
    pub fn identity(&self) -> CpuIdentity {
        CpuIdentity::of(&self.cpuid)
    }

    /// The XSAVE state the image's tasks may hold: the union of the threads'
    /// `xstate_bv`, else the recorded union, else everything XCR0 enabled on the dump
    /// host.
    pub fn xsave_features(&self) -> u64 {
        if !self.tasks.is_empty() {
            return self.tasks.iter().fold(0, |m, t| m | t.xstate_bv);
        }
        self.xstate_bv.or(self.cpuid.xcr0()).unwrap_or(0)
    }

    /// Whether the record holds a JVM, described or not.
    pub fn has_jvm(&self) -> bool {
        !self.jvms.is_empty() || !self.unchecked_jvms.is_empty()
    }

    /// Sets the threads' XSAVE state, and the union with it.
    pub fn set_tasks(&mut self, tasks: Vec<TaskXstate>) {
        self.xstate_bv = (!tasks.is_empty()).then(|| tasks.iter().fold(0, |m, t| m | t.xstate_bv));
        self.tasks = tasks;
    }
}

/// The XSAVE state components one dumped thread holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskXstate {
    /// The thread id at dump time.
    pub tid: i32,
    /// `xstate_bv` of its XSAVE header (x87 and SSE, 0x3, for an FXSAVE-only dump).
    pub xstate_bv: u64,
}

/// Records the CPUID leaves and XCR0 of this host.
pub fn capture_host() -> RecordedCpuid {
    RecordedCpuid::capture(&HostCpuid)
}
