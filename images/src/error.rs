//! The error type of this crate. Every variant names the image file; decode
//! errors also name the entry index and byte offset where things went wrong.

use std::path::PathBuf;

/// An error reading or writing an image.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// An I/O operation on an image file or directory failed.
    #[error("{}: {op}: {source}", .path.display())]
    Io {
        path: PathBuf,
        /// What was being done, e.g. "open", "read entry 3", "rename into place".
        op: String,
        #[source]
        source: std::io::Error,
    },

    /// The image file does not exist. Callers decide whether that means
    /// "no entries" (as CRIU does for most images) or a hard error.
    #[error("{}: image file is missing", .path.display())]
    Missing { path: PathBuf },

    /// A header word is not the one this kind of image must carry.
    #[error("{}: bad magic: expected {expected:#010x}, found {found:#010x}", .path.display())]
    BadMagic {
        path: PathBuf,
        expected: u32,
        found: u32,
    },

    /// The file ends in the middle of a header, a size word, an entry or an
    /// entry's extra payload.
    #[error(
        "{}: truncated {what} at byte offset {offset}: needs {needed} bytes, only {available} present",
        .path.display()
    )]
    Truncated {
        path: PathBuf,
        /// "header", "size of entry 3", "entry 3", "extra payload of entry 3".
        what: String,
        offset: u64,
        needed: u64,
        available: u64,
    },

    /// An entry claims a size above [`crate::MAX_ENTRY_SIZE`] (or, when
    /// writing, a message encodes to more than that).
    #[error(
        "{}: entry {index} at byte offset {offset} has size {size}, above the limit of {max} bytes",
        .path.display()
    )]
    EntryTooLarge {
        path: PathBuf,
        index: usize,
        offset: u64,
        size: u64,
        max: u32,
    },

    /// An entry is not a valid encoding of the expected message.
    #[error(
        "{}: entry {index} at byte offset {offset} does not decode as {message}: {source}",
        .path.display()
    )]
    Decode {
        path: PathBuf,
        index: usize,
        offset: u64,
        /// The Rust type name of the expected message.
        message: &'static str,
        #[source]
        source: prost::DecodeError,
    },

    /// An image holds a different number of entries than its kind allows.
    #[error("{}: expected {expected}, found {found} entries", .path.display())]
    EntryCount {
        path: PathBuf,
        expected: &'static str,
        found: usize,
    },

    /// An image decodes but its content breaks a rule of the format.
    #[error("{}: {detail}", .path.display())]
    Invalid { path: PathBuf, detail: String },
}
