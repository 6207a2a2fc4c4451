//! The `containerd_shim::Shim` glue: the `start` and `delete` actions containerd runs, and
//! the Task service with its reaper thread.

use std::path::PathBuf;
use std::sync::Arc;

use containerd_shim::monitor::{monitor_subscribe, Subject, Topic};
use containerd_shim::publisher::RemotePublisher;
use containerd_shim::{api, Config, DeleteResponse, ExitSignal, Flags, StartOpts};

use crate::events::Forwarder;
use crate::exits::Exits;
use crate::options::Globals;
use crate::runtime::{Runtime, StasisRunc};
use crate::service::TaskService;

/// Annotation the CRI plugin sets to group a pod's containers in one shim.
const SANDBOX_ANNOTATION: &str = "io.kubernetes.cri.sandbox-id";

pub struct StasisShim {
    namespace: String,
    id: String,
    exit: Arc<ExitSignal>,
}

impl containerd_shim::Shim for StasisShim {
    type T = TaskService;

    fn new(_runtime_id: &str, args: &Flags, _config: &mut Config) -> Self {
        StasisShim {
            namespace: args.namespace.clone(),
            id: args.id.clone(),
            exit: Arc::new(ExitSignal::default()),
        }
    }

    fn start_shim(&mut self, opts: StartOpts) -> containerd_shim::Result<String> {
        let grouping = std::fs::read_to_string("config.json")
            .ok()
            .and_then(|s| serde_json::from_str::<serde_json::Value>(&s).ok())
            .and_then(|v| {
                v.get("annotations")?
                    .get(SANDBOX_ANNOTATION)?
                    .as_str()
                    .map(str::to_string)
            })
            .unwrap_or_else(|| opts.id.clone());
        let (_pid, address) = containerd_shim::spawn(opts, &grouping, Vec::new())?;
        containerd_shim::synchronous::util::write_address(&address)?;
        Ok(address)
    }

    /// containerd's cleanup after a shim died: force-delete the runc container (cwd is
    /// the bundle) and report it killed.
    fn delete_shim(&mut self) -> containerd_shim::Result<DeleteResponse> {
        let bundle = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
        let opts = containerd_shim::synchronous::util::read_options(&bundle).unwrap_or_default();
        let globals = Globals::new(&opts, &self.namespace, &bundle);
        let runtime = StasisRunc::new(StasisRunc::locate(), Arc::new(Exits::default()));
        let mut args = globals.args();
        args.extend(["delete".into(), "--force".into(), self.id.clone()]);
        if let Err(f) = runtime.run(&args, None) {
            log::warn!("delete {}: {:?}", self.id, f);
        }
        let rootfs = bundle.join("rootfs");
        let _ = containerd_shim::mount::umount_recursive(rootfs.to_str(), libc::MNT_DETACH);
        Ok(DeleteResponse {
            exit_status: 128 + libc::SIGKILL as u32,
            exited_at: Some(containerd_shim::util::timestamp()?).into(),
            ..Default::default()
        })
    }

    fn wait(&mut self) {
        self.exit.wait();
    }

    fn create_task_service(&self, publisher: RemotePublisher) -> TaskService {
        let exits = Arc::new(Exits::default());
        // Subscribed before the first child is spawned: no exit is missed.
        let subscription = monitor_subscribe(Topic::All).expect("subscribe to exits");
        let runtime = Arc::new(StasisRunc::new(StasisRunc::locate(), Arc::clone(&exits)));
        let events = Arc::new(Forwarder::start(publisher, self.namespace.clone()));
        let service = TaskService::new(
            self.namespace.clone(),
            runtime,
            events,
            Arc::clone(&exits),
            Arc::clone(&self.exit),
        );
        let on_exit = service.exit_handler();
        std::thread::Builder::new()
            .name("exits".into())
            .spawn(move || {
                for event in subscription.rx.iter() {
                    let Subject::Pid(pid) = event.subject else {
                        continue;
                    };
                    if !exits.record(pid, event.exit_code) && on_exit(pid, event.exit_code) {
                        exits.take_recent(pid);
                    }
                }
            })
            .expect("spawn the exits thread");
        service
    }
}

/// `api` re-exported for the binary's users.
pub use api::Status;
