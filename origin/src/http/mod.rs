//! Pooled HTTP origins: one hyper-util client per origin (HTTP/1.1 and HTTP/2, TLS through
//! rustls), an ordered list of upstreams (primary, then secondary), timeouts for connect,
//! first byte and the whole exchange, retries only where a replay is safe, and health
//! checks that move traffic to the secondary while the primary is down.

mod deadline;
mod health;

use crate::body::Body;
use crate::headers::{self, ForwardedFor};
use http::uri::PathAndQuery;
use http::{header, HeaderValue, Method, Request, Response, Uri};
use http_body::Body as _;
use http_body_util::BodyExt;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rustls_pki_types::CertificateDer;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use health::HealthCheck;

/// Everything needed to build an [`HttpOrigin`], already validated by the caller's config.
#[derive(Clone, Debug)]
pub struct OriginConfig {
    pub name: String,
    /// Upstreams in failover order: the primary first.
    pub upstreams: Vec<Uri>,
    pub connect_timeout: Duration,
    pub first_byte_timeout: Duration,
    pub total_timeout: Duration,
    /// Extra attempts after the first, only for requests that are safe to replay.
    pub retries: u32,
    pub health: Option<HealthCheck>,
    /// Roots to trust for `https` upstreams; `None` means the webpki roots.
    pub ca_roots: Option<Vec<CertificateDer<'static>>>,
    /// Forward the viewer's `Host` instead of the upstream's authority.
    pub preserve_host: bool,
    /// Speak HTTP/2 with prior knowledge to plaintext upstreams.
    pub http2_only: bool,
    pub max_idle_per_upstream: usize,
    /// Name used in `Via`.
    pub via_name: String,
}

/// Why an origin exchange failed. The node maps these to 502/504 with the text as reason.
#[derive(Debug, thiserror::Error)]
pub enum OriginError {
    #[error("origin {origin}: cannot connect to {upstream}: {reason}")]
    Connect {
        origin: String,
        upstream: String,
        reason: String,
    },
    #[error("origin {origin}: no response from {upstream} within {timeout:?}")]
    Timeout {
        origin: String,
        upstream: String,
        timeout: Duration,
    },
    #[error("origin {origin}: exchange with {upstream} failed: {reason}")]
    Protocol {
        origin: String,
        upstream: String,
        reason: String,
    },
    #[error("origin {origin}: cannot build upstream URL for {path}")]
    BadUrl { origin: String, path: String },
}

impl OriginError {
    pub fn is_timeout(&self) -> bool {
        matches!(self, OriginError::Timeout { .. })
    }
}

/// A response from an origin, with what the access log and `Server-Timing` report.
pub struct OriginResponse {
    pub response: Response<Body>,
    /// The upstream that answered, as configured (e.g. `http://10.0.0.1:8080`).
    pub upstream: Arc<str>,
    pub time_to_first_byte: Duration,
    /// Attempts made, including the one that answered.
    pub attempts: u32,
}

struct Upstream {
    base: Uri,
    /// The upstream URL's path without its trailing `/`, when it has one (`/media`).
    base_path: Option<String>,
    label: Arc<str>,
    authority: HeaderValue,
    healthy: AtomicBool,
}

type HttpClient = Client<HttpsConnector<HttpConnector>, Body>;

pub struct HttpOrigin {
    config: OriginConfig,
    via: headers::Via,
    upstreams: Vec<Upstream>,
    client: HttpClient,
}

impl HttpOrigin {
    pub fn new(config: OriginConfig) -> Result<Arc<Self>, OriginError> {
        let upstreams = config
            .upstreams
            .iter()
            .map(|uri| {
                let authority = uri
                    .authority()
                    .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
                    .ok_or_else(|| OriginError::BadUrl {
                        origin: config.name.clone(),
                        path: uri.to_string(),
                    })?;
                let base_path = uri.path().trim_end_matches('/');
                Ok(Upstream {
                    base_path: (!base_path.is_empty()).then(|| base_path.to_owned()),
                    base: uri.clone(),
                    label: Arc::from(uri.to_string().trim_end_matches('/')),
                    authority,
                    healthy: AtomicBool::new(true),
                })
            })
            .collect::<Result<Vec<_>, OriginError>>()?;
        let client = build_client(&config);
        let origin = Arc::new(HttpOrigin {
            via: headers::Via::new(&config.via_name),
            config,
            upstreams,
            client,
        });
        if let Some(check) = origin.config.health.clone() {
            health::spawn(&origin, check);
        }
        Ok(origin)
    }

    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// Health of each upstream, in failover order, for the admin API and tests.
    pub fn health(&self) -> Vec<(Arc<str>, bool)> {
        self.upstreams
            .iter()
            .map(|u| (u.label.clone(), u.healthy.load(Ordering::Relaxed)))
            .collect()
    }

    /// Sends a viewer's request to this origin and returns the response head with a
    /// streaming body. Hop-by-hop fields are removed both ways and forwarding fields set.
    /// `started` is when the node received the request: timeouts count from it.
    pub async fn send(
        &self,
        req: Request<Body>,
        fwd: &ForwardedFor,
        started: Instant,
    ) -> Result<OriginResponse, OriginError> {
        let (mut parts, body) = req.into_parts();
        headers::strip_hop_by_hop(&mut parts.headers);
        headers::add_forwarding(&mut parts.headers, parts.version, &self.via, fwd);

        // A request can be sent again only if its body was empty: a streamed body is gone
        // once sent. Replays go to the next upstream in failover order.
        let replayable = body.is_end_stream();
        let max_attempts = if replayable {
            1 + self.config.retries as usize
        } else {
            1
        };
        let first = self.first_choice();
        let total_deadline = tokio::time::Instant::from_std(started) + self.config.total_timeout;
        // One timer per exchange: it bounds each attempt's wait for the response head,
        // then moves into the body to bound the whole exchange.
        let mut timer = Box::pin(tokio::time::sleep_until(total_deadline));
        let mut body = Some(body);
        let mut last_error = None;
        for attempt in 0..max_attempts {
            let upstream = &self.upstreams[(first + attempt) % self.upstreams.len()];
            let last = attempt + 1 == max_attempts;
            let headers = if last {
                std::mem::take(&mut parts.headers)
            } else {
                parts.headers.clone()
            };
            let body = body.take().unwrap_or_else(crate::body::empty);
            let request = self.upstream_request(upstream, &parts, headers, body)?;
            let wait_until =
                total_deadline.min(tokio::time::Instant::now() + self.config.first_byte_timeout);
            timer.as_mut().reset(wait_until);
            let outcome = tokio::select! {
                biased;
                result = self.client.request(request) => Some(result),
                () = timer.as_mut() => None,
            };
            let error = match outcome {
                Some(Ok(response)) => {
                    timer.as_mut().reset(total_deadline);
                    return Ok(OriginResponse {
                        response: self.viewer_response(response, timer),
                        upstream: upstream.label.clone(),
                        time_to_first_byte: started.elapsed(),
                        attempts: attempt as u32 + 1,
                    });
                }
                Some(Err(e)) if e.is_connect() => {
                    // Passive health: a refused connection marks the upstream down at
                    // once; the active check brings it back.
                    if self.config.health.is_some() {
                        upstream.healthy.store(false, Ordering::Relaxed);
                    }
                    OriginError::Connect {
                        origin: self.config.name.clone(),
                        upstream: upstream.label.to_string(),
                        reason: error_chain(&e),
                    }
                }
                Some(Err(e)) => OriginError::Protocol {
                    origin: self.config.name.clone(),
                    upstream: upstream.label.to_string(),
                    reason: error_chain(&e),
                },
                None => OriginError::Timeout {
                    origin: self.config.name.clone(),
                    upstream: upstream.label.to_string(),
                    timeout: self
                        .config
                        .first_byte_timeout
                        .min(self.config.total_timeout),
                },
            };
            let safe_to_replay = replayable
                && (is_idempotent(&parts.method) || matches!(error, OriginError::Connect { .. }));
            let time_left = tokio::time::Instant::now() < total_deadline;
            tracing::debug!(origin = %self.config.name, attempt, error = %error, "origin attempt failed");
            last_error = Some(error);
            if !(safe_to_replay && time_left) {
                break;
            }
        }
        Err(last_error.expect("at least one attempt was made"))
    }

    /// The first upstream to try: the first healthy one in configured order, or the
    /// primary when none is healthy, so a wrong health verdict never leaves a route with
    /// nothing to try. Replays continue round the list from there.
    fn first_choice(&self) -> usize {
        self.upstreams
            .iter()
            .position(|u| u.healthy.load(Ordering::Relaxed))
            .unwrap_or(0)
    }

    fn upstream_request(
        &self,
        upstream: &Upstream,
        parts: &http::request::Parts,
        headers: http::HeaderMap,
        body: Body,
    ) -> Result<Request<Body>, OriginError> {
        let bad_url = || OriginError::BadUrl {
            origin: self.config.name.clone(),
            path: parts.uri.to_string(),
        };
        let path_and_query = match (&upstream.base_path, parts.uri.path_and_query()) {
            // The common case reuses the viewer's target as is (a reference count, no parse).
            (None, Some(pq)) => pq.clone(),
            (None, None) => PathAndQuery::from_static("/"),
            (Some(base), pq) => {
                let pq = pq.map_or("/", |p| p.as_str());
                PathAndQuery::try_from(format!("{base}{pq}")).map_err(|_| bad_url())?
            }
        };
        let mut uri = http::uri::Parts::default();
        uri.scheme = upstream.base.scheme().cloned();
        uri.authority = upstream.base.authority().cloned();
        uri.path_and_query = Some(path_and_query);
        let uri = Uri::from_parts(uri).map_err(|_| bad_url())?;

        let mut request = Request::new(body);
        *request.method_mut() = parts.method.clone();
        *request.uri_mut() = uri;
        *request.headers_mut() = headers;
        // h2/h3 viewers carry the host in `:authority`; an h1 origin needs `Host`.
        let host = if self.config.preserve_host {
            parts
                .headers
                .get(header::HOST)
                .cloned()
                .or_else(|| request.headers().get(header::HOST).cloned())
                .or_else(|| {
                    parts
                        .uri
                        .authority()
                        .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
                })
                .unwrap_or_else(|| upstream.authority.clone())
        } else {
            upstream.authority.clone()
        };
        request.headers_mut().insert(header::HOST, host);
        Ok(request)
    }

    fn viewer_response(
        &self,
        response: Response<hyper::body::Incoming>,
        timer: std::pin::Pin<Box<tokio::time::Sleep>>,
    ) -> Response<Body> {
        let (mut parts, body) = response.into_parts();
        headers::strip_hop_by_hop(&mut parts.headers);
        self.via.append_to(&mut parts.headers, parts.version);
        let body = deadline::DeadlineBody::new(
            body.map_err(|e| -> crate::BoxError { Box::new(e) })
                .boxed_unsync(),
            timer,
            self.config.total_timeout,
        );
        Response::from_parts(parts, body.boxed_unsync())
    }
}

fn build_client(config: &OriginConfig) -> HttpClient {
    let mut roots = rustls::RootCertStore::empty();
    match &config.ca_roots {
        Some(certs) => {
            for cert in certs {
                // A certificate the config loaded but rustls rejects is reported by config
                // validation; here it is skipped rather than failing the whole node.
                let _ = roots.add(cert.clone());
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("ring supports the default protocol versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(Some(config.connect_timeout));
    http.set_nodelay(true);
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .wrap_connector(http);
    Client::builder(TokioExecutor::new())
        .pool_timer(TokioTimer::new())
        .timer(TokioTimer::new())
        .pool_idle_timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(config.max_idle_per_upstream)
        .http2_only(config.http2_only)
        .build(connector)
}

/// RFC 9110 §9.2.2.
fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
