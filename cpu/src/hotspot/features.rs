//! [`FeatureSet`]: a set of HotSpot features of one table generation.

use std::fmt;

use super::table::Table;
use crate::CpuError;

/// A set of HotSpot x86 features, as bits of one [`Table`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FeatureSet {
    table: Table,
    bits: u128,
}

impl FeatureSet {
    /// The set with the given bits; bits the table does not define are dropped.
    pub fn from_bits(table: Table, bits: u128) -> Self {
        FeatureSet {
            table,
            bits: bits & table.mask(),
        }
    }

    /// The set from HotSpot's bitmap words (`_features` of JDK 17/21 is one word,
    /// `VM_Features::_features_bitmap` of JDK 25 two). Bits past the table are dropped.
    pub fn from_words(table: Table, words: &[u64]) -> Self {
        let mut bits = 0u128;
        for (i, w) in words.iter().take(2).enumerate() {
            bits |= u128::from(*w) << (64 * i);
        }
        Self::from_bits(table, bits)
    }

    /// The empty set.
    pub fn empty(table: Table) -> Self {
        Self::from_bits(table, 0)
    }

    /// The set of the named features; an unknown name is an error naming it.
    pub fn from_names<S: AsRef<str>>(table: Table, names: &[S]) -> Result<Self, CpuError> {
        let mut bits = 0u128;
        for n in names {
            let n = n.as_ref();
            let b = table.bit(n).ok_or_else(|| CpuError::UnknownFeature {
                name: n.to_string(),
                table,
            })?;
            bits |= 1 << b;
        }
        Ok(Self::from_bits(table, bits))
    }

    /// The table the bits belong to.
    pub fn table(&self) -> Table {
        self.table
    }

    /// The raw bits.
    pub fn bits(&self) -> u128 {
        self.bits
    }

    /// The bits as HotSpot's little-endian `uint64_t` words: one word for tables up to
    /// 64 features, two for JDK 25.
    pub fn words(&self) -> Vec<u64> {
        let n = self.table.len().div_ceil(64) as usize;
        (0..n).map(|i| (self.bits >> (64 * i)) as u64).collect()
    }

    /// Whether feature `name` is in the set.
    pub fn contains(&self, name: &str) -> bool {
        self.table
            .bit(name)
            .is_some_and(|b| self.bits >> b & 1 != 0)
    }

    /// Whether feature `bit` is in the set.
    pub fn has(&self, bit: u32) -> bool {
        bit < 128 && self.bits >> bit & 1 != 0
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.bits == 0
    }

    /// The names of the features, in HotSpot's order (the order `-Xlog:os+cpu` prints).
    pub fn names(&self) -> Vec<&'static str> {
        (0..self.table.len())
            .filter(|&b| self.has(b))
            .filter_map(|b| self.table.name(b))
            .collect()
    }

    /// The features of `self` that `other` lacks.
    pub fn minus(&self, other: &FeatureSet) -> FeatureSet {
        Self::from_bits(self.table, self.bits & !other.bits)
    }

    /// The features in both.
    pub fn and(&self, other: &FeatureSet) -> FeatureSet {
        Self::from_bits(self.table, self.bits & other.bits)
    }

    /// The set without the features in `bits`.
    pub fn without(&self, bits: u128) -> FeatureSet {
        Self::from_bits(self.table, self.bits & !bits)
    }
}

impl fmt::Display for FeatureSet {
    /// HotSpot's form: `cx8, cmov, fxsr, …`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.names().join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hotspot::table::bit;

    #[test]
    fn names_come_out_in_hotspot_order() {
        let s = FeatureSet::from_names(Table::Jdk17, &["sse2", "cx8", "avx"]).unwrap();
        assert_eq!(s.names(), ["cx8", "sse2", "avx"]);
        assert_eq!(s.to_string(), "cx8, sse2, avx");
    }

    #[test]
    fn an_unknown_name_is_refused_with_its_table() {
        let err = FeatureSet::from_names(Table::Jdk17, &["f16c"]).unwrap_err();
        assert!(err.to_string().contains("f16c"), "{err}");
        assert!(err.to_string().contains("JDK 17"), "{err}");
    }

    #[test]
    fn jdk25_sets_span_two_words() {
        let s = FeatureSet::from_bits(Table::Jdk25, 1 << bit::AVX10_2 | 1);
        assert_eq!(s.words(), [1, 1]);
        assert_eq!(FeatureSet::from_words(Table::Jdk25, &[1, 1]), s);
        assert_eq!(
            FeatureSet::from_bits(Table::Jdk17, u128::MAX).words().len(),
            1
        );
    }

    #[test]
    fn minus_names_what_the_other_set_lacks() {
        let a = FeatureSet::from_names(Table::Jdk17, &["avx", "avx512f", "sse"]).unwrap();
        let b = FeatureSet::from_names(Table::Jdk17, &["avx", "sse"]).unwrap();
        assert_eq!(a.minus(&b).names(), ["avx512f"]);
        assert!(b.minus(&a).is_empty());
    }
}
