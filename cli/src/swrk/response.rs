//! The `criu_resp` messages stasis sends, shaped as CRIU 4.2 shapes them (checked against
//! the captured responses in the tests), and kept well below go-criu's 8 KiB buffer.

use super::error::RpcError;
use stasis_images::pb::rpc::{
    CriuDumpResp, CriuFeatures, CriuNotify, CriuReqType, CriuResp, CriuRestoreResp, CriuVersion,
};

/// The CRIU version stasis answers VERSION with: every client's gate passes (runc needs
/// 3.16 for all it does, crun's libcriu 3.15, podman 3.11). As with a git build of CRIU,
/// the `gitid` makes go-criu, runc and libcriu count it as the next minor (40300).
pub const MAJOR: i32 = 4;
pub const MINOR: i32 = 2;

/// The `gitid` of the VERSION answer: it names stasis and its version.
pub fn gitid() -> String {
    format!("v{MAJOR}.{MINOR}-stasis-{}", env!("CARGO_PKG_VERSION"))
}

/// Longest `cr_errmsg` sent; the rest goes to the log only.
pub const MAX_ERRMSG: usize = 2048;

fn base(ty: CriuReqType, success: bool) -> CriuResp {
    CriuResp {
        r#type: ty as i32,
        success,
        ..Default::default()
    }
}

/// VERSION: `{major, minor, gitid}`, no sublevel, no name, as CRIU 4.2.
pub fn version() -> CriuResp {
    CriuResp {
        version: Some(CriuVersion {
            major_number: MAJOR,
            minor_number: MINOR,
            gitid: Some(gitid()),
            ..Default::default()
        }),
        ..base(CriuReqType::Version, true)
    }
}

/// FEATURE_CHECK: every feature present in the answer (false unless asked and available).
pub fn features(answer: CriuFeatures) -> CriuResp {
    CriuResp {
        features: Some(answer),
        ..base(CriuReqType::FeatureCheck, true)
    }
}

/// A notification: `{type: NOTIFY, success: true, notify {script, pid?}}`.
pub fn notify(script: &str, pid: Option<i32>) -> CriuResp {
    CriuResp {
        notify: Some(CriuNotify {
            script: Some(script.to_string()),
            pid,
        }),
        ..base(CriuReqType::Notify, true)
    }
}

/// A successful DUMP: `dump {restored: false}`, as CRIU always sets it.
pub fn dump_done() -> CriuResp {
    CriuResp {
        dump: Some(CriuDumpResp {
            restored: Some(false),
        }),
        ..base(CriuReqType::Dump, true)
    }
}

/// A successful RESTORE: the host pid of the restored root.
pub fn restore_done(pid: i32) -> CriuResp {
    CriuResp {
        restore: Some(CriuRestoreResp { pid }),
        ..base(CriuReqType::Restore, true)
    }
}

/// Success with nothing more to say (CHECK).
pub fn done(ty: CriuReqType) -> CriuResp {
    base(ty, true)
}

/// A failure. `ty` is the request's type, or EMPTY for a request that could not be
/// dispatched (as CRIU does). DUMP and RESTORE failures carry their sub-message as CRIU's
/// do (`dump {restored: false}`, `restore {pid: -1}`).
pub fn failure(ty: CriuReqType, err: &RpcError) -> CriuResp {
    let mut resp = CriuResp {
        cr_errno: Some(err.cr_errno()),
        cr_errmsg: Some(bounded(&err.to_string())),
        ..base(ty, false)
    };
    match ty {
        CriuReqType::Dump => {
            resp.dump = Some(CriuDumpResp {
                restored: Some(false),
            })
        }
        CriuReqType::Restore => resp.restore = Some(CriuRestoreResp { pid: -1 }),
        _ => {}
    }
    resp
}

/// `msg` cut to [`MAX_ERRMSG`] bytes on a character boundary.
fn bounded(msg: &str) -> String {
    if msg.len() <= MAX_ERRMSG {
        return msg.to_string();
    }
    let mut end = MAX_ERRMSG - 3;
    while !msg.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &msg[..end])
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    #[test]
    fn version_answer_counts_as_at_least_criu_4_2_for_go_criu_runc_and_libcriu() {
        let r = version();
        let v = r.version.as_ref().unwrap();
        // go-criu / runc / libcriu arithmetic.
        let mut n = v.major_number * 10000 + v.minor_number * 100 + v.sublevel.unwrap_or(0);
        if v.gitid.as_deref().is_some_and(|g| !g.is_empty()) {
            n = n - n % 100 + 100;
        }
        assert_eq!(n, 40300);
        assert!(n >= 31600, "runc's and containerd 2's newest gate");
        assert!(v.gitid.as_deref().unwrap().contains("stasis"));
        assert!(r.encode_to_vec().len() < 64);
    }

    #[test]
    fn failures_always_encode_success_false_and_the_required_fields() {
        let r = failure(CriuReqType::Empty, &RpcError::UnknownType(99));
        let bytes = r.encode_to_vec();
        // type EMPTY (0) and success false are on the wire, as proto2 `required` demands
        // (Go's proto2 decoder refuses a response without them).
        assert_eq!(&bytes[..4], &[0x08, 0x00, 0x10, 0x00]);
        let r = failure(CriuReqType::Restore, &RpcError::BadRequest("x".into()));
        assert_eq!(r.restore.unwrap().pid, -1);
        let r = failure(CriuReqType::Dump, &RpcError::BadRequest("x".into()));
        assert_eq!(r.dump.unwrap().restored, Some(false));
    }

    #[test]
    fn a_huge_error_message_is_cut_so_the_response_fits_go_criu_s_buffer() {
        let long = "é".repeat(10_000);
        let r = failure(CriuReqType::Dump, &RpcError::BadRequest(long));
        let bytes = r.encode_to_vec();
        assert!(
            bytes.len() < super::super::conn::MAX_RESPONSE,
            "{}",
            bytes.len()
        );
        assert!(r.cr_errmsg.unwrap().ends_with("..."));
    }
}
