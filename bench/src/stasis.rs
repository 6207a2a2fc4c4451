//! Running the stasis binary under test: `stasis dump` and `stasis restore -d`, timed
//! wall-clock from spawn to exit, and the images they leave.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{bail, Context, Result};

/// The stasis binary under test.
#[derive(Debug, Clone)]
pub struct Stasis {
    pub bin: PathBuf,
    pub version: String,
}

impl Stasis {
    /// `--stasis PATH`, else `$STASIS_BIN`, else `stasis` beside this binary (so
    /// `target/release/stasis` for `target/release/stasis-bench`).
    pub fn locate(flag: Option<&Path>) -> Result<Stasis> {
        let (bin, from) = match (flag, std::env::var_os("STASIS_BIN")) {
            (Some(p), _) => (p.to_path_buf(), "--stasis"),
            (None, Some(p)) => (PathBuf::from(p), "$STASIS_BIN"),
            (None, None) => {
                let exe = std::env::current_exe().context("finding this binary's path")?;
                (exe.with_file_name("stasis"), "beside stasis-bench")
            }
        };
        if !bin.is_file() {
            bail!(
                "stasis binary not found at {} ({from}); build it with \
                 `cargo build --release -p stasis-cli`, or pass --stasis PATH / set STASIS_BIN \
                 (or use --skip-stasis to measure only the limits and the baseline)",
                bin.display()
            );
        }
        let out = Command::new(&bin)
            .arg("--version")
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("running {} --version", bin.display()))?;
        let version = String::from_utf8_lossy(&out.stdout).trim().to_string();
        Ok(Stasis { bin, version })
    }

    /// `stasis dump -t PID -D IMAGES`; returns wall-clock seconds.
    pub fn dump(&self, pid: i32, images: &Path, logs: &Path) -> Result<f64> {
        let pid = pid.to_string();
        let args = ["dump", "-t", &pid, "-D", path_str(images)?];
        self.run(&args, &logs.join("dump.out"))
    }

    /// `stasis restore -D IMAGES -d`; returns wall-clock seconds.
    pub fn restore(&self, images: &Path, logs: &Path) -> Result<f64> {
        let args = ["restore", "-D", path_str(images)?, "-d"];
        self.run(&args, &logs.join("restore.out"))
    }

    /// Runs stasis with stdout and stderr to a file, not a pipe: a restored process that
    /// inherited a pipe would keep it open and a reader waiting.
    fn run(&self, args: &[&str], output: &Path) -> Result<f64> {
        let out = File::create(output).with_context(|| format!("creating {}", output.display()))?;
        let err = out.try_clone()?;
        let command_line = format!("{} {}", self.bin.display(), args.join(" "));
        let t = Instant::now();
        let status = Command::new(&self.bin)
            .args(args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .status()
            .with_context(|| format!("starting `{command_line}`"))?;
        let seconds = t.elapsed().as_secs_f64();
        if !status.success() {
            let text = fs::read_to_string(output).unwrap_or_default();
            bail!(
                "`{command_line}` failed ({status}) after {:.3} s; its output:\n{}",
                seconds,
                tail(&text, 40)
            );
        }
        Ok(seconds)
    }
}

fn path_str(p: &Path) -> Result<&str> {
    p.to_str()
        .with_context(|| format!("path {} is not UTF-8", p.display()))
}

pub fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    let start = all.len().saturating_sub(lines);
    let shown = all[start..].join("\n");
    if shown.is_empty() {
        "(nothing)".into()
    } else {
        shown
    }
}

/// What a dump left in the images dir.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ImageSet {
    /// All files, in bytes.
    pub total_bytes: u64,
    /// The raw `pages-N.img` files, which hold the memory.
    pub pages_files: Vec<PathBuf>,
    pub pages_bytes: u64,
    pub files: usize,
}

impl ImageSet {
    pub fn read(dir: &Path) -> Result<ImageSet> {
        let mut set = ImageSet::default();
        for entry in fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
            let entry = entry?;
            let meta = entry.metadata()?;
            if !meta.is_file() {
                continue;
            }
            set.files += 1;
            set.total_bytes += meta.len();
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with("pages-") && name.ends_with(".img") {
                set.pages_files.push(entry.path());
                set.pages_bytes += meta.len();
            }
        }
        set.pages_files.sort();
        Ok(set)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_binary_is_named_in_the_error() {
        let err = Stasis::locate(Some(Path::new("/nonexistent/stasis"))).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/stasis"), "{err}");
    }

    #[test]
    fn image_set_counts_pages_files_apart() {
        let dir = std::env::temp_dir().join(format!("stasis-bench-img-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("pages-1.img"), vec![1u8; 8192]).unwrap();
        fs::write(dir.join("pagemap-42.img"), vec![1u8; 100]).unwrap();
        let set = ImageSet::read(&dir).unwrap();
        assert_eq!(
            (set.files, set.total_bytes, set.pages_bytes),
            (2, 8292, 8192)
        );
        assert_eq!(set.pages_files, vec![dir.join("pages-1.img")]);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn tail_keeps_the_last_lines() {
        assert_eq!(tail("a\nb\nc\n", 2), "b\nc");
        assert_eq!(tail("", 2), "(nothing)");
    }
}
