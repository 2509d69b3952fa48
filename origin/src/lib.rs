//! Origin connectors for the edge node, and a sample media origin.
//!
//! - [`http`]: pooled HTTP/1.1 + HTTP/2 client per origin with timeouts, retries for
//!   idempotent requests, active health checks and primary → secondary failover.
//! - [`object`]: object storage (S3, GCS, Azure Blob, local files) through `object_store`.
//! - [`headers`]: the RFC 9110 rules a proxy applies to forwarded messages.
//! - [`sample`]: a generated HLS + DASH VOD library and a live HLS stream.
//! - [`server`]: the `origin` binary's HTTP server over [`sample`] and a directory.

pub mod body;
pub mod headers;
pub mod http;
pub mod object;
pub mod range;
pub mod sample;
pub mod server;

pub use body::{Body, BoxError};

use std::sync::Arc;
use std::time::Instant;

/// Any origin a route can name.
pub enum Origin {
    Http(Arc<http::HttpOrigin>),
    Object(Arc<object::ObjectOrigin>),
}

impl Origin {
    pub fn name(&self) -> &str {
        match self {
            Origin::Http(o) => o.name(),
            Origin::Object(o) => o.name(),
        }
    }

    /// Sends a viewer's request; `started` is when the node received it.
    pub async fn send(
        &self,
        req: ::http::Request<Body>,
        forwarded: &headers::ForwardedFor,
        started: Instant,
    ) -> Result<http::OriginResponse, http::OriginError> {
        match self {
            Origin::Http(o) => o.send(req, forwarded, started).await,
            Origin::Object(o) => o.send(req, started).await,
        }
    }
}
