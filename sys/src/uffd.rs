//! userfaultfd, probed for what lazy restore (post-copy) needs: the non-cooperative
//! events that let a page server follow a restored task's fork, mremap, munmap and
//! madvise(MADV_DONTNEED/REMOVE).

use crate::error::{check, Result, SysError};
use libc::c_long;
use std::os::fd::{FromRawFd, OwnedFd};

/// `UFFD_API`: the only protocol version the kernel speaks.
const UFFD_API: u64 = 0xaa;
/// `UFFD_USER_MODE_ONLY`: handle user-space faults only (allowed without privilege).
const UFFD_USER_MODE_ONLY: i32 = 1;
/// `UFFDIO_API` = `_IOWR(0xAA, 0x3F, struct uffdio_api)`.
const UFFDIO_API: u64 = 0xc018_aa3f;

pub const UFFD_FEATURE_EVENT_FORK: u64 = 1 << 1;
pub const UFFD_FEATURE_EVENT_REMAP: u64 = 1 << 2;
pub const UFFD_FEATURE_EVENT_REMOVE: u64 = 1 << 3;
pub const UFFD_FEATURE_EVENT_UNMAP: u64 = 1 << 6;

/// The events a lazy-pages daemon needs to follow a task it does not control, as CRIU's
/// `uffd_noncooperative()` requires them.
pub const NONCOOPERATIVE: u64 = UFFD_FEATURE_EVENT_FORK
    | UFFD_FEATURE_EVENT_REMAP
    | UFFD_FEATURE_EVENT_REMOVE
    | UFFD_FEATURE_EVENT_UNMAP;

#[repr(C)]
#[derive(Default)]
struct UffdioApi {
    api: u64,
    features: u64,
    ioctls: u64,
}

/// The features this kernel's userfaultfd offers, from the `UFFDIO_API` handshake on a
/// fresh descriptor (asking for none makes the kernel report all it has). Fails if the
/// kernel has no userfaultfd or this process may not create one.
pub fn features() -> Result<u64> {
    let flags = libc::O_CLOEXEC | libc::O_NONBLOCK;
    // SAFETY: userfaultfd takes plain integers; the descriptor it returns is owned below.
    let mut ret = unsafe { libc::syscall(libc::SYS_userfaultfd, flags) };
    if ret < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM) {
        // SAFETY: as above.
        ret = unsafe { libc::syscall(libc::SYS_userfaultfd, flags | UFFD_USER_MODE_ONLY) };
    }
    let fd = check(ret, "userfaultfd", "self")? as i32;
    // SAFETY: fd was just returned by the kernel and nothing else owns it.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut api = UffdioApi {
        api: UFFD_API,
        ..Default::default()
    };
    // SAFETY: UFFDIO_API reads and writes one struct uffdio_api, which `api` is, and the
    // descriptor stays open (owned) for the call.
    let ret = unsafe { libc::ioctl(fd, UFFDIO_API as _, &mut api as *mut UffdioApi) };
    check(ret as c_long, "UFFDIO_API", "userfaultfd")?;
    drop(owned);
    if api.api != UFFD_API {
        return Err(SysError::from_errno(
            "UFFDIO_API",
            "userfaultfd",
            libc::EINVAL,
        ));
    }
    Ok(api.features)
}
