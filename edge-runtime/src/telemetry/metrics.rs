//! The metrics endpoint's content, in the OpenMetrics text format (Prometheus scrapes it)
//! via `prometheus-client`. Values live in the components' own atomic counters; a scrape
//! snapshots them into a fresh registry, so the request path never touches the registry.

use crate::cache::Cache;
use crate::config::Identity;
use crate::wasm::state::Services;
use prometheus_client::encoding::text::{encode_eof, encode_registry};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    protocol: &'static str,
    route: Arc<String>,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: Arc<String>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProtocolLabels {
    protocol: &'static str,
}

/// Seconds, from 100 µs to ~100 s.
fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0001, 2.5, 16))
}

/// The node's own metrics: requests, latencies and connections. They outlive a config
/// reload (the pipeline is rebuilt, these are not), so rates stay continuous.
pub struct NodeMetrics {
    pub identity: Identity,
    pub started: Instant,
    requests: Family<RequestLabels, Counter>,
    duration: Family<RouteLabels, Histogram, fn() -> Histogram>,
    origin_first_byte: Family<RouteLabels, Histogram, fn() -> Histogram>,
    /// Every request, for the status page's rate (no label lookups).
    pub requests_total: AtomicU64,
    /// Sum of origin times to first byte in µs and their count, for the status page.
    pub origin_us_sum: AtomicU64,
    pub origin_count: AtomicU64,
    pub connections: Arc<Connections>,
    pub reloads: Counter,
    pub reload_failures: Counter,
}

/// Open connections by protocol, and connections accepted.
#[derive(Default)]
pub struct Connections {
    pub h1: AtomicI64,
    pub h2: AtomicI64,
    pub h3: AtomicI64,
    pub accepted: AtomicU64,
    /// QUIC Retry packets sent (address validation under handshake load).
    pub quic_retries: AtomicU64,
}

impl Connections {
    fn gauge(&self, protocol: &str) -> Option<&AtomicI64> {
        match protocol {
            "h1" => Some(&self.h1),
            "h2" => Some(&self.h2),
            "h3" => Some(&self.h3),
            _ => None,
        }
    }

    /// Counts a connection as open under `protocol` until the guard drops.
    pub fn open(self: &Arc<Self>, protocol: &'static str) -> ConnectionGuard {
        self.accepted.fetch_add(1, Ordering::Relaxed);
        if let Some(g) = self.gauge(protocol) {
            g.fetch_add(1, Ordering::Relaxed);
        }
        ConnectionGuard {
            connections: self.clone(),
            protocol,
        }
    }
}

pub struct ConnectionGuard {
    connections: Arc<Connections>,
    protocol: &'static str,
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        if let Some(g) = self.connections.gauge(self.protocol) {
            g.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

impl NodeMetrics {
    pub fn new(identity: Identity) -> Arc<NodeMetrics> {
        Arc::new(NodeMetrics {
            identity,
            started: Instant::now(),
            requests: Family::default(),
            duration: Family::new_with_constructor(latency_histogram),
            origin_first_byte: Family::new_with_constructor(latency_histogram),
            requests_total: AtomicU64::new(0),
            origin_us_sum: AtomicU64::new(0),
            origin_count: AtomicU64::new(0),
            connections: Arc::new(Connections::default()),
            reloads: Counter::default(),
            reload_failures: Counter::default(),
        })
    }

    /// One finished request head: counted by protocol, route and status; its time to the
    /// response head and the origin's time to first byte observed per route.
    pub fn request(
        &self,
        protocol: &'static str,
        route: &Arc<String>,
        status: u16,
        total: Duration,
        origin: Option<Duration>,
    ) {
        self.requests_total.fetch_add(1, Ordering::Relaxed);
        self.requests
            .get_or_create(&RequestLabels {
                protocol,
                route: route.clone(),
                status,
            })
            .inc();
        let route = RouteLabels {
            route: route.clone(),
        };
        self.duration
            .get_or_create(&route)
            .observe(total.as_secs_f64());
        if let Some(origin) = origin {
            self.origin_us_sum
                .fetch_add(origin.as_micros() as u64, Ordering::Relaxed);
            self.origin_count.fetch_add(1, Ordering::Relaxed);
            self.origin_first_byte
                .get_or_create(&route)
                .observe(origin.as_secs_f64());
        }
    }

    fn register(&self, registry: &mut Registry) {
        registry.register(
            "node",
            "The node's identity",
            Info::new(vec![
                ("region", self.identity.region.clone()),
                ("node_id", self.identity.node_id.clone()),
                ("version", env!("CARGO_PKG_VERSION").to_owned()),
            ]),
        );
        registry.register(
            "requests",
            "Requests by protocol, route (`-` when none matched) and status",
            self.requests.clone(),
        );
        registry.register(
            "request_duration_seconds",
            "Time from the request to the response head, by route",
            self.duration.clone(),
        );
        registry.register(
            "origin_first_byte_seconds",
            "Origin time to first byte on cache misses and passes, by route",
            self.origin_first_byte.clone(),
        );
        let open = Family::<ProtocolLabels, Gauge>::default();
        for protocol in ["h1", "h2", "h3"] {
            if let Some(g) = self.connections.gauge(protocol) {
                open.get_or_create(&ProtocolLabels { protocol })
                    .set(g.load(Ordering::Relaxed));
            }
        }
        registry.register(
            "connections_open",
            "Open viewer connections by protocol (h1: HTTP/1.1 and plaintext)",
            open,
        );
        registry.register(
            "connections_accepted",
            "Viewer connections accepted",
            ConstCounter::new(self.connections.accepted.load(Ordering::Relaxed)),
        );
        registry.register(
            "quic_retries",
            "QUIC Retry packets sent: new clients asked to prove their address while handshakes piled up",
            ConstCounter::new(self.connections.quic_retries.load(Ordering::Relaxed)),
        );
        registry.register(
            "config_reloads",
            "Config reloads applied",
            self.reloads.clone(),
        );
        registry.register(
            "config_reload_failures",
            "Config reloads refused (the running config kept serving)",
            self.reload_failures.clone(),
        );
    }
}

pub fn render(node: &NodeMetrics, cache: &Cache, modules: Option<&Services>) -> String {
    let mut node_registry = Registry::with_prefix("edge");
    node.register(&mut node_registry);
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
    let _ = encode_registry(&mut out, &node_registry);
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
