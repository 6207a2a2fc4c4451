//! Mount propagation comes back as it was dumped: a container whose mounts are slaves of
//! the host's (runc's default `rslave`), with a peer group of its own (a shared tmpfs and
//! a bind of it) and a slave of that group, is dumped and restored into new namespaces.
//! Afterwards, by `/proc/PID/mountinfo` and by what each mount event reaches:
//! - the tmpfs and its bind are one peer group, and the slave is that group's slave:
//!   a mount under the tmpfs shows up in both, a mount under the slave in neither;
//! - the container's root is again a slave of the host's shared mount of its rootfs: a
//!   host mount under the rootfs shows up inside, and nothing mounted inside reaches the
//!   host;
//! - the files on the tmpfs are back, and the container's counter continues.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use stasis_e2e::container::{busybox_rootfs, Container};
use stasis_e2e::{dump, Pid, ScratchDir};

const HOSTNAME: &str = "prop-ct";

/// `(shared, master)` peer group ids of each mount point in `pid`'s mount table.
fn propagation(pid: Pid) -> HashMap<String, (Option<u32>, Option<u32>)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).unwrap();
    let mut out = HashMap::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        let Some(dash) = fields.iter().position(|f| *f == "-") else {
            continue;
        };
        let tag = |prefix: &str| {
            fields[6..dash]
                .iter()
                .find_map(|f| f.strip_prefix(prefix)?.parse().ok())
        };
        out.insert(fields[4].to_string(), (tag("shared:"), tag("master:")));
    }
    out
}

fn run(program: &str, args: &[&str]) {
    let out = Command::new(program).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The rootfs as a shared mount of its own on the host, unmounted on drop.
struct SharedRoot(PathBuf);

impl SharedRoot {
    fn new(path: &Path) -> SharedRoot {
        let p = path.to_str().unwrap();
        run("mount", &["--bind", p, p]);
        let root = SharedRoot(path.to_path_buf());
        run("mount", &["--make-private", p]);
        run("mount", &["--make-shared", p]);
        root
    }

    /// Its peer group on the host.
    fn group(&self) -> u32 {
        let me = propagation(std::process::id() as Pid);
        me[self.0.to_str().unwrap()]
            .0
            .expect("the rootfs is shared on the host")
    }
}

impl Drop for SharedRoot {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .args(["-R", "-l"])
            .arg(&self.0)
            .output();
    }
}

fn ticks(rootfs: &Path) -> Vec<String> {
    std::fs::read_to_string(rootfs.join("data/ticks"))
        .unwrap_or_default()
        .lines()
        .map(String::from)
        .collect()
}

fn wait_ticks(rootfs: &Path, more_than: usize) -> Vec<String> {
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let t = ticks(rootfs);
        if t.len() > more_than {
            return t;
        }
        assert!(Instant::now() < until, "no tick after {more_than}: {t:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Checks the container's peer groups; returns the tmpfs group's id.
fn assert_groups(pid: Pid, host_group: u32, when: &str) -> u32 {
    let p = propagation(pid);
    let (a, b, c) = (p["/mnt/a"], p["/mnt/b"], p["/mnt/c"]);
    let group =
        a.0.unwrap_or_else(|| panic!("{when}: /mnt/a is shared: {p:?}"));
    assert_eq!(
        b,
        (Some(group), None),
        "{when}: /mnt/b is a peer of /mnt/a: {p:?}"
    );
    assert_eq!(
        c,
        (None, Some(group)),
        "{when}: /mnt/c is a slave of /mnt/a: {p:?}"
    );
    assert_eq!(
        p["/"],
        (None, Some(host_group)),
        "{when}: the root is a slave of the host's rootfs mount (group {host_group}): {p:?}"
    );
    group
}

#[test]
fn peer_groups_slaves_and_a_slave_root_come_back_with_their_propagation() {
    let dir = ScratchDir::new("mount-propagation");
    let images = dir.subdir("images");
    let rootfs = dir.subdir("rootfs");
    busybox_rootfs(&rootfs, &["nsworker_static"]);
    for d in ["mnt/a", "mnt/b", "mnt/c", "hostprobe"] {
        std::fs::create_dir_all(rootfs.join(d)).unwrap();
    }
    let shared = SharedRoot::new(&rootfs);
    let host_group = shared.group();
    let mut c = Container::start_slave(&rootfs, HOSTNAME, &["/bin/nsworker", HOSTNAME]);
    let sh = |c: &Container, script: &str| c.nsenter(&["-m"], &["/bin/sh", "-c", script]);
    sh(
        &c,
        "set -e; mount -t tmpfs pa /mnt/a; mount --make-shared /mnt/a; \
         mount --bind /mnt/a /mnt/b; mount --bind /mnt/a /mnt/c; mount --make-slave /mnt/c; \
         echo kept > /mnt/a/f; mkdir /mnt/a/x /mnt/a/y",
    );
    let before = assert_groups(c.pid, host_group, "before the dump");
    let at_dump = wait_ticks(&rootfs, 2).len();

    dump(&images, c.pid, &["--ext-mount-map", "/dev/null:devnull"]).assert_success();
    c.assert_gone(Duration::from_secs(10));
    let pid = c.restore_from(&images, &dir.join("pid"), &[]);
    let after = assert_groups(pid, host_group, "after the restore");
    let t = wait_ticks(&rootfs, ticks(&rootfs).len());
    assert!(
        t.len() > at_dump && t.iter().all(|l| l.ends_with(" ok")),
        "the container goes on: {t:?}"
    );

    // What each mount event reaches.
    let out = sh(
        &c,
        "set -e; cat /mnt/b/f /mnt/c/f; mount -t tmpfs px /mnt/a/x; echo p > /mnt/a/x/p; \
         cat /mnt/b/x/p /mnt/c/x/p; mount -t tmpfs py /mnt/c/y; echo q > /mnt/c/y/q; \
         if [ -e /mnt/a/y/q ] || [ -e /mnt/b/y/q ]; then echo leaked; fi",
    );
    assert_eq!(
        out, "kept\nkept\np\np\n",
        "a mount under the tmpfs reaches its peer and its slave, one under the slave \
         reaches neither (groups {before} before, {after} after)"
    );
    let probe = rootfs.join("hostprobe");
    run(
        "mount",
        &["-t", "tmpfs", "hostprobe", probe.to_str().unwrap()],
    );
    std::fs::write(probe.join("h"), "from the host\n").unwrap();
    assert_eq!(
        sh(&c, "cat /hostprobe/h"),
        "from the host\n",
        "a host mount under the rootfs reaches the restored container"
    );
    let host = propagation(std::process::id() as Pid);
    let leaked: Vec<&String> = host
        .keys()
        .filter(|m| m.starts_with(rootfs.join("mnt").to_str().unwrap()))
        .collect();
    assert!(
        leaked.is_empty(),
        "no container mount reaches the host: {leaked:?}"
    );
    drop(shared);
}
