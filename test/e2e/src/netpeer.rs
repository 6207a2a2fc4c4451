//! The host's end of a container's network: a veth pair whose host end carries an
//! address on a small test subnet, and a TCP client that streams a deterministic byte
//! stream to the container's echo server (`workloads/tcpserver_static.c`) and checks
//! every byte that comes back.
//!
//! The protocol: the client sends [`stream_byte`]`(i)` at stream offset `i`; the server
//! answers each byte at offset `i` XORed with [`mask_byte`]`(i)`. The client compares
//! every byte it receives with `stream_byte(i) ^ mask_byte(i)`, so a byte lost,
//! repeated or reordered in either direction (or a server whose offset went wrong)
//! fails at the first byte it shifts.
//!
//! [`HostStream`] is the same pair on the host's own network: the server is a plain
//! process, and the test drives its dump.
//!
//! The client never reconnects: reads and writes use short timeouts only so that a
//! stall is measured and bounded, and a connection reset or an end of file is an error.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::proc::{spawn_guarded, Pid, ProcessGuard};
use crate::{workload_bin, ScratchDir};

/// The client's byte at stream offset `i` (the top byte of a multiplicative hash: no
/// short shift of the stream compares equal). Same function as the workload's.
pub fn stream_byte(i: u64) -> u8 {
    let mut x = (i + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    x ^= x >> 29;
    (x >> 56) as u8
}

/// What the server XORs into the byte at offset `i` before echoing it.
pub fn mask_byte(i: u64) -> u8 {
    (i % 251 + 1) as u8
}

/// Runs a host program; its stdout, or a panic naming the command and its stderr.
pub fn run_ok(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run {program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs a host program in the network namespace of `pid` (`nsenter -t PID -n`).
pub fn in_netns(pid: Pid, argv: &[&str]) -> String {
    let pid = pid.to_string();
    let mut args = vec!["-t", pid.as_str(), "-n"];
    args.extend_from_slice(argv);
    run_ok("nsenter", &args)
}

/// A veth pair between the host and a container: `host` on the host with
/// `10.200.X.1/24`, `inside` in the container with `10.200.X.2/24`. The host end is
/// deleted on drop (the inside end dies with its namespace).
pub struct Veth {
    pub host: String,
    pub inside: String,
    pub subnet: u8,
}

impl Veth {
    /// Names and subnet derived from this test process's pid (names ≤ 15 bytes).
    pub fn for_this_test() -> Veth {
        let pid = std::process::id();
        Veth {
            host: format!("st{pid}h"),
            inside: format!("st{pid}c"),
            subnet: (pid % 200 + 30) as u8,
        }
    }

    pub fn host_addr(&self) -> String {
        format!("10.200.{}.1", self.subnet)
    }

    pub fn inside_addr(&self) -> String {
        format!("10.200.{}.2", self.subnet)
    }

    /// Creates the pair with its inside end in the network namespace of `pid`, both
    /// ends addressed and up, and the container's loopback up.
    pub fn create(pid: Pid) -> Veth {
        let v = Veth::for_this_test();
        if v.host_exists() {
            let _ = run_ok("ip", &["link", "del", &v.host]);
        }
        run_ok(
            "ip",
            &[
                "link",
                "add",
                &v.host,
                "type",
                "veth",
                "peer",
                "name",
                &v.inside,
                "netns",
                &pid.to_string(),
            ],
        );
        v.configure_host();
        let inside_cidr = format!("{}/24", v.inside_addr());
        in_netns(pid, &["ip", "addr", "add", &inside_cidr, "dev", &v.inside]);
        in_netns(pid, &["ip", "link", "set", &v.inside, "up"]);
        in_netns(pid, &["ip", "link", "set", "lo", "up"]);
        v
    }

    /// Gives the host end its address and brings it up (again, after a restore
    /// recreated it without one).
    pub fn configure_host(&self) {
        let cidr = format!("{}/24", self.host_addr());
        run_ok("ip", &["addr", "replace", &cidr, "dev", &self.host]);
        run_ok("ip", &["link", "set", &self.host, "up"]);
    }

    pub fn host_exists(&self) -> bool {
        Path::new("/sys/class/net").join(&self.host).exists()
    }

    /// Waits for the host end to disappear (its namespace, holding the other end,
    /// is torn down asynchronously after its last process dies).
    pub fn wait_host_gone(&self, timeout: Duration) -> Result<(), String> {
        let until = Instant::now() + timeout;
        while self.host_exists() {
            if Instant::now() >= until {
                return Err(format!(
                    "host end {} still exists after {timeout:?}",
                    self.host
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// `(ifindex, MAC)` of the inside end, seen in the namespace of `pid`.
    pub fn inside_link(&self, pid: Pid) -> (String, String) {
        let line = in_netns(pid, &["ip", "-o", "link", "show", "dev", &self.inside]);
        let index = line.split(':').next().unwrap_or("").trim().to_string();
        let mac = line
            .split_whitespace()
            .skip_while(|w| *w != "link/ether")
            .nth(1)
            .unwrap_or("")
            .to_string();
        assert!(
            !index.is_empty() && !mac.is_empty(),
            "ip link show {}: {line}",
            self.inside
        );
        (index, mac)
    }
}

impl Drop for Veth {
    fn drop(&mut self) {
        if self.host_exists() {
            let _ = Command::new("ip")
                .args(["link", "del", &self.host])
                .output();
        }
    }
}

#[derive(Default)]
struct Shared {
    stop: AtomicBool,
    writer_done: AtomicBool,
    /// The reader leaves the connection alone while set (the queues fill up).
    hold: AtomicBool,
    sent: AtomicU64,
    received: AtomicU64,
    error: Mutex<Option<String>>,
    /// The longest time between two reads that returned data.
    longest_stall: Mutex<Duration>,
}

impl Shared {
    fn fail(&self, e: String) {
        let mut slot = self.error.lock().unwrap();
        if slot.is_none() {
            *slot = Some(e);
        }
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// The client's end of the echo stream, a writer and a reader thread on one
/// connection.
pub struct EchoStream {
    shared: Arc<Shared>,
    stream: TcpStream,
    writer: Option<JoinHandle<()>>,
    reader: Option<JoinHandle<()>>,
    pub local: SocketAddr,
}

/// How long the reader waits without a byte before it calls the connection dead.
pub const STALL_LIMIT: Duration = Duration::from_secs(120);

impl EchoStream {
    /// Connects to `addr` (retrying while nobody listens yet, up to `timeout`) and
    /// starts streaming at about `rate` bytes per second.
    pub fn connect(addr: SocketAddr, timeout: Duration, rate: u64) -> EchoStream {
        let until = Instant::now() + timeout;
        let stream = loop {
            match TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
                Ok(s) => break s,
                Err(e) if Instant::now() < until => {
                    let _ = e;
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(e) => panic!("connect to {addr}: {e}"),
            }
        };
        stream.set_nodelay(true).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        stream
            .set_write_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let local = stream.local_addr().unwrap();
        let shared = Arc::new(Shared::default());
        let (w, s) = (stream.try_clone().unwrap(), shared.clone());
        let writer = std::thread::spawn(move || write_loop(w, &s, rate));
        let (r, s) = (stream.try_clone().unwrap(), shared.clone());
        let reader = std::thread::spawn(move || read_loop(r, &s));
        EchoStream {
            shared,
            stream,
            writer: Some(writer),
            reader: Some(reader),
            local,
        }
    }

    /// Bytes written to the connection so far.
    pub fn sent(&self) -> u64 {
        self.shared.sent.load(Ordering::SeqCst)
    }

    /// Bytes received back and verified so far.
    pub fn received(&self) -> u64 {
        self.shared.received.load(Ordering::SeqCst)
    }

    /// The first error either thread met (a wrong byte, a reset, an end of file).
    pub fn error(&self) -> Option<String> {
        self.shared.error.lock().unwrap().clone()
    }

    #[track_caller]
    pub fn assert_ok(&self) {
        if let Some(e) = self.error() {
            panic!("the client's connection failed: {e}");
        }
    }

    /// Stops (`true`) or resumes reading. While the client does not read, its
    /// receive window closes, the server blocks in `write` with a full send queue and
    /// stops reading, and what the client sends piles up in the server's receive queue.
    pub fn hold_reads(&self, hold: bool) {
        self.shared.hold.store(hold, Ordering::SeqCst);
    }

    /// Waits until `sent` has not moved for `quiet` (the writer is blocked: every
    /// buffer between the two ends is full), up to `timeout`. Bytes in flight.
    pub fn wait_writer_blocked(&self, quiet: Duration, timeout: Duration) -> u64 {
        let until = Instant::now() + timeout;
        let (mut last, mut since) = (self.sent(), Instant::now());
        while Instant::now() < until && since.elapsed() < quiet {
            self.assert_ok();
            std::thread::sleep(Duration::from_millis(10));
            if self.sent() != last {
                (last, since) = (self.sent(), Instant::now());
            }
        }
        self.assert_ok();
        self.sent() - self.received()
    }

    pub fn longest_stall(&self) -> Duration {
        *self.shared.longest_stall.lock().unwrap()
    }

    /// Waits until at least `n` bytes came back verified; the time it took.
    #[track_caller]
    pub fn wait_received(&self, n: u64, timeout: Duration) -> Duration {
        let start = Instant::now();
        while self.received() < n {
            self.assert_ok();
            assert!(
                start.elapsed() < timeout,
                "{} bytes came back in {timeout:?}, waiting for {n} (sent {})",
                self.received(),
                self.sent()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        self.assert_ok();
        start.elapsed()
    }

    /// Stops sending, waits for every byte sent to come back verified, then closes the
    /// sending side (the server sees the end of the stream). Returns the bytes sent.
    #[track_caller]
    pub fn finish(mut self, timeout: Duration) -> u64 {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(w) = self.writer.take() {
            w.join().expect("writer thread panicked");
        }
        let sent = self.sent();
        self.wait_received(sent, timeout);
        if let Some(r) = self.reader.take() {
            r.join().expect("reader thread panicked");
        }
        self.assert_ok();
        assert_eq!(self.received(), sent, "every byte sent came back");
        self.stream
            .shutdown(Shutdown::Write)
            .expect("shut down the sending side");
        sent
    }
}

impl Drop for EchoStream {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        let _ = self.stream.shutdown(Shutdown::Both);
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
    }
}

fn timed_out(e: &std::io::Error) -> bool {
    matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)
}

fn write_loop(mut s: TcpStream, sh: &Shared, rate: u64) {
    // Chunks of varying size (1..=4096 bytes) at about `rate` bytes a second.
    let mut lcg: u64 = 0x2545_F491_4F6C_DD1D;
    let mut pending: Vec<u8> = Vec::new();
    let mut off: u64 = 0;
    let start = Instant::now();
    while !sh.stop.load(Ordering::SeqCst) {
        if pending.is_empty() {
            let due = off.saturating_mul(1_000_000) / rate.max(1);
            let now = start.elapsed().as_micros() as u64;
            if now < due {
                std::thread::sleep(Duration::from_micros((due - now).min(20_000)));
                continue;
            }
            lcg = lcg
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let len = (lcg >> 33) % 4096 + 1;
            pending = (off..off + len).map(stream_byte).collect();
        }
        match s.write(&pending) {
            Ok(0) => {
                sh.fail(format!("the connection wrote 0 bytes at offset {off}"));
                break;
            }
            Ok(n) => {
                pending.drain(..n);
                off += n as u64;
                sh.sent.store(off, Ordering::SeqCst);
            }
            Err(e) if timed_out(&e) || e.kind() == ErrorKind::Interrupted => {}
            Err(e) => {
                sh.fail(format!("sending at offset {off}: {e}"));
                break;
            }
        }
    }
    sh.writer_done.store(true, Ordering::SeqCst);
}

fn read_loop(mut s: TcpStream, sh: &Shared) {
    let mut buf = vec![0u8; 1 << 16];
    let mut off: u64 = 0;
    let mut last = Instant::now();
    loop {
        if sh.writer_done.load(Ordering::SeqCst) && off == sh.sent.load(Ordering::SeqCst) {
            return;
        }
        if sh.error.lock().unwrap().is_some() {
            return;
        }
        if sh.hold.load(Ordering::SeqCst) && !sh.stop.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(5));
            last = Instant::now();
            continue;
        }
        match s.read(&mut buf) {
            Ok(0) => {
                sh.fail(format!(
                    "end of file after {off} bytes received ({} sent)",
                    sh.sent.load(Ordering::SeqCst)
                ));
                return;
            }
            Ok(n) => {
                for (k, &b) in buf[..n].iter().enumerate() {
                    let i = off + k as u64;
                    let want = stream_byte(i) ^ mask_byte(i);
                    if b != want {
                        sh.fail(format!(
                            "byte {i} came back as {b:#04x}, expected {want:#04x} \
                             (stream {:#04x} ^ mask {:#04x}); {n} bytes in this read",
                            stream_byte(i),
                            mask_byte(i)
                        ));
                        return;
                    }
                }
                off += n as u64;
                sh.received.store(off, Ordering::SeqCst);
                let gap = last.elapsed();
                last = Instant::now();
                let mut longest = sh.longest_stall.lock().unwrap();
                if gap > *longest {
                    *longest = gap;
                }
            }
            Err(e) if timed_out(&e) || e.kind() == ErrorKind::Interrupted => {
                if last.elapsed() > STALL_LIMIT {
                    sh.fail(format!(
                        "nothing received for {STALL_LIMIT:?} after {off} bytes"
                    ));
                    return;
                }
            }
            Err(e) => {
                sh.fail(format!("receiving at offset {off}: {e}"));
                return;
            }
        }
    }
}

/// Connection attempts to a port, without pause, that count the refused ones: a dumped
/// namespace must drop every packet until it is gone, so no attempt may be answered
/// with a reset, during the dump or while the namespace is torn down.
pub struct ResetProbe {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<(u64, u64)>>,
}

impl ResetProbe {
    /// Starts two threads trying `addr`; each attempt waits 1 ms for an answer.
    pub fn start(addr: SocketAddr) -> ResetProbe {
        let stop = Arc::new(AtomicBool::new(false));
        let threads = (0..2)
            .map(|_| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    let (mut tries, mut refused) = (0, 0);
                    while !stop.load(Ordering::SeqCst) {
                        tries += 1;
                        match TcpStream::connect_timeout(&addr, Duration::from_millis(1)) {
                            Err(e) if e.kind() == ErrorKind::ConnectionRefused => refused += 1,
                            // Once the namespace is gone there is no route: no busy loop.
                            Err(e) if !timed_out(&e) => {
                                std::thread::sleep(Duration::from_millis(1))
                            }
                            _ => {}
                        }
                    }
                    (tries, refused)
                })
            })
            .collect();
        ResetProbe { stop, threads }
    }

    /// Stops the attempts: (attempts, refused).
    pub fn stop(self) -> (u64, u64) {
        self.stop.store(true, Ordering::SeqCst);
        self.threads
            .into_iter()
            .map(|t| t.join().expect("probe thread panicked"))
            .fold((0, 0), |(a, b), (c, d)| (a + c, b + d))
    }
}

/// The `CRIU-*` nftables tables of this (the host's) network namespace that hold
/// `needle`: (name, listing).
pub fn lock_tables_with(needle: &str) -> Vec<(String, String)> {
    let nft = |args: &[&str]| {
        let out = std::process::Command::new("nft")
            .args(args)
            .output()
            .expect("run nft");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    nft(&["list", "tables", "inet"])
        .lines()
        .filter_map(|l| l.strip_prefix("table inet "))
        .filter(|t| t.starts_with("CRIU-"))
        .map(|t| (t.to_string(), nft(&["list", "table", "inet", t])))
        .filter(|(_, listing)| listing.contains(needle))
        .collect()
}

/// The echo server (`tcpserver_static`) on the host's network, and a client streaming
/// to it at 256 KiB a second without pause: some segment is always on its way.
pub struct HostStream {
    pub dir: ScratchDir,
    pub pid: Pid,
    _guard: ProcessGuard,
    pub port: u16,
    pub client: EchoStream,
}

impl HostStream {
    pub fn start(name: &str) -> HostStream {
        let dir = ScratchDir::new(name);
        let log = dir.join("server.log");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut cmd = Command::new("setsid");
        cmd.arg(workload_bin("tcpserver_static"))
            .arg(port.to_string())
            .arg(&log)
            .current_dir(dir.path());
        let (pid, _guard) = spawn_guarded(cmd, log.to_string_lossy());
        let client = EchoStream::connect(
            format!("127.0.0.1:{port}").parse().unwrap(),
            Duration::from_secs(10),
            256 * 1024,
        );
        client.wait_received(256 * 1024, Duration::from_secs(30));
        HostStream {
            dir,
            pid,
            _guard,
            port,
            client,
        }
    }

    /// The connection's 4-tuple both ways, as the lock's sets show them.
    pub fn tuples(&self) -> (String, String) {
        let (c, s) = (self.client.local.port(), self.port);
        (
            format!("127.0.0.1 . {c} . 127.0.0.1 . {s}"),
            format!("127.0.0.1 . {s} . 127.0.0.1 . {c}"),
        )
    }

    /// Another 256 KiB both ways, then the end: every byte came back in order and the
    /// server saw the stream end where the client stopped, intact.
    pub fn finish(self) {
        let log = self.dir.join("server.log");
        let server_log = || std::fs::read_to_string(&log).unwrap_or_default();
        let sent = self.client.sent();
        self.client
            .wait_received(sent + 256 * 1024, Duration::from_secs(60));
        let total = self.client.finish(Duration::from_secs(60));
        let want = format!("eof after {total}\n");
        let until = std::time::Instant::now() + Duration::from_secs(10);
        while !server_log().contains(&want) {
            assert!(
                std::time::Instant::now() < until,
                "the server did not log {want:?}: {}",
                server_log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let text = server_log();
        assert!(
            !text.contains("BAD") && !text.contains("FAIL"),
            "the server saw the stream intact: {text}"
        );
    }
}
