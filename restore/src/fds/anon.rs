//! eventfd, signalfd and timerfd. The timer is armed only once every descriptor is in
//! place ([`arm_timer`]), as late as the child can, with the time that was left at the
//! dump. The image records only that time left, so an absolute timer, too, expires that
//! long after the restore (as with CRIU), not at its original wall-clock instant.

use super::{set_params, ChildResult};
use stasis_images::pb;
use stasis_sys::fdops;
use std::io::Write;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

fn e(what: &str, id: u32) -> impl Fn(stasis_sys::SysError) -> String + '_ {
    move |err| format!("{what} {id}: {err}")
}

/// Creates eventfd `p` with its counter.
pub fn open_eventfd(p: &pb::EventfdFileEntry) -> ChildResult<OwnedFd> {
    let fd = fdops::eventfd(0, libc::EFD_CLOEXEC).map_err(e("eventfd", p.id))?;
    if p.counter != 0 {
        // eventfd() takes a 32-bit start value; a write adds any 64-bit count.
        let copy = fd
            .try_clone()
            .map_err(|err| format!("eventfd {}: {err}", p.id))?;
        std::fs::File::from(copy)
            .write_all(&p.counter.to_ne_bytes())
            .map_err(|err| format!("eventfd {}: set counter {}: {err}", p.id, p.counter))?;
    }
    set_params(fd.as_fd(), p.flags, &p.fown)?;
    Ok(fd)
}

/// Creates signalfd `p` for its signal mask.
pub fn open_signalfd(p: &pb::SignalfdEntry) -> ChildResult<OwnedFd> {
    let fd = fdops::signalfd(p.sigmask, libc::SFD_CLOEXEC).map_err(e("signalfd", p.id))?;
    set_params(fd.as_fd(), p.flags, &p.fown)?;
    Ok(fd)
}

/// Creates timerfd `p`, not yet armed.
pub fn open_timerfd(p: &pb::TimerfdEntry) -> ChildResult<OwnedFd> {
    let fd =
        fdops::timerfd_create(p.clockid as i32, libc::TFD_CLOEXEC).map_err(e("timerfd", p.id))?;
    set_params(fd.as_fd(), p.flags, &p.fown)?;
    Ok(fd)
}

const NSEC: i64 = 1_000_000_000;

/// Arms timerfd `p` (open at `fd`) with the time left at the dump, and sets its unread
/// expirations.
pub fn arm_timer(fd: BorrowedFd<'_>, p: &pb::TimerfdEntry) -> ChildResult<()> {
    let mut value = (p.vsec as i64, p.vnsec as i64);
    let interval = (p.isec as i64, p.insec as i64);
    if value == (0, 0) && interval != (0, 0) {
        // A periodic timer that expired and was not read yet shows no time left (it is
        // re-armed on read): its next expiry is one interval away.
        value = interval;
    }
    if value != (0, 0) {
        if p.settime_flags & libc::TFD_TIMER_ABSTIME as u32 != 0 {
            // fdinfo shows the time left; an absolute timer wants its expiry.
            let now = fdops::clock_now(p.clockid as i32).map_err(e("timerfd", p.id))?;
            let ns = value.1 + now.1;
            value = (value.0 + now.0 + ns / NSEC, ns % NSEC);
        }
        let spec = fdops::TimerSpec { value, interval };
        fdops::timerfd_settime(fd, p.settime_flags as i32, spec).map_err(e("timerfd", p.id))?;
    }
    if p.ticks != 0 {
        fdops::timerfd_set_ticks(fd, p.ticks).map_err(e("timerfd", p.id))?;
    }
    Ok(())
}
