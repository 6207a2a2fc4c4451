//! Exits of the shim's children, made waitable.
//!
//! The containerd-shim crate reaps every child with `waitpid(-1)` on SIGCHLD and reports
//! `(pid, status)` to its monitor, so the shim can never `wait` for a child itself. This
//! table is fed from one monitor subscription taken before the first child is started.
//! A command's pid is watched from the moment it is spawned (under the table's lock, so
//! its exit cannot slip by); exits nobody watched yet — a container's init that died
//! before its pid file was read — are kept among the most recent ones for a late lookup.

use std::collections::{HashMap, VecDeque};
use std::sync::{Condvar, Mutex, MutexGuard};

/// How many exits nobody was waiting for are remembered.
const RECENT: usize = 256;

#[derive(Default)]
struct Table {
    /// Pids a caller waits for, with their status once known.
    watched: HashMap<i32, Option<i32>>,
    /// Exits of pids nobody watched, newest last.
    recent: VecDeque<(i32, i32)>,
}

/// The exit table.
#[derive(Default)]
pub struct Exits {
    table: Mutex<Table>,
    cond: Condvar,
}

/// The table locked while a child is spawned: its exit cannot be recorded until the pid
/// is watched.
pub struct SpawnGuard<'a> {
    table: MutexGuard<'a, Table>,
}

impl SpawnGuard<'_> {
    pub fn watch(&mut self, pid: i32) {
        self.table.watched.insert(pid, None);
    }
}

impl Exits {
    fn lock(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Lock the table to spawn a child and [`SpawnGuard::watch`] its pid.
    pub fn spawning(&self) -> SpawnGuard<'_> {
        SpawnGuard { table: self.lock() }
    }

    /// Records an exit. Returns false when nobody watches `pid` (the caller then decides
    /// whether it belongs to a container process).
    pub fn record(&self, pid: i32, status: i32) -> bool {
        let mut t = self.lock();
        if let Some(slot) = t.watched.get_mut(&pid) {
            *slot = Some(status);
            self.cond.notify_all();
            return true;
        }
        if t.recent.len() == RECENT {
            t.recent.pop_front();
        }
        t.recent.push_back((pid, status));
        false
    }

    /// Blocks until the watched `pid` exits; returns its status (128+signal if killed).
    pub fn wait(&self, pid: i32) -> i32 {
        let mut t = self.lock();
        loop {
            match t.watched.get(&pid) {
                Some(Some(status)) => {
                    let status = *status;
                    t.watched.remove(&pid);
                    return status;
                }
                Some(None) => t = self.cond.wait(t).unwrap_or_else(|p| p.into_inner()),
                None => return -1,
            }
        }
    }

    /// An exit of `pid` that happened before anyone watched it.
    pub fn take_recent(&self, pid: i32) -> Option<i32> {
        let mut t = self.lock();
        let at = t.recent.iter().rposition(|(p, _)| *p == pid)?;
        t.recent.remove(at).map(|(_, s)| s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn a_watched_exit_wakes_its_waiter_and_is_not_kept_as_recent() {
        let exits = Arc::new(Exits::default());
        exits.spawning().watch(42);
        let e = Arc::clone(&exits);
        let waiter = std::thread::spawn(move || e.wait(42));
        assert!(exits.record(42, 3));
        assert_eq!(waiter.join().unwrap(), 3);
        assert_eq!(exits.take_recent(42), None);
    }

    #[test]
    fn an_exit_before_the_pid_was_known_is_found_later_once() {
        let exits = Exits::default();
        assert!(!exits.record(7, 137));
        assert_eq!(exits.take_recent(7), Some(137));
        assert_eq!(exits.take_recent(7), None);
    }

    #[test]
    fn only_the_most_recent_unwatched_exits_are_kept() {
        let exits = Exits::default();
        for pid in 0..(RECENT as i32 + 10) {
            exits.record(pid, 0);
        }
        assert_eq!(exits.take_recent(0), None);
        assert_eq!(exits.take_recent(RECENT as i32 + 9), Some(0));
    }
}
