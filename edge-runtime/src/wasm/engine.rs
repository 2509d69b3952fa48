//! The one wasmtime engine of the node: component model, pooling allocator, epochs.
//!
//! Settings follow what was measured for a fresh instance per request: the pooling
//! allocator with `pagemap_scan` (reset only the pages an instance dirtied, on Linux
//! ≥ 6.7) and a resident budget, which roughly halves instantiate + teardown compared with
//! the defaults. See docs/benchmarks.md.

use super::WasmError;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use wasmtime::{
    Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, ProfilingStrategy,
};

/// Set to `perfmap` to have the engine write `/tmp/perf-<pid>.map`, so that `perf report`
/// names the modules' functions (a module keeps its names unless it was stripped).
pub const PROFILER_ENV: &str = "EDGE_WASM_PROFILER";

/// One epoch tick; module budgets are whole ticks.
pub const TICK: Duration = Duration::from_millis(1);

#[derive(Clone, Debug)]
pub struct EngineSettings {
    /// Instances alive at once across all requests (each module of each in-flight request
    /// holds one).
    pub max_instances: u32,
    /// The largest linear memory any module may have.
    pub max_memory_bytes: usize,
}

pub fn build(settings: &EngineSettings) -> Result<Engine, WasmError> {
    let mut pool = PoolingAllocationConfig::new();
    let n = settings.max_instances.max(1);
    // A Rust component for wasm32-wasip2 holds a handful of core instances (the program,
    // the WASI adapter, shims), two memories at most and a few tables; one without WASI
    // imports (the node's own modules) three core instances (the program and the shims
    // that lend it its imports) and one memory.
    pool.total_component_instances(n)
        .total_core_instances(n.saturating_mul(8))
        .total_memories(n.saturating_mul(2))
        .total_tables(n.saturating_mul(4))
        .total_stacks(n)
        .async_stack_keep_resident(64 << 10)
        .max_memory_size(settings.max_memory_bytes)
        .linear_memory_keep_resident(1 << 20)
        .table_keep_resident(64 << 10)
        .pagemap_scan(Enabled::Auto);
    let mut config = Config::new();
    config
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool))
        .epoch_interruption(true)
        .wasm_component_model(true);
    match std::env::var(PROFILER_ENV).as_deref() {
        Ok("perfmap") => {
            config.profiler(ProfilingStrategy::PerfMap);
        }
        Ok(other) => {
            return Err(WasmError::Engine(format!(
                "{PROFILER_ENV}={other:?}: the only profiler is \"perfmap\""
            )))
        }
        Err(_) => {}
    }
    Engine::new(&config).map_err(|e| WasmError::Engine(format!("{e:#}")))
}

/// Advances the engine's epoch every [`TICK`] on a plain thread (it must tick even when
/// every runtime worker is busy running a module). Stops when dropped.
pub struct Ticker {
    stop: Arc<AtomicBool>,
}

impl Ticker {
    pub fn start(engine: &Engine) -> Ticker {
        let stop = Arc::new(AtomicBool::new(false));
        let engine = engine.clone();
        let flag = stop.clone();
        let _ = std::thread::Builder::new()
            .name("wasm-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(TICK);
                    engine.increment_epoch();
                }
            });
        Ticker { stop }
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
