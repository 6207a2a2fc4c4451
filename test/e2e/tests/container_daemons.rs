//! Lost session and group leaders inside a container: the `daemons` workload as PID 1 of
//! new namespaces (its intermediates exit, the init adopts their children). The image
//! holds the inner PIDs of the gone leaders (read from `NSsid`/`NSpgid`: the host sees
//! none), and after restore every process is back with its inner PID, parent, group and
//! session, its counter continuing.

use stasis_e2e::container::{busybox_rootfs, Container};
use stasis_e2e::ticks::{relations, Relations};
use stasis_e2e::{crit_decode_all, dump, ScratchDir, LINE_TIMEOUT};
use std::path::Path;
use std::time::{Duration, Instant};

const NAMES: [&str; 4] = ["root", "daemon", "grouped", "deep"];

fn ticks(rootfs: &Path) -> (usize, Relations) {
    let lines: Vec<String> = std::fs::read_to_string(rootfs.join("data/daemons.log"))
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect();
    (lines.len(), relations(&lines))
}

/// Waits until each process has ticked `n` times in the lines after the first `from`.
fn wait_each(rootfs: &Path, from: usize, n: usize) -> Relations {
    let until = Instant::now() + LINE_TIMEOUT;
    loop {
        let lines: Vec<String> = std::fs::read_to_string(rootfs.join("data/daemons.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect();
        let t = relations(&lines[from.min(lines.len())..]);
        if NAMES
            .iter()
            .all(|k| t.get(*k).is_some_and(|v| v.len() >= n))
        {
            return t;
        }
        assert!(
            Instant::now() < until,
            "waiting for {n} ticks of each: {t:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn lost_leaders_inside_a_pid_namespace_come_back_with_their_inner_ids() {
    let dir = ScratchDir::new("container-daemons");
    let images = dir.subdir("images");
    let rootfs = dir.subdir("rootfs");
    busybox_rootfs(&rootfs, &["daemons_static"]);
    let mut c = Container::start(&rootfs, "daemons", &["/bin/daemons", "/data/daemons.log"]);
    let before = wait_each(&rootfs, 0, 2);
    let last = |t: &Relations, k: &str| *t[k].last().expect("ticked");
    assert_eq!(
        last(&before, "root").1,
        1,
        "the workload is the container's init"
    );
    for k in ["daemon", "grouped", "deep"] {
        let t = last(&before, k);
        assert_eq!(t.2, 1, "{k} was adopted by the init");
        assert_ne!(t.3, t.1, "{k}'s group is led by a gone process");
    }

    dump(&images, c.pid, &["--ext-mount-map", "/dev/null:devnull"]).assert_success();
    c.assert_gone(Duration::from_secs(10));
    let set = crit_decode_all(&images);
    let (at, before) = ticks(&rootfs);
    let mut tree = set.pstree();
    tree.sort_unstable();
    let mut want: Vec<(u64, u64, u64, u64)> = NAMES
        .iter()
        .map(|k| {
            let t = last(&before, k);
            (t.1 as u64, t.2 as u64, t.3 as u64, t.4 as u64)
        })
        .collect();
    want[0].1 = 0;
    want.sort_unstable();
    assert_eq!(
        tree, want,
        "pstree.img holds the inner ids, the gone leaders' too"
    );

    c.restore_from(&images, &dir.join("pid"), &[]);
    let after = wait_each(&rootfs, at, 2);
    for k in NAMES {
        let prev = last(&before, k);
        let seq: Vec<u64> = after[k].iter().map(|t| t.0).collect();
        let next: Vec<u64> = (prev.0 + 1..prev.0 + 1 + seq.len() as u64).collect();
        assert_eq!(seq, next, "{k} continues from its own counter");
        for t in &after[k] {
            assert_eq!(
                (t.1, t.2, t.3, t.4),
                (prev.1, prev.2, prev.3, prev.4),
                "{k} keeps its inner pid, parent, group and session"
            );
        }
    }
}
