//! The Wasm export: counts the request against the node's limiters and answers 429, or
//! adds the `RateLimit` fields to the response.

use crate::{decisive, policy_fields, retry_after, Config, Decision, Plan, SUBJECT_CONTEXT};
use edge_module_sdk::rate_limit;
use edge_module_sdk::{export_module, log, Action, Module, Request, Response};
use std::cell::{OnceCell, RefCell};

struct RateLimit;

/// The node's bound on a key's length (`rate-limit.check` refuses longer ones).
const MAX_KEY_BYTES: usize = 512;

thread_local! {
    /// The allowance to report on this request's response: set by `on_request`, taken by
    /// `on_response`, cleared when the next request starts.
    static REPORT: RefCell<Option<(String, Decision)>> = const { RefCell::new(None) };
    /// The route's policies, parsed once per instance by `init` (the module is resident).
    static PLAN: OnceCell<Plan> = const { OnceCell::new() };
}

impl Module for RateLimit {
    const NAME: &'static str = "rate-limit";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    // Runs on every request of its routes: the instance and its parsed policies are kept
    // across requests. Nothing of a request outlives it but the report for its response,
    // which the next request clears first.
    const RESIDENT: bool = true;

    fn init() -> Result<(), String> {
        let plan = Config::parse(&edge_module_sdk::bindings::edge::module::config::get())?;
        PLAN.with(|p| {
            let _ = p.set(plan);
        });
        Ok(())
    }

    fn on_request(req: &Request) -> Action {
        REPORT.with(|r| r.borrow_mut().take());
        PLAN.with(|plan| match plan.get() {
            Some(plan) => limit(plan, req),
            // `init` runs first or the node would not call this; refuse rather than pass.
            None => Action::respond(
                500,
                "500 Internal Server Error: rate-limit not initialised\n",
            ),
        })
    }

    fn on_response(_req: &Request, resp: &Response) {
        if let Some((policy, decision)) = REPORT.with(|r| r.borrow_mut().take()) {
            for (name, value) in policy_fields(&policy, &decision) {
                if let Err(e) = resp.set_header(name, &value) {
                    log::warn(&e);
                }
            }
        }
    }
}

/// Counts the request against the route's policies.
fn limit(plan: &Plan, req: &Request) -> Action {
    let path = req.path();
    let route = req.route();
    let header = |name: &str| req.header(name);
    let request = crate::Request {
        path: &path,
        route: &route,
        client_ip: parse_ip(&req.client_addr()),
        subject: req.get_context(SUBJECT_CONTEXT),
        header: &header,
    };
    let mut answers = Vec::new();
    for (policy, key) in plan.keys(&request) {
        // The node refuses keys over 512 bytes; a long header or path is keyed by its
        // digest instead.
        let key = if key.len() > MAX_KEY_BYTES {
            let digest = edge_module_sdk::crypto::sha256(key.as_bytes());
            digest.iter().map(|b| format!("{b:02x}")).collect()
        } else {
            key
        };
        match rate_limit::check(policy, &key) {
            Ok(d) => answers.push((
                policy,
                Decision {
                    allowed: d.allowed,
                    limit: d.limit,
                    remaining: d.remaining,
                    window_s: d.window_s,
                    reset_ms: d.reset_ms,
                    retry_after_ms: d.retry_after_ms,
                },
            )),
            // A policy the node lacks is a config error: fail per `on_error`.
            Err(e) => panic!("rate-limit policy `{policy}`: {e}"),
        }
    }
    let Some(&(policy, decision)) = decisive(&answers) else {
        return Action::Done;
    };
    if !decision.allowed {
        log::info(&format!("rate-limited: policy {policy}"));
        edge_module_sdk::metrics::counter_add("denied", 1);
        let [a, b] = policy_fields(policy, &decision);
        let retry = retry_after(&decision);
        return Action::respond_with(
            429,
            &[
                ("content-type", "text/plain; charset=utf-8"),
                ("retry-after", &retry),
                (a.0, &a.1),
                (b.0, &b.1),
            ],
            b"too many requests\n",
        );
    }
    if !plan.config.headers {
        return Action::Done;
    }
    REPORT.with(|r| *r.borrow_mut() = Some((policy.to_owned(), decision)));
    Action::Continue
}

/// An IPv4 client on a dual-stack socket (`::ffff:a.b.c.d`) is the IPv4 address.
fn parse_ip(text: &str) -> Option<std::net::IpAddr> {
    text.parse::<std::net::IpAddr>()
        .ok()
        .or_else(|| text.parse::<std::net::SocketAddr>().ok().map(|a| a.ip()))
        .map(|ip| ip.to_canonical())
}

export_module!(RateLimit);
