//! Restore of one network namespace from CRIU's images into the fresh, empty namespace of
//! a restored process. Read every image and plan every link first, check the target and
//! the host, then build in CRIU's order: namespace sysctls (`all`, then `default`, so new
//! links inherit the defaults), links and their sysctls, addresses, routes, rules, and the
//! nftables ruleset.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::Read;

use stasis_images::pb::{NdType, NetDeviceEntry, NetnsEntry};
use stasis_images::{names, ImageDir, ImageKind};

use super::error::{NetnsError, Result};
use super::link::{self, Link};
use super::sysctl::{self, Family, Write};
use super::tool::{self, argv, Input, Netns, Output};

/// Most links one namespace image may hold.
const MAX_LINKS: usize = 4096;

/// Largest raw stream (`ifaddr`, `route`, ruleset, ...) stasis feeds to a tool.
const MAX_RAW_IMAGE: u64 = 64 << 20;

/// Largest iptables text inspected for rules.
const MAX_IPTABLES_TEXT: u64 = 4 << 20;

/// Restore namespace `id` from `dir` into the network namespace of process `target_pid`.
///
/// Call it from the host namespace once `target_pid` exists in a fresh namespace (only
/// `lo`, down). `veths` maps a veth's inside name to its outside name, as CRIU's
/// `--external veth[IN]:OUT` (or RPC `veths {if_in, if_out}`); `OUT@BRIDGE` also enslaves
/// the outside end to host bridge `BRIDGE`. Each mapped veth is created with its inside
/// end (same name, ifindex, MAC and mtu as dumped) in the target and its outside end in
/// the host namespace, which is brought up. A veth whose peer was outside the dumped
/// namespace and has no mapping is an error naming it; a veth pair with both ends inside
/// is recreated as a pair.
///
/// Nothing is changed until every image was read and every link planned. A failing step
/// is an error naming the step; what was already built stays (the namespace dies with the
/// failed restore).
pub fn restore_netns(
    target_pid: i32,
    dir: &ImageDir,
    id: u32,
    veths: &[(String, String)],
) -> Result<()> {
    let images = NetImages::read(dir, id)?;
    let mapping = VethMap::parse(veths)?;
    let plan = plan_links(dir, id, &images.devices, &mapping)?;
    preflight(target_pid, &plan)?;

    let ns = Netns::Of(target_pid);
    if let Some(netns) = &images.netns {
        sysctl::write(target_pid, &netns_writes(netns)?)?;
    }
    for step in &plan {
        create_link(target_pid, step)?;
    }
    let mut link_writes = Vec::new();
    for dev in &images.devices {
        link_writes.extend(link_conf_writes(dev, images.netns.as_ref())?);
    }
    sysctl::write(target_pid, &link_writes)?;

    if let Some(f) = images.ifaddr {
        restore_stream(ns, "restore addresses", &["ip", "addr", "restore"], f)?;
    }
    if let Some(f) = images.route {
        restore_stream(ns, "restore IPv4 routes", &["ip", "route", "restore"], f)?;
    }
    if let Some(f) = images.route6 {
        restore_stream(ns, "restore IPv6 routes", &["ip", "route", "restore"], f)?;
    }
    if let Some(f) = images.rule {
        // A new namespace already holds the three default rules, which the image holds
        // too; drop them first so they are not doubled (fib_default_rules_init()).
        tool::run_ok(
            ns,
            "flush default rules",
            &argv(["ip", "rule", "flush"]),
            Input::Nothing,
            Output::Capture(4096),
        )?;
        tool::run_ok(
            ns,
            "delete the local-table rule",
            &argv(["ip", "rule", "delete", "table", "local"]),
            Input::Nothing,
            Output::Capture(4096),
        )?;
        restore_stream(ns, "restore rules", &["ip", "rule", "restore"], f)?;
    }
    if let Some(f) = images.nftables {
        restore_stream(ns, "restore nftables ruleset", &["nft", "-f", "-"], f)?;
    }
    log::info!(
        "net ns {id} restored into the netns of pid {target_pid}: {} links",
        images.devices.len()
    );
    Ok(())
}

/// Everything read from the images, before anything is changed.
struct NetImages {
    netns: Option<NetnsEntry>,
    devices: Vec<NetDeviceEntry>,
    ifaddr: Option<File>,
    route: Option<File>,
    route6: Option<File>,
    rule: Option<File>,
    nftables: Option<File>,
}

impl NetImages {
    fn read(dir: &ImageDir, id: u32) -> Result<NetImages> {
        let netns_name = names::netns(id);
        let netns = dir
            .read_if_exists::<NetnsEntry>(ImageKind::NETNS, &netns_name)?
            .map(|mut v| match v.len() {
                1 => Ok(v.remove(0)),
                n => Err(NetnsError::BadImage {
                    path: dir.file_path(&netns_name),
                    detail: format!("{n} entries, expected one"),
                }),
            })
            .transpose()?;
        match &netns {
            None => log::warn!(
                "{}: missing; namespace sysctls are not restored (an image of an old CRIU)",
                dir.file_path(&netns_name).display()
            ),
            Some(n) => check_netns_entry(dir, &netns_name, n)?,
        }

        let netdev_name = names::netdev(id);
        let mut reader = dir.reader(ImageKind::NETDEV, &netdev_name)?;
        let mut devices = Vec::new();
        while let Some(d) = reader.next::<NetDeviceEntry>()? {
            if devices.len() == MAX_LINKS {
                return Err(NetnsError::BadImage {
                    path: dir.file_path(&netdev_name),
                    detail: format!("more than {MAX_LINKS} links"),
                });
            }
            devices.push(d);
        }

        for name in [names::iptables(id), names::ip6tables(id)] {
            check_no_iptables_rules(dir, &name)?;
        }
        for name in [names::netns_ct(id), names::netns_exp(id)] {
            if open_raw(dir, &name)?.is_some() {
                return Err(NetnsError::BadImage {
                    path: dir.file_path(&name),
                    detail: "holds conntrack state, which stasis does not restore".into(),
                });
            }
        }
        Ok(NetImages {
            netns,
            devices,
            ifaddr: open_raw(dir, &names::ifaddr(id))?,
            route: open_raw(dir, &names::route(id))?,
            route6: open_raw(dir, &names::route6(id))?,
            rule: open_raw(dir, &names::rule(id))?,
            nftables: open_raw(dir, &names::nftables(id))?,
        })
    }
}

fn check_netns_entry(dir: &ImageDir, name: &str, n: &NetnsEntry) -> Result<()> {
    let bad = |detail: String| NetnsError::BadImage {
        path: dir.file_path(name),
        detail,
    };
    if let Some(key) = &n.ext_key {
        return Err(bad(format!(
            "the namespace is external (key {key:?}); it is joined, not restored"
        )));
    }
    if !n.ipv4_sysctl.is_empty() {
        return Err(bad(format!(
            "holds {} ipv4_sysctl entries, which stasis does not know how to restore",
            n.ipv4_sysctl.len()
        )));
    }
    if !n.nsids.is_empty() {
        log::info!(
            "{}: {} peer netns ids are not restored; the kernel assigns new ones",
            dir.file_path(name).display(),
            n.nsids.len()
        );
    }
    Ok(())
}

/// Open a raw image; `None` when it is missing or empty (CRIU's `empty_image()`).
fn open_raw(dir: &ImageDir, name: &str) -> Result<Option<File>> {
    let file = match dir.open_raw(name) {
        Ok(f) => f,
        Err(stasis_images::ImageError::Missing { .. }) => {
            log::info!(
                "{}: missing, nothing to restore",
                dir.file_path(name).display()
            );
            return Ok(None);
        }
        Err(e) => return Err(e.into()),
    };
    let len = file
        .metadata()
        .map_err(|source| NetnsError::Io {
            what: format!("stat {}", dir.file_path(name).display()),
            source,
        })?
        .len();
    if len > MAX_RAW_IMAGE {
        return Err(NetnsError::BadImage {
            path: dir.file_path(name),
            detail: format!("{len} bytes, more than the {MAX_RAW_IMAGE} stasis accepts"),
        });
    }
    Ok((len > 0).then_some(file))
}

/// CRIU dumps `iptables-save` output too. Stasis restores the nftables ruleset only, so
/// an iptables image holding rules or non-default policies cannot be restored faithfully.
fn check_no_iptables_rules(dir: &ImageDir, name: &str) -> Result<()> {
    let Some(file) = open_raw(dir, name)? else {
        return Ok(());
    };
    let mut text = String::new();
    file.take(MAX_IPTABLES_TEXT)
        .read_to_string(&mut text)
        .map_err(|source| NetnsError::Io {
            what: format!("read {}", dir.file_path(name).display()),
            source,
        })?;
    if let Some(line) = iptables_rule_line(&text) {
        return Err(NetnsError::BadImage {
            path: dir.file_path(name),
            detail: format!(
                "holds iptables state ({line:?}); stasis restores only the nftables ruleset"
            ),
        });
    }
    Ok(())
}

/// The first line of `iptables-save` text that is a rule or a non-ACCEPT chain policy.
fn iptables_rule_line(text: &str) -> Option<&str> {
    text.lines().map(str::trim).find(|l| {
        l.starts_with("-A ")
            || l.starts_with("-I ")
            || l.strip_prefix(':').is_some_and(|c| {
                let policy = c.split_whitespace().nth(1).unwrap_or("-");
                policy != "ACCEPT" && policy != "-"
            })
    })
}

/// `--external veth[IN]:OUT[@BRIDGE]` mappings.
#[derive(Debug, Default)]
struct VethMap(HashMap<String, (String, Option<String>)>);

impl VethMap {
    fn parse(veths: &[(String, String)]) -> Result<VethMap> {
        let mut map = HashMap::new();
        for (inside, outside) in veths {
            let bad = |reason: &str| NetnsError::BadArgument {
                what: "veth mapping",
                value: format!("{inside}:{outside}"),
                reason: reason.to_string(),
            };
            link::valid_name(inside).map_err(bad)?;
            let (out, bridge) = match outside.split_once('@') {
                Some((o, b)) => (o, Some(b.to_string())),
                None => (outside.as_str(), None),
            };
            link::valid_name(out).map_err(bad)?;
            if let Some(b) = &bridge {
                link::valid_name(b).map_err(bad)?;
            }
            if map
                .insert(inside.clone(), (out.to_string(), bridge))
                .is_some()
            {
                return Err(bad("the inside name is mapped twice"));
            }
        }
        Ok(VethMap(map))
    }
}

/// How one dumped link comes back.
#[derive(Debug, PartialEq)]
enum LinkStep<'a> {
    /// The namespace's own `lo`: set its name, mtu and flags.
    Loopback(&'a NetDeviceEntry),
    /// A veth with its outside end in the host namespace.
    ExternalVeth {
        dev: &'a NetDeviceEntry,
        outside: String,
        bridge: Option<String>,
    },
    /// A veth pair with both ends in the namespace, created together.
    InternalPair {
        dev: &'a NetDeviceEntry,
        peer: &'a NetDeviceEntry,
    },
}

fn plan_links<'a>(
    dir: &ImageDir,
    id: u32,
    devices: &'a [NetDeviceEntry],
    mapping: &VethMap,
) -> Result<Vec<LinkStep<'a>>> {
    let path = dir.file_path(&names::netdev(id));
    let bad = |detail: String| NetnsError::BadImage {
        path: path.clone(),
        detail,
    };
    let by_index: HashMap<u32, &NetDeviceEntry> = devices.iter().map(|d| (d.ifindex, d)).collect();
    if by_index.len() != devices.len() {
        return Err(bad("two links share an ifindex".into()));
    }
    let mut names_seen = HashSet::new();
    let mut done: HashSet<u32> = HashSet::new();
    let mut plan = Vec::new();
    let mut loopbacks = 0;
    for dev in devices {
        link::valid_name(&dev.name).map_err(|r| bad(format!("link {:?}: {r}", dev.name)))?;
        if !names_seen.insert(dev.name.as_str()) {
            return Err(bad(format!("two links are named {}", dev.name)));
        }
        if dev.ifindex == 0 || dev.mtu == 0 {
            return Err(bad(format!("link {}: ifindex or mtu is zero", dev.name)));
        }
        if let Some(m) = dev.master {
            return Err(bad(format!(
                "link {} is enslaved to ifindex {m}; stasis does not recreate bridges or bonds",
                dev.name
            )));
        }
        if done.contains(&dev.ifindex) {
            continue;
        }
        match NdType::try_from(dev.r#type) {
            Ok(NdType::Loopback) => {
                loopbacks += 1;
                plan.push(LinkStep::Loopback(dev));
            }
            Ok(NdType::Veth) => {
                if let Some((outside, bridge)) = mapping.0.get(&dev.name) {
                    plan.push(LinkStep::ExternalVeth {
                        dev,
                        outside: outside.clone(),
                        bridge: bridge.clone(),
                    });
                    continue;
                }
                let internal_peer = match (dev.peer_nsid, dev.peer_ifindex) {
                    (Some(nsid), Some(pi)) if nsid == id && pi != dev.ifindex => {
                        by_index.get(&pi).copied()
                    }
                    _ => None,
                };
                match internal_peer {
                    Some(peer) if peer.r#type == NdType::Veth as i32 => {
                        if mapping.0.contains_key(&peer.name) {
                            return Err(bad(format!(
                                "veth {} and its peer {} are both inside the namespace, \
                                 but {} is mapped to a host name",
                                dev.name, peer.name, peer.name
                            )));
                        }
                        done.insert(peer.ifindex);
                        plan.push(LinkStep::InternalPair { dev, peer });
                    }
                    _ => {
                        return Err(NetnsError::VethUnmapped {
                            name: dev.name.clone(),
                            ifindex: dev.ifindex,
                        })
                    }
                }
            }
            other => {
                return Err(NetnsError::UnsupportedLink {
                    pid: 0,
                    name: dev.name.clone(),
                    ifindex: dev.ifindex,
                    kind: match other {
                        Ok(t) => t.as_str_name().to_lowercase(),
                        Err(_) => format!("type {}", dev.r#type),
                    },
                    reason: format!(
                        "{}: stasis recreates only loopback and veth links",
                        path.display()
                    ),
                })
            }
        }
    }
    if loopbacks != 1 {
        return Err(bad(format!("{loopbacks} loopback links, expected one")));
    }
    for inside in mapping.0.keys() {
        if !devices.iter().any(|d| &d.name == inside) {
            log::warn!(
                "veth mapping for {inside}: no such link in {}",
                path.display()
            );
        }
    }
    Ok(plan)
}

/// The target must hold nothing but `lo` (and the kernel's own fallback tunnels), none of
/// the dumped ifindexes may be taken, and no outside name may exist in the host.
fn preflight(target_pid: i32, plan: &[LinkStep<'_>]) -> Result<()> {
    let present = link::list(Netns::Of(target_pid), "list links of the target")?;
    let mut taken: HashMap<u32, &Link> = HashMap::new();
    for l in &present {
        if l.link_type == "loopback" {
            continue;
        }
        if !link::is_fallback_tunnel(l) {
            return Err(NetnsError::TargetNotEmpty {
                pid: target_pid,
                detail: format!("it already holds link {} ({})", l.name, l.kind_name()),
            });
        }
        taken.insert(l.ifindex, l);
    }
    // The dumped namespace's own host ends vanish only once the kernel has torn it
    // down, which it does asynchronously after its last task died: a restore right
    // after the dump waits a little for their names to be free.
    let outside: Vec<&String> = plan
        .iter()
        .filter_map(|s| match s {
            LinkStep::ExternalVeth { outside, .. } => Some(outside),
            _ => None,
        })
        .collect();
    let until = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let host = loop {
        let host = link::list(Netns::Host, "list links of the host")?;
        let busy = host.iter().any(|h| outside.contains(&&h.name));
        if !busy || std::time::Instant::now() > until {
            break host;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    for step in plan {
        let mut wanted = Vec::new();
        match step {
            LinkStep::Loopback(_) => {}
            LinkStep::ExternalVeth {
                dev,
                outside,
                bridge,
            } => {
                wanted.push(*dev);
                if host.iter().any(|h| &h.name == outside) {
                    return Err(NetnsError::BadArgument {
                        what: "veth mapping",
                        value: format!("{}:{outside}", dev.name),
                        reason: format!("the host already has a link named {outside}"),
                    });
                }
                if let Some(b) = bridge {
                    if !host.iter().any(|h| &h.name == b) {
                        return Err(NetnsError::BadArgument {
                            what: "veth mapping",
                            value: format!("{}:{outside}@{b}", dev.name),
                            reason: format!("the host has no bridge named {b}"),
                        });
                    }
                }
            }
            LinkStep::InternalPair { dev, peer } => wanted.extend([*dev, *peer]),
        }
        for d in wanted {
            if let Some(l) = taken.get(&d.ifindex) {
                return Err(NetnsError::TargetNotEmpty {
                    pid: target_pid,
                    detail: format!(
                        "ifindex {} of {} is taken by the kernel's {}",
                        d.ifindex, d.name, l.name
                    ),
                });
            }
        }
    }
    Ok(())
}

/// The namespace-wide sysctls: `all` before `default`, ipv4 then ipv6, then unix.
fn netns_writes(n: &NetnsEntry) -> Result<Vec<Write>> {
    let mut w = Vec::new();
    if !n.def_conf4.is_empty() {
        w.extend(sysctl::conf_writes(Family::V4, "all", &n.all_conf4, None)?);
        w.extend(sysctl::conf_writes(
            Family::V4,
            "default",
            &n.def_conf4,
            None,
        )?);
    } else if !n.def_conf.is_empty() {
        w.extend(sysctl::old_conf4_writes("all", &n.all_conf, None));
        w.extend(sysctl::old_conf4_writes("default", &n.def_conf, None));
    }
    if !n.def_conf6.is_empty() {
        w.extend(sysctl::conf_writes(Family::V6, "all", &n.all_conf6, None)?);
        w.extend(sysctl::conf_writes(
            Family::V6,
            "default",
            &n.def_conf6,
            None,
        )?);
    }
    w.extend(sysctl::unix_writes(&n.unix_conf)?);
    Ok(w)
}

/// A link's own sysctls; values equal to the namespace default are skipped, except for
/// `lo`, which exists before the defaults were written.
fn link_conf_writes(dev: &NetDeviceEntry, netns: Option<&NetnsEntry>) -> Result<Vec<Write>> {
    let defaults = netns.filter(|_| dev.r#type != NdType::Loopback as i32);
    let mut w = Vec::new();
    if !dev.conf4.is_empty() {
        let d = defaults.map(|n| n.def_conf4.as_slice());
        w.extend(sysctl::conf_writes(Family::V4, &dev.name, &dev.conf4, d)?);
    } else if !dev.conf.is_empty() {
        let d = defaults.map(|n| n.def_conf.as_slice());
        w.extend(sysctl::old_conf4_writes(&dev.name, &dev.conf, d));
    }
    if !dev.conf6.is_empty() {
        let d = defaults.map(|n| n.def_conf6.as_slice());
        w.extend(sysctl::conf_writes(Family::V6, &dev.name, &dev.conf6, d)?);
    }
    Ok(w)
}

/// `ip link set` arguments giving a link the dumped flags (the ones userspace can set).
fn flag_args(flags: u32) -> Vec<String> {
    let onoff = |bit: u32| if flags & bit != 0 { "on" } else { "off" };
    let mut a: Vec<String> = vec![
        "promisc".into(),
        onoff(link::IFF_PROMISC).into(),
        "allmulticast".into(),
        onoff(link::IFF_ALLMULTI).into(),
        "multicast".into(),
        onoff(link::IFF_MULTICAST).into(),
        "dynamic".into(),
        onoff(link::IFF_DYNAMIC).into(),
        // `arp off` and `trailers off` set NOARP and NOTRAILERS.
        "arp".into(),
        (if flags & link::IFF_NOARP != 0 {
            "off"
        } else {
            "on"
        })
        .into(),
        "trailers".into(),
        (if flags & link::IFF_NOTRAILERS != 0 {
            "off"
        } else {
            "on"
        })
        .into(),
    ];
    a.push(
        if flags & link::IFF_UP != 0 {
            "up"
        } else {
            "down"
        }
        .into(),
    );
    a
}

/// `name N index I [address A] mtu M` for `ip link add` (either end of a veth).
fn add_args(dev: &NetDeviceEntry) -> Vec<String> {
    let mut a = vec![
        "name".into(),
        dev.name.clone(),
        "index".into(),
        dev.ifindex.to_string(),
    ];
    if let Some(mac) = dev.address.as_deref().filter(|m| !m.is_empty()) {
        a.extend(["address".into(), link::format_mac(mac)]);
    }
    a.extend(["mtu".into(), dev.mtu.to_string()]);
    a
}

fn create_link(target_pid: i32, step: &LinkStep<'_>) -> Result<()> {
    let ns = Netns::Of(target_pid);
    let quiet = || Output::Capture(64 * 1024);
    let set_flags = |dev: &NetDeviceEntry, rename_from: Option<&str>| -> Result<()> {
        let mut a = argv(["ip", "link", "set", "dev"]);
        match rename_from {
            Some(old) => a.extend(argv([old, "name", dev.name.as_str()])),
            None => a.push(dev.name.clone().into()),
        }
        a.extend(argv(["mtu".to_string(), dev.mtu.to_string()]));
        a.extend(argv(flag_args(dev.flags)));
        tool::run_ok(
            ns,
            &format!("configure link {}", dev.name),
            &a,
            Input::Nothing,
            quiet(),
        )
        .map(drop)
    };
    match step {
        LinkStep::Loopback(dev) => {
            let lo = link::list(ns, "find the loopback of the target")?
                .into_iter()
                .find(|l| l.link_type == "loopback")
                .ok_or_else(|| NetnsError::TargetNotEmpty {
                    pid: target_pid,
                    detail: "it has no loopback link".into(),
                })?;
            let rename = (lo.name != dev.name).then_some(lo.name.as_str());
            set_flags(dev, rename)
        }
        LinkStep::ExternalVeth {
            dev,
            outside,
            bridge,
        } => {
            let host_pid = Netns::Host.pid().to_string();
            let mut a = argv(["ip", "link", "add"]);
            a.extend(argv(add_args(dev)));
            a.extend(argv(["type", "veth", "peer", "name", outside.as_str()]));
            a.extend(argv(["mtu".to_string(), dev.mtu.to_string()]));
            a.extend(argv(["netns", host_pid.as_str()]));
            let what = format!("create veth {} with host end {outside}", dev.name);
            tool::run_ok(ns, &what, &a, Input::Nothing, quiet())?;
            set_flags(dev, None)?;
            let mut h = argv(["ip", "link", "set", "dev", outside.as_str()]);
            if let Some(b) = bridge {
                h.extend(argv(["master", b.as_str()]));
            }
            h.push("up".into());
            let what = format!("bring up host end {outside} of veth {}", dev.name);
            tool::run_ok(Netns::Host, &what, &h, Input::Nothing, quiet()).map(drop)
        }
        LinkStep::InternalPair { dev, peer } => {
            let mut a = argv(["ip", "link", "add"]);
            a.extend(argv(add_args(dev)));
            a.extend(argv(["type", "veth", "peer"]));
            a.extend(argv(add_args(peer)));
            let what = format!("create veth pair {} / {}", dev.name, peer.name);
            tool::run_ok(ns, &what, &a, Input::Nothing, quiet())?;
            set_flags(dev, None)?;
            set_flags(peer, None)
        }
    }
}

/// Feed a raw image to an iproute2/nft `restore` inside the namespace.
fn restore_stream(ns: Netns, step: &str, cmd: &[&str], file: File) -> Result<()> {
    let ran = tool::run_ok(
        ns,
        step,
        &argv(cmd.iter().copied()),
        Input::File(file),
        Output::Capture(1 << 20),
    )?;
    if !ran.stderr.is_empty() {
        // `ip ... restore` reports entries the kernel already created (EEXIST) and goes on.
        log::debug!("netns of pid {}: {step}: {}", ns.pid(), ran.stderr);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dev(
        t: NdType,
        ifindex: u32,
        name: &str,
        peer: Option<(u32, Option<u32>)>,
    ) -> NetDeviceEntry {
        NetDeviceEntry {
            r#type: t as i32,
            ifindex,
            mtu: 1500,
            flags: 0x1043,
            name: name.into(),
            peer_ifindex: peer.map(|p| p.0),
            peer_nsid: peer.and_then(|p| p.1),
            ..NetDeviceEntry::default()
        }
    }

    fn tmpdir() -> (std::path::PathBuf, ImageDir) {
        let p = std::env::temp_dir().join(format!(
            "stasis-netns-plan-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let d = ImageDir::create(&p).unwrap();
        (p, d)
    }

    #[test]
    fn a_veth_with_an_outside_peer_needs_a_mapping_naming_it() {
        let (p, dir) = tmpdir();
        let devs = vec![
            dev(NdType::Loopback, 1, "lo", Some((1, Some(7)))),
            dev(NdType::Veth, 2, "eth0", Some((9, None))),
        ];
        let err = plan_links(&dir, 7, &devs, &VethMap::default()).unwrap_err();
        assert!(matches!(&err, NetnsError::VethUnmapped { name, .. } if name == "eth0"));
        assert!(err.to_string().contains("veth[eth0]"));
        let map = VethMap::parse(&[("eth0".into(), "host0@br0".into())]).unwrap();
        let plan = plan_links(&dir, 7, &devs, &map).unwrap();
        assert_eq!(plan.len(), 2);
        assert!(
            matches!(&plan[1], LinkStep::ExternalVeth { outside, bridge, .. }
            if outside == "host0" && bridge.as_deref() == Some("br0"))
        );
        let _ = std::fs::remove_dir_all(p);
    }

    #[test]
    fn a_pair_inside_the_namespace_is_created_once() {
        let (p, dir) = tmpdir();
        let devs = vec![
            dev(NdType::Loopback, 1, "lo", Some((1, Some(7)))),
            dev(NdType::Veth, 2, "a", Some((3, Some(7)))),
            dev(NdType::Veth, 3, "b", Some((2, Some(7)))),
        ];
        let plan = plan_links(&dir, 7, &devs, &VethMap::default()).unwrap();
        assert_eq!(plan.len(), 2);
        assert!(matches!(&plan[1], LinkStep::InternalPair { dev, peer }
            if dev.name == "a" && peer.name == "b"));
        let _ = std::fs::remove_dir_all(p);
    }

    #[test]
    fn unsupported_link_types_are_refused_by_name() {
        let (p, dir) = tmpdir();
        let devs = vec![
            dev(NdType::Loopback, 1, "lo", None),
            dev(NdType::Bridge, 4, "br0", None),
        ];
        let err = plan_links(&dir, 7, &devs, &VethMap::default()).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("br0") && msg.contains("bridge"), "{msg}");
        let _ = std::fs::remove_dir_all(p);
    }

    #[test]
    fn bad_mappings_are_refused() {
        assert!(VethMap::parse(&[("eth0".into(), "a/b".into())]).is_err());
        assert!(
            VethMap::parse(&[("eth0".into(), "x".into()), ("eth0".into(), "y".into())]).is_err()
        );
    }

    #[test]
    fn flags_become_ip_link_arguments() {
        let a = flag_args(0x1 | 0x100 | 0x80 | 0x1000);
        let s = a.join(" ");
        assert_eq!(
            s,
            "promisc on allmulticast off multicast on dynamic off arp off trailers on up"
        );
        assert!(flag_args(0x8).join(" ").ends_with("down"));
    }

    #[test]
    fn iptables_text_with_rules_or_policies_is_detected() {
        let empty = "# Generated\n*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\nCOMMIT\n";
        assert_eq!(iptables_rule_line(empty), None);
        let rule = "*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -j DROP\nCOMMIT\n";
        assert_eq!(iptables_rule_line(rule), Some("-A INPUT -j DROP"));
        let policy = "*filter\n:INPUT DROP [0:0]\nCOMMIT\n";
        assert!(iptables_rule_line(policy).is_some());
        let user_chain = "*filter\n:mine - [0:0]\nCOMMIT\n";
        assert_eq!(iptables_rule_line(user_chain), None);
    }
}
