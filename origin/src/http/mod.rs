//! Pooled HTTP origins: one hyper-util client per origin (HTTP/1.1 and HTTP/2, TLS through
//! rustls), an ordered list of upstreams (primary, then secondary), timeouts for connect,
//! first byte and the whole exchange, retries only where a replay is safe, and health
//! checks that move traffic to the secondary while the primary is down.

mod deadline;
mod health;

use crate::body::Body;
use crate::headers::{self, ForwardedFor};
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
    label: Arc<str>,
    authority: HeaderValue,
    healthy: AtomicBool,
}

type HttpClient = Client<HttpsConnector<HttpConnector>, Body>;

pub struct HttpOrigin {
    config: OriginConfig,
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
                Ok(Upstream {
                    base: uri.clone(),
                    label: Arc::from(uri.to_string().trim_end_matches('/')),
                    authority,
                    healthy: AtomicBool::new(true),
                })
            })
            .collect::<Result<Vec<_>, OriginError>>()?;
        let client = build_client(&config);
        let origin = Arc::new(HttpOrigin {
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
    pub async fn send(
        &self,
        req: Request<Body>,
        fwd: ForwardedFor,
    ) -> Result<OriginResponse, OriginError> {
        let started = Instant::now();
        let (mut parts, body) = req.into_parts();
        headers::strip_hop_by_hop(&mut parts.headers);
        headers::add_forwarding(
            &mut parts.headers,
            parts.version,
            &self.config.via_name,
            fwd,
        );
        let path = parts
            .uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/")
            .to_owned();

        // A request can be sent again only if its body was empty: a streamed body is gone
        // once sent. Replays go to the next upstream in failover order.
        let replayable = body.is_end_stream();
        let order = self.attempt_order();
        let max_attempts = if replayable {
            1 + self.config.retries as usize
        } else {
            1
        };
        let mut body = Some(body);
        let mut last_error = None;
        for attempt in 0..max_attempts {
            let upstream = &self.upstreams[order[attempt % order.len()]];
            let body = body.take().unwrap_or_else(crate::body::empty);
            let request = self.upstream_request(upstream, &parts, &path, body)?;
            let remaining = self.config.total_timeout.saturating_sub(started.elapsed());
            let wait = self.config.first_byte_timeout.min(remaining);
            let error = match tokio::time::timeout(wait, self.client.request(request)).await {
                Ok(Ok(response)) => {
                    let time_to_first_byte = started.elapsed();
                    let remaining = self.config.total_timeout.saturating_sub(time_to_first_byte);
                    return Ok(OriginResponse {
                        response: self.viewer_response(response, remaining),
                        upstream: upstream.label.clone(),
                        time_to_first_byte,
                        attempts: attempt as u32 + 1,
                    });
                }
                Ok(Err(e)) if e.is_connect() => {
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
                Ok(Err(e)) => OriginError::Protocol {
                    origin: self.config.name.clone(),
                    upstream: upstream.label.to_string(),
                    reason: error_chain(&e),
                },
                Err(_) => OriginError::Timeout {
                    origin: self.config.name.clone(),
                    upstream: upstream.label.to_string(),
                    timeout: wait,
                },
            };
            let safe_to_replay = replayable
                && (is_idempotent(&parts.method) || matches!(error, OriginError::Connect { .. }));
            let time_left = started.elapsed() < self.config.total_timeout;
            tracing::debug!(origin = %self.config.name, attempt, error = %error, "origin attempt failed");
            last_error = Some(error);
            if !(safe_to_replay && time_left) {
                break;
            }
        }
        Err(last_error.expect("at least one attempt was made"))
    }

    /// Healthy upstreams first (in configured order), then the unhealthy ones as a last
    /// resort, so a wrong health verdict never leaves a route with nothing to try.
    fn attempt_order(&self) -> Vec<usize> {
        let (mut up, down): (Vec<usize>, Vec<usize>) = (0..self.upstreams.len())
            .partition(|&i| self.upstreams[i].healthy.load(Ordering::Relaxed));
        up.extend(down);
        up
    }

    fn upstream_request(
        &self,
        upstream: &Upstream,
        parts: &http::request::Parts,
        path: &str,
        body: Body,
    ) -> Result<Request<Body>, OriginError> {
        let bad_url = || OriginError::BadUrl {
            origin: self.config.name.clone(),
            path: path.to_owned(),
        };
        let base_path = upstream.base.path().trim_end_matches('/');
        let uri = Uri::builder()
            .scheme(upstream.base.scheme().cloned().ok_or_else(bad_url)?)
            .authority(upstream.base.authority().cloned().ok_or_else(bad_url)?)
            .path_and_query(format!("{base_path}{path}"))
            .build()
            .map_err(|_| bad_url())?;
        let mut request = Request::new(body);
        *request.method_mut() = parts.method.clone();
        *request.uri_mut() = uri;
        *request.headers_mut() = parts.headers.clone();
        // h2/h3 viewers carry the host in `:authority`; an h1 origin needs `Host`.
        let viewer_host = parts.headers.get(header::HOST).cloned().or_else(|| {
            parts
                .uri
                .authority()
                .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
        });
        let host = match viewer_host {
            Some(host) if self.config.preserve_host => host,
            _ => upstream.authority.clone(),
        };
        request.headers_mut().insert(header::HOST, host);
        Ok(request)
    }

    fn viewer_response(
        &self,
        response: Response<hyper::body::Incoming>,
        remaining: Duration,
    ) -> Response<Body> {
        let (mut parts, body) = response.into_parts();
        headers::strip_hop_by_hop(&mut parts.headers);
        headers::add_response_via(&mut parts.headers, parts.version, &self.config.via_name);
        let body = deadline::DeadlineBody::new(
            body.map_err(|e| -> crate::BoxError { Box::new(e) })
                .boxed_unsync(),
            remaining,
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
