//! The metrics endpoint's content, in the OpenMetrics text format (Prometheus scrapes it)
//! via `prometheus-client`. Values live in the components' own atomic counters; a scrape
//! snapshots them into a fresh registry, so the request path never touches the registry.

use crate::cache::Cache;
use crate::wasm::state::Services;
use prometheus_client::encoding::text::{encode_eof, encode_registry};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;
use std::sync::atomic::Ordering;

pub fn render(cache: &Cache, modules: Option<&Services>) -> String {
    let mut registry = Registry::with_prefix("edge_cache");
    let m = &cache.metrics;
    let counters = [
        (
            "hits",
            "Requests answered from a fresh stored response",
            &m.hits,
        ),
        (
            "misses",
            "Requests that fetched from the origin (fill leaders and their waiters)",
            &m.misses,
        ),
        (
            "stale",
            "Requests answered with a stale response (stale-while-revalidate, stale-if-error)",
            &m.stale,
        ),
        (
            "revalidated",
            "Requests answered after the origin confirmed the stored response (304)",
            &m.revalidated,
        ),
        (
            "coalesced",
            "Requests that joined a fetch already in flight instead of starting one",
            &m.coalesced,
        ),
        (
            "passes",
            "Requests sent to the origin uncached (viewer-specific responses, HEAD misses)",
            &m.passes,
        ),
        (
            "bytes_served",
            "Body bytes answered from stored responses",
            &m.bytes_from_cache,
        ),
        (
            "fills_failed",
            "Origin fetches that failed before completing",
            &m.fills_failed,
        ),
        (
            "not_stored_too_large",
            "Cacheable responses not stored because they exceed max_object_bytes",
            &m.not_stored_too_large,
        ),
        (
            "evictions",
            "Stored responses evicted to stay within max_bytes",
            &cache.store.stats.evictions,
        ),
    ];
    for (name, help, value) in counters {
        registry.register(name, help, ConstCounter::new(value.load(Ordering::Relaxed)));
    }
    let gauges = [
        (
            "memory_bytes",
            "Bytes of memory held by stored responses",
            cache.store.bytes_used() as i64,
        ),
        ("entries", "Stored cache keys", cache.store.len() as i64),
        (
            "fills_in_progress",
            "Origin fetches in flight",
            cache.fills_in_progress() as i64,
        ),
        (
            "max_bytes",
            "Configured memory bound",
            cache.store.capacity() as i64,
        ),
    ];
    for (name, help, value) in gauges {
        registry.register(name, help, ConstGauge::new(value));
    }
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = encode_registry(&mut out, &registry);
    if let Some(modules) = modules {
        let mut module_registry = Registry::with_prefix("edge");
        modules.metrics.register(&mut module_registry);
        register_rate_limits(&modules.rate_limits, &mut module_registry);
        let _ = encode_registry(&mut out, &module_registry);
    }
    let _ = encode_eof(&mut out);
    out
}

/// Keys each rate-limit policy holds against its bound: the evidence that a flood of
/// distinct clients does not grow the node.
fn register_rate_limits(limits: &crate::ratelimit::RateLimits, registry: &mut Registry) {
    use prometheus_client::metrics::family::Family;
    use prometheus_client::metrics::gauge::Gauge;
    let keys = Family::<Vec<(String, String)>, Gauge>::default();
    let max_keys = Family::<Vec<(String, String)>, Gauge>::default();
    for (policy, held, bound) in limits.sizes() {
        let labels = vec![("policy".to_owned(), policy.to_owned())];
        keys.get_or_create(&labels).set(held as i64);
        max_keys.get_or_create(&labels).set(bound as i64);
    }
    registry.register("rate_limit_keys", "Keys a rate-limit policy holds", keys);
    registry.register(
        "rate_limit_max_keys",
        "The bound on keys of a rate-limit policy (idle keys are evicted past it)",
        max_keys,
    );
}
