//! `stasis-runc restore`: runc's restore with the stasis engine as its criu.
//!
//! runc sets up everything around the engine (the `criu-root` bind mount, the new
//! container's cgroups, `--console-socket`, `--pid-file`, `--detach`, hooks) and records
//! the restored container in its state directory, so later `state`/`exec`/`kill`/`delete`
//! see a container exactly as runc would have left it.

use std::ffi::OsString;

use crate::args::FlagSpec;

/// runc 1.1's `restore` flags.
pub const FLAGS: &[FlagSpec] = &[
    FlagSpec {
        names: &["console-socket"],
        takes_value: true,
    },
    FlagSpec {
        names: &["image-path"],
        takes_value: true,
    },
    FlagSpec {
        names: &["work-path"],
        takes_value: true,
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
        names: &["file-locks"],
        takes_value: false,
    },
    FlagSpec {
        names: &["manage-cgroups-mode"],
        takes_value: true,
    },
    FlagSpec {
        names: &["bundle", "b"],
        takes_value: true,
    },
    FlagSpec {
        names: &["detach", "d"],
        takes_value: false,
    },
    FlagSpec {
        names: &["pid-file"],
        takes_value: true,
    },
    FlagSpec {
        names: &["no-subreaper"],
        takes_value: false,
    },
    FlagSpec {
        names: &["no-pivot"],
        takes_value: false,
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
        names: &["lazy-pages"],
        takes_value: false,
    },
    FlagSpec {
        names: &["lsm-profile"],
        takes_value: true,
    },
    FlagSpec {
        names: &["lsm-mount-context"],
        takes_value: true,
    },
    FlagSpec {
        names: &["help", "h"],
        takes_value: false,
    },
];

/// The arguments runc gets after `restore`: the caller's, `--manage-cgroups-mode soft` in
/// front unless given. A flag missing its value (podman's `restore --lsm-mount-context`
/// probe) is passed on as is, so runc answers "flag needs an argument" itself.
pub fn runc_args(verb_args: &[OsString]) -> Vec<OsString> {
    crate::checkpoint::with_defaults(verb_args, FLAGS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(args: &[&str]) -> Vec<OsString> {
        args.iter().map(OsString::from).collect()
    }

    #[test]
    fn containerds_restore_line_is_kept_whole_behind_the_default() {
        let line = os(&[
            "--image-path",
            "/tmp/ctrd-checkpoint1",
            "--work-path",
            "/b/work",
            "--detach",
            "--pid-file",
            "/b/init.pid",
            "-no-subreaper",
            "--bundle",
            "/b",
            "c1",
        ]);
        let got = runc_args(&line);
        assert_eq!(got[..2], os(&["--manage-cgroups-mode", "soft"])[..]);
        assert_eq!(got[2..], line[..]);
    }

    #[test]
    fn podmans_lsm_probe_reaches_runc_unchanged_but_for_the_default() {
        let got = runc_args(&os(&["--lsm-mount-context"]));
        assert_eq!(
            got,
            os(&["--manage-cgroups-mode", "soft", "--lsm-mount-context"])
        );
    }
}
