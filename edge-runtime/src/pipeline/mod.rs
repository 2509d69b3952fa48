//! The one request path. Every protocol adapter (HTTP/1.1, HTTP/2, HTTP/3) hands an
//! `http::Request` with a streaming body to [`Pipeline::handle`] and sends back what it
//! returns. The phases, top to bottom:
//!
//! 1. check the request target and host (limits, malformed input → 4xx);
//! 2. match the route (host + path prefix);
//! 3. run the route's module request hooks (they may change the request or answer it);
//! 4. serve from the cache or forward to the route's origin (pooled, with failover);
//! 5. turn any failure into a response, in one place ([`EdgeError::to_response`]);
//! 6. run the module response hooks and body transforms, in reverse order;
//! 7. add `Server-Timing`, and log one access-log line when the body is finished.
//!
//! See `docs/pipeline.md` for the phase chart.

mod body_limit;
mod error;
mod route;

pub use error::{EdgeError, Side};
pub use route::{NoRoute, Router};

use crate::cache::{self, Cache, CacheStatus, RouteCache};
use crate::config::Config;
use crate::telemetry::access_log::{AccessRecord, LoggedBody};
use crate::telemetry::metrics::NodeMetrics;
use crate::wasm::chain::{read_request_body, Chain, ChainRun, Outcome};
use crate::wasm::http_handler::HttpHandler;
use crate::wasm::{ModuleHost, WasmError};
use http::{header, HeaderValue, Method, Request, Response};
use http_body_util::BodyExt;
use origin::headers::ForwardedFor;
use origin::http::{HttpOrigin, OriginError};
use origin::object::ObjectOrigin;
use origin::Body;
use origin::Origin;
use std::borrow::Cow;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What the pipeline knows about the viewer's connection, built once per connection.
/// Deliberately no protocol: the request's `version()` carries that, for logging only.
#[derive(Clone, Debug)]
pub struct Conn {
    pub client: SocketAddr,
    pub tls: bool,
    pub forwarded: ForwardedFor,
}

impl Conn {
    pub fn new(client: SocketAddr, tls: bool) -> Self {
        Conn {
            client,
            tls,
            forwarded: ForwardedFor::new(client.ip(), tls),
        }
    }
}

pub struct Pipeline {
    router: Router,
    origins: HashMap<String, Arc<Origin>>,
    /// The origin and cache settings of each route, by route index: no lookup by name
    /// per request.
    route_origins: Vec<Option<Arc<Origin>>>,
    /// The handler component of each route whose origin is one, by route index.
    route_handlers: Vec<Option<Arc<HttpHandler>>>,
    route_caches: Vec<Option<RouteCache>>,
    /// Each route's module chain, by route index; `None` for routes without modules.
    route_chains: Vec<Option<Chain>>,
    modules: Option<Arc<ModuleHost>>,
    cache: Arc<Cache>,
    max_uri_bytes: usize,
    /// hyper enforces it on HTTP/1.1 while parsing; h2 and h3 only bound the field
    /// section's bytes, so the count is checked here for every protocol.
    max_headers: usize,
    max_request_body_bytes: u64,
    access_log: bool,
    metrics: Arc<NodeMetrics>,
    /// Each route's name as a metric label, by route index; `-` for no route.
    route_labels: Vec<Arc<String>>,
    no_route_label: Arc<String>,
}

impl Pipeline {
    /// Builds the router and one pooled client per origin. Must run inside a Tokio
    /// runtime: origins start their health-check tasks. `modules` holds every module a
    /// route names (the node loads them first).
    pub fn new(
        config: &Config,
        cache: Arc<Cache>,
        modules: Option<Arc<ModuleHost>>,
        metrics: Arc<NodeMetrics>,
    ) -> Result<Self, PipelineError> {
        let mut origins = HashMap::new();
        for o in &config.origins {
            origins.insert(
                o.name.clone(),
                Arc::new(Origin::Http(HttpOrigin::new(o.clone())?)),
            );
        }
        for o in &config.object_origins {
            let origin = ObjectOrigin::new(o.clone())?;
            origins.insert(o.name.clone(), Arc::new(Origin::Object(Arc::new(origin))));
        }
        // A route's origin is an HTTP or object-storage origin, or a handler component.
        let mut route_origins = Vec::with_capacity(config.routes.len());
        let mut route_handlers = Vec::with_capacity(config.routes.len());
        for r in &config.routes {
            match origins.get(&r.origin) {
                Some(origin) => {
                    route_origins.push(Some(origin.clone()));
                    route_handlers.push(None);
                }
                None => {
                    let handler = modules
                        .as_ref()
                        .and_then(|m| m.handler(&r.origin))
                        .ok_or_else(|| WasmError::UnknownModule(r.origin.clone()))?;
                    route_origins.push(None);
                    route_handlers.push(Some(handler));
                }
            }
        }
        let mut route_chains = Vec::with_capacity(config.routes.len());
        for route in &config.routes {
            if route.modules.is_empty() {
                route_chains.push(None);
                continue;
            }
            let host = modules
                .as_ref()
                .ok_or_else(|| WasmError::UnknownModule(route.modules[0].module.clone()))?;
            let mut entries = Vec::new();
            for m in &route.modules {
                let slot = host
                    .slot(&m.module)
                    .ok_or_else(|| WasmError::UnknownModule(m.module.clone()))?;
                entries.push((slot, Arc::<str>::from(m.config_json.as_str())));
            }
            route_chains.push(Some(Chain::new(&route.name, route.on_error, entries)));
        }
        Ok(Pipeline {
            router: Router::new(&config.routes),
            origins,
            route_origins,
            route_handlers,
            route_caches: config.routes.iter().map(|r| r.cache.clone()).collect(),
            route_chains,
            modules,
            cache,
            max_uri_bytes: config.limits.max_uri_bytes,
            max_headers: config.limits.max_headers,
            max_request_body_bytes: config.limits.max_request_body_bytes,
            access_log: config.logging.access_log,
            metrics,
            route_labels: config
                .routes
                .iter()
                .map(|r| Arc::new(r.name.clone()))
                .collect(),
            no_route_label: Arc::new("-".into()),
        })
    }

    /// Every configured origin, for the admin API.
    pub fn origins(&self) -> impl Iterator<Item = &Arc<Origin>> {
        self.origins.values()
    }

    /// The module host, for the admin API.
    pub fn modules(&self) -> Option<&Arc<ModuleHost>> {
        self.modules.as_ref()
    }

    /// Each route's own config for `module`, by route label: what deployed data for the
    /// module is merged over.
    pub fn module_configs(&self, module: &str) -> Vec<(String, Arc<str>)> {
        self.route_chains
            .iter()
            .zip(&self.route_labels)
            .filter_map(|(chain, label)| Some((chain.as_ref()?, label)))
            .flat_map(|(chain, label)| {
                chain
                    .configs_of(module)
                    .map(move |config| (label.to_string(), config.clone()))
            })
            .collect()
    }

    pub async fn handle(&self, req: Request<Body>, conn: &Conn) -> Response<Body> {
        let started = Instant::now();
        let mut record = AccessRecord::new(&req, conn.client);
        let head = req.method() == Method::HEAD;
        let mut chain_run = None;
        let mut response = match self
            .forward(req, conn, started, &mut record, &mut chain_run)
            .await
        {
            Ok(response) => response,
            Err(error) => {
                let response = error.to_response();
                record.fail(&error);
                response
            }
        };
        if let (Some(run), Some(host)) = (chain_run, &self.modules) {
            record.request_number = Some(run.request_number);
            let (r, module_time) = run.on_response(response, head, &host.services).await;
            response = r;
            record.module_time = Some(module_time);
        }
        record.status = response.status().as_u16();
        let timing = server_timing(
            started.elapsed(),
            record.origin_time,
            record.cache,
            record.module_time,
        );
        if let Ok(value) = HeaderValue::from_str(&timing) {
            response.headers_mut().append(SERVER_TIMING, value);
        }
        let route = record
            .route
            .and_then(|i| self.route_labels.get(i))
            .unwrap_or(&self.no_route_label);
        self.metrics.request(
            record.protocol,
            route,
            record.status,
            started.elapsed(),
            record.origin_time,
        );
        if self.access_log {
            response = response.map(|body| LoggedBody::new(body, record, started).boxed_unsync());
        }
        response
    }

    async fn forward(
        &self,
        req: Request<Body>,
        conn: &Conn,
        started: Instant,
        record: &mut AccessRecord,
        chain_run: &mut Option<ChainRun>,
    ) -> Result<Response<Body>, EdgeError> {
        let target_len = req.uri().path_and_query().map_or(0, |p| p.as_str().len());
        if target_len > self.max_uri_bytes {
            return Err(EdgeError::UriTooLong {
                len: target_len,
                limit: self.max_uri_bytes,
            });
        }
        // h2 and h3 viewers may send each cookie as its own field (RFC 9113 §8.2.3, RFC
        // 9114 §4.2.1), which HTTP/1.1 would carry in one line: they count as one.
        let cookies = req.headers().get_all(header::COOKIE).iter().count();
        let count = req.headers().len() - cookies.saturating_sub(1);
        if count > self.max_headers {
            return Err(EdgeError::TooManyHeaders {
                count,
                limit: self.max_headers,
            });
        }
        if !req.uri().path().starts_with('/') {
            return Err(EdgeError::BadRequest(
                "request target must be an absolute path",
            ));
        }
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        let limit = self.max_request_body_bytes;
        if let Some(len) = declared.filter(|&len| len > limit) {
            return Err(EdgeError::BodyTooLarge { len, limit });
        }
        let (parts, body) = req.into_parts();
        let (body, body_over_limit) = body_limit::limit(body, limit);
        let req = Request::from_parts(parts, body);
        let index = {
            let host = request_host(&req)?;
            let route = self
                .router
                .find(&host, req.uri().path())
                .map_err(|e| match e {
                    NoRoute::UnknownHost => EdgeError::UnknownHost(host.clone().into_owned()),
                    NoRoute::UnknownPath => EdgeError::NoRoute(req.uri().path().to_owned()),
                })?;
            route.index
        };
        record.route = Some(index);
        let req = match (&self.route_chains[index], &self.modules) {
            (Some(chain), Some(modules)) => {
                let authority: Arc<str> = request_host(&req)?.into();
                let (mut parts, mut body) = req.into_parts();
                // A module that inspects bodies (the WAF) reads them before it decides;
                // the origin still gets the whole body.
                let bound = chain.request_body_bytes();
                let mut lent = None;
                // A request with no body (a GET, an empty h1 body, END_STREAM on h2/h3)
                // is not read: nothing to lend, no body to rebuild.
                if bound > 0 && !http_body::Body::is_end_stream(&body) {
                    let Some((seen, more, forward)) = read_request_body(body, bound).await else {
                        return Err(if body_over_limit.load(Ordering::Relaxed) {
                            EdgeError::BodyTooLarge {
                                len: limit + 1,
                                limit,
                            }
                        } else {
                            EdgeError::BadRequest("request body ended early")
                        });
                    };
                    body = forward;
                    lent = Some((seen, more));
                }
                let (run, outcome) = chain
                    .on_request(
                        &modules.services,
                        &mut parts,
                        lent,
                        authority,
                        conn.client.ip(),
                        conn.tls,
                    )
                    .await;
                *chain_run = Some(run);
                if let Outcome::Respond(response) = outcome {
                    return Ok(response);
                }
                Request::from_parts(parts, body)
            }
            _ => req,
        };
        self.fetch(req, index, conn, started, record).await
    }

    /// The cache or the origin. The host is read again: a module may have changed the
    /// Host field, and the cache key follows it.
    async fn fetch(
        &self,
        mut req: Request<Body>,
        index: usize,
        conn: &Conn,
        started: Instant,
        record: &mut AccessRecord,
    ) -> Result<Response<Body>, EdgeError> {
        if let Some(handler) = &self.route_handlers[index] {
            let response = handler.handle(req, conn.tls).await;
            record.upstream = Some(handler.name.clone());
            return Ok(response);
        }
        let cacheable = self.route_caches[index].is_some()
            && matches!(*req.method(), Method::GET | Method::HEAD);
        // The key does not hold these, so the origin must not see them: a response built
        // from one viewer's X-Forwarded-Host would be stored and served to every other
        // viewer (cache poisoning). One pass over the names finds them (cache hits pay no
        // more).
        if cacheable
            && req
                .headers()
                .keys()
                .any(|k| unkeyed_rewrite_field(k.as_str()))
        {
            for name in UNKEYED_REWRITE_FIELDS {
                req.headers_mut().remove(*name);
            }
        }
        let host = request_host(&req)?;
        let route_index = index;
        let Some(origin) = &self.route_origins[route_index] else {
            return Err(EdgeError::BadRequest("route has no origin"));
        };
        let route_cache = &self.route_caches[route_index];
        if let Some(route_cache) = route_cache {
            if matches!(*req.method(), Method::GET | Method::HEAD) {
                let key = cache::key::primary(&host, req.uri(), req.headers(), &route_cache.key);
                let ctx = cache::Ctx {
                    origin,
                    forwarded: &conn.forwarded,
                    started,
                    route: route_cache,
                    key,
                };
                let answer = self.cache.serve(req, ctx).await?;
                record.cache = Some(answer.status);
                record.origin_time = answer.origin_time;
                record.upstream = answer.upstream;
                return Ok(answer.response);
            }
        }
        // RFC 9111 §4.4: a successful unsafe request invalidates the stored target URI,
        // and (a MAY the node takes) the URIs in Location and Content-Location on the same
        // host.
        let invalidate = route_cache
            .as_ref()
            .filter(|_| !req.method().is_safe())
            .map(|rc| (host.clone().into_owned(), rc.key.clone()));
        let target = req.uri().clone();
        // A viewer body that breaks (a bad chunk size) or passes the size cap fails the
        // origin request too: that is the viewer's error (400 or 413), not the origin's
        // (502). The body's error is kept to tell which.
        let viewer_body_error = Arc::new(std::sync::Mutex::new(None::<EdgeError>));
        let slot = viewer_body_error.clone();
        let req = req.map(|body| {
            body.map_err(move |e| {
                let error = match e.downcast_ref::<body_limit::BodyTooLarge>() {
                    Some(too_large) => EdgeError::BodyTooLarge {
                        len: too_large.limit + 1,
                        limit: too_large.limit,
                    },
                    None => EdgeError::BadRequest("the request body is malformed"),
                };
                if let Ok(mut slot) = slot.lock() {
                    slot.get_or_insert(error);
                }
                e
            })
            .boxed_unsync()
        });
        let answer = match origin.send(req, &conn.forwarded, started).await {
            Ok(answer) => answer,
            Err(e) => {
                let viewer = viewer_body_error.lock().ok().and_then(|mut s| s.take());
                return Err(viewer.unwrap_or_else(|| e.into()));
            }
        };
        if let Some((host, key_spec)) = invalidate {
            let status = answer.response.status();
            if status.is_success() || status.is_redirection() {
                let headers = answer.response.headers();
                let named = [header::LOCATION, header::CONTENT_LOCATION]
                    .into_iter()
                    .filter_map(|name| headers.get(name)?.to_str().ok()?.parse::<http::Uri>().ok())
                    .filter(|uri| uri.host().is_none_or(|h| h.eq_ignore_ascii_case(&host)));
                for uri in std::iter::once(target).chain(named) {
                    let key = cache::key::primary(&host, &uri, &http::HeaderMap::new(), &key_spec);
                    self.cache.purge(&cache::Purge::Url(key));
                }
            }
        }
        record.origin_time = Some(answer.time_to_first_byte);
        record.upstream = Some(answer.upstream);
        record.attempts = Some(answer.attempts);
        Ok(answer.response)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Origin(#[from] OriginError),
    #[error(transparent)]
    Wasm(#[from] WasmError),
}

/// Request fields that make common origin frameworks build a different response (another
/// host in absolute URLs, another path or method) without being part of any cache key.
/// Removed before a cached route's origin fetch.
const UNKEYED_REWRITE_FIELDS: &[&str] = &[
    "x-forwarded-host",
    "x-forwarded-server",
    "x-forwarded-port",
    "x-forwarded-prefix",
    "x-forwarded-scheme",
    "x-host",
    "x-original-url",
    "x-rewrite-url",
    "x-original-host",
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
];

fn unkeyed_rewrite_field(name: &str) -> bool {
    name.starts_with("x-") && UNKEYED_REWRITE_FIELDS.contains(&name)
}

const SERVER_TIMING: http::HeaderName = http::HeaderName::from_static("server-timing");

/// `Server-Timing` (W3C): the node's time to the response head and the origin's time to
/// first byte, in milliseconds with microsecond precision. Integer formatting: this runs
/// on every request.
fn server_timing(
    edge: Duration,
    origin: Option<Duration>,
    cache: Option<CacheStatus>,
    modules: Option<Duration>,
) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(64);
    let mut metric = |name: &str, d: Duration| {
        let us = d.as_micros();
        let sep = if out.is_empty() { "" } else { ", " };
        let _ = write!(out, "{sep}{name};dur={}.{:03}", us / 1000, us % 1000);
    };
    metric("edge", edge);
    if let Some(origin) = origin {
        metric("origin", origin);
    }
    if let Some(modules) = modules {
        metric("wasm", modules);
    }
    if let Some(cache) = cache {
        let _ = write!(out, ", cache;desc={}", cache.as_str());
    }
    out
}

/// The host the viewer asked for, lower-cased and without the port: `:authority` for
/// h2/h3 and absolute-form targets, else `Host` (RFC 9110 §7.2).
fn request_host<B>(req: &Request<B>) -> Result<Cow<'_, str>, EdgeError> {
    let raw = match req.uri().authority() {
        Some(authority) => authority.as_str(),
        None => {
            let mut hosts = req.headers().get_all(header::HOST).iter();
            let host = hosts
                .next()
                .ok_or(EdgeError::BadRequest("missing Host header"))?;
            // RFC 9112 §3.2: more than one Host field is a 400.
            if hosts.next().is_some() {
                return Err(EdgeError::BadRequest("more than one Host header"));
            }
            host.to_str()
                .map_err(|_| EdgeError::BadRequest("Host header is not ASCII"))?
        }
    };
    let host = strip_port(raw).ok_or(EdgeError::BadRequest("malformed Host"))?;
    if host.bytes().any(|b| b.is_ascii_uppercase()) {
        Ok(Cow::Owned(host.to_ascii_lowercase()))
    } else {
        Ok(Cow::Borrowed(host))
    }
}

fn strip_port(authority: &str) -> Option<&str> {
    let authority = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = if let Some(rest) = authority.strip_prefix('[') {
        let end = rest.find(']')?;
        &authority[..end + 2]
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
            Some(_) => return None,
            None => authority,
        }
    };
    let valid = !host.is_empty()
        && host.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b'[' | b']' | b':')
        });
    valid.then_some(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host_of(req: Request<()>) -> Result<String, EdgeError> {
        request_host(&req).map(|h| h.into_owned())
    }

    #[test]
    fn server_timing_format() {
        let t = server_timing(
            Duration::from_micros(1_234),
            Some(Duration::from_micros(56)),
            None,
            Some(Duration::from_micros(7)),
        );
        assert_eq!(t, "edge;dur=1.234, origin;dur=0.056, wasm;dur=0.007");
        let t = server_timing(
            Duration::from_millis(20),
            None,
            Some(CacheStatus::Hit),
            None,
        );
        assert_eq!(t, "edge;dur=20.000, cache;desc=HIT");
    }

    #[test]
    fn bad_hosts_are_400() {
        let req = Request::builder().uri("/x").body(()).unwrap();
        assert!(matches!(host_of(req), Err(EdgeError::BadRequest(_))));
        let req = Request::builder()
            .uri("/x")
            .header("host", "a")
            .header("host", "b")
            .body(())
            .unwrap();
        assert!(matches!(host_of(req), Err(EdgeError::BadRequest(_))));
        let req = Request::builder()
            .uri("/x")
            .header("host", "a b")
            .body(())
            .unwrap();
        assert!(matches!(host_of(req), Err(EdgeError::BadRequest(_))));
        let req = Request::builder()
            .uri("/x")
            .header("host", "a:port")
            .body(())
            .unwrap();
        assert!(matches!(host_of(req), Err(EdgeError::BadRequest(_))));
    }
}
