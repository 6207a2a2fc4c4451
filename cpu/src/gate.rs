//! The restore gate: may an image recorded on one CPU be restored on this one?
//!
//! [`check`] compares an image's [`CpuRecord`] with the host's under the checks a
//! [`CpuCap`] selects:
//!
//! * `jvm`: every JVM's features ⊆ what the host offers a JVM of that version
//!   (HotSpot's `feature_flags()` on the host). `ht` is ignored, as CRaC ignores it
//!   (JDK-8311164: it varies between cores of hybrid CPUs). `tscinv`, `tscinvbit` and
//!   `hv` only select time sources and report the hypervisor; their absence is a
//!   warning, not a refusal.
//! * `fpu`: the XSAVE state each dumped thread holds (its `xstate_bv`; without
//!   threads, the dump host's XCR0) is enabled in the host's XCR0 (x87 and SSE on a
//!   host without XSAVE). A superset on the host is fine, unlike CRIU's exact
//!   `xsave_size` rule.
//! * `ins`: the image's instruction-set CPUID bits ⊆ the host's.
//! * `cpu`: the capability registers are identical.
//!
//! A refusal names every missing feature and, for a JVM, the `-XX:CPUFeatures=` value
//! (CRaC's option) that would have let it run on both hosts: the JVM's features ANDed
//! with the host's, and for CRaC 17/21 the glibc feature word of both hosts ANDed, in
//! CRaC's `0xCPU,0xGLIBC` form (JDK 25: the two words of its bitmap).

use std::fmt;

use crate::cpuid::CpuidSource;
use crate::hotspot::{self, bit, FeatureSet, Table};
use crate::ins;
use crate::jvm::JvmSource;
use crate::record::CpuRecord;
use crate::CpuError;

/// Which checks to run: CRIU's `--cpu-cap` values plus `jvm`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CpuCap {
    /// XSAVE state compatibility.
    pub fpu: bool,
    /// Identical capability registers.
    pub cpu: bool,
    /// Instruction-set bits ⊆ host.
    pub ins: bool,
    /// Each JVM's HotSpot features ⊆ host.
    pub jvm: bool,
}

impl CpuCap {
    /// No check.
    pub const NONE: CpuCap = CpuCap {
        fpu: false,
        cpu: false,
        ins: false,
        jvm: false,
    };
    /// Every check.
    pub const ALL: CpuCap = CpuCap {
        fpu: true,
        cpu: true,
        ins: true,
        jvm: true,
    };
    /// CRIU's default (`CPU_CAP_DEFAULT`): `fpu,ins`.
    pub const CRIU_DEFAULT: CpuCap = CpuCap {
        fpu: true,
        cpu: false,
        ins: true,
        jvm: false,
    };

    /// The checks for `image` when the user gave none: `fpu` (restore loads every
    /// thread's XSAVE state, which the host must enable), plus `jvm` when the image
    /// holds a JVM.
    ///
    /// CRIU checks nothing unless `--cpu-cap` is given; its `ins` check, which refuses
    /// any CPU lacking any instruction the dump host had whether or not the program
    /// used it, stays opt-in (`--cpu-cap=ins`).
    pub fn default_for(image: &CpuRecord) -> CpuCap {
        Self::for_image(image.has_jvm(), None).expect("no value to parse")
    }

    /// The checks for an image (`has_jvm`: it holds a JVM) under the user's
    /// `--cpu-cap` value: without one, [`CpuCap::default_for`]; with one, the value
    /// parsed on top of CRIU's default plus `jvm` for a JVM image, so that a JVM is
    /// only left unchecked by `^jvm` or `none`.
    pub fn for_image(has_jvm: bool, user: Option<&str>) -> Result<CpuCap, CpuError> {
        match user {
            None => Ok(CpuCap {
                fpu: true,
                jvm: has_jvm,
                ..CpuCap::NONE
            }),
            Some(v) => Self::parse_onto(
                CpuCap {
                    jvm: has_jvm,
                    ..CpuCap::CRIU_DEFAULT
                },
                v,
            ),
        }
    }

    /// Parses a `--cpu-cap` value the way CRIU does: starting from CRIU's default,
    /// each comma-separated item adds a check (`fpu`, `cpu`, `ins`, `jvm`, `all` = every
    /// check) or, prefixed by `^`, removes it; `none` clears everything (`^none` sets
    /// everything). An empty value means `all`.
    pub fn parse(value: &str) -> Result<CpuCap, CpuError> {
        Self::parse_onto(CpuCap::CRIU_DEFAULT, value)
    }

    /// [`CpuCap::parse`] starting from `base` instead of CRIU's default.
    pub fn parse_onto(base: CpuCap, value: &str) -> Result<CpuCap, CpuError> {
        if value.is_empty() {
            return Ok(CpuCap::ALL);
        }
        let mut cap = base;
        for item in value.split(',') {
            let name = item.trim_start_matches('^');
            let inverse = (item.len() - name.len()) % 2 == 1;
            let set = |on: &mut bool| *on = !inverse;
            match name {
                "fpu" => set(&mut cap.fpu),
                "cpu" => set(&mut cap.cpu),
                "ins" => set(&mut cap.ins),
                "jvm" => set(&mut cap.jvm),
                "all" => {
                    cap = if inverse { CpuCap::NONE } else { CpuCap::ALL };
                }
                "none" => {
                    cap = if inverse { CpuCap::ALL } else { CpuCap::NONE };
                }
                // CRIU accepts empty items (`fpu,,ins`, a stray `^`).
                "" => {}
                _ => return Err(CpuError::CpuCap(value.to_string())),
            }
        }
        Ok(cap)
    }
}

impl fmt::Display for CpuCap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = [
            (self.fpu, "fpu"),
            (self.cpu, "cpu"),
            (self.ins, "ins"),
            (self.jvm, "jvm"),
        ]
        .iter()
        .filter(|(on, _)| *on)
        .map(|(_, n)| *n)
        .collect();
        if names.is_empty() {
            f.write_str("none")
        } else {
            f.write_str(&names.join(","))
        }
    }
}

/// One reason a restore is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// A JVM uses HotSpot features the host lacks.
    Jvm {
        /// The JVM's pid in the image.
        pid: i32,
        /// Its Java version.
        java_version: String,
        /// Where its feature set came from.
        source: JvmSource,
        /// HotSpot names of the features the host lacks.
        missing: Vec<&'static str>,
        /// The `-XX:CPUFeatures=` value that would run on both hosts.
        cpu_features: String,
    },
    /// A JVM of a Java version stasis has no table for.
    UnknownJava {
        /// The JVM's pid in the image.
        pid: i32,
        /// Its Java version.
        java_version: String,
    },
    /// The image holds XSAVE state the host's XCR0 does not enable.
    Xsave {
        /// The state components missing.
        missing: Vec<String>,
        /// The threads holding them (empty: the image records no thread, and its dump
        /// host's XCR0 was compared).
        tasks: Vec<i32>,
        /// The image's XSAVE features.
        image: u64,
        /// The host's XCR0 (`None`: XSAVE disabled).
        host: Option<u64>,
    },
    /// A JVM whose features the dump could not determine.
    UncheckedJvm {
        /// The JVM's pid in the image.
        pid: i32,
        /// Why.
        reason: String,
    },
    /// The image maps `libjvm.so` but records no JVM features to check.
    UnrecordedJvm {
        /// The `libjvm.so` files.
        libs: Vec<String>,
    },
    /// `ins` or `cpu` was asked for, but the image has no record of its CPU.
    NoCpuRecord {
        /// The checks that cannot run.
        checks: String,
    },
    /// Instruction-set CPUID bits the image has and the host lacks.
    Ins {
        /// Their `/proc/cpuinfo` names.
        missing: Vec<&'static str>,
    },
    /// Capability registers differ (`cpu` check).
    Cpu {
        /// `-name` for bits only the image has, `+name` for bits only the host has.
        differing: Vec<String>,
    },
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Jvm {
                pid,
                java_version,
                source,
                missing,
                cpu_features,
            } => write!(
                f,
                "JVM pid {pid} (Java {java_version}, features from {source}) uses CPU \
                 features this host lacks: {}; a JVM started with \
                 -XX:CPUFeatures={cpu_features} would run on both hosts",
                missing.join(", ")
            ),
            Refusal::UnknownJava { pid, java_version } => write!(
                f,
                "JVM pid {pid} (Java {java_version}): no HotSpot feature table for this version"
            ),
            Refusal::Xsave {
                missing,
                tasks,
                image,
                host,
            } => {
                let host = host.map_or("XSAVE disabled".to_string(), |h| format!("{h:#x}"));
                let who = match tasks.as_slice() {
                    [] => "the image's CPU enabled".to_string(),
                    [t] => format!("thread {t} holds"),
                    many => {
                        let shown: Vec<String> = many.iter().take(8).map(i32::to_string).collect();
                        let more = many.len().saturating_sub(8);
                        let more = if more > 0 {
                            format!(" and {more} more")
                        } else {
                            String::new()
                        };
                        format!("threads {}{more} hold", shown.join(", "))
                    }
                };
                write!(
                    f,
                    "xsave: {who} register state {} ({image:#x}) that this host's XCR0 \
                     ({host}) does not enable",
                    missing.join(", "),
                )
            }
            Refusal::UncheckedJvm { pid, reason } => write!(
                f,
                "JVM pid {pid}: its CPU features could not be recorded at dump ({reason}); \
                 skip the check with --cpu-cap=^jvm"
            ),
            Refusal::UnrecordedJvm { libs } => write!(
                f,
                "jvm: the image maps {} but records no JVM features to check; \
                 record them at dump (stasis dump, or stasis cpuinfo dump -t PID) or \
                 skip the check with --cpu-cap=^jvm",
                libs.join(", ")
            ),
            Refusal::NoCpuRecord { checks } => write!(
                f,
                "{checks}: the image has no CPU record (no {} or {}) to compare",
                crate::image::RECORD_FILE,
                stasis_images::names::CPUINFO
            ),
            Refusal::Ins { missing } => write!(
                f,
                "ins: the image's CPU has instructions this host lacks: {}",
                missing.join(", ")
            ),
            Refusal::Cpu { differing } => write!(
                f,
                "cpu: CPUID capabilities differ (- image only, + host only): {}",
                differing.join(", ")
            ),
        }
    }
}

/// Why an image may not be restored on this host: every failed check.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct GateRefusal {
    /// The failed checks, each naming what is missing.
    pub reasons: Vec<Refusal>,
}

impl fmt::Display for GateRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the image cannot run on this CPU:")?;
        for r in &self.reasons {
            write!(f, "\n  {r}")?;
        }
        Ok(())
    }
}

/// A passed gate, with what the host lacks that does not prevent running.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GatePass {
    /// Human-readable warnings.
    pub warnings: Vec<String>,
}

/// Features whose absence changes no instruction a JVM executes.
const WARN_ONLY: u128 = 1 << bit::TSCINV | 1 << bit::TSCINV_BIT | 1 << bit::HV;
/// Features ignored outright (CRaC ignores `ht`: it differs between hybrid cores).
pub(crate) const IGNORED: u128 = 1 << bit::HT;

/// Runs the checks `cap` selects for restoring `image` on `host`.
pub fn check(image: &CpuRecord, host: &CpuRecord, cap: CpuCap) -> Result<GatePass, GateRefusal> {
    let mut reasons = Vec::new();
    let mut pass = GatePass::default();

    if cap.jvm {
        for u in &image.unchecked_jvms {
            reasons.push(Refusal::UncheckedJvm {
                pid: u.pid,
                reason: u.reason.clone(),
            });
        }
        for jvm in &image.jvms {
            let Some(major) = jvm.java_major().filter(|m| Table::for_java(*m).is_some()) else {
                reasons.push(Refusal::UnknownJava {
                    pid: jvm.pid,
                    java_version: jvm.java_version.clone(),
                });
                continue;
            };
            let offered =
                hotspot::cpu_features(major, &host.cpuid).expect("a table exists for this major");
            let lacking = jvm.features.minus(&offered);
            let warn = lacking.and(&FeatureSet::from_bits(lacking.table(), WARN_ONLY));
            if !warn.is_empty() {
                pass.warnings.push(format!(
                    "JVM pid {} uses {} which this host lacks (timing/informational only)",
                    jvm.pid, warn
                ));
            }
            let missing = lacking.without(WARN_ONLY | IGNORED);
            if !missing.is_empty() {
                reasons.push(Refusal::Jvm {
                    pid: jvm.pid,
                    java_version: jvm.java_version.clone(),
                    source: jvm.source,
                    missing: missing.names(),
                    cpu_features: cpu_features_option(&jvm.features, &offered, image, host),
                });
            }
        }
    }

    if cap.fpu {
        let image_state = image.xsave_features();
        let host_xcr0 = host.cpuid.xcr0();
        let enabled = host_xcr0.unwrap_or_else(|| legacy_state(&host.cpuid));
        let lacking = image_state & !enabled;
        if lacking != 0 {
            let tasks = image
                .tasks
                .iter()
                .filter(|t| t.xstate_bv & !enabled != 0)
                .map(|t| t.tid)
                .collect();
            reasons.push(Refusal::Xsave {
                missing: ins::xstate_names(lacking),
                tasks,
                image: image_state,
                host: host_xcr0,
            });
        }
    }

    if cap.ins {
        let missing = ins::missing_instructions(&image.cpuid, &host.cpuid);
        if !missing.is_empty() {
            reasons.push(Refusal::Ins { missing });
        }
    }

    if cap.cpu {
        let differing = ins::differing_capabilities(&image.cpuid, &host.cpuid);
        if !differing.is_empty() {
            reasons.push(Refusal::Cpu { differing });
        }
    }

    if reasons.is_empty() {
        Ok(pass)
    } else {
        Err(GateRefusal { reasons })
    }
}

/// The state a CPU without XSAVE (or whose OS did not enable it) saves and restores
/// with FXSAVE: x87 and SSE when it has FXSR, x87 alone otherwise.
fn legacy_state(cpu: &dyn CpuidSource) -> u64 {
    if cpu.leaf(1, 0)[3] >> 24 & 1 != 0 {
        0b11
    } else {
        0b1
    }
}

/// CRaC's `-XX:CPUFeatures=` value for a JVM that would run on both the image's host and
/// this one.
fn cpu_features_option(
    used: &FeatureSet,
    offered: &FeatureSet,
    image: &CpuRecord,
    host: &CpuRecord,
) -> String {
    let both = used.and(offered);
    match used.table() {
        Table::Jdk25 => {
            let glibc =
                hotspot::glibc_features(&image.cpuid).and(&hotspot::glibc_features(&host.cpuid));
            let words = FeatureSet::from_bits(Table::Jdk25, both.bits() | glibc.bits()).words();
            words
                .iter()
                .map(|w| format!("{w:#x}"))
                .collect::<Vec<_>>()
                .join(",")
        }
        _ => format!(
            "{:#x},{:#x}",
            both.words()[0],
            hotspot::glibc_word(&image.cpuid) & hotspot::glibc_word(&host.cpuid)
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_cap_follows_criu_syntax_on_top_of_criu_default() {
        assert_eq!(CpuCap::parse("").unwrap(), CpuCap::ALL);
        assert_eq!(CpuCap::parse("none").unwrap(), CpuCap::NONE);
        assert_eq!(CpuCap::parse("^none").unwrap(), CpuCap::ALL);
        assert_eq!(CpuCap::parse("all").unwrap(), CpuCap::ALL);
        assert_eq!(
            CpuCap::parse("jvm").unwrap(),
            CpuCap {
                jvm: true,
                ..CpuCap::CRIU_DEFAULT
            }
        );
        assert_eq!(
            CpuCap::parse("none,jvm,fpu").unwrap().to_string(),
            "fpu,jvm"
        );
        assert_eq!(CpuCap::parse("^ins").unwrap().to_string(), "fpu");
        assert_eq!(
            CpuCap::parse("all,^cpu").unwrap().to_string(),
            "fpu,ins,jvm"
        );
    }

    #[test]
    fn an_unknown_cpu_cap_is_refused_with_the_value() {
        let err = CpuCap::parse("fpu,avx").unwrap_err().to_string();
        assert!(err.contains("\"fpu,avx\""), "{err}");
    }

    #[test]
    fn a_given_cpu_cap_keeps_the_jvm_check_unless_it_removes_it() {
        let jvm = CpuCap::for_image(true, Some("fpu")).unwrap();
        assert_eq!(jvm.to_string(), "fpu,ins,jvm");
        assert_eq!(
            CpuCap::for_image(true, Some("^jvm")).unwrap().to_string(),
            "fpu,ins"
        );
        assert_eq!(CpuCap::for_image(true, Some("none")).unwrap(), CpuCap::NONE);
        assert_eq!(
            CpuCap::for_image(false, Some("cpu")).unwrap().to_string(),
            "fpu,cpu,ins"
        );
        assert_eq!(CpuCap::for_image(false, None).unwrap().to_string(), "fpu");
    }

    #[test]
    fn without_xsave_the_host_restores_x87_and_sse_only() {
        use crate::cpuid::RecordedCpuid;
        let mut old = RecordedCpuid::new();
        old.set(0, 0, [0xb, 0, 0, 0]).set(1, 0, [0, 0, 0, 1 << 24]);
        let host = CpuRecord::of(&old);
        let mut image = CpuRecord::of(&old);
        image.set_tasks(vec![
            crate::TaskXstate {
                tid: 7,
                xstate_bv: 0b11,
            },
            crate::TaskXstate {
                tid: 8,
                xstate_bv: 0b111,
            },
        ]);
        let err = check(&image, &host, CpuCap::parse("none,fpu").unwrap()).unwrap_err();
        assert_eq!(
            err.reasons,
            [Refusal::Xsave {
                missing: vec!["avx".into()],
                tasks: vec![8],
                image: 0b111,
                host: None
            }]
        );
        assert!(
            err.to_string()
                .contains("thread 8 holds register state avx"),
            "{err}"
        );
        image.set_tasks(vec![crate::TaskXstate {
            tid: 7,
            xstate_bv: 0b11,
        }]);
        check(&image, &host, CpuCap::parse("none,fpu").unwrap()).unwrap();
    }

    #[test]
    fn a_jvm_whose_features_were_not_recorded_is_refused_unless_jvm_is_left_out() {
        let host = CpuRecord::host();
        let mut image = CpuRecord::host();
        image.unchecked_jvms.push(crate::UncheckedJvm {
            pid: 31,
            libjvm: "/opt/jdk11/lib/server/libjvm.so".into(),
            reason: "no HotSpot x86 feature table for Java 11".into(),
        });
        let cap = CpuCap::default_for(&image);
        assert_eq!(cap.to_string(), "fpu,jvm");
        let err = check(&image, &host, cap).unwrap_err().to_string();
        assert!(
            err.contains("JVM pid 31") && err.contains("Java 11"),
            "{err}"
        );
        assert!(err.contains("--cpu-cap=^jvm"), "{err}");
        check(
            &image,
            &host,
            CpuCap::for_image(true, Some("^jvm")).unwrap(),
        )
        .unwrap();
    }

    #[test]
    fn the_default_adds_jvm_only_for_images_with_a_jvm() {
        let mut r = CpuRecord::host();
        assert_eq!(CpuCap::default_for(&r).to_string(), "fpu");
        r.jvms.push(crate::JvmRecord {
            pid: 1,
            java_version: "17".into(),
            source: JvmSource::Table,
            features: FeatureSet::empty(Table::Jdk17),
            note: None,
        });
        assert!(CpuCap::default_for(&r).jvm && CpuCap::default_for(&r).fpu);
    }
}
