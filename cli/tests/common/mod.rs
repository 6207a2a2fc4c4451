//! Helpers shared by the integration tests: the RPC captures and a swrk client.

pub mod captures;
pub mod client;
