//! VMA status bits of the image ABI that restore acts on.

pub use stasis_checkpoint::vma_status::*;

/// A VMA backed by a file (private or shared).
pub const FILE_MASK: u32 = FILE_PRIVATE | FILE_SHARED;
