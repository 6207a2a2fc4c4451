//! A workload's log file, read from outside while the workload appends to it.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The log a workload appends one line per write(2) to.
#[derive(Debug, Clone)]
pub struct LogFile {
    path: PathBuf,
}

impl LogFile {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        LogFile { path: path.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The complete lines written so far (a line still being written — which
    /// cannot happen with one write(2) per line, but cheap to guard — is left out).
    pub fn lines(&self) -> Vec<String> {
        let text = std::fs::read_to_string(&self.path).unwrap_or_default();
        let complete = match text.rfind('\n') {
            Some(i) => &text[..=i],
            None => "",
        };
        complete.lines().map(str::to_string).collect()
    }

    /// Polls the log until `found` returns `Some`, and returns that. Panics
    /// after `timeout` with `what` and the end of the log.
    pub fn wait_for<T>(
        &self,
        what: &str,
        timeout: Duration,
        mut found: impl FnMut(&[String]) -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + timeout;
        loop {
            let lines = self.lines();
            if let Some(v) = found(&lines) {
                return v;
            }
            if Instant::now() >= deadline {
                panic!(
                    "timed out after {timeout:?} waiting for {what} in {}\n{}",
                    self.path.display(),
                    tail(&lines, 15)
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits for a line that starts with `prefix` and returns it.
    pub fn wait_line(&self, prefix: &str, timeout: Duration) -> String {
        self.wait_for(
            &format!("a line starting with {prefix:?}"),
            timeout,
            |lines| lines.iter().find(|l| l.starts_with(prefix)).cloned(),
        )
    }

    /// Waits until the log has `n` more lines than `after` (a line count).
    pub fn wait_lines_after(&self, after: usize, n: usize, timeout: Duration) -> Vec<String> {
        self.wait_for(
            &format!("{n} new lines after line {after}"),
            timeout,
            |lines| (lines.len() >= after + n).then(|| lines[after..].to_vec()),
        )
    }

    /// The last `n` lines, numbered, for assertion messages.
    pub fn excerpt(&self, n: usize) -> String {
        tail(&self.lines(), n)
    }
}

/// The last `n` of `lines`, numbered from 1 as in the file.
pub fn tail(lines: &[String], n: usize) -> String {
    let start = lines.len().saturating_sub(n);
    let mut s = String::new();
    for (i, l) in lines.iter().enumerate().skip(start) {
        s.push_str(&format!("  {:5}: {l}\n", i + 1));
    }
    if lines.is_empty() {
        s.push_str("  (log is empty)\n");
    }
    s
}

/// Lines around line index `at` (0-based), numbered, for assertion messages.
pub fn around(lines: &[String], at: usize, radius: usize) -> String {
    let start = at.saturating_sub(radius);
    let end = (at + radius + 1).min(lines.len());
    let mut s = String::new();
    for (i, l) in lines.iter().enumerate().take(end).skip(start) {
        s.push_str(&format!(
            "  {:5}{} {l}\n",
            i + 1,
            if i == at { ">" } else { ":" }
        ));
    }
    s
}

/// The numbers of all lines of the form `tick <n> ...`, in log order, with
/// their line index.
pub fn ticks(lines: &[String]) -> Vec<(usize, u64)> {
    lines
        .iter()
        .enumerate()
        .filter_map(|(i, l)| {
            let mut it = l.split_whitespace();
            (it.next()? == "tick").then_some(())?;
            Some((i, it.next()?.parse().ok()?))
        })
        .collect()
}

/// Checks that the tick numbers in `lines` run on by exactly one from line
/// to line (no gap, no repeat), and returns the last one. Panics with the
/// lines around the first break.
pub fn assert_ticks_continuous(lines: &[String]) -> u64 {
    let ticks = ticks(lines);
    assert!(
        !ticks.is_empty(),
        "no tick lines in the log:\n{}",
        tail(lines, 15)
    );
    for w in ticks.windows(2) {
        let ((_, a), (at, b)) = (w[0], w[1]);
        assert_eq!(
            b,
            a + 1,
            "tick sequence broken at log line {}: tick {a} is followed by tick {b} \
             (a gap means lost work, a repeat means the process ran the same step twice):\n{}",
            at + 1,
            around(lines, at, 4)
        );
    }
    ticks.last().map(|t| t.1).unwrap_or_default()
}

/// Reads a line of `key value key value ...` pairs (such as the signals
/// workload's ticks) into a map.
pub fn pairs(line: &str) -> std::collections::BTreeMap<String, String> {
    let words: Vec<&str> = line.split_whitespace().collect();
    words
        .chunks(2)
        .filter(|c| c.len() == 2)
        .map(|c| (c[0].to_string(), c[1].to_string()))
        .collect()
}

/// Panics if any line reports a failure the workload detected itself
/// (`FAIL` anywhere in the line), showing each such line in context.
#[track_caller]
pub fn assert_no_fail(lines: &[String]) {
    let fails: Vec<usize> = (0..lines.len())
        .filter(|&i| lines[i].contains("FAIL"))
        .collect();
    if let Some(&first) = fails.first() {
        panic!(
            "the workload reported {} failure(s); the first in context:\n{}",
            fails.len(),
            around(lines, first, 4)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(s: &[&str]) -> Vec<String> {
        s.iter().map(|l| l.to_string()).collect()
    }

    #[test]
    fn continuous_ticks_pass_and_return_the_last() {
        let l = lines(&[
            "start pid 1",
            "tick 1",
            "verify ok 1 ab rseq busy",
            "tick 2",
            "tick 3",
        ]);
        assert_eq!(assert_ticks_continuous(&l), 3);
    }

    #[test]
    #[should_panic(expected = "tick 2 is followed by tick 4")]
    fn a_gap_in_ticks_is_caught() {
        assert_ticks_continuous(&lines(&["tick 1", "tick 2", "tick 4"]));
    }

    #[test]
    #[should_panic(expected = "tick 2 is followed by tick 2")]
    fn a_repeated_tick_is_caught() {
        assert_ticks_continuous(&lines(&["tick 1", "tick 2", "tick 2", "tick 3"]));
    }

    #[test]
    #[should_panic(expected = "reported 1 failure")]
    fn a_fail_line_is_caught() {
        assert_no_fail(&lines(&["tick 1", "verify FAIL heap 64", "tick 2"]));
    }

    #[test]
    fn pairs_reads_key_value_lines() {
        let kv = pairs("tick 7 off 104 dup ok");
        assert_eq!(kv["tick"], "7");
        assert_eq!(kv["off"], "104");
        assert_eq!(kv["dup"], "ok");
    }

    #[test]
    fn a_partial_last_line_is_not_read() {
        let dir = crate::ScratchDir::new("unit-log");
        let log = LogFile::new(dir.join("l.log"));
        std::fs::write(log.path(), "tick 1\ntick 2\ntic").unwrap();
        assert_eq!(log.lines(), ["tick 1", "tick 2"]);
    }
}
