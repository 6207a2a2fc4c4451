//! Pipes and FIFOs keep their buffered bytes across a checkpoint: records
//! queued in a pipe, a pipe grown beyond its default capacity and a FIFO
//! before the dump are read after the restore exactly once and in order, the
//! descriptors keep their flags and sharing, and closing the write end after
//! the restore still gives the reader the rest and then end-of-file.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;
use stasis_e2e::log::{assert_no_fail, assert_ticks_continuous, ticks};
use stasis_e2e::proc::{fd_flags, fd_targets, flag_change};
use stasis_e2e::{crit_decode_all, dump, restore, ImageSet, ScratchDir, Workload, LINE_TIMEOUT};

const LAG: u64 = 5;
const REC_LEN: u64 = 13;
const BIG_LEN: u64 = 20000;

/// `pipe_id` → (bytes, size) of a `pipes-data.img` or `fifo-data.img`.
fn pipe_data(set: &ImageSet, name: &str) -> BTreeMap<u64, (u64, u64)> {
    set.entries(name)
        .iter()
        .map(|e| {
            let n = |k: &str| {
                e.get(k)
                    .and_then(Value::as_u64)
                    .unwrap_or_else(|| panic!("{name}: {k} in {e}"))
            };
            (n("pipe_id"), (n("bytes"), n("size")))
        })
        .collect()
}

fn count_type(set: &ImageSet, ty: &str) -> usize {
    set.entries("files.img")
        .iter()
        .filter(|e| e.get("type").and_then(Value::as_str) == Some(ty))
        .count()
}

#[test]
fn bytes_buffered_in_pipes_and_a_fifo_are_read_after_restore_exactly_once_in_order() {
    let dir = ScratchDir::new("pipes");
    let images = dir.subdir("images");
    let fifo = dir.join("fifo");
    let w = Workload::start("pipes", &dir.join("pipes.log"), &[&fifo], dir.path());
    let pid = w.pid();
    w.wait_ticks_after(0, 2 * LAG as usize, LINE_TIMEOUT);
    let targets = fd_targets(pid);
    let flags = fd_flags(pid);

    dump(&images, pid, &[]).assert_success();
    w.assert_gone(Duration::from_secs(10));
    let at_dump = w.lines();
    let last_before = assert_ticks_continuous(&at_dump);
    assert_no_fail(&at_dump);

    let set = crit_decode_all(&images);
    assert_eq!(
        count_type(&set, "PIPE"),
        4,
        "two pipes, a read and a write end each"
    );
    assert_eq!(
        count_type(&set, "FIFO"),
        2,
        "the FIFO's read and write descriptions"
    );
    // Each channel holds LAG records, or LAG + 1 if the dump came between a
    // write and its read.
    let pipes = pipe_data(&set, "pipes-data.img");
    assert_eq!(
        pipes.len(),
        2,
        "pipes-data.img holds one entry per pipe: {pipes:?}"
    );
    let mut sizes: Vec<(u64, u64)> = pipes.values().copied().collect();
    sizes.sort();
    for ((bytes, cap), (len, want_cap)) in sizes.iter().zip([(REC_LEN, 65536), (BIG_LEN, 262144)]) {
        assert!(
            *bytes == LAG * len || *bytes == (LAG + 1) * len,
            "a pipe of {len}-byte records holds {bytes} bytes at the dump"
        );
        assert_eq!(*cap, want_cap, "pipe capacity");
    }
    let fifos = pipe_data(&set, "fifo-data.img");
    let (fifo_bytes, _) = fifos.values().next().expect("fifo-data.img has an entry");
    assert!(
        *fifo_bytes == LAG * REC_LEN || *fifo_bytes == (LAG + 1) * REC_LEN,
        "the FIFO holds {fifo_bytes} bytes at the dump"
    );

    restore(&images, &[]).assert_success();
    assert!(w.is_alive(), "restored process {pid} {}", w.how_it_ended());
    w.wait_ticks_after(at_dump.len(), 2 * LAG as usize, LINE_TIMEOUT);
    let lines = w.lines();
    assert_no_fail(&lines);
    assert_ticks_continuous(&lines);
    let after = ticks(&lines[at_dump.len()..]);
    assert_eq!(after[0].1, last_before + 1, "first tick after restore");

    let restored_flags = fd_flags(pid);
    for (fd, before) in &flags {
        let now = restored_flags
            .get(fd)
            .unwrap_or_else(|| panic!("fd {fd} is gone after restore"));
        assert_eq!(
            now,
            before,
            "fd {fd} ({}) flags changed: {}",
            targets[fd],
            flag_change(before, now)
        );
    }
    let restored = fd_targets(pid);
    for (fd, t) in &targets {
        let kind = |t: &str| t.split('[').next().unwrap_or("").to_string();
        assert_eq!(kind(&restored[fd]), kind(t), "fd {fd} kind");
    }
    // The fd and its dup read from one pipe, the two ends meet.
    let pipe_fds: Vec<i32> = restored
        .iter()
        .filter(|(_, t)| t.starts_with("pipe:"))
        .map(|(fd, _)| *fd)
        .collect();
    let same = |a: i32, b: i32| restored[&a] == restored[&b];
    for (a, b) in pipe_fds.iter().zip(pipe_fds.iter().skip(1)) {
        assert_eq!(
            same(*a, *b),
            targets[a] == targets[b],
            "fds {a} and {b}: same pipe before, and after?"
        );
    }

    let n = w.lines().len();
    w.signal(libc::SIGUSR1);
    let (_, eof) = w.wait_line_after(n, "eof ", LINE_TIMEOUT);
    assert_eq!(
        eof, "eof ok -",
        "after its write end closed, the restored pipe must yield the buffered records and then end-of-file"
    );
}
