//! HotSpot's x86 feature tables: the names `-Xlog:os+cpu` prints, in bit order.
//!
//! HotSpot declares its features with `decl(ID, "name", bit)` in
//! `src/hotspot/cpu/x86/vm_version_x86.hpp`; the bit number is the position in
//! `Abstract_VM_Version::_features` (JDK 17/21, one `uint64_t`) or in
//! `VM_Version::_features._features_bitmap` (JDK 25+, an array of `uint64_t`), and the
//! printed list walks the bits in increasing order. Later JDKs only append, so one
//! array of names serves every table; a table is a prefix of it.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Bit numbers of HotSpot's x86 features (`VM_Version::CPU_*`).
#[allow(missing_docs)]
pub mod bit {
    pub const CX8: u32 = 0;
    pub const CMOV: u32 = 1;
    pub const FXSR: u32 = 2;
    pub const HT: u32 = 3;
    pub const MMX: u32 = 4;
    pub const PREFETCHW_3DNOW: u32 = 5;
    pub const SSE: u32 = 6;
    pub const SSE2: u32 = 7;
    pub const SSE3: u32 = 8;
    pub const SSSE3: u32 = 9;
    pub const SSE4A: u32 = 10;
    pub const SSE4_1: u32 = 11;
    pub const SSE4_2: u32 = 12;
    pub const POPCNT: u32 = 13;
    pub const LZCNT: u32 = 14;
    pub const TSC: u32 = 15;
    pub const TSCINV_BIT: u32 = 16;
    pub const TSCINV: u32 = 17;
    pub const AVX: u32 = 18;
    pub const AVX2: u32 = 19;
    pub const AES: u32 = 20;
    pub const ERMS: u32 = 21;
    pub const CLMUL: u32 = 22;
    pub const BMI1: u32 = 23;
    pub const BMI2: u32 = 24;
    pub const RTM: u32 = 25;
    pub const ADX: u32 = 26;
    pub const AVX512F: u32 = 27;
    pub const AVX512DQ: u32 = 28;
    pub const AVX512PF: u32 = 29;
    pub const AVX512ER: u32 = 30;
    pub const AVX512CD: u32 = 31;
    pub const AVX512BW: u32 = 32;
    pub const AVX512VL: u32 = 33;
    pub const SHA: u32 = 34;
    pub const FMA: u32 = 35;
    pub const VZEROUPPER: u32 = 36;
    pub const AVX512_VPOPCNTDQ: u32 = 37;
    pub const AVX512_VPCLMULQDQ: u32 = 38;
    pub const AVX512_VAES: u32 = 39;
    pub const AVX512_VNNI: u32 = 40;
    pub const FLUSH: u32 = 41;
    pub const FLUSHOPT: u32 = 42;
    pub const CLWB: u32 = 43;
    pub const AVX512_VBMI2: u32 = 44;
    pub const AVX512_VBMI: u32 = 45;
    pub const HV: u32 = 46;
    // JDK 21
    pub const SERIALIZE: u32 = 47;
    pub const RDTSCP: u32 = 48;
    pub const RDPID: u32 = 49;
    pub const FSRM: u32 = 50;
    pub const GFNI: u32 = 51;
    pub const AVX512_BITALG: u32 = 52;
    pub const F16C: u32 = 53;
    pub const PKU: u32 = 54;
    pub const OSPKE: u32 = 55;
    pub const CET_IBT: u32 = 56;
    pub const CET_SS: u32 = 57;
    pub const AVX512_IFMA: u32 = 58;
    // JDK 25
    pub const AVX_IFMA: u32 = 59;
    pub const APX_F: u32 = 60;
    pub const SHA512: u32 = 61;
    pub const AVX512_FP16: u32 = 62;
    pub const AVX10_1: u32 = 63;
    pub const AVX10_2: u32 = 64;
    // CRaC's JDK 25+ builds: the glibc features appended to the same bitmap.
    pub const FMA4: u32 = 65;
    pub const MOVBE: u32 = 66;
    pub const OSXSAVE: u32 = 67;
    pub const IBT: u32 = 68;
    pub const SHSTK: u32 = 69;
    pub const XSAVE: u32 = 70;
    pub const CMPXCHG16: u32 = 71;
    pub const LAHFSAHF: u32 = 72;
    pub const HTT: u32 = 73;
}

/// Every feature name, indexed by bit.
pub(crate) const NAMES: [&str; 74] = [
    "cx8",
    "cmov",
    "fxsr",
    "ht",
    "mmx",
    "3dnowpref",
    "sse",
    "sse2",
    "sse3",
    "ssse3",
    "sse4a",
    "sse4.1",
    "sse4.2",
    "popcnt",
    "lzcnt",
    "tsc",
    "tscinvbit",
    "tscinv",
    "avx",
    "avx2",
    "aes",
    "erms",
    "clmul",
    "bmi1",
    "bmi2",
    "rtm",
    "adx",
    "avx512f",
    "avx512dq",
    "avx512pf",
    "avx512er",
    "avx512cd",
    "avx512bw",
    "avx512vl",
    "sha",
    "fma",
    "vzeroupper",
    "avx512_vpopcntdq",
    "avx512_vpclmulqdq",
    "avx512_vaes",
    "avx512_vnni",
    "clflush",
    "clflushopt",
    "clwb",
    "avx512_vbmi2",
    "avx512_vbmi",
    "hv",
    "serialize",
    "rdtscp",
    "rdpid",
    "fsrm",
    "gfni",
    "avx512_bitalg",
    "f16c",
    "pku",
    "ospke",
    "cet_ibt",
    "cet_ss",
    "avx512_ifma",
    "avx_ifma",
    "apx_f",
    "sha512",
    "avx512_fp16",
    "avx10_1",
    "avx10_2",
    "fma4",
    "movbe",
    "osxsave",
    "ibt",
    "shstk",
    "xsave",
    "cmpxchg16",
    "lahfsahf",
    "htt",
];

/// One generation of HotSpot's x86 feature table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Table {
    /// JDK 17 (bits 0–46, last `hv`), used for JDK 17–20.
    Jdk17,
    /// JDK 21 (bits 0–58, last `avx512_ifma`), used for JDK 21–24.
    Jdk21,
    /// JDK 25 (bits 0–64, last `avx10_2`; CRaC builds append glibc features 65–73),
    /// used for JDK 25 and later.
    Jdk25,
}

impl Table {
    /// The table HotSpot of Java `major` uses, or `None` before JDK 17 (whose tables
    /// number the bits differently and are not modelled).
    ///
    /// JDK 18–20 and 22–24 map to the preceding LTS table: HotSpot only ever appends
    /// features, so a bit known to the older table has the same meaning, and a
    /// feature introduced in between is at worst left out of the computed set.
    pub fn for_java(major: u32) -> Option<Table> {
        match major {
            0..=16 => None,
            17..=20 => Some(Table::Jdk17),
            21..=24 => Some(Table::Jdk21),
            _ => Some(Table::Jdk25),
        }
    }

    /// Number of features upstream HotSpot of this generation declares.
    pub fn hotspot_len(self) -> u32 {
        match self {
            Table::Jdk17 => 47,
            Table::Jdk21 => 59,
            Table::Jdk25 => 65,
        }
    }

    /// Number of bits a feature set of this table may hold: for JDK 25 this includes
    /// the nine glibc features CRaC builds append (`fma4` … `htt`).
    pub fn len(self) -> u32 {
        match self {
            Table::Jdk25 => NAMES.len() as u32,
            other => other.hotspot_len(),
        }
    }

    /// Whether the table is empty (never).
    pub fn is_empty(self) -> bool {
        false
    }

    /// The name of feature `bit`, as `-Xlog:os+cpu` prints it.
    pub fn name(self, bit: u32) -> Option<&'static str> {
        (bit < self.len()).then(|| NAMES[bit as usize])
    }

    /// The bit of feature `name`.
    pub fn bit(self, name: &str) -> Option<u32> {
        NAMES[..self.len() as usize]
            .iter()
            .position(|n| *n == name)
            .map(|i| i as u32)
    }

    /// Mask of every bit the table defines.
    pub fn mask(self) -> u128 {
        (1u128 << self.len()) - 1
    }
}

impl fmt::Display for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Table::Jdk17 => "JDK 17",
            Table::Jdk21 => "JDK 21",
            Table::Jdk25 => "JDK 25",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_end_where_hotspot_ends_them() {
        assert_eq!(Table::Jdk17.name(46), Some("hv"));
        assert_eq!(Table::Jdk17.name(47), None);
        assert_eq!(Table::Jdk21.name(58), Some("avx512_ifma"));
        assert_eq!(Table::Jdk25.name(64), Some("avx10_2"));
        assert_eq!(Table::Jdk25.name(73), Some("htt"));
    }

    #[test]
    fn names_map_back_to_their_bits() {
        for t in [Table::Jdk17, Table::Jdk21, Table::Jdk25] {
            for b in 0..t.len() {
                assert_eq!(t.bit(t.name(b).unwrap()), Some(b));
            }
        }
        assert_eq!(Table::Jdk17.bit("sse4.1"), Some(bit::SSE4_1));
        assert_eq!(Table::Jdk17.bit("f16c"), None);
    }

    #[test]
    fn java_versions_pick_the_preceding_lts_table() {
        assert_eq!(Table::for_java(11), None);
        assert_eq!(Table::for_java(17), Some(Table::Jdk17));
        assert_eq!(Table::for_java(20), Some(Table::Jdk17));
        assert_eq!(Table::for_java(21), Some(Table::Jdk21));
        assert_eq!(Table::for_java(26), Some(Table::Jdk25));
    }
}
