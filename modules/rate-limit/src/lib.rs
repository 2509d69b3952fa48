//! The `rate-limit` standard module: picks, per request, which of the node's limiters
//! (`[rate_limits.<name>]`) to count the request against and under which key; the node
//! decides. Denials are 429 with `Retry-After` and the IETF `RateLimit-Policy` /
//! `RateLimit` fields.
//!
//! ```toml
//! [[routes.modules]]
//! module = "rate-limit"
//! [routes.modules.config]
//! allow = ["10.0.0.0/8"]           # never limited
//! headers = true                   # `RateLimit` on allowed responses too
//! [[routes.modules.config.rules]]
//! policy = "viewer"                # [rate_limits.viewer] in the node's config
//! key = ["ip"]                     # ip | subject | path | path-prefix | route | header:<name>
//! [[routes.modules.config.rules]]
//! policy = "segments"
//! key = ["subject", "path-prefix"]
//! paths = ["/secure/*"]            # only these paths (`*` wildcards)
//! ```
//!
//! The logic is plain Rust ([`Config::keys`], [`policy_fields`]); `export.rs` is the thin
//! Wasm layer.

use ipnet::IpNet;
use serde::Deserialize;
use std::net::IpAddr;

#[cfg(target_arch = "wasm32")]
mod export;

/// The context key the token-auth module leaves the token's subject under.
pub const SUBJECT_CONTEXT: &str = "token.subject";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub rules: Vec<Rule>,
    /// Client networks (CIDR) that are never limited.
    #[serde(default)]
    pub allow: Vec<String>,
    /// Add `RateLimit-Policy` / `RateLimit` to allowed responses.
    #[serde(default)]
    pub headers: bool,
    /// IPv6 clients are keyed by this prefix length (one subscriber usually has a /64).
    #[serde(default = "default_ipv6_prefix")]
    pub ipv6_prefix: u8,
    /// Path segments kept by the `path-prefix` key part.
    #[serde(default = "default_prefix_segments")]
    pub prefix_segments: usize,
}

fn default_ipv6_prefix() -> u8 {
    64
}
fn default_prefix_segments() -> usize {
    1
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    pub policy: String,
    #[serde(default = "default_key")]
    pub key: Vec<String>,
    /// Path patterns this rule applies to; all paths when empty.
    #[serde(default)]
    pub paths: Vec<String>,
}

fn default_key() -> Vec<String> {
    vec!["ip".into()]
}

/// One part of a rule's key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyPart {
    Ip,
    Subject,
    Path,
    PathPrefix,
    Route,
    Header(String),
}

impl KeyPart {
    pub fn parse(text: &str) -> Result<KeyPart, String> {
        Ok(match text {
            "ip" => KeyPart::Ip,
            "subject" => KeyPart::Subject,
            "path" => KeyPart::Path,
            "path-prefix" => KeyPart::PathPrefix,
            "route" => KeyPart::Route,
            _ => match text.strip_prefix("header:") {
                Some(name) if !name.is_empty() => KeyPart::Header(name.to_ascii_lowercase()),
                _ => {
                    return Err(format!(
                        "unknown key part `{text}` (ip, subject, path, path-prefix, route, header:<name>)"
                    ))
                }
            },
        })
    }
}

/// What the rules read from a request.
pub struct Request<'a> {
    pub path: &'a str,
    pub route: &'a str,
    pub client_ip: Option<IpAddr>,
    pub subject: Option<String>,
    pub header: &'a dyn Fn(&str) -> Option<String>,
}

/// A parsed config: rules with their key parts, the allowlist as networks.
pub struct Plan {
    pub config: Config,
    rules: Vec<Vec<KeyPart>>,
    allow: Vec<IpNet>,
}

impl Config {
    pub fn parse(json: &str) -> Result<Plan, String> {
        let config: Config =
            serde_json::from_str(json).map_err(|e| format!("rate-limit config: {e}"))?;
        if config.rules.is_empty() {
            return Err("rate-limit config: no `rules`".into());
        }
        if config.ipv6_prefix > 128 {
            return Err("rate-limit config: `ipv6_prefix` is at most 128".into());
        }
        let rules = config
            .rules
            .iter()
            .enumerate()
            .map(|(i, r)| {
                if r.key.is_empty() {
                    return Err(format!("rate-limit config: rules[{i}].key is empty"));
                }
                r.key
                    .iter()
                    .map(|k| {
                        KeyPart::parse(k)
                            .map_err(|e| format!("rate-limit config: rules[{i}].key: {e}"))
                    })
                    .collect()
            })
            .collect::<Result<_, _>>()?;
        let allow = config
            .allow
            .iter()
            .map(|c| {
                c.parse::<IpNet>()
                    .or_else(|_| c.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| format!("rate-limit config: `{c}` in `allow` is not a CIDR"))
            })
            .collect::<Result<_, _>>()?;
        Ok(Plan {
            config,
            rules,
            allow,
        })
    }
}

impl Plan {
    /// The (policy, key) pairs to count this request against: none for an allowlisted
    /// client; a rule whose key needs something the request lacks (no subject, no such
    /// header) does not apply to it.
    pub fn keys(&self, req: &Request<'_>) -> Vec<(&str, String)> {
        if req
            .client_ip
            .is_some_and(|ip| self.allow.iter().any(|net| net.contains(&ip)))
        {
            return Vec::new();
        }
        self.config
            .rules
            .iter()
            .zip(&self.rules)
            .filter(|(rule, _)| {
                rule.paths.is_empty() || rule.paths.iter().any(|p| glob(p, req.path))
            })
            .filter_map(|(rule, parts)| {
                let mut key = String::new();
                for part in parts {
                    if !key.is_empty() {
                        key.push('|');
                    }
                    match part {
                        KeyPart::Ip => {
                            key.push_str("ip:");
                            key.push_str(&self.client_key(req.client_ip?));
                        }
                        KeyPart::Subject => {
                            key.push_str("sub:");
                            push_escaped(&mut key, req.subject.as_deref()?);
                        }
                        KeyPart::Path => {
                            key.push_str("path:");
                            push_escaped(&mut key, req.path);
                        }
                        KeyPart::PathPrefix => {
                            key.push_str("prefix:");
                            key.push_str(&path_prefix(req.path, self.config.prefix_segments));
                        }
                        KeyPart::Route => {
                            key.push_str("route:");
                            key.push_str(req.route);
                        }
                        KeyPart::Header(name) => {
                            key.push_str(name);
                            key.push(':');
                            push_escaped(&mut key, &(req.header)(name)?);
                        }
                    }
                }
                Some((rule.policy.as_str(), key))
            })
            .collect()
    }

    /// An IPv4 address as is; an IPv6 address by its configured prefix.
    fn client_key(&self, ip: IpAddr) -> String {
        match ip {
            IpAddr::V4(v4) => v4.to_string(),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => v4.to_string(),
                None => ipnet::Ipv6Net::new(v6, self.config.ipv6_prefix)
                    .map(|n| n.trunc().to_string())
                    .unwrap_or_else(|_| v6.to_string()),
            },
        }
    }
}

/// Appends a value the viewer controls with `|` (the separator between key parts) and
/// `%` escaped, so no value can pose as another combination of parts.
fn push_escaped(key: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '|' => key.push_str("%7C"),
            '%' => key.push_str("%25"),
            c => key.push(c),
        }
    }
}

/// The first `segments` path segments: `/a/b/c.ts` with 1 → `/a/`.
pub fn path_prefix(path: &str, segments: usize) -> String {
    let mut end = 0;
    for (n, (i, _)) in path.match_indices('/').enumerate() {
        end = i + 1;
        if n == segments {
            break;
        }
    }
    path[..end.max(1).min(path.len())].to_owned()
}

/// `*` matches any run of characters.
fn glob(pattern: &str, text: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == text,
        Some((head, rest)) => {
            let Some(mut text) = text.strip_prefix(head) else {
                return false;
            };
            let pieces: Vec<&str> = rest.split('*').collect();
            for (i, piece) in pieces.iter().enumerate() {
                if i == pieces.len() - 1 {
                    return text.ends_with(piece);
                }
                match text.find(piece) {
                    Some(at) => text = &text[at + piece.len()..],
                    None => return false,
                }
            }
            true
        }
    }
}

/// A limiter's answer, as the host's `rate-limit` import gives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    pub limit: u32,
    pub remaining: u32,
    pub window_s: u32,
    pub reset_ms: u64,
    pub retry_after_ms: u64,
}

fn ceil_s(ms: u64) -> u64 {
    ms.div_ceil(1000)
}

/// `RateLimit-Policy` and `RateLimit` (draft-ietf-httpapi-ratelimit-headers) for `policy`.
pub fn policy_fields(policy: &str, d: &Decision) -> [(&'static str, String); 2] {
    let name = policy.replace(['"', '\\'], "");
    let reset = if d.allowed {
        ceil_s(d.reset_ms)
    } else {
        ceil_s(d.retry_after_ms).max(1)
    };
    [
        (
            "ratelimit-policy",
            format!("\"{name}\";q={};w={}", d.limit, d.window_s),
        ),
        (
            "ratelimit",
            format!("\"{name}\";r={};t={reset}", d.remaining),
        ),
    ]
}

/// The 429's `Retry-After` (whole seconds, at least 1).
pub fn retry_after(d: &Decision) -> String {
    ceil_s(d.retry_after_ms).max(1).to_string()
}

/// Of several answers, the one to report: a denial with the longest wait, else the
/// allowance with the fewest requests left.
pub fn decisive<'a>(answers: &'a [(&'a str, Decision)]) -> Option<&'a (&'a str, Decision)> {
    answers
        .iter()
        .filter(|(_, d)| !d.allowed)
        .max_by_key(|(_, d)| d.retry_after_ms)
        .or_else(|| answers.iter().min_by_key(|(_, d)| d.remaining))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(json: &str) -> Plan {
        Config::parse(json).unwrap()
    }

    fn request<'a>(
        path: &'a str,
        ip: &str,
        header: &'a dyn Fn(&str) -> Option<String>,
    ) -> Request<'a> {
        Request {
            path,
            route: "media",
            client_ip: ip.parse().ok(),
            subject: None,
            header,
        }
    }

    #[test]
    fn keys_by_ip_with_ipv6_by_prefix() {
        let p = plan(r#"{"rules":[{"policy":"v"}]}"#);
        let none = |_: &str| None;
        assert_eq!(
            p.keys(&request("/a", "203.0.113.7", &none)),
            vec![("v", "ip:203.0.113.7".to_owned())]
        );
        let a = p.keys(&request("/a", "2001:db8:1:2:aaaa::1", &none));
        let b = p.keys(&request("/a", "2001:db8:1:2:bbbb::9", &none));
        assert_eq!(a, b);
        assert_eq!(a[0].1, "ip:2001:db8:1:2::/64");
        assert_ne!(a, p.keys(&request("/a", "2001:db8:1:3::1", &none)));
        // IPv4-mapped IPv6 is the IPv4 client.
        assert_eq!(
            p.keys(&request("/a", "::ffff:203.0.113.7", &none))[0].1,
            "ip:203.0.113.7"
        );
    }

    #[test]
    fn combined_keys_paths_and_allowlist() {
        let p = plan(
            r#"{"allow":["10.0.0.0/8","192.0.2.1"],"rules":[
                {"policy":"seg","key":["subject","path-prefix"],"paths":["/secure/*"]},
                {"policy":"api","key":["header:X-Api-Key"]}]}"#,
        );
        let header = |n: &str| (n == "x-api-key").then(|| "k1".to_owned());
        let mut req = request("/secure/v/1.ts", "198.51.100.1", &header);
        req.subject = Some("viewer-42".into());
        assert_eq!(
            p.keys(&req),
            vec![
                ("seg", "sub:viewer-42|prefix:/secure/".to_owned()),
                ("api", "x-api-key:k1".to_owned())
            ]
        );
        // Another path: only the header rule.
        req.path = "/open/x";
        assert_eq!(p.keys(&req), vec![("api", "x-api-key:k1".to_owned())]);
        // No subject: the subject rule does not apply.
        req.path = "/secure/v/1.ts";
        req.subject = None;
        assert_eq!(p.keys(&req).len(), 1);
        // A header value cannot pose as another combination of parts.
        let forged = |n: &str| (n == "x-api-key").then(|| "k1|sub:viewer-42".to_owned());
        let req = request("/open/x", "198.51.100.1", &forged);
        assert_eq!(
            p.keys(&req),
            vec![("api", "x-api-key:k1%7Csub:viewer-42".to_owned())]
        );
        // Allowlisted networks are never counted.
        assert!(p
            .keys(&request("/secure/x", "10.1.2.3", &header))
            .is_empty());
        assert!(p
            .keys(&request("/secure/x", "192.0.2.1", &header))
            .is_empty());
    }

    #[test]
    fn bad_configs_are_named() {
        for (json, says) in [
            (r#"{"rules":[]}"#, "no `rules`"),
            (
                r#"{"rules":[{"policy":"v","key":["ipv9"]}]}"#,
                "unknown key part `ipv9`",
            ),
            (
                r#"{"rules":[{"policy":"v","key":[]}]}"#,
                "rules[0].key is empty",
            ),
            (
                r#"{"rules":[{"policy":"v"}],"allow":["10.0.0.0/33"]}"#,
                "not a CIDR",
            ),
            (
                r#"{"rules":[{"policy":"v"}],"ipv6_prefix":129}"#,
                "at most 128",
            ),
            (
                r#"{"rules":[{"policy":"v","typo":1}]}"#,
                "unknown field `typo`",
            ),
        ] {
            let e = Config::parse(json).err().unwrap();
            assert!(e.contains(says), "{json}: {e}");
        }
    }

    #[test]
    fn ietf_fields() {
        let allow = Decision {
            allowed: true,
            limit: 10,
            remaining: 7,
            window_s: 5,
            reset_ms: 1_500,
            retry_after_ms: 0,
        };
        assert_eq!(
            policy_fields("viewer", &allow),
            [
                ("ratelimit-policy", "\"viewer\";q=10;w=5".to_owned()),
                ("ratelimit", "\"viewer\";r=7;t=2".to_owned())
            ]
        );
        let deny = Decision {
            allowed: false,
            remaining: 0,
            retry_after_ms: 2_100,
            reset_ms: 6_000,
            ..allow
        };
        assert_eq!(retry_after(&deny), "3");
        assert_eq!(policy_fields("viewer", &deny)[1].1, "\"viewer\";r=0;t=3");
        let answers = [("a", allow), ("b", deny)];
        assert_eq!(decisive(&answers).unwrap().0, "b");
        assert_eq!(decisive(&answers[..1]).unwrap().0, "a");
        assert_eq!(path_prefix("/a/b/c.ts", 1), "/a/");
        assert_eq!(path_prefix("/a/b/c.ts", 2), "/a/b/");
        assert_eq!(path_prefix("/a", 1), "/");
        assert!(glob("/secure/*", "/secure/x"));
        assert!(glob("*.ts", "/a/b.ts"));
        assert!(!glob("/secure/*", "/open/x"));
    }
}
