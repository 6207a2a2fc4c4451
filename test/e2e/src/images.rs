//! The image directory a dump writes, read back through Debian's `crit` —
//! an implementation of the format independent of stasis — and a few
//! byte-level edits for the bad-input tests.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::proc::Pid;
use crate::COMMAND_TIMEOUT;

/// Every protobuf image of a dump, decoded by `crit decode`: file name →
/// `{"magic": NAME, "entries": [...]}`.
#[derive(Debug)]
pub struct ImageSet {
    pub dir: PathBuf,
    pub images: BTreeMap<String, Value>,
}

/// Whether an image is one of CRIU's raw ones, without a magic: pages, tmpfs
/// tarballs, and the iproute2/nft streams of a network namespace.
pub fn is_raw(name: &str) -> bool {
    [
        "pages-",
        "tmpfs-",
        "ifaddr-",
        "route-",
        "route6-",
        "rule-",
        "iptables-",
        "ip6tables-",
        "nftables-",
    ]
    .iter()
    .any(|p| name.starts_with(p))
}

/// Runs `crit decode -i F` on every `*.img` in `dir` except the raw ones
/// ([`is_raw`]), and panics — naming the file and crit's message — unless
/// each one decodes to JSON with a magic and a list of entries.
pub fn crit_decode_all(dir: &Path) -> ImageSet {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read images dir {}: {e}", dir.display()))
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".img") && !is_raw(n))
        .collect();
    names.sort();
    assert!(!names.is_empty(), "no *.img files in {}", dir.display());
    let mut images = BTreeMap::new();
    for name in names {
        let path = dir.join(&name);
        let mut cmd = Command::new(crit_bin());
        cmd.arg("decode").arg("-i").arg(&path);
        let out = crate::run::run(cmd, COMMAND_TIMEOUT);
        assert!(out.success(), "crit cannot decode {name}:\n{out}");
        let v: Value = serde_json::from_str(&out.stdout)
            .unwrap_or_else(|e| panic!("crit's output for {name} is not JSON ({e}):\n{out}"));
        assert!(
            v.get("magic").and_then(Value::as_str).is_some(),
            "crit's output for {name} has no magic: {v}"
        );
        assert!(
            v.get("entries").and_then(Value::as_array).is_some(),
            "crit's output for {name} has no entries: {v}"
        );
        images.insert(name, v);
    }
    ImageSet {
        dir: dir.to_path_buf(),
        images,
    }
}

/// `crit` from Debian's criu package; panics with the install command if absent.
pub fn crit_bin() -> PathBuf {
    let found = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join("crit"))
        .find(|p| p.is_file());
    found.unwrap_or_else(|| {
        panic!("crit is not installed: apt-get install -y criu (it provides crit)")
    })
}

impl ImageSet {
    /// The decoded entries of `name`; panics if the dump did not write it.
    #[track_caller]
    pub fn entries(&self, name: &str) -> &Vec<Value> {
        let img = self.images.get(name).unwrap_or_else(|| {
            panic!(
                "the dump wrote no {name}; it wrote: {:?}",
                self.images.keys().collect::<Vec<_>>()
            )
        });
        img["entries"].as_array().expect("checked at decode")
    }

    /// The magic name crit reported for `name`.
    pub fn magic(&self, name: &str) -> Option<&str> {
        self.images.get(name)?.get("magic")?.as_str()
    }

    /// `pstree.img`'s entries as (pid, ppid, pgid, sid).
    pub fn pstree(&self) -> Vec<(u64, u64, u64, u64)> {
        self.entries("pstree.img")
            .iter()
            .map(|e| {
                let f = |k: &str| {
                    e.get(k)
                        .and_then(Value::as_u64)
                        .unwrap_or_else(|| panic!("pstree entry lacks {k}: {e}"))
                };
                (f("pid"), f("ppid"), f("pgid"), f("sid"))
            })
            .collect()
    }

    /// The single entry of `core-<pid>.img`.
    pub fn core(&self, pid: Pid) -> &Value {
        let entries = self.entries(&format!("core-{pid}.img"));
        assert_eq!(entries.len(), 1, "core-{pid}.img should hold one entry");
        &entries[0]
    }

    /// The task's comm as recorded in `core-<pid>.img` (`tc.comm`).
    pub fn comm(&self, pid: Pid) -> String {
        let core = self.core(pid);
        core.pointer("/tc/comm")
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("core-{pid}.img has no tc.comm: {core}"))
            .to_string()
    }

    /// The `pages_id` of `pagemap-<pid>.img`'s head entry: the dump's pages
    /// live in `pages-<pages_id>.img`.
    pub fn pages_id(&self, pid: Pid) -> u64 {
        let entries = self.entries(&format!("pagemap-{pid}.img"));
        entries
            .first()
            .and_then(|h| h.get("pages_id"))
            .and_then(Value::as_u64)
            .unwrap_or_else(|| {
                panic!("pagemap-{pid}.img has no head entry with pages_id: {entries:?}")
            })
    }
}

/// Cuts `path` to `len` bytes.
pub fn truncate(path: &Path, len: u64) {
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    f.set_len(len)
        .unwrap_or_else(|e| panic!("truncate {}: {e}", path.display()));
}

/// Reads the little-endian u32 at `offset` of `path`.
pub fn read_u32(path: &Path, offset: usize) -> u32 {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let word = bytes
        .get(offset..offset + 4)
        .unwrap_or_else(|| panic!("{} is shorter than {}", path.display(), offset + 4));
    u32::from_le_bytes(word.try_into().expect("four bytes"))
}

/// Overwrites the little-endian u32 at `offset` of `path`.
pub fn write_u32(path: &Path, offset: usize, value: u32) {
    let mut bytes = std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    assert!(
        bytes.len() >= offset + 4,
        "{} is shorter than {}",
        path.display(),
        offset + 4
    );
    bytes[offset..offset + 4].copy_from_slice(&value.to_le_bytes());
    std::fs::write(path, bytes).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}
