//! DUMP, and PRE_DUMP / SINGLE_PRE_DUMP (refused: they need memory change tracking).

use super::conn::Conn;
use super::error::RpcError;
use super::features::Kernel;
use super::fields::{self, NO_MEM_TRACK};
use super::log as swlog;
use super::notify::{Notifier, Script};
use super::response;
use super::setup::{self, Purpose};
use stasis_checkpoint::{DumpHook, DumpOptions, DumpStage};
use stasis_images::pb::rpc::{CriuOpts, CriuResp};
use std::sync::Arc;

/// DUMP: `pre-dump` → `query-ext-files` → the dump, with `post-dump` while the task is
/// still frozen → the response. Any failure leaves the task running.
pub fn dump(conn: &Arc<Conn>, opts: &CriuOpts) -> Result<CriuResp, RpcError> {
    let setup = setup::prepare(conn, opts, Purpose::Operation)?;
    let pid = setup.pid.ok_or_else(|| {
        RpcError::BadRequest(
            "DUMP without pid asks to dump the client itself (self-dump), which stasis does not support yet".into(),
        )
    })?;
    let notifier = Notifier::new(conn.clone(), setup.notify);
    notifier.send(Script::PreDump, None)?;
    // CRIU announces the lock for a tree with a network namespace of its own.
    let ns = |p: &str| std::fs::read_link(format!("/proc/{p}/ns/net")).ok();
    if ns(&pid.to_string()).is_some_and(|n| Some(n) != ns("self")) {
        notifier.send(Script::NetworkLock, None)?;
    }
    if let Some(more) = notifier.send(Script::QueryExtFiles, None)? {
        if !more.external.is_empty() {
            return Err(RpcError::Unsupported {
                fields: vec!["external (returned by query-ext-files)"],
                containers: true,
            });
        }
    }
    let at_stage = notifier.clone();
    let hook = DumpHook::new(move |stage| match stage {
        DumpStage::ImagesWritten => at_stage.hook(&[(Script::PostDump, None)]),
        _ => Ok(()),
    });
    let engine = DumpOptions {
        pid,
        images_dir: setup.images.path.clone(),
        work_dir: setup.work.path.clone(),
        leave_running: setup.leave_running,
        shell_job: setup.shell_job,
        orphan_pts_master: setup.orphan_pts_master,
        tcp_established: setup.tcp_established,
        ghost_limit: None,
        file_locks: setup.file_locks,
        timeout: setup.timeout,
        hook,
        freeze_cgroup: setup.freeze_cgroup.clone(),
        external_mounts: setup.ext_mounts.clone(),
        external_mounts_auto: setup.ext_mounts_auto,
        empty_ns: setup.empty_ns,
        network_lock: setup.network_lock,
        external_netns: setup.external_netns.clone(),
    };
    log::info!(
        "dumping pid {pid} into {} (leave_running {})",
        engine.images_dir.display(),
        engine.leave_running
    );
    match stasis_checkpoint::dump(&engine) {
        Ok(r) => {
            let stats = format!(
                "dump of pid {pid}: freezing {} us, frozen {} us, memdump {} us, memwrite {} us, \
                 pages scanned {}, written {}",
                r.freezing_us,
                r.frozen_us,
                r.memdump_us,
                r.memwrite_us,
                r.pages_scanned,
                r.pages_written
            );
            log::info!("{stats}");
            if setup.display_stats {
                swlog::always(&stats);
            }
            Ok(response::dump_done())
        }
        Err(e) => Err(notifier
            .take_failure()
            .unwrap_or(RpcError::Dump { pid, source: e })),
    }
}

/// PRE_DUMP and SINGLE_PRE_DUMP: the directories and log are set up (so the refusal is in
/// the log the client reads), then refused — with CRIU's message when the kernel cannot
/// track memory, as on this machine's kernels.
pub fn pre_dump(conn: &Arc<Conn>, opts: &CriuOpts, kernel: &Kernel) -> Result<CriuResp, RpcError> {
    let _setup = setup::prepare(conn, opts, Purpose::Query)?;
    if !kernel.soft_dirty {
        return Err(RpcError::Kernel(format!(
            "{NO_MEM_TRACK} Pre-dump copies only the memory changed since the previous \
             iteration, and this kernel has no soft-dirty page tracking."
        )));
    }
    fields::check(opts)?;
    Err(RpcError::TypeNotSupported("PRE_DUMP"))
}
