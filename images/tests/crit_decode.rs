//! Cross-checks stasis' images against CRIU's own decoder: writes a sample
//! image of every kind stasis produces and runs `crit decode` on it.
//! `crit` (Debian package `criu`) must be installed; its absence fails the test.

use std::path::Path;
use std::process::Command;

use serde_json::Value;
use stasis_images::pagemap::pagemap_entry;
use stasis_images::{names, pb, ImageDir, ImageKind, PE_PRESENT};

fn crit_decode(path: &Path) -> Value {
    let out = Command::new("crit")
        .arg("decode")
        .arg("-i")
        .arg(path)
        .output()
        .unwrap_or_else(|e| panic!("crit must be installed (apt-get install criu): {e}"));
    assert!(
        out.status.success(),
        "crit decode {} failed: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("crit prints JSON")
}

fn ids() -> pb::TaskKobjIdsEntry {
    pb::TaskKobjIdsEntry {
        vm_id: 1,
        files_id: 2,
        fs_id: 3,
        sighand_id: 4,
        pid_ns_id: Some(9),
        net_ns_id: Some(10),
        ipc_ns_id: Some(11),
        uts_ns_id: Some(12),
        mnt_ns_id: Some(13),
        user_ns_id: Some(7),
        cgroup_ns_id: Some(8),
        time_ns_id: Some(5),
    }
}

fn fown() -> pb::FownEntry {
    pb::FownEntry {
        uid: 0,
        euid: 0,
        signum: 0,
        pid_type: 0,
        pid: 0,
    }
}

fn core(tid: u32) -> pb::CoreEntry {
    let regs = pb::UserX86RegsEntry {
        ip: 0x0040_1020,
        sp: 0x7ffd_0000_1000,
        ax: u64::MAX,
        cs: 0x33,
        ss: 0x2b,
        flags: 0x246,
        mode: Some(pb::UserX86RegsMode::Native as i32),
        ..Default::default()
    };
    let xsave = pb::UserX86XsaveEntry {
        xstate_bv: 0xe7,
        ymmh_space: vec![7; 64],
        opmask_reg: vec![0; 8],
        zmm_upper: vec![0; 64],
        hi16_zmm: vec![0; 128],
        cet: Some(pb::UserX86CetEntry { cet: 0, ssp: 0 }),
        ..Default::default()
    };
    let fpregs = pb::UserX86FpregsEntry {
        cwd: 0x37f,
        mxcsr: 0x1f80,
        mxcsr_mask: 0xffff,
        st_space: vec![0; 32],
        xmm_space: vec![1; 64],
        padding: vec![0; 24],
        xsave: Some(xsave),
        ..Default::default()
    };
    let tls = (12..15)
        .map(|n| pb::UserDescT {
            entry_number: n,
            ..Default::default()
        })
        .collect();
    pb::CoreEntry {
        mtype: pb::core_entry::March::X8664 as i32,
        thread_info: Some(pb::ThreadInfoX86 {
            clear_tid_addr: 0x7f00_0000_0a10,
            gpregs: regs,
            fpregs,
            tls,
        }),
        tc: Some(pb::TaskCoreEntry {
            task_state: 1,
            exit_code: 0,
            personality: 0,
            flags: 0x40_0100,
            blk_sigset: 0,
            comm: "sleep".into(),
            timers: Some(pb::TaskTimersEntry {
                real: pb::ItimerEntry::default(),
                virt: pb::ItimerEntry::default(),
                prof: pb::ItimerEntry::default(),
                posix: vec![],
            }),
            rlimits: Some(pb::TaskRlimitsEntry {
                rlimits: (0..16)
                    .map(|_| pb::RlimitEntry {
                        cur: u64::MAX,
                        max: u64::MAX,
                    })
                    .collect(),
            }),
            signals_s: Some(pb::SignalQueueEntry { signals: vec![] }),
            loginuid: Some(u32::MAX),
            oom_score_adj: Some(0),
            sigactions: (0..62)
                .map(|_| pb::SaEntry {
                    sigaction: 0,
                    flags: 0,
                    restorer: 0,
                    mask: 0,
                    ..Default::default()
                })
                .collect(),
            child_subreaper: Some(false),
            ..Default::default()
        }),
        thread_core: Some(pb::ThreadCoreEntry {
            futex_rla: 0x7f00_0000_0a20,
            futex_rla_len: 24,
            sched_nice: Some(0),
            sched_policy: Some(0),
            blk_sigset: Some(0),
            sas: Some(pb::ThreadSasEntry {
                ss_sp: 0,
                ss_size: 0,
                ss_flags: 2,
            }),
            pdeath_sig: Some(0),
            signals_p: Some(pb::SignalQueueEntry { signals: vec![] }),
            creds: Some(pb::CredsEntry {
                cap_inh: vec![0, 0],
                cap_prm: vec![u32::MAX, 0x1ff],
                cap_eff: vec![u32::MAX, 0x1ff],
                cap_bnd: vec![u32::MAX, 0x1ff],
                cap_amb: vec![0, 0],
                no_new_privs: Some(0),
                ..Default::default()
            }),
            seccomp_mode: Some(pb::SeccompMode::Disabled as i32),
            comm: Some(format!("thread-{tid}")),
            rseq_entry: Some(pb::RseqEntry {
                rseq_abi_pointer: 0x7f00_0000_0b00,
                rseq_abi_size: 32,
                signature: 0x5305_3053,
                rseq_cs_pointer: None,
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn reg(id: u32, name: &str) -> pb::FileEntry {
    pb::FileEntry {
        r#type: pb::FdTypes::Reg as i32,
        id,
        reg: Some(pb::RegFileEntry {
            id,
            flags: 0o100000,
            pos: 0,
            fown: fown(),
            name: name.into(),
            mnt_id: Some(23),
            size: Some(35_000),
            mode: Some(0o100755),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[test]
fn crit_decodes_every_kind() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = ImageDir::create(tmp.path()).unwrap();
    let pid = 4242;

    dir.write_one(
        ImageKind::INVENTORY,
        names::INVENTORY,
        &pb::InventoryEntry {
            img_version: 2,
            fdinfo_per_id: Some(true),
            root_ids: Some(ids()),
            ns_per_id: Some(true),
            root_cg_set: Some(1),
            lsmtype: Some(pb::Lsmtype::NoLsm as i32),
            pre_dump_mode: None,
            network_lock_method: Some(0),
            plugins_entry: Some(pb::PluginsEntry { plugins: vec![] }),
            dump_criu_run_id: Some("3f1e2c2e-0000-4000-8000-000000000000".into()),
            ..Default::default()
        },
    )
    .unwrap();
    dir.write(
        ImageKind::PSTREE,
        names::PSTREE,
        &[pb::PstreeEntry {
            pid,
            ppid: 0,
            pgid: pid,
            sid: 1,
            threads: vec![pid, pid + 1],
        }],
    )
    .unwrap();
    dir.write_one(ImageKind::CORE, &names::core(pid), &core(pid))
        .unwrap();
    dir.write_one(ImageKind::IDS, &names::ids(pid), &ids())
        .unwrap();
    let vma = |start: u64, end: u64, status: u32| pb::VmaEntry {
        start,
        end,
        pgoff: 0,
        shmid: 0,
        prot: 3,
        flags: 0x22,
        status,
        fd: -1,
        madv: None,
        fdflags: None,
    };
    dir.write_one(
        ImageKind::MM,
        &names::mm(pid),
        &pb::MmEntry {
            mm_start_code: 0x40_0000,
            mm_end_code: 0x40_8000,
            exe_file_id: 1,
            mm_saved_auxv: vec![33, 0x7ffd_0000_0000, 0, 0],
            vmas: vec![
                vma(0x40_0000, 0x40_8000, 0x41),
                vma(0x7ffd_0000_0000, 0x7ffd_0002_1000, 0x203),
            ],
            dumpable: Some(1),
            ..Default::default()
        },
    )
    .unwrap();
    dir.write_pagemap(
        pid,
        &pb::PagemapHead { pages_id: 1 },
        &[
            pagemap_entry(0x40_0000, 3, PE_PRESENT),
            pagemap_entry(0x7ffd_0002_0000, 1, PE_PRESENT),
        ],
    )
    .unwrap();
    dir.write(
        ImageKind::FDINFO,
        &names::fdinfo(2),
        &[
            pb::FdinfoEntry {
                id: 3,
                flags: 0,
                r#type: pb::FdTypes::Reg as i32,
                fd: 0,
                xattr_security_selinux: None,
            },
            pb::FdinfoEntry {
                id: 4,
                flags: 1,
                r#type: pb::FdTypes::Reg as i32,
                fd: 1,
                xattr_security_selinux: None,
            },
        ],
    )
    .unwrap();
    dir.write(
        ImageKind::FILES,
        names::FILES,
        &[reg(1, "/usr/bin/sleep"), reg(3, "/dev/null"), reg(4, "/")],
    )
    .unwrap();
    dir.write_one(
        ImageKind::FS,
        &names::fs(pid),
        &pb::FsEntry {
            cwd_id: 4,
            root_id: 4,
            umask: Some(0o22),
        },
    )
    .unwrap();
    dir.write_one(
        ImageKind::SECCOMP,
        names::SECCOMP,
        &pb::SeccompEntry::default(),
    )
    .unwrap();
    dir.write_one(
        ImageKind::TIMENS,
        &names::timens(0),
        &pb::TimensEntry {
            monotonic: pb::Timespec {
                tv_sec: 1234,
                tv_nsec: 5,
            },
            boottime: pb::Timespec {
                tv_sec: 1300,
                tv_nsec: 6,
            },
        },
    )
    .unwrap();
    dir.write_one(
        ImageKind::STATS,
        names::STATS_DUMP,
        &pb::StatsEntry {
            dump: Some(pb::DumpStatsEntry {
                freezing_time: 10,
                frozen_time: 20,
                memdump_time: 30,
                memwrite_time: 40,
                pages_scanned: 100,
                pages_skipped_parent: 0,
                pages_written: 4,
                pages_lazy: 0,
                ..Default::default()
            }),
            restore: None,
        },
    )
    .unwrap();

    let d = |name: &str| crit_decode(&dir.file_path(name));

    let inv = d(names::INVENTORY);
    assert_eq!(inv["magic"], "INVENTORY");
    assert_eq!(inv["entries"][0]["img_version"], 2);
    assert_eq!(inv["entries"][0]["root_ids"]["files_id"], 2);

    let ps = d(names::PSTREE);
    assert_eq!(ps["magic"], "PSTREE");
    assert_eq!(
        ps["entries"][0]["threads"],
        serde_json::json!([pid, pid + 1])
    );

    let c = d(&names::core(pid));
    assert_eq!(c["magic"], "CORE");
    let c0 = &c["entries"][0];
    assert_eq!(c0["mtype"], "X86_64");
    assert_eq!(c0["tc"]["comm"], "sleep");
    assert_eq!(c0["thread_info"]["gpregs"]["ip"], 0x40_1020);
    assert_eq!(c0["thread_info"]["gpregs"]["ax"], u64::MAX);
    assert_eq!(
        c0["thread_info"]["fpregs"]["xsave"]["ymmh_space"]
            .as_array()
            .unwrap()
            .len(),
        64
    );
    assert_eq!(c0["thread_info"]["tls"].as_array().unwrap().len(), 3);
    assert_eq!(c0["tc"]["sigactions"].as_array().unwrap().len(), 62);
    assert_eq!(c0["thread_core"]["comm"], format!("thread-{pid}"));
    assert_eq!(c0["thread_core"]["rseq_entry"]["rseq_abi_size"], 32);
    assert_eq!(c0["thread_core"]["seccomp_mode"], "disabled");

    assert_eq!(d(&names::ids(pid))["entries"][0]["mnt_ns_id"], 13);

    let mm = d(&names::mm(pid));
    assert_eq!(mm["entries"][0]["vmas"].as_array().unwrap().len(), 2);
    assert_eq!(mm["entries"][0]["vmas"][1]["status"], 0x203);
    assert_eq!(mm["entries"][0]["vmas"][1]["fd"], -1);

    let pm = d(&names::pagemap(pid));
    assert_eq!(pm["magic"], "PAGEMAP");
    assert_eq!(pm["entries"][0]["pages_id"], 1);
    // crit 3.x reads field 2 under the name nr_pages.
    assert_eq!(pm["entries"][1]["nr_pages"], 3);
    assert_eq!(pm["entries"][1]["flags"], PE_PRESENT);
    assert_eq!(pm["entries"][2]["vaddr"], 0x7ffd_0002_0000u64);

    let fdi = d(&names::fdinfo(2));
    assert_eq!(fdi["entries"][1]["type"], "REG");
    assert_eq!(fdi["entries"][1]["fd"], 1);

    let files = d(names::FILES);
    assert_eq!(files["magic"], "FILES");
    assert_eq!(files["entries"][0]["reg"]["name"], "/usr/bin/sleep");
    assert_eq!(files["entries"][0]["reg"]["mnt_id"], 23);

    assert_eq!(d(&names::fs(pid))["entries"][0]["cwd_id"], 4);

    let sc = d(names::SECCOMP);
    assert_eq!(sc["magic"], "SECCOMP");
    assert_eq!(sc["entries"].as_array().unwrap().len(), 1);

    let tn = d(&names::timens(0));
    assert_eq!(tn["entries"][0]["monotonic"]["tv_sec"], 1234);

    let st = d(names::STATS_DUMP);
    assert_eq!(st["magic"], "STATS");
    assert_eq!(st["entries"][0]["dump"]["pages_written"], 4);
}
