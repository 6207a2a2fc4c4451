//! POSIX timers: both come back with their ids; a periodic one keeps firing and a
//! one-shot one keeps counting down from where it was.

use stasis_e2e::{crit_decode_all, dump, proc, restore, ScratchDir, Workload, LINE_TIMEOUT};

/// `tick N fired F left_ms L ids A B` -> (N, F, L, A, B).
fn ticks(lines: &[String]) -> Vec<(u64, u64, i64, String, String)> {
    lines
        .iter()
        .filter_map(
            |l| match l.split_whitespace().collect::<Vec<_>>().as_slice() {
                ["tick", n, "fired", f, "left_ms", left, "ids", a, b] => Some((
                    n.parse().ok()?,
                    f.parse().ok()?,
                    left.parse().ok()?,
                    a.to_string(),
                    b.to_string(),
                )),
                _ => None,
            },
        )
        .collect()
}

#[test]
fn posix_timers_keep_their_ids_and_their_remaining_time_across_restore() {
    let dir = ScratchDir::new("ptimer");
    let images = dir.subdir("images");
    let w = Workload::start("ptimer", &dir.join("t.log"), &[] as &[&str], dir.path());
    let pid = w.pid();
    w.wait_for("five ticks", LINE_TIMEOUT, |l| {
        (ticks(l).len() >= 5).then_some(())
    });

    dump(&images, pid, &[]).assert_success();
    proc::wait_gone(pid, LINE_TIMEOUT).expect("the dumped process is gone");
    let set = crit_decode_all(&images);
    let posix = set.core(pid)["tc"]["timers"]["posix"]
        .as_array()
        .map_or(0, Vec::len);
    assert_eq!(posix, 2, "both timers are in the core image");

    let before = ticks(&w.lines());
    let last = before.last().expect("ticks before").clone();
    restore(&images, &[]).assert_success();
    w.wait_for("five more ticks", LINE_TIMEOUT, |l| {
        (ticks(l).len() >= before.len() + 5).then_some(())
    });
    let after = &ticks(&w.lines())[before.len()..];
    assert_eq!(after[0].0, last.0 + 1, "ticks continue");
    for t in after {
        assert_eq!(
            (&t.3, &t.4),
            (&last.3, &last.4),
            "the timers keep their ids"
        );
        assert!(
            t.2 > 0 && t.2 <= last.2,
            "the one-shot timer keeps counting down from {} ms: {after:?}",
            last.2
        );
    }
    assert!(
        after.last().expect("ticks").1 > last.1,
        "the periodic timer still fires: {} then {after:?}",
        last.1
    );
}
