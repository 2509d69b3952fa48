//! Config reload without dropping connections (`POST /reload` on the admin listener, or
//! SIGHUP): the file is read and validated again, a new pipeline is built beside the
//! serving one and swapped in. Requests in flight finish on the pipeline they started
//! with; connections stay open. The cache, the module host (with deployed versions and
//! canaries) and the node's metrics carry over.
//!
//! What a running node cannot change in place (listening sockets, certificates, the cache's
//! size, the module engine, rate-limit policies) is refused by name: the running config
//! keeps serving and the answer says to restart.

use crate::cache::Cache;
use crate::config::{Config, ConfigError, ModuleSource};
use crate::listener::Shared;
use crate::pipeline::{Pipeline, PipelineError};
use crate::wasm::{ModuleHost, Source, WasmError};
use std::path::PathBuf;
use std::sync::Arc;

/// Where the running config came from.
#[derive(Clone, Debug)]
pub struct ConfigSource {
    pub path: PathBuf,
    pub region: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("this node was started without a config file (the demo); nothing to reload")]
    NoSource,
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("these settings change only with a restart: {}; the running config keeps serving", .0.join(", "))]
    NeedsRestart(Vec<&'static str>),
    #[error(transparent)]
    Wasm(#[from] WasmError),
    #[error(transparent)]
    Pipeline(#[from] PipelineError),
    #[error("another reload is in progress")]
    Busy,
}

/// What a reload applied.
#[derive(Debug, serde::Serialize)]
pub struct Reloaded {
    pub routes: usize,
    pub origins: usize,
    /// Modules compiled anew because the config names a new module or a changed file.
    pub modules_loaded: Vec<String>,
}

pub struct Reloader {
    source: Option<ConfigSource>,
    shared: Arc<Shared>,
    cache: Arc<Cache>,
    modules: Option<Arc<ModuleHost>>,
    /// The config now serving; also serialises reloads (one at a time).
    running: tokio::sync::Mutex<Config>,
}

impl Reloader {
    pub fn new(
        source: Option<ConfigSource>,
        config: Config,
        shared: Arc<Shared>,
        cache: Arc<Cache>,
        modules: Option<Arc<ModuleHost>>,
    ) -> Arc<Reloader> {
        Arc::new(Reloader {
            source,
            shared,
            cache,
            modules,
            running: tokio::sync::Mutex::new(config),
        })
    }

    pub async fn reload(&self) -> Result<Reloaded, ReloadError> {
        let metrics = self.shared.metrics.clone();
        let result = self.try_reload().await;
        match &result {
            Ok(r) => {
                metrics.reloads.inc();
                tracing::info!(
                    routes = r.routes,
                    origins = r.origins,
                    modules_loaded = ?r.modules_loaded,
                    "config reloaded"
                );
            }
            Err(e) => {
                metrics.reload_failures.inc();
                tracing::warn!(error = %e, "config reload refused");
            }
        }
        result
    }

    async fn try_reload(&self) -> Result<Reloaded, ReloadError> {
        let source = self.source.as_ref().ok_or(ReloadError::NoSource)?;
        let Ok(mut running) = self.running.try_lock() else {
            return Err(ReloadError::Busy);
        };
        let (path, region) = (source.path.clone(), source.region.clone());
        let next = tokio::task::spawn_blocking(move || Config::load(&path, region.as_deref()))
            .await
            .map_err(|e| WasmError::Engine(format!("reload task failed: {e}")))??;
        let restart = needs_restart(&running, &next);
        if !restart.is_empty() {
            return Err(ReloadError::NeedsRestart(restart));
        }
        let modules_loaded = match &self.modules {
            Some(host) => {
                let host = host.clone();
                let wanted = next.wasm.modules.clone();
                let handlers = next.handlers.clone();
                tokio::task::spawn_blocking(move || -> Result<Vec<String>, WasmError> {
                    let mut loaded = Vec::new();
                    for m in &wanted {
                        let (bytes, source) = match &m.source {
                            ModuleSource::Standard(bytes) => (bytes.to_vec(), Source::Standard),
                            ModuleSource::File(path) => {
                                let bytes =
                                    std::fs::read(path).map_err(|source| WasmError::Read {
                                        module: m.name.clone(),
                                        path: path.display().to_string(),
                                        source,
                                    })?;
                                (bytes, Source::File(path.clone()))
                            }
                        };
                        if host.ensure(&m.name, &bytes, source, m.limits)? {
                            loaded.push(m.name.clone());
                        }
                    }
                    // Handlers load again whole (their compiled code comes from the
                    // disk cache when unchanged).
                    for h in &handlers {
                        crate::node::load_handler(&host, h)?;
                    }
                    Ok(loaded)
                })
                .await
                .map_err(|e| WasmError::Engine(format!("module loading task failed: {e}")))??
            }
            // Without a host the config had no modules and no trusted keys; a config that
            // adds them changes `wasm`, which needs_restart refused above.
            None => Vec::new(),
        };
        let pipeline = Pipeline::new(
            &next,
            self.cache.clone(),
            self.modules.clone(),
            self.shared.metrics.clone(),
        )?;
        self.shared.replace_pipeline(Arc::new(pipeline));
        let reloaded = Reloaded {
            routes: next.routes.len(),
            origins: next.origins.len() + next.object_origins.len(),
            modules_loaded,
        };
        *running = next;
        Ok(reloaded)
    }
}

/// The settings of `next` that differ from `running` and that only a restart applies.
fn needs_restart(running: &Config, next: &Config) -> Vec<&'static str> {
    // Debug text compares these nested settings whole; none of them holds module bytes.
    fn differs<T: std::fmt::Debug>(a: &T, b: &T) -> bool {
        format!("{a:?}") != format!("{b:?}")
    }
    let (a, b) = (running, next);
    let mut keys = Vec::new();
    let checks: [(&'static str, bool); 14] = [
        ("server.listen", a.server.listen != b.server.listen),
        (
            "server.plain_listen",
            a.server.plain_listen != b.server.plain_listen,
        ),
        ("server.http3", a.server.http3 != b.server.http3),
        ("server.workers", a.server.workers != b.server.workers),
        (
            "server.region / node_id",
            a.server.identity != b.server.identity,
        ),
        ("tls", differs(&a.tls, &b.tls)),
        ("limits", differs(&a.limits, &b.limits)),
        ("admin", differs(&a.admin, &b.admin)),
        ("cache", differs(&a.cache, &b.cache)),
        ("rate_limits", differs(&a.rate_limits, &b.rate_limits)),
        (
            "wasm (engine, keys, limits)",
            a.wasm.cache_dir != b.wasm.cache_dir
                || a.wasm.max_instances != b.wasm.max_instances
                || a.wasm.max_module_bytes != b.wasm.max_module_bytes
                || differs(&a.wasm.default_limits, &b.wasm.default_limits)
                || differs(&a.wasm.trusted_keys, &b.wasm.trusted_keys),
        ),
        (
            "wasm modules or handlers (a config that had none)",
            a.wasm.modules.is_empty()
                && a.wasm.trusted_keys.is_empty()
                && a.handlers.is_empty()
                && !(b.wasm.modules.is_empty() && b.handlers.is_empty()),
        ),
        (
            "handler memory (the engine's pool)",
            b.handlers.iter().any(|h| {
                h.settings.memory_bytes
                    > a.handlers
                        .iter()
                        .map(|h| h.settings.memory_bytes)
                        .chain(a.wasm.modules.iter().map(|m| m.limits.memory_bytes))
                        .chain([a.wasm.default_limits.memory_bytes])
                        .max()
                        .unwrap_or(0)
            }),
        ),
        (
            "server.drain_timeout_ms",
            a.server.drain_timeout != b.server.drain_timeout,
        ),
    ];
    for (key, changed) in checks {
        if changed {
            keys.push(key);
        }
    }
    keys
}
