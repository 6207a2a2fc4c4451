//! Signal state across a checkpoint: handlers (SA_SIGINFO, SA_ONSTACK on a
//! sigaltstack), a blocked SIGUSR2 pending at dump time, a running
//! ITIMER_REAL, an ignored SIGHUP, umask and a lowered rlimit.

use std::collections::BTreeMap;
use std::time::Duration;

use stasis_e2e::log::{assert_ticks_continuous, pairs};
use stasis_e2e::{crit_decode_all, dump, restore, ScratchDir, Workload, LINE_TIMEOUT};

fn last_tick(lines: &[String]) -> BTreeMap<String, String> {
    pairs(
        lines
            .iter()
            .rev()
            .find(|l| l.starts_with("tick "))
            .expect("a tick line"),
    )
}

fn num(kv: &BTreeMap<String, String>, k: &str) -> u64 {
    kv[k].parse().unwrap_or_else(|_| panic!("{k} in {kv:?}"))
}

#[test]
fn pending_signal_handlers_altstack_itimer_umask_and_rlimit_survive_restore() {
    let dir = ScratchDir::new("signals");
    let images = dir.subdir("images");
    let log = dir.join("signals.log");
    let w = Workload::start("signals", &log, &[] as &[&str], dir.path());
    let pid = w.pid();
    w.wait_ticks_after(0, 3, LINE_TIMEOUT);
    let n = w.lines().len();
    w.signal(libc::SIGUSR1);
    w.wait_line_after(n, "usr1 1 onstack 1 siginfo 1", LINE_TIMEOUT);
    w.signal(libc::SIGUSR2);
    w.wait_for("a tick with SIGUSR2 pending", LINE_TIMEOUT, |l| {
        l.iter()
            .skip(n)
            .any(|l| l.starts_with("tick ") && pairs(l)["pending_usr2"] == "1")
            .then_some(())
    });
    let before = last_tick(&w.lines());

    dump(&images, pid, &[]).assert_success();
    w.assert_gone(Duration::from_secs(10));
    let at_dump = w.lines();
    let tick_at_dump = assert_ticks_continuous(&at_dump);
    let at_dump_kv = last_tick(&at_dump);
    let set = crit_decode_all(&images);
    let blocked = set
        .core(pid)
        .pointer("/tc/blk_sigset")
        .and_then(|v| v.as_u64());
    let usr2_bit = 1u64 << (libc::SIGUSR2 - 1);
    assert!(
        blocked.is_some_and(|b| b & usr2_bit != 0),
        "core-{pid}.img tc.blk_sigset {blocked:?} lacks SIGUSR2"
    );

    restore(&images, &[]).assert_success();
    assert!(w.is_alive(), "restored process {pid} {}", w.how_it_ended());
    let m = at_dump.len();
    w.wait_ticks_after(m, 10, LINE_TIMEOUT);
    std::thread::sleep(Duration::from_millis(200));
    let lines = w.lines();
    for line in lines[m..].iter().filter(|l| l.starts_with("tick ")) {
        let kv = pairs(line);
        for (k, v) in [
            ("pending_usr2", "1"),
            ("blocked_usr2", "1"),
            ("usr2", "0"),
            ("altstack", "1"),
        ] {
            assert_eq!(kv[k], v, "{k} after restore, before unblocking: {line}");
        }
        for k in ["umask", "nofile_soft", "nofile_hard", "usr1"] {
            assert_eq!(kv[k], before[k], "{k} after restore: {line}");
        }
    }
    let first_after = pairs(lines[m..].iter().find(|l| l.starts_with("tick ")).unwrap());
    let now = last_tick(&lines);
    assert!(
        num(&now, "alarms") >= num(&first_after, "alarms") + 5 && num(&now, "alarms") > num(&at_dump_kv, "alarms"),
        "the 20 ms ITIMER_REAL stopped firing after restore: {} alarms at the dump, {} at the first tick after, {} now",
        at_dump_kv["alarms"],
        first_after["alarms"],
        now["alarms"]
    );
    assert_eq!(
        num(&first_after, "tick"),
        tick_at_dump + 1,
        "first tick after restore"
    );

    let n = w.lines().len();
    w.signal(libc::SIGUSR1);
    w.wait_line_after(n, "usr1 2 onstack 1 siginfo 1", LINE_TIMEOUT);
    w.signal(libc::SIGHUP);

    let n = w.lines().len();
    std::fs::write(format!("{}.unblock", log.display()), "").unwrap();
    w.wait_line_after(n, "unblocked", LINE_TIMEOUT);
    let me = std::process::id();
    let (_, usr2) = w.wait_line_after(n, "usr2 ", LINE_TIMEOUT);
    assert_eq!(
        usr2,
        format!("usr2 1 from {me}"),
        "the SIGUSR2 pending since before the dump, with its sender"
    );
    let n = w.lines().len();
    w.wait_ticks_after(n, 10, LINE_TIMEOUT);
    let lines = w.lines();
    let usr2_lines: Vec<&String> = lines.iter().filter(|l| l.starts_with("usr2 ")).collect();
    assert_eq!(
        usr2_lines,
        [&usr2],
        "SIGUSR2 must be delivered exactly once"
    );
    let now = last_tick(&lines);
    for (k, v) in [
        ("pending_usr2", "0"),
        ("blocked_usr2", "0"),
        ("usr2", "1"),
        ("usr1", "2"),
    ] {
        assert_eq!(now[k], v, "{k} after unblocking: {now:?}");
    }
    assert!(
        w.is_alive(),
        "SIGHUP was ignored before the dump; after restore it {}",
        w.how_it_ended()
    );
    assert_ticks_continuous(&lines);
}
