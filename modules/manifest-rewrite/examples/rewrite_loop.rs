//! The rewriter natively, in a loop: a 1,000-segment live media playlist with a token on
//! every URI (the `manifest_rewrite` bench's main case), for profiling without the Wasm host
//! (`cargo run --release -p edge-module-manifest-rewrite --example rewrite_loop -- [SECONDS]`;
//! run it under `perf record`).

use edge_module_manifest_rewrite as manifest;
use std::fmt::Write;
use std::time::{Duration, Instant};

fn media_playlist(segments: u64) -> String {
    let mut p = String::from(
        "#EXTM3U\n#EXT-X-VERSION:6\n#EXT-X-TARGETDURATION:6\n#EXT-X-MEDIA-SEQUENCE:120000\n\
         #EXT-X-PROGRAM-DATE-TIME:2026-11-26T09:00:00.000Z\n",
    );
    for i in 0..segments {
        let _ = write!(p, "#EXTINF:6.006,\nsegment_{:08}.ts\n", 120_000 + i);
    }
    p
}

fn main() {
    let seconds: f64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(5.0);
    let config = manifest::parse_config(
        r#"{"append_query":"edge_token=k=k1~e=1795685752~p=/live/~sig=hz0FXHH0z7yXzyTnMqIiqutBQihWGDSYf8kkDyGnnMs"}"#,
    )
    .expect("config");
    let path = "/live/ch1/720p/index.m3u8";
    let plan = config.plan(&manifest::Viewer {
        host: Some("cdn.example.com"),
        path,
        ..Default::default()
    });
    let body = media_playlist(1_000);
    let kind = manifest::Kind::detect(Some("application/vnd.apple.mpegurl"), path, body.as_bytes())
        .expect("kind");
    let until = Instant::now() + Duration::from_secs_f64(seconds);
    let started = Instant::now();
    let mut n = 0u64;
    while Instant::now() < until {
        std::hint::black_box(
            manifest::rewrite(kind, body.as_bytes(), &plan, 4 << 20).expect("rewrite"),
        );
        n += 1;
    }
    let each = started.elapsed().as_secs_f64() * 1e6 / n as f64;
    println!("{n} rewrites, {each:.1} µs each");
}
