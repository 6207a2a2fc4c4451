//! An epoll event loop continues across a checkpoint: it keeps waking for
//! its periodic timerfd, its edge-triggered eventfd still holds the partial
//! sum it had (checked every 5 ticks), a signal sent after the restore
//! arrives through its signalfd, and one-shot timers armed before the dump
//! (relative, and absolute on CLOCK_REALTIME) fire once after it.

use std::time::Duration;

use serde_json::Value;
use stasis_e2e::log::{assert_no_fail, assert_ticks_continuous, ticks};
use stasis_e2e::{crit_decode_all, dump, restore, ImageSet, ScratchDir, Workload, LINE_TIMEOUT};

fn of_type<'a>(set: &'a ImageSet, ty: &str, payload: &str) -> Vec<&'a Value> {
    set.entries("files.img")
        .iter()
        .filter(|e| e.get("type").and_then(Value::as_str) == Some(ty))
        .map(|e| &e[payload])
        .collect()
}

#[test]
fn an_epoll_loop_still_wakes_for_its_timerfd_eventfd_and_signalfd_after_restore() {
    let dir = ScratchDir::new("evloop");
    let images = dir.subdir("images");
    let w = Workload::start(
        "evloop",
        &dir.join("evloop.log"),
        &[] as &[&str],
        dir.path(),
    );
    let pid = w.pid();
    w.wait_ticks_after(0, 12, LINE_TIMEOUT);

    dump(&images, pid, &[]).assert_success();
    w.assert_gone(Duration::from_secs(10));
    let at_dump = w.lines();
    let last_before = assert_ticks_continuous(&at_dump);
    assert_no_fail(&at_dump);
    assert!(
        !at_dump
            .iter()
            .any(|l| l.starts_with("once ") || l.starts_with("abs ")),
        "the one-shot timers fired before the dump; the dump came too late to test them"
    );

    let set = crit_decode_all(&images);
    let epolls = of_type(&set, "EVENTPOLL", "epfd");
    assert_eq!(epolls.len(), 1, "one epoll instance");
    let mut data: Vec<u64> = epolls[0]["tfd"]
        .as_array()
        .expect("tfd entries")
        .iter()
        .map(|t| t["data"].as_u64().unwrap())
        .collect();
    data.sort();
    assert_eq!(data, [1, 2, 3, 4, 5], "the epoll registrations' data");
    let timers = of_type(&set, "TIMERFD", "tfd");
    assert_eq!(timers.len(), 3, "three timerfds");
    assert!(
        timers
            .iter()
            .any(|t| t["clockid"] == 0 && t["settime_flags"] == 1),
        "the absolute CLOCK_REALTIME timer: {timers:?}"
    );
    let sigfds = of_type(&set, "SIGNALFD", "sgfd");
    let mask = sigfds[0]["sigmask"].as_u64().expect("sigmask");
    assert_eq!(mask, 1 << (libc::SIGUSR1 - 1), "signalfd mask");
    assert_eq!(of_type(&set, "EVENTFD", "efd").len(), 1, "one eventfd");

    restore(&images, &[]).assert_success();
    assert!(w.is_alive(), "restored process {pid} {}", w.how_it_ended());
    let m = at_dump.len();
    w.wait_ticks_after(m, 12, LINE_TIMEOUT);
    w.signal(libc::SIGUSR1);
    w.wait_line_after(m, "usr1 1 signo 10", LINE_TIMEOUT);
    w.wait_line_after(m, "once fired", LINE_TIMEOUT);
    w.wait_line_after(m, "abs fired", LINE_TIMEOUT);
    w.wait_ticks_after(m, 20, LINE_TIMEOUT);

    let lines = w.lines();
    assert_no_fail(&lines);
    assert_ticks_continuous(&lines);
    assert_eq!(
        ticks(&lines[m..])[0].1,
        last_before + 1,
        "first tick after restore"
    );
    let checks_after = lines[m..]
        .iter()
        .filter(|l| l.starts_with("tick ") && l.ends_with("counter ok"))
        .count();
    assert!(
        checks_after >= 3,
        "the eventfd sum was checked after restore only {checks_after} times"
    );
    for what in ["once fired", "abs fired", "usr1 "] {
        let n = lines.iter().filter(|l| l.starts_with(what)).count();
        assert_eq!(n, 1, "{what:?} logged {n} times");
    }
}
