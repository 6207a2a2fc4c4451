//! `stasis swrk <fd>` driven over a real socketpair, as runc, podman and go-criu drive
//! CRIU: the captured requests of real clients replayed against the binary, and every
//! kind of bad input — each answered with an error response naming the problem, never a
//! crash or a hang, and never a change to the task the request names.

mod common;

use common::captures;
use common::client::{seqpacket_pair, stasis_bin, Session};
use prost::Message;
use stasis_images::pb::rpc::{CriuFeatures, CriuOpts, CriuReq, CriuReqType, CriuResp};
use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

const EBADRQC: i32 = 56;

fn req(ty: CriuReqType) -> CriuReq {
    CriuReq {
        r#type: ty as i32,
        ..Default::default()
    }
}

fn decode_req(bytes: &[u8]) -> CriuReq {
    CriuReq::decode(bytes).expect("a captured request decodes")
}

#[track_caller]
fn assert_failure(r: &CriuResp, ty: CriuReqType, errno: i32, says: &str) {
    assert_eq!(
        (r.r#type, r.success),
        (ty as i32, false),
        "expected a failed {ty:?}: {r:?}"
    );
    assert_eq!(r.cr_errno, Some(errno), "{r:?}");
    let msg = r.cr_errmsg.as_deref().unwrap_or_default();
    assert!(msg.contains(says), "cr_errmsg {msg:?} should say {says:?}");
}

/// A scratch directory, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let p = std::env::temp_dir().join(format!("stasis-swrk-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(p.join("images")).unwrap();
        std::fs::create_dir_all(p.join("work")).unwrap();
        Scratch(p)
    }
    fn images(&self) -> PathBuf {
        self.0.join("images")
    }
    fn work(&self) -> PathBuf {
        self.0.join("work")
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A process a request names, which must come out of every refusal exactly as it was.
struct Victim(Child);

impl Victim {
    fn start() -> Victim {
        Victim(
            Command::new("sleep")
                .arg("600")
                .stdin(Stdio::null())
                .spawn()
                .expect("start sleep"),
        )
    }
    fn pid(&self) -> i32 {
        self.0.id() as i32
    }
    #[track_caller]
    fn assert_untouched(&mut self) {
        assert!(
            self.0.try_wait().unwrap().is_none(),
            "pid {} is gone",
            self.pid()
        );
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        let field = |k: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(k))
                .map(str::trim)
                .unwrap_or_default()
                .to_string()
        };
        assert_eq!(field("TracerPid:"), "0", "pid {} is traced", self.pid());
        // Running or sleeping, as before: not stopped, traced or dead.
        let state = field("State:");
        assert!(
            state.starts_with('S') || state.starts_with('R'),
            "state {state}"
        );
    }
}

impl Drop for Victim {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Open directories standing for the client's `images_dir_fd` and `work_dir_fd`. They are
/// close-on-exec: stasis must find them through /proc/<client>/fd, as it finds runc's.
struct ClientDirs {
    images: File,
    work: File,
}

impl ClientDirs {
    fn open(s: &Scratch) -> ClientDirs {
        ClientDirs {
            images: File::open(s.images()).unwrap(),
            work: File::open(s.work()).unwrap(),
        }
    }
    /// `opts` pointed at these directories (and at `pid`, if it names one).
    fn patch(&self, opts: &mut CriuOpts, pid: Option<i32>) {
        opts.images_dir_fd = self.images.as_raw_fd();
        opts.work_dir_fd = Some(self.work.as_raw_fd());
        if opts.pid.is_some() {
            opts.pid = pid;
        }
    }
}

fn plain_opts(dirs: &ClientDirs, pid: i32) -> CriuOpts {
    CriuOpts {
        images_dir_fd: dirs.images.as_raw_fd(),
        work_dir_fd: Some(dirs.work.as_raw_fd()),
        pid: Some(pid),
        log_level: Some(4),
        log_file: Some("dump.log".into()),
        ..Default::default()
    }
}

fn read_log(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

// ---- the captured sessions, replayed ----

#[test]
fn every_captured_version_probe_gets_criu_s_answer_and_stasis_exits_0() {
    for c in captures::all() {
        let first = c.first_request();
        if decode_req(&first.bytes).r#type != CriuReqType::Version as i32 {
            continue;
        }
        let criu = CriuResp::decode(&c.final_response().unwrap().bytes[..]).unwrap();
        let s = Session::start();
        s.send_raw(&first.bytes);
        let ours = s.recv();
        assert_eq!((ours.r#type, ours.success), (criu.r#type, criu.success));
        let (o, v) = (ours.version.unwrap(), criu.version.unwrap());
        assert_eq!(
            (o.major_number, o.minor_number),
            (v.major_number, v.minor_number)
        );
        assert!(o.gitid.unwrap().contains("stasis"));
        assert!(s.exits_by_itself().success(), "{}", c.name);
    }
}

#[test]
fn podman_s_feature_probe_is_answered_with_all_three_features_and_no_pre_dump() {
    let c = captures::get("podman-precheckpoint-1");
    let s = Session::start();
    s.send_raw(&c.first_request().bytes);
    let r = s.recv();
    assert_eq!(
        (r.r#type, r.success),
        (CriuReqType::FeatureCheck as i32, true)
    );
    let f = r.features.unwrap();
    assert_eq!(
        f.mem_track,
        Some(false),
        "no soft-dirty tracking, no pre-dump"
    );
    assert_eq!(
        (f.lazy_pages, f.pidfd_store),
        (Some(false), Some(false)),
        "not asked"
    );
    assert!(s.exits_by_itself().success());
}

#[test]
fn runc_s_feature_check_with_full_opts_logs_to_dump_log_in_the_work_dir() {
    for name in ["runc-predump-2", "podman-precheckpoint-4"] {
        let scratch = Scratch::new(name);
        let dirs = ClientDirs::open(&scratch);
        let victim = Victim::start();
        let mut r = decode_req(&captures::get(name).first_request().bytes);
        dirs.patch(r.opts.as_mut().unwrap(), Some(victim.pid()));
        let s = Session::start();
        let resp = s.ask(&r);
        assert!(resp.success, "{name}: {resp:?}");
        assert_eq!(resp.features.unwrap().mem_track, Some(false));
        assert!(s.exits_by_itself().success());
        assert!(scratch.work().join("dump.log").is_file(), "{name}");
        assert!(!scratch.images().join("dump.log").exists(), "{name}");
    }
}

#[test]
fn every_captured_dump_and_restore_stasis_cannot_do_is_refused_by_name_and_changes_nothing() {
    // runc's own requests are served (tests/containers.rs in the e2e suite drives the
    // real runc); what is left refused: an incremental dump (no memory tracking on this
    // kernel).
    let mut replayed = 0;
    for c in captures::all() {
        let mut r = decode_req(&c.first_request().bytes);
        let ty = CriuReqType::try_from(r.r#type).unwrap();
        if !matches!(ty, CriuReqType::Dump | CriuReqType::Restore) {
            continue;
        }
        let o = r.opts.as_ref().unwrap();
        let (said, errno) = if o.track_mem == Some(true) {
            ("Tracking memory is not available", EBADRQC)
        } else {
            continue;
        };
        replayed += 1;
        let scratch = Scratch::new(&c.name);
        let dirs = ClientDirs::open(&scratch);
        let mut victim = Victim::start();
        dirs.patch(r.opts.as_mut().unwrap(), Some(victim.pid()));
        let s = Session::start();
        let resp = s.ask(&r);
        assert_failure(&resp, ty, errno, said);
        match ty {
            CriuReqType::Dump => assert_eq!(resp.dump.unwrap().restored, Some(false)),
            _ => assert_eq!(resp.restore.unwrap().pid, -1),
        }
        assert_eq!(s.exits_by_itself().code(), Some(1), "{}", c.name);
        victim.assert_untouched();
        let log_name = r.opts.as_ref().unwrap().log_file.clone().unwrap();
        let log = read_log(&scratch.work().join(&log_name));
        assert!(
            log.contains("Error ("),
            "{}: runc greps the log for Error:\n{log}",
            c.name
        );
        assert_eq!(
            std::fs::read_dir(scratch.images()).unwrap().count(),
            0,
            "{}: nothing may be written into the images dir",
            c.name
        );
    }
    assert!(replayed >= 2, "{replayed} sessions replayed");
}

#[test]
fn pre_dump_is_refused_with_criu_s_message_because_this_kernel_cannot_track_memory() {
    for ty in [CriuReqType::PreDump, CriuReqType::SinglePreDump] {
        let scratch = Scratch::new("predump");
        let dirs = ClientDirs::open(&scratch);
        let mut victim = Victim::start();
        let mut r = decode_req(&captures::get("runc-ckpt-2").first_request().bytes);
        r.r#type = ty as i32;
        dirs.patch(r.opts.as_mut().unwrap(), Some(victim.pid()));
        let s = Session::start();
        let resp = s.ask(&r);
        assert_failure(&resp, ty, EBADRQC, "Tracking memory is not available");
        assert!(!s.exits_by_itself().success());
        victim.assert_untouched();
        assert!(read_log(&scratch.work().join("dump.log")).contains("Tracking memory"));
    }
}

// ---- bad input ----

#[test]
fn a_malformed_message_gets_an_empty_error_response() {
    for garbage in [&[0xffu8, 0xff, 0xff][..], b"hello, criu", &[0x08][..]] {
        let s = Session::start();
        s.send_raw(garbage);
        assert_failure(
            &s.recv(),
            CriuReqType::Empty,
            libc::EBADMSG,
            "malformed criu_req",
        );
        assert_eq!(s.exits_by_itself().code(), Some(1));
    }
}

#[test]
fn a_request_missing_a_required_field_is_refused_rather_than_defaulted() {
    // type DUMP, opts { pid: 1 }: images_dir_fd (required) is absent; prost alone would
    // read it as 0, the client's stdin.
    let s = Session::start();
    s.send_raw(&[0x08, 0x01, 0x12, 0x02, 0x10, 0x01]);
    assert_failure(
        &s.recv(),
        CriuReqType::Empty,
        libc::EBADMSG,
        "criu_opts.images_dir_fd is missing",
    );
}

#[test]
fn an_unknown_request_type_is_named_in_an_empty_error_response() {
    let s = Session::start();
    s.send_raw(&[0x08, 99]);
    assert_failure(
        &s.recv(),
        CriuReqType::Empty,
        EBADRQC,
        "unknown request type 99",
    );
    assert_eq!(s.exits_by_itself().code(), Some(1));
    for ty in [CriuReqType::Empty, CriuReqType::Notify] {
        let s = Session::start();
        assert_failure(
            &s.ask(&req(ty)),
            CriuReqType::Empty,
            EBADRQC,
            "invalid request type",
        );
    }
}

#[test]
fn request_types_stasis_lacks_are_refused_by_name() {
    for ty in [
        CriuReqType::PageServer,
        CriuReqType::PageServerChld,
        CriuReqType::CpuinfoDump,
        CriuReqType::CpuinfoCheck,
        CriuReqType::WaitPid,
    ] {
        let s = Session::start();
        assert_failure(&s.ask(&req(ty)), ty, libc::EOPNOTSUPP, ty.as_str_name());
    }
}

#[test]
fn an_fd_the_client_does_not_have_is_named_and_nothing_is_done() {
    let scratch = Scratch::new("badfd");
    let dirs = ClientDirs::open(&scratch);
    let mut victim = Victim::start();
    let me = std::process::id();
    let mut opts = plain_opts(&dirs, victim.pid());
    opts.images_dir_fd = 987;
    let s = Session::start();
    let r = s.ask(&CriuReq {
        opts: Some(opts),
        ..req(CriuReqType::Dump)
    });
    assert_failure(
        &r,
        CriuReqType::Dump,
        libc::EBADF,
        &format!("images_dir_fd = 987: the client (pid {me}) has no open fd 987"),
    );
    victim.assert_untouched();

    let mut opts = plain_opts(&dirs, victim.pid());
    opts.work_dir_fd = Some(988);
    let s = Session::start();
    let r = s.ask(&CriuReq {
        opts: Some(opts),
        ..req(CriuReqType::Restore)
    });
    assert_failure(&r, CriuReqType::Restore, libc::EBADF, "work_dir_fd = 988");

    let file = File::open("/proc/self/status").unwrap();
    let mut opts = plain_opts(&dirs, victim.pid());
    opts.images_dir_fd = file.as_raw_fd();
    let s = Session::start();
    let r = s.ask(&CriuReq {
        opts: Some(opts),
        ..req(CriuReqType::Dump)
    });
    assert_failure(&r, CriuReqType::Dump, libc::EBADF, "is not a directory");

    let mut opts = plain_opts(&dirs, victim.pid());
    opts.status_fd = Some(989);
    let s = Session::start();
    let r = s.ask(&CriuReq {
        opts: Some(opts),
        ..req(CriuReqType::Dump)
    });
    assert_failure(&r, CriuReqType::Dump, libc::EBADF, "status_fd = 989");
    victim.assert_untouched();
}

#[test]
fn an_option_stasis_does_not_support_is_refused_by_name_and_the_task_is_left_alone() {
    let scratch = Scratch::new("unsupported");
    let dirs = ClientDirs::open(&scratch);
    let mut victim = Victim::start();
    for (field, set) in [
        (
            "lazy_pages",
            (|o: &mut CriuOpts| o.lazy_pages = Some(true)) as fn(&mut CriuOpts),
        ),
        ("auto_dedup", |o| o.auto_dedup = Some(true)),
        ("leave_stopped", |o| o.leave_stopped = Some(true)),
    ] {
        let mut opts = plain_opts(&dirs, victim.pid());
        set(&mut opts);
        let s = Session::start();
        let r = s.ask(&CriuReq {
            opts: Some(opts),
            ..req(CriuReqType::Dump)
        });
        assert_failure(
            &r,
            CriuReqType::Dump,
            EBADRQC,
            &format!("not supported yet: {field}"),
        );
        victim.assert_untouched();
        let log = read_log(&scratch.work().join("dump.log"));
        assert!(
            log.contains(&format!("not supported yet: {field}")),
            "{log}"
        );
    }
}

#[test]
fn requests_lacking_what_their_type_needs_are_refused() {
    let s = Session::start();
    assert_failure(
        &s.ask(&req(CriuReqType::FeatureCheck)),
        CriuReqType::FeatureCheck,
        libc::EINVAL,
        "needs features",
    );
    for ty in [
        CriuReqType::Dump,
        CriuReqType::Restore,
        CriuReqType::PreDump,
    ] {
        let s = Session::start();
        assert_failure(&s.ask(&req(ty)), ty, libc::EINVAL, "needs opts");
    }
    let scratch = Scratch::new("selfdump");
    let dirs = ClientDirs::open(&scratch);
    let mut opts = plain_opts(&dirs, 1);
    opts.pid = None;
    let s = Session::start();
    let r = s.ask(&CriuReq {
        opts: Some(opts),
        ..req(CriuReqType::Dump)
    });
    assert_failure(&r, CriuReqType::Dump, libc::EINVAL, "self-dump");
    let mut opts = plain_opts(&dirs, 1);
    opts.log_file = Some("../escape.log".into());
    let s = Session::start();
    let r = s.ask(&CriuReq {
        opts: Some(opts),
        ..req(CriuReqType::Dump)
    });
    assert_failure(&r, CriuReqType::Dump, libc::EINVAL, "no subdirectories");
    let mut opts = plain_opts(&dirs, 1);
    opts.images_dir_fd = -1;
    let s = Session::start();
    let r = s.ask(&CriuReq {
        opts: Some(opts),
        ..req(CriuReqType::Dump)
    });
    assert_failure(
        &r,
        CriuReqType::Dump,
        libc::EINVAL,
        "neither images_dir_fd nor images_dir",
    );
}

#[test]
fn a_packet_larger_than_the_cap_is_refused_without_reading_it() {
    let (ours, theirs) = seqpacket_pair();
    rustix::net::sockopt::set_socket_send_buffer_size(&ours, 4 << 20).unwrap();
    let s = Session::start_with(ours, theirs, |_| {});
    let mut big = vec![0x08, 0x0a, 0x12];
    big.resize((1 << 20) + 1, 0);
    s.send_raw(&big);
    assert_failure(&s.recv(), CriuReqType::Empty, libc::EMSGSIZE, "larger than");
    assert_eq!(s.exits_by_itself().code(), Some(1));
}

#[test]
fn keep_open_serves_another_request_only_after_version_or_feature_check() {
    let s = Session::start();
    let r = s.ask(&CriuReq {
        keep_open: Some(true),
        ..req(CriuReqType::Version)
    });
    assert!(r.success);
    let r = s.ask(&CriuReq {
        keep_open: Some(true),
        features: Some(CriuFeatures {
            pidfd_store: Some(true),
            ..Default::default()
        }),
        ..req(CriuReqType::FeatureCheck)
    });
    assert_eq!(
        r.features.unwrap().pidfd_store,
        Some(true),
        "this kernel has pidfds"
    );
    let r = s.ask(&req(CriuReqType::Check));
    assert_eq!(r.r#type, CriuReqType::Check as i32);
    let (status, _) = s.finish();
    assert_eq!(
        status.success(),
        r.success,
        "exit status follows the last answer"
    );

    let s = Session::start();
    let r = s.ask(&CriuReq {
        keep_open: Some(true),
        ..req(CriuReqType::Dump)
    });
    assert_failure(&r, CriuReqType::Dump, libc::EINVAL, "keep_open");
}

#[test]
fn a_client_that_closes_without_asking_makes_stasis_exit_not_hang() {
    let s = Session::start();
    let (status, stderr) = s.finish();
    assert_eq!(status.code(), Some(1));
    assert!(
        stderr.is_empty(),
        "nothing on stdio, which belongs to the client: {stderr}"
    );
}

#[test]
fn stasis_swrk_refuses_a_missing_or_wrong_fd_on_stderr() {
    let run = |args: &[&str], stdin: Stdio| {
        let out = Command::new(stasis_bin())
            .args(args)
            .stdin(stdin)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, err) = run(&["swrk"], Stdio::null());
    assert_eq!(code, Some(1));
    assert!(err.contains("usage: stasis swrk FD"), "{err}");
    let (code, err) = run(&["swrk", "three"], Stdio::null());
    assert_eq!(code, Some(1));
    assert!(err.contains("\"three\""), "{err}");
    let (code, err) = run(&["swrk", "97"], Stdio::null());
    assert_eq!(code, Some(1));
    assert!(err.contains("fd 97"), "{err}");
    let (code, err) = run(&["swrk", "0"], Stdio::null());
    assert_eq!(code, Some(1));
    assert!(err.contains("not a socket"), "{err}");
    let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
    let (code, err) = run(&["swrk", "0"], Stdio::from(std::os::fd::OwnedFd::from(a)));
    assert_eq!(code, Some(1));
    assert!(err.contains("SOCK_SEQPACKET"), "{err}");
}

#[test]
fn the_request_s_config_file_overrides_its_options_and_is_refused_by_name_when_stasis_lacks_one() {
    let scratch = Scratch::new("config");
    let dirs = ClientDirs::open(&scratch);
    let conf = scratch.0.join("runc.conf");
    std::fs::write(
        &conf,
        "# as /etc/criu/runc.conf\nlog-file from-config.log\n",
    )
    .unwrap();
    let mut opts = plain_opts(&dirs, 1);
    opts.config_file = Some(conf.to_string_lossy().into_owned());
    let s = Session::start();
    let r = s.ask(&CriuReq {
        opts: Some(opts.clone()),
        features: Some(CriuFeatures::default()),
        ..req(CriuReqType::FeatureCheck)
    });
    assert!(r.success, "{r:?}");
    assert!(scratch.work().join("from-config.log").is_file());
    assert!(
        !scratch.work().join("dump.log").exists(),
        "the config file wins"
    );

    std::fs::write(&conf, "tcp-close\n").unwrap();
    let mut victim = Victim::start();
    opts.pid = Some(victim.pid());
    let s = Session::start();
    let r = s.ask(&CriuReq {
        opts: Some(opts),
        ..req(CriuReqType::Dump)
    });
    assert_failure(&r, CriuReqType::Dump, EBADRQC, "--tcp-close");
    assert!(r.cr_errmsg.unwrap().contains("runc.conf"));
    victim.assert_untouched();
}
