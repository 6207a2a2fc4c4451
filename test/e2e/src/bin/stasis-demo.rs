//! The demo: a counter holding 64 MiB of patterned memory is checkpointed (which stops
//! it), then restored from its images with the same PID, and shown continuing from the
//! tick where it was frozen with its memory intact.

use stasis_e2e::{counter, proc, LogFile, ScratchDir, Workload};
use std::time::Duration;

fn show(title: &str, lines: &[String]) {
    println!("{title}");
    for l in lines {
        println!("    {l}");
    }
}

fn main() {
    let dir = ScratchDir::new("demo");
    let images = dir.subdir("images");
    let log = dir.join("counter.log");
    println!("stasis demo: images in {}", images.display());

    let w = Workload::start("counter", &log, &["64", "42"], dir.path());
    let pid = w.pid();
    let before = counter::verify(&w);
    let lines = w
        .log()
        .wait_lines_after(w.lines().len(), 3, Duration::from_secs(20));
    show(
        &format!(
            "1. counter running as pid {pid} (64 MiB of patterned memory, checksum {}):",
            before.checksum
        ),
        &lines,
    );

    stasis_e2e::dump(&images, pid, &[]).assert_success();
    proc::wait_gone(pid, Duration::from_secs(10)).expect("the dumped process is gone");
    let last = w.lines().last().cloned().unwrap_or_default();
    println!(
        "2. `stasis dump -t {pid} -D {}` wrote the images and stopped it; its last line: {last}",
        images.display()
    );
    let mut files: Vec<String> = std::fs::read_dir(&images)
        .expect("images dir")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect();
    files.sort();
    println!("   images: {}", files.join(" "));

    let at = w.lines().len();
    stasis_e2e::restore(&images, &[]).assert_success();
    let after = LogFile::new(&log).wait_lines_after(at, 3, Duration::from_secs(20));
    show(
        &format!(
            "3. `stasis restore -D {} -d`: pid {pid} is back and continues:",
            images.display()
        ),
        &after,
    );
    let verified = counter::verify(&w);
    println!(
        "4. its memory still checks out: checksum {} (before the dump: {}) -> {}",
        verified.checksum,
        before.checksum,
        if verified.checksum == before.checksum {
            "identical"
        } else {
            "DIFFERENT"
        }
    );
    assert_eq!(
        verified.checksum, before.checksum,
        "memory changed across checkpoint/restore"
    );
    println!("demo done: pid {pid} continued from the frozen instant.");
}
