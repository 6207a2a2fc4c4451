//! The Task service driven through its ttrpc trait with a fake context, a fake runtime
//! that records every stasis-runc command line, and a recording event sink.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use containerd_shim::api::{self, Status};
use containerd_shim::protos::protobuf::well_known_types::any::Any;
use containerd_shim::protos::protobuf::{Message, MessageDyn, MessageField};
use containerd_shim::protos::shim::oci::CheckpointOptions;
use containerd_shim::protos::ttrpc::{self, Code};
use containerd_shim::{ExitSignal, Task, TtrpcContext};

use crate::events::EventSink;
use crate::exits::Exits;
use crate::runtime::{ChildStdio, RunFailure, Runtime};
use crate::service::TaskService;

fn ctx() -> TtrpcContext {
    let (_cancel_tx, cancel_rx) = crossbeam::channel::unbounded();
    let (res_tx, _res_rx) = std::sync::mpsc::channel();
    TtrpcContext {
        fd: -1,
        cancel_rx,
        mh: ttrpc::MessageHeader::default(),
        res_tx,
        metadata: HashMap::new(),
        timeout_nano: 0,
    }
}

/// Records command lines; writes the pid file a real runc would; fails verbs on request.
#[derive(Default)]
struct FakeRuntime {
    calls: Mutex<Vec<Vec<String>>>,
    fail: Mutex<HashMap<String, String>>,
}

impl FakeRuntime {
    fn verbs(&self) -> Vec<Vec<String>> {
        // Drop the 6 global flags (--root R --log L --log-format json).
        self.calls
            .lock()
            .unwrap()
            .iter()
            .map(|c| c[6..].to_vec())
            .collect()
    }
}

impl Runtime for FakeRuntime {
    fn name(&self) -> String {
        "stasis-runc".into()
    }

    fn run(&self, args: &[String], _stdio: Option<ChildStdio>) -> Result<Vec<u8>, RunFailure> {
        self.calls.lock().unwrap().push(args.to_vec());
        let verb = args[6].as_str();
        if let Some(msg) = self.fail.lock().unwrap().get(verb) {
            return Err(RunFailure {
                status: 1,
                stderr: msg.clone(),
            });
        }
        if let Some(i) = args.iter().position(|a| a == "--pid-file") {
            let pid = match verb {
                "create" => "4242",
                "restore" => "4343",
                _ => "5000",
            };
            std::fs::write(&args[i + 1], pid).unwrap();
        }
        Ok(if verb == "ps" {
            b"[4242, 5000]".to_vec()
        } else {
            Vec::new()
        })
    }
}

#[derive(Default)]
struct Recorder(Mutex<Vec<String>>);

impl EventSink for Recorder {
    fn send(&self, topic: &str, _event: Box<dyn MessageDyn>) {
        self.0.lock().unwrap().push(topic.to_string());
    }
}

struct Harness {
    svc: TaskService,
    rt: Arc<FakeRuntime>,
    events: Arc<Recorder>,
    exit: Arc<ExitSignal>,
    bundle: tempfile::TempDir,
}

fn harness() -> Harness {
    let rt = Arc::new(FakeRuntime::default());
    let events = Arc::new(Recorder::default());
    let exit = Arc::new(ExitSignal::default());
    let svc = TaskService::new(
        "default".into(),
        Arc::clone(&rt) as Arc<dyn Runtime>,
        Arc::clone(&events) as Arc<dyn EventSink>,
        Arc::new(Exits::default()),
        Arc::clone(&exit),
    );
    Harness {
        svc,
        rt,
        events,
        exit,
        bundle: tempfile::tempdir().unwrap(),
    }
}

impl Harness {
    fn bundle(&self) -> String {
        self.bundle.path().display().to_string()
    }

    fn create(&self, checkpoint: &str) -> api::CreateTaskResponse {
        self.svc
            .create(
                &ctx(),
                api::CreateTaskRequest {
                    id: "c1".into(),
                    bundle: self.bundle(),
                    checkpoint: checkpoint.into(),
                    ..Default::default()
                },
            )
            .unwrap()
    }

    fn state(&self, exec_id: &str) -> api::StateResponse {
        self.svc
            .state(
                &ctx(),
                api::StateRequest {
                    id: "c1".into(),
                    exec_id: exec_id.into(),
                    ..Default::default()
                },
            )
            .unwrap()
    }
}

fn code<T: std::fmt::Debug>(r: ttrpc::Result<T>) -> Code {
    match r {
        Err(ttrpc::Error::RpcStatus(s)) => s.code(),
        other => panic!("expected an rpc status, got {other:?}"),
    }
}

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

#[test]
fn create_then_start_runs_runc_create_and_start_and_reports_running() {
    let h = harness();
    assert_eq!(h.create("").pid, 4242);
    let b = h.bundle();
    assert_eq!(
        h.rt.verbs()[0],
        s(&[
            "create",
            "--bundle",
            &b,
            "--pid-file",
            &format!("{b}/init.pid"),
            "c1"
        ])
    );
    let global = h.rt.calls.lock().unwrap()[0][..6].to_vec();
    assert_eq!(
        global,
        s(&[
            "--root",
            "/run/containerd/runc/default",
            "--log",
            &format!("{b}/log.json"),
            "--log-format",
            "json"
        ])
    );
    assert_eq!(h.state("").status.enum_value(), Ok(Status::CREATED));
    let started = h
        .svc
        .start(
            &ctx(),
            api::StartRequest {
                id: "c1".into(),
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(started.pid, 4242);
    assert_eq!(h.rt.verbs()[1], s(&["start", "c1"]));
    assert_eq!(h.state("").status.enum_value(), Ok(Status::RUNNING));
    assert_eq!(
        *h.events.0.lock().unwrap(),
        ["/tasks/create", "/tasks/start"]
    );
}

#[test]
fn a_task_created_from_a_checkpoint_is_restored_at_start_not_at_create() {
    let h = harness();
    assert_eq!(h.create("/tmp/ctrd-checkpoint1").pid, 0);
    assert!(
        h.rt.verbs().is_empty(),
        "nothing runs at Create: {:?}",
        h.rt.verbs()
    );
    let started = h
        .svc
        .start(
            &ctx(),
            api::StartRequest {
                id: "c1".into(),
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(started.pid, 4343);
    let b = h.bundle();
    assert_eq!(
        h.rt.verbs()[0],
        s(&[
            "restore",
            "--image-path",
            "/tmp/ctrd-checkpoint1",
            "--work-path",
            &format!("{b}/work"),
            "--detach",
            "--pid-file",
            &format!("{b}/init.pid"),
            "--no-subreaper",
            "--bundle",
            &b,
            "c1",
        ])
    );
    assert_eq!(h.state("").status.enum_value(), Ok(Status::RUNNING));
}

#[test]
fn checkpoint_honours_containerds_options_and_writes_where_asked() {
    let h = harness();
    h.create("");
    h.svc
        .start(
            &ctx(),
            api::StartRequest {
                id: "c1".into(),
                ..Default::default()
            },
        )
        .unwrap();
    let img = h.bundle.path().join("img");
    let opts = CheckpointOptions {
        exit: true,
        file_locks: true,
        open_tcp: true,
        ..Default::default()
    };
    let any = Any {
        type_url: "containerd.runc.v1.CheckpointOptions".into(),
        value: opts.write_to_bytes().unwrap(),
        ..Default::default()
    };
    h.svc
        .checkpoint(
            &ctx(),
            api::CheckpointTaskRequest {
                id: "c1".into(),
                path: img.display().to_string(),
                options: MessageField::some(any),
                ..Default::default()
            },
        )
        .unwrap();
    let b = h.bundle();
    assert_eq!(
        h.rt.verbs()[2],
        s(&[
            "checkpoint",
            "--image-path",
            &format!("{b}/img"),
            "--work-path",
            &format!("{b}/work"),
            "--tcp-established",
            "--file-locks",
            "c1"
        ])
    );
    assert!(img.is_dir() && Path::new(&format!("{b}/work")).is_dir());
}

#[test]
fn a_failed_checkpoint_is_an_error_carrying_runcs_message() {
    let h = harness();
    h.create("");
    h.svc
        .start(
            &ctx(),
            api::StartRequest {
                id: "c1".into(),
                ..Default::default()
            },
        )
        .unwrap();
    h.rt.fail
        .lock()
        .unwrap()
        .insert("checkpoint".into(), "criu failed: type DUMP errno 0".into());
    let err = h
        .svc
        .checkpoint(
            &ctx(),
            api::CheckpointTaskRequest {
                id: "c1".into(),
                path: h.bundle(),
                ..Default::default()
            },
        )
        .unwrap_err();
    match err {
        ttrpc::Error::RpcStatus(st) => {
            assert_eq!(st.code(), Code::UNKNOWN);
            assert!(
                st.message.contains("criu failed: type DUMP errno 0"),
                "{}",
                st.message
            );
        }
        e => panic!("{e:?}"),
    }
}

#[test]
fn checkpointing_a_task_that_is_not_running_is_a_failed_precondition() {
    let h = harness();
    h.create("");
    let r = h.svc.checkpoint(
        &ctx(),
        api::CheckpointTaskRequest {
            id: "c1".into(),
            path: h.bundle(),
            ..Default::default()
        },
    );
    assert_eq!(code(r), Code::FAILED_PRECONDITION);
}

#[test]
fn an_exit_seen_by_the_reaper_stops_the_task_wakes_wait_and_is_published() {
    let h = harness();
    h.create("");
    h.svc
        .start(
            &ctx(),
            api::StartRequest {
                id: "c1".into(),
                ..Default::default()
            },
        )
        .unwrap();
    let on_exit = h.svc.exit_handler();
    std::thread::scope(|scope| {
        let waiter = scope.spawn(|| {
            h.svc.wait(
                &ctx(),
                api::WaitRequest {
                    id: "c1".into(),
                    ..Default::default()
                },
            )
        });
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert!(on_exit(4242, 137));
        assert!(!on_exit(9999, 0), "not one of ours");
        assert_eq!(waiter.join().unwrap().unwrap().exit_status, 137);
    });
    let st = h.state("");
    assert_eq!(st.status.enum_value(), Ok(Status::STOPPED));
    assert_eq!(st.exit_status, 137);
    assert!(h
        .events
        .0
        .lock()
        .unwrap()
        .contains(&"/tasks/exit".to_string()));
    // Killing a finished process is NOT_FOUND, as containerd expects.
    let r = h.svc.kill(
        &ctx(),
        api::KillRequest {
            id: "c1".into(),
            signal: 9,
            ..Default::default()
        },
    );
    assert_eq!(code(r), Code::NOT_FOUND);
    // Delete force-deletes the runc container and answers with the exit.
    let d = h
        .svc
        .delete(
            &ctx(),
            api::DeleteRequest {
                id: "c1".into(),
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(d.exit_status, 137);
    assert_eq!(
        h.rt.verbs().last().unwrap(),
        &s(&["delete", "--force", "c1"])
    );
    assert_eq!(
        code(h.svc.state(
            &ctx(),
            api::StateRequest {
                id: "c1".into(),
                ..Default::default()
            }
        )),
        Code::NOT_FOUND
    );
}

#[test]
fn kill_pause_resume_and_pids_are_runc_verbs() {
    let h = harness();
    h.create("");
    h.svc
        .start(
            &ctx(),
            api::StartRequest {
                id: "c1".into(),
                ..Default::default()
            },
        )
        .unwrap();
    h.svc
        .kill(
            &ctx(),
            api::KillRequest {
                id: "c1".into(),
                signal: 15,
                all: true,
                ..Default::default()
            },
        )
        .unwrap();
    h.svc
        .pause(
            &ctx(),
            api::PauseRequest {
                id: "c1".into(),
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(h.state("").status.enum_value(), Ok(Status::PAUSED));
    h.svc
        .resume(
            &ctx(),
            api::ResumeRequest {
                id: "c1".into(),
                ..Default::default()
            },
        )
        .unwrap();
    let pids = h
        .svc
        .pids(
            &ctx(),
            api::PidsRequest {
                id: "c1".into(),
                ..Default::default()
            },
        )
        .unwrap();
    let v = h.rt.verbs();
    assert_eq!(v[2], s(&["kill", "--all", "c1", "15"]));
    assert_eq!(v[3], s(&["pause", "c1"]));
    assert_eq!(v[4], s(&["resume", "c1"]));
    assert_eq!(v[5], s(&["ps", "--format", "json", "c1"]));
    assert_eq!(
        pids.processes.iter().map(|p| p.pid).collect::<Vec<_>>(),
        [4242, 5000]
    );
    // A running task cannot be deleted.
    let r = h.svc.delete(
        &ctx(),
        api::DeleteRequest {
            id: "c1".into(),
            ..Default::default()
        },
    );
    assert_eq!(code(r), Code::FAILED_PRECONDITION);
}

#[test]
fn an_exec_is_added_then_started_with_its_spec_and_its_own_pid() {
    let h = harness();
    h.create("");
    h.svc
        .start(
            &ctx(),
            api::StartRequest {
                id: "c1".into(),
                ..Default::default()
            },
        )
        .unwrap();
    let spec = Any {
        type_url: "types.containerd.io/opencontainers/runtime-spec/1/Process".into(),
        value: br#"{"args":["true"],"cwd":"/"}"#.to_vec(),
        ..Default::default()
    };
    let req = api::ExecProcessRequest {
        id: "c1".into(),
        exec_id: "e1".into(),
        spec: MessageField::some(spec),
        ..Default::default()
    };
    h.svc.exec(&ctx(), req.clone()).unwrap();
    assert_eq!(code(h.svc.exec(&ctx(), req)), Code::ALREADY_EXISTS);
    let started = h
        .svc
        .start(
            &ctx(),
            api::StartRequest {
                id: "c1".into(),
                exec_id: "e1".into(),
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(started.pid, 5000);
    let b = h.bundle();
    assert_eq!(
        h.rt.verbs()[2],
        s(&[
            "exec",
            "--process",
            &format!("{b}/e1-process.json"),
            "--detach",
            "--pid-file",
            &format!("{b}/e1.pid"),
            "c1"
        ])
    );
    assert_eq!(h.state("e1").status.enum_value(), Ok(Status::RUNNING));
    assert!(h.svc.exit_handler()(5000, 0));
    assert_eq!(h.state("e1").status.enum_value(), Ok(Status::STOPPED));
    assert_eq!(
        h.state("").status.enum_value(),
        Ok(Status::RUNNING),
        "the init is untouched"
    );
    h.svc
        .delete(
            &ctx(),
            api::DeleteRequest {
                id: "c1".into(),
                exec_id: "e1".into(),
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(
        code(h.svc.state(
            &ctx(),
            api::StateRequest {
                id: "c1".into(),
                exec_id: "e1".into(),
                ..Default::default()
            }
        )),
        Code::NOT_FOUND
    );
}

#[test]
fn requests_for_unknown_tasks_are_not_found_and_duplicates_already_exist() {
    let h = harness();
    assert_eq!(
        code(h.svc.start(
            &ctx(),
            api::StartRequest {
                id: "nope".into(),
                ..Default::default()
            }
        )),
        Code::NOT_FOUND
    );
    h.create("");
    let dup = h.svc.create(
        &ctx(),
        api::CreateTaskRequest {
            id: "c1".into(),
            bundle: h.bundle(),
            ..Default::default()
        },
    );
    assert_eq!(code(dup), Code::ALREADY_EXISTS);
}

#[test]
fn a_failed_create_leaves_no_task_behind() {
    let h = harness();
    h.rt.fail
        .lock()
        .unwrap()
        .insert("create".into(), "container_linux.go: bad config".into());
    let r = h.svc.create(
        &ctx(),
        api::CreateTaskRequest {
            id: "c1".into(),
            bundle: h.bundle(),
            ..Default::default()
        },
    );
    assert_eq!(code(r), Code::UNKNOWN);
    assert_eq!(
        code(h.svc.state(
            &ctx(),
            api::StateRequest {
                id: "c1".into(),
                ..Default::default()
            }
        )),
        Code::NOT_FOUND
    );
}

#[test]
fn shutdown_ends_the_shim_only_when_it_serves_no_task() {
    let h = harness();
    h.create("");
    h.svc
        .shutdown(&ctx(), api::ShutdownRequest::default())
        .unwrap();
    let connect = h
        .svc
        .connect(
            &ctx(),
            api::ConnectRequest {
                id: "c1".into(),
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(connect.task_pid, 4242);
    assert_eq!(connect.shim_pid, std::process::id());
    h.svc
        .delete(
            &ctx(),
            api::DeleteRequest {
                id: "c1".into(),
                ..Default::default()
            },
        )
        .unwrap();
    h.svc
        .shutdown(&ctx(), api::ShutdownRequest::default())
        .unwrap();
    // ExitSignal::wait returns at once only if shutdown signalled it.
    h.exit.wait();
}
