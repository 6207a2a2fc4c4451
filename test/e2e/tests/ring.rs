//! A tree of 1 + 10 processes passing a token around a ring of pipes: every pipe is
//! shared by two processes, so it must come back as one pipe between the same two. After
//! a restore the laps go on with no token lost, repeated or reordered.

use stasis_e2e::{crit_decode_all, dump, proc, restore, ScratchDir, Workload, LINE_TIMEOUT};

const CHILDREN: u64 = 10;

/// `lap L token T` lines.
fn laps(lines: &[String]) -> Vec<(u64, u64)> {
    lines
        .iter()
        .filter_map(
            |l| match l.split_whitespace().collect::<Vec<_>>().as_slice() {
                ["lap", lap, "token", token] => Some((lap.parse().ok()?, token.parse().ok()?)),
                _ => None,
            },
        )
        .collect()
}

#[test]
fn a_ring_of_one_plus_ten_processes_keeps_passing_its_token_after_restore() {
    let dir = ScratchDir::new("ring");
    let images = dir.subdir("images");
    let w = Workload::start(
        "ring",
        &dir.join("ring.log"),
        &[CHILDREN.to_string()],
        dir.path(),
    );
    let pid = w.pid();
    w.wait_for("five laps", LINE_TIMEOUT, |l| {
        (laps(l).len() >= 5).then_some(())
    });
    let children: Vec<i32> = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .expect("children")
        .split_whitespace()
        .map(|c| c.parse().expect("pid"))
        .collect();
    assert_eq!(children.len() as u64, CHILDREN);

    dump(&images, pid, &[]).assert_success();
    proc::wait_gone(pid, LINE_TIMEOUT).expect("the dumped root is gone");
    for c in &children {
        proc::wait_gone(*c, LINE_TIMEOUT).unwrap_or_else(|e| panic!("child {c}: {e}"));
    }
    let set = crit_decode_all(&images);
    assert_eq!(
        set.pstree().len() as u64,
        1 + CHILDREN,
        "every process of the ring is in the image"
    );

    let before = laps(&w.lines());
    let last = *before.last().expect("laps before the dump");
    restore(&images, &[]).assert_success();
    w.wait_for("five more laps", LINE_TIMEOUT, |l| {
        (laps(l).len() >= before.len() + 5).then_some(())
    });
    let all = laps(&w.lines());
    for (i, (lap, token)) in all.iter().enumerate() {
        assert_eq!(*lap, i as u64 + 1, "laps are consecutive: {all:?}");
        assert_eq!(
            *token,
            lap * (CHILDREN + 1) - 1,
            "lap {lap}: every process passed the token on exactly once"
        );
    }
    assert!(all.len() > before.len() && all[before.len() - 1] == last);
    let after: Vec<i32> = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .expect("children after restore")
        .split_whitespace()
        .map(|c| c.parse().expect("pid"))
        .collect();
    assert_eq!(after, children, "the same children with the same PIDs");
}
