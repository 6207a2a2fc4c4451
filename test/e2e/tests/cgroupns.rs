//! A cgroup namespace across a checkpoint: a counter in its own cgroup namespace, rooted
//! at the test's v1 cgroups with limits, is dumped, its cgroups removed, and restored:
//! the cgroups come back with their limits, the process is in a cgroup namespace of its
//! own again whose root is those cgroups (it sees itself at "/"), and it continues.
//! The same with the counter moved into a child cgroup after the unshare (as systemd
//! moves itself into init.scope): it comes back in the child, seeing itself at "/leaf",
//! in a namespace rooted at the parent.

use stasis_e2e::cgroups::{cgroup_of, read, TestCgroups, ROOT};
use stasis_e2e::log::{assert_ticks_continuous, ticks};
use stasis_e2e::{dump, proc, restore, LogFile, ProcessGuard, ScratchDir, LINE_TIMEOUT};

const LIMITS: &[(&str, &[(&str, &str)])] = &[
    ("cpu", &[("cpu.shares", "256")]),
    ("memory", &[("memory.limit_in_bytes", "134217728")]),
    ("pids", &[("pids.max", "24")]),
];

/// `/proc/PID/cgroup` as the process's own cgroup namespace shows it: the line of
/// hierarchy `h`.
fn inside_view(pid: i32, h: &str) -> String {
    let out = std::process::Command::new("nsenter")
        .args([
            "-t",
            &pid.to_string(),
            "-C",
            "cat",
            &format!("/proc/{pid}/cgroup"),
        ])
        .output()
        .expect("nsenter");
    assert!(out.status.success(), "nsenter -C: {out:?}");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| {
            let mut f = l.splitn(3, ':');
            let (_, names, path) = (f.next()?, f.next()?, f.next()?);
            names.split(',').any(|n| n == h).then(|| path.to_string())
        })
        .unwrap_or_default()
}

fn own_cgroup_ns(pid: i32) -> bool {
    std::fs::read_link(format!("/proc/{pid}/ns/cgroup")).unwrap()
        != std::fs::read_link("/proc/self/ns/cgroup").unwrap()
}

#[test]
fn a_cgroup_namespace_comes_back_rooted_at_the_recreated_cgroups() {
    cgroup_namespace_across_a_checkpoint(None);
}

#[test]
fn a_task_below_its_cgroup_namespace_root_comes_back_below_it() {
    cgroup_namespace_across_a_checkpoint(Some("leaf"));
}

/// The counter in a cgroup namespace rooted at the test's cgroups; with `below`, moved
/// into that child cgroup of them once the namespace exists.
fn cgroup_namespace_across_a_checkpoint(below: Option<&str>) {
    let dir = ScratchDir::new("cgroupns");
    let images = dir.subdir("images");
    let mut cg = TestCgroups::new(if below.is_some() {
        "cgns-below"
    } else {
        "cgns"
    });
    let mut enter = String::new();
    for (h, props) in LIMITS {
        let d = cg.create(h, props);
        enter.push_str(&format!("echo $$ > {}/cgroup.procs; ", d.display()));
    }
    proc::become_subreaper();
    let log = LogFile::new(dir.join("counter.log"));
    let line = format!(
        "{enter}exec unshare --cgroup --fork {} {} 4 21",
        stasis_e2e::workload_bin("counter").display(),
        log.path().display()
    );
    let mut launcher = std::process::Command::new("sh")
        .args(["-c", &line])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("sh");
    let pid: i32 = log.wait_for("start", LINE_TIMEOUT, |lines| {
        lines.iter().find_map(|l| {
            l.strip_prefix("start pid ")
                .and_then(|r| r.split(' ').next())
                .and_then(|p| p.parse().ok())
        })
    });
    let _guard = ProcessGuard::new(pid, log.path().to_string_lossy());
    log.wait_for("ticks", LINE_TIMEOUT, |l| {
        (ticks(l).len() >= 3).then_some(())
    });
    assert!(
        own_cgroup_ns(pid),
        "the counter runs in a cgroup namespace of its own"
    );
    assert_eq!(
        inside_view(pid, "cpu"),
        "/",
        "it sees itself at its namespace's root"
    );
    let seen = match below {
        Some(leaf) => {
            for (h, _) in LIMITS {
                let d = cg.track(h, &format!("{}/{leaf}", cg.name));
                std::fs::create_dir(&d).unwrap();
                stasis_e2e::cgroups::move_in(&d, pid);
            }
            format!("/{leaf}")
        }
        None => "/".to_string(),
    };
    let host_path = format!(
        "{}{}",
        cg.path(),
        below.map(|l| format!("/{l}")).unwrap_or_default()
    );
    for (h, _) in LIMITS {
        assert_eq!(inside_view(pid, h), seen, "before the dump, in {h}");
    }

    dump(&images, pid, &[]).assert_success();
    proc::wait_gone(pid, LINE_TIMEOUT).expect("the dumped counter is gone");
    let _ = launcher.wait();
    let at_dump = log.lines();
    cg.remove_all();

    restore(&images, &[]).assert_success();
    log.wait_for("ticks after restore", LINE_TIMEOUT, |l| {
        (ticks(l).len() >= ticks(&at_dump).len() + 3).then_some(())
    });
    let last = assert_ticks_continuous(&at_dump);
    let lines = log.lines();
    assert_eq!(
        ticks(&lines[at_dump.len()..]).first().map(|t| t.1),
        Some(last + 1),
        "the counter continues from its last tick"
    );
    assert!(own_cgroup_ns(pid), "a cgroup namespace of its own again");
    for (h, props) in LIMITS {
        assert_eq!(cgroup_of(pid, h), host_path, "restored into its {h} cgroup");
        assert_eq!(
            inside_view(pid, h),
            seen,
            "its namespace's root is {} in {h}",
            cg.path()
        );
        for (k, v) in *props {
            let f = std::path::Path::new(ROOT).join(h).join(&cg.name).join(k);
            assert_eq!(read(&f), *v, "{} after restore", f.display());
        }
    }
}
