//! The admin listener: plain HTTP/1.1, meant for localhost or a private network, every
//! request but the probes and the status page's shell authenticated with a bearer token
//! (compared in constant time).
//!
//! | request | answer |
//! |---|---|
//! | `GET /health` | 200 `ok` (no token: for liveness probes) |
//! | `GET /ready` | 200 `ready`, 503 `draining` once the node drains (no token: readiness) |
//! | `GET /status` | the status page (no token: a page without data; it asks for one) |
//! | `GET /status.json` | identity, modules, canaries, 5 minutes of per-second samples |
//! | `POST /reload` | re-read the config file and swap the pipeline; connections stay |
//! | `GET /metrics` | OpenMetrics text |
//! | `GET /origins` | each origin's upstreams and whether health checks find them up |
//! | `POST /purge` `{"url": "https://host/path?q"}` | removes that URL, all variants |
//! | `POST /purge` `{"prefix": "https://host/vod/"}` | removes every URL under the prefix |
//! | `POST /purge` `{"surrogate_key": "title-42"}` | removes what the origin tagged so |
//! | `GET /modules` | every module: current version, history, limits |
//! | `PUT /modules/<name>` (body: component, `edge-signature: <base64>`) | verify, compile, swap |
//! | `POST /modules/<name>/rollback[?to=<id>]` | back to the previous (or the given) version |
//! | `PUT /modules/<name>/data` (body: JSON object, `edge-signature: <base64>`) | verify, check with the module, install (a WAF rule set) |
//! | `PUT /modules/<name>/canary?percent=10&window_s=60&max_error_ratio=0.01[&max_block_ratio=0.2][&min_requests=20]` (body: component, `edge-signature`) | start a canary |
//! | `POST /modules/<name>/canary/promote` | the canary becomes the current version |
//! | `DELETE /modules/<name>/canary` | stop the canary |

use crate::cache::{self, Cache, Purge};
use crate::listener::Shared;
use crate::reload::{ReloadError, Reloader};
use crate::telemetry::status::Status;
use crate::wasm::canary::CanaryPolicy;
use crate::wasm::ModuleHost;
use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use origin::Origin;
use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// Purge requests are tiny; anything bigger is refused before parsing.
const MAX_BODY: usize = 16 * 1024;

/// The status page: one self-contained HTML file (inline CSS and script, no data).
const STATUS_PAGE: &str = include_str!("status.html");

pub struct Admin {
    token: String,
    cache: Arc<Cache>,
    shared: Arc<Shared>,
    reloader: Arc<Reloader>,
    status: Arc<Status>,
    /// Query parameters some route leaves out of its keys: a purged URL is normalized the
    /// same way, so a purge with a signed URL still finds the object.
    exclude_query: Vec<String>,
}

impl Admin {
    pub fn new(
        token: String,
        cache: Arc<Cache>,
        shared: Arc<Shared>,
        reloader: Arc<Reloader>,
        status: Arc<Status>,
        exclude_query: Vec<String>,
    ) -> Arc<Admin> {
        Arc::new(Admin {
            token,
            cache,
            shared,
            reloader,
            status,
            exclude_query,
        })
    }

    /// The module host of the serving pipeline (the same host across reloads).
    fn modules(&self) -> Option<Arc<ModuleHost>> {
        self.shared.pipeline().modules().cloned()
    }

    pub async fn serve(self: Arc<Self>, listener: TcpListener, mut stop: watch::Receiver<bool>) {
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    let Ok((stream, _)) = accepted else { continue };
                    let admin = self.clone();
                    tokio::spawn(async move {
                        let service = hyper::service::service_fn(move |req| {
                            let admin = admin.clone();
                            async move { Ok::<_, Infallible>(admin.handle(req).await) }
                        });
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                            .await;
                    });
                }
                _ = stop.changed() => return,
            }
        }
    }

    async fn handle(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        match (req.method(), req.uri().path()) {
            (&Method::GET, "/health") => return text(StatusCode::OK, "ok\n"),
            (&Method::GET, "/ready") => {
                return if self.shared.draining.load(Ordering::Relaxed) {
                    text(StatusCode::SERVICE_UNAVAILABLE, "draining\n")
                } else {
                    text(StatusCode::OK, "ready\n")
                }
            }
            (&Method::GET, "/status") => {
                let mut r = text(StatusCode::OK, STATUS_PAGE);
                r.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/html; charset=utf-8"),
                );
                // The page talks only to this listener.
                r.headers_mut().insert(
                    header::CONTENT_SECURITY_POLICY,
                    HeaderValue::from_static(
                        "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src data:; frame-ancestors 'none'",
                    ),
                );
                r.headers_mut()
                    .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
                return r;
            }
            _ => {}
        }
        if !self.authorized(&req) {
            let mut r = text(StatusCode::UNAUTHORIZED, "missing or wrong bearer token\n");
            r.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            return r;
        }
        match (req.method(), req.uri().path()) {
            (&Method::GET, "/metrics") => {
                let modules = self.modules();
                let mut r = text(
                    StatusCode::OK,
                    &crate::telemetry::metrics::render(
                        &self.shared.metrics,
                        &self.cache,
                        modules.as_deref().map(|m| &*m.services),
                    ),
                );
                r.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static(
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    ),
                );
                r
            }
            (&Method::POST, "/purge") => self.purge(req).await,
            (&Method::GET, "/origins") => self.origins(),
            (&Method::GET, "/modules") => match self.modules() {
                Some(host) => json(StatusCode::OK, &host.list()),
                None => json(StatusCode::OK, &serde_json::json!([])),
            },
            (&Method::GET, "/status.json") => {
                let mut r = json(StatusCode::OK, &self.status.json());
                r.headers_mut()
                    .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
                r
            }
            (&Method::POST, "/reload") => self.reload().await,
            (
                _,
                "/metrics" | "/purge" | "/origins" | "/modules" | "/status.json" | "/reload"
                | "/health" | "/ready" | "/status",
            ) => text(StatusCode::METHOD_NOT_ALLOWED, "wrong method\n"),
            (method, path) if path.starts_with("/modules/") => {
                let rest = &path["/modules/".len()..];
                match (method, rest.split_once('/')) {
                    (&Method::PUT, None) => {
                        let name = rest.to_owned();
                        self.deploy(name, req, false).await
                    }
                    (&Method::PUT, Some((name, "data"))) => {
                        let name = name.to_owned();
                        self.deploy(name, req, true).await
                    }
                    (&Method::PUT, Some((name, "canary"))) => {
                        let name = name.to_owned();
                        self.canary(name, req).await
                    }
                    (&Method::POST, Some((name, "canary/promote"))) => {
                        match self.modules().map(|h| h.promote_canary(name)) {
                            Some(Ok(v)) => json(
                                StatusCode::OK,
                                &serde_json::json!({"id": v.id, "name": &*v.name, "version": &*v.version, "sha256": v.sha256}),
                            ),
                            Some(Err(e)) => text(StatusCode::NOT_FOUND, &format!("{e}\n")),
                            None => text(
                                StatusCode::NOT_FOUND,
                                &format!("no module named `{name}`\n"),
                            ),
                        }
                    }
                    (&Method::DELETE, Some((name, "canary"))) => {
                        match self.modules().map(|h| h.abort_canary(name)) {
                            Some(Ok(c)) => json(StatusCode::OK, &c.summary()),
                            Some(Err(e)) => text(StatusCode::NOT_FOUND, &format!("{e}\n")),
                            None => text(
                                StatusCode::NOT_FOUND,
                                &format!("no module named `{name}`\n"),
                            ),
                        }
                    }
                    (&Method::POST, Some((name, "rollback"))) => {
                        let to = req
                            .uri()
                            .query()
                            .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("to=")));
                        self.rollback(name, to)
                    }
                    _ => text(StatusCode::NOT_FOUND, "no such admin endpoint\n"),
                }
            }
            _ => text(StatusCode::NOT_FOUND, "no such admin endpoint\n"),
        }
    }

    /// Verifies and installs a new module version (or, with `data`, the module's data: a
    /// rule set). Compiling takes milliseconds to seconds, so it runs on the blocking pool,
    /// never on the request path.
    async fn deploy(
        &self,
        name: String,
        req: Request<Incoming>,
        data: bool,
    ) -> Response<Full<Bytes>> {
        let Some(host) = self.modules() else {
            return text(
                StatusCode::CONFLICT,
                "modules are off: configure wasm.trusted_keys to allow deploys\n",
            );
        };
        let (bytes, signature) = match signed_body(&name, req, host.max_module_bytes()).await {
            Ok(b) => b,
            Err(r) => return r,
        };
        let route_configs = if data {
            self.shared.pipeline().module_configs(&name)
        } else {
            Vec::new()
        };
        let deployed = tokio::task::spawn_blocking(move || {
            if data {
                host.deploy_data(&name, &bytes, &signature, &route_configs)
                    .map(|d| {
                        serde_json::json!({
                            "name": name,
                            "data_generation": d.generation,
                            "sha256": d.sha256,
                            "bytes": d.json.len(),
                        })
                    })
            } else {
                host.deploy(&name, &bytes, &signature).map(|version| {
                    serde_json::json!({
                        "id": version.id,
                        "name": &*version.name,
                        "version": &*version.version,
                        "sha256": version.sha256,
                    })
                })
            }
        })
        .await;
        match deployed {
            Ok(Ok(summary)) => json(StatusCode::CREATED, &summary),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "module deploy rejected");
                let status = if e.is_client_error() {
                    StatusCode::UNPROCESSABLE_ENTITY
                } else {
                    StatusCode::INTERNAL_SERVER_ERROR
                };
                text(status, &format!("{e}\n"))
            }
            Err(e) => text(
                StatusCode::INTERNAL_SERVER_ERROR,
                &format!("deploy task failed: {e}\n"),
            ),
        }
    }

    /// Starts a canary: the policy from the query, the component in the body.
    async fn canary(&self, name: String, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let Some(host) = self.modules() else {
            return text(
                StatusCode::CONFLICT,
                "modules are off: configure wasm.trusted_keys to allow deploys\n",
            );
        };
        let policy = match canary_policy(req.uri().query().unwrap_or("")) {
            Ok(p) => p,
            Err(e) => {
                return text(
                    StatusCode::BAD_REQUEST,
                    &format!("bad canary policy: {e}\n"),
                )
            }
        };
        let (bytes, signature) = match signed_body(&name, req, host.max_module_bytes()).await {
            Ok(b) => b,
            Err(r) => return r,
        };
        let started = tokio::task::spawn_blocking(move || {
            host.start_canary(&name, &bytes, &signature, policy)
                .map(|c| c.summary())
        })
        .await;
        match started {
            Ok(Ok(summary)) => json(StatusCode::CREATED, &summary),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "canary rejected");
                let status = match e {
                    crate::wasm::WasmError::UnknownModule(_) => StatusCode::NOT_FOUND,
                    _ if e.is_client_error() => StatusCode::UNPROCESSABLE_ENTITY,
                    _ => StatusCode::INTERNAL_SERVER_ERROR,
                };
                text(status, &format!("{e}\n"))
            }
            Err(e) => text(
                StatusCode::INTERNAL_SERVER_ERROR,
                &format!("canary task failed: {e}\n"),
            ),
        }
    }

    async fn reload(&self) -> Response<Full<Bytes>> {
        match self.reloader.reload().await {
            Ok(done) => json(
                StatusCode::OK,
                &serde_json::to_value(&done).unwrap_or_default(),
            ),
            Err(e) => {
                let status = match e {
                    ReloadError::Busy => StatusCode::CONFLICT,
                    ReloadError::NoSource => StatusCode::CONFLICT,
                    ReloadError::Wasm(ref w) if !w.is_client_error() => {
                        StatusCode::INTERNAL_SERVER_ERROR
                    }
                    _ => StatusCode::UNPROCESSABLE_ENTITY,
                };
                text(status, &format!("reload refused: {e}\n"))
            }
        }
    }

    fn rollback(&self, name: &str, to: Option<&str>) -> Response<Full<Bytes>> {
        let Some(host) = self.modules() else {
            return text(
                StatusCode::NOT_FOUND,
                &format!("no module named `{name}`\n"),
            );
        };
        let to = match to.map(str::parse::<u64>) {
            None => None,
            Some(Ok(id)) => Some(id),
            Some(Err(_)) => return text(StatusCode::BAD_REQUEST, "`to` must be a version id\n"),
        };
        match host.rollback(name, to) {
            Ok(v) => json(
                StatusCode::OK,
                &serde_json::json!({"id": v.id, "name": &*v.name, "version": &*v.version}),
            ),
            Err(e) => text(StatusCode::NOT_FOUND, &format!("{e}\n")),
        }
    }

    fn origins(&self) -> Response<Full<Bytes>> {
        let pipeline = self.shared.pipeline();
        let origins: Vec<serde_json::Value> = pipeline
            .origins()
            .map(|origin| match &**origin {
                Origin::Http(http) => serde_json::json!({
                    "name": http.name(),
                    "kind": "http",
                    "upstreams": http.health().iter().map(|(url, up)| serde_json::json!({"url": &**url, "healthy": up})).collect::<Vec<_>>(),
                }),
                Origin::Object(store) => serde_json::json!({"name": store.name(), "kind": "store"}),
            })
            .collect();
        let mut r = text(
            StatusCode::OK,
            &format!("{}\n", serde_json::Value::Array(origins)),
        );
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        r
    }

    fn authorized<B>(&self, req: &Request<B>) -> bool {
        let Some(given) = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
        else {
            return false;
        };
        // Constant time, so the token cannot be guessed byte by byte from response times.
        use subtle::ConstantTimeEq;
        bool::from(given.trim().as_bytes().ct_eq(self.token.as_bytes()))
    }

    async fn purge(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
            Ok(b) => b.to_bytes(),
            Err(_) => return text(StatusCode::PAYLOAD_TOO_LARGE, "purge request over 16 KiB\n"),
        };
        let request: PurgeRequest = match serde_json::from_slice(&body) {
            Ok(r) => r,
            Err(e) => {
                return text(
                    StatusCode::BAD_REQUEST,
                    &format!("bad purge request: {e}\n"),
                )
            }
        };
        let purge = match (request.url, request.prefix, request.surrogate_key) {
            (Some(url), None, None) => match self.normalize(&url) {
                Some(key) => Purge::Url(key),
                None => {
                    return text(
                        StatusCode::BAD_REQUEST,
                        &format!("bad purge request: `{url}` is not an absolute URL\n"),
                    )
                }
            },
            (None, Some(prefix), None) => match self.normalize(&prefix) {
                Some(key) => Purge::Prefix(key),
                None => {
                    return text(
                        StatusCode::BAD_REQUEST,
                        &format!("bad purge request: `{prefix}` is not an absolute URL\n"),
                    )
                }
            },
            (None, None, Some(tag)) if !tag.is_empty() => Purge::SurrogateKey(tag),
            _ => {
                return text(
                    StatusCode::BAD_REQUEST,
                    "bad purge request: give exactly one of url, prefix, surrogate_key\n",
                )
            }
        };
        let purged = self.cache.purge(&purge);
        tracing::info!(?purge, purged, "purge");
        let mut r = text(StatusCode::OK, &format!("{{\"purged\":{purged}}}\n"));
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        r
    }

    /// `https://Host:443/p?q` → the URL part of a cache key (`host/p?q`).
    fn normalize(&self, url: &str) -> Option<String> {
        let uri: http::Uri = url.parse().ok()?;
        let host = uri.host()?;
        let spec = cache::KeySpec {
            headers: Vec::new(),
            exclude_query: self.exclude_query.clone(),
        };
        Some(cache::key::primary(
            host,
            &uri,
            &http::HeaderMap::new(),
            &spec,
        ))
    }
}

/// A deploy's name check, `edge-signature` header and bounded body.
async fn signed_body(
    name: &str,
    req: Request<Incoming>,
    limit: usize,
) -> Result<(Bytes, String), Response<Full<Bytes>>> {
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(text(
            StatusCode::BAD_REQUEST,
            "module names are letters, digits, `-` and `_`\n",
        ));
    }
    let Some(signature) = req
        .headers()
        .get("edge-signature")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
    else {
        return Err(text(
                StatusCode::BAD_REQUEST,
                "missing edge-signature header (base64 Ed25519 signature of the body; see `edge module sign`)\n",
            ));
    };
    let bytes = match Limited::new(req.into_body(), limit).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            return Err(text(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!("module over the limit of {limit} bytes (wasm.max_module_bytes)\n"),
            ))
        }
    };
    Ok((bytes, signature))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct PurgeRequest {
    url: Option<String>,
    prefix: Option<String>,
    surrogate_key: Option<String>,
}

/// `percent=10&window_s=60&max_error_ratio=0.01&max_block_ratio=0.2&min_requests=20`;
/// `percent` is required.
fn canary_policy(query: &str) -> Result<CanaryPolicy, String> {
    let mut policy = CanaryPolicy {
        percent: 0,
        window: Duration::from_secs(60),
        max_error_ratio: 0.01,
        max_block_ratio: None,
        min_requests: 20,
    };
    let mut percent = None;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let bad = |what: &str| format!("`{key}` must be {what}, not `{value}`");
        match key {
            "percent" => percent = Some(value.parse().map_err(|_| bad("a whole number"))?),
            "window_s" => {
                policy.window =
                    Duration::from_secs(value.parse().map_err(|_| bad("whole seconds"))?)
            }
            "max_error_ratio" => {
                policy.max_error_ratio = value.parse().map_err(|_| bad("a ratio"))?
            }
            "max_block_ratio" => {
                policy.max_block_ratio = Some(value.parse().map_err(|_| bad("a ratio"))?)
            }
            "min_requests" => {
                policy.min_requests = value.parse().map_err(|_| bad("a whole number"))?
            }
            _ => return Err(format!("unknown parameter `{key}`")),
        }
    }
    policy.percent = percent.ok_or("`percent` is required")?;
    policy.check()?;
    Ok(policy)
}

fn json(status: StatusCode, value: &serde_json::Value) -> Response<Full<Bytes>> {
    let mut r = text(status, &format!("{value}\n"));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

fn text(status: StatusCode, body: &str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body.to_owned())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}
