//! CRIU's on-disk image format, written and read byte-compatibly so that
//! CRIU, crit and checkpointctl can read what stasis writes and vice versa.
//!
//! * [`pb`]: the protobuf messages of every image (and [`pb::rpc`] for
//!   `criu swrk`), generated from `proto/*.proto`.
//! * [`magic`], [`ImageKind`], [`Header`]: which header each file carries.
//! * [`names`]: file names inside an image directory.
//! * [`ImageWriter`] / [`ImageReader`]: the entry framing, with extra payloads.
//! * [`ImageDir`]: whole-image reads and atomic writes relative to a directory fd.
//! * pagemap helpers: [`PE_PARENT`], [`PE_LAZY`], [`PE_PRESENT`],
//!   [`pagemap::normalise`].
#![forbid(unsafe_code)]

mod dir;
mod error;
mod framing;
mod kind;
pub mod magic;
pub mod names;
pub mod pagemap;
#[allow(
    clippy::all,
    clippy::pedantic,
    clippy::nursery,
    missing_docs,
    rustdoc::all,
    unreachable_pub
)]
pub mod pb;
#[cfg(test)]
mod wire_tests;

pub use dir::{ImageDir, ImageFileWriter};
pub use error::ImageError;
pub use framing::{decode_image, encode_image, ImageReader, ImageWriter, MAX_ENTRY_SIZE};
pub use kind::{Header, ImageKind};
pub use pagemap::{PE_LAZY, PE_PARENT, PE_PRESENT};

/// Result with this crate's error.
pub type Result<T> = std::result::Result<T, ImageError>;
