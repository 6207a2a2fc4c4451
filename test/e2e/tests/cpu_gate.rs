//! The JVM CPU-feature gate end to end: what `stasis cpuinfo dump -t` and `stasis dump`
//! record, and `stasis restore` refusing — before it creates anything, images untouched
//! — an image whose JVM needs CPU features the host lacks, on this host (with an edited
//! record) and on a real older CPU (a QEMU guest under TCG).
//!
//! Needs: `java`/`javac` on PATH (OpenJDK 17), `crit`, and for the QEMU test
//! `qemu-system-x86_64`, a Debian kernel in /boot, busybox-static and cpio — all in
//! scripts/setup.sh. A JDK 25 under /usr/lib/jvm is compared too when installed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use stasis_e2e::proc::{self, Pid, ProcessGuard};
use stasis_e2e::run::{run, workspace_root, Output, Running};
use stasis_e2e::{
    crit_decode_all, dump, stasis, workload_bin, LogFile, ScratchDir, Workload, LINE_TIMEOUT,
};

// ---------------------------------------------------------------------------------------
// JVMs

const FLAG_SETS: &[&[&str]] = &[&[], &["-XX:UseAVX=2"], &["-XX:UseAVX=1", "-XX:UseSSE=2"]];

/// A JDK: its home and feature release.
struct Jdk {
    home: PathBuf,
    major: u32,
}

impl Jdk {
    fn java(&self) -> PathBuf {
        self.home.join("bin/java")
    }

    fn at(home: &Path) -> Option<Jdk> {
        let release = std::fs::read_to_string(home.join("release")).ok()?;
        let version = release
            .lines()
            .find_map(|l| l.strip_prefix("JAVA_VERSION="))?
            .trim_matches('"');
        let major = version.split('.').next()?.parse().ok()?;
        let jdk = Jdk {
            home: home.to_path_buf(),
            major,
        };
        jdk.java().is_file().then_some(jdk)
    }

    /// The JDK of the `java` on PATH (Debian's OpenJDK 17 in CI).
    fn on_path() -> Jdk {
        let out = Command::new("java")
            .args(["-XshowSettings:properties", "-version"])
            .output()
            .expect("`java` on PATH: apt-get install openjdk-17-jdk-headless");
        let text = String::from_utf8_lossy(&out.stderr);
        let home = text
            .lines()
            .find_map(|l| l.trim().strip_prefix("java.home = "))
            .expect("java.home in -XshowSettings output");
        Jdk::at(Path::new(home)).expect("a release file in java.home")
    }

    /// A JDK 25 or later under /usr/lib/jvm, if one is installed.
    fn jdk25() -> Option<Jdk> {
        let mut homes: Vec<PathBuf> = std::fs::read_dir("/usr/lib/jvm")
            .ok()?
            .flatten()
            .map(|e| e.path())
            .collect();
        homes.sort();
        homes
            .iter()
            .filter_map(|h| Jdk::at(h))
            .find(|j| j.major >= 25)
    }
}

/// Compiles the sleeper the JVM tests run into `dir`, for Java 17 and later.
fn compile_sleeper(dir: &Path) -> PathBuf {
    let classes = dir.join("classes");
    std::fs::create_dir_all(&classes).unwrap();
    let src = dir.join("GateSleeper.java");
    std::fs::write(
        &src,
        "public class GateSleeper {\n\
         \x20   public static void main(String[] a) throws Exception {\n\
         \x20       long sum = 0;\n\
         \x20       for (int i = 0; i < 2_000_000; i++) sum += Long.bitCount(i * 31L);\n\
         \x20       try (var w = new java.io.FileWriter(a[0], true)) {\n\
         \x20           w.write(\"ready pid \" + ProcessHandle.current().pid() + \" sum \" + sum + \"\\n\");\n\
         \x20       }\n\
         \x20       Thread.sleep(600_000);\n\
         \x20   }\n\
         }\n",
    )
    .unwrap();
    let out = Command::new("javac")
        .args(["--release", "17", "-d"])
        .arg(&classes)
        .arg(&src)
        .output()
        .expect("javac on PATH: apt-get install openjdk-17-jdk-headless");
    assert!(
        out.status.success(),
        "javac failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    classes
}

/// A running JVM that logged its CPU features with `-Xlog:os+cpu`; killed when dropped.
struct LiveJvm {
    pid: Pid,
    cpu_log: PathBuf,
    _guard: ProcessGuard,
}

impl LiveJvm {
    /// Starts `GateSleeper` with `flags` in its own session (setsid execs java in place,
    /// so the pid is java's), stdio on /dev/null, and waits until it is ready.
    fn start(jdk: &Jdk, flags: &[&str], classes: &Path, dir: &Path, tag: &str) -> LiveJvm {
        proc::become_subreaper();
        let ready = dir.join(format!("{tag}.ready"));
        let cpu_log = dir.join(format!("{tag}.os-cpu.log"));
        let mut java = Command::new("setsid");
        java.arg(jdk.java())
            .args(flags)
            .arg(format!("-Xlog:os+cpu:file={}", cpu_log.display()))
            .args(["-Xms8m", "-Xmx48m", "-XX:+UseSerialGC", "-cp"])
            .arg(classes)
            .arg("GateSleeper")
            .arg(&ready);
        let (pid, guard) = proc::spawn_guarded(java, ready.to_string_lossy());
        let jvm = LiveJvm {
            pid,
            cpu_log,
            _guard: guard,
        };
        LogFile::new(&ready).wait_for("the JVM to start", LINE_TIMEOUT, |lines| {
            lines
                .iter()
                .any(|l| l.starts_with(&format!("ready pid {pid} ")))
                .then_some(())
        });
        jvm
    }

    /// The feature list the JVM printed: the `[os,cpu] CPU: total ...` line after
    /// `microcode 0x...`, in HotSpot's order.
    fn printed_features(&self) -> Vec<String> {
        let text = std::fs::read_to_string(&self.cpu_log).unwrap_or_default();
        let line = text
            .lines()
            .find(|l| l.contains("[os,cpu] CPU: total"))
            .unwrap_or_else(|| panic!("no CPU line in {}:\n{text}", self.cpu_log.display()));
        let list = line
            .split_once("microcode ")
            .unwrap_or_else(|| panic!("no microcode in {line}"))
            .1;
        list.split(", ").skip(1).map(str::to_string).collect()
    }
}

/// Runs `stasis ARGS` while sampling `/proc/<watched>/status`: the JVM must never be
/// traced or stopped by it (it only reads /proc and memory).
fn stasis_never_stopping(args: &[&str], watched: Pid) -> Output {
    let mut cmd = Command::new(stasis_e2e::stasis_bin());
    cmd.args(args);
    let mut running = Running::start(cmd);
    while !running.has_exited() {
        let status = std::fs::read_to_string(format!("/proc/{watched}/status")).unwrap_or_default();
        for l in status.lines() {
            if let Some(v) = l.strip_prefix("TracerPid:") {
                assert_eq!(
                    v.trim(),
                    "0",
                    "pid {watched} was traced by stasis:\n{status}"
                );
            }
            if let Some(v) = l.strip_prefix("State:") {
                assert!(
                    !v.trim().starts_with('t') && !v.trim().starts_with('T'),
                    "pid {watched} was stopped: {v}"
                );
            }
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    running.wait(stasis_e2e::COMMAND_TIMEOUT)
}

/// `stasis inspect DIR --cpu --json`, parsed.
fn inspect(dir: &Path) -> Value {
    let out = stasis(["inspect", &dir.to_string_lossy(), "--cpu", "--json"]);
    out.assert_success();
    serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("inspect JSON ({e}):\n{out}"))
}

fn names(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not a list: {v}"))
        .iter()
        .map(|x| x.as_str().expect("a name").to_string())
        .collect()
}

#[test]
fn cpuinfo_dump_records_exactly_the_features_each_jvm_prints_with_xlog_os_cpu() {
    let dir = ScratchDir::new("cpu-gate-xlog");
    let classes = compile_sleeper(dir.path());
    let mut jdks = vec![Jdk::on_path()];
    jdks.extend(Jdk::jdk25());
    for jdk in &jdks {
        for (i, flags) in FLAG_SETS.iter().enumerate() {
            let what = format!("Java {} {flags:?}", jdk.major);
            let tag = format!("jdk{}-{i}", jdk.major);
            let jvm = LiveJvm::start(jdk, flags, &classes, dir.path(), &tag);
            let images = dir.subdir(&tag);
            let out = stasis_never_stopping(
                &[
                    "cpuinfo",
                    "dump",
                    "-D",
                    &images.to_string_lossy(),
                    "-t",
                    &jvm.pid.to_string(),
                ],
                jvm.pid,
            );
            out.assert_success();
            assert!(proc::is_alive(jvm.pid), "{what}: the JVM died");

            let printed = jvm.printed_features();
            let report = inspect(&images);
            let jvms = report["jvms"].as_array().expect("a jvms list");
            assert_eq!(jvms.len(), 1, "{what}: {report}");
            let j = &jvms[0];
            assert_eq!(j["pid"].as_i64(), Some(i64::from(jvm.pid)), "{what}");
            assert_eq!(j["source"], "memory", "{what}: {j}");
            let version = j["java_version"].as_str().expect("java_version");
            assert!(
                version.starts_with(&format!("{}.", jdk.major)) || version == jdk.major.to_string(),
                "{what}: {version}"
            );
            assert_eq!(
                names(&j["features"]),
                printed,
                "{what}: recorded vs printed"
            );
            assert!(report["host"].is_object() && report["image"].is_object());
            assert_eq!(report["gate"]["checks"], "fpu,jvm", "{what}");
            assert_eq!(report["gate"]["passed"], true, "{what}: {report}");
            eprintln!("{what}: {}", printed.join(", "));
        }
    }
}

// ---------------------------------------------------------------------------------------
// Images and the refusal on this host

/// Every file of `dir` (recursively) with its SHA-256.
fn checksums(dir: &Path) -> BTreeMap<String, String> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            } else {
                files.push(e.path());
            }
        }
    }
    files
        .into_iter()
        .map(|p| {
            let out = Command::new("sha256sum").arg(&p).output().unwrap();
            let sum = String::from_utf8_lossy(&out.stdout)
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .to_string();
            (p.strip_prefix(dir).unwrap().display().to_string(), sum)
        })
        .collect()
}

fn read_json(p: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

fn write_json(p: &Path, v: &Value) {
    std::fs::write(p, serde_json::to_string_pretty(v).unwrap()).unwrap();
}

fn cpu_flags() -> Vec<String> {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap();
    let line = info
        .lines()
        .find(|l| l.starts_with("flags"))
        .expect("flags in /proc/cpuinfo");
    line.split_whitespace().map(str::to_string).collect()
}

/// HotSpot (JDK 17) features and the `/proc/cpuinfo` flag each needs, for CPUs newer
/// or other than this one (Xeon Phi, Ice Lake+, AMD).
const CLAIMABLE: &[(&str, &str)] = &[
    ("avx512pf", "avx512pf"),
    ("avx512er", "avx512er"),
    ("avx512_vbmi", "avx512vbmi"),
    ("avx512_vbmi2", "avx512_vbmi2"),
    ("sha", "sha_ni"),
    ("avx512_vaes", "vaes"),
    ("sse4a", "sse4a"),
];

/// Dumps a counter, then makes its record claim a JDK 17 JVM using baseline features
/// plus every feature of [`CLAIMABLE`]; returns the workload, the images dir and the
/// claimed features this host lacks.
fn image_claiming_a_jvm(dir: &ScratchDir) -> (Workload, PathBuf, Vec<&'static str>) {
    let images = dir.subdir("images");
    let w = Workload::start("counter", &dir.join("counter.log"), &["2", "5"], dir.path());
    w.wait_ticks_after(0, 3, LINE_TIMEOUT);
    dump(&images, w.pid(), &[]).assert_success();
    w.assert_gone(LINE_TIMEOUT);

    let flags = cpu_flags();
    let lacking: Vec<&str> = CLAIMABLE
        .iter()
        .filter(|(_, flag)| !flags.iter().any(|f| f == flag))
        .map(|(name, _)| *name)
        .collect();
    assert!(!lacking.is_empty(), "this host has every claimable feature");
    let record_path = images.join("stasis-cpu.json");
    let mut rec = read_json(&record_path);
    let mut features = vec!["cx8", "cmov", "fxsr", "mmx", "sse", "sse2"];
    features.extend(CLAIMABLE.iter().map(|(n, _)| *n));
    rec["record"]["jvms"] = json!([{
        "pid": w.pid(),
        "java_version": "17.0.15",
        "source": "memory",
        "features": features,
    }]);
    write_json(&record_path, &rec);
    (w, images, lacking)
}

#[test]
fn every_dump_writes_cpuinfo_img_for_crit_and_each_threads_xsave_state() {
    let dir = ScratchDir::new("cpu-gate-record");
    let images = dir.subdir("images");
    let w = Workload::start("counter", &dir.join("counter.log"), &["2", "3"], dir.path());
    w.wait_ticks_after(0, 3, LINE_TIMEOUT);
    dump(&images, w.pid(), &[]).assert_success();
    w.assert_gone(LINE_TIMEOUT);

    let set = crit_decode_all(&images);
    assert_eq!(set.magic("cpuinfo.img"), Some("CPUINFO"));
    let x86 = &set.entries("cpuinfo.img")[0]["x86_entry"][0];
    assert!(
        matches!(x86["vendor_id"].as_str(), Some("INTEL" | "AMD")),
        "{x86}"
    );
    assert_eq!(x86["capability_ver"], 2, "{x86}");
    assert_eq!(
        x86["capability"].as_array().map(Vec::len),
        Some(19),
        "{x86}"
    );
    assert!(
        x86["xfeatures_mask"].as_u64().unwrap_or(0) & 0b11 == 0b11,
        "{x86}"
    );
    assert!(x86["xsave_size"].as_u64().unwrap_or(0) >= 576, "{x86}");

    let rec = read_json(&images.join("stasis-cpu.json"));
    assert_eq!(rec["format"], "stasis-cpu/1");
    let tasks = rec["record"]["tasks"].as_array().expect("tasks");
    let core_bv = set
        .core(w.pid())
        .pointer("/thread_info/fpregs/xsave/xstate_bv")
        .and_then(Value::as_u64)
        .expect("xstate_bv in the core image");
    assert_eq!(
        tasks,
        &vec![json!({"tid": w.pid(), "xstate_bv": core_bv})],
        "{rec}"
    );
    assert!(rec["record"]["cpuid"]["xcr0"].is_string(), "{rec}");

    // Same host: the gate passes, under the default and under every CRIU check.
    stasis(["cpuinfo", "check", "-D", &images.to_string_lossy()]).assert_success();
    let out = stasis([
        "restore",
        "-D",
        &images.to_string_lossy(),
        "--check-only",
        "-o",
        &dir.join("check.log").to_string_lossy(),
        "-v4",
    ]);
    out.assert_success();
    let log = std::fs::read_to_string(dir.join("check.log")).unwrap();
    assert!(log.contains("CPU gate passed (checks fpu;"), "{log}");
}

#[test]
fn a_jvm_needing_features_this_host_lacks_is_refused_by_name_with_nothing_created() {
    let dir = ScratchDir::new("cpu-gate-refuse");
    let (w, images, lacking) = image_claiming_a_jvm(&dir);
    let before = checksums(&images);
    let log = dir.join("restore.log");
    let images_arg = images.to_string_lossy().into_owned();

    for extra in [&[][..], &["--check-only"][..]] {
        let mut args = vec![
            "restore",
            "-D",
            &images_arg,
            "-d",
            "-o",
            log.to_str().unwrap(),
            "-v4",
        ];
        args.extend(extra);
        let out = stasis(&args);
        out.assert_clean_failure();
        for name in &lacking {
            assert!(out.stderr.contains(name), "{name} not named:\n{out}");
        }
        assert!(
            out.stderr.contains(&format!("JVM pid {}", w.pid()))
                && out.stderr.contains("-XX:CPUFeatures=0x"),
            "{out}"
        );
        for base in ["cx8", "cmov", "sse2"] {
            assert!(
                !out.stderr.contains(&format!(" {base},")),
                "{base} named as missing:\n{out}"
            );
        }
        // Nothing was created: no process with the image's pid or running the workload,
        // and the images are byte for byte what the dump wrote.
        assert!(!proc::is_alive(w.pid()), "pid {} exists:\n{out}", w.pid());
        assert!(
            proc::live_pids_with_arg(&dir.join("counter.log").to_string_lossy()).is_empty(),
            "a counter runs after the refusal"
        );
        assert_eq!(checksums(&images), before, "images changed:\n{out}");
    }

    let out = stasis(["cpuinfo", "check", "-D", &images_arg, "--cpu-cap=jvm"]);
    out.assert_clean_failure();
    let report = inspect(&images);
    assert_eq!(report["gate"]["passed"], false, "{report}");
    let mut missing = names(&report["jvms"][0]["missing_on_host"]);
    missing.sort();
    let mut expected: Vec<String> = lacking.iter().map(|s| s.to_string()).collect();
    expected.sort();
    assert_eq!(missing, expected, "{report}");

    // Told not to check JVMs, the same image restores, and the counter ticks on.
    let out = stasis([
        "restore",
        "-D",
        &images_arg,
        "-d",
        "--cpu-cap=^jvm",
        "-o",
        log.to_str().unwrap(),
        "-v4",
    ]);
    out.assert_success();
    let after = w.lines().len();
    w.wait_ticks_after(after, 3, LINE_TIMEOUT);
}

#[test]
fn an_image_from_a_cpu_with_amx_is_refused_by_the_ins_check_naming_amx_tile() {
    assert!(
        !cpu_flags().iter().any(|f| f == "amx_tile"),
        "this host has AMX: the test cannot prove anything here"
    );
    let dir = ScratchDir::new("cpu-gate-amx");
    let images = dir.subdir("images");
    let w = Workload::start("counter", &dir.join("counter.log"), &["2", "9"], dir.path());
    w.wait_ticks_after(0, 3, LINE_TIMEOUT);
    dump(&images, w.pid(), &[]).assert_success();
    w.assert_gone(LINE_TIMEOUT);
    let record_path = images.join("stasis-cpu.json");
    let mut rec = read_json(&record_path);
    let leaf = &mut rec["record"]["cpuid"]["leaves"]["0x00000007.0"];
    let regs: Vec<u32> = leaf
        .as_str()
        .unwrap()
        .split_whitespace()
        .map(|r| u32::from_str_radix(r.trim_start_matches("0x"), 16).unwrap())
        .collect();
    // CPUID.7.0:EDX AMX-BF16 (22), AMX-TILE (24), AMX-INT8 (25).
    let edx = regs[3] | 1 << 22 | 1 << 24 | 1 << 25;
    *leaf = json!(format!(
        "{:#010x} {:#010x} {:#010x} {edx:#010x}",
        regs[0], regs[1], regs[2]
    ));
    write_json(&record_path, &rec);
    let before = checksums(&images);
    let images_arg = images.to_string_lossy().into_owned();
    let log = dir.join("check.log");
    let log_arg = log.to_string_lossy().into_owned();

    // The default checks (fpu) do not compare instruction sets...
    stasis(["restore", "-D", &images_arg, "--check-only", "-o", &log_arg]).assert_success();
    // ...CRIU's ins check does, and names the AMX instructions.
    let out = stasis([
        "restore",
        "-D",
        &images_arg,
        "--check-only",
        "--cpu-cap=ins",
        "-o",
        &log_arg,
    ]);
    out.assert_clean_failure();
    assert!(
        out.stderr.contains("amx_tile") && out.stderr.contains("amx_int8"),
        "{out}"
    );
    assert_eq!(checksums(&images), before);
}

// ---------------------------------------------------------------------------------------
// A real older CPU: QEMU under TCG

/// The QEMU CPU model: AMD EPYC Milan (Zen 3) has XSAVE, AVX2 and PKU but no AVX-512, so
/// a JVM that compiled for this host's AVX-512 must be refused, while a program whose
/// registers hold only SSE and PKRU state fits.
const GUEST_CPU: &str = "EPYC-Milan";
/// GLIBC_TUNABLES that keep glibc's string functions off AVX-512 (CRaC does the same to
/// make a JVM portable), so the plain program holds no AVX-512 state.
const NO_AVX512: &str = "glibc.cpu.hwcaps=-AVX512F,-AVX512VL,-AVX512BW,-AVX512DQ,-AVX512CD";

/// Builds the static stasis the guest runs (`target/static`), as scripts and the
/// README describe, and returns it.
fn static_stasis() -> PathBuf {
    let root = workspace_root();
    let target_dir = root.join("target/static");
    let cargo = option_env!("CARGO").unwrap_or("cargo");
    let out = Command::new(cargo)
        .current_dir(&root)
        .env("RUSTFLAGS", "-C target-feature=+crt-static")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_TARGET_DIR")
        .args([
            "build",
            "--release",
            "-p",
            "stasis-cli",
            "--target",
            "x86_64-unknown-linux-gnu",
            "--target-dir",
        ])
        .arg(&target_dir)
        .output()
        .expect("run cargo");
    assert!(
        out.status.success(),
        "static build of stasis failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bin = target_dir.join("x86_64-unknown-linux-gnu/release/stasis");
    let file = Command::new("file").arg(&bin).output();
    if let Ok(f) = file {
        let text = String::from_utf8_lossy(&f.stdout);
        assert!(
            !text.contains("dynamically linked"),
            "{} is not static: {text}",
            bin.display()
        );
    }
    bin
}

/// The newest Debian kernel in /boot.
fn guest_kernel() -> PathBuf {
    let mut kernels: Vec<PathBuf> = std::fs::read_dir("/boot")
        .expect("/boot")
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("vmlinuz-"))
        })
        .collect();
    kernels.sort();
    kernels
        .pop()
        .expect("a kernel in /boot: apt-get install linux-image-amd64")
}

fn which(tool: &str, package: &str) -> PathBuf {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("{tool} is not installed: apt-get install {package}"))
}

/// Copies `src` into `dst` recursively (image dirs hold only regular files).
fn copy_dir(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).unwrap();
    for e in std::fs::read_dir(src).unwrap().flatten() {
        let to = dst.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to);
        } else {
            std::fs::copy(e.path(), &to).unwrap();
        }
    }
}

/// Dumps a JVM of this host into `images`: a real dump of the JVM left running, or —
/// while stasis cannot dump multi-threaded processes — a plain single-process dump
/// whose CPU record then gets the live JVM from `stasis cpuinfo dump -t`. Returns which.
fn dump_jvm(dir: &ScratchDir, images: &Path) -> &'static str {
    let classes = compile_sleeper(dir.path());
    let jvm = LiveJvm::start(&Jdk::on_path(), &[], &classes, dir.path(), "guest-jvm");
    let real = dump(images, jvm.pid, &["--leave-running"]);
    if real.success() {
        return "a real dump of the JVM";
    }
    assert!(
        real.stderr.contains("not supported yet"),
        "the JVM dump failed for another reason than an unsupported feature:\n{real}"
    );
    eprintln!(
        "the JVM cannot be dumped yet ({}); using a counter's image with the JVM's CPU record",
        real.stderr.trim()
    );
    for e in std::fs::read_dir(images).unwrap().flatten() {
        std::fs::remove_file(e.path()).unwrap();
    }
    let w = Workload::start(
        "counter",
        &dir.join("jvm-counter.log"),
        &["1", "4"],
        dir.path(),
    );
    w.wait_ticks_after(0, 2, LINE_TIMEOUT);
    dump(images, w.pid(), &[]).assert_success();
    w.assert_gone(LINE_TIMEOUT);
    stasis([
        "cpuinfo",
        "dump",
        "-D",
        &images.to_string_lossy(),
        "-t",
        &jvm.pid.to_string(),
    ])
    .assert_success();
    "a counter's dump with the live JVM's CPU record (stasis cpuinfo dump -t)"
}

/// Dumps a counter whose glibc is kept off AVX-512 into `images`.
fn dump_plain(dir: &ScratchDir, images: &Path) {
    proc::become_subreaper();
    let log = dir.join("plain-counter.log");
    let child = Command::new(workload_bin("counter"))
        .arg(&log)
        .args(["1", "6"])
        .current_dir(dir.path())
        .env("GLIBC_TUNABLES", NO_AVX512)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start counter");
    let pid = child.id() as Pid;
    drop(child);
    let _guard = ProcessGuard::new(pid, log.to_string_lossy());
    LogFile::new(&log).wait_for("the counter to tick", LINE_TIMEOUT, |l| {
        (l.iter().filter(|l| l.starts_with("tick ")).count() >= 3).then_some(())
    });
    dump(images, pid, &[]).assert_success();
    proc::wait_gone(pid, LINE_TIMEOUT).unwrap();
}

/// Writes the initramfs: busybox, the static stasis, /init and the image dirs.
fn build_initramfs(dir: &ScratchDir, stasis_bin: &Path, images: &[(&str, &Path)]) -> PathBuf {
    let root = dir.subdir("initramfs");
    for d in ["bin", "proc", "sys", "dev", "tmp", "img"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::fs::copy(which("busybox", "busybox-static"), root.join("bin/busybox")).unwrap();
    // Debug info is half the binary; the guest unpacks every byte under TCG.
    let stripped = root.join("bin/stasis");
    let st = Command::new("objcopy")
        .arg("--strip-debug")
        .arg(stasis_bin)
        .arg(&stripped)
        .status();
    if !matches!(st, Ok(s) if s.success()) {
        std::fs::copy(stasis_bin, &stripped).unwrap();
    }
    let init = workspace_root().join("test/qemu/init");
    std::fs::copy(&init, root.join("init")).unwrap();
    for (name, src) in images {
        copy_dir(src, &root.join("img").join(name));
    }
    // Modes: cpio keeps them; make the executables executable.
    for exe in ["init", "bin/busybox", "bin/stasis"] {
        let p = root.join(exe);
        let st = Command::new("chmod").arg("755").arg(&p).status().unwrap();
        assert!(st.success(), "chmod {}", p.display());
    }
    let cpio = dir.join("initramfs.cpio");
    let st = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "cd '{}' && find . | cpio -o -H newc --quiet > '{}'",
            root.display(),
            cpio.display()
        ))
        .status()
        .expect("sh");
    assert!(st.success(), "cpio failed (apt-get install cpio)");
    cpio
}

/// `@@stasis KEY VALUE` lines of the guest's console: KEY → every VALUE in order.
fn markers(console: &str) -> BTreeMap<String, Vec<String>> {
    let mut m: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in console.lines() {
        let line = line.trim_end_matches('\r');
        let Some(i) = line.find("@@stasis ") else {
            continue;
        };
        let rest = &line[i + "@@stasis ".len()..];
        let (k, v) = rest.split_once(' ').unwrap_or((rest, ""));
        m.entry(k.to_string()).or_default().push(v.to_string());
    }
    m
}

fn one(m: &BTreeMap<String, Vec<String>>, key: &str, console: &str) -> String {
    m.get(key)
        .and_then(|v| v.first())
        .cloned()
        .unwrap_or_else(|| panic!("the guest printed no {key}; its console:\n{console}"))
}

#[test]
fn on_an_older_cpu_under_qemu_the_jvm_image_is_refused_naming_features_and_a_plain_one_passes() {
    let qemu = which("qemu-system-x86_64", "qemu-system-x86");
    which("cpio", "cpio");
    let kernel = guest_kernel();
    let stasis_bin = static_stasis();
    let dir = ScratchDir::new("cpu-gate-qemu");

    let jvm_images = dir.subdir("jvm");
    let how = dump_jvm(&dir, &jvm_images);
    let plain_images = dir.subdir("plain");
    dump_plain(&dir, &plain_images);
    let jvm_report = inspect(&jvm_images);
    let jvm_pid = jvm_report["jvms"][0]["pid"].as_i64().expect("a JVM");

    let initramfs = build_initramfs(
        &dir,
        &stasis_bin,
        &[("jvm", &jvm_images), ("plain", &plain_images)],
    );
    let mut cmd = Command::new(&qemu);
    cmd.args([
        "-accel",
        "tcg",
        "-cpu",
        GUEST_CPU,
        "-m",
        "1024",
        "-nographic",
        "-no-reboot",
        "-kernel",
    ])
    .arg(&kernel)
    .arg("-initrd")
    .arg(&initramfs)
    .args([
        "-append",
        "console=ttyS0 quiet loglevel=1 panic=-1 rdinit=/init",
    ]);
    let started = Instant::now();
    let out = run(cmd, Duration::from_secs(170));
    let console = format!("{}\n{}", out.stdout, out.stderr);
    eprintln!(
        "QEMU ({GUEST_CPU}, {}) ran {:?}; JVM image: {how}",
        kernel.display(),
        started.elapsed()
    );
    let m = markers(&console);
    assert!(
        m.contains_key("end"),
        "the guest did not finish:\n{console}"
    );
    let guest_flags = one(&m, "cpu", &console);
    assert!(
        !guest_flags.contains("avx512f") && guest_flags.contains("xsave"),
        "the guest CPU is not the older one expected: {guest_flags}"
    );

    // The JVM image: refused, every missing feature named, with the mask.
    let refusal = m.get("jvm-err").cloned().unwrap_or_default().join("\n");
    eprintln!("the guest's refusal of the JVM image:\n{refusal}");
    assert_ne!(one(&m, "jvm-rc", &console), "0", "{console}");
    let missing_line = refusal
        .lines()
        .find(|l| l.contains(&format!("JVM pid {jvm_pid} ")))
        .unwrap_or_else(|| panic!("no JVM refusal in:\n{refusal}"));
    let named: Vec<&str> = missing_line
        .split_once("this host lacks: ")
        .and_then(|(_, r)| r.split_once(';'))
        .map(|(list, _)| list.split(", ").collect())
        .unwrap_or_else(|| panic!("no feature list in {missing_line}"));
    let used = names(&jvm_report["jvms"][0]["features"]);
    for f in ["avx512f", "avx512bw", "avx512vl"] {
        if used.iter().any(|u| u == f) {
            assert!(named.contains(&f), "{f} not named: {missing_line}");
        }
    }
    assert!(
        named.iter().all(|n| used.iter().any(|u| u == n)),
        "named a feature the JVM does not use: {missing_line}"
    );
    assert!(
        missing_line.contains("-XX:CPUFeatures=0x"),
        "{missing_line}"
    );
    assert_ne!(one(&m, "jvm-cpuinfo-check-rc", &console), "0", "{console}");

    // The plain image: the CPU gate passes it; the preflight then stops at something
    // that is not the CPU (this guest's kernel and files are not the host's).
    let plain_log = m.get("plain-log").cloned().unwrap_or_default().join("\n");
    assert!(
        plain_log.contains("CPU gate passed (checks fpu;"),
        "the CPU gate did not pass the plain image:\n{plain_log}\n{console}"
    );
    let plain_err = m.get("plain-err").cloned().unwrap_or_default().join("\n");
    assert!(!plain_err.contains("CPU check"), "{plain_err}");
    assert_eq!(
        one(&m, "plain-cpuinfo-check-rc", &console),
        "0",
        "{console}"
    );

    // A program dumped in the guest passes the whole restore preflight there.
    assert_eq!(one(&m, "guest-dump-rc", &console), "0", "{console}");
    assert_eq!(one(&m, "guest-rc", &console), "0", "{console}");
    assert!(
        m.get("guest-out")
            .is_some_and(|v| v.iter().any(|l| l.contains("Restore preflight passed"))),
        "{console}"
    );
}
