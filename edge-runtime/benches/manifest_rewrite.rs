//! Manifest rewriting through the Wasm host: a pooled instance of the resident
//! `manifest-rewrite` standard module (as the node runs it), its request hook, response
//! hook and body transform over a
//! 1,000-segment live media playlist, a 20-variant multivariant playlist and a DASH MPD —
//! against the same exchange when there is nothing to do (the module finishes on the
//! request). Also the rewriter alone, natively, for reference.
//!
//! `cargo bench -p edge-runtime --bench manifest_rewrite`; prints p50/p99 per case.

use bytes::Bytes;
use edge_module_manifest_rewrite as manifest;
use edge_runtime::wasm::chain::{Chain, Outcome};
use edge_runtime::wasm::state::Services;
use edge_runtime::wasm::{ModuleHost, OnError, Source};
use http_body_util::BodyExt;
use std::fmt::Write;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Instant;

mod support;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const TOKEN: &str =
    "edge_token=k=k1~e=1795685752~p=/live/~sig=hz0FXHH0z7yXzyTnMqIiqutBQihWGDSYf8kkDyGnnMs";

fn host() -> ModuleHost {
    let host = support::module_host(&[]);
    host.load(
        "manifest-rewrite",
        edge_module_artifacts::standard::MANIFEST_REWRITE,
        Source::Standard,
        support::LIMITS,
    )
    .expect("load");
    host
}

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

fn master_playlist(variants: u32) -> String {
    let mut p = String::from(
        "#EXTM3U\n#EXT-X-VERSION:6\n#EXT-X-INDEPENDENT-SEGMENTS\n\
         #EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"aac\",NAME=\"English\",LANGUAGE=\"en\",DEFAULT=YES,URI=\"audio/en/index.m3u8\"\n",
    );
    for i in 0..variants {
        let height = [360, 480, 720, 1080, 2160][i as usize % 5];
        let codec = if i % 2 == 0 {
            "avc1.64001f"
        } else {
            "hvc1.2.4.L123.B0"
        };
        let _ = write!(
            p,
            "#EXT-X-STREAM-INF:BANDWIDTH={},AVERAGE-BANDWIDTH={},RESOLUTION={}x{height},CODECS=\"{codec},mp4a.40.2\",FRAME-RATE=29.970,AUDIO=\"aac\"\n\
             v{i}/index.m3u8\n",
            500_000 + i * 400_000,
            450_000 + i * 380_000,
            height * 16 / 9,
        );
    }
    p
}

fn mpd(representations: u32) -> String {
    let mut p = String::from(
        "<?xml version=\"1.0\"?>\n<MPD xmlns=\"urn:mpeg:dash:schema:mpd:2011\" type=\"dynamic\" minimumUpdatePeriod=\"PT2S\">\n\
         <Period id=\"1\"><AdaptationSet mimeType=\"video/mp4\">\n\
         <SegmentTemplate timescale=\"90000\" duration=\"180000\" media=\"$RepresentationID$/$Number$.m4s\" initialization=\"$RepresentationID$/init.mp4\"/>\n",
    );
    for i in 0..representations {
        let _ = writeln!(
            p,
            "<Representation id=\"v{i}\" bandwidth=\"{}\" height=\"{}\" codecs=\"avc1.64001f\"/>",
            500_000 + i * 400_000,
            [360, 480, 720, 1080][i as usize % 4]
        );
    }
    p.push_str("</AdaptationSet></Period></MPD>\n");
    p
}

struct Case {
    name: &'static str,
    config: &'static str,
    path: &'static str,
    content_type: &'static str,
    body: Bytes,
    /// Whether the output must differ from the input.
    rewritten: bool,
}

fn cases() -> Vec<Case> {
    let token = r#"{"append_query":"edge_token=k=k1~e=1795685752~p=/live/~sig=hz0FXHH0z7yXzyTnMqIiqutBQihWGDSYf8kkDyGnnMs"}"#;
    let media = Bytes::from(media_playlist(1_000));
    let master = Bytes::from(master_playlist(20));
    vec![
        Case {
            name: "baseline: nothing to do (module finishes on the request)",
            config: "{}",
            path: "/live/ch1/720p/index.m3u8",
            content_type: "application/vnd.apple.mpegurl",
            body: media.clone(),
            rewritten: false,
        },
        Case {
            name: "1,000-segment media playlist: token on every URI",
            config: token,
            path: "/live/ch1/720p/index.m3u8",
            content_type: "application/vnd.apple.mpegurl",
            body: media.clone(),
            rewritten: true,
        },
        Case {
            name: "1,000-segment media playlist: token + 60 s live window",
            config: r#"{"append_query":"edge_token=k=k1~e=1795685752~p=/live/~sig=hz0FXHH0z7yXzyTnMqIiqutBQihWGDSYf8kkDyGnnMs","live_window_s":60}"#,
            path: "/live/ch1/720p/index.m3u8",
            content_type: "application/vnd.apple.mpegurl",
            body: media,
            rewritten: true,
        },
        Case {
            name: "20-variant multivariant playlist: token",
            config: token,
            path: "/live/ch1/master.m3u8",
            content_type: "application/vnd.apple.mpegurl",
            body: master.clone(),
            rewritten: true,
        },
        Case {
            name: "20-variant multivariant playlist: token + filter + steering",
            config: r#"{"append_query":"edge_token=k=k1~e=1795685752~p=/live/~sig=hz0FXHH0z7yXzyTnMqIiqutBQihWGDSYf8kkDyGnnMs","max_height":1080,"deny_codecs":["hvc1"],"steering":{"server_uri":"/steer","pathway":"A"}}"#,
            path: "/live/ch1/master.m3u8",
            content_type: "application/vnd.apple.mpegurl",
            body: master,
            rewritten: true,
        },
        Case {
            name: "DASH MPD, 20 representations: token + filter",
            config: r#"{"append_query":"edge_token=k=k1~e=1795685752~p=/live/~sig=hz0FXHH0z7yXzyTnMqIiqutBQihWGDSYf8kkDyGnnMs","max_height":720}"#,
            path: "/live/ch1/manifest.mpd",
            content_type: "application/dash+xml",
            body: Bytes::from(mpd(20)),
            rewritten: true,
        },
    ]
}

fn run_once(
    chain: &Chain,
    case: &Case,
    services: &Arc<Services>,
    rt: &tokio::runtime::Runtime,
) -> Bytes {
    let mut parts = http::Request::get(format!("https://cdn.example.com{}", case.path))
        .header(
            "user-agent",
            "AppleCoreMedia/1.0.0.21A329 (iPhone; U; CPU OS 17_0 like Mac OS X)",
        )
        .body(())
        .expect("request")
        .into_parts()
        .0;
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
        let resp = http::Response::builder()
            .header("content-type", case.content_type)
            .header("content-length", case.body.len())
            .body(origin::body::full(case.body.clone()))
            .expect("response");
        let (resp, _) = run.on_response(resp, false, services).await;
        resp.into_body().collect().await.expect("body").to_bytes()
    })
}

fn main() {
    let quick = !std::env::args().any(|a| a == "--bench");
    let (warm, runs) = if quick { (5, 20) } else { (500, 5_000) };
    let host = host();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
    let mut baseline = 0.0;
    for case in cases() {
        let slot = host.slot("manifest-rewrite").expect("slot");
        let chain = Chain::new(
            "bench",
            OnError::FailClosed,
            vec![(slot, Arc::<str>::from(case.config))],
        );
        let out = run_once(&chain, &case, &host.services, &rt);
        assert_eq!(out != case.body, case.rewritten, "{}", case.name);
        if case.rewritten {
            assert!(
                std::str::from_utf8(&out).unwrap().contains(TOKEN),
                "{}",
                case.name
            );
        }
        for _ in 0..warm {
            run_once(&chain, &case, &host.services, &rt);
        }
        let times = (0..runs)
            .map(|_| {
                let t = Instant::now();
                std::hint::black_box(run_once(&chain, &case, &host.services, &rt));
                t.elapsed()
            })
            .collect();
        let (p50, p99) = support::percentiles(times);
        if !case.rewritten {
            baseline = p50;
        }
        println!(
            "through the host | {} | {} bytes in, {} out | p50 {p50:.1} µs | p99 {p99:.1} µs | p50 over baseline {:+.1} µs",
            case.name,
            case.body.len(),
            out.len(),
            p50 - baseline
        );
    }

    // The same rewrites natively: what the Wasm boundary and instance add.
    for case in cases().into_iter().filter(|c| c.rewritten) {
        let config = manifest::parse_config(case.config).expect("config");
        let plan = config.plan(&manifest::Viewer {
            host: Some("cdn.example.com"),
            path: case.path,
            ..Default::default()
        });
        let kind =
            manifest::Kind::detect(Some(case.content_type), case.path, &case.body).expect("kind");
        let times = (0..runs)
            .map(|_| {
                let t = Instant::now();
                std::hint::black_box(
                    manifest::rewrite(kind, &case.body, &plan, 4 << 20).expect("rewrite"),
                );
                t.elapsed()
            })
            .collect();
        let (p50, p99) = support::percentiles(times);
        println!(
            "native           | {} | p50 {p50:.1} µs | p99 {p99:.1} µs",
            case.name
        );
    }
}
