//! Processes seen from outside: `/proc` parsing, signals, reaping, and the
//! child-subreaper role every test process takes on.
//!
//! PID 1 on these machines does not reap orphans promptly, and a restored
//! process is reparented to the nearest child subreaper once `stasis restore
//! -d` exits. So the test process is that subreaper, and it reaps — by pid,
//! never with `waitpid(-1)`, because tests run in parallel threads.

use std::collections::BTreeMap;
use std::io;
use std::path::Path;
use std::sync::Once;
use std::time::{Duration, Instant};

pub type Pid = i32;

/// Makes this test process the child subreaper of everything it starts, so
/// that restored processes become its children. Idempotent.
pub fn become_subreaper() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: PR_SET_CHILD_SUBREAPER takes an integer flag and no
        // pointers; it only changes this process's reparenting attribute.
        let rc = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1 as libc::c_ulong, 0, 0, 0) };
        assert_eq!(
            rc,
            0,
            "prctl(PR_SET_CHILD_SUBREAPER): {}",
            io::Error::last_os_error()
        );
    });
}

/// The fields of `/proc/PID/stat` the tests look at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stat {
    pub comm: String,
    pub state: char,
    pub ppid: Pid,
    pub pgrp: Pid,
    pub session: Pid,
    /// Clock ticks since boot: with the pid, identifies one process instance.
    pub start_time: u64,
}

/// Parses `/proc/PID/stat`; `None` if there is no such process.
pub fn stat(pid: Pid) -> Option<Stat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let comm = text[open + 1..close].to_string();
    let fields: Vec<&str> = text[close + 1..].split_whitespace().collect();
    // fields[0] is field 3 of proc(5): state; starttime is field 22.
    Some(Stat {
        comm,
        state: fields.first()?.chars().next()?,
        ppid: fields.get(1)?.parse().ok()?,
        pgrp: fields.get(2)?.parse().ok()?,
        session: fields.get(3)?.parse().ok()?,
        start_time: fields.get(19)?.parse().ok()?,
    })
}

/// `TracerPid` from `/proc/PID/status`: 0 when nobody ptraces the process.
pub fn tracer_pid(pid: Pid) -> Option<Pid> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("TracerPid:"))?;
    line["TracerPid:".len()..].trim().parse().ok()
}

/// True if `pid` names a process that has not exited (zombies are not alive).
pub fn is_alive(pid: Pid) -> bool {
    matches!(stat(pid), Some(s) if s.state != 'Z' && s.state != 'X')
}

/// Sends `sig` to `pid`.
pub fn signal(pid: Pid, sig: i32) -> io::Result<()> {
    // SAFETY: kill(2) takes two integers and touches no memory of ours.
    let rc = unsafe { libc::kill(pid, sig) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Reaps `pid` if it is a zombie child of ours; returns its wait status.
pub fn try_reap(pid: Pid) -> Option<i32> {
    let mut status = 0;
    // SAFETY: `status` is a valid, writable c_int for the duration of the call.
    let rc = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG | libc::__WALL) };
    (rc == pid).then_some(status)
}

/// Waits until `pid` no longer exists (reaping it if it is our child).
/// A zombie that is not ours still holds its pid, so it counts as present.
pub fn wait_gone(pid: Pid, timeout: Duration) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    loop {
        try_reap(pid);
        match stat(pid) {
            None => return Ok(()),
            Some(s) if Instant::now() >= deadline => {
                return Err(format!(
                    "pid {pid} ({}) still exists after {timeout:?}: state {}, parent {}",
                    s.comm, s.state, s.ppid
                ))
            }
            Some(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
}

/// Waits until no process is left in session `sid` (reaping those that are this
/// process's zombies): a session's ID stays taken while any member lives, so a restore
/// that needs the leader's PID must wait for the members the dump did not take (its
/// children's orphans, say).
pub fn wait_session_gone(sid: Pid, timeout: Duration) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    loop {
        let members: Vec<Pid> = std::fs::read_dir("/proc")
            .map_err(|e| format!("/proc: {e}"))?
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<Pid>().ok())
            .filter(|p| stat(*p).is_some_and(|s| s.session == sid))
            .collect();
        if members.is_empty() {
            return Ok(());
        }
        for &p in &members {
            try_reap(p);
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "session {sid} still has processes {members:?} after {timeout:?}"
            ));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// SIGKILLs `pid` and waits for it to be gone. Never panics (used in Drop).
pub fn kill_and_reap(pid: Pid, timeout: Duration) -> Result<(), String> {
    if stat(pid).is_none() {
        return Ok(());
    }
    let _ = signal(pid, libc::SIGKILL);
    wait_gone(pid, timeout)
}

/// `/proc/PID/cmdline` split at NULs.
pub fn cmdline(pid: Pid) -> Option<Vec<String>> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    Some(
        raw.split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect(),
    )
}

/// Live processes one of whose arguments contains `needle` (e.g. a test's
/// unique scratch path): how a test finds a workload restored under a pid it
/// did not expect.
pub fn live_pids_with_arg(needle: &str) -> Vec<Pid> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<Pid>().ok())
        .filter(|&pid| is_alive(pid))
        .filter(|&pid| cmdline(pid).is_some_and(|args| args.iter().any(|a| a.contains(needle))))
        .collect()
}

/// fd number → what `/proc/PID/fd/N` points to.
pub fn fd_targets(pid: Pid) -> BTreeMap<i32, String> {
    let dir = format!("/proc/{pid}/fd");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return BTreeMap::new();
    };
    entries
        .flatten()
        .filter_map(|e| {
            let fd = e.file_name().to_str()?.parse().ok()?;
            let target = std::fs::read_link(e.path()).ok()?;
            Some((fd, target.to_string_lossy().into_owned()))
        })
        .collect()
}

/// fd number → the `flags:` field of `/proc/PID/fdinfo/N` (octal, as the
/// kernel prints it: access mode, O_APPEND, O_CLOEXEC, ...).
pub fn fd_flags(pid: Pid) -> BTreeMap<i32, String> {
    fd_targets(pid)
        .into_keys()
        .filter_map(|fd| {
            let info = std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{fd}")).ok()?;
            let flags = info
                .lines()
                .find_map(|l| l.strip_prefix("flags:"))?
                .trim()
                .to_string();
            Some((fd, flags))
        })
        .collect()
}

/// Names the bits in which two octal fdinfo `flags:` values differ, e.g.
/// `"+O_CLOEXEC"` (set in `after` only) or `"-O_APPEND"`.
pub fn flag_change(before: &str, after: &str) -> String {
    const NAMES: [(u32, &str); 8] = [
        (0o1, "O_WRONLY"),
        (0o2, "O_RDWR"),
        (0o2000, "O_APPEND"),
        (0o4000, "O_NONBLOCK"),
        (0o10000, "O_DSYNC"),
        (0o40000, "O_DIRECT"),
        (0o100000, "O_LARGEFILE"),
        (0o2000000, "O_CLOEXEC"),
    ];
    let parse = |s: &str| u32::from_str_radix(s, 8).unwrap_or(0);
    let (b, a) = (parse(before), parse(after));
    let mut out = Vec::new();
    for (bit, name) in NAMES {
        if a & bit != b & bit {
            out.push(format!("{}{name}", if a & bit != 0 { "+" } else { "-" }));
        }
    }
    let known: u32 = NAMES.iter().map(|n| n.0).sum();
    if (a ^ b) & !known != 0 {
        out.push(format!("other bits {:#o}", (a ^ b) & !known));
    }
    out.join(" ")
}

/// One line of `/proc/PID/maps` without dev and inode (which name the same
/// file either way): `start-end perms offset path`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MapLine {
    pub start: u64,
    pub end: u64,
    pub perms: String,
    pub offset: u64,
    pub path: String,
}

impl std::fmt::Display for MapLine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:x}-{:x} {} {:08x} {}",
            self.start, self.end, self.perms, self.offset, self.path
        )
    }
}

/// `/proc/PID/maps`, with adjacent lines that continue each other (same
/// perms and path, contiguous, file offsets following on) merged, so that
/// the comparison ignores how the kernel happened to split a region.
pub fn maps(pid: Pid) -> Vec<MapLine> {
    let text = std::fs::read_to_string(Path::new(&format!("/proc/{pid}/maps"))).unwrap_or_default();
    let mut out: Vec<MapLine> = Vec::new();
    for line in text.lines() {
        let mut it = line.split_whitespace();
        let (Some(range), Some(perms), Some(offset), Some(_dev), Some(_inode)) =
            (it.next(), it.next(), it.next(), it.next(), it.next())
        else {
            continue;
        };
        let path = it.collect::<Vec<_>>().join(" ");
        let Some((start, end)) = range.split_once('-') else {
            continue;
        };
        let (Ok(start), Ok(end), Ok(offset)) = (
            u64::from_str_radix(start, 16),
            u64::from_str_radix(end, 16),
            u64::from_str_radix(offset, 16),
        ) else {
            continue;
        };
        let next = MapLine {
            start,
            end,
            perms: perms.to_string(),
            offset,
            path,
        };
        if let Some(prev) = out.last_mut() {
            let file_follows =
                prev.path.is_empty() || prev.offset + (prev.end - prev.start) == next.offset;
            if prev.end == next.start
                && prev.perms == next.perms
                && prev.path == next.path
                && file_follows
            {
                prev.end = next.end;
                continue;
            }
        }
        out.push(next);
    }
    out
}

/// One VMA of `/proc/PID/smaps`: its range, `VmFlags` and resident size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmapsVma {
    pub start: u64,
    pub end: u64,
    pub path: String,
    /// The two-letter flags, in the kernel's order.
    pub vm_flags: String,
    pub rss_kb: u64,
}

/// `/proc/PID/smaps`, a VMA per entry (not merged: flags are per VMA).
pub fn smaps(pid: Pid) -> Vec<SmapsVma> {
    let text =
        std::fs::read_to_string(Path::new(&format!("/proc/{pid}/smaps"))).unwrap_or_default();
    let mut out: Vec<SmapsVma> = Vec::new();
    for line in text.lines() {
        let head = line.split_whitespace().next().unwrap_or("");
        if let Some((s, e)) = head.split_once('-') {
            if let (Ok(start), Ok(end)) = (u64::from_str_radix(s, 16), u64::from_str_radix(e, 16)) {
                out.push(SmapsVma {
                    start,
                    end,
                    path: line.split_whitespace().nth(5).unwrap_or("").to_string(),
                    vm_flags: String::new(),
                    rss_kb: 0,
                });
                continue;
            }
        }
        let Some(v) = out.last_mut() else { continue };
        let kb = || {
            line.split_whitespace()
                .nth(1)
                .and_then(|n| n.parse().ok())
                .unwrap_or(0)
        };
        match head {
            "VmFlags:" => v.vm_flags = line["VmFlags:".len()..].trim().to_string(),
            "Rss:" => v.rss_kb = kb(),
            _ => {}
        }
    }
    out
}

/// Kills and reaps a process when dropped, so that no test leaves one
/// running, whether it passes or panics. `disarm` when the process is known
/// to be gone.
///
/// So that a recycled pid never costs an unrelated process its life, the
/// guard kills only a child of the test process (the workload, or a restored
/// workload reparented to us) or a process whose arguments contain `marker`.
#[derive(Debug)]
pub struct ProcessGuard {
    pid: Option<Pid>,
    marker: String,
}

impl ProcessGuard {
    pub fn new(pid: Pid, marker: impl Into<String>) -> Self {
        ProcessGuard {
            pid: Some(pid),
            marker: marker.into(),
        }
    }

    pub fn pid(&self) -> Option<Pid> {
        self.pid
    }

    pub fn disarm(&mut self) {
        self.pid = None;
    }
}

impl Drop for ProcessGuard {
    fn drop(&mut self) {
        let Some(pid) = self.pid.take() else { return };
        let ours = stat(pid).is_some_and(|s| s.ppid == std::process::id() as Pid);
        let marked = cmdline(pid).is_some_and(|a| a.iter().any(|a| a.contains(&self.marker)));
        if ours || marked {
            if let Err(e) = kill_and_reap(pid, Duration::from_secs(10)) {
                eprintln!("cleanup: {e}");
            }
        }
    }
}

/// Starts `cmd` with stdin, stdout and stderr on /dev/null and returns its pid with a
/// guard that kills and reaps it (`marker` as for [`ProcessGuard::new`]). The Child
/// handle is dropped: the pid is reaped by number, as after a restore. For a program
/// that must lead its own session, build `cmd` as `setsid PROGRAM ...` (setsid execs in
/// place when it is not a group leader, so the pid is the program's).
pub fn spawn_guarded(
    mut cmd: std::process::Command,
    marker: impl Into<String>,
) -> (Pid, ProcessGuard) {
    become_subreaper();
    let child = cmd
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {:?}: {e}", cmd.get_program()));
    let pid = child.id() as Pid;
    drop(child);
    (pid, ProcessGuard::new(pid, marker))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flag_change_names_the_bits() {
        assert_eq!(flag_change("0100001", "02100001"), "+O_CLOEXEC");
        assert_eq!(flag_change("02102001", "02100001"), "-O_APPEND");
        assert_eq!(flag_change("0100000", "0100000"), "");
    }

    #[test]
    fn this_process_is_alive_and_has_a_stat() {
        let me = std::process::id() as Pid;
        let st = stat(me).expect("own stat");
        assert!(is_alive(me));
        assert!(st.start_time > 0);
        assert!(!maps(me).is_empty());
        assert!(fd_targets(me).contains_key(&0));
    }

    #[test]
    fn maps_merges_lines_that_continue_each_other() {
        // Our own maps never show two adjacent lines with the same perms,
        // path and following offsets: merging must have joined them.
        let m = maps(std::process::id() as Pid);
        for w in m.windows(2) {
            let follows =
                w[0].path.is_empty() || w[0].offset + (w[0].end - w[0].start) == w[1].offset;
            assert!(
                !(w[0].end == w[1].start
                    && w[0].perms == w[1].perms
                    && w[0].path == w[1].path
                    && follows),
                "unmerged: {} / {}",
                w[0],
                w[1]
            );
        }
    }
}
