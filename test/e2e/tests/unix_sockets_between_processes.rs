//! Unix socketpairs whose ends two processes of a tree hold are one
//! connection again after a restore: records queued in the child's stream
//! and datagram queues and acknowledgements queued in the parent's are
//! received after the restore exactly once and in order, on both sides.

use std::time::Duration;

use stasis_e2e::log::{assert_no_fail, assert_ticks_continuous};
use stasis_e2e::{
    crit_decode_all, dump, proc, restore, ProcessGuard, ScratchDir, Workload, LINE_TIMEOUT,
};

/// The record numbers of the child's `child <m> ...` lines.
fn child_records(lines: &[String]) -> Vec<u64> {
    lines
        .iter()
        .filter_map(|l| {
            l.strip_prefix("child ")?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .collect()
}

#[test]
fn a_socketpair_shared_by_parent_and_child_keeps_both_queues_across_restore() {
    let dir = ScratchDir::new("skpair");
    let images = dir.subdir("images");
    let w = Workload::start(
        "skpair",
        &dir.join("skpair.log"),
        &[] as &[&str],
        dir.path(),
    );
    let pid = w.pid();
    w.wait_ticks_after(0, 20, LINE_TIMEOUT);

    dump(&images, pid, &[]).assert_success();
    w.assert_gone(Duration::from_secs(10));
    let at_dump = w.lines();
    assert_no_fail(&at_dump);
    let set = crit_decode_all(&images);
    let tree = set.pstree();
    assert_eq!(tree.len(), 2, "parent and child in pstree.img");
    let child_pid = tree
        .iter()
        .find(|t| t.0 != pid as u64)
        .expect("the child")
        .0 as i32;
    // The dump killed both; the child, reparented to the test, is reaped here.
    proc::wait_gone(child_pid, Duration::from_secs(10)).unwrap();
    assert!(
        set.entries("sk-queues.img").len() >= 10,
        "queued records and acks in sk-queues.img: {:?}",
        set.entries("sk-queues.img").len()
    );

    restore(&images, &[]).assert_success();
    let _child = ProcessGuard::new(child_pid, "skpair child");
    assert!(w.is_alive(), "restored process {pid} {}", w.how_it_ended());
    assert!(
        proc::is_alive(child_pid),
        "the restored child {child_pid} is not running"
    );
    w.wait_ticks_after(at_dump.len(), 20, LINE_TIMEOUT);
    let lines = w.lines();
    assert_no_fail(&lines);
    assert_ticks_continuous(&lines);
    let child = child_records(&lines);
    assert!(
        child.len() > child_records(&at_dump).len() + 10,
        "the child went on after the restore"
    );
    for pair in child.windows(2) {
        assert_eq!(
            pair[1],
            pair[0] + 1,
            "the child's records run on by one: {child:?}"
        );
    }
}
