//! HotSpot's view of an x86 CPU: which of its feature flags a JVM of a given Java
//! version sets for a given CPUID recording.
//!
//! * [`features`] is what a JVM started with default options prints with
//!   `-Xlog:os+cpu` and compiles for; [`features_with`] takes `-XX:UseAVX`/`-XX:UseSSE`.
//! * [`cpu_features`] is what the CPU offers a JVM of that version whatever its options
//!   (HotSpot's `feature_flags()`, before VM settings): the host side of the restore
//!   gate.
//!
//! Sources: `src/hotspot/cpu/x86/vm_version_x86.{hpp,cpp}` of jdk17u, jdk21u and jdk25u
//! (the `CPU_FEATURE_FLAGS` tables, `feature_flags()` and `get_processor_features()`).

mod features;
mod rules;
mod table;

pub use features::FeatureSet;
pub use rules::VmFlags;
pub use table::{bit, Table};

use crate::cpuid::CpuidSource;
use crate::decode::decode;
use crate::CpuError;

fn table_for(java_major: u32) -> Result<Table, CpuError> {
    Table::for_java(java_major).ok_or(CpuError::UnsupportedJava(java_major))
}

/// The features a JVM of Java `java_major`, started with default options, uses on the
/// CPU `src` describes.
pub fn features(java_major: u32, src: &dyn CpuidSource) -> Result<FeatureSet, CpuError> {
    features_with(java_major, src, &VmFlags::default())
}

/// The features a JVM of Java `java_major` started with `flags` uses on `src`.
pub fn features_with(
    java_major: u32,
    src: &dyn CpuidSource,
    flags: &VmFlags,
) -> Result<FeatureSet, CpuError> {
    let table = table_for(java_major)?;
    Ok(FeatureSet::from_bits(
        table,
        rules::vm_features(table, &decode(src), flags),
    ))
}

/// Everything `src` offers a JVM of Java `java_major`, whatever its options
/// (HotSpot's `feature_flags()`); for JDK 25 this includes the glibc features CRaC
/// builds record in bits 65–73.
pub fn cpu_features(java_major: u32, src: &dyn CpuidSource) -> Result<FeatureSet, CpuError> {
    let table = table_for(java_major)?;
    let bits = decode(src);
    let mut f = rules::cpu_features(table, &bits);
    if table == Table::Jdk25 {
        f |= rules::glibc_features(&bits);
    }
    Ok(FeatureSet::from_bits(table, f))
}

/// The glibc features CRaC pairs with HotSpot's (`fma4`, `movbe`, `osxsave`, `ibt`,
/// `shstk`, `xsave`, `cmpxchg16`, `lahfsahf`, `htt`), as bits 65–73 of a JDK 25 set.
pub fn glibc_features(src: &dyn CpuidSource) -> FeatureSet {
    FeatureSet::from_bits(Table::Jdk25, rules::glibc_features(&decode(src)))
}

/// CRaC 17/21's glibc feature word (the second number of `-XX:CPUFeatures=0xCPU,0xGLIBC`):
/// FMA4 = bit 0, MOVBE, OSXSAVE, IBT, SHSTK, XSAVE, CMPXCHG16, LAHFSAHF, F16C, HTT = bit 9.
pub fn glibc_word(src: &dyn CpuidSource) -> u64 {
    rules::glibc_word(&decode(src))
}
