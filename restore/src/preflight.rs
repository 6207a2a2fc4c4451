//! Checks that must all pass before anything is created: the PID is free, every file the
//! image refers to is there, the pages file is complete, this kernel's vDSO is the one the
//! image was dumped with, and this CPU enables every XSAVE component the image uses.

use crate::plan::TaskPlan;
use crate::{vma, RestoreError, Result};
use stasis_images::ImageDir;
use std::os::unix::fs::FileExt;

/// Runs every check.
/// In a new pid namespace every PID is free; in a new mount namespace the paths exist
/// only once its mount tree is built (the root task checks them then).
pub fn check(plan: &TaskPlan, dir: &ImageDir, cpu_cap: Option<&str>, ns_flags: i32) -> Result<()> {
    crate::cpu_gate::check(dir, cpu_cap)?;
    for tid in std::iter::once(plan.pid).chain(plan.threads.iter().map(|t| t.tid)) {
        if ns_flags & libc::CLONE_NEWPID == 0 && stasis_sys::process::pid_in_use(tid) {
            return Err(RestoreError::PidTaken { pid: tid });
        }
    }
    if ns_flags & libc::CLONE_NEWNS != 0 {
        return check_pages(plan, dir);
    }
    let mut paths: Vec<(&str, String)> = vec![
        ("cwd", plan.cwd.clone()),
        ("root", plan.root.clone()),
        ("exe", plan.exe.clone()),
    ];
    paths.extend(plan.objects.paths_needed(&plan.fds));
    for v in plan
        .mm
        .vmas
        .iter()
        .filter(|v| v.status & vma::FILE_MASK != 0)
    {
        if let Some(f) = plan.files.get(&(v.shmid as u32)) {
            // A JVM's perf-data file that another JVM removed meanwhile is recreated from
            // the image (see `recreate_perf_data`).
            if perf_data_saved(dir, v).is_some() && std::fs::metadata(&f.name).is_err() {
                continue;
            }
            paths.push(("mapped file", f.name.clone()));
        }
    }
    for (what, p) in paths {
        if let Err(e) = std::fs::metadata(&p) {
            return Err(RestoreError::FileMissing {
                what: what.to_string(),
                path: p,
                source: e,
            });
        }
    }
    check_pages(plan, dir)
}

/// The pages file, the vDSO and the XSAVE components.
fn check_pages(plan: &TaskPlan, dir: &ImageDir) -> Result<()> {
    let pages_path = dir.file_path(&plan.pages_name);
    let len = std::fs::metadata(&pages_path)
        .map_err(|source| RestoreError::FileMissing {
            what: "pages image".into(),
            path: pages_path.display().to_string(),
            source,
        })?
        .len();
    if len != plan.pages_bytes {
        return Err(RestoreError::BadImage {
            file: plan.pages_name.clone(),
            what: format!(
                "holds {len} bytes but the pagemap lists {} bytes of pages",
                plan.pages_bytes
            ),
        });
    }
    check_vdso(plan, dir)?;
    check_xsave(plan)
}

/// Offset in the pages file of the page at `addr`, if it was saved.
fn page_offset(plan: &TaskPlan, addr: u64) -> Option<u64> {
    let mut off = 0;
    for e in &plan.pagemap {
        let n = e.nr_pages.unwrap_or(u64::from(e.compat_nr_pages));
        if e.vaddr <= addr && addr < e.vaddr + n * 4096 {
            return Some(off + (addr - e.vaddr));
        }
        off += n * 4096;
    }
    None
}

/// The running kernel's [vdso] must be byte-identical to the dumped one: it is moved, not
/// rebuilt, at restore.
fn check_vdso(plan: &TaskPlan, dir: &ImageDir) -> Result<()> {
    let Some(img) = plan.mm.vmas.iter().find(|v| v.status & vma::VDSO != 0) else {
        return Ok(());
    };
    let own = crate::layout::special_mappings(std::process::id() as i32)?;
    let vdso = own.vdso.ok_or_else(|| {
        RestoreError::Unsupported("this kernel maps no [vdso], the image has one".into())
    })?;
    if vdso.1 - vdso.0 != img.end - img.start {
        return Err(RestoreError::Unsupported(format!(
            "the image's vDSO is {} bytes, this kernel's is {} bytes: it was dumped on another kernel build, and moving to another vDSO is not supported yet",
            img.end - img.start,
            vdso.1 - vdso.0
        )));
    }
    if let Some(vv) = plan.mm.vmas.iter().find(|v| v.status & vma::VVAR != 0) {
        let own_len = own.vvar.map_or(0, |r| r.1 - r.0) + own.vvar_vclock.map_or(0, |r| r.1 - r.0);
        if own_len != vv.end - vv.start {
            return Err(RestoreError::Unsupported(format!(
                "the image's vvar area is {} bytes, this kernel's is {own_len} bytes (another kernel build)",
                vv.end - vv.start
            )));
        }
    }
    let pages = std::fs::File::open(dir.file_path(&plan.pages_name)).map_err(|source| {
        RestoreError::Io {
            path: dir.file_path(&plan.pages_name),
            source,
        }
    })?;
    let me = std::fs::File::open("/proc/self/mem").map_err(|source| RestoreError::Io {
        path: "/proc/self/mem".into(),
        source,
    })?;
    let mut a = vec![0u8; 4096];
    let mut b = vec![0u8; 4096];
    let mut addr = img.start;
    while addr < img.end {
        if let Some(off) = page_offset(plan, addr) {
            pages
                .read_exact_at(&mut a, off)
                .map_err(|source| RestoreError::Io {
                    path: dir.file_path(&plan.pages_name),
                    source,
                })?;
            me.read_exact_at(&mut b, vdso.0 + (addr - img.start))
                .map_err(|source| RestoreError::Io {
                    path: "/proc/self/mem".into(),
                    source,
                })?;
            if a != b {
                return Err(RestoreError::Unsupported(format!(
                    "the image's vDSO differs from this kernel's at offset {:#x}: it was dumped on another kernel build, and moving to another vDSO is not supported yet",
                    addr - img.start
                )));
            }
        }
        addr += 4096;
    }
    Ok(())
}

fn check_xsave(plan: &TaskPlan) -> Result<()> {
    let bv = plan
        .thread_info
        .fpregs
        .xsave
        .as_ref()
        .map_or(0b11, |x| x.xstate_bv);
    let host = stasis_sys::xsave::supported_user_features();
    let missing = bv & !host;
    if missing != 0 {
        return Err(RestoreError::Cpu(format!(
            "the image's task uses XSAVE state components {missing:#x} that this CPU does not have (image xstate_bv {bv:#x}, host {host:#x})"
        )));
    }
    Ok(())
}

/// The name of the saved contents of the perf-data file `v` maps, if the image has them.
fn perf_data_saved(dir: &ImageDir, v: &stasis_images::pb::VmaEntry) -> Option<String> {
    if v.status & vma::FILE_SHARED == 0 {
        return None;
    }
    let name =
        stasis_images::names::pagemap_shmem(stasis_checkpoint::PERF_DATA_KEY | v.shmid as u32);
    dir.exists(&name).then_some(name)
}

/// Recreates every JVM perf-data file (`/tmp/hsperfdata_<user>/<pid>`) the tree maps
/// that is gone (any JVM that starts deletes the files of dead pids), with its dumped
/// contents, owner and mode. Returns the files created, for removal if the restore fails.
pub fn recreate_perf_data(
    tree: &crate::plan::TreePlan,
    dir: &ImageDir,
) -> Result<Vec<std::path::PathBuf>> {
    use std::os::unix::fs::{FileExt, PermissionsExt};
    let mut created = Vec::new();
    for plan in tree.alive() {
        for v in &plan.mm.vmas {
            let (Some(f), Some(_)) = (plan.files.get(&(v.shmid as u32)), perf_data_saved(dir, v))
            else {
                continue;
            };
            if !stasis_checkpoint::is_perf_data(&f.name) || std::fs::metadata(&f.name).is_ok() {
                continue;
            }
            let size = f.size.unwrap_or(v.pgoff + (v.end - v.start));
            let entry = stasis_images::pb::MemfdInodeEntry {
                shmid: stasis_checkpoint::PERF_DATA_KEY | v.shmid as u32,
                size,
                ..Default::default()
            };
            let chunks = crate::fds::memfd::read_contents(dir, &entry, &mut 0)?;
            let path = std::path::PathBuf::from(&f.name);
            let io = |source: std::io::Error| RestoreError::Io {
                path: path.clone(),
                source,
            };
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).map_err(io)?;
            }
            let file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
                .map_err(io)?;
            created.push(path.clone());
            for (off, data) in &chunks {
                file.write_all_at(data, *off).map_err(io)?;
            }
            file.set_len(size).map_err(io)?;
            file.set_permissions(std::fs::Permissions::from_mode(
                f.mode.unwrap_or(0o600) & 0o7777,
            ))
            .map_err(io)?;
            if let Some(cr) = plan.thread_core.creds.as_ref() {
                std::os::unix::fs::chown(&path, Some(cr.uid), Some(cr.gid)).map_err(io)?;
            }
            log::info!(
                "recreated the JVM perf-data file {} ({size} bytes) that was gone",
                path.display()
            );
        }
    }
    Ok(created)
}
