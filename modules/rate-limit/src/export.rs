//! The Wasm export: counts the request against the node's limiters and answers 429, or
//! adds the `RateLimit` fields to the response.

use crate::{decisive, policy_fields, retry_after, Config, Decision, Plan, SUBJECT_CONTEXT};
use edge_module_sdk::rate_limit;
use edge_module_sdk::{export_module, log, Action, Module, Request, Response};
use std::cell::RefCell;

struct RateLimit;

/// The node's bound on a key's length (`rate-limit.check` refuses longer ones).
const MAX_KEY_BYTES: usize = 512;

thread_local! {
    /// The allowance to report on the response (the instance lives for one request).
    static REPORT: RefCell<Option<(String, Decision)>> = const { RefCell::new(None) };
}

fn plan() -> Plan {
    match Config::parse(&edge_module_sdk::bindings::edge::module::config::get()) {
        Ok(plan) => plan,
        // A config error fails the request; the route's `on_error` decides how.
        Err(e) => panic!("{e}"),
    }
}

impl Module for RateLimit {
    const NAME: &'static str = "rate-limit";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");

    fn on_request(req: &Request) -> Action {
        let plan = plan();
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

/// An IPv4 client on a dual-stack socket (`::ffff:a.b.c.d`) is the IPv4 address.
fn parse_ip(text: &str) -> Option<std::net::IpAddr> {
    text.parse::<std::net::IpAddr>()
        .ok()
        .or_else(|| text.parse::<std::net::SocketAddr>().ok().map(|a| a.ip()))
        .map(|ip| ip.to_canonical())
}

export_module!(RateLimit);
