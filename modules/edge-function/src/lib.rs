//! The edge function: the node's standard module chain — token auth → WAF → rate limit →
//! origin fetch → manifest rewrite — as one `wasi:http/proxy` component, for edge function
//! platforms (`wasmtime serve`, Spin, wasmCloud, Fastly Compute) and for the node itself
//! as a route handler. The same module crates do the work; this crate only wires them to
//! `wasi:http` (`export.rs`) and holds the decisions, which are plain Rust and tested
//! natively.
//!
//! Config is one JSON object, built in (`config.json` beside this crate, or the file named
//! by `EDGE_FUNCTION_CONFIG_FILE` at build time) and replaced at run time by the
//! environment variable `EDGE_FUNCTION_CONFIG` (JSON text) when the host passes one:
//!
//! ```json
//! {
//!   "origin": "http://origin.internal:8080",
//!   "token_auth": { "native": { "keys": { "k1": "<hex>" } } },
//!   "waf": { "rules": { "rules.conf": "SecRule ARGS \"@rx <script\" \"id:1,phase:2,deny\"" } },
//!   "rate_limit": { "rate": "100/s" },
//!   "manifest_rewrite": { "propagate_token": true }
//! }
//! ```
//!
//! `token_auth`, `waf` and `manifest_rewrite` take the same tables as the node's modules.
//! `rate_limit` is accepted but not enforced: `wasi:http/proxy` has no shared state
//! between requests (docs/edge-function.md says what to use instead).

pub mod crypto;
#[cfg(target_arch = "wasm32")]
mod export;

use edge_module_manifest_rewrite as manifest;
use edge_module_token_auth as token;
use edge_module_waf as waf;
use serde::Deserialize;
use std::net::IpAddr;

/// The built-in config.
pub const BUILT_IN_CONFIG: &str = include_str!(env!("EDGE_FUNCTION_CONFIG_PATH"));

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    origin: String,
    #[serde(default)]
    token_auth: Option<serde_json::Value>,
    #[serde(default)]
    waf: Option<serde_json::Value>,
    #[serde(default)]
    rate_limit: Option<serde_json::Value>,
    #[serde(default)]
    manifest_rewrite: Option<serde_json::Value>,
    /// Request bodies the WAF reads at most (bytes).
    #[serde(default = "default_body_bytes")]
    waf_body_bytes: usize,
}

fn default_body_bytes() -> usize {
    1 << 20
}

/// Where the origin is: `scheme://authority`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    pub https: bool,
    pub authority: String,
}

pub struct EdgeFunction {
    pub origin: Origin,
    token: Option<token::Config>,
    waf: Option<waf::RuleSet>,
    pub waf_body_bytes: usize,
    manifest: Option<manifest::Config>,
    /// Set when the config asks for rate limiting this host cannot give.
    pub rate_limit_ignored: bool,
}

/// The viewer's request as the chain reads it.
pub struct Viewer<'a> {
    pub method: &'a str,
    /// The authority the viewer asked for.
    pub authority: &'a str,
    pub path: &'a str,
    pub query: Option<&'a str>,
    /// Lower-case names.
    pub headers: &'a [(String, String)],
    /// wasi:http gives no peer address: the platform's `X-Forwarded-For` (its first hop)
    /// or nothing.
    pub client_ip: Option<IpAddr>,
    /// The body, up to `waf_body_bytes`, and whether there was more.
    pub body: &'a [u8],
    pub body_truncated: bool,
}

impl Viewer<'_> {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// An answer the edge function gives itself (a refusal).
#[derive(Debug, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Answer {
    fn text(status: u16, body: &str) -> Answer {
        Answer {
            status,
            headers: vec![
                ("content-type".into(), "text/plain; charset=utf-8".into()),
                ("cache-control".into(), "no-store".into()),
            ],
            body: body.as_bytes().to_vec(),
        }
    }
}

/// What the request phase let through, for the response phase.
#[derive(Debug, Default)]
pub struct Passed {
    /// The verified token's query parameters, for the manifest's URIs.
    pub token_query: Option<String>,
    /// A session cookie to set on the response.
    pub set_cookie: Option<String>,
}

impl EdgeFunction {
    /// The config from the environment's `EDGE_FUNCTION_CONFIG`, else the built-in one.
    pub fn from_env() -> Result<EdgeFunction, String> {
        match std::env::var("EDGE_FUNCTION_CONFIG") {
            Ok(json) if !json.trim().is_empty() => {
                EdgeFunction::from_json(&json).map_err(|e| format!("EDGE_FUNCTION_CONFIG: {e}"))
            }
            _ => EdgeFunction::from_json(BUILT_IN_CONFIG)
                .map_err(|e| format!("built-in config: {e}")),
        }
    }

    pub fn from_json(json: &str) -> Result<EdgeFunction, String> {
        let raw: RawConfig = serde_json::from_str(json).map_err(|e| e.to_string())?;
        let origin = parse_origin(&raw.origin)?;
        let token = match raw.token_auth {
            Some(v) => Some(token::Config::parse(&v.to_string())?),
            None => None,
        };
        let waf = match raw.waf {
            Some(v) => {
                let config = waf::config::Config::parse(&v.to_string())?;
                let set = config.compile().map_err(|e| {
                    let all: Vec<String> = e.errors.iter().map(|p| p.to_string()).collect();
                    format!("waf: rule set does not load: {}", all.join("; "))
                })?;
                Some(set)
            }
            None => None,
        };
        let manifest = match raw.manifest_rewrite {
            Some(v) => {
                let config = manifest::parse_config(&v.to_string())?;
                config
                    .check()
                    .map_err(|e| format!("manifest_rewrite: {e:?}"))?;
                Some(config)
            }
            None => None,
        };
        Ok(EdgeFunction {
            origin,
            token,
            waf,
            waf_body_bytes: raw.waf_body_bytes,
            manifest,
            rate_limit_ignored: raw.rate_limit.is_some(),
        })
    }

    /// Whether the WAF reads request bodies (the handler reads one only then).
    pub fn inspects_bodies(&self) -> bool {
        self.waf.is_some()
    }

    /// Token auth, then the WAF: a refusal, or what passed. `now` is unix seconds.
    pub fn admit(&self, viewer: &Viewer<'_>, now: u64) -> Result<Passed, Answer> {
        let mut passed = Passed::default();
        if let Some(config) = &self.token {
            let header = |name: &str| viewer.header(name).map(str::to_owned);
            let request = token::Request {
                url: token::Lazy::new(|| {
                    Some(match viewer.query {
                        Some(q) => format!("https://{}{}?{q}", viewer.authority, viewer.path),
                        None => format!("https://{}{}", viewer.authority, viewer.path),
                    })
                }),
                path: viewer.path,
                query: viewer.query,
                cookies: token::Lazy::new(|| {
                    let all: Vec<&str> = viewer
                        .headers
                        .iter()
                        .filter(|(k, _)| k == "cookie")
                        .map(|(_, v)| v.as_str())
                        .collect();
                    (!all.is_empty()).then(|| all.join("; "))
                }),
                client_ip: viewer.client_ip,
                header: &header,
            };
            match config.verify(&request, &crypto::SoftCrypto, now) {
                Ok(verified) => {
                    passed.set_cookie =
                        config.session_cookie(&verified, &request, &crypto::SoftCrypto, now);
                    passed.token_query = verified.query;
                }
                Err(failure) => {
                    eprintln!(
                        "edge-function: token refused: reason={} {}",
                        failure.reason, failure.detail
                    );
                    if failure.reason == token::Reason::Missing && config.wants_bearer() {
                        let mut a = Answer::text(401, "unauthorized\n");
                        a.headers
                            .push(("www-authenticate".into(), "Bearer realm=\"edge\"".into()));
                        return Err(a);
                    }
                    return Err(Answer::text(403, "forbidden\n"));
                }
            }
        }
        if let Some(rules) = &self.waf {
            let verdict = waf::evaluate(rules, &self.waf_request(viewer, &passed));
            if let Some(i) = verdict.interruption {
                eprintln!(
                    "edge-function: WAF blocked {} {} (rule {}, anomaly score {})",
                    viewer.method, viewer.path, i.rule_id, verdict.anomaly_score
                );
                return Err(match i.location {
                    Some(location) => Answer {
                        status: i.status,
                        headers: vec![("location".into(), location)],
                        body: Vec::new(),
                    },
                    None => Answer::text(
                        i.status,
                        &format!(
                            "{} Forbidden: blocked by the WAF (rule {})\n",
                            i.status, i.rule_id
                        ),
                    ),
                });
            }
        }
        Ok(passed)
    }

    fn waf_request(&self, viewer: &Viewer<'_>, passed: &Passed) -> waf::Request {
        let uri = match viewer.query {
            Some(q) => format!("{}?{q}", viewer.path),
            None => viewer.path.to_owned(),
        };
        let mut headers: Vec<(String, Vec<u8>)> = viewer
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), v.as_bytes().to_vec()))
            .collect();
        if viewer.header("host").is_none() {
            headers.insert(0, ("host".into(), viewer.authority.as_bytes().to_vec()));
        }
        waf::Request {
            method: viewer.method.to_owned(),
            uri,
            protocol: "HTTP/1.1".into(),
            headers,
            body: viewer.body.to_vec(),
            body_length: viewer.body_truncated.then_some(viewer.body.len() + 1),
            remote_addr: viewer
                .client_ip
                .map(|ip| ip.to_string())
                .unwrap_or_default(),
            remote_port: 0,
            unique_id: String::new(),
            // The verified token's parameters are not attack input.
            verified_args: passed
                .token_query
                .as_deref()
                .map(waf::request::verified_arg_names)
                .unwrap_or_default(),
        }
    }

    /// Whether this response is a manifest the chain rewrites for this viewer (the body
    /// is then read whole; everything else streams through).
    pub fn rewrites(
        &self,
        viewer: &Viewer<'_>,
        passed: &Passed,
        content_type: Option<&str>,
    ) -> bool {
        let Some(config) = &self.manifest else {
            return false;
        };
        let media_type = content_type.map(|t| t.split(';').next().unwrap_or("").trim());
        let by_type = media_type.is_some_and(|t| {
            manifest::MEDIA_TYPES
                .iter()
                .any(|m| m.eq_ignore_ascii_case(t))
        });
        let by_path = viewer.path.ends_with(".m3u8") || viewer.path.ends_with(".mpd");
        (by_type || by_path) && !self.plan(config, viewer, passed).is_empty()
    }

    fn plan(
        &self,
        config: &manifest::Config,
        viewer: &Viewer<'_>,
        passed: &Passed,
    ) -> manifest::Plan {
        let device = config
            .device_header
            .as_deref()
            .and_then(|h| viewer.header(&h.to_ascii_lowercase()));
        config.plan(&manifest::Viewer {
            host: Some(viewer.authority),
            path: viewer.path,
            query: viewer.query,
            token_query: passed.token_query.as_deref(),
            device_header: device,
        })
    }

    /// Rewrites a manifest body: `Ok(None)` leaves it as it was; `Err` is the answer a
    /// manifest that cannot be rewritten gets when the config says to refuse it.
    pub fn rewrite(
        &self,
        viewer: &Viewer<'_>,
        passed: &Passed,
        content_type: Option<&str>,
        body: &[u8],
    ) -> Result<Option<manifest::Rewritten>, Answer> {
        let Some(config) = &self.manifest else {
            return Ok(None);
        };
        let media_type = content_type.map(|t| t.split(';').next().unwrap_or("").trim());
        let Some(kind) = manifest::Kind::detect(media_type, viewer.path, body) else {
            return Ok(None);
        };
        let plan = self.plan(config, viewer, passed);
        match manifest::rewrite(kind, body, &plan, config.max_bytes) {
            Ok(out) => Ok(Some(out)),
            Err(e) => {
                eprintln!(
                    "edge-function: manifest not rewritten: {}: {e}",
                    viewer.path
                );
                match config.on_malformed {
                    manifest::OnMalformed::Pass => Ok(None),
                    manifest::OnMalformed::Reject => Err(Answer::text(
                        502,
                        &format!(
                            "502 Bad Gateway: the origin's manifest cannot be rewritten: {e}\n"
                        ),
                    )),
                }
            }
        }
    }
}

fn parse_origin(url: &str) -> Result<Origin, String> {
    let (https, rest) = if let Some(rest) = url.strip_prefix("https://") {
        (true, rest)
    } else if let Some(rest) = url.strip_prefix("http://") {
        (false, rest)
    } else {
        return Err(format!(
            "origin `{url}` must start with http:// or https://"
        ));
    };
    let authority = rest.trim_end_matches('/');
    if authority.is_empty() || authority.contains('/') {
        return Err(format!(
            "origin `{url}` must be scheme://host[:port] (no path)"
        ));
    }
    Ok(Origin {
        https,
        authority: authority.to_owned(),
    })
}

/// The viewer's address as the platform in front reports it: the first `X-Forwarded-For`
/// entry.
pub fn client_ip(headers: &[(String, String)]) -> Option<IpAddr> {
    let xff = headers.iter().find(|(k, _)| k == "x-forwarded-for")?;
    token::parse_ip(xff.1.split(',').next()?.trim())
}

/// Hop-by-hop fields (RFC 9110 §7.6.1): never passed on, either way.
pub fn hop_by_hop(name: &str) -> bool {
    matches!(
        name,
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
    )
}

/// Request fields forwarded to the origin: not hop-by-hop, and not the ones the outgoing
/// request sets itself.
pub fn forwarded(name: &str) -> bool {
    !hop_by_hop(name) && name != "host" && name != "content-length"
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY_HEX: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

    fn function(extra: &str) -> EdgeFunction {
        EdgeFunction::from_json(&format!(
            r#"{{"origin": "http://127.0.0.1:9", "token_auth": {{"native": {{"keys": {{"k1": "{KEY_HEX}"}}}}}},
                "waf": {{"rules": {{"rules.conf": "SecRuleEngine On\nSecRule ARGS \"@rx <script\" \"id:10,phase:2,deny,status:403,log\""}}, "media_exclusions": false}},
                "manifest_rewrite": {{}} {extra}}}"#
        ))
        .unwrap()
    }

    fn viewer<'a>(
        path: &'a str,
        query: Option<&'a str>,
        headers: &'a [(String, String)],
    ) -> Viewer<'a> {
        Viewer {
            method: "GET",
            authority: "cdn.example",
            path,
            query,
            headers,
            client_ip: None,
            body: b"",
            body_truncated: false,
        }
    }

    /// A native signed-URL query for everything under `prefix`, valid until `exp`.
    fn signed(prefix: &str, exp: u64) -> String {
        let key: Vec<u8> = (0u8..32).collect();
        let token = token::native::sign("k1", &key, None, exp, prefix, None, &crypto::SoftCrypto);
        format!("edge_token={token}")
    }

    #[test]
    fn config_errors_name_their_part() {
        assert!(EdgeFunction::from_json(r#"{"origin": "ftp://x"}"#)
            .err()
            .unwrap()
            .contains("http://"));
        assert!(EdgeFunction::from_json(r#"{"origin": "http://x/path"}"#)
            .err()
            .unwrap()
            .contains("no path"));
        assert!(
            EdgeFunction::from_json(r#"{"origin": "http://x", "nope": 1}"#)
                .err()
                .unwrap()
                .contains("nope")
        );
        let e = EdgeFunction::from_json(r#"{"origin": "http://x", "waf": {"rules": {"r.conf": "SecRule ARGS \"@rx (\" \"id:1,deny\""}}}"#).err().unwrap();
        assert!(e.contains("r.conf"), "{e}");
        let f =
            EdgeFunction::from_json(r#"{"origin": "http://x", "rate_limit": {"rate": "10/s"}}"#)
                .unwrap();
        assert!(f.rate_limit_ignored);
        assert!(BUILT_IN_CONFIG.contains("origin"));
        EdgeFunction::from_json(BUILT_IN_CONFIG).unwrap();
    }

    #[test]
    fn token_then_waf_then_manifest() {
        let f = function("");
        let none: Vec<(String, String)> = Vec::new();
        // No token: 403.
        let refused = f
            .admit(&viewer("/vod/a/master.m3u8", None, &none), 1_000)
            .unwrap_err();
        assert_eq!(refused.status, 403);
        // A good token passes, and its query is what manifests propagate.
        let query = signed("/vod/a/", 2_000);
        let passed = f
            .admit(&viewer("/vod/a/master.m3u8", Some(&query), &none), 1_000)
            .unwrap();
        assert!(passed.token_query.is_some());
        // Expired: 403.
        assert_eq!(
            f.admit(&viewer("/vod/a/master.m3u8", Some(&query), &none), 3_000)
                .unwrap_err()
                .status,
            403
        );
        // The WAF after the token: an attack with a good token is still blocked.
        let attack = format!("{query}&q=<script>alert(1)</script>");
        let blocked = f
            .admit(&viewer("/vod/a/master.m3u8", Some(&attack), &none), 1_000)
            .unwrap_err();
        assert_eq!(blocked.status, 403);
        assert!(String::from_utf8_lossy(&blocked.body).contains("rule 10"));
        // The manifest gets the token on every URI.
        let v = viewer("/vod/a/master.m3u8", Some(&query), &none);
        assert!(f.rewrites(&v, &passed, Some("application/vnd.apple.mpegurl")));
        let body = b"#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=800000\n360p/index.m3u8\n";
        let out = f
            .rewrite(&v, &passed, Some("application/vnd.apple.mpegurl"), body)
            .unwrap()
            .unwrap();
        let text = String::from_utf8(out.body.unwrap()).unwrap();
        assert!(
            text.contains(&format!(
                "360p/index.m3u8?{}",
                passed.token_query.as_deref().unwrap()
            )),
            "{text}"
        );
        assert!(out.per_viewer);
        // Segments stream through.
        assert!(!f.rewrites(
            &viewer("/vod/a/seg1.ts", Some(&query), &none),
            &passed,
            Some("video/mp2t")
        ));
    }

    #[test]
    fn client_ip_from_the_platform() {
        let h = vec![(
            "x-forwarded-for".to_owned(),
            "203.0.113.7, 10.0.0.1".to_owned(),
        )];
        assert_eq!(client_ip(&h), Some("203.0.113.7".parse().unwrap()));
        assert_eq!(client_ip(&[]), None);
        assert!(!forwarded("connection") && !forwarded("host") && forwarded("range"));
    }
}
