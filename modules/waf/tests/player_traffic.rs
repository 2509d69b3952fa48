//! Ordinary player traffic passes CRS at paranoia level 1: every request of
//! `testdata/player-traffic.jsonl` (manifests, segments, keys, subtitles, thumbnails,
//! licences and beacons, with the tokens and headers real players send) is evaluated in
//! blocking mode, and none may be blocked.

use edge_module_waf::config::Config;
use edge_module_waf::{evaluate, Request, RuleSet};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// One corpus line.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    player: String,
    method: String,
    uri: String,
    protocol: String,
    headers: Vec<(String, String)>,
    #[serde(default)]
    body: Option<String>,
}

/// The player families the corpus must cover: each needs a `player` containing one of its
/// needles.
const FAMILIES: &[(&str, &[&str])] = &[
    (
        "AVPlayer / AppleCoreMedia on iOS",
        &["AVPlayer iOS", "AVPlayer iPadOS"],
    ),
    ("AVPlayer / AppleCoreMedia on tvOS", &["AVPlayer tvOS"]),
    ("Safari native HLS on macOS", &["Safari 17.5 macOS"]),
    ("ExoPlayer / Media3 on Android", &["ExoPlayer"]),
    ("hls.js in Chrome", &["hls.js 1.5.13 / Chrome"]),
    (
        "hls.js in Firefox",
        &["hls.js 1.5.13 / Firefox", "hls.js 1.4.14 / Firefox"],
    ),
    ("hls.js in Edge", &["hls.js 1.5.13 / Edge"]),
    ("dash.js", &["dash.js"]),
    ("Shaka Player", &["Shaka Player"]),
    ("Roku", &["Roku"]),
    ("Samsung Tizen", &["Tizen"]),
    ("LG webOS", &["webOS"]),
    ("VLC", &["VLC"]),
    ("ffmpeg", &["ffmpeg"]),
    ("ffprobe", &["ffprobe"]),
    ("Chromecast", &["Chromecast"]),
    ("Fire TV", &["Fire TV"]),
];

fn waf_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn corpus() -> Vec<Line> {
    let path = waf_dir().join("testdata/player-traffic.jsonl");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(n, l)| {
            serde_json::from_str(l).unwrap_or_else(|e| panic!("{}:{}: {e}", path.display(), n + 1))
        })
        .collect()
}

/// CRS as a route loads it: `crs-setup.conf.example` as the setup, every file of `rules/`,
/// blocking mode, paranoia level 1.
fn crs_pl1() -> RuleSet {
    let crs = waf_dir().join("crs");
    let setup = std::fs::read_to_string(crs.join("crs-setup.conf.example")).unwrap();
    let mut rules = BTreeMap::new();
    for entry in std::fs::read_dir(crs.join("rules")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.ends_with(".conf") || name.ends_with(".data") {
            rules.insert(name, std::fs::read_to_string(&path).unwrap());
        }
    }
    let json = serde_json::json!({
        "setup": setup,
        "rules": rules,
        "mode": "blocking",
        "paranoia": 1,
    });
    Config::parse(&json.to_string())
        .unwrap()
        .compile()
        .unwrap_or_else(|e| {
            panic!(
                "{}",
                e.errors
                    .iter()
                    .map(|p| p.to_string())
                    .collect::<Vec<_>>()
                    .join("\n")
            )
        })
}

/// The request as the node hands it to the WAF (`export.rs`): HTTP/2 and HTTP/3 carry the
/// host in `:authority`, and the node gives it as `host`.
fn request(line: &Line, n: usize) -> Request {
    let mut headers: Vec<(String, Vec<u8>)> = Vec::new();
    let mut authority = None;
    for (name, value) in &line.headers {
        if name == ":authority" {
            authority = Some(value.clone());
        } else {
            headers.push((name.clone(), value.clone().into_bytes()));
        }
    }
    if let Some(a) = authority {
        if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
            headers.insert(0, ("host".into(), a.into_bytes()));
        }
    }
    Request {
        method: line.method.clone(),
        uri: line.uri.clone(),
        protocol: line.protocol.clone(),
        headers,
        body: line.body.clone().unwrap_or_default().into_bytes(),
        body_length: None,
        remote_addr: "198.51.100.23".into(),
        remote_port: 0,
        unique_id: format!("player-traffic-{n}"),
    }
}

#[test]
fn the_corpus_is_large_and_covers_every_player_family() {
    let lines = corpus();
    assert!(
        lines.len() >= 80,
        "{} requests, want at least 80",
        lines.len()
    );
    let missing: Vec<&str> = FAMILIES
        .iter()
        .filter(|(_, needles)| {
            !lines
                .iter()
                .any(|l| needles.iter().any(|n| l.player.contains(n)))
        })
        .map(|(family, _)| *family)
        .collect();
    assert!(
        missing.is_empty(),
        "no request from: {}",
        missing.join(", ")
    );
    for (n, l) in lines.iter().enumerate() {
        assert!(
            ["HTTP/1.1", "HTTP/2.0", "HTTP/3.0"].contains(&l.protocol.as_str()),
            "line {}: protocol {}",
            n + 1,
            l.protocol
        );
        let has_host = l
            .headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("host") || k == ":authority");
        assert!(has_host, "line {}: no Host or :authority", n + 1);
        if let Some(body) = &l.body {
            let length = l
                .headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
                .map(|(_, v)| v.as_str());
            assert_eq!(
                length,
                Some(body.len().to_string().as_str()),
                "line {}: Content-Length",
                n + 1
            );
        }
    }
}

#[test]
fn ordinary_player_traffic_is_not_blocked_at_paranoia_level_1() {
    let set = crs_pl1();
    let lines = corpus();
    let mut blocked = Vec::new();
    for (n, line) in lines.iter().enumerate() {
        let verdict = evaluate(&set, &request(line, n + 1));
        if let Some(i) = &verdict.interruption {
            let mut report = format!(
                "line {} [{}] {} {} {}: blocked by rule {} (status {}), anomaly score {}",
                n + 1,
                line.player,
                line.method,
                line.uri,
                line.protocol,
                i.rule_id,
                i.status,
                verdict.anomaly_score
            );
            for m in verdict.matches.iter().filter(|m| m.logged) {
                report.push_str(&format!(
                    "\n    {} {:?} [{}] data: {:?}",
                    m.id, m.msg, m.variable, m.data
                ));
            }
            if let Some(e) = &verdict.body_error {
                report.push_str(&format!("\n    body error: {e}"));
            }
            blocked.push(report);
        }
    }
    for b in &blocked {
        println!("{b}");
    }
    println!(
        "{} requests, {} blocked at paranoia level 1",
        lines.len(),
        blocked.len()
    );
    assert!(
        blocked.is_empty(),
        "{} of {} player requests blocked:\n{}",
        blocked.len(),
        lines.len(),
        blocked.join("\n")
    );
}
