//! The raw system interfaces that `libc` does not wrap safely: ptrace requests and
//! register sets (including `NT_X86_XSTATE`), `clone3` with `set_tid`, remote memory
//! access, and the few structs of the kernel ABI a checkpoint/restore engine needs.
//!
//! Every `unsafe` block of stasis lives in this crate, and each carries a `// SAFETY:`
//! comment. The other crates forbid `unsafe` and call the safe wrappers here.
#![deny(clippy::undocumented_unsafe_blocks)]

pub mod cpu;
pub mod error;
pub mod fd;
pub mod fdops;
pub mod ipc;
pub mod mem;
pub mod ns;
pub mod process;
pub mod ptrace;
pub mod tcp;
pub mod tty;
pub mod uffd;
pub mod unixsock;
pub mod xsave;

pub use error::{Result, SysError};
