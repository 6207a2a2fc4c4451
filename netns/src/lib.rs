//! Network namespaces: links, addresses, routes and sysctls of a dumped namespace, the
//! network lock (nftables) held across dump and restore, and TCP connection repair
//! (`TCP_REPAIR`) as a reusable module in the spirit of CRIU's libsoccr.
//!
//! Not yet implemented: the single-process engine refuses sockets with a clear error.
#![forbid(unsafe_code)]
