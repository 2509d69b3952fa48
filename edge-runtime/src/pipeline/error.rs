//! Every way a request can fail inside the node, and the one place that turns a failure
//! into an HTTP response.

use crate::cache::CacheError;
use http::{header, HeaderValue, Response, StatusCode};
use origin::http::OriginError;
use origin::Body;

/// Which side of the node a failure comes from, for logs and metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Client,
    Origin,
}

impl Side {
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Client => "client",
            Side::Origin => "origin",
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EdgeError {
    #[error("bad request: {0}")]
    BadRequest(&'static str),
    #[error("request target is {len} bytes, the limit is {limit}")]
    UriTooLong { len: usize, limit: usize },
    #[error("request has {count} header fields, the limit is {limit}")]
    TooManyHeaders { count: usize, limit: usize },
    #[error("request body is over the limit of {limit} bytes")]
    BodyTooLarge { len: u64, limit: u64 },
    #[error("no route serves host `{0}`")]
    UnknownHost(String),
    #[error("no route for path `{0}`")]
    NoRoute(String),
    #[error(transparent)]
    Origin(#[from] OriginError),
    #[error(transparent)]
    Cache(#[from] CacheError),
}

impl EdgeError {
    pub fn status(&self) -> StatusCode {
        match self {
            EdgeError::BadRequest(_) => StatusCode::BAD_REQUEST,
            EdgeError::UriTooLong { .. } => StatusCode::URI_TOO_LONG,
            EdgeError::TooManyHeaders { .. } => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            EdgeError::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            EdgeError::UnknownHost(_) => StatusCode::MISDIRECTED_REQUEST,
            EdgeError::NoRoute(_) => StatusCode::NOT_FOUND,
            EdgeError::Origin(e) if e.is_timeout() => StatusCode::GATEWAY_TIMEOUT,
            EdgeError::Origin(_) => StatusCode::BAD_GATEWAY,
            EdgeError::Cache(e) => e.status(),
        }
    }

    pub fn side(&self) -> Side {
        match self {
            EdgeError::Origin(_) => Side::Origin,
            EdgeError::Cache(CacheError::OnlyIfCached) => Side::Client,
            EdgeError::Cache(_) => Side::Origin,
            _ => Side::Client,
        }
    }

    /// The response a viewer sees: the status and a one-line reason. Origin details
    /// (addresses) stay in the access log, not in the body.
    pub fn to_response(&self) -> Response<Body> {
        let status = self.status();
        let reason = match self {
            EdgeError::Origin(e) if e.is_timeout() => "origin timed out".to_owned(),
            EdgeError::Origin(_) => "origin unavailable".to_owned(),
            EdgeError::Cache(CacheError::OnlyIfCached) => {
                "not in cache (only-if-cached)".to_owned()
            }
            EdgeError::Cache(e) if e.status() == StatusCode::GATEWAY_TIMEOUT => {
                "origin timed out".to_owned()
            }
            EdgeError::Cache(_) => "origin unavailable".to_owned(),
            other => other.to_string(),
        };
        let text = format!(
            "{} {}: {reason}\n",
            status.as_u16(),
            status.canonical_reason().unwrap_or("")
        );
        let mut response = Response::new(origin::body::full(text));
        *response.status_mut() = status;
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        response
    }
}
