//! This machine's limits, measured in the same run as the dumps they are compared with:
//! how fast memory can be copied and how fast the images' filesystem takes a sequential
//! write.

use std::fs::{self, File};
use std::hint::black_box;
use std::io::Write;
use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result};

use crate::stats::{gbps, Samples};

/// Bytes copied per pass of the memory test.
pub const MEMORY_COPY_BYTES: usize = 1 << 30;
/// Passes of the memory test.
pub const MEMORY_COPY_PASSES: usize = 5;
/// Passes of the write test.
pub const WRITE_PASSES: usize = 3;
/// Size of one `write(2)` in the write test.
const WRITE_CHUNK: usize = 8 << 20;

/// Memory bandwidth in GB/s (bytes copied, counted once, per second).
#[derive(Debug, Clone)]
pub struct MemoryCopy {
    pub bytes: usize,
    /// memcpy between two buffers whose pages are already present.
    pub warm: Samples,
    /// memcpy into freshly mapped memory, so every destination page is faulted in and
    /// zeroed by the kernel first: what filling a restored address space or the page
    /// cache costs at the least.
    pub first_touch: Samples,
}

pub fn measure_memory_copy(bytes: usize, passes: usize) -> MemoryCopy {
    let src = vec![0x5au8; bytes];
    let mut dst = vec![0xa5u8; bytes];
    let mut warm = Samples::default();
    for _ in 0..passes {
        let t = Instant::now();
        dst.copy_from_slice(black_box(&src));
        black_box(&mut dst);
        warm.push(gbps(bytes as u64, t.elapsed().as_secs_f64()));
    }
    drop(dst);

    let mut first_touch = Samples::default();
    for _ in 0..passes {
        let t = Instant::now();
        let mut fresh: Vec<u8> = Vec::with_capacity(bytes);
        fresh.extend_from_slice(black_box(&src));
        black_box(&mut fresh);
        first_touch.push(gbps(bytes as u64, t.elapsed().as_secs_f64()));
        drop(fresh);
    }
    MemoryCopy {
        bytes,
        warm,
        first_touch,
    }
}

/// Sequential write bandwidth in GB/s to the filesystem holding the images.
#[derive(Debug, Clone)]
pub struct SequentialWrite {
    pub bytes: u64,
    /// Until the last `write(2)` returned: data in the page cache, as a dump leaves it.
    pub buffered: Samples,
    /// Until `fdatasync(2)` after the last write returned: data on the device.
    pub synced: Samples,
}

/// Writes `bytes` of non-zero data to a new file in `dir` in large chunks, `passes`
/// times, timing each pass up to the last write and up to `fdatasync`; the file is
/// removed after each pass.
pub fn measure_sequential_write(dir: &Path, bytes: u64, passes: usize) -> Result<SequentialWrite> {
    let path = dir.join("write-test.bin");
    let chunk: Vec<u8> = (0..WRITE_CHUNK).map(|i| (i % 251) as u8 + 1).collect();
    let mut buffered = Samples::default();
    let mut synced = Samples::default();
    for _ in 0..passes {
        let t = Instant::now();
        let mut file =
            File::create(&path).with_context(|| format!("creating {}", path.display()))?;
        let mut left = bytes;
        while left > 0 {
            let n = left.min(WRITE_CHUNK as u64) as usize;
            file.write_all(&chunk[..n])
                .with_context(|| format!("writing {}", path.display()))?;
            left -= n as u64;
        }
        let buffered_s = t.elapsed().as_secs_f64();
        file.sync_data()
            .with_context(|| format!("fdatasync {}", path.display()))?;
        let synced_s = t.elapsed().as_secs_f64();
        drop(file);
        fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
        buffered.push(gbps(bytes, buffered_s));
        synced.push(gbps(bytes, synced_s));
    }
    Ok(SequentialWrite {
        bytes,
        buffered,
        synced,
    })
}

/// The mount a path lives on, from `/proc/self/mounts`.
#[derive(Debug, Clone, PartialEq)]
pub struct Filesystem {
    pub mount_point: String,
    pub fs_type: String,
    pub source: String,
}

impl Filesystem {
    pub fn holding(path: &Path) -> Filesystem {
        let path = fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
        let mounts = fs::read_to_string("/proc/self/mounts").unwrap_or_default();
        Self::from_mounts(&mounts, &path).unwrap_or(Filesystem {
            mount_point: "?".into(),
            fs_type: "?".into(),
            source: "?".into(),
        })
    }

    /// The last-mounted of the longest mount points that contain `path`.
    fn from_mounts(mounts: &str, path: &Path) -> Option<Filesystem> {
        mounts
            .lines()
            .filter_map(|line| {
                let mut f = line.split(' ');
                let source = f.next()?;
                let mount_point = unescape_mount_field(f.next()?);
                let fs_type = f.next()?;
                path.starts_with(&mount_point).then(|| Filesystem {
                    mount_point,
                    fs_type: fs_type.to_string(),
                    source: source.to_string(),
                })
            })
            .fold(None, |best: Option<Filesystem>, m| match best {
                Some(b) if b.mount_point.len() > m.mount_point.len() => Some(b),
                _ => Some(m),
            })
    }
}

/// `/proc/self/mounts` writes space, tab, newline and backslash as `\ooo` octal.
fn unescape_mount_field(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes.get(i + 1..i + 4).and_then(|d| {
            let s = std::str::from_utf8(d).ok()?;
            u8::from_str_radix(s, 8).ok()
        });
        match (bytes[i], octal) {
            (b'\\', Some(c)) => {
                out.push(c);
                i += 4;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTS: &str = "\
/dev/vda / ext4 rw,relatime 0 0
tmpfs /tmp tmpfs rw 0 0
tmpfs /var/tmp/my\\040dir tmpfs rw 0 0
";

    #[test]
    fn the_longest_containing_mount_point_wins() {
        let fs = Filesystem::from_mounts(MOUNTS, Path::new("/var/tmp/x")).unwrap();
        assert_eq!(
            (fs.mount_point.as_str(), fs.fs_type.as_str()),
            ("/", "ext4")
        );
        let fs = Filesystem::from_mounts(MOUNTS, Path::new("/tmp/a/b")).unwrap();
        assert_eq!(fs.fs_type, "tmpfs");
    }

    #[test]
    fn escaped_spaces_in_mount_points_are_understood() {
        let fs = Filesystem::from_mounts(MOUNTS, Path::new("/var/tmp/my dir/img")).unwrap();
        assert_eq!(fs.mount_point, "/var/tmp/my dir");
    }

    #[test]
    fn a_small_write_test_reports_both_bandwidths_and_leaves_no_file() {
        let dir = std::env::temp_dir().join(format!("stasis-bench-test-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let w = measure_sequential_write(&dir, 3 << 20, 2).unwrap();
        assert_eq!(w.buffered.0.len(), 2);
        assert!(w.synced.0.iter().all(|g| *g > 0.0));
        assert_eq!(
            fs::read_dir(&dir).unwrap().count(),
            0,
            "the test file is removed"
        );
        fs::remove_dir(&dir).unwrap();
    }

    #[test]
    fn a_small_memory_copy_reports_every_pass() {
        let m = measure_memory_copy(1 << 20, 3);
        assert_eq!(m.warm.0.len(), 3);
        assert_eq!(m.first_touch.0.len(), 3);
    }
}
