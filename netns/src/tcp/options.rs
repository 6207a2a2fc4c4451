//! The per-connection TCP options a user sets that the repair itself does not carry:
//! `TCP_NODELAY`, `TCP_CORK` and the keepalive timing (CRIU's `tcp_opts_entry`).

use crate::Result;
use stasis_sys::unixsock::{get_int_opt, set_int_opt};
use std::os::fd::BorrowedFd;

/// `TCP_NODELAY`, `TCP_CORK`, `TCP_KEEPCNT`, `TCP_KEEPIDLE`, `TCP_KEEPINTVL`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcpOptions {
    pub nodelay: bool,
    pub cork: bool,
    pub keepcnt: u32,
    pub keepidle: u32,
    pub keepintvl: u32,
}

impl TcpOptions {
    /// Reads the options of a TCP socket.
    pub fn read(fd: BorrowedFd<'_>) -> Result<TcpOptions> {
        let int = |opt| get_int_opt(fd, libc::IPPROTO_TCP, opt);
        Ok(TcpOptions {
            nodelay: int(libc::TCP_NODELAY)? != 0,
            cork: int(libc::TCP_CORK)? != 0,
            keepcnt: int(libc::TCP_KEEPCNT)? as u32,
            keepidle: int(libc::TCP_KEEPIDLE)? as u32,
            keepintvl: int(libc::TCP_KEEPINTVL)? as u32,
        })
    }

    /// Sets them on `fd`. Keepalive values of 0 (not recorded) are left at the default.
    pub fn apply(&self, fd: BorrowedFd<'_>) -> Result<()> {
        let set = |opt, v: i32| set_int_opt(fd, libc::IPPROTO_TCP, opt, v);
        if self.nodelay {
            set(libc::TCP_NODELAY, 1)?;
        }
        if self.cork {
            set(libc::TCP_CORK, 1)?;
        }
        for (opt, v) in [
            (libc::TCP_KEEPCNT, self.keepcnt),
            (libc::TCP_KEEPIDLE, self.keepidle),
            (libc::TCP_KEEPINTVL, self.keepintvl),
        ] {
            if v != 0 {
                set(opt, v as i32)?;
            }
        }
        Ok(())
    }
}
