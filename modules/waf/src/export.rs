//! The Wasm export: a resident module. `init` compiles the route's rule set once per
//! instance; each request is then evaluated against it, blocked (403 with a request id) or
//! passed, with one JSON audit line in the node's log per request that matched a rule.

use crate::config::Config;
use crate::memo::CleanValues;
use crate::request::Request as WafRequest;
use crate::ruleset::RuleSet;
use crate::transaction::{evaluate, evaluate_remembering};
use edge_module_sdk::{export_module, log, metrics, Action, Module, Protocol, Request};
use std::sync::OnceLock;

struct Waf;

/// The compiled rule set of this instance (the instance serves one route entry).
static RULES: OnceLock<RuleSet> = OnceLock::new();

thread_local! {
    /// Values found clean by earlier requests of this instance (`None`: `clean_values = 0`).
    static CLEAN: std::cell::RefCell<Option<CleanValues>> = const { std::cell::RefCell::new(None) };
}

/// Request bodies the WAF inspects; more is treated by `SecRequestBodyLimitAction`.
const BODY_BYTES: u32 = 1 << 20;

/// The rule set and how many clean values to remember.
fn compile() -> Result<(RuleSet, usize), String> {
    let json = edge_module_sdk::bindings::edge::module::config::get();
    let config = Config::parse(&json)?;
    let set = config.compile().map_err(|e| {
        let all: Vec<String> = e.errors.iter().map(|p| p.to_string()).collect();
        format!("rule set does not load: {}", all.join("; "))
    })?;
    for w in set
        .warnings
        .iter()
        .filter(|w| w.message.starts_with("skipped:"))
    {
        log::warn(&format!("{w}"));
    }
    // Actions the engine ignores (persistent collections, sanitising...): one line, so a
    // rule set full of them does not flood the log; `edge waf check` lists each.
    let ignored: Vec<&crate::ruleset::Problem> = set
        .warnings
        .iter()
        .filter(|w| !w.message.starts_with("skipped:"))
        .collect();
    if let Some(first) = ignored.first() {
        log::warn(&format!(
            "{} rule set warning(s), e.g. {first}; `edge waf check` lists them",
            ignored.len()
        ));
    }
    if set.body.limit > BODY_BYTES as usize {
        log::warn(&format!(
            "SecRequestBodyLimit {} is above the {BODY_BYTES} bytes the node lends the WAF: \
             bodies are inspected up to {BODY_BYTES} bytes; a longer one is held to the \
             limit by its declared Content-Length, and one without (chunked, or h2/h3 \
             without the field) is not (the node's max_request_body_bytes still is)",
            set.body.limit
        ));
    }
    Ok((set, config.clean_values))
}

/// The request's id (in the 403 page, the audit line and `UNIQUE_ID`): the node's own
/// (`edge.request-id`), the same one every module and the node see.
fn request_id(req: &Request) -> String {
    req.get_context("edge.request-id")
        .unwrap_or_else(|| local_request_id(edge_module_sdk::clock::now_ms(), &req.client_addr()))
}

/// Without the node's id (another host of this component): the time, a count of this
/// instance's requests and the viewer's address, hashed. Instances start from the same
/// memory (a module has no random source), so the address keeps two instances' ids apart;
/// two instances may still give one viewer the same id in the same millisecond.
fn local_request_id(now_ms: u64, client: &str) -> String {
    use std::hash::{Hash, Hasher};
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut hasher = std::hash::DefaultHasher::new();
    (now_ms, n, client).hash(&mut hasher);
    format!("{:016x}", hasher.finish())
}

fn to_waf_request(req: &Request, id: &str) -> WafRequest {
    let path = req.path();
    let uri = match req.query() {
        Some(q) => format!("{path}?{q}"),
        None => path,
    };
    let mut headers: Vec<(String, Vec<u8>)> = req
        .headers()
        .into_iter()
        .map(|(k, v)| (k, v.into_bytes()))
        .collect();
    // HTTP/2 and HTTP/3 carry the host in `:authority`, not a Host field; CRS expects Host
    // (920280) as web servers present it, so the node's authority stands in.
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        headers.insert(0, ("host".into(), req.authority().into_bytes()));
    }
    // The parameters token-auth verified on this request (it runs first on the route).
    let verified_args = req
        .get_context("token.query")
        .map(|q| crate::request::verified_arg_names(&q))
        .unwrap_or_default();
    let body = req.body().unwrap_or_default();
    // The node lends at most BODY_BYTES: past that, the declared length is what
    // SecRequestBodyLimit is compared with. A longer body without one (chunked, or h2/h3
    // without the field) is taken as one byte over what was lent: its length is unknown
    // until it has streamed to the origin.
    let body_length = req.body_truncated().then(|| {
        let declared = headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
            .and_then(|(_, v)| std::str::from_utf8(v).ok()?.trim().parse::<usize>().ok());
        declared.unwrap_or(0).max(body.len() + 1)
    });
    WafRequest {
        method: req.method(),
        uri,
        protocol: match req.protocol() {
            Protocol::Http1 => "HTTP/1.1",
            Protocol::Http2 => "HTTP/2.0",
            Protocol::Http3 => "HTTP/3.0",
        }
        .into(),
        headers,
        body,
        body_length,
        remote_addr: req.client_addr(),
        remote_port: 0,
        unique_id: id.to_owned(),
        verified_args,
    }
}

fn warm_up_request() -> WafRequest {
    let headers = [
        ("host", "localhost"),
        (
            "user-agent",
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/120.0 Safari/537.36",
        ),
        ("accept", "*/*"),
        ("accept-language", "en-US,en;q=0.9"),
        ("accept-encoding", "gzip, deflate, br"),
        ("cookie", "session=abc123; theme=dark"),
        ("content-type", "application/x-www-form-urlencoded"),
    ];
    WafRequest {
        method: "POST".into(),
        uri: "/video/segment_00042.m4s?token=exp%3D1700000000~hmac%3Dabc&lang=en".into(),
        protocol: "HTTP/1.1".into(),
        headers: headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
            .collect(),
        body: b"title=Holiday video&tags=beach,sea".to_vec(),
        body_length: None,
        remote_addr: "192.0.2.1".into(),
        remote_port: 0,
        unique_id: "warm-up".into(),
        verified_args: Vec::new(),
    }
}

/// The node keeps a module's log line to 4 KiB: every rule id always fits; the details
/// (message, matched data, variable) go in while there is room, so the line stays JSON.
fn audit_line(mut line: serde_json::Value, verdict: &crate::Verdict) -> String {
    const ROOM: usize = 3800;
    let mut text = line.to_string();
    let mut details = Vec::new();
    for m in verdict.matches.iter().filter(|m| m.audited) {
        let detail = serde_json::json!({
            "id": m.id, "msg": m.msg, "data": m.data, "severity": m.severity, "variable": m.variable,
        });
        let grown = detail.to_string().len() + 1;
        if text.len() + grown > ROOM {
            break;
        }
        details.push(detail);
        line["rules"] = serde_json::Value::Array(details.clone());
        text = line.to_string();
    }
    text
}

impl Module for Waf {
    const NAME: &'static str = "waf";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const REQUEST_BODY_BYTES: u32 = BODY_BYTES;
    const RESIDENT: bool = true;

    fn init() -> Result<(), String> {
        if RULES.get().is_none() {
            let (set, clean_values) = compile()?;
            // One ordinary request warms the regexes' lazy DFAs, so the first viewer
            // does not pay for building their states.
            let _ = evaluate(&set, &warm_up_request());
            // What ops size `memory_mib` by: the instance's linear memory with the
            // compiled rule set in it.
            let pages = core::arch::wasm32::memory_size(0);
            log::info(&format!(
                "rule set compiled: {} rules, instance memory {} MiB",
                set.rule_count(),
                pages * 64 / 1024
            ));
            if clean_values > 0 {
                CLEAN.with_borrow_mut(|c| *c = Some(CleanValues::new(&set, clean_values)));
            }
            let _ = RULES.set(set);
        }
        Ok(())
    }

    fn on_request(req: &Request) -> Action {
        let Some(rules) = RULES.get() else {
            // `init` ran first or the node would not call this; refuse rather than pass.
            return Action::respond(500, "500 Internal Server Error: WAF rules not loaded\n");
        };
        let id = request_id(req);
        let request = to_waf_request(req, &id);
        let verdict = CLEAN.with_borrow_mut(|clean| match clean {
            Some(memo) => evaluate_remembering(rules, &request, memo),
            None => evaluate(rules, &request),
        });
        metrics::counter_add("requests", 1);
        let audited = verdict.matches.iter().any(|m| m.audited);
        if audited {
            metrics::counter_add("matched", 1);
            // Per rule, for the node's metrics (`name="rule:942100"`); the host bounds
            // the names a module may create.
            for m in verdict.matches.iter().filter(|m| m.audited) {
                metrics::counter_add(&format!("rule:{}", m.id), 1);
            }
            let line = serde_json::json!({
                "waf": "audit",
                "request_id": id,
                "method": req.method(),
                "path": req.path(),
                "client": req.client_addr(),
                "mode": verdict.mode,
                "anomaly_score": verdict.anomaly_score,
                "blocked": verdict.interruption.is_some(),
                "would_block": verdict.would_interrupt.is_some(),
                "rule_ids": verdict.matches.iter().filter(|m| m.audited).map(|m| m.id).collect::<Vec<_>>(),
                "rules": [],
            });
            log::warn(&audit_line(line, &verdict));
        }
        match verdict.interruption {
            Some(i) => {
                metrics::counter_add("blocked", 1);
                metrics::counter_add(&format!("blocked-by:{}", i.rule_id), 1);
                let body = format!(
                    "{} Forbidden: blocked by the WAF (request id {id}, rule {})\n",
                    i.status, i.rule_id
                );
                match i.location {
                    Some(location) => Action::respond_with(
                        i.status,
                        &[("location", &location), ("x-request-id", &id)],
                        b"",
                    ),
                    None => Action::respond_with(
                        i.status,
                        &[
                            ("content-type", "text/plain; charset=utf-8"),
                            ("x-request-id", &id),
                        ],
                        body.as_bytes(),
                    ),
                }
            }
            None => Action::Done,
        }
    }
}

export_module!(Waf);
