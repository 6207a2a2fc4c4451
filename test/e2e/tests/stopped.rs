//! A stopped process (SIGSTOP, as a shell's Ctrl-Z or a debugger leaves it) is dumped
//! and comes back stopped: state T, not a single tick until it gets SIGCONT, and then
//! it continues from its last tick with its memory intact. In a tree, the stopped child
//! stays stopped under its running parent, which counts on and still gets its child's
//! job-control reports from waitpid.

use std::time::Duration;

use stasis_e2e::counter::{filled_checksum, verify};
use stasis_e2e::log::{assert_no_fail, assert_ticks_continuous, tail, ticks};
use stasis_e2e::{crit_decode_all, dump, proc, restore, ScratchDir, Workload, LINE_TIMEOUT};
use stasis_images::{names, pb, ImageDir, ImageKind};

fn state(pid: i32) -> char {
    proc::stat(pid).expect("the process exists").state
}

fn wait_state(pid: i32, want: char) {
    let until = std::time::Instant::now() + Duration::from_secs(10);
    while state(pid) != want {
        assert!(
            std::time::Instant::now() < until,
            "pid {pid} never reached state {want}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn a_stopped_process_comes_back_stopped_and_continues_on_sigcont() {
    let dir = ScratchDir::new("stopped");
    let images = dir.subdir("images");
    let w = Workload::start(
        "counter",
        &dir.join("counter.log"),
        &["4", "11"],
        dir.path(),
    );
    let pid = w.pid();
    let sum = filled_checksum(&w);
    w.wait_ticks_after(0, 3, LINE_TIMEOUT);
    proc::signal(pid, libc::SIGSTOP).unwrap();
    wait_state(pid, 'T');
    let stopped_at = w.lines().len();

    dump(&images, pid, &[]).assert_success();
    w.assert_gone(Duration::from_secs(10));
    let at_dump = w.lines();
    assert_eq!(
        at_dump.len(),
        stopped_at,
        "no tick while stopped and dumped"
    );

    restore(&images, &[]).assert_success();
    wait_state(pid, 'T');
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(state(pid), 'T', "still stopped after restore");
    assert_eq!(w.lines().len(), at_dump.len(), "not a tick while stopped");

    proc::signal(pid, libc::SIGCONT).unwrap();
    let last = assert_ticks_continuous(&at_dump);
    w.wait_ticks_after(at_dump.len(), 3, LINE_TIMEOUT);
    let lines = w.lines();
    assert_eq!(
        ticks(&lines[at_dump.len()..]).first().map(|t| t.1),
        Some(last + 1),
        "the first tick after SIGCONT follows the last one before the stop"
    );
    assert_eq!(verify(&w).checksum, sum, "memory after restore");
}

/// A `tick <name> <counter> pid <pid> ppid <ppid>` line of the stoptree workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Tick {
    counter: u64,
    pid: i32,
    ppid: i32,
}

/// The ticks `name` logged in `lines`, in log order.
fn ticks_of(lines: &[String], name: &str) -> Vec<Tick> {
    lines
        .iter()
        .filter_map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            match w.as_slice() {
                ["tick", n, counter, "pid", pid, "ppid", ppid] if *n == name => Some(Tick {
                    counter: counter.parse().ok()?,
                    pid: pid.parse().ok()?,
                    ppid: ppid.parse().ok()?,
                }),
                _ => None,
            }
        })
        .collect()
}

/// Panics unless `ticks` count on by exactly one, starting at `first`.
#[track_caller]
fn assert_counts_from(ticks: &[Tick], first: u64, what: &str, lines: &[String]) {
    let got: Vec<u64> = ticks.iter().map(|t| t.counter).collect();
    let want: Vec<u64> = (first..first + got.len() as u64).collect();
    assert_eq!(got, want, "{what}; end of the log:\n{}", tail(lines, 20));
}

/// The parent's waitpid reports about its child in `lines`: "stopped <sig>" or
/// "continued".
fn reports(lines: &[String], child: i32) -> Vec<String> {
    let prefix = format!("child {child} ");
    lines
        .iter()
        .filter_map(|l| l.strip_prefix(&prefix).map(str::to_string))
        .collect()
}

#[test]
fn a_stopped_child_stays_stopped_under_its_running_parent_and_continues_on_sigcont() {
    let dir = ScratchDir::new("stopped-tree");
    let images = dir.subdir("images");
    let w = Workload::start(
        "stoptree",
        &dir.join("stoptree.log"),
        &[] as &[&str],
        dir.path(),
    );
    let parent = w.pid();
    let child: i32 = w
        .log()
        .wait_line("child ", LINE_TIMEOUT)
        .strip_prefix("child ")
        .and_then(|c| c.parse().ok())
        .expect("the parent logs its child's pid");
    w.wait_for("both processes ticking", LINE_TIMEOUT, |lines| {
        (ticks_of(lines, "parent").len() >= 3 && ticks_of(lines, "child").len() >= 3).then_some(())
    });

    // Stop the child as a shell's job control would, and see the parent told of it.
    proc::signal(child, libc::SIGSTOP).unwrap();
    wait_state(child, 'T');
    let stopped_at = w.lines();
    let child_ticks = ticks_of(&stopped_at, "child").len();
    let report = format!("child {child} stopped {}", libc::SIGSTOP);
    w.wait_line_after(0, &report, LINE_TIMEOUT);
    let parent_ticks = ticks_of(&w.lines(), "parent").len();
    w.wait_for("the parent ticking on", LINE_TIMEOUT, |lines| {
        (ticks_of(lines, "parent").len() >= parent_ticks + 5).then_some(())
    });
    assert_eq!(
        ticks_of(&w.lines(), "child").len(),
        child_ticks,
        "the stopped child does not tick before the dump"
    );

    dump(&images, parent, &[]).assert_success();
    // The killed child was reparented to us (the subreaper): reap both, so that their
    // PIDs are free for the restore.
    for pid in [parent, child] {
        proc::wait_gone(pid, LINE_TIMEOUT)
            .unwrap_or_else(|e| panic!("pid {pid} of the dumped tree: {e}"));
    }
    let before = w.lines();
    assert_no_fail(&before);

    let set = crit_decode_all(&images);
    let mut tree = set.pstree();
    tree.sort();
    assert_eq!(
        tree.iter().map(|e| (e.0, e.1)).collect::<Vec<_>>(),
        vec![(parent as u64, 0), (child as u64, parent as u64)],
        "pstree holds the parent and its child: {tree:?}"
    );
    // CRIU's task states: TASK_ALIVE 1, TASK_STOPPED 3.
    let task_state = |pid: i32| set.core(pid).pointer("/tc/task_state").cloned();
    assert_eq!(
        (task_state(parent), task_state(child)),
        (Some(serde_json::json!(1)), Some(serde_json::json!(3))),
        "crit reads the parent as alive and the child as stopped"
    );
    // Debian's crit (CRIU 3.17) predates `stop_signo`: read it with stasis's decoder.
    let core: pb::CoreEntry = ImageDir::open(&images)
        .and_then(|d| d.read_one(ImageKind::CORE, &names::core(child as u32)))
        .unwrap_or_else(|e| panic!("core-{child}.img: {e}"));
    assert_eq!(
        core.tc.and_then(|tc| tc.stop_signo),
        Some(libc::SIGSTOP as u32),
        "core-{child}.img records the signal that stopped the child"
    );

    let last_parent = *ticks_of(&before, "parent").last().expect("parent ticked");
    let last_child = *ticks_of(&before, "child").last().expect("child ticked");
    assert_eq!(
        (last_child.pid, last_child.ppid),
        (child, parent),
        "the child's own view before the dump"
    );

    restore(&images, &[]).assert_success();
    wait_state(child, 'T');
    assert_eq!(
        proc::stat(child).expect("the restored child").ppid,
        parent,
        "the restored child {child} is the restored parent's child again"
    );
    let restored = std::time::Instant::now();
    w.wait_for(
        "the restored parent ticking 10 times",
        LINE_TIMEOUT,
        |lines| (ticks_of(&lines[before.len()..], "parent").len() >= 10).then_some(()),
    );
    if let Some(rest) = Duration::from_millis(300).checked_sub(restored.elapsed()) {
        std::thread::sleep(rest);
    }
    assert_eq!(
        state(child),
        'T',
        "the child is still stopped 300 ms after restore"
    );
    let held = w.lines();
    assert_eq!(
        ticks_of(&held[before.len()..], "child"),
        vec![],
        "the stopped child does not tick after restore until it gets SIGCONT"
    );
    assert_counts_from(
        &ticks_of(&held[before.len()..], "parent"),
        last_parent.counter + 1,
        "the parent continues from its own counter",
        &held,
    );
    // The parent took the stop report before the dump; the restore can only stop the
    // child afresh (the kernel keeps no "report taken" state a restorer could set), so
    // the parent may be told once more that its child stopped: by SIGSTOP, and never
    // that it continued.
    let stopped_again = reports(&held[before.len()..], child);
    assert!(
        stopped_again.is_empty() || stopped_again == [format!("stopped {}", libc::SIGSTOP)],
        "the parent's reports about its stopped child after restore: {stopped_again:?}"
    );

    proc::signal(child, libc::SIGCONT).unwrap();
    w.wait_for(
        "the child ticking 3 times after SIGCONT",
        LINE_TIMEOUT,
        |lines| (ticks_of(&lines[held.len()..], "child").len() >= 3).then_some(()),
    );
    let continued = format!("child {child} continued");
    w.wait_line_after(held.len(), &continued, LINE_TIMEOUT);
    let lines = w.lines();
    assert_counts_from(
        &ticks_of(&lines[before.len()..], "child"),
        last_child.counter + 1,
        "after SIGCONT the child continues from its last tick + 1",
        &lines,
    );
    assert_counts_from(
        &ticks_of(&lines[before.len()..], "parent"),
        last_parent.counter + 1,
        "the parent counts on through its child's SIGCONT",
        &lines,
    );
    for t in ticks_of(&lines[held.len()..], "child") {
        assert_eq!(
            (t.pid, t.ppid),
            (child, parent),
            "the continued child's own pid and parent"
        );
    }
    for t in ticks_of(&lines[before.len()..], "parent") {
        assert_eq!(t.pid, parent, "the restored parent's own pid");
    }
    assert_no_fail(&lines);
}
