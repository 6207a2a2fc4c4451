//! Pipes and FIFOs: a `pipe_entry` (or `fifo_entry` plus the FIFO's path as a regular
//! file entry) per open file description, and the bytes buffered in each pipe once, in
//! `pipes-data.img` / `fifo-data.img`.
//!
//! The buffered bytes are read without consuming them: `tee()` duplicates them from a
//! copy of the task's descriptor into a pipe of stasis's own, which is then drained.

use super::OpenFd;
use crate::files::FileTable;
use crate::Result;
use stasis_images::pb;
use std::io::Read;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;

/// Dumps a pipe end as file `id`.
pub fn dump_pipe(table: &mut FileTable, f: &OpenFd<'_>, id: u32) -> Result<pb::FdTypes> {
    check_flags(f)?;
    let pipe_id = f.ino32();
    let fown = f.fown()?;
    table.push(pb::FileEntry {
        r#type: pb::FdTypes::Pipe as i32,
        id,
        pipe: Some(pb::PipeEntry {
            id,
            pipe_id,
            flags: f.flags,
            fown,
        }),
        ..Default::default()
    });
    dump_data(table, f, false)?;
    Ok(pb::FdTypes::Pipe)
}

/// Dumps a FIFO as file `id`: its path and flags go in a regular-file entry of its own.
pub fn dump_fifo(table: &mut FileTable, f: &OpenFd<'_>, id: u32) -> Result<pb::FdTypes> {
    check_flags(f)?;
    let regf_id = table.new_id();
    table.push_reg(regf_id, &f.link, f.flags, 0, f.mnt_id, Some(&f.meta));
    table.push(pb::FileEntry {
        r#type: pb::FdTypes::Fifo as i32,
        id,
        fifo: Some(pb::FifoEntry {
            id,
            pipe_id: f.ino32(),
            regf_id: Some(regf_id),
        }),
        ..Default::default()
    });
    dump_data(table, f, true)?;
    Ok(pb::FdTypes::Fifo)
}

fn check_flags(f: &OpenFd<'_>) -> Result<()> {
    if f.flags & libc::O_DIRECT as u32 != 0 {
        return Err(f.unsupported("a pipe in packet mode (O_DIRECT); not supported"));
    }
    Ok(())
}

/// Copies the bytes buffered in the pipe behind `f` into the table, once per pipe.
fn dump_data(table: &mut FileTable, f: &OpenFd<'_>, fifo: bool) -> Result<()> {
    let pipe_id = f.ino32();
    if !table.side.pipes_dumped.insert((fifo, pipe_id)) {
        return Ok(());
    }
    // tee() reads from a readable description: the task's own if it is one, else a
    // fresh read end opened through /proc (a write end cannot be read).
    let reopened: Option<OwnedFd>;
    let src = if f.flags & libc::O_ACCMODE as u32 == libc::O_WRONLY as u32 {
        let path = format!("/proc/{}/fd/{}", f.pid, f.fd);
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&path)
            .map_err(|e| f.unsupported(format!("cannot open its pipe for reading: {e}")))?;
        reopened = Some(OwnedFd::from(file));
        reopened.as_ref().expect("just set").as_fd()
    } else {
        f.local()?
    };
    let size = stasis_sys::fdops::pipe_size(src)?;
    let queued = stasis_sys::fdops::bytes_readable(src)?;
    let (steal_r, steal_w) = stasis_sys::fdops::pipe2(libc::O_CLOEXEC | libc::O_NONBLOCK)?;
    stasis_sys::fdops::set_pipe_size(steal_w.as_fd(), size)?;
    let bytes = if queued == 0 {
        0
    } else {
        let n =
            stasis_sys::fdops::tee(src, steal_w.as_fd(), size as usize, libc::SPLICE_F_NONBLOCK)?;
        if n != queued as usize {
            return Err(f.unsupported(format!(
                "copied {n} of the {queued} bytes buffered in the pipe"
            )));
        }
        n
    };
    drop(steal_w);
    let mut data = Vec::with_capacity(bytes);
    std::fs::File::from(steal_r)
        .take(bytes as u64)
        .read_to_end(&mut data)
        .map_err(|e| f.unsupported(format!("reading the copied pipe data: {e}")))?;
    if data.len() != bytes {
        return Err(f.unsupported(format!(
            "read back {} of {bytes} copied pipe bytes",
            data.len()
        )));
    }
    log::debug!(
        "pid {} fd {}: pipe {pipe_id:#x} holds {bytes} bytes (capacity {size})",
        f.pid,
        f.fd
    );
    let entry = pb::PipeDataEntry {
        pipe_id,
        bytes: bytes as u32,
        size: Some(size),
    };
    if fifo {
        table.side.fifo_data.push((entry, data));
    } else {
        table.side.pipe_data.push((entry, data));
    }
    Ok(())
}
