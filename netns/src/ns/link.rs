//! Links of a namespace as `ip -json -details link show` reports them, turned into typed
//! values once: index, name, kernel flags, mtu, MAC, kind, peer and master.
//!
//! iproute2 prints `ifi_flags` as names and hides `IFF_RUNNING`; the kernel sets that flag
//! exactly when the link is up and its operstate is `UP` or `UNKNOWN`
//! (`dev_get_flags()` / `netif_oper_up()`), so it is derived from the operstate.

use serde_json::Value;

use super::error::{NetnsError, Result};
use super::tool::{self, argv, Input, Netns, Output};

/// `IFF_*` bits by the names iproute2 prints (`print_link_flags()`).
const FLAG_NAMES: &[(&str, u32)] = &[
    ("UP", 0x1),
    ("BROADCAST", 0x2),
    ("DEBUG", 0x4),
    ("LOOPBACK", 0x8),
    ("POINTOPOINT", 0x10),
    ("NOTRAILERS", 0x20),
    ("NOARP", 0x80),
    ("PROMISC", 0x100),
    ("ALLMULTI", 0x200),
    ("MASTER", 0x400),
    ("SLAVE", 0x800),
    ("MULTICAST", 0x1000),
    ("PORTSEL", 0x2000),
    ("AUTOMEDIA", 0x4000),
    ("DYNAMIC", 0x8000),
    ("LOWER_UP", 0x10000),
    ("DORMANT", 0x20000),
    ("ECHO", 0x40000),
];

/// Words iproute2 puts among the flags that are not `IFF_*` bits.
const NOT_FLAGS: &[&str] = &["NO-CARRIER", "M-DOWN"];

pub(crate) const IFF_UP: u32 = 0x1;
pub(crate) const IFF_NOTRAILERS: u32 = 0x20;
pub(crate) const IFF_RUNNING: u32 = 0x40;
pub(crate) const IFF_NOARP: u32 = 0x80;
pub(crate) const IFF_PROMISC: u32 = 0x100;
pub(crate) const IFF_ALLMULTI: u32 = 0x200;
pub(crate) const IFF_MULTICAST: u32 = 0x1000;
pub(crate) const IFF_DYNAMIC: u32 = 0x8000;

/// Longest link name (`IFNAMSIZ - 1`).
const IFNAMSIZ_MAX: usize = 15;

/// One link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Link {
    pub(crate) ifindex: u32,
    pub(crate) name: String,
    pub(crate) flags: u32,
    pub(crate) mtu: u32,
    /// `link/<type>`: "loopback", "ether", "none", ...
    pub(crate) link_type: String,
    /// `IFLA_INFO_KIND`: "veth", "bridge", ...; absent for lo and physical devices.
    pub(crate) kind: Option<String>,
    pub(crate) address: Option<Vec<u8>>,
    /// `IFLA_LINK` when it points into another namespace (with `link_netnsid`).
    pub(crate) link_index: Option<u32>,
    /// `IFLA_LINK` resolved to a name, when it points into this namespace.
    pub(crate) link_name: Option<String>,
    pub(crate) link_netnsid: Option<i32>,
    /// `IFLA_MASTER` as a name.
    pub(crate) master: Option<String>,
}

impl Link {
    /// The kind for messages: `IFLA_INFO_KIND`, or the link type.
    pub(crate) fn kind_name(&self) -> &str {
        self.kind.as_deref().unwrap_or(&self.link_type)
    }
}

/// Most JSON `ip link` may print for one namespace.
const LINK_JSON_LIMIT: usize = 16 << 20;

/// The links of namespace `ns`, as `ip -json -details link show` reports them.
pub(crate) fn list(ns: Netns, step: &str) -> Result<Vec<Link>> {
    let ran = tool::run_ok(
        ns,
        step,
        &argv(["ip", "-json", "-details", "link", "show"]),
        Input::Nothing,
        Output::Capture(LINK_JSON_LIMIT),
    )?;
    parse_links(&ran.stdout).map_err(|detail| NetnsError::Output {
        pid: ns.pid(),
        step: step.to_string(),
        detail: format!("`{}`: {detail}", ran.command),
    })
}

/// Parse the JSON array of `ip -j -d link show`.
pub(crate) fn parse_links(json: &[u8]) -> std::result::Result<Vec<Link>, String> {
    let v: Value = serde_json::from_slice(json).map_err(|e| format!("bad JSON: {e}"))?;
    let arr = v.as_array().ok_or("JSON is not an array")?;
    arr.iter().map(parse_link).collect()
}

fn parse_link(v: &Value) -> std::result::Result<Link, String> {
    let name = v
        .get("ifname")
        .and_then(Value::as_str)
        .ok_or("a link without \"ifname\"")?
        .to_string();
    let u32_field = |key: &str| -> std::result::Result<Option<u32>, String> {
        match v.get(key) {
            None => Ok(None),
            Some(x) => x
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .map(Some)
                .ok_or_else(|| format!("link {name}: \"{key}\" is not a 32-bit number")),
        }
    };
    let str_field = |key: &str| v.get(key).and_then(Value::as_str).map(str::to_string);
    let ifindex = u32_field("ifindex")?.ok_or_else(|| format!("link {name}: no ifindex"))?;
    let mtu = u32_field("mtu")?.ok_or_else(|| format!("link {name}: no mtu"))?;
    let mut flags = 0;
    for f in v
        .get("flags")
        .and_then(Value::as_array)
        .ok_or_else(|| format!("link {name}: no flags"))?
    {
        let f = f
            .as_str()
            .ok_or_else(|| format!("link {name}: a flag is not a string"))?;
        if NOT_FLAGS.contains(&f) {
            continue;
        }
        let bit = FLAG_NAMES
            .iter()
            .find(|(n, _)| *n == f)
            .map(|(_, b)| *b)
            .ok_or_else(|| format!("link {name}: unknown link flag {f:?}"))?;
        flags |= bit;
    }
    let operstate = str_field("operstate").unwrap_or_default();
    if flags & IFF_UP != 0 && matches!(operstate.as_str(), "UP" | "UNKNOWN") {
        flags |= IFF_RUNNING;
    }
    let address = match str_field("address") {
        None => None,
        Some(a) => Some(parse_mac(&a).ok_or_else(|| format!("link {name}: bad address {a:?}"))?),
    };
    let link_netnsid = match v.get("link_netnsid") {
        None => None,
        Some(x) => Some(
            x.as_i64()
                .and_then(|n| i32::try_from(n).ok())
                .ok_or_else(|| format!("link {name}: bad link_netnsid"))?,
        ),
    };
    Ok(Link {
        ifindex,
        flags,
        mtu,
        link_type: str_field("link_type").unwrap_or_else(|| "none".into()),
        kind: v
            .get("linkinfo")
            .and_then(|l| l.get("info_kind"))
            .and_then(Value::as_str)
            .map(str::to_string),
        address,
        link_index: u32_field("link_index")?,
        link_name: str_field("link"),
        link_netnsid,
        master: str_field("master"),
        name,
    })
}

/// `aa:bb:cc:...` to bytes.
pub(crate) fn parse_mac(s: &str) -> Option<Vec<u8>> {
    if s.is_empty() {
        return Some(Vec::new());
    }
    s.split(':')
        .map(|h| {
            if h.len() == 2 {
                u8::from_str_radix(h, 16).ok()
            } else {
                None
            }
        })
        .collect()
}

/// Bytes to `aa:bb:cc:...`.
pub(crate) fn format_mac(b: &[u8]) -> String {
    b.iter()
        .map(|x| format!("{x:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// A link name the kernel would accept (`dev_valid_name()`), so it is safe in a sysctl
/// path and as a command argument.
pub(crate) fn valid_name(name: &str) -> std::result::Result<(), &'static str> {
    if name.is_empty() {
        return Err("empty link name");
    }
    if name.len() > IFNAMSIZ_MAX {
        return Err("link name longer than 15 bytes");
    }
    if name == "." || name == ".." {
        return Err("link name is . or ..");
    }
    if name
        .chars()
        .any(|c| c == '/' || c == ':' || c.is_whitespace() || c.is_control())
    {
        return Err("link name holds '/', ':', whitespace or a control character");
    }
    Ok(())
}

/// Per-namespace tunnel devices the kernel creates by itself in every new namespace when
/// the tunnel module is loaded (`gre0`, `sit0`, ...). They are neither dumped nor
/// recreated: the new namespace gets its own.
pub(crate) fn is_fallback_tunnel(link: &Link) -> bool {
    const FALLBACK: &[(&str, &str)] = &[
        ("gre0", "gre"),
        ("gretap0", "gretap"),
        ("erspan0", "erspan"),
        ("sit0", "sit"),
        ("tunl0", "ipip"),
        ("ip6tnl0", "ip6tnl"),
        ("ip6gre0", "ip6gre"),
        ("ip_vti0", "vti"),
        ("ip6_vti0", "vti6"),
    ];
    FALLBACK
        .iter()
        .any(|(n, k)| link.name == *n && link.kind.as_deref() == Some(*k))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"[
      {"ifindex":1,"ifname":"lo","flags":["LOOPBACK","UP","LOWER_UP"],"mtu":65536,
       "operstate":"UNKNOWN","link_type":"loopback","address":"00:00:00:00:00:00"},
      {"ifindex":2,"link_index":5,"ifname":"eth0","flags":["BROADCAST","MULTICAST","UP","LOWER_UP"],
       "mtu":1400,"operstate":"UP","link_type":"ether","address":"ae:6c:32:3f:6f:8c",
       "link_netnsid":0,"linkinfo":{"info_kind":"veth"}},
      {"ifindex":3,"ifname":"va","link":"vb","flags":["NO-CARRIER","BROADCAST","MULTICAST","UP"],
       "mtu":1500,"operstate":"DOWN","link_type":"ether","address":"02:00:00:00:00:07",
       "linkinfo":{"info_kind":"veth"},"master":"br0"}
    ]"#;

    #[test]
    fn links_parse_with_kernel_flags_including_running() {
        let links = parse_links(SAMPLE.as_bytes()).unwrap();
        assert_eq!(links.len(), 3);
        assert_eq!(
            links[0].flags, 0x10049,
            "lo: UP|LOOPBACK|RUNNING|LOWER_UP as CRIU records"
        );
        assert_eq!(links[1].flags, 0x11043);
        assert_eq!(links[1].kind.as_deref(), Some("veth"));
        assert_eq!(links[1].link_index, Some(5));
        assert_eq!(links[1].link_netnsid, Some(0));
        assert_eq!(
            links[1].address.as_deref(),
            Some(&[0xae, 0x6c, 0x32, 0x3f, 0x6f, 0x8c][..])
        );
        assert_eq!(links[2].flags & IFF_RUNNING, 0, "no carrier: not running");
        assert_eq!(links[2].link_name.as_deref(), Some("vb"));
        assert_eq!(links[2].master.as_deref(), Some("br0"));
    }

    #[test]
    fn unknown_flags_and_bad_json_are_errors() {
        let bad = r#"[{"ifindex":1,"ifname":"x","flags":["WEIRD"],"mtu":1}]"#;
        assert!(parse_links(bad.as_bytes()).unwrap_err().contains("WEIRD"));
        assert!(parse_links(b"{").is_err());
        let big = r#"[{"ifindex":99999999999,"ifname":"x","flags":[],"mtu":1}]"#;
        assert!(parse_links(big.as_bytes()).is_err());
    }

    #[test]
    fn mac_round_trips() {
        let m = parse_mac("02:0a:ff:00:10:01").unwrap();
        assert_eq!(format_mac(&m), "02:0a:ff:00:10:01");
        assert!(parse_mac("zz:00").is_none());
    }

    #[test]
    fn link_names_follow_the_kernel_rules() {
        assert!(valid_name("eth0").is_ok());
        assert!(valid_name("a/b").is_err());
        assert!(valid_name("sixteen-chars-xx").is_err());
        assert!(valid_name("a b").is_err());
        assert!(valid_name("..").is_err());
    }
}
