//! Entry framing of CRIU "images v1.1".
//!
//! ```text
//! inventory.img : u32 INVENTORY                 { entry }
//! regular image : u32 IMG_COMMON  u32 <magic>   { entry }
//! service image : u32 IMG_SERVICE u32 <magic>   { entry }
//! entry         : u32 size, size bytes of protobuf, [type-specific extra bytes]
//! ```
//!
//! All words are little-endian (CRIU writes host order; stasis is x86-only).
//! [`ImageWriter`] and [`ImageReader`] stream entries; images whose entries
//! are followed by raw payload (pipe data, socket queues, TCP queues, SysV
//! IPC contents, ghost file bodies) use `entry_with_extra` / `read_extra`.
//!
//! Reading is bounded: an entry larger than [`MAX_ENTRY_SIZE`] or than what
//! is left of the file is an error before anything is allocated, and buffers
//! only grow as bytes actually arrive.

mod reader;
mod writer;

use std::path::Path;

use prost::Message;

pub use reader::ImageReader;
pub use writer::ImageWriter;

use crate::{ImageKind, Result};

/// The largest protobuf entry accepted when reading or produced when writing.
/// CRIU's biggest entries (a core with full xsave, an mm with thousands of
/// VMAs) are far below this.
pub const MAX_ENTRY_SIZE: u32 = 64 << 20;

/// The name used in errors when the caller gave none.
const UNNAMED: &str = "<unnamed image stream>";
/// Encode `entries` as a complete image of `kind` in memory.
pub fn encode_image<M: Message>(kind: ImageKind, entries: &[M]) -> Result<Vec<u8>> {
    let mut w = ImageWriter::new(Vec::new(), kind)?;
    for e in entries {
        w.entry(e)?;
    }
    w.finish()
}

/// Decode a complete in-memory image of `kind`.
pub fn decode_image<M: Message + Default>(
    kind: ImageKind,
    bytes: &[u8],
    path_for_errors: &Path,
) -> Result<Vec<M>> {
    let mut r = ImageReader::new(bytes, kind, path_for_errors, Some(bytes.len() as u64))?;
    let mut out = Vec::new();
    while let Some(m) = r.next()? {
        out.push(m);
    }
    Ok(out)
}
