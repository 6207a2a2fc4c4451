//! CRIU's configuration files, which override or complete the RPC options: the global
//! ones (`/etc/criu/default.conf`, `~/.criu/default.conf`, or `$CRIU_CONFIG_FILE`
//! instead of both) under the request, and the request's own `config_file` (runc sends
//! `/etc/criu/runc.conf`) over it. A missing file is skipped, as CRIU skips it.
//!
//! A file holds CRIU's long options without the leading `--`, one per line (`# comments`,
//! quoted values). They are read with the command line's own parser, so an option
//! stasis does not support is refused by name exactly as on the command line.

use super::error::RpcError;
use std::path::{Path, PathBuf};

/// What a configuration file may set.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FileSettings {
    pub images_dir: Option<PathBuf>,
    pub work_dir: Option<PathBuf>,
    /// A path, relative to the work dir unless absolute (as `-o`).
    pub log_file: Option<PathBuf>,
    pub log_level: Option<u32>,
    pub pid: Option<i32>,
    pub leave_running: bool,
    pub shell_job: bool,
    pub tcp_established: bool,
    pub timeout: Option<u32>,
    pub freeze_cgroup: Option<PathBuf>,
    pub manage_cgroups: Option<stasis_restore::ManageMode>,
    pub cgroup_root: Vec<(Option<String>, PathBuf)>,
}

impl FileSettings {
    /// `later` over `self`.
    pub fn then(self, later: FileSettings) -> FileSettings {
        FileSettings {
            images_dir: later.images_dir.or(self.images_dir),
            work_dir: later.work_dir.or(self.work_dir),
            log_file: later.log_file.or(self.log_file),
            log_level: later.log_level.or(self.log_level),
            pid: later.pid.or(self.pid),
            leave_running: later.leave_running || self.leave_running,
            shell_job: later.shell_job || self.shell_job,
            tcp_established: later.tcp_established || self.tcp_established,
            timeout: later.timeout.or(self.timeout),
            freeze_cgroup: later.freeze_cgroup.or(self.freeze_cgroup),
            manage_cgroups: later.manage_cgroups.or(self.manage_cgroups),
            cgroup_root: if later.cgroup_root.is_empty() {
                self.cgroup_root
            } else {
                later.cgroup_root
            },
        }
    }
}

/// The global configuration files, lowest priority first.
pub fn global_files() -> Vec<PathBuf> {
    if let Some(f) = std::env::var_os("CRIU_CONFIG_FILE") {
        return vec![PathBuf::from(f)];
    }
    let mut files = vec![PathBuf::from("/etc/criu/default.conf")];
    if let Some(home) = std::env::var_os("HOME") {
        files.push(Path::new(&home).join(".criu/default.conf"));
    }
    files
}

/// Reads `path`; `None` if it does not exist.
pub fn read(path: &Path) -> Result<Option<FileSettings>, RpcError> {
    let err = |why: String| RpcError::Config {
        path: path.display().to_string(),
        why,
    };
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(err(e.to_string())),
    };
    parse(&text).map(Some).map_err(err)
}

/// Parses the text of a configuration file.
pub fn parse(text: &str) -> Result<FileSettings, String> {
    let mut argv = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let words = words(line).map_err(|e| format!("line {}: {e}", n + 1))?;
        let Some((opt, values)) = words.split_first() else {
            continue;
        };
        if opt.starts_with('-') {
            return Err(format!("line {}: write {opt:?} without dashes", n + 1));
        }
        match values {
            [] => argv.push(format!("--{opt}")),
            [v] => argv.push(format!("--{opt}={v}")),
            _ => return Err(format!("line {}: option {opt} takes one value", n + 1)),
        }
    }
    let a = crate::args::parse(argv).map_err(|e| e.to_string())?;
    let refuse = |what: &str| Err(format!("{what} cannot be set in a configuration file"));
    if a.pidfile.is_some() {
        return refuse("--pidfile");
    }
    if a.restore_sibling || a.feature.is_some() || a.version || a.help {
        return refuse("this option");
    }
    if !a.verb.is_empty() || !a.rest.is_empty() {
        return Err(format!("unexpected word {:?}", a.verb));
    }
    Ok(FileSettings {
        images_dir: a.images_dir,
        work_dir: a.work_dir,
        log_file: a.log_file,
        log_level: (a.verbosity != 0).then_some(a.verbosity),
        pid: a.tree,
        leave_running: a.leave_running,
        shell_job: a.shell_job,
        tcp_established: a.tcp_established,
        timeout: a.timeout,
        freeze_cgroup: a.freeze_cgroup,
        manage_cgroups: a.manage_cgroups,
        cgroup_root: a.cgroup_root,
    })
}

/// The words of one line: blanks separate them, `"..."` and `'...'` quote, `#` starts a
/// comment outside quotes.
fn words(line: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut cur: Option<String> = None;
    let mut quote: Option<char> = None;
    for c in line.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => cur.get_or_insert_with(String::new).push(c),
            (None, '#') => break,
            (None, '"' | '\'') => {
                quote = Some(c);
                cur.get_or_insert_with(String::new);
            }
            (None, c) if c.is_whitespace() => out.extend(cur.take()),
            (None, c) => cur.get_or_insert_with(String::new).push(c),
        }
    }
    if quote.is_some() {
        return Err("unterminated quote".into());
    }
    out.extend(cur);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_options_without_dashes_one_per_line() {
        let s = parse(
            "# runc.conf\n\nlog-file \"my log.log\"   # trailing comment\nverbosity 4\nleave-running\ntimeout 30\n",
        )
        .unwrap();
        assert_eq!(s.log_file.as_deref(), Some(Path::new("my log.log")));
        assert_eq!(s.log_level, Some(4));
        assert!(s.leave_running && !s.shell_job);
        assert_eq!(s.timeout, Some(30));
    }

    #[test]
    fn an_option_stasis_does_not_support_is_refused_by_name() {
        let e = parse("tcp-close\n").unwrap_err();
        assert!(e.contains("--tcp-close"), "{e}");
        assert!(parse("tcp-established\n").unwrap().tcp_established);
        assert!(parse("frobnicate 1\n")
            .unwrap_err()
            .contains("--frobnicate"));
        assert!(parse("pidfile /x\n").is_err());
        assert!(parse("log-file 'open\n").unwrap_err().contains("line 1"));
        assert!(parse("--log-file x\n").is_err());
    }

    #[test]
    fn a_missing_file_is_skipped_as_criu_skips_it() {
        assert_eq!(
            read(Path::new("/nonexistent/criu/runc.conf")).unwrap(),
            None
        );
    }

    #[test]
    fn later_settings_win() {
        let a = FileSettings {
            log_file: Some("a".into()),
            log_level: Some(1),
            ..Default::default()
        };
        let b = FileSettings {
            log_file: Some("b".into()),
            ..Default::default()
        };
        let c = a.then(b);
        assert_eq!(c.log_file.as_deref(), Some(Path::new("b")));
        assert_eq!(c.log_level, Some(1));
    }
}
