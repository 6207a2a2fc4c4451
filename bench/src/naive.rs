//! The naive baseline: the same work done the simple way. Dump copies every readable
//! mapping of the process from /proc/PID/mem into one file; restore reads the pages
//! file back into fresh anonymous memory. Neither freezes the process, writes metadata
//! or rebuilds anything: they bound what moving the bytes alone costs.

use std::fs::{self, File};
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};

const CHUNK: usize = 4 << 20;

/// One timed run of the baseline.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Timed {
    pub seconds: f64,
    pub bytes: u64,
}

/// A readable range of /proc/PID/maps.
#[derive(Debug, Clone, PartialEq)]
struct MappedRange {
    start: u64,
    end: u64,
}

fn readable_ranges(maps: &str) -> Result<Vec<MappedRange>> {
    let mut ranges = Vec::new();
    for (n, line) in maps.lines().enumerate() {
        let bad = || format!("maps line {}: {line:?}", n + 1);
        let mut fields = line.split_ascii_whitespace();
        let (start, end) = fields
            .next()
            .and_then(|r| r.split_once('-'))
            .with_context(bad)?;
        let perms = fields.next().with_context(bad)?;
        if !perms.starts_with('r') {
            continue;
        }
        ranges.push(MappedRange {
            start: u64::from_str_radix(start, 16).with_context(bad)?,
            end: u64::from_str_radix(end, 16).with_context(bad)?,
        });
    }
    Ok(ranges)
}

/// Copies every readable mapping of `pid` into `out`, range by range. Ranges the kernel
/// refuses to read through /proc/PID/mem (`[vvar]` and the like, EIO) are skipped. No
/// fsync, as a dump does none.
pub fn dump(pid: i32, out: &Path) -> Result<Timed> {
    let t = Instant::now();
    let maps_path = format!("/proc/{pid}/maps");
    let maps = fs::read_to_string(&maps_path).with_context(|| format!("reading {maps_path}"))?;
    let mem_path = format!("/proc/{pid}/mem");
    let mem = File::open(&mem_path).with_context(|| format!("opening {mem_path}"))?;
    let mut file = File::create(out).with_context(|| format!("creating {}", out.display()))?;
    let mut buf = vec![0u8; CHUNK];
    let mut bytes = 0u64;
    'ranges: for range in readable_ranges(&maps)? {
        let mut addr = range.start;
        while addr < range.end {
            let want = (range.end - addr).min(CHUNK as u64) as usize;
            let got = match mem.read_at(&mut buf[..want], addr) {
                Ok(0) => continue 'ranges,
                Ok(n) => n,
                Err(e) if e.raw_os_error() == Some(rustix::io::Errno::IO.raw_os_error()) => {
                    continue 'ranges
                }
                Err(e) => {
                    return Err(e).with_context(|| format!("reading {mem_path} at {addr:#x}"))
                }
            };
            file.write_all(&buf[..got])
                .with_context(|| format!("writing {}", out.display()))?;
            addr += got as u64;
            bytes += got as u64;
        }
    }
    drop(file);
    Ok(Timed {
        seconds: t.elapsed().as_secs_f64(),
        bytes,
    })
}

/// Reads `files` whole into freshly allocated (untouched, so faulted in by the read)
/// anonymous memory; the memory is released only after the clock stops.
pub fn restore(files: &[PathBuf]) -> Result<Timed> {
    let t = Instant::now();
    let mut held = Vec::with_capacity(files.len());
    let mut bytes = 0u64;
    for path in files {
        let mut file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
        let len = file.metadata()?.len() as usize;
        // calloc-backed: large sizes are fresh mmap()ed pages, faulted in by read().
        let mut buf = vec![0u8; len];
        file.read_exact(&mut buf)
            .with_context(|| format!("reading {}", path.display()))?;
        bytes += len as u64;
        held.push(buf);
    }
    let seconds = t.elapsed().as_secs_f64();
    drop(held);
    Ok(Timed { seconds, bytes })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_readable_ranges_are_dumped() {
        let maps = "\
55d0c0a00000-55d0c0a01000 r--p 00000000 fe:00 123 /usr/bin/x
7ffd1000-7ffd3000 ---p 00000000 00:00 0
7ffe0000-7ffe2000 rw-p 00000000 00:00 0 [stack]
";
        let ranges = readable_ranges(maps).unwrap();
        assert_eq!(
            ranges,
            vec![
                MappedRange {
                    start: 0x55d0_c0a0_0000,
                    end: 0x55d0_c0a0_1000
                },
                MappedRange {
                    start: 0x7ffe_0000,
                    end: 0x7ffe_2000
                },
            ]
        );
    }

    #[test]
    fn a_garbled_maps_line_is_an_error() {
        assert!(readable_ranges("zzz r--p\n").is_err());
    }

    #[test]
    fn dumping_this_process_copies_at_least_its_heap_and_restore_reads_it_back() {
        let dir = std::env::temp_dir().join(format!("stasis-bench-naive-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let marker = vec![7u8; 1 << 20];
        let out = dir.join("mem.bin");
        let d = dump(std::process::id() as i32, &out).unwrap();
        assert!(d.bytes >= marker.len() as u64);
        assert_eq!(fs::metadata(&out).unwrap().len(), d.bytes);
        let r = restore(std::slice::from_ref(&out)).unwrap();
        assert_eq!(r.bytes, d.bytes);
        fs::remove_dir_all(&dir).unwrap();
    }
}
