//! Errors of the CPU crate.

use std::path::PathBuf;

use crate::hotspot::Table;

/// Why a CPU or JVM description could not be produced or read.
#[derive(Debug, thiserror::Error)]
pub enum CpuError {
    /// A CPUID recording (fixture or image) that does not parse.
    #[error("invalid CPUID recording: {0}")]
    Recording(String),
    /// A Java version stasis has no HotSpot feature table for.
    #[error("no HotSpot x86 feature table for Java {0} (JDK 17 and later are known)")]
    UnsupportedJava(u32),
    /// A feature name the table does not define.
    #[error("unknown HotSpot feature {name:?} for the {table} table")]
    UnknownFeature {
        /// The name.
        name: String,
        /// The table searched.
        table: Table,
    },
    /// A file of the JVM or of `/proc` could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A file of the JVM or of `/proc` that does not have the expected form.
    #[error("{path}: {what}")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What is wrong, naming the field.
        what: String,
    },
    /// The JVM's `gHotSpotVMStructs` could not be walked to its feature bitmap.
    #[error("pid {pid}: reading HotSpot's feature bitmap from memory: {what}")]
    VmStructs {
        /// The JVM.
        pid: i32,
        /// What failed.
        what: String,
    },
    /// Describing one process of a tree failed.
    #[error("pid {pid}: {source}")]
    Process {
        /// The process.
        pid: i32,
        /// What failed.
        source: Box<CpuError>,
    },
    /// An image of the images directory could not be read or written.
    #[error(transparent)]
    Image(#[from] stasis_images::ImageError),
    /// A `--cpu-cap` value that is not CRIU's syntax.
    #[error("invalid --cpu-cap value {0:?}: expected a comma-separated list of fpu, cpu, ins, jvm, all, none (each optionally prefixed by ^)")]
    CpuCap(String),
}

impl CpuError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        CpuError::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn malformed(path: impl Into<PathBuf>, what: impl Into<String>) -> Self {
        CpuError::Malformed {
            path: path.into(),
            what: what.into(),
        }
    }
}
