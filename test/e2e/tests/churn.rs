//! The freeze is consistent while the tree keeps changing: a process whose threads start
//! new threads and whose main thread forks children (that fork and exit) without pause
//! is dumped — every thread and process that exists once it is frozen is caught, and the
//! ones still being born are either in the image whole or not at all — and after restore
//! it goes on spawning with its counters continuing.

use stasis_e2e::{crit_decode_all, dump, proc, restore, ScratchDir, Workload, LINE_TIMEOUT};

/// `tick N threads T forks F` lines.
fn ticks(lines: &[String]) -> Vec<(u64, u64, u64)> {
    lines
        .iter()
        .filter_map(
            |l| match l.split_whitespace().collect::<Vec<_>>().as_slice() {
                ["tick", n, "threads", t, "forks", f] => {
                    Some((n.parse().ok()?, t.parse().ok()?, f.parse().ok()?))
                }
                _ => None,
            },
        )
        .collect()
}

#[test]
fn a_process_that_keeps_spawning_threads_and_children_is_frozen_whole_and_goes_on() {
    let dir = ScratchDir::new("churn");
    let images = dir.subdir("images");
    let w = Workload::start("churn", &dir.join("churn.log"), &[] as &[&str], dir.path());
    let pid = w.pid();
    w.wait_for("spawning", LINE_TIMEOUT, |l| {
        ticks(l)
            .last()
            .filter(|t| t.0 >= 5 && t.1 > 100 && t.2 > 10)
            .map(|_| ())
    });

    dump(&images, pid, &[]).assert_success();
    proc::wait_gone(pid, LINE_TIMEOUT).expect("the dumped process is gone");
    let set = crit_decode_all(&images);
    let tree = set.pstree();
    assert_eq!(tree[0].0, pid as u64, "the root is first: {tree:?}");
    // Whatever children were caught are whole: each has its core and mm image.
    for (p, ..) in &tree {
        assert!(
            set.images.contains_key(&format!("core-{p}.img")),
            "pid {p} of pstree.img has its core image"
        );
    }
    // Every process of its session is gone before the restore: the caught ones, and
    // the orphans of children that exited (adopted by this test, outside the tree),
    // which keep the session's ID — the root's PID — taken while they live.
    proc::wait_session_gone(pid, LINE_TIMEOUT).expect("the dumped session is gone");

    let before = ticks(&w.lines());
    let last = *before.last().expect("ticked");
    let at = w.lines().len();
    restore(&images, &[]).assert_success();
    w.wait_for("ten more ticks", LINE_TIMEOUT, |l| {
        (ticks(&l[at..]).len() >= 10).then_some(())
    });
    let after = ticks(&w.lines()[at..]);
    let counters: Vec<u64> = after.iter().map(|t| t.0).collect();
    let want: Vec<u64> = (last.0 + 1..last.0 + 1 + counters.len() as u64).collect();
    assert_eq!(counters, want, "the tick counter continues");
    let end = after.last().expect("ticked after");
    assert!(
        end.1 > last.1 && end.2 > last.2,
        "it goes on starting threads and forking: {last:?} -> {end:?}"
    );
    assert!(
        after
            .windows(2)
            .all(|p| p[0].1 <= p[1].1 && p[0].2 <= p[1].2),
        "its totals only grow: {after:?}"
    );
}
