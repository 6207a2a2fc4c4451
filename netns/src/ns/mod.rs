//! Network namespaces in CRIU's image format: dump of a namespace's links, addresses,
//! routes, rules, nftables ruleset and sysctls ([`dump_netns`]), and their restore into
//! the fresh namespace of a restored process ([`restore_netns`]), with external veths.
//!
//! Like CRIU, the raw streams are iproute2's own (`ip addr/route/rule save` and
//! `restore`) and the ruleset is `nft list ruleset` text; links and sysctls go into the
//! `netdev`/`netns` protobuf images. Tools run inside the namespace through `nsenter`, so
//! the calling process never changes namespace.

mod dump;
mod error;
pub(crate) mod link;
mod restore;
mod sysctl;
pub(crate) mod tool;

pub use dump::dump_netns;
pub use error::{NetnsError, Result};
pub use restore::restore_netns;
