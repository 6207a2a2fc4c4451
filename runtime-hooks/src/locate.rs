//! Which runc stasis-runc delegates to and which stasis binary runc gets as its criu.
//!
//! runc: `$STASIS_RUNC`, else the first `runc` in `PATH` that is not stasis-runc itself (a
//! deployment may install stasis-runc *as* `runc` earlier in PATH). stasis: `$STASIS_BIN`,
//! else `stasis` next to this executable, else the first `stasis` in `PATH`. podman runs the
//! runtime with only `PATH` and `XDG_RUNTIME_DIR` in the environment, so the PATH and
//! next-to-us lookups must be enough on an installed system.

use std::ffi::{OsStr, OsString};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::Error;

/// Environment variable naming the runc to delegate to.
pub const RUNC_ENV: &str = "STASIS_RUNC";
/// Environment variable naming the stasis binary.
pub const STASIS_ENV: &str = "STASIS_BIN";

/// The search path when the caller passes no `PATH` at all (podman runs some runtime
/// commands, e.g. `kill` during `podman rm`, with an environment without one).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// `PATH` as given, or [`DEFAULT_PATH`] when it is unset or empty.
pub fn effective_path(env_value: Option<OsString>) -> OsString {
    env_value
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| DEFAULT_PATH.into())
}

fn is_executable(path: &Path) -> bool {
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// Every executable `name` in `path` (a `PATH` value), in order.
pub fn search_path(name: &str, path: Option<&OsStr>) -> Vec<PathBuf> {
    let Some(path) = path else { return Vec::new() };
    std::env::split_paths(path)
        .filter(|dir| !dir.as_os_str().is_empty())
        .map(|dir| dir.join(name))
        .filter(|p| is_executable(p))
        .collect()
}

/// The real runc: `env_value` (`$STASIS_RUNC`) if set, else the first `runc` in `path` that
/// is not `myself`.
pub fn runc(
    env_value: Option<&OsStr>,
    path: Option<&OsStr>,
    myself: Option<&Path>,
) -> Result<PathBuf, Error> {
    if let Some(v) = env_value.filter(|v| !v.is_empty()) {
        let p = PathBuf::from(v);
        return if is_executable(&p) {
            Ok(p)
        } else {
            Err(Error::RuncNotExecutable { path: p })
        };
    }
    search_path("runc", path)
        .into_iter()
        .find(|p| myself.is_none_or(|me| !same_file(p, me)))
        .ok_or_else(|| Error::RuncNotFound {
            searched: path.map_or_else(
                || "no PATH".to_string(),
                |p| format!("PATH={}", p.to_string_lossy()),
            ),
        })
}

/// The stasis engine binary: `env_value` (`$STASIS_BIN`), else `stasis` beside `myself`,
/// else the first `stasis` in `path`.
pub fn stasis(
    env_value: Option<&OsStr>,
    path: Option<&OsStr>,
    myself: Option<&Path>,
) -> Result<PathBuf, Error> {
    if let Some(v) = env_value.filter(|v| !v.is_empty()) {
        let p = PathBuf::from(v);
        return if is_executable(&p) {
            Ok(p)
        } else {
            Err(Error::StasisNotExecutable { path: p })
        };
    }
    let beside = myself.and_then(Path::parent).map(|d| d.join("stasis"));
    if let Some(b) = beside.as_ref().filter(|b| is_executable(b)) {
        return Ok(b.clone());
    }
    search_path("stasis", path)
        .into_iter()
        .next()
        .ok_or_else(|| Error::StasisNotFound {
            beside: myself
                .and_then(Path::parent)
                .map_or_else(|| "stasis-runc".to_string(), |d| d.display().to_string()),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn scratch(name: &str) -> PathBuf {
        let d =
            std::env::temp_dir().join(format!("stasis-runc-locate-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    fn exe(path: &Path) {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, "#!/bin/sh\n").unwrap();
        fs::set_permissions(path, fs::Permissions::from_mode(0o755)).unwrap();
    }

    #[test]
    fn runc_in_path_skips_stasis_runc_installed_as_runc() {
        let d = scratch("skip");
        exe(&d.join("a/runc"));
        exe(&d.join("b/runc"));
        let path = std::env::join_paths([d.join("a"), d.join("b")]).unwrap();
        let found = runc(None, Some(&path), Some(&d.join("a/runc"))).unwrap();
        assert_eq!(found, d.join("b/runc"));
        let found = runc(None, Some(&path), None).unwrap();
        assert_eq!(found, d.join("a/runc"));
    }

    #[test]
    fn stasis_runc_env_wins_and_must_be_executable() {
        let d = scratch("env");
        exe(&d.join("myrunc"));
        let found = runc(Some(d.join("myrunc").as_os_str()), None, None).unwrap();
        assert_eq!(found, d.join("myrunc"));
        let err = runc(Some(d.join("nope").as_os_str()), None, None).unwrap_err();
        assert!(err.to_string().contains("STASIS_RUNC="), "{err}");
    }

    #[test]
    fn no_runc_anywhere_names_the_path_searched() {
        let d = scratch("none");
        let err = runc(None, Some(d.as_os_str()), None).unwrap_err();
        assert!(err.to_string().contains(&d.display().to_string()), "{err}");
    }

    #[test]
    fn no_path_at_all_searches_the_system_directories() {
        assert_eq!(effective_path(None), OsString::from(DEFAULT_PATH));
        assert_eq!(
            effective_path(Some("".into())),
            OsString::from(DEFAULT_PATH)
        );
        assert_eq!(effective_path(Some("/x".into())), OsString::from("/x"));
    }

    #[test]
    fn stasis_next_to_us_comes_before_path() {
        let d = scratch("stasis");
        exe(&d.join("bin/stasis"));
        exe(&d.join("other/stasis"));
        let path = d.join("other").into_os_string();
        let me = d.join("bin/stasis-runc");
        assert_eq!(
            stasis(None, Some(&path), Some(&me)).unwrap(),
            d.join("bin/stasis")
        );
        let me = d.join("elsewhere/stasis-runc");
        assert_eq!(
            stasis(None, Some(&path), Some(&me)).unwrap(),
            d.join("other/stasis")
        );
        assert!(stasis(None, None, Some(&me)).is_err());
    }
}
