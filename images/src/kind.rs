//! Image kinds: which header a file carries, tied to CRIU's magic name.
//!
//! crit prints the `name` of a kind as the `"magic"` of a decoded image, so
//! the names here are CRIU's (`"CORE"`, `"PAGEMAP"`, ...).

use crate::magic;

/// The header at the start of an image file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Header {
    /// `inventory.img`: the single word [`magic::INVENTORY`].
    Inventory,
    /// A regular image: [`magic::IMG_COMMON`] then the type magic.
    Common(u32),
    /// A service image: [`magic::IMG_SERVICE`] then the type magic.
    Service(u32),
}

impl Header {
    /// The header words in file order.
    pub fn words(self) -> (u32, Option<u32>) {
        match self {
            Header::Inventory => (magic::INVENTORY, None),
            Header::Common(m) => (magic::IMG_COMMON, Some(m)),
            Header::Service(m) => (magic::IMG_SERVICE, Some(m)),
        }
    }

    /// Size of the header in bytes (4 or 8).
    pub fn byte_len(self) -> usize {
        match self.words().1 {
            Some(_) => 8,
            None => 4,
        }
    }

    /// The header as it appears on disk (little-endian words).
    pub fn to_bytes(self) -> Vec<u8> {
        let (first, second) = self.words();
        let mut out = first.to_le_bytes().to_vec();
        if let Some(s) = second {
            out.extend_from_slice(&s.to_le_bytes());
        }
        out
    }
}

/// A kind of image file: CRIU's magic name plus the header it carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ImageKind {
    /// CRIU's magic name, as crit prints it.
    pub name: &'static str,
    /// The header written at the start of the file.
    pub header: Header,
}

macro_rules! kinds {
    ($($(#[$doc:meta])* $id:ident = $hdr:ident $(($m:ident))?;)*) => {
        impl ImageKind {
            $(
                $(#[$doc])*
                pub const $id: ImageKind = ImageKind {
                    name: stringify!($id),
                    header: Header::$hdr $((magic::$m))?,
                };
            )*
            /// Every kind, in CRIU's magic table order.
            pub const ALL: &'static [ImageKind] = &[$(ImageKind::$id),*];
        }
    };
}

kinds! {
    /// `inventory.img`.
    INVENTORY = Inventory;
    PSTREE = Common(PSTREE);
    FDINFO = Common(FDINFO);
    /// `pagemap-<pid>.img` (and `pagemap-shmem-<id>.img`).
    PAGEMAP = Common(PAGEMAP);
    CORE = Common(CORE);
    IDS = Common(IDS);
    VMAS = Common(VMAS);
    PIPES = Common(PIPES);
    PIPES_DATA = Common(PIPES_DATA);
    FIFO = Common(FIFO);
    FIFO_DATA = Common(FIFO_DATA);
    SIGACT = Common(SIGACT);
    UNIXSK = Common(UNIXSK);
    INETSK = Common(INETSK);
    PACKETSK = Common(PACKETSK);
    ITIMERS = Common(ITIMERS);
    POSIX_TIMERS = Common(POSIX_TIMERS);
    SK_QUEUES = Common(SK_QUEUES);
    UTSNS = Common(UTSNS);
    CREDS = Common(CREDS);
    IPC_VAR = Common(IPC_VAR);
    IPCNS_SHM = Common(IPCNS_SHM);
    IPCNS_MSG = Common(IPCNS_MSG);
    IPCNS_SEM = Common(IPCNS_SEM);
    REG_FILES = Common(REG_FILES);
    EXT_FILES = Common(EXT_FILES);
    FS = Common(FS);
    MM = Common(MM);
    REMAP_FPATH = Common(REMAP_FPATH);
    GHOST_FILE = Common(GHOST_FILE);
    TCP_STREAM = Common(TCP_STREAM);
    EVENTFD_FILE = Common(EVENTFD_FILE);
    EVENTPOLL_FILE = Common(EVENTPOLL_FILE);
    EVENTPOLL_TFD = Common(EVENTPOLL_TFD);
    SIGNALFD = Common(SIGNALFD);
    INOTIFY_FILE = Common(INOTIFY_FILE);
    INOTIFY_WD = Common(INOTIFY_WD);
    MNTS = Common(MNTS);
    NETDEV = Common(NETDEV);
    NETNS = Common(NETNS);
    TTY_FILES = Common(TTY_FILES);
    TTY_INFO = Common(TTY_INFO);
    TTY_DATA = Common(TTY_DATA);
    FILE_LOCKS = Common(FILE_LOCKS);
    RLIMIT = Common(RLIMIT);
    FANOTIFY_FILE = Common(FANOTIFY_FILE);
    FANOTIFY_MARK = Common(FANOTIFY_MARK);
    SIGNAL = Common(SIGNAL);
    NETLINK_SK = Common(NETLINK_SK);
    NS_FILES = Common(NS_FILES);
    TUNFILE = Common(TUNFILE);
    CGROUP = Common(CGROUP);
    TIMERFD = Common(TIMERFD);
    CPUINFO = Common(CPUINFO);
    USERNS = Common(USERNS);
    SECCOMP = Common(SECCOMP);
    BINFMT_MISC = Common(BINFMT_MISC);
    AUTOFS = Common(AUTOFS);
    FILES = Common(FILES);
    MEMFD_INODE = Common(MEMFD_INODE);
    TIMENS = Common(TIMENS);
    PIDNS = Common(PIDNS);
    BPFMAP_FILE = Common(BPFMAP_FILE);
    BPFMAP_DATA = Common(BPFMAP_DATA);
    APPARMOR = Common(APPARMOR);
    PIDFD = Common(PIDFD);
    /// `stats-dump` / `stats-restore`: a service image.
    STATS = Service(STATS);
    /// `irmap-cache`: a service image.
    IRMAP_CACHE = Service(IRMAP_CACHE);
}

impl ImageKind {
    /// `pagemap-shmem-<id>.img` shares the PAGEMAP magic.
    pub const SHMEM_PAGEMAP: ImageKind = ImageKind::PAGEMAP;
    /// `signal-p-<tid>.img` shares the SIGNAL magic.
    pub const PSIGNAL: ImageKind = ImageKind::SIGNAL;

    /// Identify a kind from the header words found in a file. `second` is the
    /// word after IMG_COMMON/IMG_SERVICE. Aliased magics (PAGEMAP is also
    /// SHMEM_PAGEMAP) resolve to the first kind in [`ImageKind::ALL`].
    pub fn from_header(first: u32, second: Option<u32>) -> Option<ImageKind> {
        let header = match (first, second) {
            (magic::INVENTORY, _) => Header::Inventory,
            (magic::IMG_COMMON, Some(m)) => Header::Common(m),
            (magic::IMG_SERVICE, Some(m)) => Header::Service(m),
            _ => return None,
        };
        ImageKind::ALL.iter().copied().find(|k| k.header == header)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_is_named_after_its_constant_and_unique() {
        let mut seen = std::collections::HashSet::new();
        for k in ImageKind::ALL {
            assert!(seen.insert(k.header), "duplicate header for {}", k.name);
            assert_eq!(
                ImageKind::from_header(k.header.words().0, k.header.words().1),
                Some(*k)
            );
        }
        assert_eq!(ImageKind::CORE.name, "CORE");
        assert_eq!(ImageKind::STATS.header, Header::Service(magic::STATS));
    }

    #[test]
    fn header_bytes_are_little_endian_words() {
        assert_eq!(
            ImageKind::INVENTORY.header.to_bytes(),
            [0x16, 0x31, 0x31, 0x58]
        );
        assert_eq!(
            ImageKind::PSTREE.header.to_bytes(),
            [0x19, 0x43, 0x56, 0x54, 0x30, 0x30, 0x27, 0x50]
        );
        assert_eq!(
            ImageKind::STATS.header.to_bytes(),
            [0x40, 0x59, 0x10, 0x55, 0x06, 0x33, 0x09, 0x57]
        );
    }
}
