//! Reading an image set into one validated, typed plan. Nothing is created while this
//! runs; a malformed or inconsistent image is an error naming the file and the field.

use crate::{RestoreError, Result};
use stasis_images::{names, pb, ImageDir, ImageKind, PE_PRESENT};
use std::collections::HashMap;

/// One descriptor to reopen: its number, its close-on-exec flag and the file object
/// behind it (an id of `files.img`, described in [`TaskPlan::objects`]).
#[derive(Clone, Debug)]
pub struct FdPlan {
    pub fd: i32,
    pub cloexec: bool,
    pub file_id: u32,
}

/// A thread other than the leader.
#[derive(Clone, Debug)]
pub struct ThreadPlan {
    pub tid: i32,
    pub thread_info: pb::ThreadInfoX86,
    pub thread_core: pb::ThreadCoreEntry,
}

/// Everything needed to restore one process.
#[derive(Clone, Debug)]
pub struct TaskPlan {
    pub pid: i32,
    pub ppid: i32,
    pub pgid: i32,
    pub sid: i32,
    pub thread_info: pb::ThreadInfoX86,
    pub tc: pb::TaskCoreEntry,
    pub thread_core: pb::ThreadCoreEntry,
    /// The other threads, in pstree order.
    pub threads: Vec<ThreadPlan>,
    pub mm: pb::MmEntry,
    pub pagemap: Vec<pb::PagemapEntry>,
    pub pages_name: String,
    /// Bytes the pages file must hold.
    pub pages_bytes: u64,
    pub fds: Vec<FdPlan>,
    pub cwd: String,
    pub root: String,
    pub umask: u32,
    pub exe: String,
    pub files: HashMap<u32, pb::RegFileEntry>,
    /// Every file object of the image with its side data (pipe bytes, socket queues...).
    pub objects: crate::fds::Objects,
    /// `seccomp.img`'s filters (the threads' cores point into it).
    pub seccomp: Vec<pb::SeccompFilter>,
    /// `ids.img`'s fs object: the same as the parent's when they share cwd, root and
    /// umask (`CLONE_FS`).
    pub fs_id: u32,
    /// `ids.img`'s descriptor table: the parent's when shared (`CLONE_FILES`).
    pub files_id: u32,
}

const PAGE: u64 = 4096;

fn bad(file: &str, what: impl Into<String>) -> RestoreError {
    RestoreError::BadImage {
        file: file.to_string(),
        what: what.into(),
    }
}

/// A process of the tree: alive (to rebuild) or a zombie (to recreate as one).
#[derive(Clone, Debug)]
pub enum TaskNode {
    Alive(Box<TaskPlan>),
    Zombie {
        pid: i32,
        ppid: i32,
        pgid: i32,
        sid: i32,
        exit_code: u32,
    },
}

impl TaskNode {
    pub fn pid(&self) -> i32 {
        match self {
            TaskNode::Alive(t) => t.pid,
            TaskNode::Zombie { pid, .. } => *pid,
        }
    }

    pub fn ppid(&self) -> i32 {
        match self {
            TaskNode::Alive(t) => t.ppid,
            TaskNode::Zombie { ppid, .. } => *ppid,
        }
    }

    /// Process group and session.
    pub fn group(&self) -> (i32, i32) {
        match self {
            TaskNode::Alive(t) => (t.pgid, t.sid),
            TaskNode::Zombie { pgid, sid, .. } => (*pgid, *sid),
        }
    }
}

/// A process that lives only while the tree is being forked, as CRIU's helpers do: it
/// stands in for a session or process-group leader that was gone at dump time (a daemon
/// whose intermediate parent exited, say). It takes that leader's PID, starts the
/// session (or the group), forks the tasks that belong there and exits; the root, their
/// reaper when they were dumped, adopts them again.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Helper {
    pub pid: i32,
    /// Leads a new session (`setsid`); otherwise a new group in its parent's session.
    pub new_session: bool,
    /// The helper that forks this one; `None`: the root does.
    pub parent: Option<usize>,
}

/// Something a task or helper forks while the tree is built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fork {
    /// The task at this index of [`TreePlan::tasks`].
    Task(usize),
    /// The helper at this index of [`TreePlan::helpers`].
    Helper(usize),
}

/// The whole process tree, parents before children (pstree order).
#[derive(Clone, Debug)]
pub struct TreePlan {
    pub tasks: Vec<TaskNode>,
    /// The namespaces the root had of its own.
    pub ns: crate::ns::NsPlan,
    /// The nftables table the dump locked the network with, if it did.
    pub lock_table: Option<String>,
    /// Stand-ins for leaders that were gone at dump time.
    pub helpers: Vec<Helper>,
    /// For each task, the helper that forks it (`None`: its parent does).
    pub via: Vec<Option<usize>>,
}

impl TreePlan {
    pub fn root(&self) -> &TaskNode {
        &self.tasks[0]
    }

    pub fn alive(&self) -> impl Iterator<Item = &TaskPlan> {
        self.tasks.iter().filter_map(|t| match t {
            TaskNode::Alive(p) => Some(p.as_ref()),
            TaskNode::Zombie { .. } => None,
        })
    }

    /// Indexes of the children of the task at `index`, in pstree order.
    pub fn children(&self, index: usize) -> Vec<usize> {
        let pid = self.tasks[index].pid();
        (0..self.tasks.len())
            .filter(|&i| i != 0 && self.tasks[i].ppid() == pid)
            .collect()
    }

    /// Whether the task at `index` shares its cwd, root and umask with its parent: it is
    /// then forked with `CLONE_FS` and leaves them to the parent.
    pub fn shares_fs_with_parent(&self, index: usize) -> bool {
        self.shares_with_parent(index, |t| t.fs_id)
    }

    /// Whether the task at `index` shares its descriptor table with its parent: it is
    /// then forked with `CLONE_FILES` and the parent installs the table.
    pub fn shares_files_with_parent(&self, index: usize) -> bool {
        self.shares_with_parent(index, |t| t.files_id)
    }

    /// Whether the task at `index`, forked by its parent (not a helper), has the same
    /// `id` as that parent.
    fn shares_with_parent(&self, index: usize, id: impl Fn(&TaskPlan) -> u32) -> bool {
        let TaskNode::Alive(t) = &self.tasks[index] else {
            return false;
        };
        index > 0
            && self.via.get(index).copied().flatten().is_none()
            && self.alive().any(|p| p.pid == t.ppid && id(p) == id(t))
    }

    /// The VMAs of the task at `index` that a child it forks has too — the same range,
    /// private anonymous on both sides, as a fork leaves them. The task maps its copy
    /// before forking, so that the child shares its pages copy-on-write again.
    pub fn shared_with_children(&self, index: usize) -> Vec<(u64, u64)> {
        let TaskNode::Alive(t) = &self.tasks[index] else {
            return Vec::new();
        };
        let children: Vec<&TaskPlan> = self
            .forks_of_task(index)
            .into_iter()
            .filter_map(|f| match f {
                Fork::Task(i) => match &self.tasks[i] {
                    TaskNode::Alive(c) => Some(c.as_ref()),
                    TaskNode::Zombie { .. } => None,
                },
                Fork::Helper(_) => None,
            })
            .collect();
        t.mm.vmas
            .iter()
            .filter(|v| inheritable(v))
            .filter(|v| {
                children.iter().any(|c| {
                    c.mm.vmas
                        .iter()
                        .any(|w| inheritable(w) && w.start == v.start && w.end == v.end)
                })
            })
            .map(|v| (v.start, v.end))
            .collect()
    }

    /// What the task at `index` forks: its children, but those a helper forks, then the
    /// helpers the root starts.
    pub fn forks_of_task(&self, index: usize) -> Vec<Fork> {
        let mut out: Vec<Fork> = self
            .children(index)
            .into_iter()
            .filter(|&i| self.via.get(i).copied().flatten().is_none())
            .map(Fork::Task)
            .collect();
        if index == 0 {
            out.extend(self.helpers_under(None));
        }
        out
    }

    /// What helper `h` forks: the helpers inside its session, then its tasks.
    pub fn forks_of_helper(&self, h: usize) -> Vec<Fork> {
        let mut out = self.helpers_under(Some(h));
        out.extend(
            (0..self.tasks.len())
                .filter(|&i| self.via.get(i).copied().flatten() == Some(h))
                .map(Fork::Task),
        );
        out
    }

    fn helpers_under(&self, parent: Option<usize>) -> Vec<Fork> {
        (0..self.helpers.len())
            .filter(|&h| self.helpers[h].parent == parent)
            .map(Fork::Helper)
            .collect()
    }
}

/// Private anonymous memory a fork hands down as it is: not a stack (it grows), not the
/// kernel's, no file or shared object behind it.
pub fn inheritable(v: &pb::VmaEntry) -> bool {
    use crate::vma;
    v.status & vma::ANON_PRIVATE != 0
        && v.status
            & (vma::STACK
                | vma::VDSO
                | vma::VVAR
                | vma::VSYSCALL
                | vma::SYSVIPC
                | vma::ANON_SHARED
                | vma::FILE_MASK)
            == 0
        && v.flags & libc::MAP_GROWSDOWN as u32 == 0
}

/// Works out the helpers the tree needs, like CRIU does from `pstree.img` alone: a child
/// of the root in a session whose leader is not in the tree gets a session helper with
/// the leader's PID; one in a group whose leader is missing gets a group helper (inside
/// the session helper, if there is one). Only the root's children can be placed so: the
/// root adopts them when their helper exits. Other tasks keep the session and group
/// they inherit or join (the dump refuses the rest).
pub fn plan_helpers(tasks: &[TaskNode]) -> (Vec<Helper>, Vec<Option<usize>>) {
    let mut helpers: Vec<Helper> = Vec::new();
    let mut via = vec![None; tasks.len()];
    let Some(root) = tasks.first() else {
        return (helpers, via);
    };
    let (root_pgid, root_sid) = root.group();
    let present = |pid: i32| tasks.iter().any(|t| t.pid() == pid);
    let helper = |helpers: &mut Vec<Helper>, pid: i32, new_session: bool, parent| match helpers
        .iter()
        .position(|h| h.pid == pid)
    {
        Some(i) => i,
        None => {
            helpers.push(Helper {
                pid,
                new_session,
                parent,
            });
            helpers.len() - 1
        }
    };
    for (i, t) in tasks.iter().enumerate().skip(1) {
        if t.ppid() != root.pid() {
            continue;
        }
        let (pid, (pgid, sid)) = (t.pid(), t.group());
        let session = (sid != pid && sid != root_sid && sid > 0 && !present(sid))
            .then(|| helper(&mut helpers, sid, true, None));
        // A group helper lives in the root's session or in the session helper's.
        let group_needed = match session {
            Some(_) => pgid != sid,
            None => sid == root_sid && pgid != root_pgid,
        };
        let group = (group_needed && pgid != pid && pgid > 0 && !present(pgid))
            .then(|| helper(&mut helpers, pgid, false, session));
        via[i] = group.or(session);
    }
    (helpers, via)
}

/// Reads and validates the image set in `dir`.
pub fn read(dir: &ImageDir) -> Result<TreePlan> {
    let inv: pb::InventoryEntry = dir.read_one(ImageKind::INVENTORY, names::INVENTORY)?;
    if !matches!(inv.img_version, 1 | 2) {
        return Err(bad(
            names::INVENTORY,
            format!("unsupported images version {}", inv.img_version),
        ));
    }
    if inv.fdinfo_per_id != Some(true) {
        return Err(bad(
            names::INVENTORY,
            "too old image (fdinfo_per_id not set)",
        ));
    }
    let tree: Vec<pb::PstreeEntry> = dir.read(ImageKind::PSTREE, names::PSTREE)?;
    if tree.is_empty() {
        return Err(bad(names::PSTREE, "holds no process"));
    }
    let mut seen = std::collections::HashSet::new();
    let mut tasks = Vec::with_capacity(tree.len());
    for (i, e) in tree.iter().enumerate() {
        if e.pid == 0 || e.pid > i32::MAX as u32 || !seen.insert(e.pid) {
            return Err(bad(
                names::PSTREE,
                format!("entry {i}: invalid or repeated pid {}", e.pid),
            ));
        }
        if i > 0 && !tree[..i].iter().any(|p| p.pid == e.ppid) {
            return Err(bad(
                names::PSTREE,
                format!(
                    "pid {}: its parent {} is not listed before it",
                    e.pid, e.ppid
                ),
            ));
        }
        let core_name = names::core(e.pid);
        let core: pb::CoreEntry = dir.read_one(ImageKind::CORE, &core_name)?;
        let state = core.tc.as_ref().map(|tc| tc.task_state);
        if state == Some(2) {
            if i == 0 {
                return Err(bad(&core_name, "the root of the tree is a zombie"));
            }
            let exit_code = core.tc.as_ref().map_or(0, |tc| tc.exit_code);
            tasks.push(TaskNode::Zombie {
                pid: e.pid as i32,
                ppid: e.ppid as i32,
                pgid: e.pgid as i32,
                sid: e.sid as i32,
                exit_code,
            });
        } else {
            tasks.push(TaskNode::Alive(Box::new(read_task(dir, e)?)));
        }
    }
    let root_ids: pb::TaskKobjIdsEntry = dir.read_one(ImageKind::IDS, &names::ids(tree[0].pid))?;
    let ns = crate::ns::read(dir, &inv, &root_ids)?;
    if ns.flags & libc::CLONE_NEWPID != 0 && tree[0].pid != 1 {
        return Err(bad(
            names::PSTREE,
            format!("the root of a pid namespace is pid {}, not 1", tree[0].pid),
        ));
    }
    let lock_table = match (inv.network_lock_method, &inv.dump_criu_run_id) {
        (Some(1), Some(run)) => Some(stasis_netns::lock::lock_table_name(run)),
        _ => None,
    };
    let (helpers, via) = plan_helpers(&tasks);
    Ok(TreePlan {
        tasks,
        ns,
        lock_table,
        helpers,
        via,
    })
}

/// Reads one live process.
fn read_task(dir: &ImageDir, task: &pb::PstreeEntry) -> Result<TaskPlan> {
    let pid = task.pid as i32;
    if pid <= 0 || task.threads.first() != Some(&task.pid) {
        return Err(bad(
            names::PSTREE,
            format!(
                "pid {pid}: the thread list {:?} does not start with the leader",
                task.threads
            ),
        ));
    }
    let mut seen = std::collections::HashSet::new();
    if !task
        .threads
        .iter()
        .all(|t| *t != 0 && *t <= i32::MAX as u32 && seen.insert(*t))
    {
        return Err(bad(
            names::PSTREE,
            format!(
                "pid {pid}: invalid or repeated thread ids {:?}",
                task.threads
            ),
        ));
    }
    let mut threads = Vec::new();
    for &tid in &task.threads[1..] {
        let name = names::core(tid);
        let core: pb::CoreEntry = dir.read_one(ImageKind::CORE, &name)?;
        if core.mtype != pb::core_entry::March::X8664 as i32 {
            return Err(bad(
                &name,
                format!("architecture {} is not x86-64", core.mtype),
            ));
        }
        threads.push(ThreadPlan {
            tid: tid as i32,
            thread_info: core
                .thread_info
                .ok_or_else(|| bad(&name, "no thread_info"))?,
            thread_core: core
                .thread_core
                .ok_or_else(|| bad(&name, "no thread_core"))?,
        });
    }
    let core_name = names::core(task.pid);
    let core: pb::CoreEntry = dir.read_one(ImageKind::CORE, &core_name)?;
    if core.mtype != pb::core_entry::March::X8664 as i32 {
        return Err(bad(
            &core_name,
            format!("architecture {} is not x86-64", core.mtype),
        ));
    }
    let thread_info = core
        .thread_info
        .clone()
        .ok_or_else(|| bad(&core_name, "no thread_info"))?;
    let tc = core
        .tc
        .clone()
        .ok_or_else(|| bad(&core_name, "no tc (task core)"))?;
    let thread_core = core
        .thread_core
        .clone()
        .ok_or_else(|| bad(&core_name, "no thread_core"))?;
    if !matches!(tc.task_state, 1 | 3) {
        return Err(RestoreError::Unsupported(format!(
            "{core_name}: task state {} (only alive or stopped tasks)",
            tc.task_state
        )));
    }
    let ids: pb::TaskKobjIdsEntry = dir.read_one(ImageKind::IDS, &names::ids(task.pid))?;
    let mm_name = names::mm(task.pid);
    let mm: pb::MmEntry = dir.read_one(ImageKind::MM, &mm_name)?;
    check_vmas(&mm_name, &mm.vmas)?;
    let (head, pagemap) = dir.read_pagemap(task.pid)?;
    let pm_name = names::pagemap(task.pid);
    let pages_bytes = check_pagemap(&pm_name, &pagemap, &mm.vmas)?;

    let file_entries: Vec<pb::FileEntry> = dir.read(ImageKind::FILES, names::FILES)?;
    let objects = crate::fds::Objects::read(dir, file_entries)?;
    let files = objects.regular_files();
    let file = |id: u32, what: &str, img: &str| -> Result<pb::RegFileEntry> {
        files.get(&id).cloned().ok_or_else(|| {
            bad(
                img,
                format!(
                    "{what} refers to file id {id}, which {} lacks",
                    names::FILES
                ),
            )
        })
    };
    let fdinfo_name = names::fdinfo(ids.files_id);
    let mut fds = Vec::new();
    for e in dir.read::<pb::FdinfoEntry>(ImageKind::FDINFO, &fdinfo_name)? {
        objects.check_fd(&e, &fdinfo_name)?;
        if e.fd > i32::MAX as u32 / 2 {
            return Err(bad(
                &fdinfo_name,
                format!("fd number {} out of range", e.fd),
            ));
        }
        fds.push(FdPlan {
            fd: e.fd as i32,
            cloexec: e.flags & libc::FD_CLOEXEC as u32 != 0,
            file_id: e.id,
        });
    }
    fds.sort_by_key(|f| f.fd);
    if fds.windows(2).any(|w| w[0].fd == w[1].fd) {
        return Err(bad(&fdinfo_name, "the same fd number appears twice"));
    }
    let fs_name = names::fs(task.pid);
    let fs: pb::FsEntry = dir.read_one(ImageKind::FS, &fs_name)?;
    let cwd = file(fs.cwd_id, "cwd", &fs_name)?.name;
    let root = file(fs.root_id, "root", &fs_name)?.name;
    let exe = file(mm.exe_file_id, "exe", &mm_name)?.name;
    for v in &mm.vmas {
        if v.status & crate::vma::FILE_MASK != 0 {
            file(v.shmid as u32, &format!("mapping {:#x}", v.start), &mm_name)?;
        }
    }
    let seccomp = dir
        .read_if_exists::<pb::SeccompEntry>(ImageKind::SECCOMP, names::SECCOMP)?
        .and_then(|v| v.into_iter().next())
        .map(|e| e.seccomp_filters)
        .unwrap_or_default();
    for (i, f) in seccomp.iter().enumerate() {
        if f.prev.is_some_and(|p| p as usize >= i)
            || f.filter.len() % 8 != 0
            || f.filter.len() > 4096 * 8
        {
            return Err(bad(
                names::SECCOMP,
                format!(
                    "filter {i}: {} bytes, previous {:?}",
                    f.filter.len(),
                    f.prev
                ),
            ));
        }
    }
    Ok(TaskPlan {
        seccomp,
        pid,
        ppid: task.ppid as i32,
        pgid: task.pgid as i32,
        sid: task.sid as i32,
        thread_info,
        tc,
        thread_core,
        threads,
        mm,
        pagemap,
        pages_name: names::pages(head.pages_id),
        pages_bytes,
        fds,
        cwd,
        root,
        umask: fs.umask.unwrap_or(0o022),
        exe,
        files,
        objects,
        fs_id: ids.fs_id,
        files_id: ids.files_id,
    })
}

fn check_vmas(img: &str, vmas: &[pb::VmaEntry]) -> Result<()> {
    let mut prev_end = 0u64;
    for (i, v) in vmas.iter().enumerate() {
        if v.start % PAGE != 0 || v.end % PAGE != 0 || v.end <= v.start || v.pgoff % PAGE != 0 {
            return Err(bad(
                img,
                format!(
                    "vma {i} {:#x}-{:#x} is not a page-aligned range",
                    v.start, v.end
                ),
            ));
        }
        if v.start < prev_end {
            return Err(bad(
                img,
                format!("vma {i} at {:#x} overlaps or is out of order", v.start),
            ));
        }
        if v.end > 0xffff_ffff_ffff_f000 {
            return Err(bad(img, format!("vma {i} ends beyond the address space")));
        }
        prev_end = v.end;
    }
    Ok(())
}

fn check_pagemap(img: &str, pm: &[pb::PagemapEntry], vmas: &[pb::VmaEntry]) -> Result<u64> {
    let mut total = 0u64;
    let mut prev_end = 0u64;
    for (i, e) in pm.iter().enumerate() {
        let n = e.nr_pages.unwrap_or(u64::from(e.compat_nr_pages));
        let flags = e.flags.unwrap_or(PE_PRESENT);
        if flags != PE_PRESENT {
            return Err(RestoreError::Unsupported(format!(
                "{img}: entry {i} has flags {flags:#x}; incremental and lazy images are not supported yet"
            )));
        }
        let end = n
            .checked_mul(PAGE)
            .and_then(|len| e.vaddr.checked_add(len))
            .ok_or_else(|| bad(img, format!("entry {i} overflows")))?;
        if e.vaddr % PAGE != 0 || n == 0 || e.vaddr < prev_end {
            return Err(bad(
                img,
                format!(
                    "entry {i} at {:#x} ({n} pages) is misaligned, empty or out of order",
                    e.vaddr
                ),
            ));
        }
        let inside = vmas.iter().any(|v| v.start <= e.vaddr && end <= v.end)
            || covered_by_adjacent(vmas, e.vaddr, end);
        if !inside {
            return Err(bad(
                img,
                format!(
                    "entry {i} at {:#x} ({n} pages) lies outside every vma",
                    e.vaddr
                ),
            ));
        }
        prev_end = end;
        total += n * PAGE;
    }
    Ok(total)
}

/// A run of pages may span several adjacent VMAs.
fn covered_by_adjacent(vmas: &[pb::VmaEntry], start: u64, end: u64) -> bool {
    let mut at = start;
    for v in vmas {
        if v.start <= at && at < v.end {
            at = v.end;
            if at >= end {
                return true;
            }
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zombie(pid: i32, ppid: i32, pgid: i32, sid: i32) -> TaskNode {
        TaskNode::Zombie {
            pid,
            ppid,
            pgid,
            sid,
            exit_code: 0,
        }
    }

    #[test]
    fn lost_leaders_of_the_roots_children_get_helpers_nested_session_then_group() {
        let tasks = [
            zombie(10, 1, 10, 10),
            // A daemon: session and group of the gone 20.
            zombie(21, 10, 20, 20),
            // Another task of that session: the same helper.
            zombie(22, 10, 20, 20),
            // A group of the gone 30 in the root's session.
            zombie(31, 10, 30, 10),
            // Session 40 and group 41 both gone: a group helper inside a session helper.
            zombie(42, 10, 41, 40),
            // An ordinary child and a grandchild with a foreign session: no helper
            // (only the root adopts).
            zombie(50, 10, 10, 10),
            zombie(51, 50, 60, 60),
        ];
        let (helpers, via) = plan_helpers(&tasks);
        let h = |pid, new_session, parent| Helper {
            pid,
            new_session,
            parent,
        };
        assert_eq!(
            helpers,
            vec![
                h(20, true, None),
                h(30, false, None),
                h(40, true, None),
                h(41, false, Some(2))
            ]
        );
        assert_eq!(
            via,
            vec![None, Some(0), Some(0), Some(1), Some(3), None, None]
        );
        let tree = TreePlan {
            tasks: tasks.to_vec(),
            ns: Default::default(),
            lock_table: None,
            helpers,
            via,
        };
        assert_eq!(
            tree.forks_of_task(0),
            vec![
                Fork::Task(5),
                Fork::Helper(0),
                Fork::Helper(1),
                Fork::Helper(2)
            ]
        );
        assert_eq!(tree.forks_of_helper(0), vec![Fork::Task(1), Fork::Task(2)]);
        assert_eq!(tree.forks_of_helper(2), vec![Fork::Helper(3)]);
        assert_eq!(tree.forks_of_helper(3), vec![Fork::Task(4)]);
        assert_eq!(tree.forks_of_task(5), vec![Fork::Task(6)]);
    }

    #[test]
    fn a_group_led_by_a_task_of_the_tree_needs_no_helper() {
        let tasks = [
            zombie(10, 1, 10, 10),
            zombie(11, 10, 11, 10),
            zombie(12, 10, 11, 10),
        ];
        let (helpers, via) = plan_helpers(&tasks);
        assert!(helpers.is_empty());
        assert_eq!(via, vec![None, None, None]);
    }
}
