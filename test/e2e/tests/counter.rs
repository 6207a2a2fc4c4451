//! A counter holding 256 MiB of seeded memory is checkpointed, killed,
//! restored with its pid, and continues exactly where it was.

use std::time::Duration;

use stasis_e2e::counter::{filled_checksum, verify};
use stasis_e2e::log::{assert_no_fail, assert_ticks_continuous, ticks};
use stasis_e2e::{crit_decode_all, dump, proc, restore, ScratchDir, Workload, LINE_TIMEOUT};

#[test]
fn counter_with_256_mib_continues_from_its_last_tick_with_the_same_pid_and_intact_memory() {
    let dir = ScratchDir::new("counter-256");
    let images = dir.subdir("images");
    let w = Workload::start(
        "counter",
        &dir.join("counter.log"),
        &["256", "20240601"],
        dir.path(),
    );
    let pid = w.pid();
    let filled = filled_checksum(&w);
    w.wait_ticks_after(0, 5, LINE_TIMEOUT);
    let before = verify(&w);
    assert_eq!(before.checksum, filled, "checksum before the dump");
    assert_eq!(
        before.rseq, "busy",
        "glibc's rseq area should be registered before the dump"
    );
    let comm_before = proc::stat(pid).unwrap().comm;
    let cmdline_before = proc::cmdline(pid).unwrap();
    let smaps_before = proc::smaps(pid);

    dump(&images, pid, &[]).assert_success();
    w.assert_gone(Duration::from_secs(10));
    let at_dump = w.lines();
    let last_tick = assert_ticks_continuous(&at_dump);

    assert!(
        images.join("dump.log").is_file(),
        "-o dump.log should be written in the work dir, which defaults to the images dir"
    );
    let set = crit_decode_all(&images);
    let p = pid as u64;
    assert_eq!(
        set.pstree(),
        [(p, 0, p, p)],
        "pstree.img: one task, a session and group leader"
    );
    assert_eq!(set.comm(pid), comm_before, "core-{pid}.img tc.comm");
    let pages = images.join(format!("pages-{}.img", set.pages_id(pid)));
    let pages_len = std::fs::metadata(&pages).map(|m| m.len()).unwrap_or(0);
    assert!(
        pages_len >= 256 << 20,
        "{} holds {pages_len} bytes, less than the 256 MiB the counter filled",
        pages.display()
    );
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(
        w.lines(),
        at_dump,
        "the log grew after the dump killed the process"
    );

    let pidfile = dir.join("restored.pid");
    restore(&images, &["--pidfile", pidfile.to_str().unwrap()]).assert_success();
    assert!(
        w.is_alive(),
        "no process with the original pid {pid} after restore -d returned: {}",
        w.how_it_ended()
    );
    let written = std::fs::read_to_string(&pidfile).unwrap_or_default();
    assert_eq!(
        written.trim(),
        pid.to_string(),
        "--pidfile {}",
        pidfile.display()
    );
    assert_eq!(
        proc::stat(pid).unwrap().comm,
        comm_before,
        "comm of the restored process"
    );
    assert_eq!(
        proc::cmdline(pid).unwrap(),
        cmdline_before,
        "cmdline of the restored process"
    );
    assert_eq!(
        proc::stat(pid).unwrap().ppid,
        std::process::id() as proc::Pid,
        "after restore -d the process should be reparented to the test, its child subreaper"
    );
    assert_eq!(
        proc::tracer_pid(pid),
        Some(0),
        "the restored process is still ptrace-attached after restore -d returned"
    );

    w.wait_ticks_after(at_dump.len(), 5, LINE_TIMEOUT);
    let lines = w.lines();
    let first_after = ticks(&lines[at_dump.len()..]).first().map(|t| t.1);
    assert_eq!(
        first_after,
        Some(last_tick + 1),
        "the first tick after restore must follow the last before the dump ({last_tick})"
    );
    assert_ticks_continuous(&lines);
    assert_no_fail(&lines);
    let after = verify(&w);
    assert_eq!(
        after.checksum, filled,
        "checksum of the 256 MiB (+ heap and stack) after restore"
    );
    assert_eq!(after.rseq, "busy", "the rseq registration was not restored");
    assert_same_vmas(&smaps_before, &proc::smaps(pid));
}

/// The restored VMAs carry exactly the dumped `VmFlags` (protections, `MAP_` flags,
/// madvise bits, accounting), and the 256 MiB region holds exactly its dumped pages.
fn assert_same_vmas(before: &[proc::SmapsVma], after: &[proc::SmapsVma]) {
    let line =
        |m: &proc::SmapsVma| format!("  {:x}-{:x} {} [{}]\n", m.start, m.end, m.path, m.vm_flags);
    let only = |a: &[proc::SmapsVma], b: &[proc::SmapsVma]| -> String {
        a.iter()
            .filter(|m| {
                !b.iter().any(|n| {
                    (n.start, n.end, &n.path, &n.vm_flags) == (m.start, m.end, &m.path, &m.vm_flags)
                })
            })
            .map(line)
            .collect()
    };
    let (gone, new) = (only(before, after), only(after, before));
    assert!(
        gone.is_empty() && new.is_empty(),
        "VMAs (range, path, VmFlags) differ after the restore\nonly before the dump:\n{gone}\
         only after the restore:\n{new}"
    );
    let big = |v: &[proc::SmapsVma]| {
        v.iter()
            .find(|m| m.end - m.start >= 256 << 20)
            .cloned()
            .expect("the counter's 256 MiB VMA")
    };
    let (b, a) = (big(before), big(after));
    assert_eq!(
        a.rss_kb, b.rss_kb,
        "resident KiB of the 256 MiB region after the restore vs before"
    );
}

#[test]
fn restored_counter_has_the_same_memory_map_and_open_files_as_the_original() {
    let dir = ScratchDir::new("counter-maps");
    let images = dir.subdir("images");
    let w = Workload::start(
        "counter",
        &dir.join("counter.log"),
        &["8", "99"],
        dir.path(),
    );
    let pid = w.pid();
    w.wait_ticks_after(0, 3, LINE_TIMEOUT);
    let maps_before = proc::maps(pid);
    let fds_before = proc::fd_targets(pid);
    let flags_before = proc::fd_flags(pid);
    let cwd_before = std::fs::read_link(format!("/proc/{pid}/cwd")).unwrap();

    dump(&images, pid, &[]).assert_success();
    w.assert_gone(Duration::from_secs(10));
    restore(&images, &[]).assert_success();
    assert!(w.is_alive(), "restored process {pid} {}", w.how_it_ended());

    let maps_after = proc::maps(pid);
    let only = |a: &[proc::MapLine], b: &[proc::MapLine]| {
        a.iter()
            .filter(|l| !b.contains(l))
            .map(|l| format!("  {l}\n"))
            .collect::<String>()
    };
    assert!(
        maps_before == maps_after,
        "/proc/{pid}/maps differs after restore\nonly before the dump:\n{}only after the restore:\n{}",
        only(&maps_before, &maps_after),
        only(&maps_after, &maps_before)
    );
    assert_eq!(
        proc::fd_targets(pid),
        fds_before,
        "open fds (fd -> target) after restore"
    );
    let flags_after = proc::fd_flags(pid);
    let changed: Vec<String> = flags_before
        .iter()
        .filter(|(fd, f)| flags_after.get(fd) != Some(f))
        .map(|(fd, f)| {
            let after = flags_after
                .get(fd)
                .map(String::as_str)
                .unwrap_or("(closed)");
            format!("fd {fd}: {f} -> {after} ({})", proc::flag_change(f, after))
        })
        .collect();
    assert!(
        changed.is_empty(),
        "fd flags changed by the restore:\n  {}",
        changed.join("\n  ")
    );
    assert_eq!(
        std::fs::read_link(format!("/proc/{pid}/cwd")).unwrap(),
        cwd_before,
        "cwd after restore"
    );
    let n = w.lines().len();
    w.wait_ticks_after(n, 3, LINE_TIMEOUT);
    assert_ticks_continuous(&w.lines());
    assert_no_fail(&w.lines());
}

#[test]
fn the_same_image_set_restores_twice_to_the_same_point() {
    let dir = ScratchDir::new("counter-twice");
    let images = dir.subdir("images");
    let w = Workload::start(
        "counter",
        &dir.join("counter.log"),
        &["8", "4242"],
        dir.path(),
    );
    let pid = w.pid();
    let filled = filled_checksum(&w);
    w.wait_ticks_after(0, 3, LINE_TIMEOUT);
    dump(&images, pid, &[]).assert_success();
    w.assert_gone(Duration::from_secs(10));
    let last = assert_ticks_continuous(&w.lines());

    for round in 1..=2 {
        let from = w.lines().len();
        restore(&images, &[]).assert_success();
        assert!(
            w.is_alive(),
            "restore #{round}: process {pid} {}",
            w.how_it_ended()
        );
        w.wait_ticks_after(from, 3, LINE_TIMEOUT);
        let lines = w.lines();
        let run = &lines[from..];
        assert_eq!(
            ticks(run)[0].1,
            last + 1,
            "restore #{round} starts from the dumped tick"
        );
        assert_ticks_continuous(run);
        assert_eq!(verify(&w).checksum, filled, "restore #{round}: memory");
        assert_no_fail(&lines);
        proc::kill_and_reap(pid, Duration::from_secs(10)).unwrap();
    }
}
