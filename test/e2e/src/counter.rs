//! The counter workload's verify protocol (see `workloads/counter.c`).

use crate::{Workload, LINE_TIMEOUT};

/// What a `verify ok <tick> <checksum> rseq <state>` line says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub tick: u64,
    pub checksum: String,
    pub rseq: String,
}

/// Sends SIGUSR1 to a counter workload and waits for its verdict on its
/// memory; panics on `verify FAIL <region> <offset>`.
#[track_caller]
pub fn verify(w: &Workload) -> Verified {
    let before = w.lines().len();
    w.signal(libc::SIGUSR1);
    let (_, line) = w.wait_line_after(before, "verify ", LINE_TIMEOUT);
    let words: Vec<&str> = line.split_whitespace().collect();
    match words.as_slice() {
        ["verify", "ok", tick, sum, "rseq", rseq] => Verified {
            tick: tick.parse().expect("tick number"),
            checksum: sum.to_string(),
            rseq: rseq.to_string(),
        },
        _ => panic!("the counter's memory does not check out: {line}"),
    }
}

/// The checksum from the counter's `filled <checksum>` line.
pub fn filled_checksum(w: &Workload) -> String {
    let (_, line) = w.wait_line_after(0, "filled ", std::time::Duration::from_secs(60));
    line.split_whitespace()
        .nth(1)
        .expect("filled <checksum>")
        .to_string()
}
