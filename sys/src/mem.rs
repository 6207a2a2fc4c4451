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
