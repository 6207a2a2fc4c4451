//! Every `criu_opts` field, and what stasis does with it today — the one place to change
//! when the engine learns something. A field that asks for what stasis cannot do yet is
//! refused by name; none is silently ignored.
//!
//! When containers land (namespaces, mounts, cgroups, ttys), flip their rows from
//! [`Support::Container`] to [`Support::Honoured`] and map them in `setup.rs`.

use super::error::RpcError;
use stasis_images::pb::rpc::CriuOpts;

/// How stasis treats one field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Support {
    /// Mapped onto what stasis does (see `setup.rs`).
    Honoured,
    /// Accepted as is, for the reason given: stasis already behaves as the field asks,
    /// because the object it concerns is never dumped (a dump that meets one is refused
    /// with a message naming it).
    Moot(&'static str),
    /// Refused until stasis handles containers: namespaces, mounts, cgroups, ttys.
    Container,
    /// Refused: the engine cannot do it yet.
    Engine,
    /// Refused: this kernel cannot do it. The message is CRIU's.
    Kernel(&'static str),
}

/// One field of `criu_opts`.
#[derive(Clone, Copy, Debug)]
pub struct Field {
    pub number: u32,
    pub name: &'static str,
    pub support: Support,
    /// Whether the request asks for something with this field: a non-default value
    /// (`tcp_established: false` asks for nothing; runc sends many such fields).
    pub asks: fn(&CriuOpts) -> bool,
}

fn yes(v: Option<bool>) -> bool {
    v == Some(true)
}

/// CRIU's message when soft-dirty tracking is missing; the captured responses carry it.
pub const NO_MEM_TRACK: &str =
    "Tracking memory is not available. Consider omitting --track-mem option.";

use Support::*;

const fn f(
    number: u32,
    name: &'static str,
    support: Support,
    asks: fn(&CriuOpts) -> bool,
) -> Field {
    Field {
        number,
        name,
        support,
        asks,
    }
}

const SOCKETS: Support = Moot(
    "a permission stasis does not need: a socket it cannot dump faithfully is refused at dump",
);
const DELETED: Support = Moot("open deleted files are refused at dump");
const NOTIFY_FS: Support = Moot("inotify and fanotify are refused at dump");

/// All fields of `criu_opts` (`images/proto/rpc.proto`), by number.
#[rustfmt::skip]
pub static FIELDS: &[Field] = &[
    f(1, "images_dir_fd", Honoured, |o| o.images_dir_fd >= 0),
    f(2, "pid", Honoured, |o| o.pid.is_some()),
    f(3, "leave_running", Honoured, |o| yes(o.leave_running)),
    f(4, "ext_unix_sk", SOCKETS, |o| yes(o.ext_unix_sk)),
    f(5, "tcp_established", Honoured, |o| yes(o.tcp_established)),
    f(6, "evasive_devices", Moot("devices are reopened by their dumped path, which must exist"), |o| yes(o.evasive_devices)),
    f(7, "shell_job", Honoured, |o| yes(o.shell_job)),
    f(8, "file_locks", Honoured, |o| yes(o.file_locks)),
    f(9, "log_level", Honoured, |o| o.log_level.is_some()),
    f(10, "log_file", Honoured, |o| o.log_file.is_some()),
    f(11, "ps", Engine, |o| o.ps.is_some()),
    f(12, "notify_scripts", Honoured, |o| yes(o.notify_scripts)),
    f(13, "root", Honoured, |o| o.root.is_some()),
    f(14, "parent_img", Engine, |o| o.parent_img.is_some()),
    f(15, "track_mem", Kernel(NO_MEM_TRACK), |o| yes(o.track_mem)),
    f(16, "auto_dedup", Engine, |o| yes(o.auto_dedup)),
    f(17, "work_dir_fd", Honoured, |o| o.work_dir_fd.is_some()),
    f(18, "link_remap", DELETED, |o| yes(o.link_remap)),
    f(19, "veths", Honoured, |o| !o.veths.is_empty()),
    f(20, "cpu_cap", Honoured, |o| o.cpu_cap.is_some()),
    f(21, "force_irmap", NOTIFY_FS, |o| yes(o.force_irmap)),
    f(22, "exec_cmd", Honoured, |o| !o.exec_cmd.is_empty()),
    f(23, "ext_mnt", Honoured, |o| !o.ext_mnt.is_empty()),
    f(24, "manage_cgroups", Honoured, |o| yes(o.manage_cgroups)),
    f(25, "cg_root", Honoured, |o| !o.cg_root.is_empty()),
    f(26, "rst_sibling", Honoured, |o| yes(o.rst_sibling)),
    f(27, "inherit_fd", Honoured, |o| !o.inherit_fd.is_empty()),
    f(28, "auto_ext_mnt", Honoured, |o| yes(o.auto_ext_mnt)),
    f(29, "ext_sharing", Container, |o| yes(o.ext_sharing)),
    f(30, "ext_masters", Container, |o| yes(o.ext_masters)),
    f(31, "skip_mnt", Container, |o| !o.skip_mnt.is_empty()),
    f(32, "enable_fs", Container, |o| !o.enable_fs.is_empty()),
    f(33, "unix_sk_ino", SOCKETS, |o| !o.unix_sk_ino.is_empty()),
    f(34, "manage_cgroups_mode", Honoured, |o| o.manage_cgroups_mode.is_some()),
    f(35, "ghost_limit", DELETED, |o| o.ghost_limit.is_some()),
    f(36, "irmap_scan_paths", NOTIFY_FS, |o| !o.irmap_scan_paths.is_empty()),
    f(37, "external", Honoured, |o| !o.external.is_empty()),
    f(38, "empty_ns", Honoured, |o| o.empty_ns.is_some_and(|v| v != 0)),
    f(39, "join_ns", Honoured, |o| !o.join_ns.is_empty()),
    f(41, "cgroup_props", Container, |o| o.cgroup_props.is_some()),
    f(42, "cgroup_props_file", Container, |o| o.cgroup_props_file.is_some()),
    f(43, "cgroup_dump_controller", Container, |o| !o.cgroup_dump_controller.is_empty()),
    f(44, "freeze_cgroup", Honoured, |o| o.freeze_cgroup.is_some()),
    f(45, "timeout", Honoured, |o| o.timeout.is_some()),
    f(46, "tcp_skip_in_flight", SOCKETS, |o| yes(o.tcp_skip_in_flight)),
    f(47, "weak_sysctls", Moot("no namespace sysctl is restored"), |o| yes(o.weak_sysctls)),
    f(48, "lazy_pages", Engine, |o| yes(o.lazy_pages)),
    f(49, "status_fd", Honoured, |o| o.status_fd.is_some()),
    f(50, "orphan_pts_master", Honoured, |o| yes(o.orphan_pts_master)),
    f(51, "config_file", Honoured, |o| o.config_file.is_some()),
    f(52, "tcp_close", SOCKETS, |o| yes(o.tcp_close)),
    f(53, "lsm_profile", Container, |o| o.lsm_profile.is_some()),
    f(54, "tls_cacert", Engine, |o| o.tls_cacert.is_some()),
    f(55, "tls_cacrl", Engine, |o| o.tls_cacrl.is_some()),
    f(56, "tls_cert", Engine, |o| o.tls_cert.is_some()),
    f(57, "tls_key", Engine, |o| o.tls_key.is_some()),
    f(58, "tls", Engine, |o| yes(o.tls)),
    f(59, "tls_no_cn_verify", Engine, |o| yes(o.tls_no_cn_verify)),
    f(60, "cgroup_yard", Container, |o| o.cgroup_yard.is_some()),
    f(61, "pre_dump_mode", Moot("it only concerns pre-dump, which is refused"), |o| o.pre_dump_mode.is_some()),
    f(62, "pidfd_store_sk", Honoured, |o| o.pidfd_store_sk.is_some()),
    f(63, "lsm_mount_context", Container, |o| o.lsm_mount_context.is_some()),
    f(64, "network_lock", Honoured, |o| o.network_lock.is_some()),
    f(65, "mntns_compat_mode", Container, |o| yes(o.mntns_compat_mode)),
    f(66, "skip_file_rwx_check", Moot("stasis adds no permission check to the kernel's at open"), |o| yes(o.skip_file_rwx_check)),
    f(67, "unprivileged", Engine, |o| yes(o.unprivileged)),
    f(68, "images_dir", Honoured, |o| o.images_dir.is_some()),
    f(69, "leave_stopped", Engine, |o| yes(o.leave_stopped)),
    f(70, "display_stats", Honoured, |o| yes(o.display_stats)),
    f(71, "log_to_stderr", Honoured, |o| yes(o.log_to_stderr)),
];

/// The fields `opts` sets to a value that asks for something, with their treatment.
pub fn asked(opts: &CriuOpts) -> impl Iterator<Item = &'static Field> + '_ {
    FIELDS.iter().filter(move |f| (f.asks)(opts))
}

/// Refuses `opts` if it asks for anything stasis cannot do: first what this kernel
/// cannot do (with CRIU's message), else every field not supported yet, all named.
pub fn check(opts: &CriuOpts) -> Result<(), RpcError> {
    let mut unsupported = Vec::new();
    let mut containers = false;
    for f in asked(opts) {
        match f.support {
            Kernel(msg) => return Err(RpcError::Kernel(msg.to_string())),
            Container => {
                containers = true;
                unsupported.push(f.name);
            }
            Engine => unsupported.push(f.name),
            Honoured | Moot(_) => {}
        }
    }
    if unsupported.is_empty() {
        Ok(())
    } else {
        Err(RpcError::Unsupported {
            fields: unsupported,
            containers,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Field numbers and names of `criu_opts` in the proto the images crate compiles.
    fn proto_fields() -> Vec<(u32, String)> {
        let proto = include_str!("../../../images/proto/rpc.proto");
        let body = proto
            .split("message criu_opts {")
            .nth(1)
            .and_then(|b| b.split('}').next())
            .expect("criu_opts in rpc.proto");
        body.lines()
            .filter_map(|l| {
                let l = l.trim();
                let (decl, num) = l.split_once('=')?;
                let name = decl.split_whitespace().last()?.to_string();
                let num: u32 = num
                    .trim()
                    .split(|c: char| !c.is_ascii_digit())
                    .next()?
                    .parse()
                    .ok()?;
                Some((num, name))
            })
            .collect()
    }

    #[test]
    fn the_table_has_every_field_of_criu_opts_once_with_its_proto_name() {
        let proto = proto_fields();
        assert!(proto.len() > 60, "parsed {} fields", proto.len());
        for (num, name) in &proto {
            let rows: Vec<_> = FIELDS.iter().filter(|f| f.number == *num).collect();
            assert_eq!(rows.len(), 1, "field {num} {name}");
            assert_eq!(rows[0].name, name, "field {num}");
        }
        assert_eq!(
            FIELDS.len(),
            proto.len(),
            "a row for a field the proto lacks"
        );
    }

    #[test]
    fn false_and_zero_values_ask_for_nothing() {
        let o = CriuOpts {
            images_dir_fd: 3,
            tcp_established: Some(false),
            file_locks: Some(false),
            manage_cgroups: Some(false),
            manage_cgroups_mode: Some(stasis_images::pb::rpc::CriuCgMode::Ignore as i32),
            empty_ns: Some(0),
            lazy_pages: Some(false),
            orphan_pts_master: Some(false),
            ..Default::default()
        };
        check(&o).unwrap();
    }

    #[test]
    fn container_fields_are_honoured() {
        let o = CriuOpts {
            images_dir_fd: 3,
            root: Some("/r".into()),
            manage_cgroups: Some(true),
            file_locks: Some(true),
            empty_ns: Some(libc::CLONE_NEWNET as u32),
            ..Default::default()
        };
        check(&o).unwrap();
        let refused = CriuOpts {
            images_dir_fd: 3,
            lazy_pages: Some(true),
            ext_sharing: Some(true),
            ..Default::default()
        };
        match check(&refused).unwrap_err() {
            RpcError::Unsupported { fields, .. } => {
                assert_eq!(fields, ["ext_sharing", "lazy_pages"])
            }
            other => panic!("{other}"),
        }
    }

    #[test]
    fn track_mem_is_refused_with_criu_s_message_before_anything_else() {
        let o = CriuOpts {
            images_dir_fd: 3,
            root: Some("/r".into()),
            parent_img: Some("../p".into()),
            track_mem: Some(true),
            ..Default::default()
        };
        let e = check(&o).unwrap_err();
        assert_eq!(e.to_string(), NO_MEM_TRACK);
        assert_eq!(e.cr_errno(), 56, "CRIU's captured cr_errno (EBADRQC)");
    }
}
