//! The `headers` standard module: sets and removes header fields on the request (before
//! the cache and origin) and on the response (before the viewer), from the route's config:
//!
//! ```toml
//! [[routes.modules]]
//! module = "headers"
//! [routes.modules.config]
//! request_set = { "x-edge-region" = "eu-west" }
//! request_remove = ["cookie"]
//! response_set = { "strict-transport-security" = "max-age=63072000" }
//! response_remove = ["server", "x-powered-by"]
//! ```
//!
//! The logic is [`Edits`]; `export.rs` is the thin Wasm layer.

use serde::Deserialize;
use std::collections::BTreeMap;

#[cfg(target_arch = "wasm32")]
mod export;

/// The module's config. Unknown keys are rejected so a typo is an error, not a no-op.
#[derive(Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub request_set: BTreeMap<String, String>,
    pub request_remove: Vec<String>,
    pub response_set: BTreeMap<String, String>,
    pub response_remove: Vec<String>,
}

/// One header change, in the order it is applied: removals first, so `set` wins when a
/// config names a field in both.
#[derive(Debug, PartialEq, Eq)]
pub enum Edit<'a> {
    Remove(&'a str),
    Set(&'a str, &'a str),
}

/// The edits for one side of the exchange.
pub struct Edits;

impl Edits {
    pub fn request(config: &Config) -> Vec<Edit<'_>> {
        edits(&config.request_remove, &config.request_set)
    }

    pub fn response(config: &Config) -> Vec<Edit<'_>> {
        edits(&config.response_remove, &config.response_set)
    }
}

fn edits<'a>(remove: &'a [String], set: &'a BTreeMap<String, String>) -> Vec<Edit<'a>> {
    remove
        .iter()
        .map(|name| Edit::Remove(name))
        .chain(set.iter().map(|(name, value)| Edit::Set(name, value)))
        .collect()
}

pub fn parse_config(json: &str) -> Result<Config, String> {
    serde_json::from_str(json).map_err(|e| format!("headers module config: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removals_come_before_sets() {
        let config = parse_config(
            r#"{"response_set": {"server": "edge"}, "response_remove": ["server", "x-powered-by"]}"#,
        )
        .unwrap();
        assert_eq!(
            Edits::response(&config),
            vec![
                Edit::Remove("server"),
                Edit::Remove("x-powered-by"),
                Edit::Set("server", "edge")
            ]
        );
        assert!(Edits::request(&config).is_empty());
    }

    #[test]
    fn empty_config_changes_nothing() {
        let config = parse_config("{}").unwrap();
        assert_eq!(config, Config::default());
    }

    #[test]
    fn typos_are_errors() {
        let err = parse_config(r#"{"response_sett": {}}"#).unwrap_err();
        assert!(err.contains("unknown field `response_sett`"), "{err}");
    }
}
