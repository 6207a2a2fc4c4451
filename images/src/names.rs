//! File names inside an image directory (`criu/image-desc.c`).
//!
//! Every name ends in `.img` except the service files `stats-dump`,
//! `stats-restore` and `irmap-cache`. Per-task files are keyed by the
//! virtual pid/tid, per-namespace files by CRIU's namespace id, `fdinfo-*` by
//! the `files_id` from `ids-*`, `pages-*` by the `pages_id` in the pagemap
//! head. `ghost-file-*` and `tcp-stream-*` use hexadecimal keys.

pub const INVENTORY: &str = "inventory.img";
pub const PSTREE: &str = "pstree.img";
pub const FILES: &str = "files.img";
pub const SECCOMP: &str = "seccomp.img";
pub const CGROUP: &str = "cgroup.img";
pub const CPUINFO: &str = "cpuinfo.img";
pub const TTY_INFO: &str = "tty-info.img";
pub const TTY_DATA: &str = "tty-data.img";
pub const PIPES_DATA: &str = "pipes-data.img";
pub const FIFO_DATA: &str = "fifo-data.img";
pub const SK_QUEUES: &str = "sk-queues.img";
pub const REMAP_FPATH: &str = "remap-fpath.img";
pub const MEMFD_INODE: &str = "memfd.img";
pub const FILE_LOCKS: &str = "filelocks.img";
pub const BINFMT_MISC: &str = "binfmt-misc.img";
pub const APPARMOR: &str = "apparmor.img";
pub const BPFMAP_DATA: &str = "bpfmap-data.img";
/// Dump statistics; a service file (no `.img`), in the work dir.
pub const STATS_DUMP: &str = "stats-dump";
/// Restore statistics; a service file (no `.img`), in the work dir.
pub const STATS_RESTORE: &str = "stats-restore";
/// Inotify path cache; a service file (no `.img`), in the work dir.
pub const IRMAP_CACHE: &str = "irmap-cache";

/// Legacy per-type images that current CRIU only reads (their objects now
/// live in `files.img` or inside `core-*`/`mm-*`).
pub mod legacy {
    pub const REG_FILES: &str = "reg-files.img";
    pub const EXT_FILES: &str = "ext-files.img";
    pub const NS_FILES: &str = "ns-files.img";
    pub const EVENTFD: &str = "eventfd.img";
    pub const EVENTPOLL: &str = "eventpoll.img";
    pub const EVENTPOLL_TFD: &str = "eventpoll-tfd.img";
    pub const SIGNALFD: &str = "signalfd.img";
    pub const INOTIFY: &str = "inotify.img";
    pub const INOTIFY_WD: &str = "inotify-wd.img";
    pub const FANOTIFY: &str = "fanotify.img";
    pub const FANOTIFY_MARK: &str = "fanotify-mark.img";
    pub const PIPES: &str = "pipes.img";
    pub const FIFO: &str = "fifo.img";
    pub const UNIXSK: &str = "unixsk.img";
    pub const INETSK: &str = "inetsk.img";
    pub const PACKETSK: &str = "packetsk.img";
    pub const NETLINKSK: &str = "netlinksk.img";
    pub const TTY: &str = "tty.img";
    pub const TUNFILE: &str = "tunfile.img";
    pub const TIMERFD: &str = "timerfd.img";
    pub const BPFMAP_FILE: &str = "bpfmap-file.img";
    pub const PIDFD: &str = "pidfd.img";

    pub fn vmas(pid: u32) -> String {
        format!("vmas-{pid}.img")
    }
    pub fn sigacts(pid: u32) -> String {
        format!("sigacts-{pid}.img")
    }
    pub fn itimers(pid: u32) -> String {
        format!("itimers-{pid}.img")
    }
    pub fn posix_timers(pid: u32) -> String {
        format!("posix-timers-{pid}.img")
    }
    pub fn creds(pid: u32) -> String {
        format!("creds-{pid}.img")
    }
    pub fn rlimit(pid: u32) -> String {
        format!("rlimit-{pid}.img")
    }
    pub fn signal_shared(pid: u32) -> String {
        format!("signal-s-{pid}.img")
    }
    pub fn signal_private(tid: u32) -> String {
        format!("signal-p-{tid}.img")
    }
}

macro_rules! decimal_names {
    ($($(#[$doc:meta])* $f:ident($arg:ident) => $prefix:literal;)*) => {
        $(
            $(#[$doc])*
            pub fn $f($arg: u32) -> String {
                format!(concat!($prefix, "-{}.img"), $arg)
            }
        )*
    };
}

decimal_names! {
    /// `core-<tid>.img`: one per thread.
    core(tid) => "core";
    /// `ids-<pid>.img`.
    ids(pid) => "ids";
    /// `mm-<pid>.img`.
    mm(pid) => "mm";
    /// `pagemap-<pid>.img`.
    pagemap(pid) => "pagemap";
    /// `pagemap-shmem-<shmid>.img`.
    pagemap_shmem(shmid) => "pagemap-shmem";
    /// `pages-<pages_id>.img`: raw pages, no header.
    pages(pages_id) => "pages";
    /// `fs-<pid>.img`.
    fs(pid) => "fs";
    /// `fdinfo-<files_id>.img`.
    fdinfo(files_id) => "fdinfo";
    /// `timens-<id>.img`.
    timens(id) => "timens";
    /// `utsns-<id>.img`.
    utsns(id) => "utsns";
    /// `ipcns-var-<id>.img`.
    ipcns_var(id) => "ipcns-var";
    /// `ipcns-shm-<id>.img`.
    ipcns_shm(id) => "ipcns-shm";
    /// `ipcns-msg-<id>.img`.
    ipcns_msg(id) => "ipcns-msg";
    /// `ipcns-sem-<id>.img`.
    ipcns_sem(id) => "ipcns-sem";
    /// `mountpoints-<mnt_ns_id>.img`.
    mountpoints(mnt_ns_id) => "mountpoints";
    /// `netns-<id>.img`.
    netns(id) => "netns";
    /// `netdev-<id>.img`.
    netdev(id) => "netdev";
    /// `ifaddr-<id>.img`: raw `ip addr save` stream.
    ifaddr(id) => "ifaddr";
    /// `route-<id>.img`: raw `ip route save` stream.
    route(id) => "route";
    /// `route6-<id>.img`: raw `ip -6 route save` stream.
    route6(id) => "route6";
    /// `rule-<id>.img`: raw `ip rule save` stream.
    rule(id) => "rule";
    /// `iptables-<id>.img`: raw `iptables-save` text.
    iptables(id) => "iptables";
    /// `ip6tables-<id>.img`: raw `ip6tables-save` text.
    ip6tables(id) => "ip6tables";
    /// `nftables-<id>.img`: raw nft ruleset.
    nftables(id) => "nftables";
    /// `netns-ct-<id>.img`: raw conntrack dump.
    netns_ct(id) => "netns-ct";
    /// `netns-exp-<id>.img`: raw conntrack expectations.
    netns_exp(id) => "netns-exp";
    /// `autofs-<id>.img`.
    autofs(id) => "autofs";
    /// `userns-<id>.img`.
    userns(id) => "userns";
    /// `pidns-<id>.img`.
    pidns(id) => "pidns";
}

/// `tmpfs-<mnt_id>.tar.gz.img`: raw tarball of a tmpfs mount.
pub fn tmpfs(mnt_id: u32) -> String {
    format!("tmpfs-{mnt_id}.tar.gz.img")
}

/// `tmpfs-dev-<mnt_id>.tar.gz.img`: raw tarball of a tmpfs mount on /dev.
pub fn tmpfs_dev(mnt_id: u32) -> String {
    format!("tmpfs-dev-{mnt_id}.tar.gz.img")
}

/// `ghost-file-<id in hex>.img`.
pub fn ghost_file(id: u32) -> String {
    format!("ghost-file-{id:x}.img")
}

/// `tcp-stream-<inode in hex>.img`.
pub fn tcp_stream(ino: u32) -> String {
    format!("tcp-stream-{ino:x}.img")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_criu_image_desc() {
        assert_eq!(core(42), "core-42.img");
        assert_eq!(ids(1), "ids-1.img");
        assert_eq!(mm(7), "mm-7.img");
        assert_eq!(pagemap(7), "pagemap-7.img");
        assert_eq!(pagemap_shmem(9), "pagemap-shmem-9.img");
        assert_eq!(pages(1), "pages-1.img");
        assert_eq!(fdinfo(2), "fdinfo-2.img");
        assert_eq!(ipcns_var(11), "ipcns-var-11.img");
        assert_eq!(tmpfs_dev(23), "tmpfs-dev-23.tar.gz.img");
        assert_eq!(ghost_file(255), "ghost-file-ff.img");
        assert_eq!(tcp_stream(0x1234), "tcp-stream-1234.img");
        assert_eq!(legacy::signal_private(3), "signal-p-3.img");
        assert_eq!(STATS_DUMP, "stats-dump");
    }
}
