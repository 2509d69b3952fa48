//! One structured line per request, written when the response body ends (or is dropped),
//! so it carries the real byte count and the full duration of the transfer.

use crate::pipeline::EdgeError;
use bytes::Bytes;
use http::Request;
use http_body::{Body as _, Frame, SizeHint};
use origin::{Body, BoxError};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// What the pipeline learns about a request on its way through. Built on every request,
/// so it holds reference-counted clones of the request's parts, not copies.
pub struct AccessRecord {
    pub protocol: &'static str,
    pub method: http::Method,
    pub uri: http::Uri,
    pub host_header: Option<http::HeaderValue>,
    pub client: SocketAddr,
    pub status: u16,
    pub route: Option<usize>,
    pub upstream: Option<Arc<str>>,
    pub origin_time: Option<Duration>,
    pub error: Option<String>,
    pub error_side: Option<&'static str>,
    pub cache: Option<crate::cache::CacheStatus>,
    /// Origin attempts, when more than the first was needed shows a retry or failover.
    pub attempts: Option<u32>,
    /// Time in the route's modules (instantiation and hooks).
    pub module_time: Option<Duration>,
    /// The request's number when modules ran: logged as the id they saw
    /// (`edge.request-id`), so their log lines and this one can be matched.
    pub request_number: Option<u64>,
}

impl AccessRecord {
    pub fn new<B>(req: &Request<B>, client: SocketAddr) -> Self {
        AccessRecord {
            protocol: protocol_name(req.version()),
            method: req.method().clone(),
            uri: req.uri().clone(),
            host_header: req.headers().get(http::header::HOST).cloned(),
            client,
            status: 0,
            route: None,
            upstream: None,
            origin_time: None,
            error: None,
            error_side: None,
            cache: None,
            attempts: None,
            module_time: None,
            request_number: None,
        }
    }

    pub fn fail(&mut self, error: &EdgeError) {
        self.error = Some(error.to_string());
        self.error_side = Some(error.side().as_str());
    }

    fn host(&self) -> &str {
        self.uri
            .authority()
            .map(|a| a.as_str())
            .or_else(|| self.host_header.as_ref().and_then(|h| h.to_str().ok()))
            .unwrap_or("")
    }
}

pub fn protocol_name(version: http::Version) -> &'static str {
    match version {
        http::Version::HTTP_3 => "h3",
        http::Version::HTTP_2 => "h2",
        http::Version::HTTP_10 => "http/1.0",
        _ => "http/1.1",
    }
}

/// Wraps a response body, counts what is sent, and logs when it is finished or dropped.
pub struct LoggedBody {
    inner: Body,
    record: AccessRecord,
    started: Instant,
    bytes: u64,
    complete: bool,
    body_error: Option<String>,
}

impl LoggedBody {
    pub fn new(inner: Body, record: AccessRecord, started: Instant) -> Self {
        LoggedBody {
            inner,
            record,
            started,
            bytes: 0,
            complete: false,
            body_error: None,
        }
    }
}

impl http_body::Body for LoggedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    self.bytes += data.len() as u64;
                }
                if self.inner.is_end_stream() {
                    self.complete = true;
                }
            }
            Poll::Ready(Some(Err(e))) => self.body_error = Some(e.to_string()),
            Poll::Ready(None) => self.complete = true,
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for LoggedBody {
    fn drop(&mut self) {
        // An empty body may be dropped unpolled by the protocol layer (HEAD, 304): it is
        // complete all the same.
        let complete = self.complete || self.inner.is_end_stream();
        let r = &self.record;
        let error = self.body_error.as_deref().or(r.error.as_deref());
        tracing::info!(
            target: "access",
            protocol = r.protocol,
            method = %r.method,
            host = r.host(),
            path = r.uri.path(),
            client = %r.client.ip(),
            status = r.status,
            bytes = self.bytes,
            complete,
            duration_ms = self.started.elapsed().as_secs_f64() * 1e3,
            origin_ms = r.origin_time.map(|t| t.as_secs_f64() * 1e3),
            route = r.route,
            cache = r.cache.map(|c| c.as_str()),
            upstream = r.upstream.as_deref(),
            attempts = r.attempts,
            module_ms = r.module_time.map(|t| t.as_secs_f64() * 1e3),
            request_id = r.request_number.map(crate::wasm::state::request_id),
            error,
            error_side = r.error_side,
        );
    }
}
