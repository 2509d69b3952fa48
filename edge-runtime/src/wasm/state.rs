//! What one module instance's store holds, and the host side of the WIT imports other
//! than crypto: the request and response resources, log, config, clock, metrics and the
//! rate limiter.

use super::bindings::edge::module::{clock, config, log, metrics, rate_limit, types};
use super::cpu_budget::{AtDeadline, CpuBudget};
use super::metrics::ModuleMetrics;
use super::registry::ModuleLimits;
use crate::ratelimit::RateLimits;
use http::header::{HeaderName, HeaderValue};
use http::uri::PathAndQuery;
use http::{HeaderMap, StatusCode};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use wasmtime::component::{Resource, ResourceTable};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

/// Node-wide services the imports reach.
pub struct Services {
    pub rate_limits: Arc<RateLimits>,
    pub metrics: Arc<ModuleMetrics>,
    /// Signatures the crypto import verified recently (tokens repeat per segment).
    pub verified: super::crypto::VerifiedSignatures,
}

/// Which module an instance runs and with what config, for logs and the imports. Three
/// shared strings: making one per instance allocates nothing.
#[derive(Clone)]
pub struct InstanceIdentity {
    pub name: Arc<str>,
    pub version: Arc<str>,
    pub config_json: Arc<str>,
}

/// The store data of one instance.
pub struct ModuleState {
    pub(crate) table: ResourceTable,
    /// Made on the first WASI call: only components built for `wasm32-wasip2` make any.
    wasi: Option<Wasi>,
    /// The module's last error-level log line (the SDK logs a panic's message there),
    /// for the report when it traps.
    last_error: Option<String>,
    pub(crate) memory: MemoryLimit,
    /// The CPU budget each hook call gets.
    pub(crate) budget: std::time::Duration,
    /// The budget of the call in progress.
    cpu: CpuBudget,
    pub(crate) identity: InstanceIdentity,
    pub(super) services: Arc<Services>,
}

/// Bounds on what a module can make the host hold for one request: it runs for
/// milliseconds, long enough to fill memory through host calls in a loop.
pub const MAX_CONTEXT_ENTRIES: usize = 64;
pub const MAX_CONTEXT_VALUE_BYTES: usize = 8 * 1024;
pub const MAX_FIELDS: usize = 256;

/// The context key under which every request carries the node's id for it (read-only):
/// modules put it in their logs and error pages so one request can be followed across
/// them and the node.
pub const REQUEST_ID_KEY: &str = "edge.request-id";

/// A number for a new request, unique within this process.
pub fn next_request_number() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// The request id modules read: 12 hex digits (the low 48 bits) of the time in µs this
/// process first made one, so a restarted node does not repeat ids, then the request's
/// number in at least 8 (20 digits in all until 2³² requests).
pub fn request_id(number: u64) -> String {
    static STARTED: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    let started = *STARTED.get_or_init(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as u64)
    });
    format!("{:012x}{number:08x}", started & 0xffff_ffff_ffff)
}

/// The WASI context of an instance, and its stderr.
struct Wasi {
    ctx: WasiCtx,
    /// What the module wrote to stderr (a Rust panic message), for the log when it traps.
    stderr: MemoryOutputPipe,
}

impl Wasi {
    fn new() -> Wasi {
        let stderr = MemoryOutputPipe::new(STDERR_BYTES);
        // No environment, arguments, files, sockets or stdin: a module reaches the world
        // only through the edge:module imports.
        let ctx = WasiCtx::builder().stderr(stderr.clone()).build();
        Wasi { ctx, stderr }
    }
}

/// Bytes of stderr kept per instance: enough for a panic message.
const STDERR_BYTES: usize = 2048;
/// Longest log line a module may write; longer lines are cut.
const MAX_LOG_LINE: usize = 4096;

impl ModuleState {
    pub fn new(identity: InstanceIdentity, services: Arc<Services>, limits: ModuleLimits) -> Self {
        ModuleState {
            table: ResourceTable::new(),
            wasi: None,
            last_error: None,
            memory: MemoryLimit::new(limits.memory_bytes),
            budget: limits.budget,
            cpu: CpuBudget::new(limits.instantiate_budget()),
            identity,
            services,
        }
    }

    /// A store for one new instance: its memory capped by the limiter, its CPU checked at
    /// epoch deadlines, and the budget for instantiation set (each hook call then sets its
    /// own with [`arm`]).
    pub(crate) fn store(
        engine: &wasmtime::Engine,
        identity: InstanceIdentity,
        services: Arc<Services>,
        limits: ModuleLimits,
    ) -> wasmtime::Store<ModuleState> {
        let mut store = wasmtime::Store::new(engine, ModuleState::new(identity, services, limits));
        store.limiter(|s| &mut s.memory);
        store.epoch_deadline_callback(|mut store| match store.data_mut().cpu.at_deadline() {
            AtDeadline::Continue(ticks) => Ok(wasmtime::UpdateDeadline::Continue(ticks)),
            AtDeadline::Stop => Err(wasmtime::Trap::Interrupt.into()),
        });
        store.set_epoch_deadline(store.data().cpu.first_deadline());
        store
    }

    /// A hook call is about to start: an error line from an earlier call (of a resident
    /// instance, maybe for another request) must not be reported as this call's.
    pub(crate) fn begin_call(&mut self) {
        self.last_error = None;
    }

    /// What the module said before it failed, for a failure report: its stderr,
    /// trimmed, or else its last error-level log line.
    pub fn last_words(&self) -> String {
        if let Some(wasi) = &self.wasi {
            let bytes = wasi.stderr.contents();
            let text = String::from_utf8_lossy(&bytes);
            if !text.trim().is_empty() {
                return text.trim().to_owned();
            }
        }
        self.last_error.clone().unwrap_or_default()
    }
}

/// Before a call into the module: it gets `budget` of CPU time (see [`CpuBudget`]).
impl ModuleState {
    /// Wall-clock time after which the call armed last stops, whatever its CPU time.
    pub(crate) fn wall_cap(&self) -> std::time::Duration {
        self.cpu.wall_cap()
    }

    /// Which limit ended the call armed last, when an epoch deadline stopped it (a call on
    /// a fiber cut at the wall-clock cap while it waited in the host has none).
    pub(crate) fn stopped_by(&self) -> Option<super::cpu_budget::Stopped> {
        self.cpu.stopped()
    }
}

pub(crate) fn arm(store: &mut wasmtime::Store<ModuleState>, budget: std::time::Duration) {
    let cpu = CpuBudget::new(budget);
    store.set_epoch_deadline(cpu.first_deadline());
    store.data_mut().cpu = cpu;
}

impl WasiView for ModuleState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi.get_or_insert_with(Wasi::new).ctx,
            table: &mut self.table,
        }
    }
}

/// Caps one instance's linear memory, and remembers that it did, so that the trap that
/// follows (a guest that cannot allocate aborts) is reported as out-of-memory.
pub struct MemoryLimit {
    max: usize,
    pub(crate) exceeded: bool,
}

impl MemoryLimit {
    fn new(max: usize) -> Self {
        MemoryLimit {
            max,
            exceeded: false,
        }
    }
}

impl wasmtime::ResourceLimiter for MemoryLimit {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.max {
            self.exceeded = true;
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }
}

/// The viewer's request as modules see it.
pub struct RequestView {
    pub parts: http::request::Parts,
    /// Lower-case, without the port.
    pub authority: Arc<str>,
    pub client: IpAddr,
    /// Whether the viewer's connection is TLS (the URL's scheme).
    pub tls: bool,
    pub protocol: types::Protocol,
    pub route: Arc<str>,
    pub context: Vec<(String, String)>,
    /// This request's number ([`next_request_number`]), read as [`REQUEST_ID_KEY`].
    pub number: u64,
    /// The request body as far as modules asked for it (`request-body-bytes`).
    pub body: Option<bytes::Bytes>,
    pub body_truncated: bool,
}

/// The response head as modules see it.
pub struct ResponseView {
    pub parts: http::response::Parts,
}

/// Fields that frame the message or belong to one connection: the node owns them, a
/// module cannot set them (a wrong `content-length` would corrupt the response).
fn module_may_set(name: &HeaderName) -> bool {
    !matches!(
        name.as_str(),
        "content-length"
            | "transfer-encoding"
            | "connection"
            | "keep-alive"
            | "upgrade"
            | "te"
            | "trailer"
            | "proxy-connection"
    )
}

fn parse_field(name: &str, value: &str) -> Result<(HeaderName, HeaderValue), String> {
    let name = HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| format!("invalid header name `{name}`"))?;
    if !module_may_set(&name) {
        return Err(format!("header `{name}` is managed by the node"));
    }
    let value =
        HeaderValue::from_str(value).map_err(|_| format!("invalid value for header `{name}`"))?;
    Ok((name, value))
}

/// Builds a header map from a module's list, for an immediate response.
pub fn fields_to_map(fields: &[(String, String)]) -> Result<HeaderMap, String> {
    let mut map = HeaderMap::with_capacity(fields.len());
    for (name, value) in fields {
        let (name, value) = parse_field(name, value)?;
        map.append(name, value);
    }
    Ok(map)
}

fn first_value(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
}

fn all_values(headers: &HeaderMap, name: &str) -> Vec<String> {
    headers
        .get_all(name)
        .iter()
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .collect()
}

fn all_fields(headers: &HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(n, v)| {
            (
                n.as_str().to_owned(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect()
}

fn set_field(headers: &mut HeaderMap, name: &str, value: &str, append: bool) -> Result<(), String> {
    let (name, value) = parse_field(name, value)?;
    let adds_a_field = append || !headers.contains_key(&name);
    if adds_a_field && headers.len() >= MAX_FIELDS {
        return Err(format!("more than {MAX_FIELDS} header fields"));
    }
    if append {
        headers.append(name, value);
    } else {
        headers.insert(name, value);
    }
    Ok(())
}

fn remove_field(headers: &mut HeaderMap, name: &str) {
    if let Ok(name) = HeaderName::from_bytes(name.as_bytes()) {
        if module_may_set(&name) {
            headers.remove(name);
        }
    }
}

type Res<T> = wasmtime::Result<T>;

/// The request and the response share the header functions of the WIT resources.
trait HeaderView: Send + 'static {
    fn fields(&self) -> &HeaderMap;
    fn fields_mut(&mut self) -> &mut HeaderMap;
}

impl HeaderView for RequestView {
    fn fields(&self) -> &HeaderMap {
        &self.parts.headers
    }
    fn fields_mut(&mut self) -> &mut HeaderMap {
        &mut self.parts.headers
    }
}

impl HeaderView for ResponseView {
    fn fields(&self) -> &HeaderMap {
        &self.parts.headers
    }
    fn fields_mut(&mut self) -> &mut HeaderMap {
        &mut self.parts.headers
    }
}

impl ModuleState {
    fn view<V: HeaderView>(&self, r: &Resource<V>) -> Res<&V> {
        Ok(self.table.get(r)?)
    }
    fn view_mut<V: HeaderView>(&mut self, r: &Resource<V>) -> Res<&mut V> {
        Ok(self.table.get_mut(r)?)
    }
    fn header_of<V: HeaderView>(&self, r: &Resource<V>, name: &str) -> Res<Option<String>> {
        Ok(first_value(self.view(r)?.fields(), name))
    }
    fn header_all_of<V: HeaderView>(&self, r: &Resource<V>, name: &str) -> Res<Vec<String>> {
        Ok(all_values(self.view(r)?.fields(), name))
    }
    fn headers_of<V: HeaderView>(&self, r: &Resource<V>) -> Res<Vec<(String, String)>> {
        Ok(all_fields(self.view(r)?.fields()))
    }
    fn set_on<V: HeaderView>(
        &mut self,
        r: &Resource<V>,
        name: &str,
        value: &str,
        append: bool,
    ) -> Res<Result<(), String>> {
        Ok(set_field(
            self.view_mut(r)?.fields_mut(),
            name,
            value,
            append,
        ))
    }
    fn remove_on<V: HeaderView>(&mut self, r: &Resource<V>, name: &str) -> Res<()> {
        remove_field(self.view_mut(r)?.fields_mut(), name);
        Ok(())
    }
}

impl types::Host for ModuleState {}

impl types::HostRequest for ModuleState {
    fn method(&mut self, r: Resource<RequestView>) -> Res<String> {
        Ok(self.view(&r)?.parts.method.as_str().to_owned())
    }
    fn authority(&mut self, r: Resource<RequestView>) -> Res<String> {
        Ok(self.view(&r)?.authority.to_string())
    }
    fn path(&mut self, r: Resource<RequestView>) -> Res<String> {
        Ok(self.view(&r)?.parts.uri.path().to_owned())
    }
    fn query(&mut self, r: Resource<RequestView>) -> Res<Option<String>> {
        Ok(self.view(&r)?.parts.uri.query().map(str::to_owned))
    }
    fn url(&mut self, r: Resource<RequestView>) -> Res<String> {
        let view = self.view(&r)?;
        let scheme = if view.tls { "https" } else { "http" };
        let target = view
            .parts
            .uri
            .path_and_query()
            .map_or("/", |pq| pq.as_str());
        Ok(format!("{scheme}://{}{target}", view.authority))
    }
    fn header(&mut self, r: Resource<RequestView>, name: String) -> Res<Option<String>> {
        self.header_of(&r, &name)
    }
    fn body(&mut self, r: Resource<RequestView>) -> Res<Option<Vec<u8>>> {
        Ok(self.view(&r)?.body.as_ref().map(|b| b.to_vec()))
    }
    fn body_truncated(&mut self, r: Resource<RequestView>) -> Res<bool> {
        Ok(self.view(&r)?.body_truncated)
    }
    fn header_all(&mut self, r: Resource<RequestView>, name: String) -> Res<Vec<String>> {
        self.header_all_of(&r, &name)
    }
    fn headers(&mut self, r: Resource<RequestView>) -> Res<Vec<(String, String)>> {
        self.headers_of(&r)
    }
    fn client_addr(&mut self, r: Resource<RequestView>) -> Res<String> {
        Ok(self.view(&r)?.client.to_string())
    }
    fn protocol(&mut self, r: Resource<RequestView>) -> Res<types::Protocol> {
        Ok(self.view(&r)?.protocol)
    }
    fn route(&mut self, r: Resource<RequestView>) -> Res<String> {
        Ok(self.view(&r)?.route.to_string())
    }
    fn set_header(
        &mut self,
        r: Resource<RequestView>,
        name: String,
        value: String,
    ) -> Res<Result<(), String>> {
        self.set_on(&r, &name, &value, false)
    }
    fn append_header(
        &mut self,
        r: Resource<RequestView>,
        name: String,
        value: String,
    ) -> Res<Result<(), String>> {
        self.set_on(&r, &name, &value, true)
    }
    fn remove_header(&mut self, r: Resource<RequestView>, name: String) -> Res<()> {
        self.remove_on(&r, &name)
    }
    fn set_path_and_query(
        &mut self,
        r: Resource<RequestView>,
        value: String,
    ) -> Res<Result<(), String>> {
        let view = self.view_mut(&r)?;
        if !value.starts_with('/') {
            return Ok(Err(format!("`{value}` is not an absolute path")));
        }
        let Ok(pq) = value.parse::<PathAndQuery>() else {
            return Ok(Err(format!("`{value}` is not a valid path and query")));
        };
        let mut uri = std::mem::take(&mut view.parts.uri).into_parts();
        uri.path_and_query = Some(pq);
        match http::Uri::from_parts(uri) {
            Ok(new) => {
                view.parts.uri = new;
                Ok(Ok(()))
            }
            Err(e) => Ok(Err(format!("`{value}`: {e}"))),
        }
    }
    fn get_context(&mut self, r: Resource<RequestView>, key: String) -> Res<Option<String>> {
        let view = self.view(&r)?;
        if key == REQUEST_ID_KEY {
            return Ok(Some(request_id(view.number)));
        }
        Ok(view
            .context
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.clone()))
    }
    fn set_context(&mut self, r: Resource<RequestView>, key: String, value: String) -> Res<()> {
        let view = self.view_mut(&r)?;
        if key == REQUEST_ID_KEY {
            wasmtime::bail!("{REQUEST_ID_KEY} is the node's and cannot be set");
        }
        if value.len() > MAX_CONTEXT_VALUE_BYTES || key.len() > MAX_CONTEXT_VALUE_BYTES {
            wasmtime::bail!(
                "request context values are limited to {MAX_CONTEXT_VALUE_BYTES} bytes"
            );
        }
        if view.context.len() >= MAX_CONTEXT_ENTRIES && !view.context.iter().any(|(k, _)| *k == key)
        {
            wasmtime::bail!("request context is full ({MAX_CONTEXT_ENTRIES} entries)");
        }
        match view.context.iter_mut().find(|(k, _)| *k == key) {
            Some(slot) => slot.1 = value,
            None => view.context.push((key, value)),
        }
        Ok(())
    }
    fn drop(&mut self, r: Resource<RequestView>) -> Res<()> {
        self.table.delete(r)?;
        Ok(())
    }
}

impl types::HostResponse for ModuleState {
    fn status(&mut self, r: Resource<ResponseView>) -> Res<u16> {
        Ok(self.view(&r)?.parts.status.as_u16())
    }
    fn set_status(&mut self, r: Resource<ResponseView>, status: u16) -> Res<Result<(), String>> {
        let view = self.view_mut(&r)?;
        match StatusCode::from_u16(status) {
            Ok(s) => {
                view.parts.status = s;
                Ok(Ok(()))
            }
            Err(_) => Ok(Err(format!("{status} is not an HTTP status"))),
        }
    }
    fn header(&mut self, r: Resource<ResponseView>, name: String) -> Res<Option<String>> {
        self.header_of(&r, &name)
    }
    fn header_all(&mut self, r: Resource<ResponseView>, name: String) -> Res<Vec<String>> {
        self.header_all_of(&r, &name)
    }
    fn headers(&mut self, r: Resource<ResponseView>) -> Res<Vec<(String, String)>> {
        self.headers_of(&r)
    }
    fn set_header(
        &mut self,
        r: Resource<ResponseView>,
        name: String,
        value: String,
    ) -> Res<Result<(), String>> {
        self.set_on(&r, &name, &value, false)
    }
    fn append_header(
        &mut self,
        r: Resource<ResponseView>,
        name: String,
        value: String,
    ) -> Res<Result<(), String>> {
        self.set_on(&r, &name, &value, true)
    }
    fn remove_header(&mut self, r: Resource<ResponseView>, name: String) -> Res<()> {
        self.remove_on(&r, &name)
    }
    fn drop(&mut self, r: Resource<ResponseView>) -> Res<()> {
        self.table.delete(r)?;
        Ok(())
    }
}

impl log::Host for ModuleState {
    fn log(&mut self, level: log::Level, message: String) -> Res<()> {
        let mut message = message;
        if message.len() > MAX_LOG_LINE {
            let mut cut = MAX_LOG_LINE;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
        }
        let id = &self.identity;
        let (module, version) = (&*id.name, &*id.version);
        match level {
            log::Level::Trace => tracing::trace!(module, version, "{message}"),
            log::Level::Debug => tracing::debug!(module, version, "{message}"),
            log::Level::Info => tracing::info!(module, version, "{message}"),
            log::Level::Warn => tracing::warn!(module, version, "{message}"),
            log::Level::Error => tracing::error!(module, version, "{message}"),
        }
        if matches!(level, log::Level::Error) {
            self.last_error = Some(message);
        }
        Ok(())
    }
}

impl config::Host for ModuleState {
    fn get(&mut self) -> Res<String> {
        Ok(self.identity.config_json.to_string())
    }
}

impl clock::Host for ModuleState {
    fn now_ms(&mut self) -> Res<u64> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Ok(now.as_millis() as u64)
    }
}

impl metrics::Host for ModuleState {
    fn counter_add(&mut self, name: String, value: u64) -> Res<()> {
        self.services
            .metrics
            .counter_add(&self.identity.name, &name, value);
        Ok(())
    }
    fn histogram_observe(&mut self, name: String, value: f64) -> Res<()> {
        self.services
            .metrics
            .observe(&self.identity.name, &name, value);
        Ok(())
    }
}

impl rate_limit::Host for ModuleState {
    fn check(&mut self, policy: String, key: String) -> Res<Result<rate_limit::Decision, String>> {
        Ok(match self.services.rate_limits.check(&policy, &key) {
            Ok(v) => Ok(rate_limit::Decision {
                allowed: v.allowed,
                limit: v.limit,
                remaining: v.remaining,
                window_s: v.window.as_secs_f64().ceil().max(1.0) as u32,
                reset_ms: v.reset.as_millis() as u64,
                retry_after_ms: if v.allowed {
                    0
                } else {
                    (v.retry_after.as_millis() as u64).max(1)
                },
            }),
            Err(e) => Err(e.to_string()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_context_is_bounded() {
        use types::HostRequest;
        let services = Arc::new(Services {
            rate_limits: Arc::new(RateLimits::new(&[])),
            metrics: Arc::new(ModuleMetrics::default()),
            verified: Default::default(),
        });
        let identity = InstanceIdentity {
            name: "m".into(),
            version: "1".into(),
            config_json: "{}".into(),
        };
        let limits = ModuleLimits {
            budget: std::time::Duration::from_millis(5),
            memory_bytes: 1 << 20,
        };
        let mut state = ModuleState::new(identity, services, limits);
        let view = RequestView {
            parts: http::Request::new(()).into_parts().0,
            authority: "h".into(),
            client: IpAddr::from([192, 0, 2, 1]),
            tls: true,
            protocol: types::Protocol::Http1,
            route: "r".into(),
            context: Vec::new(),
            number: next_request_number(),
            body: None,
            body_truncated: false,
        };
        let own = state.table.push(view).unwrap();
        let r = || Resource::<RequestView>::new_borrow(own.rep());
        for i in 0..MAX_CONTEXT_ENTRIES {
            state.set_context(r(), format!("k{i}"), "v".into()).unwrap();
        }
        assert!(state
            .set_context(r(), "one-more".into(), "v".into())
            .is_err());
        state
            .set_context(r(), "k0".into(), "replaced".into())
            .unwrap();
        assert_eq!(
            state.get_context(r(), "k0".into()).unwrap().as_deref(),
            Some("replaced")
        );
        let huge = "x".repeat(MAX_CONTEXT_VALUE_BYTES + 1);
        assert!(state.set_context(r(), "k1".into(), huge).is_err());
        // The node's request id: there to read, not to set.
        let id = state.get_context(r(), REQUEST_ID_KEY.into()).unwrap();
        assert_eq!(id.map(|id| id.len()), Some(20));
        assert!(state
            .set_context(r(), REQUEST_ID_KEY.into(), "mine".into())
            .is_err());
    }

    #[test]
    fn request_ids_are_unique_within_the_process() {
        let id = request_id;
        let (a, b) = (next_request_number(), next_request_number());
        assert_ne!(id(a), id(b));
        assert_eq!(id(a).len(), 20);
        assert!(id(a).bytes().all(|c| c.is_ascii_hexdigit()));
        // Same process start, so the ids differ only in the number.
        assert_eq!(id(a)[..12], id(b)[..12]);
        assert_eq!(id(u64::from(u32::MAX) + 1).len(), 21);
    }

    #[test]
    fn a_message_holds_a_bounded_number_of_fields() {
        let mut map = HeaderMap::new();
        for i in 0..MAX_FIELDS {
            set_field(&mut map, &format!("x-{i}"), "v", true).unwrap();
        }
        assert!(set_field(&mut map, "x-more", "v", true).is_err());
        // Replacing an existing field is still allowed.
        set_field(&mut map, "x-0", "w", false).unwrap();
        assert_eq!(map["x-0"], "w");
    }

    #[test]
    fn framing_fields_are_the_nodes() {
        assert!(parse_field("content-length", "3").is_err());
        assert!(parse_field("Transfer-Encoding", "chunked").is_err());
        assert!(parse_field("x-ok", "fine").is_ok());
        assert!(parse_field("bad name", "v").is_err());
        assert!(parse_field("x-bad", "a\nb").is_err());
        let map = fields_to_map(&[("Retry-After".into(), "3".into())]).unwrap();
        assert_eq!(map["retry-after"], "3");
    }
}
