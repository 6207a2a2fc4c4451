//! RESTORE: always detached, as CRIU forces it over RPC; with `rst_sibling` the restored
//! task is the client's child (CLONE_PARENT), so runc and crun can wait for it.

use super::conn::Conn;
use super::error::RpcError;
use super::notify::{Notifier, Script};
use super::response;
use super::setup::{self, Purpose};
use stasis_images::pb::rpc::{CriuOpts, CriuResp};
use stasis_restore::{RestoreHook, RestoreOptions, RestoreOutcome, RestoreStage};
use std::fs::File;
use std::sync::Arc;

/// What to run after a successful RESTORE response (`exec_cmd`), with its stdout and
/// stderr on the log as CRIU does.
#[derive(Debug)]
pub struct ExecAfter {
    pub argv: Vec<String>,
    pub log: Option<File>,
}

/// `pre-restore` → the restore, with `post-restore` (pid) and `pre-resume` while the task
/// is rebuilt but stopped → `post-resume` → the response.
pub fn restore(
    conn: &Arc<Conn>,
    opts: &CriuOpts,
) -> Result<(CriuResp, Option<ExecAfter>), RpcError> {
    let setup = setup::prepare(conn, opts, Purpose::Operation)?;
    let notifier = Notifier::new(conn.clone(), setup.notify);
    notifier.send(Script::PreRestore, None)?;
    let at_stage = notifier.clone();
    // CRIU sends network-unlock only for a tree with namespaces of its own.
    let in_namespaces = std::sync::atomic::AtomicBool::new(false);
    let hook = RestoreHook::new(move |stage| match stage {
        RestoreStage::NamespacesReady { pid } => {
            in_namespaces.store(true, std::sync::atomic::Ordering::Relaxed);
            at_stage.hook(&[
                (Script::SetupNamespaces, Some(pid)),
                (Script::PostSetupNamespaces, None),
            ])
        }
        RestoreStage::Restored { pid }
            if in_namespaces.load(std::sync::atomic::Ordering::Relaxed) =>
        {
            at_stage.hook(&[
                (Script::PostRestore, Some(pid)),
                (Script::NetworkUnlock, None),
                (Script::PreResume, None),
            ])
        }
        RestoreStage::Restored { pid } => {
            at_stage.hook(&[(Script::PostRestore, Some(pid)), (Script::PreResume, None)])
        }
        RestoreStage::OrphanPtsMaster { fd, .. } => {
            at_stage.hook_with_fd(Script::OrphanPtsMaster, fd)
        }
        _ => Ok(()),
    });
    let engine = RestoreOptions {
        images_dir: setup.images.path.clone(),
        work_dir: setup.work.path.clone(),
        detached: true,
        shell_job: setup.shell_job,
        tcp_established: setup.tcp_established,
        restore_sibling: setup.rst_sibling,
        hook,
        manage_cgroups: setup.manage_cgroups,
        cgroup_root: setup.cgroup_root.clone(),
        root: setup.root.clone(),
        external_mounts: setup.ext_mounts.clone(),
        veths: setup.veths.clone(),
        inherit_fds: setup.inherit_fds.clone(),
        join_ns: setup.join_ns.clone(),
        cpu_cap: setup.cpu_cap.clone(),
        orphan_pts_master: setup.orphan_pts_master,
        ..Default::default()
    };
    log::info!(
        "restoring from {} (rst_sibling {})",
        engine.images_dir.display(),
        engine.restore_sibling
    );
    let pid = match stasis_restore::restore(&engine) {
        Ok(RestoreOutcome::Running { pid }) => pid,
        Ok(other) => {
            return Err(RpcError::BadRequest(format!(
                "the engine ended a detached restore with {other:?}"
            )))
        }
        Err(e) => return Err(notifier.take_failure().unwrap_or(RpcError::Restore(e))),
    };
    log::info!("restored pid {pid}");
    if setup.display_stats {
        super::log::always(&format!("restore: pid {pid} runs"));
    }
    // CRIU logs a failed post-resume and still reports success: the task already runs.
    if let Err(e) = notifier.send(Script::PostResume, None) {
        log::error!("{e}; pid {pid} runs on");
    }
    let exec = (!setup.exec_cmd.is_empty()).then(|| ExecAfter {
        argv: setup.exec_cmd.clone(),
        log: setup.log.as_ref().and_then(|f| f.try_clone().ok()),
    });
    Ok((response::restore_done(pid), exec))
}
