//! What the benchmarks share: a module host set up as the node sets it up.

use edge_runtime::ratelimit::{PolicyConfig, RateLimits};
use edge_runtime::wasm::engine::EngineSettings;
use edge_runtime::wasm::metrics::ModuleMetrics;
use edge_runtime::wasm::registry::{HostSettings, ModuleLimits};
use edge_runtime::wasm::signing::TrustedKeys;
use edge_runtime::wasm::state::Services;
use edge_runtime::wasm::ModuleHost;
use std::sync::Arc;
use std::time::Duration;

/// The node's defaults: 5 ms per hook, 16 MiB per instance.
#[allow(dead_code)] // the WAF benchmark uses the WAF's own limits
pub const LIMITS: ModuleLimits = ModuleLimits {
    budget: Duration::from_millis(5),
    memory_bytes: 16 << 20,
};

/// A host with no module loaded yet, and the given rate-limit policies.
#[allow(dead_code)] // the WAF benchmark uses the WAF's own limits
pub fn module_host(policies: &[PolicyConfig]) -> ModuleHost {
    module_host_with(policies, LIMITS)
}

/// A host whose instances get `limits` (memory sizes the pool's slots).
pub fn module_host_with(policies: &[PolicyConfig], limits: ModuleLimits) -> ModuleHost {
    let services = Arc::new(Services {
        rate_limits: Arc::new(RateLimits::new(policies)),
        metrics: Arc::new(ModuleMetrics::default()),
        verified: Default::default(),
    });
    ModuleHost::new(
        HostSettings {
            engine: EngineSettings {
                max_instances: 100,
                max_memory_bytes: limits.memory_bytes,
            },
            cache_dir: None,
            trusted_keys: TrustedKeys::default(),
            max_module_bytes: 32 << 20,
            default_limits: limits,
        },
        services,
    )
    .expect("engine")
}

/// p50 and p99 of `times`, in µs.
#[allow(dead_code)] // not every benchmark reports percentiles
pub fn percentiles(mut times: Vec<Duration>) -> (f64, f64) {
    times.sort();
    let pct = |p: f64| times[((times.len() as f64 * p) as usize).min(times.len() - 1)];
    (pct(0.50).as_secs_f64() * 1e6, pct(0.99).as_secs_f64() * 1e6)
}

/// The value after `--name` on the command line (`cargo bench ... -- --name VALUE`).
#[allow(dead_code)] // not every benchmark takes options
pub fn option(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    let at = args.iter().position(|a| a == name)?;
    args.get(at + 1).cloned()
}
