//! A container without a runtime: a busybox root filesystem and `nsinit`, which starts
//! a program as PID 1 of new pid, mount, uts, ipc and network namespaces inside it
//! (its own /proc, tmpfs /tmp and /dev, devpts, mqueue, the host's /dev/null bound in
//! as an external mount and bound again over /proc/timer_list as a mask).
//!
//! The container's init is reparented to the test (a child subreaper) and killed and
//! reaped by a guard when the test ends.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::proc::{self, Pid, ProcessGuard};
use crate::workload_bin;

/// The busybox binary the root filesystems are built from (Debian's busybox-static).
pub const BUSYBOX: &str = "/bin/busybox";

/// Builds a minimal root filesystem at `root`: busybox and every applet in /bin, the
/// directories a container needs, root in /etc/passwd and /etc/group, and the
/// workloads `programs` (statically linked) in /bin under their names without
/// `_static`.
pub fn busybox_rootfs(root: &Path, programs: &[&str]) {
    for d in [
        "bin", "proc", "sys", "dev", "tmp", "etc", "data", "root", "run",
    ] {
        std::fs::create_dir_all(root.join(d))
            .unwrap_or_else(|e| panic!("mkdir {}: {e}", root.join(d).display()));
    }
    assert!(
        Path::new(BUSYBOX).is_file(),
        "{BUSYBOX} is missing: apt-get install -y busybox-static"
    );
    std::fs::copy(BUSYBOX, root.join("bin/busybox")).expect("copy busybox");
    let list = std::process::Command::new(BUSYBOX)
        .arg("--list")
        .output()
        .expect("busybox --list");
    assert!(list.status.success(), "busybox --list: {list:?}");
    for applet in String::from_utf8_lossy(&list.stdout)
        .lines()
        .filter(|a| !a.is_empty() && *a != "busybox")
    {
        let _ = std::os::unix::fs::symlink("busybox", root.join("bin").join(applet));
    }
    std::fs::write(root.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
    std::fs::write(root.join("etc/group"), "root:x:0:\n").unwrap();
    for p in programs {
        let name = p.trim_end_matches("_static");
        std::fs::copy(workload_bin(p), root.join("bin").join(name))
            .unwrap_or_else(|e| panic!("copy workload {p}: {e}"));
    }
}

/// A container started by `nsinit`: its init's host PID, killed and reaped on drop.
pub struct Container {
    pub pid: Pid,
    pub rootfs: PathBuf,
    guard: ProcessGuard,
}

impl Container {
    /// Starts `argv` (a path inside `rootfs`) as PID 1 of a new container with host
    /// name `hostname`.
    pub fn start(rootfs: &Path, hostname: &str, argv: &[&str]) -> Container {
        Self::start_in(rootfs, hostname, argv, None)
    }

    /// [`Container::start`], in the network namespace `netns` (a path such as
    /// `/run/netns/NAME`) instead of a new one.
    pub fn start_in(
        rootfs: &Path,
        hostname: &str,
        argv: &[&str],
        netns: Option<&Path>,
    ) -> Container {
        Self::start_with(rootfs, hostname, argv, netns, None)
    }

    /// [`Container::start_in`], and with `userns` a user namespace of its own mapping
    /// its ids 0..65535 to the host's `userns..userns+65535` (the init runs as its root).
    pub fn start_with(
        rootfs: &Path,
        hostname: &str,
        argv: &[&str],
        netns: Option<&Path>,
        userns: Option<u32>,
    ) -> Container {
        Self::spawn(rootfs, hostname, argv, netns, userns, false)
    }

    /// [`Container::start`] with the container's mounts slaves of the host's (runc's
    /// default root propagation, `rslave`) instead of private.
    pub fn start_slave(rootfs: &Path, hostname: &str, argv: &[&str]) -> Container {
        Self::spawn(rootfs, hostname, argv, None, None, true)
    }

    fn spawn(
        rootfs: &Path,
        hostname: &str,
        argv: &[&str],
        netns: Option<&Path>,
        userns: Option<u32>,
        slave: bool,
    ) -> Container {
        proc::become_subreaper();
        let out = std::process::Command::new(workload_bin("nsinit"))
            .env("NSINIT_ROOT_SLAVE", if slave { "1" } else { "" })
            .env(
                "NSINIT_NETNS",
                netns.map(|p| p.as_os_str()).unwrap_or_default(),
            )
            .env(
                "NSINIT_USERNS",
                userns.map(|id| id.to_string()).unwrap_or_default(),
            )
            .arg(rootfs)
            .arg(hostname)
            .args(argv)
            .output()
            .expect("run nsinit");
        assert!(
            out.status.success(),
            "nsinit failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let pid: Pid = String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .expect("nsinit prints the init's pid");
        Container {
            pid,
            rootfs: rootfs.to_path_buf(),
            guard: ProcessGuard::new(pid, "nsworker"),
        }
    }

    /// Follows the container's init to a restored one (same image, new host PID).
    pub fn restored_as(&mut self, pid: Pid) {
        self.guard.disarm();
        self.pid = pid;
        self.guard = ProcessGuard::new(pid, "nsworker");
    }

    /// `stasis restore` of an nsinit container dumped from `images` into its rootfs (its
    /// `/dev/null` bind mapped back, `extra` options added); asserts success and follows
    /// the init to the restored one, whose host PID it returns.
    pub fn restore_from(&mut self, images: &Path, pidfile: &Path, extra: &[&str]) -> Pid {
        let rootfs = self
            .rootfs
            .to_str()
            .expect("a UTF-8 rootfs path")
            .to_string();
        let pidfile_arg = pidfile.to_str().expect("a UTF-8 pidfile path");
        let mut args = vec!["--root", &rootfs, "--ext-mount-map", "devnull:/dev/null"];
        args.extend_from_slice(extra);
        args.extend(["--pidfile", pidfile_arg]);
        crate::restore(images, &args).assert_success();
        let pid = read_pidfile(pidfile);
        self.restored_as(pid);
        pid
    }

    /// Waits for the init to be gone (dumped and killed).
    pub fn assert_gone(&self, timeout: Duration) {
        if let Err(e) = proc::wait_gone(self.pid, timeout) {
            panic!("container init {}: {e}", self.pid);
        }
    }

    /// Runs a host program inside the init's namespaces (`nsenter -t PID FLAGS`).
    pub fn nsenter(&self, flags: &[&str], argv: &[&str]) -> String {
        let out = std::process::Command::new("nsenter")
            .arg("-t")
            .arg(self.pid.to_string())
            .args(flags)
            .args(argv)
            .output()
            .expect("run nsenter");
        assert!(
            out.status.success(),
            "nsenter {flags:?} {argv:?} in {}: {}",
            self.pid,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

/// The PID in a pidfile stasis wrote (`--pidfile`); panics naming the file otherwise.
pub fn read_pidfile(path: &Path) -> Pid {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("pidfile {}: {e}", path.display()));
    text.trim()
        .parse()
        .unwrap_or_else(|_| panic!("pidfile {} holds {text:?}", path.display()))
}

/// Lines of the host's mount table that mention `path`: none may be left by a
/// container's restore, failed or not.
pub fn host_mounts_under(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let p = path.to_string_lossy();
    text.lines()
        .filter(|l| l.contains(p.as_ref()))
        .map(String::from)
        .collect()
}
