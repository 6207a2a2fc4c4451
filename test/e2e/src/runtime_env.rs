//! What the runtime tests (tests/runtimes.rs, tests/runtimes_criu.rs) need around real
//! container tools: a busybox root filesystem with a counting workload, a runc bundle, an
//! OCI/docker image archive built from the rootfs (no registry), containerd and dockerd
//! daemons started in a private directory and stopped when the test ends, podman with
//! private storage, and a directory holding stasis as `criu` for a runtime's PATH.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::proc::{kill_and_reap, signal, ProcessGuard};
use crate::run::{run, stasis_bin, Output};

/// The workload: counts in /data/counter, five times a second.
pub const COUNTER_LOOP: &str =
    "i=0; while true; do i=$((i+1)); echo $i > /data/counter; sleep 0.2; done";

/// The image name the archive carries.
pub const IMAGE: &str = "localhost/stasis-busybox:latest";

/// Where the release binaries are: beside the stasis binary under test.
pub fn release_dir() -> PathBuf {
    stasis_bin()
        .parent()
        .expect("stasis has a directory")
        .to_path_buf()
}

/// A release binary of this workspace (stasis-runc, containerd-shim-stasis-v2); panics if
/// it was not built.
pub fn release_bin(name: &str) -> PathBuf {
    let p = release_dir().join(name);
    assert!(
        p.is_file(),
        "{} does not exist: build it with `cargo build --release -p {name}`",
        p.display()
    );
    p
}

/// `<dir>/criu-bin`, holding `criu`: a symlink to the stasis under test. First in a
/// runtime's PATH, it is the `criu` runc, podman and containerd's runc shim find.
pub fn stasis_as_criu(dir: &Path) -> PathBuf {
    let bin = dir.join("criu-bin");
    std::fs::create_dir_all(&bin).unwrap();
    let link = bin.join("criu");
    if std::fs::read_link(&link).ok().as_deref() != Some(stasis_bin().as_path()) {
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(stasis_bin(), &link)
            .unwrap_or_else(|e| panic!("symlink {}: {e}", link.display()));
    }
    bin
}

/// `PATH` with `dirs` first.
pub fn path_with(dirs: &[&Path]) -> std::ffi::OsString {
    let mut all: Vec<PathBuf> = dirs.iter().map(|d| d.to_path_buf()).collect();
    all.extend(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_else(|| "/usr/sbin:/usr/bin:/sbin:/bin".into()),
    ));
    std::env::join_paths(all).expect("join PATH")
}

/// Runs `program args` with the default timeout.
pub fn cmd(program: impl AsRef<std::ffi::OsStr>, args: &[&str]) -> Output {
    let mut c = Command::new(program);
    c.args(args);
    run(c, Duration::from_secs(120))
}

/// A runc bundle at `bundle` whose process runs `COUNTER_LOOP` without a terminal.
pub fn runc_bundle(bundle: &Path) {
    runc_bundle_running(bundle, COUNTER_LOOP);
}

/// A runc bundle at `bundle` (busybox root filesystem, `runc spec`) whose process runs
/// the shell `script` without a terminal, on a writable root.
pub fn runc_bundle_running(bundle: &Path, script: &str) {
    crate::container::busybox_rootfs(&bundle.join("rootfs"), &[]);
    let mut spec = Command::new("runc");
    spec.args(["spec", "--bundle"]).arg(bundle);
    run(spec, Duration::from_secs(30)).assert_success();
    let path = bundle.join("config.json");
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    v["process"]["terminal"] = false.into();
    v["process"]["args"] = serde_json::json!(["sh", "-c", script]);
    v["root"]["readonly"] = false.into();
    std::fs::write(&path, serde_json::to_string_pretty(&v).unwrap()).unwrap();
}

/// Reads an integer counter file (None while it is missing or being rewritten).
pub fn read_counter(path: &Path) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Waits until the counter at `path` exceeds `above`; returns the value seen.
pub fn wait_counter_above(path: &Path, above: u64, timeout: Duration) -> u64 {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = read_counter(path) {
            if v > above {
                return v;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the counter at {} did not pass {above} within {timeout:?} (now {:?})",
            path.display(),
            read_counter(path)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// How long a container's counter may take to move.
pub const COUNT_TIMEOUT: Duration = Duration::from_secs(30);

/// After a restore whose checkpoint saw the counter at `path` between `low` and `high`:
/// waits for the first value the restored workload writes (the restored rootfs holds
/// the value at the checkpoint; the next one comes from its memory) and for one more,
/// and asserts that the first goes on from the checkpoint (`what` names the flow).
/// Returns both.
pub fn assert_counts_on(path: &Path, low: u64, high: u64, what: &str) -> (u64, u64) {
    let first = wait_counter_change(path, read_counter(path), COUNT_TIMEOUT);
    assert!(
        first > low && first <= high + 10,
        "{what}: {low}..={high} at the checkpoint, then {first}: not counting on from it"
    );
    (first, wait_counter_above(path, first, COUNT_TIMEOUT))
}

/// Waits until the counter at `path` holds a value other than `from`; returns it. After a
/// restore, the first value the restored workload writes: `from + 1` when its memory came
/// back, a small number when it started over.
pub fn wait_counter_change(path: &Path, from: Option<u64>, timeout: Duration) -> u64 {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = read_counter(path) {
            if Some(v) != from {
                return v;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the counter at {} stayed at {from:?} for {timeout:?}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The manifests in the index of image `name` (`ctr images ls`, then `ctr content get`
/// of its digest), as (media type, digest).
pub fn ctr_image_manifests(ctd: &Containerd, namespace: &str, name: &str) -> Vec<(String, String)> {
    let ls = ctd.ctr(namespace, &["images", "ls"]);
    ls.assert_success();
    let digest = ls
        .stdout
        .lines()
        .find(|l| l.split_whitespace().next() == Some(name))
        .and_then(|l| l.split_whitespace().find(|w| w.starts_with("sha256:")))
        .unwrap_or_else(|| panic!("no image {name}:\n{ls}"))
        .to_string();
    let index = ctd.ctr(namespace, &["content", "get", &digest]);
    index.assert_success();
    let v: serde_json::Value = serde_json::from_str(&index.stdout)
        .unwrap_or_else(|e| panic!("index of {name} is not JSON ({e}):\n{index}"));
    v["manifests"]
        .as_array()
        .map(|m| {
            m.iter()
                .filter_map(|d| {
                    Some((
                        d["mediaType"].as_str()?.to_string(),
                        d["digest"].as_str()?.to_string(),
                    ))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The media types of the manifests in the index of image `name`.
pub fn ctr_image_media_types(ctd: &Containerd, namespace: &str, name: &str) -> Vec<String> {
    ctr_image_manifests(ctd, namespace, name)
        .into_iter()
        .map(|(media_type, _)| media_type)
        .collect()
}

/// The media type of the CRIU image tar in a containerd checkpoint index.
pub const CRIU_TAR_MEDIA_TYPE: &str =
    "application/vnd.containerd.container.criu.checkpoint.criu.tar";

fn sha256(path: &Path) -> String {
    let out = cmd("sha256sum", &[path.to_str().unwrap()]);
    out.assert_success();
    out.stdout.split_whitespace().next().unwrap().to_string()
}

fn blob(dir: &Path, content: &[u8]) -> (String, usize) {
    let tmp = dir.join("blob.tmp");
    std::fs::write(&tmp, content).unwrap();
    let digest = sha256(&tmp);
    std::fs::rename(&tmp, dir.join("blobs/sha256").join(&digest)).unwrap();
    (digest, content.len())
}

/// An image archive of `rootfs` named [`IMAGE`], in both the OCI layout (`index.json`,
/// for `ctr images import`) and docker's (`manifest.json`, for `docker load`).
pub fn image_archive(rootfs: &Path, work: &Path) -> PathBuf {
    let dir = work.join("image");
    std::fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
    let layer_tmp = dir.join("layer.tar");
    cmd(
        "tar",
        &[
            "-C",
            rootfs.to_str().unwrap(),
            "-cf",
            layer_tmp.to_str().unwrap(),
            ".",
        ],
    )
    .assert_success();
    let layer = sha256(&layer_tmp);
    let layer_size = std::fs::metadata(&layer_tmp).unwrap().len();
    std::fs::rename(&layer_tmp, dir.join("blobs/sha256").join(&layer)).unwrap();
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "config": { "Cmd": ["/bin/sh"], "Env": ["PATH=/bin"] },
        "rootfs": { "type": "layers", "diff_ids": [format!("sha256:{layer}")] },
    });
    let (cfg, cfg_size) = blob(&dir, config.to_string().as_bytes());
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": { "mediaType": "application/vnd.oci.image.config.v1+json",
                    "digest": format!("sha256:{cfg}"), "size": cfg_size },
        "layers": [{ "mediaType": "application/vnd.oci.image.layer.v1.tar",
                     "digest": format!("sha256:{layer}"), "size": layer_size }],
    });
    let (man, man_size) = blob(&dir, manifest.to_string().as_bytes());
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{ "mediaType": "application/vnd.oci.image.manifest.v1+json",
                        "digest": format!("sha256:{man}"), "size": man_size,
                        "annotations": { "io.containerd.image.name": IMAGE,
                                         "org.opencontainers.image.ref.name": "latest" } }],
    });
    std::fs::write(dir.join("index.json"), index.to_string()).unwrap();
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let docker = serde_json::json!([{
        "Config": format!("blobs/sha256/{cfg}"),
        "RepoTags": [IMAGE],
        "Layers": [format!("blobs/sha256/{layer}")],
    }]);
    std::fs::write(dir.join("manifest.json"), docker.to_string()).unwrap();
    let archive = work.join("image.tar");
    cmd(
        "tar",
        &[
            "-C",
            dir.to_str().unwrap(),
            "-cf",
            archive.to_str().unwrap(),
            ".",
        ],
    )
    .assert_success();
    archive
}

/// A daemon started for one test and stopped (SIGTERM, then SIGKILL) when dropped.
pub struct Daemon {
    pub name: &'static str,
    pid: i32,
    guard: ProcessGuard,
    pub log: PathBuf,
}

impl Daemon {
    fn spawn(name: &'static str, mut c: Command, log: PathBuf, marker: &str) -> Daemon {
        crate::proc::become_subreaper();
        let out = std::fs::File::create(&log).expect("create daemon log");
        let child = c
            .stdin(std::process::Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        let pid = child.id() as i32;
        drop(child);
        Daemon {
            name,
            pid,
            guard: ProcessGuard::new(pid, marker),
            log,
        }
    }

    fn wait_ready(&self, ready: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !ready() {
            assert!(
                Instant::now() < deadline,
                "{} did not come up; its log:\n{}",
                self.name,
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = signal(self.pid, libc::SIGTERM);
        if crate::proc::wait_gone(self.pid, Duration::from_secs(20)).is_err() {
            let _ = kill_and_reap(self.pid, Duration::from_secs(10));
        }
        self.guard.disarm();
    }
}

/// containerd with its root, state and sockets under `dir`, and this workspace's release
/// directory first in its PATH (where containerd finds `containerd-shim-stasis-v2`), or
/// other directories (shims and the runc they run inherit containerd's PATH).
pub struct Containerd {
    pub dir: PathBuf,
    pub socket: PathBuf,
    _daemon: Daemon,
}

impl Containerd {
    pub fn start(dir: &Path) -> Containerd {
        Containerd::start_with_path_first(dir, &[&release_dir()])
    }

    /// containerd with `first` (instead of the release directory) first in its PATH.
    pub fn start_with_path_first(dir: &Path, first: &[&Path]) -> Containerd {
        std::fs::create_dir_all(dir).unwrap();
        let socket = dir.join("containerd.sock");
        let config = format!(
            "version = 2\nroot = \"{d}/root\"\nstate = \"{d}/state\"\n\
             disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\
             [grpc]\n  address = \"{s}\"\n[ttrpc]\n  address = \"{s}.ttrpc\"\n\
             [debug]\n  address = \"{d}/debug.sock\"\n",
            d = dir.display(),
            s = socket.display()
        );
        std::fs::write(dir.join("config.toml"), config).unwrap();
        let mut c = Command::new("containerd");
        c.arg("--config")
            .arg(dir.join("config.toml"))
            .env("PATH", path_with(first));
        let daemon = Daemon::spawn(
            "containerd",
            c,
            dir.join("containerd.log"),
            &dir.display().to_string(),
        );
        let ctd = Containerd {
            dir: dir.to_path_buf(),
            socket,
            _daemon: daemon,
        };
        ctd._daemon
            .wait_ready(|| ctd.ctr("default", &["version"]).success());
        ctd
    }

    /// `ctr --address SOCK --namespace NS ARGS`.
    pub fn ctr(&self, namespace: &str, args: &[&str]) -> Output {
        let mut c = Command::new("ctr");
        c.arg("--address")
            .arg(&self.socket)
            .args(["--namespace", namespace])
            .args(args);
        run(c, Duration::from_secs(180))
    }

    /// `ctr ... ARGS` for cleanups: its output discarded, killed after `timeout`, never
    /// panicking (a panic in a destructor during a failing test aborts the whole run).
    /// True if it exited 0.
    pub fn ctr_quiet(&self, namespace: &str, args: &[&str], timeout: Duration) -> bool {
        let mut c = Command::new("ctr");
        c.arg("--address")
            .arg(&self.socket)
            .args(["--namespace", namespace])
            .args(args)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        let Ok(mut child) = c.spawn() else {
            return false;
        };
        let deadline = Instant::now() + timeout;
        loop {
            match child.try_wait() {
                Ok(Some(status)) => return status.success(),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return false;
                }
            }
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("containerd.log")).unwrap_or_default()
    }

    /// The file of content `digest` (`sha256:HEX`) in containerd's content store.
    pub fn blob(&self, digest: &str) -> PathBuf {
        let hex = digest
            .strip_prefix("sha256:")
            .unwrap_or_else(|| panic!("{digest}: not a sha256 digest"));
        self.dir
            .join("root/io.containerd.content.v1.content/blobs/sha256")
            .join(hex)
    }
}

/// dockerd (experimental, for `docker checkpoint`) on a given containerd, with the
/// runtime `stasis` = this workspace's stasis-runc, everything under `dir`.
pub struct Dockerd {
    pub dir: PathBuf,
    pub socket: PathBuf,
    _daemon: Daemon,
}

/// Debian's docker CLI (20.10); a newer CLI may shadow it in /usr/local/bin and speak an
/// API version dockerd 20.10 refuses.
pub const DOCKER_CLI: &str = "/usr/bin/docker";

impl Dockerd {
    pub fn start(dir: &Path, containerd: &Containerd) -> Dockerd {
        Dockerd::start_with_path_first(dir, containerd, &[&release_dir()])
    }

    /// dockerd with `first` (instead of the release directory) first in its PATH.
    pub fn start_with_path_first(dir: &Path, containerd: &Containerd, first: &[&Path]) -> Dockerd {
        std::fs::create_dir_all(dir).unwrap();
        let socket = dir.join("docker.sock");
        let mut c = Command::new("dockerd");
        c.arg("--experimental")
            .arg("--data-root")
            .arg(dir.join("data"))
            .arg("--exec-root")
            .arg(dir.join("exec"))
            .arg("--pidfile")
            .arg(dir.join("docker.pid"))
            .arg("-H")
            .arg(format!("unix://{}", socket.display()))
            .arg("--containerd")
            .arg(&containerd.socket)
            .args([
                "--containerd-namespace",
                "moby",
                "--iptables=false",
                "--ip6tables=false",
            ])
            .args([
                "--bridge=none",
                "--ip-masq=false",
                "--storage-driver",
                "overlay2",
            ])
            .args(["--exec-opt", "native.cgroupdriver=cgroupfs"])
            .args(["--default-ulimit", "nofile=1024:1024"])
            .arg("--add-runtime")
            .arg(format!("stasis={}", release_bin("stasis-runc").display()))
            .env("PATH", path_with(first));
        let daemon = Daemon::spawn(
            "dockerd",
            c,
            dir.join("dockerd.log"),
            &dir.display().to_string(),
        );
        let d = Dockerd {
            dir: dir.to_path_buf(),
            socket,
            _daemon: daemon,
        };
        d._daemon.wait_ready(|| d.docker(&["version"]).success());
        d
    }

    pub fn docker(&self, args: &[&str]) -> Output {
        let mut c = Command::new(DOCKER_CLI);
        c.arg("-H")
            .arg(format!("unix://{}", self.socket.display()))
            .args(args);
        run(c, Duration::from_secs(180))
    }
}

/// podman with private storage under `dir`, `stasis-runc` or its default runtime (runc),
/// and stasis as the `criu` in its PATH (the one it probes and runc runs).
pub struct Podman {
    pub dir: PathBuf,
    bin: PathBuf,
    runtime: Option<PathBuf>,
}

impl Podman {
    /// podman running containers with `--runtime stasis-runc`.
    pub fn new(dir: &Path) -> Podman {
        Podman::with_runtime(dir, Some(release_bin("stasis-runc")))
    }

    /// podman with its default runtime: no `--runtime`.
    pub fn with_default_runtime(dir: &Path) -> Podman {
        Podman::with_runtime(dir, None)
    }

    fn with_runtime(dir: &Path, runtime: Option<PathBuf>) -> Podman {
        let bin = stasis_as_criu(dir);
        std::fs::write(
            dir.join("containers.conf"),
            "[containers]\ndefault_ulimits = [\"nofile=1024:1024\", \"nproc=4096:4096\"]\n\
             [engine]\ncgroup_manager = \"cgroupfs\"\nevents_logger = \"file\"\n",
        )
        .unwrap();
        std::fs::write(
            dir.join("storage.conf"),
            format!(
                "[storage]\ndriver = \"overlay\"\nrunroot = \"{d}/run\"\ngraphroot = \"{d}/storage\"\n",
                d = dir.display()
            ),
        )
        .unwrap();
        Podman {
            dir: dir.to_path_buf(),
            bin,
            runtime,
        }
    }

    /// The directory podman keeps container `id`'s runtime files in (runc's bundle, and
    /// the checkpoint's images and logs).
    pub fn userdata(&self, id: &str) -> PathBuf {
        self.dir
            .join("storage/overlay-containers")
            .join(id)
            .join("userdata")
    }

    pub fn podman(&self, args: &[&str]) -> Output {
        let mut c = Command::new("podman");
        c.env("CONTAINERS_CONF", self.dir.join("containers.conf"))
            .env("CONTAINERS_STORAGE_CONF", self.dir.join("storage.conf"))
            .env("PATH", path_with(&[&self.bin]))
            .arg("--root")
            .arg(self.dir.join("storage"))
            .arg("--runroot")
            .arg(self.dir.join("run"))
            .arg("--tmpdir")
            .arg(self.dir.join("tmp"))
            .args(["--cgroup-manager", "cgroupfs", "--events-backend", "file"]);
        if let Some(runtime) = &self.runtime {
            c.arg("--runtime").arg(runtime);
        }
        c.args(args);
        run(c, Duration::from_secs(180))
    }
}

impl Drop for Podman {
    /// Lets go of the mounts podman made under its private storage (its overlay driver
    /// binds `storage/overlay` onto itself and keeps it), deepest first, so that no mount
    /// outlives the test. The tests remove their containers before this runs.
    fn drop(&mut self) {
        // A mount point listed twice is stacked: each line takes one umount.
        let mut below: Vec<String> = crate::container::host_mounts_under(&self.dir)
            .iter()
            .filter_map(|l| l.split(' ').nth(4).map(String::from))
            .filter(|p| Path::new(p).starts_with(&self.dir))
            .collect();
        below.sort_by_key(|p| std::cmp::Reverse(p.len()));
        for p in below {
            let _ = Command::new("umount").args(["-l", &p]).output();
        }
    }
}

/// A container of the real runc (Debian's), driven with stasis as its `criu`.
pub struct Runc {
    root: std::path::PathBuf,
    ids: Vec<String>,
    pipelines: Vec<std::process::Child>,
}

impl Runc {
    pub fn new(dir: &crate::ScratchDir) -> Runc {
        Runc {
            root: dir.subdir("runc-root"),
            ids: Vec::new(),
            pipelines: Vec::new(),
        }
    }

    pub fn cmd(&self, bundle: &Path) -> std::process::Command {
        let mut c = std::process::Command::new("runc");
        c.current_dir(bundle)
            .arg("--root")
            .arg(&self.root)
            .arg("--criu")
            .arg(stasis_bin());
        c
    }

    /// Deletes container `id` (whatever its state) when this is dropped: for one started
    /// with [`Runc::run`] rather than [`Runc::detached`].
    pub fn track(&mut self, id: &str) {
        self.ids.push(id.to_string());
    }

    /// Runs `runc ARGS` in `bundle`; its output, or a panic naming the failure.
    pub fn run(&self, bundle: &Path, args: &[&str]) -> String {
        let out = self
            .cmd(bundle)
            .args(args)
            .stdin(std::process::Stdio::null())
            .output()
            .expect("run runc (apt-get install -y runc)");
        assert!(
            out.status.success(),
            "runc {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `runc run -d ID` (or `restore -d ...`) with the container's stdout and stderr
    /// piped through `cat` into `log`, as a runtime's shim does; returns once runc
    /// reports the container running.
    pub fn detached(&mut self, bundle: &Path, id: &str, verb_args: &[&str], log: &Path) {
        self.ids.push(id.to_string());
        let mut words: Vec<String> = vec![
            "runc".into(),
            "--root".into(),
            self.root.display().to_string(),
            "--criu".into(),
            stasis_bin().display().to_string(),
        ];
        words.extend(verb_args.iter().map(|s| s.to_string()));
        words.push(id.to_string());
        let line = format!(
            "{} </dev/null 2>&1 | cat >> {}",
            words.join(" "),
            log.display()
        );
        // The pipeline lasts as long as the container holds the pipe: not waited for.
        let child = std::process::Command::new("sh")
            .current_dir(bundle)
            .args(["-c", &line])
            .spawn()
            .expect("run sh");
        self.pipelines.push(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let out = self
                .cmd(bundle)
                .args(["state", id])
                .output()
                .expect("runc state");
            if String::from_utf8_lossy(&out.stdout).contains("\"running\"") {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{line}: not running after 20 s; its output: {}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The host PID of running container `id`.
    pub fn pid(&self, bundle: &Path, id: &str) -> i32 {
        let state = self.run(bundle, &["state", id]);
        let v: serde_json::Value = serde_json::from_str(&state).expect("runc state is JSON");
        assert_eq!(v["status"], "running", "runc state {id}: {state}");
        v["pid"].as_i64().expect("pid") as i32
    }
}

impl Drop for Runc {
    fn drop(&mut self) {
        for id in &self.ids {
            let _ = std::process::Command::new("runc")
                .arg("--root")
                .arg(&self.root)
                .args(["delete", "-f", id])
                .output();
        }
        for p in &mut self.pipelines {
            let _ = p.kill();
            let _ = p.wait();
        }
    }
}
