//! The per-request cost of the token-auth and rate-limit standard modules through the
//! Wasm host: a fresh instance, the request hook (config parsed, token found and checked
//! with the host's crypto, or the limiter consulted), the response hook, and teardown —
//! against the same exchange with the no-op test module, so the difference is what the
//! module's work costs. Also the verifier alone, natively, for reference.
//!
//! `cargo bench -p edge-runtime --bench token_auth`; prints p50/p99 per case.

use edge_module_token_auth::{Config, Lazy, Request};
use edge_runtime::ratelimit::{PolicyConfig, RateLimits};
use edge_runtime::token::{self, Key, NativeCrypto, SignSpec, TokenFormat};
use edge_runtime::wasm::chain::{Chain, Outcome};
use edge_runtime::wasm::state::Services;
use edge_runtime::wasm::{ModuleHost, OnError, Source};
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

mod support;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const HMAC_KEY: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
const HOST: &str = "https://cdn.example.com";
const PATH: &str = "/vod/title/720p/segment_00042.ts";

fn testdata(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../modules/token-auth/testdata")
        .join(name)
}

fn host() -> ModuleHost {
    let host = support::module_host(&[PolicyConfig {
        name: "viewer".into(),
        period: Duration::from_nanos(1),
        burst: 1_000_000,
        max_keys: 100_000,
    }]);
    let limits = support::LIMITS;
    let std = edge_module_artifacts::standard::ALL;
    for (name, bytes) in std {
        host.load(name, bytes, Source::Standard, limits)
            .expect("load");
    }
    let noop = std::fs::read(edge_module_artifacts::testing::TEST_MODULE).expect("test module");
    host.load("noop", &noop, Source::Standard, limits)
        .expect("load");
    host
}

struct Case {
    name: &'static str,
    module: &'static str,
    config: String,
    /// Path and query of the request.
    target: String,
    headers: Vec<(&'static str, String)>,
}

fn far_future() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 365 * 24 * 3600
}

fn cases() -> Vec<Case> {
    let hmac = Key::parse(HMAC_KEY).unwrap();
    let expires = far_future();
    let native_url = token::sign(
        TokenFormat::Native,
        &hmac,
        &SignSpec {
            key_id: Some("k1".into()),
            url: Some(format!("{HOST}{PATH}")),
            prefix: Some("/vod/title/".into()),
            expires,
            ..Default::default()
        },
    )
    .unwrap();
    let akamai = token::sign(
        TokenFormat::Akamai,
        &hmac,
        &SignSpec {
            acl: Some("/vod/title/*".into()),
            expires,
            ..Default::default()
        },
    )
    .unwrap();
    let es256 = Key::parse(testdata("jwt-es256.pem").to_str().unwrap()).unwrap();
    let jwt = |alg: &str, kid: &str, key: &Key| {
        token::sign(
            TokenFormat::Jwt,
            key,
            &SignSpec {
                alg: Some(alg.into()),
                key_id: Some(kid.into()),
                sub: Some("viewer-42".into()),
                aud: Some("edge".into()),
                paths: vec!["/vod/*".into()],
                expires,
                ..Default::default()
            },
        )
        .unwrap()
    };
    let jwks: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(testdata("jwks.json")).unwrap()).unwrap();
    let jwks_one = |kid: &str| {
        let keys: Vec<&serde_json::Value> = jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|k| k["kid"] == kid)
            .collect();
        // As the node hands it over from `jwks_file`: JSON, not a string of it.
        serde_json::json!({ "keys": keys })
    };
    let hs_secret: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(testdata("jwt.json")).unwrap()).unwrap();
    let hs_key = Key::parse(
        hs_secret["hmac_secrets_hex"]["edge-hs256"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    let path_query = |url: &str| url.trim_start_matches(HOST).to_owned();
    let jwt_config = |kid: &str| {
        serde_json::json!({ "jwt": { "jwks": jwks_one(kid), "audience": "edge", "path_claim": "paths" } })
            .to_string()
    };
    vec![
        Case {
            name: "baseline: no-op test module",
            module: "noop",
            config: "{}".into(),
            target: PATH.into(),
            headers: vec![],
        },
        Case {
            name: "token-auth: native signed URL (HMAC-SHA256)",
            module: "token-auth",
            config: format!(r#"{{"native":{{"keys":{{"k1":"{HMAC_KEY}"}}}}}}"#),
            target: path_query(&native_url),
            headers: vec![],
        },
        Case {
            name: "token-auth: Akamai EdgeAuth (HMAC-SHA256)",
            module: "token-auth",
            config: format!(r#"{{"akamai":{{"keys":{{"k1":"{HMAC_KEY}"}}}}}}"#),
            target: format!("{PATH}?{akamai}"),
            headers: vec![],
        },
        Case {
            name: "token-auth: JWT HS256 (JWKS)",
            module: "token-auth",
            config: jwt_config("edge-hs256"),
            target: PATH.into(),
            headers: vec![(
                "authorization",
                format!("Bearer {}", jwt("HS256", "edge-hs256", &hs_key)),
            )],
        },
        Case {
            name: "token-auth: JWT ES256 (JWKS)",
            module: "token-auth",
            config: jwt_config("edge-es256"),
            target: PATH.into(),
            headers: vec![(
                "authorization",
                format!("Bearer {}", jwt("ES256", "edge-es256", &es256)),
            )],
        },
        Case {
            name: "rate-limit: by client IP, with RateLimit fields",
            module: "rate-limit",
            config: r#"{"headers":true,"rules":[{"policy":"viewer","key":["ip"]}]}"#.into(),
            target: PATH.into(),
            headers: vec![],
        },
    ]
}

fn request_parts(case: &Case) -> http::request::Parts {
    let mut req = http::Request::get(format!("{HOST}{}", case.target))
        .header(
            "user-agent",
            "AppleCoreMedia/1.0.0.21A329 (iPhone; U; CPU OS 17_0 like Mac OS X)",
        )
        .header("accept", "*/*")
        .header("accept-encoding", "identity")
        .header("cookie", "session=abcdef0123456789");
    for (name, value) in &case.headers {
        req = req.header(*name, value);
    }
    req.body(()).expect("request").into_parts().0
}

fn run_once(chain: &Chain, case: &Case, services: &Arc<Services>, rt: &tokio::runtime::Runtime) {
    let mut parts = request_parts(case);
    let client = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
    rt.block_on(async {
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
        assert!(
            matches!(outcome, Outcome::Continue),
            "{} refused",
            case.name
        );
        let resp = http::Response::new(origin::body::empty());
        let (resp, _) = run.on_response(resp, false, services).await;
        std::hint::black_box(resp);
    })
}

fn main() {
    // `cargo test --benches` runs this with `--bench` absent: a smoke run.
    let quick = !std::env::args().any(|a| a == "--bench");
    let (warm, runs) = if quick { (10, 50) } else { (2_000, 20_000) };
    let host = host();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
    let mut baseline = 0.0;
    for case in cases() {
        let slot = host.slot(case.module).expect("slot");
        let chain = Chain::new(
            "bench",
            OnError::FailClosed,
            vec![(slot, Arc::<str>::from(case.config.as_str()))],
        );
        for _ in 0..warm {
            run_once(&chain, &case, &host.services, &rt);
        }
        let times = (0..runs)
            .map(|_| {
                let t = Instant::now();
                run_once(&chain, &case, &host.services, &rt);
                t.elapsed()
            })
            .collect();
        let (p50, p99) = support::percentiles(times);
        if case.module == "noop" {
            baseline = p50;
        }
        println!(
            "through the host | {} | p50 {p50:.2} µs | p99 {p99:.2} µs | p50 over baseline {:+.2} µs",
            case.name,
            p50 - baseline
        );
    }

    // The verifier alone, natively (what the module's logic costs without Wasm).
    for case in cases().iter().filter(|c| c.module == "token-auth") {
        let config = Config::parse(&case.config).unwrap();
        let url = format!("{HOST}{}", case.target);
        let uri: http::Uri = url.parse().unwrap();
        let auth = case.headers.first().map(|(_, v)| v.clone());
        let header = |name: &str| (name == "authorization").then(|| auth.clone()).flatten();
        let req = Request {
            url: Lazy::known(Some(url.clone())),
            path: uri.path(),
            query: uri.query(),
            cookies: Lazy::known(None),
            client_ip: None,
            header: &header,
        };
        let now = far_future() - 3600;
        let times = (0..runs)
            .map(|_| {
                let t = Instant::now();
                let v = config.verify(&req, &NativeCrypto, now);
                assert!(v.is_ok(), "{}: {v:?}", case.name);
                t.elapsed()
            })
            .collect();
        let (p50, p99) = support::percentiles(times);
        println!(
            "native verifier | {} | p50 {p50:.2} µs | p99 {p99:.2} µs",
            case.name
        );
    }

    // Memory under a flood of distinct keys: the limiter's store is bounded, so a second
    // million new client addresses costs no more memory than the first.
    let limits = RateLimits::new(&[PolicyConfig {
        name: "flood".into(),
        period: Duration::from_secs(1),
        burst: 1,
        max_keys: 100_000,
    }]);
    let flood = if quick { 10_000 } else { 1_000_000 };
    let mut x: u32 = 0x9e37_79b9;
    let mut next_ip = || {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        std::net::Ipv4Addr::from(x).to_string()
    };
    let rss = || {
        std::fs::read_to_string("/proc/self/statm")
            .ok()
            .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
            .map_or(0, |pages| pages * 4096)
    };
    let start = rss();
    for round in 1..=2 {
        for _ in 0..flood {
            std::hint::black_box(limits.check("flood", &next_ip()).unwrap());
        }
        println!(
            "rate-limit memory | after {} distinct client IPs | keys held {} (bound 100000) | RSS +{:.1} MiB",
            round * flood,
            limits.keys("flood"),
            (rss().saturating_sub(start)) as f64 / (1 << 20) as f64
        );
    }
}
