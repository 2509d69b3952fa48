//! Protocol adapters. Each turns connections into `http::Request`s with a streaming body
//! and calls the same [`Pipeline::handle`](crate::pipeline::Pipeline::handle):
//!
//! - [`tcp`]: TLS (ALPN `h2`, `http/1.1`) or plaintext HTTP/1.1 on TCP, served by hyper;
//! - [`quic`]: HTTP/3 on QUIC (quinn + h3), on the same port number over UDP;
//! - [`tls`]: certificates from PEM files, chosen by SNI, and the demo's self-signed one.

pub mod conn_limit;
pub mod idle;
pub mod quic;
pub mod tcp;
pub mod tls;

use crate::config::Limits;
use crate::pipeline::Pipeline;
use http::HeaderValue;
use std::sync::Arc;

/// What every adapter shares: the pipeline, the limits, and the per-IP connection count.
pub struct Shared {
    pub pipeline: Arc<Pipeline>,
    pub limits: Limits,
    pub per_ip: conn_limit::ConnLimiter,
    /// `Alt-Svc` for h1/h2 responses when HTTP/3 is on (RFC 7838).
    pub alt_svc: Option<HeaderValue>,
}
