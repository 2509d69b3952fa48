//! The Wasm module host: runs the route's chain of WebAssembly components on every
//! request, each in a fresh instance, bounded in CPU and memory.
//!
//! - [`engine`]: wasmtime with the pooling allocator and an epoch ticker;
//! - [`state`]: what one instance's store holds, and the host side of the WIT imports;
//! - [`crypto`]: the `crypto` import, natively with `ring`;
//! - [`registry`]: named modules, their versions, atomic hot swap and rollback;
//! - [`compile_cache`]: compiled code on disk, so restarts do not recompile;
//! - [`cpu_budget`]: a hook call's budget in CPU time, checked at epoch deadlines;
//! - [`chain`]: one request's pass through a route's modules;
//! - [`hooks`]: calls into a module, directly or on a fiber (for components importing WASI);
//! - [`signing`]: Ed25519 signatures over deployed components.
//!
//! The contract is `wit/module.wit`; `wit/README.md` explains it for module authors.

pub mod canary;
pub mod chain;
pub mod compile_cache;
pub mod cpu_budget;
pub mod crypto;
pub mod engine;
mod hooks;
pub mod http_handler;
pub mod metrics;
pub mod registry;
pub mod signing;
pub mod state;

pub use chain::{Chain, ChainRun, OnError};
pub use registry::{ModuleHost, ModuleVersion, Source};

/// Host bindings for the `edge:module` world. Every import is trappable: a handle the
/// host cannot find is a trap for that one instance, never a panic in the node.
pub mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "module",
        imports: { default: trappable },
        exports: { default: async },
        with: {
            "edge:module/types.request": super::state::RequestView,
            "edge:module/types.response": super::state::ResponseView,
        },
    });
}

/// The same world with synchronous exports, for components that import nothing but
/// `edge:module` (see [`hooks`]). The imports are the ones above.
pub mod direct_bindings {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "module",
        imports: { default: trappable },
        with: {
            "edge:module/types": super::bindings::edge::module::types,
            "edge:module/log": super::bindings::edge::module::log,
            "edge:module/config": super::bindings::edge::module::config,
            "edge:module/rate-limit": super::bindings::edge::module::rate_limit,
            "edge:module/crypto": super::bindings::edge::module::crypto,
            "edge:module/clock": super::bindings::edge::module::clock,
            "edge:module/metrics": super::bindings::edge::module::metrics,
        },
    });
}

/// Why a module could not be loaded or deployed. Each names the module.
#[derive(Debug, thiserror::Error)]
pub enum WasmError {
    #[error("module `{module}`: not a valid WebAssembly component: {reason}")]
    InvalidComponent { module: String, reason: String },
    #[error("module `{module}` does not implement the edge:module world: {reason}")]
    WrongWorld { module: String, reason: String },
    #[error("module `{module}`: describe() failed: {reason}")]
    Describe { module: String, reason: String },
    #[error("module `{module}`: signature rejected: {reason}")]
    Signature { module: String, reason: String },
    #[error("module `{module}`: {size} bytes is over the limit of {limit}")]
    TooLarge {
        module: String,
        size: usize,
        limit: usize,
    },
    #[error("no module named `{0}`")]
    UnknownModule(String),
    #[error("module `{module}`: data rejected: {reason}")]
    DataRejected { module: String, reason: String },
    #[error("module `{module}` has no version {version}")]
    UnknownVersion { module: String, version: u64 },
    #[error("module `{module}`: cannot read {path}: {source}")]
    Read {
        module: String,
        path: String,
        source: std::io::Error,
    },
    #[error("module `{module}`: bad canary policy: {reason}")]
    BadCanary { module: String, reason: String },
    #[error("module `{0}` has no canary running")]
    NoCanary(String),
    #[error("cannot start the Wasm engine: {0}")]
    Engine(String),
}

impl WasmError {
    /// Whether the caller (an admin request) is at fault, or the node.
    pub fn is_client_error(&self) -> bool {
        !matches!(self, WasmError::Engine(_) | WasmError::Read { .. })
    }
}
