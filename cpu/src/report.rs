//! What `stasis inspect DIR --cpu` reports: the host, the image's CPU record, its JVMs
//! and the gate's verdict, as text or as JSON with `host` and `image` objects and a
//! `jvms` list (`pid`, `java_version`, `source`, `features` by HotSpot's names).

use std::fmt;

use serde::Serialize;

use crate::cpuid::{CpuIdentity, CpuidSource};
use crate::gate::{CpuCap, IGNORED};
use crate::hotspot::{self, FeatureSet};
use crate::image::ImageCpu;
use crate::jvm::JvmSource;
use crate::record::CpuRecord;
use crate::{criu, ins};

/// One CPU: identity, XCR0 and instruction set.
#[derive(Debug, Clone, Serialize)]
pub struct CpuSummary {
    /// Vendor, family, model, stepping.
    #[serde(flatten)]
    pub identity: CpuIdentity,
    /// The brand string.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model_name: Option<String>,
    /// XCR0 in hex, absent when XSAVE is off.
    pub xcr0: Option<String>,
    /// XCR0's state components by name.
    pub xsave_features: Vec<String>,
    /// The instruction-set CPUID bits it has, by `/proc/cpuinfo` name.
    pub instructions: Vec<&'static str>,
}

impl CpuSummary {
    /// Describes the CPU `cpu` records.
    pub fn of(cpu: &dyn CpuidSource) -> Self {
        let xcr0 = cpu.xcr0();
        CpuSummary {
            identity: CpuIdentity::of(cpu),
            model_name: criu::model_id(cpu),
            xcr0: xcr0.map(|x| format!("{x:#x}")),
            xsave_features: ins::xstate_names(xcr0.unwrap_or(0)),
            instructions: ins::present_instructions(cpu),
        }
    }
}

/// One dumped thread's XSAVE state.
#[derive(Debug, Clone, Serialize)]
pub struct ThreadSummary {
    /// Thread id at dump time.
    pub tid: i32,
    /// `xstate_bv` in hex.
    pub xstate_bv: String,
    /// Its state components by name.
    pub xsave_features: Vec<String>,
}

/// The image's side.
#[derive(Debug, Clone, Serialize)]
pub struct ImageSummary {
    /// The file the CPU description came from (`stasis-cpu.json`, `cpuinfo.img`), or
    /// absent.
    pub record: Option<&'static str>,
    /// The dump host's CPU, when recorded.
    pub cpu: Option<CpuSummary>,
    /// Each dumped thread's XSAVE state.
    pub threads: Vec<ThreadSummary>,
    /// JVMs whose features the dump could not determine: `pid: reason`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unchecked_jvms: Vec<String>,
    /// `libjvm.so` files the image maps without any JVM record.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unrecorded_jvms: Vec<String>,
}

/// One JVM of the image.
#[derive(Debug, Clone, Serialize)]
pub struct JvmSummary {
    /// Process id at dump time.
    pub pid: i32,
    /// `JAVA_VERSION` of its Java home.
    pub java_version: String,
    /// `tags`, `memory` or `table`.
    pub source: JvmSource,
    /// HotSpot's names, in HotSpot's order (as `-Xlog:os+cpu` prints them).
    pub features: Vec<&'static str>,
    /// Why a better source was not used.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// Its features this host does not offer a JVM of its version (`ht` aside).
    pub missing_on_host: Vec<&'static str>,
}

/// The gate's verdict under the checks the restore would run.
#[derive(Debug, Clone, Serialize)]
pub struct GateSummary {
    /// The checks (`fpu,jvm`...).
    pub checks: String,
    /// Whether the restore would pass the gate here.
    pub passed: bool,
    /// Each refusal, as the restore prints it.
    pub reasons: Vec<String>,
    /// What the host lacks without preventing the restore.
    pub warnings: Vec<String>,
}

/// The whole report.
#[derive(Debug, Clone, Serialize)]
pub struct CpuReport {
    /// This host.
    pub host: CpuSummary,
    /// The image.
    pub image: ImageSummary,
    /// The image's JVMs.
    pub jvms: Vec<JvmSummary>,
    /// The gate's verdict.
    pub gate: GateSummary,
}

impl CpuReport {
    /// Describes `image` against `host` under `cap`.
    pub fn new(image: &ImageCpu, host: &CpuRecord, cap: CpuCap) -> Self {
        let rec = &image.record;
        let jvms = rec
            .jvms
            .iter()
            .map(|j| {
                let missing_on_host = j
                    .java_major()
                    .and_then(|m| hotspot::cpu_features(m, &host.cpuid).ok())
                    .map(|offered| j.features.minus(&offered).without(IGNORED).names())
                    .unwrap_or_else(|| FeatureSet::names(&j.features));
                JvmSummary {
                    pid: j.pid,
                    java_version: j.java_version.clone(),
                    source: j.source,
                    features: j.features.names(),
                    note: j.note.clone(),
                    missing_on_host,
                }
            })
            .collect();
        let (passed, reasons, warnings) = match image.check(host, cap) {
            Ok(p) => (true, Vec::new(), p.warnings),
            Err(r) => (
                false,
                r.reasons.iter().map(|r| r.to_string()).collect(),
                Vec::new(),
            ),
        };
        CpuReport {
            host: CpuSummary::of(&host.cpuid),
            image: ImageSummary {
                record: image.source.file(),
                cpu: image.source.file().map(|_| CpuSummary::of(&rec.cpuid)),
                threads: rec
                    .tasks
                    .iter()
                    .map(|t| ThreadSummary {
                        tid: t.tid,
                        xstate_bv: format!("{:#x}", t.xstate_bv),
                        xsave_features: ins::xstate_names(t.xstate_bv),
                    })
                    .collect(),
                unchecked_jvms: rec
                    .unchecked_jvms
                    .iter()
                    .map(|u| format!("{}: {}", u.pid, u.reason))
                    .collect(),
                unrecorded_jvms: image.unrecorded_jvms.clone(),
            },
            jvms,
            gate: GateSummary {
                checks: cap.to_string(),
                passed,
                reasons,
                warnings,
            },
        }
    }

    /// The JSON form, pretty-printed.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a report always serialises")
    }
}

fn cpu_lines(f: &mut fmt::Formatter<'_>, label: &str, c: &CpuSummary) -> fmt::Result {
    write!(f, "{label:<8}{}", c.identity)?;
    if let Some(m) = &c.model_name {
        write!(f, ", {m}")?;
    }
    writeln!(f)?;
    match &c.xcr0 {
        Some(x) => writeln!(f, "        XCR0 {x}: {}", c.xsave_features.join(", ")),
        None => writeln!(f, "        XSAVE disabled"),
    }
}

fn list(v: &[&str]) -> String {
    if v.is_empty() {
        "none".to_string()
    } else {
        v.join(", ")
    }
}

impl fmt::Display for CpuReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        cpu_lines(f, "host:", &self.host)?;
        match (&self.image.record, &self.image.cpu) {
            (Some(file), Some(cpu)) => {
                writeln!(f, "image:  CPU recorded in {file}")?;
                cpu_lines(f, "", cpu)?;
            }
            _ => writeln!(
                f,
                "image:  no CPU record (neither stasis-cpu.json nor cpuinfo.img)"
            )?,
        }
        for t in &self.image.threads {
            writeln!(
                f,
                "        thread {}: xstate_bv {}: {}",
                t.tid,
                t.xstate_bv,
                t.xsave_features.join(", ")
            )?;
        }
        for u in &self.image.unchecked_jvms {
            writeln!(f, "        JVM {u}")?;
        }
        for l in &self.image.unrecorded_jvms {
            writeln!(f, "        maps {l} with no JVM record")?;
        }
        for j in &self.jvms {
            writeln!(
                f,
                "JVM pid {}: Java {}, features from {}",
                j.pid, j.java_version, j.source
            )?;
            writeln!(f, "        {}", list(&j.features))?;
            if let Some(n) = &j.note {
                writeln!(f, "        ({n})")?;
            }
            writeln!(
                f,
                "        missing on this host: {}",
                list(&j.missing_on_host)
            )?;
        }
        if self.gate.passed {
            writeln!(f, "gate ({}): passes", self.gate.checks)?;
        } else {
            writeln!(f, "gate ({}): refused", self.gate.checks)?;
        }
        for r in &self.gate.reasons {
            writeln!(f, "        {r}")?;
        }
        for w in &self.gate.warnings {
            writeln!(f, "        warning: {w}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpuid::HostCpuid;
    use crate::hotspot::Table;
    use crate::image::RecordSource;
    use crate::{JvmRecord, TaskXstate};

    fn image_with_jvm(extra: &[&str]) -> ImageCpu {
        let mut record = CpuRecord::host();
        record.set_tasks(vec![TaskXstate {
            tid: 42,
            xstate_bv: 0x3,
        }]);
        let f = hotspot::features(17, &HostCpuid).unwrap();
        let extra = FeatureSet::from_names(Table::Jdk17, extra).unwrap();
        record.jvms.push(JvmRecord {
            pid: 42,
            java_version: "17.0.15".into(),
            source: JvmSource::Memory,
            features: FeatureSet::from_bits(Table::Jdk17, f.bits() | extra.bits()),
            note: None,
        });
        ImageCpu {
            record,
            source: RecordSource::Stasis,
            unrecorded_jvms: Vec::new(),
        }
    }

    #[test]
    fn the_json_has_host_image_and_jvms_with_hotspot_names() {
        let img = image_with_jvm(&[]);
        let host = CpuRecord::host();
        let r = CpuReport::new(&img, &host, img.cap(None).unwrap());
        let v: serde_json::Value = serde_json::from_str(&r.to_json()).unwrap();
        assert!(v["host"]["family"].is_u64(), "{v}");
        assert_eq!(v["image"]["record"], "stasis-cpu.json");
        assert_eq!(v["image"]["threads"][0]["xstate_bv"], "0x3");
        let j = &v["jvms"][0];
        assert_eq!(
            (j["pid"].as_i64(), j["source"].as_str()),
            (Some(42), Some("memory"))
        );
        assert_eq!(j["java_version"], "17.0.15");
        assert!(
            j["features"].as_array().unwrap().iter().any(|f| f == "cx8"),
            "{j}"
        );
        assert_eq!(j["missing_on_host"], serde_json::json!([]));
        assert_eq!(v["gate"]["checks"], "fpu,jvm");
        assert_eq!(v["gate"]["passed"], true);
    }

    #[test]
    fn a_feature_the_host_lacks_shows_as_missing_and_fails_the_gate() {
        let host = CpuRecord::host();
        let offered = hotspot::cpu_features(17, &host.cpuid).unwrap();
        let Some(absent) = ["avx512_vbmi", "avx512_vbmi2", "sha", "avx512_vaes", "sse4a"]
            .into_iter()
            .find(|n| !offered.contains(n))
        else {
            panic!("this host has every feature tried: {offered}");
        };
        let img = image_with_jvm(&[absent]);
        let r = CpuReport::new(&img, &host, img.cap(None).unwrap());
        assert_eq!(r.jvms[0].missing_on_host, [absent]);
        assert!(!r.gate.passed);
        let text = r.to_string();
        assert!(
            text.contains(&format!("missing on this host: {absent}")),
            "{text}"
        );
        assert!(text.contains("gate (fpu,jvm): refused"), "{text}");
    }
}
