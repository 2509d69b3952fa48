//! The rule engine natively, in a loop: CRS v4 at paranoia level 1 on a player's segment
//! request, for profiling the engine without the Wasm host
//! (`cargo run --release -p edge-module-waf --example eval_loop -- [SECONDS] [--no-prefilter]
//! [--only TEXT] [--remember]`, TEXT picking the requests whose name contains it; run it
//! under `perf record` to see where an evaluation spends its time). `--remember` evaluates
//! with a memo of clean values, as the module does, and adds a case where every request asks
//! for a new segment path, as 200 viewers, each with its own token and session id.

use edge_module_waf::config::Config;
use edge_module_waf::{evaluate, evaluate_remembering, CleanValues, Request};
use std::path::Path;
use std::time::{Duration, Instant};

fn crs_config() -> String {
    let crs = Path::new(env!("CARGO_MANIFEST_DIR")).join("crs");
    edge_module_waf::config::crs_route_config(&crs, 1)
        .expect("CRS files")
        .to_string()
}

/// The player's segment request of `bench/run.sh --only waf-h1-1k` (the waf bench's has one
/// argument, this one five), and a 4 KiB form POST.
fn requests() -> Vec<(&'static str, Request)> {
    let segment = segment_request();
    let mut bench = segment.clone();
    bench.uri = "/object/seg-00042.m4s?cc=max-age%3D3600&size=1024&ct=video%2Fmp4&exp=1767225600&token=3f2a9c4e7b1d8f60a5e2c9b47d13f8e6a0b5c2d9e4f7a1b3c6d8e0f2a4b6c8d0".into();
    let mut form = segment.clone();
    form.method = "POST".into();
    form.uri = "/api/comments".into();
    form.headers.push((
        "content-type".into(),
        b"application/x-www-form-urlencoded".to_vec(),
    ));
    let mut body = String::new();
    let mut i = 0;
    while body.len() < 4096 {
        body.push_str(&format!("field{i}=Some+ordinary+text+a+viewer+typed+{i}&"));
        i += 1;
    }
    body.truncate(4096);
    form.body = body.into_bytes();
    vec![
        ("segment GET, 1 argument", segment),
        ("segment GET, 5 arguments (bench/run.sh)", bench),
        ("POST, 4 KiB form", form),
    ]
}

fn segment_request() -> Request {
    let headers = [
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
    ];
    Request {
        method: "GET".into(),
        uri: "/vod/movie/720p/segment_00042.m4s?token=exp%3D1795685752~acl%3D%2Fvod%2F*~hmac%3D0a1b2c3d4e5f60718293a4b5c6d7e8f9".into(),
        protocol: "HTTP/1.1".into(),
        headers: headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
            .collect(),
        remote_addr: "192.0.2.1".into(),
        unique_id: "loop".into(),
        ..Request::default()
    }
}

fn main() {
    let seconds: f64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(5.0);
    let args: Vec<String> = std::env::args().collect();
    let full = args.iter().any(|a| a == "--no-prefilter");
    let remember = args.iter().any(|a| a == "--remember");
    let only = args
        .iter()
        .position(|a| a == "--only")
        .and_then(|i| args.get(i + 1))
        .cloned()
        .unwrap_or_default();
    let rules = Config::parse(&crs_config())
        .expect("config")
        .compile()
        .expect("CRS compiles");
    let (links, groups) = rules.prefiltered();
    println!("prefilter: {links} links in {groups} groups");
    let (remembering, reading, sets) = rules.remembering();
    println!("memo: {remembering} of the {reading} links that read variables, {sets} value sets");
    let (folded, start) = rules.folded();
    println!(
        "folded: {folded} rules with an outcome known at load, {start} TX variables set before any"
    );
    let rules = if full {
        rules.without_prefilters()
    } else {
        rules
    };
    let mut cases: Vec<(&str, Vec<Request>)> = requests()
        .into_iter()
        .map(|(name, r)| (name, vec![r]))
        .collect();
    if remember {
        cases.push((
            "segment GET, new path every time, 200 viewers",
            viewers(200, 20_000),
        ));
    }
    for (name, batch) in cases.into_iter().filter(|(n, _)| n.contains(&only)) {
        let mut memo =
            remember.then(|| CleanValues::new(&rules, edge_module_waf::memo::DEFAULT_ENTRIES));
        let mut run = |request: &Request| match memo.as_mut() {
            Some(memo) => evaluate_remembering(&rules, request, memo),
            None => evaluate(&rules, request),
        };
        for request in &batch {
            let verdict = run(request);
            assert!(
                verdict.interruption.is_none(),
                "{name}: {:?}",
                verdict.matches
            );
        }
        let until = Instant::now() + Duration::from_secs_f64(seconds);
        let started = Instant::now();
        let mut n = 0u64;
        let mut next = batch.iter().cycle();
        while Instant::now() < until {
            for _ in 0..10 {
                std::hint::black_box(run(next.next().expect("a request")));
            }
            n += 10;
        }
        let each = started.elapsed().as_secs_f64() * 1e6 / n as f64;
        println!("{name}: {n} evaluations, {each:.1} µs each");
    }
}

/// `count` segment requests, each for a new path, from `viewers` players that each send
/// their own token and session id on every request.
fn viewers(viewers: usize, count: usize) -> Vec<Request> {
    let template = segment_request();
    (0..count)
        .map(|i| {
            let viewer = i % viewers;
            let mut r = template.clone();
            r.uri = format!(
                "/vod/title-{}/720p/segment_{i:05}.m4s?token=exp%3D1795685752~acl%3D%2Fvod%2F*~hmac%3D{:032x}",
                i % 37,
                (viewer as u128).wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c834)
            );
            for (k, v) in r.headers.iter_mut() {
                if k == "x-playback-session-id" {
                    *v = format!("3F7A2C1E-9B4D-4E2A-8C6F-{viewer:012X}").into_bytes();
                }
            }
            r
        })
        .collect()
}
