//! `stasis swrk <fd>`: CRIU's RPC service worker, as runc, crun (libcriu), podman,
//! containerd and docker start it — `criu swrk <fd>` on one end of an `AF_UNIX
//! SOCK_SEQPACKET` socketpair, speaking CRIU's protobuf RPC, one `criu_req`/`criu_resp`
//! per packet (see docs/rpc.md).
//!
//! ```text
//! recv criu_req → decode (bounded, required fields checked) → dispatch by type
//!   VERSION | FEATURE_CHECK | CHECK          → answer
//!   DUMP | RESTORE                           → setup → notify ⇄ client … → engine → answer
//!   PRE_DUMP | SINGLE_PRE_DUMP | the rest    → refusal naming why
//! → send criu_resp → exit (or next request with keep_open on VERSION/FEATURE_CHECK)
//! ```
//!
//! Everything runs on the main thread, the engine included: ptrace binds a tracee to the
//! thread that attached it. Nothing is ever printed on stdio, which belongs to the client
//! (on restore, runc hands stasis the container's stdio); the log goes where the request
//! says.

mod config;
mod conn;
mod dump;
mod error;
mod features;
mod fields;
mod log;
mod notify;
mod response;
mod restore;
mod setup;
mod wire;

#[cfg(test)]
mod captures_tests;

use conn::{Conn, Incoming};
use error::RpcError;
use stasis_images::pb::rpc::{CriuReq, CriuReqType, CriuResp};
use std::os::unix::process::CommandExt;
use std::process::ExitCode;
use std::sync::Arc;

/// `stasis swrk FD`; `args` are the words after `swrk`.
pub fn main(args: &[String]) -> ExitCode {
    let fd = match args {
        [fd] => match fd.parse::<i32>() {
            Ok(n) if n >= 0 => n,
            _ => return usage(&format!("{fd:?} is not a file descriptor number")),
        },
        _ => return usage("expected exactly one argument"),
    };
    // With no socket there is no one to answer: stderr is the only way to say why.
    let sock = match stasis_sys::fd::adopt_inherited(fd) {
        Ok(s) => s,
        Err(e) => return usage(&format!("fd {fd}: {e}")),
    };
    let conn = match Conn::new(sock) {
        Ok(c) => c,
        Err(e) => return usage(&format!("fd {fd}: {e}")),
    };
    log::install();
    serve(Arc::new(conn))
}

fn usage(why: &str) -> ExitCode {
    eprintln!("stasis swrk: {why}\nusage: stasis swrk FD   (FD: one end of an AF_UNIX SOCK_SEQPACKET socketpair)");
    ExitCode::from(1)
}

/// What happens after a response is sent.
enum Then {
    Exit(ExitCode),
    Next,
    Exec(restore::ExecAfter),
}

/// Serves requests until one ends the session. The exit status is 0 after a successful
/// final response, 1 otherwise (runc treats non-zero as failure, except after PRE_DUMP).
pub fn serve(conn: Arc<Conn>) -> ExitCode {
    let kernel = std::cell::OnceCell::new();
    let mut served = 0u32;
    loop {
        let (resp, then) = match conn.recv() {
            Incoming::Closed => {
                // CRIU: "Client exited unexpectedly" unless a keep_open session ended.
                return if served > 0 {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::from(1)
                };
            }
            Incoming::Bad(e) => {
                ::log::error!("{e}");
                (
                    response::failure(CriuReqType::Empty, &e),
                    Then::Exit(ExitCode::from(1)),
                )
            }
            Incoming::Request(req) => {
                served += 1;
                handle(&conn, &req, || *kernel.get_or_init(features::Kernel::probe))
            }
        };
        if let Err(e) = conn.send(&resp) {
            ::log::error!("cannot send the response: {e}");
            return ExitCode::from(1);
        }
        match then {
            Then::Exit(code) => return code,
            Then::Next => continue,
            Then::Exec(exec) => return exec_after(&conn, exec),
        }
    }
}

/// Request types that may keep the session open (CRIU's list, less the page server and
/// cpuinfo requests stasis refuses).
fn keeps_open(ty: CriuReqType) -> bool {
    matches!(ty, CriuReqType::Version | CriuReqType::FeatureCheck)
}

fn handle(
    conn: &Arc<Conn>,
    req: &CriuReq,
    kernel: impl Fn() -> features::Kernel,
) -> (CriuResp, Then) {
    let Ok(ty) = CriuReqType::try_from(req.r#type) else {
        return refuse(CriuReqType::Empty, RpcError::UnknownType(req.r#type));
    };
    ::log::info!("request {}", ty.as_str_name());
    let keep_open = req.keep_open == Some(true);
    if keep_open && !keeps_open(ty) {
        return refuse(
            ty,
            RpcError::BadRequest(format!(
                "keep_open is allowed only with VERSION and FEATURE_CHECK, not {}",
                ty.as_str_name()
            )),
        );
    }
    let no_opts = || RpcError::BadRequest(format!("a {} request needs opts", ty.as_str_name()));
    let result = match ty {
        CriuReqType::Version => Ok(response::version()),
        CriuReqType::FeatureCheck => feature_check(conn, req, &kernel()),
        CriuReqType::Check => check(conn, req),
        CriuReqType::Dump => match &req.opts {
            Some(o) => dump::dump(conn, o),
            None => Err(no_opts()),
        },
        CriuReqType::PreDump | CriuReqType::SinglePreDump => match &req.opts {
            Some(o) => dump::pre_dump(conn, o, &kernel()),
            None => Err(no_opts()),
        },
        CriuReqType::Restore => match &req.opts {
            Some(o) => match restore::restore(conn, o) {
                Ok((resp, Some(exec))) => return (resp, Then::Exec(exec)),
                Ok((resp, None)) => Ok(resp),
                Err(e) => Err(e),
            },
            None => Err(no_opts()),
        },
        CriuReqType::Empty | CriuReqType::Notify => {
            return refuse(CriuReqType::Empty, RpcError::InvalidType(ty.as_str_name()))
        }
        CriuReqType::PageServer
        | CriuReqType::PageServerChld
        | CriuReqType::CpuinfoDump
        | CriuReqType::CpuinfoCheck
        | CriuReqType::WaitPid => Err(RpcError::TypeNotSupported(ty.as_str_name())),
    };
    match result {
        Ok(resp) if keep_open => (resp, Then::Next),
        Ok(resp) => (resp, Then::Exit(ExitCode::SUCCESS)),
        Err(e) => refuse(ty, e),
    }
}

fn refuse(ty: CriuReqType, e: RpcError) -> (CriuResp, Then) {
    ::log::error!("{e}");
    (response::failure(ty, &e), Then::Exit(ExitCode::from(1)))
}

fn feature_check(
    conn: &Arc<Conn>,
    req: &CriuReq,
    kernel: &features::Kernel,
) -> Result<CriuResp, RpcError> {
    let asked = req
        .features
        .as_ref()
        .ok_or_else(|| RpcError::BadRequest("a FEATURE_CHECK request needs features".into()))?;
    if let Some(o) = &req.opts {
        setup::prepare(conn, o, setup::Purpose::Query)?;
    }
    Ok(response::features(features::answer(asked, kernel)))
}

fn check(conn: &Arc<Conn>, req: &CriuReq) -> Result<CriuResp, RpcError> {
    if let Some(o) = &req.opts {
        setup::prepare(conn, o, setup::Purpose::Query)?;
    }
    let problems = stasis_restore::check_kernel(None)?;
    if problems.is_empty() {
        Ok(response::done(CriuReqType::Check))
    } else {
        Err(RpcError::Check(problems))
    }
}

/// `exec_cmd`: stasis becomes the command, its stdout and stderr on the log.
fn exec_after(conn: &Conn, exec: restore::ExecAfter) -> ExitCode {
    conn.close_on_exec();
    let mut cmd = std::process::Command::new(&exec.argv[0]);
    cmd.args(&exec.argv[1..]);
    if let Some(log) = exec.log {
        if let Ok(copy) = log.try_clone() {
            cmd.stdout(log).stderr(copy);
        }
    }
    let e = cmd.exec();
    ::log::error!("exec_cmd {:?}: {e}", exec.argv);
    ExitCode::from(1)
}
