//! A dump that fails — an unusable images dir, or stasis interrupted by
//! SIGTERM/SIGINT while it holds the process — leaves the process running as
//! it was: not traced, not stopped, its memory and its progress intact.

use std::path::Path;
use std::time::{Duration, Instant};

use stasis_e2e::counter::{filled_checksum, verify};
use stasis_e2e::cr::{dump_command, with_log};
use stasis_e2e::log::assert_ticks_continuous;
use stasis_e2e::run::Running;
use stasis_e2e::{dump, proc, ScratchDir, Workload, COMMAND_TIMEOUT, LINE_TIMEOUT};

/// The process keeps ticking without a gap, is neither traced nor stopped,
/// and its memory still checks out with the checksum it had.
fn assert_untouched(w: &Workload, start_time: u64, checksum: &str) {
    let pid = w.pid();
    assert!(
        w.is_alive(),
        "the dump failed, yet the process {}",
        w.how_it_ended()
    );
    let st = proc::stat(pid).unwrap();
    assert_eq!(
        st.start_time, start_time,
        "pid {pid} is not the original process any more"
    );
    assert_eq!(
        proc::tracer_pid(pid),
        Some(0),
        "the failed dump left pid {pid} ptrace-attached"
    );
    let n = w.lines().len();
    w.wait_ticks_after(n, 5, LINE_TIMEOUT);
    let st = proc::stat(pid).unwrap();
    assert!(
        st.state == 'S' || st.state == 'R',
        "pid {pid} left in state {}",
        st.state
    );
    assert_ticks_continuous(&w.lines());
    let v = verify(w);
    assert_eq!(v.checksum, checksum, "memory after the failed dump");
    assert_eq!(v.rseq, "busy", "rseq registration after the failed dump");
}

#[test]
fn dump_into_an_unusable_images_dir_fails_and_leaves_the_process_running_untouched() {
    let dir = ScratchDir::new("dump-bad-dir");
    let w = Workload::start("counter", &dir.join("counter.log"), &["4", "8"], dir.path());
    let sum = filled_checksum(&w);
    w.wait_ticks_after(0, 3, LINE_TIMEOUT);
    let start = proc::stat(w.pid()).unwrap().start_time;
    // The images dir cannot exist: its parent is a regular file.
    std::fs::write(dir.join("not-a-dir"), "").unwrap();
    let out = dump(&dir.join("not-a-dir/images"), w.pid(), &[]);
    out.assert_clean_failure();
    assert_untouched(&w, start, &sum);
}

fn pages_written(images: &Path) -> bool {
    std::fs::read_dir(images)
        .into_iter()
        .flatten()
        .flatten()
        .any(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            name.starts_with("pages-") && e.metadata().map(|m| m.len() > 0).unwrap_or(false)
        })
}

/// Starts a dump of a counter holding 384 MiB, sends `sig` to stasis once
/// `ready(images dir, workload pid)` holds, and checks that the dump failed
/// and the counter is untouched.
///
/// The dump may win the race and finish before the signal lands (the
/// process is then gone, as after any dump): that attempt proves nothing,
/// and the test tries again with a new counter, up to `ATTEMPTS` times.
fn interrupt_dump(name: &str, sig: i32, moment: &str, ready: impl Fn(&Path, proc::Pid) -> bool) {
    const ATTEMPTS: usize = 3;
    let mut outcomes = Vec::new();
    for attempt in 1..=ATTEMPTS {
        let dir = ScratchDir::new(&format!("{name}-{attempt}"));
        let images = dir.subdir("images");
        let w = Workload::start(
            "counter",
            &dir.join("counter.log"),
            &["384", "77"],
            dir.path(),
        );
        let sum = filled_checksum(&w);
        w.wait_ticks_after(0, 3, LINE_TIMEOUT);
        let start = proc::stat(w.pid()).unwrap().start_time;

        let mut stasis = Running::start(dump_command(&images, w.pid(), &[]));
        let deadline = Instant::now() + COMMAND_TIMEOUT;
        let mut seen = false;
        while !stasis.has_exited() {
            assert!(Instant::now() < deadline, "never saw {moment}");
            if ready(&images, w.pid()) {
                seen = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        if seen {
            proc::signal(stasis.pid(), sig).unwrap();
        }
        let out = with_log(stasis.wait(COMMAND_TIMEOUT), &images.join("dump.log"));
        eprintln!("attempt {attempt}:\n{out}");
        if out.success() {
            let why = if seen {
                "the signal came too late or was ignored".to_string()
            } else {
                format!("it ended before the test saw {moment}")
            };
            outcomes.push(format!("attempt {attempt}: the dump succeeded ({why})"));
            w.assert_gone(Duration::from_secs(10));
            continue;
        }
        assert!(
            seen,
            "the dump failed on its own, before it was interrupted:\n{out}"
        );
        assert_untouched(&w, start, &sum);
        return;
    }
    panic!(
        "could not interrupt a dump {ATTEMPTS} times in a row; a stasis that finishes \
         a dump after SIGTERM/SIGINT would do that too:\n  {}",
        outcomes.join("\n  ")
    );
}

#[test]
fn sigterm_to_stasis_while_it_holds_the_process_leaves_the_process_running_untouched() {
    interrupt_dump(
        "dump-sigterm",
        libc::SIGTERM,
        "the process traced",
        |_, pid| proc::tracer_pid(pid).is_some_and(|t| t != 0),
    );
}

#[test]
fn sigint_to_stasis_while_it_writes_pages_leaves_the_process_running_untouched() {
    interrupt_dump(
        "dump-sigint",
        libc::SIGINT,
        "the process traced and pages being written",
        |images, pid| proc::tracer_pid(pid).is_some_and(|t| t != 0) && pages_written(images),
    );
}

/// Dumps a process holding `kind`, which stasis does not support yet: the
/// dump must refuse, say what it refused, and leave the process running.
fn dump_refuses(kind: &str, word: &str) {
    let dir = ScratchDir::new(&format!("unsupported-{kind}"));
    let w = Workload::start("unsupported", &dir.join("u.log"), &[kind], dir.path());
    w.wait_ticks_after(0, 3, LINE_TIMEOUT);
    let pid = w.pid();
    let start = proc::stat(pid).unwrap().start_time;
    let out = dump(&dir.subdir("images"), pid, &[]);
    eprintln!("{out}");
    out.assert_clean_failure();
    assert!(
        out.stderr.to_lowercase().contains(word),
        "the refusal should say it is about a {word}:\n{out}"
    );
    assert!(
        w.is_alive(),
        "the refused dump left the process {}",
        w.how_it_ended()
    );
    assert_eq!(
        proc::stat(pid).unwrap().start_time,
        start,
        "pid {pid} is not the original"
    );
    assert_eq!(
        proc::tracer_pid(pid),
        Some(0),
        "the refused dump left pid {pid} traced"
    );
    let n = w.lines().len();
    w.wait_ticks_after(n, 5, LINE_TIMEOUT);
    assert_ticks_continuous(&w.lines());
}

#[test]
fn dump_refuses_a_process_holding_a_perf_event_and_leaves_it_running() {
    dump_refuses("perf", "perf_event");
}

#[test]
fn dump_refuses_a_process_holding_a_netlink_socket_and_leaves_it_running() {
    dump_refuses("socket", "socket");
}
