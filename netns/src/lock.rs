//! The network lock (`--network-lock nftables`): while a namespace's processes are dumped
//! or restored, no packet enters or leaves the namespace, so no TCP peer sees a reset
//! from a half-dumped or half-restored socket.
//!
//! As CRIU's nftables lock, it is an `inet` table (CRIU names it `CRIU-<run id>`) with an
//! `input` and an `output` chain hooked at priority 0 whose policy drops everything,
//! loopback traffic included. The one exception is packets carrying [`SOCCR_MARK`], the
//! mark TCP repair gives its own packets. Locking and unlocking are each one nft
//! transaction, so the namespace is never half-locked.
//!
//! A lock held during a dump is part of the dumped ruleset (`nftables-<id>.img`); the
//! restored namespace therefore starts locked, and the restorer unlocks it with the table
//! name of the dump (CRIU keeps the run id in the inventory's `dump_criu_run_id`).

use crate::ns::tool::{self, argv, Input, Netns, Output};
use crate::ns::{NetnsError, Result};

/// The packet mark that passes the lock (CRIU's `SOCCR_MARK`).
pub const SOCCR_MARK: u32 = 0xC114;

/// Longest nftables table name (`NFT_NAME_MAXLEN` - 1).
const MAX_TABLE_NAME: usize = 255;

/// CRIU's name for the lock table of run `run_id`: `CRIU-<run id>`.
pub fn lock_table_name(run_id: &str) -> String {
    format!("CRIU-{run_id}")
}

/// Lock the network namespace of `ns_pid` with table `inet <table>`. A table of that name
/// that already exists is replaced, atomically.
pub fn lock(ns_pid: i32, table: &str) -> Result<()> {
    check_table_name(table)?;
    let script = lock_script(table);
    nft(
        ns_pid,
        &format!("network lock: create table inet {table}"),
        &script,
    )?;
    log::info!("netns of pid {ns_pid}: network locked (table inet {table})");
    Ok(())
}

/// Unlock the network namespace of `ns_pid`: delete table `inet <table>`. Unlocking a
/// namespace that holds no such table succeeds.
pub fn unlock(ns_pid: i32, table: &str) -> Result<()> {
    check_table_name(table)?;
    // `add` first makes the `delete` valid whether or not the table exists; both run in
    // one transaction.
    let script = format!("add table inet {table}\ndelete table inet {table}\n");
    nft(
        ns_pid,
        &format!("network unlock: delete table inet {table}"),
        &script,
    )?;
    log::info!("netns of pid {ns_pid}: network unlocked (table inet {table})");
    Ok(())
}

/// A held network lock. Dropping it unlocks (errors are logged), so a dump or restore
/// that fails half-way never leaves the namespace cut off.
#[derive(Debug)]
#[must_use = "dropping a NetLock unlocks at once"]
pub struct NetLock {
    pid: i32,
    table: String,
    held: bool,
}

impl NetLock {
    /// Lock the namespace of `ns_pid` with table `inet <table>`.
    pub fn acquire(ns_pid: i32, table: impl Into<String>) -> Result<NetLock> {
        let table = table.into();
        lock(ns_pid, &table)?;
        Ok(NetLock {
            pid: ns_pid,
            table,
            held: true,
        })
    }

    /// Take over a lock that is already in place (a restored namespace whose ruleset
    /// brought the dump's lock table back), so that it is released on drop.
    pub fn adopt(ns_pid: i32, table: impl Into<String>) -> Result<NetLock> {
        let table = table.into();
        check_table_name(&table)?;
        Ok(NetLock {
            pid: ns_pid,
            table,
            held: true,
        })
    }

    /// The pid whose namespace is locked.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// The lock table's name (in family `inet`).
    pub fn table(&self) -> &str {
        &self.table
    }

    /// Unlock now and report failure.
    pub fn release(mut self) -> Result<()> {
        self.held = false;
        unlock(self.pid, &self.table)
    }

    /// Leave the namespace locked: after a successful dump whose processes are killed
    /// (the namespace goes with them, and the lock is in the dumped ruleset).
    pub fn keep(mut self) {
        self.held = false;
    }
}

impl Drop for NetLock {
    fn drop(&mut self) {
        if self.held {
            if let Err(e) = unlock(self.pid, &self.table) {
                log::error!("{e}");
            }
        }
    }
}

/// The lock as one nft transaction.
fn lock_script(table: &str) -> String {
    let mut s =
        format!("add table inet {table}\ndelete table inet {table}\ntable inet {table} {{\n");
    for (chain, hook) in [("output", "output"), ("input", "input")] {
        s.push_str(&format!(
            "\tchain {chain} {{\n\t\ttype filter hook {hook} priority 0; policy drop;\n\
             \t\tmeta mark {SOCCR_MARK:#x} accept\n\t}}\n"
        ));
    }
    s.push_str("}\n");
    s
}

/// Table names are nft identifiers; anything else could not be parsed, or would change
/// the meaning of the script.
fn check_table_name(table: &str) -> Result<()> {
    let bad = |reason: &str| NetnsError::BadArgument {
        what: "nftables table name",
        value: table.to_string(),
        reason: reason.to_string(),
    };
    let mut chars = table.chars();
    match chars.next() {
        None => return Err(bad("empty")),
        Some(c) if !(c.is_ascii_alphabetic() || c == '_' || c == '.') => {
            return Err(bad("must start with a letter, '_' or '.'"))
        }
        Some(_) => {}
    }
    if table.len() > MAX_TABLE_NAME {
        return Err(bad("longer than 255 bytes"));
    }
    if !chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/')) {
        return Err(bad("may hold only letters, digits, '_', '-', '.' and '/'"));
    }
    Ok(())
}

fn nft(pid: i32, step: &str, script: &str) -> Result<()> {
    tool::run_ok(
        Netns::Of(pid),
        step,
        &argv(["nft", "-f", "-"]),
        Input::Bytes(script.as_bytes()),
        Output::Capture(64 * 1024),
    )
    .map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_names_are_nft_identifiers() {
        assert!(check_table_name("CRIU-1b4e28ba-2fa1-11d2-883f-0016d3cca427").is_ok());
        assert!(check_table_name("").is_err());
        assert!(check_table_name("1abc").is_err());
        assert!(check_table_name("a b").is_err());
        assert!(check_table_name("a;flush ruleset").is_err());
        assert!(check_table_name(&"a".repeat(256)).is_err());
    }

    #[test]
    fn lock_script_drops_both_directions_except_the_repair_mark() {
        let s = lock_script("CRIU-x");
        assert!(s.starts_with("add table inet CRIU-x\ndelete table inet CRIU-x\n"));
        assert_eq!(s.matches("policy drop;").count(), 2);
        assert!(s.contains("hook input priority 0") && s.contains("hook output priority 0"));
        assert_eq!(s.matches("meta mark 0xc114 accept").count(), 2);
    }

    #[test]
    fn criu_names_the_table_after_the_run() {
        assert_eq!(lock_table_name("abc"), "CRIU-abc");
    }
}
