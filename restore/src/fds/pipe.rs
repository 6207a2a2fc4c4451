//! Pipes and FIFOs. One pipe is created per dumped pipe inode; its first read-only and
//! first write-only descriptions are the two ends, any other description of it is a
//! reopen through `/proc/self/fd`. The dumped bytes are written back before any
//! descriptor is handed out, with the dumped capacity set first.
//!
//! A FIFO is opened by path, with a temporary read-write open of the same FIFO held
//! meanwhile so that neither a read-only nor a write-only open waits for a partner.

use super::{set_params, ChildResult, Made, Objects, PipeData};
use crate::plan::FdPlan;
use stasis_images::pb;
use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;

/// Creates the pipe of `p` and every description of it the descriptors use.
pub fn open_pipe(
    objs: &Objects,
    fds: &[FdPlan],
    p: &pb::PipeEntry,
    made: &mut Made,
) -> ChildResult<()> {
    let mut ends: Vec<&pb::PipeEntry> = Vec::new();
    for f in fds {
        if let Some(q) = objs.get(f.file_id).and_then(|e| e.pipe.as_ref()) {
            if q.pipe_id == p.pipe_id && !ends.iter().any(|e| e.id == q.id) {
                ends.push(q);
            }
        }
    }
    let (r, w) = stasis_sys::fdops::pipe2(libc::O_CLOEXEC)
        .map_err(|e| format!("pipe {:#x}: {e}", p.pipe_id))?;
    if let Some(data) = objs.pipe_data.get(&p.pipe_id) {
        fill(w.as_fd(), data).map_err(|e| format!("pipe {:#x}: {e}", p.pipe_id))?;
    }
    let (mut reader, mut writer) = (Some(r), Some(w));
    let (rfd, wfd) = (
        reader.as_ref().map(|f| f.as_raw_fd()).unwrap_or(-1),
        writer.as_ref().map(|f| f.as_raw_fd()).unwrap_or(-1),
    );
    let mut out: Vec<(u32, OwnedFd)> = Vec::new();
    for e in &ends {
        let acc = e.flags as i32 & libc::O_ACCMODE;
        let fd = match acc {
            libc::O_RDONLY if reader.is_some() => reader.take().expect("checked"),
            libc::O_WRONLY if writer.is_some() => writer.take().expect("checked"),
            _ => {
                let from = if acc == libc::O_WRONLY { wfd } else { rfd };
                reopen(from, e.flags).map_err(|err| format!("pipe {:#x}: {err}", p.pipe_id))?
            }
        };
        set_params(fd.as_fd(), e.flags, &e.fown)?;
        out.push((e.id, fd));
    }
    for (id, fd) in out {
        made.put(id, fd)?;
    }
    Ok(())
}

/// Opens FIFO `p` by its path, filling its dumped bytes the first time.
pub fn open_fifo(objs: &Objects, p: &pb::FifoEntry, made: &mut Made) -> ChildResult<()> {
    let regf = p.regf_id.unwrap_or(p.id);
    let reg = objs
        .get(regf)
        .and_then(|e| e.reg.as_ref())
        .ok_or_else(|| format!("fifo {}: no path entry {regf}", p.id))?;
    let hold = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&reg.name)
        .map_err(|e| format!("open fifo {}: {e}", reg.name))?;
    if made.fifo_filled.insert(p.pipe_id) {
        if let Some(data) = objs.fifo_data.get(&p.pipe_id) {
            fill(hold.as_fd(), data).map_err(|e| format!("fifo {}: {e}", reg.name))?;
        }
    }
    let fd = super::reg::open_path(&reg.name, reg.flags, 0)?;
    set_params(fd.as_fd(), reg.flags, &reg.fown)?;
    made.put(p.id, fd)?;
    drop(hold);
    Ok(())
}

/// Another description of the pipe behind `fd`, opened with `flags`.
fn reopen(fd: i32, flags: u32) -> ChildResult<OwnedFd> {
    let acc = flags as i32 & libc::O_ACCMODE;
    let path = format!("/proc/self/fd/{fd}");
    let file = std::fs::OpenOptions::new()
        .read(acc != libc::O_WRONLY)
        .write(acc != libc::O_RDONLY)
        .custom_flags(libc::O_NONBLOCK)
        .open(&path)
        .map_err(|e| format!("reopen {path}: {e}"))?;
    Ok(OwnedFd::from(file))
}

/// Sets the pipe's capacity and writes the dumped bytes into it, without blocking.
fn fill(w: BorrowedFd<'_>, data: &PipeData) -> ChildResult<()> {
    if let Some(size) = data.size {
        stasis_sys::fdops::set_pipe_size(w, size).map_err(|e| e.to_string())?;
    }
    if data.bytes.is_empty() {
        return Ok(());
    }
    let flags = stasis_sys::fdops::status_flags(w).map_err(|e| e.to_string())?;
    stasis_sys::fdops::set_status_flags(w, flags | libc::O_NONBLOCK).map_err(|e| e.to_string())?;
    let copy = w.try_clone_to_owned().map_err(|e| e.to_string())?;
    std::fs::File::from(copy)
        .write_all(&data.bytes)
        .map_err(|e| format!("writing {} buffered bytes: {e}", data.bytes.len()))?;
    stasis_sys::fdops::set_status_flags(w, flags).map_err(|e| e.to_string())?;
    Ok(())
}
