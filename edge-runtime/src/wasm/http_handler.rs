//! Any `wasi:http/proxy` component as a route's handler (`[handlers.NAME]`, a route with
//! `origin = "NAME"`): the node hands it the viewer's request and sends back what it
//! answers, so the artifact built for edge function platforms (the edge function) runs
//! unchanged in the node. One instance per request, on the node's engine (pooled memory,
//! epoch deadline); the component's outgoing requests go out through wasmtime-wasi-http.

use super::WasmError;
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use origin::{Body, BoxError};
use std::sync::Arc;
use std::time::Duration;
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Engine, Store, StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

/// How a handler runs.
#[derive(Clone, Debug)]
pub struct HandlerSettings {
    /// Environment variables the component sees (the edge function's config).
    pub env: Vec<(String, String)>,
    /// The whole exchange, body included; the instance is stopped after it.
    pub timeout: Duration,
    pub memory_bytes: usize,
}

pub struct HttpHandler {
    /// Shared with every access-log record of its requests (no copy per request).
    pub name: Arc<str>,
    pub sha256: String,
    pre: ProxyPre<HandlerState>,
    settings: HandlerSettings,
}

pub struct HandlerState {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    table: ResourceTable,
    limits: StoreLimits,
}

impl WasiView for HandlerState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for HandlerState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: Default::default(),
        }
    }
}

impl HttpHandler {
    /// Links a compiled component against `wasi:http/proxy` (and the WASI interfaces a
    /// Rust `wasm32-wasip2` build imports). Fails with the reason when it does not export
    /// `wasi:http/incoming-handler`.
    pub fn new(
        engine: &Engine,
        name: &str,
        component: &Component,
        sha256: String,
        settings: HandlerSettings,
    ) -> Result<HttpHandler, WasmError> {
        let wrong = |e: wasmtime::Error| WasmError::WrongWorld {
            module: name.to_owned(),
            reason: format!("not a wasi:http/proxy component: {e:#}"),
        };
        let mut linker = Linker::new(engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(wrong)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker).map_err(wrong)?;
        let pre =
            ProxyPre::new(linker.instantiate_pre(component).map_err(wrong)?).map_err(wrong)?;
        Ok(HttpHandler {
            name: name.into(),
            sha256,
            pre,
            settings,
        })
    }

    /// Runs the component for one request. Its failures become 5xx answers here; a body
    /// it stops sending midway ends the viewer's body with an error (never a short body
    /// that looks complete).
    pub async fn handle(self: &Arc<Self>, req: Request<Body>, tls: bool) -> Response<Body> {
        match self.run(req, tls).await {
            Ok(response) => response,
            Err((status, reason)) => {
                tracing::warn!(handler = %self.name, %reason, "handler failed");
                let mut r = Response::new(origin::body::full(format!(
                    "{} {}: handler `{}` failed\n",
                    status.as_u16(),
                    status.canonical_reason().unwrap_or(""),
                    self.name
                )));
                *r.status_mut() = status;
                r.headers_mut().insert(
                    http::header::CONTENT_TYPE,
                    http::HeaderValue::from_static("text/plain; charset=utf-8"),
                );
                r
            }
        }
    }

    async fn run(
        self: &Arc<Self>,
        req: Request<Body>,
        tls: bool,
    ) -> Result<Response<Body>, (StatusCode, String)> {
        let internal = |e: wasmtime::Error| (StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}"));
        let engine = self.pre.engine();
        let mut wasi = WasiCtx::builder();
        wasi.envs(&self.settings.env).inherit_stderr();
        let mut store = Store::new(
            engine,
            HandlerState {
                wasi: wasi.build(),
                http: WasiHttpCtx::new(),
                table: ResourceTable::new(),
                limits: StoreLimitsBuilder::new()
                    .memory_size(self.settings.memory_bytes)
                    .build(),
            },
        );
        store.limiter(|s| &mut s.limits);
        let tick = super::engine::TICK.as_micros().max(1);
        store.set_epoch_deadline((self.settings.timeout.as_micros() / tick) as u64 + 1);
        let req = req.map(|body| {
            body.map_err(|e: BoxError| {
                wasmtime_wasi_http::Error::InternalError(Some(e.to_string()))
            })
        });
        let scheme = if tls { Scheme::Https } else { Scheme::Http };
        let (sender, receiver) = tokio::sync::oneshot::channel();
        let incoming = store
            .data_mut()
            .http()
            .new_incoming_request(scheme, req)
            .map_err(|e| (StatusCode::BAD_REQUEST, format!("{e:#}")))?;
        let out = store
            .data_mut()
            .http()
            .new_response_outparam(sender)
            .map_err(internal)?;
        let pre = self.pre.clone();
        // The instance runs on its own task: after `response-outparam.set` it goes on
        // writing the body while the node sends it.
        let task = tokio::spawn(async move {
            let proxy = pre.instantiate_async(&mut store).await?;
            proxy
                .wasi_http_incoming_handler()
                .call_handle(&mut store, incoming, out)
                .await
        });
        match tokio::time::timeout(self.settings.timeout, receiver).await {
            Ok(Ok(Ok(response))) => {
                Ok(response
                    .map(|body| body.map_err(|e| -> BoxError { Box::new(e) }).boxed_unsync()))
            }
            Ok(Ok(Err(code))) => Err((StatusCode::BAD_GATEWAY, format!("{code:?}"))),
            Ok(Err(_)) => {
                let reason = match task.await {
                    Ok(Ok(())) => "the component answered nothing".to_owned(),
                    Ok(Err(e)) => format!("{e:#}"),
                    Err(e) => e.to_string(),
                };
                Err((StatusCode::INTERNAL_SERVER_ERROR, reason))
            }
            Err(_) => {
                task.abort();
                Err((
                    StatusCode::GATEWAY_TIMEOUT,
                    format!("no response head within {:?}", self.settings.timeout),
                ))
            }
        }
    }
}
