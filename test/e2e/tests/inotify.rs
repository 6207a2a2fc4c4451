//! inotify watches continue across a checkpoint: after the restore the same
//! watch descriptors (1, 2 and 4 — with the gap an application left) report
//! exactly the events on their directory and file that they reported before,
//! and nothing else (no IN_IGNORED from rebuilding the gap).

use std::time::Duration;

use serde_json::Value;
use stasis_e2e::log::{assert_no_fail, assert_ticks_continuous, ticks};
use stasis_e2e::{crit_decode_all, dump, restore, ScratchDir, Workload, LINE_TIMEOUT};

#[test]
fn inotify_watches_report_the_same_events_with_the_same_descriptors_after_restore() {
    let dir = ScratchDir::new("inotify");
    let images = dir.subdir("images");
    let watched = dir.subdir("w");
    let w = Workload::start("inotify", &dir.join("inotify.log"), &[&watched], dir.path());
    let pid = w.pid();
    w.wait_ticks_after(0, 3, LINE_TIMEOUT);
    w.signal(libc::SIGUSR1);
    let (_, round) = w.wait_line_after(0, "round 1", LINE_TIMEOUT);
    assert_eq!(round, "round 1 ok", "the events before the dump");

    dump(&images, pid, &[]).assert_success();
    w.assert_gone(Duration::from_secs(10));
    let at_dump = w.lines();
    let last_before = assert_ticks_continuous(&at_dump);

    let set = crit_decode_all(&images);
    let ify: Vec<&Value> = set
        .entries("files.img")
        .iter()
        .filter(|e| e["type"] == "INOTIFY")
        .collect();
    assert_eq!(ify.len(), 1, "one inotify instance");
    let wds = ify[0]["ify"]["wd"].as_array().expect("watches");
    let numbers: Vec<u64> = wds.iter().map(|w| w["wd"].as_u64().unwrap()).collect();
    assert_eq!(
        numbers,
        [1, 2, 4],
        "watch descriptors in inotify_file_entry"
    );
    let paths: Vec<&str> = wds
        .iter()
        .filter_map(|w| w["f_handle"]["path"].as_str())
        .collect();
    let base = watched.display().to_string();
    assert_eq!(
        paths,
        [
            format!("{base}/watched"),
            format!("{base}/file"),
            format!("{base}/watched2")
        ],
        "the watched paths, found from their file handles"
    );

    restore(&images, &[]).assert_success();
    assert!(w.is_alive(), "restored process {pid} {}", w.how_it_ended());
    let m = at_dump.len();
    w.wait_ticks_after(m, 3, LINE_TIMEOUT);
    for r in 2..=3 {
        w.signal(libc::SIGUSR1);
        let (_, round) = w.wait_line_after(m, &format!("round {r}"), LINE_TIMEOUT);
        assert_eq!(
            round,
            format!("round {r} ok"),
            "the events after the restore"
        );
    }
    let lines = w.lines();
    assert_no_fail(&lines);
    assert_ticks_continuous(&lines);
    assert_eq!(
        ticks(&lines[m..])[0].1,
        last_before + 1,
        "first tick after restore"
    );
}
