//! Raw CPUID leaves and XCR0: the [`CpuidSource`] trait, the live [`HostCpuid`], and the
//! serialisable [`RecordedCpuid`] that an image stores and tests feed in.
//!
//! Everything above this module computes from a `CpuidSource`, so a feature set is the
//! same whether it is computed on the host, from an image, or from a fixture describing
//! another CPU.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::CpuError;

/// One CPUID result, `[eax, ebx, ecx, edx]`.
pub type Regs = [u32; 4];

/// The leaves stasis records, as `(leaf, subleaf)`.
///
/// 0 and 0x8000_0000 give the vendor and the maximum leaves. 1, 7.0, 7.1, 0x8000_0001,
/// 0x8000_0007 and 0x24 carry the feature bits HotSpot reads; 0xD.0/0xD.1 describe the
/// XSAVE area; 0x8000_0008 the address sizes and AMD core count. 4.0, 0xB.0, 0xB.1 and
/// 0x8000_001E are HotSpot's topology inputs (its `ht` flag) and 0x29 its APX leaf.
/// 6, 0xF.0, 0xF.1 and 0x8000_000A are the rest of CRIU's capability words, and
/// 0x8000_0002–4 the brand string, so that `cpuinfo.img` derives from the recording.
pub const RECORDED_LEAVES: &[(u32, u32)] = &[
    (0x0, 0),
    (0x1, 0),
    (0x4, 0),
    (0x6, 0),
    (0x7, 0),
    (0x7, 1),
    (0xb, 0),
    (0xb, 1),
    (0xd, 0),
    (0xd, 1),
    (0xf, 0),
    (0xf, 1),
    (0x24, 0),
    (0x29, 0),
    (0x8000_0000, 0),
    (0x8000_0001, 0),
    (0x8000_0002, 0),
    (0x8000_0003, 0),
    (0x8000_0004, 0),
    (0x8000_0007, 0),
    (0x8000_0008, 0),
    (0x8000_000a, 0),
    (0x8000_001e, 0),
];

/// A reader of CPUID leaves and XCR0: the live CPU or a recording of one.
pub trait CpuidSource {
    /// The registers of `cpuid(leaf, subleaf)`; all zero for a leaf that was not recorded
    /// or lies above the maximum leaf.
    fn cpuid(&self, leaf: u32, subleaf: u32) -> Regs;

    /// XCR0 as `xgetbv(0)` returns it, or `None` when the OS did not enable XSAVE.
    fn xcr0(&self) -> Option<u64>;

    /// The highest basic leaf (CPUID.0:EAX).
    fn max_leaf(&self) -> u32 {
        self.cpuid(0, 0)[0]
    }

    /// The highest extended leaf (CPUID.0x8000_0000:EAX).
    fn max_ext_leaf(&self) -> u32 {
        self.cpuid(0x8000_0000, 0)[0]
    }

    /// `cpuid(leaf, subleaf)` when `leaf` does not exceed the maximum of its range,
    /// zeros otherwise: what a careful reader (HotSpot, the kernel) sees.
    fn leaf(&self, leaf: u32, subleaf: u32) -> Regs {
        let max = if leaf >= 0x8000_0000 {
            self.max_ext_leaf()
        } else {
            self.max_leaf()
        };
        if leaf <= max {
            self.cpuid(leaf, subleaf)
        } else {
            [0; 4]
        }
    }
}

/// The CPU this process runs on.
#[derive(Debug, Clone, Copy, Default)]
pub struct HostCpuid;

impl CpuidSource for HostCpuid {
    fn cpuid(&self, leaf: u32, subleaf: u32) -> Regs {
        stasis_sys::cpu::cpuid(leaf, subleaf)
    }

    fn xcr0(&self) -> Option<u64> {
        stasis_sys::cpu::xgetbv(0)
    }
}

/// A recording of the [`RECORDED_LEAVES`] and XCR0 of some CPU.
///
/// Serialised as JSON with hexadecimal strings, the form CPUID dump tools print, one
/// leaf per line: `{"xcr0": "0x2e7", "leaves": {"0x00000001.0": "0x00050657 0x01020800
/// 0xfffa3203 0x1f8bfbff"}}` (registers in the order eax ebx ecx edx).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RecordedJson", into = "RecordedJson")]
pub struct RecordedCpuid {
    leaves: BTreeMap<(u32, u32), Regs>,
    xcr0: Option<u64>,
}

impl RecordedCpuid {
    /// An empty recording (every leaf reads as zero, no XCR0).
    pub fn new() -> Self {
        Self::default()
    }

    /// Records the [`RECORDED_LEAVES`] of `src` that exist below its maximum leaves,
    /// and its XCR0.
    pub fn capture(src: &dyn CpuidSource) -> Self {
        let max = src.max_leaf();
        let max_ext = src.max_ext_leaf();
        let mut rec = Self::new();
        for &(leaf, sub) in RECORDED_LEAVES {
            let in_range = if leaf >= 0x8000_0000 {
                leaf <= max_ext
            } else {
                leaf <= max
            };
            if in_range {
                rec.leaves.insert((leaf, sub), src.cpuid(leaf, sub));
            }
        }
        rec.xcr0 = src.xcr0();
        rec
    }

    /// Sets one leaf; used to build recordings of documented CPUs.
    pub fn set(&mut self, leaf: u32, subleaf: u32, regs: Regs) -> &mut Self {
        self.leaves.insert((leaf, subleaf), regs);
        self
    }

    /// Sets XCR0.
    pub fn set_xcr0(&mut self, xcr0: Option<u64>) -> &mut Self {
        self.xcr0 = xcr0;
        self
    }

    /// The recorded `(leaf, subleaf)` pairs and their registers, in order.
    pub fn leaves(&self) -> impl Iterator<Item = ((u32, u32), Regs)> + '_ {
        self.leaves.iter().map(|(k, v)| (*k, *v))
    }

    /// Parses the JSON form.
    pub fn from_json(text: &str) -> Result<Self, CpuError> {
        serde_json::from_str(text).map_err(|e| CpuError::Recording(e.to_string()))
    }

    /// The JSON form, pretty-printed.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a RecordedCpuid always serialises")
    }
}

impl CpuidSource for RecordedCpuid {
    fn cpuid(&self, leaf: u32, subleaf: u32) -> Regs {
        self.leaves
            .get(&(leaf, subleaf))
            .copied()
            .unwrap_or_default()
    }

    fn xcr0(&self) -> Option<u64> {
        self.xcr0
    }
}

/// Upper bound on the leaves a recording may hold: the JSON is image data, and a
/// recording claiming thousands of leaves is corrupt, not large.
const MAX_RECORDED_LEAVES: usize = 256;

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RecordedJson {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    xcr0: Option<String>,
    leaves: BTreeMap<String, String>,
}

impl From<RecordedCpuid> for RecordedJson {
    fn from(r: RecordedCpuid) -> Self {
        RecordedJson {
            xcr0: r.xcr0.map(|x| format!("{x:#x}")),
            leaves: r
                .leaves
                .iter()
                .map(|(&(leaf, sub), regs)| {
                    (
                        format!("{leaf:#010x}.{sub}"),
                        regs.map(|v| format!("{v:#010x}")).join(" "),
                    )
                })
                .collect(),
        }
    }
}

impl TryFrom<RecordedJson> for RecordedCpuid {
    type Error = String;

    fn try_from(j: RecordedJson) -> Result<Self, String> {
        if j.leaves.len() > MAX_RECORDED_LEAVES {
            return Err(format!(
                "{} leaves recorded, at most {MAX_RECORDED_LEAVES} expected",
                j.leaves.len()
            ));
        }
        let mut rec = RecordedCpuid::new();
        for (key, regs) in &j.leaves {
            let (leaf, sub) = key
                .split_once('.')
                .ok_or_else(|| format!("leaf key {key:?} is not LEAF.SUBLEAF"))?;
            let leaf = parse_hex_u32(leaf).map_err(|e| format!("leaf key {key:?}: {e}"))?;
            let sub = sub
                .parse::<u32>()
                .map_err(|e| format!("leaf key {key:?}: subleaf: {e}"))?;
            let words: Vec<&str> = regs.split_whitespace().collect();
            if words.len() != 4 {
                return Err(format!(
                    "leaf {key}: {} registers, expected eax ebx ecx edx",
                    words.len()
                ));
            }
            let mut out = [0u32; 4];
            for (slot, text) in out.iter_mut().zip(words) {
                *slot = parse_hex_u32(text).map_err(|e| format!("leaf {key}: {e}"))?;
            }
            rec.leaves.insert((leaf, sub), out);
        }
        rec.xcr0 = match j.xcr0 {
            None => None,
            Some(x) => Some(parse_hex_u64(&x).map_err(|e| format!("xcr0: {e}"))?),
        };
        Ok(rec)
    }
}

fn parse_hex_u32(s: &str) -> Result<u32, String> {
    let digits = s.strip_prefix("0x").unwrap_or(s);
    u32::from_str_radix(digits, 16).map_err(|e| format!("{s:?} is not a 32-bit hex value: {e}"))
}

fn parse_hex_u64(s: &str) -> Result<u64, String> {
    let digits = s.strip_prefix("0x").unwrap_or(s);
    u64::from_str_radix(digits, 16).map_err(|e| format!("{s:?} is not a 64-bit hex value: {e}"))
}

/// The CPU vendor, by the 12-byte string of leaf 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Vendor {
    /// "GenuineIntel".
    Intel,
    /// "AuthenticAMD".
    Amd,
    /// "HygonGenuine" (AMD Zen licensees; HotSpot treats them as AMD family).
    Hygon,
    /// "CentaurHauls" or "  Shanghai  " (Zhaoxin; HotSpot's `is_zx`).
    Zhaoxin,
    /// Anything else.
    Other,
}

impl Vendor {
    /// HotSpot's `is_amd_family()`: AMD or Hygon.
    pub fn is_amd_family(self) -> bool {
        matches!(self, Vendor::Amd | Vendor::Hygon)
    }
}

/// Vendor, family, model and stepping, decoded the way HotSpot and the kernel do
/// (family = base + extended; model = base | extended << 4).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CpuIdentity {
    /// The 12-character vendor string of leaf 0.
    pub vendor_id: String,
    /// The vendor it names.
    pub vendor: Vendor,
    /// Display family.
    pub family: u32,
    /// Display model.
    pub model: u32,
    /// Stepping.
    pub stepping: u32,
}

impl CpuIdentity {
    /// Decodes leaves 0 and 1 of `src`.
    pub fn of(src: &dyn CpuidSource) -> Self {
        let l0 = src.cpuid(0, 0);
        let mut bytes = Vec::with_capacity(12);
        for reg in [l0[1], l0[3], l0[2]] {
            bytes.extend_from_slice(&reg.to_le_bytes());
        }
        let vendor_id: String = bytes.iter().map(|&b| b as char).collect();
        let vendor = match vendor_id.as_str() {
            "GenuineIntel" => Vendor::Intel,
            "AuthenticAMD" => Vendor::Amd,
            "HygonGenuine" => Vendor::Hygon,
            "CentaurHauls" | "  Shanghai  " => Vendor::Zhaoxin,
            _ => Vendor::Other,
        };
        let eax = src.leaf(1, 0)[0];
        let base_family = (eax >> 8) & 0xf;
        let ext_family = (eax >> 20) & 0xff;
        let base_model = (eax >> 4) & 0xf;
        let ext_model = (eax >> 16) & 0xf;
        CpuIdentity {
            vendor_id,
            vendor,
            family: base_family + ext_family,
            model: base_model | (ext_model << 4),
            stepping: eax & 0xf,
        }
    }
}

impl fmt::Display for CpuIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} family {:#x} model {:#x} stepping {}",
            self.vendor_id.trim(),
            self.family,
            self.model,
            self.stepping
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recording_round_trips_through_its_json_form() {
        let mut rec = RecordedCpuid::new();
        rec.set(0, 0, [0xd, 0x756e_6547, 0x6c65_746e, 0x4965_6e69])
            .set(7, 1, [1, 2, 3, 4])
            .set_xcr0(Some(0x2e7));
        let json = rec.to_json();
        assert!(json.contains("\"0x00000007.1\""), "{json}");
        assert_eq!(RecordedCpuid::from_json(&json).unwrap(), rec);
    }

    #[test]
    fn an_unrecorded_leaf_reads_as_zero() {
        let rec = RecordedCpuid::new();
        assert_eq!(rec.cpuid(7, 0), [0; 4]);
        assert_eq!(rec.xcr0(), None);
    }

    #[test]
    fn a_leaf_above_the_maximum_is_hidden_by_leaf() {
        let mut rec = RecordedCpuid::new();
        rec.set(0, 0, [1, 0, 0, 0])
            .set(7, 0, [0, 0xffff_ffff, 0, 0]);
        assert_eq!(rec.leaf(7, 0), [0; 4]);
    }

    #[test]
    fn a_malformed_recording_is_an_error_naming_the_bad_field() {
        let err = RecordedCpuid::from_json(r#"{"leaves":{"0x1":"0 0 0 0"}}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("LEAF.SUBLEAF"), "{err}");
        let err = RecordedCpuid::from_json(r#"{"leaves":{"0x1.0":"zz 0 0 0"}}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("\"zz\""), "{err}");
    }

    #[test]
    fn identity_decodes_extended_family_and_model() {
        let mut rec = RecordedCpuid::new();
        // AMD Zen 2 (EPYC 7002): family 0x17, model 0x31.
        rec.set(0, 0, [0x10, 0x6874_7541, 0x444d_4163, 0x6974_6e65])
            .set(1, 0, [0x0083_0f10, 0, 0, 0]);
        let id = CpuIdentity::of(&rec);
        assert_eq!(id.vendor, Vendor::Amd);
        assert_eq!((id.family, id.model, id.stepping), (0x17, 0x31, 0));
    }

    #[test]
    fn capture_of_the_host_records_leaf_one_and_xcr0() {
        let rec = RecordedCpuid::capture(&HostCpuid);
        assert_eq!(rec.cpuid(1, 0), HostCpuid.cpuid(1, 0));
        assert_eq!(rec.xcr0(), HostCpuid.xcr0());
    }
}
