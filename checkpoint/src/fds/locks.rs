//! File locks: flock, POSIX and OFD locks held through the dumped descriptors, from
//! fdinfo's `lock:` lines, written to `filelocks.img` (CRIU's `file_lock_entry`) with
//! `--file-locks`; without it a held lock refuses the dump, as with CRIU. Leases,
//! delegations and mandatory locks are refused.

use super::OpenFd;
use crate::files::FileTable;
use crate::Result;
use stasis_images::pb;

/// CRIU's lock kinds (`fl_kind`), as the kernel numbers them.
pub const FL_POSIX: u32 = 1;
pub const FL_FLOCK: u32 = 2;
pub const FL_OFDLCK: u32 = 1024;

/// Records the locks held through descriptor `f` (file `id`); each lock once.
pub fn collect(table: &mut FileTable, f: &OpenFd<'_>, _id: u32) -> Result<()> {
    for line in f.fdinfo_lines() {
        let Some(rest) = line.strip_prefix("lock:") else {
            continue;
        };
        // "1: POSIX  ADVISORY  WRITE 1234 fe:00:5678 10 29"
        let words: Vec<&str> = rest.split_whitespace().collect();
        let bad = || f.bad_fdinfo(line);
        let [_, kind, mode, access, pid, dev_ino, start, end] = words[..] else {
            return Err(bad());
        };
        let flag = match kind {
            "POSIX" => FL_POSIX,
            "FLOCK" => FL_FLOCK,
            "OFDLCK" => FL_OFDLCK,
            other => {
                return Err(f.unsupported(format!(
                    "holds a {other} (lease or delegation); not supported"
                )))
            }
        };
        if mode != "ADVISORY" {
            return Err(f.unsupported(format!("holds a {mode} {kind} lock; not supported")));
        }
        let ltype = match access {
            "READ" => libc::F_RDLCK as u32,
            "WRITE" => libc::F_WRLCK as u32,
            other => return Err(f.unsupported(format!("holds a {kind} lock in state {other}"))),
        };
        let start: i64 = start.parse().map_err(|_| bad())?;
        let len = if end == "EOF" {
            0
        } else {
            end.parse::<i64>().map_err(|_| bad())? + 1 - start
        };
        if !table.file_locks {
            return Err(f.unsupported(format!(
                "holds a {kind} {access} lock; dump it with --file-locks"
            )));
        }
        // A POSIX lock belongs to its process, not to one descriptor: the kernel shows it
        // on the descriptor it was taken through; OFD and flock locks belong to the open
        // file description.
        let key = (
            flag,
            ltype,
            pid.to_string(),
            dev_ino.to_string(),
            start,
            len,
        );
        if !table.side.locks_seen.insert(key) {
            continue;
        }
        table.side.locks.push(pb::FileLockEntry {
            flag,
            r#type: ltype,
            pid: f.pid,
            fd: f.fd,
            start,
            len,
        });
    }
    Ok(())
}
