//! The report: a table for people, JSON for machines. Both say, per memory workload
//! size, how long stasis took, what that is as a share of the machine's limits and
//! against the naive copy, and whether the issue's targets are met; and per process-tree
//! workload (the JVM, the ring), how long stasis took against the targets and CRIU.

use std::fmt::Write;

use crate::json::Json;
use crate::limits::{Filesystem, MemoryCopy, SequentialWrite};
use crate::run::{SizeResult, TreeResult};
use crate::stats::{gbps, Samples};

/// The machine the run was on.
#[derive(Debug, Clone)]
pub struct Machine {
    pub kernel: String,
    pub cpu: String,
    pub cpus: usize,
    pub memory_bytes: u64,
    /// 1-minute load average when the run started and when it ended: other work on the
    /// machine during the run shows here, and in every number of the run.
    pub load_start: f64,
    pub load_end: f64,
}

impl Machine {
    pub fn describe() -> Machine {
        let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
        let cpu = read("/proc/cpuinfo")
            .lines()
            .find_map(|l| {
                l.strip_prefix("model name")?
                    .split_once(':')
                    .map(|(_, v)| v.trim().to_string())
            })
            .unwrap_or_else(|| "?".into());
        let memory_kib: u64 = read("/proc/meminfo")
            .lines()
            .find_map(|l| {
                l.strip_prefix("MemTotal:")?
                    .trim()
                    .strip_suffix("kB")?
                    .trim()
                    .parse()
                    .ok()
            })
            .unwrap_or(0);
        Machine {
            kernel: read("/proc/sys/kernel/osrelease").trim().to_string(),
            cpu,
            cpus: std::thread::available_parallelism().map_or(0, |n| n.get()),
            memory_bytes: memory_kib * 1024,
            load_start: load_average(),
            load_end: f64::NAN,
        }
    }
}

/// The 1-minute load average from /proc/loadavg; NaN if unreadable.
pub fn load_average() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(f64::NAN)
}

/// The machine's limits, measured when the memory workload runs.
#[derive(Debug, Clone)]
pub struct Limits {
    pub memory: MemoryCopy,
    pub write: SequentialWrite,
}

/// A whole run's results.
#[derive(Debug, Clone)]
pub struct Report {
    pub machine: Machine,
    pub stasis_bin: Option<String>,
    pub stasis_version: Option<String>,
    pub scratch: String,
    /// The filesystem of the scratch dir, where the images go.
    pub filesystem: Filesystem,
    /// The workloads the run was asked for (`--workloads`).
    pub workloads: Vec<&'static str>,
    /// None when the memory workload was not run: only it is set against them.
    pub limits: Option<Limits>,
    /// The memory workload, per size.
    pub sizes: Vec<SizeResult>,
    /// The JVM and the ring, as asked for and when stasis ran.
    pub trees: Vec<TreeResult>,
    /// Why the stasis part could not run at all, if it could not.
    pub stasis_unavailable: Option<String>,
    /// `--skip-stasis`: the stasis part was not asked for.
    pub stasis_skipped: bool,
}

/// The issue's acceptance targets, in seconds, per size in MiB: (dump, restore).
pub fn target(mib: u64) -> Option<f64> {
    match mib {
        1 => Some(0.015),
        2048 => Some(0.7),
        _ => None,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Dump,
    Restore,
}

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::Dump => "dump",
            Op::Restore => "restore",
        }
    }
}

/// Derived numbers for one operation on one size.
#[derive(Debug, Clone, Default)]
struct Row {
    median: Option<f64>,
    min: Option<f64>,
    bytes: Option<u64>,
    gbps: Option<f64>,
    of_memcpy: Option<f64>,
    of_fresh: Option<f64>,
    of_disk: Option<f64>,
    naive_median: Option<f64>,
    naive_bytes: u64,
    naive_gbps: Option<f64>,
    vs_naive: Option<f64>,
    target: Option<f64>,
    pass: Option<bool>,
}

/// Derived numbers for one operation on one process-tree workload.
#[derive(Debug, Clone)]
struct TreeRow<'a> {
    samples: &'a Samples,
    target: Option<f64>,
    pass: Option<bool>,
    criu: Option<f64>,
    vs_criu: Option<f64>,
}

fn tree_row(tree: &TreeResult, op: Op) -> TreeRow<'_> {
    let t = &tree.targets;
    let (samples, target, criu) = match op {
        Op::Dump => (&tree.dump, t.dump, t.criu_dump),
        Op::Restore => (&tree.restore, t.restore, t.criu_restore),
    };
    let median = samples.median();
    TreeRow {
        samples,
        target,
        pass: target.zip(median).map(|(t, m)| m <= t),
        criu,
        vs_criu: criu.zip(median).map(|(c, m)| c / m),
    }
}

impl Report {
    fn memcpy_gbps(&self) -> Option<f64> {
        self.limits.as_ref()?.memory.warm.median()
    }

    fn fresh_gbps(&self) -> Option<f64> {
        self.limits.as_ref()?.memory.first_touch.median()
    }

    fn disk_gbps(&self) -> Option<f64> {
        self.limits.as_ref()?.write.buffered.median()
    }

    fn row(&self, size: &SizeResult, op: Op) -> Row {
        let (samples, naive, naive_bytes) = match op {
            Op::Dump => (
                size.stasis.as_ref().map(|s| &s.dump),
                &size.naive_dump,
                size.naive_dump_bytes,
            ),
            Op::Restore => (
                size.stasis.as_ref().map(|s| &s.restore),
                &size.naive_restore,
                size.naive_restore_bytes,
            ),
        };
        let samples = samples.filter(|s| !s.is_empty());
        let median = samples.and_then(Samples::median);
        let bytes = samples
            .and(size.stasis.as_ref())
            .map(|s| s.images.total_bytes);
        let rate = median.zip(bytes).map(|(t, b)| gbps(b, t));
        let naive_median = naive.median();
        let target = target(size.mib);
        Row {
            median,
            min: samples.and_then(Samples::min),
            bytes,
            gbps: rate,
            of_memcpy: rate.zip(self.memcpy_gbps()).map(|(r, m)| r / m),
            of_fresh: rate.zip(self.fresh_gbps()).map(|(r, m)| r / m),
            of_disk: match op {
                Op::Dump => rate.zip(self.disk_gbps()).map(|(r, d)| r / d),
                Op::Restore => None,
            },
            naive_median,
            naive_bytes,
            naive_gbps: naive_median.map(|t| gbps(naive_bytes, t)),
            vs_naive: naive_median.zip(median).map(|(n, s)| n / s),
            target,
            pass: target.zip(median).map(|(t, m)| m <= t),
        }
    }

    pub fn failed(&self) -> bool {
        self.stasis_unavailable.is_some()
            || self.sizes.iter().any(|s| s.stasis_error.is_some())
            || self.trees.iter().any(|t| t.error.is_some())
    }

    pub fn table(&self) -> String {
        let mut out = String::new();
        let m = &self.machine;
        let _ = writeln!(
            out,
            "stasis-bench on Linux {}, {} CPUs ({}), {} RAM",
            m.kernel,
            m.cpus,
            m.cpu,
            fmt_bytes(m.memory_bytes)
        );
        let _ = writeln!(
            out,
            "load average (1 min): {:.2} at start, {:.2} at end",
            m.load_start, m.load_end
        );
        let _ = writeln!(
            out,
            "stasis: {}",
            match (&self.stasis_bin, &self.stasis_version) {
                (Some(bin), Some(v)) => format!("{bin} ({v})"),
                _ if self.stasis_skipped => "skipped (--skip-stasis)".into(),
                _ => "not run".into(),
            }
        );
        let fs = &self.filesystem;
        let _ = writeln!(
            out,
            "images: {} on {} ({} {})",
            self.scratch, fs.mount_point, fs.fs_type, fs.source
        );
        let _ = writeln!(out, "workloads: {}\n", self.workloads.join(", "));
        if self.workloads.contains(&"memory") {
            self.memory_table(&mut out);
        }
        if !self.trees.is_empty() {
            if self.limits.is_some() {
                out.push('\n');
            }
            self.tree_table(&mut out);
        }
        for name in &self.workloads {
            if *name != "memory" && !self.trees.iter().any(|t| t.name == *name) {
                let why = if self.stasis_skipped {
                    "--skip-stasis"
                } else {
                    "no stasis"
                };
                let _ = writeln!(
                    out,
                    "\n{name}: not run ({why}; it has no baseline of its own)"
                );
            }
        }
        if let Some(why) = &self.stasis_unavailable {
            let _ = writeln!(out, "\nSTASIS NOT RUN: {why}");
        }
        for size in &self.sizes {
            if let Some(e) = &size.stasis_error {
                let _ = writeln!(out, "\nSTASIS FAILED on {} MiB:\n{e}", size.mib);
            }
        }
        for tree in &self.trees {
            if let Some(e) = &tree.error {
                let _ = writeln!(out, "\nFAILED on {}:\n{e}", tree.name);
            }
        }
        out
    }

    fn memory_table(&self, out: &mut String) {
        let Some(limits) = &self.limits else {
            return;
        };

        let _ = writeln!(
            out,
            "Machine limits, measured in this run          median       best"
        );
        let limit = |out: &mut String, what: String, s: &Samples| {
            let _ = writeln!(
                out,
                "  {what:<42} {:>7} GB/s {:>7} GB/s",
                fmt_opt(s.median(), 2),
                fmt_opt(s.max(), 2)
            );
        };
        let mem = fmt_bytes(limits.memory.bytes as u64);
        let n = limits.memory.warm.0.len();
        limit(out, format!("memory copy, {mem} x{n}"), &limits.memory.warm);
        limit(
            out,
            format!("memory copy into fresh pages, {mem} x{n}"),
            &limits.memory.first_touch,
        );
        let w = fmt_bytes(limits.write.bytes);
        let n = limits.write.buffered.0.len();
        limit(
            out,
            format!("sequential write {w} x{n}, buffered"),
            &limits.write.buffered,
        );
        limit(
            out,
            format!("sequential write {w} x{n}, +fdatasync"),
            &limits.write.synced,
        );

        let _ = writeln!(
            out,
            "\nMemory workload, dump and restore: wall-clock of the stasis process, median of the rounds.\n\
             GB/s = image bytes / median time; memcpy, fresh, disk = that rate as a share of the medians above of\n\
             memory copy, memory copy into fresh pages, and buffered write; vs naive = naive time / stasis time\n\
             (>1: stasis faster)."
        );
        let _ = writeln!(
            out,
            "\n{:<9} {:<8} {:>6} {:>10} {:>10} {:>10} {:>6} {:>7} {:>7} {:>7} {:>10} {:>6} {:>8}  target",
            "size",
            "op",
            "rounds",
            "median",
            "min",
            "image",
            "GB/s",
            "memcpy",
            "fresh",
            "disk",
            "naive",
            "GB/s",
            "vs naive"
        );
        for size in &self.sizes {
            for op in [Op::Dump, Op::Restore] {
                let r = self.row(size, op);
                let rounds = size.stasis.as_ref().map_or(0, |s| match op {
                    Op::Dump => s.dump.0.len(),
                    Op::Restore => s.restore.0.len(),
                });
                let target = match (r.target, r.pass) {
                    (Some(t), Some(true)) => format!("<= {:.0} ms  PASS", t * 1e3),
                    (Some(t), Some(false)) => format!("<= {:.0} ms  MISS", t * 1e3),
                    (Some(t), None) => format!("<= {:.0} ms  not measured", t * 1e3),
                    (None, _) => "-".into(),
                };
                let _ = writeln!(
                    out,
                    "{:<9} {:<8} {:>6} {:>10} {:>10} {:>10} {:>6} {:>7} {:>7} {:>7} {:>10} {:>6} {:>8}  {}",
                    if op == Op::Dump { fmt_bytes(size.workload_bytes()) } else { String::new() },
                    op.name(),
                    rounds,
                    r.median.map_or("-".into(), fmt_secs),
                    r.min.map_or("-".into(), fmt_secs),
                    r.bytes.map_or("-".into(), fmt_bytes),
                    fmt_opt(r.gbps, 2),
                    fmt_pct(r.of_memcpy),
                    fmt_pct(r.of_fresh),
                    fmt_pct(r.of_disk),
                    r.naive_median.map_or("-".into(), fmt_secs),
                    fmt_opt(r.naive_gbps, 2),
                    r.vs_naive.map_or("-".into(), |v| format!("{v:.2}x")),
                    target
                );
            }
        }
        let _ = writeln!(
            out,
            "\nnaive dump = copy every readable mapping from /proc/PID/mem to a file (no freeze, no metadata);\n\
             naive restore = read the pages files into fresh anonymous memory. Stasis rounds are verified:\n\
             the restored counter continues from the dumped value and all workload memory matches its pattern."
        );
    }

    fn tree_table(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "Process trees: wall-clock of the stasis process over the rounds. CRIU = CRIU 4.2's median\n\
             for the same kind of workload on this kind of machine, as quoted by issue 3; vs CRIU = CRIU / median."
        );
        let _ = writeln!(
            out,
            "\n{:<9} {:>5} {:>7} {:<8} {:>6} {:>10} {:>10} {:>10} {:>10} {:>8} {:>8}  target",
            "workload",
            "procs",
            "threads",
            "op",
            "rounds",
            "median",
            "min",
            "max",
            "image",
            "CRIU",
            "vs CRIU"
        );
        for tree in &self.trees {
            for op in [Op::Dump, Op::Restore] {
                let r = tree_row(tree, op);
                let target = match (r.target, r.pass) {
                    (Some(t), Some(true)) => format!("<= {:.0} ms  PASS", t * 1e3),
                    (Some(t), Some(false)) => format!("<= {:.0} ms  MISS", t * 1e3),
                    (Some(t), None) => format!("<= {:.0} ms  not measured", t * 1e3),
                    (None, _) => "-".into(),
                };
                let first = op == Op::Dump;
                let _ = writeln!(
                    out,
                    "{:<9} {:>5} {:>7} {:<8} {:>6} {:>10} {:>10} {:>10} {:>10} {:>8} {:>8}  {}",
                    if first { tree.name } else { "" },
                    if first && tree.verified > 0 {
                        tree.processes.to_string()
                    } else {
                        String::new()
                    },
                    if first && tree.verified > 0 {
                        tree.threads.to_string()
                    } else {
                        String::new()
                    },
                    op.name(),
                    r.samples.0.len(),
                    r.samples.median().map_or("-".into(), fmt_secs),
                    r.samples.min().map_or("-".into(), fmt_secs),
                    r.samples.max().map_or("-".into(), fmt_secs),
                    if first && tree.verified > 0 {
                        fmt_bytes(tree.images.total_bytes)
                    } else {
                        String::new()
                    },
                    r.criu.map_or("-".into(), |c| format!("{:.0} ms", c * 1e3)),
                    r.vs_criu.map_or("-".into(), |v| format!("{v:.2}x")),
                    target
                );
            }
        }
        let _ = writeln!(out);
        for tree in &self.trees {
            let _ = writeln!(out, "{}: {}", tree.name, tree.description);
        }
        let _ = writeln!(
            out,
            "threads = the dump's core-*.img files (all processes); image = all files of the last round's images.\n\
             Rounds are verified: every process of the tree comes back with its PID and thread count, and the\n\
             JVM's tick (with its HashMap and heap checksum) or the ring's lap (with its token) continues from the\n\
             dumped value."
        );
    }

    pub fn json(&self) -> Json {
        let samples = |s: &Samples| {
            Json::obj([
                ("median", Json::opt_num(s.median())),
                ("min", Json::opt_num(s.min())),
                ("max", Json::opt_num(s.max())),
                (
                    "samples",
                    Json::Arr(s.0.iter().map(|v| Json::Num(*v)).collect()),
                ),
            ])
        };
        let m = &self.machine;
        let fs = &self.filesystem;
        let sizes = self
            .sizes
            .iter()
            .map(|size| {
                let op_json = |op: Op| {
                    let r = self.row(size, op);
                    let (stasis, naive) = match op {
                        Op::Dump => (size.stasis.as_ref().map(|s| &s.dump), &size.naive_dump),
                        Op::Restore => (
                            size.stasis.as_ref().map(|s| &s.restore),
                            &size.naive_restore,
                        ),
                    };
                    Json::obj([
                        ("seconds", stasis.map_or(Json::Null, samples)),
                        ("image_bytes", r.bytes.map_or(Json::Null, Json::Int)),
                        ("gbps", Json::opt_num(r.gbps)),
                        ("share_of_memcpy", Json::opt_num(r.of_memcpy)),
                        ("share_of_memcpy_fresh_pages", Json::opt_num(r.of_fresh)),
                        ("share_of_disk_write", Json::opt_num(r.of_disk)),
                        ("naive_seconds", samples(naive)),
                        ("naive_bytes", Json::Int(r.naive_bytes)),
                        ("naive_gbps", Json::opt_num(r.naive_gbps)),
                        ("speedup_vs_naive", Json::opt_num(r.vs_naive)),
                        ("target_seconds", Json::opt_num(r.target)),
                        ("target_met", r.pass.map_or(Json::Null, Json::Bool)),
                    ])
                };
                let images = size.stasis.as_ref().map_or(Json::Null, |s| {
                    Json::obj([
                        ("files", Json::Int(s.images.files as u64)),
                        ("total_bytes", Json::Int(s.images.total_bytes)),
                        ("pages_bytes", Json::Int(s.images.pages_bytes)),
                    ])
                });
                Json::obj([
                    ("mib", Json::Int(size.mib)),
                    ("workload_bytes", Json::Int(size.workload_bytes())),
                    ("rounds", Json::Int(size.rounds as u64)),
                    (
                        "verified_rounds",
                        Json::Int(size.stasis.as_ref().map_or(0, |s| s.verified as u64)),
                    ),
                    ("images", images),
                    ("dump", op_json(Op::Dump)),
                    ("restore", op_json(Op::Restore)),
                    ("naive_restore_source", Json::str(size.naive_restore_source)),
                    (
                        "stasis_error",
                        size.stasis_error.clone().map_or(Json::Null, Json::Str),
                    ),
                ])
            })
            .collect();
        let trees = self
            .trees
            .iter()
            .map(|tree| {
                let op_json = |op: Op| {
                    let r = tree_row(tree, op);
                    Json::obj([
                        ("seconds", samples(r.samples)),
                        ("target_seconds", Json::opt_num(r.target)),
                        ("target_met", r.pass.map_or(Json::Null, Json::Bool)),
                        ("criu_seconds", Json::opt_num(r.criu)),
                        ("speedup_vs_criu", Json::opt_num(r.vs_criu)),
                    ])
                };
                let verified = tree.verified > 0;
                Json::obj([
                    ("name", Json::str(tree.name)),
                    ("description", Json::str(&tree.description)),
                    ("rounds", Json::Int(tree.rounds as u64)),
                    ("verified_rounds", Json::Int(tree.verified as u64)),
                    (
                        "processes",
                        if verified {
                            Json::Int(tree.processes as u64)
                        } else {
                            Json::Null
                        },
                    ),
                    (
                        "threads",
                        if verified {
                            Json::Int(tree.threads as u64)
                        } else {
                            Json::Null
                        },
                    ),
                    (
                        "images",
                        if verified {
                            Json::obj([
                                ("files", Json::Int(tree.images.files as u64)),
                                ("total_bytes", Json::Int(tree.images.total_bytes)),
                                ("pages_bytes", Json::Int(tree.images.pages_bytes)),
                            ])
                        } else {
                            Json::Null
                        },
                    ),
                    ("dump", op_json(Op::Dump)),
                    ("restore", op_json(Op::Restore)),
                    ("error", tree.error.clone().map_or(Json::Null, Json::Str)),
                ])
            })
            .collect();
        Json::obj([
            (
                "machine",
                Json::obj([
                    ("kernel", Json::str(&m.kernel)),
                    ("cpu", Json::str(&m.cpu)),
                    ("cpus", Json::Int(m.cpus as u64)),
                    ("memory_bytes", Json::Int(m.memory_bytes)),
                    ("load_average_start", Json::Num(m.load_start)),
                    ("load_average_end", Json::Num(m.load_end)),
                ]),
            ),
            (
                "stasis",
                Json::obj([
                    ("bin", self.stasis_bin.clone().map_or(Json::Null, Json::Str)),
                    (
                        "version",
                        self.stasis_version.clone().map_or(Json::Null, Json::Str),
                    ),
                    (
                        "unavailable",
                        self.stasis_unavailable
                            .clone()
                            .map_or(Json::Null, Json::Str),
                    ),
                ]),
            ),
            (
                "images_dir",
                Json::obj([
                    ("path", Json::str(&self.scratch)),
                    ("mount_point", Json::str(&fs.mount_point)),
                    ("fs_type", Json::str(&fs.fs_type)),
                    ("source", Json::str(&fs.source)),
                ]),
            ),
            (
                "workloads",
                Json::Arr(self.workloads.iter().map(|w| Json::str(*w)).collect()),
            ),
            (
                "limits",
                self.limits.as_ref().map_or(Json::Null, |l| {
                    Json::obj([
                        ("memcpy_bytes", Json::Int(l.memory.bytes as u64)),
                        ("memcpy_gbps", samples(&l.memory.warm)),
                        ("memcpy_fresh_pages_gbps", samples(&l.memory.first_touch)),
                        ("write_bytes", Json::Int(l.write.bytes)),
                        ("write_buffered_gbps", samples(&l.write.buffered)),
                        ("write_fdatasync_gbps", samples(&l.write.synced)),
                    ])
                }),
            ),
            ("sizes", Json::Arr(sizes)),
            ("process_trees", Json::Arr(trees)),
            ("ok", Json::Bool(!self.failed())),
        ])
    }
}

pub fn fmt_secs(s: f64) -> String {
    if s < 1.0 {
        format!("{:.2} ms", s * 1e3)
    } else {
        format!("{s:.3} s")
    }
}

pub fn fmt_bytes(b: u64) -> String {
    const MIB: f64 = (1u64 << 20) as f64;
    let mib = b as f64 / MIB;
    if mib >= 1024.0 {
        format!("{:.2} GiB", mib / 1024.0)
    } else if b >= 1 << 20 {
        format!("{mib:.1} MiB")
    } else {
        format!("{:.1} KiB", b as f64 / 1024.0)
    }
}

fn fmt_opt(v: Option<f64>, places: usize) -> String {
    v.map_or("-".into(), |v| format!("{v:.places$}"))
}

fn fmt_pct(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{:.0}%", v * 100.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_the_issues() {
        assert_eq!(target(1), Some(0.015));
        assert_eq!(target(2048), Some(0.7));
        assert_eq!(target(256), None);
    }

    #[test]
    fn times_and_sizes_read_naturally() {
        assert_eq!(fmt_secs(0.0123), "12.30 ms");
        assert_eq!(fmt_secs(1.5), "1.500 s");
        assert_eq!(fmt_bytes(2 << 30), "2.00 GiB");
        assert_eq!(fmt_bytes(3 << 20), "3.0 MiB");
        assert_eq!(fmt_bytes(4096), "4.0 KiB");
    }
}
