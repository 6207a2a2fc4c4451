//! HotSpot feature sets and restore-gate decisions for recorded CPUID dumps of other
//! CPUs (`tests/fixtures/*.json`, see `fixtures/README.md`), and for this host captured
//! at test time.

use stasis_cpu::hotspot::{self, FeatureSet, Table, VmFlags};
use stasis_cpu::{
    check, CpuCap, CpuRecord, CpuidSource, HostCpuid, JvmRecord, JvmSource, RecordedCpuid, Refusal,
    Vendor,
};

fn fixture(name: &str) -> RecordedCpuid {
    let path = format!("{}/tests/fixtures/{name}.json", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    RecordedCpuid::from_json(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn skylake() -> RecordedCpuid {
    fixture("skylake-client-i7-6700k")
}

fn zen2() -> RecordedCpuid {
    fixture("zen2-epyc-7702")
}

fn sapphire_rapids() -> RecordedCpuid {
    fixture("sapphire-rapids-xeon-8480")
}

fn list(s: &str) -> Vec<&str> {
    s.split(", ").collect()
}

fn host_record() -> CpuRecord {
    CpuRecord::of(&HostCpuid)
}

fn record_with_jvm(cpu: &RecordedCpuid, java: &str, features: FeatureSet) -> CpuRecord {
    let mut r = CpuRecord::of(cpu);
    r.jvms.push(JvmRecord {
        pid: 4242,
        java_version: java.to_string(),
        source: JvmSource::Table,
        features,
        note: None,
    });
    r
}

#[test]
fn skylake_client_gets_avx2_but_no_avx512_and_ht_from_two_threads_per_core() {
    let cpu = skylake();
    let id = CpuRecord::of(&cpu).identity();
    assert_eq!((id.vendor, id.family, id.model), (Vendor::Intel, 6, 0x5e));
    assert_eq!(
        hotspot::features(17, &cpu).unwrap().names(),
        list(
            "cx8, cmov, fxsr, ht, mmx, 3dnowpref, sse, sse2, sse3, ssse3, sse4.1, sse4.2, \
             popcnt, lzcnt, tsc, tscinvbit, avx, avx2, aes, erms, clmul, bmi1, bmi2, rtm, adx, \
             fma, vzeroupper, clflush, clflushopt"
        )
    );
    assert_eq!(
        hotspot::features(21, &cpu).unwrap().names(),
        list(
            "cx8, cmov, fxsr, ht, mmx, 3dnowpref, sse, sse2, sse3, ssse3, sse4.1, sse4.2, \
             popcnt, lzcnt, tsc, tscinvbit, avx, avx2, aes, erms, clmul, bmi1, bmi2, rtm, adx, \
             fma, vzeroupper, clflush, clflushopt, rdtscp, f16c"
        )
    );
}

#[test]
fn zen2_gets_amd_only_sse4a_and_sha_and_no_clwb_before_jdk25() {
    let cpu = zen2();
    assert_eq!(CpuRecord::of(&cpu).identity().family, 0x17);
    assert_eq!(
        hotspot::features(17, &cpu).unwrap().names(),
        list(
            "cx8, cmov, fxsr, ht, mmx, 3dnowpref, sse, sse2, sse3, ssse3, sse4a, sse4.1, \
             sse4.2, popcnt, lzcnt, tsc, tscinvbit, avx, avx2, aes, clmul, bmi1, bmi2, adx, \
             sha, fma, vzeroupper, clflush, clflushopt"
        )
    );
    let f25 = hotspot::features(25, &cpu).unwrap();
    assert!(
        f25.contains("clwb"),
        "JDK 25 detects clwb on every vendor: {f25}"
    );
    assert!(f25.contains("rdpid") && f25.contains("f16c"), "{f25}");
    assert!(!f25.contains("avx512f"), "{f25}");
}

#[test]
fn sapphire_rapids_gets_the_avx512_family_amx_state_and_jdk25_fp16() {
    let cpu = sapphire_rapids();
    assert_eq!(cpu.xcr0(), Some(0x602e7), "AMX tile state enabled");
    let f21 = hotspot::features(21, &cpu).unwrap();
    assert_eq!(
        f21.names(),
        list(
            "cx8, cmov, fxsr, ht, mmx, 3dnowpref, sse, sse2, sse3, ssse3, sse4.1, sse4.2, \
             popcnt, lzcnt, tsc, tscinvbit, avx, avx2, aes, erms, clmul, bmi1, bmi2, rtm, adx, \
             avx512f, avx512dq, avx512cd, avx512bw, avx512vl, sha, fma, vzeroupper, \
             avx512_vpopcntdq, avx512_vpclmulqdq, avx512_vaes, avx512_vnni, clflush, \
             clflushopt, clwb, avx512_vbmi2, avx512_vbmi, serialize, rdtscp, rdpid, fsrm, gfni, \
             avx512_bitalg, f16c, pku, ospke, cet_ibt, cet_ss, avx512_ifma"
        )
    );
    let f25 = hotspot::features(25, &cpu).unwrap();
    assert_eq!(
        f25.minus(&FeatureSet::from_bits(Table::Jdk25, f21.bits()))
            .names(),
        ["avx512_fp16"]
    );
    let avx2 = VmFlags {
        use_avx: Some(2),
        ..VmFlags::default()
    };
    let f = hotspot::features_with(21, &cpu, &avx2).unwrap();
    assert!(f.contains("avx2") && !f.contains("avx512f") && !f.contains("avx512_ifma"));
}

#[test]
fn a_jvm_image_dumped_on_this_host_is_refused_on_skylake_naming_what_skylake_lacks() {
    let host = host_record();
    let used = hotspot::features(17, &HostCpuid).unwrap();
    let image = record_with_jvm(&host.cpuid, "17.0.15", used);
    let target = CpuRecord::of(&skylake());

    let skylake_offers = hotspot::cpu_features(17, &target.cpuid).unwrap();
    let expected: Vec<&str> = used
        .minus(&skylake_offers)
        .names()
        .into_iter()
        .filter(|n| !matches!(*n, "ht" | "hv" | "tscinv" | "tscinvbit"))
        .collect();
    assert!(
        !expected.is_empty(),
        "this host has features a Skylake client lacks"
    );

    let refusal = check(&image, &target, CpuCap::parse("none,jvm").unwrap()).unwrap_err();
    let text = refusal.to_string();
    eprintln!("{text}");
    for name in &expected {
        assert!(text.contains(name), "{name} missing from: {text}");
    }
    if used.contains("avx512f") {
        assert!(text.contains("avx512f"), "{text}");
    }
    let Refusal::Jvm {
        pid,
        missing,
        cpu_features,
        ..
    } = &refusal.reasons[0]
    else {
        panic!("{text}")
    };
    assert_eq!((*pid, missing), (4242, &expected));

    // The suggested mask is exactly what the JVM used and Skylake offers, plus the glibc
    // features both CPUs have, in CRaC's 0xCPU,0xGLIBC form.
    assert!(
        text.contains(&format!("-XX:CPUFeatures={cpu_features}")),
        "{text}"
    );
    let (cpu_word, glibc) = cpu_features.split_once(',').unwrap();
    // The second word is CRaC 17/21's glibc word: the glibc features both CPUs have.
    let glibc = u64::from_str_radix(glibc.trim_start_matches("0x"), 16).unwrap();
    assert_eq!(
        glibc,
        hotspot::glibc_word(&host.cpuid) & hotspot::glibc_word(&target.cpuid)
    );
    assert_eq!(hotspot::glibc_word(&target.cpuid), 0x3e6, "Skylake client");
    let cpu_word = u64::from_str_radix(cpu_word.trim_start_matches("0x"), 16).unwrap();
    assert_eq!(
        u128::from(cpu_word),
        used.and(&skylake_offers).bits(),
        "{cpu_features}"
    );

    // A JVM started with that mask would pass on both hosts.
    let masked = record_with_jvm(
        &host.cpuid,
        "17.0.15",
        FeatureSet::from_bits(Table::Jdk17, u128::from(cpu_word)),
    );
    check(&masked, &target, CpuCap::parse("none,jvm").unwrap()).unwrap();
    check(&masked, &host, CpuCap::parse("none,jvm").unwrap()).unwrap();
}

#[test]
fn a_jvm_image_dumped_on_this_host_is_accepted_on_this_host_under_every_check() {
    let host = host_record();
    for java in ["17.0.15", "21.0.5", "25.0.3"] {
        let major = stasis_cpu::jvm::java_major(java).unwrap();
        let image = record_with_jvm(
            &host.cpuid,
            java,
            hotspot::features(major, &HostCpuid).unwrap(),
        );
        let pass = check(&image, &host, CpuCap::ALL).unwrap();
        assert!(pass.warnings.is_empty(), "{:?}", pass.warnings);
    }
}

#[test]
fn a_zen2_jvm_is_refused_on_skylake_for_sse4a_and_sha_and_the_reverse_for_rtm_and_erms() {
    let zen = record_with_jvm(&zen2(), "21.0.2", hotspot::features(21, &zen2()).unwrap());
    let sky = record_with_jvm(
        &skylake(),
        "21.0.2",
        hotspot::features(21, &skylake()).unwrap(),
    );
    let jvm = CpuCap::parse("none,jvm").unwrap();
    let text = check(&zen, &sky, jvm).unwrap_err().to_string();
    assert!(text.contains("sse4a, sha, rdpid"), "{text}");
    let text = check(&sky, &zen, jvm).unwrap_err().to_string();
    assert!(text.contains("erms, rtm"), "{text}");
}

#[test]
fn ht_is_ignored_and_timing_features_only_warn() {
    let host = host_record();
    let mut features = hotspot::features(17, &HostCpuid).unwrap();
    features = FeatureSet::from_bits(
        Table::Jdk17,
        features.bits() | 1 << hotspot::bit::HT | 1 << hotspot::bit::TSCINV,
    );
    let image = record_with_jvm(&host.cpuid, "17.0.15", features);
    let pass = check(&image, &host, CpuCap::parse("none,jvm").unwrap()).unwrap();
    assert_eq!(pass.warnings.len(), 1, "{:?}", pass.warnings);
    assert!(pass.warnings[0].contains("tscinv"), "{:?}", pass.warnings);
}

#[test]
fn amx_state_from_sapphire_rapids_is_refused_where_xcr0_lacks_it_and_a_superset_is_fine() {
    let spr = CpuRecord::of(&sapphire_rapids());
    let sky = CpuRecord::of(&skylake());
    let fpu = CpuCap::parse("none,fpu").unwrap();
    let text = check(&spr, &sky, fpu).unwrap_err().to_string();
    for c in [
        "opmask",
        "zmm_hi256",
        "hi16_zmm",
        "pkru",
        "xtilecfg",
        "xtiledata",
    ] {
        assert!(text.contains(c), "{c}: {text}");
    }
    // Skylake's state (x87, SSE, AVX, MPX) ⊆ Sapphire Rapids' XCR0? MPX is gone there.
    let text = check(&sky, &spr, fpu).unwrap_err().to_string();
    assert!(text.contains("bndregs, bndcsr"), "{text}");
    // Tasks that only touched x87/SSE/AVX state restore on the larger XCR0.
    let mut sky_tasks = sky.clone();
    sky_tasks.xstate_bv = Some(0x7);
    check(&sky_tasks, &spr, fpu).unwrap();
}

#[test]
fn ins_names_the_instructions_the_host_lacks_and_cpu_wants_identity() {
    let spr = CpuRecord::of(&sapphire_rapids());
    let sky = CpuRecord::of(&skylake());
    let text = check(&spr, &sky, CpuCap::parse("none,ins").unwrap())
        .unwrap_err()
        .to_string();
    for i in ["avx512f", "amx_tile", "serialize", "clwb", "avx_vnni"] {
        assert!(text.contains(i), "{i}: {text}");
    }
    check(&sky, &sky, CpuCap::ALL).unwrap();
    let text = check(&sky, &spr, CpuCap::parse("none,cpu").unwrap())
        .unwrap_err()
        .to_string();
    assert!(text.contains("+avx512f") && text.contains("-mpx"), "{text}");
}

#[test]
fn a_record_round_trips_through_json_with_features_by_name() {
    let image = record_with_jvm(
        &skylake(),
        "17.0.9",
        hotspot::features(17, &skylake()).unwrap(),
    );
    let json = serde_json::to_string_pretty(&image).unwrap();
    assert!(json.contains("\"avx2\""), "{json}");
    let back: CpuRecord = serde_json::from_str(&json).unwrap();
    assert_eq!(back, image);
}

#[test]
fn criu_cpuinfo_of_sapphire_rapids_keeps_criu_states_only_and_zen2_gets_amd_fixups() {
    use stasis_cpu::criu::{cpuinfo_entry, recording_from_cpuinfo, word};
    let spr = sapphire_rapids();
    let x = &cpuinfo_entry(&spr).x86_entry[0];
    // Leaf 0xD offers AMX tile state (bits 17, 18); CRIU's XCNTXT_MASK has no AMX.
    let offered = u64::from(spr.cpuid(0xd, 0)[0]) | u64::from(spr.cpuid(0xd, 0)[3]) << 32;
    assert_ne!(offered & 0x6_0000, 0, "the fixture offers AMX state");
    assert_eq!(x.xfeatures_mask.unwrap() & 0x6_0000, 0);
    assert_eq!(x.xfeatures_mask.unwrap() & 0xe7, 0xe7, "{x:?}");
    assert_eq!((x.cpu_family, x.model), (6, 0x8f));
    // AMX-TILE survives in the capability words (CPUID.7.0:EDX), as CRIU keeps them.
    assert_ne!(x.capability[word::CPUID_7_0_EDX] & 1 << 24, 0);

    let zen = zen2();
    let z = &cpuinfo_entry(&zen).x86_entry[0];
    assert_eq!(z.vendor_id, 2, "AMD");
    assert_eq!((z.cpu_family, z.model), (0x17, 0x31));
    assert_eq!(z.capability[word::CPUID_1_EDX] >> 31, 0);
    assert_ne!(z.capability[word::CPUID_LNX_1] & 1 << 16, 0, "rep_good");
    // Back from the CRIU entry, the JVM rules see the same features, except those from
    // leaves CRIU does not keep: topology (`ht`) and 0x8000_0007:EDX (`tscinv*`).
    let back = recording_from_cpuinfo(&cpuinfo_entry(&zen)).unwrap();
    let unkept = 1 << hotspot::bit::HT | 1 << hotspot::bit::TSCINV | 1 << hotspot::bit::TSCINV_BIT;
    assert_eq!(
        hotspot::features(21, &back).unwrap().without(unkept),
        hotspot::features(21, &zen).unwrap().without(unkept)
    );
}
