//! CRaC's `tags` file: the feature bitmap a CRaC JVM writes beside its checkpoint.
//!
//! ```text
//! label:cpu.arch=amd64
//! bitmap:cpu.features=f7fbfd051c8eef03cc03000000000000
//! ```
//!
//! The bitmap is the JVM's `VM_Features` words in memory order (little-endian), so byte
//! `i` bit `j` is feature `8i + j`. JDK 25+ CRaC builds number glibc features 65–73 in
//! the same bitmap; for JDK 17/21 tables only the first word is HotSpot's.

use std::path::Path;

use crate::hotspot::{FeatureSet, Table};
use crate::CpuError;

/// A bitmap longer than this many bytes is not a feature bitmap.
const MAX_BITMAP_BYTES: usize = 64;

/// Parses the `tags` text at `path` into the features of `table`, or `None` when it
/// holds no `cpu.features` bitmap.
pub fn parse_tags(text: &str, path: &Path, table: Table) -> Result<Option<FeatureSet>, CpuError> {
    let mut arch_ok = true;
    let mut bitmap = None;
    for (n, line) in text.lines().enumerate() {
        if let Some(arch) = line.strip_prefix("label:cpu.arch=") {
            arch_ok = arch.trim() == "amd64" || arch.trim() == "x86_64";
        } else if let Some(hex) = line.strip_prefix("bitmap:cpu.features=") {
            let hex = hex.trim();
            if hex.len() % 2 != 0 || hex.len() / 2 > MAX_BITMAP_BYTES {
                return Err(CpuError::malformed(
                    path,
                    format!(
                        "line {}: cpu.features bitmap of {} hex digits",
                        n + 1,
                        hex.len()
                    ),
                ));
            }
            let bytes = (0..hex.len() / 2)
                .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16))
                .collect::<Result<Vec<u8>, _>>()
                .map_err(|e| {
                    CpuError::malformed(path, format!("line {}: cpu.features: {e}", n + 1))
                })?;
            bitmap = Some(bytes);
        }
    }
    if !arch_ok {
        return Err(CpuError::malformed(path, "cpu.arch is not amd64"));
    }
    let Some(bytes) = bitmap else {
        return Ok(None);
    };
    let mut words: Vec<u64> = bytes
        .chunks(8)
        .map(|c| {
            let mut w = [0u8; 8];
            w[..c.len()].copy_from_slice(c);
            u64::from_le_bytes(w)
        })
        .collect();
    if table != Table::Jdk25 {
        words.truncate(1);
    }
    Ok(Some(FeatureSet::from_words(table, &words)))
}

/// Reads `DIR/tags` if it exists.
pub fn read_tags(dir: &Path, table: Table) -> Result<Option<FeatureSet>, CpuError> {
    let path = dir.join("tags");
    match std::fs::read_to_string(&path) {
        Ok(text) => parse_tags(&text, &path, table),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(CpuError::io(&path, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_example_decodes_to_its_cpufeatures_words() {
        let text = "label:cpu.arch=amd64\nbitmap:cpu.features=f7fbfd051c8eef03cc03000000000000\n";
        let f = parse_tags(text, Path::new("tags"), Table::Jdk25)
            .unwrap()
            .unwrap();
        // CRaC documents this file as -XX:CPUFeatures=0x3ef8e1c05fdfbf7,0x3cc.
        assert_eq!(f.words(), [0x03ef_8e1c_05fd_fbf7, 0x3cc]);
        assert!(f.contains("cx8") && f.contains("avx2") && f.contains("movbe"));
    }

    #[test]
    fn a_tags_file_without_a_bitmap_gives_nothing() {
        assert_eq!(
            parse_tags("label:cpu.arch=amd64\n", Path::new("tags"), Table::Jdk25).unwrap(),
            None
        );
    }

    #[test]
    fn a_bitmap_for_another_architecture_is_refused() {
        let text = "label:cpu.arch=aarch64\nbitmap:cpu.features=ff\n";
        assert!(parse_tags(text, Path::new("tags"), Table::Jdk25).is_err());
    }
}
