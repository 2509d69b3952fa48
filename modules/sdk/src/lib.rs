//! The guest side of the `edge:module` contract (`wit/module.wit`).
//!
//! A module implements [`Module`] and exports it with [`export_module!`]:
//!
//! ```ignore
//! use edge_module_sdk::{export_module, Action, Module, Request};
//!
//! struct DenyAdmin;
//!
//! impl Module for DenyAdmin {
//!     const NAME: &'static str = "deny-admin";
//!     const VERSION: &'static str = "1.0.0";
//!
//!     fn on_request(req: &Request) -> Action {
//!         if req.path().starts_with("/admin") {
//!             return Action::respond(403, "forbidden");
//!         }
//!         Action::Continue
//!     }
//! }
//!
//! export_module!(DenyAdmin);
//! ```
//!
//! Keep the logic in plain functions that take `&str`s and return values, tested natively
//! with `cargo test`; the [`Module`] impl is the thin layer that reads the request and calls
//! them. The host functions (config, log, crypto...) only work inside the node.

#[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
mod guest_alloc;
#[cfg(any(test, all(target_arch = "wasm32", target_os = "unknown")))]
mod guest_memcmp;
#[cfg(any(test, all(target_arch = "wasm32", target_os = "unknown")))]
mod small_blocks;

#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "module",
        pub_export_macro: true,
        export_macro_name: "__export_world",
        default_bindings_module: "edge_module_sdk::bindings",
        generate_all,
    });
}

pub use bindings::edge::module::types::{
    ImmediateResponse, ModuleInfo, Protocol, Request, RequestAction, Response,
};

pub mod log {
    //! Lines in the node's log, tagged with the module's name and version.
    use crate::bindings::edge::module::log::log;
    pub use crate::bindings::edge::module::log::Level;

    pub fn trace(message: &str) {
        log(Level::Trace, message)
    }
    pub fn debug(message: &str) {
        log(Level::Debug, message)
    }
    pub fn info(message: &str) {
        log(Level::Info, message)
    }
    pub fn warn(message: &str) {
        log(Level::Warn, message)
    }
    pub fn error(message: &str) {
        log(Level::Error, message)
    }
}

pub mod crypto {
    //! HMAC, signature verification and SHA-256, computed natively by the node.
    pub use crate::bindings::edge::module::crypto::*;
}

pub mod clock {
    /// Milliseconds since the Unix epoch.
    pub fn now_ms() -> u64 {
        crate::bindings::edge::module::clock::now_ms()
    }
}

pub mod metrics {
    //! The module's own metrics (`edge_module_counter_total{module,name}` and
    //! `edge_module_histogram{module,name}`).
    pub use crate::bindings::edge::module::metrics::{counter_add, histogram_observe};
}

pub mod rate_limit {
    pub use crate::bindings::edge::module::rate_limit::Decision;

    /// Counts one request against `key` under the node's `policy`.
    pub fn check(policy: &str, key: &str) -> Result<Decision, String> {
        crate::bindings::edge::module::rate_limit::check(policy, key)
    }
}

/// The module's table from the route's config, deserialized. `{}` when the route gives
/// none, so a config struct whose fields all have defaults always loads.
pub fn config<T: serde::de::DeserializeOwned>() -> Result<T, String> {
    let text = bindings::edge::module::config::get();
    serde_json::from_str(&text).map_err(|e| format!("module config: {e}"))
}

/// Runs at the start of every exported call; does its work once per instance.
///
/// On `wasm32-unknown-unknown` (how the node builds its own modules: no WASI imports, so
/// the host calls them without a fiber) std has no stderr, and a panic's message would be
/// lost: it goes to the node's log instead, at error level, before the instance traps.
#[doc(hidden)]
#[inline]
pub fn __start() {
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    {
        use std::sync::atomic::{AtomicBool, Ordering};
        static STARTED: AtomicBool = AtomicBool::new(false);
        if !STARTED.swap(true, Ordering::Relaxed) {
            std::panic::set_hook(Box::new(|info| log::error(&format!("panicked: {info}"))));
        }
    }
}

/// What `on_request` decides.
pub enum Action {
    /// Go on; the module's response hook (and body transform) will be called.
    Continue,
    /// Go on; the module has nothing to do on the response, so the node skips its
    /// response hook and body transform (cheaper).
    Done,
    Respond(ImmediateResponse),
}

impl Action {
    /// A plain-text answer, e.g. `Action::respond(403, "forbidden")`.
    pub fn respond(status: u16, body: &str) -> Action {
        Action::Respond(ImmediateResponse {
            status,
            headers: vec![("content-type".into(), "text/plain; charset=utf-8".into())],
            body: body.as_bytes().to_vec(),
        })
    }

    /// An answer with headers, e.g. a redirect or a 429 with `retry-after`.
    pub fn respond_with(status: u16, headers: &[(&str, &str)], body: &[u8]) -> Action {
        Action::Respond(ImmediateResponse {
            status,
            headers: headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
            body: body.to_vec(),
        })
    }
}

/// A module. Every hook has a default that changes nothing, so a module writes only the
/// hooks it needs.
pub trait Module {
    const NAME: &'static str;
    const VERSION: &'static str;
    /// Media types whose bodies [`Module::transform_body`] receives.
    const BODY_TYPES: &'static [&'static str] = &[];
    /// Larger bodies pass through untouched.
    const MAX_BODY_BYTES: u32 = 4 * 1024 * 1024;
    /// Bytes of the viewer's request body to read before [`Module::on_request`]
    /// (`Request::body`); 0 for none.
    const REQUEST_BODY_BYTES: u32 = 0;
    /// Instances are kept across requests and [`Module::init`] runs once per instance.
    /// The hooks are called as for any module; an instance serves one request at a time
    /// and keeps its memory, so per-request state in globals must be reset by
    /// [`Module::on_request`].
    const RESIDENT: bool = false;

    /// Resident modules: runs once per instance before its first request.
    fn init() -> Result<(), String> {
        Ok(())
    }

    fn on_request(_req: &Request) -> Action {
        Action::Continue
    }

    fn on_response(_req: &Request, _resp: &Response) {}

    /// `Ok(None)` keeps the body as it is.
    fn transform_body(
        _req: &Request,
        _resp: &Response,
        _body: Vec<u8>,
    ) -> Result<Option<Vec<u8>>, String> {
        Ok(None)
    }
}

/// Exports a [`Module`] implementation as the component's `hooks`.
#[macro_export]
macro_rules! export_module {
    ($module:ty) => {
        struct __EdgeModuleExport;

        impl $crate::bindings::exports::edge::module::hooks::Guest for __EdgeModuleExport {
            fn describe() -> $crate::ModuleInfo {
                $crate::__start();
                $crate::ModuleInfo {
                    name: <$module as $crate::Module>::NAME.into(),
                    version: <$module as $crate::Module>::VERSION.into(),
                    body_types: <$module as $crate::Module>::BODY_TYPES
                        .iter()
                        .map(|t| t.to_string())
                        .collect(),
                    max_body_bytes: <$module as $crate::Module>::MAX_BODY_BYTES,
                    request_body_bytes: <$module as $crate::Module>::REQUEST_BODY_BYTES,
                    resident: <$module as $crate::Module>::RESIDENT,
                }
            }

            fn init() -> Result<(), String> {
                $crate::__start();
                <$module as $crate::Module>::init()
            }

            fn on_request(req: &$crate::Request) -> $crate::RequestAction {
                $crate::__start();
                match <$module as $crate::Module>::on_request(req) {
                    $crate::Action::Continue => $crate::RequestAction::Continue,
                    $crate::Action::Done => $crate::RequestAction::Done,
                    $crate::Action::Respond(r) => $crate::RequestAction::Respond(r),
                }
            }

            fn on_response(req: &$crate::Request, resp: &$crate::Response) {
                $crate::__start();
                <$module as $crate::Module>::on_response(req, resp)
            }

            fn transform_body(
                req: &$crate::Request,
                resp: &$crate::Response,
                body: Vec<u8>,
            ) -> Result<Option<Vec<u8>>, String> {
                $crate::__start();
                <$module as $crate::Module>::transform_body(req, resp, body)
            }
        }

        $crate::bindings::__export_world!(__EdgeModuleExport with_types_in $crate::bindings);
    };
}
