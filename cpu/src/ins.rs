//! Named CPUID bits for CRIU's `ins` and `cpu` checks and XCR0 state components for
//! the `fpu` check.
//!
//! The `ins` set follows CRIU's `x86_ins_capability_mask` (instruction-set bits only,
//! no model-specific or OS-state bits), plus what CRIU's mask omits although code uses
//! it: FMA, AVX512-IFMA, CLWB, SERIALIZE, FSRM, AVX512-FP16, AMX, and leaf 7.1.
//! Names are the kernel's `/proc/cpuinfo` flags.

use crate::cpuid::CpuidSource;

/// One CPUID bit: leaf, subleaf, register index (0 = eax … 3 = edx), bit, name.
pub(crate) type NamedBit = (u32, u32, usize, u32, &'static str);

const EAX: usize = 0;
const EBX: usize = 1;
const ECX: usize = 2;
const EDX: usize = 3;

/// Instruction-set bits whose absence on the host is fatal for code compiled for them.
pub(crate) const INSTRUCTIONS: &[NamedBit] = &[
    (1, 0, EDX, 0, "fpu"),
    (1, 0, EDX, 4, "tsc"),
    (1, 0, EDX, 8, "cx8"),
    (1, 0, EDX, 11, "sep"),
    (1, 0, EDX, 15, "cmov"),
    (1, 0, EDX, 19, "clflush"),
    (1, 0, EDX, 23, "mmx"),
    (1, 0, EDX, 24, "fxsr"),
    (1, 0, EDX, 25, "sse"),
    (1, 0, EDX, 26, "sse2"),
    (1, 0, ECX, 0, "pni"),
    (1, 0, ECX, 1, "pclmulqdq"),
    (1, 0, ECX, 3, "monitor"),
    (1, 0, ECX, 9, "ssse3"),
    (1, 0, ECX, 12, "fma"),
    (1, 0, ECX, 13, "cx16"),
    (1, 0, ECX, 19, "sse4_1"),
    (1, 0, ECX, 20, "sse4_2"),
    (1, 0, ECX, 22, "movbe"),
    (1, 0, ECX, 23, "popcnt"),
    (1, 0, ECX, 25, "aes"),
    (1, 0, ECX, 26, "xsave"),
    (1, 0, ECX, 27, "osxsave"),
    (1, 0, ECX, 28, "avx"),
    (1, 0, ECX, 29, "f16c"),
    (1, 0, ECX, 30, "rdrand"),
    (7, 0, EBX, 0, "fsgsbase"),
    (7, 0, EBX, 3, "bmi1"),
    (7, 0, EBX, 4, "hle"),
    (7, 0, EBX, 5, "avx2"),
    (7, 0, EBX, 8, "bmi2"),
    (7, 0, EBX, 9, "erms"),
    (7, 0, EBX, 10, "invpcid"),
    (7, 0, EBX, 11, "rtm"),
    (7, 0, EBX, 14, "mpx"),
    (7, 0, EBX, 16, "avx512f"),
    (7, 0, EBX, 17, "avx512dq"),
    (7, 0, EBX, 18, "rdseed"),
    (7, 0, EBX, 19, "adx"),
    (7, 0, EBX, 21, "avx512ifma"),
    (7, 0, EBX, 23, "clflushopt"),
    (7, 0, EBX, 24, "clwb"),
    (7, 0, EBX, 26, "avx512pf"),
    (7, 0, EBX, 27, "avx512er"),
    (7, 0, EBX, 28, "avx512cd"),
    (7, 0, EBX, 29, "sha_ni"),
    (7, 0, EBX, 30, "avx512bw"),
    (7, 0, EBX, 31, "avx512vl"),
    (7, 0, ECX, 1, "avx512vbmi"),
    (7, 0, ECX, 5, "waitpkg"),
    (7, 0, ECX, 6, "avx512_vbmi2"),
    (7, 0, ECX, 8, "gfni"),
    (7, 0, ECX, 9, "vaes"),
    (7, 0, ECX, 10, "vpclmulqdq"),
    (7, 0, ECX, 11, "avx512_vnni"),
    (7, 0, ECX, 12, "avx512_bitalg"),
    (7, 0, ECX, 14, "avx512_vpopcntdq"),
    (7, 0, ECX, 22, "rdpid"),
    (7, 0, ECX, 27, "movdiri"),
    (7, 0, ECX, 28, "movdir64b"),
    (7, 0, EDX, 2, "avx512_4vnniw"),
    (7, 0, EDX, 3, "avx512_4fmaps"),
    (7, 0, EDX, 4, "fsrm"),
    (7, 0, EDX, 8, "avx512_vp2intersect"),
    (7, 0, EDX, 14, "serialize"),
    (7, 0, EDX, 22, "amx_bf16"),
    (7, 0, EDX, 23, "avx512_fp16"),
    (7, 0, EDX, 24, "amx_tile"),
    (7, 0, EDX, 25, "amx_int8"),
    (7, 1, EAX, 0, "sha512"),
    (7, 1, EAX, 4, "avx_vnni"),
    (7, 1, EAX, 5, "avx512_bf16"),
    (7, 1, EAX, 7, "cmpccxadd"),
    (7, 1, EAX, 21, "amx_fp16"),
    (7, 1, EAX, 23, "avx_ifma"),
    (7, 1, EDX, 4, "avx_vnni_int8"),
    (7, 1, EDX, 5, "avx_ne_convert"),
    (7, 1, EDX, 10, "avx_vnni_int16"),
    (7, 1, EDX, 19, "avx10"),
    (7, 1, EDX, 21, "apx"),
    (0xd, 1, EAX, 0, "xsaveopt"),
    (0xd, 1, EAX, 1, "xsavec"),
    (0xd, 1, EAX, 2, "xgetbv1"),
    (0xd, 1, EAX, 3, "xsaves"),
    (0x8000_0001, 0, ECX, 0, "lahf_lm"),
    (0x8000_0001, 0, ECX, 5, "abm"),
    (0x8000_0001, 0, ECX, 6, "sse4a"),
    (0x8000_0001, 0, ECX, 7, "misalignsse"),
    (0x8000_0001, 0, ECX, 8, "3dnowprefetch"),
    (0x8000_0001, 0, ECX, 11, "xop"),
    (0x8000_0001, 0, ECX, 16, "fma4"),
    (0x8000_0001, 0, ECX, 21, "tbm"),
    (0x8000_0001, 0, EDX, 11, "syscall"),
    (0x8000_0001, 0, EDX, 22, "mmxext"),
    (0x8000_0001, 0, EDX, 27, "rdtscp"),
    (0x8000_0001, 0, EDX, 30, "3dnowext"),
    (0x8000_0001, 0, EDX, 31, "3dnow"),
];

/// The capability registers CRIU's `cpu` check compares whole.
pub(crate) const CAPABILITY_REGS: &[(u32, u32, usize)] = &[
    (1, 0, ECX),
    (1, 0, EDX),
    (7, 0, EBX),
    (7, 0, ECX),
    (7, 0, EDX),
    (7, 1, EAX),
    (7, 1, EDX),
    (0xd, 1, EAX),
    (0x8000_0001, 0, ECX),
    (0x8000_0001, 0, EDX),
];

const REG_NAMES: [&str; 4] = ["eax", "ebx", "ecx", "edx"];

/// `CPUID.0x7.0:EBX[16]`-style name of a bit, or its cpuinfo name when known.
pub(crate) fn bit_name(leaf: u32, sub: u32, reg: usize, bit: u32) -> String {
    INSTRUCTIONS
        .iter()
        .find(|&&(l, s, r, b, _)| (l, s, r, b) == (leaf, sub, reg, bit))
        .map(|&(_, _, _, _, n)| n.to_string())
        .unwrap_or_else(|| format!("CPUID.{leaf:#x}.{sub}:{}[{bit}]", REG_NAMES[reg]))
}

/// The `/proc/cpuinfo` names of the instruction bits `cpu` has.
pub(crate) fn present_instructions(cpu: &dyn CpuidSource) -> Vec<&'static str> {
    INSTRUCTIONS
        .iter()
        .filter(|&&(leaf, sub, reg, bit, _)| cpu.leaf(leaf, sub)[reg] >> bit & 1 != 0)
        .map(|&(_, _, _, _, name)| name)
        .collect()
}

/// The instruction bits `image` has and `host` lacks.
pub(crate) fn missing_instructions(
    image: &dyn CpuidSource,
    host: &dyn CpuidSource,
) -> Vec<&'static str> {
    INSTRUCTIONS
        .iter()
        .filter(|&&(leaf, sub, reg, bit, _)| {
            let has = |s: &dyn CpuidSource| s.leaf(leaf, sub)[reg] >> bit & 1 != 0;
            has(image) && !has(host)
        })
        .map(|&(_, _, _, _, name)| name)
        .collect()
}

/// Every capability bit that differs between `image` and `host`, `+name` when only the
/// host has it and `-name` when only the image has it.
pub(crate) fn differing_capabilities(
    image: &dyn CpuidSource,
    host: &dyn CpuidSource,
) -> Vec<String> {
    let mut out = Vec::new();
    for &(leaf, sub, reg) in CAPABILITY_REGS {
        let (i, h) = (image.leaf(leaf, sub)[reg], host.leaf(leaf, sub)[reg]);
        for bit in 0..32 {
            match (i >> bit & 1, h >> bit & 1) {
                (1, 0) => out.push(format!("-{}", bit_name(leaf, sub, reg, bit))),
                (0, 1) => out.push(format!("+{}", bit_name(leaf, sub, reg, bit))),
                _ => {}
            }
        }
    }
    out
}

/// Names of XSAVE state components (XCR0 bits).
pub(crate) fn xstate_names(mask: u64) -> Vec<String> {
    const NAMES: [&str; 20] = [
        "x87",
        "sse",
        "avx",
        "bndregs",
        "bndcsr",
        "opmask",
        "zmm_hi256",
        "hi16_zmm",
        "pt",
        "pkru",
        "pasid",
        "cet_u",
        "cet_s",
        "hdc",
        "uintr",
        "lbr",
        "hwp",
        "xtilecfg",
        "xtiledata",
        "apx",
    ];
    (0..64)
        .filter(|b| mask >> b & 1 != 0)
        .map(|b| {
            NAMES
                .get(b)
                .map(|n| n.to_string())
                .unwrap_or_else(|| format!("xstate{b}"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xstate_components_are_named() {
        assert_eq!(xstate_names(0xe0), ["opmask", "zmm_hi256", "hi16_zmm"]);
        assert_eq!(xstate_names(1 << 40), ["xstate40"]);
    }

    #[test]
    fn an_unnamed_bit_is_described_by_position() {
        assert_eq!(bit_name(1, 0, ECX, 31), "CPUID.0x1.0:ecx[31]");
        assert_eq!(bit_name(1, 0, ECX, 12), "fma");
    }
}
