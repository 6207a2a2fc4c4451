//! A real JVM (the installed OpenJDK 17, default flags: about twenty threads, JIT code,
//! signal handlers, the /tmp/hsperfdata_<user>/<pid> shared file mapping) is dumped,
//! killed, restored, and continues with its heap state intact.

use stasis_e2e::log::ticks;
use stasis_e2e::proc;
use stasis_e2e::{crit_decode_all, dump, restore, LogFile, ScratchDir, LINE_TIMEOUT};
use std::path::Path;
use std::process::Command;

/// Compiles the Java workload into `dir` with the installed javac.
fn compile(dir: &Path) {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("workloads/java/Counter.java");
    let out = Command::new("javac")
        .arg("-d")
        .arg(dir)
        .arg(&src)
        .output()
        .expect("javac (openjdk-17-jdk-headless) must be installed");
    assert!(
        out.status.success(),
        "javac failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `tick N map M sum S worker W` -> (N, M, S, W).
fn parse(line: &str) -> Option<(u64, u64, String, u64)> {
    match line.split_whitespace().collect::<Vec<_>>().as_slice() {
        ["tick", n, "map", m, "sum", s, "worker", w] => Some((
            n.parse().ok()?,
            m.parse().ok()?,
            s.to_string(),
            w.parse().ok()?,
        )),
        _ => None,
    }
}

#[test]
fn openjdk_17_with_default_flags_continues_with_its_heap_and_threads_after_restore() {
    proc::become_subreaper();
    let dir = ScratchDir::new("jvm");
    compile(dir.path());
    let log_path = dir.join("jvm.log");
    let log = LogFile::new(&log_path);
    // setsid execs java in place (the child is not a group leader): the pid is java's.
    let mut java = Command::new("setsid");
    java.args(["java", "-cp"])
        .arg(dir.path())
        .arg("Counter")
        .arg(&log_path);
    let (pid, _guard) = proc::spawn_guarded(java, log_path.to_string_lossy());
    log.wait_for("three ticks", LINE_TIMEOUT * 3, |l| {
        (ticks(l).len() >= 3).then_some(())
    });
    let threads = std::fs::read_dir(format!("/proc/{pid}/task"))
        .expect("task dir")
        .count();
    assert!(threads >= 10, "a JVM has many threads, this one {threads}");
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).expect("maps");
    assert!(
        maps.contains("hsperfdata"),
        "the JVM maps its perf-data file"
    );
    let perf_file: String = maps
        .lines()
        .find_map(|l| {
            l.split_whitespace()
                .last()
                .filter(|p| p.contains("hsperfdata"))
                .map(str::to_string)
        })
        .expect("the perf-data file's path");

    let images = dir.subdir("images");
    dump(&images, pid, &[]).assert_success();
    proc::wait_gone(pid, LINE_TIMEOUT).expect("the dumped JVM is gone");
    let set = crit_decode_all(&images);
    let listed = set.entries("pstree.img")[0]["threads"]
        .as_array()
        .expect("threads")
        .len();
    assert_eq!(listed, threads, "every JVM thread is in the image");

    // Any JVM that starts now deletes the perf-data file of the dead pid: do the same.
    std::fs::remove_file(&perf_file).expect("remove the dumped JVM's perf-data file");
    let before = log.lines();
    let last = before
        .iter()
        .rev()
        .find_map(|l| parse(l))
        .expect("a tick before the dump");
    restore(&images, &[]).assert_success();
    assert!(
        std::path::Path::new(&perf_file).exists(),
        "restore recreated {perf_file}"
    );
    let after = log.wait_lines_after(before.len(), 4, LINE_TIMEOUT);
    let next: Vec<(u64, u64, String, u64)> = after.iter().filter_map(|l| parse(l)).collect();
    assert!(next.len() >= 4, "the JVM ticks after restore: {after:?}");
    for (i, t) in next.iter().enumerate() {
        let n = last.0 + 1 + i as u64;
        assert_eq!(t.0, n, "tick numbers continue: {after:?}");
        assert_eq!(t.1, n + 1, "the HashMap kept every entry: {after:?}");
        assert_eq!(t.2, last.2, "the heap array is unchanged: {after:?}");
    }
    assert!(
        next.last().expect("ticks").3 > last.3,
        "the worker thread keeps counting: {after:?}"
    );
    let threads_after = std::fs::read_dir(format!("/proc/{pid}/task"))
        .expect("task dir")
        .count();
    assert_eq!(threads_after, threads, "every JVM thread is back");
}
