//! Private memory a parent and child still share copy-on-write: after restore every page
//! neither of them wrote since the fork is one physical page in both again (the same
//! frame in both `/proc/PID/pagemap`s), the pages each rewrote are its own, and both
//! go on with their memory intact and their counters continuing.

use stasis_e2e::{crit_decode_all, dump, proc, restore, ScratchDir, Workload, LINE_TIMEOUT};
use std::collections::BTreeMap;
use std::os::unix::fs::FileExt;

const PAGE: u64 = 4096;
const SIZE: u64 = 32 << 20;
const EDGE: u64 = 1 << 20;

/// name -> (counter, state) per tick.
fn ticks(lines: &[String]) -> BTreeMap<String, Vec<(u64, String)>> {
    let mut out: BTreeMap<String, Vec<(u64, String)>> = BTreeMap::new();
    for l in lines {
        let w: Vec<&str> = l.splitn(4, ' ').collect();
        if let ["tick", name, n, state] = w.as_slice() {
            out.entry(name.to_string())
                .or_default()
                .push((n.parse().expect("counter"), state.to_string()));
        }
    }
    out
}

/// The physical frame of each page of `[addr, addr + len)` in `pid` (0: not present).
fn frames(pid: i32, addr: u64, len: u64) -> Vec<u64> {
    let f = std::fs::File::open(format!("/proc/{pid}/pagemap")).expect("pagemap");
    let mut buf = vec![0u8; (len / PAGE * 8) as usize];
    f.read_exact_at(&mut buf, addr / PAGE * 8)
        .expect("reading pagemap");
    buf.chunks_exact(8)
        .map(|c| {
            let e = u64::from_le_bytes(c.try_into().expect("8 bytes"));
            if e >> 63 & 1 == 1 {
                e & ((1 << 55) - 1)
            } else {
                0
            }
        })
        .collect()
}

/// Pages of the middle (written by neither since the fork) in the same frame in both,
/// and pages of the two rewritten edges that are.
fn sharing(parent: i32, child: i32, region: u64) -> (usize, usize) {
    let (a, b) = (frames(parent, region, SIZE), frames(child, region, SIZE));
    let edge = (EDGE / PAGE) as usize;
    let n = a.len();
    let same = |i: usize| a[i] != 0 && a[i] == b[i];
    let middle = (edge..n - edge).filter(|&i| same(i)).count();
    let edges = (0..edge).chain(n - edge..n).filter(|&i| same(i)).count();
    (middle, edges)
}

fn wait_ticks(w: &Workload, from: usize, n: usize) {
    w.wait_for("both ticking", LINE_TIMEOUT, |lines| {
        let t = ticks(&lines[from.min(lines.len())..]);
        ["parent", "child"]
            .iter()
            .all(|k| t.get(*k).is_some_and(|v| v.len() >= n))
            .then_some(())
    });
}

#[test]
fn memory_shared_copy_on_write_by_parent_and_child_is_shared_again_after_restore() {
    let dir = ScratchDir::new("cow");
    let images = dir.subdir("images");
    let w = Workload::start("cow", &dir.join("cow.log"), &[] as &[&str], dir.path());
    let pid = w.pid();
    wait_ticks(&w, 0, 2);
    let lines = w.lines();
    let region = lines
        .iter()
        .find_map(|l| {
            let hex = l.strip_prefix("region 0x")?.split_whitespace().next()?;
            u64::from_str_radix(hex, 16).ok()
        })
        .expect("the workload logs its region");
    let child: i32 = lines
        .iter()
        .find_map(|l| l.strip_prefix("child ")?.trim().parse().ok())
        .expect("the workload logs its child");
    let middle_pages = ((SIZE - 2 * EDGE) / PAGE) as usize;
    assert_eq!(
        sharing(pid, child, region),
        (middle_pages, 0),
        "before the dump, the kernel shares exactly the untouched middle"
    );

    dump(&images, pid, &[]).assert_success();
    proc::wait_gone(pid, LINE_TIMEOUT).expect("the dumped parent is gone");
    proc::wait_gone(child, LINE_TIMEOUT).expect("the dumped child is gone");
    crit_decode_all(&images);

    let before = ticks(&w.lines());
    let at = w.lines().len();
    restore(&images, &[]).assert_success();
    wait_ticks(&w, at, 3);
    let after = ticks(&w.lines()[at..]);
    for name in ["parent", "child"] {
        let prev = before[name].last().expect("ticked").0;
        let seq: Vec<u64> = after[name].iter().map(|t| t.0).collect();
        let want: Vec<u64> = (prev + 1..prev + 1 + seq.len() as u64).collect();
        assert_eq!(seq, want, "{name} continues from its own counter");
        for t in &after[name] {
            assert_eq!(t.1, "ok", "{name}'s memory after restore, tick {}", t.0);
        }
    }
    assert_eq!(
        sharing(pid, child, region),
        (middle_pages, 0),
        "after restore the untouched middle is shared again, the rewritten edges are not"
    );
}
