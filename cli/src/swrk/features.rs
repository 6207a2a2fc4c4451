//! The queries: VERSION, FEATURE_CHECK and CHECK. FEATURE_CHECK answers what stasis can
//! do on this kernel: a feature is reported only if the kernel has what it needs (probed
//! here as CRIU's kerndat probes it) *and* stasis implements it — a client told "yes"
//! goes on to send options that would otherwise be refused.

use super::fields::{Support, FIELDS};
use stasis_images::pb::rpc::CriuFeatures;
use std::io::{Read, Seek, SeekFrom};

/// What the running kernel offers for each feature.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Kernel {
    /// Soft-dirty bits in `/proc/PID/pagemap` (memory change tracking, for pre-dump).
    pub soft_dirty: bool,
    /// userfaultfd with the non-cooperative events (lazy pages).
    pub uffd_noncooperative: bool,
    /// `pidfd_open` and `pidfd_getfd` (the pidfd store).
    pub pidfd: bool,
}

impl Kernel {
    pub fn probe() -> Kernel {
        Kernel {
            soft_dirty: soft_dirty(),
            uffd_noncooperative: stasis_sys::uffd::features().is_ok_and(|f| {
                f & stasis_sys::uffd::NONCOOPERATIVE == stasis_sys::uffd::NONCOOPERATIVE
            }),
            pidfd: pidfd(),
        }
    }
}

/// Whether stasis honours the `criu_opts` field a feature is used through.
fn implemented(field: &str) -> bool {
    FIELDS
        .iter()
        .any(|f| f.name == field && f.support == Support::Honoured)
}

/// The FEATURE_CHECK answer: all three features present, true only if asked for, offered
/// by the kernel, and implemented by stasis.
pub fn answer(asked: &CriuFeatures, kernel: &Kernel) -> CriuFeatures {
    let one = |name: &str, asked: Option<bool>, in_kernel: bool, field: &str| {
        let ours = implemented(field);
        if asked == Some(true) {
            log::info!("feature {name}: kernel {in_kernel}, implemented by stasis {ours}");
        }
        Some(asked == Some(true) && in_kernel && ours)
    };
    CriuFeatures {
        mem_track: one("mem_track", asked.mem_track, kernel.soft_dirty, "track_mem"),
        lazy_pages: one(
            "lazy_pages",
            asked.lazy_pages,
            kernel.uffd_noncooperative,
            "lazy_pages",
        ),
        pidfd_store: one(
            "pidfd_store",
            asked.pidfd_store,
            kernel.pidfd,
            "pidfd_store_sk",
        ),
    }
}

/// Clears this process's soft-dirty bits, dirties one page, and reads whether pagemap
/// saw it: without `CONFIG_MEM_SOFT_DIRTY` the bit never appears.
fn soft_dirty() -> bool {
    const SOFT_DIRTY: u64 = 1 << 55;
    const PRESENT: u64 = 1 << 63;
    let page = 4096usize;
    let mut buf = vec![0u8; 2 * page];
    let base = buf.as_ptr() as usize;
    let offset = base.next_multiple_of(page) - base;
    buf[offset] = 1;
    if std::fs::write("/proc/self/clear_refs", "4").is_err() {
        return false;
    }
    std::hint::black_box(&mut buf)[offset] = 2;
    let addr = base + offset;
    let mut entry = [0u8; 8];
    let read = std::fs::File::open("/proc/self/pagemap").and_then(|mut f| {
        f.seek(SeekFrom::Start((addr / page * 8) as u64))?;
        f.read_exact(&mut entry)
    });
    let bits = u64::from_le_bytes(entry);
    std::hint::black_box(&buf);
    read.is_ok() && bits & PRESENT != 0 && bits & SOFT_DIRTY != 0
}

fn pidfd() -> bool {
    let Some(me) = rustix::process::Pid::from_raw(std::process::id() as i32) else {
        return false;
    };
    match rustix::process::pidfd_open(me, rustix::process::PidfdFlags::empty()) {
        Ok(pidfd) => {
            use std::os::fd::AsRawFd;
            let own = pidfd.as_raw_fd();
            rustix::process::pidfd_getfd(&pidfd, own, rustix::process::PidfdGetfdFlags::empty())
                .is_ok()
        }
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: Kernel = Kernel {
        soft_dirty: true,
        uffd_noncooperative: true,
        pidfd: true,
    };

    #[test]
    fn every_feature_is_present_in_the_answer_and_false_unless_asked() {
        let a = answer(&CriuFeatures::default(), &ALL);
        assert_eq!(
            (a.mem_track, a.lazy_pages, a.pidfd_store),
            (Some(false), Some(false), Some(false))
        );
    }

    #[test]
    fn a_feature_stasis_does_not_implement_is_false_even_if_the_kernel_has_it() {
        let asked = CriuFeatures {
            mem_track: Some(true),
            lazy_pages: Some(true),
            pidfd_store: Some(true),
        };
        let a = answer(&asked, &ALL);
        assert_eq!(a.mem_track, Some(false), "pre-dump is not implemented");
        assert_eq!(a.lazy_pages, Some(false), "lazy pages are not implemented");
        assert_eq!(a.pidfd_store, Some(true));
        let none = Kernel {
            soft_dirty: false,
            uffd_noncooperative: false,
            pidfd: false,
        };
        assert_eq!(answer(&asked, &none).pidfd_store, Some(false));
    }

    #[test]
    fn this_kernel_has_pidfds() {
        assert!(Kernel::probe().pidfd);
    }
}
