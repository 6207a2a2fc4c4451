//! The CPU gate of the restore preflight: may this image run on this CPU?
//!
//! It reads what the image recorded about its CPU (`stasis-cpu.json`, else CRIU's
//! `cpuinfo.img`, see `stasis_cpu::image`) and every thread's XSAVE state from its core
//! image, and compares them with this host under the checks `--cpu-cap` selects — by
//! default `fpu` (every thread's register state is enabled in this host's XCR0), plus
//! `jvm` (every JVM's HotSpot features are offered here) when the image holds a JVM.
//! It runs first in the preflight, before anything is created, and only reads.

use stasis_cpu::{CpuCap, CpuRecord, ImageCpu};
use stasis_images::ImageDir;

use crate::{RestoreError, Result};

/// Refuses, naming every missing feature, unless the image in `dir` can run here.
/// `cpu_cap` is the user's `--cpu-cap` value, if any.
pub(crate) fn check(dir: &ImageDir, cpu_cap: Option<&str>) -> Result<()> {
    let image = ImageCpu::read(dir)
        .map_err(|e| RestoreError::Cpu(format!("reading the image's CPU record: {e}")))?;
    let cap = image
        .cap(cpu_cap)
        .map_err(|e| RestoreError::Cpu(e.to_string()))?;
    if cap == CpuCap::NONE {
        log::info!("CPU gate: skipped (--cpu-cap=none)");
        return Ok(());
    }
    let host = CpuRecord::host();
    match image.check(&host, cap) {
        Ok(pass) => {
            for w in &pass.warnings {
                log::warn!("CPU gate: {w}");
            }
            log::info!(
                "CPU gate passed (checks {cap}; image CPU {} from {}, {} JVM(s), host {})",
                image.record.identity(),
                image.source.file().unwrap_or("no record"),
                image.record.jvms.len(),
                host.identity()
            );
            Ok(())
        }
        Err(refusal) => Err(RestoreError::Cpu(format!(
            "{refusal}\n  (checks: {cap}; --cpu-cap chooses them, --cpu-cap=none skips them)"
        ))),
    }
}
