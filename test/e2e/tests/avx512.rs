//! Live AVX-512 state — all 32 zmm registers and the opmask registers k1-k7 —
//! is saved in the image and put back on restore.

use std::time::Duration;

use serde_json::Value;
use stasis_e2e::log::{assert_ticks_continuous, ticks};
use stasis_e2e::{crit_decode_all, dump, restore, ScratchDir, Workload, LINE_TIMEOUT};

/// The values avx512.c loads: zmm<i> lane j is `zmm[i][j]`, k<n> is `k[n]`.
fn patterns() -> ([[u64; 8]; 32], [u64; 8]) {
    let mut s: u64 = 0x243f6a8885a308d3;
    let mut next = || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s
    };
    let mut zmm = [[0u64; 8]; 32];
    for reg in zmm.iter_mut() {
        for lane in reg.iter_mut() {
            *lane = next();
        }
    }
    let mut k = [0u64; 8];
    for v in k.iter_mut().skip(1) {
        *v = next();
    }
    (zmm, k)
}

fn cpu_flags() -> Vec<String> {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap();
    let line = info
        .lines()
        .find(|l| l.starts_with("flags"))
        .expect("flags line in /proc/cpuinfo");
    line.split_whitespace().map(str::to_string).collect()
}

fn u64s(v: &Value, path: &str) -> Vec<u64> {
    v.pointer(path)
        .and_then(Value::as_array)
        .unwrap_or_else(|| panic!("core image has no {path}"))
        .iter()
        .map(|x| x.as_u64().expect("integer"))
        .collect()
}

/// zmm<i> as recorded in the xsave parts of a decoded core entry.
fn zmm_from_core(core: &Value, i: usize) -> [u64; 8] {
    let ti = "/thread_info/fpregs";
    let xmm = u64s(core, &format!("{ti}/xmm_space"));
    let mut r = [0u64; 8];
    if i < 16 {
        let ymmh = u64s(core, &format!("{ti}/xsave/ymmh_space"));
        let upper = u64s(core, &format!("{ti}/xsave/zmm_upper"));
        let pair = |v: &[u64], at: usize| v[at] | (v[at + 1] << 32);
        r[0] = pair(&xmm, i * 4);
        r[1] = pair(&xmm, i * 4 + 2);
        r[2] = pair(&ymmh, i * 4);
        r[3] = pair(&ymmh, i * 4 + 2);
        r[4..8].copy_from_slice(&upper[i * 4..i * 4 + 4]);
    } else {
        let hi = u64s(core, &format!("{ti}/xsave/hi16_zmm"));
        r.copy_from_slice(&hi[(i - 16) * 8..(i - 16) * 8 + 8]);
    }
    r
}

#[test]
fn zmm_and_opmask_registers_keep_their_live_values_across_dump_and_restore() {
    let flags = cpu_flags();
    for f in ["avx512f", "avx512bw"] {
        assert!(
            flags.iter().any(|x| x == f),
            "this CPU lacks {f}: the AVX-512 test cannot prove anything here"
        );
    }
    let dir = ScratchDir::new("avx512");
    let images = dir.subdir("images");
    let w = Workload::start(
        "avx512",
        &dir.join("avx512.log"),
        &[] as &[&str],
        dir.path(),
    );
    let pid = w.pid();
    w.wait_ticks_after(0, 10, LINE_TIMEOUT);

    dump(&images, pid, &[]).assert_success();
    w.assert_gone(Duration::from_secs(10));
    let at_dump = w.lines();
    let last_before = assert_ticks_continuous(&at_dump);

    let set = crit_decode_all(&images);
    let core = set.core(pid);
    let (zmm, k) = patterns();
    for (i, expected) in zmm.iter().enumerate() {
        let got = zmm_from_core(core, i);
        assert_eq!(
            &got, expected,
            "core-{pid}.img: zmm{i} does not hold the workload's live value"
        );
    }
    let opmask = u64s(core, "/thread_info/fpregs/xsave/opmask_reg");
    assert_eq!(opmask[1..8], k[1..8], "core-{pid}.img: opmask k1-k7");

    restore(&images, &[]).assert_success();
    assert!(w.is_alive(), "restored process {pid} {}", w.how_it_ended());
    w.wait_ticks_after(at_dump.len(), 20, LINE_TIMEOUT);
    let lines = w.lines();
    let fails: Vec<&String> = lines.iter().filter(|l| l.contains("FAIL")).collect();
    assert!(
        fails.is_empty(),
        "the workload found registers changed by the restore: {fails:?}"
    );
    assert_eq!(
        ticks(&lines[at_dump.len()..])[0].1,
        last_before + 1,
        "first tick after restore"
    );
    assert_ticks_continuous(&lines);
    assert!(
        w.is_alive(),
        "after restore the workload {}",
        w.how_it_ended()
    );
}
