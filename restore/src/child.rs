//! What the forked task does to itself before it is seized for the final metamorphosis:
//! session and process group, descriptors, cwd and root, umask, personality, signal
//! actions and name. It runs in a copy of stasis (single-threaded), keeps every signal
//! blocked, reports success or the first error over `report_fd`, then waits in `pause()`.

use crate::plan::TaskPlan;
use stasis_sys::process;

/// The lowest descriptor number above every fd of the image (where the child parks its own).
pub fn high_fd(plan: &TaskPlan) -> i32 {
    plan.fds.iter().map(|f| f.fd).max().unwrap_or(2).max(2) + 1
}

/// Runs in the child; never returns. The pages image ends up at descriptor
/// `high_fd(plan)` and the report socket right above it.
pub fn run(plan: &TaskPlan, pages_fd: i32, report_fd: i32, shell_job: bool) -> ! {
    let hi = high_fd(plan);
    // Park both far above everything, close the rest, then put them in place.
    let parked = (
        process::dup_at_least(pages_fd, hi + 64),
        process::dup_at_least(report_fd, hi + 64),
    );
    let (Ok(pages_tmp), Ok(report_tmp)) = parked else {
        process::exit_now(3)
    };
    if process::close_all_except(&[pages_tmp, report_tmp]).is_err()
        || process::dup3(pages_tmp, hi, 0).is_err()
        || process::dup3(report_tmp, hi + 1, 0).is_err()
    {
        process::exit_now(3);
    }
    process::close_fd(pages_tmp);
    process::close_fd(report_tmp);
    let report = hi + 1;
    let fail = |msg: String| -> ! {
        let _ = process::write_fd(report, format!("E{msg}").as_bytes());
        process::exit_now(1)
    };
    match setup(plan, shell_job) {
        Ok(()) => {
            if let Err(e) = process::write_fd(report, b"R") {
                fail(e.to_string());
            }
            process::pause_forever()
        }
        Err(msg) => fail(msg),
    }
}

fn setup(plan: &TaskPlan, shell_job: bool) -> Result<(), String> {
    process::sigprocmask(libc::SIG_SETMASK, !0).map_err(|e| e.to_string())?;
    if plan.sid == plan.pid {
        process::setsid()
            .map_err(|e| format!("cannot make pid {} a session leader: {e}", plan.pid))?;
    } else if !shell_job {
        return Err(format!(
            "pid {} was in session {} whose leader is not in the image; restore with --shell-job",
            plan.pid, plan.sid
        ));
    } else if plan.pgid == plan.pid {
        process::setpgid(0, 0).map_err(|e| e.to_string())?;
    }
    open_fds(plan)?;
    if plan.root != "/" {
        std::os::unix::fs::chroot(&plan.root).map_err(|e| format!("chroot {}: {e}", plan.root))?;
    }
    std::env::set_current_dir(&plan.cwd).map_err(|e| format!("cwd {}: {e}", plan.cwd))?;
    process::set_umask(plan.umask);
    process::set_personality(plan.tc.personality).map_err(|e| e.to_string())?;
    let signals = (1..=64).filter(|&s| s != libc::SIGKILL && s != libc::SIGSTOP);
    for (sig, sa) in signals.zip(plan.tc.sigactions.iter()) {
        let act = process::KernelSigaction {
            handler: sa.sigaction,
            flags: sa.flags,
            restorer: sa.restorer,
            mask: sa.mask,
        };
        process::set_raw_sigaction(sig, &act).map_err(|e| e.to_string())?;
    }
    process::set_comm(&plan.tc.comm).map_err(|e| e.to_string())?;
    Ok(())
}

/// Rebuilds the descriptor table: every descriptor at its number, sharing open file
/// descriptions as dumped (see [`crate::fds`]). Numbers from `high_fd + 2` up are free
/// for parking (the pages image and the report socket sit just below).
fn open_fds(plan: &TaskPlan) -> Result<(), String> {
    crate::fds::open_all(plan, high_fd(plan) + 2)
}
