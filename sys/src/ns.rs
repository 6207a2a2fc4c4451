//! Namespaces and mounts: joining a namespace, the mount calls a mount tree is rebuilt
//! with (`mount`, `umount2`, `pivot_root`), and the UTS names.

use crate::error::{check, Result, SysError};
use std::ffi::CString;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

fn cstr(s: &str, what: &'static str) -> Result<CString> {
    CString::new(s).map_err(|_| SysError::from_errno(what, s, libc::EINVAL))
}

/// Moves the calling thread into the namespace `fd` refers to (`nstype` 0: any kind).
pub fn setns(fd: BorrowedFd<'_>, nstype: i32) -> Result<()> {
    // SAFETY: setns only reads its two integer arguments.
    let r = unsafe { libc::setns(fd.as_raw_fd(), nstype) };
    check(r as libc::c_long, "setns", format!("fd {}", fd.as_raw_fd())).map(drop)
}

/// Gives the calling thread (or process, for the kinds that need it) new namespaces.
pub fn unshare(flags: i32) -> Result<()> {
    // SAFETY: unshare only reads its integer argument.
    let r = unsafe { libc::unshare(flags) };
    check(r as libc::c_long, "unshare", format!("flags {flags:#x}")).map(drop)
}

/// `mount(2)`; `None` passes a null pointer.
pub fn mount(
    source: Option<&str>,
    target: &str,
    fstype: Option<&str>,
    flags: u64,
    data: Option<&str>,
) -> Result<()> {
    let src = source.map(|s| cstr(s, "mount")).transpose()?;
    let tgt = cstr(target, "mount")?;
    let fs = fstype.map(|s| cstr(s, "mount")).transpose()?;
    let dat = data.map(|s| cstr(s, "mount")).transpose()?;
    let ptr = |c: &Option<CString>| c.as_ref().map_or(std::ptr::null(), |c| c.as_ptr());
    // SAFETY: every pointer is null or a NUL-terminated string that outlives the call;
    // the kernel copies what it needs.
    let r = unsafe {
        libc::mount(
            ptr(&src),
            tgt.as_ptr(),
            ptr(&fs),
            flags as libc::c_ulong,
            ptr(&dat) as *const libc::c_void,
        )
    };
    if r < 0 {
        let what = format!(
            "{} on {target} (type {}, flags {flags:#x}, data {:?})",
            source.unwrap_or("none"),
            fstype.unwrap_or("-"),
            data.unwrap_or("")
        );
        return Err(SysError::last("mount", what));
    }
    Ok(())
}

/// `umount2(2)`.
pub fn umount2(target: &str, flags: i32) -> Result<()> {
    let t = cstr(target, "umount2")?;
    // SAFETY: `t` is a NUL-terminated string that outlives the call.
    let r = unsafe { libc::umount2(t.as_ptr(), flags) };
    check(r as libc::c_long, "umount2", target).map(drop)
}

/// `MOVE_MOUNT_SET_GROUP` (Linux 5.15): `move_mount` gives the target mount the source's
/// propagation instead of moving anything.
const MOVE_MOUNT_SET_GROUP: libc::c_uint = 0x100;

/// Makes the mount at `to` (a private mount root) a peer of the mount at `from`'s peer
/// group and a slave of its master, if it has them: `move_mount(from, to,
/// MOVE_MOUNT_SET_GROUP)`, the call CRIU uses to rebuild peer groups. Both must be mount
/// roots of one filesystem, with `to`'s root inside `from`'s.
pub fn set_mount_group(from: &str, to: &str) -> Result<()> {
    let f = cstr(from, "move_mount")?;
    let t = cstr(to, "move_mount")?;
    // SAFETY: both paths are NUL-terminated strings that outlive the call; the directory
    // descriptors are AT_FDCWD.
    let r = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            libc::AT_FDCWD,
            f.as_ptr(),
            libc::AT_FDCWD,
            t.as_ptr(),
            MOVE_MOUNT_SET_GROUP,
        )
    };
    check(
        r,
        "move_mount(MOVE_MOUNT_SET_GROUP)",
        format!("{from} -> {to}"),
    )
    .map(drop)
}

/// `pivot_root(2)`: `new_root` becomes `/`, the old root is put at `put_old`.
pub fn pivot_root(new_root: &str, put_old: &str) -> Result<()> {
    let n = cstr(new_root, "pivot_root")?;
    let o = cstr(put_old, "pivot_root")?;
    // SAFETY: both are NUL-terminated strings that outlive the call.
    let r = unsafe { libc::syscall(libc::SYS_pivot_root, n.as_ptr(), o.as_ptr()) };
    check(r, "pivot_root", new_root).map(drop)
}

/// Sets the host name of the caller's UTS namespace.
pub fn sethostname(name: &str) -> Result<()> {
    // SAFETY: the pointer and length describe `name`'s bytes, which outlive the call.
    let r = unsafe { libc::sethostname(name.as_ptr().cast(), name.len()) };
    check(r as libc::c_long, "sethostname", name).map(drop)
}

/// Sets the NIS domain name of the caller's UTS namespace.
pub fn setdomainname(name: &str) -> Result<()> {
    // SAFETY: the pointer and length describe `name`'s bytes, which outlive the call.
    let r = unsafe { libc::setdomainname(name.as_ptr().cast(), name.len()) };
    check(r as libc::c_long, "setdomainname", name).map(drop)
}

/// The node and domain names of the caller's UTS namespace.
pub fn uts_names() -> Result<(String, String)> {
    // SAFETY: utsname is plain bytes; zero is a valid value.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: `u` is a valid, writable utsname.
    let r = unsafe { libc::uname(&mut u) };
    check(r as libc::c_long, "uname", "self")?;
    let text = |f: &[libc::c_char]| {
        let bytes: Vec<u8> = f
            .iter()
            .take_while(|&&c| c != 0)
            .map(|&c| c as u8)
            .collect();
        String::from_utf8_lossy(&bytes).into_owned()
    };
    Ok((text(&u.nodename), text(&u.domainname)))
}

/// Opens `name` read-only relative to the directory `dir` (which may be an `O_PATH` fd).
pub fn open_at(dir: BorrowedFd<'_>, name: &str) -> Result<OwnedFd> {
    let n = cstr(name, "openat")?;
    // SAFETY: `n` is a NUL-terminated string that outlives the call.
    let fd = unsafe {
        libc::openat(
            dir.as_raw_fd(),
            n.as_ptr(),
            libc::O_RDONLY | libc::O_CLOEXEC,
        )
    };
    check(fd as libc::c_long, "openat", name)?;
    // SAFETY: the kernel just returned this new descriptor; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}
