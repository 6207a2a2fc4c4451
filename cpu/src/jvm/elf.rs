//! Just enough ELF64 to find symbols of `libjvm.so`: the section table, the dynamic
//! symbol table (and the full one, when the library was not stripped) with their
//! strings, and the first `PT_LOAD` (for the load bias).
//! Every size read from the file is bounded before anything is allocated.

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use crate::CpuError;

const SHT_SYMTAB: u32 = 2;
const SHT_DYNSYM: u32 = 11;
const PT_LOAD: u32 = 1;
/// `libjvm.so`'s dynamic symbol table is tens of KiB; anything near this is not it.
const MAX_TABLE: u64 = 64 << 20;

/// The exported symbols of a shared object that stasis asked for, and its first
/// loadable segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Symbols {
    /// Symbol name → `st_value` (an address relative to the load bias).
    pub values: HashMap<String, u64>,
    /// `(p_vaddr, p_offset)` of the first `PT_LOAD`.
    pub first_load: (u64, u64),
}

fn read_exact_at(f: &File, path: &Path, off: u64, len: u64) -> Result<Vec<u8>, CpuError> {
    if len > MAX_TABLE {
        return Err(CpuError::malformed(
            path,
            format!("ELF table of {len} bytes at {off:#x} exceeds 64 MiB"),
        ));
    }
    let mut buf = vec![0u8; len as usize];
    f.read_exact_at(&mut buf, off)
        .map_err(|e| CpuError::io(path, e))?;
    Ok(buf)
}

fn u16_at(b: &[u8], o: usize) -> u16 {
    u16::from_le_bytes([b[o], b[o + 1]])
}

fn u32_at(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes(b[o..o + 4].try_into().expect("4 bytes"))
}

fn u64_at(b: &[u8], o: usize) -> u64 {
    u64::from_le_bytes(b[o..o + 8].try_into().expect("8 bytes"))
}

/// Looks up `wanted` in the symbol tables of the ELF64 little-endian file `path`.
pub(crate) fn symbols(path: &Path, wanted: &[&str]) -> Result<Symbols, CpuError> {
    let f = File::open(path).map_err(|e| CpuError::io(path, e))?;
    let bad = |what: &str| CpuError::malformed(path, what.to_string());
    let eh = read_exact_at(&f, path, 0, 64)?;
    if &eh[..4] != b"\x7fELF" || eh[4] != 2 || eh[5] != 1 {
        return Err(bad("not an ELF64 little-endian file"));
    }
    let phoff = u64_at(&eh, 0x20);
    let shoff = u64_at(&eh, 0x28);
    let phentsize = u64::from(u16_at(&eh, 0x36));
    let phnum = u64::from(u16_at(&eh, 0x38));
    let shentsize = u64::from(u16_at(&eh, 0x3a));
    let shnum = u64::from(u16_at(&eh, 0x3c));
    if phentsize < 56 || shentsize < 64 {
        return Err(bad("ELF header entry sizes too small"));
    }

    let phdrs = read_exact_at(&f, path, phoff, phentsize * phnum)?;
    let first_load = (0..phnum as usize)
        .map(|i| i * phentsize as usize)
        .find(|&o| u32_at(&phdrs, o) == PT_LOAD)
        .map(|o| (u64_at(&phdrs, o + 0x10), u64_at(&phdrs, o + 0x08)))
        .ok_or_else(|| bad("no PT_LOAD program header"))?;

    let shdrs = read_exact_at(&f, path, shoff, shentsize * shnum)?;
    let section = |i: u64| -> Result<(u32, u64, u64, u32, u64), CpuError> {
        if i >= shnum {
            return Err(bad("section index out of range"));
        }
        let o = (i * shentsize) as usize;
        Ok((
            u32_at(&shdrs, o + 4),    // sh_type
            u64_at(&shdrs, o + 0x18), // sh_offset
            u64_at(&shdrs, o + 0x20), // sh_size
            u32_at(&shdrs, o + 0x28), // sh_link
            u64_at(&shdrs, o + 0x38), // sh_entsize
        ))
    };
    let mut values = HashMap::new();
    // .dynsym first (exported names), then .symtab for what is still missing.
    for kind in [SHT_DYNSYM, SHT_SYMTAB] {
        if values.len() == wanted.len() {
            break;
        }
        let mut table = None;
        for i in 0..shnum {
            let s = section(i)?;
            if s.0 == kind {
                table = Some(s);
                break;
            }
        }
        let Some((_, sym_off, sym_size, link, entsize)) = table else {
            continue;
        };
        if entsize < 24 {
            return Err(bad("symbol table entry size below 24"));
        }
        let (_, str_off, str_size, _, _) = section(u64::from(link))?;
        let syms = read_exact_at(&f, path, sym_off, sym_size)?;
        let strs = read_exact_at(&f, path, str_off, str_size)?;
        for o in (0..syms.len() / entsize as usize).map(|i| i * entsize as usize) {
            let name_off = u32_at(&syms, o) as usize;
            let Some(rest) = strs.get(name_off..) else {
                continue;
            };
            let name = &rest[..rest.iter().position(|&b| b == 0).unwrap_or(rest.len())];
            if let Some(w) = wanted.iter().find(|w| w.as_bytes() == name) {
                values
                    .entry((*w).to_string())
                    .or_insert_with(|| u64_at(&syms, o + 8));
            }
        }
    }
    Ok(Symbols { values, first_load })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_that_is_not_elf_is_refused() {
        let dir = std::env::temp_dir().join(format!("stasis-cpu-elf-{}", std::process::id()));
        std::fs::write(&dir, [0u8; 128]).unwrap();
        let err = symbols(&dir, &["x"]).unwrap_err().to_string();
        std::fs::remove_file(&dir).unwrap();
        assert!(err.contains("not an ELF64"), "{err}");
    }

    #[test]
    fn the_exported_symbols_of_a_system_library_are_found() {
        // libc exports `malloc` on every glibc system this runs on.
        let libc = ["/lib/x86_64-linux-gnu/libc.so.6", "/usr/lib64/libc.so.6"]
            .into_iter()
            .map(Path::new)
            .find(|p| p.exists())
            .expect("a glibc libc.so.6");
        let s = symbols(libc, &["malloc", "no_such_symbol"]).unwrap();
        assert!(s.values["malloc"] > 0);
        assert!(!s.values.contains_key("no_such_symbol"));
    }
}
