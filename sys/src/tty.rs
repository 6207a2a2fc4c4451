//! Terminal calls: the settings of a tty (termios, window size), the pty master calls
//! (index, unlock), and the controlling terminal of a session (`TIOCSCTTY`, the
//! foreground process group).
//!
//! On a pty master, the termios and window-size calls act on its slave (the kernel's
//! `tty_mode_ioctl` and `tiocswinsz` go to the pair's slave), which is what a restore
//! sets up.

use crate::error::{check, Result};
use libc::c_long;
use std::os::fd::{AsRawFd, BorrowedFd};

fn raw(fd: BorrowedFd<'_>) -> i32 {
    fd.as_raw_fd()
}

/// `TCGETS`: the terminal's settings.
pub fn termios(fd: BorrowedFd<'_>) -> Result<libc::termios> {
    // SAFETY: termios is plain data; all-zero is a valid value.
    let mut t: libc::termios = unsafe { std::mem::zeroed() };
    // SAFETY: TCGETS writes one struct termios through the pointer, which is valid.
    let ret = unsafe { libc::ioctl(raw(fd), libc::TCGETS, &mut t) };
    check(ret as c_long, "TCGETS", format!("fd {}", raw(fd)))?;
    Ok(t)
}

/// `TCSETS`: sets the terminal's settings now.
pub fn set_termios(fd: BorrowedFd<'_>, t: &libc::termios) -> Result<()> {
    // SAFETY: TCSETS reads one struct termios through the pointer, which is valid.
    let ret = unsafe { libc::ioctl(raw(fd), libc::TCSETS, t) };
    check(ret as c_long, "TCSETS", format!("fd {}", raw(fd))).map(drop)
}

/// `TIOCGWINSZ`: the window size.
pub fn winsize(fd: BorrowedFd<'_>) -> Result<libc::winsize> {
    let mut w = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes one struct winsize through the pointer, which is valid.
    let ret = unsafe { libc::ioctl(raw(fd), libc::TIOCGWINSZ, &mut w) };
    check(ret as c_long, "TIOCGWINSZ", format!("fd {}", raw(fd)))?;
    Ok(w)
}

/// `TIOCSWINSZ`: sets the window size.
pub fn set_winsize(fd: BorrowedFd<'_>, w: &libc::winsize) -> Result<()> {
    // SAFETY: TIOCSWINSZ reads one struct winsize through the pointer, which is valid.
    let ret = unsafe { libc::ioctl(raw(fd), libc::TIOCSWINSZ, w) };
    check(ret as c_long, "TIOCSWINSZ", format!("fd {}", raw(fd))).map(drop)
}

/// `TIOCGPTN`: the index of a pty master's slave (`/dev/pts/N`).
pub fn pty_index(master: BorrowedFd<'_>) -> Result<u32> {
    let mut n: libc::c_uint = 0;
    // SAFETY: TIOCGPTN writes one unsigned int through the pointer, which is valid.
    let ret = unsafe { libc::ioctl(raw(master), libc::TIOCGPTN, &mut n) };
    check(ret as c_long, "TIOCGPTN", format!("fd {}", raw(master)))?;
    Ok(n)
}

/// `TIOCSPTLCK` with 0: unlocks a new pty master's slave so it can be opened.
pub fn unlock_pty(master: BorrowedFd<'_>) -> Result<()> {
    let zero: libc::c_int = 0;
    // SAFETY: TIOCSPTLCK reads one int through the pointer, which is valid.
    let ret = unsafe { libc::ioctl(raw(master), libc::TIOCSPTLCK, &zero) };
    check(ret as c_long, "TIOCSPTLCK", format!("fd {}", raw(master))).map(drop)
}

/// `TIOCSCTTY`: makes the terminal the controlling terminal of the caller's session (the
/// caller must lead a session that has none).
pub fn set_controlling(fd: BorrowedFd<'_>) -> Result<()> {
    // SAFETY: TIOCSCTTY takes a plain integer argument.
    let ret = unsafe { libc::ioctl(raw(fd), libc::TIOCSCTTY, 0 as libc::c_int) };
    check(ret as c_long, "TIOCSCTTY", format!("fd {}", raw(fd))).map(drop)
}

/// `TIOCSPGRP`: makes `pgrp` the terminal's foreground process group (the terminal must
/// be the caller's controlling terminal, `pgrp` a group of its session).
pub fn set_foreground(fd: BorrowedFd<'_>, pgrp: i32) -> Result<()> {
    let p: libc::pid_t = pgrp;
    // SAFETY: TIOCSPGRP reads one pid_t through the pointer, which is valid.
    let ret = unsafe { libc::ioctl(raw(fd), libc::TIOCSPGRP, &p) };
    check(
        ret as c_long,
        "TIOCSPGRP",
        format!("fd {} pgrp {pgrp}", raw(fd)),
    )
    .map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::{AsFd, OwnedFd};

    fn open_master() -> OwnedFd {
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NOCTTY)
            .open("/dev/ptmx")
            .expect("open /dev/ptmx");
        OwnedFd::from(f)
    }
    use std::os::unix::fs::OpenOptionsExt;

    #[test]
    fn a_new_pty_takes_settings_through_its_master_and_its_slave_sees_them() {
        let m = open_master();
        let n = pty_index(m.as_fd()).unwrap();
        unlock_pty(m.as_fd()).unwrap();
        let w = libc::winsize {
            ws_row: 33,
            ws_col: 97,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        set_winsize(m.as_fd(), &w).unwrap();
        let mut t = termios(m.as_fd()).unwrap();
        t.c_lflag &= !libc::ECHO;
        set_termios(m.as_fd(), &t).unwrap();
        let slave = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NOCTTY)
            .open(format!("/dev/pts/{n}"))
            .expect("open the slave");
        let got = winsize(slave.as_fd()).unwrap();
        assert_eq!((got.ws_row, got.ws_col), (33, 97));
        assert_eq!(termios(slave.as_fd()).unwrap().c_lflag & libc::ECHO, 0);
    }

    #[test]
    fn a_tty_call_on_a_file_that_is_no_terminal_fails_naming_it() {
        let f = std::fs::File::open("/dev/null").unwrap();
        let e = termios(f.as_fd()).unwrap_err().to_string();
        assert!(e.contains("TCGETS"), "{e}");
    }
}
