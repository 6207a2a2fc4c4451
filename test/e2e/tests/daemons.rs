//! Processes whose session or process-group leader is gone (a daemon's double fork):
//! the restore stands a helper in for each lost leader, so every process comes back
//! with its PID, its parent (the root, which adopted it), its group and its session,
//! and continues from its own counter. No helper is left behind.

use stasis_e2e::ticks::{relations as ticks, wait_each};
use stasis_e2e::{
    crit_decode_all, dump, proc, restore, ProcessGuard, ScratchDir, Workload, LINE_TIMEOUT,
};

const NAMES: [&str; 4] = ["root", "daemon", "grouped", "deep"];

#[test]
fn processes_whose_session_or_group_leader_is_gone_come_back_in_that_session_and_group() {
    let dir = ScratchDir::new("daemons");
    let images = dir.subdir("images");
    let w = Workload::start(
        "daemons",
        &dir.join("daemons.log"),
        &[] as &[&str],
        dir.path(),
    );
    let pid = w.pid();
    wait_each(&w, &NAMES, 0, 2, ticks);
    let gone: Vec<i64> = w
        .lines()
        .iter()
        .filter_map(|l| l.strip_prefix("gone ").and_then(|p| p.parse().ok()))
        .collect();
    assert_eq!(gone.len(), 4, "four intermediates exited: {gone:?}");

    let before = ticks(&w.lines());
    let last = |name: &str| *before[name].last().expect("ticked");
    let root = last("root");
    let (daemon, grouped, deep) = (last("daemon"), last("grouped"), last("deep"));
    // The shapes the test is about, as the kernel made them.
    assert_eq!(root.1, pid as i64);
    for (name, t) in [("daemon", daemon), ("grouped", grouped), ("deep", deep)] {
        assert_eq!(t.2, root.1, "{name} was adopted by the root");
        assert!(gone.contains(&t.3), "{name}'s group leader is gone: {t:?}");
    }
    assert!(gone.contains(&daemon.4) && daemon.3 == daemon.4);
    assert_eq!(grouped.4, root.4, "grouped stays in the root's session");
    assert!(gone.contains(&deep.4) && deep.3 != deep.4);

    // The daemons live in sessions and groups of their own: the workload's guard (its
    // root's) does not reach them.
    let log = dir.join("daemons.log").to_string_lossy().into_owned();
    let _guards: Vec<ProcessGuard> = [daemon, grouped, deep]
        .iter()
        .map(|t| ProcessGuard::new(t.1 as i32, log.clone()))
        .collect();
    dump(&images, pid, &[]).assert_success();
    proc::wait_gone(pid, LINE_TIMEOUT).expect("the dumped root is gone");
    for t in [daemon, grouped, deep] {
        proc::wait_gone(t.1 as i32, LINE_TIMEOUT)
            .unwrap_or_else(|e| panic!("pid {} of the dumped tree: {e}", t.1));
    }
    let set = crit_decode_all(&images);
    let mut tree = set.pstree();
    tree.sort_unstable();
    let mut expected: Vec<(u64, u64, u64, u64)> = [root, daemon, grouped, deep]
        .iter()
        .map(|t| (t.1 as u64, t.2 as u64, t.3 as u64, t.4 as u64))
        .collect();
    expected[0].1 = tree.iter().find(|e| e.0 == pid as u64).expect("root").1;
    expected.sort_unstable();
    assert_eq!(tree, expected, "pstree.img holds the lost leaders' ids");

    let at = w.lines().len();
    restore(&images, &[]).assert_success();
    let settled = w.lines().len();
    wait_each(&w, &NAMES, settled, 2, ticks);
    let lines = w.lines();
    let after = ticks(&lines[at..]);
    let settled = ticks(&lines[settled..]);
    for name in NAMES {
        let prev = last(name);
        let values: Vec<u64> = after[name].iter().map(|s| s.0).collect();
        let want: Vec<u64> = (prev.0 + 1..prev.0 + 1 + values.len() as u64).collect();
        assert_eq!(values, want, "{name} continues from its own counter");
        if name == "root" {
            continue;
        }
        for s in &settled[name] {
            assert_eq!(
                (s.1, s.2, s.3, s.4),
                (prev.1, prev.2, prev.3, prev.4),
                "{name} keeps pid, parent, group and session"
            );
        }
    }
    for g in &gone {
        assert!(
            proc::stat(*g as i32).is_none(),
            "helper pid {g} is not left behind after the restore"
        );
    }
}
