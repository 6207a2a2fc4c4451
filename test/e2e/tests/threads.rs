//! A multi-threaded process: every thread comes back with its own TID, name and
//! thread-local counter, and continues from its own value.

use stasis_e2e::{crit_decode_all, dump, proc, restore, ScratchDir, Workload, LINE_TIMEOUT};
use std::collections::BTreeMap;

/// (thread index) -> list of (counter, tid, name) in log order.
fn per_thread(lines: &[String]) -> BTreeMap<String, Vec<(u64, String, String)>> {
    let mut out: BTreeMap<String, Vec<(u64, String, String)>> = BTreeMap::new();
    for l in lines {
        let w: Vec<&str> = l.split_whitespace().collect();
        if let ["tick", t, n, "tid", tid, "name", name] = w.as_slice() {
            out.entry(t.to_string()).or_default().push((
                n.parse().expect("counter"),
                tid.to_string(),
                name.to_string(),
            ));
        }
    }
    out
}

#[test]
fn eight_threads_continue_each_from_its_own_thread_local_counter_with_the_same_tids_and_names() {
    let dir = ScratchDir::new("threads");
    let images = dir.subdir("images");
    let w = Workload::start("threads", &dir.join("t.log"), &["8"], dir.path());
    let pid = w.pid();
    // Every thread has ticked at least twice.
    w.wait_for("8 threads ticking", LINE_TIMEOUT, |lines| {
        let t = per_thread(lines);
        (t.len() == 8 && t.values().all(|v| v.len() >= 2)).then_some(())
    });
    let tids_before: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/task"))
        .expect("task dir")
        .map(|e| e.expect("entry").file_name().into_string().expect("utf-8"))
        .collect();
    assert_eq!(tids_before.len(), 8);

    dump(&images, pid, &[]).assert_success();
    proc::wait_gone(pid, LINE_TIMEOUT).expect("the dumped process is gone");
    let set = crit_decode_all(&images);
    let tree = set.pstree();
    assert_eq!(tree.len(), 1, "one process");
    let threads = set.entries("pstree.img")[0]["threads"]
        .as_array()
        .expect("threads")
        .len();
    assert_eq!(threads, 8, "pstree lists all 8 threads");
    for tid in &tids_before {
        assert!(
            images.join(format!("core-{tid}.img")).exists(),
            "core image of thread {tid}"
        );
    }
    let before = w.lines();
    let last = per_thread(&before);

    restore(&images, &[]).assert_success();
    w.wait_for("every thread ticked twice more", LINE_TIMEOUT, |lines| {
        let t = per_thread(&lines[before.len()..]);
        (t.len() == 8 && t.values().all(|v| v.len() >= 2)).then_some(())
    });
    let mut tids_after: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/task"))
        .expect("task dir after restore")
        .map(|e| e.expect("entry").file_name().into_string().expect("utf-8"))
        .collect();
    let mut tids_before = tids_before;
    tids_before.sort();
    tids_after.sort();
    assert_eq!(tids_after, tids_before, "the same TIDs after restore");
    let after = per_thread(&w.lines()[before.len()..]);
    for (t, seq) in &after {
        let prev = last[t].last().expect("ticked before");
        let values: Vec<u64> = seq.iter().map(|s| s.0).collect();
        let expected: Vec<u64> = (prev.0 + 1..prev.0 + 1 + values.len() as u64).collect();
        assert_eq!(
            values, expected,
            "thread {t} continues from its own counter {}",
            prev.0
        );
        assert!(
            seq.iter().all(|s| s.1 == prev.1),
            "thread {t} keeps its TID {}: {seq:?}",
            prev.1
        );
        assert!(
            seq.iter().all(|s| s.2 == prev.2),
            "thread {t} keeps its name {}: {seq:?}",
            prev.2
        );
    }
}
