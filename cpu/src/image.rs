//! The CPU record of an images directory, as dump writes it and restore reads it.
//!
//! Two files describe the CPU an image was dumped on:
//!
//! * `cpuinfo.img` — CRIU's own image ([`crate::criu`]), so that CRIU-format semantics
//!   hold: `criu cpuinfo check` and `crit` read it as they read CRIU's.
//! * `stasis-cpu.json` ([`RECORD_FILE`]) — stasis's record: every raw CPUID leaf and
//!   XCR0, each dumped thread's `xstate_bv`, and each JVM's HotSpot features. CRIU and
//!   crit never open it (they read images by name, and it is not an `*.img`), and a
//!   person can read it.
//!
//! Restore reads the JSON record when present, else rebuilds what it can from
//! `cpuinfo.img` (an image CRIU wrote with `--cpu-cap`), else knows nothing of the dump
//! host's CPU. Whatever the record says, the threads' XSAVE state is taken from their
//! core images, which are what restore will load into the registers.

use std::io::{Read, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};
use stasis_images::{names, pb, ImageDir, ImageKind};

use crate::cpuid::{HostCpuid, RecordedCpuid};
use crate::gate::{self, CpuCap, GatePass, GateRefusal, Refusal};
use crate::jvm;
use crate::record::{CpuRecord, TaskXstate, UncheckedJvm};
use crate::{criu, CpuError};

/// stasis's record in the images directory.
pub const RECORD_FILE: &str = "stasis-cpu.json";
/// The `format` of the record file this version writes and reads.
pub const RECORD_FORMAT: &str = "stasis-cpu/1";
/// A record larger than this is corrupt, not large (one entry per thread and JVM).
const MAX_RECORD_BYTES: u64 = 16 << 20;
/// `xstate_bv` of a thread dumped without an XSAVE area: x87 and SSE, which FXSAVE
/// holds and every x86-64 CPU restores.
const FXSAVE_STATE: u64 = 0b11;

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RecordFile {
    format: String,
    /// The stasis that wrote it, for people reading the file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    written_by: Option<String>,
    record: CpuRecord,
}

/// Where an image's CPU description came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RecordSource {
    /// stasis's `stasis-cpu.json`.
    Stasis,
    /// CRIU's `cpuinfo.img` alone.
    CriuCpuinfo,
    /// Neither: only the threads' XSAVE state (from their core images) is known.
    None,
}

impl RecordSource {
    /// The file the description was read from.
    pub fn file(self) -> Option<&'static str> {
        match self {
            RecordSource::Stasis => Some(RECORD_FILE),
            RecordSource::CriuCpuinfo => Some(names::CPUINFO),
            RecordSource::None => None,
        }
    }
}

/// What an images directory says about the CPU it needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageCpu {
    /// The dump host's CPU, the threads' XSAVE state (from the core images) and the
    /// JVMs. With [`RecordSource::None`] the CPUID recording is empty.
    pub record: CpuRecord,
    /// Where `record` came from.
    pub source: RecordSource,
    /// `libjvm.so` files the image maps although the record lists no JVM: a JVM whose
    /// features nobody recorded (an image CRIU wrote, or a record made without `-t`).
    pub unrecorded_jvms: Vec<String>,
}

impl ImageCpu {
    /// Reads the CPU description of the images in `dir`. Nothing is written.
    pub fn read(dir: &ImageDir) -> Result<ImageCpu, CpuError> {
        let (mut record, source) = match read_record(dir)? {
            Some(r) => (r, RecordSource::Stasis),
            None => {
                match dir.read_if_exists::<pb::CpuinfoEntry>(ImageKind::CPUINFO, names::CPUINFO)? {
                    Some(entries) => {
                        let [entry] = entries.as_slice() else {
                            return Err(CpuError::Recording(format!(
                                "{} holds {} entries, expected one",
                                names::CPUINFO,
                                entries.len()
                            )));
                        };
                        (
                            CpuRecord::of(&criu::recording_from_cpuinfo(entry)?),
                            RecordSource::CriuCpuinfo,
                        )
                    }
                    None => (CpuRecord::of(&RecordedCpuid::new()), RecordSource::None),
                }
            }
        };
        let tasks = task_xstates(dir)?;
        if !tasks.is_empty() {
            record.set_tasks(tasks);
        }
        let unrecorded_jvms = if record.jvms.is_empty() && record.unchecked_jvms.is_empty() {
            mapped_libjvms(dir)?
        } else {
            Vec::new()
        };
        Ok(ImageCpu {
            record,
            source,
            unrecorded_jvms,
        })
    }

    /// Whether the image holds a JVM, recorded or not.
    pub fn has_jvm(&self) -> bool {
        self.record.has_jvm() || !self.unrecorded_jvms.is_empty()
    }

    /// The checks for this image: `user` (a `--cpu-cap` value) on top of CRIU's
    /// default plus `jvm` when the image holds a JVM; without `user`, `fpu` plus `jvm`
    /// when it holds a JVM.
    pub fn cap(&self, user: Option<&str>) -> Result<CpuCap, CpuError> {
        CpuCap::for_image(self.has_jvm(), user)
    }

    /// Runs the gate for restoring this image on `host` under `cap`.
    pub fn check(&self, host: &CpuRecord, cap: CpuCap) -> Result<GatePass, GateRefusal> {
        let mut reasons = Vec::new();
        if self.source == RecordSource::None && (cap.ins || cap.cpu) {
            reasons.push(Refusal::NoCpuRecord {
                checks: [(cap.ins, "ins"), (cap.cpu, "cpu")]
                    .iter()
                    .filter(|(on, _)| *on)
                    .map(|(_, n)| *n)
                    .collect::<Vec<_>>()
                    .join(","),
            });
        }
        if cap.jvm && !self.unrecorded_jvms.is_empty() {
            reasons.push(Refusal::UnrecordedJvm {
                libs: self.unrecorded_jvms.clone(),
            });
        }
        // With no recording, ins and cpu have nothing to compare: refused above.
        let cap = if self.source == RecordSource::None {
            CpuCap {
                ins: false,
                cpu: false,
                ..cap
            }
        } else {
            cap
        };
        match gate::check(&self.record, host, cap) {
            Ok(pass) if reasons.is_empty() => Ok(pass),
            Ok(_) => Err(GateRefusal { reasons }),
            Err(mut refusal) => {
                reasons.append(&mut refusal.reasons);
                Err(GateRefusal { reasons })
            }
        }
    }
}

/// Reads `stasis-cpu.json`, or `None` when the directory has none.
pub fn read_record(dir: &ImageDir) -> Result<Option<CpuRecord>, CpuError> {
    let path = dir.file_path(RECORD_FILE);
    let file = match dir.open_raw(RECORD_FILE) {
        Ok(f) => f,
        Err(stasis_images::ImageError::Missing { .. }) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let mut text = String::new();
    file.take(MAX_RECORD_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(|e| CpuError::io(&path, e))?;
    if text.len() as u64 > MAX_RECORD_BYTES {
        return Err(CpuError::malformed(
            &path,
            format!("larger than {MAX_RECORD_BYTES} bytes"),
        ));
    }
    let file: RecordFile =
        serde_json::from_str(&text).map_err(|e| CpuError::malformed(&path, e.to_string()))?;
    if file.format != RECORD_FORMAT {
        return Err(CpuError::malformed(
            &path,
            format!(
                "format {:?}, this stasis reads {RECORD_FORMAT:?}",
                file.format
            ),
        ));
    }
    Ok(Some(file.record))
}

/// Writes `record` as `stasis-cpu.json` and the matching CRIU `cpuinfo.img` into `dir`,
/// each atomically (a temporary name renamed into place).
pub fn write(dir: &ImageDir, record: &CpuRecord) -> Result<(), CpuError> {
    let file = RecordFile {
        format: RECORD_FORMAT.to_string(),
        written_by: Some(format!("stasis {}", env!("CARGO_PKG_VERSION"))),
        record: record.clone(),
    };
    let mut json = serde_json::to_string_pretty(&file).expect("a CPU record always serialises");
    json.push('\n');
    let tmp = format!(".{RECORD_FILE}.tmp-{}", std::process::id());
    let write_tmp = || -> Result<(), CpuError> {
        let mut f = dir.create_raw(&tmp)?;
        f.write_all(json.as_bytes())
            .and_then(|()| f.sync_all())
            .map_err(|e| CpuError::io(dir.file_path(&tmp), e))
    };
    if let Err(e) = write_tmp() {
        let _ = dir.remove(&tmp);
        return Err(e);
    }
    rename(dir.path(), &tmp, RECORD_FILE)?;
    dir.write_one(
        ImageKind::CPUINFO,
        names::CPUINFO,
        &criu::cpuinfo_entry(&record.cpuid),
    )?;
    Ok(())
}

fn rename(dir: &Path, from: &str, to: &str) -> Result<(), CpuError> {
    std::fs::rename(dir.join(from), dir.join(to)).map_err(|e| {
        let _ = std::fs::remove_file(dir.join(from));
        CpuError::io(dir.join(to), e)
    })
}

/// The record a dump writes: this host's CPU, the XSAVE state of every thread whose
/// core image is already in `dir`, and the JVMs among `pids` (the live processes of
/// the tree, read through /proc and their memory without stopping them).
///
/// A JVM whose features cannot be determined does not fail the dump: it is recorded
/// as unchecked, and the restore gate refuses it unless `--cpu-cap` leaves JVMs out.
/// A process whose memory map cannot be read at all does fail it.
pub fn dump_record(dir: &ImageDir, pids: &[i32]) -> Result<CpuRecord, CpuError> {
    let mut record = CpuRecord::host();
    record.set_tasks(task_xstates(dir)?);
    for &pid in pids {
        let in_pid = |e| CpuError::Process {
            pid,
            source: Box::new(e),
        };
        let Some(libjvm) = jvm::mapped_libjvm(pid).map_err(in_pid)? else {
            continue;
        };
        match jvm::detect_jvm(pid, &HostCpuid) {
            Ok(Some(j)) => record.jvms.push(j),
            Ok(None) => {}
            Err(e) => record.unchecked_jvms.push(UncheckedJvm {
                pid,
                libjvm: libjvm.display().to_string(),
                reason: e.to_string(),
            }),
        }
    }
    Ok(record)
}

/// The processes of the dumped tree (`pstree.img`), or none if the directory holds no
/// dump.
pub fn tree_pids(dir: &ImageDir) -> Result<Vec<i32>, CpuError> {
    let tree: Vec<pb::PstreeEntry> = dir
        .read_if_exists(ImageKind::PSTREE, names::PSTREE)?
        .unwrap_or_default();
    Ok(tree.iter().map(|e| e.pid as i32).collect())
}

/// Every dumped thread's `xstate_bv`, from `pstree.img` and the core images; empty if
/// the directory holds no dump.
pub fn task_xstates(dir: &ImageDir) -> Result<Vec<TaskXstate>, CpuError> {
    let tree: Vec<pb::PstreeEntry> = dir
        .read_if_exists(ImageKind::PSTREE, names::PSTREE)?
        .unwrap_or_default();
    let mut out = Vec::new();
    for tid in tree.iter().flat_map(|e| e.threads.iter().copied()) {
        let core: pb::CoreEntry = dir.read_one(ImageKind::CORE, &names::core(tid))?;
        let xstate_bv = core
            .thread_info
            .as_ref()
            .and_then(|t| t.fpregs.xsave.as_ref())
            .map_or(FXSAVE_STATE, |x| x.xstate_bv);
        out.push(TaskXstate {
            tid: tid as i32,
            xstate_bv,
        });
    }
    Ok(out)
}

/// The `libjvm.so` files among the image's regular files (`files.img`).
fn mapped_libjvms(dir: &ImageDir) -> Result<Vec<String>, CpuError> {
    let files: Vec<pb::FileEntry> = dir
        .read_if_exists(ImageKind::FILES, names::FILES)?
        .unwrap_or_default();
    let mut libs: Vec<String> = files
        .iter()
        .filter_map(|f| f.reg.as_ref())
        .map(|r| r.name.clone())
        .filter(|n| n == "libjvm.so" || n.ends_with("/libjvm.so"))
        .collect();
    libs.sort();
    libs.dedup();
    Ok(libs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hotspot::{self, FeatureSet, Table};
    use crate::{CpuidSource, JvmRecord, JvmSource};
    use std::path::PathBuf;
    use std::sync::atomic::{AtomicUsize, Ordering};

    struct TempDir(PathBuf);

    impl TempDir {
        fn new() -> Self {
            static N: AtomicUsize = AtomicUsize::new(0);
            let p = std::env::temp_dir().join(format!(
                "stasis-cpu-image-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            let _ = std::fs::remove_dir_all(&p);
            std::fs::create_dir_all(&p).unwrap();
            TempDir(p)
        }
        fn dir(&self) -> ImageDir {
            ImageDir::open(&self.0).unwrap()
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn core_with_xstate(bv: Option<u64>) -> pb::CoreEntry {
        let mut ti = pb::ThreadInfoX86::default();
        ti.fpregs.xsave = bv.map(|b| pb::UserX86XsaveEntry {
            xstate_bv: b,
            ..Default::default()
        });
        pb::CoreEntry {
            mtype: pb::core_entry::March::X8664 as i32,
            thread_info: Some(ti),
            ..Default::default()
        }
    }

    /// A dump of one process with threads 10 (AVX-512 state) and 11 (FXSAVE only).
    fn write_dump(dir: &ImageDir, jvm_lib: Option<&str>) {
        dir.write_one(
            ImageKind::PSTREE,
            names::PSTREE,
            &pb::PstreeEntry {
                pid: 10,
                ppid: 0,
                pgid: 10,
                sid: 10,
                threads: vec![10, 11],
            },
        )
        .unwrap();
        dir.write_one(
            ImageKind::CORE,
            &names::core(10),
            &core_with_xstate(Some(0x2e7)),
        )
        .unwrap();
        dir.write_one(ImageKind::CORE, &names::core(11), &core_with_xstate(None))
            .unwrap();
        if let Some(lib) = jvm_lib {
            let f = pb::FileEntry {
                r#type: pb::FdTypes::Reg as i32,
                id: 1,
                reg: Some(pb::RegFileEntry {
                    id: 1,
                    name: lib.to_string(),
                    ..Default::default()
                }),
                ..Default::default()
            };
            dir.write(ImageKind::FILES, names::FILES, &[f]).unwrap();
        }
    }

    fn jvm_record() -> JvmRecord {
        JvmRecord {
            pid: 10,
            java_version: "17.0.15".into(),
            source: JvmSource::Memory,
            features: hotspot::features(17, &HostCpuid).unwrap(),
            note: None,
        }
    }

    #[test]
    fn a_written_record_reads_back_with_the_threads_state_from_the_core_images() {
        let tmp = TempDir::new();
        let dir = tmp.dir();
        write_dump(&dir, Some("/usr/lib/jvm/x/lib/server/libjvm.so"));
        let mut record = dump_record(&dir, &[]).unwrap();
        assert_eq!(
            record.tasks,
            [
                TaskXstate {
                    tid: 10,
                    xstate_bv: 0x2e7
                },
                TaskXstate {
                    tid: 11,
                    xstate_bv: 0b11
                }
            ]
        );
        assert_eq!(record.xstate_bv, Some(0x2e7));
        record.jvms.push(jvm_record());
        write(&dir, &record).unwrap();
        assert!(dir.exists(names::CPUINFO) && dir.exists(RECORD_FILE));
        let text = std::fs::read_to_string(dir.file_path(RECORD_FILE)).unwrap();
        assert!(text.contains("\"format\": \"stasis-cpu/1\""), "{text}");

        let back = ImageCpu::read(&dir).unwrap();
        assert_eq!(back.source, RecordSource::Stasis);
        assert_eq!(back.record, record);
        assert!(back.unrecorded_jvms.is_empty());
        assert_eq!(back.cap(None).unwrap().to_string(), "fpu,jvm");
        back.check(&CpuRecord::host(), back.cap(None).unwrap())
            .unwrap();
    }

    #[test]
    fn without_the_json_record_cpuinfo_img_describes_the_cpu() {
        let tmp = TempDir::new();
        let dir = tmp.dir();
        write_dump(&dir, None);
        write(&dir, &CpuRecord::host()).unwrap();
        std::fs::remove_file(dir.file_path(RECORD_FILE)).unwrap();
        let img = ImageCpu::read(&dir).unwrap();
        assert_eq!(img.source, RecordSource::CriuCpuinfo);
        assert_eq!(img.record.tasks.len(), 2);
        let host = CpuRecord::host();
        assert_eq!(img.record.cpuid.cpuid(7, 0), host.cpuid.cpuid(7, 0));
        if let Err(e) = img.check(&host, CpuCap::parse("").unwrap()) {
            // `cpu` compares whole registers, which a CRIU entry only partly holds.
            assert!(
                e.reasons.iter().all(|r| matches!(r, Refusal::Cpu { .. })),
                "{e}"
            )
        }
        img.check(&host, CpuCap::parse("fpu,ins").unwrap()).unwrap();
    }

    #[test]
    fn a_jvm_mapped_but_not_recorded_is_refused_under_the_default_checks() {
        let tmp = TempDir::new();
        let dir = tmp.dir();
        write_dump(&dir, Some("/opt/jdk/lib/server/libjvm.so"));
        let img = ImageCpu::read(&dir).unwrap();
        assert_eq!(img.source, RecordSource::None);
        assert!(img.has_jvm());
        let cap = img.cap(None).unwrap();
        assert_eq!(cap.to_string(), "fpu,jvm");
        let err = img.check(&CpuRecord::host(), cap).unwrap_err().to_string();
        assert!(err.contains("/opt/jdk/lib/server/libjvm.so"), "{err}");
        img.check(&CpuRecord::host(), img.cap(Some("^jvm")).unwrap())
            .unwrap_err(); // ins without a record
        img.check(&CpuRecord::host(), CpuCap::parse("none,fpu").unwrap())
            .unwrap();
    }

    #[test]
    fn a_jvm_needing_what_the_host_lacks_is_refused_by_name() {
        let tmp = TempDir::new();
        let dir = tmp.dir();
        write_dump(&dir, None);
        let mut record = dump_record(&dir, &[]).unwrap();
        let mut j = jvm_record();
        // Claim a feature no CPU stasis runs its tests on has: AVX512-VBMI of Ice Lake+
        // is absent on Cascade Lake; fall back to any feature the host lacks.
        let offered = hotspot::cpu_features(17, &HostCpuid).unwrap();
        let lacking = (0..Table::Jdk17.len())
            .find(|&b| {
                !offered.has(b)
                    && !matches!(
                        Table::Jdk17.name(b),
                        Some("ht" | "hv" | "tscinv" | "tscinvbit")
                    )
            })
            .expect("the host lacks some HotSpot feature");
        j.features = FeatureSet::from_bits(Table::Jdk17, j.features.bits() | 1 << lacking);
        record.jvms.push(j);
        write(&dir, &record).unwrap();
        let img = ImageCpu::read(&dir).unwrap();
        let err = img
            .check(&CpuRecord::host(), img.cap(None).unwrap())
            .unwrap_err()
            .to_string();
        let name = Table::Jdk17.name(lacking).unwrap();
        assert!(
            err.contains(name) && err.contains("-XX:CPUFeatures="),
            "{err}"
        );
    }

    #[test]
    fn a_record_of_an_unknown_format_is_refused() {
        let tmp = TempDir::new();
        let dir = tmp.dir();
        std::fs::write(
            dir.file_path(RECORD_FILE),
            r#"{"format":"stasis-cpu/99","record":{"cpuid":{"leaves":{}}}}"#,
        )
        .unwrap();
        let err = ImageCpu::read(&dir).unwrap_err().to_string();
        assert!(err.contains("stasis-cpu/99"), "{err}");
    }
}
