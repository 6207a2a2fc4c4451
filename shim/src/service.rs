//! The Task service: containerd's task API v2 answered with `stasis-runc` command lines,
//! following containerd's Go runc shim (init and exec processes, events, create from a
//! checkpoint restored at Start).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use containerd_shim::api::{self, Status};
use containerd_shim::protos::events::task::{
    TaskCreate, TaskDelete, TaskExecAdded, TaskExecStarted, TaskExit, TaskIO, TaskPaused,
    TaskResumed, TaskStart,
};
use containerd_shim::protos::protobuf::well_known_types::any::Any;
use containerd_shim::protos::protobuf::{MessageDyn, MessageField};
use containerd_shim::protos::shim::oci::ProcessDetails;
use containerd_shim::protos::types::task::ProcessInfo;
use containerd_shim::{ExitSignal, Task, TtrpcContext, TtrpcResult};

use crate::events::EventSink;
use crate::exits::Exits;
use crate::options::{self, Globals, RestorePlan};
use crate::process::{Process, Snapshot};
use crate::runtime::{self, ChildStdio, Runtime};
use crate::stdio::{self, ConsoleSocket, ProcessIo, StdioPaths};
use crate::ShimError;

/// One container: its bundle, how the runtime is called for it, its init and execs.
pub struct Container {
    pub id: String,
    pub bundle: PathBuf,
    pub globals: Globals,
    /// Rootfs mounts the shim made (unmounted at Delete).
    pub rootfs_mounted: bool,
    pub no_pivot: bool,
    /// Created from a checkpoint: restored at Start.
    pub restore: Option<RestorePlan>,
    pub init: Arc<Process>,
    pub execs: Mutex<HashMap<String, Arc<Process>>>,
}

impl Container {
    fn execs(&self) -> MutexGuard<'_, HashMap<String, Arc<Process>>> {
        self.execs.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn process(&self, exec_id: &str) -> Result<Arc<Process>> {
        if exec_id.is_empty() {
            return Ok(Arc::clone(&self.init));
        }
        self.execs()
            .get(exec_id)
            .cloned()
            .ok_or_else(|| ShimError::NotFound {
                what: "exec",
                id: exec_id.to_string(),
            })
    }

    fn pid_file(&self, exec_id: &str) -> PathBuf {
        if exec_id.is_empty() {
            self.bundle.join("init.pid")
        } else {
            self.bundle.join(format!("{}.pid", safe_name(exec_id)))
        }
    }
}

/// An exec id as a file name.
fn safe_name(id: &str) -> String {
    id.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The Task service.
pub struct TaskService {
    namespace: String,
    runtime: Arc<dyn Runtime>,
    events: Arc<dyn EventSink>,
    exits: Arc<Exits>,
    exit: Arc<ExitSignal>,
    containers: Arc<Mutex<HashMap<String, Arc<Container>>>>,
}

type Result<T> = std::result::Result<T, ShimError>;

impl TaskService {
    pub fn new(
        namespace: String,
        runtime: Arc<dyn Runtime>,
        events: Arc<dyn EventSink>,
        exits: Arc<Exits>,
        exit: Arc<ExitSignal>,
    ) -> TaskService {
        TaskService {
            namespace,
            runtime,
            events,
            exits,
            exit,
            containers: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    fn containers(&self) -> MutexGuard<'_, HashMap<String, Arc<Container>>> {
        self.containers.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn container(&self, id: &str) -> Result<Arc<Container>> {
        self.containers()
            .get(id)
            .cloned()
            .ok_or_else(|| ShimError::NotFound {
                what: "container",
                id: id.to_string(),
            })
    }

    fn publish(&self, topic: &str, event: Box<dyn MessageDyn>) {
        self.events.send(topic, event);
    }

    /// Runs `stasis-runc <globals> <verb> <args…>`.
    fn run(
        &self,
        c: &Container,
        verb: &str,
        args: Vec<String>,
        stdio: Option<ChildStdio>,
    ) -> Result<Vec<u8>> {
        let mut full = c.globals.args();
        full.push(verb.to_string());
        full.extend(args);
        self.runtime
            .run(&full, stdio)
            .map_err(|f| runtime::failure(self.runtime.as_ref(), verb, f, &c.globals.log))
    }

    fn read_pid(path: &Path) -> Result<i32> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ShimError::io(format!("read pid file {}", path.display()), e))?;
        text.trim().parse().map_err(|_| {
            ShimError::io(
                format!("pid file {}", path.display()),
                std::io::Error::other(format!("not a pid: {text:?}")),
            )
        })
    }

    /// Runs a runtime command that starts a process (create, restore, exec), with the
    /// process's stdio or a console socket; returns its pid and the shim's ends of its io.
    fn start_process(
        &self,
        c: &Container,
        p: &Process,
        verb: &str,
        mut args: Vec<String>,
    ) -> Result<(i32, ProcessIo)> {
        let pid_file = c.pid_file(&p.exec_id);
        let _ = std::fs::remove_file(&pid_file);
        let (console, child, io) = if p.stdio.terminal {
            let socket = ConsoleSocket::new()?;
            args.push("--console-socket".into());
            args.push(socket.path().display().to_string());
            (Some(socket), None, None)
        } else {
            let (child, io) = stdio::open_pipes(&p.stdio)?;
            (None, Some(child), Some(io))
        };
        args.push(c.id.clone());
        self.run(c, verb, args, Some(child.unwrap_or_default()))?;
        let pid = Self::read_pid(&pid_file)?;
        let io = match (console, io) {
            (Some(socket), _) => stdio::attach_console(socket.receive()?, &p.stdio)?,
            (None, Some(io)) => io,
            (None, None) => ProcessIo::default(),
        };
        Ok((pid, io))
    }

    /// What the reaper thread calls with every exit nobody was waiting for: marks the
    /// process stopped and publishes its exit. Returns true if it was one of ours.
    pub fn exit_handler(&self) -> impl Fn(i32, i32) -> bool + Send + 'static {
        let containers = Arc::clone(&self.containers);
        let events = Arc::clone(&self.events);
        move |pid, status| {
            let all: Vec<Arc<Container>> = containers
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .values()
                .cloned()
                .collect();
            for c in all {
                let mut procs = vec![Arc::clone(&c.init)];
                procs.extend(c.execs().values().cloned());
                for p in procs {
                    if p.pid() == pid && p.status() != Status::STOPPED {
                        exited(events.as_ref(), &c, &p, status);
                        return true;
                    }
                }
            }
            false
        }
    }

    fn exited(&self, c: &Container, p: &Process, status: i32) {
        exited(self.events.as_ref(), c, p, status);
    }

    /// A process whose pid just became known may have exited already.
    fn check_early_exit(&self, c: &Container, p: &Process, pid: i32) {
        if let Some(status) = self.exits.take_recent(pid) {
            self.exited(c, p, status);
        }
    }

    fn do_create(&self, req: api::CreateTaskRequest) -> Result<api::CreateTaskResponse> {
        if self.containers().contains_key(&req.id) {
            return Err(ShimError::AlreadyExists {
                what: "container",
                id: req.id,
            });
        }
        let opts = options::runc_options(req.options.as_ref())?;
        let bundle = PathBuf::from(&req.bundle);
        let rootfs = bundle.join("rootfs");
        let mut mounted = false;
        for m in &req.rootfs {
            std::fs::create_dir_all(&rootfs)
                .map_err(|e| ShimError::io(format!("create {}", rootfs.display()), e))?;
            containerd_shim::mount::mount_rootfs(
                Some(m.type_.as_str()).filter(|t| !t.is_empty()),
                Some(m.source.as_str()).filter(|s| !s.is_empty()),
                &m.options,
                &rootfs,
            )
            .map_err(|e| ShimError::shim(format!("mount the rootfs at {}", rootfs.display()), e))?;
            mounted = true;
        }
        let stdio = StdioPaths {
            stdin: req.stdin.clone(),
            stdout: req.stdout.clone(),
            stderr: req.stderr.clone(),
            terminal: req.terminal,
        };
        let restore = (!req.checkpoint.is_empty())
            .then(|| RestorePlan::new(&req.checkpoint, &req.parent_checkpoint, &opts, &bundle));
        let c = Arc::new(Container {
            id: req.id.clone(),
            globals: Globals::new(&opts, &self.namespace, &bundle),
            bundle: bundle.clone(),
            rootfs_mounted: mounted,
            no_pivot: opts.no_pivot_root,
            restore,
            init: Arc::new(Process::new(String::new(), stdio.clone(), Vec::new())),
            execs: Mutex::new(HashMap::new()),
        });
        let mut pid = 0;
        if c.restore.is_none() {
            let mut args = vec![
                "--bundle".to_string(),
                bundle.display().to_string(),
                "--pid-file".to_string(),
                c.pid_file("").display().to_string(),
            ];
            if c.no_pivot {
                args.push("--no-pivot".into());
            }
            match self.start_process(&c, &c.init, "create", args) {
                Ok((p, io)) => {
                    pid = p;
                    c.init.set_created(p, io);
                }
                Err(e) => {
                    unmount(&c);
                    return Err(e);
                }
            }
        }
        if let Err(e) = containerd_shim::synchronous::util::write_options(&req.bundle, &opts) {
            log::warn!("write options.json in {}: {e}", req.bundle);
        }
        self.containers().insert(c.id.clone(), Arc::clone(&c));
        if pid != 0 {
            self.check_early_exit(&c, &c.init, pid);
        }
        self.publish(
            "/tasks/create",
            Box::new(TaskCreate {
                container_id: req.id.clone(),
                bundle: req.bundle.clone(),
                rootfs: req.rootfs.clone(),
                io: MessageField::some(TaskIO {
                    stdin: req.stdin,
                    stdout: req.stdout,
                    stderr: req.stderr,
                    terminal: req.terminal,
                    ..Default::default()
                }),
                checkpoint: req.checkpoint,
                pid: pid as u32,
                ..Default::default()
            }),
        );
        Ok(api::CreateTaskResponse {
            pid: pid as u32,
            ..Default::default()
        })
    }

    fn do_start(&self, req: api::StartRequest) -> Result<api::StartResponse> {
        let c = self.container(&req.id)?;
        let p = c.process(&req.exec_id)?;
        if p.status() != Status::CREATED {
            return Err(ShimError::FailedPrecondition(format!(
                "process {} is {:?}, not created",
                if req.exec_id.is_empty() {
                    &req.id
                } else {
                    &req.exec_id
                },
                p.status()
            )));
        }
        let pid = if !req.exec_id.is_empty() {
            let spec = c
                .bundle
                .join(format!("{}-process.json", safe_name(&req.exec_id)));
            std::fs::write(&spec, &p.spec)
                .map_err(|e| ShimError::io(format!("write {}", spec.display()), e))?;
            let args = vec![
                "--process".to_string(),
                spec.display().to_string(),
                "--detach".to_string(),
                "--pid-file".to_string(),
                c.pid_file(&req.exec_id).display().to_string(),
            ];
            let result = self.start_process(&c, &p, "exec", args);
            let _ = std::fs::remove_file(&spec);
            let (pid, io) = result?;
            p.set_io(io);
            p.set_running(pid);
            self.publish(
                "/tasks/exec-started",
                Box::new(TaskExecStarted {
                    container_id: c.id.clone(),
                    exec_id: req.exec_id.clone(),
                    pid: pid as u32,
                    ..Default::default()
                }),
            );
            pid
        } else if let Some(plan) = &c.restore {
            let args = plan.args(&c.bundle, &c.pid_file(""), c.no_pivot);
            let (pid, io) = self.start_process(&c, &p, "restore", args)?;
            p.set_io(io);
            p.set_running(pid);
            self.publish_start(&c, pid);
            pid
        } else {
            self.run(&c, "start", vec![c.id.clone()], None)?;
            let pid = p.pid();
            p.set_running(pid);
            self.publish_start(&c, pid);
            pid
        };
        self.check_early_exit(&c, &p, pid);
        Ok(api::StartResponse {
            pid: pid as u32,
            ..Default::default()
        })
    }

    fn publish_start(&self, c: &Container, pid: i32) {
        self.publish(
            "/tasks/start",
            Box::new(TaskStart {
                container_id: c.id.clone(),
                pid: pid as u32,
                ..Default::default()
            }),
        );
    }

    fn do_delete(&self, req: api::DeleteRequest) -> Result<api::DeleteResponse> {
        let c = self.container(&req.id)?;
        let p = c.process(&req.exec_id)?;
        let snap = p.snapshot();
        if matches!(snap.status, Status::RUNNING | Status::PAUSED) {
            return Err(ShimError::FailedPrecondition(format!(
                "cannot delete {} while it is {:?}",
                if req.exec_id.is_empty() {
                    &req.id
                } else {
                    &req.exec_id
                },
                snap.status
            )));
        }
        if !req.exec_id.is_empty() {
            c.execs().remove(&req.exec_id);
        } else {
            // A task created from a checkpoint and never started has no runc container.
            let never_created = c.restore.is_some() && snap.pid == 0;
            if !never_created {
                if let Err(e) = self.run(&c, "delete", vec!["--force".into(), c.id.clone()], None) {
                    if !e.to_string().contains("does not exist") {
                        return Err(e);
                    }
                }
            }
            unmount(&c);
            self.containers().remove(&req.id);
            self.publish(
                "/tasks/delete",
                Box::new(TaskDelete {
                    container_id: c.id.clone(),
                    pid: snap.pid as u32,
                    exit_status: snap.exit_status,
                    exited_at: MessageField::from_option(snap.exited_at.clone()),
                    id: c.id.clone(),
                    ..Default::default()
                }),
            );
        }
        Ok(api::DeleteResponse {
            pid: snap.pid as u32,
            exit_status: snap.exit_status,
            exited_at: MessageField::from_option(snap.exited_at),
            ..Default::default()
        })
    }

    fn do_kill(&self, req: api::KillRequest) -> Result<()> {
        let c = self.container(&req.id)?;
        let p = c.process(&req.exec_id)?;
        let snap = p.snapshot();
        if snap.status == Status::STOPPED || (snap.pid == 0 && snap.status == Status::CREATED) {
            return Err(ShimError::NotFound {
                what: "process",
                id: format!("{} (already finished)", snap.pid),
            });
        }
        if req.exec_id.is_empty() {
            let mut args = Vec::new();
            if req.all {
                args.push("--all".to_string());
            }
            args.push(c.id.clone());
            args.push(req.signal.to_string());
            self.run(&c, "kill", args, None)?;
        } else {
            let sig = nix::sys::signal::Signal::try_from(req.signal as i32)
                .map_err(|_| ShimError::InvalidArgument(format!("signal {}", req.signal)))?;
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(snap.pid), sig)
                .map_err(|e| ShimError::io(format!("kill exec {}", req.exec_id), e.into()))?;
        }
        Ok(())
    }

    fn do_exec(&self, req: api::ExecProcessRequest) -> Result<()> {
        let c = self.container(&req.id)?;
        if c.init.status() == Status::STOPPED {
            return Err(ShimError::FailedPrecondition(format!(
                "container {} is stopped",
                req.id
            )));
        }
        let mut execs = c.execs();
        if execs.contains_key(&req.exec_id) {
            return Err(ShimError::AlreadyExists {
                what: "exec",
                id: req.exec_id,
            });
        }
        let spec = req
            .spec
            .as_ref()
            .map(|a| a.value.clone())
            .unwrap_or_default();
        if spec.is_empty() {
            return Err(ShimError::InvalidArgument(
                "exec without a process spec".into(),
            ));
        }
        let stdio = StdioPaths {
            stdin: req.stdin,
            stdout: req.stdout,
            stderr: req.stderr,
            terminal: req.terminal,
        };
        execs.insert(
            req.exec_id.clone(),
            Arc::new(Process::new(req.exec_id.clone(), stdio, spec)),
        );
        drop(execs);
        self.publish(
            "/tasks/exec-added",
            Box::new(TaskExecAdded {
                container_id: c.id.clone(),
                exec_id: req.exec_id,
                ..Default::default()
            }),
        );
        Ok(())
    }

    fn do_pids(&self, req: api::PidsRequest) -> Result<api::PidsResponse> {
        let c = self.container(&req.id)?;
        let out = self.run(
            &c,
            "ps",
            vec!["--format".into(), "json".into(), c.id.clone()],
            None,
        )?;
        let pids: Vec<i32> = serde_json::from_slice(&out).map_err(|e| ShimError::Runtime {
            command: format!("{} ps", self.runtime.name()),
            message: format!("not a JSON list of pids: {e}"),
        })?;
        let execs: Vec<(i32, String)> = c
            .execs()
            .values()
            .map(|p| (p.pid(), p.exec_id.clone()))
            .collect();
        let processes = pids
            .into_iter()
            .map(|pid| {
                let mut info = ProcessInfo {
                    pid: pid as u32,
                    ..Default::default()
                };
                if let Some((_, exec_id)) = execs.iter().find(|(p, _)| *p == pid) {
                    let details = ProcessDetails {
                        exec_id: exec_id.clone(),
                        ..Default::default()
                    };
                    if let Ok(any) = containerd_shim::util::convert_to_any(Box::new(details)) {
                        info.info = MessageField::some(any);
                    }
                }
                info
            })
            .collect();
        Ok(api::PidsResponse {
            processes,
            ..Default::default()
        })
    }

    fn do_pause(&self, id: &str, pause: bool) -> Result<()> {
        let c = self.container(id)?;
        if c.init.status() == Status::STOPPED {
            return Err(ShimError::FailedPrecondition(format!(
                "container {id} is stopped"
            )));
        }
        let verb = if pause { "pause" } else { "resume" };
        self.run(&c, verb, vec![c.id.clone()], None)?;
        c.init.set_paused(pause);
        if pause {
            self.publish(
                "/tasks/paused",
                Box::new(TaskPaused {
                    container_id: c.id.clone(),
                    ..Default::default()
                }),
            );
        } else {
            self.publish(
                "/tasks/resumed",
                Box::new(TaskResumed {
                    container_id: c.id.clone(),
                    ..Default::default()
                }),
            );
        }
        Ok(())
    }

    fn do_checkpoint(&self, req: api::CheckpointTaskRequest) -> Result<()> {
        let c = self.container(&req.id)?;
        if !matches!(c.init.status(), Status::RUNNING | Status::PAUSED) {
            return Err(ShimError::FailedPrecondition(format!(
                "container {} is not running",
                req.id
            )));
        }
        let opts = options::checkpoint_options(req.options.as_ref())?;
        let (mut args, image, work) = options::checkpoint_args(&opts, &req.path, &c.bundle)?;
        for dir in [&image, &work] {
            std::fs::create_dir_all(dir)
                .map_err(|e| ShimError::io(format!("create {}", dir.display()), e))?;
        }
        args.push(c.id.clone());
        self.run(&c, "checkpoint", args, None).inspect_err(|_| {
            // containerd's Go shim leaves the engine's log beside the bundle for the user.
            let _ = std::fs::copy(work.join("dump.log"), c.bundle.join("criu-dump.log"));
        })?;
        Ok(())
    }

    fn do_update(&self, req: api::UpdateTaskRequest) -> Result<()> {
        let c = self.container(&req.id)?;
        let resources = req
            .resources
            .as_ref()
            .map(|a| a.value.clone())
            .unwrap_or_default();
        let path = c.bundle.join("stasis-update-resources.json");
        std::fs::write(&path, &resources)
            .map_err(|e| ShimError::io(format!("write {}", path.display()), e))?;
        let result = self.run(
            &c,
            "update",
            vec![
                "--resources".into(),
                path.display().to_string(),
                c.id.clone(),
            ],
            None,
        );
        let _ = std::fs::remove_file(&path);
        result.map(|_| ())
    }

    fn do_stats(&self, req: api::StatsRequest) -> Result<api::StatsResponse> {
        let c = self.container(&req.id)?;
        let pid = c.init.pid();
        if pid <= 0 || c.init.status() == Status::STOPPED {
            return Err(ShimError::FailedPrecondition(format!(
                "container {} is not running",
                req.id
            )));
        }
        let cgroup = containerd_shim::cgroup::get_cgroup(pid as u32)
            .map_err(|e| ShimError::shim(format!("cgroup of pid {pid}"), e))?;
        let metrics = containerd_shim::cgroup::collect_metrics(&cgroup)
            .map_err(|e| ShimError::shim(format!("cgroup metrics of pid {pid}"), e))?;
        let any: Any = containerd_shim::util::convert_to_any(Box::new(metrics))
            .map_err(|e| ShimError::shim("encode metrics", e))?;
        Ok(api::StatsResponse {
            stats: MessageField::some(any),
            ..Default::default()
        })
    }

    fn state_of(&self, req: &api::StateRequest) -> Result<api::StateResponse> {
        let c = self.container(&req.id)?;
        let p = c.process(&req.exec_id)?;
        let Snapshot {
            pid,
            status,
            exit_status,
            exited_at,
        } = p.snapshot();
        Ok(api::StateResponse {
            id: if req.exec_id.is_empty() {
                c.id.clone()
            } else {
                req.exec_id.clone()
            },
            bundle: c.bundle.display().to_string(),
            pid: pid.max(0) as u32,
            status: status.into(),
            stdin: p.stdio.stdin.clone(),
            stdout: p.stdio.stdout.clone(),
            stderr: p.stdio.stderr.clone(),
            terminal: p.stdio.terminal,
            exit_status,
            exited_at: MessageField::from_option(exited_at),
            exec_id: req.exec_id.clone(),
            ..Default::default()
        })
    }
}

fn exited(events: &dyn EventSink, c: &Container, p: &Process, status: i32) {
    let Some(snap) = p.set_exited(status) else {
        return;
    };
    events.send(
        "/tasks/exit",
        Box::new(TaskExit {
            container_id: c.id.clone(),
            id: if p.exec_id.is_empty() {
                c.id.clone()
            } else {
                p.exec_id.clone()
            },
            pid: snap.pid as u32,
            exit_status: snap.exit_status,
            exited_at: MessageField::from_option(snap.exited_at),
            ..Default::default()
        }),
    );
}

fn unmount(c: &Container) {
    if !c.rootfs_mounted {
        return;
    }
    let rootfs = c.bundle.join("rootfs");
    if let Err(e) = containerd_shim::mount::umount_recursive(rootfs.to_str(), libc::MNT_DETACH) {
        log::warn!("unmount {}: {e}", rootfs.display());
    }
}

fn ttrpc<T>(r: Result<T>) -> TtrpcResult<T> {
    r.map_err(|e| {
        log::info!("request failed: {e}");
        e.into()
    })
}

impl Task for TaskService {
    fn state(&self, _: &TtrpcContext, req: api::StateRequest) -> TtrpcResult<api::StateResponse> {
        ttrpc(self.state_of(&req))
    }

    fn create(
        &self,
        _: &TtrpcContext,
        req: api::CreateTaskRequest,
    ) -> TtrpcResult<api::CreateTaskResponse> {
        ttrpc(self.do_create(req))
    }

    fn start(&self, _: &TtrpcContext, req: api::StartRequest) -> TtrpcResult<api::StartResponse> {
        ttrpc(self.do_start(req))
    }

    fn delete(
        &self,
        _: &TtrpcContext,
        req: api::DeleteRequest,
    ) -> TtrpcResult<api::DeleteResponse> {
        ttrpc(self.do_delete(req))
    }

    fn pids(&self, _: &TtrpcContext, req: api::PidsRequest) -> TtrpcResult<api::PidsResponse> {
        ttrpc(self.do_pids(req))
    }

    fn pause(&self, _: &TtrpcContext, req: api::PauseRequest) -> TtrpcResult<api::Empty> {
        ttrpc(self.do_pause(&req.id, true).map(|_| api::Empty::new()))
    }

    fn resume(&self, _: &TtrpcContext, req: api::ResumeRequest) -> TtrpcResult<api::Empty> {
        ttrpc(self.do_pause(&req.id, false).map(|_| api::Empty::new()))
    }

    fn checkpoint(
        &self,
        _: &TtrpcContext,
        req: api::CheckpointTaskRequest,
    ) -> TtrpcResult<api::Empty> {
        ttrpc(self.do_checkpoint(req).map(|_| api::Empty::new()))
    }

    fn kill(&self, _: &TtrpcContext, req: api::KillRequest) -> TtrpcResult<api::Empty> {
        ttrpc(self.do_kill(req).map(|_| api::Empty::new()))
    }

    fn exec(&self, _: &TtrpcContext, req: api::ExecProcessRequest) -> TtrpcResult<api::Empty> {
        ttrpc(self.do_exec(req).map(|_| api::Empty::new()))
    }

    fn resize_pty(&self, _: &TtrpcContext, req: api::ResizePtyRequest) -> TtrpcResult<api::Empty> {
        ttrpc(
            (|| {
                let p = self.container(&req.id)?.process(&req.exec_id)?;
                p.with_io(|io| io.resize(req.width, req.height))
                    .unwrap_or_else(|| {
                        Err(ShimError::FailedPrecondition(
                            "the process has not started".into(),
                        ))
                    })
            })()
            .map(|_| api::Empty::new()),
        )
    }

    fn close_io(&self, _: &TtrpcContext, req: api::CloseIORequest) -> TtrpcResult<api::Empty> {
        ttrpc((|| {
            let p = self.container(&req.id)?.process(&req.exec_id)?;
            if req.stdin {
                p.with_io(|io| io.close_stdin());
            }
            Ok(api::Empty::new())
        })())
    }

    fn update(&self, _: &TtrpcContext, req: api::UpdateTaskRequest) -> TtrpcResult<api::Empty> {
        ttrpc(self.do_update(req).map(|_| api::Empty::new()))
    }

    fn wait(&self, _: &TtrpcContext, req: api::WaitRequest) -> TtrpcResult<api::WaitResponse> {
        ttrpc((|| {
            let p = self.container(&req.id)?.process(&req.exec_id)?;
            let snap = p.wait();
            Ok(api::WaitResponse {
                exit_status: snap.exit_status,
                exited_at: MessageField::from_option(snap.exited_at),
                ..Default::default()
            })
        })())
    }

    fn stats(&self, _: &TtrpcContext, req: api::StatsRequest) -> TtrpcResult<api::StatsResponse> {
        ttrpc(self.do_stats(req))
    }

    fn connect(
        &self,
        _: &TtrpcContext,
        req: api::ConnectRequest,
    ) -> TtrpcResult<api::ConnectResponse> {
        let task_pid = self.container(&req.id).map(|c| c.init.pid()).unwrap_or(0);
        Ok(api::ConnectResponse {
            shim_pid: std::process::id(),
            task_pid: task_pid.max(0) as u32,
            version: format!("stasis {}", env!("CARGO_PKG_VERSION")),
            ..Default::default()
        })
    }

    fn shutdown(&self, _: &TtrpcContext, _: api::ShutdownRequest) -> TtrpcResult<api::Empty> {
        if self.containers().is_empty() {
            self.exit.signal();
        }
        Ok(api::Empty::new())
    }
}
