//! The module's config (the route's `[...modules.config]` table, as JSON): which rule
//! files, in which order, and the settings a route overrides (mode, paranoia level,
//! threshold). The node compiles it natively when the config loads, so a bad rule is a
//! config error with its file, line and rule id; the module compiles the same text once
//! per instance.

use crate::action::EngineMode;
use crate::ruleset::{LoadError, LoadOptions, MemorySource, RuleSet};
use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    Blocking,
    DetectionOnly,
    Off,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The setup file (`crs-setup.conf`), loaded first.
    #[serde(default)]
    pub setup: Option<String>,
    /// Rule and data files by name (`REQUEST-942-APPLICATION-ATTACK-SQLI.conf`,
    /// `sql-errors.data`); the node fills it from `rules_dir`. Every `*.conf` loads, in name
    /// order.
    #[serde(default)]
    pub rules: BTreeMap<String, String>,
    /// SecLang loaded before the rule files (exclusions CRS must see first, as in its
    /// REQUEST-900 file) and after them (as in RESPONSE-999).
    #[serde(default)]
    pub before: Option<String>,
    #[serde(default)]
    pub after: Option<String>,
    /// Overrides `SecRuleEngine`: blocking (403), detection-only (log only), off.
    #[serde(default)]
    pub mode: Option<Mode>,
    /// CRS paranoia level (1 to 4), blocking and detection.
    #[serde(default)]
    pub paranoia: Option<u8>,
    /// CRS inbound anomaly score threshold.
    #[serde(default)]
    pub anomaly_threshold: Option<u32>,
    /// Load what compiles, skip the rest (each skipped rule is logged), instead of
    /// refusing the rule set.
    #[serde(default)]
    pub skip_errors: bool,
    /// The edge's media exclusion package (`media-exclusions.conf`): the CRS tuning player
    /// traffic needs (HLS key files, DRM licence requests, JSON beacons). On by default.
    #[serde(default = "yes")]
    pub media_exclusions: bool,
    /// How many request values the module remembers as clean (matched by none of the rules
    /// that read them), so the same `User-Agent`, token or segment path is not inspected
    /// again by those rules on every request; 0: inspect everything every time. Memory: at
    /// most ~600 bytes per value per instance.
    #[serde(default = "default_clean_values")]
    pub clean_values: usize,
}

fn default_clean_values() -> usize {
    crate::memo::DEFAULT_ENTRIES
}

fn yes() -> bool {
    true
}

/// Bounds the memo's memory in an instance (~600 bytes a value at most: 40 MiB).
const MAX_CLEAN_VALUES: usize = 65_536;

/// The media exclusion package, built into the module.
pub const MEDIA_EXCLUSIONS: &str = include_str!("media-exclusions.conf");

/// The name the settings a route overrides load under, in error messages.
const SETTINGS: &str = "route-settings.conf";

impl Config {
    pub fn parse(json: &str) -> Result<Config, String> {
        let config: Config = serde_json::from_str(json).map_err(|e| format!("waf config: {e}"))?;
        if let Some(p) = config.paranoia {
            if !(1..=4).contains(&p) {
                return Err(format!("waf config: paranoia is 1 to 4, not {p}"));
            }
        }
        if config.clean_values > MAX_CLEAN_VALUES {
            return Err(format!(
                "waf config: clean_values is at most {MAX_CLEAN_VALUES}, not {}",
                config.clean_values
            ));
        }
        if config.anomaly_threshold == Some(0) {
            return Err("waf config: anomaly_threshold must be at least 1".into());
        }
        if config.rules.is_empty() && config.before.is_none() && config.after.is_none() {
            return Err("waf config: no rules (set `rules_dir`, `before` or `after`)".into());
        }
        Ok(config)
    }

    /// The rule text a route's overrides add, between the setup and the rules (CRS's
    /// initialization rules keep values that are already set).
    fn settings(&self) -> String {
        let mut out = String::new();
        let mut setvars = Vec::new();
        if let Some(p) = self.paranoia {
            setvars.push(format!("setvar:tx.blocking_paranoia_level={p}"));
            setvars.push(format!("setvar:tx.detection_paranoia_level={p}"));
        }
        if let Some(t) = self.anomaly_threshold {
            setvars.push(format!("setvar:tx.inbound_anomaly_score_threshold={t}"));
        }
        if !setvars.is_empty() {
            // An id outside CRS's reserved ranges, so it never collides with a setup file.
            out.push_str(&format!(
                "SecAction \"id:9000001,phase:1,pass,nolog,t:none,{}\"\n",
                setvars.join(",")
            ));
        }
        out
    }

    /// Compiles the rule set: setup, route settings, `before`, every `*.conf` of `rules` in
    /// name order, `after`.
    pub fn compile(&self) -> Result<RuleSet, LoadError> {
        let mut files = MemorySource::default();
        let mut entries = Vec::new();
        let mut add = |name: String, text: String, entry: bool| {
            if entry {
                entries.push(name.clone());
            }
            files.files.insert(name, text);
        };
        if let Some(setup) = &self.setup {
            add("setup.conf".into(), setup.clone(), true);
        }
        add(SETTINGS.into(), self.settings(), true);
        if self.media_exclusions {
            add(
                "media-exclusions.conf".into(),
                MEDIA_EXCLUSIONS.into(),
                true,
            );
        }
        if let Some(before) = &self.before {
            add("before.conf".into(), before.clone(), true);
        }
        for (name, text) in &self.rules {
            add(
                format!("rules/{name}"),
                text.clone(),
                name.ends_with(".conf"),
            );
        }
        if let Some(after) = &self.after {
            add("after.conf".into(), after.clone(), true);
        }
        let mut set = RuleSet::load(
            &files,
            &entries,
            LoadOptions {
                skip_errors: self.skip_errors,
            },
        )?;
        // The route's mode is the last word, whatever `SecRuleEngine` the files set:
        // ops roll a rule set out per route, detection-only first.
        match self.mode {
            Some(Mode::Blocking) => set.engine = EngineMode::On,
            Some(Mode::DetectionOnly) => set.engine = EngineMode::DetectionOnly,
            Some(Mode::Off) => set.engine = EngineMode::Off,
            None => {}
        }
        Ok(set)
    }
}

/// The config a route gives the module for the Core Rule Set as shipped in `crs_dir`
/// (`crs-setup.conf.example` as the setup, every `.conf` and `.data` file of `rules/`),
/// blocking at `paranoia`: what the tests, benchmarks and profiling runs evaluate. Add
/// keys (`media_exclusions`...) to the object before serialising it.
#[cfg(not(target_arch = "wasm32"))]
pub fn crs_route_config(
    crs_dir: &std::path::Path,
    paranoia: u8,
) -> std::io::Result<serde_json::Value> {
    let setup = std::fs::read_to_string(crs_dir.join("crs-setup.conf.example"))?;
    let mut rules = BTreeMap::new();
    for entry in std::fs::read_dir(crs_dir.join("rules"))? {
        let path = entry?.path();
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        if name.ends_with(".conf") || name.ends_with(".data") {
            rules.insert(name.into_owned(), std::fs::read_to_string(&path)?);
        }
    }
    Ok(serde_json::json!({
        "setup": setup,
        "rules": rules,
        "mode": "blocking",
        "paranoia": paranoia,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_settings_override_the_rule_files() {
        let config = Config::parse(
            r#"{"mode":"detection-only","paranoia":2,"media_exclusions":false,"rules":{"a.conf":"SecRuleEngine On\nSecRule ARGS \"@pmFromFile words.data\" \"id:1,phase:2,deny\"","words.data":"evil\n"}}"#,
        )
        .unwrap();
        let set = config.compile().unwrap();
        // The route's mode wins over the files' SecRuleEngine.
        assert_eq!(set.engine, EngineMode::DetectionOnly);
        assert_eq!(set.rule_count(), 2);
    }

    #[test]
    fn bad_configs_say_what_is_wrong() {
        for (json, needle) in [
            (
                r#"{"rules":{"a.conf":""},"paranoia":5}"#,
                "paranoia is 1 to 4",
            ),
            (r#"{}"#, "no rules"),
            (
                r#"{"rules":{"a.conf":""},"clean_values":100000}"#,
                "clean_values is at most 65536, not 100000",
            ),
            (
                r#"{"rules":{"a.conf":""},"clean_values":-1}"#,
                "invalid value",
            ),
            (
                r#"{"rules":{"a.conf":""},"mode":"loud"}"#,
                "unknown variant",
            ),
            (r#"{"rules":{"a.conf":""},"rulez":1}"#, "unknown field"),
        ] {
            let e = Config::parse(json).unwrap_err();
            assert!(e.contains(needle), "{json}: {e}");
        }
        let e = Config::parse(r#"{"rules":{"a.conf":"SecRule ARGS \"@rx (\" \"id:7\""}}"#)
            .unwrap()
            .compile()
            .unwrap_err();
        assert_eq!(e.errors[0].file, "rules/a.conf");
        assert_eq!(e.errors[0].rule_id, Some(7));
    }
}
