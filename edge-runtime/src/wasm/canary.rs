//! Canary rollout of a module version: a share of requests runs the new version while the
//! rest stays on the current one; once a second the node compares the canary's error and
//! block ratios over a sliding window with the policy's thresholds and removes the canary
//! at once when one is exceeded. Promotion makes it the current version.

use super::registry::ModuleVersion;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

/// What each version's requests came to, counted by the chain on every call.
#[derive(Debug, Default)]
pub struct Outcomes {
    /// Requests the version ran for.
    pub requests: AtomicU64,
    /// Traps, deadlines, memory limits, failed instantiation, unusable answers.
    pub errors: AtomicU64,
    /// Requests the version answered itself with a 4xx or 5xx (a WAF or auth block).
    pub blocks: AtomicU64,
}

#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct Counts {
    requests: u64,
    errors: u64,
    blocks: u64,
}

impl Outcomes {
    fn counts(&self) -> Counts {
        Counts {
            requests: self.requests.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            blocks: self.blocks.load(Ordering::Relaxed),
        }
    }
}

#[derive(Clone, Copy, Debug, serde::Serialize)]
pub struct CanaryPolicy {
    /// Share of requests, 1–99.
    pub percent: u32,
    /// The sliding window the ratios are measured over.
    #[serde(rename = "window_s", serialize_with = "as_secs")]
    pub window: Duration,
    /// Roll back when errors / requests in the window exceed this.
    pub max_error_ratio: f64,
    /// Roll back when blocks / requests in the window exceed this (none: not checked).
    pub max_block_ratio: Option<f64>,
    /// Ratios are judged only over at least this many requests.
    pub min_requests: u64,
}

fn as_secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

impl CanaryPolicy {
    pub fn check(&self) -> Result<(), String> {
        if !(1..=99).contains(&self.percent) {
            return Err("percent must be 1–99".into());
        }
        if self.window < Duration::from_secs(1) || self.window > Duration::from_secs(3600) {
            return Err("window_s must be 1–3600".into());
        }
        let ratio_ok = |r: f64| (0.0..=1.0).contains(&r);
        if !ratio_ok(self.max_error_ratio) || !self.max_block_ratio.is_none_or(ratio_ok) {
            return Err("ratios must be between 0 and 1".into());
        }
        if self.min_requests == 0 {
            return Err("min_requests must be at least 1".into());
        }
        Ok(())
    }
}

pub struct Canary {
    pub version: Arc<ModuleVersion>,
    pub policy: CanaryPolicy,
    started: SystemTime,
    /// Requests offered a pick; every `percent` of each hundred get the canary, so the
    /// share is exact whatever the request rate.
    picks: AtomicU64,
    /// Per-second samples of the canary's outcomes, oldest first, covering the window.
    samples: Mutex<VecDeque<(Instant, Counts)>>,
}

/// How a canary ended, kept for the admin API and the status page.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Ended {
    pub version_id: u64,
    pub version: String,
    /// `promoted`, `aborted` or `rolled-back`.
    pub state: &'static str,
    pub reason: String,
    pub at: String,
}

impl Canary {
    pub fn new(version: Arc<ModuleVersion>, policy: CanaryPolicy) -> Canary {
        let start = version.outcomes.counts();
        Canary {
            version,
            policy,
            started: SystemTime::now(),
            picks: AtomicU64::new(0),
            samples: Mutex::new(VecDeque::from([(Instant::now(), start)])),
        }
    }

    /// Whether this request goes to the canary.
    pub fn picks_this(&self) -> bool {
        self.picks.fetch_add(1, Ordering::Relaxed) % 100 < u64::from(self.policy.percent)
    }

    /// Samples the outcomes now; `Some(reason)` when the window's ratios break the policy.
    pub fn judge(&self, now: Instant) -> Option<String> {
        let counts = self.version.outcomes.counts();
        let mut samples = self.samples.lock().unwrap_or_else(|p| p.into_inner());
        samples.push_back((now, counts));
        // Keep one sample at or before the window's start as the baseline.
        while samples.len() > 2 && now.duration_since(samples[1].0) >= self.policy.window {
            samples.pop_front();
        }
        let base = samples.front().map(|s| s.1).unwrap_or_default();
        let requests = counts.requests.saturating_sub(base.requests);
        if requests < self.policy.min_requests {
            return None;
        }
        let errors = counts.errors.saturating_sub(base.errors);
        let blocks = counts.blocks.saturating_sub(base.blocks);
        let window = self.policy.window.as_secs_f64();
        let error_ratio = errors as f64 / requests as f64;
        if error_ratio > self.policy.max_error_ratio {
            return Some(format!(
                "error ratio {error_ratio:.3} ({errors} of {requests} requests in the last {window} s) exceeds {}",
                self.policy.max_error_ratio
            ));
        }
        match self.policy.max_block_ratio {
            Some(max) if blocks as f64 / requests as f64 > max => Some(format!(
                "block ratio {:.3} ({blocks} of {requests} requests in the last {window} s) exceeds {max}",
                blocks as f64 / requests as f64
            )),
            _ => None,
        }
    }

    pub fn summary(&self) -> serde_json::Value {
        let c = self.version.outcomes.counts();
        serde_json::json!({
            "state": "running",
            "id": self.version.id,
            "version": &*self.version.version,
            "sha256": self.version.sha256,
            "policy": self.policy,
            "started_at": httpdate::fmt_http_date(self.started),
            "requests": c.requests,
            "errors": c.errors,
            "blocks": c.blocks,
        })
    }

    pub fn ended(&self, state: &'static str, reason: String) -> Ended {
        Ended {
            version_id: self.version.id,
            version: self.version.version.to_string(),
            state,
            reason,
            at: httpdate::fmt_http_date(SystemTime::now()),
        }
    }
}
