//! `stasis-runc`: a runc-compatible OCI runtime. Every lifecycle verb is handed to the real
//! runc unchanged; `checkpoint` and `restore` run through the stasis engine with the
//! container fixes and the JVM CPU gate on by default.
//!
//! Not yet implemented: this crate builds no binary until the engine handles containers,
//! so nothing can mistake it for a working runtime.
#![forbid(unsafe_code)]
