//! The Wasm export: builds the viewer's plan from the route's config and the request
//! (token auth's `token.query` context, device class), and rewrites manifest bodies.

use crate::{parse_config, rewrite, Config, Kind, OnMalformed, Plan, RewriteError, Viewer};
use edge_module_sdk::{export_module, log, metrics, Action, Module, Request, Response};
use std::cell::OnceCell;

struct ManifestRewrite;

thread_local! {
    /// The route's config, parsed once per instance by `init` (the module is resident).
    static CONFIG: OnceCell<Config> = const { OnceCell::new() };
}

/// Runs `f` with the route's config; `None` when `init` has not run (the node always
/// runs it first).
fn with_config<R>(f: impl FnOnce(&Config) -> R) -> Option<R> {
    CONFIG.with(|c| c.get().map(f))
}

fn plan(config: &Config, req: &Request) -> Plan {
    let host = req.authority();
    let path = req.path();
    let query = req.query();
    let token_query = req.get_context("token.query");
    let device_header = config.device_header.as_deref().and_then(|h| req.header(h));
    config.plan(&Viewer {
        host: Some(&host),
        path: &path,
        query: query.as_deref(),
        token_query: token_query.as_deref(),
        device_header: device_header.as_deref(),
    })
}

impl Module for ManifestRewrite {
    const NAME: &'static str = "manifest-rewrite";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const BODY_TYPES: &'static [&'static str] = crate::MEDIA_TYPES;
    /// The node's own bound; the route's `max_bytes` (smaller) is applied here, so that
    /// a manifest over it gets the route's `on_malformed` answer.
    const MAX_BODY_BYTES: u32 = crate::MAX_MANIFEST_BYTES;
    // Every manifest request of its routes comes here: the instance and its parsed config
    // are kept across requests. It keeps nothing of a request: the plan is rebuilt from
    // the request in each hook.
    const RESIDENT: bool = true;

    fn init() -> Result<(), String> {
        let config = parse_config(&edge_module_sdk::bindings::edge::module::config::get())
            .map_err(|e| format!("module config: {e}"))?;
        CONFIG.with(|c| {
            let _ = c.set(config);
        });
        Ok(())
    }

    fn on_request(req: &Request) -> Action {
        match with_config(|config| plan(config, req).is_empty()) {
            // Nothing to change for this viewer: no transform, the body streams through.
            Some(true) => Action::Done,
            Some(false) => Action::Continue,
            // `init` runs first or the node would not call this; refuse rather than pass.
            None => Action::respond(
                500,
                "500 Internal Server Error: manifest-rewrite not initialised\n",
            ),
        }
    }

    fn transform_body(
        req: &Request,
        resp: &Response,
        body: Vec<u8>,
    ) -> Result<Option<Vec<u8>>, String> {
        with_config(|config| transform(config, req, resp, body))
            .unwrap_or_else(|| Err("manifest-rewrite not initialised".into()))
    }
}

/// Rewrites one manifest body for this viewer.
fn transform(
    config: &Config,
    req: &Request,
    resp: &Response,
    body: Vec<u8>,
) -> Result<Option<Vec<u8>>, String> {
    let content_type = resp.header("content-type");
    let media_type = content_type
        .as_deref()
        .map(|t| t.split(';').next().unwrap_or("").trim());
    let path = req.path();
    let Some(kind) = Kind::detect(media_type, &path, &body) else {
        return Ok(None);
    };
    if let Some(field) = &config.device_header {
        // What a viewer gets depends on this request field (its device class): a shared
        // cache in front of the node must key on it. (A class from the query is in the
        // URL already.)
        let _ = resp.append_header("vary", field);
    }
    let plan = plan(config, req);
    match rewrite(kind, &body, &plan, config.max_bytes) {
        Ok(out) => {
            let Some(new) = out.body else { return Ok(None) };
            if out.per_viewer {
                // The output carries this viewer's token: no shared cache may keep it.
                let _ = resp.set_header("cache-control", "private, no-store");
            }
            metrics::counter_add("rewritten", 1);
            Ok(Some(new))
        }
        Err(e) => Ok(malformed(config, resp, &path, &e)),
    }
}

/// A manifest that cannot be rewritten: logged with the parse error, then passed as it
/// was or answered with 502, as the route says.
fn malformed(config: &Config, resp: &Response, path: &str, e: &RewriteError) -> Option<Vec<u8>> {
    let kind = match e {
        RewriteError::TooLarge { .. } => "too_large",
        _ => "malformed",
    };
    metrics::counter_add(kind, 1);
    let action = match config.on_malformed {
        OnMalformed::Pass => "passed unchanged",
        OnMalformed::Reject => "answered 502",
    };
    log::warn(&format!("manifest not rewritten ({action}): {path}: {e}"));
    match config.on_malformed {
        OnMalformed::Pass => None,
        OnMalformed::Reject => {
            let _ = resp.set_status(502);
            let _ = resp.set_header("content-type", "text/plain; charset=utf-8");
            let _ = resp.set_header("cache-control", "no-store");
            Some(
                format!("502 Bad Gateway: the origin's manifest cannot be rewritten: {e}\n")
                    .into_bytes(),
            )
        }
    }
}

export_module!(ManifestRewrite);
