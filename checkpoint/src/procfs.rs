//! Typed views of the `/proc/PID/*` files the dump reads. Text becomes values here, once,
//! and a malformed line is an error naming the file and the line.

use crate::{DumpError, Result};
use std::path::PathBuf;

fn read(pid: i32, name: &str) -> Result<String> {
    let path = PathBuf::from(format!("/proc/{pid}/{name}"));
    std::fs::read_to_string(&path).map_err(|source| DumpError::Io { path, source })
}

fn bad(pid: i32, name: &str, line: &str) -> DumpError {
    DumpError::Proc {
        path: format!("/proc/{pid}/{name}"),
        what: format!("cannot parse {line:?}"),
    }
}

/// One mapping of `/proc/PID/smaps`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mapping {
    pub start: u64,
    pub end: u64,
    pub read: bool,
    pub write: bool,
    pub exec: bool,
    pub shared: bool,
    pub offset: u64,
    pub dev: (u32, u32),
    pub inode: u64,
    /// The path or the pseudo name (`[heap]`, `[stack]`, `[vdso]`...), empty for anonymous.
    pub name: String,
    /// The two-letter `VmFlags` mnemonics.
    pub vm_flags: Vec<String>,
    /// Whether smaps counts any resident or swapped page in it (`Rss` or `Swap` > 0).
    pub has_pages: bool,
}

impl Mapping {
    pub fn has_flag(&self, f: &str) -> bool {
        self.vm_flags.iter().any(|v| v == f)
    }
}

fn parse_map_line(line: &str) -> Option<Mapping> {
    let mut it = line.splitn(6, ' ');
    let range = it.next()?;
    let perms = it.next()?.as_bytes();
    let offset = u64::from_str_radix(it.next()?, 16).ok()?;
    let dev = it.next()?;
    let inode: u64 = it.next()?.parse().ok()?;
    let name = it.next().unwrap_or("").trim_start().to_string();
    let (s, e) = range.split_once('-')?;
    let (maj, min) = dev.split_once(':')?;
    if perms.len() < 4 {
        return None;
    }
    Some(Mapping {
        start: u64::from_str_radix(s, 16).ok()?,
        end: u64::from_str_radix(e, 16).ok()?,
        read: perms[0] == b'r',
        write: perms[1] == b'w',
        exec: perms[2] == b'x',
        shared: perms[3] == b's',
        offset,
        dev: (
            u32::from_str_radix(maj, 16).ok()?,
            u32::from_str_radix(min, 16).ok()?,
        ),
        inode,
        name,
        vm_flags: Vec::new(),
        has_pages: true,
    })
}

/// Parses `/proc/PID/smaps`: every mapping with its `VmFlags`.
pub fn smaps(pid: i32) -> Result<Vec<Mapping>> {
    let text = read(pid, "smaps")?;
    let mut out: Vec<Mapping> = Vec::new();
    for line in text.lines() {
        // Rss comes before Swap; a mapping without either holds no page to save.
        if let Some(kb) = line.strip_prefix("Rss:") {
            let m = out.last_mut().ok_or_else(|| bad(pid, "smaps", line))?;
            m.has_pages = kb.trim().trim_end_matches("kB").trim() != "0";
            continue;
        }
        if let Some(kb) = line.strip_prefix("Swap:") {
            let m = out.last_mut().ok_or_else(|| bad(pid, "smaps", line))?;
            m.has_pages |= kb.trim().trim_end_matches("kB").trim() != "0";
            continue;
        }

        if let Some(flags) = line.strip_prefix("VmFlags:") {
            let m = out.last_mut().ok_or_else(|| bad(pid, "smaps", line))?;
            m.vm_flags = flags.split_whitespace().map(str::to_string).collect();
            continue;
        }
        let first = line.split(' ').next().unwrap_or("");
        if first.contains('-') && !first.ends_with(':') {
            out.push(parse_map_line(line).ok_or_else(|| bad(pid, "smaps", line))?);
        }
    }
    Ok(out)
}

/// The mappings with the range `[start, end)` cut out of them.
pub fn without_range(maps: Vec<Mapping>, start: u64, end: u64) -> Vec<Mapping> {
    let mut out = Vec::with_capacity(maps.len() + 1);
    for m in maps {
        if m.end <= start || end <= m.start {
            out.push(m);
            continue;
        }
        if m.start < start {
            out.push(Mapping {
                end: start,
                ..m.clone()
            });
        }
        if end < m.end {
            let skipped = end - m.start;
            let offset = if m.inode != 0 {
                m.offset + skipped
            } else {
                m.offset
            };
            out.push(Mapping {
                start: end,
                offset,
                ..m
            });
        }
    }
    out
}

/// The fields of `/proc/PID/stat` the dump needs.
#[derive(Clone, Debug, Default)]
pub struct Stat {
    pub state: char,
    pub pgid: i32,
    pub sid: i32,
    /// The controlling terminal (the kernel's device encoding; 0 for none).
    pub tty_nr: u32,
    /// The foreground process group of the controlling terminal (-1 for none).
    pub tpgid: i32,
    pub flags: u32,
    pub start_code: u64,
    pub end_code: u64,
    pub start_stack: u64,
    pub start_data: u64,
    pub end_data: u64,
    pub start_brk: u64,
    pub arg_start: u64,
    pub arg_end: u64,
    pub env_start: u64,
    pub env_end: u64,
    /// The command name (between the parentheses).
    pub comm: String,
    /// The exit status as waitpid would report it (zombies).
    pub exit_code: i32,
}

/// Parses `/proc/PID/stat`.
pub fn stat(pid: i32) -> Result<Stat> {
    let text = read(pid, "stat")?;
    // The command name is in parentheses and may itself contain spaces or parentheses.
    let close = text.rfind(')').ok_or_else(|| bad(pid, "stat", &text))?;
    let f: Vec<&str> = text[close + 2..].split_whitespace().collect();
    // f[0] is field 3 (state).
    let n = |i: usize| -> Result<u64> {
        f.get(i - 3)
            .and_then(|v| v.parse::<i64>().ok())
            .map(|v| v as u64)
            .ok_or_else(|| bad(pid, "stat", &text))
    };
    Ok(Stat {
        state: f.first().and_then(|s| s.chars().next()).unwrap_or('?'),
        pgid: n(5)? as i32,
        sid: n(6)? as i32,
        tty_nr: n(7)? as u32,
        tpgid: n(8)? as i32,
        flags: n(9)? as u32,
        start_code: n(26)?,
        end_code: n(27)?,
        start_stack: n(28)?,
        start_data: n(45)?,
        end_data: n(46)?,
        start_brk: n(47)?,
        arg_start: n(48)?,
        arg_end: n(49)?,
        env_start: n(50)?,
        env_end: n(51)?,
        comm: text
            .find('(')
            .map(|o| text[o + 1..close].to_string())
            .unwrap_or_default(),
        exit_code: n(52)? as i32,
    })
}

/// The fields of `/proc/PID/status` the dump needs.
#[derive(Clone, Debug, Default)]
pub struct Status {
    pub umask: u32,
    pub uids: [u32; 4],
    pub gids: [u32; 4],
    pub groups: Vec<u32>,
    pub cap_inh: u64,
    pub cap_prm: u64,
    pub cap_eff: u64,
    pub cap_bnd: u64,
    pub cap_amb: u64,
    pub no_new_privs: u32,
    pub seccomp: u32,
    pub tgid: i32,
    /// Process group and session in the task's own pid namespace (the last `NSpgid` and
    /// `NSsid` values): 0 for a leader outside it. Found even when the leader is gone.
    pub ns_pgid: i32,
    pub ns_sid: i32,
    /// Signals with a handler (`SigCgt`) and ignored ones (`SigIgn`), bit N-1 for N.
    pub sig_cgt: u64,
    pub sig_ign: u64,
}

/// Parses `/proc/PID/status`.
pub fn status(pid: i32) -> Result<Status> {
    status_file(pid, "status")
}

/// Parses `/proc/PID/task/TID/status` (credentials are per thread).
pub fn status_of(pid: i32, tid: i32) -> Result<Status> {
    status_file(pid, &format!("task/{tid}/status"))
}

fn status_file(pid: i32, name: &str) -> Result<Status> {
    let text = read(pid, name)?;
    let mut s = Status::default();
    for line in text.lines() {
        let Some((key, val)) = line.split_once(':') else {
            continue;
        };
        let val = val.trim();
        let hex = || u64::from_str_radix(val, 16).map_err(|_| bad(pid, "status", line));
        let four = || -> Result<[u32; 4]> {
            let v: Vec<u32> = val
                .split_whitespace()
                .filter_map(|x| x.parse().ok())
                .collect();
            v.try_into().map_err(|_| bad(pid, "status", line))
        };
        match key {
            "Umask" => {
                s.umask = u32::from_str_radix(val, 8).map_err(|_| bad(pid, "status", line))?
            }
            "Uid" => s.uids = four()?,
            "Gid" => s.gids = four()?,
            "Groups" => {
                s.groups = val
                    .split_whitespace()
                    .filter_map(|x| x.parse().ok())
                    .collect()
            }
            "CapInh" => s.cap_inh = hex()?,
            "CapPrm" => s.cap_prm = hex()?,
            "CapEff" => s.cap_eff = hex()?,
            "CapBnd" => s.cap_bnd = hex()?,
            "CapAmb" => s.cap_amb = hex()?,
            "SigCgt" => s.sig_cgt = hex()?,
            "SigIgn" => s.sig_ign = hex()?,
            "NoNewPrivs" => s.no_new_privs = val.parse().map_err(|_| bad(pid, name, line))?,
            "Seccomp" => s.seccomp = val.parse().map_err(|_| bad(pid, name, line))?,
            "Tgid" => s.tgid = val.parse().map_err(|_| bad(pid, name, line))?,
            "NSpgid" | "NSsid" => {
                let last = val.split_whitespace().last().and_then(|x| x.parse().ok());
                let last = last.ok_or_else(|| bad(pid, name, line))?;
                if key == "NSpgid" {
                    s.ns_pgid = last
                } else {
                    s.ns_sid = last
                }
            }
            _ => {}
        }
    }
    Ok(s)
}

/// `/proc/PID/auxv` as (key, value) words, terminator included.
pub fn auxv(pid: i32) -> Result<Vec<u64>> {
    let path = PathBuf::from(format!("/proc/{pid}/auxv"));
    let bytes = std::fs::read(&path).map_err(|source| DumpError::Io { path, source })?;
    Ok(bytes
        .chunks_exact(8)
        .map(|c| u64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
        .collect())
}

/// A small text file of `/proc/PID/`, trimmed.
pub fn text(pid: i32, name: &str) -> Result<String> {
    Ok(read(pid, name)?.trim_end_matches('\n').to_string())
}

/// The target of a `/proc/PID/...` symlink.
pub fn link(pid: i32, name: &str) -> Result<String> {
    let path = PathBuf::from(format!("/proc/{pid}/{name}"));
    let target = std::fs::read_link(&path).map_err(|source| DumpError::Io { path, source })?;
    Ok(target.to_string_lossy().into_owned())
}

/// The fields of `/proc/PID/fdinfo/FD` the dump needs.
#[derive(Clone, Debug, Default)]
pub struct FdInfo {
    pub pos: u64,
    pub flags: u32,
    pub mnt_id: i32,
}

/// Parses `/proc/PID/fdinfo/FD`.
pub fn fdinfo(pid: i32, fd: i32) -> Result<FdInfo> {
    let name = format!("fdinfo/{fd}");
    let text = read(pid, &name)?;
    let mut info = FdInfo::default();
    for line in text.lines() {
        let Some((key, val)) = line.split_once(':') else {
            continue;
        };
        let val = val.trim();
        match key {
            "pos" => info.pos = val.parse().map_err(|_| bad(pid, &name, line))?,
            "flags" => {
                info.flags = u32::from_str_radix(val, 8).map_err(|_| bad(pid, &name, line))?
            }
            "mnt_id" => info.mnt_id = val.parse().map_err(|_| bad(pid, &name, line))?,
            _ => {}
        }
    }
    Ok(info)
}

/// The open descriptor numbers of a process, ascending.
pub fn fds(pid: i32) -> Result<Vec<i32>> {
    let path = PathBuf::from(format!("/proc/{pid}/fd"));
    let dir = std::fs::read_dir(&path).map_err(|source| DumpError::Io {
        path: path.clone(),
        source,
    })?;
    let mut fds = Vec::new();
    for e in dir {
        let e = e.map_err(|source| DumpError::Io {
            path: path.clone(),
            source,
        })?;
        if let Some(n) = e.file_name().to_str().and_then(|s| s.parse().ok()) {
            fds.push(n);
        }
    }
    fds.sort_unstable();
    Ok(fds)
}

/// The thread IDs of a process, ascending.
pub fn threads(pid: i32) -> Result<Vec<i32>> {
    let path = PathBuf::from(format!("/proc/{pid}/task"));
    let dir = std::fs::read_dir(&path).map_err(|source| DumpError::Io {
        path: path.clone(),
        source,
    })?;
    let mut tids: Vec<i32> = dir
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    tids.sort_unstable();
    Ok(tids)
}

/// The children of one thread, from `/proc/PID/task/TID/children`.
pub fn children(pid: i32, tid: i32) -> Result<Vec<i32>> {
    let text = read(pid, &format!("task/{tid}/children"))?;
    Ok(text
        .split_whitespace()
        .filter_map(|s| s.parse().ok())
        .collect())
}

/// The inode of one of the task's namespaces (`/proc/PID/ns/NAME`).
pub fn ns_inode(pid: i32, name: &str) -> Result<u64> {
    let l = link(pid, &format!("ns/{name}"))?;
    l.rsplit('[')
        .next()
        .and_then(|s| s.trim_end_matches(']').parse().ok())
        .ok_or_else(|| bad(pid, &format!("ns/{name}"), &l))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_maps_line_with_spaces_in_the_path() {
        let m = parse_map_line(
            "7f0000000000-7f0000001000 rw-p 00001000 fd:01 1234    /tmp/a b (deleted)",
        )
        .unwrap();
        assert_eq!(m.start, 0x7f0000000000);
        assert!(m.read && m.write && !m.exec && !m.shared);
        assert_eq!(m.offset, 0x1000);
        assert_eq!(m.dev, (0xfd, 1));
        assert_eq!(m.name, "/tmp/a b (deleted)");
    }

    #[test]
    fn a_range_is_cut_out_of_the_mapping_that_holds_it() {
        let m = parse_map_line("1000-5000 rw-p 00000000 00:00 0").unwrap();
        let cut = without_range(vec![m.clone()], 0x2000, 0x3000);
        assert_eq!(
            cut.iter().map(|m| (m.start, m.end)).collect::<Vec<_>>(),
            [(0x1000, 0x2000), (0x3000, 0x5000)]
        );
        assert_eq!(
            without_range(vec![m.clone()], 0x1000, 0x2000)[0].start,
            0x2000
        );
        assert!(without_range(vec![m], 0x1000, 0x5000).is_empty());
    }

    #[test]
    fn reads_our_own_process() {
        let me = std::process::id() as i32;
        let st = stat(me).unwrap();
        assert!(st.start_code > 0 && st.arg_start < st.arg_end);
        let maps = smaps(me).unwrap();
        assert!(maps.iter().any(|m| m.name == "[vdso]"));
        assert!(maps.iter().all(|m| !m.vm_flags.is_empty()));
        assert_eq!(status(me).unwrap().tgid, me);
    }
}
