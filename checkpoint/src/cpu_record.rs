//! The CPU record of a dump: CRIU's `cpuinfo.img` and stasis's `stasis-cpu.json`
//! (`stasis_cpu::image`), written once `pstree.img` and every thread's core image are
//! in place and before `inventory.img`, so that a complete image always has one.
//!
//! It holds this host's CPUID leaves and XCR0, each thread's `xstate_bv` (read back
//! from the core images just written), and the HotSpot features of every JVM of the
//! tree. The JVMs are described from `/proc` and their memory while the dump holds them
//! stopped: no second freeze, no code run inside them.

use stasis_cpu::{image, CpuError};
use stasis_images::ImageDir;

use crate::{DumpError, Result};

/// The record's file name, which a failed dump removes with the images.
pub(crate) const RECORD_FILE: &str = image::RECORD_FILE;

/// Writes the CPU record of the dump in `dir`; `pids` are the processes of the tree,
/// (host PID, PID in the image).
pub(crate) fn write(dir: &ImageDir, pids: &[(i32, i32)]) -> Result<()> {
    let host: Vec<i32> = pids.iter().map(|p| p.0).collect();
    let mut record = image::dump_record(dir, &host).map_err(dump_error)?;
    let virt = |h: i32| pids.iter().find(|p| p.0 == h).map_or(h, |p| p.1);
    for j in record.jvms.iter_mut() {
        j.pid = virt(j.pid);
    }
    for u in record.unchecked_jvms.iter_mut() {
        u.pid = virt(u.pid);
    }
    for j in &record.jvms {
        log::info!(
            "pid {}: Java {}, {} HotSpot features (from {}): {}",
            j.pid,
            j.java_version,
            j.features.names().len(),
            j.source,
            j.features
        );
        if let Some(note) = &j.note {
            log::info!("pid {}: {note}", j.pid);
        }
    }
    for u in &record.unchecked_jvms {
        log::warn!(
            "pid {}: the CPU features of this JVM ({}) could not be recorded: {}; \
             restore will refuse it unless --cpu-cap leaves out jvm",
            u.pid,
            u.libjvm,
            u.reason
        );
    }
    image::write(dir, &record).map_err(dump_error)
}

fn dump_error(e: CpuError) -> DumpError {
    match e {
        CpuError::Process { pid, source } => DumpError::Unsupported {
            pid,
            what: format!("describing it for the CPU record: {source}"),
        },
        CpuError::Io { path, source } => DumpError::Io { path, source },
        CpuError::Image(e) => DumpError::Image(e),
        e => DumpError::Internal(format!("writing the CPU record: {e}")),
    }
}
