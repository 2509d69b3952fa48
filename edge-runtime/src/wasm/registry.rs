//! The node's modules by name, each with its current version and a short history: routes
//! hold a [`Slot`] and read its current version once per request, so a deploy or a
//! rollback swaps atomically and requests in flight finish on the version they started
//! with.

use super::canary::{Canary, CanaryPolicy, Ended, Outcomes};
use super::compile_cache::{CompileCache, Compiled};
use super::engine::{self, EngineSettings, Ticker};
use super::hooks::Linked;
use super::http_handler::{HandlerSettings, HttpHandler};
use super::signing::TrustedKeys;
use super::state::{InstanceIdentity, ModuleState, Services};
use super::WasmError;
use ring::digest::{digest, SHA256};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};
use wasmtime::component::{Component, Linker};
use wasmtime::Engine;

/// Versions kept per module for rollback.
pub const HISTORY: usize = 8;

/// CPU and memory bounds of one module's instances.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ModuleLimits {
    pub budget: Duration,
    pub memory_bytes: usize,
}

impl ModuleLimits {
    /// The budget of instantiation: mostly the host's own work (a few µs); still bounded,
    /// because a component may run guest code (start functions) while it is instantiated.
    pub fn instantiate_budget(&self) -> Duration {
        (self.budget * 10).max(Duration::from_millis(50))
    }
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case", tag = "kind", content = "from")]
pub enum Source {
    /// Built into the `edge` binary.
    Standard,
    /// A `.wasm` file named in the config.
    File(PathBuf),
    /// Deployed through the admin API.
    Deployed,
}

/// One loaded version of a module, ready to instantiate.
pub struct ModuleVersion {
    /// Unique in this node's run, increasing with each load or deploy.
    pub id: u64,
    /// What the module says it is (`describe`).
    pub name: Arc<str>,
    pub version: Arc<str>,
    pub body_types: Vec<String>,
    pub max_body_bytes: usize,
    /// Request body bytes the module reads before `on-request` (0: none).
    pub request_body_bytes: usize,
    /// Instances are reused across requests (see `Slot::pool`).
    pub resident: bool,
    pub sha256: String,
    pub source: Source,
    pub compiled: Compiled,
    pub loaded_at: SystemTime,
    /// Requests, errors and blocks of this version (what a canary is judged by).
    pub outcomes: Outcomes,
    pub(crate) pre: Linked,
}

impl ModuleVersion {
    pub fn declares_body_type(&self, media_type: &str) -> bool {
        self.body_types
            .iter()
            .any(|t| t.eq_ignore_ascii_case(media_type))
    }

    fn summary(&self) -> serde_json::Value {
        serde_json::json!({
            "id": self.id,
            "name": &*self.name,
            "version": &*self.version,
            "sha256": self.sha256,
            "source": self.source,
            "compiled": self.compiled,
            "body_types": self.body_types,
            "request_body_bytes": self.request_body_bytes,
            "resident": self.resident,
            // Imports WASI, so its calls run on a fiber (dearer than a direct call).
            "on_fiber": self.pre.on_fiber(),
            "loaded_at": httpdate::fmt_http_date(self.loaded_at),
        })
    }
}

/// Data deployed for a module (a WAF rule set): a JSON object merged over every route's
/// config for the module (its keys replace the route's), replaced as a whole by the next
/// deploy.
#[derive(Debug)]
pub struct ModuleData {
    /// Increases with each deploy; pooled resident instances of an older one are dropped.
    pub generation: u64,
    pub json: Arc<str>,
    pub sha256: String,
    pub deployed_at: SystemTime,
}

/// A named module as routes see it.
pub struct Slot {
    pub name: String,
    pub limits: ModuleLimits,
    /// `edge_module_calls_total{module=<name>}`.
    pub(crate) calls: prometheus_client::metrics::counter::Counter,
    /// `edge_module_duration_seconds{module=<name>}`: instantiation and request hook.
    pub(crate) duration: prometheus_client::metrics::histogram::Histogram,
    current: RwLock<Arc<ModuleVersion>>,
    history: Mutex<Vec<Arc<ModuleVersion>>>,
    data: RwLock<Option<Arc<ModuleData>>>,
    /// Set while a canary runs: requests skip the canary lock otherwise.
    has_canary: AtomicBool,
    canary: RwLock<Option<Arc<Canary>>>,
    last_canary: Mutex<Option<Ended>>,
    /// Idle resident instances of this module in all route entries' pools.
    pub(crate) idle: std::sync::atomic::AtomicUsize,
}

impl Slot {
    fn new(
        name: &str,
        limits: ModuleLimits,
        metrics: &super::metrics::ModuleMetrics,
        version: Arc<ModuleVersion>,
    ) -> Slot {
        Slot {
            name: name.to_owned(),
            limits,
            calls: metrics.calls_counter(name),
            duration: metrics.duration_histogram(name),
            current: RwLock::new(version.clone()),
            history: Mutex::new(vec![version]),
            data: RwLock::new(None),
            has_canary: AtomicBool::new(false),
            canary: RwLock::new(None),
            last_canary: Mutex::new(None),
            idle: Default::default(),
        }
    }

    /// The version this request runs: the canary for its share of requests, else the
    /// current one.
    pub fn pick(&self) -> Arc<ModuleVersion> {
        if self.has_canary.load(Ordering::Relaxed) {
            if let Some(canary) = self.canary() {
                if canary.picks_this() {
                    return canary.version.clone();
                }
            }
        }
        self.current()
    }

    pub fn canary(&self) -> Option<Arc<Canary>> {
        match self.canary.read() {
            Ok(c) => c.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// Whether instances of `version` may be kept for reuse: it is current or the canary.
    pub fn is_live(&self, version: &ModuleVersion) -> bool {
        version.id == self.current().id
            || (self.has_canary.load(Ordering::Relaxed)
                && self.canary().is_some_and(|c| c.version.id == version.id))
    }

    fn set_canary(&self, canary: Option<Arc<Canary>>) -> Option<Arc<Canary>> {
        let mut slot = self.canary.write().unwrap_or_else(|p| p.into_inner());
        self.has_canary.store(canary.is_some(), Ordering::Relaxed);
        std::mem::replace(&mut *slot, canary)
    }

    fn end_canary(&self, state: &'static str, reason: String) -> Option<Arc<Canary>> {
        let ended = self.set_canary(None)?;
        *self.last_canary.lock().unwrap_or_else(|p| p.into_inner()) =
            Some(ended.ended(state, reason));
        Some(ended)
    }
    /// The version new requests use. The lock is held for an `Arc` clone, never across
    /// an await or a module call.
    pub fn current(&self) -> Arc<ModuleVersion> {
        match self.current.read() {
            Ok(v) => v.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// The data deployed for this module, if any. The lock is held for an `Arc` clone.
    pub fn data(&self) -> Option<Arc<ModuleData>> {
        match self.data.read() {
            Ok(d) => d.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    fn install(&self, version: Arc<ModuleVersion>) {
        let mut history = self.history.lock().unwrap_or_else(|p| p.into_inner());
        history.push(version.clone());
        if history.len() > HISTORY {
            history.remove(0);
        }
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = version;
    }

    fn switch_to(&self, version: Arc<ModuleVersion>) {
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = version;
    }

    fn summary(&self) -> serde_json::Value {
        let current = self.current();
        let history = self.history.lock().unwrap_or_else(|p| p.into_inner());
        serde_json::json!({
            "module": self.name,
            "current": current.summary(),
            "budget_ms": self.limits.budget.as_secs_f64() * 1000.0,
            "memory_bytes": self.limits.memory_bytes,
            "versions": history.iter().map(|v| v.summary()).collect::<Vec<_>>(),
            "data": self.data().map(|d| serde_json::json!({
                "generation": d.generation,
                "sha256": d.sha256,
                "bytes": d.json.len(),
                "deployed_at": httpdate::fmt_http_date(d.deployed_at),
            })),
            "canary": self.canary().map(|c| c.summary()),
            "last_canary": self.last_canary.lock().unwrap_or_else(|p| p.into_inner()).clone(),
        })
    }
}

pub struct HostSettings {
    pub engine: EngineSettings,
    pub cache_dir: Option<PathBuf>,
    pub trusted_keys: TrustedKeys,
    pub max_module_bytes: usize,
    pub default_limits: ModuleLimits,
}

/// The engine, the linker with every import, and the named modules.
pub struct ModuleHost {
    engine: Engine,
    linker: Linker<ModuleState>,
    _ticker: Ticker,
    cache: CompileCache,
    pub services: Arc<Services>,
    slots: RwLock<BTreeMap<String, Arc<Slot>>>,
    /// `wasi:http/proxy` components that handle routes, by name.
    handlers: RwLock<BTreeMap<String, Arc<HttpHandler>>>,
    trusted_keys: TrustedKeys,
    max_module_bytes: usize,
    default_limits: ModuleLimits,
    next_id: AtomicU64,
}

impl ModuleHost {
    pub fn new(settings: HostSettings, services: Arc<Services>) -> Result<Self, WasmError> {
        let engine = engine::build(&settings.engine)?;
        let mut linker = Linker::new(&engine);
        let engine_err = |e: wasmtime::Error| WasmError::Engine(format!("{e:#}"));
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(engine_err)?;
        super::bindings::Module::add_to_linker::<_, wasmtime::component::HasSelf<_>>(
            &mut linker,
            |s| s,
        )
        .map_err(engine_err)?;
        let ticker = Ticker::start(&engine);
        Ok(ModuleHost {
            engine,
            linker,
            _ticker: ticker,
            cache: CompileCache::new(settings.cache_dir),
            services,
            slots: RwLock::new(BTreeMap::new()),
            handlers: RwLock::new(BTreeMap::new()),
            trusted_keys: settings.trusted_keys,
            max_module_bytes: settings.max_module_bytes,
            default_limits: settings.default_limits,
            next_id: AtomicU64::new(1),
        })
    }

    pub fn max_module_bytes(&self) -> usize {
        self.max_module_bytes
    }

    pub fn slot(&self, name: &str) -> Option<Arc<Slot>> {
        self.slots.read().ok()?.get(name).cloned()
    }

    pub fn handler(&self, name: &str) -> Option<Arc<HttpHandler>> {
        self.handlers.read().ok()?.get(name).cloned()
    }

    /// Compiles (or loads from the disk cache) a `wasi:http/proxy` component and installs
    /// it as the handler `name`, replacing one of that name. Blocking.
    pub fn load_handler(
        &self,
        name: &str,
        bytes: &[u8],
        settings: HandlerSettings,
    ) -> Result<Arc<HttpHandler>, WasmError> {
        let (component, _, sha256) = self.compile(name, bytes)?;
        let handler = Arc::new(HttpHandler::new(
            &self.engine,
            name,
            &component,
            sha256,
            settings,
        )?);
        self.handlers
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.to_owned(), handler.clone());
        Ok(handler)
    }

    /// Loads a module at start-up (config or standard) under `name`. Blocking: compiles.
    pub fn load(
        &self,
        name: &str,
        bytes: &[u8],
        source: Source,
        limits: ModuleLimits,
    ) -> Result<Arc<Slot>, WasmError> {
        let version = Arc::new(self.prepare(name, bytes, source, limits)?);
        let slot = Arc::new(Slot::new(name, limits, &self.services.metrics, version));
        self.slots
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.to_owned(), slot.clone());
        Ok(slot)
    }

    /// What every deploy passes first: within the size bound, signed by a trusted key.
    fn check_signed(&self, name: &str, bytes: &[u8], signature_b64: &str) -> Result<(), WasmError> {
        if bytes.len() > self.max_module_bytes {
            return Err(WasmError::TooLarge {
                module: name.to_owned(),
                size: bytes.len(),
                limit: self.max_module_bytes,
            });
        }
        self.trusted_keys
            .verify(bytes, signature_b64)
            .map(|_| ())
            .map_err(|e| WasmError::Signature {
                module: name.to_owned(),
                reason: e.to_string(),
            })
    }

    /// Verifies, compiles and installs a new version of `name` (creating the module if it
    /// is new). Blocking: run it off the request path. On any error the current version
    /// keeps serving.
    pub fn deploy(
        &self,
        name: &str,
        bytes: &[u8],
        signature_b64: &str,
    ) -> Result<Arc<ModuleVersion>, WasmError> {
        self.check_signed(name, bytes, signature_b64)?;
        let existing = self.slot(name);
        let limits = existing.as_ref().map_or(self.default_limits, |s| s.limits);
        let version = Arc::new(self.prepare(name, bytes, Source::Deployed, limits)?);
        match existing {
            Some(slot) => slot.install(version.clone()),
            None => {
                let slot = Arc::new(Slot::new(
                    name,
                    limits,
                    &self.services.metrics,
                    version.clone(),
                ));
                self.slots
                    .write()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(name.to_owned(), slot);
            }
        }
        tracing::info!(module = name, id = version.id, version = &*version.version, sha256 = %version.sha256, "module deployed");
        Ok(version)
    }

    /// Makes an earlier version current: `to` by id, or the one before the current.
    pub fn rollback(&self, name: &str, to: Option<u64>) -> Result<Arc<ModuleVersion>, WasmError> {
        let slot = self
            .slot(name)
            .ok_or_else(|| WasmError::UnknownModule(name.to_owned()))?;
        let target = {
            let history = slot.history.lock().unwrap_or_else(|p| p.into_inner());
            let current = slot.current();
            match to {
                Some(id) => history.iter().find(|v| v.id == id).cloned(),
                None => {
                    let pos = history.iter().position(|v| v.id == current.id);
                    pos.and_then(|p| p.checked_sub(1))
                        .map(|p| history[p].clone())
                }
            }
        };
        let target = target.ok_or(WasmError::UnknownVersion {
            module: name.to_owned(),
            version: to.unwrap_or(0),
        })?;
        slot.switch_to(target.clone());
        tracing::info!(
            module = name,
            id = target.id,
            version = &*target.version,
            "module rolled back"
        );
        Ok(target)
    }

    /// Verifies and installs data for `name` (a rule set): a signed JSON object. A resident
    /// module first starts an instance with it merged over each of `route_configs` (the
    /// routes' own configs for the module, by route label), as those routes will (`init`;
    /// with the data alone when no route uses the module): data it refuses for any route
    /// is rejected with the route and the module's reason, and the data that was serving
    /// stays. Blocking. (A config reload does not check deployed data against new route
    /// configs: a route that refuses it fails its requests per its `on_error`.)
    pub fn deploy_data(
        &self,
        name: &str,
        bytes: &[u8],
        signature_b64: &str,
        route_configs: &[(String, Arc<str>)],
    ) -> Result<Arc<ModuleData>, WasmError> {
        let rejected = |reason: String| WasmError::DataRejected {
            module: name.to_owned(),
            reason,
        };
        self.check_signed(name, bytes, signature_b64)?;
        let slot = self
            .slot(name)
            .ok_or_else(|| WasmError::UnknownModule(name.to_owned()))?;
        let text = std::str::from_utf8(bytes).map_err(|_| rejected("data is not UTF-8".into()))?;
        match serde_json::from_str::<serde_json::Value>(text) {
            Ok(serde_json::Value::Object(_)) => {}
            Ok(_) => return Err(rejected("data must be a JSON object".into())),
            Err(e) => return Err(rejected(format!("data is not JSON: {e}"))),
        }
        let version = slot.current();
        if version.resident {
            let check = |config: &str| {
                init_check(
                    &self.engine,
                    &version.pre,
                    name,
                    slot.limits,
                    &self.services,
                    config,
                )
            };
            if route_configs.is_empty() {
                check(text).map_err(rejected)?;
            }
            // Routes that run the same merged config (a rule set compiles in seconds) are
            // checked once.
            let mut checked = std::collections::HashSet::new();
            for (route, config) in route_configs {
                let merged = super::chain::with_data(config, text);
                if checked.insert(sha256_hex(merged.as_bytes())) {
                    check(&merged)
                        .map_err(|reason| rejected(format!("route {route}: {reason}")))?;
                }
            }
        }
        let data = Arc::new(ModuleData {
            generation: self.next_id.fetch_add(1, Ordering::Relaxed),
            json: text.into(),
            sha256: digest(&SHA256, bytes)
                .as_ref()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect(),
            deployed_at: SystemTime::now(),
        });
        *slot.data.write().unwrap_or_else(|p| p.into_inner()) = Some(data.clone());
        tracing::info!(module = name, generation = data.generation, sha256 = %data.sha256, bytes = bytes.len(), "module data deployed");
        Ok(data)
    }

    /// For a config reload: keeps `name` as it is when it already has these bytes (loaded
    /// before, or deployed since) and these limits; installs them as a new version when
    /// the bytes changed; loads a new module otherwise. Returns whether it compiled.
    /// Blocking.
    pub fn ensure(
        &self,
        name: &str,
        bytes: &[u8],
        source: Source,
        limits: ModuleLimits,
    ) -> Result<bool, WasmError> {
        match self.slot(name) {
            Some(slot) if slot.limits == limits => {
                let sha = sha256_hex(bytes);
                let known = slot
                    .history
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .iter()
                    .any(|v| v.sha256 == sha);
                if !known {
                    slot.install(Arc::new(self.prepare(name, bytes, source, limits)?));
                }
                Ok(!known)
            }
            _ => {
                self.load(name, bytes, source, limits)?;
                Ok(true)
            }
        }
    }

    /// Verifies and compiles a new version of `name` and starts it as a canary for the
    /// policy's share of requests. Blocking. The current version keeps the rest.
    pub fn start_canary(
        &self,
        name: &str,
        bytes: &[u8],
        signature_b64: &str,
        policy: CanaryPolicy,
    ) -> Result<Arc<Canary>, WasmError> {
        policy.check().map_err(|reason| WasmError::BadCanary {
            module: name.to_owned(),
            reason,
        })?;
        self.check_signed(name, bytes, signature_b64)?;
        let slot = self
            .slot(name)
            .ok_or_else(|| WasmError::UnknownModule(name.to_owned()))?;
        let version = Arc::new(self.prepare(name, bytes, Source::Deployed, slot.limits)?);
        let canary = Arc::new(Canary::new(version.clone(), policy));
        if let Some(replaced) = slot.set_canary(Some(canary.clone())) {
            *slot.last_canary.lock().unwrap_or_else(|p| p.into_inner()) =
                Some(replaced.ended("aborted", format!("replaced by version {}", version.id)));
        }
        tracing::info!(
            module = name,
            id = version.id,
            version = &*version.version,
            percent = policy.percent,
            "canary started"
        );
        Ok(canary)
    }

    /// Makes the canary the current version (kept in the history for rollback).
    pub fn promote_canary(&self, name: &str) -> Result<Arc<ModuleVersion>, WasmError> {
        let slot = self
            .slot(name)
            .ok_or_else(|| WasmError::UnknownModule(name.to_owned()))?;
        let canary = slot
            .end_canary("promoted", "promoted through the admin API".into())
            .ok_or_else(|| WasmError::NoCanary(name.to_owned()))?;
        slot.install(canary.version.clone());
        tracing::info!(
            module = name,
            id = canary.version.id,
            version = &*canary.version.version,
            "canary promoted"
        );
        Ok(canary.version.clone())
    }

    /// Stops the canary; every request runs the current version again.
    pub fn abort_canary(&self, name: &str) -> Result<Arc<Canary>, WasmError> {
        let slot = self
            .slot(name)
            .ok_or_else(|| WasmError::UnknownModule(name.to_owned()))?;
        let canary = slot
            .end_canary("aborted", "aborted through the admin API".into())
            .ok_or_else(|| WasmError::NoCanary(name.to_owned()))?;
        tracing::info!(module = name, id = canary.version.id, "canary aborted");
        Ok(canary)
    }

    /// Judges every running canary (the node calls this once a second) and rolls back
    /// those whose error or block ratio broke their policy.
    pub fn check_canaries(&self) {
        let now = std::time::Instant::now();
        let slots: Vec<Arc<Slot>> = self
            .slots
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        for slot in slots {
            let Some(canary) = slot.canary() else {
                continue;
            };
            if let Some(reason) = canary.judge(now) {
                slot.end_canary("rolled-back", reason.clone());
                tracing::warn!(module = %slot.name, id = canary.version.id, version = &*canary.version.version, %reason, "canary rolled back");
            }
        }
    }

    /// Every module with its versions, for the admin API.
    pub fn list(&self) -> serde_json::Value {
        let slots = self.slots.read().unwrap_or_else(|p| p.into_inner());
        serde_json::Value::Array(slots.values().map(|s| s.summary()).collect())
    }

    /// The component's code, compiled or from the disk cache, and its SHA-256.
    fn compile(
        &self,
        name: &str,
        bytes: &[u8],
    ) -> Result<(Component, Compiled, String), WasmError> {
        let sha256 = sha256_hex(bytes);
        let (component, compiled) = self
            .cache
            .load_or_compile(&self.engine, bytes, &sha256)
            .map_err(|e| WasmError::InvalidComponent {
                module: name.to_owned(),
                reason: format!("{e:#}"),
            })?;
        Ok((component, compiled, sha256))
    }

    /// Compile (or load from the disk cache), link against the world, and ask the module
    /// what it is.
    fn prepare(
        &self,
        name: &str,
        bytes: &[u8],
        source: Source,
        limits: ModuleLimits,
    ) -> Result<ModuleVersion, WasmError> {
        let (component, compiled, sha256) = self.compile(name, bytes)?;
        let pre = self.link(name, &component)?;
        let info = describe(&self.engine, &pre, name, limits, &self.services)?;
        Ok(ModuleVersion {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            name: info.name.into(),
            version: info.version.into(),
            body_types: info.body_types,
            max_body_bytes: info.max_body_bytes as usize,
            request_body_bytes: info.request_body_bytes as usize,
            resident: info.resident,
            sha256,
            source,
            compiled,
            loaded_at: SystemTime::now(),
            outcomes: Outcomes::default(),
            pre,
        })
    }

    fn link(&self, name: &str, component: &Component) -> Result<Linked, WasmError> {
        let wrong_world = |e: wasmtime::Error| WasmError::WrongWorld {
            module: name.to_owned(),
            reason: format!("{e:#}"),
        };
        let instance_pre = self
            .linker
            .instantiate_pre(component)
            .map_err(wrong_world)?;
        Linked::new(&self.engine, component, instance_pre).map_err(wrong_world)
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    digest(&SHA256, bytes)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Starts an instance of a resident module with `config_json` and runs its `init`: the
/// module's own verdict on a config (a rule set that does not compile).
fn init_check(
    engine: &Engine,
    pre: &Linked,
    name: &str,
    limits: ModuleLimits,
    services: &Arc<Services>,
    config_json: &str,
) -> Result<(), String> {
    let identity = InstanceIdentity {
        name: name.into(),
        version: "checking".into(),
        config_json: config_json.into(),
    };
    let mut store = ModuleState::store(engine, identity, services.clone(), limits);
    let call = async {
        let hooks = pre.instantiate(&mut store).await?;
        super::state::arm(&mut store, super::chain::INIT_BUDGET);
        hooks.init(&mut store).await
    };
    let result = match tokio::runtime::Handle::try_current() {
        Ok(handle) => handle.block_on(call),
        Err(_) => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?
            .block_on(call),
    };
    match result {
        Ok(Ok(())) => Ok(()),
        Ok(Err(reason)) => Err(reason),
        Err(e) => Err(format!("init failed: {e:#}")),
    }
}

fn describe(
    engine: &Engine,
    pre: &Linked,
    name: &str,
    limits: ModuleLimits,
    services: &Arc<Services>,
) -> Result<super::bindings::edge::module::types::ModuleInfo, WasmError> {
    let failed = |e: wasmtime::Error| WasmError::Describe {
        module: name.to_owned(),
        reason: format!("{e:#}"),
    };
    let identity = InstanceIdentity {
        name: name.into(),
        version: "loading".into(),
        config_json: "{}".into(),
    };
    let mut store = ModuleState::store(engine, identity, services.clone(), limits);
    let call = async {
        let hooks = pre.instantiate(&mut store).await?;
        super::state::arm(&mut store, limits.budget);
        hooks.describe(&mut store).await
    };
    // Loading runs on a blocking thread (start-up, deploys) or outside any runtime
    // (benchmarks); either may block on the call.
    match tokio::runtime::Handle::try_current() {
        Ok(handle) => handle.block_on(call),
        Err(_) => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| WasmError::Engine(e.to_string()))?
            .block_on(call),
    }
    .map_err(failed)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::ratelimit::RateLimits;
    use crate::wasm::metrics::ModuleMetrics;
    use crate::wasm::{signing, Source};

    /// The limits host tests run modules with: a budget generous enough for debug builds.
    pub(crate) fn test_limits() -> ModuleLimits {
        ModuleLimits {
            budget: Duration::from_millis(1000),
            memory_bytes: 16 << 20,
        }
    }

    /// The node's services for host tests, with these rate-limit policies.
    pub(crate) fn test_services(policies: &[crate::ratelimit::PolicyConfig]) -> Arc<Services> {
        Arc::new(Services {
            rate_limits: Arc::new(RateLimits::new(policies)),
            metrics: Arc::new(ModuleMetrics::default()),
            verified: Default::default(),
        })
    }

    /// A module host with a small pool of instances and the standard rate-limit module (a
    /// resident one) loaded as `rate-limit`, for tests of the host's parts.
    pub(crate) fn rate_limit_host(
        limits: ModuleLimits,
        trusted_keys: TrustedKeys,
        services: Arc<Services>,
    ) -> ModuleHost {
        let host = ModuleHost::new(
            HostSettings {
                engine: EngineSettings {
                    max_instances: 8,
                    max_memory_bytes: limits.memory_bytes,
                },
                cache_dir: None,
                trusted_keys,
                max_module_bytes: 32 << 20,
                default_limits: limits,
            },
            services,
        )
        .expect("engine");
        host.load(
            "rate-limit",
            edge_module_artifacts::standard::RATE_LIMIT,
            Source::Standard,
            limits,
        )
        .expect("load");
        host
    }

    /// Data is checked as the routes run it: merged over each route's config, or alone when
    /// no route uses the module; a refusal names the route. (`host.load` of a resident
    /// module blocks on a runtime of its own, hence a plain test.)
    #[test]
    fn module_data_is_checked_merged_over_each_route_config() {
        let limits = test_limits();
        let (private, public) = signing::generate().unwrap();
        let services = test_services(&[]);
        let host = rate_limit_host(limits, TrustedKeys::parse(&[public]).unwrap(), services);
        let deploy = |data: &str, routes: &[(String, Arc<str>)]| {
            let signature = signing::sign(private.as_bytes(), data.as_bytes()).unwrap();
            host.deploy_data("rate-limit", data.as_bytes(), &signature, routes)
        };
        let route = |label: &str| {
            let config = r#"{"rules":[{"policy":"viewer","key":["ip"]}]}"#;
            (label.to_owned(), Arc::<str>::from(config))
        };
        let routes = [route("a"), route("b")];

        // Without `rules` the module refuses it alone, but every route supplies them.
        let headers_on = r#"{"headers":true}"#;
        assert!(deploy(headers_on, &routes).is_ok());
        let alone = deploy(headers_on, &[]).unwrap_err().to_string();
        assert!(
            alone.contains("rules") && !alone.contains("route "),
            "{alone}"
        );

        // Refused for both routes: the first one is named, and the data serving stays.
        let serving = host.slot("rate-limit").unwrap().data().unwrap().generation;
        let refused = deploy(r#"{"ipv6_prefix":"wide"}"#, &routes)
            .unwrap_err()
            .to_string();
        assert!(refused.contains("route a: "), "{refused}");
        assert_eq!(
            host.slot("rate-limit").unwrap().data().unwrap().generation,
            serving
        );
    }
}
