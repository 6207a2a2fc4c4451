//! The per-process "tick" lines the tree workloads log, and waiting for them.
//!
//! `tree` and `daemons` log `tick NAME N pid P ppid PP pgid G sid S` from every process,
//! every ~20 ms: a test reads each process's counter and relations from them.

use crate::{Workload, LINE_TIMEOUT};
use std::collections::BTreeMap;

/// name -> (counter, pid, ppid, pgid, sid) per tick, in log order.
pub type Relations = BTreeMap<String, Vec<(u64, i64, i64, i64, i64)>>;

/// Parses the `tick NAME N pid P ppid PP pgid G sid S` lines of `lines`.
pub fn relations(lines: &[String]) -> Relations {
    let mut out = Relations::new();
    for l in lines {
        let w: Vec<&str> = l.split_whitespace().collect();
        if let ["tick", name, n, "pid", pid, "ppid", ppid, "pgid", pgid, "sid", sid] = w.as_slice()
        {
            let num = |s: &str| s.parse::<i64>().expect("number");
            out.entry(name.to_string()).or_default().push((
                n.parse().expect("counter"),
                num(pid),
                num(ppid),
                num(pgid),
                num(sid),
            ));
        }
    }
    out
}

/// Waits until every process of `names` has logged at least `n` ticks from line `from`
/// on, as `parse` reads them.
pub fn wait_each<T>(
    w: &Workload,
    names: &[&str],
    from: usize,
    n: usize,
    parse: fn(&[String]) -> BTreeMap<String, Vec<T>>,
) {
    let what = format!("{n} ticks from each of {names:?}");
    w.wait_for(&what, LINE_TIMEOUT, |lines| {
        let t = parse(&lines[from.min(lines.len())..]);
        names
            .iter()
            .all(|name| t.get(*name).is_some_and(|v| v.len() >= n))
            .then_some(())
    });
}
