//! The command line of `stasis-bench`.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};

pub const USAGE: &str = "\
usage: stasis-bench [OPTIONS]

Times `stasis dump` and `stasis restore -d` of three kinds of workload, in one run:
  memory  a process holding N MiB of memory, for each size of --sizes, against
          this machine's memory-copy and sequential-write bandwidth (measured
          first) and against a naive /proc/PID/mem copy
  jvm     a small Java program under OpenJDK with default flags (~20 threads)
  ring    a tree of 1+10 processes passing a token through a ring of pipes
Every round's restore is verified: the restored workload must go on from where
the dump froze it.

options:
  --workloads LIST   which workloads to run, comma-separated, in this order:
                     memory, jvm, ring (default all three)
  --sizes LIST       memory workload sizes in MiB, comma-separated
                     (default 1,256,2048)
  --iterations N     dump/restore rounds per memory size and per jvm/ring
                     (default 5 per size, or 3 for >= 1 GiB; 7 for jvm, ring)
  --dir PATH         where the scratch dir (images, logs, write test) is made
                     (default /var/tmp, else /tmp)
  --stasis PATH      the stasis binary (default $STASIS_BIN, else `stasis`
                     beside this binary, i.e. target/release/stasis)
  --skip-stasis      measure only the machine limits and the naive baseline
                     (jvm and ring, which have neither, are then not run)
  --keep             keep the scratch dir at the end (logs, stasis output and
                     the images of the last workload's last round)
  --json             print the report as JSON instead of a table
  -h, --help         print this help
";

/// The kinds of workload a run can pick with `--workloads`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkloadKind {
    /// The memory workload, once per `--sizes` size.
    Memory,
    /// OpenJDK running `BenchJvm`.
    Jvm,
    /// 1 + 10 processes passing a token through a ring of pipes.
    Ring,
}

impl WorkloadKind {
    pub const ALL: [WorkloadKind; 3] =
        [WorkloadKind::Memory, WorkloadKind::Jvm, WorkloadKind::Ring];

    pub fn name(self) -> &'static str {
        match self {
            WorkloadKind::Memory => "memory",
            WorkloadKind::Jvm => "jvm",
            WorkloadKind::Ring => "ring",
        }
    }
}

/// Rounds of the JVM and the ring when `--iterations` is not given.
pub const TREE_ITERATIONS: usize = 7;

/// What one run of the bench measures and how it reports.
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    /// The workloads to run, in the order of [`WorkloadKind::ALL`], without repeats.
    pub workloads: Vec<WorkloadKind>,
    pub sizes_mib: Vec<u64>,
    pub iterations: Option<usize>,
    pub dir: Option<PathBuf>,
    pub stasis: Option<PathBuf>,
    pub skip_stasis: bool,
    pub keep: bool,
    pub json: bool,
    pub help: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            workloads: WorkloadKind::ALL.to_vec(),
            sizes_mib: vec![1, 256, 2048],
            iterations: None,
            dir: None,
            stasis: None,
            skip_stasis: false,
            keep: false,
            json: false,
            help: false,
        }
    }
}

impl Options {
    pub fn parse<I: IntoIterator<Item = String>>(args: I) -> Result<Self> {
        let mut opts = Options::default();
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            let (flag, inline) = match arg.split_once('=') {
                Some((flag, value)) if flag.starts_with("--") => (flag.to_string(), Some(value)),
                _ => (arg.clone(), None),
            };
            let mut value = |name: &str| -> Result<String> {
                match inline {
                    Some(v) => Ok(v.to_string()),
                    None => args.next().with_context(|| format!("{name} needs a value")),
                }
            };
            match flag.as_str() {
                "--workloads" => opts.workloads = parse_workloads(&value("--workloads")?)?,
                "--sizes" => opts.sizes_mib = parse_sizes(&value("--sizes")?)?,
                "--iterations" => {
                    let v = value("--iterations")?;
                    let n: usize = v
                        .parse()
                        .with_context(|| format!("--iterations: {v:?} is not a count"))?;
                    if n == 0 {
                        bail!("--iterations must be at least 1");
                    }
                    opts.iterations = Some(n);
                }
                "--dir" => opts.dir = Some(PathBuf::from(value("--dir")?)),
                "--stasis" => opts.stasis = Some(PathBuf::from(value("--stasis")?)),
                "--skip-stasis" => opts.skip_stasis = true,
                "--keep" => opts.keep = true,
                "--json" => opts.json = true,
                "-h" | "--help" => opts.help = true,
                other => bail!("unknown argument {other:?}\n\n{USAGE}"),
            }
        }
        Ok(opts)
    }

    /// Rounds for a workload of `mib` MiB: fewer for the big ones, whose rounds take seconds.
    pub fn iterations_for(&self, mib: u64) -> usize {
        self.iterations.unwrap_or(if mib >= 1024 { 3 } else { 5 })
    }

    /// Rounds of the JVM and of the ring.
    pub fn tree_iterations(&self) -> usize {
        self.iterations.unwrap_or(TREE_ITERATIONS)
    }

    pub fn runs(&self, kind: WorkloadKind) -> bool {
        self.workloads.contains(&kind)
    }
}

fn parse_workloads(list: &str) -> Result<Vec<WorkloadKind>> {
    let mut picked = Vec::new();
    for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let kind = WorkloadKind::ALL
            .into_iter()
            .find(|k| k.name() == item)
            .with_context(|| {
                format!("--workloads: unknown workload {item:?} (known: memory, jvm, ring)")
            })?;
        picked.push(kind);
    }
    if picked.is_empty() {
        bail!("--workloads: no workload given");
    }
    Ok(WorkloadKind::ALL
        .into_iter()
        .filter(|k| picked.contains(k))
        .collect())
}

fn parse_sizes(list: &str) -> Result<Vec<u64>> {
    let mut sizes = Vec::new();
    for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let mib: u64 = item
            .parse()
            .with_context(|| format!("--sizes: {item:?} is not a size in MiB"))?;
        if mib == 0 || mib > 64 * 1024 {
            bail!("--sizes: {mib} MiB is outside 1..=65536");
        }
        sizes.push(mib);
    }
    if sizes.is_empty() {
        bail!("--sizes: no size given");
    }
    Ok(sizes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Options> {
        Options::parse(args.iter().map(|s| s.to_string()))
    }

    #[test]
    fn no_arguments_bench_the_three_issue_sizes() {
        let opts = parse(&[]).unwrap();
        assert_eq!(opts.sizes_mib, vec![1, 256, 2048]);
        assert_eq!(opts.iterations_for(1), 5);
        assert_eq!(opts.iterations_for(2048), 3);
        assert_eq!(opts.workloads, WorkloadKind::ALL.to_vec());
        assert_eq!(opts.tree_iterations(), TREE_ITERATIONS);
    }

    #[test]
    fn workloads_are_picked_by_name_and_run_in_a_fixed_order() {
        let opts = parse(&["--workloads", "ring,jvm,ring"]).unwrap();
        assert_eq!(opts.workloads, vec![WorkloadKind::Jvm, WorkloadKind::Ring]);
        assert!(!opts.runs(WorkloadKind::Memory));
        let opts = parse(&["--workloads=memory", "--iterations=2"]).unwrap();
        assert_eq!(opts.workloads, vec![WorkloadKind::Memory]);
        assert_eq!(opts.tree_iterations(), 2);
        assert!(parse(&["--workloads", "jvm,postgres"]).is_err());
        assert!(parse(&["--workloads", ","]).is_err());
    }

    #[test]
    fn flags_take_values_separately_or_after_an_equals_sign() {
        let opts = parse(&[
            "--sizes=1,256",
            "--iterations",
            "2",
            "--dir",
            "/tmp/x",
            "--json",
        ])
        .unwrap();
        assert_eq!(opts.sizes_mib, vec![1, 256]);
        assert_eq!(opts.iterations_for(2048), 2);
        assert_eq!(opts.dir, Some(PathBuf::from("/tmp/x")));
        assert!(opts.json);
    }

    #[test]
    fn bad_sizes_and_unknown_flags_are_refused() {
        assert!(parse(&["--sizes", "0"]).is_err());
        assert!(parse(&["--sizes", "1,x"]).is_err());
        assert!(parse(&["--iterations", "0"]).is_err());
        assert!(parse(&["--frobnicate"]).is_err());
        assert!(parse(&["--sizes"]).is_err());
    }
}
