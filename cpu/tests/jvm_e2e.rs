//! The installed JVMs against stasis: for default options, `-XX:UseAVX=2` and
//! `-XX:UseAVX=1 -XX:UseSSE=2`, the list `java -Xlog:os+cpu` prints equals what stasis
//! computes for this host from HotSpot's tables, what it reads from a live JVM's memory,
//! and what the table gives for the options on the live JVM's command line.
//!
//! The JDK on `PATH` (Debian's OpenJDK 17 in CI) is required; any JDK 25 under
//! `/usr/lib/jvm` is checked too.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use stasis_cpu::hotspot::{self, VmFlags};
use stasis_cpu::jvm::{detect_jvm, java_major, vm_flags_of};
use stasis_cpu::{HostCpuid, JvmSource};

const FLAG_SETS: &[&[&str]] = &[&[], &["-XX:UseAVX=2"], &["-XX:UseAVX=1", "-XX:UseSSE=2"]];

struct Jdk {
    home: PathBuf,
    major: u32,
}

impl Jdk {
    fn java(&self) -> PathBuf {
        self.home.join("bin/java")
    }
}

fn jdk_at(home: &Path) -> Option<Jdk> {
    let release = std::fs::read_to_string(home.join("release")).ok()?;
    let version = release
        .lines()
        .find_map(|l| l.strip_prefix("JAVA_VERSION="))?
        .trim_matches('"');
    Some(Jdk {
        home: home.to_path_buf(),
        major: java_major(version)?,
    })
}

/// The JDK of the `java` on PATH, by its `java.home` property.
fn path_jdk() -> Jdk {
    let out = Command::new("java")
        .args(["-XshowSettings:properties", "-version"])
        .output()
        .expect("`java` on PATH (OpenJDK 17 is part of the CI image)");
    let text = String::from_utf8_lossy(&out.stderr);
    let home = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("java.home = "))
        .expect("java.home in -XshowSettings output");
    jdk_at(Path::new(home)).expect("a release file in java.home")
}

fn jdk25() -> Option<Jdk> {
    let mut homes: Vec<PathBuf> = std::fs::read_dir("/usr/lib/jvm")
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    homes.sort();
    homes
        .iter()
        .filter_map(|h| jdk_at(h))
        .find(|j| j.major >= 25 && j.java().exists())
}

fn flags_of(args: &[&str]) -> VmFlags {
    let mut f = VmFlags::default();
    for a in args {
        if let Some(v) = a.strip_prefix("-XX:UseAVX=") {
            f.use_avx = Some(v.parse().unwrap());
        }
        if let Some(v) = a.strip_prefix("-XX:UseSSE=") {
            f.use_sse = Some(v.parse().unwrap());
        }
    }
    f
}

/// The feature list of `java ARGS -Xlog:os+cpu -version`.
fn printed_features(jdk: &Jdk, args: &[&str]) -> Vec<String> {
    let out = Command::new(jdk.java())
        .args(args)
        .args(["-Xlog:os+cpu", "-version"])
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    let line = text
        .lines()
        .find(|l| l.contains("[os,cpu] CPU: total"))
        .unwrap_or_else(|| panic!("no CPU line in:\n{text}"));
    // "... family 6 model 85 stepping 7 microcode 0x1, cx8, cmov, ..."
    let list = line.split_once("microcode ").unwrap().1;
    list.split(", ").skip(1).map(str::to_string).collect()
}

fn compile_sleeper(jdk17: &Jdk, tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("stasis-cpu-e2e-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("Sleeper.java"),
        "public class Sleeper { public static void main(String[] a) throws Exception {\n\
         System.out.println(\"ready\"); System.out.flush(); Thread.sleep(600_000); } }\n",
    )
    .unwrap();
    let status = Command::new(jdk17.home.join("bin/javac"))
        .args(["--release", "17", "-d"])
        .arg(&dir)
        .arg(dir.join("Sleeper.java"))
        .status()
        .unwrap();
    assert!(status.success(), "javac failed");
    dir
}

/// A started JVM, killed when dropped.
struct LiveJvm(Child);

impl LiveJvm {
    fn start(jdk: &Jdk, args: &[&str], classes: &Path) -> Self {
        let mut child = Command::new(jdk.java())
            .args(args)
            .arg("-cp")
            .arg(classes)
            .arg("Sleeper")
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "ready", "the JVM did not start");
        LiveJvm(child)
    }

    fn pid(&self) -> i32 {
        self.0.id() as i32
    }
}

impl Drop for LiveJvm {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn check_jdk(jdk: &Jdk, classes: &Path) {
    for args in FLAG_SETS {
        let printed = printed_features(jdk, args);
        let what = format!("Java {} {args:?}", jdk.major);

        let table = hotspot::features_with(jdk.major, &HostCpuid, &flags_of(args)).unwrap();
        assert_eq!(table.names(), printed, "table for {what}");

        let jvm = LiveJvm::start(jdk, args, classes);
        let rec = detect_jvm(jvm.pid(), &HostCpuid)
            .unwrap()
            .expect("a JVM maps libjvm.so");
        assert_eq!(rec.java_major(), Some(jdk.major));
        assert_eq!(rec.source, JvmSource::Memory, "{what}: {:?}", rec.note);
        assert_eq!(rec.features.names(), printed, "memory of {what}");

        let from_cmdline = vm_flags_of(jvm.pid()).unwrap();
        assert_eq!(from_cmdline, flags_of(args), "{what}");
        let table = hotspot::features_with(jdk.major, &HostCpuid, &from_cmdline).unwrap();
        assert_eq!(
            table.names(),
            printed,
            "table from the command line of {what}"
        );
        eprintln!("{what}: {}", printed.join(", "));
    }
}

#[test]
fn jdk_on_path_prints_exactly_the_features_stasis_computes_and_reads_from_memory() {
    let jdk = path_jdk();
    let classes = compile_sleeper(&jdk, "path");
    check_jdk(&jdk, &classes);
    std::fs::remove_dir_all(classes).unwrap();
}

#[test]
fn jdk25_when_installed_prints_exactly_the_features_stasis_computes_and_reads() {
    let Some(jdk) = jdk25() else {
        eprintln!("no JDK 25 under /usr/lib/jvm: only the JDK on PATH was compared");
        return;
    };
    let classes = compile_sleeper(&path_jdk(), "jdk25");
    check_jdk(&jdk, &classes);
    std::fs::remove_dir_all(classes).unwrap();
}
