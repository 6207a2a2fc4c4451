//! Reading a live JVM's feature bitmap from its memory through `gHotSpotVMStructs`.
//!
//! HotSpot exports, for the Serviceability Agent and JVMCI, a table of its fields
//! (`gHotSpotVMStructs`, an array of `VMStructEntry`) and of its types
//! (`gHotSpotVMTypes`), with the layout of an entry published in further exported
//! variables (`gHotSpotVMStructEntryTypeNameOffset`, …`ArrayStride`). The static field
//! `Abstract_VM_Version::_features` (JDK 17/21, a `uint64_t`) or `VM_Version::_features`
//! (JDK 25+, a `VM_Version::VM_Features` holding `_features_bitmap[]`) is the feature
//! set the JVM runs with, after `-XX:UseAVX` and friends.
//!
//! JDK 25 moved x86's features to `VM_Version::_features` (a `VM_Features`), which only
//! JVMCI's private table lists; `Abstract_VM_Version::_features` is still in
//! `gHotSpotVMStructs` but stays zero on x86. For JDK 25 the field is found by its
//! symbol in `.symtab` instead (present in unstripped builds such as Temurin's).
//!
//! The process is only read (`/proc/PID/mem`), never stopped: the table is immutable
//! after VM start and `_features` does not change once the VM has initialised.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::elf::symbols;
use super::procfs::LibjvmMapping;
use crate::hotspot::Table;
use crate::CpuError;

/// Symbols the walk needs.
const SYMBOLS: &[&str] = &[
    "gHotSpotVMStructs",
    "gHotSpotVMStructEntryArrayStride",
    "gHotSpotVMStructEntryTypeNameOffset",
    "gHotSpotVMStructEntryFieldNameOffset",
    "gHotSpotVMStructEntryTypeStringOffset",
    "gHotSpotVMStructEntryIsStaticOffset",
    "gHotSpotVMStructEntryAddressOffset",
    "gHotSpotVMTypes",
    "gHotSpotVMTypeEntryArrayStride",
    "gHotSpotVMTypeEntryTypeNameOffset",
    "gHotSpotVMTypeEntrySizeOffset",
    VM_VERSION_FEATURES,
    VM_FEATURES_BITMAP_SIZE,
];

/// `VM_Version::_features` (JDK 25+), which `gHotSpotVMStructs` does not list (only
/// JVMCI's private table does); found in `.symtab` when libjvm.so keeps it.
const VM_VERSION_FEATURES: &str = "_ZN10VM_Version9_featuresE";
/// `VM_Version::VM_Features::_features_bitmap_size`: the number of words.
const VM_FEATURES_BITMAP_SIZE: &str = "_ZN10VM_Version11VM_Features21_features_bitmap_sizeE";

/// HotSpot's tables hold a few thousand entries; a walk longer than this has lost its way.
const MAX_ENTRIES: u64 = 100_000;
/// Longest type or field name compared.
const MAX_NAME: usize = 256;

/// A reader of another process's memory.
struct Memory {
    pid: i32,
    file: File,
}

impl Memory {
    fn open(pid: i32) -> Result<Self, CpuError> {
        let path = PathBuf::from(format!("/proc/{pid}/mem"));
        let file = File::open(&path).map_err(|e| CpuError::io(&path, e))?;
        Ok(Memory { pid, file })
    }

    fn err(&self, what: impl Into<String>) -> CpuError {
        CpuError::VmStructs {
            pid: self.pid,
            what: what.into(),
        }
    }

    fn bytes(&self, addr: u64, len: usize) -> Result<Vec<u8>, CpuError> {
        let mut buf = vec![0u8; len];
        self.file
            .read_exact_at(&mut buf, addr)
            .map_err(|e| self.err(format!("reading {len} bytes at {addr:#x}: {e}")))?;
        Ok(buf)
    }

    fn u64(&self, addr: u64) -> Result<u64, CpuError> {
        let b = self.bytes(addr, 8)?;
        Ok(u64::from_le_bytes(b.try_into().expect("8 bytes")))
    }

    fn i32(&self, addr: u64) -> Result<i32, CpuError> {
        let b = self.bytes(addr, 4)?;
        Ok(i32::from_le_bytes(b.try_into().expect("4 bytes")))
    }

    /// A NUL-terminated string of at most [`MAX_NAME`] bytes; reads never cross into
    /// the next page unless the string does.
    fn c_str(&self, addr: u64) -> Result<String, CpuError> {
        let mut out = Vec::new();
        let mut at = addr;
        while out.len() < MAX_NAME {
            let to_page_end = 4096 - (at % 4096) as usize;
            let chunk = self.bytes(at, to_page_end.min(MAX_NAME - out.len()))?;
            if let Some(nul) = chunk.iter().position(|&b| b == 0) {
                out.extend_from_slice(&chunk[..nul]);
                return Ok(String::from_utf8_lossy(&out).into_owned());
            }
            at += chunk.len() as u64;
            out.extend_from_slice(&chunk);
        }
        Err(self.err(format!("string at {addr:#x} longer than {MAX_NAME} bytes")))
    }
}

/// The words of the JVM's `_features`, read from process `pid` whose `libjvm.so`
/// mapping is `lib`; `root` is the process's root directory (`/proc/PID/root`), through
/// which the library file is opened.
pub(crate) fn read_features(
    pid: i32,
    root: &Path,
    lib: &LibjvmMapping,
    table: Table,
) -> Result<Vec<u64>, CpuError> {
    let file = root.join(lib.path.strip_prefix("/").unwrap_or(&lib.path));
    let syms = symbols(&file, SYMBOLS)?;
    let mem = Memory::open(pid)?;
    let sym = |name: &str| -> Result<u64, CpuError> {
        syms.values
            .get(name)
            .copied()
            .ok_or_else(|| mem.err(format!("{} does not export {name}", lib.path.display())))
    };

    // The load bias: where the first PT_LOAD's page landed, minus its link-time address.
    let (vaddr, offset) = syms.first_load;
    let page = !0xfffu64;
    let seg_start = lib
        .segments
        .iter()
        .find(|(_, off)| *off == offset & page)
        .map(|(start, _)| *start)
        .ok_or_else(|| mem.err("no mapping of libjvm.so's first loadable segment"))?;
    let bias = seg_start.wrapping_sub(vaddr & page);
    let at = |name: &str| -> Result<u64, CpuError> { Ok(bias.wrapping_add(sym(name)?)) };

    let by_symbol = || -> Result<Vec<u64>, CpuError> {
        let addr = at(VM_VERSION_FEATURES).map_err(|_| {
            mem.err(format!(
                "{} has no symbol VM_Version::_features (stripped), and from JDK 25 on \
                 gHotSpotVMStructs does not list it",
                lib.path.display()
            ))
        })?;
        let words = match at(VM_FEATURES_BITMAP_SIZE) {
            Ok(size_addr) => mem.i32(size_addr)?,
            Err(_) => table.len().div_ceil(64) as i32,
        };
        if !(1..=8).contains(&words) {
            return Err(mem.err(format!("VM_Features of {words} words")));
        }
        (0..words as u64).map(|i| mem.u64(addr + 8 * i)).collect()
    };

    let words = if table >= Table::Jdk25 {
        by_symbol()?
    } else {
        let words = by_vmstructs(&mem, &at)?;
        if plausible(&words) {
            return Ok(words);
        }
        // A JDK between 21 and 25 may already keep its features in VM_Version.
        by_symbol().map_err(|e| {
            mem.err(format!(
                "gHotSpotVMStructs' _features is {words:#x?}, not a feature set, and {e}"
            ))
        })?
    };
    if plausible(&words) {
        Ok(words)
    } else {
        Err(mem.err(format!("_features is {words:#x?}, not a feature set")))
    }
}

/// Every x86-64 JVM has SSE2 (`UseSSE` is at least 2); a bitmap without it was read
/// from the wrong place or before the VM initialised.
fn plausible(words: &[u64]) -> bool {
    words
        .first()
        .is_some_and(|w| w >> crate::hotspot::bit::SSE2 & 1 != 0)
}

/// `Abstract_VM_Version::_features` (or `VM_Version::_features`) found by walking
/// `gHotSpotVMStructs`.
fn by_vmstructs(
    mem: &Memory,
    at: &dyn Fn(&str) -> Result<u64, CpuError>,
) -> Result<Vec<u64>, CpuError> {
    let entries = mem.u64(at("gHotSpotVMStructs")?)?;
    let stride = mem.u64(at("gHotSpotVMStructEntryArrayStride")?)?;
    let type_name_off = mem.u64(at("gHotSpotVMStructEntryTypeNameOffset")?)?;
    let field_name_off = mem.u64(at("gHotSpotVMStructEntryFieldNameOffset")?)?;
    let type_string_off = mem.u64(at("gHotSpotVMStructEntryTypeStringOffset")?)?;
    let is_static_off = mem.u64(at("gHotSpotVMStructEntryIsStaticOffset")?)?;
    let address_off = mem.u64(at("gHotSpotVMStructEntryAddressOffset")?)?;
    if stride == 0 || stride > 4096 {
        return Err(mem.err(format!("implausible VMStructEntry stride {stride}")));
    }

    let mut field = None;
    for i in 0..MAX_ENTRIES {
        let e = entries + i * stride;
        let type_name = mem.u64(e + type_name_off)?;
        if type_name == 0 {
            break;
        }
        let tn = mem.c_str(type_name)?;
        if tn != "Abstract_VM_Version" && tn != "VM_Version" {
            continue;
        }
        let fname = mem.u64(e + field_name_off)?;
        if fname == 0 || mem.c_str(fname)? != "_features" {
            continue;
        }
        if mem.i32(e + is_static_off)? == 0 {
            continue;
        }
        let type_string = mem.u64(e + type_string_off)?;
        let ts = if type_string == 0 {
            String::new()
        } else {
            mem.c_str(type_string)?
        };
        field = Some((mem.u64(e + address_off)?, ts));
        break;
    }
    let (addr, type_string) =
        field.ok_or_else(|| mem.err("gHotSpotVMStructs has no static _features"))?;

    let size = if type_string == "uint64_t" {
        8
    } else {
        type_size(mem, at, &type_string)?
    };
    if size == 0 || size % 8 != 0 || size > 64 {
        return Err(mem.err(format!("_features of type {type_string} has size {size}")));
    }
    (0..size / 8).map(|i| mem.u64(addr + 8 * i)).collect()
}

/// The size of type `name` from `gHotSpotVMTypes`.
fn type_size(
    mem: &Memory,
    at: &dyn Fn(&str) -> Result<u64, CpuError>,
    name: &str,
) -> Result<u64, CpuError> {
    let types = mem.u64(at("gHotSpotVMTypes")?)?;
    let stride = mem.u64(at("gHotSpotVMTypeEntryArrayStride")?)?;
    let name_off = mem.u64(at("gHotSpotVMTypeEntryTypeNameOffset")?)?;
    let size_off = mem.u64(at("gHotSpotVMTypeEntrySizeOffset")?)?;
    if stride == 0 || stride > 4096 {
        return Err(mem.err(format!("implausible VMTypeEntry stride {stride}")));
    }
    for i in 0..MAX_ENTRIES {
        let e = types + i * stride;
        let p = mem.u64(e + name_off)?;
        if p == 0 {
            break;
        }
        if mem.c_str(p)? == name {
            return mem.u64(e + size_off);
        }
    }
    Err(mem.err(format!("gHotSpotVMTypes has no type {name:?}")))
}
