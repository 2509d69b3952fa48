//! Protocol adapters. Each turns connections into `http::Request`s with a streaming body
//! and calls the same [`Pipeline::handle`](crate::pipeline::Pipeline::handle):
//!
//! - [`tcp`]: TLS (ALPN `h2`, `http/1.1`) or plaintext HTTP/1.1 on TCP, served by hyper;
//! - [`quic`]: HTTP/3 on QUIC (quinn + h3), on the same port number over UDP;
//! - [`tls`]: certificates from PEM files, chosen by SNI, and the demo's self-signed one.

pub mod conn_limit;
pub mod h2_send;
pub mod linger;
pub mod quic;
pub mod stall;
pub mod tcp;
pub mod tls;

use crate::config::Limits;
use crate::pipeline::Pipeline;
use crate::telemetry::metrics::NodeMetrics;
use http::HeaderValue;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, RwLock};

/// What every adapter shares: the pipeline, the limits, and the per-IP connection count.
pub struct Shared {
    /// Replaced whole by a config reload; each request takes the one current when it
    /// starts and finishes on it.
    pipeline: RwLock<Arc<Pipeline>>,
    pub limits: Limits,
    pub per_ip: conn_limit::ConnLimiter,
    /// `Alt-Svc` for h1/h2 responses when HTTP/3 is on (RFC 7838).
    pub alt_svc: Option<HeaderValue>,
    pub metrics: Arc<NodeMetrics>,
    /// Set when the node starts draining: readiness answers 503 from then on.
    pub draining: AtomicBool,
    /// TCP connections closed but still reading what their viewers send (linger.rs).
    pub lingering: Arc<linger::Lingering>,
}

impl Shared {
    pub fn new(
        pipeline: Arc<Pipeline>,
        limits: Limits,
        alt_svc: Option<HeaderValue>,
        metrics: Arc<NodeMetrics>,
    ) -> Shared {
        Shared {
            pipeline: RwLock::new(pipeline),
            per_ip: conn_limit::ConnLimiter::new(limits.max_connections_per_ip),
            limits,
            alt_svc,
            metrics,
            draining: AtomicBool::new(false),
            lingering: Arc::default(),
        }
    }

    /// The pipeline new requests use. The lock is held for an `Arc` clone.
    pub fn pipeline(&self) -> Arc<Pipeline> {
        match self.pipeline.read() {
            Ok(p) => p.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// Installs a reloaded pipeline; requests in flight finish on the old one.
    pub fn replace_pipeline(&self, pipeline: Arc<Pipeline>) {
        *self.pipeline.write().unwrap_or_else(|p| p.into_inner()) = pipeline;
    }
}
