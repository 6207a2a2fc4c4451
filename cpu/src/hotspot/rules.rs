//! HotSpot's rules from CPUID bits to features, per table generation.
//!
//! Two steps, as in `VM_Version::get_processor_features()`:
//!
//! 1. [`cpu_features`] is `feature_flags()`: what the CPU and the OS support. AVX and
//!    everything VEX-encoded need CPUID.1:ECX.AVX and OSXSAVE *and* XCR0 enabling SSE
//!    and YMM state; AVX-512 additionally needs XCR0's opmask, ZMM_Hi256 and Hi16_ZMM
//!    state; APX (JDK 25) needs XCR0 bit 19. `ht` is "more than one thread per core".
//! 2. [`vm_features`] applies the VM settings: `UseSSE` and `UseAVX` (default or from the
//!    command line) clear what the JVM will not use, AVX-512 is left off by default on
//!    Skylake-SP before stepping 5, Knights Landing/Mill lose the features HotSpot
//!    distrusts there, and JDK 25 keeps `apx_f` only with `-XX:+UseAPX`.
//!
//! The result of step 2 is the list `-Xlog:os+cpu` prints and the `_features` word the
//! JIT consults. One composite HotSpot declares, `tscinv`, is never set: its rule reads
//! `supports_tscinv_bit()`, i.e. `_features`, while `_features` is still zero (it is
//! only assigned the result of `feature_flags()` afterwards).

use super::table::{bit, Table};
use crate::cpuid::Vendor;
use crate::decode::{xcr0, Bits};

/// The VM options that change HotSpot's feature set.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VmFlags {
    /// `-XX:UseAVX=N`, `None` when left at its default.
    pub use_avx: Option<i64>,
    /// `-XX:UseSSE=N`, `None` when left at its default.
    pub use_sse: Option<i64>,
    /// `-XX:+UseAPX` (JDK 25, experimental).
    pub use_apx: bool,
    /// `-XX:+UseKNLSetting`: treat the CPU as Knights Landing.
    pub use_knl_setting: bool,
}

const fn m(b: u32) -> u128 {
    1u128 << b
}

/// Features HotSpot derives only from AVX-512 state, cleared when `UseAVX < 3`.
fn avx512_family(table: Table) -> u128 {
    let mut v = m(bit::AVX512F)
        | m(bit::AVX512DQ)
        | m(bit::AVX512CD)
        | m(bit::AVX512BW)
        | m(bit::AVX512VL)
        | m(bit::AVX512_VPOPCNTDQ)
        | m(bit::AVX512_VPCLMULQDQ)
        | m(bit::AVX512_VAES)
        | m(bit::AVX512_VNNI)
        | m(bit::AVX512_VBMI)
        | m(bit::AVX512_VBMI2);
    if table >= Table::Jdk21 {
        v |= m(bit::AVX512_BITALG) | m(bit::AVX512_IFMA);
    }
    if table >= Table::Jdk25 {
        v |= m(bit::AVX512ER)
            | m(bit::AVX512PF)
            | m(bit::APX_F)
            | m(bit::AVX512_FP16)
            | m(bit::AVX10_1)
            | m(bit::AVX10_2);
    }
    v
}

/// HotSpot's `feature_flags()` for `table`: the features the CPU and OS support.
pub(crate) fn cpu_features(table: Table, b: &Bits) -> u128 {
    let vendor = b.vendor.unwrap_or(Vendor::Other);
    let amd = vendor.is_amd_family();
    let intel = vendor == Vendor::Intel;
    let zx = vendor == Vendor::Zhaoxin;
    let t21 = table >= Table::Jdk21;
    let t25 = table >= Table::Jdk25;
    let mut f = 0u128;
    let mut set = |cond: bool, bits: u128| {
        if cond {
            f |= bits;
        }
    };

    set(b.cx8, m(bit::CX8));
    set(b.cmov, m(bit::CMOV));
    set(b.clflush, m(bit::FLUSH));
    set(b.fxsr || (amd && b.fxsr_amd), m(bit::FXSR));
    set(b.threads_per_core > 1, m(bit::HT));
    set(b.mmx || (amd && b.mmx_amd), m(bit::MMX));
    set(b.sse, m(bit::SSE));
    set(b.sse2, m(bit::SSE2));
    set(b.sse3, m(bit::SSE3));
    set(b.ssse3, m(bit::SSSE3));
    set(b.sse4_1, m(bit::SSE4_1));
    set(b.sse4_2, m(bit::SSE4_2));
    set(b.popcnt, m(bit::POPCNT));
    set(
        t25 && b.apx_f && b.xcr0 & xcr0::APX != 0 && b.apx_nci_ndd_nf,
        m(bit::APX_F),
    );

    let avx_state = xcr0::SSE | xcr0::YMM;
    let evex_state = xcr0::OPMASK | xcr0::ZMM_HI256 | xcr0::HI16_ZMM;
    if b.avx && b.osxsave && b.xcr0 & avx_state == avx_state {
        set(true, m(bit::AVX) | m(bit::VZEROUPPER));
        set(t25 && b.sha512, m(bit::SHA512));
        set(t21 && b.f16c, m(bit::F16C));
        if b.avx2 {
            set(true, m(bit::AVX2));
            set(t25 && b.avx_ifma, m(bit::AVX_IFMA));
        }
        set(t25 && b.gfni, m(bit::GFNI));
        let evex = b.xcr0 & evex_state == evex_state;
        if b.avx512f && evex {
            set(true, m(bit::AVX512F));
            set(b.avx512cd, m(bit::AVX512CD));
            set(b.avx512dq, m(bit::AVX512DQ));
            set(t21 && b.avx512ifma, m(bit::AVX512_IFMA));
            set(b.avx512pf, m(bit::AVX512PF));
            set(b.avx512er, m(bit::AVX512ER));
            set(b.avx512bw, m(bit::AVX512BW));
            set(b.avx512vl, m(bit::AVX512VL));
            set(b.avx512_vpopcntdq, m(bit::AVX512_VPOPCNTDQ));
            set(b.avx512_vpclmulqdq, m(bit::AVX512_VPCLMULQDQ));
            set(b.vaes, m(bit::AVX512_VAES));
            // JDK 21 gates GFNI on AVX-512; JDK 25 moved it under plain AVX.
            set(t21 && !t25 && b.gfni, m(bit::GFNI));
            set(b.avx512_vnni, m(bit::AVX512_VNNI));
            set(t21 && b.avx512_bitalg, m(bit::AVX512_BITALG));
            set(b.avx512_vbmi, m(bit::AVX512_VBMI));
            set(b.avx512_vbmi2, m(bit::AVX512_VBMI2));
        }
        if t25 && intel && b.avx10 && b.avx10_vlen_512 && b.avx10_version >= 1 && evex {
            // AVX10.1/512 implies the whole AVX-512 family HotSpot names.
            set(
                true,
                m(bit::AVX10_1)
                    | m(bit::AVX512F)
                    | m(bit::AVX512CD)
                    | m(bit::AVX512DQ)
                    | m(bit::AVX512PF)
                    | m(bit::AVX512ER)
                    | m(bit::AVX512BW)
                    | m(bit::AVX512VL)
                    | m(bit::AVX512_VPOPCNTDQ)
                    | m(bit::AVX512_VPCLMULQDQ)
                    | m(bit::AVX512_VAES)
                    | m(bit::AVX512_VNNI)
                    | m(bit::AVX512_BITALG)
                    | m(bit::AVX512_VBMI)
                    | m(bit::AVX512_VBMI2),
            );
            set(b.avx10_version >= 2, m(bit::AVX10_2));
        }
    }

    set(b.hv, m(bit::HV));
    set(b.bmi1, m(bit::BMI1));
    set(b.tsc, m(bit::TSC));
    set(b.tsc_invariant, m(bit::TSCINV_BIT));
    set(b.aes, m(bit::AES));
    set(t25 && b.lzcnt, m(bit::LZCNT));
    set(t25 && b.prefetchw, m(bit::PREFETCHW_3DNOW));
    set(b.erms, m(bit::ERMS));
    set(t21 && b.fsrm, m(bit::FSRM));
    set(b.clmul, m(bit::CLMUL));
    set(b.rtm, m(bit::RTM));
    set(b.adx, m(bit::ADX));
    set(b.bmi2, m(bit::BMI2));
    set(b.sha, m(bit::SHA));
    set(b.fma, m(bit::FMA));
    set(b.clflushopt, m(bit::FLUSHOPT));
    set(t25 && b.clwb, m(bit::CLWB));
    set(t21 && b.rdtscp, m(bit::RDTSCP));
    set(t21 && b.rdpid, m(bit::RDPID));

    if amd {
        if t25 {
            set(b.tdnow, m(bit::PREFETCHW_3DNOW));
        } else {
            set(b.tdnow || b.prefetchw, m(bit::PREFETCHW_3DNOW));
            set(b.lzcnt, m(bit::LZCNT));
        }
        set(b.sse4a, m(bit::SSE4A));
    }
    if intel {
        if !t25 {
            set(b.lzcnt, m(bit::LZCNT));
            set(b.prefetchw, m(bit::PREFETCHW_3DNOW));
            set(b.clwb, m(bit::CLWB));
        }
        set(t21 && b.serialize, m(bit::SERIALIZE));
        set(t25 && b.avx512_fp16, m(bit::AVX512_FP16));
    }
    if zx && !t25 {
        set(b.lzcnt, m(bit::LZCNT));
        set(b.prefetchw, m(bit::PREFETCHW_3DNOW));
    }
    if t21 {
        set(b.pku, m(bit::PKU));
        set(b.ospke, m(bit::OSPKE));
        set(b.cet_ss, m(bit::CET_SS));
        set(b.cet_ibt, m(bit::CET_IBT));
    }
    if zx && t25 {
        f &= !m(bit::CLWB);
    }
    f
}

/// The glibc features CRaC records beside HotSpot's (its `GLIBC_FEATURE_FLAGS` of
/// JDK 17/21, bits 65–73 of JDK 25's bitmap), as JDK 25 bits.
pub(crate) fn glibc_features(b: &Bits) -> u128 {
    let mut f = 0u128;
    for (cond, b) in [
        (b.fma4, bit::FMA4),
        (b.movbe, bit::MOVBE),
        (b.osxsave, bit::OSXSAVE),
        (b.cet_ibt, bit::IBT),
        (b.cet_ss, bit::SHSTK),
        (b.xsave, bit::XSAVE),
        (b.cx16, bit::CMPXCHG16),
        (b.lahf, bit::LAHFSAHF),
        (b.htt, bit::HTT),
    ] {
        if cond {
            f |= m(b);
        }
    }
    f
}

/// CRaC 17/21's separate glibc word (`GLIBC_FEATURE_FLAGS`): FMA4 0, MOVBE 1,
/// OSXSAVE 2, IBT 3, SHSTK 4, XSAVE 5, CMPXCHG16 6, LAHFSAHF 7, F16C 8, HTT 9.
pub(crate) fn glibc_word(b: &Bits) -> u64 {
    [
        b.fma4, b.movbe, b.osxsave, b.cet_ibt, b.cet_ss, b.xsave, b.cx16, b.lahf, b.f16c, b.htt,
    ]
    .iter()
    .enumerate()
    .filter(|(_, on)| **on)
    .fold(0, |w, (i, _)| w | 1 << i)
}

/// HotSpot's `is_knights_family()`.
fn is_knights(b: &Bits, flags: &VmFlags) -> bool {
    flags.use_knl_setting || (b.family == 6 && matches!(b.model, 0x57 | 0x85))
}

/// `get_processor_features()` after `feature_flags()`: the features a JVM started with
/// `flags` keeps.
pub(crate) fn vm_features(table: Table, b: &Bits, flags: &VmFlags) -> u128 {
    let vendor = b.vendor.unwrap_or(Vendor::Other);
    let t21 = table >= Table::Jdk21;
    let t25 = table >= Table::Jdk25;
    let mut f = cpu_features(table, b);
    let has = |f: u128, bit: u32| f & m(bit) != 0;

    // UseSSE defaults to 99; x86_64 raises anything below 2 to 2.
    let mut use_sse = flags.use_sse.unwrap_or(99).max(2);
    if use_sse < 4 {
        f &= !(m(bit::SSE4_1) | m(bit::SSE4_2));
    }
    if use_sse < 3 {
        f &= !(m(bit::SSE3) | m(bit::SSSE3) | m(bit::SSE4A));
    }

    // ZX family 6/7 forces UseAVX to 0 (AVX is slower than SSE there).
    let zx_no_avx = vendor == Vendor::Zhaoxin && matches!(b.family, 6 | 7);
    let use_avx_default = flags.use_avx.is_none() || zx_no_avx;
    let mut use_avx = if zx_no_avx {
        0
    } else {
        flags.use_avx.unwrap_or(3)
    };

    if t21 {
        // JDK 21 clamps UseSSE to what the CPU has before deriving UseAVX.
        let limit = if use_sse > 3 && has(f, bit::SSE4_1) {
            4
        } else if use_sse > 2 && has(f, bit::SSE3) {
            3
        } else if use_sse > 1 && has(f, bit::SSE2) {
            2
        } else if use_sse > 0 && has(f, bit::SSE) {
            1
        } else {
            0
        };
        if flags.use_sse.is_none() || use_sse > limit {
            use_sse = limit;
        }
    }

    let limit = if use_avx <= 0 || (t21 && use_sse < 4) {
        0
    } else if use_avx > 2 && has(f, bit::AVX512F) {
        3
    } else if use_avx > 1 && has(f, bit::AVX2) {
        2
    } else if has(f, bit::AVX) {
        1
    } else {
        0
    };
    let skylake_sp = vendor == Vendor::Intel && b.family == 6 && b.model == 0x55;
    if use_avx_default {
        use_avx = if limit > 2 && skylake_sp && b.stepping < 5 {
            2
        } else {
            limit
        };
    }
    use_avx = use_avx.clamp(0, limit);

    if use_avx < 3 {
        f &= !avx512_family(table);
    }
    if t25 {
        let apx_supported = has(f, bit::APX_F) && has(f, bit::AVX512VL);
        if !(flags.use_apx && apx_supported) {
            f &= !m(bit::APX_F);
        }
    }
    if use_avx < 2 {
        f &= !m(bit::AVX2);
        if t25 {
            f &= !m(bit::AVX_IFMA);
        }
    }
    if use_avx < 1 {
        f &= !(m(bit::AVX) | m(bit::VZEROUPPER));
        if t21 {
            f &= !m(bit::F16C);
        }
        if t25 {
            f &= !m(bit::SHA512);
        }
    }
    if b.threads_per_core <= 1 {
        f &= !m(bit::HT);
    }
    if vendor == Vendor::Intel && is_knights(b, flags) {
        let mut knl = m(bit::VZEROUPPER)
            | m(bit::AVX512BW)
            | m(bit::AVX512VL)
            | m(bit::AVX512DQ)
            | m(bit::AVX512_VNNI)
            | m(bit::AVX512_VAES)
            | m(bit::AVX512_VPOPCNTDQ)
            | m(bit::AVX512_VPCLMULQDQ)
            | m(bit::AVX512_VBMI)
            | m(bit::AVX512_VBMI2)
            | m(bit::CLWB)
            | m(bit::FLUSHOPT);
        if t21 {
            knl |= m(bit::GFNI) | m(bit::AVX512_BITALG) | m(bit::AVX512_IFMA);
        }
        if t25 {
            knl |= m(bit::AVX_IFMA) | m(bit::AVX512_FP16) | m(bit::AVX10_1) | m(bit::AVX10_2);
        }
        f &= !knl;
    }
    f
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpuid::RecordedCpuid;
    use crate::decode::decode;

    /// An Intel CPU with AVX-512 and full XCR0, family 6 model `model` stepping `stepping`.
    fn avx512_intel(model: u32, stepping: u32) -> RecordedCpuid {
        let eax1 = (model >> 4) << 16 | 6 << 8 | (model & 0xf) << 4 | stepping;
        let mut r = RecordedCpuid::new();
        r.set(0, 0, [0xd, 0x756e_6547, 0x6c65_746e, 0x4965_6e69])
            .set(1, 0, [eax1, 0x0008_0800, 0x1818_2201, 0x0788_8111])
            .set(7, 0, [0, 1 << 5 | 1 << 16 | 1 << 30 | 1 << 31, 0, 0])
            .set_xcr0(Some(0xe7));
        r
    }

    fn names(t: Table, bits: u128) -> Vec<&'static str> {
        crate::hotspot::FeatureSet::from_bits(t, bits).names()
    }

    #[test]
    fn avx512_is_off_by_default_on_skylake_sp_before_stepping_5() {
        let skx = decode(&avx512_intel(0x55, 4));
        let f = names(
            Table::Jdk17,
            vm_features(Table::Jdk17, &skx, &VmFlags::default()),
        );
        assert!(f.contains(&"avx2") && !f.contains(&"avx512f"), "{f:?}");
        let explicit = VmFlags {
            use_avx: Some(3),
            ..VmFlags::default()
        };
        let f = names(Table::Jdk17, vm_features(Table::Jdk17, &skx, &explicit));
        assert!(f.contains(&"avx512f"), "{f:?}");
        let cascade = decode(&avx512_intel(0x55, 7));
        let f = names(
            Table::Jdk17,
            vm_features(Table::Jdk17, &cascade, &VmFlags::default()),
        );
        assert!(f.contains(&"avx512f"), "{f:?}");
    }

    #[test]
    fn avx512_needs_the_opmask_and_zmm_state_in_xcr0() {
        let mut cpu = avx512_intel(0x6a, 6);
        cpu.set_xcr0(Some(0x7));
        let f = names(Table::Jdk21, cpu_features(Table::Jdk21, &decode(&cpu)));
        assert!(f.contains(&"avx2") && !f.contains(&"avx512f"), "{f:?}");
        cpu.set_xcr0(Some(0x3));
        let f = names(Table::Jdk21, cpu_features(Table::Jdk21, &decode(&cpu)));
        assert!(!f.contains(&"avx") && !f.contains(&"avx2"), "{f:?}");
    }

    #[test]
    fn use_sse_2_disables_avx_from_jdk21_on_but_not_in_jdk17() {
        let cpu = decode(&avx512_intel(0x6a, 6));
        let flags = VmFlags {
            use_avx: Some(1),
            use_sse: Some(2),
            ..VmFlags::default()
        };
        let f17 = names(Table::Jdk17, vm_features(Table::Jdk17, &cpu, &flags));
        let f21 = names(Table::Jdk21, vm_features(Table::Jdk21, &cpu, &flags));
        assert!(f17.contains(&"avx") && !f17.contains(&"sse4.1"), "{f17:?}");
        assert!(
            !f21.contains(&"avx") && !f21.contains(&"vzeroupper"),
            "{f21:?}"
        );
    }

    #[test]
    fn apx_needs_use_apx_in_jdk25() {
        let mut cpu = avx512_intel(0xad, 1);
        cpu.set(0, 0, [0x29, 0x756e_6547, 0x6c65_746e, 0x4965_6e69])
            .set(7, 1, [0, 0, 0, 1 << 21])
            .set(0x29, 0, [0, 1, 0, 0])
            .set_xcr0(Some(0x800e7));
        let b = decode(&cpu);
        assert!(cpu_features(Table::Jdk25, &b) & m(bit::APX_F) != 0);
        assert!(vm_features(Table::Jdk25, &b, &VmFlags::default()) & m(bit::APX_F) == 0);
        let apx = VmFlags {
            use_apx: true,
            ..VmFlags::default()
        };
        assert!(vm_features(Table::Jdk25, &b, &apx) & m(bit::APX_F) != 0);
    }
}
