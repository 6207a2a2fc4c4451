//! `stasis-runc checkpoint`: runc's checkpoint with the stasis engine as its criu.
//!
//! All of runc 1.1's checkpoint flags are accepted and handed on unchanged; the only
//! difference is the cgroup mode, `soft` unless the caller picks one.

use std::ffi::OsString;

use crate::args::{scan, FlagSpec};

/// runc 1.1's `checkpoint` flags.
pub const FLAGS: &[FlagSpec] = &[
    FlagSpec {
        names: &["image-path"],
        takes_value: true,
    },
    FlagSpec {
        names: &["work-path"],
        takes_value: true,
    },
    FlagSpec {
        names: &["parent-path"],
        takes_value: true,
    },
    FlagSpec {
        names: &["leave-running"],
        takes_value: false,
    },
    FlagSpec {
        names: &["tcp-established"],
        takes_value: false,
    },
    FlagSpec {
        names: &["ext-unix-sk"],
        takes_value: false,
    },
    FlagSpec {
        names: &["shell-job"],
        takes_value: false,
    },
    FlagSpec {
        names: &["lazy-pages"],
        takes_value: false,
    },
    FlagSpec {
        names: &["status-fd"],
        takes_value: true,
    },
    FlagSpec {
        names: &["page-server"],
        takes_value: true,
    },
    FlagSpec {
        names: &["file-locks"],
        takes_value: false,
    },
    FlagSpec {
        names: &["pre-dump"],
        takes_value: false,
    },
    FlagSpec {
        names: &["manage-cgroups-mode"],
        takes_value: true,
    },
    FlagSpec {
        names: &["empty-ns"],
        takes_value: true,
    },
    FlagSpec {
        names: &["auto-dedup"],
        takes_value: false,
    },
    FlagSpec {
        names: &["help", "h"],
        takes_value: false,
    },
];

/// The cgroup mode stasis-runc asks for when the caller does not.
pub const DEFAULT_CGROUPS_MODE: &str = "soft";

/// The arguments runc gets after `checkpoint`: the caller's, with the stasis defaults put
/// in front (Go's flag package takes the last occurrence, and a caller's own flag is never
/// overridden because a default is added only when the flag is absent).
pub fn runc_args(verb_args: &[OsString]) -> Vec<OsString> {
    with_defaults(verb_args, FLAGS)
}

/// `verb_args` with `--manage-cgroups-mode soft` in front unless given or asking for help.
pub(crate) fn with_defaults(verb_args: &[OsString], specs: &[FlagSpec]) -> Vec<OsString> {
    let flags = scan(verb_args, specs);
    let mut out = Vec::with_capacity(verb_args.len() + 2);
    if !flags.has("help") && !flags.has("manage-cgroups-mode") {
        out.push("--manage-cgroups-mode".into());
        out.push(DEFAULT_CGROUPS_MODE.into());
    }
    out.extend(verb_args.iter().cloned());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(args: &[&str]) -> Vec<OsString> {
        args.iter().map(OsString::from).collect()
    }

    #[test]
    fn soft_cgroups_mode_is_added_when_the_caller_gives_none() {
        let got = runc_args(&os(&["--image-path", "/i", "--leave-running", "c1"]));
        assert_eq!(
            got,
            os(&[
                "--manage-cgroups-mode",
                "soft",
                "--image-path",
                "/i",
                "--leave-running",
                "c1"
            ])
        );
    }

    #[test]
    fn the_callers_cgroups_mode_is_kept_as_given() {
        let args = os(&["--manage-cgroups-mode=full", "--image-path", "/i", "c1"]);
        assert_eq!(runc_args(&args), args);
    }

    #[test]
    fn a_flag_after_the_container_id_is_not_taken_for_a_cgroups_mode() {
        // runc stops reading flags at the id; the trailing word is an argument.
        let got = runc_args(&os(&["c1", "--manage-cgroups-mode", "full"]));
        assert_eq!(got[..2], os(&["--manage-cgroups-mode", "soft"])[..]);
    }

    #[test]
    fn help_is_passed_untouched() {
        let args = os(&["--help"]);
        assert_eq!(runc_args(&args), args);
    }
}
