//! containerd's runc options (`containerd.runc.v1.Options` at Create) and checkpoint
//! options (`containerd.runc.v1.CheckpointOptions`) as stasis-runc flags.

use std::path::{Path, PathBuf};

use containerd_shim::protos::protobuf::well_known_types::any::Any;
use containerd_shim::protos::protobuf::Message;
use containerd_shim::protos::shim::oci::{CheckpointOptions, Options};

use crate::ShimError;

/// runc's state directory when containerd's options name none (as the Go shim).
pub const DEFAULT_ROOT: &str = "/run/containerd/runc";

fn decode<M: Message>(any: Option<&Any>, type_name: &str) -> Result<M, ShimError> {
    let Some(any) = any.filter(|a| !a.value.is_empty() || !a.type_url.is_empty()) else {
        return Ok(M::new());
    };
    if !any.type_url.ends_with(type_name) {
        return Err(ShimError::InvalidArgument(format!(
            "options of type {} (expected {type_name})",
            any.type_url
        )));
    }
    M::parse_from_bytes(&any.value)
        .map_err(|e| ShimError::InvalidArgument(format!("decode {type_name}: {e}")))
}

/// `CreateTaskRequest.options`.
pub fn runc_options(any: Option<&Any>) -> Result<Options, ShimError> {
    decode(any, "containerd.runc.v1.Options")
}

/// `CheckpointTaskRequest.options`.
pub fn checkpoint_options(any: Option<&Any>) -> Result<CheckpointOptions, ShimError> {
    decode(any, "containerd.runc.v1.CheckpointOptions")
}

/// How the shim calls the runtime for one container: runc's global flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Globals {
    /// `--root`: `<options.root or /run/containerd/runc>/<namespace>`.
    pub root: PathBuf,
    /// `--log`: `<bundle>/log.json` (read back for error messages).
    pub log: PathBuf,
    pub systemd_cgroup: bool,
}

impl Globals {
    pub fn new(opts: &Options, namespace: &str, bundle: &Path) -> Globals {
        let root = if opts.root.is_empty() {
            DEFAULT_ROOT
        } else {
            &opts.root
        };
        Globals {
            root: Path::new(root).join(namespace),
            log: bundle.join("log.json"),
            systemd_cgroup: opts.systemd_cgroup,
        }
    }

    pub fn args(&self) -> Vec<String> {
        let mut a = vec![
            "--root".to_string(),
            self.root.display().to_string(),
            "--log".to_string(),
            self.log.display().to_string(),
            "--log-format".to_string(),
            "json".to_string(),
        ];
        if self.systemd_cgroup {
            a.push("--systemd-cgroup".to_string());
        }
        a
    }
}

/// Where a checkpoint goes and how: `checkpoint` arguments after the verb, up to the id.
///
/// Images go to `options.image_path` if set, else to the request's path (containerd's temp
/// dir it then tars into its content store). The work dir is `options.work_path`, else
/// `<bundle>/work` — where containerd's Go shim puts criu's logs and stats.
pub fn checkpoint_args(
    opts: &CheckpointOptions,
    request_path: &str,
    bundle: &Path,
) -> Result<(Vec<String>, PathBuf, PathBuf), ShimError> {
    let image = if !opts.image_path.is_empty() {
        PathBuf::from(&opts.image_path)
    } else if !request_path.is_empty() {
        PathBuf::from(request_path)
    } else {
        return Err(ShimError::InvalidArgument(
            "a checkpoint needs a path (request path or options.image_path)".into(),
        ));
    };
    let work = if opts.work_path.is_empty() {
        bundle.join("work")
    } else {
        PathBuf::from(&opts.work_path)
    };
    let mut a = vec![
        "--image-path".to_string(),
        image.display().to_string(),
        "--work-path".to_string(),
        work.display().to_string(),
    ];
    if !opts.exit {
        a.push("--leave-running".into());
    }
    if opts.open_tcp {
        a.push("--tcp-established".into());
    }
    if opts.external_unix_sockets {
        a.push("--ext-unix-sk".into());
    }
    if opts.terminal {
        a.push("--shell-job".into());
    }
    if opts.file_locks {
        a.push("--file-locks".into());
    }
    if !opts.cgroups_mode.is_empty() {
        a.push("--manage-cgroups-mode".into());
        a.push(opts.cgroups_mode.clone());
    }
    for ns in &opts.empty_namespaces {
        a.push("--empty-ns".into());
        a.push(ns.clone());
    }
    Ok((a, image, work))
}

/// A task created from a checkpoint, restored at Start (as containerd's Go shim does).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestorePlan {
    pub image_path: PathBuf,
    pub work_path: PathBuf,
    pub parent_path: Option<PathBuf>,
}

impl RestorePlan {
    /// From `CreateTaskRequest.checkpoint`/`parent_checkpoint`; the work dir is
    /// `options.criu_work_path`, else `<bundle>/work`.
    pub fn new(checkpoint: &str, parent: &str, opts: &Options, bundle: &Path) -> RestorePlan {
        RestorePlan {
            image_path: PathBuf::from(checkpoint),
            work_path: if opts.criu_work_path.is_empty() {
                bundle.join("work")
            } else {
                PathBuf::from(&opts.criu_work_path)
            },
            parent_path: (!parent.is_empty()).then(|| PathBuf::from(parent)),
        }
    }

    /// `restore` arguments after the verb, up to the id.
    pub fn args(&self, bundle: &Path, pid_file: &Path, no_pivot: bool) -> Vec<String> {
        let mut a = vec![
            "--image-path".to_string(),
            self.image_path.display().to_string(),
            "--work-path".to_string(),
            self.work_path.display().to_string(),
            "--detach".to_string(),
            "--pid-file".to_string(),
            pid_file.display().to_string(),
            "--no-subreaper".to_string(),
            "--bundle".to_string(),
            bundle.display().to_string(),
        ];
        if no_pivot {
            a.push("--no-pivot".into());
        }
        a
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn any_of(m: &impl Message, name: &str) -> Any {
        Any {
            type_url: name.to_string(),
            value: m.write_to_bytes().unwrap(),
            ..Default::default()
        }
    }

    #[test]
    fn every_checkpoint_option_becomes_its_runc_flag() {
        let opts = CheckpointOptions {
            exit: true,
            open_tcp: true,
            external_unix_sockets: true,
            terminal: true,
            file_locks: true,
            empty_namespaces: vec!["network".into()],
            cgroups_mode: "full".into(),
            image_path: "/img".into(),
            work_path: "/work".into(),
            ..Default::default()
        };
        let any = any_of(&opts, "containerd.runc.v1.CheckpointOptions");
        let decoded = checkpoint_options(Some(&any)).unwrap();
        let (args, image, work) =
            checkpoint_args(&decoded, "/tmp/ignored", Path::new("/b")).unwrap();
        assert_eq!(image, PathBuf::from("/img"));
        assert_eq!(work, PathBuf::from("/work"));
        assert_eq!(
            args,
            [
                "--image-path",
                "/img",
                "--work-path",
                "/work",
                "--tcp-established",
                "--ext-unix-sk",
                "--shell-job",
                "--file-locks",
                "--manage-cgroups-mode",
                "full",
                "--empty-ns",
                "network",
            ]
        );
    }

    #[test]
    fn without_options_images_go_to_the_request_path_and_the_task_keeps_running() {
        let (args, image, work) = checkpoint_args(
            &CheckpointOptions::new(),
            "/tmp/ctd-checkpoint1",
            Path::new("/b"),
        )
        .unwrap();
        assert_eq!(image, PathBuf::from("/tmp/ctd-checkpoint1"));
        assert_eq!(work, PathBuf::from("/b/work"));
        assert!(args.contains(&"--leave-running".to_string()));
    }

    #[test]
    fn options_of_another_type_are_refused() {
        let any = any_of(&Options::new(), "containerd.runc.v1.Options");
        assert!(matches!(
            checkpoint_options(Some(&any)),
            Err(ShimError::InvalidArgument(_))
        ));
    }

    #[test]
    fn globals_put_runc_state_under_the_namespace() {
        let opts = Options {
            root: "/run/x".into(),
            systemd_cgroup: true,
            ..Default::default()
        };
        let g = Globals::new(&opts, "k8s.io", Path::new("/b"));
        assert_eq!(
            g.args(),
            [
                "--root",
                "/run/x/k8s.io",
                "--log",
                "/b/log.json",
                "--log-format",
                "json",
                "--systemd-cgroup"
            ]
        );
        let g = Globals::new(&Options::new(), "default", Path::new("/b"));
        assert_eq!(g.root, PathBuf::from("/run/containerd/runc/default"));
    }
}
