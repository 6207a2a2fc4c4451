//! What the forked task does to itself before it is seized for the final metamorphosis:
//! session and process group, descriptors, cwd and root, umask, personality, signal
//! actions and name. It runs in a copy of stasis (single-threaded), keeps every signal
//! blocked, reports success or the first error over `report_fd`, then waits in `pause()`.

use crate::cow::Premap;
use crate::fds::Made;
use crate::plan::{Fork, TaskNode, TaskPlan, TreePlan};
use stasis_sys::process;
use stasis_sys::process::Forked;
use std::os::fd::{AsFd, AsRawFd, IntoRawFd};

/// The lowest descriptor number above every fd of the image (where the child parks its own).
pub fn high_fd(plan: &TaskPlan) -> i32 {
    plan.fds.iter().map(|f| f.fd).max().unwrap_or(2).max(2) + 1
}

/// The descriptor numbers every restoring task of a tree uses for itself: its pages
/// image at `pages`, the shared report pipe at `pages + 1`, parking from `pages + 2`.
pub fn tree_high_fd(tree: &TreePlan) -> i32 {
    tree.alive().map(high_fd).max().unwrap_or(3)
}

/// How a restoring task reports to stasis: one line per message on a pipe every task of
/// the tree shares (writes of less than PIPE_BUF bytes are atomic).
fn report(fd: i32, pid: i32, msg: &str) {
    let mut line = format!("{pid} {msg}");
    line.truncate(3000);
    line = line.replace('\n', " ");
    line.push('\n');
    let _ = process::write_fd(fd, line.as_bytes());
}

/// What only the root of the tree does before it forks the rest: rebuild its new
/// namespaces from inside, wait for stasis to finish them from outside, then create
/// every file object of the tree (in the restored mount and network namespaces).
pub struct RootSetup<'a> {
    /// The images directory's path (opened again here: the descriptors stasis held
    /// are closed in the child).
    pub dir: &'a std::path::Path,
    pub mounts: &'a crate::ns::MountOptions,
    /// Read end of the pipe on which stasis says the namespaces are complete.
    pub go: Option<std::fs::File>,
    /// `--inherit-fd`: key → a descriptor number of stasis's, which the root inherited.
    pub inherited: &'a [(String, i32)],
}

/// What every task of a restore's fork tree is given alike: the plan, the images
/// directory, `--shell-job`, and the descriptors of stasis's that the tree keeps
/// (`--inherit-fd` copies, the go pipe).
#[derive(Clone, Copy)]
pub struct Forking<'a> {
    pub tree: &'a TreePlan,
    pub images: &'a std::fs::File,
    pub shell_job: bool,
    pub extra: &'a [i32],
}

/// Runs in the task `index` of the tree, forked by its parent with its PID; never
/// returns. It recreates its session and group, forks its own children (zombies exit at
/// once), rebuilds its descriptors and the rest of its own state, reports `R`, and
/// waits to be seized. The root (`made` is `None`) first runs [`RootSetup`].
pub fn run(
    f: Forking<'_>,
    index: usize,
    report_fd: i32,
    made: Option<Made>,
    root: Option<RootSetup<'_>>,
    forked: Option<i32>,
    premaps: &[Premap],
) -> ! {
    let Forking {
        tree,
        images,
        shell_job,
        extra,
    } = f;
    let hi = tree_high_fd(tree);
    let report_at = hi + 1;
    let pid = tree.tasks[index].pid();
    // A task sharing its parent's descriptor table (CLONE_FILES) finds it arranged.
    if forked.is_none() {
        arrange_fds(
            tree,
            pid,
            report_fd,
            made.as_ref(),
            extra,
            images,
            root.as_ref(),
        );
    }
    let fail = |msg: String| -> ! {
        report(report_at, pid, &format!("E{msg}"));
        process::exit_now(1)
    };
    let TaskNode::Alive(plan) = &tree.tasks[index] else {
        fail("a zombie cannot be restored as a live task".into())
    };
    if let Err(msg) = process::sigprocmask(libc::SIG_SETMASK, !0).map_err(|e| e.to_string()) {
        fail(msg)
    }
    if let Err(msg) = session(plan, index == 0, shell_job) {
        fail(msg)
    }
    let made = match (made, root) {
        (Some(made), _) => made,
        (None, Some(r)) => match root_setup(tree, images, report_at, pid, r) {
            Ok(made) => made,
            Err(msg) => fail(msg),
        },
        (None, None) => fail("no file objects to inherit".into()),
    };
    // The helpers' tasks come back to the root when their helper exits, as they had
    // when dumped: the root adopts orphans (it is set back to the dumped flag later).
    if index == 0 && !tree.helpers.is_empty() {
        if let Err(e) = process::set_child_subreaper(true) {
            fail(format!("the root cannot adopt its helpers' tasks: {e}"))
        }
    }
    let pages = match stasis_sys::ns::open_at(images.as_fd(), &plan.pages_name) {
        Ok(f) => std::fs::File::from(f),
        Err(e) => fail(format!("{}: {e}", plan.pages_name)),
    };
    // Private memory shared with children copy-on-write: copies made (or inherited ones
    // made its own) before they are forked.
    let premaps = match crate::cow::prepare(tree, index, plan, &pages, premaps) {
        Ok(p) => p,
        Err(msg) => fail(msg),
    };
    // Each task's pages image: at `hi`, or, in a table shared with the parent (which
    // puts its own there), at a free number above the report pipe, told to stasis —
    // placed before the parent may install its descriptors over the low numbers.
    let raw = pages.into_raw_fd();
    let placed = match forked {
        None => process::dup3(raw, hi, 0).map(|()| hi),
        Some(_) => process::dup_at_least(raw, report_at + 1),
    };
    if placed.as_ref().map_or(true, |at| *at != raw) {
        process::close_fd(raw);
    }
    let pages_at = match placed {
        Ok(at) => at,
        Err(e) => fail(format!("{}: {e}", plan.pages_name)),
    };
    let made = match fork_all(f, &tree.forks_of_task(index), report_at, made, &premaps) {
        Ok(made) => made,
        Err(msg) => fail(msg),
    };
    // Its children have their copies of the shared table: the parent may go on and
    // install its descriptors (closing the parked objects).
    if let Some(w) = forked {
        if let Err(e) = process::write_fd(w, b"f") {
            fail(format!("telling the parent its children are forked: {e}"))
        }
    }
    let shared_fs = tree.shares_fs_with_parent(index);
    let ready = match forked {
        // The parent installs the descriptors of the table they share.
        Some(_) => {
            std::mem::forget(made);
            setup(plan, None, shared_fs)
        }
        None => setup(plan, Some(made), shared_fs),
    };
    match ready {
        Ok(()) => {
            let copies: String = premaps
                .iter()
                .map(|p| format!(" {:x}:{:x}", p.start, p.region.addr()))
                .collect();
            report(report_at, pid, &format!("R{pages_at}{copies}"));
            process::pause_forever()
        }
        Err(msg) => fail(msg),
    }
}

/// Parks the report pipe far above everything, closes the rest (but the tree's parked
/// file objects), then puts it in place.
fn arrange_fds(
    tree: &TreePlan,
    pid: i32,
    report_fd: i32,
    made: Option<&Made>,
    extra: &[i32],
    images: &std::fs::File,
    root: Option<&RootSetup<'_>>,
) {
    let hi = tree_high_fd(tree);
    let report_at = hi + 1;
    let mut keep = made.map(Made::raw_fds).unwrap_or_default();
    keep.extend_from_slice(extra);
    keep.push(images.as_raw_fd());
    if let Some(r) = root {
        keep.extend(r.go.as_ref().map(|g| g.as_raw_fd()));
        keep.extend(r.inherited.iter().map(|(_, fd)| *fd));
    }
    let top = keep.iter().copied().max().unwrap_or(0).max(hi + 64);
    match process::dup_at_least(report_fd, top + 1) {
        Ok(tmp) => {
            // The report pipe's number must be free: a kept descriptor there would be
            // lost (stasis places them all above it).
            if keep.contains(&report_at) {
                report(
                    tmp,
                    pid,
                    &format!("Edescriptor {report_at} is both kept and the report pipe's"),
                );
                process::exit_now(3);
            }
            keep.push(tmp);
            if process::close_all_except(&keep).is_err()
                || process::dup3(tmp, report_at, 0).is_err()
            {
                process::exit_now(3);
            }
            process::close_fd(tmp)
        }
        Err(_) => process::exit_now(3),
    }
}

/// Forks every task and helper of `forks` with its PID, in order. A task's group exists
/// as soon as it is forked (the parent makes it too: later siblings may need to join it
/// first, as a shell does for a pipeline). A helper is waited for: it exits as soon as
/// it has forked its own.
fn fork_all(
    fk: Forking<'_>,
    forks: &[Fork],
    report_at: i32,
    made: Made,
    premaps: &[Premap],
) -> Result<Made, String> {
    let tree = fk.tree;
    for &f in forks {
        let pid = match f {
            Fork::Task(i) => tree.tasks[i].pid(),
            Fork::Helper(h) => tree.helpers[h].pid,
        };
        let (shares_fs, shares_files) = match f {
            Fork::Task(i) => (
                tree.shares_fs_with_parent(i),
                tree.shares_files_with_parent(i),
            ),
            Fork::Helper(_) => (false, false),
        };
        let flags = if shares_fs { libc::CLONE_FS as u64 } else { 0 }
            | if shares_files {
                libc::CLONE_FILES as u64
            } else {
                0
            };
        // A child sharing this table says when its own children are forked (they copy
        // the table, parked objects included): only then may this task install its
        // descriptors. The pipe lives in the shared table; the parent closes it.
        let forked = if shares_files {
            Some(std::io::pipe().map_err(|e| format!("a pipe for pid {pid}: {e}"))?)
        } else {
            None
        };
        match (process::fork_with_pid(&[pid], flags), f) {
            (Ok(Forked::Child), Fork::Task(child)) => match &tree.tasks[child] {
                TaskNode::Zombie {
                    pid,
                    pgid,
                    exit_code,
                    ..
                } => become_zombie(*pid, *pgid, *exit_code),
                TaskNode::Alive(_) => run(
                    fk,
                    child,
                    report_at,
                    Some(made),
                    None,
                    forked.as_ref().map(|(_, w)| w.as_raw_fd()),
                    premaps,
                ),
            },
            (Ok(Forked::Child), Fork::Helper(h)) => run_helper(fk, h, report_at, made, premaps),
            (Ok(Forked::Parent(child_pid)), Fork::Task(child)) => {
                let (pgid, _) = tree.tasks[child].group();
                if pgid == child_pid {
                    let _ = process::setpgid(child_pid, child_pid);
                }
                if let Some((mut r, _w)) = forked {
                    let mut byte = [0u8; 1];
                    match std::io::Read::read(&mut r, &mut byte) {
                        Ok(1) => {}
                        _ => return Err(format!("pid {pid} did not finish forking")),
                    }
                }
            }
            (Ok(Forked::Parent(child_pid)), Fork::Helper(_)) => {
                match stasis_sys::ptrace::waitpid(child_pid, 0) {
                    Ok((_, stasis_sys::ptrace::WaitStatus::Exited(0))) => {}
                    Ok((_, status)) => {
                        return Err(format!("helper pid {pid} ended with {status:?}"))
                    }
                    Err(e) => return Err(format!("waiting for helper pid {pid}: {e}")),
                }
            }
            (Err(e), Fork::Task(_)) => return Err(format!("forking child pid {pid}: {e}")),
            (Err(e), Fork::Helper(_)) => {
                return Err(format!(
                    "forking helper pid {pid} (a leader gone at dump): {e}"
                ))
            }
        }
    }
    Ok(made)
}

/// A helper's life: lead the session or group of the leader it stands for, fork the
/// tasks (and inner helpers) that belong there, exit.
fn run_helper(fk: Forking<'_>, h: usize, report_at: i32, made: Made, premaps: &[Premap]) -> ! {
    let tree = fk.tree;
    let helper = &tree.helpers[h];
    let led = if helper.new_session {
        process::setsid().map(drop)
    } else {
        process::setpgid(0, 0)
    };
    let what = if helper.new_session {
        "session"
    } else {
        "process group"
    };
    let result = led
        .map_err(|e| format!("helper pid {} cannot start its {what}: {e}", helper.pid))
        .and_then(|()| {
            let forks = tree.forks_of_helper(h);
            fork_all(fk, &forks, report_at, made, premaps)
        });
    match result {
        Ok(_) => process::exit_now(0),
        Err(msg) => {
            report(report_at, helper.pid, &format!("E{msg}"));
            process::exit_now(1)
        }
    }
}

/// The root's own part: namespaces from inside, the go from stasis, the tree's files.
fn root_setup(
    tree: &TreePlan,
    images: &std::fs::File,
    report_at: i32,
    pid: i32,
    r: RootSetup<'_>,
) -> Result<Made, String> {
    let mut go = r.go;
    if let (Some(_), Some(go)) = (&tree.ns.users, go.as_mut()) {
        let mut byte = [0u8; 1];
        match std::io::Read::read(go, &mut byte) {
            Ok(1) => {}
            _ => return Err("stasis did not map the new user namespace".into()),
        }
    }
    let dir = stasis_images::ImageDir::open(r.dir).map_err(|e| e.to_string())?;
    // New ptys' masters: stasis takes its copies before the go; the tree gets none.
    let masters = crate::ns::setup_inside(&tree.ns, &dir, images.as_fd(), r.mounts, r.inherited)?;
    if let Some(mut go) = go {
        report(report_at, pid, "N");
        let mut byte = [0u8; 1];
        match std::io::Read::read(&mut go, &mut byte) {
            Ok(1) => {}
            _ => return Err("stasis gave up on the namespaces".into()),
        }
    }
    drop(masters);
    if tree.ns.cgroup {
        stasis_sys::ns::unshare(libc::CLONE_NEWCGROUP)
            .map_err(|e| format!("a new cgroup namespace: {e}"))?;
    }
    let TaskNode::Alive(root) = tree.root() else {
        return Err("the root is a zombie".into());
    };
    let all_fds: Vec<crate::plan::FdPlan> =
        tree.alive().flat_map(|p| p.fds.iter().cloned()).collect();
    let made =
        crate::fds::create_all(&root.objects, &all_fds, tree_high_fd(tree) + 2, r.inherited)?;
    // The tree holds its copies now; the numbers stasis received them on are free.
    for (_, fd) in r.inherited {
        if !made.raw_fds().contains(fd) {
            process::close_fd(*fd);
        }
    }
    Ok(made)
}

/// A task that was a zombie: it dies at once the way it died, and stays a zombie until
/// its (restored) parent reaps it.
fn become_zombie(pid: i32, pgid: i32, status: u32) -> ! {
    if pgid == pid {
        let _ = process::setpgid(0, 0);
    }
    let signal = (status & 0x7f) as i32;
    if signal != 0 {
        process::die_by_signal(signal);
    }
    process::exit_now(((status >> 8) & 0xff) as i32)
}

/// Session and process group: a session leader starts its own session; a group leader
/// its own group; anything else stays in its parent's (the dump refuses other cases).
fn session(plan: &TaskPlan, root: bool, shell_job: bool) -> Result<(), String> {
    if plan.sid == plan.pid {
        process::setsid()
            .map_err(|e| format!("cannot make pid {} a session leader: {e}", plan.pid))?;
    } else if root && !shell_job {
        return Err(format!(
            "pid {} was in session {} whose leader is not in the image; restore with --shell-job",
            plan.pid, plan.sid
        ));
    } else if plan.pgid == plan.pid {
        process::setpgid(0, 0).map_err(|e| e.to_string())?;
    } else if plan.pgid != process::getpgrp() {
        join_group(plan)?;
    }
    Ok(())
}

/// Moves the task into the group another task of the tree leads (a shell pipeline's).
/// A leader forked by the same parent earlier already has its group (the parent made
/// it); one elsewhere in the tree may still be on its way, so a little patience.
fn join_group(plan: &TaskPlan) -> Result<(), String> {
    let until = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        match process::setpgid(0, plan.pgid) {
            Ok(()) => return Ok(()),
            Err(e) if std::time::Instant::now() < until && e.errno() == Some(libc::EPERM) => {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            Err(e) => {
                return Err(format!(
                    "pid {} cannot join process group {}: {e}",
                    plan.pid, plan.pgid
                ))
            }
        }
    }
}

/// `shared_fs`: cwd, root and umask are the parent's (`CLONE_FS`), which sets them.
/// `made`: `None` in a descriptor table shared with the parent, which installs it.
fn setup(plan: &TaskPlan, made: Option<Made>, shared_fs: bool) -> Result<(), String> {
    if let Some(made) = made {
        crate::fds::install(plan, made)?;
    }
    crate::fds::tty::take_controlling(plan)?;
    if !shared_fs {
        if plan.root != "/" {
            std::os::unix::fs::chroot(&plan.root)
                .map_err(|e| format!("chroot {}: {e}", plan.root))?;
        }
        std::env::set_current_dir(&plan.cwd).map_err(|e| format!("cwd {}: {e}", plan.cwd))?;
        process::set_umask(plan.umask);
    }
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
