//! The JVMs of a process tree and the HotSpot features each one uses.
//!
//! A process is a JVM when it maps `libjvm.so`. Its Java version comes from the
//! `release` file of its Java home. Its features come, in this order, from:
//!
//! 1. the CRaC `tags` file in its `-XX:CRaCCheckpointTo` directory, when the JVM wrote
//!    one ([`JvmSource::Tags`]);
//! 2. its own memory: `_features` found through the exported `gHotSpotVMStructs`
//!    (JDK 17/21) or the `VM_Version::_features` symbol (JDK 25+)
//!    ([`JvmSource::Memory`]), which reflects `-XX:UseAVX` and the like exactly;
//! 3. the HotSpot table for its version applied to this host's CPUID and to the VM
//!    options on its command line ([`JvmSource::Table`]); the record then says why the
//!    memory was not read.

mod crac;
mod elf;
mod procfs;
mod vmstructs;

use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use crac::{parse_tags, read_tags};
pub use procfs::java_major;

use crate::cpuid::{CpuidSource, HostCpuid};
use crate::hotspot::{self, FeatureSet, Table};
use crate::CpuError;

/// Where a JVM's feature set was taken from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JvmSource {
    /// The CRaC `tags` file the JVM wrote.
    Tags,
    /// The JVM's own `_features`, read from its memory.
    Memory,
    /// HotSpot's rules applied to the host CPU and the JVM's options.
    Table,
}

impl fmt::Display for JvmSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            JvmSource::Tags => "tags",
            JvmSource::Memory => "memory",
            JvmSource::Table => "table",
        })
    }
}

/// One JVM of a dumped tree and the features it uses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "JvmRecordJson", into = "JvmRecordJson")]
pub struct JvmRecord {
    /// Process id at dump time.
    pub pid: i32,
    /// `JAVA_VERSION` of the JVM's `release` file, e.g. "17.0.15".
    pub java_version: String,
    /// Where `features` came from.
    pub source: JvmSource,
    /// The HotSpot features the JVM uses.
    pub features: FeatureSet,
    /// Why a better source was not used, when `source` is not the first choice.
    pub note: Option<String>,
}

impl JvmRecord {
    /// The Java feature release of `java_version`.
    pub fn java_major(&self) -> Option<u32> {
        java_major(&self.java_version)
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct JvmRecordJson {
    pid: i32,
    java_version: String,
    source: JvmSource,
    features: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    note: Option<String>,
}

impl From<JvmRecord> for JvmRecordJson {
    fn from(r: JvmRecord) -> Self {
        JvmRecordJson {
            pid: r.pid,
            java_version: r.java_version,
            source: r.source,
            features: r.features.names().into_iter().map(String::from).collect(),
            note: r.note,
        }
    }
}

impl TryFrom<JvmRecordJson> for JvmRecord {
    type Error = String;

    fn try_from(j: JvmRecordJson) -> Result<Self, String> {
        let major = java_major(&j.java_version)
            .ok_or_else(|| format!("java_version {:?} has no major", j.java_version))?;
        let table =
            Table::for_java(major).ok_or_else(|| CpuError::UnsupportedJava(major).to_string())?;
        let features = FeatureSet::from_names(table, &j.features).map_err(|e| e.to_string())?;
        Ok(JvmRecord {
            pid: j.pid,
            java_version: j.java_version,
            source: j.source,
            features,
            note: j.note,
        })
    }
}

/// Describes the JVMs among `pids`: processes that do not map `libjvm.so` are skipped,
/// a JVM whose version cannot be determined is an error. `host` is the CPU the
/// processes run on (the live CPU, [`HostCpuid`], outside tests).
pub fn detect_jvms_on(pids: &[i32], host: &dyn CpuidSource) -> Result<Vec<JvmRecord>, CpuError> {
    let mut out = Vec::new();
    for &pid in pids {
        if let Some(r) = detect_jvm(pid, host)? {
            out.push(r);
        }
    }
    Ok(out)
}

/// [`detect_jvms_on`] the live CPU.
pub fn detect_jvms(pids: &[i32]) -> Result<Vec<JvmRecord>, CpuError> {
    detect_jvms_on(pids, &HostCpuid)
}

/// Describes process `pid`, or `None` when it is not a JVM.
pub fn detect_jvm(pid: i32, host: &dyn CpuidSource) -> Result<Option<JvmRecord>, CpuError> {
    let proc_dir = PathBuf::from(format!("/proc/{pid}"));
    let maps_path = proc_dir.join("maps");
    let maps = procfs::read_bounded(&maps_path)?;
    let Some(lib) = procfs::parse_maps(&String::from_utf8_lossy(&maps), &maps_path)? else {
        return Ok(None);
    };
    let root = proc_dir.join("root");
    let release = procfs::java_release(&root, &lib.path)?;
    let table = Table::for_java(release.major).ok_or(CpuError::UnsupportedJava(release.major))?;
    let cmdline = procfs::read_bounded(&proc_dir.join("cmdline"))?;

    let mut notes = Vec::new();
    if let Some(dir) = procfs::crac_checkpoint_dir(&cmdline) {
        let dir = in_root(&root, &dir, &proc_dir);
        match read_tags(&dir, table) {
            Ok(Some(features)) => {
                return Ok(Some(record(
                    pid,
                    &release.version,
                    JvmSource::Tags,
                    features,
                    None,
                )))
            }
            Ok(None) => notes.push(format!("no CRaC tags in {}", dir.display())),
            Err(e) => notes.push(format!("CRaC tags: {e}")),
        }
    }

    match vmstructs::read_features(pid, &root, &lib, table) {
        Ok(words) => {
            let features = FeatureSet::from_words(table, &words);
            let note = (!notes.is_empty()).then(|| notes.join("; "));
            return Ok(Some(record(
                pid,
                &release.version,
                JvmSource::Memory,
                features,
                note,
            )));
        }
        Err(e) => notes.push(format!("memory: {e}")),
    }

    let environ = procfs::read_bounded(&proc_dir.join("environ")).unwrap_or_default();
    let flags = procfs::vm_flags(&cmdline, &environ);
    let features = hotspot::features_with(release.major, host, &flags)?;
    Ok(Some(record(
        pid,
        &release.version,
        JvmSource::Table,
        features,
        Some(notes.join("; ")),
    )))
}

/// The VM options of process `pid` that change HotSpot's features (`-XX:UseAVX`,
/// `-XX:UseSSE`, …), from its command line and `JAVA_TOOL_OPTIONS`-style variables:
/// what the table source applies.
pub fn vm_flags_of(pid: i32) -> Result<hotspot::VmFlags, CpuError> {
    let proc_dir = PathBuf::from(format!("/proc/{pid}"));
    let cmdline = procfs::read_bounded(&proc_dir.join("cmdline"))?;
    let environ = procfs::read_bounded(&proc_dir.join("environ"))?;
    Ok(procfs::vm_flags(&cmdline, &environ))
}

/// The `libjvm.so` process `pid` maps, or `None` when it is not a JVM.
pub fn mapped_libjvm(pid: i32) -> Result<Option<PathBuf>, CpuError> {
    let maps_path = PathBuf::from(format!("/proc/{pid}/maps"));
    let maps = procfs::read_bounded(&maps_path)?;
    Ok(procfs::parse_maps(&String::from_utf8_lossy(&maps), &maps_path)?.map(|l| l.path))
}

/// Process `pid` and all its live descendants, parents before children: the tree
/// `stasis cpuinfo dump -t PID` describes. Read from `/proc/PID/task/*/children`
/// without stopping anything, so a process forked meanwhile may be missed.
pub fn process_tree(pid: i32) -> Result<Vec<i32>, CpuError> {
    let root = PathBuf::from(format!("/proc/{pid}"));
    if !root.exists() {
        return Err(CpuError::io(
            &root,
            std::io::Error::new(std::io::ErrorKind::NotFound, "no such process"),
        ));
    }
    let mut out = vec![pid];
    let mut i = 0;
    while i < out.len() {
        let p = out[i];
        i += 1;
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{p}/task")) else {
            continue; // exited meanwhile
        };
        for task in tasks.flatten() {
            let Ok(text) = std::fs::read_to_string(task.path().join("children")) else {
                continue;
            };
            for child in text
                .split_whitespace()
                .filter_map(|c| c.parse::<i32>().ok())
            {
                if !out.contains(&child) {
                    out.push(child);
                }
            }
        }
    }
    Ok(out)
}

/// `dir` as seen by the process: relative paths are relative to its working directory.
fn in_root(root: &Path, dir: &Path, proc_dir: &Path) -> PathBuf {
    if dir.is_absolute() {
        root.join(dir.strip_prefix("/").unwrap_or(dir))
    } else {
        proc_dir.join("cwd").join(dir)
    }
}

fn record(
    pid: i32,
    version: &str,
    source: JvmSource,
    features: FeatureSet,
    note: Option<String>,
) -> JvmRecord {
    JvmRecord {
        pid,
        java_version: version.to_string(),
        source,
        features,
        note,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_jvm_record_serialises_features_by_hotspot_name() {
        let r = JvmRecord {
            pid: 42,
            java_version: "17.0.15".into(),
            source: JvmSource::Memory,
            features: FeatureSet::from_names(Table::Jdk17, &["cx8", "avx2"]).unwrap(),
            note: None,
        };
        let json = serde_json::to_string(&r).unwrap();
        assert_eq!(
            json,
            r#"{"pid":42,"java_version":"17.0.15","source":"memory","features":["cx8","avx2"]}"#
        );
        assert_eq!(serde_json::from_str::<JvmRecord>(&json).unwrap(), r);
    }

    #[test]
    fn a_record_naming_a_feature_its_java_version_lacks_is_refused() {
        let json = r#"{"pid":1,"java_version":"17.0.1","source":"table","features":["f16c"]}"#;
        let err = serde_json::from_str::<JvmRecord>(json)
            .unwrap_err()
            .to_string();
        assert!(err.contains("f16c"), "{err}");
    }

    #[test]
    fn a_process_that_is_not_a_jvm_is_skipped() {
        let me = std::process::id() as i32;
        assert_eq!(detect_jvms(&[me]).unwrap(), []);
    }

    #[test]
    fn the_tree_of_a_process_holds_its_children() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let me = std::process::id() as i32;
        let tree = process_tree(me).unwrap();
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(tree[0], me);
        assert!(tree.contains(&(child.id() as i32)), "{tree:?}");
        assert!(process_tree(i32::MAX).is_err());
    }

    #[test]
    fn a_missing_process_is_an_error() {
        assert!(detect_jvms(&[i32::MAX]).is_err());
    }
}
