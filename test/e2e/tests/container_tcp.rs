//! A TCP client on the host streaming to a server that is PID 1 of a container (its own
//! pid, mnt, uts, ipc and net namespaces, a busybox root), reached over a veth pair:
//! the server's whole network namespace is checkpointed and restored while the client
//! keeps streaming, and the connection survives with no byte lost or repeated.
//!
//! The client (the test, `stasis_e2e::netpeer::EchoStream`) sends a deterministic
//! stream at a steady rate and checks, byte by byte, that the server
//! (`workloads/tcpserver_static.c`) echoes it transformed by position, so every byte
//! both ways is checked in order. Before the dump the client stops reading until every
//! buffer on the way is full, so the dumped connection holds bytes in both of its
//! queues and an unsent tail. During the dump the namespace is locked (packets
//! dropped, no reset reaches the client); the namespace dies with the dumped server and
//! takes the veth pair with it; the restore recreates the pair (`--external
//! veth[IN]:OUT`), the inside end with its address, MAC and ifindex, and the connection
//! (`--tcp-established`). The host gives its end its address back and the stream goes
//! on exactly where it stopped, both ways; the client never reconnects.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::Value;
use stasis_e2e::container::{busybox_rootfs, host_mounts_under, Container};
use stasis_e2e::cr::dump_command;
use stasis_e2e::netpeer::{in_netns, run_ok, EchoStream, ResetProbe, Veth};
use stasis_e2e::run::Running;
use stasis_e2e::{crit_decode_all, ScratchDir};

const PORT: u16 = 7411;
/// Bytes a second the client sends.
const RATE: u64 = 512 * 1024;
/// Bytes exchanged before the dump, and again after everything sent before it came back.
const WARMUP: u64 = 1 << 20;

/// The server's log lines (/data/server.log in the container's root).
fn server_log(rootfs: &std::path::Path) -> String {
    std::fs::read_to_string(rootfs.join("data/server.log")).unwrap_or_default()
}

/// Whether the network namespace of `pid` holds stasis's lock table (`inet CRIU-*`).
fn locked(pid: i32) -> bool {
    std::process::Command::new("nsenter")
        .arg(format!("--net=/proc/{pid}/ns/net"))
        .args(["nft", "list", "tables", "inet"])
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("table inet CRIU-"))
}

/// `(proto state)` of every inet socket in files.img, and the receive and send queue
/// lengths of each established TCP socket's stream image.
fn inet_sockets(set: &stasis_e2e::ImageSet) -> (Vec<String>, Vec<(u64, u64)>) {
    let mut out = Vec::new();
    let mut queues = Vec::new();
    for s in set
        .entries("files.img")
        .iter()
        .filter(|e| e.get("type").and_then(Value::as_str) == Some("INETSK"))
    {
        let proto = s.pointer("/isk/proto").and_then(Value::as_u64);
        let state = s.pointer("/isk/state").and_then(Value::as_u64);
        if proto == Some(6) && state == Some(1) {
            let ino = s.pointer("/isk/ino").and_then(Value::as_u64).unwrap();
            let name = format!("tcp-stream-{ino:x}.img");
            assert_eq!(set.magic(&name), Some("TCP_STREAM"), "{name}");
            let e = &set.entries(&name)[0];
            let len = |k: &str| e[k].as_u64().unwrap_or_else(|| panic!("{name}: {k}: {e}"));
            queues.push((len("inq_len"), len("outq_len")));
        }
        out.push(format!("{proto:?} {state:?}"));
    }
    out.sort();
    (out, queues)
}

#[test]
fn a_tcp_client_streams_through_a_checkpoint_and_restore_of_the_servers_network_namespace() {
    let dir = ScratchDir::new("container-tcp");
    let images = dir.subdir("images");
    let rootfs = dir.subdir("rootfs");
    busybox_rootfs(&rootfs, &["tcpserver_static"]);
    let port = PORT.to_string();
    let mut c = Container::start(&rootfs, "tcp-ct", &["/bin/tcpserver", &port]);
    let veth = Veth::create(c.pid);
    let inside_before = veth.inside_link(c.pid);
    let server: SocketAddr = format!("{}:{PORT}", veth.inside_addr()).parse().unwrap();

    let client = EchoStream::connect(server, Duration::from_secs(10), RATE);
    let warm = client.wait_received(WARMUP, Duration::from_secs(30));
    assert!(
        server_log(&rootfs).contains(&format!("accepted {}", client.local)),
        "the server accepted the client {}: {}",
        client.local,
        server_log(&rootfs)
    );

    // The client stops reading until every buffer on the way is full, so the server's
    // socket holds bytes both ways (and an unsent tail) when it is dumped.
    client.hold_reads(true);
    let in_flight = client.wait_writer_blocked(Duration::from_millis(500), Duration::from_secs(10));

    // The dump, while the client goes on trying to send. Once the namespace is locked,
    // connection attempts to a closed port of it go on too: until the namespace is gone
    // none may be refused, since a reset from the dying namespace would as well reach
    // the client.
    let t = Instant::now();
    let mut dumping = Running::start(dump_command(
        &images,
        c.pid,
        &["--tcp-established", "--ext-mount-map", "/dev/null:devnull"],
    ));
    while !dumping.has_exited() && !locked(c.pid) {
        std::thread::sleep(Duration::from_millis(2));
    }
    let closed: SocketAddr = format!("{}:{}", veth.inside_addr(), PORT + 1)
        .parse()
        .unwrap();
    let probe = ResetProbe::start(closed);
    dumping.wait(Duration::from_secs(60)).assert_success();
    let dump_time = t.elapsed();
    c.assert_gone(Duration::from_secs(10));
    client.assert_ok();
    // What the server had sent before the dump can be read now.
    client.hold_reads(false);

    // Nothing comes back while the server is gone, and nothing resets the client: the
    // lock dropped the packets while the sockets were read, then the namespace died.
    std::thread::sleep(Duration::from_millis(300));
    let (sent_at_dump, recv_at_dump) = (client.sent(), client.received());
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        client.received(),
        recv_at_dump,
        "bytes came back while the server was dumped"
    );
    client.assert_ok();
    let host_view = run_ok(
        "ss",
        &["-tnH", "state", "established", "dst", &veth.inside_addr()],
    );
    assert!(
        host_view.contains(&client.local.to_string()),
        "the client's connection is still established: {host_view:?}"
    );
    // The namespace held the inside end of the pair: the host end went with it.
    if let Err(e) = veth.wait_host_gone(Duration::from_secs(10)) {
        panic!("the dumped namespace's veth pair: {e}");
    }
    let (attempts, refused) = probe.stop();
    assert_eq!(
        refused, 0,
        "{refused} of {attempts} connection attempts to {closed} were refused (reset) \
         while the dumped namespace was locked or torn down"
    );

    // The images: the namespace's links and the server's sockets.
    let set = crit_decode_all(&images);
    assert_eq!(set.pstree()[0].0, 1, "the server is pid 1 of its namespace");
    let ids = &set.entries("ids-1.img")[0];
    let netdev = set.entries(&format!("netdev-{}.img", ids["net_ns_id"]));
    let links: Vec<&str> = netdev.iter().filter_map(|d| d["name"].as_str()).collect();
    assert!(
        links.contains(&veth.inside.as_str()) && links.contains(&"lo"),
        "links dumped: {links:?}"
    );
    let (socks, queues) = inet_sockets(&set);
    assert_eq!(
        socks,
        ["Some(6) Some(1)", "Some(6) Some(10)"],
        "the listener and the established connection are dumped"
    );
    assert!(
        queues[0].0 > 0 && queues[0].1 > 0,
        "the server's connection had bytes queued both ways: (receive, send) {queues:?}"
    );

    // The restore: the veth's host end is recreated under its old name, up.
    let pidfile = dir.join("pid");
    let external = format!("veth[{}]:{}", veth.inside, veth.host);
    let t = Instant::now();
    let pid = c.restore_from(
        &images,
        &pidfile,
        &["--tcp-established", "--external", &external],
    );
    let restore_time = t.elapsed();
    assert!(veth.host_exists(), "the restore recreated {}", veth.host);
    client.assert_ok();
    // The host end is new and has no address: the host's side of the network is the
    // host's business, as with any runtime.
    veth.configure_host();

    // Everything sent before the dump comes back, then the stream goes on.
    let resumed = client.wait_received(recv_at_dump + 1, Duration::from_secs(60));
    let caught_up = client.wait_received(sent_at_dump + WARMUP, Duration::from_secs(60));
    client.assert_ok();

    // The restored server: PID 1 of new namespaces, its link as it was, unlocked.
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let nspid = status.lines().find(|l| l.starts_with("NSpid:")).unwrap();
    assert!(
        nspid.ends_with("\t1"),
        "PID 1 inside its namespace: {nspid}"
    );
    for ns in ["pid", "mnt", "uts", "ipc", "net"] {
        let mine = std::fs::read_link(format!("/proc/self/ns/{ns}")).unwrap();
        let its = std::fs::read_link(format!("/proc/{pid}/ns/{ns}")).unwrap();
        assert_ne!(mine, its, "the restored server has its own {ns} namespace");
    }
    assert_eq!(
        veth.inside_link(pid),
        inside_before,
        "the inside end keeps its ifindex and MAC"
    );
    let addrs = in_netns(
        pid,
        &["ip", "-o", "-4", "addr", "show", "dev", &veth.inside],
    );
    assert!(
        addrs.contains(&format!("{}/24", veth.inside_addr())),
        "the inside end keeps its address: {addrs}"
    );
    let tables = in_netns(pid, &["nft", "list", "tables"]);
    assert!(
        !tables.contains("CRIU"),
        "the network lock is gone from the restored namespace: {tables}"
    );
    let listeners = in_netns(pid, &["ss", "-tlnH"]);
    assert!(
        listeners.contains(&format!("0.0.0.0:{PORT}")),
        "the server's listener is back: {listeners}"
    );

    // The end: every byte sent came back, and the server saw the stream end where the
    // client stopped.
    let stall = client.longest_stall();
    let total = client.finish(Duration::from_secs(60));
    let want = format!("eof after {total}\n");
    let until = Instant::now() + Duration::from_secs(10);
    while !server_log(&rootfs).contains(&want) {
        assert!(
            Instant::now() < until,
            "the server did not log {want:?}: {}",
            server_log(&rootfs)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let log = server_log(&rootfs);
    assert!(
        !log.contains("BAD") && !log.contains("FAIL"),
        "the server saw the stream intact: {log}"
    );
    assert!(
        host_mounts_under(&rootfs).is_empty(),
        "no mount of the container leaks to the host"
    );
    eprintln!(
        "container_tcp: {recv_at_dump} bytes back before the restore ({:.1?} warm-up), \
         {sent_at_dump} sent; dump {dump_time:.1?}, restore {restore_time:.1?}; first byte \
         back {resumed:.1?} after the restore, all pre-dump bytes + {WARMUP} more after \
         {caught_up:.1?} more; {} bytes after the dump, {total} in all; longest stall {:.1?}; \
         {in_flight} bytes in flight at the dump, server queues in the image (receive, send): \
         {queues:?}; {attempts} connection attempts while dumped, none refused",
        warm,
        total - recv_at_dump,
        stall
    );
}
