//! CRIU's `cpuinfo.img`: the x86 entry CRIU writes at `criu cpuinfo dump` (and at a
//! dump with `--cpu-cap`), computed from a CPUID recording, and the way back from such
//! an entry to a recording the gate can compare.
//!
//! The entry is filled as CRIU 4.x fills it (`compel_cpuid()`, `compel_fpuid()` and
//! `cpu_dump_cpuinfo()`): capability version 2 with the kernel's 19 `cpuid_leafs`
//! words, the synthetic word 3 bits CRIU sets (`cpuid`, `nopl`, `rep_good`), the
//! vendor fix-ups (Intel family 15 loses `rep_good` and `erms`, AMD loses
//! CPUID.1:EDX\[31\]), XSAVE cleared below leaf 0xD, the brand string with its leading
//! blanks removed, and `xfeatures_mask` = CPUID.0xD.0 EDX:EAX filtered by the features
//! CPUID reports, CRIU's `XCNTXT_MASK` and minus the supervisor states; `xsave_size`
//! and `xsave_size_max` are CPUID.0xD.0 EBX and ECX.

use stasis_images::pb;

use crate::cpuid::{CpuidSource, RecordedCpuid, Regs};
use crate::CpuError;

/// `capability_ver` of the words below (CRIU's `NCAPINTS_V2`).
pub const CAPABILITY_VER: u32 = 2;
/// Number of capability words of version 2.
pub const NCAPINTS: usize = 19;

/// CRIU's `enum cpuid_leafs`: which CPUID register each capability word holds.
pub mod word {
    /// CPUID.1:EDX.
    pub const CPUID_1_EDX: usize = 0;
    /// CPUID.0x8000_0001:EDX.
    pub const CPUID_8000_0001_EDX: usize = 1;
    /// Linux-defined synthetic bits (`rep_good`, `nopl`, `cpuid`).
    pub const CPUID_LNX_1: usize = 3;
    /// CPUID.1:ECX.
    pub const CPUID_1_ECX: usize = 4;
    /// CPUID.0x8000_0001:ECX.
    pub const CPUID_8000_0001_ECX: usize = 6;
    /// CPUID.7.0:EBX.
    pub const CPUID_7_0_EBX: usize = 9;
    /// CPUID.0xD.1:EAX.
    pub const CPUID_D_1_EAX: usize = 10;
    /// CPUID.7.0:ECX.
    pub const CPUID_7_0_ECX: usize = 11;
    /// CPUID.0xF.1:EDX.
    pub const CPUID_F_1_EDX: usize = 12;
    /// CPUID.0x8000_0008:EBX.
    pub const CPUID_8000_0008_EBX: usize = 13;
    /// CPUID.6:EAX.
    pub const CPUID_6_EAX: usize = 14;
    /// CPUID.0x8000_000A:EDX.
    pub const CPUID_8000_000A_EDX: usize = 15;
    /// CPUID.0xF.0:EDX.
    pub const CPUID_F_0_EDX: usize = 16;
    /// CPUID.0x8000_0007:EBX.
    pub const CPUID_8000_0007_EBX: usize = 17;
    /// CPUID.7.0:EDX.
    pub const CPUID_7_0_EDX: usize = 18;
}

const EAX: usize = 0;
const EBX: usize = 1;
const ECX: usize = 2;
const EDX: usize = 3;

/// `(word, bit)` of the kernel's `X86_FEATURE_*` CRIU's code refers to.
const FEATURE_FPU: (usize, u32) = (word::CPUID_1_EDX, 0);
const FEATURE_XMM: (usize, u32) = (word::CPUID_1_EDX, 25);
const FEATURE_XSAVE: (usize, u32) = (word::CPUID_1_ECX, 26);
const FEATURE_AVX: (usize, u32) = (word::CPUID_1_ECX, 28);
const FEATURE_MPX: (usize, u32) = (word::CPUID_7_0_EBX, 14);
const FEATURE_AVX512F: (usize, u32) = (word::CPUID_7_0_EBX, 16);
const FEATURE_ERMS: (usize, u32) = (word::CPUID_7_0_EBX, 9);
const FEATURE_INTEL_PT: (usize, u32) = (word::CPUID_7_0_EBX, 25);
const FEATURE_PKU: (usize, u32) = (word::CPUID_7_0_ECX, 3);
const FEATURE_HDC: (usize, u32) = (word::CPUID_6_EAX, 13);
const FEATURE_CQM_LLC: (usize, u32) = (word::CPUID_F_0_EDX, 1);
const FEATURE_REP_GOOD: (usize, u32) = (word::CPUID_LNX_1, 16);
const FEATURE_NOPL: (usize, u32) = (word::CPUID_LNX_1, 20);
const FEATURE_CPUID: (usize, u32) = (word::CPUID_LNX_1, 25);

/// The CPUID feature behind each XSAVE state component 0–10 (CRIU's
/// `xsave_cpuid_features`): a component whose feature CPUID does not report is cleared
/// from `xfeatures_mask`.
const XSAVE_CPUID_FEATURES: [(usize, u32); 11] = [
    FEATURE_FPU,
    FEATURE_XMM,
    FEATURE_AVX,
    FEATURE_MPX,
    FEATURE_MPX,
    FEATURE_AVX512F,
    FEATURE_AVX512F,
    FEATURE_AVX512F,
    FEATURE_INTEL_PT,
    FEATURE_PKU,
    FEATURE_HDC,
];
/// CRIU's `XCNTXT_MASK`: x87, SSE, AVX, MPX (2), AVX-512 (3), PKRU.
const XCNTXT_MASK: u64 = 0x2ff;
/// CRIU's `XFEATURE_MASK_SUPERVISOR`: processor trace and HDC.
const XFEATURE_MASK_SUPERVISOR: u64 = 1 << 8 | 1 << 13;

fn has(caps: &[u32; NCAPINTS], (w, b): (usize, u32)) -> bool {
    caps[w] >> b & 1 != 0
}

fn set(caps: &mut [u32; NCAPINTS], (w, b): (usize, u32), on: bool) {
    if on {
        caps[w] |= 1 << b;
    } else {
        caps[w] &= !(1 << b);
    }
}

/// The vendor string of leaf 0 (EBX, EDX, ECX).
fn vendor_string(src: &dyn CpuidSource) -> String {
    let l0 = src.cpuid(0, 0);
    [l0[EBX], l0[EDX], l0[ECX]]
        .iter()
        .flat_map(|r| r.to_le_bytes())
        .map(char::from)
        .collect()
}

/// Family, model and stepping as CRIU (and the kernel) compute them: the extended
/// family only for family 15, the extended model for family 6 and above.
fn family_model_stepping(eax: u32) -> (u32, u32, u32) {
    let mut family = (eax >> 8) & 0xf;
    let mut model = (eax >> 4) & 0xf;
    if family == 0xf {
        family += (eax >> 20) & 0xff;
    }
    if family >= 6 {
        model += ((eax >> 16) & 0xf) << 4;
    }
    (family, model, eax & 0xf)
}

/// The brand string of leaves 0x8000_0002–4, leading blanks removed, or `None`.
pub fn model_id(src: &dyn CpuidSource) -> Option<String> {
    if src.max_ext_leaf() < 0x8000_0004 {
        return None;
    }
    let bytes: Vec<u8> = (0x8000_0002..=0x8000_0004u32)
        .flat_map(|leaf| src.cpuid(leaf, 0))
        .flat_map(u32::to_le_bytes)
        .take_while(|&b| b != 0)
        .collect();
    let text = String::from_utf8_lossy(&bytes);
    let text = text.trim_start_matches(' ');
    (!text.is_empty()).then(|| text.to_string())
}

/// The 19 capability words CRIU records for the CPU `src` describes.
pub fn capability_words(src: &dyn CpuidSource) -> [u32; NCAPINTS] {
    let mut caps = [0u32; NCAPINTS];
    let level = src.max_leaf();
    let vendor = vendor_string(src);
    let l1 = src.leaf(1, 0);
    let (family, _, _) = family_model_stepping(l1[EAX]);
    if level >= 1 {
        caps[word::CPUID_1_EDX] = l1[EDX];
        caps[word::CPUID_1_ECX] = l1[ECX];
    }
    if level >= 6 {
        caps[word::CPUID_6_EAX] = src.cpuid(6, 0)[EAX];
    }
    if level >= 7 {
        let l7 = src.cpuid(7, 0);
        caps[word::CPUID_7_0_EBX] = l7[EBX];
        caps[word::CPUID_7_0_ECX] = l7[ECX];
        caps[word::CPUID_7_0_EDX] = l7[EDX];
    }
    if level >= 0xd {
        caps[word::CPUID_D_1_EAX] = src.cpuid(0xd, 1)[EAX];
    }
    if level >= 0xf {
        caps[word::CPUID_F_0_EDX] = src.cpuid(0xf, 0)[EDX];
        if has(&caps, FEATURE_CQM_LLC) {
            caps[word::CPUID_F_1_EDX] = src.cpuid(0xf, 1)[EDX];
        }
    }
    let ext = src.max_ext_leaf();
    if ext & 0xffff_0000 == 0x8000_0000 && ext >= 0x8000_0001 {
        let l = src.cpuid(0x8000_0001, 0);
        caps[word::CPUID_8000_0001_ECX] = l[ECX];
        caps[word::CPUID_8000_0001_EDX] = l[EDX];
    }
    if ext >= 0x8000_0007 {
        caps[word::CPUID_8000_0007_EBX] = src.cpuid(0x8000_0007, 0)[EBX];
    }
    if ext >= 0x8000_000a {
        caps[word::CPUID_8000_000A_EDX] = src.cpuid(0x8000_000a, 0)[EDX];
    }
    if ext >= 0x8000_0008 {
        caps[word::CPUID_8000_0008_EBX] = src.cpuid(0x8000_0008, 0)[EBX];
    }
    set(&mut caps, FEATURE_CPUID, true);
    set(&mut caps, FEATURE_NOPL, true);
    if (level as i32) < 0xd {
        set(&mut caps, FEATURE_XSAVE, false);
    }
    match vendor.as_str() {
        "GenuineIntel" if family == 15 => {
            set(&mut caps, FEATURE_REP_GOOD, false);
            set(&mut caps, FEATURE_ERMS, false);
        }
        "GenuineIntel" if family == 6 => set(&mut caps, FEATURE_REP_GOOD, true),
        "AuthenticAMD" => {
            set(&mut caps, (word::CPUID_1_EDX, 31), false);
            // Family 0xf: CRIU also sets rep_good on C+ stepping K8, which no 64-bit
            // machine stasis runs on is.
            if family >= 0x10 {
                set(&mut caps, FEATURE_REP_GOOD, true);
            }
        }
        _ => {}
    }
    caps
}

/// CRIU's `xfeatures_mask`, `xsave_size` and `xsave_size_max` (all zero without XSAVE).
pub fn xsave_layout(src: &dyn CpuidSource, caps: &[u32; NCAPINTS]) -> (u64, u32, u32) {
    if !has(caps, FEATURE_XSAVE) {
        return (0, 0, 0);
    }
    let d0: Regs = src.cpuid(0xd, 0);
    let mut mask = u64::from(d0[EAX]) | u64::from(d0[EDX]) << 32;
    for (i, feature) in XSAVE_CPUID_FEATURES.iter().enumerate() {
        if !has(caps, *feature) {
            mask &= !(1 << i);
        }
    }
    mask &= XCNTXT_MASK & !XFEATURE_MASK_SUPERVISOR;
    (mask, d0[EBX], d0[ECX])
}

/// The `cpuinfo.img` entry CRIU would write on the CPU `src` describes. A vendor other
/// than Intel and AMD (which CRIU refuses to run on) is recorded as `UNKNOWN`.
pub fn cpuinfo_entry(src: &dyn CpuidSource) -> pb::CpuinfoEntry {
    use pb::cpuinfo_x86_entry::Vendor;
    let caps = capability_words(src);
    let (family, model, stepping) = family_model_stepping(src.leaf(1, 0)[EAX]);
    let vendor = match vendor_string(src).as_str() {
        "GenuineIntel" => Vendor::Intel,
        "AuthenticAMD" => Vendor::Amd,
        _ => Vendor::Unknown,
    };
    let (xfeatures_mask, xsave_size, xsave_size_max) = xsave_layout(src, &caps);
    pb::CpuinfoEntry {
        x86_entry: vec![pb::CpuinfoX86Entry {
            vendor_id: vendor as i32,
            cpu_family: family,
            model,
            stepping,
            capability_ver: CAPABILITY_VER,
            capability: caps.to_vec(),
            model_id: model_id(src),
            xfeatures_mask: Some(xfeatures_mask),
            xsave_size: Some(xsave_size),
            xsave_size_max: Some(xsave_size_max),
        }],
        ppc64_entry: Vec::new(),
        s390_entry: Vec::new(),
    }
}

/// A recording rebuilt from a `cpuinfo.img` CRIU (or stasis) wrote, for images that
/// carry no stasis record.
///
/// The entry holds the feature registers of leaves 1, 7.0, 0xD.1 and 0x8000_0001 and
/// the XSAVE layout, which is what the gate's `ins`, `cpu` and JVM rules read. It has
/// no XCR0: CRIU's `xfeatures_mask` (what CPUID offers, filtered to the states Linux
/// enables) stands in for it, and HotSpot's `ht` and time-source bits, which need
/// leaves CRIU does not keep, read as absent.
pub fn recording_from_cpuinfo(entry: &pb::CpuinfoEntry) -> Result<RecordedCpuid, CpuError> {
    use pb::cpuinfo_x86_entry::Vendor;
    let [x86] = entry.x86_entry.as_slice() else {
        return Err(CpuError::Recording(format!(
            "cpuinfo.img holds {} x86 entries, expected one",
            entry.x86_entry.len()
        )));
    };
    let expected = match x86.capability_ver {
        1 => 12,
        2 => NCAPINTS,
        v => {
            return Err(CpuError::Recording(format!(
                "cpuinfo.img: unknown capability version {v}"
            )))
        }
    };
    if x86.capability.len() != expected {
        return Err(CpuError::Recording(format!(
            "cpuinfo.img: {} capability words, version {} has {expected}",
            x86.capability.len(),
            x86.capability_ver
        )));
    }
    let mut caps = [0u32; NCAPINTS];
    caps[..expected].copy_from_slice(&x86.capability);
    let vendor: &[u8; 12] = match Vendor::try_from(x86.vendor_id) {
        Ok(Vendor::Intel) => b"GenuineIntel",
        Ok(Vendor::Amd) => b"AuthenticAMD",
        _ => {
            return Err(CpuError::Recording(format!(
                "cpuinfo.img: unknown vendor {}",
                x86.vendor_id
            )))
        }
    };
    let reg = |i: usize| u32::from_le_bytes(vendor[i..i + 4].try_into().expect("4 bytes"));
    // Encode family/model/stepping back into CPUID.1:EAX.
    let (family, model) = (x86.cpu_family, x86.model);
    let (base_family, ext_family) = if family >= 0xf {
        (0xf, family - 0xf)
    } else {
        (family, 0)
    };
    let eax1 = (x86.stepping & 0xf)
        | (model & 0xf) << 4
        | (base_family & 0xf) << 8
        | ((model >> 4) & 0xf) << 16
        | (ext_family & 0xff) << 20;
    let xmask = x86.xfeatures_mask.unwrap_or(0);
    let mut rec = RecordedCpuid::new();
    rec.set(0, 0, [0xd, reg(0), reg(8), reg(4)])
        .set(
            1,
            0,
            [eax1, 0, caps[word::CPUID_1_ECX], caps[word::CPUID_1_EDX]],
        )
        .set(6, 0, [caps[word::CPUID_6_EAX], 0, 0, 0])
        .set(
            7,
            0,
            [
                0,
                caps[word::CPUID_7_0_EBX],
                caps[word::CPUID_7_0_ECX],
                caps[word::CPUID_7_0_EDX],
            ],
        )
        .set(
            0xd,
            0,
            [
                xmask as u32,
                x86.xsave_size.unwrap_or(0),
                x86.xsave_size_max.unwrap_or(0),
                (xmask >> 32) as u32,
            ],
        )
        .set(0xd, 1, [caps[word::CPUID_D_1_EAX], 0, 0, 0])
        .set(0x8000_0000, 0, [0x8000_0008, 0, 0, 0])
        .set(
            0x8000_0001,
            0,
            [
                0,
                0,
                caps[word::CPUID_8000_0001_ECX],
                caps[word::CPUID_8000_0001_EDX],
            ],
        )
        .set(0x8000_0007, 0, [0, caps[word::CPUID_8000_0007_EBX], 0, 0])
        .set(0x8000_0008, 0, [0, caps[word::CPUID_8000_0008_EBX], 0, 0])
        .set_xcr0(has(&caps, (word::CPUID_1_ECX, 27)).then_some(xmask));
    Ok(rec)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpuid::HostCpuid;

    /// An Intel Xeon Gold 6248 (Cascade Lake) as KVM shows it.
    fn cascade_lake() -> RecordedCpuid {
        let mut r = RecordedCpuid::new();
        r.set(0, 0, [0x16, 0x756e_6547, 0x6c65_746e, 0x4965_6e69])
            .set(1, 0, [0x0005_0657, 0x0002_0800, 0xfffa_3223, 0x1f8b_fbff])
            .set(6, 0, [0x4, 0, 0, 0])
            .set(7, 0, [0, 0xd19f_4fbb, 0x0000_0808, 0xa400_0000])
            .set(0xd, 0, [0x2e7, 0xa88, 0xa88, 0])
            .set(0xd, 1, [0xf, 0, 0, 0])
            .set(0x8000_0000, 0, [0x8000_0008, 0, 0, 0])
            .set(0x8000_0001, 0, [0, 0, 0x121, 0x2c10_0800])
            .set(0x8000_0008, 0, [0x3028, 0x0100_d000, 0, 0])
            .set_xcr0(Some(0x2e7));
        // Intel right-justifies some brand strings; CRIU strips the leading blanks.
        let brand = b"    Intel(R) Xeon(R) Gold 6248 CPU @ 2.50GHz\0\0\0\0";
        for (i, chunk) in brand.chunks(16).enumerate() {
            let w = |j: usize| u32::from_le_bytes(chunk[j..j + 4].try_into().unwrap());
            r.set(0x8000_0002 + i as u32, 0, [w(0), w(4), w(8), w(12)]);
        }
        r
    }

    #[test]
    fn the_entry_holds_criu_words_family_model_and_the_filtered_xsave_mask() {
        let e = cpuinfo_entry(&cascade_lake());
        let x = &e.x86_entry[0];
        assert_eq!(x.vendor_id, pb::cpuinfo_x86_entry::Vendor::Intel as i32);
        assert_eq!((x.cpu_family, x.model, x.stepping), (6, 0x55, 7));
        assert_eq!(x.capability_ver, 2);
        assert_eq!(x.capability.len(), 19);
        assert_eq!(x.capability[word::CPUID_1_ECX], 0xfffa_3223);
        assert_eq!(x.capability[word::CPUID_7_0_EDX], 0xa400_0000);
        // cpuid, nopl and (Intel family 6) rep_good.
        assert_eq!(x.capability[word::CPUID_LNX_1], 1 << 25 | 1 << 20 | 1 << 16);
        assert_eq!(x.xfeatures_mask, Some(0x2e7));
        assert_eq!((x.xsave_size, x.xsave_size_max), (Some(0xa88), Some(0xa88)));
        assert_eq!(
            x.model_id.as_deref(),
            Some("Intel(R) Xeon(R) Gold 6248 CPU @ 2.50GHz")
        );
    }

    #[test]
    fn components_whose_feature_cpuid_hides_leave_the_xsave_mask() {
        let mut cpu = cascade_lake();
        // AVX-512F cleared in CPUID.7.0:EBX while leaf 0xD still lists its states.
        cpu.set(7, 0, [0, 0xd19e_4fbb, 0x0000_0808, 0xa400_0000]);
        let x = &cpuinfo_entry(&cpu).x86_entry[0];
        assert_eq!(x.xfeatures_mask, Some(0x207));
    }

    #[test]
    fn below_leaf_0xd_there_is_no_xsave() {
        let mut cpu = cascade_lake();
        cpu.set(0, 0, [0xb, 0x756e_6547, 0x6c65_746e, 0x4965_6e69]);
        let x = &cpuinfo_entry(&cpu).x86_entry[0];
        assert_eq!(x.capability[word::CPUID_1_ECX] >> 26 & 1, 0);
        assert_eq!(x.xfeatures_mask, Some(0));
    }

    #[test]
    fn an_entry_converts_back_to_the_feature_leaves() {
        let cpu = cascade_lake();
        let back = recording_from_cpuinfo(&cpuinfo_entry(&cpu)).unwrap();
        for (leaf, sub, reg) in [
            (1, 0, ECX),
            (1, 0, EDX),
            (7, 0, EBX),
            (7, 0, ECX),
            (7, 0, EDX),
            (0xd, 1, EAX),
            (0x8000_0001, 0, ECX),
        ] {
            assert_eq!(
                back.leaf(leaf, sub)[reg],
                cpu.leaf(leaf, sub)[reg],
                "leaf {leaf:#x}.{sub} reg {reg}"
            );
        }
        assert_eq!(back.leaf(1, 0)[EAX], cpu.leaf(1, 0)[EAX]);
        assert_eq!(back.xcr0(), Some(0x2e7));
        assert_eq!(crate::CpuIdentity::of(&back), crate::CpuIdentity::of(&cpu));
    }

    #[test]
    fn a_malformed_entry_is_refused_naming_what_is_wrong() {
        let mut e = cpuinfo_entry(&cascade_lake());
        e.x86_entry[0].capability.pop();
        let err = recording_from_cpuinfo(&e).unwrap_err().to_string();
        assert!(err.contains("18 capability words"), "{err}");
        e.x86_entry.clear();
        assert!(recording_from_cpuinfo(&e).is_err());
    }

    #[test]
    fn the_host_entry_matches_its_own_cpuid() {
        let x = &cpuinfo_entry(&HostCpuid).x86_entry[0];
        // CRIU clears CPUID.1:EDX[31] on AMD only.
        let edx = HostCpuid.cpuid(1, 0)[EDX] & !(1 << 31);
        assert_eq!(x.capability[word::CPUID_1_EDX] & !(1 << 31), edx);
    }
}
