//! Dump of one network namespace into CRIU's images: `netdev-<id>` (one
//! `NetDeviceEntry` per link), the raw iproute2 streams `ifaddr-<id>`, `route-<id>`,
//! `route6-<id>` and `rule-<id>`, the `nftables-<id>` ruleset text, and `netns-<id>` (the
//! namespace-wide sysctls). Order: collect links and sysctls, check every link can be
//! recreated, then write.

use std::collections::HashMap;

use stasis_images::pb::{NdType, NetDeviceEntry, NetnsEntry};
use stasis_images::{names, ImageDir, ImageKind};

use super::error::{NetnsError, Result};
use super::link::{self, Link};
use super::sysctl::{self, Family, Values};
use super::tool::{self, argv, Input, Netns, Output};

/// Most links one namespace may hold for a dump.
const MAX_LINKS: usize = 4096;

/// Dump the network namespace of process `ns_pid` into `dir` as namespace `id`.
///
/// Links other than loopback and veth are refused with an error naming the link and its
/// kind (the per-namespace fallback tunnels such as `gre0` are skipped: every new
/// namespace gets its own). A veth whose peer is in another namespace is recorded without
/// `peer_nsid`, as CRIU does; restoring it needs an `--external veth[<name>]:<host name>`
/// mapping. If the namespace holds a network-lock table when dumped, the table is part of
/// `nftables-<id>` and comes back locked on restore; the restorer unlocks it by name.
pub fn dump_netns(ns_pid: i32, dir: &ImageDir, id: u32) -> Result<()> {
    let ns = Netns::Of(ns_pid);
    let links = link::list(ns, "list links")?;
    if links.len() > MAX_LINKS {
        return Err(NetnsError::Output {
            pid: ns_pid,
            step: "list links".into(),
            detail: format!(
                "{} links, more than the {MAX_LINKS} stasis dumps",
                links.len()
            ),
        });
    }
    let dumped = dumped_links(ns_pid, &links)?;

    let mut paths = Vec::new();
    for target in ["default", "all"] {
        paths.extend(sysctl::conf_paths(Family::V4, target));
    }
    for target in ["default", "all"] {
        paths.extend(sysctl::conf_paths(Family::V6, target));
    }
    for l in &dumped {
        paths.extend(sysctl::conf_paths(Family::V4, &l.name));
        paths.extend(sysctl::conf_paths(Family::V6, &l.name));
    }
    paths.extend(sysctl::UNIX_CONFS.iter().map(|n| sysctl::unix_path(n)));
    let values = sysctl::read(ns_pid, &paths)?;

    let by_name: HashMap<&str, u32> = links.iter().map(|l| (l.name.as_str(), l.ifindex)).collect();
    let devices = dumped
        .iter()
        .map(|l| device_entry(ns_pid, id, l, &by_name, &values))
        .collect::<Result<Vec<_>>>()?;
    dir.write(ImageKind::NETDEV, &names::netdev(id), &devices)?;

    raw_stream(
        ns,
        dir,
        &names::ifaddr(id),
        "save addresses",
        &["ip", "addr", "save"],
    )?;
    raw_stream(
        ns,
        dir,
        &names::route(id),
        "save IPv4 routes",
        &["ip", "-4", "route", "save"],
    )?;
    raw_stream(
        ns,
        dir,
        &names::route6(id),
        "save IPv6 routes",
        &["ip", "-6", "route", "save"],
    )?;
    raw_stream(
        ns,
        dir,
        &names::rule(id),
        "save IPv4 rules",
        &["ip", "-4", "rule", "save"],
    )?;
    raw_stream(
        ns,
        dir,
        &names::nftables(id),
        "list nftables ruleset",
        &["nft", "list", "ruleset"],
    )?;

    let entry = NetnsEntry {
        def_conf4: values.conf_entries(ns_pid, Family::V4, "default")?,
        all_conf4: values.conf_entries(ns_pid, Family::V4, "all")?,
        def_conf6: values.conf_entries(ns_pid, Family::V6, "default")?,
        all_conf6: values.conf_entries(ns_pid, Family::V6, "all")?,
        unix_conf: values.unix_entries(ns_pid)?,
        ..NetnsEntry::default()
    };
    dir.write_one(ImageKind::NETNS, &names::netns(id), &entry)?;
    log::info!(
        "netns of pid {ns_pid} dumped as net ns {id}: {} links ({})",
        devices.len(),
        dumped
            .iter()
            .map(|l| l.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(())
}

/// The links that go into `netdev-<id>`; refuses a link stasis could not recreate.
fn dumped_links(pid: i32, links: &[Link]) -> Result<Vec<&Link>> {
    let mut out = Vec::new();
    for l in links {
        if link::is_fallback_tunnel(l) {
            log::info!(
                "netns of pid {pid}: skipping {} ({}): the kernel creates it in every namespace",
                l.name,
                l.kind_name()
            );
            continue;
        }
        let unsupported = |reason: String| NetnsError::UnsupportedLink {
            pid,
            name: l.name.clone(),
            ifindex: l.ifindex,
            kind: l.kind_name().to_string(),
            reason,
        };
        link::valid_name(&l.name).map_err(|r| unsupported(r.to_string()))?;
        let is_lo = l.link_type == "loopback";
        let is_veth = l.kind.as_deref() == Some("veth");
        if !is_lo && !is_veth {
            return Err(unsupported(
                "stasis recreates only loopback and veth links".into(),
            ));
        }
        if let Some(m) = &l.master {
            return Err(unsupported(format!(
                "it is enslaved to {m}, and stasis does not recreate bridges or bonds"
            )));
        }
        out.push(l);
    }
    Ok(out)
}

fn device_entry(
    pid: i32,
    id: u32,
    l: &Link,
    by_name: &HashMap<&str, u32>,
    values: &Values,
) -> Result<NetDeviceEntry> {
    let is_lo = l.link_type == "loopback";
    // CRIU records IFLA_LINK (or the link itself) and the namespace holding it; a peer in
    // a namespace outside the dump has no CRIU id and is left without `peer_nsid`.
    let peer_ifindex = match (&l.link_index, &l.link_name) {
        (Some(i), _) => *i,
        (None, Some(n)) => *by_name.get(n.as_str()).ok_or_else(|| NetnsError::Output {
            pid,
            step: "list links".into(),
            detail: format!("link {}: peer {n} is not among the links", l.name),
        })?,
        (None, None) => l.ifindex,
    };
    let peer_nsid = match l.link_netnsid {
        None => Some(id),
        Some(nsid) => {
            log::info!(
                "netns of pid {pid}: the peer of {} is in another namespace (netnsid {nsid}); \
                 restoring it needs an external veth mapping",
                l.name
            );
            None
        }
    };
    Ok(NetDeviceEntry {
        r#type: if is_lo {
            NdType::Loopback
        } else {
            NdType::Veth
        } as i32,
        ifindex: l.ifindex,
        mtu: l.mtu,
        flags: l.flags,
        name: l.name.clone(),
        address: if is_lo {
            None
        } else {
            l.address.clone().filter(|a| !a.is_empty())
        },
        conf4: values.conf_entries(pid, Family::V4, &l.name)?,
        conf6: values.conf_entries(pid, Family::V6, &l.name)?,
        peer_ifindex: Some(peer_ifindex),
        peer_nsid,
        ..NetDeviceEntry::default()
    })
}

/// Run a tool in the namespace with its stdout going straight into raw image `name`. A
/// failed tool leaves no file behind.
fn raw_stream(ns: Netns, dir: &ImageDir, name: &str, step: &str, cmd: &[&str]) -> Result<()> {
    let file = dir.create_raw(name)?;
    let step = format!("{step} into {}", dir.file_path(name).display());
    match tool::run_ok(
        ns,
        &step,
        &argv(cmd.iter().copied()),
        Input::Nothing,
        Output::File(file),
    ) {
        Ok(_) => Ok(()),
        Err(e) => {
            if let Err(rm) = dir.remove(name) {
                log::warn!("{rm}");
            }
            Err(e)
        }
    }
}
