//! The status page's data (`GET /status.json` on the admin listener): the node's identity,
//! its modules and canaries, and the last five minutes of requests/s, cache hit ratio,
//! origin latency and WAF blocks, sampled once a second from the counters the request
//! path already keeps (nothing is added to the request path for it).

use super::metrics::NodeMetrics;
use crate::cache::Cache;
use crate::wasm::ModuleHost;
use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

/// Samples kept: five minutes at one a second.
const SAMPLES: usize = 300;

#[derive(Clone, Copy, Default)]
struct Sample {
    unix_s: u64,
    requests: u64,
    /// Answered from the cache (fresh, stale or revalidated) and fetched (misses).
    from_cache: u64,
    misses: u64,
    origin_us: u64,
    origin_count: u64,
    blocks: u64,
    rate_limited: u64,
}

pub struct Status {
    metrics: Arc<NodeMetrics>,
    cache: Arc<Cache>,
    modules: Option<Arc<ModuleHost>>,
    samples: Mutex<VecDeque<Sample>>,
}

impl Status {
    pub fn new(
        metrics: Arc<NodeMetrics>,
        cache: Arc<Cache>,
        modules: Option<Arc<ModuleHost>>,
    ) -> Arc<Status> {
        let status = Arc::new(Status {
            metrics,
            cache,
            modules,
            samples: Mutex::new(VecDeque::with_capacity(SAMPLES + 1)),
        });
        status.sample();
        status
    }

    fn read(&self) -> Sample {
        let c = &self.cache.metrics;
        let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        let module_counter = |module: &str, name: &str| {
            self.modules
                .as_ref()
                .map_or(0, |m| m.services.metrics.counter_value(module, name))
        };
        Sample {
            unix_s: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            requests: load(&self.metrics.requests_total),
            from_cache: load(&c.hits) + load(&c.stale) + load(&c.revalidated),
            misses: load(&c.misses),
            origin_us: load(&self.metrics.origin_us_sum),
            origin_count: load(&self.metrics.origin_count),
            blocks: module_counter("waf", "blocked"),
            rate_limited: module_counter("rate-limit", "denied"),
        }
    }

    /// Takes one sample; the node calls this once a second.
    pub fn sample(&self) {
        let now = self.read();
        let mut samples = self.samples.lock().unwrap_or_else(|p| p.into_inner());
        samples.push_back(now);
        while samples.len() > SAMPLES + 1 {
            samples.pop_front();
        }
    }

    pub fn json(&self) -> serde_json::Value {
        let now = self.read();
        let samples: Vec<Sample> = self
            .samples
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .copied()
            .collect();
        let mut t = Vec::with_capacity(samples.len());
        let mut requests_per_s = Vec::with_capacity(samples.len());
        let mut hit_ratio = Vec::with_capacity(samples.len());
        let mut origin_latency_ms = Vec::with_capacity(samples.len());
        let mut blocks_per_s = Vec::with_capacity(samples.len());
        for pair in samples.windows(2) {
            let (a, b) = (pair[0], pair[1]);
            let secs = b.unix_s.saturating_sub(a.unix_s).max(1) as f64;
            t.push(b.unix_s);
            requests_per_s.push(b.requests.saturating_sub(a.requests) as f64 / secs);
            hit_ratio.push(ratio(
                b.from_cache.saturating_sub(a.from_cache),
                b.misses.saturating_sub(a.misses),
            ));
            origin_latency_ms.push(mean_ms(
                b.origin_us.saturating_sub(a.origin_us),
                b.origin_count.saturating_sub(a.origin_count),
            ));
            blocks_per_s.push(b.blocks.saturating_sub(a.blocks) as f64 / secs);
        }
        let c = &self.metrics.connections;
        let modules = self
            .modules
            .as_ref()
            .map_or_else(Vec::new, |host| match host.list() {
                serde_json::Value::Array(list) => list.iter().map(module_row).collect(),
                _ => Vec::new(),
            });
        serde_json::json!({
            "node": {
                "region": self.metrics.identity.region,
                "node_id": self.metrics.identity.node_id,
                "version": env!("CARGO_PKG_VERSION"),
                "uptime_s": self.metrics.started.elapsed().as_secs(),
            },
            "modules": modules,
            "totals": {
                "requests": now.requests,
                "cache_hit_ratio": ratio(now.from_cache, now.misses),
                "origin_latency_ms": mean_ms(now.origin_us, now.origin_count),
                "blocks": now.blocks,
                "rate_limited": now.rate_limited,
                "connections": {
                    "h1": c.h1.load(Ordering::Relaxed),
                    "h2": c.h2.load(Ordering::Relaxed),
                    "h3": c.h3.load(Ordering::Relaxed),
                },
            },
            "series": {
                "t": t,
                "requests_per_s": requests_per_s,
                "hit_ratio": hit_ratio,
                "origin_latency_ms": origin_latency_ms,
                "blocks_per_s": blocks_per_s,
            },
        })
    }
}

/// One module as the page shows it, from the admin API's module summary.
fn module_row(m: &serde_json::Value) -> serde_json::Value {
    let short = |sha: &serde_json::Value| sha.as_str().map(|s| s[..s.len().min(8)].to_owned());
    let canary = m["canary"].as_object().map(|c| {
        serde_json::json!({
            "version": short(&c["sha256"]),
            "percent": c["policy"]["percent"],
            "state": c["state"],
            "errors": c["errors"],
            "requests": c["requests"],
        })
    });
    serde_json::json!({
        "name": m["module"],
        "version": short(&m["current"]["sha256"]),
        "label": m["current"]["version"],
        "versions": m["versions"].as_array().map_or(0, Vec::len),
        "canary": canary,
        "last_canary": m["last_canary"],
    })
}

/// `None` (JSON null, a gap in the chart) for a second without cacheable requests: not
/// the same as a real 0.
fn ratio(part: u64, rest: u64) -> Option<f64> {
    (part + rest > 0).then(|| part as f64 / (part + rest) as f64)
}

/// `None` for a second without origin fetches.
fn mean_ms(sum_us: u64, count: u64) -> Option<f64> {
    (count > 0).then(|| sum_us as f64 / count as f64 / 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_intervals_are_gaps_not_zero_or_nan() {
        assert_eq!(ratio(0, 0), None);
        assert_eq!(mean_ms(0, 0), None);
        assert_eq!(ratio(3, 1), Some(0.75));
        assert_eq!(mean_ms(5000, 2), Some(2.5));
    }
}
