//! The admin listener: plain HTTP/1.1, meant for localhost or a private network, every
//! request but `/health` authenticated with a bearer token.
//!
//! | request | answer |
//! |---|---|
//! | `GET /health` | 200 `ok` (no token: for liveness probes) |
//! | `GET /metrics` | OpenMetrics text |
//! | `GET /origins` | each origin's upstreams and whether health checks find them up |
//! | `POST /purge` `{"url": "https://host/path?q"}` | removes that URL, all variants |
//! | `POST /purge` `{"prefix": "https://host/vod/"}` | removes every URL under the prefix |
//! | `POST /purge` `{"surrogate_key": "title-42"}` | removes what the origin tagged so |
//! | `GET /modules` | every module: current version, history, limits |
//! | `PUT /modules/<name>` (body: component, `edge-signature: <base64>`) | verify, compile, swap |
//! | `POST /modules/<name>/rollback[?to=<id>]` | back to the previous (or the given) version |
//! | `PUT /modules/<name>/data` (body: JSON object, `edge-signature: <base64>`) | verify, check with the module, install (a WAF rule set) |

use crate::cache::{self, Cache, Purge};
use crate::pipeline::Pipeline;
use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use origin::Origin;
use std::convert::Infallible;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// Purge requests are tiny; anything bigger is refused before parsing.
const MAX_BODY: usize = 16 * 1024;

pub struct Admin {
    token: String,
    cache: Arc<Cache>,
    pipeline: Arc<Pipeline>,
    /// Query parameters some route leaves out of its keys: a purged URL is normalized the
    /// same way, so a purge with a signed URL still finds the object.
    exclude_query: Vec<String>,
}

impl Admin {
    pub fn new(
        token: String,
        cache: Arc<Cache>,
        pipeline: Arc<Pipeline>,
        exclude_query: Vec<String>,
    ) -> Arc<Admin> {
        Arc::new(Admin {
            token,
            cache,
            pipeline,
            exclude_query,
        })
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
        if req.uri().path() == "/health" {
            return text(StatusCode::OK, "ok\n");
        }
        if !self.authorized(&req) {
            let mut r = text(StatusCode::UNAUTHORIZED, "missing or wrong bearer token\n");
            r.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            return r;
        }
        match (req.method(), req.uri().path()) {
            (&Method::GET, "/metrics") => {
                let mut r = text(
                    StatusCode::OK,
                    &crate::telemetry::metrics::render(
                        &self.cache,
                        self.pipeline.modules().map(|m| &*m.services),
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
            (&Method::GET, "/modules") => match self.pipeline.modules() {
                Some(host) => json(StatusCode::OK, &host.list()),
                None => json(StatusCode::OK, &serde_json::json!([])),
            },
            (_, "/metrics" | "/purge" | "/origins" | "/modules") => {
                text(StatusCode::METHOD_NOT_ALLOWED, "wrong method\n")
            }
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
        let Some(host) = self.pipeline.modules().cloned() else {
            return text(
                StatusCode::CONFLICT,
                "modules are off: configure wasm.trusted_keys to allow deploys\n",
            );
        };
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return text(
                StatusCode::BAD_REQUEST,
                "module names are letters, digits, `-` and `_`\n",
            );
        }
        let Some(signature) = req
            .headers()
            .get("edge-signature")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
        else {
            return text(
                StatusCode::BAD_REQUEST,
                "missing edge-signature header (base64 Ed25519 signature of the body; see `edge module sign`)\n",
            );
        };
        let limit = host.max_module_bytes();
        let bytes = match Limited::new(req.into_body(), limit).collect().await {
            Ok(b) => b.to_bytes(),
            Err(_) => {
                return text(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    &format!("module over the limit of {limit} bytes (wasm.max_module_bytes)\n"),
                )
            }
        };
        let deployed = tokio::task::spawn_blocking(move || {
            if data {
                host.deploy_data(&name, &bytes, &signature).map(|d| {
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

    fn rollback(&self, name: &str, to: Option<&str>) -> Response<Full<Bytes>> {
        let Some(host) = self.pipeline.modules() else {
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
        let origins: Vec<serde_json::Value> = self
            .pipeline
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

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct PurgeRequest {
    url: Option<String>,
    prefix: Option<String>,
    surrogate_key: Option<String>,
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
