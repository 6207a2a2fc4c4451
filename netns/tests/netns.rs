//! Network namespaces against the real kernel: a namespace with a veth to the host,
//! addresses, routes, a rule, sysctls and an nftables table is dumped, restored into a
//! fresh namespace with an external veth mapping, compared, and must pass traffic; the
//! network lock must cut a TCP peer off and let it back in.
//!
//! Run as root. `ip`, `nsenter`, `unshare`, `nft` and `crit` must exist: a missing tool
//! fails the test.

use std::collections::BTreeSet;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;
use stasis_images::ImageDir;
use stasis_netns::{dump_netns, lock, restore_netns, unlock, NetLock, NetnsError};

const LISTEN_ENV: &str = "STASIS_NETNS_TEST_LISTEN";

/// Not a test of its own: re-executed inside a namespace by [`Listener`], it accepts and
/// drops connections on the address in `STASIS_NETNS_TEST_LISTEN` until killed.
#[test]
fn listener_helper_serves_only_when_asked() {
    let Ok(addr) = std::env::var(LISTEN_ENV) else {
        return;
    };
    let l = TcpListener::bind(addr.as_str()).expect("bind the helper listener");
    for s in l.incoming() {
        drop(s);
    }
}

fn unique() -> u32 {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    (std::process::id() ^ nanos ^ N.fetch_add(1, Ordering::Relaxed).wrapping_mul(7919)) & 0xfffff
}

/// Run a command (inside the netns of `pid` if given); panic with its stderr on failure.
fn run(pid: Option<i32>, args: &[&str]) -> String {
    let mut cmd = match pid {
        Some(p) => {
            let mut c = Command::new("nsenter");
            c.arg(format!("--net=/proc/{p}/ns/net"))
                .arg("--")
                .args(args);
            c
        }
        None => {
            let mut c = Command::new(args[0]);
            c.args(&args[1..]);
            c
        }
    };
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {args:?} (is the tool installed?): {e}"));
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn json(pid: Option<i32>, args: &[&str]) -> Value {
    serde_json::from_str(&run(pid, args)).unwrap()
}

/// A process alone in a new, empty network namespace; killed on drop.
struct NsProc(Child);

impl NsProc {
    fn spawn() -> NsProc {
        let child = Command::new("unshare")
            .args(["--net", "sleep", "1000"])
            .stdin(Stdio::null())
            .spawn()
            .expect("run unshare (util-linux)");
        let p = NsProc(child);
        let mine = std::fs::read_link("/proc/self/ns/net").unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::fs::read_link(format!("/proc/{}/ns/net", p.pid())).ok() == Some(mine.clone()) {
            assert!(
                Instant::now() < deadline,
                "unshare never entered a new netns"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        p
    }

    fn pid(&self) -> i32 {
        self.0.id() as i32
    }
}

impl Drop for NsProc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A host-side link deleted on drop (which deletes its veth peer too).
struct HostLink(String);

impl Drop for HostLink {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["link", "del", "dev", &self.0])
            .stderr(Stdio::null())
            .status();
    }
}

struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!("stasis-netns-{tag}-{}", unique()));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A TCP listener inside the netns of a process; killed on drop.
struct Listener(Child);

impl Listener {
    fn start(pid: i32, addr: SocketAddr) -> Listener {
        let exe = std::env::current_exe().unwrap();
        let child = Command::new("nsenter")
            .arg(format!("--net=/proc/{pid}/ns/net"))
            .arg("--")
            .arg(exe)
            .args([
                "--exact",
                "listener_helper_serves_only_when_asked",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(LISTEN_ENV, addr.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the listener helper");
        Listener(child)
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn connects(addr: SocketAddr, timeout: Duration) -> bool {
    TcpStream::connect_timeout(&addr, timeout).is_ok()
}

/// Retry until a connection succeeds (the helper may still be starting).
fn eventually_connects(addr: SocketAddr) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if connects(addr, Duration::from_millis(500)) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

/// A 10.x.y.0/24 subnet and a port unlikely to collide with another test.
fn subnet(u: u32) -> (String, u16) {
    (
        format!("10.{}.{}", 200 + (u % 50), (u >> 6) % 250 + 1),
        20000 + (u % 20000) as u16,
    )
}

/// Create a veth `host`/`eth0` into the netns of `pid`, with `net.2/24` inside and
/// `net.1/24` on the host, both up.
fn wire(pid: i32, host: &str, net: &str) {
    let p = pid.to_string();
    run(
        None,
        &[
            "ip", "link", "add", host, "type", "veth", "peer", "name", "eth0", "netns", &p,
        ],
    );
    run(Some(pid), &["ip", "link", "set", "dev", "lo", "up"]);
    run(
        Some(pid),
        &["ip", "link", "set", "dev", "eth0", "mtu", "1400", "up"],
    );
    run(
        Some(pid),
        &["ip", "addr", "add", &format!("{net}.2/24"), "dev", "eth0"],
    );
    run(
        None,
        &["ip", "addr", "add", &format!("{net}.1/24"), "dev", host],
    );
    run(None, &["ip", "link", "set", "dev", host, "up"]);
}

/// What a user of the namespace sees, in a form that can be compared.
#[derive(Debug, PartialEq)]
struct Snapshot {
    links: BTreeSet<String>,
    addrs: BTreeSet<String>,
    routes: BTreeSet<String>,
    rules: BTreeSet<String>,
    sysctls: Vec<String>,
    nft: String,
}

fn field(v: &Value, k: &str) -> String {
    match v.get(k) {
        Some(Value::String(s)) => s.clone(),
        Some(x) => x.to_string(),
        None => "-".into(),
    }
}

fn snapshot(pid: i32) -> Snapshot {
    let p = Some(pid);
    let mut links = BTreeSet::new();
    let mut addrs = BTreeSet::new();
    for l in json(p, &["ip", "-j", "addr", "show"]).as_array().unwrap() {
        let flags: Vec<String> = l["flags"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f.as_str().unwrap().to_string())
            .collect();
        let name = field(l, "ifname");
        links.insert(format!(
            "{} idx={} mtu={} up={} mac={}",
            name,
            field(l, "ifindex"),
            field(l, "mtu"),
            flags.iter().any(|f| f == "UP"),
            field(l, "address")
        ));
        for a in l["addr_info"].as_array().unwrap() {
            addrs.insert(format!(
                "{name} {} {}/{} scope {}",
                field(a, "family"),
                field(a, "local"),
                field(a, "prefixlen"),
                field(a, "scope")
            ));
        }
    }
    let mut routes = BTreeSet::new();
    for fam in ["-4", "-6"] {
        for r in json(p, &["ip", "-j", fam, "route", "show", "table", "main"])
            .as_array()
            .unwrap()
        {
            routes.insert(format!(
                "{fam} {} via {} dev {} proto {} scope {} src {} metric {}",
                field(r, "dst"),
                field(r, "gateway"),
                field(r, "dev"),
                field(r, "protocol"),
                field(r, "scope"),
                field(r, "prefsrc"),
                field(r, "metric")
            ));
        }
    }
    let rules = json(p, &["ip", "-j", "-4", "rule", "show"])
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            format!(
                "{} from {} table {}",
                field(r, "priority"),
                field(r, "src"),
                field(r, "table")
            )
        })
        .collect();
    let sysctls = [
        "/proc/sys/net/ipv4/conf/all/forwarding",
        "/proc/sys/net/ipv4/conf/default/forwarding",
        "/proc/sys/net/ipv6/conf/all/hop_limit",
        "/proc/sys/net/unix/max_dgram_qlen",
        "/proc/sys/net/ipv4/conf/eth0/rp_filter",
        "/proc/sys/net/ipv6/conf/eth0/mtu",
    ]
    .iter()
    .map(|path| format!("{path}={}", run(p, &["cat", path]).trim()))
    .collect();
    Snapshot {
        links,
        addrs,
        routes,
        rules,
        sysctls,
        nft: run(p, &["nft", "list", "ruleset"]),
    }
}

#[test]
fn a_dumped_namespace_comes_back_with_its_links_addresses_routes_rules_sysctls_and_passes_traffic()
{
    let u = unique();
    let (net, port) = subnet(u);
    let host = format!("sxh{u:05x}");
    let v6 = format!("fd5a:{:x}", u & 0xffff);
    let src = NsProc::spawn();
    let s = Some(src.pid());
    let host_guard = HostLink(host.clone());
    wire(src.pid(), &host, &net);
    run(
        s,
        &[
            "ip",
            "addr",
            "add",
            &format!("{v6}::2/64"),
            "dev",
            "eth0",
            "nodad",
        ],
    );
    run(
        s,
        &[
            "ip",
            "route",
            "add",
            "10.250.0.0/16",
            "via",
            &format!("{net}.1"),
        ],
    );
    run(
        s,
        &[
            "ip",
            "-6",
            "route",
            "add",
            "fd5b::/64",
            "via",
            &format!("{v6}::1"),
        ],
    );
    run(
        s,
        &[
            "ip",
            "rule",
            "add",
            "from",
            &format!("{net}.2"),
            "table",
            "100",
            "pref",
            "1000",
        ],
    );
    run(
        s,
        &[
            "sh",
            "-c",
            "echo 1 > /proc/sys/net/ipv4/conf/all/forwarding && \
             echo 77 > /proc/sys/net/unix/max_dgram_qlen && \
             echo 33 > /proc/sys/net/ipv6/conf/all/hop_limit && \
             echo 2 > /proc/sys/net/ipv4/conf/eth0/rp_filter",
        ],
    );
    run(s, &["nft", "add", "table", "inet", "stasis_test"]);
    run(
        s,
        &[
            "nft",
            "add",
            "chain",
            "inet",
            "stasis_test",
            "c",
            "{ type filter hook input priority 10; policy accept; }",
        ],
    );
    run(
        s,
        &[
            "nft",
            "add",
            "rule",
            "inet",
            "stasis_test",
            "c",
            "tcp",
            "dport",
            "9",
            "counter",
            "accept",
        ],
    );
    let before = snapshot(src.pid());

    let tmp = TempDir::new("roundtrip");
    let dir = ImageDir::create(&tmp.0).unwrap();
    dump_netns(src.pid(), &dir, 10).expect("dump the namespace");

    // CRIU's own decoder reads what was written.
    let netns = run(
        None,
        &[
            "crit",
            "decode",
            "-i",
            tmp.0.join("netns-10.img").to_str().unwrap(),
            "--pretty",
        ],
    );
    assert!(
        netns.contains("all_conf4") && netns.contains("unix_conf"),
        "{netns}"
    );
    let netdev = run(
        None,
        &[
            "crit",
            "decode",
            "-i",
            tmp.0.join("netdev-10.img").to_str().unwrap(),
            "--pretty",
        ],
    );
    assert!(
        netdev.contains("\"eth0\"") && netdev.contains("\"lo\"") && netdev.contains("VETH"),
        "{netdev}"
    );
    for f in [
        "ifaddr-10.img",
        "route-10.img",
        "route6-10.img",
        "rule-10.img",
        "nftables-10.img",
    ] {
        assert!(tmp.0.join(f).metadata().unwrap().len() > 0, "{f} is empty");
    }

    // The original goes away, host end first so its name and subnet are free again.
    drop(host_guard);
    drop(src);

    let dst = NsProc::spawn();
    let err = restore_netns(dst.pid(), &dir, 10, &[]).unwrap_err();
    assert!(
        matches!(&err, NetnsError::VethUnmapped { name, .. } if name == "eth0"),
        "{err}"
    );
    assert_eq!(
        json(Some(dst.pid()), &["ip", "-j", "link", "show"])
            .as_array()
            .unwrap()
            .len(),
        1,
        "a refused restore changed nothing"
    );

    let _host_guard = HostLink(host.clone());
    restore_netns(dst.pid(), &dir, 10, &[("eth0".into(), host.clone())]).expect("restore");
    run(
        None,
        &["ip", "addr", "add", &format!("{net}.1/24"), "dev", &host],
    );

    let after = snapshot(dst.pid());
    assert_eq!(before.links, after.links);
    assert_eq!(before.addrs, after.addrs);
    assert_eq!(before.routes, after.routes);
    assert_eq!(before.rules, after.rules);
    assert_eq!(before.sysctls, after.sysctls);
    assert_eq!(before.nft, after.nft);
    let host_up = json(None, &["ip", "-j", "link", "show", "dev", &host]);
    assert!(host_up[0]["flags"]
        .as_array()
        .unwrap()
        .iter()
        .any(|f| f == "UP"));

    let addr: SocketAddr = format!("{net}.2:{port}").parse().unwrap();
    let _listener = Listener::start(dst.pid(), addr);
    assert!(
        eventually_connects(addr),
        "no TCP connection through the restored veth"
    );

    let again = restore_netns(
        dst.pid(),
        &dir,
        10,
        &[("eth0".into(), format!("sxz{u:05x}"))],
    )
    .unwrap_err();
    assert!(
        matches!(again, NetnsError::TargetNotEmpty { .. }),
        "{again}"
    );
}

#[test]
fn the_network_lock_cuts_off_a_tcp_peer_until_unlocked() {
    let u = unique();
    let (net, port) = subnet(u);
    let host = format!("sxl{u:05x}");
    let ns = NsProc::spawn();
    let _host_guard = HostLink(host.clone());
    wire(ns.pid(), &host, &net);
    let addr: SocketAddr = format!("{net}.2:{port}").parse().unwrap();
    let _listener = Listener::start(ns.pid(), addr);
    assert!(
        eventually_connects(addr),
        "the listener never became reachable"
    );

    let table = stasis_netns::lock::lock_table_name(&format!("test-{u}"));
    lock(ns.pid(), &table).expect("lock");
    assert!(
        !connects(addr, Duration::from_secs(1)),
        "connected through the lock"
    );
    let ruleset = run(Some(ns.pid()), &["nft", "list", "ruleset"]);
    assert!(
        ruleset.contains(&format!("table inet {table}")),
        "{ruleset}"
    );
    lock(ns.pid(), &table).expect("locking again replaces the table");

    unlock(ns.pid(), &table).expect("unlock");
    assert!(eventually_connects(addr), "still cut off after unlock");
    unlock(ns.pid(), &table).expect("unlocking an unlocked namespace is fine");
    assert!(!run(Some(ns.pid()), &["nft", "list", "ruleset"]).contains(&table));

    {
        let guard = NetLock::acquire(ns.pid(), table.clone()).expect("lock with a guard");
        assert_eq!(guard.table(), table);
        assert!(
            !connects(addr, Duration::from_secs(1)),
            "connected through the guard's lock"
        );
    }
    assert!(
        eventually_connects(addr),
        "dropping the guard did not unlock"
    );

    assert!(lock(ns.pid(), "bad name; flush ruleset").is_err());
}

#[test]
fn a_namespace_with_a_link_stasis_cannot_recreate_is_refused_by_name() {
    let ns = NsProc::spawn();
    run(
        Some(ns.pid()),
        &["ip", "link", "add", "br7", "type", "bridge"],
    );
    let tmp = TempDir::new("unsupported");
    let dir = ImageDir::create(&tmp.0).unwrap();
    let err = dump_netns(ns.pid(), &dir, 3).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("br7") && msg.contains("bridge"), "{msg}");
    assert!(!tmp.0.join("netdev-3.img").exists());
}
