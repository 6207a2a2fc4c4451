//! Terminals. A pty slave (`/dev/pts/N`) is dumped as CRIU does: a `TTY` file object
//! whose path is a regular-file entry beside it (`regf_id`), and one `tty-info.img`
//! entry per terminal with its index, settings (termios, window size), owner and the
//! session and foreground group it controls.
//!
//! Its master is never in the tree here: a shell job's terminal belongs to the shell's
//! emulator, a container's console to its runtime (runc's `--console-socket`). So a slave
//! is dumped only when the caller says so: `--shell-job`, or, through the RPC,
//! `orphan_pts_master` (the restore then makes a new master and hands it to the client).
//! Bytes waiting in the terminal's buffers are not dumped.

use super::OpenFd;
use crate::files::FileTable;
use crate::{procfs, DumpError, Result};
use stasis_images::pb;
use std::os::fd::AsFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};

/// Major numbers of the Unix98 pty slaves (`/dev/pts/N`, N = (major - 136) * 256 + minor).
pub const PTS_MAJORS: std::ops::RangeInclusive<u32> = 136..=143;

/// Whether `meta` is a pty slave.
pub fn is_pts(meta: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::FileTypeExt;
    meta.file_type().is_char_device() && PTS_MAJORS.contains(&libc::major(meta.rdev()))
}

/// The terminals of one dump: their `tty-info.img` entries, by device number.
#[derive(Default)]
pub struct Ttys {
    pub infos: Vec<pb::TtyInfoEntry>,
    by_rdev: std::collections::HashMap<u64, u32>,
}

impl Ttys {
    /// Session and group ids are recorded as the host sees them; `virt` turns them into
    /// the tree's own (its pid namespace) before the image is written.
    pub fn map_leaders(&mut self, virt: impl Fn(i32) -> i32) {
        for i in &mut self.infos {
            i.sid = virt(i.sid as i32).max(0) as u32;
            i.pgrp = virt(i.pgrp as i32).max(0) as u32;
        }
    }
}

/// The kernel's encoding of a device number, as `/proc/PID/stat`'s `tty_nr` shows it.
fn kernel_devnum(rdev: u64) -> u32 {
    let (major, minor) = (libc::major(rdev), libc::minor(rdev));
    (minor & 0xff) | (major << 8) | ((minor & !0xff) << 12)
}

/// Dumps descriptor `f`, a pty slave, as file `id`.
pub fn dump_pts(
    table: &mut FileTable,
    f: &OpenFd<'_>,
    id: u32,
    external_ok: bool,
) -> Result<pb::FdTypes> {
    if !external_ok {
        return Err(DumpError::Unsupported {
            pid: f.pid,
            what: format!(
                "fd {} is a terminal ({}) whose master is not in the tree; dump it with \
                 --shell-job (-j), or through the RPC with orphan_pts_master",
                f.fd, f.link
            ),
        });
    }
    let rdev = f.meta.rdev();
    let info_id = match table.side.ttys.by_rdev.get(&rdev) {
        Some(&i) => i,
        None => {
            let i = table.new_id();
            let info = info(f, i)?;
            table.side.ttys.infos.push(info);
            table.side.ttys.by_rdev.insert(rdev, i);
            i
        }
    };
    let regf_id = table.new_id();
    table.push_reg(regf_id, &f.link, f.flags, 0, f.mnt_id, Some(&f.meta));
    table.push(pb::FileEntry {
        r#type: pb::FdTypes::Tty as i32,
        id,
        tty: Some(pb::TtyFileEntry {
            id,
            tty_info_id: info_id,
            flags: f.flags,
            fown: pb::FownEntry::default(),
            regf_id: Some(regf_id),
        }),
        ..Default::default()
    });
    Ok(pb::FdTypes::Tty)
}

/// The `tty-info.img` entry of the terminal behind `f`: read through a descriptor of
/// stasis's own on it (opened without becoming anyone's controlling terminal).
fn info(f: &OpenFd<'_>, id: u32) -> Result<pb::TtyInfoEntry> {
    let path = format!("/proc/{}/fd/{}", f.pid, f.fd);
    let failed = |what: String| DumpError::Unsupported {
        pid: f.pid,
        what: format!("fd {} ({}): {what}", f.fd, f.link),
    };
    let own = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOCTTY | libc::O_NONBLOCK)
        .open(&path)
        .map_err(|e| failed(format!("opening the terminal: {e}")))?;
    let t = stasis_sys::tty::termios(own.as_fd()).map_err(|e| failed(e.to_string()))?;
    let w = stasis_sys::tty::winsize(own.as_fd()).map_err(|e| failed(e.to_string()))?;
    let rdev = f.meta.rdev();
    let index = (libc::major(rdev) - PTS_MAJORS.start()) * 256 + libc::minor(rdev);
    // The session it controls, as this task sees it (the session leader's own view).
    let stat = procfs::stat(f.pid)?;
    let (sid, pgrp) = if stat.tty_nr != 0 && stat.tty_nr == kernel_devnum(rdev) {
        (stat.sid.max(0) as u32, stat.tpgid.max(0) as u32)
    } else {
        (0, 0)
    };
    let dev = f.meta.dev();
    Ok(pb::TtyInfoEntry {
        id,
        r#type: pb::TtyType::Pty as i32,
        locked: false,
        exclusive: false,
        packet_mode: false,
        sid,
        pgrp,
        rdev: rdev as u32,
        termios: Some(pb::TermiosEntry {
            c_iflag: t.c_iflag,
            c_oflag: t.c_oflag,
            c_cflag: t.c_cflag,
            c_lflag: t.c_lflag,
            c_line: u32::from(t.c_line),
            c_ispeed: t.c_ispeed,
            c_ospeed: t.c_ospeed,
            c_cc: t.c_cc[..KERNEL_NCCS]
                .iter()
                .map(|&c| u32::from(c))
                .collect(),
        }),
        termios_locked: None,
        winsize: Some(pb::WinsizeEntry {
            ws_row: u32::from(w.ws_row),
            ws_col: u32::from(w.ws_col),
            ws_xpixel: u32::from(w.ws_xpixel),
            ws_ypixel: u32::from(w.ws_ypixel),
        }),
        pty: Some(pb::TtyPtyEntry { index }),
        dev: Some(libc::major(dev) << 20 | libc::minor(dev)),
        uid: Some(f.meta.uid()),
        gid: Some(f.meta.gid()),
    })
}

/// Control characters in the kernel's `struct termios` (`TCGETS`), which CRIU dumps.
pub const KERNEL_NCCS: usize = 19;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tty_nr_uses_the_kernels_device_encoding() {
        // /dev/pts/0 and /dev/pts/300 (major 137, minor 44).
        assert_eq!(kernel_devnum(libc::makedev(136, 0)), 136 << 8);
        assert_eq!(
            kernel_devnum(libc::makedev(137, 44)),
            (137 << 8) | 44,
            "small minors sit in the low byte"
        );
        assert_eq!(
            kernel_devnum(libc::makedev(136, 0x1234)),
            0x34 | (136 << 8) | (0x1200 << 12)
        );
    }
}
