//! Processes sharing cwd, root and umask (`CLONE_FS`): the image holds one fs object for
//! them (crit shows the same `fs_id`), and after restore they still share it — a `chdir`
//! and `umask` in the child move its parent too, and not an ordinary sibling.

use stasis_e2e::{crit_decode_all, dump, proc, restore, ScratchDir, Workload, LINE_TIMEOUT};
use std::collections::BTreeMap;

/// name -> (counter, cwd, umask) per tick, in log order.
type Ticks = BTreeMap<String, Vec<(u64, String, String)>>;

fn ticks(lines: &[String]) -> Ticks {
    let mut out = Ticks::new();
    for l in lines {
        let w: Vec<&str> = l.split_whitespace().collect();
        if let ["tick", name, n, "cwd", cwd, "umask", mask] = w.as_slice() {
            out.entry(name.to_string()).or_default().push((
                n.parse().expect("counter"),
                cwd.to_string(),
                mask.to_string(),
            ));
        }
    }
    out
}

fn logged_pid(lines: &[String], what: &str) -> i32 {
    lines
        .iter()
        .find_map(|l| l.strip_prefix(what)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("the workload logs {what}"))
}

const NAMES: [&str; 3] = ["parent", "sharer", "other"];

#[test]
fn processes_sharing_cwd_and_umask_still_share_them_after_restore() {
    let dir = ScratchDir::new("fs-share");
    let images = dir.subdir("images");
    let w = Workload::start("fsshare", &dir.join("fs.log"), &[] as &[&str], dir.path());
    let pid = w.pid();
    w.wait_for("every process ticking", LINE_TIMEOUT, |lines| {
        let t = ticks(lines);
        NAMES
            .iter()
            .all(|n| t.get(*n).is_some_and(|v| v.len() >= 2))
            .then_some(())
    });
    let sharer = logged_pid(&w.lines(), "sharer ");
    let other = logged_pid(&w.lines(), "other ");

    dump(&images, pid, &[]).assert_success();
    proc::wait_gone(pid, LINE_TIMEOUT).expect("the dumped root is gone");
    for p in [sharer, other] {
        proc::wait_gone(p, LINE_TIMEOUT).unwrap_or_else(|e| panic!("pid {p}: {e}"));
    }
    let set = crit_decode_all(&images);
    let fs_id = |p: i32| {
        set.entries(&format!("ids-{p}.img"))[0]["fs_id"]
            .as_u64()
            .expect("fs_id")
    };
    assert_eq!(
        fs_id(sharer),
        fs_id(pid),
        "one fs object for parent and sharer"
    );
    assert_ne!(fs_id(other), fs_id(pid), "other has its own fs object");

    let before = ticks(&w.lines());
    let at = w.lines().len();
    restore(&images, &[]).assert_success();
    w.wait_for("every process ticked twice more", LINE_TIMEOUT, |lines| {
        let t = ticks(&lines[at..]);
        NAMES
            .iter()
            .all(|n| t.get(*n).is_some_and(|v| v.len() >= 2))
            .then_some(())
    });
    let after = ticks(&w.lines()[at..]);
    for name in NAMES {
        let prev = before[name].last().expect("ticked before").0;
        let values: Vec<u64> = after[name].iter().map(|t| t.0).collect();
        let want: Vec<u64> = (prev + 1..prev + 1 + values.len() as u64).collect();
        assert_eq!(values, want, "{name} continues from its own counter");
        for t in &after[name] {
            assert_eq!(
                (t.1.as_str(), t.2.as_str()),
                ("a", "022"),
                "{name} is back in a"
            );
        }
    }

    // The sharer moves: its parent moves with it, the other child stays.
    let at = w.lines().len();
    proc::signal(sharer, libc::SIGUSR1).expect("SIGUSR1 to the sharer");
    w.wait_for("the parent in b", LINE_TIMEOUT, |lines| {
        ticks(&lines[at..])
            .get("parent")
            .and_then(|v| v.iter().find(|t| t.1 == "b"))
            .cloned()
    });
    let moved_at = w.lines().len();
    w.wait_for("more ticks", LINE_TIMEOUT, |lines| {
        let t = ticks(&lines[moved_at..]);
        NAMES
            .iter()
            .all(|n| t.get(*n).is_some_and(|v| v.len() >= 3))
            .then_some(())
    });
    let moved = ticks(&w.lines()[moved_at..]);
    for (name, cwd, mask) in [
        ("parent", "b", "027"),
        ("sharer", "b", "027"),
        ("other", "a", "022"),
    ] {
        for t in &moved[name] {
            assert_eq!(
                (t.1.as_str(), t.2.as_str()),
                (cwd, mask),
                "{name} after the sharer moved"
            );
        }
    }
}
