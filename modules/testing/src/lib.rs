//! A module whose behaviour the route's config picks (`mode`), so one artifact covers the
//! host's tests: denying, changing headers, transforming bodies, and misbehaving (traps,
//! endless loops, memory bombs) to prove the host's limits.

use serde::Deserialize;

#[cfg(target_arch = "wasm32")]
mod export;

#[derive(Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub mode: Mode,
    /// Appended to `x-chain` on the request and `x-chain-response` on the response, so
    /// tests see the order of a chain.
    pub tag: Option<String>,
    /// For `rate-limit`: the node's policy name.
    pub policy: Option<String>,
    /// The mode of the `v2` build when set: a second version that behaves differently
    /// (breaks) under the same route config, for canary tests.
    pub v2_mode: Option<Mode>,
}

#[derive(Debug, Default, Deserialize, PartialEq, Clone, Copy)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Changes nothing (benchmarks).
    #[default]
    Noop,
    /// 403 for every request.
    Deny,
    /// Tags the request and response (see `tag`), and reports its build version in
    /// `x-module-version`.
    Tag,
    /// Panics (a trap) in the request hook.
    Trap,
    /// Tags the request like `tag`, then panics: under `fail-open` the tag must be undone.
    TagThenTrap,
    /// Sets the response status to 203 in the response hook.
    Status,
    /// Panics in the response hook.
    TrapResponse,
    /// Never returns from the request hook.
    Loop,
    /// Never returns from the request hook either, but waits: sleeps 100 ms at a time (the
    /// `wasm32-wasip2` build, through WASI's clocks; it uses almost no CPU).
    SleepLoop,
    /// Waits once in the request hook, for an hour (the `wasm32-wasip2` build): a single
    /// WASI wait that does not return, during which no guest code runs.
    SleepOnce,
    /// Allocates until memory runs out.
    MemoryBomb,
    /// Upper-cases `text/plain` bodies.
    Upper,
    /// 429 when the node's limiter `policy` denies the viewer's address.
    RateLimit,
    /// Answers with HMAC-SHA256("key", path) in hex, checked against the host's verify;
    /// `x-sha256` is SHA-256(path) in hex and `x-ct-eq` the host's constant-time compare
    /// of the tag with itself and with one bit flipped.
    Hmac,
    /// Answers with a field the node manages (`content-length`): a bad response.
    BadAnswer,
    /// Tags the request like `tag`, then answers `done`: its response hook (which would
    /// tag the response) must not be called.
    Done,
    /// Reports what token-auth left in the request context (`token.format`,
    /// `token.subject`, `token.query`) as `x-token-*` response fields.
    Context,
}

pub fn parse_config(json: &str) -> Result<Config, String> {
    serde_json::from_str(json).map_err(|e| format!("test module config: {e}"))
}

/// Appends `tag` to a comma-separated list header value.
pub fn append_tag(existing: Option<String>, tag: &str) -> String {
    match existing {
        Some(list) if !list.is_empty() => format!("{list},{tag}"),
        _ => tag.to_owned(),
    }
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_modes() {
        assert_eq!(parse_config("{}").unwrap().mode, Mode::Noop);
        let c = parse_config(r#"{"mode": "memory-bomb", "tag": "a"}"#).unwrap();
        assert_eq!(c.mode, Mode::MemoryBomb);
        assert!(parse_config(r#"{"mode": "explode"}"#).is_err());
    }

    #[test]
    fn tags_append() {
        assert_eq!(append_tag(None, "a"), "a");
        assert_eq!(append_tag(Some("a".into()), "b"), "a,b");
        assert_eq!(hex(&[0, 255]), "00ff");
    }
}
