//! Files deleted while open survive a checkpoint as ghosts: after the restore
//! the descriptors still read the same content at the same offset (shared
//! with a dup), two descriptions of one deleted file are still one inode, a
//! sparse file keeps its size and its hole, the files are still deleted
//! (`<path> (deleted)`), and the restore leaves no file behind.

use std::time::Duration;

use serde_json::Value;
use stasis_e2e::log::{assert_no_fail, assert_ticks_continuous, ticks};
use stasis_e2e::proc::fd_targets;
use stasis_e2e::{crit_decode_all, dump, restore, ScratchDir, Workload, LINE_TIMEOUT};

#[test]
fn deleted_files_are_still_readable_at_their_offsets_after_restore_and_stay_deleted() {
    let dir = ScratchDir::new("ghost");
    let images = dir.subdir("images");
    let data = dir.subdir("data");
    let w = Workload::start("ghost", &dir.join("ghost.log"), &[&data], dir.path());
    let pid = w.pid();
    w.wait_ticks_after(0, 10, LINE_TIMEOUT);
    let targets = fd_targets(pid);
    let deleted: Vec<&String> = targets
        .values()
        .filter(|t| t.ends_with(" (deleted)"))
        .collect();
    assert_eq!(
        deleted.len(),
        4,
        "the workload holds 4 descriptors of deleted files: {targets:?}"
    );

    dump(&images, pid, &[]).assert_success();
    w.assert_gone(Duration::from_secs(10));
    let at_dump = w.lines();
    let last_before = assert_ticks_continuous(&at_dump);
    assert_no_fail(&at_dump);

    let set = crit_decode_all(&images);
    let remaps = set.entries("remap-fpath.img");
    assert_eq!(
        remaps.len(),
        3,
        "small, big and big's second description: {remaps:?}"
    );
    assert!(
        remaps.iter().all(|r| r["remap_type"] == "GHOST"),
        "{remaps:?}"
    );
    let big = &set.entries("ghost-file-2.img")[0];
    assert_eq!(
        big["size"].as_u64(),
        Some((1 << 20) + 8192),
        "the sparse ghost's size"
    );
    assert_eq!(
        big["chunks"],
        Value::Bool(true),
        "a large ghost is stored in chunks"
    );
    let chunk_bytes: u64 = set.entries("ghost-file-2.img")[1..]
        .iter()
        .map(|c| c["len"].as_u64().unwrap())
        .sum();
    assert!(
        chunk_bytes < 1 << 20,
        "the hole was stored as data ({chunk_bytes} bytes)"
    );
    assert!(
        std::fs::read_dir(&data).unwrap().next().is_none(),
        "the files were deleted before the dump"
    );

    restore(&images, &[]).assert_success();
    assert!(w.is_alive(), "restored process {pid} {}", w.how_it_ended());
    assert!(
        std::fs::read_dir(&data).unwrap().next().is_none(),
        "the restore left a file in {}: {:?}",
        data.display(),
        std::fs::read_dir(&data)
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect::<Vec<_>>()
    );
    assert_eq!(
        fd_targets(pid),
        targets,
        "descriptors after restore (the same deleted paths)"
    );
    let m = at_dump.len();
    w.wait_ticks_after(m, 10, LINE_TIMEOUT);
    w.signal(libc::SIGUSR1);
    let (_, line) = w.wait_line_after(m, "usr1 ", LINE_TIMEOUT);
    assert_eq!(line, "usr1 deleted ok -", "the big ghost after restore");
    let lines = w.lines();
    assert_no_fail(&lines);
    assert_ticks_continuous(&lines);
    assert_eq!(
        ticks(&lines[m..])[0].1,
        last_before + 1,
        "first tick after restore"
    );
}

#[test]
fn a_deleted_file_above_ghost_limit_is_refused_and_the_process_left_running() {
    let dir = ScratchDir::new("ghost-limit");
    let data = dir.subdir("data");
    let w = Workload::start("ghost", &dir.join("ghost.log"), &[&data], dir.path());
    let pid = w.pid();
    w.wait_ticks_after(0, 3, LINE_TIMEOUT);
    // The small file takes one 4 KiB block, the sparse one more than that.
    let out = dump(&dir.subdir("images"), pid, &["--ghost-limit", "4K"]);
    out.assert_clean_failure();
    assert!(
        out.stderr.contains("--ghost-limit") && out.stderr.contains("/big"),
        "the refusal should name the file and --ghost-limit:\n{out}"
    );
    assert!(
        w.is_alive(),
        "the refused dump left the process {}",
        w.how_it_ended()
    );
    assert_eq!(stasis_e2e::proc::tracer_pid(pid), Some(0), "left traced");
    let n = w.lines().len();
    w.wait_ticks_after(n, 3, LINE_TIMEOUT);
    assert_no_fail(&w.lines());
}
