//! File locks across a checkpoint (`--file-locks`): without the option a
//! process holding locks is refused and left running; with it, the flock,
//! POSIX and OFD locks it held are released when the dumped process is
//! killed and held again — by the same pid, on the same ranges — once it is
//! restored.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Duration;

use stasis_e2e::log::assert_ticks_continuous;
use stasis_e2e::{crit_decode_all, dump, proc, restore, ScratchDir, Workload, LINE_TIMEOUT};

/// The `/proc/locks` lines on the inode of `path`, as "KIND TYPE PID START END".
fn locks_on(path: &Path) -> Vec<String> {
    let ino = std::fs::metadata(path).unwrap().ino();
    let text = std::fs::read_to_string("/proc/locks").unwrap();
    let mut out: Vec<String> = text
        .lines()
        .filter_map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            // "1: POSIX  ADVISORY  WRITE 1234 fe:00:5678 10 29"
            let at = w.iter().position(|x| x.matches(':').count() == 2)?;
            let file_ino: u64 = w[at].rsplit(':').next()?.parse().ok()?;
            (file_ino == ino).then(|| {
                format!(
                    "{} {} {} {} {}",
                    w[1],
                    w[at - 2],
                    w[at - 1],
                    w[at + 1],
                    w[at + 2]
                )
            })
        })
        .collect();
    out.sort();
    out
}

#[test]
fn file_locks_are_held_again_by_the_restored_process_with_file_locks() {
    let dir = ScratchDir::new("locks");
    let data = dir.subdir("data");
    let w = Workload::start("locks", &dir.join("locks.log"), &[&data], dir.path());
    let pid = w.pid();
    w.wait_ticks_after(0, 3, LINE_TIMEOUT);
    let files = ["flock", "posix", "ofd"].map(|n| data.join(n));
    let before: Vec<Vec<String>> = files.iter().map(|f| locks_on(f)).collect();
    assert_eq!(
        before,
        [
            vec![format!("FLOCK WRITE {pid} 0 EOF")],
            vec![
                format!("POSIX READ {pid} 100 EOF"),
                format!("POSIX WRITE {pid} 10 29")
            ],
            vec!["OFDLCK READ -1 0 4".to_string()],
        ],
        "locks held by the workload"
    );

    let refused = dump(&dir.subdir("refused"), pid, &[]);
    refused.assert_clean_failure();
    assert!(
        refused.stderr.contains("--file-locks"),
        "the refusal should point at --file-locks:\n{refused}"
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

    let images = dir.subdir("images");
    dump(&images, pid, &["--file-locks"]).assert_success();
    w.assert_gone(Duration::from_secs(10));
    let at_dump = w.lines();
    assert_ticks_continuous(&at_dump);
    for f in &files {
        assert_eq!(
            locks_on(f),
            Vec::<String>::new(),
            "{} is still locked after the dump",
            f.display()
        );
    }
    let set = crit_decode_all(&images);
    assert_eq!(
        set.entries("filelocks.img").len(),
        4,
        "filelocks.img entries"
    );

    restore(&images, &[]).assert_success();
    assert!(w.is_alive(), "restored process {pid} {}", w.how_it_ended());
    let after: Vec<Vec<String>> = files.iter().map(|f| locks_on(f)).collect();
    assert_eq!(after, before, "locks held after restore");
    w.wait_ticks_after(at_dump.len(), 5, LINE_TIMEOUT);
    assert_ticks_continuous(&w.lines());
}
