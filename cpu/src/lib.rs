//! The JVM CPU-feature gate: what CPU an image was dumped on, which HotSpot features
//! each of its JVMs compiled code for, and whether this host can run them.
//!
//! * [`cpuid`]: raw CPUID leaves and XCR0 behind the [`CpuidSource`] trait, live
//!   ([`HostCpuid`]) or recorded ([`RecordedCpuid`], JSON in images and fixtures).
//! * [`hotspot`]: HotSpot's x86 feature tables for JDK 17, 21 and 25+ and its rules from
//!   CPUID to features ([`hotspot::features`]).
//! * [`jvm`]: finding the JVMs of a process tree and the features each uses, from CRaC's
//!   `tags`, from the JVM's memory (`gHotSpotVMStructs`), or from the table.
//! * [`gate`]: the restore-time [`check`] under a [`CpuCap`], refusing with a
//!   [`GateRefusal`] that names each missing feature.
//! * [`criu`]: CRIU's `cpuinfo.img` entry from a recording, and back.
//! * [`image`]: the record in an images directory (`cpuinfo.img` plus
//!   `stasis-cpu.json`), written at dump and read by the restore gate ([`ImageCpu`]).
//! * [`report`]: what `stasis inspect DIR --cpu` prints.
//!
//! # raw-cpuid and stasis's own bits
//!
//! CPUID is decoded through `raw-cpuid` (leaf 1, leaf 7, 0x8000_0001, 0x8000_0007),
//! driven by a [`CpuidSource`] so that recordings of other CPUs decode exactly like the
//! host. `raw-cpuid` 11 did not fit everywhere, so a few bits are read directly:
//! CPUID.7.0:EDX FSRM, SERIALIZE and CET-IBT (its `ExtendedFeaturesEdx` lacks them and
//! truncates unknown bits away), CPUID.7.1:EAX SHA512 and CPUID.7.1:EDX APX_F, leaves
//! 0x24 (AVX10) and 0x29 (APX) which it does not decode, AMD's copies of MMX/FXSR in
//! 0x8000_0001:EDX, the Hygon and Zhaoxin vendors HotSpot distinguishes (its vendor
//! enum is private), and XCR0, which is not a CPUID leaf at all: `raw-cpuid` reports
//! what leaf 0xD says the CPU supports, HotSpot and the gate need what the OS enabled
//! (`xgetbv`, wrapped in `stasis_sys::cpu`). Topology (HotSpot's `ht`) follows HotSpot's
//! own arithmetic on leaves 1, 4, 0xB and 0x8000_001E rather than `raw-cpuid`'s
//! iterators, so that the quirks match.
#![forbid(unsafe_code)]

pub mod cpuid;
pub mod criu;
mod decode;
mod error;
pub mod gate;
pub mod hotspot;
pub mod image;
mod ins;
pub mod jvm;
mod record;
pub mod report;

pub use cpuid::{CpuIdentity, CpuidSource, HostCpuid, RecordedCpuid, Vendor};
pub use error::CpuError;
pub use gate::{check, CpuCap, GatePass, GateRefusal, Refusal};
pub use hotspot::FeatureSet;
pub use image::{ImageCpu, RecordSource};
pub use jvm::{detect_jvms, JvmRecord, JvmSource};
pub use record::{capture_host, CpuRecord, TaskXstate, UncheckedJvm};
