//! The `token-auth` standard module: lets a request through only with a valid token in
//! one of the formats viewers already carry, configured per route (several at once):
//!
//! ```toml
//! [[routes.modules]]
//! module = "token-auth"
//! [routes.modules.config.native]          # the node's own compact signed URL
//! keys = { k1 = "<hex secret>" }
//! signing_key = "k1"                      # for session cookies
//! [routes.modules.config.akamai]          # EdgeAuth `hdnts=st=…~exp=…~acl=…~hmac=…`
//! keys = { current = "<hex>", previous = "<hex>" }
//! algorithm = "sha256"                    # sha256 | sha1 | md5
//! [routes.modules.config.cloudfront]      # signed URLs and cookies
//! public_keys = { K2JCJMDEHXQW5F = "-----BEGIN PUBLIC KEY-----…" }
//! [routes.modules.config.jwt]
//! jwks_file = "keys/jwks.json"            # the node reads `*_file` values at load
//! issuer = "https://issuer.example"
//! audience = "edge"
//! path_claim = "paths"
//! [routes.modules.config.session]         # after one good token, a cookie for the rest
//! cookie = "edge_session"
//! ttl_s = 3600
//! path = "/secure/"
//! ```
//!
//! Verification is plain Rust over a [`Crypto`] trait; `export.rs` plugs in the host's
//! crypto import, `edge token verify` the same host code natively.

pub mod akamai;
pub mod cloudfront;
pub mod crypto;
pub mod jwt;
pub mod native;
pub mod request;
pub mod wildcard;

#[cfg(all(target_arch = "wasm32", feature = "module"))]
mod export;

pub use crypto::{Crypto, Hmac, PublicKey, Signature};
pub use request::{Lazy, Place, Request, Source};

use serde::Deserialize;
use std::collections::BTreeMap;

/// Why a request was refused: the short code in the log. The viewer sees only the status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    Missing,
    Malformed,
    Expired,
    NotYetValid,
    BadSignature,
    UnknownKey,
    AclMismatch,
    IpMismatch,
    BadAlgorithm,
    BadIssuer,
    BadAudience,
}

impl Reason {
    pub fn code(self) -> &'static str {
        match self {
            Reason::Missing => "missing",
            Reason::Malformed => "malformed",
            Reason::Expired => "expired",
            Reason::NotYetValid => "not-yet-valid",
            Reason::BadSignature => "bad-signature",
            Reason::UnknownKey => "unknown-key",
            Reason::AclMismatch => "acl-mismatch",
            Reason::IpMismatch => "ip-mismatch",
            Reason::BadAlgorithm => "bad-algorithm",
            Reason::BadIssuer => "bad-issuer",
            Reason::BadAudience => "bad-audience",
        }
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.code())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Native,
    Akamai,
    CloudFront,
    Jwt,
    /// The session cookie this module set after an earlier good token.
    Session,
}

impl Format {
    pub fn name(self) -> &'static str {
        match self {
            Format::Native => "native",
            Format::Akamai => "akamai",
            Format::CloudFront => "cloudfront",
            Format::Jwt => "jwt",
            Format::Session => "session",
        }
    }
}

/// A token that passed.
#[derive(Debug, Clone, PartialEq)]
pub struct Verified {
    pub format: Format,
    /// Who the token is for, when the format says (`sub`, `id=`), for rate limiting.
    pub subject: Option<String>,
    /// Unix seconds after which the token no longer passes.
    pub expires: u64,
    /// The query parameters that carried the token, to append to URLs that the viewer
    /// will fetch next (manifest rewriting).
    pub query: Option<String>,
}

/// A refusal, with what the log should say.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    pub format: Option<Format>,
    pub reason: Reason,
    /// A detail for the log (never key material).
    pub detail: String,
}

impl Failure {
    pub fn new(format: Format, reason: Reason, detail: impl Into<String>) -> Self {
        Failure {
            format: Some(format),
            reason,
            detail: detail.into(),
        }
    }
}

/// The module's config (the route's table). Each format present is accepted.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub native: Option<native::Config>,
    pub akamai: Option<akamai::Config>,
    pub cloudfront: Option<cloudfront::Config>,
    pub jwt: Option<jwt::Config>,
    pub session: Option<SessionConfig>,
    /// Clock skew allowed on every time check, in seconds.
    #[serde(default = "default_skew")]
    pub skew_s: u64,
}

fn default_skew() -> u64 {
    30
}

/// After a good token, a cookie (a native token) so that the segment requests a player
/// makes without the query token pass too.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionConfig {
    #[serde(default = "default_session_cookie")]
    pub cookie: String,
    /// The cookie's lifetime; never beyond the token's own expiry.
    #[serde(default = "default_session_ttl")]
    pub ttl_s: u64,
    /// The cookie's `Path` and the prefix it grants.
    #[serde(default = "default_session_path")]
    pub path: String,
    /// Bind the cookie to the viewer's IP address.
    #[serde(default)]
    pub bind_ip: bool,
    /// `SameSite` attribute: `Lax`, `Strict` or `None` (players on another origin).
    #[serde(default = "default_same_site")]
    pub same_site: String,
}

fn default_session_cookie() -> String {
    "edge_session".into()
}
fn default_session_ttl() -> u64 {
    3600
}
fn default_session_path() -> String {
    "/".into()
}
fn default_same_site() -> String {
    "Lax".into()
}

/// Decodes hex secrets (`keys = { id = "hex" }`), naming the key that is not hex.
pub fn hex_keys(keys: &BTreeMap<String, String>) -> Result<Vec<(String, Vec<u8>)>, String> {
    keys.iter()
        .map(|(id, hex)| {
            decode_hex(hex)
                .map(|k| (id.clone(), k))
                .ok_or_else(|| format!("key `{id}` is not an even number of hex digits"))
        })
        .collect()
}

pub fn decode_hex(hex: &str) -> Option<Vec<u8>> {
    let hex = hex.trim().as_bytes();
    if !hex.len().is_multiple_of(2) || hex.is_empty() {
        return None;
    }
    hex.chunks(2)
        .map(|pair| {
            let digit = |c: u8| (c as char).to_digit(16);
            Some((digit(pair[0])? * 16 + digit(pair[1])?) as u8)
        })
        .collect()
}

pub fn encode_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Config {
    /// Parses the route's table (JSON from the node) and checks what serde cannot.
    pub fn parse(json: &str) -> Result<Config, String> {
        let config: Config =
            serde_json::from_str(json).map_err(|e| format!("token-auth config: {e}"))?;
        if config.native.is_none()
            && config.akamai.is_none()
            && config.cloudfront.is_none()
            && config.jwt.is_none()
        {
            return Err(
                "token-auth config: no format configured (native, akamai, cloudfront, jwt)".into(),
            );
        }
        for (format, keys) in [
            ("native", config.native.as_ref().map(|c| &c.keys)),
            ("akamai", config.akamai.as_ref().map(|c| &c.keys)),
        ] {
            if let Some(keys) = keys {
                hex_keys(keys).map_err(|e| format!("token-auth config: {format}: {e}"))?;
            }
        }
        if let Some(jwt) = &config.jwt {
            if jwt.jwks.is_none() && jwt.public_keys.is_empty() && jwt.secrets.is_empty() {
                return Err(
                    "token-auth config: `jwt` needs keys: `jwks` (or `jwks_file`), `public_keys` or `secrets`"
                        .into(),
                );
            }
        }
        if config.session.is_some() && config.signing_key().is_none() {
            return Err(
                "token-auth config: `session` needs `native.signing_key` to sign its cookie".into(),
            );
        }
        Ok(config)
    }

    /// The query parameters that carry tokens on this route: the cache keeps them out of
    /// its key, so every viewer's signed URL for an object finds the same stored copy.
    pub fn query_params(&self) -> Vec<&str> {
        let mut names = Vec::new();
        names.extend(self.native.as_ref().and_then(|c| c.from.query.as_deref()));
        names.extend(self.akamai.as_ref().and_then(|c| c.from.query.as_deref()));
        if self.cloudfront.as_ref().is_some_and(|c| c.urls) {
            names.extend(["Expires", "Policy", "Signature", "Key-Pair-Id"]);
        }
        names.extend(self.jwt.as_ref().and_then(|c| c.from.query.as_deref()));
        names
    }

    /// The native key (id, secret) that signs session cookies.
    pub fn signing_key(&self) -> Option<(String, Vec<u8>)> {
        let native = self.native.as_ref()?;
        let id = native.signing_key.as_ref()?;
        Some((id.clone(), decode_hex(native.keys.get(id)?)?))
    }

    /// Checks the request's token(s). Every configured format whose token is present is
    /// tried; the first that passes wins. With none present, the session cookie; with no
    /// token at all, [`Reason::Missing`].
    pub fn verify(
        &self,
        req: &Request<'_>,
        crypto: &dyn Crypto,
        now: u64,
    ) -> Result<Verified, Failure> {
        if ambiguous_path(req.path) {
            return Err(Failure {
                format: None,
                reason: Reason::AclMismatch,
                detail: format!("{} has dot-segments or encoded separators", req.path),
            });
        }
        let mut first_failure: Option<Failure> = None;
        let mut attempt = |result: Option<Result<Verified, Failure>>| match result {
            Some(Ok(v)) => Some(v),
            Some(Err(f)) => {
                first_failure.get_or_insert(f);
                None
            }
            None => None,
        };
        if let Some(c) = &self.native {
            if let Some(v) = attempt(c.check(req, crypto, now, self.skew_s)) {
                return Ok(v);
            }
        }
        if let Some(c) = &self.akamai {
            if let Some(v) = attempt(c.check(req, crypto, now, self.skew_s)) {
                return Ok(v);
            }
        }
        if let Some(c) = &self.cloudfront {
            if let Some(v) = attempt(c.check(req, crypto, now, self.skew_s)) {
                return Ok(v);
            }
        }
        if let Some(c) = &self.jwt {
            if let Some(v) = attempt(c.check(req, crypto, now, self.skew_s)) {
                return Ok(v);
            }
        }
        if let Some(failure) = first_failure {
            return Err(failure);
        }
        if let (Some(session), Some(native)) = (&self.session, &self.native) {
            if let Some(token) = request::cookie(req.cookies.get(), &session.cookie) {
                return native
                    .check_token(token, req, crypto, now, self.skew_s)
                    .map(|v| Verified {
                        format: Format::Session,
                        query: None,
                        ..v
                    })
                    .map_err(|f| Failure {
                        format: Some(Format::Session),
                        ..f
                    });
            }
        }
        Err(Failure {
            format: None,
            reason: Reason::Missing,
            detail: "no token in the request".into(),
        })
    }

    /// True when a missing token should be answered 401 with `WWW-Authenticate: Bearer`
    /// (RFC 6750): a JWT is accepted from the `Authorization` field.
    pub fn wants_bearer(&self) -> bool {
        self.jwt.as_ref().is_some_and(|j| {
            j.from
                .header
                .as_deref()
                .is_some_and(|h| h.eq_ignore_ascii_case("authorization"))
        })
    }

    /// The `Set-Cookie` value for a session after `verified`, if sessions are on.
    pub fn session_cookie(
        &self,
        verified: &Verified,
        req: &Request<'_>,
        crypto: &dyn Crypto,
        now: u64,
    ) -> Option<String> {
        let session = self.session.as_ref()?;
        if verified.format == Format::Session {
            return None;
        }
        let (id, key) = self.signing_key()?;
        let expires = verified.expires.min(now.saturating_add(session.ttl_s));
        let ip = if session.bind_ip { req.client_ip } else { None };
        let token = native::sign(&id, &key, None, expires, &session.path, ip, crypto);
        let max_age = expires.saturating_sub(now);
        Some(format!(
            "{}={token}; Path={}; Max-Age={max_age}; HttpOnly; Secure; SameSite={}",
            session.cookie, session.path, session.same_site
        ))
    }
}

/// Parses a client address the host gives (`1.2.3.4`, `::1`, or with a port).
/// An IPv4 client on a dual-stack socket (`::ffff:a.b.c.d`) is the IPv4 address.
pub fn parse_ip(text: &str) -> Option<std::net::IpAddr> {
    text.parse::<std::net::IpAddr>()
        .ok()
        .or_else(|| text.parse::<std::net::SocketAddr>().ok().map(|a| a.ip()))
        .map(|ip| ip.to_canonical())
}

/// True when the path has a `.` or `..` segment, raw or percent-encoded (`%2e%2e`), or an
/// encoded `/` or `\`: a scope check on such a path says nothing about the object an
/// origin that normalizes paths would serve (`/free/../premium/x` is `/premium/x`).
pub fn ambiguous_path(path: &str) -> bool {
    let decoded = percent_encoding::percent_decode_str(path).decode_utf8_lossy();
    let lower = path.to_ascii_lowercase();
    lower.contains("%2f")
        || lower.contains("%5c")
        || decoded.contains('\\')
        || decoded.split('/').any(|seg| seg == "." || seg == "..")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_that_could_escape_a_scope_are_refused() {
        for bad in [
            "/free/../premium/x.ts",
            "/free/%2e%2e/premium/x.ts",
            "/free/%2E%2e/x",
            "/free/./x",
            "/free%2f..%2fpremium/x",
            "/free/..%5cpremium",
            "/free/..",
        ] {
            assert!(ambiguous_path(bad), "{bad}");
        }
        for good in ["/free/x.ts", "/free/a..b/x.ts", "/free/.hidden", "/a%20b/c"] {
            assert!(!ambiguous_path(good), "{good}");
        }
        assert_eq!(parse_ip("::ffff:10.1.2.3"), "10.1.2.3".parse().ok());
        assert_eq!(parse_ip("[::ffff:10.1.2.3]:443"), "10.1.2.3".parse().ok());
    }
}
