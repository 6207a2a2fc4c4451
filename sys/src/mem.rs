//! Reading and writing another process's memory.

use crate::error::{Result, SysError};
use libc::pid_t;

/// Copies `buf.len()` bytes from `addr` in process `pid` into `buf` with one
/// `process_vm_readv`. Returns the number of bytes copied (short on a partial fault).
pub fn read_remote(pid: pid_t, addr: u64, buf: &mut [u8]) -> Result<usize> {
    let local = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    let remote = libc::iovec {
        iov_base: addr as *mut libc::c_void,
        iov_len: buf.len(),
    };
    // SAFETY: the local iovec covers exactly `buf`, which is writable for its length; the
    // remote range is only read by the kernel under its own checks.
    let ret = unsafe { libc::process_vm_readv(pid, &local, 1, &remote, 1, 0) };
    if ret < 0 {
        return Err(SysError::last(
            "process_vm_readv",
            format!("pid {pid} at {addr:#x}"),
        ));
    }
    Ok(ret as usize)
}

/// Copies `buf` to `addr` in process `pid` with one `process_vm_writev`. Returns the
/// number of bytes copied (short on a partial fault).
pub fn write_remote(pid: pid_t, addr: u64, buf: &[u8]) -> Result<usize> {
    let local = libc::iovec {
        iov_base: buf.as_ptr() as *mut libc::c_void,
        iov_len: buf.len(),
    };
    let remote = libc::iovec {
        iov_base: addr as *mut libc::c_void,
        iov_len: buf.len(),
    };
    // SAFETY: the local iovec covers exactly `buf`, which is readable for its length; the
    // kernel writes only the remote range, under its own checks.
    let ret = unsafe { libc::process_vm_writev(pid, &local, 1, &remote, 1, 0) };
    if ret < 0 {
        return Err(SysError::last(
            "process_vm_writev",
            format!("pid {pid} at {addr:#x}"),
        ));
    }
    Ok(ret as usize)
}

/// Private anonymous memory this process mapped at a fixed address for another purpose
/// than its own use (a restoring task's copy of a VMA, moved into place later): Rust
/// never refers to it, it is read and written through the kernel only. A forked child
/// has the same region at the same address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Region {
    addr: u64,
    len: u64,
}

impl Region {
    /// Maps `len` bytes, read-write, at exactly `addr`; fails if anything is there.
    pub fn map_at(addr: u64, len: u64) -> Result<Region> {
        // SAFETY: MAP_FIXED_NOREPLACE never replaces an existing mapping, so no memory
        // Rust uses is touched; the new mapping is referred to by address only.
        let got = unsafe {
            libc::mmap(
                addr as *mut libc::c_void,
                len as usize,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED_NOREPLACE,
                -1,
                0,
            )
        };
        if got == libc::MAP_FAILED {
            return Err(SysError::last(
                "mmap",
                format!("{len:#x} bytes at {addr:#x}"),
            ));
        }
        if got as u64 != addr {
            // An old kernel that ignores MAP_FIXED_NOREPLACE may place it elsewhere.
            // SAFETY: `got` is the mapping just made, of `len` bytes, used by nothing.
            unsafe { libc::munmap(got, len as usize) };
            return Err(odd("mmap", addr, format!("placed at {:#x}", got as u64)));
        }
        Ok(Region { addr, len })
    }

    pub fn addr(&self) -> u64 {
        self.addr
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Copies `buf.len()` bytes at `off` into `buf`, through `/proc/self/mem`: unlike
    /// `process_vm_readv`, whose pin unshares a page a fork still shares, this leaves
    /// copy-on-write sharing as it is.
    pub fn read(&self, off: u64, buf: &mut [u8]) -> Result<()> {
        use std::os::unix::fs::FileExt;
        self.check(off, buf.len())?;
        // Opened on every call: a descriptor opened before a fork reads the parent.
        let mem = std::fs::File::open("/proc/self/mem").map_err(|e| SysError {
            op: "open",
            target: "/proc/self/mem".into(),
            source: e,
        })?;
        mem.read_exact_at(buf, self.addr + off)
            .map_err(|e| SysError {
                op: "pread /proc/self/mem",
                target: format!("{:#x}", self.addr + off),
                source: e,
            })
    }

    /// Copies `buf` to `off`.
    pub fn write(&self, off: u64, buf: &[u8]) -> Result<()> {
        self.check(off, buf.len())?;
        let got = write_remote(std::process::id() as pid_t, self.addr + off, buf)?;
        if got != buf.len() {
            return Err(odd(
                "process_vm_writev",
                self.addr + off,
                "short write".into(),
            ));
        }
        Ok(())
    }

    /// Drops the pages of `[off, off + len)`: they read as zeros again.
    pub fn discard(&self, off: u64, len: u64) -> Result<()> {
        self.check(off, len as usize)?;
        // SAFETY: the range lies inside this region, which nothing in Rust refers to.
        let ret = unsafe {
            libc::madvise(
                (self.addr + off) as *mut libc::c_void,
                len as usize,
                libc::MADV_DONTNEED,
            )
        };
        if ret < 0 {
            return Err(SysError::last("madvise", format!("{:#x}", self.addr + off)));
        }
        Ok(())
    }

    /// Unmaps the region.
    pub fn unmap(self) -> Result<()> {
        // SAFETY: the region is this mapping of ours, which nothing in Rust refers to.
        let ret = unsafe { libc::munmap(self.addr as *mut libc::c_void, self.len as usize) };
        if ret < 0 {
            return Err(SysError::last("munmap", format!("{:#x}", self.addr)));
        }
        Ok(())
    }

    fn check(&self, off: u64, len: usize) -> Result<()> {
        match off.checked_add(len as u64) {
            Some(end) if end <= self.len => Ok(()),
            _ => Err(odd(
                "region access",
                self.addr,
                format!(
                    "{len:#x} bytes at offset {off:#x} leave its {:#x}",
                    self.len
                ),
            )),
        }
    }
}

/// An error the kernel did not report by errno.
fn odd(op: &'static str, addr: u64, what: String) -> SysError {
    SysError {
        op,
        target: format!("{addr:#x}"),
        source: std::io::Error::other(what),
    }
}
