//! A process tree: every process comes back with its PID, parent, process group and
//! session, continues from its own counter, and a zombie child is still a zombie that its
//! parent reaps with the status it died with.

use stasis_e2e::ticks::{relations as ticks, wait_each};
use stasis_e2e::{crit_decode_all, dump, proc, restore, ScratchDir, Workload, LINE_TIMEOUT};

const NAMES: [&str; 5] = ["root", "child0", "child1", "child2", "grandchild"];

#[test]
fn a_tree_with_groups_a_grandchild_and_a_zombie_continues_with_every_pid_and_relation_intact() {
    let dir = ScratchDir::new("tree");
    let images = dir.subdir("images");
    let w = Workload::start("tree", &dir.join("tree.log"), &[] as &[&str], dir.path());
    let pid = w.pid();
    wait_each(&w, &NAMES, 0, 2, ticks);
    let zombie: i64 = w
        .lines()
        .iter()
        .find_map(|l| l.strip_prefix("zombie ").and_then(|z| z.parse().ok()))
        .expect("the root logs its zombie");
    assert_eq!(
        proc::stat(zombie as i32).expect("zombie").state,
        'Z',
        "the child is a zombie before the dump"
    );

    dump(&images, pid, &[]).assert_success();
    proc::wait_gone(pid, LINE_TIMEOUT).expect("the dumped root is gone");
    // The killed children and the zombie were reparented to us (the subreaper): reap
    // them all, so their PIDs are free for the restore.
    for p in [zombie]
        .into_iter()
        .chain(ticks(&w.lines()).values().map(|v| v[0].1))
    {
        proc::wait_gone(p as i32, LINE_TIMEOUT)
            .unwrap_or_else(|e| panic!("pid {p} of the dumped tree: {e}"));
    }

    let set = crit_decode_all(&images);
    let tree = set.pstree();
    assert_eq!(
        tree.len(),
        6,
        "pstree lists root, 3 children, grandchild and zombie: {tree:?}"
    );
    assert!(
        tree.iter().any(|e| e.0 == zombie as u64),
        "the zombie is in the image"
    );

    let before = w.lines();
    let last = ticks(&before);
    let child1 = last["child1"].last().expect("child1 ticked").1;
    assert_eq!(
        last["child2"].last().expect("child2 ticked").3,
        child1,
        "child2 is in child1's process group, led by its sibling"
    );
    restore(&images, &[]).assert_success();
    // Until stasis has exited, the restored root is its child: relations are compared
    // on what was logged after that.
    let settled = w.lines().len();
    wait_each(&w, &NAMES, settled, 2, ticks);
    let lines = w.lines();
    let after = ticks(&lines[before.len()..]);
    let settled = ticks(&lines[settled..]);
    for name in NAMES {
        let prev = *last[name].last().expect("ticked before");
        let seq = &after[name];
        let values: Vec<u64> = seq.iter().map(|s| s.0).collect();
        let expected: Vec<u64> = (prev.0 + 1..prev.0 + 1 + values.len() as u64).collect();
        assert_eq!(values, expected, "{name} continues from its own counter");
        for s in &settled[name] {
            assert_eq!(
                (s.1, s.2, s.3, s.4),
                (prev.1, prev.2, prev.3, prev.4),
                "{name} keeps pid, ppid, pgid and sid"
            );
        }
    }
    assert_eq!(
        proc::stat(zombie as i32)
            .expect("zombie after restore")
            .state,
        'Z',
        "the zombie is back as a zombie"
    );
    let at = w.lines().len();
    w.signal(libc::SIGUSR1);
    let (_, line) = w.wait_line_after(at, "reaped ", LINE_TIMEOUT);
    assert_eq!(
        line,
        format!("reaped {zombie} status 7"),
        "the parent reaps the zombie with its exit status"
    );
}
