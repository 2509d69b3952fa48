//! Manifest rewriting for HLS playlists and DASH MPDs: token propagation, URL rewriting,
//! rendition filtering, live window trimming and HLS Content Steering.
//!
//! The rewriter edits the few places an operation changes and copies every other byte
//! as it was: a manifest with nothing to change comes out byte-identical, unknown tags and
//! elements pass through untouched, and a manifest that cannot be parsed is refused whole
//! ([`RewriteError`]), never half-rewritten.
//!
//! The same code runs in the node (the Wasm export in `export.rs`) and in
//! `edge manifest rewrite`.

mod dash;
mod hls;
mod uri;

#[cfg(all(target_arch = "wasm32", feature = "module"))]
mod export;

use serde::Deserialize;
use std::collections::BTreeMap;

pub use uri::valid_query;

/// The most body the node gives a module to transform (16 MiB): a route's `max_bytes`
/// cannot be larger, or a manifest between the two would pass unrewritten and unreported.
pub const MAX_MANIFEST_BYTES: u32 = 16 * 1024 * 1024;

/// The media types the module rewrites, as the node compares them (case-insensitively):
/// the HLS ones, then DASH's. The module declares exactly these to the host.
pub const MEDIA_TYPES: &[&str] = &[
    "application/vnd.apple.mpegurl",
    "application/x-mpegurl",
    "audio/mpegurl",
    "audio/x-mpegurl",
    DASH_TYPE,
];
pub const DASH_TYPE: &str = "application/dash+xml";

/// Default bound on a manifest's size: a 1,000-segment live playlist is about 100 KiB.
pub const DEFAULT_MAX_BYTES: u32 = 4 * 1024 * 1024;

/// A route's `manifest-rewrite` table.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Append the viewer's validated token (from token auth, earlier on the route) to
    /// every URI the player will fetch. On by default.
    #[serde(default = "yes")]
    pub propagate_token: bool,
    /// Query parameters (`k=v&k2=v2`) appended to every URI, as `--token-query` does.
    #[serde(default)]
    pub append_query: Option<String>,
    /// Query parameters of the manifest's own request copied to every URI.
    #[serde(default)]
    pub forward_query: Vec<String>,
    /// Absolute URIs on these hosts get the query too (relative URIs, URIs on the host
    /// the viewer asked for and on `base_url`'s host always do).
    #[serde(default)]
    pub token_hosts: Vec<String>,
    /// Absolute URLs starting with `from` are rewritten to start with `to` instead
    /// (`to = "/"` makes origin URLs edge-relative). The first matching rule applies.
    #[serde(default)]
    pub rewrite: Vec<RewriteRule>,
    /// Relative URIs become absolute under this URL: `https://cdn.example.com` turns
    /// `360p/index.m3u8` in `/vod/a/master.m3u8` into
    /// `https://cdn.example.com/vod/a/360p/index.m3u8`.
    #[serde(default)]
    pub base_url: Option<String>,
    /// Rendition filtering for every viewer.
    #[serde(flatten)]
    pub filter: Filter,
    /// Named filters a viewer picks with `device_query` or `device_header`; they can only
    /// narrow the route's own filter.
    #[serde(default)]
    pub device_classes: BTreeMap<String, Filter>,
    #[serde(default)]
    pub device_query: Option<String>,
    #[serde(default)]
    pub device_header: Option<String>,
    /// Keep only the last N seconds of a live media playlist (never less than three
    /// target durations, as RFC 8216 requires).
    #[serde(default)]
    pub live_window_s: Option<f64>,
    /// Insert or replace `EXT-X-CONTENT-STEERING` in HLS multivariant playlists.
    #[serde(default)]
    pub steering: Option<Steering>,
    /// What a manifest that cannot be parsed gets: passed through unchanged, or a 502.
    #[serde(default)]
    pub on_malformed: OnMalformed,
    /// Larger manifests are handled as malformed (`on_malformed`).
    #[serde(default = "default_max_bytes")]
    pub max_bytes: u32,
}

fn yes() -> bool {
    true
}

fn default_max_bytes() -> u32 {
    DEFAULT_MAX_BYTES
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RewriteRule {
    pub from: String,
    pub to: String,
}

/// Which renditions a viewer gets. Every field narrows; none set keeps everything.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Filter {
    /// Drop variants whose `BANDWIDTH` (DASH `@bandwidth`) is above this.
    #[serde(default)]
    pub max_bandwidth: Option<u64>,
    /// Drop variants whose vertical resolution is above this.
    #[serde(default)]
    pub max_height: Option<u32>,
    /// Drop variants using any of these codecs (prefix match: `hvc1` matches
    /// `hvc1.2.4.L123.B0`).
    #[serde(default)]
    pub deny_codecs: Vec<String>,
}

impl Filter {
    fn is_empty(&self) -> bool {
        self.max_bandwidth.is_none() && self.max_height.is_none() && self.deny_codecs.is_empty()
    }

    /// The narrower of two filters.
    fn narrowed(&self, other: &Filter) -> Filter {
        fn min<T: Ord + Copy>(a: Option<T>, b: Option<T>) -> Option<T> {
            match (a, b) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            }
        }
        let mut deny_codecs = self.deny_codecs.clone();
        deny_codecs.extend(other.deny_codecs.iter().cloned());
        Filter {
            max_bandwidth: min(self.max_bandwidth, other.max_bandwidth),
            max_height: min(self.max_height, other.max_height),
            deny_codecs,
        }
    }

    /// Whether a rendition with these properties passes.
    fn keeps(&self, bandwidth: Option<u64>, height: Option<u32>, codecs: Option<&str>) -> bool {
        if let (Some(max), Some(b)) = (self.max_bandwidth, bandwidth) {
            if b > max {
                return false;
            }
        }
        if let (Some(max), Some(h)) = (self.max_height, height) {
            if h > max {
                return false;
            }
        }
        if let Some(codecs) = codecs {
            let denied = codecs.split(',').map(str::trim).any(|c| {
                self.deny_codecs
                    .iter()
                    // Bytes, not `str` slicing: a codec string may hold any UTF-8.
                    .any(|d| {
                        c.as_bytes()
                            .get(..d.len())
                            .is_some_and(|head| head.eq_ignore_ascii_case(d.as_bytes()))
                    })
            });
            if denied {
                return false;
            }
        }
        true
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Steering {
    /// The steering server's URI (`SERVER-URI`).
    pub server_uri: String,
    /// The initial pathway (`PATHWAY-ID`), if any.
    #[serde(default)]
    pub pathway: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnMalformed {
    /// The viewer gets the origin's manifest as it was (and the error is logged).
    #[default]
    Pass,
    /// The viewer gets a 502.
    Reject,
}

/// What the rewriter knows of the viewer's request.
#[derive(Debug, Default, Clone, Copy)]
pub struct Viewer<'a> {
    /// The host the viewer asked for (absolute URIs on it count as the edge's own).
    pub host: Option<&'a str>,
    /// The manifest's path, for resolving relative URIs under `base_url`.
    pub path: &'a str,
    /// The manifest request's query string.
    pub query: Option<&'a str>,
    /// `k=v&…` of the validated token (the `token.query` context of token auth).
    pub token_query: Option<&'a str>,
    /// The value of `device_header`, when the route names one.
    pub device_header: Option<&'a str>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Hls,
    Dash,
}

impl Kind {
    /// By media type, then by the path's extension (for origins that serve manifests as
    /// `application/octet-stream`), then by the first bytes.
    pub fn detect(media_type: Option<&str>, path: &str, body: &[u8]) -> Option<Kind> {
        if let Some(t) = media_type {
            // The media type without its parameters (`; charset=utf-8`).
            let t = t.split(';').next().unwrap_or("").trim();
            if t.eq_ignore_ascii_case(DASH_TYPE) {
                return Some(Kind::Dash);
            }
            if MEDIA_TYPES.iter().any(|h| h.eq_ignore_ascii_case(t)) {
                return Some(Kind::Hls);
            }
        }
        let name = path.rsplit('/').next().unwrap_or(path);
        let ext = name.rsplit_once('.').map(|(_, e)| e);
        if ext.is_some_and(|e| e.eq_ignore_ascii_case("m3u8") || e.eq_ignore_ascii_case("m3u")) {
            return Some(Kind::Hls);
        }
        if ext.is_some_and(|e| e.eq_ignore_ascii_case("mpd")) {
            return Some(Kind::Dash);
        }
        let body = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
        if body.starts_with(b"#EXTM3U") {
            return Some(Kind::Hls);
        }
        let trimmed = body.trim_ascii_start();
        (trimmed.starts_with(b"<?xml") || trimmed.starts_with(b"<MPD")).then_some(Kind::Dash)
    }
}

/// Why a manifest was not rewritten.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RewriteError {
    #[error("line {line}: {reason}")]
    Malformed { line: usize, reason: String },
    #[error("{len} bytes is over the bound of {max} bytes")]
    TooLarge { len: usize, max: u32 },
    #[error("not UTF-8 at byte {0}")]
    NotUtf8(usize),
}

impl RewriteError {
    fn at(line: usize, reason: impl Into<String>) -> Self {
        RewriteError::Malformed {
            line,
            reason: reason.into(),
        }
    }
}

/// A config that cannot be used, found when the route loads.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {reason}")]
pub struct ConfigError {
    pub key: String,
    pub reason: String,
}

pub fn parse_config(json: &str) -> Result<Config, String> {
    let config: Config = serde_json::from_str(json).map_err(|e| e.to_string())?;
    config.check().map_err(|e| e.to_string())?;
    Ok(config)
}

impl Config {
    /// What load-time checks refuse: anything that would otherwise fail on every request.
    pub fn check(&self) -> Result<(), ConfigError> {
        let bad = |key: &str, reason: String| ConfigError {
            key: key.into(),
            reason,
        };
        if let Some(q) = &self.append_query {
            valid_query(q).map_err(|r| bad("append_query", r))?;
        }
        for (i, rule) in self.rewrite.iter().enumerate() {
            if !uri::is_absolute_http(&rule.from) {
                return Err(bad(
                    &format!("rewrite[{i}].from"),
                    format!("{:?} is not an absolute http(s) URL", rule.from),
                ));
            }
            if !(uri::is_absolute_http(&rule.to) || rule.to.starts_with('/')) {
                return Err(bad(
                    &format!("rewrite[{i}].to"),
                    format!(
                        "{:?} is neither an absolute http(s) URL nor a path",
                        rule.to
                    ),
                ));
            }
            uri::check_uri_chars(&rule.to).map_err(|r| bad(&format!("rewrite[{i}].to"), r))?;
        }
        if let Some(base) = &self.base_url {
            if !uri::is_absolute_http(base) {
                return Err(bad(
                    "base_url",
                    format!("{base:?} is not an absolute http(s) URL"),
                ));
            }
            uri::check_uri_chars(base).map_err(|r| bad("base_url", r))?;
        }
        if let Some(s) = &self.steering {
            uri::check_uri_chars(&s.server_uri).map_err(|r| bad("steering.server_uri", r))?;
            if let Some(p) = &s.pathway {
                if p.is_empty()
                    || !p
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b))
                {
                    return Err(bad(
                        "steering.pathway",
                        format!("{p:?}: a pathway ID is letters, digits, '-', '.' and '_'"),
                    ));
                }
            }
        }
        if let Some(w) = self.live_window_s {
            if !(w.is_finite() && w > 0.0) {
                return Err(bad(
                    "live_window_s",
                    format!("{w} is not a positive number of seconds"),
                ));
            }
        }
        if (self.device_query.is_some() || self.device_header.is_some())
            && self.device_classes.is_empty()
        {
            return Err(bad(
                "device_classes",
                "device_query or device_header names where the class comes from, but no class is defined".into(),
            ));
        }
        if self.max_bytes == 0 || self.max_bytes > MAX_MANIFEST_BYTES {
            return Err(bad(
                "max_bytes",
                format!(
                    "must be between 1 and {MAX_MANIFEST_BYTES} (the most body the node lends a module)"
                ),
            ));
        }
        let filters = std::iter::once(("".to_string(), &self.filter)).chain(
            self.device_classes
                .iter()
                .map(|(class, f)| (format!("device_classes.{class}."), f)),
        );
        for (at, filter) in filters {
            if let Some(i) = filter.deny_codecs.iter().position(|c| c.trim().is_empty()) {
                return Err(bad(
                    &format!("{at}deny_codecs[{i}]"),
                    "an empty codec would drop every rendition".into(),
                ));
            }
        }
        Ok(())
    }

    /// Query parameter names the route's cache key must leave out: the manifest's input
    /// is cached once, whatever device class or forwarded parameters a viewer brings.
    pub fn unkeyed_query_params(&self) -> Vec<&str> {
        self.device_query
            .iter()
            .chain(&self.forward_query)
            .map(String::as_str)
            .collect()
    }

    /// The operations that apply to one viewer's request.
    pub fn plan(&self, viewer: &Viewer<'_>) -> Plan {
        let mut query = String::new();
        let mut push = |q: &str| {
            if !q.is_empty() {
                if !query.is_empty() {
                    query.push('&');
                }
                query.push_str(q);
            }
        };
        if self.propagate_token {
            // A token that cannot travel in a URI as it is (it was validated, so this is
            // only a form the player cannot use) is left out rather than mangled.
            if let Some(t) = viewer.token_query.filter(|t| valid_query(t).is_ok()) {
                push(t);
            }
        }
        if let Some(q) = &self.append_query {
            push(q);
        }
        if let Some(q) = viewer.query {
            for pair in q.split('&') {
                let name = pair.split('=').next().unwrap_or("");
                if self.forward_query.iter().any(|f| f == name) && valid_query(pair).is_ok() {
                    push(pair);
                }
            }
        }

        let device = self
            .device_query
            .as_deref()
            .and_then(|name| {
                viewer.query?.split('&').find_map(|pair| {
                    let (k, v) = pair.split_once('=')?;
                    (k == name).then_some(v)
                })
            })
            .or(viewer.device_header)
            .and_then(|class| self.device_classes.get(class.trim()));
        let filter = match device {
            Some(d) => self.filter.narrowed(d),
            None => self.filter.clone(),
        };

        let mut token_hosts: Vec<String> = self
            .token_hosts
            .iter()
            .map(|h| h.to_ascii_lowercase())
            .collect();
        token_hosts.extend(viewer.host.map(str::to_ascii_lowercase));
        token_hosts.extend(
            self.base_url
                .as_deref()
                .and_then(uri::host_of)
                .map(str::to_ascii_lowercase),
        );
        // Rewriting to another host sends the player there: that host is the edge's too.
        token_hosts.extend(
            self.rewrite
                .iter()
                .filter_map(|r| uri::host_of(&r.to))
                .map(str::to_ascii_lowercase),
        );
        Plan {
            query_names: query
                .split('&')
                .filter(|p| !p.is_empty())
                .map(|p| uri::param_name(p).to_owned())
                .collect(),
            query,
            token_hosts,
            rewrite: self.rewrite.clone(),
            base_url: self.base_url.clone(),
            manifest_dir: uri::dir_of(viewer.path).to_string(),
            filter,
            live_window_s: self.live_window_s,
            steering: self.steering.clone(),
        }
    }
}

/// The operations for one request, with the viewer's values filled in.
#[derive(Debug, Default, Clone)]
pub struct Plan {
    /// Appended to every eligible URI (`k=v&…`), empty for none.
    pub query: String,
    /// The names of `query`'s parameters.
    query_names: Vec<String>,
    token_hosts: Vec<String>,
    rewrite: Vec<RewriteRule>,
    base_url: Option<String>,
    /// The manifest's directory (`/vod/a/`), for `base_url`.
    manifest_dir: String,
    filter: Filter,
    live_window_s: Option<f64>,
    steering: Option<Steering>,
}

impl Plan {
    /// True when no operation applies: the manifest passes byte for byte.
    pub fn is_empty(&self) -> bool {
        self.query.is_empty()
            && self.rewrite.is_empty()
            && self.base_url.is_none()
            && self.filter.is_empty()
            && self.live_window_s.is_none()
            && self.steering.is_none()
    }

    /// Whether mapping `uri` (anywhere in an HLS playlist) only appends `?` and the query:
    /// a relative reference with no query or fragment of its own, and no base URL to
    /// apply. What `uri::write_mapped` would then write, found without writing.
    fn only_appends_query(&self, uri: &str) -> bool {
        !self.query.is_empty()
            && self.base_url.is_none()
            && !uri.is_empty()
            && memchr::memchr2(b'?', b'#', uri.as_bytes()).is_none()
            && !uri.starts_with("//")
            && uri::scheme(uri).is_none()
    }

    /// The new form of a URI the player will fetch, `None` when it stays as it is, with
    /// the parts of the plan that apply where it sits.
    fn map_uri(&self, original: &str, scope: uri::Scope) -> Option<String> {
        uri::map(self, original, scope)
    }

    /// As [`Plan::map_uri`] with the whole plan, writing into `out`; false (nothing
    /// written) when the URI stays as it is.
    fn write_uri(&self, out: &mut String, original: &str) -> bool {
        uri::write_mapped(self, out, original, uri::Scope::ALL)
    }
}

/// What rewriting produced.
#[derive(Debug, PartialEq, Eq)]
pub struct Rewritten {
    /// The new manifest, `None` when nothing changed (the input passes as it was).
    pub body: Option<Vec<u8>>,
    /// The output carries this viewer's query (a token): caches must not share it.
    pub per_viewer: bool,
}

/// Rewrites one manifest. An error means the input passes unchanged or is refused, as the
/// route says; nothing in between.
pub fn rewrite(
    kind: Kind,
    input: &[u8],
    plan: &Plan,
    max_bytes: u32,
) -> Result<Rewritten, RewriteError> {
    if plan.is_empty() {
        return Ok(Rewritten {
            body: None,
            per_viewer: false,
        });
    }
    if input.len() > max_bytes as usize {
        return Err(RewriteError::TooLarge {
            len: input.len(),
            max: max_bytes,
        });
    }
    let text = std::str::from_utf8(input).map_err(|e| RewriteError::NotUtf8(e.valid_up_to()))?;
    let out = match kind {
        Kind::Hls => hls::rewrite(text, plan)?,
        Kind::Dash => dash::rewrite(text, plan)?,
    };
    let body = out
        .filter(|o| o.as_bytes() != input)
        .map(String::into_bytes);
    let per_viewer = body.is_some() && !plan.query.is_empty();
    Ok(Rewritten { body, per_viewer })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The HLS fast path for the common case writes what the general mapping writes.
    #[test]
    fn the_query_only_shortcut_writes_what_the_general_mapping_writes() {
        let plan = parse_config(r#"{"append_query":"t=1"}"#)
            .unwrap()
            .plan(&Viewer {
                host: Some("cdn.example.com"),
                path: "/v/index.m3u8",
                ..Default::default()
            });
        let uris = [
            "seg_1.ts",
            "a/b/c.ts",
            "../x.ts",
            "/abs/x.ts",
            "x.ts?y=1",
            "x.ts#f",
            "https://cdn.example.com/x.ts",
            "//cdn.example.com/x.ts",
            "skd://key-id",
            "data:text/plain,x",
            "a:b",
            "t=0.ts",
        ];
        for uri in uris {
            let mut general = String::new();
            let mapped = uri::write_mapped(&plan, &mut general, uri, uri::Scope::ALL);
            if plan.only_appends_query(uri) {
                assert!(mapped, "{uri}");
                assert_eq!(general, format!("{uri}?t=1"), "{uri}");
            }
        }
        assert!(plan.only_appends_query("seg_1.ts"));
        assert!(!plan.only_appends_query("x.ts?y=1"));
        assert!(!plan.only_appends_query("https://cdn.example.com/x.ts"));
    }

    /// A codec list may hold any UTF-8 (found by the `dash` fuzz target: a BOM inside
    /// `avc1`); the prefix match must never split a character.
    #[test]
    fn codec_filter_takes_codec_lists_with_any_utf8() {
        let filter = Filter {
            deny_codecs: vec!["hvc1".into(), "avc".into()],
            ..Filter::default()
        };
        assert!(filter.keeps(None, None, Some("a\u{feff}vc1.4d401e")));
        assert!(filter.keeps(None, None, Some("\u{e9}\u{e9}, mp4a.40.2")));
        assert!(!filter.keeps(None, None, Some("mp4a.40.2, HVC1.2.4.L123")));
        assert!(!filter.keeps(None, None, Some("avc1.4d401e")));
    }

    #[test]
    fn kinds_by_type_extension_and_content() {
        assert_eq!(
            Kind::detect(Some("Application/VND.Apple.MPEGURL"), "/x", b""),
            Some(Kind::Hls)
        );
        for hls in [
            "application/vnd.apple.mpegurl",
            "audio/mpegurl",
            "audio/x-mpegurl; charset=utf-8",
        ] {
            assert_eq!(Kind::detect(Some(hls), "/x", b""), Some(Kind::Hls), "{hls}");
        }
        assert_eq!(
            Kind::detect(Some("application/dash+xml;profiles=x"), "/x", b""),
            Some(Kind::Dash)
        );
        assert_eq!(
            Kind::detect(Some("application/dash+xml"), "/x", b""),
            Some(Kind::Dash)
        );
        assert_eq!(
            Kind::detect(Some("application/octet-stream"), "/a/b.M3U8", b""),
            Some(Kind::Hls)
        );
        assert_eq!(Kind::detect(None, "/a/manifest.mpd", b""), Some(Kind::Dash));
        assert_eq!(
            Kind::detect(None, "/a/x", b"\xEF\xBB\xBF#EXTM3U\n"),
            Some(Kind::Hls)
        );
        assert_eq!(
            Kind::detect(None, "/a/x", b"  <?xml version=\"1.0\"?><MPD/>"),
            Some(Kind::Dash)
        );
        assert_eq!(Kind::detect(Some("video/mp2t"), "/a/seg.ts", b"G@"), None);
    }

    #[test]
    fn config_errors_name_the_key() {
        let cases = [
            (r#"{"append_query":"a=b c"}"#, "append_query"),
            (r#"{"rewrite":[{"from":"/x","to":"/"}]}"#, "rewrite[0].from"),
            (
                r#"{"rewrite":[{"from":"http://o/","to":"x"}]}"#,
                "rewrite[0].to",
            ),
            (r#"{"base_url":"cdn.example.com"}"#, "base_url"),
            (
                r#"{"steering":{"server_uri":"https://s/x","pathway":"a b"}}"#,
                "steering.pathway",
            ),
            (r#"{"live_window_s":-1}"#, "live_window_s"),
            (r#"{"device_query":"d"}"#, "device_classes"),
            (r#"{"max_bytes":0}"#, "max_bytes"),
            (r#"{"max_bytes":16777217}"#, "max_bytes"),
            (r#"{"deny_codecs":["hvc1"," "]}"#, "deny_codecs[1]"),
            (
                r#"{"device_query":"d","device_classes":{"tv":{"deny_codecs":[""]}}}"#,
                "device_classes.tv.deny_codecs[0]",
            ),
        ];
        for (json, key) in cases {
            let err = parse_config(json).unwrap_err();
            assert!(err.starts_with(&format!("{key}:")), "{json}: {err}");
        }
        assert!(parse_config(r#"{"max_bandwith":1}"#)
            .unwrap_err()
            .contains("unknown field"));
        assert!(parse_config("{}").is_ok());
    }

    #[test]
    fn a_plan_combines_token_static_and_forwarded_queries() {
        let config = parse_config(
            r#"{"append_query":"cdn=a","forward_query":["sid"],"max_height":1080,
                "device_query":"device","device_classes":{"phone":{"max_height":720,"max_bandwidth":3000000}}}"#,
        )
        .unwrap();
        let plan = config.plan(&Viewer {
            host: Some("Edge.Example"),
            path: "/vod/a/master.m3u8",
            query: Some("edge_token=x&sid=42&device=phone&other=1"),
            token_query: Some("edge_token=x"),
            device_header: None,
        });
        assert_eq!(plan.query, "edge_token=x&cdn=a&sid=42");
        assert_eq!(plan.filter.max_height, Some(720));
        assert_eq!(plan.filter.max_bandwidth, Some(3_000_000));
        assert_eq!(plan.token_hosts, vec!["edge.example".to_string()]);
        assert_eq!(plan.manifest_dir, "/vod/a/");

        // A class can only narrow the route's filter, and an unknown class is no class.
        let config = parse_config(
            r#"{"max_height":480,"device_header":"x-device","device_classes":{"tv":{"max_height":2160}}}"#,
        )
        .unwrap();
        for header in [Some("tv"), Some("toaster"), None] {
            let plan = config.plan(&Viewer {
                device_header: header,
                ..Viewer::default()
            });
            assert_eq!(plan.filter.max_height, Some(480), "{header:?}");
        }
    }

    #[test]
    fn nothing_to_do_is_byte_identical_even_for_garbage() {
        let plan = parse_config("{}").unwrap().plan(&Viewer::default());
        assert!(plan.is_empty());
        let out = rewrite(Kind::Hls, b"\xFFnot a playlist", &plan, 10).unwrap();
        assert_eq!(
            out,
            Rewritten {
                body: None,
                per_viewer: false
            }
        );
    }

    #[test]
    fn size_and_encoding_bounds() {
        let plan = parse_config(r#"{"append_query":"a=1"}"#)
            .unwrap()
            .plan(&Viewer::default());
        assert_eq!(
            rewrite(Kind::Hls, b"#EXTM3U\nx.ts\n", &plan, 5),
            Err(RewriteError::TooLarge { len: 13, max: 5 })
        );
        assert_eq!(
            rewrite(Kind::Hls, b"#EXTM3U\n\xFF\n", &plan, 100),
            Err(RewriteError::NotUtf8(8))
        );
    }
}
