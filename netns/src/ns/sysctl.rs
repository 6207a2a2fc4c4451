//! The per-namespace and per-link sysctls CRIU records, in CRIU's order (the image holds
//! them by position), and how they are read and written inside a namespace.
//!
//! `/proc/sys/net` shows the namespace of the *reading task*, so reads and writes run in a
//! helper that entered the namespace: one `head -v -n1` for a whole batch of reads, one
//! `sh` script for a batch of writes. A sysctl the kernel lacks is recorded without a
//! value and skipped on restore, as CRIU does; `stable_secret` reads EIO until set, which
//! also means "no value".

use std::collections::HashMap;

use stasis_images::pb::{SysctlEntry, SysctlType};

use super::error::{NetnsError, Result};
use super::tool::{self, argv, Input, Netns, Output};

/// `net/ipv4/conf/<target>/<name>`, CRIU's `devconfs4`, in image order.
pub(crate) const DEVCONFS4: &[&str] = &[
    "accept_local",
    "accept_redirects",
    "accept_source_route",
    "arp_accept",
    "arp_announce",
    "arp_filter",
    "arp_ignore",
    "arp_notify",
    "bootp_relay",
    "disable_policy",
    "disable_xfrm",
    "force_igmp_version",
    "forwarding",
    "igmpv2_unsolicited_report_interval",
    "igmpv3_unsolicited_report_interval",
    "log_martians",
    "medium_id",
    "promote_secondaries",
    "proxy_arp",
    "proxy_arp_pvlan",
    "route_localnet",
    "rp_filter",
    "secure_redirects",
    "send_redirects",
    "shared_media",
    "src_valid_mark",
    "tag",
    "ignore_routes_with_linkdown",
    "drop_gratuitous_arp",
    "drop_unicast_in_l2_multicast",
];

/// `net/ipv6/conf/<target>/<name>`, CRIU's `devconfs6`, in image order.
pub(crate) const DEVCONFS6: &[&str] = &[
    "accept_dad",
    "accept_ra",
    "accept_ra_defrtr",
    "accept_ra_from_local",
    "accept_ra_min_hop_limit",
    "accept_ra_mtu",
    "accept_ra_pinfo",
    "accept_ra_rt_info_max_plen",
    "accept_ra_rtr_pref",
    "accept_redirects",
    "accept_source_route",
    "autoconf",
    "dad_transmits",
    "disable_ipv6",
    "drop_unicast_in_l2_multicast",
    "drop_unsolicited_na",
    "force_mld_version",
    "force_tllao",
    "forwarding",
    "hop_limit",
    "ignore_routes_with_linkdown",
    "keep_addr_on_down",
    "max_addresses",
    "max_desync_factor",
    "mldv1_unsolicited_report_interval",
    "mldv2_unsolicited_report_interval",
    "mtu",
    "ndisc_notify",
    "optimistic_dad",
    "proxy_ndp",
    "regen_max_retry",
    "router_probe_interval",
    "router_solicitation_delay",
    "router_solicitation_interval",
    "router_solicitations",
    "stable_secret",
    "suppress_frag_ndisc",
    "temp_prefered_lft",
    "temp_valid_lft",
    "use_oif_addrs_only",
    "use_optimistic",
    "use_tempaddr",
];

/// `net/unix/<name>`, CRIU's `unix_conf_entries`.
pub(crate) const UNIX_CONFS: &[&str] = &["max_dgram_qlen"];

/// The only string-valued sysctl of the lists.
const STABLE_SECRET: &str = "stable_secret";

/// Longest string value CRIU keeps (`MAX_STR_CONF_LEN`).
const MAX_STR_LEN: usize = 200;

/// Paths per helper invocation, to stay far below ARG_MAX.
const BATCH: usize = 400;

/// Which family's `conf` directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Family {
    V4,
    V6,
}

impl Family {
    pub(crate) fn names(self) -> &'static [&'static str] {
        match self {
            Family::V4 => DEVCONFS4,
            Family::V6 => DEVCONFS6,
        }
    }

    fn dir(self) -> &'static str {
        match self {
            Family::V4 => "ipv4",
            Family::V6 => "ipv6",
        }
    }

    fn kind_of(self, name: &str) -> SysctlType {
        if self == Family::V6 && name == STABLE_SECRET {
            SysctlType::CtlStr
        } else {
            SysctlType::Ctl32
        }
    }
}

/// `/proc/sys/net/ipv{4,6}/conf/<target>/<name>`; `target` is `all`, `default` or a link.
pub(crate) fn conf_path(family: Family, target: &str, name: &str) -> String {
    format!("/proc/sys/net/{}/conf/{target}/{name}", family.dir())
}

/// `/proc/sys/net/unix/<name>`.
pub(crate) fn unix_path(name: &str) -> String {
    format!("/proc/sys/net/unix/{name}")
}

/// Every path of one `conf` directory, in image order.
pub(crate) fn conf_paths(family: Family, target: &str) -> Vec<String> {
    family
        .names()
        .iter()
        .map(|n| conf_path(family, target, n))
        .collect()
}

/// Sysctl values read in a namespace, by path. A path without a value does not exist
/// there (or, for `stable_secret`, is unset).
#[derive(Debug, Default)]
pub(crate) struct Values(HashMap<String, String>);

impl Values {
    /// Build the image entries of one `conf` directory from the values read.
    pub(crate) fn conf_entries(
        &self,
        pid: i32,
        family: Family,
        target: &str,
    ) -> Result<Vec<SysctlEntry>> {
        family
            .names()
            .iter()
            .map(|name| {
                let path = conf_path(family, target, name);
                self.entry(pid, &path, family.kind_of(name))
            })
            .collect()
    }

    /// The `unix_conf` entries; empty when none of them exists (CRIU drops the section).
    pub(crate) fn unix_entries(&self, pid: i32) -> Result<Vec<SysctlEntry>> {
        let entries = UNIX_CONFS
            .iter()
            .map(|n| self.entry(pid, &unix_path(n), SysctlType::Ctl32))
            .collect::<Result<Vec<_>>>()?;
        if entries.iter().all(|e| e.iarg.is_none()) {
            return Ok(Vec::new());
        }
        Ok(entries)
    }

    fn entry(&self, pid: i32, path: &str, kind: SysctlType) -> Result<SysctlEntry> {
        let mut e = SysctlEntry {
            r#type: kind as i32,
            iarg: None,
            sarg: None,
        };
        let Some(text) = self.0.get(path) else {
            return Ok(e);
        };
        let bad = |detail: String| NetnsError::Sysctl {
            pid,
            path: path.to_string(),
            detail,
        };
        match kind {
            SysctlType::Ctl32 => {
                let v: i64 = text
                    .trim()
                    .parse()
                    .map_err(|_| bad(format!("value {text:?} is not an integer")))?;
                let v = i32::try_from(v)
                    .map_err(|_| bad(format!("value {v} does not fit a 32-bit sysctl")))?;
                e.iarg = Some(v);
            }
            SysctlType::CtlStr => {
                if text.len() > MAX_STR_LEN {
                    return Err(bad(format!("value is longer than {MAX_STR_LEN} bytes")));
                }
                e.sarg = Some(text.clone());
            }
        }
        Ok(e)
    }
}

/// Read `paths` inside the namespace of `pid`.
pub(crate) fn read(pid: i32, paths: &[String]) -> Result<Values> {
    let mut values = Values::default();
    for chunk in paths.chunks(BATCH) {
        let mut args = argv(["head", "-v", "-n1", "--"]);
        args.extend(chunk.iter().map(Into::into));
        let ns = Netns::Of(pid);
        let ran = tool::run(
            ns,
            "read sysctls",
            &args,
            Input::Nothing,
            Output::Capture(chunk.len() * 512 + 4096),
        )?;
        // head exits 1 when some file could not be read; which ones is checked below.
        if !matches!(ran.status.code(), Some(0 | 1)) {
            return Err(tool::failed(ns, "read sysctls", &ran));
        }
        let stdout = String::from_utf8_lossy(&ran.stdout);
        parse_head(&stdout, &ran.stderr, chunk, &mut values.0).map_err(|detail| {
            NetnsError::Output {
                pid,
                step: "read sysctls".into(),
                detail: format!("`{}`: {detail}", ran.command),
            }
        })?;
    }
    Ok(values)
}

/// Parse `head -v -n1 p1 p2 ...`: a `==> p <==` header per opened file, then its first
/// line, then a blank separator. A file that cannot be opened has no header; a read error
/// leaves a header without a value. Every stderr line must be one of the two tolerated
/// failures (missing file; EIO on `stable_secret`), anything else is an error.
fn parse_head(
    stdout: &str,
    stderr: &str,
    paths: &[String],
    out: &mut HashMap<String, String>,
) -> std::result::Result<(), String> {
    let expected: std::collections::HashSet<&str> = paths.iter().map(String::as_str).collect();
    let mut current: Option<&str> = None;
    let mut have_value = false;
    for line in stdout.lines() {
        if let Some(p) = line
            .strip_prefix("==> ")
            .and_then(|l| l.strip_suffix(" <=="))
            .filter(|p| expected.contains(p))
        {
            current = Some(p);
            have_value = false;
            continue;
        }
        match current {
            None => return Err(format!("unexpected output line {line:?}")),
            Some(p) if !have_value && !line.is_empty() => {
                out.insert(p.to_string(), line.to_string());
                have_value = true;
            }
            Some(_) if line.is_empty() => {}
            Some(p) => return Err(format!("{p}: more than one line of output")),
        }
    }
    for line in stderr.lines() {
        let tolerated = line
            .strip_prefix("head: cannot open '")
            .and_then(|l| l.strip_suffix("' for reading: No such file or directory"))
            .is_some_and(|p| expected.contains(p))
            || line
                .strip_prefix("head: error reading '")
                .and_then(|l| l.strip_suffix("': Input/output error"))
                .is_some_and(|p| expected.contains(p) && p.ends_with(STABLE_SECRET));
        if !tolerated {
            return Err(line.to_string());
        }
    }
    Ok(())
}

/// One sysctl write: path and the text to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Write {
    pub(crate) path: String,
    pub(crate) value: String,
}

/// The writes restoring one `conf` directory, following CRIU: entries beyond the known
/// list are ignored, entries without a value are skipped, entries equal to `defaults`
/// are skipped (except `mtu`, which `disable_ipv6` may have changed), and
/// `accept_redirects` goes last because `forwarding` resets it.
pub(crate) fn conf_writes(
    family: Family,
    target: &str,
    entries: &[SysctlEntry],
    defaults: Option<&[SysctlEntry]>,
) -> Result<Vec<Write>> {
    let names = family.names();
    if entries.len() > names.len() {
        log::warn!(
            "{} conf of {target}: the image holds {} sysctls, {} are known; the rest are ignored",
            family.dir(),
            entries.len(),
            names.len()
        );
    }
    let mut writes = Vec::new();
    let mut last = None;
    for (i, (name, e)) in names.iter().zip(entries).enumerate() {
        if let Some(d) = defaults.and_then(|d| d.get(i)) {
            if same_value(e, d) && *name != "mtu" {
                continue;
            }
        }
        let path = conf_path(family, target, name);
        let Some(value) = entry_text(e, &path)? else {
            continue;
        };
        let w = Write { path, value };
        if *name == "accept_redirects" {
            last = Some(w);
        } else {
            writes.push(w);
        }
    }
    writes.extend(last);
    Ok(writes)
}

/// Writes for the pre-`conf4` images, which held ipv4 confs as bare integers with -1
/// meaning "absent".
pub(crate) fn old_conf4_writes(
    target: &str,
    values: &[i32],
    defaults: Option<&[i32]>,
) -> Vec<Write> {
    DEVCONFS4
        .iter()
        .zip(values)
        .enumerate()
        .filter(|(i, (_, v))| **v != -1 && defaults.and_then(|d| d.get(*i)) != Some(*v))
        .map(|(_, (name, v))| Write {
            path: conf_path(Family::V4, target, name),
            value: v.to_string(),
        })
        .collect()
}

/// Writes restoring `unix_conf`.
pub(crate) fn unix_writes(entries: &[SysctlEntry]) -> Result<Vec<Write>> {
    let mut writes = Vec::new();
    for (name, e) in UNIX_CONFS.iter().zip(entries) {
        let path = unix_path(name);
        if e.r#type != SysctlType::Ctl32 as i32 {
            return Err(NetnsError::Sysctl {
                pid: 0,
                path,
                detail: format!(
                    "unix sysctl of type {} in the image, expected CTL_32",
                    e.r#type
                ),
            });
        }
        if let Some(value) = entry_text(e, &path)? {
            writes.push(Write { path, value });
        }
    }
    Ok(writes)
}

fn same_value(a: &SysctlEntry, b: &SysctlEntry) -> bool {
    if a.r#type != b.r#type {
        return false;
    }
    match SysctlType::try_from(a.r#type) {
        Ok(SysctlType::Ctl32) => a.iarg.is_some() && a.iarg == b.iarg,
        Ok(SysctlType::CtlStr) => a.sarg.is_some() && a.sarg == b.sarg,
        Err(_) => false,
    }
}

/// The text to write for an entry, or `None` when it holds no value.
fn entry_text(e: &SysctlEntry, path: &str) -> Result<Option<String>> {
    match SysctlType::try_from(e.r#type) {
        Ok(SysctlType::Ctl32) => Ok(e.iarg.map(|v| v.to_string())),
        Ok(SysctlType::CtlStr) => match &e.sarg {
            None => Ok(None),
            Some(s) if s.len() > MAX_STR_LEN || s.contains(['\n', '\0']) => {
                Err(NetnsError::Sysctl {
                    pid: 0,
                    path: path.to_string(),
                    detail: "string value in the image is too long or holds a newline".into(),
                })
            }
            Some(s) => Ok(Some(s.clone())),
        },
        Err(_) => Ok(None),
    }
}

/// Perform `writes` inside the namespace of `pid`, in order. The first failure stops the
/// batch and names its path.
pub(crate) fn write(pid: i32, writes: &[Write]) -> Result<()> {
    const FAIL: &str = "stasis-sysctl-failed ";
    for chunk in writes.chunks(BATCH) {
        let mut script = String::from(
            "w() { printf '%s\\n' \"$2\" > \"$1\" || { printf 'stasis-sysctl-failed %s\\n' \"$1\" >&2; exit 1; }; }\n",
        );
        for w in chunk {
            script.push_str("w ");
            script.push_str(&sh_quote(&w.path));
            script.push(' ');
            script.push_str(&sh_quote(&w.value));
            script.push('\n');
        }
        let ns = Netns::Of(pid);
        let ran = tool::run(
            ns,
            "write sysctls",
            &argv(["sh", "-c", script.as_str()]),
            Input::Nothing,
            Output::Capture(4096),
        )?;
        if ran.status.success() {
            continue;
        }
        let failed_path = ran
            .stderr
            .lines()
            .find_map(|l| l.strip_prefix(FAIL))
            .map(str::to_string);
        return Err(match failed_path {
            Some(path) => {
                let value = chunk
                    .iter()
                    .find(|w| w.path == path)
                    .map(|w| w.value.clone())
                    .unwrap_or_default();
                let detail = ran
                    .stderr
                    .lines()
                    .filter(|l| !l.starts_with(FAIL))
                    .collect::<Vec<_>>()
                    .join("; ");
                NetnsError::Sysctl {
                    pid,
                    path,
                    detail: format!("writing {value:?} failed: {detail}"),
                }
            }
            None => tool::failed(ns, "write sysctls", &ran),
        });
    }
    Ok(())
}

/// Quote for `sh`: single quotes, with `'` written as `'\''`.
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e32(v: Option<i32>) -> SysctlEntry {
        SysctlEntry {
            r#type: SysctlType::Ctl32 as i32,
            iarg: v,
            sarg: None,
        }
    }

    #[test]
    fn criu_lists_have_criu_lengths() {
        assert_eq!(DEVCONFS4.len(), 30);
        assert_eq!(DEVCONFS6.len(), 42);
        assert_eq!(DEVCONFS6[35], "stable_secret");
    }

    #[test]
    fn head_output_maps_values_to_paths_and_tolerates_missing_and_unset() {
        let paths: Vec<String> = [
            "/proc/sys/net/ipv6/conf/all/stable_secret",
            "/proc/sys/net/ipv4/conf/all/forwarding",
            "/proc/sys/net/ipv4/conf/all/nonexist",
            "/proc/sys/net/unix/max_dgram_qlen",
        ]
        .map(String::from)
        .to_vec();
        let stdout = "==> /proc/sys/net/ipv6/conf/all/stable_secret <==\n\n\
                      ==> /proc/sys/net/ipv4/conf/all/forwarding <==\n1\n\n\
                      ==> /proc/sys/net/unix/max_dgram_qlen <==\n10\n";
        let stderr = "head: error reading '/proc/sys/net/ipv6/conf/all/stable_secret': Input/output error\n\
                      head: cannot open '/proc/sys/net/ipv4/conf/all/nonexist' for reading: No such file or directory";
        let mut out = HashMap::new();
        parse_head(stdout, stderr, &paths, &mut out).unwrap();
        assert_eq!(out.len(), 2);
        assert_eq!(out["/proc/sys/net/ipv4/conf/all/forwarding"], "1");
        assert_eq!(out["/proc/sys/net/unix/max_dgram_qlen"], "10");
    }

    #[test]
    fn head_output_with_an_unknown_error_is_refused() {
        let paths = vec!["/proc/sys/net/ipv4/conf/all/forwarding".to_string()];
        let mut out = HashMap::new();
        let err =
            parse_head("", "nsenter: cannot open /proc/1/ns/net", &paths, &mut out).unwrap_err();
        assert!(err.contains("nsenter"));
        let err = parse_head(
            "",
            "head: error reading '/proc/sys/net/ipv4/conf/all/forwarding': Input/output error",
            &paths,
            &mut out,
        )
        .unwrap_err();
        assert!(err.contains("forwarding"));
    }

    #[test]
    fn conf_writes_skip_defaults_and_absent_values_and_put_accept_redirects_last() {
        let mut entries: Vec<SysctlEntry> = (0..30).map(|i| e32(Some(i))).collect();
        entries[5].iarg = None; // arp_filter absent in this kernel
        let mut defaults = entries.clone();
        defaults[12].iarg = Some(99); // forwarding differs from default
        defaults[1].iarg = Some(99); // accept_redirects differs from default
        let w = conf_writes(Family::V4, "eth0", &entries, Some(&defaults)).unwrap();
        let paths: Vec<&str> = w.iter().map(|w| w.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "/proc/sys/net/ipv4/conf/eth0/forwarding",
                "/proc/sys/net/ipv4/conf/eth0/accept_redirects"
            ]
        );
        let all = conf_writes(Family::V4, "all", &entries, None).unwrap();
        assert_eq!(all.len(), 29);
        assert!(all.last().unwrap().path.ends_with("/accept_redirects"));
        assert!(!all.iter().any(|w| w.path.ends_with("/arp_filter")));
    }

    #[test]
    fn ipv6_mtu_is_written_even_when_equal_to_default() {
        let entries: Vec<SysctlEntry> = (0..42).map(|i| e32(Some(i))).collect();
        let w = conf_writes(Family::V6, "veth0", &entries, Some(&entries)).unwrap();
        assert_eq!(w.len(), 1);
        assert!(w[0].path.ends_with("/veth0/mtu"));
    }

    #[test]
    fn old_integer_confs_skip_unused_and_defaults() {
        let vals = [1, -1, 3];
        let w = old_conf4_writes("all", &vals, Some(&[1, 5, 4]));
        assert_eq!(w.len(), 1);
        assert!(w[0].path.ends_with("/accept_source_route") && w[0].value == "3");
    }

    #[test]
    fn shell_quoting_survives_quotes() {
        assert_eq!(sh_quote("a'b"), "'a'\\''b'");
    }

    #[test]
    fn out_of_range_values_are_errors() {
        let mut v = Values::default();
        let p = conf_path(Family::V4, "all", "forwarding");
        v.0.insert(p.clone(), "99999999999".into());
        assert!(v.entry(1, &p, SysctlType::Ctl32).is_err());
        v.0.insert(p.clone(), "x".into());
        assert!(v.entry(1, &p, SysctlType::Ctl32).is_err());
    }
}
