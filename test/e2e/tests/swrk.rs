//! `stasis swrk` driven as go-criu and runc drive `criu swrk`: a SOCK_SEQPACKET
//! socketpair whose server end the child inherits by number, a VERSION probe in its own
//! exec, then a DUMP naming the client's own directory fds and the workload's pid, then
//! a RESTORE with `rst_sibling` — and the counter goes on from where it was, as the
//! client's child. Notifications come in CRIU's order, and a client that fails one
//! stops the operation without harm to its task, TCP connections included.

use std::fs::File;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use prost::Message;
use rustix::net::{AddressFamily, RecvFlags, SendFlags, SocketFlags, SocketType};
use stasis_e2e::counter::{filled_checksum, verify};
use stasis_e2e::log::{assert_no_fail, assert_ticks_continuous, ticks};
use stasis_e2e::netpeer::{lock_tables_with, HostStream};
use stasis_e2e::{crit_decode_all, proc, stasis_bin, ScratchDir, Workload, LINE_TIMEOUT};
use stasis_images::pb::rpc::{CriuOpts, CriuReq, CriuReqType, CriuResp};

const TIMEOUT: Duration = Duration::from_secs(120);

/// In the child, between fork and exec: lets `fd` through exec, as go-criu's ExtraFiles
/// do (clearing close-on-exec in the parent would race with other tests' spawns).
fn inherit(fd: i32) -> std::io::Result<()> {
    // SAFETY: fcntl(F_SETFD) takes plain integers and touches no memory.
    if unsafe { libc::fcntl(fd, libc::F_SETFD, 0) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// A `stasis swrk <fd>` child and our end of its socket.
struct Swrk {
    child: Child,
    sock: OwnedFd,
}

impl Swrk {
    fn start() -> Swrk {
        let (ours, theirs) = rustix::net::socketpair(
            AddressFamily::UNIX,
            SocketType::SEQPACKET,
            SocketFlags::CLOEXEC,
            None,
        )
        .expect("socketpair");
        proc::become_subreaper();
        let fd = theirs.as_raw_fd();
        let mut cmd = Command::new(stasis_bin());
        cmd.arg("swrk")
            .arg(fd.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // SAFETY: between fork and exec the closure only calls fcntl(2), which is
        // async-signal-safe, on a descriptor the child inherited from us.
        unsafe {
            cmd.pre_exec(move || inherit(fd));
        }
        let child = cmd.spawn().expect("start stasis swrk");
        drop(theirs);
        rustix::net::sockopt::set_socket_timeout(
            &ours,
            rustix::net::sockopt::Timeout::Recv,
            Some(TIMEOUT),
        )
        .unwrap();
        Swrk { child, sock: ours }
    }

    fn send(&self, req: &CriuReq) {
        rustix::net::send(&self.sock, &req.encode_to_vec(), SendFlags::NOSIGNAL)
            .expect("send to stasis");
    }

    fn recv(&self) -> CriuResp {
        let mut buf = vec![0u8; 8192]; // go-criu's buffer
        let (_, n) = rustix::net::recv(&self.sock, &mut buf[..], RecvFlags::TRUNC)
            .unwrap_or_else(|e| panic!("no answer from stasis swrk within {TIMEOUT:?}: {e}"));
        assert!(n > 0, "stasis swrk closed the socket without answering");
        assert!(
            n < buf.len(),
            "a {n}-byte response overflows go-criu's buffer"
        );
        CriuResp::decode(&buf[..n]).expect("the response decodes")
    }

    fn ack(&self, ok: bool) {
        self.send(&CriuReq {
            r#type: CriuReqType::Notify as i32,
            notify_success: Some(ok),
            ..Default::default()
        });
    }

    /// Receives until the final response, answering each notification with `answer`,
    /// which sees the script and pid and says whether to succeed.
    fn converse(&self, mut answer: impl FnMut(&str, Option<i32>) -> bool) -> CriuResp {
        loop {
            let r = self.recv();
            if r.r#type != CriuReqType::Notify as i32 {
                return r;
            }
            let n = r.notify.expect("a NOTIFY carries notify");
            let ok = answer(n.script.as_deref().unwrap_or_default(), n.pid);
            self.ack(ok);
        }
    }

    /// Waits for stasis to exit by itself after its final response.
    fn exit_code(mut self) -> Option<i32> {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st.code();
            }
            assert!(
                Instant::now() < deadline,
                "stasis swrk did not exit after its final response"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for Swrk {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn request(ty: CriuReqType, opts: Option<CriuOpts>) -> CriuReq {
    CriuReq {
        r#type: ty as i32,
        opts,
        ..Default::default()
    }
}

/// The directories as runc passes them: fds open in the client only (close-on-exec),
/// which stasis reaches through /proc/<client>/fd.
struct Dirs {
    images: File,
    work: File,
}

impl Dirs {
    fn open(dir: &ScratchDir) -> Dirs {
        Dirs {
            images: File::open(dir.subdir("images")).unwrap(),
            work: File::open(dir.subdir("work")).unwrap(),
        }
    }

    fn opts(&self, log_file: &str) -> CriuOpts {
        CriuOpts {
            images_dir_fd: self.images.as_raw_fd(),
            work_dir_fd: Some(self.work.as_raw_fd()),
            log_level: Some(4),
            log_file: Some(log_file.into()),
            notify_scripts: Some(true),
            ..Default::default()
        }
    }
}

fn dump_opts(dirs: &Dirs, pid: i32) -> CriuOpts {
    CriuOpts {
        pid: Some(pid),
        ..dirs.opts("dump.log")
    }
}

fn restore_opts(dirs: &Dirs) -> CriuOpts {
    CriuOpts {
        rst_sibling: Some(true),
        ..dirs.opts("restore.log")
    }
}

fn log_tail(dir: &ScratchDir, name: &str) -> String {
    let text = std::fs::read_to_string(dir.join("work").join(name)).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

#[test]
fn counter_dumped_and_restored_over_rpc_continues_as_the_client_s_child() {
    let dir = ScratchDir::new("swrk-counter");
    let dirs = Dirs::open(&dir);
    let w = Workload::start(
        "counter",
        &dir.join("counter.log"),
        &["16", "5150"],
        dir.path(),
    );
    let pid = w.pid();
    let filled = filled_checksum(&w);
    w.wait_ticks_after(0, 3, LINE_TIMEOUT);

    // go-criu's GetCriuVersion: its own exec, VERSION with no opts.
    let probe = Swrk::start();
    probe.send(&request(CriuReqType::Version, None));
    let v = probe.recv();
    assert!(
        v.success && v.r#type == CriuReqType::Version as i32,
        "{v:?}"
    );
    let v = v.version.unwrap();
    assert!(v.major_number * 10000 + v.minor_number * 100 >= 40000);
    assert_eq!(probe.exit_code(), Some(0));

    // DUMP: the task is still frozen when post-dump arrives, and killed after.
    let s = Swrk::start();
    s.send(&request(CriuReqType::Dump, Some(dump_opts(&dirs, pid))));
    let mut scripts = Vec::new();
    let r = s.converse(|script, spid| {
        scripts.push(script.to_string());
        assert_eq!(spid, None, "{script} carries no pid");
        if script == "post-dump" {
            assert!(w.is_alive(), "killed before post-dump");
            assert_ne!(proc::tracer_pid(pid), Some(0), "not frozen at post-dump");
        }
        true
    });
    assert!(
        r.success,
        "DUMP failed: {r:?}\n{}",
        log_tail(&dir, "dump.log")
    );
    assert_eq!(r.r#type, CriuReqType::Dump as i32);
    assert_eq!(r.dump.unwrap().restored, Some(false));
    assert_eq!(scripts, ["pre-dump", "query-ext-files", "post-dump"]);
    assert_eq!(s.exit_code(), Some(0));
    w.assert_gone(Duration::from_secs(10));
    let at_dump = w.lines();
    let last_tick = assert_ticks_continuous(&at_dump);
    assert!(
        dir.join("work/dump.log").is_file(),
        "dump.log goes to the work dir"
    );
    assert!(!dir.join("images/dump.log").exists());
    assert!(
        dir.join("work/stats-dump").is_file(),
        "podman needs stats-dump in the work dir"
    );
    let p = pid as u64;
    assert_eq!(
        crit_decode_all(&dir.join("images")).pstree(),
        [(p, 0, p, p)]
    );

    // RESTORE with rst_sibling: post-restore names the pid before it runs.
    let s = Swrk::start();
    s.send(&request(CriuReqType::Restore, Some(restore_opts(&dirs))));
    let mut scripts = Vec::new();
    let me = std::process::id() as i32;
    let r = s.converse(|script, spid| {
        scripts.push(script.to_string());
        if script == "post-restore" {
            assert_eq!(spid, Some(pid), "post-restore carries the restored pid");
            let st = proc::stat(pid).expect("the restored task exists at post-restore");
            assert_eq!(
                st.ppid, me,
                "rst_sibling: the restored task is the client's child"
            );
            assert_ne!(proc::tracer_pid(pid), Some(0), "it must not run yet");
        } else {
            assert_eq!(spid, None, "{script}");
        }
        true
    });
    assert!(
        r.success,
        "RESTORE failed: {r:?}\n{}",
        log_tail(&dir, "restore.log")
    );
    assert_eq!(r.r#type, CriuReqType::Restore as i32);
    assert_eq!(r.restore.unwrap().pid, pid, "restore.pid is the host pid");
    assert_eq!(
        scripts,
        ["pre-restore", "post-restore", "pre-resume", "post-resume"]
    );
    assert_eq!(s.exit_code(), Some(0));
    assert!(dir.join("work/stats-restore").is_file());
    assert!(dir.join("work/restore.log").is_file());

    let st = proc::stat(pid).expect("restored");
    assert_eq!(st.ppid, me, "still the client's child after stasis exited");
    assert_eq!(proc::tracer_pid(pid), Some(0), "released");
    w.wait_ticks_after(at_dump.len(), 3, LINE_TIMEOUT);
    let lines = w.lines();
    assert_eq!(
        ticks(&lines[at_dump.len()..]).first().map(|t| t.1),
        Some(last_tick + 1),
        "the first tick after restore follows the last before the dump"
    );
    assert_ticks_continuous(&lines);
    assert_no_fail(&lines);
    assert_eq!(verify(&w).checksum, filled, "memory after restore");
}

#[test]
fn leave_running_over_rpc_keeps_the_counter_ticking() {
    let dir = ScratchDir::new("swrk-leave");
    let dirs = Dirs::open(&dir);
    let w = Workload::start("counter", &dir.join("counter.log"), &["4", "7"], dir.path());
    w.wait_ticks_after(0, 2, LINE_TIMEOUT);
    let s = Swrk::start();
    let opts = CriuOpts {
        leave_running: Some(true),
        notify_scripts: Some(false),
        ..dump_opts(&dirs, w.pid())
    };
    s.send(&request(CriuReqType::Dump, Some(opts)));
    let r = s.recv();
    assert!(r.success, "{r:?}\n{}", log_tail(&dir, "dump.log"));
    assert_eq!(s.exit_code(), Some(0));
    let n = w.lines().len();
    w.wait_ticks_after(n, 2, LINE_TIMEOUT);
    assert_eq!(proc::tracer_pid(w.pid()), Some(0));
}

#[test]
fn a_client_failing_pre_dump_or_post_dump_stops_the_dump_and_its_task_runs_on() {
    for refuse in ["pre-dump", "post-dump"] {
        let dir = ScratchDir::new(&format!("swrk-refuse-{refuse}"));
        let dirs = Dirs::open(&dir);
        let w = Workload::start("counter", &dir.join("counter.log"), &["4", "9"], dir.path());
        w.wait_ticks_after(0, 2, LINE_TIMEOUT);
        let s = Swrk::start();
        s.send(&request(CriuReqType::Dump, Some(dump_opts(&dirs, w.pid()))));
        let r = s.converse(|script, _| script != refuse);
        assert!(!r.success, "{refuse}: {r:?}");
        assert_eq!(r.r#type, CriuReqType::Dump as i32);
        assert_eq!(r.cr_errno, Some(libc::ECANCELED));
        let msg = r.cr_errmsg.unwrap_or_default();
        assert!(msg.contains(refuse), "{msg}");
        assert_eq!(s.exit_code(), Some(1));
        assert!(
            w.is_alive(),
            "{refuse}: the task must run on: {}",
            w.how_it_ended()
        );
        assert_eq!(proc::tracer_pid(w.pid()), Some(0), "{refuse}: left traced");
        let n = w.lines().len();
        w.wait_ticks_after(n, 2, LINE_TIMEOUT);
        let left: Vec<String> = std::fs::read_dir(dir.join("images"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".img"))
            .collect();
        assert!(left.is_empty(), "{refuse}: images left behind: {left:?}");
        let log = std::fs::read_to_string(dir.join("work/dump.log")).unwrap();
        assert!(log.contains("Error ("), "{log}");
    }
}

/// A dump that fails after the server's connection was locked and its socket put in
/// repair mode: the server gets both back before it runs again (in repair mode its next
/// read would fail with EPERM), and its client, which never stopped sending, streams on.
#[test]
fn a_client_failing_post_dump_of_a_tcp_server_gets_the_connection_back_unlocked() {
    let h = HostStream::start("swrk-refuse-tcp");
    let dirs = Dirs::open(&h.dir);
    let s = Swrk::start();
    let opts = CriuOpts {
        tcp_established: Some(true),
        ..dump_opts(&dirs, h.pid)
    };
    s.send(&request(CriuReqType::Dump, Some(opts)));
    let (there, back) = h.tuples();
    let mut locked = false;
    let r = s.converse(|script, _| {
        locked |= lock_tables_with(&there).iter().any(|t| t.1.contains(&back));
        script != "post-dump"
    });
    assert!(!r.success, "{r:?}");
    assert!(locked, "the connection was locked during the dump");
    assert_eq!(s.exit_code(), Some(1));
    assert!(
        proc::is_alive(h.pid),
        "the server {} runs on after the failed dump",
        h.pid
    );
    assert_eq!(
        proc::tracer_pid(h.pid),
        Some(0),
        "the server is left traced"
    );
    assert!(
        lock_tables_with(&there).is_empty(),
        "the failed dump left {there} locked: {:?}",
        lock_tables_with(&there)
    );
    h.client.assert_ok();
    h.finish();
}

#[test]
fn a_client_failing_post_restore_gets_an_error_and_no_process_is_left() {
    let dir = ScratchDir::new("swrk-refuse-restore");
    let dirs = Dirs::open(&dir);
    let w = Workload::start(
        "counter",
        &dir.join("counter.log"),
        &["4", "11"],
        dir.path(),
    );
    let pid = w.pid();
    w.wait_ticks_after(0, 2, LINE_TIMEOUT);
    let s = Swrk::start();
    s.send(&request(CriuReqType::Dump, Some(dump_opts(&dirs, pid))));
    assert!(s.converse(|_, _| true).success);
    w.assert_gone(Duration::from_secs(10));
    let at_dump = w.lines().len();

    let s = Swrk::start();
    s.send(&request(CriuReqType::Restore, Some(restore_opts(&dirs))));
    let r = s.converse(|script, _| script != "post-restore");
    assert!(!r.success, "{r:?}");
    assert_eq!(r.r#type, CriuReqType::Restore as i32);
    assert_eq!(r.restore.unwrap().pid, -1);
    assert!(r.cr_errmsg.unwrap_or_default().contains("post-restore"));
    assert_eq!(s.exit_code(), Some(1));
    // The half-restored task was killed; as our child (rst_sibling) we reap it.
    w.assert_gone(Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(w.lines().len(), at_dump, "the refused task ran");
}

#[test]
fn exec_cmd_runs_after_a_successful_restore_with_its_output_in_the_log() {
    let dir = ScratchDir::new("swrk-exec-cmd");
    let dirs = Dirs::open(&dir);
    let w = Workload::start(
        "counter",
        &dir.join("counter.log"),
        &["4", "13"],
        dir.path(),
    );
    let pid = w.pid();
    w.wait_ticks_after(0, 2, LINE_TIMEOUT);
    let s = Swrk::start();
    s.send(&request(CriuReqType::Dump, Some(dump_opts(&dirs, pid))));
    assert!(s.converse(|_, _| true).success);
    w.assert_gone(Duration::from_secs(10));

    let s = Swrk::start();
    let opts = CriuOpts {
        exec_cmd: vec!["/bin/sh".into(), "-c".into(), "echo exec-cmd ran".into()],
        ..restore_opts(&dirs)
    };
    s.send(&request(CriuReqType::Restore, Some(opts)));
    let r = s.converse(|_, _| true);
    assert!(r.success, "{r:?}\n{}", log_tail(&dir, "restore.log"));
    assert_eq!(s.exit_code(), Some(0), "the exit status is exec_cmd's");
    let log = std::fs::read_to_string(dir.join("work/restore.log")).unwrap();
    assert!(
        log.contains("exec-cmd ran"),
        "exec_cmd's stdout goes to the log:\n{log}"
    );
    assert!(w.is_alive());
}

/// runc's cgroup fields: `freeze_cgroup` at DUMP, then RESTORE with `manage_cgroups` +
/// `manage_cgroups_mode` and one `cg_root` per hierarchy naming the new container's
/// cgroup, which runc has already made (with its own limits) in one hierarchy and not
/// in the other (see docs/cgroups.md).
#[test]
fn runc_s_cgroup_fields_freeze_at_dump_and_restore_into_the_new_container_cgroups() {
    use stasis_e2e::cgroups::{cgroup_of, move_in, read, TestCgroups};
    use stasis_images::pb::rpc::{CgroupRoot, CriuCgMode};
    let dir = ScratchDir::new("swrk-cgroups");
    let dirs = Dirs::open(&dir);
    let mut cg = TestCgroups::new("rpc");
    let freezer = cg.create("freezer", &[]);
    let pids = cg.create("pids", &[("pids.max", "42")]);
    let w = Workload::start(
        "counter",
        &dir.join("counter.log"),
        &["4", "21"],
        dir.path(),
    );
    let pid = w.pid();
    move_in(&freezer, pid);
    move_in(&pids, pid);
    w.wait_ticks_after(0, 3, LINE_TIMEOUT);

    let s = Swrk::start();
    let opts = CriuOpts {
        freeze_cgroup: Some(freezer.to_string_lossy().into_owned()),
        manage_cgroups: Some(true),
        notify_scripts: Some(false),
        ..dump_opts(&dirs, pid)
    };
    s.send(&request(CriuReqType::Dump, Some(opts)));
    let r = s.recv();
    assert!(
        r.success,
        "DUMP failed: {r:?}\n{}",
        log_tail(&dir, "dump.log")
    );
    assert_eq!(s.exit_code(), Some(0));
    w.assert_gone(Duration::from_secs(10));
    let at_dump = w.lines();

    // The new container's cgroups: runc made the pids one with its own limit.
    let new = format!("{}-new", cg.name);
    let new_pids = cg.track("pids", &new);
    let new_freezer = cg.track("freezer", &new);
    std::fs::create_dir(&new_pids).unwrap();
    std::fs::write(new_pids.join("pids.max"), "99").unwrap();
    let s = Swrk::start();
    let opts = CriuOpts {
        manage_cgroups: Some(true),
        manage_cgroups_mode: Some(CriuCgMode::Soft as i32),
        cg_root: ["pids", "freezer"]
            .iter()
            .map(|c| CgroupRoot {
                ctrl: Some(c.to_string()),
                path: format!("/{new}"),
            })
            .collect(),
        notify_scripts: Some(false),
        ..restore_opts(&dirs)
    };
    s.send(&request(CriuReqType::Restore, Some(opts)));
    let r = s.recv();
    assert!(
        r.success,
        "RESTORE failed: {r:?}\n{}",
        log_tail(&dir, "restore.log")
    );
    assert_eq!(s.exit_code(), Some(0));
    assert_eq!(cgroup_of(pid, "pids"), format!("/{new}"));
    assert_eq!(cgroup_of(pid, "freezer"), format!("/{new}"));
    assert!(
        new_freezer.is_dir(),
        "soft creates the missing freezer cgroup"
    );
    assert_eq!(
        read(&new_pids.join("pids.max")),
        "99",
        "soft never writes into the cgroup runc made"
    );
    w.wait_ticks_after(at_dump.len(), 3, LINE_TIMEOUT);
    assert_ticks_continuous(&w.lines());
}
