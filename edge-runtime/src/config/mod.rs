//! Configuration: one TOML file, optionally merged with a region overlay
//! (`regions/<region>.toml` next to it), turned into a validated [`Config`].
//!
//! Two layers: [`raw`] mirrors the file (serde, defaults, unknown keys rejected); this
//! module checks meaning (addresses, URLs, route → origin references, files that must
//! exist) and resolves paths relative to the config file. Every error names the file, the
//! line and the key.

pub mod raw;
mod source;

use crate::cache::{policy::RoutePolicy, KeySpec, RouteCache};
use crate::ratelimit::{parse_rate, PolicyConfig};
use crate::wasm::registry::ModuleLimits;
use crate::wasm::signing::TrustedKeys;
use crate::wasm::OnError;
use origin::http::{HealthCheck, OriginConfig};
use origin::object::{ObjectConfig, StoreKind};
use raw::RawConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use source::{render, Segment, SourceFile};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A config problem, located: `edge.toml:12: routes[0].origin: unknown origin "cdn"`.
#[derive(Debug, thiserror::Error)]
pub struct ConfigError {
    pub file: PathBuf,
    pub line: Option<usize>,
    pub key: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if !self.key.is_empty() {
            write!(f, ": key `{}`", self.key)?;
        }
        write!(f, ": {}", self.message)
    }
}

#[derive(Clone, Debug)]
pub struct Config {
    pub server: ServerConfig,
    pub limits: Limits,
    pub tls: Vec<CertConfig>,
    pub logging: LoggingConfig,
    pub cache: CacheConfig,
    pub admin: Option<AdminConfig>,
    pub origins: Vec<OriginConfig>,
    pub object_origins: Vec<ObjectConfig>,
    pub routes: Vec<RouteConfig>,
    pub wasm: WasmConfig,
    pub rate_limits: Vec<PolicyConfig>,
    /// `wasi:http/proxy` components that answer routes.
    pub handlers: Vec<HandlerConfig>,
}

#[derive(Clone, Debug)]
pub struct HandlerConfig {
    pub name: String,
    pub path: PathBuf,
    pub settings: crate::wasm::http_handler::HandlerSettings,
}

#[derive(Clone, Debug)]
pub struct WasmConfig {
    pub cache_dir: PathBuf,
    pub max_instances: u32,
    pub default_limits: ModuleLimits,
    pub trusted_keys: TrustedKeys,
    pub max_module_bytes: usize,
    /// Every module some route uses or the config declares, by name.
    pub modules: Vec<ModuleConfig>,
}

#[derive(Clone, Debug)]
pub struct ModuleConfig {
    pub name: String,
    pub source: ModuleSource,
    pub limits: ModuleLimits,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ModuleSource {
    /// Built into `edge`.
    Standard(&'static [u8]),
    File(PathBuf),
}

#[derive(Clone, Debug)]
pub struct RouteModule {
    pub module: String,
    /// The route's table for the module, as JSON.
    pub config_json: String,
}

#[derive(Clone, Debug)]
pub struct CacheConfig {
    pub max_bytes: usize,
    pub max_object_bytes: usize,
    pub shards: usize,
}

#[derive(Clone, Debug)]
pub struct AdminConfig {
    pub listen: SocketAddr,
    pub token: String,
}

#[derive(Clone, Debug)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub plain_listen: Option<SocketAddr>,
    pub workers: usize,
    pub drain_timeout: Duration,
    pub http3: bool,
    pub alt_svc_max_age: u64,
    pub via_name: String,
    pub identity: Identity,
}

/// Who this node is, in `Via`, logs, metrics and the status page.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Identity {
    /// Empty when the node runs without a region.
    pub region: String,
    pub node_id: String,
}

impl Identity {
    /// `Via`'s received-by with the identity as its comment (RFC 9110 §7.6.3):
    /// `edge (eu-west node-7)`.
    pub fn via(&self, pseudonym: &str) -> String {
        if self.region.is_empty() {
            format!("{pseudonym} ({})", self.node_id)
        } else {
            format!("{pseudonym} ({} {})", self.region, self.node_id)
        }
    }
}

/// The host name (Linux), else `edge`.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .ok()
        .filter(|s| valid_identity(s))
        .unwrap_or_else(|| "edge".into())
}

/// Region and node names go into a header comment, metric labels and log fields: short
/// and plain.
fn valid_identity(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

#[derive(Clone, Debug)]
pub struct Limits {
    pub max_header_bytes: usize,
    pub max_headers: usize,
    pub max_uri_bytes: usize,
    pub max_request_body_bytes: u64,
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    /// Bytes per second; 0 when the slow-read check is off.
    pub min_send_rate: u64,
    pub send_rate_window: Duration,
    pub tls_handshake_timeout: Duration,
    pub max_concurrent_streams: u32,
    pub max_connections_per_ip: u32,
    pub quic_retry_above: u32,
}

#[derive(Clone, Debug)]
pub struct CertConfig {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub names: Vec<String>,
}

#[derive(Clone, Debug)]
pub struct LoggingConfig {
    pub access_log: bool,
    pub level: String,
}

#[derive(Clone, Debug)]
pub struct RouteConfig {
    pub host: String,
    pub prefix: String,
    pub origin: String,
    /// `None` when the route does not cache.
    pub cache: Option<RouteCache>,
    pub name: String,
    pub on_error: OnError,
    pub modules: Vec<RouteModule>,
}

/// hyper refuses a smaller HTTP/1.1 read buffer.
const MIN_HEADER_BYTES: usize = 8192;

impl Config {
    /// Loads `path`, merges `regions/<region>.toml` from the same folder when given, and
    /// validates the result.
    pub fn load(path: &Path, region: Option<&str>) -> Result<Config, ConfigError> {
        let base = SourceFile::read(path).map_err(|(line, message)| ConfigError {
            file: path.to_owned(),
            line,
            key: String::new(),
            message,
        })?;
        let mut files = vec![base];
        if let Some(region) = region {
            if !valid_identity(region) {
                return Err(ConfigError {
                    file: path.to_owned(),
                    line: None,
                    key: "server.region".into(),
                    message: format!(
                        "region `{region}` must be 1–253 letters, digits, `-`, `_` or `.`"
                    ),
                });
            }
            let overlay_path = path
                .parent()
                .unwrap_or(Path::new("."))
                .join("regions")
                .join(format!("{region}.toml"));
            let overlay =
                SourceFile::read(&overlay_path).map_err(|(line, message)| ConfigError {
                    file: overlay_path.clone(),
                    line,
                    key: String::new(),
                    message: format!("region overlay `{region}`: {message}"),
                })?;
            files.push(overlay);
        }
        let mut table = toml::Table::new();
        for file in &files {
            let t = file.table().map_err(|message| ConfigError {
                file: file.path.clone(),
                line: None,
                key: String::new(),
                message,
            })?;
            source::merge(&mut table, t);
        }
        if let Some(region) = region {
            // The region named on the command line is the node's region.
            let mut server = toml::Table::new();
            server.insert("region".into(), region.into());
            let mut named = toml::Table::new();
            named.insert("server".into(), server.into());
            source::merge(&mut table, named);
        }
        let dir = path.parent().unwrap_or(Path::new(".")).to_owned();
        Config::from_table(table, &dir).map_err(|e| e.locate(&files))
    }

    /// Validates a config given as TOML text (no overlay; paths relative to `dir`).
    pub fn from_toml(text: &str, dir: &Path) -> Result<Config, String> {
        let table: toml::Table = toml::from_str(text).map_err(|e| e.to_string())?;
        Config::from_table(table, dir).map_err(|e| format!("{}: {}", render(&e.path), e.message))
    }

    fn from_table(table: toml::Table, dir: &Path) -> Result<Config, Unlocated> {
        let raw: RawConfig =
            serde_path_to_error::deserialize(toml::Value::Table(table)).map_err(|e| {
                let mut path = serde_path(e.path());
                let message = e.inner().message().to_owned();
                // Point at an unknown field itself, not only at its table.
                if let Some(name) = message
                    .strip_prefix("unknown field `")
                    .and_then(|m| m.split('`').next())
                {
                    if path.last() != Some(&Segment::Key(name.to_owned())) {
                        path.push(Segment::Key(name.to_owned()));
                    }
                }
                Unlocated { path, message }
            })?;
        validate(raw, dir)
    }
}

/// A validation failure before its file and line are known.
struct Unlocated {
    path: Vec<Segment>,
    message: String,
}

impl Unlocated {
    fn at(path: &[&str], message: impl Into<String>) -> Self {
        Unlocated {
            path: path.iter().map(|k| key_or_index(k)).collect(),
            message: message.into(),
        }
    }

    /// The overlay wins when it sets the key, since its value is the one in effect.
    fn locate(self, files: &[SourceFile]) -> ConfigError {
        let found = files
            .iter()
            .rev()
            .find_map(|f| f.line_of(&self.path).map(|line| (f, line)));
        let (file, line) = match found {
            Some((f, line)) => (f.path.clone(), Some(line)),
            None => (files[0].path.clone(), None),
        };
        ConfigError {
            file,
            line,
            key: render(&self.path),
            message: self.message,
        }
    }
}

fn key_or_index(k: &str) -> Segment {
    match k.parse::<usize>() {
        Ok(i) => Segment::Index(i),
        Err(_) => Segment::Key(k.to_owned()),
    }
}

fn serde_path(path: &serde_path_to_error::Path) -> Vec<Segment> {
    path.iter()
        .filter_map(|s| match s {
            serde_path_to_error::Segment::Seq { index } => Some(Segment::Index(*index)),
            serde_path_to_error::Segment::Map { key } => Some(Segment::Key(key.clone())),
            serde_path_to_error::Segment::Enum { variant } => Some(Segment::Key(variant.clone())),
            serde_path_to_error::Segment::Unknown => None,
        })
        .collect()
}

fn validate(raw: RawConfig, dir: &Path) -> Result<Config, Unlocated> {
    let addr = |key: &[&str], value: &str| {
        value.parse::<SocketAddr>().map_err(|_| {
            Unlocated::at(
                key,
                format!("`{value}` is not an address like 0.0.0.0:8443"),
            )
        })
    };
    let server = ServerConfig {
        listen: addr(&["server", "listen"], &raw.server.listen)?,
        plain_listen: match &raw.server.plain_listen {
            Some(a) => Some(addr(&["server", "plain_listen"], a)?),
            None => None,
        },
        workers: raw.server.workers,
        drain_timeout: Duration::from_millis(raw.server.drain_timeout_ms),
        http3: raw.server.http3,
        alt_svc_max_age: raw.server.alt_svc_max_age,
        via_name: raw.server.via_name.clone(),
        identity: Identity {
            region: raw.server.region.clone().unwrap_or_default(),
            node_id: match std::env::var("EDGE_NODE_ID") {
                Ok(id) if !id.is_empty() => id,
                _ => raw.server.node_id.clone().unwrap_or_else(host_name),
            },
        },
    };
    if server.via_name.is_empty() || !server.via_name.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(Unlocated::at(
            &["server", "via_name"],
            "must be a non-empty token without spaces",
        ));
    }
    if !server.identity.region.is_empty() && !valid_identity(&server.identity.region) {
        return Err(Unlocated::at(
            &["server", "region"],
            "must be 1–253 letters, digits, `-`, `_` or `.`",
        ));
    }
    if !valid_identity(&server.identity.node_id) {
        return Err(Unlocated::at(
            &["server", "node_id"],
            "must be 1–253 letters, digits, `-`, `_` or `.` (EDGE_NODE_ID overrides it)",
        ));
    }

    let l = &raw.limits;
    if l.max_header_bytes < MIN_HEADER_BYTES {
        return Err(Unlocated::at(
            &["limits", "max_header_bytes"],
            format!("must be at least {MIN_HEADER_BYTES}"),
        ));
    }
    for (key, value) in [
        ("max_headers", l.max_headers as u64),
        ("max_uri_bytes", l.max_uri_bytes as u64),
        ("max_request_body_bytes", l.max_request_body_bytes),
        ("header_read_timeout_ms", l.header_read_timeout_ms),
        ("idle_timeout_ms", l.idle_timeout_ms),
        ("send_rate_window_ms", l.send_rate_window_ms),
        ("tls_handshake_timeout_ms", l.tls_handshake_timeout_ms),
        (
            "max_concurrent_streams",
            u64::from(l.max_concurrent_streams),
        ),
        (
            "max_connections_per_ip",
            u64::from(l.max_connections_per_ip),
        ),
    ] {
        if value == 0 {
            return Err(Unlocated::at(&["limits", key], "must be greater than 0"));
        }
    }
    let limits = Limits {
        max_header_bytes: l.max_header_bytes,
        max_headers: l.max_headers,
        max_uri_bytes: l.max_uri_bytes,
        max_request_body_bytes: l.max_request_body_bytes,
        header_read_timeout: Duration::from_millis(l.header_read_timeout_ms),
        idle_timeout: Duration::from_millis(l.idle_timeout_ms),
        min_send_rate: l.min_send_rate,
        send_rate_window: Duration::from_millis(l.send_rate_window_ms),
        tls_handshake_timeout: Duration::from_millis(l.tls_handshake_timeout_ms),
        max_concurrent_streams: l.max_concurrent_streams,
        max_connections_per_ip: l.max_connections_per_ip,
        quic_retry_above: l.quic_retry_above,
    };

    let mut tls = Vec::new();
    for (i, cert) in raw.tls.certs.iter().enumerate() {
        let idx = i.to_string();
        let cert_path = existing_file(dir, &cert.cert, &["tls", "certs", &idx, "cert"])?;
        let key_path = existing_file(dir, &cert.key, &["tls", "certs", &idx, "key"])?;
        // The first certificate is the default (no SNI, or an unknown name); any other
        // would never be chosen without names.
        if i > 0 && cert.names.is_empty() {
            return Err(Unlocated::at(
                &["tls", "certs", &idx],
                "`names` (SNI) is required for every certificate after the first, which is the default",
            ));
        }
        tls.push(CertConfig {
            cert: cert_path,
            key: key_path,
            names: cert.names.iter().map(|n| n.to_ascii_lowercase()).collect(),
        });
    }

    let mut origins = Vec::new();
    for (name, o) in &raw.origins {
        let at = |key: &'static str| vec!["origins", name.as_str(), key];
        let mut upstreams = vec![upstream_uri(&o.primary, &at("primary"))?];
        if let Some(s) = &o.secondary {
            upstreams.push(upstream_uri(s, &at("secondary"))?);
        }
        for (key, value) in [
            ("connect_timeout_ms", o.connect_timeout_ms),
            ("first_byte_timeout_ms", o.first_byte_timeout_ms),
            ("total_timeout_ms", o.total_timeout_ms),
        ] {
            if value == 0 {
                return Err(Unlocated::at(&at(key), "must be greater than 0"));
            }
        }
        let health = match &o.health_path {
            Some(p) if !p.starts_with('/') => {
                return Err(Unlocated::at(&at("health_path"), "must start with `/`"));
            }
            Some(p) => Some(HealthCheck {
                path: p.clone(),
                interval: Duration::from_millis(o.health_interval_ms.max(10)),
                timeout: Duration::from_millis(o.health_timeout_ms.max(10)),
                unhealthy_after: 2,
                healthy_after: 2,
            }),
            None => None,
        };
        let ca_roots = match &o.ca_file {
            Some(f) => {
                let path = existing_file(dir, f, &at("ca_file"))?;
                let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&path)
                    .and_then(|it| it.collect::<Result<_, _>>())
                    .map_err(|e| {
                        Unlocated::at(&at("ca_file"), format!("{}: {e}", path.display()))
                    })?;
                if certs.is_empty() {
                    return Err(Unlocated::at(
                        &at("ca_file"),
                        "no PEM certificate in the file",
                    ));
                }
                Some(certs)
            }
            None => None,
        };
        origins.push(OriginConfig {
            name: name.clone(),
            upstreams,
            connect_timeout: Duration::from_millis(o.connect_timeout_ms),
            first_byte_timeout: Duration::from_millis(o.first_byte_timeout_ms),
            total_timeout: Duration::from_millis(o.total_timeout_ms),
            retries: o.retries,
            health,
            ca_roots,
            preserve_host: o.preserve_host,
            http2_only: o.http2,
            max_idle_per_upstream: o.max_idle,
            via_name: server.identity.via(&server.via_name),
        });
    }

    let mut object_origins = Vec::new();
    for (name, st) in &raw.stores {
        let at = |key: &'static str| vec!["stores", name.as_str(), key];
        if raw.origins.contains_key(name) {
            return Err(Unlocated::at(
                &["stores", name],
                format!("`{name}` is also an HTTP origin: names must be unique"),
            ));
        }
        let need = |value: &Option<String>, key: &'static str| {
            value.clone().filter(|v| !v.is_empty()).ok_or_else(|| {
                Unlocated::at(&at(key), format!("required for kind = \"{}\"", st.kind))
            })
        };
        let kind = match st.kind.as_str() {
            "s3" => StoreKind::S3 {
                bucket: need(&st.bucket, "bucket")?,
                region: st.region.clone(),
                endpoint: st.endpoint.clone(),
            },
            "gcs" => StoreKind::Gcs {
                bucket: need(&st.bucket, "bucket")?,
            },
            "azure" => StoreKind::Azure {
                account: need(&st.account, "account")?,
                container: need(&st.container, "container")?,
                endpoint: st.endpoint.clone(),
            },
            "fs" => {
                let root = dir.join(need(&st.root, "root")?);
                if !root.is_dir() {
                    return Err(Unlocated::at(
                        &at("root"),
                        format!("{} is not a directory", root.display()),
                    ));
                }
                StoreKind::Fs { root }
            }
            other => {
                return Err(Unlocated::at(
                    &at("kind"),
                    format!("unknown store kind `{other}` (s3, gcs, azure, fs)"),
                ))
            }
        };
        if let Some(endpoint) = &st.endpoint {
            upstream_uri(endpoint, &at("endpoint"))?;
        }
        object_origins.push(ObjectConfig {
            name: name.clone(),
            kind,
            prefix: st.prefix.clone(),
            first_byte_timeout: Duration::from_millis(st.first_byte_timeout_ms.max(1)),
        });
    }

    let mut routes = Vec::new();
    let mut handlers = Vec::new();
    for (name, h) in &raw.handlers {
        let at = |key: &'static str| vec!["handlers", name.as_str(), key];
        if raw.origins.contains_key(name) || raw.stores.contains_key(name) {
            return Err(Unlocated::at(
                &["handlers", name],
                format!("`{name}` is also an origin or store name"),
            ));
        }
        let path = existing_file(dir, &h.path, &at("path"))?;
        if h.timeout_ms == 0 || h.timeout_ms > 600_000 {
            return Err(Unlocated::at(&at("timeout_ms"), "must be 1–600000"));
        }
        if h.memory_mib == 0 || h.memory_mib > 4096 {
            return Err(Unlocated::at(&at("memory_mib"), "must be 1–4096"));
        }
        handlers.push(HandlerConfig {
            name: name.clone(),
            path,
            settings: crate::wasm::http_handler::HandlerSettings {
                env: h.env.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
                timeout: Duration::from_millis(h.timeout_ms),
                memory_bytes: (h.memory_mib as usize) << 20,
            },
        });
    }

    for (i, r) in raw.routes.iter().enumerate() {
        let idx = i.to_string();
        let handled = raw.handlers.contains_key(&r.origin);
        if !raw.origins.contains_key(&r.origin) && !raw.stores.contains_key(&r.origin) && !handled {
            let known: Vec<&str> = raw
                .origins
                .keys()
                .chain(raw.stores.keys())
                .chain(raw.handlers.keys())
                .map(String::as_str)
                .collect();
            return Err(Unlocated::at(
                &["routes", &idx, "origin"],
                format!(
                    "unknown origin `{}` (configured: {})",
                    r.origin,
                    known.join(", ")
                ),
            ));
        }
        if !r.prefix.starts_with('/') {
            return Err(Unlocated::at(
                &["routes", &idx, "prefix"],
                "must start with `/`",
            ));
        }
        let host = r.host.to_ascii_lowercase();
        let valid_host = host == "*"
            || host
                .strip_prefix("*.")
                .unwrap_or(&host)
                .split('.')
                .all(|label| {
                    !label.is_empty()
                        && label
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                });
        if !valid_host {
            return Err(Unlocated::at(
                &["routes", &idx, "host"],
                format!("`{}` is not `*`, a host name, or `*.domain`", r.host),
            ));
        }
        let c = &r.cache;
        // A handler answers for itself (it fetches and caches as its platform would).
        let cache = if c.enabled && !handled {
            let mut headers = Vec::new();
            for (h, name) in c.key_headers.iter().enumerate() {
                let parsed = http::HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
                    Unlocated::at(
                        &["routes", &idx, "cache", "key_headers", &h.to_string()],
                        format!("`{name}` is not a header name"),
                    )
                })?;
                headers.push(parsed);
            }
            Some(RouteCache {
                policy: RoutePolicy {
                    default_ttl: c.default_ttl_s.map(Duration::from_secs),
                    override_ttl: c.override_ttl_s.map(Duration::from_secs),
                },
                key: KeySpec {
                    headers,
                    exclude_query: c.exclude_query.clone(),
                },
            })
        } else {
            None
        };
        let on_error = match r.on_error.as_deref() {
            None | Some("fail-closed") => OnError::FailClosed,
            Some("fail-open") => OnError::FailOpen,
            Some(other) => {
                return Err(Unlocated::at(
                    &["routes", &idx, "on_error"],
                    format!("`{other}` is not `fail-closed` or `fail-open`"),
                ))
            }
        };
        let mut modules = Vec::new();
        for (m, rm) in r.modules.iter().enumerate() {
            let m = m.to_string();
            let known =
                raw.modules.contains_key(&rm.module) || standard_module(&rm.module).is_some();
            if !known {
                return Err(Unlocated::at(
                    &["routes", &idx, "modules", &m, "module"],
                    format!(
                        "unknown module `{}` (standard modules: {}; declare others under [modules.{}] with a path)",
                        rm.module,
                        standard_names().join(", "),
                        rm.module
                    ),
                ));
            }
            let config_json = match &rm.config {
                Some(table) => {
                    let at: Vec<&str> = vec!["routes", &idx, "modules", &m, "config"];
                    let table = read_module_files(table, dir, &at)?;
                    serde_json::to_string(&table).map_err(|e| {
                        Unlocated::at(&["routes", &idx, "modules", &m, "config"], e.to_string())
                    })?
                }
                None => "{}".to_owned(),
            };
            check_standard_config(&rm.module, &config_json, &raw.rate_limits)
                .map_err(|e| Unlocated::at(&["routes", &idx, "modules", &m, "config"], e))?;
            modules.push(RouteModule {
                module: rm.module.clone(),
                config_json,
            });
        }
        // Modules run in route order: a rewrite before token-auth would never see the
        // token it is meant to carry.
        let position = |name: &str| modules.iter().position(|m| m.module == name);
        if let (Some(rewrite), Some(auth)) = (position("manifest-rewrite"), position("token-auth"))
        {
            if rewrite < auth {
                return Err(Unlocated::at(
                    &["routes", &idx, "modules", &rewrite.to_string(), "module"],
                    "manifest-rewrite must come after token-auth on the route: it carries the token token-auth validates",
                ));
            }
        }
        // Token parameters never split the cache: every viewer's signed URL for an object
        // is the same stored copy. Nor does a device class: manifests are cached as the
        // origin sent them and rewritten per viewer.
        let mut cache = cache;
        if let Some(cache) = &mut cache {
            let mut unkeyed: Vec<String> = Vec::new();
            for m in &modules {
                match m.module.as_str() {
                    "token-auth" => {
                        if let Ok(config) = edge_module_token_auth::Config::parse(&m.config_json) {
                            unkeyed.extend(config.query_params().into_iter().map(str::to_owned));
                        }
                    }
                    "manifest-rewrite" => {
                        if let Ok(config) =
                            edge_module_manifest_rewrite::parse_config(&m.config_json)
                        {
                            unkeyed.extend(
                                config.unkeyed_query_params().into_iter().map(str::to_owned),
                            );
                        }
                    }
                    _ => {}
                }
            }
            for name in unkeyed {
                if !cache.key.exclude_query.contains(&name) {
                    cache.key.exclude_query.push(name);
                }
            }
        }
        routes.push(RouteConfig {
            name: r
                .name
                .clone()
                .unwrap_or_else(|| format!("{host}{}", r.prefix)),
            host,
            prefix: r.prefix.clone(),
            origin: r.origin.clone(),
            cache,
            on_error,
            modules,
        });
    }
    if routes.is_empty() {
        return Err(Unlocated::at(&["routes"], "at least one route is required"));
    }

    let cache = CacheConfig {
        max_bytes: usize::try_from(raw.cache.max_bytes).unwrap_or(usize::MAX),
        max_object_bytes: usize::try_from(raw.cache.max_object_bytes).unwrap_or(usize::MAX),
        shards: raw.cache.shards,
    };
    if cache.shards == 0 || cache.shards > 1024 {
        return Err(Unlocated::at(
            &["cache", "shards"],
            "must be between 1 and 1024",
        ));
    }
    if cache.max_object_bytes > cache.max_bytes / cache.shards {
        return Err(Unlocated::at(
            &["cache", "max_object_bytes"],
            format!(
                "must not exceed max_bytes / shards ({} bytes): each shard must hold its largest object",
                cache.max_bytes / cache.shards
            ),
        ));
    }
    let admin = match &raw.admin {
        Some(a) => {
            let listen = addr(&["admin", "listen"], &a.listen)?;
            let token = match (&a.token, &a.token_file) {
                (Some(t), None) => t.trim().to_owned(),
                (None, Some(f)) => {
                    let path = existing_file(dir, f, &["admin", "token_file"])?;
                    std::fs::read_to_string(&path)
                        .map_err(|e| {
                            Unlocated::at(
                                &["admin", "token_file"],
                                format!("{}: {e}", path.display()),
                            )
                        })?
                        .trim()
                        .to_owned()
                }
                (Some(_), Some(_)) => {
                    return Err(Unlocated::at(
                        &["admin", "token_file"],
                        "give `token` or `token_file`, not both",
                    ))
                }
                (None, None) => {
                    return Err(Unlocated::at(
                        &["admin"],
                        "a bearer `token` (or `token_file`) is required",
                    ))
                }
            };
            if token.len() < 16 {
                return Err(Unlocated::at(
                    &["admin", "token"],
                    "must be at least 16 characters",
                ));
            }
            Some(AdminConfig { listen, token })
        }
        None => None,
    };

    let wasm = wasm_config(&raw, dir, &routes)?;
    let mut rate_limits = Vec::new();
    for (name, rl) in &raw.rate_limits {
        let (count, period) =
            parse_rate(&rl.rate).map_err(|e| Unlocated::at(&["rate_limits", name, "rate"], e))?;
        if rl.burst == Some(0) {
            return Err(Unlocated::at(
                &["rate_limits", name, "burst"],
                "must be greater than 0",
            ));
        }
        if rl.max_keys == 0 {
            return Err(Unlocated::at(
                &["rate_limits", name, "max_keys"],
                "must be greater than 0",
            ));
        }
        rate_limits.push(PolicyConfig {
            name: name.clone(),
            period,
            burst: rl.burst.unwrap_or(count),
            max_keys: rl.max_keys,
        });
    }

    Ok(Config {
        server,
        limits,
        tls,
        cache,
        admin,
        wasm,
        rate_limits,
        handlers,
        logging: LoggingConfig {
            access_log: raw.logging.access_log,
            level: raw.logging.level,
        },
        origins,
        object_origins,
        routes,
    })
}

/// The standard module embedded under `name`, if any.
pub fn standard_module(name: &str) -> Option<&'static [u8]> {
    edge_module_artifacts::standard::ALL
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, bytes)| *bytes)
}

fn standard_names() -> Vec<&'static str> {
    edge_module_artifacts::standard::ALL
        .iter()
        .map(|(n, _)| *n)
        .collect()
}

fn wasm_config(
    raw: &RawConfig,
    dir: &Path,
    routes: &[RouteConfig],
) -> Result<WasmConfig, Unlocated> {
    let w = &raw.wasm;
    let mib = |v: u64, key: &[&str]| {
        if v == 0 || v > 4096 {
            Err(Unlocated::at(key, "must be between 1 and 4096 MiB"))
        } else {
            Ok(v as usize * 1024 * 1024)
        }
    };
    let budget = |v: u64, key: &[&str]| {
        if v == 0 || v > 60_000 {
            Err(Unlocated::at(key, "must be between 1 and 60000 ms"))
        } else {
            Ok(Duration::from_millis(v))
        }
    };
    let default_limits = ModuleLimits {
        budget: budget(w.budget_ms, &["wasm", "budget_ms"])?,
        memory_bytes: mib(w.memory_mib, &["wasm", "memory_mib"])?,
    };
    if w.max_instances == 0 {
        return Err(Unlocated::at(
            &["wasm", "max_instances"],
            "must be greater than 0",
        ));
    }
    let mut trusted = Vec::new();
    for (i, key) in w.trusted_keys.iter().enumerate() {
        TrustedKeys::parse(std::slice::from_ref(key))
            .map_err(|e| Unlocated::at(&["wasm", "trusted_keys", &i.to_string()], e.to_string()))?;
        trusted.push(key.clone());
    }
    let trusted_keys = TrustedKeys::parse(&trusted).unwrap_or_default();
    let mut modules = Vec::new();
    for (name, m) in &raw.modules {
        let at = |key: &'static str| vec!["modules", name.as_str(), key];
        let source = match &m.path {
            Some(p) => ModuleSource::File(existing_file(dir, p, &at("path"))?),
            None => ModuleSource::Standard(standard_module(name).ok_or_else(|| {
                Unlocated::at(
                    &["modules", name],
                    format!(
                        "`{name}` is not a standard module ({}): give a `path` to its .wasm file",
                        standard_names().join(", ")
                    ),
                )
            })?),
        };
        let limits = ModuleLimits {
            budget: match m.budget_ms {
                Some(v) => budget(v, &at("budget_ms"))?,
                None => standard_limits(name, default_limits).budget,
            },
            memory_bytes: match m.memory_mib {
                Some(v) => mib(v, &at("memory_mib"))?,
                None => standard_limits(name, default_limits).memory_bytes,
            },
        };
        modules.push(ModuleConfig {
            name: name.clone(),
            source,
            limits,
        });
    }
    // Standard modules that routes use without declaring them.
    for route in routes {
        for rm in &route.modules {
            if modules.iter().all(|m| m.name != rm.module) {
                if let Some(bytes) = standard_module(&rm.module) {
                    modules.push(ModuleConfig {
                        name: rm.module.clone(),
                        source: ModuleSource::Standard(bytes),
                        limits: standard_limits(&rm.module, default_limits),
                    });
                }
            }
        }
    }
    let cache_dir = match &w.cache_dir {
        Some(d) if !d.is_empty() => dir.join(d),
        // Per user: the folder must be private to be used (see wasm::compile_cache).
        _ => std::env::temp_dir().join(format!(
            "edge-module-cache-{}",
            crate::wasm::compile_cache::current_uid().unwrap_or(0)
        )),
    };
    Ok(WasmConfig {
        cache_dir,
        max_instances: w.max_instances,
        default_limits,
        trusted_keys,
        max_module_bytes: w.max_module_bytes,
        modules,
    })
}

/// A standard module's limits when the config sets none: the WAF holds a compiled rule
/// set (CRS at every paranoia level: tens of MiB) in its resident instances, and a request
/// with a large body runs hundreds of rules over it.
fn standard_limits(module: &str, default: ModuleLimits) -> ModuleLimits {
    match module {
        "waf" => ModuleLimits {
            memory_bytes: default.memory_bytes.max(256 << 20),
            budget: default.budget.max(Duration::from_millis(50)),
        },
        _ => default,
    }
}

/// The standard modules whose config the node can check at load, so a mistake is a config
/// error with its line rather than a failing request.
fn check_standard_config(
    module: &str,
    json: &str,
    policies: &std::collections::BTreeMap<String, raw::RawRateLimit>,
) -> Result<(), String> {
    let checked = match module {
        "token-auth" => edge_module_token_auth::Config::parse(json).map(|_| ()),
        "rate-limit" => edge_module_rate_limit::Config::parse(json).and_then(|plan| {
            match plan.config.rules.iter().position(|r| !policies.contains_key(&r.policy)) {
                None => Ok(()),
                Some(i) => Err(format!(
                    "rate-limit config: rules[{i}].policy `{}` is not a policy of [rate_limits] (configured: {})",
                    plan.config.rules[i].policy,
                    policies.keys().cloned().collect::<Vec<_>>().join(", ")
                )),
            }
        }),
        "manifest-rewrite" => edge_module_manifest_rewrite::parse_config(json)
            .map(|_| ())
            .map_err(|e| format!("manifest-rewrite config: {e}")),
        // The rule set compiles here as in the module: a rule that does not compile is
        // a config error naming its file, line and rule id, and a reload keeps the rules
        // that were serving.
        "waf" => edge_module_waf::config::Config::parse(json).and_then(|c| {
            c.compile().map(|_| ()).map_err(|e| {
                let all: Vec<String> = e.errors.iter().map(|p| p.to_string()).collect();
                format!("waf rules: {}", all.join("; "))
            })
        }),
        _ => Ok(()),
    };
    // serde_json's position is in the JSON the node made, not in the file: drop it.
    checked.map_err(|e| match e.rfind(" at line ") {
        Some(at) => e[..at].to_owned(),
        None => e,
    })
}

/// Modules cannot read files, so the node reads them: in a module's table, a key ending
/// in `_file` whose value is a path (or a table of paths) becomes the key without the
/// suffix with the file's text (or a table of texts), e.g. `key_file = "k.pem"` →
/// `key = "-----BEGIN…"`; a `.json` file arrives as its JSON value (`jwks_file =
/// "jwks.json"` → `jwks = {"keys": […]}`). Paths are relative to the config file.
fn read_module_files(
    table: &toml::Table,
    dir: &Path,
    at: &[&str],
) -> Result<toml::Table, Unlocated> {
    let read = |value: &str, key: &[&str]| -> Result<toml::Value, Unlocated> {
        let path = existing_file(dir, value, key)?;
        let text = std::fs::read_to_string(&path)
            .map_err(|e| Unlocated::at(key, format!("reading {}: {e}", path.display())))?;
        if path.extension().is_some_and(|e| e == "json") {
            // JSON arrives as JSON (a JWKS), so the module parses it once, with the rest.
            let json: serde_json::Value = serde_json::from_str(&text)
                .map_err(|e| Unlocated::at(key, format!("{} is not JSON: {e}", path.display())))?;
            return toml::Value::try_from(json).map_err(|e| {
                Unlocated::at(
                    key,
                    format!("{}: {e} (JSON null has no TOML form)", path.display()),
                )
            });
        }
        Ok(toml::Value::String(text))
    };
    let mut out = toml::Table::new();
    for (key, value) in table {
        let mut here = at.to_vec();
        here.push(key);
        if let Some(name) = key.strip_suffix("_dir") {
            let toml::Value::String(path) = value else {
                return Err(Unlocated::at(&here, "a `_dir` key holds a folder path"));
            };
            if table.contains_key(name) {
                return Err(Unlocated::at(
                    &here,
                    format!("both `{name}` and `{key}` are set; keep one"),
                ));
            }
            out.insert(
                name.to_owned(),
                toml::Value::Table(read_dir_texts(dir, path, &here)?),
            );
            continue;
        }
        let Some(name) = key.strip_suffix("_file") else {
            let value = match value {
                toml::Value::Table(t) => toml::Value::Table(read_module_files(t, dir, &here)?),
                other => other.clone(),
            };
            out.insert(key.clone(), value);
            continue;
        };
        let value = match value {
            toml::Value::String(path) => read(path, &here)?,
            toml::Value::Table(paths) => {
                let mut texts = toml::Table::new();
                for (k, v) in paths {
                    let mut at_k = here.clone();
                    at_k.push(k);
                    let path = v.as_str().ok_or_else(|| {
                        Unlocated::at(&at_k, "a `_file` table holds file paths (strings)")
                    })?;
                    texts.insert(k.clone(), read(path, &at_k)?);
                }
                toml::Value::Table(texts)
            }
            _ => {
                return Err(Unlocated::at(
                    &here,
                    "a `_file` key holds a file path (or a table of them)",
                ))
            }
        };
        if table.contains_key(name) {
            return Err(Unlocated::at(
                &here,
                format!("both `{name}` and `{key}` are set; keep one"),
            ));
        }
        out.insert(name.to_owned(), value);
    }
    Ok(out)
}

/// Every file directly in a folder (`rules_dir = "crs/rules"`), by name, as text: a
/// module's rule and data files travel in its config.
fn read_dir_texts(dir: &Path, value: &str, key: &[&str]) -> Result<toml::Table, Unlocated> {
    /// A rule set is a few MiB (CRS v4: 1.3 MiB); more is a mistake (a wrong folder).
    const MAX_TOTAL: u64 = 32 << 20;
    let folder = dir.join(value);
    let entries = std::fs::read_dir(&folder)
        .map_err(|e| Unlocated::at(key, format!("folder {}: {e}", folder.display())))?;
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .filter(|p| {
            !p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        })
        .collect();
    paths.sort();
    let mut total = 0u64;
    let mut out = toml::Table::new();
    for path in paths {
        total += path.metadata().map(|m| m.len()).unwrap_or(0);
        if total > MAX_TOTAL {
            return Err(Unlocated::at(
                key,
                format!("folder {} holds more than 32 MiB", folder.display()),
            ));
        }
        let text = std::fs::read_to_string(&path)
            .map_err(|e| Unlocated::at(key, format!("reading {}: {e}", path.display())))?;
        let name = path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        out.insert(name, toml::Value::String(text));
    }
    Ok(out)
}

fn existing_file(dir: &Path, value: &str, key: &[&str]) -> Result<PathBuf, Unlocated> {
    let path = dir.join(value);
    if path.is_file() {
        Ok(path)
    } else {
        Err(Unlocated::at(
            key,
            format!("file {} does not exist", path.display()),
        ))
    }
}

fn upstream_uri(value: &str, key: &[&str]) -> Result<http::Uri, Unlocated> {
    let uri: http::Uri = value
        .parse()
        .map_err(|_| Unlocated::at(key, format!("`{value}` is not a URL")))?;
    match (uri.scheme_str(), uri.authority()) {
        (Some("http" | "https"), Some(_)) if uri.query().is_none() => Ok(uri),
        _ => Err(Unlocated::at(
            key,
            format!("`{value}` must be an http:// or https:// URL with a host and no query"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[server]
listen = "127.0.0.1:8443"

[origins.media]
primary = "http://127.0.0.1:9000"
secondary = "http://127.0.0.1:9001"
health_path = "/health"

[[routes]]
host = "*"
prefix = "/"
origin = "media"
"#;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
        path
    }

    fn error_for(text: &str) -> ConfigError {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), "edge.toml", text);
        Config::load(&path, None).expect_err("config should be rejected")
    }

    /// A module's limits when neither `[wasm]` nor its own table sets them: 5 ms of CPU
    /// per hook call and 16 MiB of memory (the WAF, which holds a compiled rule set, gets
    /// at least 50 ms and 256 MiB); the pool holds 1,000 instances.
    #[test]
    fn module_limits_default_to_5_ms_and_16_mib() {
        let dir = tempfile::tempdir().unwrap();
        let text = format!(
            "{GOOD}\n[[routes]]\nprefix = \"/m\"\norigin = \"media\"\n\
             [[routes.modules]]\nmodule = \"headers\"\n[[routes.modules]]\nmodule = \"waf\"\n\
             config = {{ before = \"SecRule ARGS \\\"@contains x\\\" \\\"id:1,deny\\\"\" }}\n"
        );
        let c = Config::load(&write(dir.path(), "edge.toml", &text), None).unwrap();
        let defaults = c.wasm.default_limits;
        assert_eq!(defaults.budget, Duration::from_millis(5));
        assert_eq!(defaults.memory_bytes, 16 << 20);
        assert_eq!(c.wasm.max_instances, 1000);
        let of = |name: &str| {
            c.wasm
                .modules
                .iter()
                .find(|m| m.name == name)
                .unwrap()
                .limits
        };
        assert_eq!(of("headers").budget, Duration::from_millis(5));
        assert_eq!(of("headers").memory_bytes, 16 << 20);
        assert_eq!(of("waf").budget, Duration::from_millis(50));
        assert_eq!(of("waf").memory_bytes, 256 << 20);
    }

    #[test]
    fn good_config_loads() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), "edge.toml", GOOD);
        let c = Config::load(&path, None).unwrap();
        assert_eq!(c.origins[0].upstreams.len(), 2);
        assert_eq!(c.routes[0].origin, "media");
        assert_eq!(c.limits.max_headers, 100);
    }

    #[test]
    fn the_admin_listener_defaults_to_localhost() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(
            dir.path(),
            "edge.toml",
            &format!("{GOOD}\n[admin]\ntoken = \"0123456789abcdef0123456789abcdef\"\n"),
        );
        let c = Config::load(&path, None).unwrap();
        let admin = c.admin.expect("admin configured");
        assert_eq!(admin.listen, "127.0.0.1:9901".parse().unwrap());
        assert!(admin.listen.ip().is_loopback());
    }

    #[test]
    fn unknown_key_names_line_and_key() {
        let e = error_for(&GOOD.replace("prefix = \"/\"", "prefx = \"/\""));
        assert_eq!(e.line, Some(12), "{e}");
        assert_eq!(e.key, "routes[0].prefx");
        assert!(e.to_string().contains("unknown field"), "{e}");
    }

    #[test]
    fn unknown_origin_names_the_route_line() {
        let e = error_for(&GOOD.replace("origin = \"media\"", "origin = \"cdn\""));
        assert_eq!(
            (e.line, e.key.as_str()),
            (Some(13), "routes[0].origin"),
            "{e}"
        );
        assert!(e.message.contains("unknown origin `cdn`"));
    }

    #[test]
    fn bad_values_are_located() {
        let e = error_for(&GOOD.replace("127.0.0.1:8443", "localhost"));
        assert_eq!((e.line, e.key.as_str()), (Some(3), "server.listen"));
        let e = error_for(&GOOD.replace("http://127.0.0.1:9001", "ftp://x"));
        assert_eq!(
            (e.line, e.key.as_str()),
            (Some(7), "origins.media.secondary")
        );
        let e = error_for(&GOOD.replace("health_path = \"/health\"", "health_path = 5"));
        assert_eq!(
            (e.line, e.key.as_str()),
            (Some(8), "origins.media.health_path"),
            "{e}"
        );
        let e = error_for(&format!("{GOOD}\n[limits]\nmax_header_bytes = 100\n"));
        assert_eq!(
            (e.line, e.key.as_str()),
            (Some(16), "limits.max_header_bytes"),
            "{e}"
        );
        let e = error_for(&format!(
            "{GOOD}\n[[tls.certs]]\ncert = \"missing.pem\"\nkey = \"k.pem\"\n"
        ));
        assert_eq!(
            (e.line, e.key.as_str()),
            (Some(16), "tls.certs[0].cert"),
            "{e}"
        );
    }

    #[test]
    fn standard_module_configs_are_checked_and_token_params_leave_the_cache_key() {
        let routes = |config: &str| {
            format!(
                "[server]\nlisten = \"127.0.0.1:0\"\n\n[origins.media]\nprimary = \"http://127.0.0.1:9\"\n\n\
                 [[routes]]\nprefix = \"/\"\norigin = \"media\"\n[routes.cache]\nexclude_query = [\"hdnts\", \"sid\"]\n\
                 [[routes.modules]]\nmodule = \"token-auth\"\n{config}"
            )
        };
        let dir = tempfile::tempdir().unwrap();
        let path = write(
            dir.path(),
            "edge.toml",
            &routes("[routes.modules.config]\nnative = { keys = { k = \"00\" } }\nakamai = { keys = { a = \"00\" } }\ncloudfront = { public_keys = {} }\n"),
        );
        let c = Config::load(&path, None).unwrap();
        let key = &c.routes[0].cache.as_ref().unwrap().key;
        assert_eq!(
            key.exclude_query,
            [
                "hdnts",
                "sid",
                "edge_token",
                "Expires",
                "Policy",
                "Signature",
                "Key-Pair-Id"
            ]
        );
        // A mistake in a standard module's table is a config error with its line.
        let e = error_for(&routes(
            "[routes.modules.config]\nnative = { keys = { k = \"00\" } }\nsessions = true\n",
        ));
        assert_eq!(e.key, "routes[0].modules[0].config", "{e}");
        assert!(e.message.contains("unknown field `sessions`"), "{e}");
        assert_eq!(e.line, Some(14), "{e}");
        assert!(!e.message.contains("column"), "{e}");
        let e = error_for(&routes(
            "[routes.modules.config]\nakamai = { keys = { rotated = \"0g\" } }\n",
        ));
        assert!(
            e.message
                .contains("akamai: key `rotated` is not an even number of hex digits"),
            "{e}"
        );
        let e = error_for(&routes("config = {}\n"));
        assert!(e.message.contains("no format configured"), "{e}");
        let e = error_for(&format!(
            "{GOOD}[[routes.modules]]\nmodule = \"rate-limit\"\nconfig = {{ rules = [{{ policy = \"p\", key = [\"ipv9\"] }}] }}\n"
        ));
        assert!(e.message.contains("unknown key part `ipv9`"), "{e}");
        let e = error_for(&format!(
            "{GOOD}[rate_limits.viewer]\nrate = \"1/s\"\n[[routes.modules]]\nmodule = \"rate-limit\"\nconfig = {{ rules = [{{ policy = \"viewers\" }}] }}\n"
        ));
        assert!(
            e.message.contains(
                "rules[0].policy `viewers` is not a policy of [rate_limits] (configured: viewer)"
            ),
            "{e}"
        );
    }

    #[test]
    fn module_config_files_are_read_by_the_node() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "keys/jwks.json", r#"{"keys":[]}"#);
        write(dir.path(), "keys/cf.pem", "PEM");
        let text = format!(
            "{GOOD}[[routes.modules]]\nmodule = \"token-auth\"\n[routes.modules.config.jwt]\njwks_file = \"keys/jwks.json\"\n[routes.modules.config.cloudfront.public_keys_file]\nK1 = \"keys/cf.pem\"\n"
        );
        let path = write(dir.path(), "edge.toml", &text);
        let c = Config::load(&path, None).unwrap();
        assert_eq!(
            c.routes[0].modules[0].config_json,
            r#"{"cloudfront":{"public_keys":{"K1":"PEM"}},"jwt":{"jwks":{"keys":[]}}}"#
        );
        // A missing file names the file, line and key.
        let e = error_for(&format!(
            "{GOOD}[[routes.modules]]\nmodule = \"token-auth\"\n[routes.modules.config.jwt]\njwks_file = \"nope.json\"\n"
        ));
        assert_eq!(
            (e.line, e.key.as_str()),
            (Some(17), "routes[0].modules[0].config.jwt.jwks_file"),
            "{e}"
        );
        assert!(e.message.contains("nope.json"), "{e}");
        let e = error_for(&format!(
            "{GOOD}[[routes.modules]]\nmodule = \"token-auth\"\n[routes.modules.config.jwt]\njwks_file = 3\n"
        ));
        assert!(e.message.contains("file path"), "{e}");
        // A `.json` file that is not JSON is refused at load, not on every request.
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "bad.json", "{\"keys\": [");
        let path = write(
            dir.path(),
            "edge.toml",
            &format!("{GOOD}[[routes.modules]]\nmodule = \"token-auth\"\n[routes.modules.config.jwt]\njwks_file = \"bad.json\"\n"),
        );
        let e = Config::load(&path, None).expect_err("bad JSON");
        assert_eq!(e.key, "routes[0].modules[0].config.jwt.jwks_file", "{e}");
        assert!(e.message.contains("is not JSON"), "{e}");
    }

    #[test]
    fn module_chains_and_their_settings_are_checked() {
        let chain = |module: &str, rest: &str| {
            format!("{GOOD}{rest}[[routes.modules]]\nmodule = \"{module}\"\nconfig = {{ a = 1 }}\n")
        };
        // A standard module needs no declaration; its route config travels as JSON.
        let dir = tempfile::tempdir().unwrap();
        let path = write(
            dir.path(),
            "edge.toml",
            &chain("headers", "on_error = \"fail-open\"\n"),
        );
        let c = Config::load(&path, None).unwrap();
        assert_eq!(c.routes[0].on_error, OnError::FailOpen);
        assert_eq!(c.routes[0].modules[0].config_json, r#"{"a":1}"#);
        assert_eq!(c.wasm.modules[0].name, "headers");
        assert_eq!(c.routes[0].name, "*/");

        let e = error_for(&chain("wafx", ""));
        assert_eq!(
            (e.line, e.key.as_str()),
            (Some(15), "routes[0].modules[0].module"),
            "{e}"
        );
        assert!(e.message.contains("unknown module `wafx`"), "{e}");
        let e = error_for(&chain("headers", "on_error = \"ignore\"\n"));
        assert_eq!(
            (e.line, e.key.as_str()),
            (Some(14), "routes[0].on_error"),
            "{e}"
        );
        let e = error_for(&format!("{GOOD}\n[modules.mine]\npath = \"mine.wasm\"\n"));
        assert_eq!(
            (e.line, e.key.as_str()),
            (Some(16), "modules.mine.path"),
            "{e}"
        );
        assert!(e.message.contains("does not exist"), "{e}");
        let e = error_for(&format!("{GOOD}\n[modules.mine]\nbudget_ms = 5\n"));
        assert_eq!(e.key, "modules.mine", "{e}");
        assert!(e.message.contains("not a standard module"), "{e}");
        let e = error_for(&format!("{GOOD}\n[modules.headers]\nmemory_mib = 0\n"));
        assert_eq!(
            (e.line, e.key.as_str()),
            (Some(16), "modules.headers.memory_mib"),
            "{e}"
        );
        let e = error_for(&format!("{GOOD}\n[wasm]\ntrusted_keys = [\"abc\"]\n"));
        assert_eq!(
            (e.line, e.key.as_str()),
            (Some(16), "wasm.trusted_keys[0]"),
            "{e}"
        );
        let e = error_for(&format!("{GOOD}\n[wasm]\nbudget_ms = 0\n"));
        assert_eq!(
            (e.line, e.key.as_str()),
            (Some(16), "wasm.budget_ms"),
            "{e}"
        );
    }

    #[test]
    fn rate_limit_policies_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(
            dir.path(),
            "edge.toml",
            &format!("{GOOD}\n[rate_limits.per-ip]\nrate = \"10/s\"\nmax_keys = 1000\n"),
        );
        let c = Config::load(&path, None).unwrap();
        assert_eq!(c.rate_limits[0].burst, 10);
        assert_eq!(c.rate_limits[0].period, Duration::from_millis(100));
        let e = error_for(&format!("{GOOD}\n[rate_limits.per-ip]\nrate = \"10/d\"\n"));
        assert_eq!(
            (e.line, e.key.as_str()),
            (Some(16), "rate_limits.per-ip.rate"),
            "{e}"
        );
        assert!(e.message.contains("unknown unit"), "{e}");
        let e = error_for(&format!(
            "{GOOD}\n[rate_limits.per-ip]\nrate = \"1/s\"\nburst = 0\n"
        ));
        assert_eq!(e.key, "rate_limits.per-ip.burst", "{e}");
    }

    #[test]
    fn admin_and_cache_settings_are_checked() {
        let e = error_for(&format!("{GOOD}\n[admin]\ntoken = \"short\"\n"));
        assert_eq!((e.line, e.key.as_str()), (Some(16), "admin.token"), "{e}");
        assert!(e.message.contains("at least 16"), "{e}");
        let e = error_for(&format!("{GOOD}\n[admin]\nlisten = \"127.0.0.1:9901\"\n"));
        assert_eq!(e.key, "admin", "{e}");
        assert!(e.message.contains("token"), "{e}");
        let both = format!("{GOOD}\n[admin]\ntoken = \"0123456789abcdef\"\ntoken_file = \"t\"\n");
        assert!(error_for(&both).message.contains("not both"));
        let e = error_for(&format!(
            "{GOOD}\n[cache]\nmax_bytes = 1000000\nshards = 10\nmax_object_bytes = 500000\n"
        ));
        assert_eq!(
            (e.line, e.key.as_str()),
            (Some(18), "cache.max_object_bytes"),
            "{e}"
        );
        let e = error_for(&format!("{GOOD}\n[cache]\nshards = 0\n"));
        assert_eq!((e.line, e.key.as_str()), (Some(16), "cache.shards"), "{e}");
        let e = error_for(&format!(
            "{GOOD}[routes.cache]\nkey_headers = [\"bad header\"]\n"
        ));
        assert_eq!(e.key, "routes[0].cache.key_headers[0]", "{e}");
    }

    #[test]
    fn syntax_error_is_located() {
        let e = error_for("[server]\nlisten = \"a\nworkers = 2\n");
        assert_eq!(e.line, Some(2), "{e}");
        assert!(e.to_string().starts_with(&e.file.display().to_string()));
    }

    #[test]
    fn region_overlay_merges_and_errors_point_into_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), "edge.toml", GOOD);
        write(
            dir.path(),
            "regions/eu-west.toml",
            "[origins.media]\nprimary = \"http://10.0.0.1:80\"\n",
        );
        let c = Config::load(&path, Some("eu-west")).unwrap();
        assert_eq!(c.origins[0].upstreams[0].to_string(), "http://10.0.0.1:80/");
        assert_eq!(
            c.origins[0].upstreams.len(),
            2,
            "secondary kept from the base file"
        );

        write(
            dir.path(),
            "regions/bad.toml",
            "\n[server]\nworkers = \"two\"\n",
        );
        let e = Config::load(&path, Some("bad")).err().unwrap();
        assert!(e.file.ends_with("regions/bad.toml"), "{e}");
        assert_eq!((e.line, e.key.as_str()), (Some(3), "server.workers"), "{e}");

        let e = Config::load(&path, Some("nowhere")).err().unwrap();
        assert!(e.message.contains("region overlay `nowhere`"), "{e}");
    }

    #[test]
    fn handlers_and_identity_are_checked_at_load() {
        // A handler file that is not there, a timeout out of range, a name that is also
        // an origin's: each with its key.
        for (table, key, needle) in [
            (
                "[handlers.fn]\npath = \"missing.wasm\"\n",
                "handlers.fn.path",
                "missing.wasm",
            ),
            (
                "[handlers.fn]\npath = \"edge.toml\"\ntimeout_ms = 0\n",
                "handlers.fn.timeout_ms",
                "1–600000",
            ),
            (
                "[handlers.media]\npath = \"edge.toml\"\n",
                "handlers.media",
                "also an origin",
            ),
            (
                "[handlers.fn]\npath = \"edge.toml\"\nmemory_mib = 5000\n",
                "handlers.fn.memory_mib",
                "1–4096",
            ),
        ] {
            let e = error_for(&format!("{GOOD}{table}"));
            assert_eq!(e.key, key, "{table}: {e}");
            assert!(e.message.contains(needle), "{table}: {e}");
        }
        // Node identity: names that could not go into Via, a label or a log field.
        let e = error_for(&GOOD.replace("[server]\n", "[server]\nnode_id = \"a b\"\n"));
        assert_eq!(e.key, "server.node_id", "{e}");
        let e = error_for(&GOOD.replace("[server]\n", "[server]\nregion = \"eu/west\"\n"));
        assert_eq!(e.key, "server.region", "{e}");
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), "edge.toml", GOOD);
        let e = Config::load(&path, Some("../etc")).expect_err("a path as region");
        assert!(e.message.contains("region"), "{e}");
    }

    #[test]
    fn waf_rules_are_checked_at_load() {
        let waf = |config: &str| {
            format!("{GOOD}[[routes.modules]]\nmodule = \"waf\"\n[routes.modules.config]\n{config}")
        };
        // A rules folder that is not there, with its line and key.
        let e = error_for(&waf("rules_dir = \"no-such-folder\"\n"));
        assert_eq!(e.key, "routes[0].modules[0].config.rules_dir", "{e}");
        assert!(e.message.contains("no-such-folder"), "{e}");
        // No rules at all, a paranoia level out of range, an unknown key.
        for (config, needle) in [
            ("mode = \"blocking\"\n", "no rules"),
            (
                "before = 'SecAction \"id:1,pass\"'\nparanoia = 7\n",
                "paranoia is 1 to 4",
            ),
            (
                "before = 'SecAction \"id:1,pass\"'\nrulez = 1\n",
                "unknown field",
            ),
        ] {
            let e = error_for(&waf(config));
            assert_eq!(e.key, "routes[0].modules[0].config", "{config}: {e}");
            assert!(e.message.contains(needle), "{config}: {e}");
        }
        // A rule file whose rule does not compile: its file, line and id.
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "rules/a.conf",
            "\nSecRule ARGS \"@rx (\" \"id:77,phase:1,deny\"\n",
        );
        let path = write(dir.path(), "edge.toml", &waf("rules_dir = \"rules\"\n"));
        let e = Config::load(&path, None).expect_err("a broken rule set");
        assert!(e.message.contains("rules/a.conf:2 (rule 77)"), "{e}");
    }
}
