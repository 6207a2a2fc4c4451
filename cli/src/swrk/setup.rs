//! From a request's `criu_opts` (and CRIU's configuration files) to what stasis will do:
//! the images and work directories, the log, the fds that belong to the client, and the
//! options handed to the engine. Fields are resolved as CRIU's `setup_opts_from_req()`
//! resolves them:
//!
//! * `images_dir_fd`, `work_dir_fd` and `status_fd` are numbers in the **client's** fd
//!   table: stasis opens `/proc/<client>/fd/N`, the client being the `SO_PEERCRED` peer
//!   of the socket (for a socketpair, the process that created it).
//! * `pidfd_store_sk` is taken from the client with `pidfd_getfd`.
//! * the log goes to `log_file` in the work dir (no `/` allowed), `criu.log` by default;
//!   the work dir is `work_dir_fd`, else the images dir, and becomes stasis's cwd.

use super::config::{self, FileSettings};
use super::conn::Conn;
use super::error::RpcError;
use super::fields;
use super::log as swlog;
use stasis_images::pb::rpc::CriuOpts;
use std::fs::File;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// CRIU's default log file name.
pub const DEFAULT_LOG: &str = "criu.log";
/// CRIU's default task-freezing timeout, in seconds.
pub const DEFAULT_TIMEOUT: u32 = 10;

/// A directory the request names, held open for as long as the request runs.
#[derive(Debug)]
pub struct ClientDir {
    /// A path that reaches it: its real path when that names the same directory, else
    /// `/proc/self/fd/N` of the descriptor held here.
    pub path: PathBuf,
    _fd: Option<OwnedFd>,
}

/// What a request is resolved for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose {
    /// FEATURE_CHECK, CHECK: the directories and the log only, as CRIU sets them up for
    /// these too; the other fields do not matter.
    Query,
    /// DUMP, PRE_DUMP, RESTORE: every field is checked against `fields::FIELDS`.
    Operation,
}

/// A request's options, resolved.
#[derive(Debug)]
pub struct Setup {
    pub images: ClientDir,
    pub work: ClientDir,
    pub pid: Option<i32>,
    pub leave_running: bool,
    pub shell_job: bool,
    /// `orphan_pts_master`: a container's console pty (master outside the tree) may be
    /// dumped, and its new master is sent with the `orphan-pts-master` notification.
    pub orphan_pts_master: bool,
    pub tcp_established: bool,
    pub rst_sibling: bool,
    pub notify: bool,
    pub timeout: Duration,
    pub display_stats: bool,
    pub exec_cmd: Vec<String>,
    /// `freeze_cgroup`: the freezer cgroup to freeze the tasks with at dump.
    pub freeze_cgroup: Option<PathBuf>,
    /// `manage_cgroups_mode` (or the legacy `manage_cgroups`): soft unless asked.
    pub manage_cgroups: stasis_restore::ManageMode,
    /// `cg_root`: per-hierarchy (or, without `ctrl`, global) new cgroup roots.
    pub cgroup_root: Vec<(Option<String>, PathBuf)>,
    /// `root`: the root of a restored mount namespace.
    pub root: Option<PathBuf>,
    /// `ext_mnt` and `external` `mnt[KEY]:VAL`: external mounts, in order.
    pub ext_mounts: Vec<(String, String)>,
    /// `auto_ext_mnt`: mounts from outside the container are external by host path.
    pub ext_mounts_auto: bool,
    /// `veths` and `external` `veth[IN]:OUT`.
    pub veths: Vec<(String, String)>,
    /// `empty_ns`: only `CLONE_NEWNET` can be asked for.
    pub empty_ns: i32,
    /// `network_lock`: nftables unless SKIP (iptables is refused).
    pub network_lock: bool,
    /// `external` `net[INO]:KEY`.
    pub external_netns: Vec<(u64, String)>,
    /// `join_ns`: namespaces joined by path at restore.
    pub join_ns: Vec<(String, PathBuf)>,
    /// `cpu_cap`, as the CLI's `--cpu-cap` value; `None` when not set.
    pub cpu_cap: Option<String>,
    /// `file_locks`: dump the file locks the tree holds.
    pub file_locks: bool,
    /// `inherit_fd`: key → stasis's own descriptor number.
    pub inherit_fds: Vec<(String, i32)>,
    /// The log file, for `exec_cmd`'s stdout and stderr.
    pub log: Option<File>,
    _status: Option<OwnedFd>,
    _pidfd_store: Option<OwnedFd>,
}

/// Resolves `opts`: directories, then the log (so every later refusal is logged), then
/// the fields stasis cannot honour, then the client's other fds.
pub fn prepare(conn: &Conn, opts: &CriuOpts, purpose: Purpose) -> Result<Setup, RpcError> {
    let mut global = FileSettings::default();
    for f in config::global_files() {
        if let Some(s) = config::read(&f)? {
            global = global.then(s);
        }
    }
    let rpc_file = match &opts.config_file {
        Some(p) => config::read(Path::new(p))?.unwrap_or_default(),
        None => FileSettings::default(),
    };

    let images = match (&rpc_file.images_dir, opts.images_dir_fd, &opts.images_dir) {
        (Some(p), _, _) => ClientDir::at(p),
        (None, fd, _) if fd >= 0 => client_dir(conn, "images_dir_fd", fd)?,
        (None, _, Some(p)) => ClientDir::at(Path::new(p)),
        (None, _, None) => match &global.images_dir {
            Some(p) => ClientDir::at(p),
            None => {
                return Err(RpcError::BadRequest(
                    "neither images_dir_fd nor images_dir names the images directory".into(),
                ))
            }
        },
    };
    let work = match (&rpc_file.work_dir, opts.work_dir_fd, &global.work_dir) {
        (Some(p), _, _) => ClientDir::at(p),
        (None, Some(fd), _) => client_dir(conn, "work_dir_fd", fd)?,
        (None, None, Some(p)) => ClientDir::at(p),
        (None, None, None) => ClientDir::at(&images.path),
    };
    std::env::set_current_dir(&work.path).map_err(|source| RpcError::Dir {
        path: format!("work dir {}", work.path.display()),
        source,
    })?;

    if let Some(log) = opts.log_file.as_deref().filter(|l| l.contains('/')) {
        return Err(RpcError::BadRequest(format!(
            "log_file {log:?}: no subdirectories are allowed in its name"
        )));
    }
    let level = rpc_file
        .log_level
        .or(opts.log_level.map(|l| l.max(0) as u32))
        .or(global.log_level)
        .unwrap_or(2);
    let log = open_log(opts, &rpc_file, &global, &work.path, level)?;
    log::info!(
        "stasis {} serving {} for client pid {}; images {}, work dir {}",
        env!("CARGO_PKG_VERSION"),
        purpose_name(purpose),
        conn.peer().map_or("?".to_string(), |p| p.to_string()),
        images.path.display(),
        work.path.display()
    );
    for f in fields::asked(opts) {
        log::debug!("criu_opts.{} ({}): {:?}", f.name, f.number, f.support);
    }

    if purpose == Purpose::Operation {
        fields::check(opts)?;
    }
    let status = match opts.status_fd {
        Some(fd) if purpose == Purpose::Operation => Some(client_fd(conn, "status_fd", fd)?),
        _ => None,
    };
    let pidfd_store = match opts.pidfd_store_sk {
        Some(fd) if purpose == Purpose::Operation => Some(pidfd_store(conn, fd)?),
        _ => None,
    };

    let Externals {
        mounts: ext_mounts,
        veths,
        netns: external_netns,
    } = externals(opts)?;
    let empty_ns = opts.empty_ns.unwrap_or(0) as i32;
    if empty_ns & !libc::CLONE_NEWNET != 0 {
        return Err(RpcError::BadRequest(format!(
            "empty_ns {empty_ns:#x}: only the network namespace (CLONE_NEWNET) can be restored empty"
        )));
    }
    // IPTABLES (the proto default) is taken as "lock it": stasis locks with nftables.
    let network_lock = opts.network_lock != Some(pb_lock::Skip as i32);
    Ok(Setup {
        images,
        work,
        pid: rpc_file.pid.or(opts.pid).or(global.pid),
        leave_running: opts.leave_running == Some(true)
            || rpc_file.leave_running
            || global.leave_running,
        shell_job: opts.shell_job == Some(true) || rpc_file.shell_job || global.shell_job,
        orphan_pts_master: opts.orphan_pts_master == Some(true),
        tcp_established: opts.tcp_established == Some(true)
            || rpc_file.tcp_established
            || global.tcp_established,
        rst_sibling: opts.rst_sibling == Some(true),
        notify: opts.notify_scripts == Some(true),
        timeout: Duration::from_secs(u64::from(
            rpc_file
                .timeout
                .or(opts.timeout)
                .or(global.timeout)
                .unwrap_or(DEFAULT_TIMEOUT),
        )),
        display_stats: opts.display_stats == Some(true),
        exec_cmd: opts.exec_cmd.clone(),
        freeze_cgroup: rpc_file
            .freeze_cgroup
            .or(opts.freeze_cgroup.as_ref().map(PathBuf::from))
            .or(global.freeze_cgroup),
        manage_cgroups: match (
            rpc_file.manage_cgroups,
            opts.manage_cgroups,
            opts.manage_cgroups_mode,
        ) {
            (Some(m), _, _) => m,
            (None, None, None) => global.manage_cgroups.unwrap_or_default(),
            (None, legacy, mode) => stasis_restore::ManageMode::from_rpc(legacy, mode)
                .map_err(|e| RpcError::BadRequest(e.to_string()))?,
        },
        cgroup_root: if !rpc_file.cgroup_root.is_empty() {
            rpc_file.cgroup_root
        } else if !opts.cg_root.is_empty() {
            opts.cg_root
                .iter()
                .map(|r| (r.ctrl.clone(), PathBuf::from(&r.path)))
                .collect()
        } else {
            global.cgroup_root
        },
        root: opts.root.as_ref().map(PathBuf::from),
        ext_mounts,
        ext_mounts_auto: opts.auto_ext_mnt == Some(true),
        veths,
        empty_ns,
        network_lock,
        file_locks: opts.file_locks == Some(true),
        cpu_cap: opts.cpu_cap.and_then(cpu_cap),
        external_netns,
        join_ns: opts
            .join_ns
            .iter()
            .map(|j| (j.ns.clone(), PathBuf::from(&j.ns_file)))
            .collect(),
        inherit_fds: opts
            .inherit_fd
            .iter()
            .map(|i| (i.key.clone(), i.fd))
            .collect(),
        log,
        _status: status,
        _pidfd_store: pidfd_store,
    })
}

use stasis_images::pb::rpc::CriuNetworkLockMethod as pb_lock;

/// CRIU's `cpu_cap` bits (FPU 1, CPU 2, INS 4, and Dragonwell's JVM 16; IMAGE 8 only
/// asks the dump for `cpuinfo.img`, which stasis always writes) as a `--cpu-cap`
/// value. All ones is the proto's "not set": the image's default (fpu, plus jvm for an
/// image with a JVM).
fn cpu_cap(bits: u32) -> Option<String> {
    if bits == u32::MAX {
        return None;
    }
    let caps: Vec<&str> = [(1, "fpu"), (2, "cpu"), (4, "ins"), (16, "jvm")]
        .iter()
        .filter(|(b, _)| bits & b != 0)
        .map(|(_, n)| *n)
        .collect();
    if caps.is_empty() {
        return Some("none".into());
    }
    Some(caps.join(","))
}

#[cfg(test)]
mod cpu_cap_tests {
    #[test]
    fn criu_s_bits_map_onto_cpu_cap_values() {
        assert_eq!(super::cpu_cap(u32::MAX), None);
        assert_eq!(super::cpu_cap(0).as_deref(), Some("none"));
        assert_eq!(super::cpu_cap(1).as_deref(), Some("fpu"));
        assert_eq!(
            super::cpu_cap(1 | 4 | 8 | 16).as_deref(),
            Some("fpu,ins,jvm")
        );
        assert_eq!(super::cpu_cap(8).as_deref(), Some("none"));
        for v in [super::cpu_cap(23), super::cpu_cap(0)] {
            stasis_cpu::CpuCap::parse(&v.unwrap()).expect("a value --cpu-cap takes");
        }
    }
}

/// The external mounts and veths of `ext_mnt`, `veths` and `external` (`mnt[KEY]:VAL`,
/// `veth[IN]:OUT`); any other external resource is refused by name.
/// Key → value pairs (external mounts, veths).
type Pairs = Vec<(String, String)>;

/// What `ext_mnt`, `veths` and `external` declare.
#[derive(Debug, Default)]
pub(crate) struct Externals {
    pub mounts: Pairs,
    pub veths: Pairs,
    /// `net[INO]:KEY`.
    pub netns: Vec<(u64, String)>,
}

pub(crate) fn externals(opts: &CriuOpts) -> Result<Externals, RpcError> {
    let mut mounts: Pairs = opts
        .ext_mnt
        .iter()
        .map(|m| (m.key.clone(), m.val.clone()))
        .collect();
    let mut netns = Vec::new();
    let mut veths: Pairs = opts
        .veths
        .iter()
        .map(|v| (v.if_in.clone(), v.if_out.clone()))
        .collect();
    for e in &opts.external {
        let parsed = e
            .split_once('[')
            .and_then(|(kind, rest)| rest.split_once("]:").map(|(k, v)| (kind, k, v)));
        match parsed {
            Some(("mnt", k, v)) => mounts.push((k.to_string(), v.to_string())),
            Some(("veth", k, v)) => veths.push((k.to_string(), v.to_string())),
            Some(("net", k, v)) if k.parse::<u64>().is_ok() => {
                netns.push((k.parse().unwrap_or_default(), v.to_string()))
            }
            _ => {
                return Err(RpcError::BadRequest(format!(
                    "external {e:?}: stasis supports external mnt[KEY]:VAL, veth[IN]:OUT and net[INODE]:KEY so far"
                )))
            }
        }
    }
    Ok(Externals {
        mounts,
        veths,
        netns,
    })
}

fn purpose_name(p: Purpose) -> &'static str {
    match p {
        Purpose::Query => "a query",
        Purpose::Operation => "an operation",
    }
}

/// Opens the log where CRIU would: the RPC config file's `log-file`, else `log_file`,
/// else stderr with `log_to_stderr`, else a global config file's, else `criu.log`.
fn open_log(
    opts: &CriuOpts,
    rpc_file: &FileSettings,
    global: &FileSettings,
    work: &Path,
    level: u32,
) -> Result<Option<File>, RpcError> {
    let path = if let Some(p) = &rpc_file.log_file {
        work.join(p)
    } else if let Some(name) = &opts.log_file {
        work.join(name)
    } else if opts.log_to_stderr == Some(true) {
        swlog::to_stderr(level);
        return Ok(None);
    } else if let Some(p) = &global.log_file {
        work.join(p)
    } else {
        work.join(DEFAULT_LOG)
    };
    swlog::to_file(&path, level)
        .map(Some)
        .map_err(|source| RpcError::Log {
            path: path.display().to_string(),
            source,
        })
}

impl ClientDir {
    /// A directory given by path.
    fn at(p: &Path) -> ClientDir {
        ClientDir {
            path: p.to_path_buf(),
            _fd: None,
        }
    }
}

fn proc_fd(conn: &Conn, field: &'static str, fd: i32) -> Result<String, RpcError> {
    match conn.peer() {
        Some(peer) => Ok(format!("/proc/{peer}/fd/{fd}")),
        None => Err(RpcError::ClientFd {
            field,
            fd,
            why: "the client's pid is not visible in stasis's pid namespace".into(),
        }),
    }
}

fn fd_error(conn: &Conn, field: &'static str, fd: i32, e: &std::io::Error) -> RpcError {
    let peer = conn.peer().unwrap_or(0);
    let why = match e.raw_os_error() {
        Some(libc::ENOENT) => format!("the client (pid {peer}) has no open fd {fd}"),
        Some(libc::ENOTDIR) => format!("fd {fd} of the client (pid {peer}) is not a directory"),
        _ => format!("/proc/{peer}/fd/{fd}: {e}"),
    };
    RpcError::ClientFd { field, fd, why }
}

/// Opens the directory the client holds as `fd`.
fn client_dir(conn: &Conn, field: &'static str, fd: i32) -> Result<ClientDir, RpcError> {
    let link = proc_fd(conn, field, fd)?;
    let dir = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_DIRECTORY)
        .open(&link)
        .map_err(|e| fd_error(conn, field, fd, &e))?;
    let meta = dir.metadata().map_err(|e| fd_error(conn, field, fd, &e))?;
    let same = |p: &Path| {
        std::fs::metadata(p).is_ok_and(|m| m.dev() == meta.dev() && m.ino() == meta.ino())
    };
    let path = match std::fs::read_link(&link) {
        Ok(target) if target.is_absolute() && same(&target) => target,
        _ => PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd())),
    };
    log::debug!("{field} {fd} of the client is {}", path.display());
    Ok(ClientDir {
        path,
        _fd: Some(dir.into()),
    })
}

/// Opens the client's `fd` for writing (`status_fd`).
fn client_fd(conn: &Conn, field: &'static str, fd: i32) -> Result<OwnedFd, RpcError> {
    let link = proc_fd(conn, field, fd)?;
    std::fs::OpenOptions::new()
        .write(true)
        .open(&link)
        .map(OwnedFd::from)
        .map_err(|e| fd_error(conn, field, fd, &e))
}

/// Takes the client's pidfd store socket (`pidfd_store_sk`), as CRIU does, and checks it
/// is a datagram socket. It serves pid-reuse detection between pre-dump iterations; stasis
/// has no iterations (pre-dump is refused), so nothing is stored in it.
fn pidfd_store(conn: &Conn, fd: i32) -> Result<OwnedFd, RpcError> {
    let field = "pidfd_store_sk";
    let err = |why: String| RpcError::ClientFd { field, fd, why };
    let peer = conn
        .peer()
        .and_then(rustix::process::Pid::from_raw)
        .ok_or_else(|| err("the client's pid is not visible in stasis's pid namespace".into()))?;
    let pidfd = rustix::process::pidfd_open(peer, rustix::process::PidfdFlags::empty())
        .map_err(|e| err(format!("pidfd_open of the client: {e}")))?;
    let sock = rustix::process::pidfd_getfd(&pidfd, fd, rustix::process::PidfdGetfdFlags::empty())
        .map_err(|e| err(format!("pidfd_getfd: {e}")))?;
    match rustix::net::sockopt::socket_type(&sock) {
        Ok(rustix::net::SocketType::DGRAM) => Ok(sock),
        Ok(t) => Err(err(format!(
            "a {t:?} socket; a SOCK_DGRAM socket is needed"
        ))),
        Err(e) => Err(err(format!("not a socket: {e}"))),
    }
}
