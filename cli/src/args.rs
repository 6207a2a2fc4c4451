//! CRIU's command line: `stasis VERB [OPTIONS]`, with CRIU's short and long option names
//! (`-t/--tree`, `-D/--images-dir`, `-v4`, `--verbosity=4`, ...). Hand-written so that the
//! forms CRIU accepts (attached short values, optional `-v` levels) parse exactly as in
//! CRIU, and anything else is refused by name.

use std::path::PathBuf;

/// The parsed command line.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Args {
    pub verb: String,
    pub tree: Option<i32>,
    pub images_dir: Option<PathBuf>,
    pub work_dir: Option<PathBuf>,
    pub log_file: Option<PathBuf>,
    pub verbosity: u32,
    pub pidfile: Option<PathBuf>,
    pub restore_detached: bool,
    pub leave_running: bool,
    pub shell_job: bool,
    /// `--tcp-established`: checkpoint/restore established TCP connections.
    pub tcp_established: bool,
    /// `--ghost-limit SIZE`: largest deleted-but-open file stored in the image.
    pub ghost_limit: Option<u64>,
    /// `--file-locks`: dump the file locks the tree holds.
    pub file_locks: bool,
    pub timeout: Option<u32>,
    pub restore_sibling: bool,
    pub feature: Option<String>,
    /// `--cpu-cap[=CAPS]`: `Some("")` without a value (CRIU: every check).
    pub cpu_cap: Option<String>,
    /// `--freeze-cgroup PATH`: freeze through this freezer cgroup before seizing.
    pub freeze_cgroup: Option<PathBuf>,
    /// `--manage-cgroups[=MODE]`.
    pub manage_cgroups: Option<stasis_restore::ManageMode>,
    /// `--cgroup-root [CTRL:]PATH`, in order.
    pub cgroup_root: Vec<(Option<String>, PathBuf)>,
    /// `inspect --cpu`: describe the CPU record.
    pub cpu: bool,
    /// `inspect --json`: machine-readable output.
    pub json: bool,
    pub version: bool,
    pub help: bool,
    /// `--root DIR`: the root of a restored mount namespace.
    pub root: Option<PathBuf>,
    /// `--ext-mount-map KEY:VAL` and `--external mnt[KEY]:VAL`, in order.
    pub ext_mounts: Vec<(String, String)>,
    /// `--ext-mount-map auto`: mounts from outside the container are external, keyed by
    /// their mount point.
    pub ext_mount_auto: bool,
    /// `--external veth[IN]:OUT` (and `--veth-pair IN=OUT`): a veth inside the restored
    /// network namespace and its peer's name on the host.
    pub veths: Vec<(String, String)>,
    /// `--empty-ns net`: clone flags of the namespaces restored empty.
    pub empty_ns: i32,
    /// `--external net[INO]:KEY`: network namespaces that are the caller's.
    pub external_netns: Vec<(u64, String)>,
    /// `--join-ns NS:PATH`.
    pub join_ns: Vec<(String, PathBuf)>,
    /// `--inherit-fd fd[N]:KEY`, in order.
    pub inherit_fds: Vec<(String, i32)>,
    /// `--network-lock skip`: do not lock the network of a dumped network namespace.
    pub network_lock_skip: bool,
    /// Positional arguments after the verb (for example `swrk <fd>`).
    pub rest: Vec<String>,
}

/// A command line stasis cannot accept.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ArgError {
    #[error("unknown option {0}")]
    Unknown(String),
    #[error("option {0} needs a value")]
    Missing(String),
    #[error("option {opt}: {value:?} is not a valid {what}")]
    Invalid {
        opt: String,
        value: String,
        what: &'static str,
    },
    #[error("option {0} is CRIU's, but stasis does not support it yet")]
    Unsupported(String),
}

/// Options CRIU has that take a value and that stasis refuses by name, so that a script
/// relying on one of them fails loudly instead of being silently ignored.
const UNSUPPORTED_WITH_VALUE: &[&str] = &[
    "--page-server",
    "--address",
    "--port",
    "--prev-images-dir",
    "--lazy-pages",
    "--action-script",
    "--lsm-profile",
];
const UNSUPPORTED_FLAGS: &[&str] = &[
    "--ext-unix-sk",
    "--link-remap",
    "--evasive-devices",
    "--auto-dedup",
    "--track-mem",
    "--skip-mnt",
    "--tcp-close",
    "--auto-ext-mnt",
];

fn parse_num<T: std::str::FromStr>(opt: &str, v: &str, what: &'static str) -> Result<T, ArgError> {
    v.parse().map_err(|_| ArgError::Invalid {
        opt: opt.to_string(),
        value: v.to_string(),
        what,
    })
}

/// A size as CRIU's `parse_size` reads it: a number with an optional K, M or G suffix.
fn parse_size(opt: &str, v: &str) -> Result<u64, ArgError> {
    let (digits, shift) = match v.char_indices().last() {
        Some((i, 'k' | 'K')) => (&v[..i], 10),
        Some((i, 'm' | 'M')) => (&v[..i], 20),
        Some((i, 'g' | 'G')) => (&v[..i], 30),
        _ => (v, 0),
    };
    let n: u64 = parse_num(opt, digits, "size (a number with an optional K, M or G)")?;
    n.checked_mul(1 << shift).ok_or_else(|| ArgError::Invalid {
        opt: opt.to_string(),
        value: v.to_string(),
        what: "size that fits in 64 bits",
    })
}

/// Parses `argv[1..]`.
pub fn parse<I: IntoIterator<Item = String>>(argv: I) -> Result<Args, ArgError> {
    let mut a = Args::default();
    let mut it = argv.into_iter().peekable();
    while let Some(arg) = it.next() {
        // Split "--name=value" and "-Xvalue".
        let (name, attached): (String, Option<String>) = if let Some(long) = arg.strip_prefix("--")
        {
            match long.split_once('=') {
                Some((n, v)) => (format!("--{n}"), Some(v.to_string())),
                None => (arg.clone(), None),
            }
        } else if arg.starts_with('-') && arg.len() > 2 {
            (arg[..2].to_string(), Some(arg[2..].to_string()))
        } else {
            (arg.clone(), None)
        };
        let value = |it: &mut std::iter::Peekable<I::IntoIter>| -> Result<String, ArgError> {
            match &attached {
                Some(v) => Ok(v.clone()),
                None => it.next().ok_or_else(|| ArgError::Missing(name.clone())),
            }
        };
        match name.as_str() {
            "-t" | "--tree" => a.tree = Some(parse_num(&name, &value(&mut it)?, "pid")?),
            "-D" | "--images-dir" => a.images_dir = Some(value(&mut it)?.into()),
            "-W" | "--work-dir" => a.work_dir = Some(value(&mut it)?.into()),
            "-o" | "--log-file" => a.log_file = Some(value(&mut it)?.into()),
            "--pidfile" => a.pidfile = Some(value(&mut it)?.into()),
            "--timeout" => {
                a.timeout = Some(parse_num(&name, &value(&mut it)?, "number of seconds")?)
            }
            "--feature" => a.feature = Some(value(&mut it)?),
            // CRIU's optional argument: `--cpu-cap=CAPS`, or a separate word that parses
            // as caps; a bare `--cpu-cap` means every check.
            "--cpu-cap" => {
                let v = match &attached {
                    Some(v) => v.clone(),
                    None => it
                        .next_if(|n| !n.is_empty() && stasis_cpu::CpuCap::parse(n).is_ok())
                        .unwrap_or_default(),
                };
                stasis_cpu::CpuCap::parse(&v).map_err(|_| ArgError::Invalid {
                    opt: name.clone(),
                    value: v.clone(),
                    what: "list of fpu, cpu, ins, jvm, all, none",
                })?;
                a.cpu_cap = Some(v);
            }
            "--cpu" => a.cpu = true,
            "--freeze-cgroup" => a.freeze_cgroup = Some(value(&mut it)?.into()),
            "--root" => a.root = Some(value(&mut it)?.into()),
            "--ext-mount-map" => {
                let v = value(&mut it)?;
                if v == "auto" {
                    a.ext_mount_auto = true;
                } else {
                    let (k, val) = v.split_once(':').ok_or_else(|| ArgError::Invalid {
                        opt: name.clone(),
                        value: v.clone(),
                        what: "mount map (KEY:VAL or auto)",
                    })?;
                    a.ext_mounts.push((k.to_string(), val.to_string()));
                }
            }
            "--external" => {
                let v = value(&mut it)?;
                let invalid = || ArgError::Invalid {
                    opt: name.clone(),
                    value: v.clone(),
                    what: "external resource (mnt[KEY]:VAL or veth[IN]:OUT)",
                };
                let (kind, rest) = v.split_once('[').ok_or_else(invalid)?;
                let (key, val) = rest.split_once("]:").ok_or_else(invalid)?;
                match kind {
                    "mnt" => a.ext_mounts.push((key.to_string(), val.to_string())),
                    "veth" => a.veths.push((key.to_string(), val.to_string())),
                    "net" => a
                        .external_netns
                        .push((key.parse().map_err(|_| invalid())?, val.to_string())),
                    _ => return Err(ArgError::Unsupported(format!("--external {kind}[...]"))),
                }
            }
            "--veth-pair" => {
                let v = value(&mut it)?;
                let (i, o) = v.split_once('=').ok_or_else(|| ArgError::Invalid {
                    opt: name.clone(),
                    value: v.clone(),
                    what: "veth pair (IN=OUT)",
                })?;
                a.veths.push((i.to_string(), o.to_string()));
            }
            "--join-ns" => {
                let v = value(&mut it)?;
                let (ns, path) = v.split_once(':').ok_or_else(|| ArgError::Invalid {
                    opt: name.clone(),
                    value: v.clone(),
                    what: "namespace to join (NS:PATH)",
                })?;
                a.join_ns.push((ns.to_string(), path.into()));
            }
            "--inherit-fd" => {
                let v = value(&mut it)?;
                let parsed = v
                    .strip_prefix("fd[")
                    .and_then(|r| r.split_once("]:"))
                    .and_then(|(n, k)| Some((k.to_string(), n.parse::<i32>().ok()?)));
                match parsed {
                    Some((k, n)) if n >= 0 && !k.is_empty() => a.inherit_fds.push((k, n)),
                    _ => {
                        return Err(ArgError::Invalid {
                            opt: name.clone(),
                            value: v,
                            what: "inherited descriptor (fd[N]:KEY)",
                        })
                    }
                }
            }
            "--network-lock" => match value(&mut it)?.as_str() {
                "nftables" => a.network_lock_skip = false,
                "skip" => a.network_lock_skip = true,
                v => {
                    return Err(ArgError::Invalid {
                        opt: name.clone(),
                        value: v.to_string(),
                        what: "network lock method (nftables or skip; iptables is not supported)",
                    })
                }
            },
            "--empty-ns" => {
                let v = value(&mut it)?;
                if v != "net" {
                    return Err(ArgError::Invalid {
                        opt: name.clone(),
                        value: v,
                        what: "namespace (only net can be restored empty)",
                    });
                }
                a.empty_ns |= libc::CLONE_NEWNET;
            }
            // CRIU's optional argument: `--manage-cgroups=MODE`, or a separate word that
            // is a mode; alone it means soft.
            "--manage-cgroups" => {
                let v = match &attached {
                    Some(v) => v.clone(),
                    None => it
                        .next_if(|n| !n.is_empty() && stasis_restore::ManageMode::parse(n).is_ok())
                        .unwrap_or_default(),
                };
                let mode =
                    stasis_restore::ManageMode::parse(&v).map_err(|_| ArgError::Invalid {
                        opt: name.clone(),
                        value: v.clone(),
                        what: "cgroup mode (none, ignore, props, soft, full, strict)",
                    })?;
                a.manage_cgroups = Some(mode);
            }
            "--cgroup-root" => {
                let v = value(&mut it)?;
                let root =
                    stasis_restore::parse_cgroup_root(&v).map_err(|_| ArgError::Invalid {
                        opt: name.clone(),
                        value: v.clone(),
                        what: "cgroup root ([CONTROLLER:]/PATH)",
                    })?;
                a.cgroup_root.push(root);
            }
            "--json" => a.json = true,
            "-v" => {
                a.verbosity = match &attached {
                    // "-vvv" counts the v's; "-v4" is a level.
                    Some(v) if v.chars().all(|c| c == 'v') => 2 + 1 + v.len() as u32,
                    Some(v) => parse_num(&name, v, "verbosity level")?,
                    None => a.verbosity.max(2) + 1,
                }
            }
            "--verbosity" => {
                a.verbosity = match &attached {
                    Some(v) => parse_num(&name, v, "verbosity level")?,
                    None => a.verbosity.max(2) + 1,
                }
            }
            "-d" | "--restore-detached" => a.restore_detached = true,
            "-R" | "--leave-running" => a.leave_running = true,
            "-j" | "--shell-job" => a.shell_job = true,
            "--tcp-established" => a.tcp_established = true,
            "--file-locks" => a.file_locks = true,
            "--ghost-limit" => a.ghost_limit = Some(parse_size(&name, &value(&mut it)?)?),
            "--restore-sibling" => a.restore_sibling = true,
            "-V" | "--version" => a.version = true,
            "-h" | "--help" => a.help = true,
            n if UNSUPPORTED_WITH_VALUE.contains(&n) || UNSUPPORTED_FLAGS.contains(&n) => {
                return Err(ArgError::Unsupported(n.to_string()))
            }
            n if n.starts_with('-') && n.len() > 1 => return Err(ArgError::Unknown(arg.clone())),
            _ if a.verb.is_empty() => a.verb = arg.clone(),
            _ => a.rest.push(arg.clone()),
        }
    }
    Ok(a)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<Args, ArgError> {
        parse(s.split_whitespace().map(String::from))
    }

    #[test]
    fn ghost_limit_takes_criu_size_suffixes_and_file_locks_is_a_flag() {
        assert_eq!(p("dump --ghost-limit 4K").unwrap().ghost_limit, Some(4096));
        assert_eq!(
            p("dump --ghost-limit=2M").unwrap().ghost_limit,
            Some(2 << 20)
        );
        assert_eq!(
            p("dump --ghost-limit 1g").unwrap().ghost_limit,
            Some(1 << 30)
        );
        assert_eq!(p("dump --ghost-limit 512").unwrap().ghost_limit, Some(512));
        assert!(p("dump --ghost-limit 4X").is_err());
        assert!(p("dump --file-locks").unwrap().file_locks);
    }

    #[test]
    fn criu_style_dump_command_lines_parse() {
        let a = p("dump -t 42 -D /tmp/img -o dump.log -v4 --leave-running -j").unwrap();
        assert_eq!(a.verb, "dump");
        assert_eq!(a.tree, Some(42));
        assert_eq!(
            a.images_dir.as_deref(),
            Some(std::path::Path::new("/tmp/img"))
        );
        assert_eq!(
            a.log_file.as_deref(),
            Some(std::path::Path::new("dump.log"))
        );
        assert_eq!(a.verbosity, 4);
        assert!(a.leave_running && a.shell_job);
        let b = p("--tree=7 --images-dir=/x --verbosity=1 dump").unwrap();
        assert_eq!((b.tree, b.verbosity, b.verb.as_str()), (Some(7), 1, "dump"));
        assert_eq!(
            p("restore -D/x -d --pidfile p").unwrap().pidfile.as_deref(),
            Some(std::path::Path::new("p"))
        );
    }

    #[test]
    fn cpu_cap_takes_criu_values_attached_or_as_the_next_word() {
        assert_eq!(
            p("restore --cpu-cap=fpu,jvm").unwrap().cpu_cap.as_deref(),
            Some("fpu,jvm")
        );
        let a = p("restore --cpu-cap ^jvm -D /x").unwrap();
        assert_eq!(a.cpu_cap.as_deref(), Some("^jvm"));
        assert_eq!(a.images_dir.as_deref(), Some(std::path::Path::new("/x")));
        // Bare: every check; the next word is a verb, not caps.
        let b = p("--cpu-cap cpuinfo check").unwrap();
        assert_eq!(
            (b.cpu_cap.as_deref(), b.verb.as_str()),
            (Some(""), "cpuinfo")
        );
        assert!(matches!(
            p("restore --cpu-cap=avx").unwrap_err(),
            ArgError::Invalid { .. }
        ));
        let i = p("inspect /img --cpu --json").unwrap();
        assert!(i.cpu && i.json);
        assert_eq!(i.rest, ["/img"]);
    }

    #[test]
    fn cgroup_options_take_criu_s_forms() {
        use stasis_restore::ManageMode;
        let a = p("dump -t 1 --freeze-cgroup /sys/fs/cgroup/freezer/ct").unwrap();
        assert_eq!(
            a.freeze_cgroup.as_deref(),
            Some(std::path::Path::new("/sys/fs/cgroup/freezer/ct"))
        );
        assert_eq!(
            p("restore --manage-cgroups").unwrap().manage_cgroups,
            Some(ManageMode::Soft)
        );
        assert_eq!(
            p("restore --manage-cgroups=strict").unwrap().manage_cgroups,
            Some(ManageMode::Strict)
        );
        let b = p("restore --manage-cgroups full -D /x").unwrap();
        assert_eq!(b.manage_cgroups, Some(ManageMode::Full));
        assert_eq!(b.images_dir.as_deref(), Some(std::path::Path::new("/x")));
        // A word that is not a mode is not taken as one.
        let c = p("--manage-cgroups restore").unwrap();
        assert_eq!(
            (c.manage_cgroups, c.verb.as_str()),
            (Some(ManageMode::Soft), "restore")
        );
        assert!(matches!(
            p("restore --manage-cgroups=hard").unwrap_err(),
            ArgError::Invalid { .. }
        ));
        let r = p("restore --cgroup-root /new --cgroup-root cpu,cpuacct:/c --cgroup-root :/v2")
            .unwrap();
        assert_eq!(
            r.cgroup_root,
            [
                (None, "/new".into()),
                (Some("cpu,cpuacct".into()), "/c".into()),
                (Some(String::new()), "/v2".into())
            ]
        );
        assert!(matches!(
            p("restore --cgroup-root relative").unwrap_err(),
            ArgError::Invalid { .. }
        ));
    }

    #[test]
    fn bad_options_are_refused_by_name() {
        assert_eq!(
            p("dump --frobnicate").unwrap_err(),
            ArgError::Unknown("--frobnicate".into())
        );
        assert_eq!(p("dump -t").unwrap_err(), ArgError::Missing("-t".into()));
        assert!(matches!(
            p("dump -t abc").unwrap_err(),
            ArgError::Invalid { .. }
        ));
        assert_eq!(
            p("dump --tcp-close").unwrap_err(),
            ArgError::Unsupported("--tcp-close".into())
        );
        assert!(p("dump -t 1 --tcp-established").unwrap().tcp_established);
    }
}
