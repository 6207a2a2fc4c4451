//! stasis as the runtimes use it: `stasis-runc` in place of runc (directly, under podman
//! and under docker) and `containerd-shim-stasis-v2` under containerd. Real runc,
//! containerd, podman and dockerd from Debian's packages (scripts/setup.sh installs
//! them); the daemons are started by each test in its own directory and stopped after.
//!
//! Checkpoint/restore flows prove that a container's counter continues after the restore:
//! the first value the restored workload writes is the next one after the checkpoint (a
//! workload started over would write 1). podman and docker run their default seccomp
//! profile, and the restored process is checked to be filtered again.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use stasis_e2e::run::run;
use stasis_e2e::runtime_env::{
    assert_counts_on, ctr_image_media_types, image_archive, read_counter, release_bin, runc_bundle,
    wait_counter_above, wait_counter_change, Containerd, Dockerd, Podman, COUNTER_LOOP,
    COUNT_TIMEOUT, CRIU_TAR_MEDIA_TYPE, IMAGE,
};

/// A busybox root filesystem (no workload programs of ours).
fn busybox_rootfs(root: &std::path::Path) {
    stasis_e2e::container::busybox_rootfs(root, &[]);
}
use stasis_e2e::{Output, ScratchDir};

/// `stasis-runc --root ROOT ARGS` in `bundle`.
fn stasis_runc(root: &Path, bundle: &Path, args: &[&str]) -> Output {
    let mut c = Command::new(release_bin("stasis-runc"));
    c.current_dir(bundle).arg("--root").arg(root).args(args);
    run(c, Duration::from_secs(120))
}

/// Removes a runc container whatever state it is in, when the test ends.
struct RuncContainer {
    root: PathBuf,
    id: String,
}

impl Drop for RuncContainer {
    fn drop(&mut self) {
        let mut c = Command::new("runc");
        c.arg("--root")
            .arg(&self.root)
            .args(["delete", "--force", &self.id]);
        let _ = run(c, Duration::from_secs(30));
    }
}

fn runc_state(root: &Path, bundle: &Path, id: &str) -> serde_json::Value {
    let out = stasis_runc(root, bundle, &["state", id]);
    out.assert_success();
    serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("state is not JSON ({e}):\n{out}"))
}

#[test]
fn stasis_runc_hands_run_state_kill_and_delete_to_the_real_runc() {
    let dir = ScratchDir::new("rt-passthrough");
    let bundle = dir.join("bundle");
    runc_bundle(&bundle);
    let root = dir.subdir("runc-root");
    let _cleanup = RuncContainer {
        root: root.clone(),
        id: "pt1".into(),
    };

    stasis_runc(&root, &bundle, &["run", "--detach", "pt1"]).assert_success();
    let state = runc_state(&root, &bundle, "pt1");
    assert_eq!(state["status"], "running", "{state}");
    assert_eq!(state["id"], "pt1");
    wait_counter_above(&bundle.join("rootfs/data/counter"), 2, COUNT_TIMEOUT);

    // runc's own list sees the container stasis-runc started.
    let mut list = Command::new("runc");
    list.arg("--root").arg(&root).args(["list", "--quiet"]);
    assert!(run(list, Duration::from_secs(30))
        .stdout
        .lines()
        .any(|l| l == "pt1"));

    stasis_runc(&root, &bundle, &["kill", "pt1", "KILL"]).assert_success();
    let stopped = (0..100).any(|_| {
        std::thread::sleep(Duration::from_millis(100));
        runc_state(&root, &bundle, "pt1")["status"] == "stopped"
    });
    assert!(stopped, "the container did not stop after kill");
    stasis_runc(&root, &bundle, &["delete", "pt1"]).assert_success();
    // runc's exit code and message for a container that is gone, unchanged.
    let gone = stasis_runc(&root, &bundle, &["state", "pt1"]);
    assert_eq!(gone.status.code(), Some(1), "{gone}");
    assert!(gone.stderr.contains("does not exist"), "{gone}");
}

#[test]
fn podmans_checkpoint_probes_pass() {
    let dir = ScratchDir::new("rt-probes");
    // CRRuntimeSupportsCheckpointRestore: `<runtime> checkpoint --help` exits 0.
    let help = stasis_runc(dir.path(), dir.path(), &["checkpoint", "--help"]);
    help.assert_success();
    for flag in [
        "--image-path",
        "--work-path",
        "--leave-running",
        "--tcp-established",
        "--file-locks",
        "--pre-dump",
    ] {
        assert!(help.stdout.contains(flag), "{flag} missing from:\n{help}");
    }
    // CRRuntimeSupportsPodCheckpointRestore: "flag needs an argument" in the combined output.
    let lsm = stasis_runc(dir.path(), dir.path(), &["restore", "--lsm-mount-context"]);
    assert!(
        format!("{}{}", lsm.stdout, lsm.stderr).contains("flag needs an argument"),
        "{lsm}"
    );
    assert_ne!(lsm.status.code(), Some(0));
}

#[test]
fn containerd_runs_lists_kills_and_deletes_a_task_through_the_stasis_shim() {
    let dir = ScratchDir::new("rt-shim");
    let ctd = Containerd::start(&dir.join("containerd"));
    let rootfs = dir.join("rootfs");
    busybox_rootfs(&rootfs);
    let archive = image_archive(&rootfs, dir.path());
    let ns = "stasis-e2e";
    ctd.ctr(ns, &["images", "import", archive.to_str().unwrap()])
        .assert_success();

    let run_out = ctd.ctr(
        ns,
        &[
            "run",
            "-d",
            "--runtime",
            "io.containerd.stasis.v2",
            IMAGE,
            "sh1",
            "sh",
            "-c",
            COUNTER_LOOP,
        ],
    );
    let cleanup = CtrCleanup {
        ctd: &ctd,
        ns,
        id: "sh1",
    };
    assert!(
        run_out.success(),
        "{run_out}\ncontainerd log:\n{}",
        ctd.log()
    );

    let tasks = ctd.ctr(ns, &["tasks", "ls"]);
    tasks.assert_success();
    let line = tasks
        .stdout
        .lines()
        .find(|l| l.starts_with("sh1"))
        .unwrap_or_else(|| panic!("{tasks}"));
    assert!(line.contains("RUNNING"), "{tasks}");
    let pid: i32 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    let counter = PathBuf::from(format!("/proc/{pid}/root/data/counter"));
    wait_counter_above(&counter, 2, COUNT_TIMEOUT);

    // The shim is ours, and it runs the container through stasis-runc and runc.
    let shim = stasis_e2e::proc::live_pids_with_arg("containerd-shim-stasis-v2");
    assert!(!shim.is_empty(), "no containerd-shim-stasis-v2 process");
    let ps = ctd.ctr(ns, &["tasks", "ps", "sh1"]);
    ps.assert_success();
    assert!(ps.stdout.contains(&pid.to_string()), "{ps}");

    ctd.ctr(ns, &["tasks", "kill", "-s", "SIGKILL", "sh1"])
        .assert_success();
    let stopped = (0..100).any(|_| {
        std::thread::sleep(Duration::from_millis(100));
        ctd.ctr(ns, &["tasks", "ls"])
            .stdout
            .lines()
            .any(|l| l.starts_with("sh1") && l.contains("STOPPED"))
    });
    assert!(
        stopped,
        "the task did not stop:\n{}",
        ctd.ctr(ns, &["tasks", "ls"])
    );
    ctd.ctr(ns, &["tasks", "delete", "sh1"]).assert_success();
    ctd.ctr(ns, &["containers", "delete", "sh1"])
        .assert_success();
    let tasks = ctd.ctr(ns, &["tasks", "ls"]);
    assert!(!tasks.stdout.contains("sh1"), "{tasks}");
    drop(cleanup);
}

/// Kills and removes a ctr container at the end of a test, passing or not.
struct CtrCleanup<'a> {
    ctd: &'a Containerd,
    ns: &'a str,
    id: &'a str,
}

impl Drop for CtrCleanup<'_> {
    fn drop(&mut self) {
        let t = Duration::from_secs(30);
        let (ctd, ns, id) = (self.ctd, self.ns, self.id);
        ctd.ctr_quiet(ns, &["tasks", "kill", "-s", "SIGKILL", id], t);
        std::thread::sleep(Duration::from_millis(300));
        ctd.ctr_quiet(ns, &["tasks", "delete", "--force", id], t);
        ctd.ctr_quiet(ns, &["containers", "delete", id], t);
    }
}

fn task_pid(ctd: &Containerd, ns: &str, id: &str) -> i32 {
    let tasks = ctd.ctr(ns, &["tasks", "ls"]);
    let line = tasks
        .stdout
        .lines()
        .find(|l| l.starts_with(id) && l.contains("RUNNING"))
        .unwrap_or_else(|| panic!("no running task {id}:\n{tasks}"));
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// `stasis-runc --root ROOT ARGS` in `bundle` for a detached container (`run --detach`,
/// `restore --detach`): the container's stdout and stderr are a pipe through `cat` into
/// `log`, as a runtime's shim gives it (a host file would not exist inside the container's
/// root at restore). Returns once the command itself has exited; the pipeline, which
/// lasts as long as the container holds the pipe, is returned to be killed at the end.
fn stasis_runc_detached(
    root: &Path,
    bundle: &Path,
    args: &[&str],
    log: &Path,
) -> (Output, std::process::Child) {
    let status = bundle.join(".stasis-runc-status");
    let _ = std::fs::remove_file(&status);
    let mut words = vec![
        release_bin("stasis-runc").display().to_string(),
        "--root".into(),
        root.display().to_string(),
    ];
    words.extend(args.iter().map(|a| a.to_string()));
    // The command's own status goes to a file: `$?` of a pipeline is `cat`'s.
    let line = format!(
        "{{ {cmd} </dev/null 2>&1; echo $? > {st}; }} | cat >> {log}",
        cmd = words.join(" "),
        st = status.display(),
        log = log.display()
    );
    let child = Command::new("sh")
        .current_dir(bundle)
        .args(["-c", &line])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("run sh");
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let code = loop {
        if let Some(code) = std::fs::read_to_string(&status)
            .ok()
            .filter(|s| s.ends_with('\n'))
        {
            break code.trim().parse::<i32>().unwrap_or(-1);
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{line}: still running after 120 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let out = Output {
        command: line,
        status: std::os::unix::process::ExitStatusExt::from_raw(code << 8),
        stdout: std::fs::read_to_string(log).unwrap_or_default(),
        stderr: String::new(),
        notes: String::new(),
    };
    (out, child)
}

/// Kills and reaps the `cat` pipelines of detached containers when the test ends.
struct Pipelines(Vec<std::process::Child>);

impl Drop for Pipelines {
    fn drop(&mut self) {
        for p in &mut self.0 {
            let _ = p.kill();
            let _ = p.wait();
        }
    }
}

#[test]
fn runc_checkpoint_and_restore_through_stasis_runc_continue_the_counter() {
    // The checkpointed init and the restored one are reparented to us: we reap them.
    stasis_e2e::proc::become_subreaper();
    let dir = ScratchDir::new("rt-runc-cr");
    let bundle = dir.join("bundle");
    runc_bundle(&bundle);
    let root = dir.subdir("runc-root");
    let mut pipelines = Pipelines(Vec::new());
    let _cleanup = RuncContainer {
        root: root.clone(),
        id: "cr1".into(),
    };
    let counter = bundle.join("rootfs/data/counter");
    let log = dir.join("stdout.log");

    let (out, p) = stasis_runc_detached(&root, &bundle, &["run", "--detach", "cr1"], &log);
    pipelines.0.push(p);
    out.assert_success();
    let pid = runc_state(&root, &bundle, "cr1")["pid"]
        .as_i64()
        .expect("pid in runc state") as i32;
    wait_counter_above(&counter, 5, COUNT_TIMEOUT);
    let (img, work) = (dir.subdir("img"), dir.subdir("work"));
    let ck = stasis_runc(
        &root,
        &bundle,
        &[
            "checkpoint",
            "--image-path",
            img.to_str().unwrap(),
            "--work-path",
            work.to_str().unwrap(),
            "cr1",
        ],
    );
    ck.assert_success();
    if let Err(e) = stasis_e2e::proc::wait_gone(pid, Duration::from_secs(10)) {
        panic!("the checkpointed container's init {pid}: {e}");
    }
    let at_dump = read_counter(&counter).expect("counter after dump");
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(
        read_counter(&counter),
        Some(at_dump),
        "the container kept counting after checkpoint"
    );
    // runc destroys the checkpointed container when its init is already gone by then, or
    // leaves it stopped: deleting it frees its id for the restore.
    let state = stasis_runc(&root, &bundle, &["state", "cr1"]);
    if state.success() {
        assert!(state.stdout.contains("\"stopped\""), "{state}");
        stasis_runc(&root, &bundle, &["delete", "cr1"]).assert_success();
    } else {
        assert!(state.stderr.contains("does not exist"), "{state}");
    }

    let (out, p) = stasis_runc_detached(
        &root,
        &bundle,
        &[
            "restore",
            "--detach",
            "--image-path",
            img.to_str().unwrap(),
            "--work-path",
            work.to_str().unwrap(),
            "cr1",
        ],
        &log,
    );
    pipelines.0.push(p);
    assert!(
        out.success(),
        "{out}\nrestore.log:\n{}",
        std::fs::read_to_string(work.join("restore.log")).unwrap_or_default()
    );
    // The first value the restored shell writes comes from its memory: the next one.
    let first = wait_counter_change(&counter, Some(at_dump), COUNT_TIMEOUT);
    assert_eq!(first, at_dump + 1, "counter went {at_dump} -> {first}");
    let after = wait_counter_above(&counter, first, COUNT_TIMEOUT);
    eprintln!(
        "runc via stasis-runc: counter {at_dump} at checkpoint, {first} then {after} after restore"
    );
    let state = runc_state(&root, &bundle, "cr1");
    assert_eq!(state["status"], "running", "{state}");
    let pid = state["pid"].as_i64().expect("pid in runc state") as i32;
    // runc's state after the restore is runc's own: kill and delete work.
    stasis_runc(&root, &bundle, &["kill", "cr1", "KILL"]).assert_success();
    if let Err(e) = stasis_e2e::proc::wait_gone(pid, Duration::from_secs(10)) {
        panic!("the restored container's init {pid}: {e}");
    }
    stasis_runc(&root, &bundle, &["delete", "cr1"]).assert_success();
}

#[test]
fn ctr_task_checkpoint_then_container_checkpoint_and_restore_continue_the_counter() {
    let dir = ScratchDir::new("rt-ctr-cr");
    let ctd = Containerd::start(&dir.join("containerd"));
    let rootfs = dir.join("rootfs");
    busybox_rootfs(&rootfs);
    let archive = image_archive(&rootfs, dir.path());
    let ns = "stasis-e2e";
    ctd.ctr(ns, &["images", "import", archive.to_str().unwrap()])
        .assert_success();
    let _cleanup = CtrCleanup {
        ctd: &ctd,
        ns,
        id: "k1",
    };
    ctd.ctr(
        ns,
        &[
            "run",
            "-d",
            "--runtime",
            "io.containerd.stasis.v2",
            IMAGE,
            "k1",
            "sh",
            "-c",
            COUNTER_LOOP,
        ],
    )
    .assert_success();
    let pid = task_pid(&ctd, ns, "k1");
    let counter = PathBuf::from(format!("/proc/{pid}/root/data/counter"));
    wait_counter_above(&counter, 3, COUNT_TIMEOUT);

    // ctr t checkpoint: leave running, images into the content store.
    ctd.ctr(ns, &["tasks", "checkpoint", "k1"]).assert_success();
    let images = ctd.ctr(ns, &["images", "ls", "-q"]);
    let task_image = images
        .stdout
        .lines()
        .find(|l| l.starts_with("containerd.io/checkpoint/k1:"))
        .unwrap_or_else(|| panic!("no task checkpoint image:\n{images}"))
        .to_string();
    let types = ctr_image_media_types(&ctd, ns, &task_image);
    assert!(
        types.iter().any(|t| t == CRIU_TAR_MEDIA_TYPE),
        "{task_image}: {types:?}"
    );
    let still = wait_counter_above(&counter, read_counter(&counter).unwrap_or(0), COUNT_TIMEOUT);
    // containerd 1.6 writes the task's spec into the content store with each checkpoint
    // and, when an identical blob is already there, `ctr c checkpoint` silently leaves the
    // CRIU tar and the spec out of its index (restore then fails "media type not found"):
    // the task checkpoint's image goes first, with its content (--sync waits for the GC).
    ctd.ctr(ns, &["images", "rm", "--sync", &task_image])
        .assert_success();

    // ctr c checkpoint --task (the task paused around it), then kill, remove and restore
    // the container.
    let before = wait_counter_above(&counter, 0, COUNT_TIMEOUT);
    ctd.ctr(
        ns,
        &[
            "containers",
            "checkpoint",
            "--task",
            "--rw",
            "--image",
            "k1",
            "localhost/k1-ckpt:1",
        ],
    )
    .assert_success();
    // The task was paused around the checkpoint, perhaps between the shell's truncating
    // and rewriting the file (CI once read it empty): the first value readable after it.
    let last = wait_counter_above(&counter, 0, COUNT_TIMEOUT);
    ctd.ctr(ns, &["tasks", "kill", "-s", "SIGKILL", "k1"])
        .assert_success();
    assert!(before >= still && last >= before);
    let types = ctr_image_media_types(&ctd, ns, "localhost/k1-ckpt:1");
    assert!(
        types.iter().any(|t| t == CRIU_TAR_MEDIA_TYPE),
        "localhost/k1-ckpt:1: {types:?}"
    );
    let stopped = (0..100).any(|_| {
        std::thread::sleep(Duration::from_millis(100));
        ctd.ctr(ns, &["tasks", "ls"])
            .stdout
            .lines()
            .any(|l| l.starts_with("k1") && l.contains("STOPPED"))
    });
    assert!(stopped, "k1 did not stop");
    ctd.ctr(ns, &["tasks", "delete", "k1"]).assert_success();
    ctd.ctr(ns, &["containers", "delete", "k1"])
        .assert_success();
    let restore = ctd.ctr(
        ns,
        &[
            "containers",
            "restore",
            "--live",
            "--rw",
            "k1",
            "localhost/k1-ckpt:1",
        ],
    );
    assert!(
        restore.success(),
        "{restore}\nshim's criu-dump.log/log.json:\n{}",
        shim_logs(&ctd, ns, "k1")
    );
    let pid = task_pid(&ctd, ns, "k1");
    let counter = PathBuf::from(format!("/proc/{pid}/root/data/counter"));
    let (first, after) = assert_counts_on(&counter, before, last, "ctr c restore");
    eprintln!(
        "ctr: counter {before}..={last} at the container checkpoint, {first} then {after} after restore"
    );
}

/// The runtime's logs of a containerd task (its bundle's `log.json` and the engine's
/// `criu-dump.log`), for failure messages.
fn shim_logs(ctd: &Containerd, ns: &str, id: &str) -> String {
    let bundle = ctd
        .dir
        .join("state/io.containerd.runtime.v2.task")
        .join(ns)
        .join(id);
    ["log.json", "criu-dump.log", "work/restore.log"]
        .iter()
        .map(|f| {
            format!(
                "--- {f}:\n{}\n",
                std::fs::read_to_string(bundle.join(f)).unwrap_or_default()
            )
        })
        .collect()
}

#[test]
fn podman_with_stasis_runc_checkpoints_and_restores_in_place_and_by_export_import() {
    let dir = ScratchDir::new("rt-podman");
    let pm = Podman::new(&dir.join("podman"));
    let rootfs = dir.join("rootfs");
    busybox_rootfs(&rootfs);
    let tar = dir.join("rootfs.tar");
    stasis_e2e::runtime_env::cmd(
        "tar",
        &[
            "-C",
            rootfs.to_str().unwrap(),
            "-cf",
            tar.to_str().unwrap(),
            ".",
        ],
    )
    .assert_success();
    pm.podman(&[
        "import",
        "--change",
        "CMD [\"/bin/sh\"]",
        tar.to_str().unwrap(),
        IMAGE,
    ])
    .assert_success();
    let _cleanup = Finally(|| {
        let _ = pm.podman(&["rm", "-f", "-a"]);
    });
    pm.podman(&[
        "run",
        "-d",
        "--name",
        "p1",
        "--network",
        "none",
        IMAGE,
        "sh",
        "-c",
        COUNTER_LOOP,
    ])
    .assert_success();
    let counter_of = |name: &str| -> PathBuf {
        let out = pm.podman(&["inspect", "--format", "{{.State.Pid}}", name]);
        out.assert_success();
        PathBuf::from(format!("/proc/{}/root/data/counter", out.stdout.trim()))
    };
    wait_counter_above(&counter_of("p1"), 3, COUNT_TIMEOUT);
    // podman's default seccomp profile, as a user runs it.
    assert_seccomp_filtered(&counter_of("p1"));

    // The engine's logs in the container's userdata directory, for failure messages.
    let engine_logs = |name: &str| -> String {
        let id = pm.podman(&["inspect", "--format", "{{.Id}}", name]);
        let userdata = dir
            .join("podman/storage/overlay-containers")
            .join(id.stdout.trim())
            .join("userdata");
        ["dump.log", "restore.log"]
            .iter()
            .map(|f| {
                let text = std::fs::read_to_string(userdata.join(f)).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(30).collect();
                let tail: Vec<&str> = tail.into_iter().rev().collect();
                format!("--- {f} (end):\n{}\n", tail.join("\n"))
            })
            .collect()
    };
    let podman_ok = |args: &[&str], name: &str| {
        let out = pm.podman(args);
        assert!(out.success(), "{out}\n{}", engine_logs(name));
    };

    // In place.
    let before = wait_counter_above(&counter_of("p1"), 0, COUNT_TIMEOUT);
    podman_ok(&["container", "checkpoint", "p1"], "p1");
    podman_ok(&["container", "restore", "p1"], "p1");
    let c = counter_of("p1");
    assert_seccomp_filtered(&c);
    let (first, after) = assert_counts_on(&c, before, before, "podman restore in place");
    eprintln!(
        "podman in place: counter {before} before checkpoint, {first} then {after} after restore"
    );

    // Export and import under a new name.
    let export = dir.join("p1.tar.zst");
    let before = wait_counter_above(&c, 0, COUNT_TIMEOUT);
    podman_ok(
        &[
            "container",
            "checkpoint",
            "--export",
            export.to_str().unwrap(),
            "p1",
        ],
        "p1",
    );
    podman_ok(
        &[
            "container",
            "restore",
            "--import",
            export.to_str().unwrap(),
            "--name",
            "p2",
        ],
        "p2",
    );
    let c = counter_of("p2");
    assert_seccomp_filtered(&c);
    let (first, after) = assert_counts_on(&c, before, before, "podman restore --import as p2");
    eprintln!(
        "podman export/import: counter {before} before checkpoint, {first} then {after} in p2"
    );
}

#[test]
fn docker_with_the_stasis_runtime_checkpoints_and_starts_from_the_checkpoint() {
    let dir = ScratchDir::new("rt-docker");
    let ctd = Containerd::start(&dir.join("containerd"));
    let dockerd = Dockerd::start(&dir.join("docker"), &ctd);
    let rootfs = dir.join("rootfs");
    busybox_rootfs(&rootfs);
    let archive = image_archive(&rootfs, dir.path());
    dockerd
        .docker(&["load", "-i", archive.to_str().unwrap()])
        .assert_success();
    let _cleanup = Finally(|| {
        let _ = dockerd.docker(&["rm", "-f", "d1"]);
    });
    dockerd
        .docker(&[
            "run",
            "-d",
            "--runtime",
            "stasis",
            "--name",
            "d1",
            "--network",
            "none",
            IMAGE,
            "sh",
            "-c",
            COUNTER_LOOP,
        ])
        .assert_success();
    let counter_of = || -> PathBuf {
        let out = dockerd.docker(&["inspect", "--format", "{{.State.Pid}}", "d1"]);
        out.assert_success();
        PathBuf::from(format!("/proc/{}/root/data/counter", out.stdout.trim()))
    };
    wait_counter_above(&counter_of(), 3, COUNT_TIMEOUT);
    // docker's default seccomp profile, as a user runs it.
    assert_seccomp_filtered(&counter_of());
    let id = dockerd.docker(&["inspect", "--format", "{{.Id}}", "d1"]);
    id.assert_success();
    let id = id.stdout.trim().to_string();
    let before = wait_counter_above(&counter_of(), 0, COUNT_TIMEOUT);
    let ck = dockerd.docker(&["checkpoint", "create", "d1", "cp1"]);
    assert!(ck.success(), "{ck}\n{}", shim_logs(&ctd, "moby", &id));
    // docker 20.10 gets the CRIU tar out of containerd's content store, deletes the
    // checkpoint image and keeps the files; `start --checkpoint` tars them again into the
    // store, byte for byte the same blob, and fails "already exists" while containerd's
    // garbage collector has not yet removed the first one (a race of milliseconds, not of
    // the runtime). Wait for the collector, as a user typing the next command does.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while ctd.ctr("moby", &["content", "ls", "-q"]).stdout.trim() != ""
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(100));
    }
    let start = dockerd.docker(&["start", "--checkpoint", "cp1", "d1"]);
    assert!(start.success(), "{start}\n{}", shim_logs(&ctd, "moby", &id));
    let c = counter_of();
    assert_seccomp_filtered(&c);
    let (first, after) = assert_counts_on(&c, before, before, "docker start --checkpoint");
    eprintln!(
        "docker: counter {before} before checkpoint, {first} then {after} after start --checkpoint"
    );
}

/// Asserts that the process whose counter is at `/proc/PID/root/data/counter` runs under
/// a seccomp filter (the runtime's default profile: dumped and restored by the engine).
fn assert_seccomp_filtered(counter: &Path) {
    let proc_dir = counter
        .ancestors()
        .nth(3)
        .expect("a /proc/PID/root/data/counter path");
    let status = std::fs::read_to_string(proc_dir.join("status")).unwrap_or_default();
    assert!(
        status.lines().any(|l| l == "Seccomp:\t2"),
        "{} has no seccomp filter:\n{status}",
        proc_dir.display()
    );
}

/// Runs a closure when dropped: removes a test's containers whether it passes or not.
struct Finally<F: FnMut()>(F);

impl<F: FnMut()> Drop for Finally<F> {
    fn drop(&mut self) {
        (self.0)();
    }
}
