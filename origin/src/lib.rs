//! Origin connectors for the edge node, and a sample media origin.
//!
//! - [`http`]: pooled HTTP/1.1 + HTTP/2 client per origin with timeouts, retries for
//!   idempotent requests, active health checks and primary → secondary failover.
//! - [`headers`]: the RFC 9110 rules a proxy applies to forwarded messages.
//! - [`sample`]: a generated HLS + DASH VOD library and a live HLS stream.
//! - [`server`]: the `origin` binary's HTTP server over [`sample`] and a directory.

pub mod body;
pub mod headers;
pub mod http;
pub mod range;
pub mod sample;
pub mod server;

pub use body::{Body, BoxError};
