//! memfd files survive a checkpoint with their contents (holes included),
//! size, names and seals: after the restore two descriptions of one memfd
//! still share its data at their own offsets, a write-sealed memfd still
//! refuses writes, one created without sealing still has no seals allowed.
//! A process that maps a memfd is refused by name (mappings of memfds are not
//! supported yet) and left running.

use std::time::Duration;

use stasis_e2e::log::{assert_no_fail, assert_ticks_continuous, pairs, ticks};
use stasis_e2e::{crit_decode_all, dump, proc, restore, ScratchDir, Workload, LINE_TIMEOUT};

#[test]
fn memfd_contents_names_and_seals_survive_restore() {
    let dir = ScratchDir::new("memfd");
    let images = dir.subdir("images");
    let w = Workload::start("memfd", &dir.join("memfd.log"), &[] as &[&str], dir.path());
    let pid = w.pid();
    w.wait_ticks_after(0, 10, LINE_TIMEOUT);

    dump(&images, pid, &[]).assert_success();
    w.assert_gone(Duration::from_secs(10));
    let at_dump = w.lines();
    let last_before = assert_ticks_continuous(&at_dump);
    assert_no_fail(&at_dump);

    let set = crit_decode_all(&images);
    let inodes = set.entries("memfd.img");
    let names: Vec<&str> = inodes.iter().filter_map(|i| i["name"].as_str()).collect();
    assert_eq!(names, ["stasis-data", "sealed", "plain"], "memfd inodes");
    let seals: Vec<u64> = inodes.iter().filter_map(|i| i["seals"].as_u64()).collect();
    assert_eq!(seals, [0x6, 0xf, 0x1], "memfd seals as dumped");
    let data_shmid = inodes[0]["shmid"].as_u64().unwrap();
    let pm = set.entries(&format!("pagemap-shmem-{data_shmid}.img"));
    let offsets: Vec<(u64, u64)> = pm[1..]
        .iter()
        .map(|e| {
            (
                e["vaddr"].as_u64().unwrap(),
                e["nr_pages"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        offsets,
        [(0, 3), (65536, 1)],
        "the data memfd's pages, hole left out"
    );
    let memfd_fds = set
        .entries("files.img")
        .iter()
        .filter(|e| e["type"] == "MEMFD")
        .count();
    assert_eq!(memfd_fds, 4, "four memfd descriptions (data twice)");

    restore(&images, &[]).assert_success();
    assert!(w.is_alive(), "restored process {pid} {}", w.how_it_ended());
    let m = at_dump.len();
    w.wait_ticks_after(m, 10, LINE_TIMEOUT);
    w.signal(libc::SIGUSR1);
    let (_, line) = w.wait_line_after(m, "usr1 ", LINE_TIMEOUT);
    let kv = pairs(line.trim_start_matches("usr1 "));
    for k in ["names", "seals", "size", "data"] {
        assert_eq!(kv[k], "ok", "{k} after restore: {line}");
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

#[test]
fn dump_refuses_a_mapped_memfd_by_name_and_leaves_the_process_running() {
    let dir = ScratchDir::new("memfd-map");
    let w = Workload::start("memfd", &dir.join("memfd.log"), &["map"], dir.path());
    let pid = w.pid();
    w.wait_ticks_after(0, 3, LINE_TIMEOUT);
    let out = dump(&dir.subdir("images"), pid, &[]);
    out.assert_clean_failure();
    assert!(
        out.stderr.contains("/memfd:stasis-data"),
        "the refusal should name the mapped memfd:\n{out}"
    );
    assert!(
        w.is_alive(),
        "the refused dump left the process {}",
        w.how_it_ended()
    );
    assert_eq!(
        proc::tracer_pid(pid),
        Some(0),
        "the refused dump left pid {pid} traced"
    );
    let n = w.lines().len();
    w.wait_ticks_after(n, 3, LINE_TIMEOUT);
}
