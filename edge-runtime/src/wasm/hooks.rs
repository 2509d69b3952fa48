//! Calling a module's hooks, directly or on a fiber.
//!
//! A component that imports nothing but the `edge:module` interfaces (the node's own
//! modules, and any module built for `wasm32-unknown-unknown`) is instantiated and
//! called directly, on the worker's stack: every host function it can reach is
//! synchronous. One that imports WASI (a module built for `wasm32-wasip2`) must run on a
//! fiber, because WASI's host side is async in wasmtime (its output streams are Tokio
//! tasks). The direct path saves the fiber switch and its stack on every call.
//!
//! A call on a fiber also ends at its budget's wall-clock cap while it waits in the host
//! (one WASI sleep that never returns runs no guest code, so no epoch deadline can stop
//! it): the call's future is dropped, which unwinds the fiber, and the call fails as one
//! that ran out of time.

use super::bindings::edge::module::types::{ModuleInfo, RequestAction};
use super::bindings::Module as FiberModule;
use super::bindings::ModulePre as FiberPre;
use super::direct_bindings::Module as DirectModule;
use super::direct_bindings::ModulePre as DirectPre;
use super::state::{ModuleState, RequestView, ResponseView};
use wasmtime::component::{Component, InstancePre, Resource};
use wasmtime::{Engine, Store};

/// Interfaces a component may import and still be called directly.
const DIRECT_IMPORTS: &str = "edge:module/";

/// A component linked against the world, ready to instantiate.
pub(crate) enum Linked {
    Direct(DirectPre<ModuleState>),
    Fiber(FiberPre<ModuleState>),
}

/// One instance's exports.
pub(crate) enum Hooks {
    Direct(DirectModule),
    Fiber(FiberModule),
}

type Call<T> = wasmtime::Result<T>;

/// `call` on a fiber, ended at the wall-clock cap of the budget armed for it.
async fn capped<T>(
    cap: std::time::Duration,
    call: impl std::future::Future<Output = Call<T>>,
) -> Call<T> {
    match tokio::time::timeout(cap, call).await {
        Ok(result) => result,
        Err(_) => Err(wasmtime::Error::new(wasmtime::Trap::Interrupt)),
    }
}

fn cap(store: &Store<ModuleState>) -> std::time::Duration {
    store.data().wall_cap()
}

impl Linked {
    pub(crate) fn new(
        engine: &Engine,
        component: &Component,
        pre: InstancePre<ModuleState>,
    ) -> wasmtime::Result<Linked> {
        let direct = component
            .component_type()
            .imports(engine)
            .all(|(name, _)| name.starts_with(DIRECT_IMPORTS));
        Ok(if direct {
            Linked::Direct(DirectPre::new(pre)?)
        } else {
            Linked::Fiber(FiberPre::new(pre)?)
        })
    }

    /// Whether calls run on a fiber (the component imports WASI).
    pub(crate) fn on_fiber(&self) -> bool {
        matches!(self, Linked::Fiber(_))
    }

    pub(crate) fn engine(&self) -> &Engine {
        match self {
            Linked::Direct(pre) => pre.engine(),
            Linked::Fiber(pre) => pre.engine(),
        }
    }

    pub(crate) async fn instantiate(&self, store: &mut Store<ModuleState>) -> Call<Hooks> {
        match self {
            Linked::Direct(pre) => pre.instantiate(store).map(Hooks::Direct),
            Linked::Fiber(pre) => pre.instantiate_async(store).await.map(Hooks::Fiber),
        }
    }
}

impl Hooks {
    pub(crate) async fn describe(&self, store: &mut Store<ModuleState>) -> Call<ModuleInfo> {
        match self {
            Hooks::Direct(m) => m.edge_module_hooks().call_describe(store),
            Hooks::Fiber(m) => capped(cap(store), m.edge_module_hooks().call_describe(store)).await,
        }
    }

    pub(crate) async fn init(&self, store: &mut Store<ModuleState>) -> Call<Result<(), String>> {
        match self {
            Hooks::Direct(m) => m.edge_module_hooks().call_init(store),
            Hooks::Fiber(m) => capped(cap(store), m.edge_module_hooks().call_init(store)).await,
        }
    }

    pub(crate) async fn on_request(
        &self,
        store: &mut Store<ModuleState>,
        req: Resource<RequestView>,
    ) -> Call<RequestAction> {
        match self {
            Hooks::Direct(m) => m.edge_module_hooks().call_on_request(store, req),
            Hooks::Fiber(m) => {
                let cap = cap(store);
                capped(cap, m.edge_module_hooks().call_on_request(store, req)).await
            }
        }
    }

    pub(crate) async fn on_response(
        &self,
        store: &mut Store<ModuleState>,
        req: Resource<RequestView>,
        resp: Resource<ResponseView>,
    ) -> Call<()> {
        match self {
            Hooks::Direct(m) => m.edge_module_hooks().call_on_response(store, req, resp),
            Hooks::Fiber(m) => {
                let cap = cap(store);
                capped(
                    cap,
                    m.edge_module_hooks().call_on_response(store, req, resp),
                )
                .await
            }
        }
    }

    pub(crate) async fn transform_body(
        &self,
        store: &mut Store<ModuleState>,
        req: Resource<RequestView>,
        resp: Resource<ResponseView>,
        body: &[u8],
    ) -> Call<Result<Option<Vec<u8>>, String>> {
        match self {
            Hooks::Direct(m) => m
                .edge_module_hooks()
                .call_transform_body(store, req, resp, body),
            Hooks::Fiber(m) => {
                let cap = cap(store);
                let call = m
                    .edge_module_hooks()
                    .call_transform_body(store, req, resp, body);
                capped(cap, call).await
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wasm::registry::tests::{test_limits, test_services};
    use crate::wasm::state::InstanceIdentity;
    use crate::wasm::Source;

    /// A bodiless `GET https://cdn.example.com/a` over HTTP/1.1 with TLS, as a hook sees it.
    fn plain_get() -> RequestView {
        RequestView {
            parts: http::Request::get("https://cdn.example.com/a")
                .body(())
                .unwrap()
                .into_parts()
                .0,
            authority: "cdn.example.com".into(),
            client: std::net::IpAddr::from([192, 0, 2, 1]),
            tls: true,
            protocol: crate::wasm::bindings::edge::module::types::Protocol::Http1,
            route: "test".into(),
            context: Vec::new(),
            number: crate::wasm::state::next_request_number(),
            body: None,
            body_truncated: false,
        }
    }

    /// The same module built both ways: without WASI imports it is called directly,
    /// with them on a fiber; both run every hook (request, response, body transform), and
    /// both report a panic's message (the direct one through its log, the other through
    /// its stderr).
    #[test]
    fn modules_with_and_without_wasi_imports_run_and_report_panics() {
        let limits = test_limits();
        let services = test_services(&[]);
        let host = crate::wasm::registry::tests::rate_limit_host(
            limits,
            Default::default(),
            services.clone(),
        );
        let builds = [
            (edge_module_artifacts::testing::TEST_MODULE, false),
            (edge_module_artifacts::testing::TEST_MODULE_WASIP2, true),
        ];
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        for (path, on_fiber) in builds {
            let bytes = std::fs::read(path).unwrap();
            host.load("probe", &bytes, Source::Deployed, limits)
                .expect("load");
            let version = host.slot("probe").unwrap().current();
            assert_eq!(version.pre.on_fiber(), on_fiber, "{path}");
            let run = |config: &str| {
                let identity = InstanceIdentity {
                    name: "probe".into(),
                    version: version.version.clone(),
                    config_json: config.into(),
                };
                let mut store =
                    ModuleState::store(version.pre.engine(), identity, services.clone(), limits);
                let view = plain_get();
                rt.block_on(async {
                    let hooks = version.pre.instantiate(&mut store).await.unwrap();
                    crate::wasm::state::arm(&mut store, limits.budget);
                    let own = store.data_mut().table.push(view).unwrap();
                    let borrow = || Resource::<RequestView>::new_borrow(own.rep());
                    let result = hooks.on_request(&mut store, borrow()).await;
                    // The response phase, when the request hook went on.
                    let mut transformed = None;
                    if result.is_ok() {
                        let response = http::Response::new(()).into_parts().0;
                        let resp = store
                            .data_mut()
                            .table
                            .push(ResponseView { parts: response })
                            .unwrap();
                        let resp_borrow = || Resource::<ResponseView>::new_borrow(resp.rep());
                        hooks
                            .on_response(&mut store, borrow(), resp_borrow())
                            .await
                            .unwrap();
                        transformed = hooks
                            .transform_body(&mut store, borrow(), resp_borrow(), b"body")
                            .await
                            .unwrap()
                            .unwrap();
                        store.data_mut().table.delete(resp).unwrap();
                    }
                    let view = store.data_mut().table.delete(own).unwrap();
                    (result, view, transformed, store.data().last_words())
                })
            };

            let (result, view, transformed, _) = run(r#"{"mode":"tag","tag":"x"}"#);
            assert!(matches!(result, Ok(RequestAction::Continue)), "{path}");
            assert_eq!(view.parts.headers["x-chain"], "x", "{path}");
            assert_eq!(transformed, None, "{path}");

            let (_, _, transformed, _) = run(r#"{"mode":"upper"}"#);
            assert_eq!(transformed.as_deref(), Some(&b"BODY"[..]), "{path}");

            let (result, _, _, said) = run(r#"{"mode":"trap"}"#);
            assert!(result.is_err(), "{path}");
            assert!(said.contains("trapped on purpose"), "{path}: {said}");
        }
    }

    /// The wasip2 test module in `mode`, its request hook called with a 5 ms budget: the
    /// result and how long the call took.
    fn call_sleeper(mode: &str) -> (Call<RequestAction>, std::time::Duration) {
        let limits = crate::wasm::registry::ModuleLimits {
            budget: std::time::Duration::from_millis(5),
            ..test_limits()
        };
        let services = test_services(&[]);
        let host = crate::wasm::registry::tests::rate_limit_host(
            limits,
            Default::default(),
            services.clone(),
        );
        let bytes = std::fs::read(edge_module_artifacts::testing::TEST_MODULE_WASIP2).unwrap();
        host.load("sleeper", &bytes, Source::Deployed, limits)
            .expect("load");
        let version = host.slot("sleeper").unwrap().current();
        let identity = InstanceIdentity {
            name: "sleeper".into(),
            version: version.version.clone(),
            config_json: format!(r#"{{"mode":"{mode}"}}"#).into(),
        };
        let mut store = ModuleState::store(version.pre.engine(), identity, services, limits);
        let view = plain_get();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let hooks = version.pre.instantiate(&mut store).await.unwrap();
            crate::wasm::state::arm(&mut store, limits.budget);
            let own = store.data_mut().table.push(view).unwrap();
            let started = std::time::Instant::now();
            let result = hooks
                .on_request(&mut store, Resource::new_borrow(own.rep()))
                .await;
            (result, started.elapsed())
        })
    }

    /// One WASI wait that does not return (an hour's sleep) runs no guest code, so no
    /// epoch deadline can end it: the call's future is dropped at the wall-clock cap.
    #[test]
    fn a_single_endless_wasi_wait_is_cut_at_the_wall_clock_cap() {
        stopped_at_the_cap(call_sleeper("sleep-once"));
    }

    /// A module that waits in WASI (on a fiber) uses almost no CPU, so its CPU budget
    /// would never run out: the wall-clock cap ends the call.
    #[test]
    fn a_module_waiting_in_wasi_is_stopped_at_the_wall_clock_cap() {
        // Stopped by the cap rather than by its CPU time, which at ~10 wake-ups a second
        // takes seconds to reach 5 ms (2.4 s in a debug build when tried with the cap out
        // of the way).
        stopped_at_the_cap(call_sleeper("sleep-loop"));
    }

    /// Failed as out of time, at the wall-clock cap (20 budgets, at least 100 ms).
    fn stopped_at_the_cap((result, waited): (Call<RequestAction>, std::time::Duration)) {
        let error = result.expect_err("a module that never returns is stopped");
        assert_eq!(
            error.downcast_ref::<wasmtime::Trap>(),
            Some(&wasmtime::Trap::Interrupt),
            "{error:#}"
        );
        assert!(waited >= crate::wasm::cpu_budget::WALL_MIN, "{waited:?}");
        assert!(
            waited < std::time::Duration::from_millis(1500),
            "{waited:?}"
        );
    }
}
