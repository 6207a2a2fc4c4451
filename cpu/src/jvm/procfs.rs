//! What `/proc/PID` says about a JVM: where `libjvm.so` is mapped, the Java home and
//! version (`release` file), and the VM options that change its features.

use std::fs;
use std::path::{Path, PathBuf};

use crate::hotspot::VmFlags;
use crate::CpuError;

/// The mapping of `libjvm.so` in a process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LibjvmMapping {
    /// Path of the library in the process's mount namespace.
    pub path: PathBuf,
    /// `(start, file offset)` of each mapping of the file.
    pub segments: Vec<(u64, u64)>,
}

/// Upper bound on `/proc` files stasis reads whole (maps, cmdline, environ, release).
const MAX_PROC_FILE: u64 = 16 << 20;

pub(crate) fn read_bounded(path: &Path) -> Result<Vec<u8>, CpuError> {
    use std::io::Read;
    let f = fs::File::open(path).map_err(|e| CpuError::io(path, e))?;
    let mut buf = Vec::new();
    f.take(MAX_PROC_FILE + 1)
        .read_to_end(&mut buf)
        .map_err(|e| CpuError::io(path, e))?;
    if buf.len() as u64 > MAX_PROC_FILE {
        return Err(CpuError::malformed(path, "larger than 16 MiB"));
    }
    Ok(buf)
}

/// Finds `libjvm.so` in the text of `/proc/PID/maps`.
pub(crate) fn parse_maps(maps: &str, path: &Path) -> Result<Option<LibjvmMapping>, CpuError> {
    let mut found: Option<LibjvmMapping> = None;
    for (n, line) in maps.lines().enumerate() {
        // start-end perms offset dev inode [path]
        let mut fields = line.splitn(6, ' ');
        let range = fields.next().unwrap_or_default();
        let _perms = fields.next();
        let offset = fields.next().unwrap_or_default();
        let _dev = fields.next();
        let _inode = fields.next();
        let file = fields.next().unwrap_or_default().trim_start();
        let file = file.strip_suffix(" (deleted)").unwrap_or(file);
        if !file.ends_with("/libjvm.so") {
            continue;
        }
        let bad = |what: &str| CpuError::malformed(path, format!("line {}: {what}", n + 1));
        let start = range
            .split_once('-')
            .and_then(|(s, _)| u64::from_str_radix(s, 16).ok())
            .ok_or_else(|| bad("bad address range"))?;
        let offset = u64::from_str_radix(offset, 16).map_err(|_| bad("bad offset"))?;
        match &mut found {
            Some(m) if m.path == Path::new(file) => m.segments.push((start, offset)),
            Some(m) => {
                return Err(bad(&format!(
                    "a second libjvm.so ({file}) besides {}",
                    m.path.display()
                )))
            }
            None => {
                found = Some(LibjvmMapping {
                    path: PathBuf::from(file),
                    segments: vec![(start, offset)],
                })
            }
        }
    }
    Ok(found)
}

/// The Java version of a JVM: `JAVA_VERSION` of the `release` file of its Java home,
/// found by walking up from the directory holding `libjvm.so`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct JavaRelease {
    pub home: PathBuf,
    pub version: String,
    pub major: u32,
}

/// Reads the `release` file above `libjvm` (a path inside `root`, the process's root).
pub(crate) fn java_release(root: &Path, libjvm: &Path) -> Result<JavaRelease, CpuError> {
    // JDK 9+: <home>/lib/server/libjvm.so; JDK 8: <home>/jre/lib/amd64/server/libjvm.so.
    for home in libjvm.ancestors().skip(1).take(5) {
        let release = root
            .join(home.strip_prefix("/").unwrap_or(home))
            .join("release");
        let text = match fs::read(&release) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(CpuError::io(&release, e)),
        };
        let text = String::from_utf8_lossy(&text);
        let version = release_value(&text, "JAVA_VERSION")
            .ok_or_else(|| CpuError::malformed(&release, "no JAVA_VERSION"))?;
        let major = java_major(&version).ok_or_else(|| {
            CpuError::malformed(&release, format!("JAVA_VERSION {version:?} has no major"))
        })?;
        return Ok(JavaRelease {
            home: home.to_path_buf(),
            version,
            major,
        });
    }
    Err(CpuError::malformed(
        libjvm,
        "no release file in the five directories above libjvm.so",
    ))
}

/// `KEY="value"` of a `release` file.
pub(crate) fn release_value(text: &str, key: &str) -> Option<String> {
    text.lines().find_map(|l| {
        let v = l.strip_prefix(key)?.strip_prefix('=')?;
        Some(v.trim().trim_matches('"').to_string())
    })
}

/// The feature release of a Java version string: 17 for "17.0.15", 8 for "1.8.0_402".
pub fn java_major(version: &str) -> Option<u32> {
    let mut parts = version.split(|c: char| !c.is_ascii_digit());
    let first: u32 = parts.next()?.parse().ok()?;
    if first == 1 {
        parts.next()?.parse().ok()
    } else {
        Some(first)
    }
}

/// The options a JVM was given that change its features, from its command line and the
/// variables the launcher and VM read, in the VM's order of precedence:
/// `JAVA_TOOL_OPTIONS`, `JDK_JAVA_OPTIONS`, the command line, `_JAVA_OPTIONS` (last wins).
/// Option files (`-XX:Flags=`, `-XX:VMOptionsFile=`, `@argfiles`) are not followed.
pub(crate) fn vm_flags(cmdline: &[u8], environ: &[u8]) -> VmFlags {
    let env_var = |name: &str| -> Vec<String> {
        environ
            .split(|&b| b == 0)
            .filter_map(|kv| std::str::from_utf8(kv).ok())
            .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
            .map(|v| v.split_whitespace().map(str::to_string).collect())
            .unwrap_or_default()
    };
    let mut args = env_var("JAVA_TOOL_OPTIONS");
    args.extend(env_var("JDK_JAVA_OPTIONS"));
    args.extend(launcher_vm_args(cmdline));
    args.extend(env_var("_JAVA_OPTIONS"));
    let mut flags = VmFlags::default();
    for a in &args {
        let Some(opt) = a.strip_prefix("-XX:") else {
            continue;
        };
        if let Some(v) = opt.strip_prefix("UseAVX=") {
            flags.use_avx = v.parse().ok();
        } else if let Some(v) = opt.strip_prefix("UseSSE=") {
            flags.use_sse = v.parse().ok();
        } else if opt == "+UseAPX" || opt == "-UseAPX" {
            flags.use_apx = opt == "+UseAPX";
        } else if opt == "+UseKNLSetting" || opt == "-UseKNLSetting" {
            flags.use_knl_setting = opt == "+UseKNLSetting";
        }
    }
    flags
}

/// The VM options of a `java` command line: the arguments after `argv[0]` up to the main
/// class, `-jar FILE` or `-m MODULE` (what follows belongs to the application).
fn launcher_vm_args(cmdline: &[u8]) -> Vec<String> {
    const TAKES_VALUE: &[&str] = &[
        "-cp",
        "-classpath",
        "--class-path",
        "-p",
        "--module-path",
        "--upgrade-module-path",
        "--add-modules",
        "--limit-modules",
        "--add-reads",
        "--add-exports",
        "--add-opens",
        "--patch-module",
        "--enable-native-access",
    ];
    let mut out = Vec::new();
    let mut it = cmdline
        .split(|&b| b == 0)
        .skip(1)
        .map(|a| String::from_utf8_lossy(a).into_owned());
    while let Some(a) = it.next() {
        if !a.starts_with('-') || a == "-jar" || a == "-m" || a == "--module" {
            break;
        }
        if TAKES_VALUE.contains(&a.as_str()) {
            it.next();
            continue;
        }
        out.push(a);
    }
    out
}

/// The `-XX:CRaCCheckpointTo=` directory of a CRaC JVM, where it writes `tags`.
pub(crate) fn crac_checkpoint_dir(cmdline: &[u8]) -> Option<PathBuf> {
    launcher_vm_args(cmdline)
        .iter()
        .rev()
        .find_map(|a| a.strip_prefix("-XX:CRaCCheckpointTo=").map(PathBuf::from))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAPS: &str = "\
55d0c0a00000-55d0c0a01000 r--p 00000000 fd:01 123 /usr/lib/jvm/java-17-openjdk-amd64/bin/java
7f1c2a000000-7f1c2a200000 r--p 00000000 fd:01 456 /usr/lib/jvm/java-17-openjdk-amd64/lib/server/libjvm.so
7f1c2a200000-7f1c2b000000 r-xp 00200000 fd:01 456 /usr/lib/jvm/java-17-openjdk-amd64/lib/server/libjvm.so
7f1c2c000000-7f1c2c001000 rw-p 00000000 00:00 0 
";

    #[test]
    fn maps_locate_libjvm_and_its_segments() {
        let m = parse_maps(MAPS, Path::new("maps")).unwrap().unwrap();
        assert_eq!(
            m.path,
            Path::new("/usr/lib/jvm/java-17-openjdk-amd64/lib/server/libjvm.so")
        );
        assert_eq!(
            m.segments,
            [(0x7f1c_2a00_0000, 0), (0x7f1c_2a20_0000, 0x20_0000)]
        );
    }

    #[test]
    fn a_process_without_libjvm_is_not_a_jvm() {
        let maps = "00400000-00401000 r-xp 00000000 fd:01 1 /usr/bin/sleep\n";
        assert_eq!(parse_maps(maps, Path::new("maps")).unwrap(), None);
    }

    #[test]
    fn java_versions_give_their_feature_release() {
        assert_eq!(java_major("17.0.15"), Some(17));
        assert_eq!(java_major("25"), Some(25));
        assert_eq!(java_major("1.8.0_402"), Some(8));
        assert_eq!(java_major("x"), None);
    }

    #[test]
    fn release_values_are_unquoted() {
        let text = "IMPLEMENTOR=\"Debian\"\nJAVA_VERSION=\"17.0.15\"\n";
        assert_eq!(
            release_value(text, "JAVA_VERSION").as_deref(),
            Some("17.0.15")
        );
        assert_eq!(release_value(text, "JAVA_VERSION_DATE"), None);
    }

    #[test]
    fn vm_flags_follow_hotspot_precedence_and_stop_at_the_main_class() {
        let cmd = b"java\0-cp\0/tmp/x\0-XX:UseAVX=2\0Main\0-XX:UseSSE=2\0";
        let env = b"JAVA_TOOL_OPTIONS=-XX:UseAVX=1 -XX:UseSSE=3\0";
        let f = vm_flags(cmd, env);
        assert_eq!(
            f.use_avx,
            Some(2),
            "the command line overrides JAVA_TOOL_OPTIONS"
        );
        assert_eq!(
            f.use_sse,
            Some(3),
            "arguments after the main class are the app's"
        );
        let f = vm_flags(cmd, b"_JAVA_OPTIONS=-XX:UseAVX=0\0");
        assert_eq!(
            f.use_avx,
            Some(0),
            "_JAVA_OPTIONS overrides the command line"
        );
    }

    #[test]
    fn the_crac_checkpoint_dir_comes_from_the_vm_options() {
        let cmd = b"java\0-XX:CRaCCheckpointTo=/cr\0-jar\0app.jar\0";
        assert_eq!(crac_checkpoint_dir(cmd), Some(PathBuf::from("/cr")));
    }
}
