//! Decoding of the raw leaves into the named bits HotSpot's rules read.
//!
//! Leaf 1, leaf 7 (sub-leaves 0 and 1), 0x8000_0001, 0x8000_0007 and 0x8000_001E are
//! decoded through `raw-cpuid`, driven by a [`CpuidSource`] instead of the live CPU.
//! The bits `raw-cpuid` 11 does not name are read here from the registers directly:
//!
//! * CPUID.7.0:EDX FSRM (4), SERIALIZE (14) and CET-IBT (20): `ExtendedFeaturesEdx` has
//!   no such flags and `from_bits_truncate` drops them;
//! * CPUID.7.1:EAX SHA512 (0) and CPUID.7.1:EDX APX_F (21);
//! * leaf 0x24 (AVX10 converged ISA version, 512-bit support) and leaf 0x29 (APX
//!   NCI/NDD/NF), which `raw-cpuid` does not decode at all;
//! * CPUID.0x8000_0001:EDX MMX (23) and FXSR (24), AMD's copies of the leaf-1 bits that
//!   HotSpot also accepts;
//! * the vendor as HotSpot classifies it (Hygon, Zhaoxin), since `raw-cpuid`'s vendor
//!   enum is private and knows only Intel and AMD;
//! * XCR0, which is not a CPUID leaf: `raw-cpuid` reports what leaf 0xD says the CPU
//!   *supports*, HotSpot (and the restore gate) need what the OS *enabled*.

use raw_cpuid::{CpuId, CpuIdResult};

use crate::cpuid::{CpuIdentity, CpuidSource, Vendor};

/// The bits of one CPU that HotSpot's `feature_flags()` consults, named as HotSpot's
/// `CpuidInfo` bitfields name them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Bits {
    pub vendor: Option<Vendor>,
    pub family: u32,
    pub model: u32,
    pub stepping: u32,
    // CPUID.1:EDX
    pub cx8: bool,
    pub cmov: bool,
    pub clflush: bool,
    pub fxsr: bool,
    pub mmx: bool,
    pub sse: bool,
    pub sse2: bool,
    pub tsc: bool,
    pub htt: bool,
    // CPUID.1:ECX
    pub sse3: bool,
    pub clmul: bool,
    pub ssse3: bool,
    pub fma: bool,
    pub cx16: bool,
    pub sse4_1: bool,
    pub sse4_2: bool,
    pub movbe: bool,
    pub popcnt: bool,
    pub aes: bool,
    pub xsave: bool,
    pub osxsave: bool,
    pub avx: bool,
    pub f16c: bool,
    pub hv: bool,
    // CPUID.0x8000_0001
    pub lahf: bool,
    pub lzcnt: bool,
    pub sse4a: bool,
    pub prefetchw: bool,
    pub fma4: bool,
    pub mmx_amd: bool,
    pub fxsr_amd: bool,
    pub rdtscp: bool,
    pub tdnow: bool,
    // CPUID.7.0:EBX
    pub bmi1: bool,
    pub avx2: bool,
    pub bmi2: bool,
    pub erms: bool,
    pub rtm: bool,
    pub avx512f: bool,
    pub avx512dq: bool,
    pub adx: bool,
    pub avx512ifma: bool,
    pub clflushopt: bool,
    pub clwb: bool,
    pub avx512pf: bool,
    pub avx512er: bool,
    pub avx512cd: bool,
    pub sha: bool,
    pub avx512bw: bool,
    pub avx512vl: bool,
    // CPUID.7.0:ECX
    pub avx512_vbmi: bool,
    pub pku: bool,
    pub ospke: bool,
    pub avx512_vbmi2: bool,
    pub cet_ss: bool,
    pub gfni: bool,
    pub vaes: bool,
    pub avx512_vpclmulqdq: bool,
    pub avx512_vnni: bool,
    pub avx512_bitalg: bool,
    pub avx512_vpopcntdq: bool,
    pub rdpid: bool,
    // CPUID.7.0:EDX
    pub fsrm: bool,
    pub serialize: bool,
    pub cet_ibt: bool,
    pub avx512_fp16: bool,
    // CPUID.7.1
    pub sha512: bool,
    pub avx_ifma: bool,
    pub avx10: bool,
    pub apx_f: bool,
    // CPUID.0x24 and 0x29
    pub avx10_version: u32,
    pub avx10_vlen_512: bool,
    pub apx_nci_ndd_nf: bool,
    // CPUID.0x8000_0007:EDX[8]
    pub tsc_invariant: bool,
    /// XCR0 as HotSpot's stub reads it: only when CPUID.1:ECX has both OSXSAVE and AVX,
    /// zero otherwise.
    pub xcr0: u64,
    /// HotSpot's `threads_per_core()`.
    pub threads_per_core: u32,
}

/// XCR0 state components (Intel SDM vol. 1, 13.1).
pub(crate) mod xcr0 {
    pub const SSE: u64 = 1 << 1;
    pub const YMM: u64 = 1 << 2;
    pub const OPMASK: u64 = 1 << 5;
    pub const ZMM_HI256: u64 = 1 << 6;
    pub const HI16_ZMM: u64 = 1 << 7;
    pub const APX: u64 = 1 << 19;
}

fn bit(reg: u32, n: u32) -> bool {
    reg >> n & 1 != 0
}

/// Decodes `src` into [`Bits`].
pub(crate) fn decode(src: &dyn CpuidSource) -> Bits {
    let reader = |leaf: u32, sub: u32| {
        let r = src.cpuid(leaf, sub);
        CpuIdResult {
            eax: r[0],
            ebx: r[1],
            ecx: r[2],
            edx: r[3],
        }
    };
    let cpuid = CpuId::with_cpuid_reader(reader);
    let id = CpuIdentity::of(src);
    let mut b = Bits {
        vendor: Some(id.vendor),
        family: id.family,
        model: id.model,
        stepping: id.stepping,
        ..Bits::default()
    };

    if let Some(fi) = cpuid.get_feature_info() {
        b.cx8 = fi.has_cmpxchg8b();
        b.cmov = fi.has_cmov();
        b.clflush = fi.has_clflush();
        b.fxsr = fi.has_fxsave_fxstor();
        b.mmx = fi.has_mmx();
        b.sse = fi.has_sse();
        b.sse2 = fi.has_sse2();
        b.tsc = fi.has_tsc();
        b.htt = fi.has_htt();
        b.sse3 = fi.has_sse3();
        b.clmul = fi.has_pclmulqdq();
        b.ssse3 = fi.has_ssse3();
        b.fma = fi.has_fma();
        b.cx16 = fi.has_cmpxchg16b();
        b.sse4_1 = fi.has_sse41();
        b.sse4_2 = fi.has_sse42();
        b.movbe = fi.has_movbe();
        b.popcnt = fi.has_popcnt();
        b.aes = fi.has_aesni();
        b.xsave = fi.has_xsave();
        b.osxsave = fi.has_oxsave();
        b.avx = fi.has_avx();
        b.f16c = fi.has_f16c();
        b.hv = fi.has_hypervisor();
    }

    if let Some(ext) = cpuid.get_extended_processor_and_feature_identifiers() {
        b.lahf = ext.has_lahf_sahf();
        b.lzcnt = ext.has_lzcnt();
        b.sse4a = ext.has_sse4a();
        b.prefetchw = ext.has_prefetchw();
        b.fma4 = ext.has_fma4();
        b.rdtscp = ext.has_rdtscp();
        b.tdnow = ext.has_3dnow();
        let edx = src.leaf(0x8000_0001, 0)[3];
        b.mmx_amd = bit(edx, 23);
        b.fxsr_amd = bit(edx, 24);
    }

    if let Some(ef) = cpuid.get_extended_feature_info() {
        b.bmi1 = ef.has_bmi1();
        b.avx2 = ef.has_avx2();
        b.bmi2 = ef.has_bmi2();
        b.erms = ef.has_rep_movsb_stosb();
        b.rtm = ef.has_rtm();
        b.avx512f = ef.has_avx512f();
        b.avx512dq = ef.has_avx512dq();
        b.adx = ef.has_adx();
        b.avx512ifma = ef.has_avx512_ifma();
        b.clflushopt = ef.has_clflushopt();
        b.clwb = ef.has_clwb();
        b.avx512pf = ef.has_avx512pf();
        b.avx512er = ef.has_avx512er();
        b.avx512cd = ef.has_avx512cd();
        b.sha = ef.has_sha();
        b.avx512bw = ef.has_avx512bw();
        b.avx512vl = ef.has_avx512vl();
        b.avx512_vbmi = ef.has_avx512vbmi();
        b.pku = ef.has_pku();
        b.ospke = ef.has_ospke();
        b.avx512_vbmi2 = ef.has_avx512vbmi2();
        b.cet_ss = ef.has_cet_ss();
        b.gfni = ef.has_gfni();
        b.vaes = ef.has_vaes();
        b.avx512_vpclmulqdq = ef.has_vpclmulqdq();
        b.avx512_vnni = ef.has_avx512vnni();
        b.avx512_bitalg = ef.has_avx512bitalg();
        b.avx512_vpopcntdq = ef.has_avx512vpopcntdq();
        b.rdpid = ef.has_rdpid();
        b.avx512_fp16 = ef.has_avx512_fp16();
        b.avx_ifma = ef.has_avx_ifma();
        b.avx10 = ef.has_avx10();
        // Not named by raw-cpuid 11 (see the module documentation).
        let edx0 = src.leaf(7, 0)[3];
        b.fsrm = bit(edx0, 4);
        b.serialize = bit(edx0, 14);
        b.cet_ibt = bit(edx0, 20);
        let l71 = src.leaf(7, 1);
        b.sha512 = bit(l71[0], 0);
        b.apx_f = bit(l71[3], 21);
    }

    let l24 = src.leaf(0x24, 0);
    b.avx10_version = l24[1] & 0xff;
    b.avx10_vlen_512 = bit(l24[1], 18);
    b.apx_nci_ndd_nf = bit(src.leaf(0x29, 0)[1], 0);

    if let Some(apm) = cpuid.get_advanced_power_mgmt_info() {
        b.tsc_invariant = apm.has_invariant_tsc();
    }

    if b.osxsave && b.avx {
        b.xcr0 = src.xcr0().unwrap_or(0);
    }

    b.threads_per_core = threads_per_core(src, &b);
    b
}

/// HotSpot's `supports_processor_topology()`: leaf 0xB exists and its level 0 is valid.
fn supports_processor_topology(src: &dyn CpuidSource) -> bool {
    let b0 = src.leaf(0xb, 0);
    src.max_leaf() >= 0xb && ((b0[0] & 0x1f) | (b0[1] & 0xffff)) != 0
}

/// HotSpot's `cores_per_cpu()`.
fn cores_per_cpu(src: &dyn CpuidSource, vendor: Vendor) -> u32 {
    match vendor {
        Vendor::Intel | Vendor::Zhaoxin => {
            let topology = supports_processor_topology(src);
            let mut result = 0;
            if topology {
                let smt = src.leaf(0xb, 0)[1] & 0xffff;
                let core = src.leaf(0xb, 1)[1] & 0xffff;
                result = core.checked_div(smt).unwrap_or(0);
            }
            if !topology || result == 0 {
                result = (src.leaf(4, 0)[0] >> 26) + 1;
            }
            result
        }
        Vendor::Amd | Vendor::Hygon => (src.leaf(0x8000_0008, 0)[2] & 0xff) + 1,
        Vendor::Other => 1,
    }
}

/// HotSpot's `threads_per_core()`, the input of its `ht` flag.
fn threads_per_core(src: &dyn CpuidSource, b: &Bits) -> u32 {
    let vendor = b.vendor.unwrap_or(Vendor::Other);
    let result =
        if matches!(vendor, Vendor::Intel | Vendor::Zhaoxin) && supports_processor_topology(src) {
            src.leaf(0xb, 0)[1] & 0xffff
        } else if b.htt {
            if b.family >= 0x17 {
                ((src.leaf(0x8000_001e, 0)[1] >> 8) & 0xff) + 1
            } else {
                let per_package = (src.leaf(1, 0)[1] >> 16) & 0xff;
                per_package
                    .checked_div(cores_per_cpu(src, vendor))
                    .unwrap_or(0)
            }
        } else {
            1
        };
    result.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpuid::RecordedCpuid;

    fn intel_with(leaf7: [u32; 4], leaf71: [u32; 4]) -> RecordedCpuid {
        let mut r = RecordedCpuid::new();
        r.set(0, 0, [0x24, 0x756e_6547, 0x6c65_746e, 0x4965_6e69])
            .set(1, 0, [0x0005_06f0, 0x0008_0800, 0x1800_0000, 0x0780_8111])
            .set(7, 0, leaf7)
            .set(7, 1, leaf71)
            .set_xcr0(Some(0x7));
        r
    }

    #[test]
    fn bits_raw_cpuid_does_not_name_are_read_from_the_registers() {
        let edx = 1 << 4 | 1 << 14 | 1 << 20;
        let rec = intel_with([0, 0, 0, edx], [1, 0, 0, 1 << 21]);
        let b = decode(&rec);
        assert!(b.fsrm && b.serialize && b.cet_ibt);
        assert!(b.sha512 && b.apx_f);
    }

    #[test]
    fn xcr0_is_ignored_unless_avx_and_osxsave_are_both_set() {
        let mut rec = intel_with([0; 4], [0; 4]);
        assert_eq!(decode(&rec).xcr0, 0x7);
        rec.set(1, 0, [0x0005_06f0, 0x0008_0800, 0x0800_0000, 0x0780_8111]);
        assert_eq!(decode(&rec).xcr0, 0);
    }

    #[test]
    fn threads_per_core_comes_from_leaf_b_on_intel() {
        let mut rec = intel_with([0; 4], [0; 4]);
        rec.set(0xb, 0, [1, 2, 0x100, 0])
            .set(0xb, 1, [4, 16, 0x201, 0]);
        assert_eq!(decode(&rec).threads_per_core, 2);
    }
}
