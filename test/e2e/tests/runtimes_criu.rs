//! stasis as a drop-in for CRIU: the unchanged Debian runtimes (runc 1.1, containerd
//! 1.6's `io.containerd.runc.v2` shim, podman and docker with their default runtime runc)
//! with nothing of stasis but a `criu` first in their PATH, a symlink to the stasis
//! binary. Nothing is installed on the machine: the symlink lives in the test's directory
//! and only the podman, containerd and dockerd a test starts see it.
//!
//! Each flow proves that the container's counter continues after the restore (the first
//! value the restored workload writes is the next one after the checkpoint) and that
//! stasis did the work: the checkpoint's `inventory.img` carries stasis's dump run id
//! (CRIU writes a UUID there) and the restore log runc asked for is stasis's. Debian's own
//! criu (/usr/sbin/criu) fails on this kernel, so a flow that reached it would fail too.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use stasis_e2e::runtime_env::{
    assert_counts_on, cmd, ctr_image_manifests, image_archive, read_counter, stasis_as_criu,
    wait_counter_above, Containerd, Dockerd, Podman, COUNTER_LOOP, COUNT_TIMEOUT,
    CRIU_TAR_MEDIA_TYPE, IMAGE,
};
use stasis_e2e::ScratchDir;
use stasis_images::{names, pb, ImageDir, ImageKind};

/// Asserts that the images in `images` were dumped by stasis: the inventory's
/// `dump_criu_run_id` is stasis's `stasis-PID-TIME`, not CRIU's UUID.
fn assert_dumped_by_stasis(images: &Path, what: &str) {
    let dir = ImageDir::open(images)
        .unwrap_or_else(|e| panic!("{what}: images at {}: {e}", images.display()));
    let inventory: pb::InventoryEntry = dir
        .read_one(ImageKind::INVENTORY, names::INVENTORY)
        .unwrap_or_else(|e| panic!("{what}: {}/inventory.img: {e}", images.display()));
    let run_id = inventory.dump_criu_run_id.unwrap_or_default();
    assert!(
        run_id.starts_with("stasis-"),
        "{what}: {}/inventory.img has dump run id {run_id:?}: not dumped by stasis",
        images.display()
    );
}

/// Asserts that `log` (the `restore.log` runc names in its RPC request) is stasis's: its
/// first lines say which stasis served the restore.
fn assert_restored_by_stasis(log: &Path, what: &str) {
    let text = std::fs::read_to_string(log)
        .unwrap_or_else(|e| panic!("{what}: no restore log {}: {e}", log.display()));
    assert!(
        text.lines()
            .any(|l| l.contains(") stasis ") && l.contains(" serving an operation ")),
        "{what}: {} was not written by stasis:\n{}",
        log.display(),
        text.lines().take(20).collect::<Vec<_>>().join("\n")
    );
}

/// Extracts the tar `archive` into a new directory `out` (compression recognised by tar).
fn untar(archive: &Path, out: &Path) -> PathBuf {
    std::fs::create_dir_all(out).unwrap();
    cmd(
        "tar",
        &[
            "-xf",
            archive.to_str().unwrap(),
            "-C",
            out.to_str().unwrap(),
        ],
    )
    .assert_success();
    out.to_path_buf()
}

/// Runs a closure when dropped: removes a test's containers whether it passes or not.
struct Finally<F: FnMut()>(F);

impl<F: FnMut()> Drop for Finally<F> {
    fn drop(&mut self) {
        (self.0)();
    }
}

/// The last lines of `path`, for failure messages.
fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    format!(
        "--- {} (end):\n{}\n",
        path.display(),
        lines[lines.len().saturating_sub(30)..].join("\n")
    )
}

#[test]
fn podman_with_its_default_runc_and_stasis_as_criu_restores_in_place_and_by_export_import() {
    let dir = ScratchDir::new("rtc-podman");
    let pm = Podman::with_default_runtime(&dir.join("podman"));
    let rootfs = dir.join("rootfs");
    stasis_e2e::container::busybox_rootfs(&rootfs, &[]);
    let tar = dir.join("rootfs.tar");
    cmd(
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
        "c1",
        "--network",
        "none",
        IMAGE,
        "sh",
        "-c",
        COUNTER_LOOP,
    ])
    .assert_success();
    let inspect = |name: &str, format: &str| -> String {
        let out = pm.podman(&["inspect", "--format", format, name]);
        out.assert_success();
        out.stdout.trim().to_string()
    };
    assert_eq!(inspect("c1", "{{.OCIRuntime}}"), "runc", "podman's default");
    let counter_of = |name: &str| {
        PathBuf::from(format!(
            "/proc/{}/root/data/counter",
            inspect(name, "{{.State.Pid}}")
        ))
    };
    wait_counter_above(&counter_of("c1"), 3, COUNT_TIMEOUT);
    let userdata = pm.userdata(&inspect("c1", "{{.Id}}"));
    let podman_ok = |args: &[&str], userdata: &Path| {
        let out = pm.podman(args);
        assert!(
            out.success(),
            "{out}\n{}{}",
            tail(&userdata.join("dump.log")),
            tail(&userdata.join("restore.log"))
        );
    };

    // In place. podman removes the logs after a restore unless --keep; the images stay
    // between checkpoint and restore.
    // The checkpoint stops the container: its upper layer keeps the last value written.
    let upper = PathBuf::from(inspect("c1", "{{.GraphDriver.Data.UpperDir}}"));
    podman_ok(&["container", "checkpoint", "c1"], &userdata);
    let at_dump = read_counter(&upper.join("data/counter")).expect("counter at the checkpoint");
    assert_dumped_by_stasis(&userdata.join("checkpoint"), "podman checkpoint");
    podman_ok(&["container", "restore", "--keep", "c1"], &userdata);
    assert_restored_by_stasis(&userdata.join("restore.log"), "podman restore");
    let c = counter_of("c1");
    let (first, after) = assert_counts_on(&c, at_dump, at_dump, "podman restore in place");
    eprintln!(
        "podman (runc, stasis as criu) in place: counter {at_dump} at checkpoint, {first} then {after} after restore"
    );

    // Export and import under a new name.
    let export = dir.join("c1.tar.zst");
    podman_ok(
        &[
            "container",
            "checkpoint",
            "--export",
            export.to_str().unwrap(),
            "c1",
        ],
        &userdata,
    );
    let at_dump = read_counter(&upper.join("data/counter")).expect("counter at the export");
    let exported = untar(&export, &dir.join("exported"));
    assert_dumped_by_stasis(&exported.join("checkpoint"), "podman checkpoint --export");
    let import = pm.podman(&[
        "container",
        "restore",
        "--keep",
        "--import",
        export.to_str().unwrap(),
        "--name",
        "c2",
    ]);
    let userdata2 = pm.userdata(&inspect("c2", "{{.Id}}"));
    assert!(
        import.success(),
        "{import}\n{}",
        tail(&userdata2.join("restore.log"))
    );
    assert_restored_by_stasis(&userdata2.join("restore.log"), "podman restore --import");
    assert_eq!(inspect("c2", "{{.OCIRuntime}}"), "runc");
    let c = counter_of("c2");
    let (first, after) = assert_counts_on(&c, at_dump, at_dump, "podman restore --import as c2");
    eprintln!(
        "podman (runc, stasis as criu) export/import: counter {at_dump} at checkpoint, {first} then {after} in c2"
    );
}

/// The running task `id`'s pid.
fn task_pid(ctd: &Containerd, ns: &str, id: &str) -> i32 {
    let tasks = ctd.ctr(ns, &["tasks", "ls"]);
    let line = tasks
        .stdout
        .lines()
        .find(|l| l.split_whitespace().next() == Some(id) && l.contains("RUNNING"))
        .unwrap_or_else(|| panic!("no running task {id}:\n{tasks}"));
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Asserts that the CRIU tar in checkpoint image `image` holds images dumped by stasis
/// (unpacked from containerd's content store into `out`).
fn assert_ctr_checkpoint_by_stasis(ctd: &Containerd, ns: &str, image: &str, out: &Path) {
    let manifests = ctr_image_manifests(ctd, ns, image);
    let (_, digest) = manifests
        .iter()
        .find(|(t, _)| t == CRIU_TAR_MEDIA_TYPE)
        .unwrap_or_else(|| panic!("{image}: no CRIU tar in {manifests:?}"));
    let images = untar(&ctd.blob(digest), out);
    assert_dumped_by_stasis(&images, image);
}

/// The runc shim's work directory for task `id` (under containerd's root), where runc's
/// restore writes `restore.log`: containerd 1.6's runc shim makes it the CRIU work path
/// of a restore when its options name none (neither ctr nor docker 20.10 do).
fn shim_work_dir(ctd: &Containerd, ns: &str, id: &str) -> PathBuf {
    ctd.dir
        .join("root/io.containerd.runtime.v2.task")
        .join(ns)
        .join(id)
}

#[test]
fn ctr_with_the_default_runc_shim_and_stasis_as_criu_checkpoints_and_restores_a_container() {
    let dir = ScratchDir::new("rtc-ctr");
    let criu = stasis_as_criu(dir.path());
    let ctd = Containerd::start_with_path_first(&dir.join("containerd"), &[&criu]);
    let rootfs = dir.join("rootfs");
    stasis_e2e::container::busybox_rootfs(&rootfs, &[]);
    let archive = image_archive(&rootfs, dir.path());
    // A namespace and id of their own: the shim keeps runc's state of its containers in
    // the machine's /run/containerd/runc/NAMESPACE/ID.
    let (ns, id) = ("stasis-e2e-criu", "kc1");
    ctd.ctr(ns, &["images", "import", archive.to_str().unwrap()])
        .assert_success();
    let _cleanup = Finally(|| {
        let t = Duration::from_secs(30);
        ctd.ctr_quiet(ns, &["tasks", "kill", "-s", "SIGKILL", id], t);
        std::thread::sleep(Duration::from_millis(300));
        ctd.ctr_quiet(ns, &["tasks", "delete", "--force", id], t);
        ctd.ctr_quiet(ns, &["containers", "delete", id], t);
    });
    ctd.ctr(ns, &["run", "-d", IMAGE, id, "sh", "-c", COUNTER_LOOP])
        .assert_success();
    let info = ctd.ctr(ns, &["containers", "info", id]);
    info.assert_success();
    let info: serde_json::Value = serde_json::from_str(&info.stdout).expect("container info");
    assert_eq!(info["Runtime"]["Name"], "io.containerd.runc.v2", "{info}");
    let pid = task_pid(&ctd, ns, id);
    let counter = PathBuf::from(format!("/proc/{pid}/root/data/counter"));
    wait_counter_above(&counter, 3, COUNT_TIMEOUT);

    // ctr t checkpoint: leave running, images into the content store.
    let ck = ctd.ctr(ns, &["tasks", "checkpoint", id]);
    assert!(ck.success(), "{ck}\n{}", ctd.log());
    let images = ctd.ctr(ns, &["images", "ls", "-q"]);
    let task_image = images
        .stdout
        .lines()
        .find(|l| l.starts_with(&format!("containerd.io/checkpoint/{id}:")))
        .unwrap_or_else(|| panic!("no task checkpoint image:\n{images}"))
        .to_string();
    assert_ctr_checkpoint_by_stasis(&ctd, ns, &task_image, &dir.join("task-ckpt"));
    let still = wait_counter_above(&counter, read_counter(&counter).unwrap_or(0), COUNT_TIMEOUT);
    // containerd 1.6's duplicate-spec bug (docs/runtimes.md): the task checkpoint's image
    // goes first, with its content.
    ctd.ctr(ns, &["images", "rm", "--sync", &task_image])
        .assert_success();

    // ctr c checkpoint --task (the task paused around it), then kill, remove and restore.
    let before = wait_counter_above(&counter, 0, COUNT_TIMEOUT);
    let ckpt = format!("localhost/{id}-ckpt:1");
    ctd.ctr(
        ns,
        &[
            "containers",
            "checkpoint",
            "--task",
            "--rw",
            "--image",
            id,
            &ckpt,
        ],
    )
    .assert_success();
    // The task was paused around the checkpoint, perhaps between the shell's truncating
    // and rewriting the file: the first value readable after it.
    let last = wait_counter_above(&counter, 0, COUNT_TIMEOUT);
    assert!(before >= still && last >= before);
    assert_ctr_checkpoint_by_stasis(&ctd, ns, &ckpt, &dir.join("container-ckpt"));
    ctd.ctr(ns, &["tasks", "kill", "-s", "SIGKILL", id])
        .assert_success();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !ctd
        .ctr(ns, &["tasks", "ls"])
        .stdout
        .lines()
        .any(|l| l.split_whitespace().next() == Some(id) && l.contains("STOPPED"))
    {
        assert!(Instant::now() < deadline, "{id} did not stop");
        std::thread::sleep(Duration::from_millis(100));
    }
    ctd.ctr(ns, &["tasks", "delete", id]).assert_success();
    ctd.ctr(ns, &["containers", "delete", id]).assert_success();
    let restore_log = shim_work_dir(&ctd, ns, id).join("restore.log");
    let restore = ctd.ctr(ns, &["containers", "restore", "--live", "--rw", id, &ckpt]);
    assert!(
        restore.success(),
        "{restore}\n{}{}",
        tail(&restore_log),
        ctd.log()
    );
    assert_restored_by_stasis(&restore_log, "ctr c restore");
    let pid = task_pid(&ctd, ns, id);
    let counter = PathBuf::from(format!("/proc/{pid}/root/data/counter"));
    let (first, after) = assert_counts_on(&counter, before, last, "ctr c restore");
    eprintln!(
        "ctr (runc shim, stasis as criu): counter {before}..={last} at the container checkpoint, {first} then {after} after restore"
    );
}

#[test]
fn docker_with_its_default_runc_and_stasis_as_criu_checkpoints_and_starts_from_the_checkpoint() {
    let dir = ScratchDir::new("rtc-docker");
    let criu = stasis_as_criu(dir.path());
    let ctd = Containerd::start_with_path_first(&dir.join("containerd"), &[&criu]);
    let dockerd = Dockerd::start_with_path_first(&dir.join("docker"), &ctd, &[&criu]);
    let rootfs = dir.join("rootfs");
    stasis_e2e::container::busybox_rootfs(&rootfs, &[]);
    let archive = image_archive(&rootfs, dir.path());
    dockerd
        .docker(&["load", "-i", archive.to_str().unwrap()])
        .assert_success();
    let _cleanup = Finally(|| {
        let _ = dockerd.docker(&["rm", "-f", "dc1"]);
    });
    dockerd
        .docker(&[
            "run",
            "-d",
            "--name",
            "dc1",
            "--network",
            "none",
            IMAGE,
            "sh",
            "-c",
            COUNTER_LOOP,
        ])
        .assert_success();
    let inspect = |format: &str| -> String {
        let out = dockerd.docker(&["inspect", "--format", format, "dc1"]);
        out.assert_success();
        out.stdout.trim().to_string()
    };
    assert_eq!(
        inspect("{{.HostConfig.Runtime}}"),
        "runc",
        "docker's default"
    );
    let counter_of = || {
        PathBuf::from(format!(
            "/proc/{}/root/data/counter",
            inspect("{{.State.Pid}}")
        ))
    };
    wait_counter_above(&counter_of(), 3, COUNT_TIMEOUT);
    let id = inspect("{{.Id}}");
    let restore_log = shim_work_dir(&ctd, "moby", &id).join("restore.log");

    // The checkpoint stops the container: its upper layer keeps the last value written.
    let upper = PathBuf::from(inspect("{{.GraphDriver.Data.UpperDir}}"));
    let ck = dockerd.docker(&["checkpoint", "create", "dc1", "cp1"]);
    assert!(ck.success(), "{ck}\n{}", ctd.log());
    let at_dump = read_counter(&upper.join("data/counter")).expect("counter at the checkpoint");
    assert_dumped_by_stasis(
        &dockerd
            .dir
            .join("data/containers")
            .join(&id)
            .join("checkpoints/cp1"),
        "docker checkpoint create",
    );
    // docker 20.10's re-upload race with containerd's GC (docs/runtimes.md): wait until
    // the checkpoint's blob is collected, as a user typing the next command does.
    let deadline = Instant::now() + Duration::from_secs(10);
    while ctd.ctr("moby", &["content", "ls", "-q"]).stdout.trim() != "" && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(100));
    }
    let start = dockerd.docker(&["start", "--checkpoint", "cp1", "dc1"]);
    assert!(start.success(), "{start}\n{}", tail(&restore_log));
    assert_restored_by_stasis(&restore_log, "docker start --checkpoint");
    let (first, after) =
        assert_counts_on(&counter_of(), at_dump, at_dump, "docker start --checkpoint");
    eprintln!(
        "docker (runc, stasis as criu): counter {at_dump} at checkpoint, {first} then {after} after start --checkpoint"
    );
}
