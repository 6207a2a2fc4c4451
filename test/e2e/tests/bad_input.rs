//! A restore from a damaged image set, or onto a pid that is taken, refuses
//! cleanly: non-zero exit, a message that names the file or the pid, and no
//! process created.

use std::path::PathBuf;
use std::time::Duration;

use stasis_e2e::images::{read_u32, truncate, write_u32};
use stasis_e2e::log::assert_ticks_continuous;
use stasis_e2e::{crit_decode_all, dump, proc, restore, Pid, ScratchDir, Workload, LINE_TIMEOUT};

const IMG_COMMON: u32 = 0x54564319;
const PSTREE_MAGIC: u32 = 0x50273030;
const MM_MAGIC: u32 = 0x57492820;

/// A small counter dumped (and so killed) into `<dir>/images`.
struct Dumped {
    // Dropped first: the guard kills anything left before the dir is judged.
    w: Workload,
    images: PathBuf,
    dir: ScratchDir,
}

impl Dumped {
    fn new(name: &str) -> Self {
        let dir = ScratchDir::new(name);
        let images = dir.subdir("images");
        let w = Workload::start("counter", &dir.join("counter.log"), &["4", "5"], dir.path());
        w.wait_ticks_after(0, 3, LINE_TIMEOUT);
        dump(&images, w.pid(), &[]).assert_success();
        w.assert_gone(Duration::from_secs(10));
        Dumped { w, images, dir }
    }

    fn pid(&self) -> Pid {
        self.w.pid()
    }

    fn img(&self, name: &str) -> PathBuf {
        self.images.join(name)
    }

    /// Restores, and checks it failed cleanly naming `names`, and that no
    /// process runs the workload afterwards (under its pid or any other).
    fn assert_restore_refused(&self, names: &str) {
        let out = restore(&self.images, &[]);
        eprintln!("{out}");
        out.assert_clean_failure();
        assert!(
            out.stderr.contains(names),
            "stderr should name {names}:\n{out}"
        );
        std::thread::sleep(Duration::from_millis(200));
        let pid = self.pid();
        assert!(
            !proc::is_alive(pid),
            "a process with pid {pid} exists after the refused restore: {:?}",
            proc::stat(pid)
        );
        let marker = self.dir.path().to_string_lossy().into_owned();
        let stray = proc::live_pids_with_arg(&marker);
        assert!(
            stray.is_empty(),
            "processes {stray:?} run the workload after the refused restore"
        );
        let n = self.w.lines().len();
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(
            self.w.lines().len(),
            n,
            "the workload's log grows: something runs it"
        );
    }
}

#[test]
fn restore_refuses_a_truncated_core_image_and_names_it() {
    let d = Dumped::new("bad-core");
    let core = d.img(&format!("core-{}.img", d.pid()));
    let len = std::fs::metadata(&core).unwrap().len();
    truncate(&core, len / 2);
    d.assert_restore_refused(&format!("core-{}.img", d.pid()));
}

#[test]
fn restore_refuses_a_pstree_image_with_a_wrong_magic_and_names_it() {
    let d = Dumped::new("bad-pstree");
    let pstree = d.img("pstree.img");
    assert_eq!(
        (read_u32(&pstree, 0), read_u32(&pstree, 4)),
        (IMG_COMMON, PSTREE_MAGIC),
        "pstree.img header"
    );
    write_u32(&pstree, 4, 0x1badc0de);
    d.assert_restore_refused("pstree.img");
}

#[test]
fn restore_refuses_an_mm_entry_claiming_nearly_4_gib_and_names_the_image() {
    let d = Dumped::new("bad-mm");
    let mm = d.img(&format!("mm-{}.img", d.pid()));
    assert_eq!(
        (read_u32(&mm, 0), read_u32(&mm, 4)),
        (IMG_COMMON, MM_MAGIC),
        "mm image header"
    );
    write_u32(&mm, 8, 0xFFFF_FFF0);
    d.assert_restore_refused(&format!("mm-{}.img", d.pid()));
}

#[test]
fn restore_refuses_an_image_set_whose_pages_file_is_missing_and_names_it() {
    let d = Dumped::new("bad-pages");
    let pages = format!("pages-{}.img", crit_decode_all(&d.images).pages_id(d.pid()));
    std::fs::remove_file(d.img(&pages)).unwrap();
    d.assert_restore_refused(&pages);
}

#[test]
fn restore_refuses_a_pid_that_is_taken_and_leaves_its_holder_running() {
    let dir = ScratchDir::new("pid-taken");
    let images = dir.subdir("images");
    let w = Workload::start("counter", &dir.join("counter.log"), &["4", "6"], dir.path());
    let pid = w.pid();
    w.wait_ticks_after(0, 3, LINE_TIMEOUT);
    dump(&images, pid, &["--leave-running"]).assert_success();
    let holder = proc::stat(pid).expect("the original after --leave-running");

    let out = restore(&images, &[]);
    eprintln!("{out}");
    out.assert_clean_failure();
    let named = out
        .stderr
        .split(|c: char| !c.is_ascii_digit())
        .any(|w| w == pid.to_string());
    assert!(named, "stderr should name the taken pid {pid}:\n{out}");
    std::thread::sleep(Duration::from_millis(200));
    let now = proc::stat(pid).expect("the holder of the pid vanished");
    assert_eq!(
        now.start_time, holder.start_time,
        "pid {pid} is no longer held by the original process"
    );
    assert!(w.is_alive(), "the original {}", w.how_it_ended());
    let marker = dir.path().to_string_lossy().into_owned();
    assert_eq!(
        proc::live_pids_with_arg(&marker),
        [pid],
        "a second copy of the workload was created"
    );
    let n = w.lines().len();
    w.wait_ticks_after(n, 3, LINE_TIMEOUT);
    assert_ticks_continuous(&w.lines());
}
