//! A runc container with a terminal, checkpointed and restored by runc with stasis as
//! its criu. runc sends the container's pty master to its `--console-socket` (here, the
//! test); the container's init has the slave as its stdio and controlling terminal.
//! At restore stasis makes a new pty in the container's new devpts, at the same index,
//! with the dumped settings, and sends its master to runc with the `orphan-pts-master`
//! notification; runc passes it to the console socket given to `runc restore`.
//!
//! Proved through the terminal itself: the restored init's counter goes on from the
//! checkpoint, its ticks arrive on the new master, it answers a line typed there, and it
//! finds its terminal as it left it (same /dev/pts/N, still its controlling terminal
//! with its group in the foreground, window size and echo setting kept).

use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use stasis_e2e::runtime_env::{runc_bundle_running, Runc};
use stasis_e2e::ScratchDir;

/// Receives the pty masters runc sends to a console socket (one connection, one
/// message with one descriptor, each time).
struct ConsoleSocket {
    path: PathBuf,
    masters: mpsc::Receiver<OwnedFd>,
}

impl ConsoleSocket {
    fn listen(path: PathBuf) -> ConsoleSocket {
        let listener = UnixListener::bind(&path).expect("bind the console socket");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { return };
                if let Some(fd) = receive_fd(&conn) {
                    if tx.send(fd).is_err() {
                        return;
                    }
                }
            }
        });
        ConsoleSocket { path, masters: rx }
    }

    fn next_master(&self, what: &str) -> OwnedFd {
        self.masters
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("no pty master reached the console socket {what}"))
    }
}

fn receive_fd(conn: &std::os::unix::net::UnixStream) -> Option<OwnedFd> {
    use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags};
    let mut space = [std::mem::MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(2))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let mut name = [0u8; 4096];
    rustix::net::recvmsg(
        conn,
        &mut [std::io::IoSliceMut::new(&mut name)],
        &mut control,
        RecvFlags::CMSG_CLOEXEC,
    )
    .ok()?;
    let mut got = None;
    for msg in control.drain() {
        if let RecvAncillaryMessage::ScmRights(fds) = msg {
            for fd in fds {
                got.get_or_insert(fd);
            }
        }
    }
    got
}

/// Everything read from a pty master, kept as text, with the writing half.
struct Terminal {
    text: Arc<Mutex<String>>,
    input: std::fs::File,
}

impl Terminal {
    fn attach(master: OwnedFd) -> Terminal {
        let file = std::fs::File::from(master);
        let input = file.try_clone().expect("dup the master");
        let text = Arc::new(Mutex::new(String::new()));
        let sink = text.clone();
        std::thread::spawn(move || {
            let mut file = file;
            let mut buf = [0u8; 4096];
            // EIO once the slave side is gone (the container was checkpointed).
            while let Ok(n) = file.read(&mut buf) {
                if n == 0 {
                    break;
                }
                let s = String::from_utf8_lossy(&buf[..n]).replace('\r', "");
                sink.lock().unwrap().push_str(&s);
            }
        });
        Terminal { text, input }
    }

    fn text(&self) -> String {
        self.text.lock().unwrap().clone()
    }

    /// Waits until the terminal showed a line for which `f` holds; returns it.
    fn wait_line(&self, what: &str, f: impl Fn(&str) -> bool) -> String {
        let until = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(l) = self.text().lines().find(|l| f(l)) {
                return l.to_string();
            }
            assert!(
                Instant::now() < until,
                "the terminal never showed {what}; it showed:\n{}",
                tail(&self.text())
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn type_line(&mut self, line: &str) {
        self.input
            .write_all(format!("{line}\n").as_bytes())
            .expect("write to the pty master");
    }
}

fn tail(s: &str) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

/// The tick lines of the workload's file (its terminal may lose what nobody read).
fn ticks(rootfs: &Path) -> Vec<(u64, String)> {
    std::fs::read_to_string(rootfs.join("data/ticks"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let (n, state) = l.strip_prefix("tick ")?.split_once(' ')?;
            Some((n.parse().ok()?, state.to_string()))
        })
        .collect()
}

#[test]
fn a_runc_container_with_a_terminal_comes_back_on_a_new_pty_master_through_the_console_socket() {
    let dir = ScratchDir::new("container-tty");
    stasis_e2e::proc::become_subreaper();
    let bundle = dir.subdir("bundle");
    runc_bundle_running(&bundle, "unused");
    stasis_e2e::container::busybox_rootfs(&bundle.join("rootfs"), &["ttyworker_static"]);
    let path = bundle.join("config.json");
    let mut spec: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    spec["process"]["terminal"] = true.into();
    spec["process"]["args"] = serde_json::json!(["/bin/ttyworker"]);
    std::fs::write(&path, serde_json::to_string_pretty(&spec).unwrap()).unwrap();
    let rootfs = bundle.join("rootfs");
    let mut runc = Runc::new(&dir);
    runc.track("tty1");
    let console = ConsoleSocket::listen(dir.join("console.sock"));
    let sock = console.path.to_str().unwrap().to_string();

    runc.run(&bundle, &["run", "-d", "--console-socket", &sock, "tty1"]);
    let mut term = Terminal::attach(console.next_master("from runc run"));
    let first = term.wait_line("a tick", |l| l.starts_with("tick "));
    assert!(first.ends_with(" ok"), "before the checkpoint: {first}");
    term.type_line("ping before");
    term.wait_line("the answer to a typed line", |l| l == "pong before");
    let pid = runc.pid(&bundle, "tty1");
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let tty_nr = stat.rsplit(')').next().unwrap().split_whitespace().nth(4);
    assert_ne!(
        tty_nr,
        Some("0"),
        "the init has a controlling terminal: {stat}"
    );

    let images = dir.join("images");
    let work = dir.join("work");
    runc.run(
        &bundle,
        &[
            "checkpoint",
            "--image-path",
            images.to_str().unwrap(),
            "--work-path",
            work.to_str().unwrap(),
            "tty1",
        ],
    );
    stasis_e2e::proc::wait_gone(pid, Duration::from_secs(10)).expect("the dumped init is gone");
    let at_dump = ticks(&rootfs);
    let last = at_dump.last().expect("ticks before the checkpoint").0;
    assert!(
        at_dump.iter().all(|(_, s)| s == "ok"),
        "before the checkpoint: {at_dump:?}"
    );
    // The terminal as crit reads it: a pty with its index and settings.
    let set = stasis_e2e::crit_decode_all(&images);
    let ttys = set.entries("tty-info.img");
    assert_eq!(ttys.len(), 1, "one terminal: {ttys:?}");
    assert_eq!(ttys[0]["type"], "PTY");
    assert_eq!(ttys[0]["sid"], 1, "it controlled the init's session");
    assert_eq!(ttys[0]["winsize"]["ws_row"], 33);
    assert_eq!(ttys[0]["winsize"]["ws_col"], 97);
    let index = ttys[0]["pty"]["index"].as_u64().expect("pty index");

    // Without a client to take a new master (the CLI), the restore is refused by name
    // before anything is made.
    let refused = stasis_e2e::restore(
        &images,
        &["--root", rootfs.to_str().unwrap(), "--shell-job"],
    );
    refused.assert_clean_failure();
    assert!(
        refused.stderr.contains(&format!("/dev/pts/{index}"))
            && refused.stderr.contains("orphan_pts_master"),
        "the refusal names the terminal and the way out: {}",
        refused.stderr
    );
    assert!(
        stasis_e2e::container::host_mounts_under(&rootfs).is_empty(),
        "the refused restore mounted nothing"
    );

    runc.run(
        &bundle,
        &[
            "restore",
            "-d",
            "--console-socket",
            &sock,
            "--image-path",
            images.to_str().unwrap(),
            "--work-path",
            work.to_str().unwrap(),
            "tty1",
        ],
    );
    let mut term = Terminal::attach(console.next_master("from runc restore"));
    let restored = runc.pid(&bundle, "tty1");
    assert_ne!(restored, pid, "a new process");

    // The counter goes on, every tick finds the terminal as it was, and the ticks
    // arrive on the new master.
    let until = Instant::now() + Duration::from_secs(30);
    while ticks(&rootfs).len() < at_dump.len() + 5 {
        assert!(Instant::now() < until, "the restored init does not tick");
        std::thread::sleep(Duration::from_millis(20));
    }
    let after = ticks(&rootfs);
    assert_eq!(
        after[at_dump.len()].0,
        last + 1,
        "the first tick after the restore follows the last before it"
    );
    let bad: Vec<_> = after[at_dump.len()..]
        .iter()
        .filter(|(_, s)| s != "ok")
        .collect();
    assert!(
        bad.is_empty(),
        "the restored init found its terminal changed: {bad:?}"
    );
    let shown = term.wait_line("a tick after the restore", |l| {
        l.strip_prefix("tick ")
            .and_then(|r| r.split(' ').next())
            .and_then(|n| n.parse::<u64>().ok())
            .is_some_and(|n| n > last)
    });
    assert!(shown.ends_with(" ok"), "on the new master: {shown}");
    let fd0 = std::fs::read_link(format!("/proc/{restored}/fd/0")).unwrap();
    assert_eq!(
        fd0,
        PathBuf::from(format!("/dev/pts/{index}")),
        "the same pty index in the new devpts"
    );
    term.type_line("ping after");
    term.wait_line("the answer through the new master", |l| l == "pong after");

    runc.run(&bundle, &["kill", "tty1", "KILL"]);
}
