//! The module components this workspace builds (see `build.rs`).

/// Standard modules, embedded in the `edge` binary.
pub mod standard {
    /// `headers`: set and remove header fields from the route's config.
    pub const HEADERS: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/headers.wasm"));

    /// `token-auth`: Akamai, CloudFront, JWT and native signed URLs and cookies.
    pub const TOKEN_AUTH: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/token-auth.wasm"));

    /// `rate-limit`: keys requests to the node's limiters; 429 with `RateLimit` fields.
    pub const RATE_LIMIT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/rate-limit.wasm"));

    /// `manifest-rewrite`: HLS and DASH token propagation, URL rewriting, rendition
    /// filtering, live window and content steering.
    pub const MANIFEST_REWRITE: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/manifest-rewrite.wasm"));

    /// `waf`: the SecLang rule engine (OWASP CRS v4), resident, compiled once per instance.
    pub const WAF: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/waf.wasm"));

    /// Every standard module by the name routes use.
    pub const ALL: &[(&str, &[u8])] = &[
        ("headers", HEADERS),
        ("token-auth", TOKEN_AUTH),
        ("rate-limit", RATE_LIMIT),
        ("manifest-rewrite", MANIFEST_REWRITE),
        ("waf", WAF),
    ];
}

/// Modules for tests and benchmarks, by path (not embedded).
pub mod testing {
    /// The configurable test module (`modules/testing`), reporting version 1.0.0.
    pub const TEST_MODULE: &str = concat!(env!("OUT_DIR"), "/test_module.wasm");
    /// The same module reporting version 2.0.0, for hot-deploy tests.
    pub const TEST_MODULE_V2: &str = concat!(env!("OUT_DIR"), "/test_module_v2.wasm");
    /// The test module built for `wasm32-wasip2`, as module authors build: a component
    /// that imports WASI (the others import only edge:module).
    pub const TEST_MODULE_WASIP2: &str = concat!(env!("OUT_DIR"), "/test_module_wasip2.wasm");
}

/// The edge function (`modules/edge-function`): the standard chain as one
/// `wasi:http/proxy` component, with its built-in config.
pub mod edge_function {
    pub const COMPONENT: &str = concat!(env!("OUT_DIR"), "/edge_function.wasm");
}
