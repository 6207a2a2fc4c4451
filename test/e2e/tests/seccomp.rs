//! Seccomp filters across a checkpoint: a process with two filters (under
//! no_new_privs, as an unprivileged program installs them) and its child, which
//! inherited both and added a third, are dumped and restored. Every tick after the
//! restore shows each process's filtered system calls failing with the same errno as
//! before, and the kernel counts the same filters; the images hold the three filters
//! once each, the shared chain not repeated.

use std::collections::BTreeMap;

use stasis_e2e::{crit_decode_all, dump, proc, restore, ScratchDir, Workload, LINE_TIMEOUT};

/// Per process ("parent", "child"): (tick number, the three errnos), in log order.
fn ticks(lines: &[String]) -> BTreeMap<String, Vec<(u64, [i32; 3])>> {
    let mut out: BTreeMap<String, Vec<(u64, [i32; 3])>> = BTreeMap::new();
    for l in lines {
        let w: Vec<&str> = l.split(' ').collect();
        if w.len() == 6 && w[0] == "tick" {
            let n: u64 = w[1].parse().unwrap();
            let e = [
                w[3].parse().unwrap(),
                w[4].parse().unwrap(),
                w[5].parse().unwrap(),
            ];
            out.entry(w[2].to_string()).or_default().push((n, e));
        }
    }
    out
}

fn status_field(pid: i32, key: &str) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix(key).map(|v| v.trim().to_string()))
        .unwrap_or_default()
}

#[test]
fn seccomp_filters_of_a_process_and_its_child_still_filter_after_restore() {
    let dir = ScratchDir::new("seccomp");
    let images = dir.subdir("images");
    proc::become_subreaper();
    let w = Workload::start(
        "seccomp",
        &dir.join("seccomp.log"),
        &[] as &[&str],
        dir.path(),
    );
    let pid = w.pid();
    let wanted = |who: &str| match who {
        "parent" => [libc::ENOMSG, libc::EROFS, 0],
        _ => [libc::ENOMSG, libc::EROFS, libc::EXDEV],
    };
    w.wait_for("both processes ticking", LINE_TIMEOUT, |lines| {
        let t = ticks(lines);
        (t.len() == 2 && t.values().all(|v| v.len() >= 3)).then_some(())
    });
    let child: i32 = w
        .lines()
        .iter()
        .find_map(|l| l.strip_prefix("child pid ").and_then(|p| p.parse().ok()))
        .expect("the child logs its pid");
    for (who, v) in ticks(&w.lines()) {
        assert!(
            v.iter().all(|(_, e)| *e == wanted(&who)),
            "{who} before the dump: {v:?}"
        );
    }
    assert_eq!(status_field(child, "Seccomp_filters:"), "3");

    dump(&images, pid, &[]).assert_success();
    proc::wait_gone(pid, LINE_TIMEOUT).expect("the dumped parent is gone");
    proc::wait_gone(child, LINE_TIMEOUT).expect("the dumped child is gone");
    let at_dump = ticks(&w.lines());

    let set = crit_decode_all(&images);
    let filters = set.entries("seccomp.img")[0]["seccomp_filters"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        filters.len(),
        3,
        "three filters, the inherited two once: {filters:?}"
    );

    restore(&images, &[]).assert_success();
    w.wait_for("both processes ticking again", LINE_TIMEOUT, |lines| {
        let t = ticks(lines);
        t.iter()
            .all(|(who, v)| v.len() >= at_dump[who].len() + 3)
            .then_some(())
    });
    for (who, v) in ticks(&w.lines()) {
        let before = &at_dump[&who];
        let after = &v[before.len()..];
        assert_eq!(
            after[0].0,
            before.last().unwrap().0 + 1,
            "{who} continues from its last tick"
        );
        assert!(
            after.iter().all(|(_, e)| *e == wanted(&who)),
            "{who} after restore: its filters must still fail the same calls: {after:?}"
        );
    }
    assert_eq!(status_field(pid, "Seccomp:"), "2");
    assert_eq!(status_field(pid, "Seccomp_filters:"), "2");
    assert_eq!(status_field(child, "Seccomp_filters:"), "3");
    assert_eq!(status_field(pid, "NoNewPrivs:"), "1");
}
