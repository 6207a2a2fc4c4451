//! Cgroups across a checkpoint, on this hybrid host (v1 controllers under
//! `/sys/fs/cgroup/<ctrl>`, cgroup2 at `/sys/fs/cgroup/unified`):
//!
//! * a counter in v1 cgroups with limits is dumped, its cgroups removed, and restored
//!   into recreated cgroups with the same limits — or, with `--cgroup-root`, under a new
//!   path (a new container ID);
//! * a cgroup that already exists belongs to the runtime: `soft` keeps its limits,
//!   `strict` refuses it, `full` writes the image's;
//! * `--freeze-cgroup` freezes a v2 and a v1 freezer cgroup before the seize, and a dump
//!   that fails after the freeze leaves the cgroup thawed and the task running.
//!
//! Every cgroup a test creates — or makes stasis create — is removed by a guard, the
//! test passing or not.

use std::path::Path;
use std::time::Duration;

use stasis_e2e::cgroups::{cgroup_of, move_in, read, rmdir_patiently, write, TestCgroups, ROOT};
use stasis_e2e::counter::{filled_checksum, verify};
use stasis_e2e::log::{assert_ticks_continuous, ticks};
use stasis_e2e::{crit_decode_all, dump, proc, restore, ScratchDir, Workload, LINE_TIMEOUT};

/// The limits of test (a) and (b), per v1 hierarchy.
const LIMITS: &[(&str, &[(&str, &str)])] = &[
    ("cpuset", &[("cpuset.cpus", "0"), ("cpuset.mems", "0")]),
    (
        "cpu",
        &[
            ("cpu.cfs_period_us", "100000"),
            ("cpu.cfs_quota_us", "50000"),
            ("cpu.shares", "512"),
        ],
    ),
    ("memory", &[("memory.limit_in_bytes", "268435456")]),
    ("pids", &[("pids.max", "32")]),
];

/// Starts a counter in the test's cgroups, created with [`LIMITS`]; returns it with
/// its memory checksum.
fn counter_in_limited_cgroups(dir: &ScratchDir, cg: &mut TestCgroups) -> (Workload, String) {
    let mut made = Vec::new();
    for (h, props) in LIMITS {
        made.push(cg.create(h, props));
    }
    let w = Workload::start(
        "counter",
        &dir.join("counter.log"),
        &["16", "7"],
        dir.path(),
    );
    for d in &made {
        move_in(d, w.pid());
    }
    let sum = filled_checksum(&w);
    w.wait_ticks_after(0, 3, LINE_TIMEOUT);
    (w, sum)
}

/// The restored counter continues from its last tick with intact memory.
fn assert_continues(w: &Workload, at_dump: &[String], sum: &str) {
    assert!(
        w.is_alive(),
        "no process with pid {} after restore: {}",
        w.pid(),
        w.how_it_ended()
    );
    let last = assert_ticks_continuous(at_dump);
    w.wait_ticks_after(at_dump.len(), 3, LINE_TIMEOUT);
    let lines = w.lines();
    assert_eq!(
        ticks(&lines[at_dump.len()..]).first().map(|t| t.1),
        Some(last + 1),
        "the first tick after restore must follow the last one before the dump"
    );
    assert_eq!(verify(w).checksum, sum, "memory after restore");
}

/// The set id of `cgroup.img` whose `hierarchy` member is `path`.
fn set_with(set: &stasis_e2e::ImageSet, hierarchy: &str, path: &str) -> u64 {
    let cg = &set.entries("cgroup.img")[0];
    cg["sets"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|s| {
            s["ctls"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| c["name"].as_str() == Some(hierarchy) && c["path"].as_str() == Some(path))
        })
        .and_then(|s| s["id"].as_u64())
        .unwrap_or_else(|| panic!("cgroup.img has no set with {hierarchy}:{path}: {cg}"))
}

/// The recorded value of `prop` in `hierarchy`'s cgroup `dir_name`.
fn recorded(set: &stasis_e2e::ImageSet, hierarchy: &str, dir_name: &str, prop: &str) -> String {
    let cg = &set.entries("cgroup.img")[0];
    let ctl = cg["controllers"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["cnames"][0].as_str() == Some(hierarchy))
        .unwrap_or_else(|| panic!("cgroup.img has no {hierarchy} controller: {cg}"));
    let dir = ctl["dirs"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|d| d["dir_name"].as_str() == Some(dir_name))
        .unwrap_or_else(|| panic!("no dir {dir_name} in {ctl}"));
    dir["properties"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["name"].as_str() == Some(prop))
        .and_then(|p| p["value"].as_str())
        .unwrap_or_else(|| panic!("no {prop} in {dir}"))
        .to_string()
}

#[test]
fn a_counter_in_v1_cgroups_with_limits_comes_back_into_recreated_cgroups_with_the_same_limits() {
    let dir = ScratchDir::new("cgroups-v1-limits");
    let images = dir.subdir("images");
    let mut cg = TestCgroups::new("limits");
    let (w, sum) = counter_in_limited_cgroups(&dir, &mut cg);
    let pid = w.pid();
    let path = cg.path();

    dump(&images, pid, &[]).assert_success();
    w.assert_gone(Duration::from_secs(10));
    let at_dump = w.lines();

    let set = crit_decode_all(&images);
    let id = set_with(&set, "cpu", &path);
    assert_eq!(
        set_with(&set, "memory", &path),
        id,
        "one set holds every hierarchy of the task"
    );
    // Debian's crit (3.17) shows the task core's cg_set; thread_core.cg_set is newer.
    assert_eq!(
        set.core(pid).pointer("/tc/cg_set").and_then(|v| v.as_u64()),
        Some(id),
        "core-{pid}.img tc.cg_set"
    );
    let root_set = set.entries("inventory.img")[0]["root_cg_set"].as_u64();
    assert!(
        root_set.is_some() && root_set != Some(id),
        "inventory root_cg_set is stasis's own set: {root_set:?}"
    );
    assert_eq!(recorded(&set, "cpu", &cg.name, "cpu.cfs_quota_us"), "50000");
    assert_eq!(
        recorded(&set, "memory", &cg.name, "memory.limit_in_bytes"),
        "268435456"
    );
    assert_eq!(recorded(&set, "pids", &cg.name, "pids.max"), "32");

    // The container is gone, its cgroups with it.
    cg.remove_all();
    restore(&images, &[]).assert_success();
    for (h, props) in LIMITS {
        assert_eq!(cgroup_of(pid, h), path, "restored pid {pid}'s {h} cgroup");
        for (k, v) in *props {
            let f = Path::new(ROOT).join(h).join(&cg.name).join(k);
            assert_eq!(read(&f), *v, "{} after restore", f.display());
        }
    }
    assert_eq!(
        cgroup_of(pid, ""),
        cgroup_of(std::process::id() as i32, ""),
        "v2 root: where it was"
    );
    assert_continues(&w, &at_dump, &sum);
}

#[test]
fn restore_with_cgroup_root_lands_the_counter_under_the_new_path_with_its_limits() {
    let dir = ScratchDir::new("cgroups-root");
    let images = dir.subdir("images");
    let mut cg = TestCgroups::new("root");
    let (w, sum) = counter_in_limited_cgroups(&dir, &mut cg);
    let pid = w.pid();
    dump(&images, pid, &[]).assert_success();
    w.assert_gone(Duration::from_secs(10));
    let at_dump = w.lines();
    cg.remove_all();

    let new = format!("{}-new", cg.name);
    cg.track_everywhere(&new);
    restore(&images, &["--cgroup-root", &format!("/{new}")]).assert_success();
    for (h, props) in LIMITS {
        assert_eq!(
            cgroup_of(pid, h),
            format!("/{new}"),
            "restored pid {pid}'s {h} cgroup"
        );
        for (k, v) in *props {
            let f = Path::new(ROOT).join(h).join(&new).join(k);
            assert_eq!(read(&f), *v, "{} after restore", f.display());
        }
        assert!(
            !Path::new(ROOT).join(h).join(&cg.name).exists(),
            "the old {h} cgroup came back"
        );
    }
    // Without a controller, the root applies to every hierarchy, v2 included.
    assert_eq!(cgroup_of(pid, "freezer"), format!("/{new}"));
    assert_eq!(cgroup_of(pid, ""), format!("/{new}"));
    assert_continues(&w, &at_dump, &sum);
}

#[test]
fn an_existing_cgroup_belongs_to_the_runtime_soft_keeps_its_limits_strict_refuses_it_full_rewrites_it(
) {
    let dir = ScratchDir::new("cgroups-modes");
    let images = dir.subdir("images");
    let mut cg = TestCgroups::new("modes");
    let pids = cg.create("pids", &[("pids.max", "64")]);
    let cpu = cg.create("cpu", &[("cpu.cfs_quota_us", "30000")]);
    let w = Workload::start("counter", &dir.join("counter.log"), &["4", "9"], dir.path());
    let pid = w.pid();
    move_in(&pids, pid);
    move_in(&cpu, pid);
    let sum = filled_checksum(&w);
    w.wait_ticks_after(0, 3, LINE_TIMEOUT);
    dump(&images, pid, &[]).assert_success();
    w.assert_gone(Duration::from_secs(10));

    // The runtime made the container's cgroups for the restore, with its own limits.
    write(&pids.join("pids.max"), "100");
    write(&cpu.join("cpu.cfs_quota_us"), "20000");

    let out = restore(&images, &["--manage-cgroups=strict"]);
    out.assert_clean_failure();
    assert!(
        out.stderr.contains(&cg.name) && out.stderr.contains("already exists"),
        "{out}"
    );
    assert!(!w.is_alive(), "strict refused, yet pid {pid} runs");
    assert_eq!(
        read(&pids.join("pids.max")),
        "100",
        "a refused restore changed the runtime's cgroup"
    );
    assert!(
        pids.exists() && cpu.exists(),
        "a refused restore removed cgroups it had not created"
    );

    let at_dump = w.lines();
    restore(&images, &[]).assert_success();
    assert_eq!(cgroup_of(pid, "pids"), cg.path());
    assert_eq!(
        read(&pids.join("pids.max")),
        "100",
        "soft wrote into the runtime's cgroup"
    );
    assert_eq!(
        read(&cpu.join("cpu.cfs_quota_us")),
        "20000",
        "soft wrote into the runtime's cgroup"
    );
    assert_continues(&w, &at_dump, &sum);

    // Dumped again (the cgroups now hold 100 and 20000), the runtime changes them, and
    // full puts the recorded values back.
    std::fs::remove_dir_all(&images).unwrap();
    std::fs::create_dir(&images).unwrap();
    dump(&images, pid, &[]).assert_success();
    w.assert_gone(Duration::from_secs(10));
    let at_dump = w.lines();
    write(&pids.join("pids.max"), "7");
    restore(&images, &["--manage-cgroups", "full"]).assert_success();
    assert_eq!(
        read(&pids.join("pids.max")),
        "100",
        "full restores the recorded limit"
    );
    assert_eq!(read(&cpu.join("cpu.cfs_quota_us")), "20000");
    assert_continues(&w, &at_dump, &sum);
}

/// The order of the freezer's steps in a dump log: frozen, seized while frozen, thawed.
#[track_caller]
fn assert_froze_then_seized_then_thawed(log: &Path, freezer: &Path) {
    let text = read(log);
    let at = |needle: String| {
        text.lines()
            .position(|l| l.contains(&needle))
            .unwrap_or_else(|| panic!("no line with {needle:?} in {}:\n{text}", log.display()))
    };
    let froze = at(format!("froze cgroup {}", freezer.display()));
    let seized = at(format!(
        "interrupted 1 threads of frozen cgroup {}",
        freezer.display()
    ));
    let thawed = at(format!("thawed cgroup {}", freezer.display()));
    assert!(
        froze < seized && seized < thawed,
        "froze at line {froze}, seized at {seized}, thawed at {thawed}"
    );
}

/// The task runs on, untraced, neither stopped nor frozen, after a failed dump.
fn assert_running(w: &Workload, freezer_file: &Path, thawed: &str) {
    assert_eq!(
        read(freezer_file),
        thawed,
        "{} after the failed dump",
        freezer_file.display()
    );
    assert!(
        w.is_alive(),
        "the dump failed, yet the process {}",
        w.how_it_ended()
    );
    assert_eq!(proc::tracer_pid(w.pid()), Some(0), "left ptrace-attached");
    let n = w.lines().len();
    w.wait_ticks_after(n, 5, LINE_TIMEOUT);
    let st = proc::stat(w.pid()).unwrap();
    assert!(
        st.state == 'S' || st.state == 'R',
        "left in state {}",
        st.state
    );
    assert_ticks_continuous(&w.lines());
}

/// `--freeze-cgroup` on `hierarchy`'s test cgroup: a dump that leaves the task running,
/// a dump that fails after the freeze, then a dump and a restore back into the cgroup.
fn freezer_round(tag: &str, hierarchy: &str, freezer_file: &str, thawed: &str) {
    let dir = ScratchDir::new(&format!("cgroups-freezer-{tag}"));
    let mut cg = TestCgroups::new(tag);
    let fz = cg.create(hierarchy, &[]);
    let w = Workload::start("counter", &dir.join("counter.log"), &["4", "3"], dir.path());
    let pid = w.pid();
    move_in(&fz, pid);
    let sum = filled_checksum(&w);
    w.wait_ticks_after(0, 3, LINE_TIMEOUT);
    let freeze = ["--freeze-cgroup", fz.to_str().unwrap()];

    let images = dir.subdir("running");
    dump(&images, pid, &[&freeze[..], &["--leave-running"]].concat()).assert_success();
    assert_froze_then_seized_then_thawed(&images.join("dump.log"), &fz);
    assert_running(&w, &fz.join(freezer_file), thawed);

    // inventory.img, written last, cannot be: the dump fails after the freeze.
    let images = dir.subdir("failing");
    std::fs::create_dir(images.join("inventory.img")).unwrap();
    let out = dump(&images, pid, &freeze);
    out.assert_clean_failure();
    assert_froze_then_seized_then_thawed(&images.join("dump.log"), &fz);
    assert_running(&w, &fz.join(freezer_file), thawed);
    assert_eq!(verify(&w).checksum, sum);

    let images = dir.subdir("restored");
    dump(&images, pid, &freeze).assert_success();
    w.assert_gone(Duration::from_secs(10));
    let at_dump = w.lines();
    restore(&images, &[]).assert_success();
    assert_eq!(
        cgroup_of(
            pid,
            if hierarchy == "unified" {
                ""
            } else {
                hierarchy
            }
        ),
        cg.path()
    );
    assert_eq!(read(&fz.join(freezer_file)), thawed);
    assert_continues(&w, &at_dump, &sum);
}

#[test]
fn v2_freeze_cgroup_freezes_before_the_seize_and_a_failed_dump_leaves_the_cgroup_thawed_and_the_task_running(
) {
    freezer_round("v2freezer", "unified", "cgroup.freeze", "0");
}

#[test]
fn v1_freezer_cgroup_freezes_before_the_seize_and_a_failed_dump_leaves_the_cgroup_thawed_and_the_task_running(
) {
    freezer_round("v1freezer", "freezer", "freezer.state", "THAWED");
}

#[test]
fn freeze_cgroup_that_does_not_hold_the_task_is_refused_by_path_and_leaves_it_running() {
    let dir = ScratchDir::new("cgroups-freezer-other");
    let mut cg = TestCgroups::new("otherfreezer");
    let fz = cg.create("freezer", &[]);
    let w = Workload::start("counter", &dir.join("counter.log"), &["4", "5"], dir.path());
    w.wait_ticks_after(0, 3, LINE_TIMEOUT);
    let out = dump(
        &dir.subdir("images"),
        w.pid(),
        &["--freeze-cgroup", fz.to_str().unwrap()],
    );
    out.assert_clean_failure();
    assert!(out.stderr.contains(fz.to_str().unwrap()), "{out}");
    assert_running(&w, &fz.join("freezer.state"), "THAWED");
}

#[test]
fn a_restore_that_fails_after_creating_cgroups_removes_exactly_those_and_leaves_no_process() {
    use stasis_images::{names, pb, ImageDir, ImageKind};
    let dir = ScratchDir::new("cgroups-rollback");
    let images = dir.subdir("images");
    let mut cg = TestCgroups::new("rollback");
    let cpu = cg.create("cpu", &[("cpu.cfs_quota_us", "40000")]);
    let pids = cg.create("pids", &[("pids.max", "50")]);
    let w = Workload::start(
        "counter",
        &dir.join("counter.log"),
        &["4", "11"],
        dir.path(),
    );
    let pid = w.pid();
    move_in(&cpu, pid);
    move_in(&pids, pid);
    w.wait_ticks_after(0, 3, LINE_TIMEOUT);
    dump(&images, pid, &[]).assert_success();
    w.assert_gone(Duration::from_secs(10));

    // The pids cgroup is gone (stasis will create it); the cpu one is the runtime's. The
    // recorded pids.max is one the kernel refuses: the restore fails once the task is in
    // its cgroups and rebuilt, as the limits are written.
    rmdir_patiently(&pids).unwrap();
    let img = ImageDir::open(&images).unwrap();
    let mut entry: pb::CgroupEntry = img.read_one(ImageKind::CGROUP, names::CGROUP).unwrap();
    let prop = entry
        .controllers
        .iter_mut()
        .filter(|c| c.cnames == ["pids"])
        .flat_map(|c| c.dirs.iter_mut())
        .flat_map(|d| d.properties.iter_mut())
        .find(|p| p.name == "pids.max")
        .expect("pids.max recorded");
    prop.value = "not-a-number".into();
    img.write_one(ImageKind::CGROUP, names::CGROUP, &entry)
        .unwrap();

    let out = restore(&images, &[]);
    out.assert_clean_failure();
    assert!(out.stderr.contains("pids.max"), "{out}");
    std::thread::sleep(Duration::from_millis(200));
    assert!(!w.is_alive(), "the failed restore left pid {pid} behind");
    assert!(
        !pids.exists(),
        "the pids cgroup stasis created was not removed"
    );
    assert!(cpu.exists(), "the runtime's cpu cgroup was removed");
    assert_eq!(
        read(&cpu.join("cpu.cfs_quota_us")),
        "40000",
        "the runtime's cgroup was written to"
    );
    assert_eq!(
        read(&cpu.join("cgroup.procs")),
        "",
        "a task was left in the runtime's cgroup"
    );
}
