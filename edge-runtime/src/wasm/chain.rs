//! One request's pass through its route's modules.
//!
//! Request phase: each module gets a fresh instance (its own store: memory, limits,
//! handle table) and its `on-request` hook, in route order, until one answers. The
//! instances live until the response phase: `on-response` in reverse order, then the
//! body transforms of modules that declared the response's media type. Dropping the run
//! tears the instances down, except resident ones that ran every hook cleanly: they go
//! back to their route entry's pool for the next request.
//!
//! A module that traps, runs past its deadline or outgrows its memory fails the request
//! (`fail-closed`: 500) or is skipped as if it were absent (`fail-open`: its partial
//! changes are undone), per the route, and is logged with its name and version.

use super::bindings::edge::module::types::{Protocol, RequestAction};
use super::hooks::Hooks;
use super::registry::{ModuleVersion, Slot};
use super::state::{
    fields_to_map, InstanceIdentity, ModuleState, RequestView, ResponseView, Services,
};
use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Response, StatusCode, Uri};
use http_body_util::BodyExt;
use origin::Body;
use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};
use wasmtime::component::Resource;
use wasmtime::{Store, Trap};

/// The most body a module is ever given, whatever it declares: the node buffers it.
pub const MAX_TRANSFORM_BYTES: usize = 16 * 1024 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnError {
    /// A failing module fails the request with 500.
    FailClosed,
    /// A failing module is skipped; the request goes on as if it were not on the route.
    FailOpen,
}

impl OnError {
    pub fn as_str(self) -> &'static str {
        match self {
            OnError::FailClosed => "fail-closed",
            OnError::FailOpen => "fail-open",
        }
    }
}

/// A route's modules, in order, each with its config (JSON text).
pub struct Chain {
    entries: Vec<Entry>,
    on_error: OnError,
    route: Arc<str>,
}

struct Entry {
    slot: Arc<Slot>,
    /// The route's own config for the module.
    config: Arc<str>,
    /// The config instances get: deployed data under the route's config, by data
    /// generation (0: none).
    merged: Mutex<(u64, Arc<str>)>,
    /// Idle instances of a resident module, initialised with this entry's config.
    pool: Arc<Pool>,
}

/// Idle resident instances of one route entry. The lock is held to pop or push, never
/// across a call.
struct Pool {
    slot: Arc<Slot>,
    idle: Mutex<Vec<Live>>,
}

/// Idle resident instances kept per route entry; more are dropped after use.
const RESIDENT_POOL_MAX: usize = 64;

/// Idle instances kept per resident module across all its route entries: with
/// `wasm.max_instances` at its default of 1,000, the four resident standard modules can
/// never hold more than half of the engine's instances idle, however many routes use them.
pub(crate) const RESIDENT_MODULE_IDLE_MAX: usize = 128;

/// CPU time a resident module's `init` may take (compiling a rule set).
pub(crate) const INIT_BUDGET: Duration = Duration::from_secs(30);

impl Entry {
    /// The config for new instances and its data generation: the route's config with the
    /// module's deployed data (a rule set) over it — a deploy replaces what the config file
    /// set for the keys it carries (`setup`, `rules`). Merged once per deploy.
    fn config(&self) -> (u64, Arc<str>) {
        let Some(data) = self.slot.data() else {
            return (0, self.config.clone());
        };
        let mut merged = self.merged.lock().unwrap_or_else(|p| p.into_inner());
        if merged.0 != data.generation {
            *merged = (data.generation, with_data(&self.config, &data.json).into());
        }
        merged.clone()
    }
}

/// A route's config for a module with deployed data over it: the data's top-level keys
/// replace the config's.
pub(crate) fn with_data(config: &str, data: &str) -> String {
    let mut doc: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(config).unwrap_or_default();
    let deployed: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(data).unwrap_or_default();
    doc.extend(deployed);
    serde_json::Value::Object(doc).to_string()
}

impl Pool {
    /// An idle instance of the current version and data, if one is pooled.
    fn take(&self, version: &Arc<ModuleVersion>, generation: u64) -> Option<Live> {
        let mut pool = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let before = pool.len();
        // Instances of older data are dropped; with a canary running, instances of both
        // live versions are pooled, so take one of the version this request runs.
        pool.retain(|l| l.generation == generation);
        let taken = pool
            .iter()
            .rposition(|l| l.version.id == version.id)
            .map(|at| pool.swap_remove(at));
        self.counted(before, pool.len());
        let mut live = taken?;
        // Clean again only once this request's hooks have run.
        live.clean = false;
        Some(live)
    }

    /// Keeps an instance that finished its request cleanly for the next one.
    fn give_back(&self, live: Live) {
        let current = self.slot.data().map_or(0, |d| d.generation);
        if live.generation != current || !self.slot.is_live(&live.version) {
            return;
        }
        let mut pool = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let before = pool.len();
        // Instances of a version no longer live (a deploy, rollback or ended canary) are
        // dropped here rather than kept until the next take.
        if pool.len() >= RESIDENT_POOL_MAX {
            pool.retain(|l| self.slot.is_live(&l.version));
        }
        // Idle instances hold slots of the engine's instance pool that fresh instances
        // need: bounded per entry, and per module across all its routes.
        if pool.len() < RESIDENT_POOL_MAX
            && self.slot.idle.load(Ordering::Relaxed) < RESIDENT_MODULE_IDLE_MAX
        {
            pool.push(live);
        }
        self.counted(before, pool.len());
    }

    /// Keeps the module's count of idle instances in step with this pool.
    fn counted(&self, before: usize, after: usize) {
        if after > before {
            self.slot.idle.fetch_add(after - before, Ordering::Relaxed);
        } else {
            self.slot.idle.fetch_sub(before - after, Ordering::Relaxed);
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        let idle = self.idle.get_mut().map_or(0, |p| p.len());
        self.slot.idle.fetch_sub(idle, Ordering::Relaxed);
    }
}

/// What the request phase decided.
pub enum Outcome {
    Continue,
    /// A module answered (or failed closed): send this, after the response phase.
    Respond(Response<Body>),
}

/// The request's live instances, from the request phase to the response.
pub struct ChainRun {
    live: Vec<Live>,
    request: Option<RequestView>,
    on_error: OnError,
    route: Arc<str>,
    /// Time spent in module code and instantiation, for `Server-Timing`.
    pub elapsed: Duration,
    /// The request's number: its id (`edge.request-id`) for the access log.
    pub request_number: u64,
}

struct Live {
    store: Store<ModuleState>,
    hooks: Hooks,
    version: Arc<ModuleVersion>,
    /// A resident instance's pool: where it goes back once its request is over, if
    /// every hook it ran for it succeeded (`clean`). Weak: idle instances live in the
    /// pool, and a reload drops the pool with its route.
    home: Option<Weak<Pool>>,
    /// Between calls, and every hook of this request so far succeeded.
    clean: bool,
    /// A resident instance's `init` succeeded.
    initialised: bool,
    /// The module data generation its config was made with (0: none).
    generation: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum FailureKind {
    Instantiate,
    /// A resident module's `init` refused its config.
    Init,
    Trap,
    Deadline,
    Memory,
    BadResponse,
}

impl FailureKind {
    fn as_str(self) -> &'static str {
        match self {
            FailureKind::Instantiate => "instantiate",
            FailureKind::Init => "init",
            FailureKind::Trap => "trap",
            FailureKind::Deadline => "deadline",
            FailureKind::Memory => "memory",
            FailureKind::BadResponse => "bad-response",
        }
    }
}

struct Failure {
    kind: FailureKind,
    detail: String,
}

/// What a request hook's answer means for the chain.
enum Step {
    /// Go on; keep the instance for the response.
    Keep,
    /// Go on; the module is finished with this request.
    Finished,
    Answer(Response<Body>),
}

impl Chain {
    /// The route's own config for each use of `module` in this chain.
    pub fn configs_of<'a>(&'a self, module: &'a str) -> impl Iterator<Item = &'a Arc<str>> + 'a {
        self.entries
            .iter()
            .filter(move |e| e.slot.name == module)
            .map(|e| &e.config)
    }

    pub fn new(route: &str, on_error: OnError, modules: Vec<(Arc<Slot>, Arc<str>)>) -> Self {
        Chain {
            entries: modules
                .into_iter()
                .map(|(slot, config)| Entry {
                    pool: Arc::new(Pool {
                        slot: slot.clone(),
                        idle: Mutex::new(Vec::new()),
                    }),
                    slot,
                    merged: Mutex::new((0, config.clone())),
                    config,
                })
                .collect(),
            on_error,
            route: route.into(),
        }
    }

    /// Bytes of request body the route's modules want before `on-request` (0: none).
    pub fn request_body_bytes(&self) -> usize {
        self.entries
            .iter()
            .map(|e| e.slot.current().request_body_bytes)
            .max()
            .unwrap_or(0)
    }

    /// Runs the request hooks. `parts` is lent to the modules and comes back with their
    /// changes; `body` is the request body as far as [`Chain::request_body_bytes`] asked
    /// (and whether there was more).
    pub async fn on_request(
        &self,
        services: &Arc<Services>,
        parts: &mut http::request::Parts,
        body: Option<(Bytes, bool)>,
        authority: Arc<str>,
        client: IpAddr,
        tls: bool,
    ) -> (ChainRun, Outcome) {
        let started = Instant::now();
        let protocol = match parts.version {
            http::Version::HTTP_2 => Protocol::Http2,
            http::Version::HTTP_3 => Protocol::Http3,
            _ => Protocol::Http1,
        };
        let mut view = RequestView {
            parts: std::mem::replace(parts, empty_parts()),
            authority,
            client,
            tls,
            protocol,
            route: self.route.clone(),
            context: Vec::new(),
            number: super::state::next_request_number(),
            body_truncated: body.as_ref().is_some_and(|(_, more)| *more),
            body: body.map(|(b, _)| b),
        };
        let mut run = ChainRun {
            live: Vec::with_capacity(self.entries.len()),
            request: None,
            on_error: self.on_error,
            route: self.route.clone(),
            elapsed: Duration::ZERO,
            request_number: view.number,
        };
        let mut outcome = Outcome::Continue;
        for entry in &self.entries {
            let version = entry.slot.pick();
            version.outcomes.requests.fetch_add(1, Ordering::Relaxed);
            let call_started = Instant::now();
            let (generation, config) = entry.config();
            let pooled = if version.resident {
                entry.pool.take(&version, generation)
            } else {
                None
            };
            let fresh = match pooled {
                Some(live) => Ok(live),
                None => instantiate(&version, &entry.slot, &config, services)
                    .await
                    .map(|mut live| {
                        live.generation = generation;
                        if version.resident {
                            live.home = Some(Arc::downgrade(&entry.pool));
                        }
                        live
                    }),
            };
            let fresh = match fresh {
                // A new resident instance starts (compiles its config) before its first
                // request, with the longer init budget.
                Ok(mut live) if version.resident && !live.initialised => live
                    .call_init()
                    .await
                    .map(|()| live)
                    .map_err(|f| ("init", f)),
                Ok(live) => Ok(live),
                Err(f) => Err(("instantiate", f)),
            };
            let mut live = match fresh {
                Ok(live) => live,
                Err((hook, failure)) => {
                    run.report(&version, hook, &failure, services);
                    match self.on_error {
                        OnError::FailOpen => continue,
                        OnError::FailClosed => {
                            outcome = Outcome::Respond(module_failed());
                            break;
                        }
                    }
                }
            };
            let snapshot = (self.on_error == OnError::FailOpen).then(|| RequestSnapshot::of(&view));
            let (result, back) = live.call_on_request(view).await;
            view = back;
            entry.slot.calls.inc();
            entry
                .slot
                .duration
                .observe(call_started.elapsed().as_secs_f64());
            // An answer the node cannot send (bad status or field) is a failure like a trap.
            let result = result.and_then(|action| match action {
                RequestAction::Continue => Ok(Step::Keep),
                RequestAction::Done => Ok(Step::Finished),
                RequestAction::Respond(answer) => {
                    immediate_response(answer.status, &answer.headers, answer.body)
                        .map(Step::Answer)
                }
            });
            // A resident instance goes back to the pool after a clean call when it has
            // nothing to do on the response; otherwise after its response hooks.
            let result = match result {
                Ok(Step::Keep) => {
                    run.live.push(live);
                    Ok(Step::Keep)
                }
                other => {
                    if let (Ok(_), Some(home)) = (&other, live.home()) {
                        home.give_back(live);
                    }
                    other
                }
            };
            match result {
                Ok(Step::Keep) => {}
                // Finished with this request: dropped, or back in its pool if resident.
                Ok(Step::Finished) => {}
                Ok(Step::Answer(response)) => {
                    if response.status().as_u16() >= 400 {
                        version.outcomes.blocks.fetch_add(1, Ordering::Relaxed);
                    }
                    outcome = Outcome::Respond(response);
                    break;
                }
                Err(failure) => {
                    run.report(&version, "on-request", &failure, services);
                    match (self.on_error, snapshot) {
                        (OnError::FailOpen, Some(snapshot)) => snapshot.restore(&mut view),
                        _ => {
                            outcome = Outcome::Respond(module_failed());
                            break;
                        }
                    }
                }
            }
        }
        // A player may ask for a manifest with `Range` (ffmpeg sends `bytes=0-`): the 206
        // it would get is not transformable. A module that rewrites this body needs all of
        // it, and a 200 is a valid answer to a range request.
        if let Some(media) = media_type_by_extension(view.parts.uri.path()) {
            if run.live.iter().any(|l| l.version.declares_body_type(media)) {
                view.parts.headers.remove(header::RANGE);
                view.parts.headers.remove(header::IF_RANGE);
            }
        }
        if !run.live.is_empty() {
            run.request = Some(RequestView {
                parts: clone_parts(&view.parts),
                authority: view.authority.clone(),
                client: view.client,
                tls: view.tls,
                protocol: view.protocol,
                route: view.route.clone(),
                context: std::mem::take(&mut view.context),
                number: view.number,
                body: None,
                body_truncated: false,
            });
        }
        *parts = view.parts;
        run.elapsed += started.elapsed();
        (run, outcome)
    }
}

impl Drop for ChainRun {
    /// Resident instances that ran their response hooks cleanly go back to their pool;
    /// every other instance is torn down.
    fn drop(&mut self) {
        for live in self.live.drain(..) {
            if let (true, Some(home)) = (live.clean, live.home()) {
                home.give_back(live);
            }
        }
    }
}

impl ChainRun {
    /// Response hooks in reverse order, then body transforms. `head` is whether the
    /// viewer's request was HEAD (no body to transform).
    pub async fn on_response(
        mut self,
        response: Response<Body>,
        head: bool,
        services: &Arc<Services>,
    ) -> (Response<Body>, Duration) {
        let Some(mut request) = self.request.take() else {
            return (response, self.elapsed);
        };
        let started = Instant::now();
        let (parts, body) = response.into_parts();
        let mut view = ResponseView { parts };
        for i in (0..self.live.len()).rev() {
            let snapshot = (self.on_error == OnError::FailOpen)
                .then(|| (view.parts.status, view.parts.headers.clone()));
            let live = &mut self.live[i];
            let (result, req_back, resp_back) = live.call_on_response(request, view).await;
            (request, view) = (req_back, resp_back);
            // Its request is over unless a transform follows.
            self.live[i].clean = result.is_ok();
            if let Err(failure) = result {
                let version = self.live[i].version.clone();
                self.report(&version, "on-response", &failure, services);
                match snapshot {
                    Some((status, headers)) => {
                        view.parts.status = status;
                        view.parts.headers = headers;
                    }
                    None => return (module_failed(), self.elapsed + started.elapsed()),
                }
            }
        }
        self.elapsed += started.elapsed();

        let transformers: Vec<usize> =
            match transformable_type(&view.parts, head, request.parts.uri.path()) {
                Some(media_type) => (0..self.live.len())
                    .rev()
                    .filter(|&i| self.live[i].version.declares_body_type(media_type))
                    .collect(),
                None => Vec::new(),
            };
        if transformers.is_empty() {
            return (Response::from_parts(view.parts, body), self.elapsed);
        }
        let bound = transformers
            .iter()
            .map(|&i| self.live[i].version.max_body_bytes)
            .min()
            .unwrap_or(0)
            .min(MAX_TRANSFORM_BYTES);
        let declared_len = view
            .parts
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
        if declared_len.is_some_and(|n| n > bound) {
            return (Response::from_parts(view.parts, body), self.elapsed);
        }
        let mut bytes = match collect_bounded(body, bound).await {
            Collected::Whole(bytes) => bytes,
            Collected::TooLarge { head, rest } => {
                return (
                    Response::from_parts(view.parts, rejoin(head, rest)),
                    self.elapsed,
                )
            }
            Collected::Failed => {
                let mut r = module_failed();
                *r.status_mut() = StatusCode::BAD_GATEWAY;
                *r.body_mut() = origin::body::full("502 Bad Gateway: origin body failed\n");
                return (r, self.elapsed);
            }
        };
        let started = Instant::now();
        let original = bytes.clone();
        for i in transformers {
            let live = &mut self.live[i];
            // A call cut short (the viewer went away while it ran) leaves the instance
            // unusable: clean again only once it returned.
            live.clean = false;
            let (result, req_back, resp_back) = live.call_transform(request, view, &bytes).await;
            self.live[i].clean = result.as_ref().is_ok_and(|r| r.is_ok());
            (request, view) = (req_back, resp_back);
            let failure = match result {
                Ok(Ok(Some(new))) => {
                    bytes = Bytes::from(new);
                    continue;
                }
                Ok(Ok(None)) => continue,
                Ok(Err(reason)) => Failure {
                    kind: FailureKind::BadResponse,
                    detail: reason,
                },
                Err(failure) => failure,
            };
            let version = self.live[i].version.clone();
            self.report(&version, "transform-body", &failure, services);
            match self.on_error {
                OnError::FailOpen => bytes = original.clone(),
                OnError::FailClosed => return (module_failed(), self.elapsed + started.elapsed()),
            }
        }
        self.elapsed += started.elapsed();
        let headers = &mut view.parts.headers;
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(bytes.len()));
        if bytes != original {
            // A new representation: the origin's strong validator and byte ranges no
            // longer describe it.
            headers.remove(header::ETAG);
            headers.remove(header::ACCEPT_RANGES);
        }
        (
            Response::from_parts(view.parts, origin::body::full(bytes)),
            self.elapsed,
        )
    }

    fn report(&self, version: &ModuleVersion, hook: &str, failure: &Failure, services: &Services) {
        version.outcomes.errors.fetch_add(1, Ordering::Relaxed);
        services
            .metrics
            .failure(&version.name, failure.kind.as_str());
        tracing::warn!(
            module = &*version.name,
            version = &*version.version,
            id = version.id,
            route = &*self.route,
            request_id = super::state::request_id(self.request_number),
            hook,
            kind = failure.kind.as_str(),
            on_error = self.on_error.as_str(),
            detail = %failure.detail,
            "module failed"
        );
    }
}

async fn instantiate(
    version: &Arc<ModuleVersion>,
    slot: &Slot,
    config: &Arc<str>,
    services: &Arc<Services>,
) -> Result<Live, Failure> {
    let identity = InstanceIdentity {
        name: version.name.clone(),
        version: version.version.clone(),
        config_json: config.clone(),
    };
    let mut store = ModuleState::store(
        version.pre.engine(),
        identity,
        services.clone(),
        slot.limits,
    );
    match version.pre.instantiate(&mut store).await {
        Ok(hooks) => Ok(Live {
            store,
            hooks,
            version: version.clone(),
            initialised: false,
            generation: 0,
            home: None,
            clean: false,
        }),
        Err(e) => Err(classify(&store, e, FailureKind::Instantiate)),
    }
}

fn classify(store: &Store<ModuleState>, error: wasmtime::Error, default: FailureKind) -> Failure {
    let state = store.data();
    let kind = if state.memory.exceeded {
        FailureKind::Memory
    } else if error.downcast_ref::<Trap>() == Some(&Trap::Interrupt) {
        FailureKind::Deadline
    } else {
        default
    };
    let said = state.last_words();
    let mut detail = format!("{error:#}");
    if kind == FailureKind::Deadline {
        // Which limit: a module that computes spends its CPU budget; one that waits (or
        // whose thread starves) meets the wall-clock cap.
        match state.stopped_by() {
            Some(limit) => detail.push_str(&format!(" ({limit})")),
            None => detail.push_str(&format!(
                " (wall-clock cap of {:?} reached while it waited)",
                state.wall_cap()
            )),
        }
    }
    if !said.is_empty() {
        detail.push_str(&format!("; the module said: {said}"));
    }
    Failure { kind, detail }
}

impl Live {
    /// The pool of a resident instance, while its route is loaded.
    fn home(&self) -> Option<Arc<Pool>> {
        self.home.as_ref()?.upgrade()
    }

    async fn call_init(&mut self) -> Result<(), Failure> {
        self.arm(INIT_BUDGET);
        let result = self
            .hooks
            .init(&mut self.store)
            .await
            .map_err(|e| classify(&self.store, e, FailureKind::Trap))?;
        self.initialised = true;
        result.map_err(|detail| Failure {
            kind: FailureKind::Init,
            detail,
        })
    }

    async fn call_on_request(
        &mut self,
        view: RequestView,
    ) -> (Result<RequestAction, Failure>, RequestView) {
        let own = match self.store.data_mut().table.push(view) {
            Ok(r) => r,
            Err(e) => unreachable_table(e),
        };
        let borrow = Resource::<RequestView>::new_borrow(own.rep());
        self.arm(self.deadline());
        let result = self
            .hooks
            .on_request(&mut self.store, borrow)
            .await
            .map_err(|e| classify(&self.store, e, FailureKind::Trap));
        let view = self.take(own);
        (result, view)
    }

    async fn call_on_response(
        &mut self,
        request: RequestView,
        response: ResponseView,
    ) -> (Result<(), Failure>, RequestView, ResponseView) {
        let (req, resp) = self.push_both(request, response);
        self.arm(self.deadline());
        let result = self
            .hooks
            .on_response(
                &mut self.store,
                Resource::new_borrow(req.rep()),
                Resource::new_borrow(resp.rep()),
            )
            .await
            .map_err(|e| classify(&self.store, e, FailureKind::Trap));
        let (request, response) = self.take_both(req, resp);
        (result, request, response)
    }

    async fn call_transform(
        &mut self,
        request: RequestView,
        response: ResponseView,
        body: &[u8],
    ) -> (
        Result<Result<Option<Vec<u8>>, String>, Failure>,
        RequestView,
        ResponseView,
    ) {
        let (req, resp) = self.push_both(request, response);
        self.arm(self.deadline());
        let result = self
            .hooks
            .transform_body(
                &mut self.store,
                Resource::new_borrow(req.rep()),
                Resource::new_borrow(resp.rep()),
                body,
            )
            .await
            .map_err(|e| classify(&self.store, e, FailureKind::Trap));
        let (request, response) = self.take_both(req, resp);
        (result, request, response)
    }

    /// Before a hook call: its deadline, and a clean slate for what the module says.
    fn arm(&mut self, budget: Duration) {
        super::state::arm(&mut self.store, budget);
        self.store.data_mut().begin_call();
    }

    /// Each hook call gets the module's whole budget.
    fn deadline(&self) -> Duration {
        self.store.data().budget
    }

    fn push_both(
        &mut self,
        request: RequestView,
        response: ResponseView,
    ) -> (Resource<RequestView>, Resource<ResponseView>) {
        let table = &mut self.store.data_mut().table;
        let req = table.push(request).unwrap_or_else(|e| unreachable_table(e));
        let resp = table
            .push(response)
            .unwrap_or_else(|e| unreachable_table(e));
        (req, resp)
    }

    fn take_both(
        &mut self,
        req: Resource<RequestView>,
        resp: Resource<ResponseView>,
    ) -> (RequestView, ResponseView) {
        (self.take(req), self.take(resp))
    }

    fn take<T: 'static>(&mut self, own: Resource<T>) -> T {
        self.store
            .data_mut()
            .table
            .delete(own)
            .unwrap_or_else(|e| unreachable_table(e))
    }
}

/// The table is the store's own and holds at most three entries the host put there; it
/// cannot be full and the handles cannot be wrong.
fn unreachable_table(e: wasmtime::component::ResourceTableError) -> ! {
    panic!("module handle table: {e}")
}

struct RequestSnapshot {
    uri: Uri,
    headers: HeaderMap,
    context: Vec<(String, String)>,
}

impl RequestSnapshot {
    fn of(view: &RequestView) -> Self {
        RequestSnapshot {
            uri: view.parts.uri.clone(),
            headers: view.parts.headers.clone(),
            context: view.context.clone(),
        }
    }

    fn restore(self, view: &mut RequestView) {
        view.parts.uri = self.uri;
        view.parts.headers = self.headers;
        view.context = self.context;
    }
}

fn empty_parts() -> http::request::Parts {
    http::Request::new(()).into_parts().0
}

/// The request head for the response phase (the original went to the origin).
fn clone_parts(parts: &http::request::Parts) -> http::request::Parts {
    let mut copy = empty_parts();
    copy.method = parts.method.clone();
    copy.uri = parts.uri.clone();
    copy.version = parts.version;
    copy.headers = parts.headers.clone();
    copy
}

fn immediate_response(
    status: u16,
    fields: &[(String, String)],
    body: Vec<u8>,
) -> Result<Response<Body>, Failure> {
    let bad = |detail: String| Failure {
        kind: FailureKind::BadResponse,
        detail,
    };
    let status =
        StatusCode::from_u16(status).map_err(|_| bad(format!("{status} is not an HTTP status")))?;
    let headers = fields_to_map(fields).map_err(bad)?;
    let mut response = Response::new(origin::body::full(body));
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    Ok(response)
}

/// The answer when a module fails closed. The details are in the node's log only.
pub fn module_failed() -> Response<Body> {
    let mut r = Response::new(origin::body::full(
        "500 Internal Server Error: a module on this route failed\n",
    ));
    *r.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// The media type of a response whose body modules may transform: a complete 200 that is
/// not content-encoded, to a request that is not HEAD. Object stores often serve
/// manifests as `application/octet-stream` (or with no type): then the path's extension
/// names it.
fn transformable_type<'a>(
    parts: &'a http::response::Parts,
    head: bool,
    path: &str,
) -> Option<&'a str> {
    if head || parts.status != StatusCode::OK {
        return None;
    }
    if parts
        .headers
        .get(header::CONTENT_ENCODING)
        .is_some_and(|v| v.as_bytes() != b"identity")
    {
        return None;
    }
    let media = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|ct| ct.to_str().ok())
        .map(|ct| ct.split(';').next().unwrap_or("").trim())
        .unwrap_or("");
    let generic = [
        "",
        "application/octet-stream",
        "binary/octet-stream",
        "text/plain",
    ];
    if generic.iter().any(|g| g.eq_ignore_ascii_case(media)) {
        if let Some(by_extension) = media_type_by_extension(path) {
            return Some(by_extension);
        }
    }
    // Compared case-insensitively with the declared types: no lower-cased copy per response.
    (!media.is_empty()).then_some(media)
}

/// The manifest media type a path's extension names.
fn media_type_by_extension(path: &str) -> Option<&'static str> {
    let ext = path.rsplit('/').next()?.rsplit_once('.')?.1;
    if ext.eq_ignore_ascii_case("m3u8") {
        Some("application/vnd.apple.mpegurl")
    } else if ext.eq_ignore_ascii_case("mpd") {
        Some("application/dash+xml")
    } else {
        None
    }
}

/// Reads up to `bound` bytes of a request body for the modules. Returns those bytes,
/// whether the body went on past them, and the body to forward (the same bytes followed by
/// the rest, untouched); `None` when the viewer's body failed mid-way.
pub async fn read_request_body(body: Body, bound: usize) -> Option<(Bytes, bool, Body)> {
    match collect_bounded(body, bound).await {
        Collected::Whole(bytes) => {
            let forward = http_body_util::Full::new(bytes.clone())
                .map_err(|never| match never {})
                .boxed_unsync();
            Some((bytes, false, forward))
        }
        Collected::TooLarge { head, rest } => {
            let mut seen = Vec::with_capacity(bound);
            for chunk in &head {
                let room = bound - seen.len();
                seen.extend_from_slice(&chunk[..chunk.len().min(room)]);
                if seen.len() == bound {
                    break;
                }
            }
            Some((Bytes::from(seen), true, rejoin(head, rest)))
        }
        Collected::Failed => None,
    }
}

fn rejoin(head: Vec<Bytes>, rest: Body) -> Body {
    use futures_util::StreamExt;
    let head = futures_util::stream::iter(
        head.into_iter()
            .map(|c| Ok::<_, origin::BoxError>(http_body::Frame::data(c))),
    );
    let rest = http_body_util::BodyStream::new(rest);
    http_body_util::StreamBody::new(head.chain(rest)).boxed_unsync()
}

enum Collected {
    Whole(Bytes),
    /// Over the bound: the chunks received so far and the rest, unchanged.
    TooLarge {
        head: Vec<Bytes>,
        rest: Body,
    },
    Failed,
}

async fn collect_bounded(mut body: Body, bound: usize) -> Collected {
    let mut chunks: Vec<Bytes> = Vec::new();
    let mut len = 0usize;
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else {
            return Collected::Failed;
        };
        if let Ok(data) = frame.into_data() {
            len += data.len();
            chunks.push(data);
            if len > bound {
                return Collected::TooLarge {
                    head: chunks,
                    rest: body,
                };
            }
        }
    }
    match chunks.len() {
        0 => Collected::Whole(Bytes::new()),
        1 => Collected::Whole(chunks.pop().unwrap_or_default()),
        _ => {
            let mut all = Vec::with_capacity(len);
            for c in chunks {
                all.extend_from_slice(&c);
            }
            Collected::Whole(Bytes::from(all))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(status: u16, fields: &[(&str, &str)]) -> http::response::Parts {
        let mut b = Response::builder().status(status);
        for (k, v) in fields {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap().into_parts().0
    }

    #[test]
    fn only_complete_plain_200s_are_transformable() {
        let m3u8 = (
            "content-type",
            "application/vnd.apple.mpegurl; charset=utf-8",
        );
        let p = "/a/x";
        assert_eq!(
            transformable_type(&head(200, &[m3u8]), false, p),
            Some("application/vnd.apple.mpegurl")
        );
        assert_eq!(transformable_type(&head(200, &[m3u8]), true, p), None);
        assert_eq!(transformable_type(&head(206, &[m3u8]), false, p), None);
        assert_eq!(
            transformable_type(&head(200, &[m3u8, ("content-encoding", "gzip")]), false, p),
            None
        );
        assert_eq!(transformable_type(&head(200, &[]), false, p), None);
        // Generic or missing types: the extension names the manifest.
        let octets = ("content-type", "binary/octet-stream");
        assert_eq!(
            transformable_type(&head(200, &[octets]), false, "/v/index.M3U8"),
            Some("application/vnd.apple.mpegurl")
        );
        assert_eq!(
            transformable_type(&head(200, &[]), false, "/v/manifest.mpd"),
            Some("application/dash+xml")
        );
        assert_eq!(
            transformable_type(&head(200, &[octets]), false, "/v/seg.ts"),
            Some("binary/octet-stream")
        );
    }

    fn chunked(parts: &[&'static [u8]]) -> Body {
        let frames = futures_util::stream::iter(
            parts
                .iter()
                .map(|p| Ok::<_, origin::BoxError>(http_body::Frame::data(Bytes::from_static(p))))
                .collect::<Vec<_>>(),
        );
        http_body_util::StreamBody::new(frames).boxed_unsync()
    }

    #[tokio::test]
    async fn bodies_over_the_bound_come_back_whole() {
        match collect_bounded(chunked(&[b"abc", b"def"]), 10).await {
            Collected::Whole(b) => assert_eq!(&b[..], b"abcdef"),
            _ => panic!("expected the whole body"),
        }
        match collect_bounded(chunked(&[b"abc", b"def", b"ghi"]), 4).await {
            Collected::TooLarge { head, rest } => {
                let all = rejoin(head, rest).collect().await.unwrap().to_bytes();
                assert_eq!(&all[..], b"abcdefghi");
            }
            _ => panic!("expected the body to pass through"),
        }
    }

    #[tokio::test]
    async fn request_bodies_are_lent_up_to_the_bound_and_forwarded_whole() {
        let (seen, more, body) = read_request_body(chunked(&[b"abc", b"def", b"ghi"]), 4)
            .await
            .unwrap();
        assert_eq!(&seen[..], b"abcd");
        assert!(more);
        assert_eq!(&body.collect().await.unwrap().to_bytes()[..], b"abcdefghi");
        let (seen, more, body) = read_request_body(chunked(&[b"ab"]), 4).await.unwrap();
        assert_eq!((&seen[..], more), (&b"ab"[..], false));
        assert_eq!(&body.collect().await.unwrap().to_bytes()[..], b"ab");
    }

    #[test]
    fn invalid_immediate_responses_are_module_failures() {
        assert!(immediate_response(403, &[("x-reason".into(), "no".into())], vec![]).is_ok());
        let bad_status = immediate_response(1000, &[], vec![]).err().unwrap();
        assert_eq!(bad_status.kind, FailureKind::BadResponse);
        let framing = immediate_response(200, &[("content-length".into(), "1".into())], vec![]);
        assert!(framing.is_err());
    }

    /// A resident module that answers `continue` (rate-limit adding its `RateLimit`
    /// fields) gets its response hook, then its instance serves the next request; an
    /// instance whose request ended before its response hooks is not reused.
    #[test]
    fn resident_instances_run_their_response_hooks_then_go_back_to_the_pool() {
        use crate::ratelimit::PolicyConfig;
        use crate::wasm::registry::tests::{test_limits, test_services};

        let limits = test_limits();
        let services = test_services(&[PolicyConfig {
            name: "viewer".into(),
            period: Duration::from_secs(3600),
            burst: 10,
            max_keys: 100,
        }]);
        let host = crate::wasm::registry::tests::rate_limit_host(
            limits,
            Default::default(),
            services.clone(),
        );
        let chain = Chain::new(
            "test",
            OnError::FailClosed,
            vec![(
                host.slot("rate-limit").expect("slot"),
                r#"{"headers":true,"rules":[{"policy":"viewer","key":["ip"]}]}"#.into(),
            )],
        );
        let idle = || chain.entries[0].pool.idle.lock().unwrap().len();
        let request = || async {
            let mut parts = http::Request::get("https://cdn.example.com/seg.ts")
                .body(())
                .unwrap()
                .into_parts()
                .0;
            let client = IpAddr::from([192, 0, 2, 1]);
            let (run, outcome) = chain
                .on_request(
                    &services,
                    &mut parts,
                    None,
                    "cdn.example.com".into(),
                    client,
                    true,
                )
                .await;
            assert!(matches!(outcome, Outcome::Continue));
            run
        };

        // Loading checks a resident module's `init` on a runtime of its own.
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            for remaining in (7..=9).rev() {
                let run = request().await;
                // The instance stays with its request until the response.
                assert_eq!(idle(), 0);
                let (resp, _) = run
                    .on_response(Response::new(origin::body::empty()), false, &services)
                    .await;
                // One instance serves every request, each with its own answer.
                let field = resp.headers()["ratelimit"].to_str().unwrap();
                assert!(
                    field.starts_with(&format!("\"viewer\";r={remaining};")),
                    "{field}"
                );
                assert_eq!(idle(), 1);
            }
            // A request that ends before its response (the viewer went away): its instance
            // may hold state for that response, so it is torn down.
            drop(request().await);
            assert_eq!(idle(), 0);
            request()
                .await
                .on_response(Response::new(origin::body::empty()), false, &services)
                .await;
            assert_eq!(idle(), 1);
        });
        // The module counts its idle instances across routes (its bound).
        let slot = host.slot("rate-limit").expect("slot");
        assert_eq!(slot.idle.load(Ordering::Relaxed), 1);
        // A reload drops the route's chain: its pool and idle instances go with it.
        let pool = Arc::downgrade(&chain.entries[0].pool);
        drop(chain);
        assert!(pool.upgrade().is_none(), "the pool outlived its chain");
        assert_eq!(slot.idle.load(Ordering::Relaxed), 0);
    }
}
