//! `dump --leave-running`: the original keeps running; its image, restored
//! after the original is killed, continues from the moment of the dump.

use std::time::Duration;

use stasis_e2e::counter::{filled_checksum, verify};
use stasis_e2e::log::{assert_no_fail, assert_ticks_continuous, ticks};
use stasis_e2e::{crit_decode_all, dump, proc, restore, ScratchDir, Workload, LINE_TIMEOUT};

#[test]
fn dump_with_leave_running_keeps_the_original_ticking_and_its_image_resumes_from_the_dump_point() {
    let dir = ScratchDir::new("leave-running");
    let images = dir.subdir("images");
    let w = Workload::start(
        "counter",
        &dir.join("counter.log"),
        &["16", "31337"],
        dir.path(),
    );
    let pid = w.pid();
    let filled = filled_checksum(&w);
    w.wait_ticks_after(0, 3, LINE_TIMEOUT);
    let start_time = proc::stat(pid).unwrap().start_time;

    let before_dump = assert_ticks_continuous(&w.lines());
    dump(&images, pid, &["--leave-running"]).assert_success();
    let at_return = assert_ticks_continuous(&w.lines());
    assert!(
        w.is_alive(),
        "the original {pid} must keep running after --leave-running: {}",
        w.how_it_ended()
    );
    assert_eq!(
        proc::stat(pid).unwrap().start_time,
        start_time,
        "pid {pid} is no longer the original process"
    );
    let n = w.lines().len();
    w.wait_ticks_after(n, 5, LINE_TIMEOUT);
    let last_original = assert_ticks_continuous(&w.lines());
    assert!(
        last_original >= at_return + 5,
        "the original stopped ticking after the dump"
    );

    let set = crit_decode_all(&images);
    assert_eq!(
        set.pstree().first().map(|e| e.0),
        Some(pid as u64),
        "pstree.img root pid"
    );

    proc::kill_and_reap(pid, Duration::from_secs(10)).unwrap();
    let killed_at = w.lines().len();
    restore(&images, &[]).assert_success();
    assert!(w.is_alive(), "restored process {pid} {}", w.how_it_ended());
    w.wait_ticks_after(killed_at, 5, LINE_TIMEOUT);
    let lines = w.lines();
    let restored = &lines[killed_at..];
    let first = ticks(restored)[0].1;
    assert!(
        (before_dump + 1..=at_return + 1).contains(&first),
        "the restored process starts at tick {first}, but the dump happened between ticks {before_dump} and {at_return}"
    );
    assert_ticks_continuous(restored);

    let v = verify(&w);
    assert_eq!(v.checksum, filled, "memory after restore");
    assert_eq!(v.rseq, "busy", "rseq registration after restore");
    assert_no_fail(&w.lines());
}
