//! epoll instances. Created empty with the other descriptors; their registrations are
//! added once every descriptor is at its number ([`register`]), because an epoll item
//! is keyed by the descriptor number it was added with.

use super::{set_params, ChildResult};
use stasis_images::pb;
use std::os::fd::{AsFd, OwnedFd};

/// Creates epoll instance `p`, without registrations.
pub fn open(p: &pb::EventpollFileEntry) -> ChildResult<OwnedFd> {
    let fd = stasis_sys::fdops::epoll_create(libc::EPOLL_CLOEXEC)
        .map_err(|err| format!("epoll {}: {err}", p.id))?;
    set_params(fd.as_fd(), p.flags, &p.fown)?;
    Ok(fd)
}

/// Adds every registration of `p` to the instance open at `epfd`.
pub fn register(epfd: i32, p: &pb::EventpollFileEntry) -> ChildResult<()> {
    for t in &p.tfd {
        stasis_sys::fdops::epoll_add(epfd, t.tfd as i32, t.events, t.data)
            .map_err(|err| format!("epoll {}: register fd {}: {err}", p.id, t.tfd))?;
    }
    Ok(())
}
