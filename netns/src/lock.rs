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
use std::net::{IpAddr, SocketAddr};
use std::os::unix::fs::MetadataExt;

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
    /// (the namespace goes with them, and the lock is in the dumped ruleset). Its links
    /// but loopback are also set down: a dying namespace releases its nftables hooks
    /// before it deletes its devices, and a peer's segment that came in through a link
    /// in between would find no socket and be answered with a reset.
    pub fn keep(mut self) {
        self.held = false;
        if let Err(e) = links_down(self.pid) {
            log::warn!("{e}");
        }
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

/// The lock of single connections, for sockets whose namespace is not the dumped tree's
/// own (the host's, or one a runtime owns): the rest of that namespace carries on, so only
/// the dumped connections are cut off, as CRIU does with `--network-lock nftables`. Its
/// table is made on the first connection, in the namespace of the task holding it, with
/// two sets of 4-tuples (IPv4, IPv6) that the `input` and `output` chains drop. Each
/// connection is added both ways, before its socket enters repair mode: a segment that
/// reached the socket after its queues were read would be acknowledged and lost with it.
///
/// After a dump whose tasks die the lock is kept ([`ConnLock::keep`]): the peer's
/// retransmissions are dropped instead of answered with a reset, until the restore has
/// the connections back and deletes the table ([`unlock()`]). Otherwise dropping the guard
/// unlocks.
#[derive(Debug)]
#[must_use = "dropping a ConnLock unlocks at once"]
pub struct ConnLock {
    table: String,
    /// The namespace (a pid in it) the table was made in, once it is.
    made_in: Option<i32>,
    held: bool,
}

impl ConnLock {
    /// A lock named `inet <table>`, holding no connection yet (nothing is made).
    pub fn new(table: impl Into<String>) -> Result<ConnLock> {
        let table = table.into();
        check_table_name(&table)?;
        Ok(ConnLock {
            table,
            made_in: None,
            held: true,
        })
    }

    /// Cuts off the TCP connection `local` <-> `peer` of a socket held by `pid`.
    pub fn add(&mut self, pid: i32, local: SocketAddr, peer: SocketAddr) -> Result<()> {
        if let Some(other) = self.made_in.filter(|&p| p != pid) {
            if !same_netns(other, pid) {
                return Err(NetnsError::BadArgument {
                    what: "connection to lock",
                    value: format!("{local} -> {peer} of pid {pid}"),
                    reason: format!("its network namespace is not that of pid {other}"),
                });
            }
        }
        let mut script = match self.made_in {
            None => conn_lock_script(&self.table),
            Some(_) => String::new(),
        };
        script.push_str(&conn_elements(&self.table, local, peer)?);
        nft(
            pid,
            &format!(
                "network lock: connection {local} -> {peer} in table inet {}",
                self.table
            ),
            &script,
        )?;
        if self.made_in.is_none() {
            log::info!(
                "netns of pid {pid}: connection lock table inet {}",
                self.table
            );
        }
        self.made_in.get_or_insert(pid);
        log::debug!("netns of pid {pid}: connection {local} -> {peer} locked");
        Ok(())
    }

    /// Whether a connection was locked.
    pub fn is_empty(&self) -> bool {
        self.made_in.is_none()
    }

    /// Leave the connections locked (the dumped tasks are dead; the restore unlocks).
    pub fn keep(mut self) {
        self.held = false;
    }

    /// Unlock now and report failure.
    pub fn release(mut self) -> Result<()> {
        self.held = false;
        match self.made_in {
            Some(pid) => unlock(pid, &self.table),
            None => Ok(()),
        }
    }
}

impl Drop for ConnLock {
    fn drop(&mut self) {
        if let (true, Some(pid)) = (self.held, self.made_in) {
            if let Err(e) = unlock(pid, &self.table) {
                log::error!("{e}");
            }
        }
    }
}

/// Sets every link of the namespace of `ns_pid` but loopback down, in one `ip -batch`.
fn links_down(ns_pid: i32) -> Result<()> {
    let step = "network lock: links down";
    let links = crate::ns::link::list(Netns::Of(ns_pid), step)?;
    let batch: String = links
        .iter()
        .filter(|l| l.flags & crate::ns::link::IFF_UP != 0 && l.link_type != "loopback")
        .map(|l| format!("link set dev {} down\n", l.name))
        .collect();
    if batch.is_empty() {
        return Ok(());
    }
    tool::run_ok(
        Netns::Of(ns_pid),
        step,
        &argv(["ip", "-batch", "-"]),
        Input::Bytes(batch.as_bytes()),
        Output::Capture(64 * 1024),
    )
    .map(drop)
}

fn same_netns(a: i32, b: i32) -> bool {
    let ns = |p: i32| std::fs::metadata(format!("/proc/{p}/ns/net")).map(|m| (m.dev(), m.ino()));
    matches!((ns(a), ns(b)), (Ok(x), Ok(y)) if x == y)
}

/// The connection lock's table, as one transaction.
fn conn_lock_script(table: &str) -> String {
    let mut s =
        format!("add table inet {table}\ndelete table inet {table}\ntable inet {table} {{\n");
    s.push_str("\tset conns4 { type ipv4_addr . inet_service . ipv4_addr . inet_service; }\n");
    s.push_str("\tset conns6 { type ipv6_addr . inet_service . ipv6_addr . inet_service; }\n");
    for (chain, hook) in [("output", "output"), ("input", "input")] {
        s.push_str(&format!(
            "\tchain {chain} {{\n\t\ttype filter hook {hook} priority 0; policy accept;\n\
             \t\tmeta mark {SOCCR_MARK:#x} accept\n\
             \t\tip saddr . tcp sport . ip daddr . tcp dport @conns4 drop\n\
             \t\tip6 saddr . tcp sport . ip6 daddr . tcp dport @conns6 drop\n\t}}\n"
        ));
    }
    s.push_str("}\n");
    s
}

/// `add element` of both directions of `local` <-> `peer`.
fn conn_elements(table: &str, local: SocketAddr, peer: SocketAddr) -> Result<String> {
    // An IPv4 peer of an IPv6 socket (`::ffff:a.b.c.d`) travels as IPv4.
    let plain = |a: SocketAddr| match a.ip() {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(IpAddr::V4(v4), a.port()),
            None => a,
        },
        IpAddr::V4(_) => a,
    };
    let (l, p) = (plain(local), plain(peer));
    let set = match (l.ip(), p.ip()) {
        (IpAddr::V4(_), IpAddr::V4(_)) => "conns4",
        (IpAddr::V6(_), IpAddr::V6(_)) => "conns6",
        _ => {
            return Err(NetnsError::BadArgument {
                what: "connection to lock",
                value: format!("{local} -> {peer}"),
                reason: "its two ends are of different families".into(),
            })
        }
    };
    let one = |a: SocketAddr, b: SocketAddr| {
        format!("{} . {} . {} . {}", a.ip(), a.port(), b.ip(), b.port())
    };
    Ok(format!(
        "add element inet {table} {set} {{ {}, {} }}\n",
        one(l, p),
        one(p, l)
    ))
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
    fn the_connection_lock_drops_listed_tuples_both_ways() {
        let s = conn_lock_script("CRIU-x");
        assert!(s.starts_with("add table inet CRIU-x\ndelete table inet CRIU-x\n"));
        assert_eq!(s.matches("policy accept;").count(), 2);
        assert_eq!(s.matches("@conns4 drop").count(), 2);
        assert_eq!(s.matches("@conns6 drop").count(), 2);
        let l: SocketAddr = "10.0.0.1:40000".parse().unwrap();
        let p: SocketAddr = "10.0.0.2:80".parse().unwrap();
        assert_eq!(
            conn_elements("CRIU-x", l, p).unwrap(),
            "add element inet CRIU-x conns4 { 10.0.0.1 . 40000 . 10.0.0.2 . 80, \
             10.0.0.2 . 80 . 10.0.0.1 . 40000 }\n"
        );
        let mapped: SocketAddr = "[::ffff:10.0.0.1]:40000".parse().unwrap();
        let peer6: SocketAddr = "[::ffff:10.0.0.2]:80".parse().unwrap();
        assert!(conn_elements("T", mapped, peer6)
            .unwrap()
            .contains("conns4 { 10.0.0.1 . 40000"));
        let v6: SocketAddr = "[fd00::1]:5".parse().unwrap();
        assert!(conn_elements("T", v6, "[fd00::2]:6".parse().unwrap())
            .unwrap()
            .contains("conns6 { fd00::1 . 5 . fd00::2 . 6, fd00::2 . 6 . fd00::1 . 5 }"));
        assert!(conn_elements("T", v6, p).is_err());
    }

    #[test]
    fn criu_names_the_table_after_the_run() {
        assert_eq!(lock_table_name("abc"), "CRIU-abc");
    }
}
