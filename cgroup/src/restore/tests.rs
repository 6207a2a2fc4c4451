//! The restore's order of operations, against the recording fake.

use super::*;
use crate::fake::FakeFs;

const MOUNTS: &str = "\
32 31 0:29 / /cg/cpu rw - cgroup cgroup rw,cpu
34 31 0:31 / /cg/cpuset rw - cgroup cgroup rw,cpuset
35 31 0:32 / /cg/memory rw - cgroup cgroup rw,memory
36 31 0:33 / /cg/devices rw - cgroup cgroup rw,devices
39 31 0:36 / /cg/pids rw - cgroup cgroup rw,pids
41 31 0:38 / /cg/unified rw - cgroup2 cgroup2 rw
";

fn hier() -> Hierarchies {
    Hierarchies::parse(MOUNTS, "mountinfo").unwrap()
}

fn prop(name: &str, value: &str) -> pb::CgroupPropEntry {
    pb::CgroupPropEntry {
        name: name.into(),
        value: value.into(),
        perms: None,
    }
}

fn dir(
    name: &str,
    props: Vec<pb::CgroupPropEntry>,
    children: Vec<pb::CgroupDirEntry>,
) -> pb::CgroupDirEntry {
    pb::CgroupDirEntry {
        dir_name: name.into(),
        children,
        properties: props,
        dir_perms: None,
    }
}

fn ctl(cname: &str, dirs: Vec<pb::CgroupDirEntry>) -> pb::CgControllerEntry {
    pb::CgControllerEntry {
        cnames: vec![cname.into()],
        dirs,
        is_threaded: None,
    }
}

fn member(name: &str, path: &str) -> pb::CgMemberEntry {
    pb::CgMemberEntry {
        name: name.into(),
        path: path.into(),
        cgns_prefix: None,
    }
}

/// A container in `/ct` of cpu (with an empty child), cpuset, memory and pids, at the
/// root of cgroup v2.
fn image() -> pb::CgroupEntry {
    pb::CgroupEntry {
        sets: vec![pb::CgSetEntry {
            id: 2,
            ctls: vec![
                member("", "/"),
                member("cpu", "/ct"),
                member("cpuset", "/ct"),
                member("memory", "/ct"),
                member("pids", "/ct"),
            ],
        }],
        controllers: vec![
            ctl("", vec![dir("", vec![], vec![])]),
            ctl(
                "cpu",
                vec![dir(
                    "ct",
                    vec![
                        prop("cpu.shares", "512"),
                        prop("cpu.cfs_period_us", "100000"),
                        prop("cpu.cfs_quota_us", "50000"),
                    ],
                    vec![dir("sub", vec![prop("cpu.shares", "100")], vec![])],
                )],
            ),
            ctl(
                "cpuset",
                vec![dir(
                    "ct",
                    vec![
                        prop("cpuset.cpus", "0-1"),
                        prop("cpuset.mems", "0"),
                        prop("cpuset.cpu_exclusive", "0"),
                    ],
                    vec![],
                )],
            ),
            ctl(
                "memory",
                vec![dir(
                    "ct",
                    vec![
                        prop("memory.limit_in_bytes", "67108864"),
                        prop("memory.memsw.limit_in_bytes", "134217728"),
                        prop("memory.swappiness", "60"),
                        prop("memory.use_hierarchy", "1"),
                    ],
                    vec![],
                )],
            ),
            ctl(
                "pids",
                vec![dir("ct", vec![prop("pids.max", "64")], vec![])],
            ),
        ],
    }
}

/// The host's hierarchy roots.
fn host() -> FakeFs {
    let fs = FakeFs::new();
    for c in ["cpu", "memory", "devices", "pids", "unified"] {
        fs.dir(&format!("/cg/{c}"));
    }
    fs.file("/cg/cpuset/cpuset.cpus", "0-1\n")
        .file("/cg/cpuset/cpuset.mems", "0\n");
    fs
}

fn plan(mode: ManageMode, roots: &[CgroupRoot]) -> RestorePlan {
    RestorePlan::new(Some(image()), Some(1), mode, roots).unwrap()
}

/// Index of the first op containing `needle`.
#[track_caller]
fn at(ops: &[String], needle: &str) -> usize {
    ops.iter()
        .position(|o| o.contains(needle))
        .unwrap_or_else(|| panic!("no op {needle:?} in {ops:#?}"))
}

fn restore_all(fs: &FakeFs, plan: &RestorePlan) -> Result<()> {
    let mut p = plan.prepare(fs, &hier(), &[2])?;
    p.enter(2, 4242)?;
    p.apply_properties()?;
    p.keep();
    Ok(())
}

#[test]
fn soft_creates_missing_cgroups_cpuset_before_the_task_and_limits_after() {
    let fs = host();
    restore_all(&fs, &plan(ManageMode::Soft, &[])).unwrap();
    let ops = fs.ops();
    for d in [
        "/cg/cpu/ct",
        "/cg/cpu/ct/sub",
        "/cg/cpuset/ct",
        "/cg/memory/ct",
        "/cg/pids/ct",
    ] {
        assert!(fs.has_dir(d), "{d} not created: {ops:#?}");
    }
    // Parents before children.
    assert!(at(&ops, "mkdir /cg/cpu/ct") < at(&ops, "mkdir /cg/cpu/ct/sub"));
    // A cpuset takes tasks only once it has CPUs and memory nodes.
    let enter = at(&ops, "/cg/cpuset/ct/cgroup.procs = 4242");
    assert!(at(&ops, "write /cg/cpuset/ct/cpuset.cpus = 0-1") < enter);
    assert!(at(&ops, "write /cg/cpuset/ct/cpuset.mems = 0") < enter);
    assert!(at(&ops, "memory.use_hierarchy = 1") < at(&ops, "/cg/memory/ct/cgroup.procs"));
    // Limits come once the task is in, in the kernel's order.
    let last_enter = at(&ops, "/cg/pids/ct/cgroup.procs = 4242");
    let period = at(&ops, "cpu.cfs_period_us = 100000");
    assert!(last_enter < period && period < at(&ops, "cpu.cfs_quota_us = 50000"));
    assert!(
        at(&ops, "memory.limit_in_bytes = 67108864")
            < at(&ops, "memory.memsw.limit_in_bytes = 134217728")
    );
    assert!(last_enter < at(&ops, "pids.max = 64"));
    assert!(at(&ops, "write /cg/cpu/ct/sub/cpu.shares = 100") > last_enter);
    // The task joins the v2 root it was in; the root gets nothing else.
    assert!(ops.contains(&"write /cg/unified/cgroup.procs = 4242".to_string()));
    assert_eq!(
        ops.iter()
            .filter(|o| o.starts_with("write /cg/unified/"))
            .count(),
        1,
        "{ops:#?}"
    );
    assert!(
        !ops.iter().any(|o| o.contains("swappiness")),
        "the default swappiness is not written: {ops:#?}"
    );
}

#[test]
fn soft_never_writes_into_cgroups_that_already_exist() {
    let fs = host();
    for d in [
        "/cg/cpu/ct/sub",
        "/cg/cpuset/ct",
        "/cg/memory/ct",
        "/cg/pids/ct",
    ] {
        fs.dir(d);
    }
    restore_all(&fs, &plan(ManageMode::Soft, &[])).unwrap();
    let ops = fs.ops();
    assert!(
        ops.iter().all(|o| o.ends_with("/cgroup.procs = 4242")),
        "a runtime-owned cgroup was changed: {ops:#?}"
    );
    assert_eq!(ops.len(), 5, "one move per hierarchy: {ops:#?}");
}

#[test]
fn full_writes_properties_into_existing_cgroups_too() {
    let fs = host();
    for d in [
        "/cg/cpu/ct/sub",
        "/cg/cpuset/ct",
        "/cg/memory/ct",
        "/cg/pids/ct",
    ] {
        fs.dir(d);
    }
    restore_all(&fs, &plan(ManageMode::Full, &[])).unwrap();
    let ops = fs.ops();
    assert!(!ops.iter().any(|o| o.starts_with("mkdir")), "{ops:#?}");
    assert!(at(&ops, "cpuset.cpus = 0-1") < at(&ops, "/cg/cpuset/ct/cgroup.procs"));
    at(&ops, "cpu.cfs_quota_us = 50000");
    at(&ops, "pids.max = 64");
}

#[test]
fn strict_refuses_an_existing_cgroup_before_changing_anything() {
    let fs = host();
    fs.dir("/cg/memory/ct");
    let e = plan(ManageMode::Strict, &[])
        .prepare(&fs, &hier(), &[2])
        .err()
        .unwrap();
    assert!(
        matches!(&e, CgroupError::Exists { path } if path == Path::new("/cg/memory/ct")),
        "{e}"
    );
    assert!(fs.ops().is_empty(), "{:#?}", fs.ops());
    // Nothing there: strict creates everything.
    let fs = host();
    restore_all(&fs, &plan(ManageMode::Strict, &[])).unwrap();
    assert!(fs.has_dir("/cg/memory/ct"));
}

#[test]
fn none_and_props_need_the_cgroups_to_exist() {
    for mode in [ManageMode::None, ManageMode::Props] {
        let fs = host();
        let e = plan(mode, &[])
            .prepare(&fs, &hier(), &[2])
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.contains("/cg/cpu/ct does not exist") && e.contains(mode.name()),
            "{e}"
        );
        assert!(fs.ops().is_empty());
    }
    let fs = host();
    for d in [
        "/cg/cpu/ct/sub",
        "/cg/cpuset/ct",
        "/cg/memory/ct",
        "/cg/pids/ct",
    ] {
        fs.dir(d);
    }
    restore_all(&fs, &plan(ManageMode::None, &[])).unwrap();
    assert!(
        fs.ops().iter().all(|o| o.ends_with("cgroup.procs = 4242")),
        "{:#?}",
        fs.ops()
    );
    fs.clear_ops();
    restore_all(&fs, &plan(ManageMode::Props, &[])).unwrap();
    at(&fs.ops(), "pids.max = 64");
}

#[test]
fn ignore_touches_nothing_and_moves_no_task() {
    let fs = host();
    restore_all(&fs, &plan(ManageMode::Ignore, &[])).unwrap();
    assert!(fs.ops().is_empty(), "{:#?}", fs.ops());
}

#[test]
fn a_failure_before_the_task_runs_removes_every_created_cgroup_and_only_those() {
    let fs = host();
    fs.dir("/cg/pids/ct");
    fs.fail("/cg/memory/ct/memory.use_hierarchy");
    let e = plan(ManageMode::Soft, &[])
        .prepare(&fs, &hier(), &[2])
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("/cg/memory/ct/memory.use_hierarchy"), "{e}");
    let ops = fs.ops();
    let rmdirs: Vec<&String> = ops.iter().filter(|o| o.starts_with("rmdir")).collect();
    assert_eq!(
        rmdirs,
        [
            "rmdir /cg/memory/ct",
            "rmdir /cg/cpuset/ct",
            "rmdir /cg/cpu/ct/sub",
            "rmdir /cg/cpu/ct"
        ],
        "deepest first, the runtime's /cg/pids/ct untouched"
    );
    assert!(fs.has_dir("/cg/pids/ct"));
    for d in ["/cg/cpu/ct", "/cg/cpuset/ct", "/cg/memory/ct"] {
        assert!(!fs.has_dir(d), "{d} left behind");
    }
}

#[test]
fn a_failed_limit_write_after_the_move_also_removes_the_created_cgroups() {
    let fs = host();
    fs.fail("/cg/pids/ct/pids.max");
    let p = plan(ManageMode::Soft, &[]);
    {
        let mut prep = p.prepare(&fs, &hier(), &[2]).unwrap();
        prep.enter(2, 7).unwrap();
        let e = prep.apply_properties().unwrap_err().to_string();
        assert!(e.contains("/cg/pids/ct/pids.max"), "{e}");
        assert_eq!(prep.created().len(), 5);
    }
    assert!(!fs.has_dir("/cg/cpu/ct") && !fs.has_dir("/cg/pids/ct"));
}

#[test]
fn a_global_cgroup_root_moves_every_hierarchy_to_the_new_path() {
    let fs = host();
    let p = plan(ManageMode::Soft, &[(None, "/new".into())]);
    restore_all(&fs, &p).unwrap();
    let ops = fs.ops();
    for c in ["cpu", "cpuset", "memory", "pids", "unified"] {
        assert!(fs.has_dir(&format!("/cg/{c}/new")), "{c}: {ops:#?}");
        at(&ops, &format!("write /cg/{c}/new/cgroup.procs = 4242"));
    }
    assert!(fs.has_dir("/cg/cpu/new/sub"), "the tree moves along");
    at(&ops, "write /cg/cpu/new/cpu.cfs_quota_us = 50000");
    assert!(!fs.has_dir("/cg/cpu/ct"));
}

#[test]
fn a_new_cpuset_without_recorded_cpus_gets_its_parent_s() {
    let mut img = image();
    img.sets[0].ctls[2].path = "/".into();
    img.controllers[2].dirs = vec![dir("", vec![], vec![])];
    let p = RestorePlan::new(
        Some(img),
        Some(1),
        ManageMode::Soft,
        &[(None, "/new".into())],
    )
    .unwrap();
    let fs = host();
    restore_all(&fs, &p).unwrap();
    let ops = fs.ops();
    let enter = at(&ops, "/cg/cpuset/new/cgroup.procs");
    assert!(
        at(&ops, "write /cg/cpuset/new/cpuset.cpus = 0-1") < enter,
        "{ops:#?}"
    );
    assert!(
        at(&ops, "write /cg/cpuset/new/cpuset.mems = 0") < enter,
        "{ops:#?}"
    );
}

#[test]
fn a_controller_root_applies_to_its_hierarchy_only() {
    let fs = host();
    let p = plan(
        ManageMode::Soft,
        &[
            (Some("cpu".into()), "/x/y".into()),
            (Some(String::new()), "/v2".into()),
        ],
    );
    restore_all(&fs, &p).unwrap();
    assert!(fs.has_dir("/cg/cpu/x") && fs.has_dir("/cg/cpu/x/y") && fs.has_dir("/cg/cpu/x/y/sub"));
    assert!(fs.has_dir("/cg/unified/v2"));
    assert!(fs.has_dir("/cg/memory/ct") && !fs.has_dir("/cg/memory/x"));
    at(&fs.ops(), "write /cg/cpu/x/y/cgroup.procs = 4242");
}

#[test]
fn missing_ancestors_of_a_new_root_are_created_and_removed_on_failure() {
    let fs = host();
    fs.fail("/cg/pids/a/b/pids.max");
    let p = plan(ManageMode::Soft, &[(None, "/a/b".into())]);
    let e = restore_all(&fs, &p).unwrap_err().to_string();
    assert!(e.contains("pids.max"), "{e}");
    let ops = fs.ops();
    let exact = |op: &str| {
        ops.iter()
            .position(|o| o == op)
            .unwrap_or_else(|| panic!("no {op:?} in {ops:#?}"))
    };
    assert!(exact("mkdir /cg/pids/a") < exact("mkdir /cg/pids/a/b"));
    assert!(
        exact("rmdir /cg/pids/a/b") < exact("rmdir /cg/pids/a"),
        "deepest first"
    );
    for c in ["cpu", "cpuset", "memory", "pids", "unified"] {
        assert!(!fs.has_dir(&format!("/cg/{c}/a")), "{c}: {ops:#?}");
    }
}

#[test]
fn conflicting_roots_for_one_hierarchy_are_refused() {
    let e = RestorePlan::new(
        Some(image()),
        Some(1),
        ManageMode::Soft,
        &[
            (Some("cpu".into()), "/a".into()),
            (Some("cpu".into()), "/b".into()),
        ],
    )
    .err()
    .unwrap()
    .to_string();
    assert!(
        e.contains("two roots") && e.contains("/a") && e.contains("/b"),
        "{e}"
    );
}

#[test]
fn tasks_of_the_dumper_set_stay_where_stasis_is() {
    let p = plan(ManageMode::Soft, &[]);
    assert!(p.inherits(Some(1)) && p.inherits(None) && !p.inherits(Some(2)));
    let fs = host();
    let prep = p.prepare(&fs, &hier(), &[1]).unwrap();
    prep.enter(1, 5).unwrap();
    assert!(fs.ops().is_empty(), "{:#?}", fs.ops());
}

#[test]
fn a_set_the_image_does_not_describe_is_an_image_error() {
    let fs = host();
    let e = plan(ManageMode::Soft, &[])
        .prepare(&fs, &hier(), &[3])
        .err()
        .unwrap()
        .to_string();
    assert!(e.starts_with("cgroup.img:") && e.contains("set 3"), "{e}");
    let dup = pb::CgroupEntry {
        sets: vec![
            pb::CgSetEntry {
                id: 2,
                ctls: vec![],
            },
            pb::CgSetEntry {
                id: 2,
                ctls: vec![],
            },
        ],
        controllers: vec![],
    };
    assert!(RestorePlan::new(Some(dup), Some(1), ManageMode::Soft, &[]).is_err());
}

#[test]
fn a_task_cgroup_outside_the_recorded_trees_must_exist() {
    let mut img = image();
    img.sets[0].ctls.push(member("devices", "/elsewhere"));
    let p = RestorePlan::new(Some(img), Some(1), ManageMode::Soft, &[]).unwrap();
    let fs = host();
    let e = p.prepare(&fs, &hier(), &[2]).err().unwrap().to_string();
    assert!(
        e.contains("/cg/devices/elsewhere") && e.contains("set 2"),
        "{e}"
    );
    fs.dir("/cg/devices/elsewhere");
    fs.clear_ops();
    restore_all(&fs, &p).unwrap();
    at(&fs.ops(), "write /cg/devices/elsewhere/cgroup.procs = 4242");
}

#[test]
fn special_writes_devices_subtree_control_and_per_line_files() {
    let img = pb::CgroupEntry {
        sets: vec![pb::CgSetEntry {
            id: 2,
            ctls: vec![member("", "/ct"), member("devices", "/ct")],
        }],
        controllers: vec![
            ctl(
                "",
                vec![dir(
                    "ct",
                    vec![
                        prop("cgroup.subtree_control", "cpu memory"),
                        prop("io.max", "8:0 rbps=1048576 wbps=max riops=max wiops=max\n8:16 rbps=max wbps=2097152 riops=max wiops=max"),
                        prop("cgroup.procs", ""),
                    ],
                    vec![],
                )],
            ),
            ctl("devices", vec![dir("ct", vec![prop("devices.list", "c 1:3 rwm\nc 1:5 rwm")], vec![])]),
        ],
    };
    let p = RestorePlan::new(Some(img), Some(1), ManageMode::Soft, &[]).unwrap();
    let fs = host();
    restore_all(&fs, &p).unwrap();
    let ops = fs.ops();
    let enter = at(&ops, "/cg/unified/ct/cgroup.procs = 4242");
    assert!(
        at(
            &ops,
            "write /cg/unified/ct/cgroup.subtree_control = +cpu +memory"
        ) < enter
    );
    let deny = at(&ops, "write /cg/devices/ct/devices.deny = a");
    assert!(deny < at(&ops, "write /cg/devices/ct/devices.allow = c 1:3 rwm"));
    assert!(at(&ops, "devices.allow = c 1:5 rwm") < at(&ops, "/cg/devices/ct/cgroup.procs"));
    at(
        &ops,
        "write /cg/unified/ct/io.max = 8:0 rbps=1048576 wbps=max riops=max wiops=max",
    );
    at(
        &ops,
        "write /cg/unified/ct/io.max = 8:16 rbps=max wbps=2097152 riops=max wiops=max",
    );
    assert!(!ops
        .iter()
        .any(|o| o.contains("/cgroup.procs = \n") || o.ends_with("cgroup.procs = ")));
}

#[test]
fn recorded_owners_and_modes_are_restored_on_created_cgroups() {
    let mut img = image();
    img.controllers[4].dirs[0].dir_perms = Some(pb::CgroupPerms {
        mode: 0o40750,
        uid: 1000,
        gid: 1000,
    });
    img.controllers[4].dirs[0].properties[0].perms = Some(pb::CgroupPerms {
        mode: 0o100664,
        uid: 1000,
        gid: 1000,
    });
    let p = RestorePlan::new(Some(img), Some(1), ManageMode::Soft, &[]).unwrap();
    let fs = host();
    fs.file("/cg/pids/ct/pids.max", "max\n");
    fs.clear_ops();
    // pids/ct exists here (the file made it): soft leaves its owner alone.
    restore_all(&fs, &p).unwrap();
    assert!(
        !fs.ops().iter().any(|o| o.starts_with("perms")),
        "{:#?}",
        fs.ops()
    );
    let fs = host();
    restore_all(&fs, &p).unwrap();
    let ops = fs.ops();
    at(&ops, "perms /cg/pids/ct 750 1000 1000");
    at(&ops, "perms /cg/pids/ct/pids.max 664 1000 1000");
}

#[test]
fn modes_and_roots_parse_as_criu_spells_them() {
    assert_eq!(ManageMode::parse("").unwrap(), ManageMode::Soft);
    assert_eq!(ManageMode::parse("strict").unwrap(), ManageMode::Strict);
    assert!(ManageMode::parse("hard")
        .unwrap_err()
        .to_string()
        .contains("\"hard\""));
    assert_eq!(ManageMode::from_rpc(None, None).unwrap(), ManageMode::Soft);
    assert_eq!(
        ManageMode::from_rpc(Some(false), None).unwrap(),
        ManageMode::Ignore
    );
    assert_eq!(
        ManageMode::from_rpc(Some(true), Some(4)).unwrap(),
        ManageMode::Full
    );
    assert_eq!(
        ManageMode::from_rpc(Some(true), Some(6)).unwrap(),
        ManageMode::Soft
    );
    assert_eq!(
        ManageMode::from_rpc(Some(false), Some(0)).unwrap(),
        ManageMode::Ignore
    );
    assert!(ManageMode::from_rpc(None, Some(9)).is_err());
    assert_eq!(parse_cgroup_root("/ct").unwrap(), (None, "/ct".into()));
    assert_eq!(
        parse_cgroup_root("cpu,cpuacct:/ct").unwrap(),
        (Some("cpu,cpuacct".into()), "/ct".into())
    );
    assert_eq!(
        parse_cgroup_root(":/ct").unwrap(),
        (Some(String::new()), "/ct".into())
    );
    assert_eq!(
        parse_cgroup_root("name=systemd:/ct").unwrap(),
        (Some("name=systemd".into()), "/ct".into())
    );
    assert!(parse_cgroup_root("cpu:ct").is_err());
}
