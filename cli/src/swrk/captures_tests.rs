//! The captured sessions of runc, podman, containerd and docker with CRIU 4.2
//! (`tests/fixtures/rpc-captures/`), replayed through stasis's decoding, option mapping
//! and response builders: every request decodes, every option set maps to a decision,
//! and what stasis answers matches CRIU field by field where clients depend on it.

#[path = "../../tests/common/captures.rs"]
mod captures;

use super::conn::decode;
use super::fields;
use super::response;
use captures::Direction;
use prost::Message;
use stasis_images::pb::rpc::{CriuReq, CriuReqType, CriuResp};

fn req_type(r: &CriuReq) -> CriuReqType {
    CriuReqType::try_from(r.r#type).expect("a known request type")
}

fn resp(bytes: &[u8]) -> CriuResp {
    CriuResp::decode(bytes).expect("a captured response decodes")
}

/// go-criu's, runc's and libcriu's version arithmetic.
fn client_version(r: &CriuResp) -> i32 {
    let v = r.version.as_ref().expect("version");
    let mut n = v.major_number * 10000 + v.minor_number * 100 + v.sublevel.unwrap_or(0);
    if v.gitid.as_deref().is_some_and(|g| !g.is_empty()) {
        n = n - n % 100 + 100;
    }
    n
}

#[test]
fn every_captured_request_decodes_and_its_opts_map_to_a_decision() {
    let mut requests = 0;
    for c in captures::all() {
        for p in c.requests() {
            let req = decode(&p.bytes).unwrap_or_else(|e| panic!("{}: {e}", c.name));
            requests += 1;
            let ty = req_type(&req);
            if let Some(opts) = &req.opts {
                // Every field a client sets has a row, and mapping never panics.
                assert!(fields::asked(opts).count() > 0, "{}", c.name);
                let decision = fields::check(opts);
                if matches!(ty, CriuReqType::Dump | CriuReqType::Restore) {
                    // Accepted, or refused by name with CRIU's errno for a bad request.
                    if let Err(e) = decision {
                        assert_eq!(e.cr_errno(), libc::EBADRQC, "{}: {e}", c.name);
                    }
                }
            }
            // Re-encoding keeps every field a client sent (nothing is dropped as unknown).
            assert_eq!(
                CriuReq::decode(&req.encode_to_vec()[..]).unwrap(),
                req,
                "{}",
                c.name
            );
        }
    }
    assert!(requests >= 46, "{requests} requests");
}

/// Every field a request sets is honoured or moot (none refused).
fn assert_all_honoured(name: &str) {
    let req = decode(&captures::get(name).first_request().bytes).unwrap();
    let opts = req.opts.as_ref().unwrap();
    if let Err(e) = fields::check(opts) {
        panic!("{name}: {e}");
    }
    for f in fields::asked(opts) {
        assert!(
            matches!(
                f.support,
                fields::Support::Honoured | fields::Support::Moot(_)
            ),
            "{name}: {} is {:?}",
            f.name,
            f.support
        );
    }
    super::setup::externals(opts).unwrap_or_else(|e| panic!("{name}: {e}"));
}

#[test]
fn runc_s_checkpoint_and_restore_are_accepted_with_every_field_they_set() {
    // root, ext_mnt, empty_ns, freeze_cgroup, manage_cgroups; at restore also cg_root,
    // rst_sibling and inherit_fd for the stdio pipes.
    for name in [
        "runc-ckpt-2",
        "runc-restore-2",
        "ctr-c-restore-2",
        "docker-checkpoint-2",
    ] {
        assert_all_honoured(name);
    }
    let req = decode(&captures::get("runc-restore-2").first_request().bytes).unwrap();
    let opts = req.opts.as_ref().unwrap();
    assert_eq!(opts.rst_sibling, Some(true));
    assert_eq!(opts.inherit_fd[0].key, "pipe:[237353]");
}

#[test]
fn podman_s_external_netns_is_recognised_and_its_tcp_and_file_locks_are_not_refused() {
    let export = decode(&captures::get("podman-ckpt-export-3").first_request().bytes).unwrap();
    let opts = export.opts.as_ref().unwrap();
    if let Err(e) = fields::check(opts) {
        let text = e.to_string();
        assert!(!text.contains("tcp_established"), "{text}");
        assert!(!text.contains("file_locks"), "{text}");
    }
    let extnet = decode(&captures::get("podman-extnet-ckpt-3").first_request().bytes).unwrap();
    let ext = super::setup::externals(extnet.opts.as_ref().unwrap()).unwrap();
    assert_eq!(ext.netns.len(), 1, "{ext:?}");
    assert_eq!(ext.netns[0].1, "extRootNetNS");
}

#[test]
fn version_answer_matches_criu_s_in_every_field_clients_gate_on() {
    let mut seen = 0;
    for c in captures::all() {
        let first = decode(&c.first_request().bytes).unwrap();
        if req_type(&first) != CriuReqType::Version {
            continue;
        }
        seen += 1;
        let criu = resp(&c.final_response().unwrap().bytes);
        let ours = response::version();
        assert_eq!(ours.r#type, criu.r#type, "{}", c.name);
        assert_eq!(ours.success, criu.success);
        let (o, v) = (
            ours.version.as_ref().unwrap(),
            criu.version.as_ref().unwrap(),
        );
        assert_eq!(
            (o.major_number, o.minor_number),
            (v.major_number, v.minor_number)
        );
        assert_eq!(o.sublevel, v.sublevel, "no sublevel, as CRIU 4.2");
        assert_eq!(o.name, v.name, "no name, as CRIU 4.2");
        assert!(o.gitid.is_some() && v.gitid.is_some(), "both carry a gitid");
        assert_eq!(
            client_version(&ours),
            client_version(&criu),
            "40300 for both"
        );
        assert!(ours.cr_errmsg.is_none() && criu.cr_errmsg.is_none());
    }
    assert!(seen >= 20, "{seen} VERSION sessions");
}

#[test]
fn notifications_are_byte_for_byte_those_criu_sent() {
    let mut seen = 0;
    for c in captures::all() {
        for p in c.responses() {
            let criu = resp(&p.bytes);
            if criu.r#type != CriuReqType::Notify as i32 {
                continue;
            }
            seen += 1;
            let n = criu.notify.as_ref().unwrap();
            let ours = response::notify(n.script.as_deref().unwrap(), n.pid);
            assert_eq!(ours.encode_to_vec(), p.bytes, "{}: {}", c.name, p.text);
        }
    }
    assert!(seen > 60, "{seen} notifications");
}

#[test]
fn clients_acknowledge_notifications_as_stasis_expects() {
    for c in captures::all() {
        for p in c.requests().skip(1) {
            let ack = decode(&p.bytes).unwrap();
            assert_eq!(req_type(&ack), CriuReqType::Notify, "{}", c.name);
            assert_eq!(ack.notify_success, Some(true), "{}", c.name);
            assert_eq!(ack.opts, None, "{}: no query-ext-files externals", c.name);
        }
    }
}

#[test]
fn the_notification_order_stasis_sends_is_criu_s_for_a_task_without_namespaces() {
    // CRIU sends network-lock/unlock, setup-namespaces and post-setup-namespaces only for
    // tasks with namespaces of their own (all the captures are containers); the rest is
    // what stasis sends, in the same order.
    use super::notify::Script::*;
    let own_ns_only = [
        "network-lock",
        "network-unlock",
        "setup-namespaces",
        "post-setup-namespaces",
    ];
    let dump: Vec<&str> = [PreDump, QueryExtFiles, PostDump].map(|s| s.name()).into();
    let restore: Vec<&str> = [PreRestore, PostRestore, PreResume, PostResume]
        .map(|s| s.name())
        .into();
    for c in captures::all() {
        let scripts: Vec<String> = c
            .responses()
            .filter_map(|p| resp(&p.bytes).notify.and_then(|n| n.script))
            .filter(|s| !own_ns_only.contains(&s.as_str()))
            .collect();
        if scripts.is_empty() {
            continue;
        }
        let expected = match req_type(&decode(&c.first_request().bytes).unwrap()) {
            CriuReqType::Dump => &dump,
            CriuReqType::Restore => &restore,
            t => panic!("{}: notifications for {t:?}", c.name),
        };
        assert_eq!(&scripts, expected, "{}", c.name);
    }
}

#[test]
fn dump_and_restore_answers_have_criu_s_shape() {
    let criu = resp(&captures::get("runc-ckpt-2").final_response().unwrap().bytes);
    let ours = response::dump_done();
    assert_eq!((ours.r#type, ours.success), (criu.r#type, criu.success));
    assert_eq!(ours.dump, criu.dump, "dump {{restored: false}}");
    assert!(ours.encode_to_vec().len() < 8192);

    let criu = resp(
        &captures::get("runc-restore-2")
            .final_response()
            .unwrap()
            .bytes,
    );
    let pid = criu.restore.as_ref().unwrap().pid;
    let ours = response::restore_done(pid);
    assert_eq!((ours.r#type, ours.success), (criu.r#type, criu.success));
    assert_eq!(ours.restore, criu.restore);
}

#[test]
fn the_track_mem_refusal_matches_criu_s_captured_failure_field_by_field() {
    for name in ["runc-predump-4", "podman-precheckpoint-8"] {
        let c = captures::get(name);
        let req = decode(&c.first_request().bytes).unwrap();
        let err = fields::check(req.opts.as_ref().unwrap()).unwrap_err();
        let ours = response::failure(req_type(&req), &err);
        let criu = resp(&c.final_response().unwrap().bytes);
        assert_eq!(ours.r#type, criu.r#type, "{name}");
        assert_eq!(ours.success, criu.success);
        assert_eq!(ours.dump, criu.dump, "dump {{restored: false}}");
        assert_eq!(ours.cr_errno, criu.cr_errno, "cr_errno 56");
        let (o, c) = (ours.cr_errmsg.unwrap(), criu.cr_errmsg.unwrap());
        assert!(c.contains(fields::NO_MEM_TRACK) && o.contains(fields::NO_MEM_TRACK));
    }
}

#[test]
fn feature_check_answer_has_the_shape_clients_read() {
    // podman's probe: `features {mem_track: true}`, no opts.
    let c = captures::get("podman-precheckpoint-1");
    let req = decode(&c.first_request().bytes).unwrap();
    assert_eq!(req_type(&req), CriuReqType::FeatureCheck);
    assert!(req.opts.is_none());
    let kernel = super::features::Kernel::probe();
    let ours = response::features(super::features::answer(
        req.features.as_ref().unwrap(),
        &kernel,
    ));
    assert_eq!(ours.r#type, CriuReqType::FeatureCheck as i32);
    assert!(ours.success);
    let f = ours.features.unwrap();
    // All three present (CRIU sets has_* for each), as runc's and podman's checks read them.
    assert!(f.mem_track.is_some() && f.lazy_pages.is_some() && f.pidfd_store.is_some());
    assert_eq!(f.mem_track, Some(false), "stasis has no pre-dump");
    // The capture shim answered `080910014206080110001800` (mem_track true): the same
    // layout, with stasis's truthful value.
    let shim = resp(&[
        0x08, 0x09, 0x10, 0x01, 0x42, 0x06, 0x08, 0x01, 0x10, 0x00, 0x18, 0x00,
    ]);
    assert_eq!(
        response::features(shim.features.unwrap()).encode_to_vec(),
        [0x08, 0x09, 0x10, 0x01, 0x42, 0x06, 0x08, 0x01, 0x10, 0x00, 0x18, 0x00]
    );
}

#[test]
fn capture_parser_checks_lengths_against_the_hex() {
    let bad = "x client -> criu  fd=3 recvfrom len=3\n    type: VERSION\n    hex=080a\n";
    assert!(captures::parse("bad", bad).unwrap_err().contains("len=3"));
    let ok = captures::parse(
        "ok",
        "x client -> criu  fd=3 recvfrom len=2\n    type: VERSION\n    hex=080a\n",
    )
    .unwrap();
    assert_eq!(ok.packets[0].direction, Direction::ToCriu);
    assert_eq!(ok.packets[0].bytes, [0x08, 0x0a]);
}
