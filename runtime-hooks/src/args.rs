//! runc's command line as runc (urfave/cli on Go's `flag` package) reads it: global flags,
//! then the verb, then the verb's flags up to the first argument that is not a flag.
//!
//! stasis-runc parses only as much as it needs to choose the command it execs; runc itself
//! validates everything, so errors read exactly as runc's.

use std::ffi::{OsStr, OsString};
use std::path::PathBuf;

/// One flag of a runc command: its names and whether it takes a value.
#[derive(Debug, Clone, Copy)]
pub struct FlagSpec {
    pub names: &'static [&'static str],
    pub takes_value: bool,
}

const fn value(names: &'static [&'static str]) -> FlagSpec {
    FlagSpec {
        names,
        takes_value: true,
    }
}

const fn switch(names: &'static [&'static str]) -> FlagSpec {
    FlagSpec {
        names,
        takes_value: false,
    }
}

/// runc 1.1's global flags.
pub const GLOBAL_FLAGS: &[FlagSpec] = &[
    switch(&["debug"]),
    value(&["log"]),
    value(&["log-format"]),
    value(&["root"]),
    value(&["criu"]),
    switch(&["systemd-cgroup"]),
    value(&["rootless"]),
    switch(&["help", "h"]),
    switch(&["version", "v"]),
];

/// A flag as found on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundFlag {
    /// The canonical (first) name of the flag, or the name as written if unknown.
    pub name: String,
    /// Its value, for flags that take one.
    pub value: Option<OsString>,
    /// The arguments it occupied (one, or two for `--flag value`).
    pub raw: Vec<OsString>,
}

/// The flags at the head of `args`, and where they end.
#[derive(Debug, Clone, Default)]
pub struct Flags {
    pub found: Vec<FoundFlag>,
    /// Index in `args` of the first argument that is not a flag (or `args.len()`).
    pub end: usize,
    /// A flag that takes a value came last without one.
    pub missing_value: Option<String>,
}

impl Flags {
    pub fn get(&self, name: &str) -> Option<&FoundFlag> {
        self.found.iter().rev().find(|f| f.name == name)
    }

    pub fn has(&self, name: &str) -> bool {
        self.get(name).is_some()
    }
}

/// Splits the flags at the head of `args` the way Go's `flag` package does: `-x`, `--x`,
/// `-x=v`, `--x v`; `--` ends the flags; the first non-flag argument ends them too. Unknown
/// flags are taken as switches (runc rejects them itself).
pub fn scan(args: &[OsString], specs: &[FlagSpec]) -> Flags {
    let mut flags = Flags::default();
    let mut i = 0;
    while i < args.len() {
        let Some(arg) = args[i].to_str() else { break };
        if arg == "--" || arg == "-" || !arg.starts_with('-') {
            break;
        }
        let body = arg.trim_start_matches('-');
        if arg.starts_with("---") || body.is_empty() {
            break;
        }
        let (name, inline) = match body.split_once('=') {
            Some((n, v)) => (n, Some(OsString::from(v))),
            None => (body, None),
        };
        let spec = specs.iter().find(|s| s.names.contains(&name));
        let canonical = spec.map_or(name, |s| s.names[0]).to_string();
        let takes_value = spec.is_some_and(|s| s.takes_value);
        let mut raw = vec![args[i].clone()];
        let value = if takes_value && inline.is_none() {
            match args.get(i + 1) {
                Some(v) => {
                    raw.push(v.clone());
                    i += 1;
                    Some(v.clone())
                }
                None => {
                    flags.missing_value = Some(name.to_string());
                    None
                }
            }
        } else {
            inline
        };
        flags.found.push(FoundFlag {
            name: canonical,
            value,
            raw,
        });
        i += 1;
    }
    flags.end = i.min(args.len());
    flags
}

/// A whole stasis-runc command line: runc's global flags, the verb and its arguments.
#[derive(Debug, Clone)]
pub struct Invocation {
    /// Everything after argv\[0\], as given.
    pub argv: Vec<OsString>,
    pub globals: Flags,
    /// The verb (`checkpoint`, `run`, …), if any.
    pub verb: Option<String>,
}

impl Invocation {
    pub fn parse(argv: Vec<OsString>) -> Invocation {
        let globals = scan(&argv, GLOBAL_FLAGS);
        let verb = argv
            .get(globals.end)
            .and_then(|v| v.to_str())
            .map(str::to_string);
        Invocation {
            argv,
            globals,
            verb,
        }
    }

    /// The verb's own arguments (after the verb).
    pub fn verb_args(&self) -> &[OsString] {
        let start = (self.globals.end + 1).min(self.argv.len());
        &self.argv[start..]
    }

    /// The global flags as given, without `--criu` (stasis-runc chooses the criu).
    pub fn globals_without_criu(&self) -> Vec<OsString> {
        self.globals
            .found
            .iter()
            .filter(|f| f.name != "criu")
            .flat_map(|f| f.raw.iter().cloned())
            .collect()
    }

    /// `--log FILE`, where runc (and stasis-runc's own errors) go.
    pub fn log_file(&self) -> Option<PathBuf> {
        self.globals
            .get("log")
            .and_then(|f| f.value.as_ref())
            .map(PathBuf::from)
    }

    /// `--log-format json`?
    pub fn log_json(&self) -> bool {
        self.globals
            .get("log-format")
            .and_then(|f| f.value.as_deref())
            .is_some_and(|v| v == OsStr::new("json"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(args: &[&str]) -> Vec<OsString> {
        args.iter().map(OsString::from).collect()
    }

    #[test]
    fn globals_end_at_the_verb_in_every_spelling_go_accepts() {
        let inv = Invocation::parse(os(&[
            "--root",
            "/run/x",
            "-log=/tmp/l.json",
            "--log-format",
            "json",
            "--systemd-cgroup",
            "checkpoint",
            "--leave-running",
            "c1",
        ]));
        assert_eq!(inv.verb.as_deref(), Some("checkpoint"));
        assert_eq!(inv.verb_args(), os(&["--leave-running", "c1"]).as_slice());
        assert_eq!(inv.log_file(), Some(PathBuf::from("/tmp/l.json")));
        assert!(inv.log_json());
        assert!(inv.globals.has("systemd-cgroup"));
    }

    #[test]
    fn the_callers_criu_is_dropped_and_every_other_global_kept_in_order() {
        let inv = Invocation::parse(os(&[
            "--debug",
            "--criu",
            "/usr/sbin/criu",
            "--root=/r",
            "restore",
            "x",
        ]));
        assert_eq!(inv.globals_without_criu(), os(&["--debug", "--root=/r"]));
    }

    #[test]
    fn a_value_flag_without_its_value_is_reported_by_name() {
        let flags = scan(
            &os(&["--lsm-mount-context"]),
            &[value(&["lsm-mount-context"])],
        );
        assert_eq!(flags.missing_value.as_deref(), Some("lsm-mount-context"));
    }

    #[test]
    fn flags_stop_at_the_first_argument_and_at_double_dash() {
        let specs = [switch(&["detach", "d"]), value(&["bundle", "b"])];
        let flags = scan(&os(&["-d", "-b", "/b", "id", "--detach"]), &specs);
        assert_eq!(flags.end, 3);
        assert!(flags.has("detach"));
        assert_eq!(flags.get("bundle").unwrap().value, Some("/b".into()));
        let flags = scan(&os(&["--", "-d"]), &specs);
        assert_eq!(flags.end, 0);
    }

    #[test]
    fn no_verb_is_none() {
        assert_eq!(Invocation::parse(os(&["--version"])).verb, None);
        assert_eq!(Invocation::parse(os(&[])).verb, None);
    }
}
