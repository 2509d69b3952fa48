//! Metrics about modules: calls and failures counted by the host, and the counters and
//! histograms modules report through the `metrics` import.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::collections::{HashMap, HashSet};
use std::sync::RwLock;

/// Metric names one module may create; more are dropped (a module must not grow the
/// node's memory or the scrape without bound).
/// The WAF counts matches and blocks per rule id (`rule:942100`, `blocked-by:949110`),
/// which sets the size.
pub const MAX_NAMES_PER_MODULE: usize = 512;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NameLabels {
    module: String,
    name: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ModuleLabels {
    module: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FailureLabels {
    module: String,
    kind: String,
}

fn histogram() -> Histogram {
    Histogram::new(exponential_buckets(1.0, 4.0, 12))
}

/// Seconds, from 10 µs to ~1.5 s.
fn duration_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.00001, 2.5, 14))
}

pub struct ModuleMetrics {
    calls: Family<ModuleLabels, Counter>,
    durations: Family<ModuleLabels, Histogram, fn() -> Histogram>,
    failures: Family<FailureLabels, Counter>,
    counters: Family<NameLabels, Counter>,
    histograms: Family<NameLabels, Histogram, fn() -> Histogram>,
    names: RwLock<HashMap<String, HashSet<String>>>,
}

impl Default for ModuleMetrics {
    fn default() -> Self {
        ModuleMetrics {
            calls: Family::default(),
            durations: Family::new_with_constructor(duration_histogram),
            failures: Family::default(),
            counters: Family::default(),
            histograms: Family::new_with_constructor(histogram),
            names: RwLock::new(HashMap::new()),
        }
    }
}

impl ModuleMetrics {
    /// The counter of instances run for a module (one per request): looked up once per
    /// module, then incremented without a lookup.
    pub fn calls_counter(&self, module: &str) -> Counter {
        self.calls
            .get_or_create(&ModuleLabels {
                module: module.to_owned(),
            })
            .clone()
    }

    /// The histogram of a module's request-phase time (instantiation and hook), looked up
    /// once per module.
    pub fn duration_histogram(&self, module: &str) -> Histogram {
        self.durations
            .get_or_create(&ModuleLabels {
                module: module.to_owned(),
            })
            .clone()
    }

    /// A module failed: `trap`, `deadline`, `memory`, `instantiate`, `bad-response`.
    pub fn failure(&self, module: &str, kind: &str) {
        self.failures
            .get_or_create(&FailureLabels {
                module: module.to_owned(),
                kind: kind.to_owned(),
            })
            .inc();
    }

    pub fn counter_add(&self, module: &str, name: &str, value: u64) {
        if self.admit(module, name) {
            self.counters
                .get_or_create(&labels(module, name))
                .inc_by(value);
        }
    }

    pub fn observe(&self, module: &str, name: &str, value: f64) {
        if value.is_finite() && self.admit(module, name) {
            self.histograms
                .get_or_create(&labels(module, name))
                .observe(value);
        }
    }

    /// A module-reported counter's value (0 if never reported): the WAF's `blocked`, the
    /// rate limiter's `denied`, for the status page.
    pub fn counter_value(&self, module: &str, name: &str) -> u64 {
        self.counters
            .get(&labels(module, name))
            .map_or(0, |c| c.get())
    }

    fn admit(&self, module: &str, name: &str) -> bool {
        if name.is_empty() || name.len() > 128 {
            return false;
        }
        if let Ok(names) = self.names.read() {
            if names.get(module).is_some_and(|set| set.contains(name)) {
                return true;
            }
        }
        let Ok(mut names) = self.names.write() else {
            return false;
        };
        let set = names.entry(module.to_owned()).or_default();
        if set.len() >= MAX_NAMES_PER_MODULE {
            return set.contains(name);
        }
        set.insert(name.to_owned());
        true
    }

    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "module_calls",
            "Module instances run (one per module per request)",
            self.calls.clone(),
        );
        registry.register(
            "module_duration_seconds",
            "Time in a module's request phase (instantiation and hook), per call",
            self.durations.clone(),
        );
        registry.register(
            "module_failures",
            "Module failures by kind: trap, deadline, memory, instantiate, bad-response",
            self.failures.clone(),
        );
        registry.register(
            "module_counter",
            "Counters reported by modules",
            self.counters.clone(),
        );
        registry.register(
            "module_histogram",
            "Histograms reported by modules",
            self.histograms.clone(),
        );
    }
}

fn labels(module: &str, name: &str) -> NameLabels {
    NameLabels {
        module: module.to_owned(),
        name: name.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_per_module_are_bounded() {
        let m = ModuleMetrics::default();
        for i in 0..MAX_NAMES_PER_MODULE + 10 {
            m.counter_add("waf", &format!("n{i}"), 1);
        }
        m.counter_add("other", "n0", 1);
        let mut registry = Registry::default();
        m.register(&mut registry);
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &registry).unwrap();
        let waf_lines = out
            .lines()
            .filter(|l| l.starts_with("module_counter_total{module=\"waf\""))
            .count();
        assert_eq!(waf_lines, MAX_NAMES_PER_MODULE);
        assert!(out.contains("module_counter_total{module=\"other\",name=\"n0\"} 1"));
    }

    #[test]
    fn histograms_count_and_sum_finite_values_only() {
        let m = ModuleMetrics::default();
        for v in [3.0, 5.0, f64::NAN, f64::INFINITY] {
            m.observe("probe", "bytes", v);
        }
        let mut registry = Registry::default();
        m.register(&mut registry);
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &registry).unwrap();
        assert!(
            out.contains("module_histogram_count{module=\"probe\",name=\"bytes\"} 2"),
            "{out}"
        );
        assert!(
            out.contains("module_histogram_sum{module=\"probe\",name=\"bytes\"} 8.0"),
            "{out}"
        );
        // Buckets 1, 4, 16, ...: 3 falls in the one up to 4, 5 in the one up to 16.
        let bucket = |le: &str| {
            out.lines()
                .find(|l| {
                    l.starts_with("module_histogram_bucket{")
                        && l.contains("module=\"probe\"")
                        && l.contains(&format!("le=\"{le}\""))
                })
                .and_then(|l| l.rsplit(' ').next())
                .map(str::to_owned)
        };
        assert_eq!(bucket("4.0").as_deref(), Some("1"), "{out}");
        assert_eq!(bucket("16.0").as_deref(), Some("2"), "{out}");
    }
}
