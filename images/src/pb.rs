//! Generated protobuf messages for every CRIU image, built from `proto/*.proto`
//! by `build.rs`. Message names follow CRIU's (`core_entry` becomes
//! [`CoreEntry`]), nested enums live in snake-case modules
//! (`core_entry::March`), and the RPC protocol of `criu swrk` lives in [`rpc`].
//!
//! Notes on prost's proto2 mapping that matter for CRIU compatibility:
//! * `required` scalars are plain fields and are always encoded, even when
//!   zero; CRIU's protobuf-c refuses an entry that lacks one.
//! * `required` message fields are plain (non-`Option`) fields too, and are
//!   always encoded (as an empty message when default).
//! * repeated scalars are encoded unpacked (the proto2 default), as CRIU does.
//! * enum fields are `i32`; use the generated enum's `as i32` / `try_from`.

include!(concat!(env!("OUT_DIR"), "/criu.rs"));

/// The encoded `google.protobuf.FileDescriptorSet` of all messages above
/// (package `criu`, and `criu.rpc`), for dynamic decoding (e.g. a describe
/// tool printing any image as JSON).
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/criu.fds"));

/// The `criu swrk` RPC protocol (`rpc.proto`): `criu_req`, `criu_resp`,
/// `criu_opts` and their helpers.
pub mod rpc {
    include!(concat!(env!("OUT_DIR"), "/criu.rpc.rs"));
}
