//! CRIU's on-disk image format.
#![forbid(unsafe_code)]
