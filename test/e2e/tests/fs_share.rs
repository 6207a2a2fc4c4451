//! Processes sharing cwd, root and umask (`CLONE_FS`) or their descriptor table
//! (`CLONE_FILES`) with their parent: the image holds one object for both (crit shows the
//! same `fs_id` or `files_id`), and after restore they still share it — a `chdir`,
//! `umask` and a new descriptor in the child show in its parent exactly as the flag
//! shares them, and never in an ordinary sibling.

use stasis_e2e::ticks::wait_each;
use stasis_e2e::{crit_decode_all, dump, proc, restore, ScratchDir, Workload, LINE_TIMEOUT};
use std::collections::BTreeMap;

/// name -> (counter, cwd, umask, descriptor 100 open) per tick, in log order.
type Ticks = BTreeMap<String, Vec<(u64, String, String, String)>>;

fn ticks(lines: &[String]) -> Ticks {
    let mut out = Ticks::new();
    for l in lines {
        let w: Vec<&str> = l.split_whitespace().collect();
        if let ["tick", name, n, "cwd", cwd, "umask", mask, "fd100", fd] = w.as_slice() {
            out.entry(name.to_string()).or_default().push((
                n.parse().expect("counter"),
                cwd.to_string(),
                mask.to_string(),
                fd.to_string(),
            ));
        }
    }
    out
}

fn logged_pid(lines: &[String], what: &str) -> i32 {
    lines
        .iter()
        .find_map(|l| l.strip_prefix(what)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("the workload logs {what}"))
}

const NAMES: [&str; 3] = ["parent", "sharer", "other"];

/// Runs the workload with `flag` ("fs" or "files"), checks the image's `id_key`, and
/// returns the state each process shows once the sharer has moved after the restore.
fn share_across_restore(flag: &str, id_key: &str) -> Ticks {
    let dir = ScratchDir::new(&format!("share-{flag}"));
    let images = dir.subdir("images");
    let w = Workload::start("fsshare", &dir.join("share.log"), &[flag], dir.path());
    let pid = w.pid();
    wait_each(&w, &NAMES, 0, 2, ticks);
    let sharer = logged_pid(&w.lines(), "sharer ");
    let other = logged_pid(&w.lines(), "other ");

    dump(&images, pid, &[]).assert_success();
    proc::wait_gone(pid, LINE_TIMEOUT).expect("the dumped root is gone");
    for p in [sharer, other] {
        proc::wait_gone(p, LINE_TIMEOUT).unwrap_or_else(|e| panic!("pid {p}: {e}"));
    }
    let set = crit_decode_all(&images);
    let id = |p: i32| {
        set.entries(&format!("ids-{p}.img"))[0][id_key]
            .as_u64()
            .unwrap_or_else(|| panic!("{id_key} of {p}"))
    };
    assert_eq!(id(sharer), id(pid), "one {id_key} for parent and sharer");
    assert_ne!(id(other), id(pid), "other has its own {id_key}");

    let before = ticks(&w.lines());
    let at = w.lines().len();
    restore(&images, &[]).assert_success();
    wait_each(&w, &NAMES, at, 2, ticks);
    let after = ticks(&w.lines()[at..]);
    for name in NAMES {
        let prev = before[name].last().expect("ticked before").0;
        let values: Vec<u64> = after[name].iter().map(|t| t.0).collect();
        let want: Vec<u64> = (prev + 1..prev + 1 + values.len() as u64).collect();
        assert_eq!(values, want, "{name} continues from its own counter");
        for t in &after[name] {
            assert_eq!(
                (t.1.as_str(), t.2.as_str(), t.3.as_str()),
                ("a", "022", "0"),
                "{name} is back as it was"
            );
        }
    }

    let at = w.lines().len();
    proc::signal(sharer, libc::SIGUSR1).expect("SIGUSR1 to the sharer");
    w.wait_for("the sharer moved", LINE_TIMEOUT, |lines| {
        ticks(&lines[at..])
            .get("sharer")
            .and_then(|v| v.iter().find(|t| t.1 == "b"))
            .cloned()
    });
    let moved_at = w.lines().len();
    wait_each(&w, &NAMES, moved_at, 3, ticks);
    ticks(&w.lines()[moved_at..])
}

fn assert_all(moved: &Ticks, name: &str, want: (&str, &str, &str)) {
    for t in &moved[name] {
        assert_eq!(
            (t.1.as_str(), t.2.as_str(), t.3.as_str()),
            want,
            "{name} after the sharer moved (cwd, umask, fd 100)"
        );
    }
}

#[test]
fn processes_sharing_cwd_and_umask_still_share_them_after_restore() {
    let moved = share_across_restore("fs", "fs_id");
    assert_all(&moved, "sharer", ("b", "027", "1"));
    assert_all(&moved, "parent", ("b", "027", "0"));
    assert_all(&moved, "other", ("a", "022", "0"));
}

#[test]
fn processes_sharing_a_descriptor_table_still_share_it_after_restore() {
    let moved = share_across_restore("files", "files_id");
    assert_all(&moved, "sharer", ("b", "027", "1"));
    assert_all(&moved, "parent", ("a", "022", "1"));
    assert_all(&moved, "other", ("a", "022", "0"));
}
