//! eventfd, signalfd and timerfd: everything they hold is in fdinfo.
//!
//! * eventfd: the counter (`eventfd-count`, hex). A semaphore-mode eventfd is refused:
//!   CRIU's `eventfd_file_entry` has no place for EFD_SEMAPHORE.
//! * signalfd: the signal mask (`sigmask`, hex, bit n-1 for signal n).
//! * timerfd: the clock, the unread expirations (`ticks`), the settime flags, and the
//!   time left to the next expiry and the interval.

use super::{field, hex_field, value, OpenFd};
use crate::files::FileTable;
use crate::Result;
use stasis_images::pb;

/// Dumps an eventfd as file `id`.
pub fn dump_eventfd(table: &mut FileTable, f: &OpenFd<'_>, id: u32) -> Result<pb::FdTypes> {
    let counter: u64 = hex_field(f, "eventfd-count")?;
    if value(f, "eventfd-semaphore").is_ok_and(|v| v != "0") {
        return Err(f.unsupported(
            "an eventfd in semaphore mode (EFD_SEMAPHORE), which CRIU's image cannot express",
        ));
    }
    table.push(pb::FileEntry {
        r#type: pb::FdTypes::Eventfd as i32,
        id,
        efd: Some(pb::EventfdFileEntry {
            id,
            flags: f.flags,
            fown: f.fown()?,
            counter,
        }),
        ..Default::default()
    });
    Ok(pb::FdTypes::Eventfd)
}

/// Dumps a signalfd as file `id`.
pub fn dump_signalfd(table: &mut FileTable, f: &OpenFd<'_>, id: u32) -> Result<pb::FdTypes> {
    let sigmask: u64 = hex_field(f, "sigmask")?;
    table.push(pb::FileEntry {
        r#type: pb::FdTypes::Signalfd as i32,
        id,
        sgfd: Some(pb::SignalfdEntry {
            id,
            flags: f.flags,
            fown: f.fown()?,
            sigmask,
        }),
        ..Default::default()
    });
    Ok(pb::FdTypes::Signalfd)
}

/// The clocks a timerfd can use that stasis restores.
const CLOCKS: [u32; 5] = [
    libc::CLOCK_REALTIME as u32,
    libc::CLOCK_MONOTONIC as u32,
    libc::CLOCK_BOOTTIME as u32,
    libc::CLOCK_REALTIME_ALARM as u32,
    libc::CLOCK_BOOTTIME_ALARM as u32,
];

/// `(sec, nsec)` as fdinfo prints a timespec.
fn timespec(f: &OpenFd<'_>, key: &str) -> Result<(u64, u64)> {
    let v = value(f, key)?;
    let bad = || f.bad_fdinfo(&format!("{key}: {v}"));
    let inner = v
        .strip_prefix('(')
        .and_then(|v| v.strip_suffix(')'))
        .ok_or_else(bad)?;
    let (s, ns) = inner.split_once(',').ok_or_else(bad)?;
    Ok((
        s.trim().parse().map_err(|_| bad())?,
        ns.trim().parse().map_err(|_| bad())?,
    ))
}

/// Dumps a timerfd as file `id`.
pub fn dump_timerfd(table: &mut FileTable, f: &OpenFd<'_>, id: u32) -> Result<pb::FdTypes> {
    let clockid: u32 = field(f, "clockid")?;
    if !CLOCKS.contains(&clockid) {
        return Err(f.unsupported(format!("a timerfd on clock {clockid}")));
    }
    let settime = value(f, "settime flags")?;
    let settime_flags = u32::from_str_radix(settime, 8)
        .map_err(|_| f.bad_fdinfo(&format!("settime flags: {settime}")))?;
    let (vsec, vnsec) = timespec(f, "it_value")?;
    let (isec, insec) = timespec(f, "it_interval")?;
    table.push(pb::FileEntry {
        r#type: pb::FdTypes::Timerfd as i32,
        id,
        tfd: Some(pb::TimerfdEntry {
            id,
            flags: f.flags,
            fown: f.fown()?,
            clockid,
            ticks: field(f, "ticks")?,
            settime_flags,
            vsec,
            vnsec,
            isec,
            insec,
        }),
        ..Default::default()
    });
    Ok(pb::FdTypes::Timerfd)
}
