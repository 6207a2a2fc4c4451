//! Terminals: pty slaves reopened by their path, the session's controlling terminal and
//! foreground group set again, and — for a container's console, whose master was its
//! runtime's — a new pty made in the container's own devpts with the dumped index and
//! settings, its master handed to the caller (CRIU's `orphan-pts-master`).

use super::{ChildResult, Objects};
use crate::plan::TaskPlan;
use stasis_images::pb;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;

/// The path a terminal file object is reopened by (its `regf_id` entry).
pub fn path<'a>(objs: &'a Objects, t: &pb::TtyFileEntry) -> Option<&'a str> {
    let regf = t.regf_id?;
    objs.get(regf)?.reg.as_ref().map(|r| r.name.as_str())
}

/// Opens the terminal of `t` by its path with the dumped flags, never as a controlling
/// terminal by accident (that is [`take_controlling`]'s job).
pub fn open(objs: &Objects, t: &pb::TtyFileEntry) -> ChildResult<OwnedFd> {
    let path = path(objs, t).ok_or_else(|| format!("terminal {} has no path entry", t.id))?;
    super::reg::open_path(path, t.flags | libc::O_NOCTTY as u32, 0)
}

/// In a session leader: makes the terminal its session had its controlling terminal
/// again, with the same foreground group. Nothing for a task that led no session with
/// a terminal of the image (a shell job's terminal stays the shell's).
pub fn take_controlling(plan: &TaskPlan) -> ChildResult<()> {
    let objs = &plan.objects;
    for info in objs
        .ttys
        .values()
        .filter(|i| i.sid != 0 && i.sid as i32 == plan.pid)
    {
        let held = plan.fds.iter().find(|f| {
            objs.get(f.file_id)
                .and_then(|e| e.tty.as_ref())
                .is_some_and(|t| t.tty_info_id == info.id)
        });
        let index = info.pty.as_ref().map_or(0, |p| p.index);
        let what = |e: stasis_sys::SysError| format!("terminal /dev/pts/{index}: {e}");
        // A copy of the descriptor in place now, or the path (the leader may have
        // closed its own).
        let own = match held {
            Some(f) => stasis_sys::fd::dup_number(f.fd, 0).map_err(what)?,
            None => {
                let t = objs
                    .ttys_files()
                    .find(|t| t.tty_info_id == info.id)
                    .ok_or_else(|| format!("terminal {} has no file entry", info.id))?;
                open(objs, t)?
            }
        };
        let fd = own.as_fd();
        stasis_sys::tty::set_controlling(fd).map_err(what)?;
        if info.pgrp != 0 {
            stasis_sys::tty::set_foreground(fd, info.pgrp as i32).map_err(what)?;
        }
    }
    Ok(())
}

/// Settings of a terminal from its image entry, applied through its master (the kernel
/// applies a master's termios and window size to its slave).
fn apply(master: BorrowedFd<'_>, info: &pb::TtyInfoEntry) -> ChildResult<()> {
    if let Some(t) = &info.termios {
        let mut k = stasis_sys::tty::termios(master).map_err(|e| e.to_string())?;
        k.c_iflag = t.c_iflag;
        k.c_oflag = t.c_oflag;
        k.c_cflag = t.c_cflag;
        k.c_lflag = t.c_lflag;
        k.c_line = t.c_line as u8;
        for (slot, &c) in k.c_cc.iter_mut().zip(&t.c_cc) {
            *slot = c as u8;
        }
        stasis_sys::tty::set_termios(master, &k).map_err(|e| e.to_string())?;
    }
    if let Some(w) = &info.winsize {
        let k = libc::winsize {
            ws_row: w.ws_row as u16,
            ws_col: w.ws_col as u16,
            ws_xpixel: w.ws_xpixel as u16,
            ws_ypixel: w.ws_ypixel as u16,
        };
        stasis_sys::tty::set_winsize(master, &k).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// In a devpts just mounted at `devpts` (a fresh instance, dumped with device number
/// `dev`): makes the ptys of `orphans` that lived in it, each at its dumped index
/// (`/dev/pts/N` must exist before anything binds or opens it), unlocked and set up as
/// dumped. Returns their masters, which the caller hands over.
pub fn make_orphans(
    devpts: &str,
    dev: u32,
    orphans: &[pb::TtyInfoEntry],
) -> ChildResult<Vec<OwnedFd>> {
    let mut wanted: Vec<(u32, &pb::TtyInfoEntry)> = orphans
        .iter()
        .filter(|i| i.dev == Some(dev))
        .map(|i| (i.pty.as_ref().map_or(0, |p| p.index), i))
        .collect();
    wanted.sort_by_key(|(n, _)| *n);
    let Some(&(highest, _)) = wanted.last() else {
        return Ok(Vec::new());
    };
    let ptmx = format!("{}/ptmx", devpts.trim_end_matches('/'));
    let mut masters = Vec::new();
    let mut made = Vec::new();
    // Masters at indexes no one asked for: held until the wanted ones exist, so that the
    // kernel hands out the next index each time, then closed.
    let mut spare = Vec::new();
    while masters.len() < wanted.len() {
        let m = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NOCTTY | libc::O_CLOEXEC)
            .open(&ptmx)
            .map(OwnedFd::from)
            .map_err(|e| format!("open {ptmx}: {e}"))?;
        let n = stasis_sys::tty::pty_index(m.as_fd()).map_err(|e| e.to_string())?;
        match wanted.iter().find(|(w, _)| *w == n) {
            Some((_, info)) => {
                stasis_sys::tty::unlock_pty(m.as_fd()).map_err(|e| e.to_string())?;
                apply(m.as_fd(), info).map_err(|e| format!("pty {n}: {e}"))?;
                masters.push(m);
                made.push(n);
            }
            None if n > highest => {
                let missing: Vec<u32> = wanted
                    .iter()
                    .map(|(w, _)| *w)
                    .filter(|w| !made.contains(w))
                    .collect();
                return Err(format!(
                    "{ptmx}: pty indexes {missing:?} are taken in the new devpts"
                ));
            }
            None => spare.push(m),
        }
    }
    drop(spare);
    Ok(masters)
}

/// The host's view of the masters a restored root made ([`make_orphans`]): its
/// descriptors on a `ptmx`, taken with `pidfd_getfd`, with their indexes.
pub fn take_masters(pid: i32) -> Result<Vec<(u32, OwnedFd)>, String> {
    let pidfd = stasis_sys::fdops::pidfd_open(pid).map_err(|e| e.to_string())?;
    let dir = format!("/proc/{pid}/fd");
    let entries = std::fs::read_dir(&dir).map_err(|e| format!("{dir}: {e}"))?;
    let mut out = Vec::new();
    for e in entries {
        let e = e.map_err(|e| format!("{dir}: {e}"))?;
        let Ok(target) = std::fs::read_link(e.path()) else {
            continue;
        };
        if !target.to_string_lossy().ends_with("ptmx") {
            continue;
        }
        let Some(n) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        let fd = stasis_sys::fdops::pidfd_getfd(pidfd.as_fd(), n).map_err(|e| e.to_string())?;
        let index = stasis_sys::tty::pty_index(fd.as_fd()).map_err(|e| e.to_string())?;
        out.push((index, fd));
    }
    out.sort_by_key(|(n, fd)| (*n, fd.as_raw_fd()));
    Ok(out)
}
