//! The config file as written: serde structs that mirror the TOML, with defaults.
//! Unknown keys are errors so a typo never silently falls back to a default.

use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub server: RawServer,
    #[serde(default)]
    pub limits: RawLimits,
    #[serde(default)]
    pub tls: RawTls,
    #[serde(default)]
    pub logging: RawLogging,
    #[serde(default)]
    pub cache: RawCache,
    pub admin: Option<RawAdmin>,
    #[serde(default)]
    pub origins: BTreeMap<String, RawOrigin>,
    /// Object-storage origins, by name (routes name them like HTTP origins).
    #[serde(default)]
    pub stores: BTreeMap<String, RawStore>,
    #[serde(default)]
    pub routes: Vec<RawRoute>,
    #[serde(default)]
    pub wasm: RawWasm,
    /// Modules by the name routes use: a `.wasm` file, or settings for a standard module.
    #[serde(default)]
    pub modules: BTreeMap<String, RawModule>,
    /// Rate-limit policies modules name in their `rate-limit` checks.
    #[serde(default)]
    pub rate_limits: BTreeMap<String, RawRateLimit>,
    /// `wasi:http/proxy` components that answer routes (routes name them as `origin`).
    #[serde(default)]
    pub handlers: BTreeMap<String, RawHandler>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHandler {
    /// The component file.
    pub path: String,
    /// Environment variables the component sees (e.g. `EDGE_FUNCTION_CONFIG`).
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Time for the whole exchange; the instance is stopped after it.
    #[serde(default = "handler_timeout_ms")]
    pub timeout_ms: u64,
    #[serde(default = "handler_memory_mib")]
    pub memory_mib: u64,
}

fn handler_timeout_ms() -> u64 {
    30_000
}

fn handler_memory_mib() -> u64 {
    128
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawWasm {
    /// Compiled modules (`.cwasm`); empty for the system's temporary folder.
    pub cache_dir: Option<String>,
    /// Module instances alive at once (one per module per in-flight request).
    pub max_instances: u32,
    /// CPU budget of each hook call, unless the module sets its own.
    pub budget_ms: u64,
    /// Linear memory of each instance, unless the module sets its own.
    pub memory_mib: u64,
    /// Ed25519 public keys (base64) whose signatures the deploy API accepts.
    pub trusted_keys: Vec<String>,
    /// Largest component the deploy API accepts.
    pub max_module_bytes: usize,
}

impl Default for RawWasm {
    fn default() -> Self {
        RawWasm {
            cache_dir: None,
            max_instances: 1000,
            budget_ms: 5,
            memory_mib: 16,
            trusted_keys: Vec::new(),
            max_module_bytes: 32 * 1024 * 1024,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawModule {
    /// A component file; omitted for a standard module.
    pub path: Option<String>,
    pub budget_ms: Option<u64>,
    pub memory_mib: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRateLimit {
    /// `"100/s"`, `"6000/m"`, `"50000/h"`.
    pub rate: String,
    /// Requests allowed at once; defaults to the rate's count.
    pub burst: Option<u32>,
    #[serde(default = "defaults::max_keys")]
    pub max_keys: usize,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStore {
    /// `s3`, `gcs`, `azure` or `fs`.
    pub kind: String,
    pub bucket: Option<String>,
    pub region: Option<String>,
    pub endpoint: Option<String>,
    pub account: Option<String>,
    pub container: Option<String>,
    pub root: Option<String>,
    #[serde(default)]
    pub prefix: String,
    #[serde(default = "defaults::first_byte_timeout_ms")]
    pub first_byte_timeout_ms: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawCache {
    /// Memory for cached responses, in bytes; never exceeded.
    pub max_bytes: u64,
    /// Larger responses pass through without being stored.
    pub max_object_bytes: u64,
    pub shards: usize,
}

impl Default for RawCache {
    fn default() -> Self {
        RawCache {
            max_bytes: 256 * 1024 * 1024,
            max_object_bytes: 16 * 1024 * 1024,
            shards: 16,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdmin {
    /// Plain HTTP; keep it on localhost or a private network.
    #[serde(default = "admin_listen")]
    pub listen: String,
    /// Bearer token every admin request must carry (or `token_file`).
    pub token: Option<String>,
    pub token_file: Option<String>,
}

fn admin_listen() -> String {
    "127.0.0.1:9901".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawServer {
    /// TLS (h1 + h2) on TCP and HTTP/3 on UDP, same port number.
    pub listen: String,
    /// Optional plaintext HTTP/1.1, for use behind a CDN that terminates TLS.
    pub plain_listen: Option<String>,
    /// Tokio worker threads; 0 means one per core.
    pub workers: usize,
    pub drain_timeout_ms: u64,
    pub http3: bool,
    pub alt_svc_max_age: u64,
    /// Pseudonym in `Via` (RFC 9110 §7.6.3).
    pub via_name: String,
    /// The node's region; `edge serve --region NAME` sets it.
    pub region: Option<String>,
    /// The node's name in `Via`, logs and metrics; the environment variable `EDGE_NODE_ID`
    /// overrides it (one config file, many pods), the host name is the default.
    pub node_id: Option<String>,
}

impl Default for RawServer {
    fn default() -> Self {
        RawServer {
            listen: "0.0.0.0:8443".into(),
            plain_listen: None,
            workers: 0,
            drain_timeout_ms: 30_000,
            http3: true,
            alt_svc_max_age: 86_400,
            via_name: "edge".into(),
            region: None,
            node_id: None,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawLimits {
    /// Bytes of request head (request line + fields) per request, all protocols.
    pub max_header_bytes: usize,
    /// Number of request header fields (HTTP/1.1).
    pub max_headers: usize,
    /// Bytes of the request target.
    pub max_uri_bytes: usize,
    /// Bytes of a viewer's request body (413 beyond).
    pub max_request_body_bytes: u64,
    pub header_read_timeout_ms: u64,
    pub idle_timeout_ms: u64,
    /// Slow-read floor: a viewer that takes fewer bytes per second than this while the
    /// node has more for it, over a whole `send_rate_window_ms`, is disconnected. 0: off.
    pub min_send_rate: u64,
    pub send_rate_window_ms: u64,
    pub tls_handshake_timeout_ms: u64,
    /// Concurrent streams per HTTP/2 or HTTP/3 connection.
    pub max_concurrent_streams: u32,
    /// Open connections (TCP + QUIC) per client IP address.
    pub max_connections_per_ip: u32,
    /// QUIC handshakes in progress above which a new client must first prove its address
    /// with a Retry (one more round trip; RFC 9000 §8.1.2). 0: always.
    pub quic_retry_above: u32,
}

impl Default for RawLimits {
    fn default() -> Self {
        RawLimits {
            max_header_bytes: 16 * 1024,
            max_headers: 100,
            max_uri_bytes: 8 * 1024,
            max_request_body_bytes: 64 * 1024 * 1024,
            header_read_timeout_ms: 10_000,
            idle_timeout_ms: 60_000,
            min_send_rate: 1024,
            send_rate_window_ms: 60_000,
            tls_handshake_timeout_ms: 10_000,
            max_concurrent_streams: 128,
            max_connections_per_ip: 256,
            quic_retry_above: 64,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    #[serde(default)]
    pub certs: Vec<RawCert>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCert {
    pub cert: String,
    pub key: String,
    /// SNI names this certificate answers for; required when there is more than one.
    #[serde(default)]
    pub names: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawLogging {
    pub access_log: bool,
    /// A tracing filter, e.g. `info` or `info,origin=debug`.
    pub level: String,
}

impl Default for RawLogging {
    fn default() -> Self {
        RawLogging {
            access_log: true,
            level: "info".into(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOrigin {
    pub primary: String,
    pub secondary: Option<String>,
    #[serde(default = "defaults::connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    #[serde(default = "defaults::first_byte_timeout_ms")]
    pub first_byte_timeout_ms: u64,
    #[serde(default = "defaults::total_timeout_ms")]
    pub total_timeout_ms: u64,
    #[serde(default = "defaults::retries")]
    pub retries: u32,
    pub health_path: Option<String>,
    #[serde(default = "defaults::health_interval_ms")]
    pub health_interval_ms: u64,
    #[serde(default = "defaults::health_timeout_ms")]
    pub health_timeout_ms: u64,
    pub ca_file: Option<String>,
    #[serde(default)]
    pub preserve_host: bool,
    #[serde(default)]
    pub http2: bool,
    #[serde(default = "defaults::max_idle")]
    pub max_idle: usize,
}

mod defaults {
    pub fn max_keys() -> usize {
        100_000
    }
    pub fn connect_timeout_ms() -> u64 {
        2_000
    }
    pub fn first_byte_timeout_ms() -> u64 {
        15_000
    }
    pub fn total_timeout_ms() -> u64 {
        300_000
    }
    pub fn retries() -> u32 {
        1
    }
    pub fn health_interval_ms() -> u64 {
        2_000
    }
    pub fn health_timeout_ms() -> u64 {
        1_000
    }
    pub fn max_idle() -> usize {
        256
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    /// `*`, an exact host, or `*.example.com`.
    #[serde(default = "any_host")]
    pub host: String,
    #[serde(default = "root_prefix")]
    pub prefix: String,
    pub origin: String,
    #[serde(default)]
    pub cache: RawRouteCache,
    /// For logs and for modules (`request.route()`); defaults to host + prefix.
    pub name: Option<String>,
    /// `fail-closed` (default) or `fail-open`: what a failing module does to the request.
    pub on_error: Option<String>,
    /// The module chain: request hooks in this order, response hooks in reverse.
    #[serde(default)]
    pub modules: Vec<RawRouteModule>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRouteModule {
    pub module: String,
    /// The module's own settings, handed to it as JSON.
    pub config: Option<toml::Table>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawRouteCache {
    pub enabled: bool,
    /// Freshness for responses that carry no explicit lifetime.
    pub default_ttl_s: Option<u64>,
    /// Freshness that replaces the origin's (never overrides `no-store` or `private`).
    pub override_ttl_s: Option<u64>,
    /// Request header fields that are part of the cache key.
    pub key_headers: Vec<String>,
    /// Query parameters left out of the cache key (signed-URL credentials).
    pub exclude_query: Vec<String>,
}

impl Default for RawRouteCache {
    fn default() -> Self {
        RawRouteCache {
            enabled: true,
            default_ttl_s: None,
            override_ttl_s: None,
            key_headers: Vec::new(),
            exclude_query: Vec::new(),
        }
    }
}

fn any_host() -> String {
    "*".into()
}

fn root_prefix() -> String {
    "/".into()
}
