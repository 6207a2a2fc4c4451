//! Descriptors a process receives by number across exec, such as the socket of
//! `criu swrk <fd>`, and taking ownership of them.

use crate::error::{check, Result, SysError};
use libc::c_long;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

/// Takes ownership of descriptor `fd`, inherited across exec, and marks it
/// close-on-exec so that nothing this process starts inherits it in turn.
///
/// Only a descriptor without `FD_CLOEXEC` is accepted: one that survived an exec never
/// has the flag, while everything Rust's standard library (and this crate) opens does.
/// Setting the flag marks the number as claimed, so a second call for the same number
/// fails instead of creating a second owner.
pub fn adopt_inherited(fd: i32) -> Result<OwnedFd> {
    let target = format!("fd {fd}");
    if fd < 0 {
        return Err(SysError::from_errno("adopt", target, libc::EBADF));
    }
    // SAFETY: F_GETFD takes plain integers and touches no memory.
    let ret = unsafe { libc::fcntl(fd, libc::F_GETFD) };
    let flags = check(ret as c_long, "F_GETFD", &target)?;
    if flags as i32 & libc::FD_CLOEXEC != 0 {
        // Not inherited across exec: some object of this process already owns it.
        return Err(SysError::from_errno("adopt", target, libc::EBUSY));
    }
    // SAFETY: F_SETFD takes plain integers and touches no memory.
    let ret = unsafe { libc::fcntl(fd, libc::F_SETFD, flags as i32 | libc::FD_CLOEXEC) };
    check(ret as c_long, "F_SETFD", &target)?;
    // SAFETY: the descriptor is open (F_GETFD succeeded) and had no FD_CLOEXEC, so it
    // came through exec and no object of this process owns it; FD_CLOEXEC is now set, so
    // no later call can adopt it again.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// A new descriptor (close-on-exec, numbered `min` or above) for the open file of
/// descriptor number `fd`, which the caller does not own (one inherited from its
/// parent, say): the original is left as it is.
pub fn dup_number(fd: i32, min: i32) -> Result<OwnedFd> {
    // SAFETY: F_DUPFD_CLOEXEC takes plain integers and touches no memory.
    let ret = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, min) };
    let new = check(ret as c_long, "F_DUPFD_CLOEXEC", format!("fd {fd}"))?;
    // SAFETY: the kernel just returned this new descriptor; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(new as i32) })
}

/// The pid of the process at the other end of a unix socket (`SO_PEERCRED`): for a
/// socketpair, the process that created it. `None` when the kernel cannot name that
/// process in this pid namespace (it reports 0 then).
pub fn peer_pid(sock: BorrowedFd<'_>) -> Result<Option<i32>> {
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: cred and len are valid out-pointers sized for struct ucred, as SO_PEERCRED
    // writes it.
    let ret = unsafe {
        libc::getsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    check(
        ret as c_long,
        "SO_PEERCRED",
        format!("fd {}", sock.as_raw_fd()),
    )?;
    Ok((cred.pid > 0).then_some(cred.pid))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn a_descriptor_opened_by_std_is_never_adopted_twice() {
        let f = std::fs::File::open("/proc/self/status").unwrap();
        let err = adopt_inherited(f.as_raw_fd()).unwrap_err();
        assert_eq!(err.errno(), Some(libc::EBUSY));
        assert!(adopt_inherited(-1).is_err());
    }

    #[test]
    fn the_peer_of_a_socketpair_is_the_process_that_created_it() {
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        use std::os::fd::AsFd;
        assert_eq!(
            peer_pid(a.as_fd()).unwrap(),
            Some(std::process::id() as i32)
        );
    }
}
