//! A process writing through an fd and reading a private file mapping it
//! modified continues at its file offset with its mapping intact.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use stasis_e2e::log::{assert_ticks_continuous, pairs, ticks};
use stasis_e2e::{crit_decode_all, dump, restore, ScratchDir, Workload, LINE_TIMEOUT};

const REC_LEN: u64 = 13;

fn expected_records(count: u64) -> String {
    (0..count).map(|n| format!("rec {n:08}\n")).collect()
}

fn file_names(set: &stasis_e2e::ImageSet) -> Vec<String> {
    set.entries("files.img")
        .iter()
        .filter_map(|e| {
            e.pointer("/reg/name")
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .collect()
}

fn check_data_file(data: &Path, last_logged: u64) -> u64 {
    let text = std::fs::read_to_string(data).unwrap();
    let len = text.len() as u64;
    assert_eq!(
        len % REC_LEN,
        0,
        "{} is {len} bytes, not whole records: a write landed at a wrong offset",
        data.display()
    );
    let count = len / REC_LEN;
    assert!(
        count > last_logged,
        "{} holds {count} records but tick {last_logged} was logged",
        data.display()
    );
    if text != expected_records(count) {
        let bad = text
            .as_bytes()
            .chunks(REC_LEN as usize)
            .zip(expected_records(count).as_bytes().chunks(REC_LEN as usize))
            .position(|(a, b)| a != b)
            .unwrap();
        panic!(
            "{}: record {bad} is {:?}, expected {:?} (records must be contiguous, each written once)",
            data.display(),
            String::from_utf8_lossy(&text.as_bytes()[bad * 13..(bad * 13 + 13).min(text.len())]),
            format!("rec {bad:08}\n")
        );
    }
    count
}

#[test]
fn fileio_continues_writing_at_its_offset_and_keeps_its_private_mapping_change() {
    let dir = ScratchDir::new("fileio");
    let images = dir.subdir("images");
    let (data, map, shared) = (
        dir.join("data.bin"),
        dir.join("map.bin"),
        dir.join("shared.bin"),
    );
    let map_content: Vec<u8> = (0..5 * 4096u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    std::fs::write(&map, &map_content).unwrap();
    std::fs::write(&shared, vec![b'.'; 4096]).unwrap();
    let w = Workload::start(
        "fileio",
        &dir.join("fileio.log"),
        &[&data, &map, &shared],
        dir.path(),
    );
    let pid = w.pid();
    w.wait_ticks_after(0, 10, LINE_TIMEOUT);

    dump(&images, pid, &[]).assert_success();
    w.assert_gone(Duration::from_secs(10));
    let at_dump = w.lines();
    let last_before = assert_ticks_continuous(&at_dump);
    let set = crit_decode_all(&images);
    let names = file_names(&set);
    for f in [&data, &map] {
        assert!(
            names.iter().any(|n| Path::new(n) == f.as_path()),
            "files.img does not name {} among its regular files: {names:?}",
            f.display()
        );
    }
    let records_at_dump = check_data_file(&data, last_before);

    restore(&images, &[]).assert_success();
    assert!(w.is_alive(), "restored process {pid} {}", w.how_it_ended());
    w.wait_ticks_after(at_dump.len(), 10, LINE_TIMEOUT);
    let lines = w.lines();
    let after = ticks(&lines[at_dump.len()..]);
    assert_eq!(after[0].1, last_before + 1, "first tick after restore");
    let last = assert_ticks_continuous(&lines);

    for line in lines.iter().filter(|l| l.starts_with("tick ")) {
        let kv = pairs(line);
        let n: u64 = kv["tick"].parse().unwrap();
        assert_eq!(
            kv["map"], "ok",
            "the private mapping lost its change or the file changed under it: {line}"
        );
        assert_eq!(
            kv["dup"], "ok",
            "the fd and its dup no longer share one offset: {line}"
        );
        assert_eq!(
            kv["read"], "ok",
            "the separately opened read fd lost its own offset: {line}"
        );
        assert_eq!(
            kv["off"],
            ((n + 1) * REC_LEN).to_string(),
            "fd offset after writing record {n}: {line}"
        );
    }
    let records = check_data_file(&data, last);
    assert!(
        records > records_at_dump,
        "no record was written after the restore"
    );
    assert_eq!(
        std::fs::read(&map).unwrap(),
        map_content,
        "{} changed on disk: a MAP_PRIVATE write went through",
        map.display()
    );
    let head = std::fs::read(&shared).unwrap();
    let head = String::from_utf8_lossy(&head[..32]).into_owned();
    let n: u64 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    assert!(
        head.starts_with("shared ") && n > last_before,
        "the MAP_SHARED mapping no longer writes to {}: it holds {head:?}, the last tick before the dump was {last_before}",
        shared.display()
    );
}
