//! `/proc/PID/mem`: reads and writes any mapping of a stopped task, including ones without
//! `PROT_READ` or `PROT_WRITE` (the kernel uses FOLL_FORCE for ptracers).

use crate::{ParasiteError, Result};
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;

/// An open `/proc/PID/mem`.
pub struct ProcMem {
    pid: i32,
    file: File,
}

impl ProcMem {
    /// Opens the memory of `pid` for reading and writing.
    pub fn open(pid: i32) -> Result<ProcMem> {
        let path = format!("/proc/{pid}/mem");
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|source| ParasiteError::Io { pid, path, source })?;
        Ok(ProcMem { pid, file })
    }

    fn err(&self, what: &str, addr: u64, source: std::io::Error) -> ParasiteError {
        ParasiteError::Io {
            pid: self.pid,
            path: format!("/proc/{}/mem {what} at {addr:#x}", self.pid),
            source,
        }
    }

    /// Fills `buf` from `addr`.
    pub fn read(&self, addr: u64, buf: &mut [u8]) -> Result<()> {
        self.file
            .read_exact_at(buf, addr)
            .map_err(|e| self.err("read", addr, e))
    }

    /// Writes `buf` at `addr`.
    pub fn write(&self, addr: u64, buf: &[u8]) -> Result<()> {
        self.file
            .write_all_at(buf, addr)
            .map_err(|e| self.err("write", addr, e))
    }
}
