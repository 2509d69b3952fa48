//! The WAF with OWASP CRS v4 at paranoia level 1: the cost of one request through the
//! `waf` standard module in the Wasm host (a pooled resident instance, the request hook),
//! for a player's segment request (the same one again and again, and a new segment path
//! every time from 200 viewers with their own tokens and session ids), a 4 KiB form POST
//! and an attack; with the module's memo of clean values (the default) and without it
//! (`clean_values = 0`); and the same evaluations natively, for reference.
//!
//! `cargo bench -p edge-runtime --bench waf [-- --only TEXT] [--no-memo|--memo-only]
//! [--runs N]`; prints p50/p99 per case. `--only TEXT` keeps the cases whose name contains TEXT (to profile
//! one case under `perf`, with `EDGE_WASM_PROFILER=perfmap`).

use bytes::Bytes;
use edge_runtime::wasm::chain::{Chain, Outcome};
use edge_runtime::wasm::registry::ModuleLimits;
use edge_runtime::wasm::state::Services;
use edge_runtime::wasm::{ModuleHost, OnError, Source};
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

mod support;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// What the node gives the WAF when the config sets nothing (see config::standard_limits).
const LIMITS: ModuleLimits = ModuleLimits {
    budget: Duration::from_millis(50),
    memory_bytes: 256 << 20,
};

/// The route's config as the node builds it from `setup_file` and `rules_dir`.
fn crs_config() -> String {
    let crs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../modules/waf/crs");
    edge_module_waf::config::crs_route_config(&crs, 1)
        .expect("CRS files")
        .to_string()
}

struct Case {
    name: &'static str,
    method: &'static str,
    target: &'static str,
    headers: Vec<(&'static str, &'static str)>,
    body: Bytes,
    blocked: bool,
    /// A new segment path on every request, from one of 200 viewers (token and session id).
    new_path_each_time: bool,
}

/// Request `i` of a case: its target and headers.
fn nth(case: &Case, i: usize) -> (String, Vec<(&'static str, String)>) {
    let mut headers: Vec<(&str, String)> = case
        .headers
        .iter()
        .map(|(k, v)| (*k, v.to_string()))
        .collect();
    if !case.new_path_each_time {
        return (case.target.to_string(), headers);
    }
    let viewer = i % 200;
    for (k, v) in &mut headers {
        if *k == "x-playback-session-id" {
            *v = format!("3F7A2C1E-9B4D-4E2A-8C6F-{viewer:012X}");
        }
    }
    let target = format!(
        "/vod/title-{}/720p/segment_{i:06}.m4s?token=exp%3D1795685752~acl%3D%2Fvod%2F*~hmac%3D{:032x}",
        i % 37,
        (viewer as u128).wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c834)
    );
    (target, headers)
}

fn player_headers() -> Vec<(&'static str, &'static str)> {
    vec![
        ("host", "cdn.example.com"),
        (
            "user-agent",
            "AppleCoreMedia/1.0.0.21A329 (iPhone; U; CPU OS 17_0 like Mac OS X; en_us)",
        ),
        ("accept", "*/*"),
        ("accept-language", "en-US,en;q=0.9"),
        ("accept-encoding", "identity"),
        (
            "x-playback-session-id",
            "3F7A2C1E-9B4D-4E2A-8C6F-1D2E3F4A5B6C",
        ),
    ]
}

fn form_4k() -> Bytes {
    let mut body = String::new();
    let mut i = 0;
    while body.len() < 4096 {
        body.push_str(&format!("field{i}=Some+ordinary+text+a+viewer+typed+{i}&"));
        i += 1;
    }
    body.truncate(4096);
    Bytes::from(body)
}

fn cases() -> Vec<Case> {
    let mut form_headers = player_headers();
    form_headers.push(("content-type", "application/x-www-form-urlencoded"));
    vec![
        Case {
            name: "segment GET with a token, player headers",
            method: "GET",
            target: "/vod/movie/720p/segment_00042.m4s?token=exp%3D1795685752~acl%3D%2Fvod%2F*~hmac%3D0a1b2c3d4e5f60718293a4b5c6d7e8f9",
            headers: player_headers(),
            body: Bytes::new(),
            blocked: false,
            new_path_each_time: false,
        },
        Case {
            name: "segment GET, a new path every time, 200 viewers",
            method: "GET",
            target: "",
            headers: player_headers(),
            body: Bytes::new(),
            blocked: false,
            new_path_each_time: true,
        },
        Case {
            name: "POST with a 4 KiB form body",
            method: "POST",
            target: "/api/comments",
            headers: form_headers,
            body: form_4k(),
            blocked: false,
            new_path_each_time: false,
        },
        Case {
            name: "attack: SQL injection in the query (blocked)",
            method: "GET",
            target: "/vod/movie/720p/index.m3u8?id=1%27%20OR%20%271%27%3D%271",
            headers: player_headers(),
            body: Bytes::new(),
            blocked: true,
            new_path_each_time: false,
        },
    ]
}

/// `WAF_MODULE=path/to/waf.wasm` measures that build of the module instead of the
/// embedded one (to compare builds without relinking this benchmark).
fn host() -> ModuleHost {
    let host = support::module_host_with(&[], LIMITS);
    let file = std::env::var_os("WAF_MODULE").map(|path| std::fs::read(path).expect("WAF_MODULE"));
    let bytes = file
        .as_deref()
        .unwrap_or(edge_module_artifacts::standard::WAF);
    host.load("waf", bytes, Source::Standard, LIMITS)
        .expect("load");
    host
}

fn run_once(
    chain: &Chain,
    case: &Case,
    i: usize,
    services: &Arc<Services>,
    rt: &tokio::runtime::Runtime,
) -> bool {
    let (target, headers) = nth(case, i);
    let mut req = http::Request::builder()
        .method(case.method)
        .uri(format!("https://cdn.example.com{target}"));
    for (k, v) in &headers {
        req = req.header(*k, v);
    }
    let mut parts = req.body(()).expect("request").into_parts().0;
    let body = (!case.body.is_empty()).then(|| (case.body.clone(), false));
    let client = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
    rt.block_on(async {
        let (_run, outcome) = chain
            .on_request(
                services,
                &mut parts,
                body,
                "cdn.example.com".into(),
                client,
                true,
            )
            .await;
        matches!(outcome, Outcome::Respond(_))
    })
}

fn native_request(case: &Case, i: usize) -> edge_module_waf::Request {
    let (target, headers) = nth(case, i);
    edge_module_waf::Request {
        method: case.method.into(),
        uri: target,
        protocol: "HTTP/1.1".into(),
        headers: headers
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.into_bytes()))
            .collect(),
        body: case.body.to_vec(),
        body_length: None,
        remote_addr: "192.0.2.1".into(),
        remote_port: 0,
        unique_id: "bench".into(),
        verified_args: Vec::new(),
    }
}

/// The cases the command line keeps (`--only TEXT`).
fn chosen_cases() -> Vec<Case> {
    let only = support::option("--only").unwrap_or_default();
    cases()
        .into_iter()
        .filter(|c| c.name.contains(&only))
        .collect()
}

/// The memo settings the command line keeps: `--memo-only` or `--no-memo` pick one.
fn chosen_memo(remember: bool) -> bool {
    let has = |flag: &str| std::env::args().any(|a| a == flag);
    if remember {
        !has("--no-memo")
    } else {
        !has("--memo-only")
    }
}

fn main() {
    let quick = !std::env::args().any(|a| a == "--bench");
    let (warm, runs) = if quick { (5, 20) } else { (500, 5_000) };
    // `--runs N`: more runs, for a profile of one case.
    let runs = support::option("--runs")
        .and_then(|n| n.parse().ok())
        .unwrap_or(runs);
    let config = crs_config();

    let started = Instant::now();
    let rules = edge_module_waf::config::Config::parse(&config)
        .expect("config")
        .compile()
        .expect("CRS compiles");
    println!(
        "native: CRS v4 ({} rules) compiled in {:.0} ms",
        rules.rule_count(),
        started.elapsed().as_secs_f64() * 1e3
    );
    for remember in [true, false].into_iter().filter(|&r| chosen_memo(r)) {
        let label = if remember { "remembering" } else { "no memo" };
        let mut memo =
            edge_module_waf::CleanValues::new(&rules, edge_module_waf::memo::DEFAULT_ENTRIES);
        let mut evaluate = |request: &edge_module_waf::Request| {
            if remember {
                edge_module_waf::evaluate_remembering(&rules, request, &mut memo)
            } else {
                edge_module_waf::evaluate(&rules, request)
            }
        };
        for case in chosen_cases() {
            let requests: Vec<_> = (0..warm + runs).map(|i| native_request(&case, i)).collect();
            let verdict = evaluate(&requests[0]);
            assert_eq!(
                verdict.interruption.is_some(),
                case.blocked,
                "{}: {:?}",
                case.name,
                verdict.matches
            );
            for request in &requests[..warm] {
                evaluate(request);
            }
            let times = requests[warm..]
                .iter()
                .map(|request| {
                    let t = Instant::now();
                    std::hint::black_box(evaluate(request));
                    t.elapsed()
                })
                .collect();
            let (p50, p99) = support::percentiles(times);
            println!(
                "native, {label} | {} | p50 {p50:.1} µs | p99 {p99:.1} µs",
                case.name
            );
        }
    }

    let host = host();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
    let slot = host.slot("waf").expect("slot");
    let mut no_memo: serde_json::Value = serde_json::from_str(&config).expect("config JSON");
    no_memo["clean_values"] = 0.into();
    for (label, config) in [
        ("remembering", config.clone()),
        ("no memo", no_memo.to_string()),
    ]
    .into_iter()
    .filter(|(label, _)| chosen_memo(*label == "remembering"))
    {
        let chain = Chain::new(
            "bench",
            OnError::FailClosed,
            vec![(slot.clone(), Arc::<str>::from(config.as_str()))],
        );
        let started = Instant::now();
        // The first request starts a resident instance: `init` compiles CRS inside the module.
        run_once(&chain, &cases()[0], 0, &host.services, &rt);
        println!(
            "through the host, {label}: first request (instance start + CRS compiled in Wasm) {:.0} ms",
            started.elapsed().as_secs_f64() * 1e3
        );
        for case in chosen_cases() {
            assert_eq!(
                run_once(&chain, &case, 0, &host.services, &rt),
                case.blocked,
                "{}",
                case.name
            );
            for i in 0..warm {
                run_once(&chain, &case, i, &host.services, &rt);
            }
            let times = (warm..warm + runs)
                .map(|i| {
                    let t = Instant::now();
                    std::hint::black_box(run_once(&chain, &case, i, &host.services, &rt));
                    t.elapsed()
                })
                .collect();
            let (p50, p99) = support::percentiles(times);
            println!(
                "through the host, {label} | {} | p50 {p50:.1} µs | p99 {p99:.1} µs",
                case.name
            );
        }
    }
}
