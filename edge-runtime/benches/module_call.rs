//! The per-request cost of a module: a fresh instance, its request hook, and the store's
//! teardown (which is a third of the cost with wasmtime's default pooling settings, so it
//! is inside the measurement). Also the whole exchange (request and response hooks) and a
//! chain of four.
//!
//! `cargo bench -p edge-runtime --bench module_call`; prints p50/p99 per case after
//! criterion's own report, from calls of every case interleaved (so a noisy machine
//! weighs on each alike). `EDGE_BENCH_MODULE=path/to/component.wasm` measures another
//! component in place of the test module. One case runs the test module as built for
//! `wasm32-wasip2` (it imports WASI, so the host calls it on a fiber), for the ratio.

use criterion::{criterion_group, criterion_main, Criterion};
use edge_runtime::wasm::chain::{Chain, Outcome};
use edge_runtime::wasm::state::Services;
use edge_runtime::wasm::{ModuleHost, OnError, Source};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};

mod support;

// The node runs on mimalloc; measure with the same allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn host() -> ModuleHost {
    let host = support::module_host(&[]);
    // Any component can be measured in place of the test module (no-op mode).
    let path = std::env::var("EDGE_BENCH_MODULE")
        .unwrap_or_else(|_| edge_module_artifacts::testing::TEST_MODULE.to_owned());
    let bytes = std::fs::read(&path).expect("module file");
    host.load("noop", &bytes, Source::Standard, support::LIMITS)
        .expect("load");
    let wasip2 =
        std::fs::read(edge_module_artifacts::testing::TEST_MODULE_WASIP2).expect("module file");
    host.load("noop-wasip2", &wasip2, Source::Standard, support::LIMITS)
        .expect("load");
    host
}

fn chain(host: &ModuleHost, module: &str, n: usize) -> Chain {
    let slot = host.slot(module).expect("slot");
    let modules = (0..n)
        .map(|_| (slot.clone(), Arc::<str>::from("{}")))
        .collect();
    Chain::new("bench", OnError::FailClosed, modules)
}

/// A segment request as a player sends it.
fn request_parts() -> http::request::Parts {
    http::Request::get("https://cdn.example.com/vod/title/720p/segment_00042.ts?token=abc")
        .header(
            "user-agent",
            "AppleCoreMedia/1.0.0.21A329 (iPhone; U; CPU OS 17_0 like Mac OS X)",
        )
        .header("accept", "*/*")
        .header("accept-encoding", "identity")
        .header("accept-language", "en-GB,en;q=0.9")
        .header(
            "x-playback-session-id",
            "2F3C7E9A-8B1D-4C6E-9F0A-1B2C3D4E5F60",
        )
        .header("cookie", "session=abcdef0123456789")
        .header("referer", "https://player.example.com/")
        .header("range", "bytes=0-")
        .body(())
        .expect("request")
        .into_parts()
        .0
}

struct Case {
    name: &'static str,
    module: &'static str,
    modules: usize,
    response: bool,
}

const CASES: [Case; 4] = [
    Case {
        name: "one module: instantiate + on-request + teardown",
        module: "noop",
        modules: 1,
        response: false,
    },
    Case {
        name: "one module: instantiate + on-request + on-response + teardown",
        module: "noop",
        modules: 1,
        response: true,
    },
    Case {
        name: "four modules: the whole exchange",
        module: "noop",
        modules: 4,
        response: true,
    },
    Case {
        name:
            "one module built for wasm32-wasip2 (on a fiber): instantiate + on-request + teardown",
        module: "noop-wasip2",
        modules: 1,
        response: false,
    },
];

fn run_once(
    chain: &Chain,
    services: &Arc<Services>,
    runtime: &tokio::runtime::Runtime,
    response: bool,
) {
    let mut parts = request_parts();
    let client = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
    runtime.block_on(async {
        let (run, outcome) = chain
            .on_request(
                services,
                &mut parts,
                None,
                "cdn.example.com".into(),
                client,
                true,
            )
            .await;
        assert!(matches!(outcome, Outcome::Continue));
        if response {
            let resp = http::Response::new(origin::body::empty());
            let (resp, _) = run.on_response(resp, false, services).await;
            std::hint::black_box(resp);
        } else {
            drop(run);
        }
    })
}

fn bench(c: &mut Criterion) {
    let host = host();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
    let chains: Vec<Chain> = CASES
        .iter()
        .map(|case| chain(&host, case.module, case.modules))
        .collect();
    for (case, chain) in CASES.iter().zip(&chains) {
        c.bench_function(case.name, |b| {
            b.iter(|| run_once(chain, &host.services, &runtime, case.response))
        });
    }
    // Percentiles, which criterion does not report: each call timed alone, the cases
    // taking turns in rounds of 1,000 calls.
    let mut times: Vec<Vec<Duration>> = vec![Vec::with_capacity(50_000); CASES.len()];
    for round in 0..52 {
        for ((case, chain), times) in CASES.iter().zip(&chains).zip(&mut times) {
            for _ in 0..1_000 {
                let t = Instant::now();
                run_once(chain, &host.services, &runtime, case.response);
                // The first two rounds warm up.
                if round >= 2 {
                    times.push(t.elapsed());
                }
            }
        }
    }
    for (case, mut times) in CASES.iter().zip(times) {
        times.sort();
        let pct = |p: f64| times[((times.len() as f64 * p) as usize).min(times.len() - 1)];
        println!(
            "percentiles | {} | p50 {:.2} µs | p99 {:.2} µs | p99.9 {:.2} µs",
            case.name,
            pct(0.50).as_secs_f64() * 1e6,
            pct(0.99).as_secs_f64() * 1e6,
            pct(0.999).as_secs_f64() * 1e6,
        );
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = bench
}
criterion_main!(benches);
