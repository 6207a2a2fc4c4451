//! A container as a first-class object: a workload as PID 1 of its own pid, uts, ipc,
//! net and mount namespaces inside a busybox root filesystem, with a tmpfs, a SysV
//! shared memory segment it keeps attached, an external mount (the host's /dev/null)
//! and a mask bound from it, in v1 cgroups with limits. It is dumped, its cgroups
//! removed, and restored: it continues from its last tick, and its host name, tmpfs
//! file, shm segment (contents checked by the workload on every tick), mounts, cgroup
//! membership and limits are back. Restores that cannot be done fail naming what is
//! missing and leave no process and no mount behind.

use std::path::Path;
use std::time::{Duration, Instant};

use stasis_e2e::cgroups::{cgroup_of, read, TestCgroups, ROOT};
use stasis_e2e::container::{busybox_rootfs, host_mounts_under, read_pidfile, Container};
use stasis_e2e::runtime_env::Runc;
use stasis_e2e::{crit_decode_all, dump, restore, ScratchDir};

const HOSTNAME: &str = "stasis-ct";

const LIMITS: &[(&str, &[(&str, &str)])] = &[
    (
        "cpu",
        &[
            ("cpu.cfs_period_us", "100000"),
            ("cpu.cfs_quota_us", "50000"),
        ],
    ),
    ("memory", &[("memory.limit_in_bytes", "134217728")]),
    ("pids", &[("pids.max", "16")]),
];

/// The workload's tick lines (`tick N ok` / `tick N BAD what`).
fn ticks(rootfs: &Path) -> Vec<(u64, String)> {
    std::fs::read_to_string(rootfs.join("data/ticks"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix("tick ")?;
            let (n, state) = rest.split_once(' ')?;
            Some((n.parse().ok()?, state.to_string()))
        })
        .collect()
}

fn wait_ticks(rootfs: &Path, more_than: usize, timeout: Duration) -> Vec<(u64, String)> {
    let until = Instant::now() + timeout;
    loop {
        let t = ticks(rootfs);
        if t.len() > more_than {
            return t;
        }
        assert!(
            Instant::now() < until,
            "the container wrote {} ticks, waiting for more than {more_than}",
            t.len()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A started container in its limited cgroups, with a few good ticks behind it.
fn start(dir: &ScratchDir, cg: &mut TestCgroups) -> Container {
    let rootfs = dir.subdir("rootfs");
    busybox_rootfs(&rootfs, &["nsworker_static"]);
    let c = Container::start(&rootfs, HOSTNAME, &["/bin/nsworker", HOSTNAME]);
    for (h, props) in LIMITS {
        let d = cg.create(h, props);
        stasis_e2e::cgroups::move_in(&d, c.pid);
    }
    let t = wait_ticks(&rootfs, 3, Duration::from_secs(10));
    assert!(t.iter().all(|(_, s)| s == "ok"), "before the dump: {t:?}");
    c
}

#[test]
fn a_container_init_comes_back_as_pid_1_of_new_namespaces_with_hostname_tmpfs_shm_mounts_and_cgroups(
) {
    let dir = ScratchDir::new("container-a");
    let images = dir.subdir("images");
    let mut cg = TestCgroups::new("ct");
    let mut c = start(&dir, &mut cg);
    let rootfs = c.rootfs.clone();

    dump(&images, c.pid, &["--ext-mount-map", "/dev/null:devnull"]).assert_success();
    c.assert_gone(Duration::from_secs(10));
    let at_dump = ticks(&rootfs);
    let last = at_dump.last().expect("ticks before the dump").0;

    // The image holds the namespaces as CRIU writes them.
    let set = crit_decode_all(&images);
    let ids = &set.entries("ids-1.img")[0];
    let pstree = set.pstree();
    assert_eq!(
        pstree[0].0, 1,
        "the root is pid 1 of its namespace: {pstree:?}"
    );
    let uts = &set.entries(&format!("utsns-{}.img", ids["uts_ns_id"]))[0];
    assert_eq!(uts["nodename"], HOSTNAME);
    let mounts = set.entries(&format!("mountpoints-{}.img", ids["mnt_ns_id"]));
    let points: Vec<&str> = mounts
        .iter()
        .filter_map(|m| m["mountpoint"].as_str())
        .collect();
    for p in [
        "/",
        "/proc",
        "/tmp",
        "/dev",
        "/dev/null",
        "/dev/pts",
        "/dev/mqueue",
        "/proc/timer_list",
    ] {
        assert!(points.contains(&p), "mount {p} recorded: {points:?}");
    }
    let devnull = mounts
        .iter()
        .find(|m| m["mountpoint"] == "/dev/null")
        .expect("/dev/null");
    assert_eq!(devnull["ext_key"], "devnull", "external mount by key");
    let shm = set.entries(&format!("ipcns-shm-{}.img", ids["ipc_ns_id"]));
    assert_eq!(shm.len(), 1, "one SysV segment: {shm:?}");
    assert_eq!(shm[0]["size"], 3 * 4096 + 77);
    assert!(
        images
            .join(format!("netns-{}.img", ids["net_ns_id"]))
            .is_file(),
        "the network namespace is dumped"
    );

    // The container is gone, its cgroups with it.
    cg.remove_all();
    let pid = c.restore_from(&images, &dir.join("pid"), &[]);

    let after = wait_ticks(&rootfs, at_dump.len() + 3, Duration::from_secs(10));
    let resumed = &after[at_dump.len()..];
    assert_eq!(
        resumed.first().map(|t| t.0),
        Some(last + 1),
        "the first tick after restore follows the last before the dump"
    );
    let bad: Vec<_> = after.iter().filter(|(_, s)| s != "ok").collect();
    assert!(
        bad.is_empty(),
        "the workload found its pid, shm, tmpfs or hostname wrong: {bad:?}"
    );

    // Seen from outside: namespaces, names, objects and mounts.
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let nspid = status.lines().find(|l| l.starts_with("NSpid:")).unwrap();
    assert!(
        nspid.ends_with("\t1"),
        "PID 1 inside its namespace: {nspid}"
    );
    for ns in ["pid", "mnt", "uts", "ipc", "net"] {
        let mine = std::fs::read_link(format!("/proc/self/ns/{ns}")).unwrap();
        let its = std::fs::read_link(format!("/proc/{pid}/ns/{ns}")).unwrap();
        assert_ne!(mine, its, "the restored init has its own {ns} namespace");
    }
    assert_eq!(c.nsenter(&["-u"], &["hostname"]).trim(), HOSTNAME);
    let ipcs = c.nsenter(&["-i"], &["ipcs", "-m"]);
    assert!(
        ipcs.contains("0x0057a515") && ipcs.contains("12365"),
        "the segment is back with its key and size: {ipcs}"
    );
    let note = std::fs::read_to_string(format!("/proc/{pid}/root/tmp/note")).unwrap();
    assert_eq!(note, "kept on tmpfs across the checkpoint\n");
    let mountinfo = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).unwrap();
    for (point, fs) in [
        ("/proc", "proc"),
        ("/tmp", "tmpfs"),
        ("/dev/pts", "devpts"),
        ("/dev/mqueue", "mqueue"),
        ("/proc/timer_list", "devtmpfs"),
    ] {
        assert!(
            mountinfo
                .lines()
                .any(|l| l.split(' ').nth(4) == Some(point) && l.contains(&format!(" - {fs} "))),
            "{point} ({fs}) is mounted in the restored container:\n{mountinfo}"
        );
    }
    assert!(
        host_mounts_under(&rootfs).is_empty(),
        "no mount of the container leaks to the host: {:?}",
        host_mounts_under(&rootfs)
    );
    for (h, props) in LIMITS {
        assert_eq!(cgroup_of(pid, h), cg.path(), "restored init's {h} cgroup");
        for (k, v) in *props {
            let f = Path::new(ROOT).join(h).join(&cg.name).join(k);
            assert_eq!(read(&f), *v, "{} after restore", f.display());
        }
    }
}

/// Where stasis's own descriptors land depends on what its caller left open (a runtime,
/// a CI runner): the container's init must come back whatever they are. The init holds
/// descriptors 0 to 10, so its tree uses 11 and 12 for itself while it is rebuilt. It is
/// restored nine times in a row, stasis holding 0 to 8 more descriptors each time, so
/// the pipes stasis talks to the init through sweep across those numbers (one of them
/// once landed on the init's report pipe, and the init died waiting for its
/// namespaces).
#[test]
fn a_container_comes_back_whatever_descriptors_stasis_is_started_with() {
    let dir = ScratchDir::new("container-fds");
    let rootfs = dir.subdir("rootfs");
    busybox_rootfs(&rootfs, &["nsworker_static"]);
    let mut c = Container::start(&rootfs, HOSTNAME, &["/bin/nsworker", HOSTNAME, "10"]);
    let t = wait_ticks(&rootfs, 3, Duration::from_secs(10));
    assert!(t.iter().all(|(_, s)| s == "ok"), "before the dump: {t:?}");
    for held in 0..9 {
        let images = dir.subdir(&format!("images-{held}"));
        dump(&images, c.pid, &["--ext-mount-map", "/dev/null:devnull"]).assert_success();
        c.assert_gone(Duration::from_secs(10));
        let at_dump = ticks(&rootfs);
        let pidfile = dir.join(format!("pid-{held}"));
        stasis_e2e::cr::restore_holding(
            &images,
            held,
            &[
                "--root",
                rootfs.to_str().unwrap(),
                "--ext-mount-map",
                "devnull:/dev/null",
                "--pidfile",
                pidfile.to_str().unwrap(),
            ],
        )
        .assert_success();
        let pid = read_pidfile(&pidfile);
        c.restored_as(pid);
        let after = wait_ticks(&rootfs, at_dump.len() + 1, Duration::from_secs(10));
        assert_eq!(
            after[at_dump.len()].0,
            at_dump.last().expect("ticks before the dump").0 + 1,
            "restore {held}: the first tick follows the last before the dump"
        );
        let bad: Vec<_> = after.iter().filter(|(_, s)| s != "ok").collect();
        assert!(bad.is_empty(), "restore {held}: the workload found {bad:?}");
    }
}

/// `--ext-mount-map auto`: the host's /dev/null bound into the container is found
/// external by itself, keyed by its host path, and the restore binds it from there with
/// no map given.
#[test]
fn ext_mount_map_auto_keys_a_host_bind_by_its_host_path() {
    let dir = ScratchDir::new("container-auto");
    let images = dir.subdir("images");
    let rootfs = dir.subdir("rootfs");
    busybox_rootfs(&rootfs, &["nsworker_static"]);
    let mut c = Container::start(&rootfs, HOSTNAME, &["/bin/nsworker", HOSTNAME]);
    wait_ticks(&rootfs, 3, Duration::from_secs(10));
    dump(&images, c.pid, &["--ext-mount-map", "auto"]).assert_success();
    c.assert_gone(Duration::from_secs(10));
    let at_dump = ticks(&rootfs);

    let set = crit_decode_all(&images);
    let ids = &set.entries("ids-1.img")[0];
    let mounts = set.entries(&format!("mountpoints-{}.img", ids["mnt_ns_id"]));
    let devnull = mounts
        .iter()
        .find(|m| m["mountpoint"] == "/dev/null")
        .expect("/dev/null");
    assert_eq!(devnull["ext_key"], "/dev/null", "keyed by its host path");
    let mask = mounts
        .iter()
        .find(|m| m["mountpoint"] == "/proc/timer_list")
        .expect("/proc/timer_list");
    assert!(
        mask.get("ext_key").is_none_or(|k| k.is_null()),
        "the mask is bound from the tree, not external: {mask}"
    );

    let pidfile = dir.join("pid");
    restore(
        &images,
        &[
            "--root",
            rootfs.to_str().unwrap(),
            "--pidfile",
            pidfile.to_str().unwrap(),
        ],
    )
    .assert_success();
    let pid = read_pidfile(&pidfile);
    c.restored_as(pid);
    let after = wait_ticks(&rootfs, at_dump.len() + 2, Duration::from_secs(10));
    assert_eq!(
        after[at_dump.len()].0,
        at_dump.last().expect("ticks").0 + 1,
        "the counter continues"
    );
    assert!(after.iter().all(|(_, s)| s == "ok"), "{after:?}");
    let mountinfo = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).unwrap();
    assert!(
        mountinfo
            .lines()
            .any(|l| l.split(' ').nth(4) == Some("/dev/null")),
        "/dev/null is mounted again:\n{mountinfo}"
    );
}

/// The host ids a user-namespace container's ids 0..65535 are.
const USERNS_BASE: u32 = 100_000;

/// A container with a user namespace of its own (ids 0..65535 are the host's
/// 100000..165535; its files belong to 100000): the maps come back, the init is still
/// the namespace's root, its files and SysV segment keep their owners, and the workload
/// finds everything as it left it.
#[test]
fn a_container_in_a_user_namespace_of_its_own_comes_back_with_its_maps_and_owners() {
    let dir = ScratchDir::new("container-userns");
    let images = dir.subdir("images");
    let rootfs = dir.subdir("rootfs");
    busybox_rootfs(&rootfs, &["nsworker_static"]);
    let owner = format!("{USERNS_BASE}:{USERNS_BASE}");
    let chown = std::process::Command::new("chown")
        .args(["-R", &owner])
        .arg(&rootfs)
        .status()
        .expect("chown");
    assert!(chown.success(), "chown -R {owner} the rootfs");
    let mut c = Container::start_with(
        &rootfs,
        HOSTNAME,
        &["/bin/nsworker", HOSTNAME],
        None,
        Some(USERNS_BASE),
    );
    let t = wait_ticks(&rootfs, 3, Duration::from_secs(10));
    assert!(t.iter().all(|(_, s)| s == "ok"), "before the dump: {t:?}");
    let map_before = std::fs::read_to_string(format!("/proc/{}/uid_map", c.pid)).unwrap();

    dump(&images, c.pid, &["--ext-mount-map", "/dev/null:devnull"]).assert_success();
    c.assert_gone(Duration::from_secs(10));
    let at_dump = ticks(&rootfs);

    // As crit reads them: the maps, and ids as the namespace numbers them.
    let set = crit_decode_all(&images);
    let ids = &set.entries("ids-1.img")[0];
    let userns = &set.entries(&format!("userns-{}.img", ids["user_ns_id"]))[0];
    assert_eq!(userns["uid_map"][0]["first"], 0);
    assert_eq!(userns["uid_map"][0]["lower_first"], USERNS_BASE);
    assert_eq!(userns["uid_map"][0]["count"], 65536);
    assert_eq!(userns["gid_map"][0]["lower_first"], USERNS_BASE);
    let creds = &set.entries("core-1.img")[0]["thread_core"]["creds"];
    assert_eq!(
        (creds["uid"].as_u64(), creds["gid"].as_u64()),
        (Some(0), Some(0)),
        "the init was the namespace's root: {creds}"
    );
    let shm = set.entries(&format!("ipcns-shm-{}.img", ids["ipc_ns_id"]));
    assert_eq!(
        shm[0]["desc"]["uid"], 0,
        "the segment's owner as the namespace sees it"
    );

    let pid = c.restore_from(&images, &dir.join("pid"), &[]);

    let after = wait_ticks(&rootfs, at_dump.len() + 3, Duration::from_secs(10));
    assert_eq!(
        after[at_dump.len()].0,
        at_dump.last().expect("ticks before the dump").0 + 1,
        "the first tick after restore follows the last before the dump"
    );
    let bad: Vec<_> = after.iter().filter(|(_, s)| s != "ok").collect();
    assert!(bad.is_empty(), "the workload found {bad:?}");

    let mine = std::fs::read_link("/proc/self/ns/user").unwrap();
    let its = std::fs::read_link(format!("/proc/{pid}/ns/user")).unwrap();
    assert_ne!(mine, its, "the restored init has its own user namespace");
    assert_eq!(
        std::fs::read_to_string(format!("/proc/{pid}/uid_map")).unwrap(),
        map_before,
        "the same uid map"
    );
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let uid = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    assert_eq!(
        uid.split_whitespace().nth(1),
        Some(USERNS_BASE.to_string().as_str()),
        "the init is the namespace's root again (host uid {USERNS_BASE}): {uid}"
    );
    use std::os::unix::fs::MetadataExt;
    let note = std::fs::metadata(format!("/proc/{pid}/root/tmp/note")).unwrap();
    assert_eq!(
        (note.uid(), note.gid()),
        (USERNS_BASE, USERNS_BASE),
        "the tmpfs file keeps its owner"
    );
    let ipcs = c.nsenter(&["-i"], &["ipcs", "-m"]);
    assert!(ipcs.contains("0x0057a515"), "the segment is back: {ipcs}");
}

#[test]
fn restoring_a_container_without_its_root_or_an_external_mount_fails_by_name_and_leaves_nothing() {
    let dir = ScratchDir::new("container-refused");
    let images = dir.subdir("images");
    let mut cg = TestCgroups::new("ctno");
    let c = start(&dir, &mut cg);
    let rootfs = c.rootfs.clone();

    // A mount from outside the container that is not declared external: refused, and
    // the container runs on.
    let refused = dump(&images, c.pid, &[]);
    refused.assert_clean_failure();
    assert!(
        refused.stderr.contains("/dev/null") && refused.stderr.contains("external"),
        "the dump names the mount and the way out: {}",
        refused.stderr
    );
    let n = ticks(&rootfs).len();
    wait_ticks(&rootfs, n + 2, Duration::from_secs(10));

    // A POSIX message queue (not dumped): refused by name, and the container runs on.
    c.nsenter(&["-m", "-i"], &["touch", "/dev/mqueue/stasis-q"]);
    let refused = dump(&images, c.pid, &["--ext-mount-map", "/dev/null:devnull"]);
    refused.assert_clean_failure();
    assert!(
        refused.stderr.contains("POSIX message queues") && refused.stderr.contains("stasis-q"),
        "the dump names the queue: {}",
        refused.stderr
    );
    let n = ticks(&rootfs).len();
    wait_ticks(&rootfs, n + 2, Duration::from_secs(10));
    c.nsenter(&["-m", "-i"], &["rm", "/dev/mqueue/stasis-q"]);

    dump(&images, c.pid, &["--ext-mount-map", "/dev/null:devnull"]).assert_success();
    c.assert_gone(Duration::from_secs(10));
    let listing = |d: &Path| {
        let mut v: Vec<_> = std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .filter(|n| !n.to_string_lossy().ends_with(".log"))
            .collect();
        v.sort();
        v
    };
    let before = listing(&images);

    let no_root = restore(&images, &["--ext-mount-map", "devnull:/dev/null"]);
    no_root.assert_clean_failure();
    assert!(no_root.stderr.contains("--root"), "{}", no_root.stderr);

    let no_map = restore(&images, &["--root", rootfs.to_str().unwrap()]);
    no_map.assert_clean_failure();
    assert!(
        no_map.stderr.contains("/dev/null") && no_map.stderr.contains("devnull"),
        "names the external mount and its key: {}",
        no_map.stderr
    );

    let gone = dir.join("no-such-file");
    let missing = restore(
        &images,
        &[
            "--root",
            rootfs.to_str().unwrap(),
            "--ext-mount-map",
            &format!("devnull:{}", gone.display()),
        ],
    );
    missing.assert_clean_failure();
    assert!(
        missing.stderr.contains("no-such-file"),
        "{}",
        missing.stderr
    );
    assert_eq!(listing(&images), before, "images untouched");

    // A tmpfs whose contents cannot be unpacked fails inside the new mount namespace,
    // after the fork: the half-built container is killed and nothing stays mounted.
    let broken = dir.subdir("broken");
    for name in &before {
        std::fs::copy(images.join(name), broken.join(name)).unwrap();
    }
    let tarball = before
        .iter()
        .map(|n| n.to_string_lossy().into_owned())
        .find(|n| n.starts_with("tmpfs-dev-"))
        .expect("a tmpfs tarball");
    stasis_e2e::images::truncate(&broken.join(&tarball), 10);
    let late = restore(
        &broken,
        &[
            "--root",
            rootfs.to_str().unwrap(),
            "--ext-mount-map",
            "devnull:/dev/null",
        ],
    );
    late.assert_clean_failure();
    assert!(
        late.stderr.contains(&tarball),
        "names the tarball: {}",
        late.stderr
    );
    assert!(
        host_mounts_under(&rootfs).is_empty(),
        "no mount leaks: {:?}",
        host_mounts_under(&rootfs)
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while !stasis_e2e::proc::live_pids_with_arg("/bin/nsworker").is_empty() {
        assert!(Instant::now() < deadline, "a container process is left");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A busybox bundle whose container (host name runc-ct) counts on stdout and in
/// /data/ticks, with a file on its /dev/shm.
fn runc_bundle(at: &Path) {
    stasis_e2e::runtime_env::runc_bundle_running(
        at,
        "echo kept-in-shm > /dev/shm/marker; i=0; while true; do i=$((i+1)); echo \"tick $i ok\" >> /data/ticks; echo \"tick $i\"; sleep 0.1; done",
    );
    let path = at.join("config.json");
    let mut spec: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    spec["hostname"] = "runc-ct".into();
    std::fs::write(&path, serde_json::to_string_pretty(&spec).unwrap()).unwrap();
}

fn copy_tree(from: &Path, to: &Path) {
    let status = std::process::Command::new("cp")
        .args(["-a", "--"])
        .arg(from)
        .arg(to)
        .status()
        .expect("cp");
    assert!(
        status.success(),
        "cp -a {} {}",
        from.display(),
        to.display()
    );
}

#[test]
fn a_runc_container_checkpointed_through_runc_comes_back_as_a_new_container_in_new_cgroups() {
    let dir = ScratchDir::new("container-runc");
    stasis_e2e::proc::become_subreaper();
    let bundle = dir.subdir("bundle");
    runc_bundle(&bundle);
    let log = dir.join("stdout.log");
    let mut runc = Runc::new(&dir);
    runc.detached(&bundle, "ct1", &["run", "-d"], &log);
    let pid = runc.pid(&bundle, "ct1");
    wait_ticks(&bundle.join("rootfs"), 3, Duration::from_secs(10));

    // First with --leave-running: the container is dumped and runs on.
    let early = dir.join("images-early");
    runc.run(
        &bundle,
        &[
            "checkpoint",
            "--leave-running",
            "--image-path",
            early.to_str().unwrap(),
            "--work-path",
            dir.join("work-early").to_str().unwrap(),
            "ct1",
        ],
    );
    assert!(
        early.join("inventory.img").is_file(),
        "--leave-running wrote the images"
    );
    assert_eq!(
        runc.pid(&bundle, "ct1"),
        pid,
        "still running after --leave-running"
    );
    let n = ticks(&bundle.join("rootfs")).len();
    wait_ticks(&bundle.join("rootfs"), n + 3, Duration::from_secs(10));

    // runc drives stasis as its criu: swrk, with runc's own options (root, ext_mnt for
    // every cgroup controller and masked path, freeze_cgroup, manage_cgroups, empty_ns).
    let images = dir.join("images");
    let work = dir.join("work");
    runc.run(
        &bundle,
        &[
            "checkpoint",
            "--image-path",
            images.to_str().unwrap(),
            "--work-path",
            work.to_str().unwrap(),
            "ct1",
        ],
    );
    // The dumped init is our child (a subreaper): reap it, then runc forgets it.
    if let Err(e) = stasis_e2e::proc::wait_gone(pid, Duration::from_secs(10)) {
        panic!("the checkpointed container init {pid}: {e}");
    }
    let _ = runc.run(&bundle, &["delete", "-f", "ct1"]);
    let at_dump = ticks(&bundle.join("rootfs"));
    let last = at_dump.last().expect("ticks before the checkpoint").0;
    let set = crit_decode_all(&images);
    assert_eq!(set.pstree()[0].0, 1, "the container's init is pid 1");

    // A new container directory (bundle copy, new id: new runc state and cgroup path).
    let bundle2 = dir.join("bundle2");
    copy_tree(&bundle, &bundle2);
    runc.detached(
        &bundle2,
        "ct2",
        &[
            "restore",
            "-d",
            "--image-path",
            images.to_str().unwrap(),
            "--work-path",
            work.to_str().unwrap(),
        ],
        &log,
    );
    let pid2 = runc.pid(&bundle2, "ct2");
    let after = wait_ticks(
        &bundle2.join("rootfs"),
        at_dump.len() + 3,
        Duration::from_secs(10),
    );
    assert_eq!(
        after[at_dump.len()].0,
        last + 1,
        "the restored container continues from its last tick"
    );
    assert_eq!(
        cgroup_of(pid2, "cpu"),
        "/ct2",
        "restored into the new container's cgroup"
    );
    let status = std::fs::read_to_string(format!("/proc/{pid2}/status")).unwrap();
    assert!(
        status
            .lines()
            .any(|l| l.starts_with("NSpid:") && l.ends_with("\t1")),
        "PID 1 in its namespace"
    );
    // Its stdout is the new pipe runc handed over (inherit_fd), and runc manages it.
    let deadline = Instant::now() + Duration::from_secs(10);
    let wanted = format!("tick {}", last + 2);
    while !std::fs::read_to_string(&log)
        .unwrap_or_default()
        .contains(&wanted)
    {
        assert!(
            Instant::now() < deadline,
            "no {wanted:?} on the restored stdout pipe"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        runc.run(&bundle2, &["exec", "ct2", "hostname"]).trim(),
        "runc-ct"
    );
    // Its /dev/shm (a tmpfs of the container) kept its files.
    assert_eq!(
        std::fs::read_to_string(format!("/proc/{pid2}/root/dev/shm/marker")).unwrap(),
        "kept-in-shm\n"
    );
    runc.run(&bundle2, &["kill", "ct2", "KILL"]);
    if let Err(e) = stasis_e2e::proc::wait_gone(pid2, Duration::from_secs(10)) {
        panic!("the restored container init {pid2}: {e}");
    }
    runc.run(&bundle2, &["delete", "ct2"]);
    assert!(host_mounts_under(dir.path()).is_empty(), "no mount left");
}

/// A network namespace the test owns (`ip netns add`), deleted on drop.
struct NamedNetns(String);

impl NamedNetns {
    fn new(name: String) -> NamedNetns {
        let out = std::process::Command::new("ip")
            .args(["netns", "add", &name])
            .output()
            .expect("ip netns add");
        assert!(out.status.success(), "ip netns add {name}: {out:?}");
        NamedNetns(name)
    }

    fn path(&self) -> std::path::PathBuf {
        Path::new("/run/netns").join(&self.0)
    }
}

impl Drop for NamedNetns {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", &self.0])
            .output();
    }
}

#[test]
fn a_container_in_its_runtime_s_network_namespace_rejoins_that_namespace() {
    use std::os::unix::fs::MetadataExt;
    let dir = ScratchDir::new("container-extnet");
    let images = dir.subdir("images");
    let netns = NamedNetns::new(format!("stasis-x{}", std::process::id()));
    let ino = std::fs::metadata(netns.path()).unwrap().ino();
    let rootfs = dir.subdir("rootfs");
    busybox_rootfs(&rootfs, &["nsworker_static"]);
    let mut c = Container::start_in(
        &rootfs,
        HOSTNAME,
        &["/bin/nsworker", HOSTNAME],
        Some(&netns.path()),
    );
    let netns_of = |pid: i32| {
        std::fs::metadata(format!("/proc/{pid}/ns/net"))
            .unwrap()
            .ino()
    };
    assert_eq!(
        netns_of(c.pid),
        ino,
        "the container runs in the runtime's netns"
    );
    wait_ticks(&rootfs, 3, Duration::from_secs(10));

    // As runc declares it: external net[INODE]:KEY. Nothing of it is dumped.
    let external = format!("net[{ino}]:extRootNetNS");
    dump(
        &images,
        c.pid,
        &[
            "--ext-mount-map",
            "/dev/null:devnull",
            "--external",
            &external,
        ],
    )
    .assert_success();
    c.assert_gone(Duration::from_secs(10));
    let at_dump = ticks(&rootfs);
    let set = crit_decode_all(&images);
    let net_id = &set.entries("ids-1.img")[0]["net_ns_id"];
    assert_eq!(
        set.entries(&format!("netns-{net_id}.img"))[0]["ext_key"],
        "extRootNetNS"
    );
    assert!(
        !images.join(format!("netdev-{net_id}.img")).exists(),
        "an external namespace's links are not dumped"
    );

    // Without the namespace, the restore is refused naming the key.
    let refused = restore(&images, &["--root", rootfs.to_str().unwrap()]);
    refused.assert_clean_failure();
    assert!(
        refused.stderr.contains("extRootNetNS"),
        "{}",
        refused.stderr
    );

    // The runtime hands it over as an inherited descriptor, as runc does.
    let line = format!(
        "exec 3<{}; exec {} restore -D {} -d -o restore.log -v4 --root {} --ext-mount-map devnull:/dev/null --inherit-fd fd[3]:extRootNetNS --pidfile {}",
        netns.path().display(),
        stasis_e2e::stasis_bin().display(),
        images.display(),
        rootfs.display(),
        dir.join("pid").display()
    );
    let out = std::process::Command::new("sh")
        .args(["-c", &line])
        .output()
        .expect("sh");
    assert!(
        out.status.success(),
        "{line}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pid: i32 = std::fs::read_to_string(dir.join("pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    c.restored_as(pid);
    assert_eq!(
        netns_of(pid),
        ino,
        "the restored init is back in the runtime's netns"
    );
    let after = wait_ticks(&rootfs, at_dump.len() + 3, Duration::from_secs(10));
    assert_eq!(after[at_dump.len()].0, at_dump.last().unwrap().0 + 1);
    assert!(after.iter().all(|(_, s)| s == "ok"), "{after:?}");
}
