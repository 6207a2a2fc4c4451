//! A parent and child sharing anonymous MAP_SHARED memory: after a restore the region is
//! one object again (the parent sees the child's increments), with its contents.

use stasis_e2e::{crit_decode_all, dump, proc, restore, ScratchDir, Workload, LINE_TIMEOUT};

/// `tick N seen S pattern P` -> (N, S, P).
fn ticks(lines: &[String]) -> Vec<(u64, u64, String)> {
    lines
        .iter()
        .filter_map(
            |l| match l.split_whitespace().collect::<Vec<_>>().as_slice() {
                ["tick", n, "seen", s, "pattern", p] => {
                    Some((n.parse().ok()?, s.parse().ok()?, p.to_string()))
                }
                _ => None,
            },
        )
        .collect()
}

#[test]
fn parent_and_child_share_their_map_shared_memory_again_after_restore() {
    let dir = ScratchDir::new("shm");
    let images = dir.subdir("images");
    let w = Workload::start("shm", &dir.join("shm.log"), &[] as &[&str], dir.path());
    let pid = w.pid();
    w.wait_for("the child counting", LINE_TIMEOUT, |l| {
        let t = ticks(l);
        (t.len() >= 3 && t.last()?.1 > t.first()?.1).then_some(())
    });
    let child: i32 = w
        .lines()
        .iter()
        .find_map(|l| l.strip_prefix("child ").and_then(|c| c.parse().ok()))
        .expect("child pid");

    dump(&images, pid, &[]).assert_success();
    proc::wait_gone(pid, LINE_TIMEOUT).expect("the dumped parent is gone");
    proc::wait_gone(child, LINE_TIMEOUT).expect("the dumped child is gone");
    let set = crit_decode_all(&images);
    assert_eq!(set.pstree().len(), 2);
    let shmem: Vec<String> = std::fs::read_dir(&images)
        .expect("images")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with("pagemap-shmem-"))
        .collect();
    assert_eq!(
        shmem.len(),
        1,
        "the shared region is dumped once: {shmem:?}"
    );

    let before = ticks(&w.lines());
    let last = before.last().expect("ticks before").clone();
    restore(&images, &[]).assert_success();
    w.wait_for("five more ticks", LINE_TIMEOUT, |l| {
        (ticks(l).len() >= before.len() + 5).then_some(())
    });
    let after = &ticks(&w.lines())[before.len()..];
    assert_eq!(after[0].0, last.0 + 1, "the parent's ticks continue");
    assert!(
        after.iter().all(|t| t.2 == "ok"),
        "the shared block kept its contents: {after:?}"
    );
    assert!(
        after[0].1 >= last.1,
        "the child's counter did not go back: {} then {:?}",
        last.1,
        after
    );
    assert!(
        after.last().expect("ticks").1 > after[0].1,
        "the parent sees the child's increments: {after:?}"
    );
}

#[test]
fn a_restored_tree_with_shared_memory_can_be_dumped_and_restored_again() {
    let dir = ScratchDir::new("shm-twice");
    let w = Workload::start("shm", &dir.join("shm.log"), &[] as &[&str], dir.path());
    let pid = w.pid();
    w.wait_for("three ticks", LINE_TIMEOUT, |l| {
        (ticks(l).len() >= 3).then_some(())
    });
    let child: i32 = w
        .lines()
        .iter()
        .find_map(|l| l.strip_prefix("child ").and_then(|c| c.parse().ok()))
        .expect("child pid");
    for round in ["first", "second"] {
        let images = dir.subdir(round);
        dump(&images, pid, &[]).assert_success();
        proc::wait_gone(pid, LINE_TIMEOUT).expect("the dumped parent is gone");
        proc::wait_gone(child, LINE_TIMEOUT).expect("the dumped child is gone");
        let before = ticks(&w.lines()).len();
        restore(&images, &[]).assert_success();
        w.wait_for("five more ticks", LINE_TIMEOUT, |l| {
            (ticks(l).len() >= before + 5).then_some(())
        });
        let after = &ticks(&w.lines())[before..];
        assert!(
            after.iter().all(|t| t.2 == "ok"),
            "{round} restore: the block kept its contents: {after:?}"
        );
        assert!(
            after.last().expect("ticks").1 > after[0].1,
            "{round} restore: the memory is shared: {after:?}"
        );
    }
}
