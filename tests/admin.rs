//! End-to-end: the admin API of a real `edge` process — probes and credentials on every
//! endpoint, the node's identity in `Via`, logs and metrics, config reload under load
//! over h1/h2/h3 with no failed request, canary rollouts (automatic rollback of a failing
//! version, promotion, abort), and readiness while draining.

mod support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::clients::{self, Proto};
use support::{admin_request, edge_cli, keygen, read_log, Node, Origin};

const TOKEN: &str = "admin-test-token-9f8e7d6c5b4a";
const TEST_MODULE: &str = edge_module_artifacts::testing::TEST_MODULE;
const TEST_MODULE_V2: &str = edge_module_artifacts::testing::TEST_MODULE_V2;
const IDENTITY: &str = "region = \"eu-west\"\nnode_id = \"edge-test-1\"\n";

fn admin_addr(node: &Node) -> SocketAddr {
    node.proc.ready["admin_url"]
        .as_str()
        .unwrap()
        .trim_start_matches("http://")
        .parse()
        .unwrap()
}

fn admin_url(node: &Node) -> String {
    node.proc.ready["admin_url"].as_str().unwrap().to_owned()
}

async fn admin(node: &Node, method: &str, path: &str, body: &[u8]) -> (u16, String) {
    admin_request(admin_addr(node), Some(TOKEN), method, path, &[], body).await
}

fn admin_table() -> String {
    format!("[admin]\nlisten = \"127.0.0.1:0\"\ntoken = \"{TOKEN}\"\n")
}

/// Routes of the reload test: `/object` always, `/status` only after the reload.
fn routes(with_status_route: bool) -> String {
    let mut text = "[[routes]]\nprefix = \"/object\"\norigin = \"media\"\n".to_owned();
    if with_status_route {
        text.push_str("\n[[routes]]\nprefix = \"/status\"\norigin = \"media\"\n");
    }
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_answer_without_a_token_and_everything_else_needs_the_right_one() {
    let origin = Origin::start("o");
    let node = Node::start_with(
        &format!(
            "{}\n[origins.media]\nprimary = \"{}\"\n\n{}",
            admin_table(),
            origin.url,
            routes(false)
        ),
        IDENTITY,
    );
    let addr = admin_addr(&node);
    for (path, body) in [("/health", "ok"), ("/ready", "ready")] {
        let (status, text) = admin_request(addr, None, "GET", path, &[], b"").await;
        assert_eq!((status, text.trim()), (200, body), "{path}");
    }
    let (status, page) = admin_request(addr, None, "GET", "/status", &[], b"").await;
    assert_eq!(status, 200);
    assert!(
        page.contains("<html")
            || page.contains("<!doctype html")
            || page.contains("<!DOCTYPE html")
    );

    let protected = [
        ("GET", "/metrics"),
        ("GET", "/status.json"),
        ("GET", "/modules"),
        ("GET", "/origins"),
        ("POST", "/reload"),
        ("POST", "/purge"),
        ("PUT", "/modules/waf"),
        ("PUT", "/modules/waf/data"),
        ("POST", "/modules/waf/rollback"),
        ("PUT", "/modules/waf/canary?percent=10"),
        ("POST", "/modules/waf/canary/promote"),
        ("DELETE", "/modules/waf/canary"),
        ("GET", "/no-such-endpoint"),
    ];
    for (method, path) in protected {
        for token in [None, Some("wrong-token"), Some("")] {
            let (status, _) = admin_request(addr, token, method, path, &[], b"{}").await;
            assert_eq!(status, 401, "{method} {path} with {token:?}");
        }
        // The right token with one byte more is still wrong (no prefix match).
        let longer = format!("{TOKEN}x");
        let (status, _) = admin_request(addr, Some(&longer), method, path, &[], b"").await;
        assert_eq!(status, 401, "{method} {path} with a longer token");
    }

    // Traffic over the three protocols, then the node's identity everywhere.
    for proto in clients::ALL {
        let a = clients::get(proto, &node.ca, &node.url("/object/x?size=10"), &[]).await;
        assert_eq!(a.status, 200, "{proto:?}");
    }
    let a = clients::get(Proto::H2, &node.ca, &node.url("/nothing-here"), &[]).await;
    assert_eq!(a.status, 404);
    let (status, json) = admin(&node, "GET", "/status.json", b"").await;
    assert_eq!(status, 200, "{json}");
    let json: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(json["node"]["region"], "eu-west");
    assert_eq!(json["node"]["node_id"], "edge-test-1");
    assert!(json["totals"]["requests"].as_u64().unwrap() >= 4, "{json}");

    let (status, metrics) = admin(&node, "GET", "/metrics", b"").await;
    assert_eq!(status, 200);
    for expected in [
        "edge_node_info{region=\"eu-west\",node_id=\"edge-test-1\"",
        "edge_requests_total{protocol=\"http/1.1\",route=\"*/object\",status=\"200\"}",
        "edge_requests_total{protocol=\"h2\",route=\"*/object\",status=\"200\"}",
        "edge_requests_total{protocol=\"h3\",route=\"*/object\",status=\"200\"}",
        "edge_requests_total{protocol=\"h2\",route=\"-\",status=\"404\"} 1",
        "edge_request_duration_seconds_bucket{le=",
        "edge_origin_first_byte_seconds_count{route=\"*/object\"}",
        "edge_connections_open{protocol=\"h3\"}",
        "edge_connections_accepted_total",
        "edge_cache_hits_total",
    ] {
        assert!(metrics.contains(expected), "no `{expected}` in:\n{metrics}");
    }

    // The admin token never reaches the log, even from the requests that carried it.
    let text = std::fs::read_to_string(&node.log).unwrap();
    assert!(!text.contains(TOKEN), "the admin token is in the log");
    // Every log line carries the identity.
    let lines = read_log(&node.log);
    assert!(!lines.is_empty());
    for line in &lines {
        assert_eq!(line["node_id"], "edge-test-1", "{line}");
        assert_eq!(line["region"], "eu-west", "{line}");
    }

    // The CLI: health needs no token; the rest take --token or EDGE_ADMIN_TOKEN.
    edge_cli(&["admin", "health", "--admin", &admin_url(&node)], &[]);
    let (out, _) = edge_cli(
        &["admin", "status", "--admin", &admin_url(&node)],
        &[("EDGE_ADMIN_TOKEN", TOKEN)],
    );
    let status: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(status["node"]["node_id"], "edge-test-1");
    let (out, _) = edge_cli(
        &[
            "admin",
            "purge",
            "--admin",
            &admin_url(&node),
            "--token",
            TOKEN,
            "--prefix",
            &format!("https://localhost:{}/object/", node.https.port()),
        ],
        &[],
    );
    assert!(out.contains("\"purged\""), "{out}");
    let denied = std::process::Command::new(support::edge_bin())
        .args([
            "admin",
            "status",
            "--admin",
            &admin_url(&node),
            "--token",
            "nope",
        ])
        .output()
        .unwrap();
    assert!(!denied.status.success());
    assert!(String::from_utf8_lossy(&denied.stderr).contains("401"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn via_names_the_node_and_its_region() {
    let origin = Origin::start("o");
    let node = Node::start_full(
        &format!(
            "{}\n[origins.media]\nprimary = \"{}\"\n\n[[routes]]\nprefix = \"/\"\norigin = \"media\"\n[routes.cache]\nenabled = false\n",
            admin_table(),
            origin.url
        ),
        IDENTITY,
        // The environment names the pod: it wins over the config's node_id.
        &[("EDGE_NODE_ID", "pod-7")],
    );
    for proto in clients::ALL {
        let a = clients::get(proto, &node.ca, &node.url("/echo"), &[]).await;
        assert_eq!(a.status, 200);
        let echo: serde_json::Value = serde_json::from_slice(&a.body).unwrap();
        let via = echo["headers"]["via"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        assert!(via.ends_with("edge (eu-west pod-7)"), "{proto:?}: {echo}");
    }
    let (_, json) = admin(&node, "GET", "/status.json", b"").await;
    assert!(json.contains("\"node_id\":\"pod-7\""), "{json}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_under_load_over_three_protocols_fails_no_request() {
    let origin = Origin::start("o");
    let base = format!(
        "{}\n[origins.media]\nprimary = \"{}\"\n\n",
        admin_table(),
        origin.url
    );
    let node = Node::start_with(&format!("{base}{}", routes(false)), IDENTITY);
    let config_path = node.dir.path().join("edge.toml");
    let original = std::fs::read_to_string(&config_path).unwrap();
    let before = clients::get(Proto::H2, &node.ca, &node.url("/status/204"), &[]).await;
    assert_eq!(before.status, 404, "no /status route before the reload");

    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(AtomicUsize::new(0));
    let served = Arc::new(AtomicUsize::new(0));
    let mut load = Vec::new();
    for proto in clients::ALL {
        let (stop, failures, served) = (stop.clone(), failures.clone(), served.clone());
        let (ca, url, addr) = (node.ca.clone(), node.url("/object/r?size=2048"), node.https);
        load.push(tokio::spawn(async move {
            // h3 keeps one connection across the reloads; h1 and h2 connect per request.
            let mut h3 = match proto {
                Proto::H3 => Some(clients::H3Client::connect(addr, &ca).await),
                _ => None,
            };
            let deadline = Instant::now() + Duration::from_secs(90);
            while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                let a = match &mut h3 {
                    Some(c) => c.get(&url, &[]).await,
                    None => clients::get(proto, &ca, &url, &[]).await,
                };
                if a.status != 200 || a.body.len() != 2048 {
                    failures.fetch_add(1, Ordering::Relaxed);
                }
                served.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    let wait_served = |n: usize| {
        let served = served.clone();
        async move {
            let deadline = Instant::now() + Duration::from_secs(30);
            while served.load(Ordering::Relaxed) < n && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    wait_served(30).await;

    // 1. Through the admin API (the CLI): a new route appears.
    std::fs::write(
        &config_path,
        original.replace(&routes(false), &routes(true)),
    )
    .unwrap();
    let (out, _) = edge_cli(
        &[
            "admin",
            "reload",
            "--admin",
            &admin_url(&node),
            "--token",
            TOKEN,
        ],
        &[],
    );
    let reloaded: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(reloaded["routes"], 2, "{out}");
    let after = clients::get(Proto::H3, &node.ca, &node.url("/status/204"), &[]).await;
    assert_eq!(after.status, 204, "the new route serves after the reload");
    let seen = served.load(Ordering::Relaxed);
    wait_served(seen + 30).await;

    // 2. A broken file: refused with its file, line and key; the running config serves.
    let reload_with = |extra: &str| {
        let text = format!(
            "{}\n{extra}",
            original.replace(&routes(false), &routes(true))
        );
        std::fs::write(&config_path, text).unwrap();
        admin(&node, "POST", "/reload", b"")
    };
    let (status, body) = reload_with("[[routes]]\nprefix = \"/x\"\norigin = \"nowhere\"\n").await;
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("edge.toml"), "{body}");
    assert!(body.contains("origin"), "{body}");
    let still = clients::get(Proto::H1, &node.ca, &node.url("/status/204"), &[]).await;
    assert_eq!(still.status, 204);

    // 3. A change only a restart applies: refused by name.
    let (status, body) = reload_with("[cache]\nshards = 8\n").await;
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("cache") && body.contains("restart"), "{body}");

    // 4. SIGHUP: back to the first config; the route goes away.
    std::fs::write(&config_path, &original).unwrap();
    node.proc.signal("HUP");
    let deadline = Instant::now() + support::WAIT;
    loop {
        let a = clients::get(Proto::H2, &node.ca, &node.url("/status/204"), &[]).await;
        if a.status == 404 {
            break;
        }
        assert!(Instant::now() < deadline, "SIGHUP reload did not apply");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let seen = served.load(Ordering::Relaxed);
    wait_served(seen + 30).await;
    stop.store(true, Ordering::Relaxed);
    for task in load {
        task.await.unwrap();
    }
    assert_eq!(
        failures.load(Ordering::Relaxed),
        0,
        "requests failed during reloads"
    );
    assert!(served.load(Ordering::Relaxed) >= 120);
    let (_, metrics) = admin(&node, "GET", "/metrics", b"").await;
    assert!(metrics.contains("edge_config_reloads_total 2"), "{metrics}");
    assert!(
        metrics.contains("edge_config_reload_failures_total 2"),
        "{metrics}"
    );
}

/// A node with the test module as `tagger` on `/object`, deployable by `public`'s key.
fn tagger_node(origin: &Origin, public: &str, module_config: &str) -> Node {
    Node::start_with(
        &format!(
            "{}\n[origins.media]\nprimary = \"{}\"\n\n[wasm]\ntrusted_keys = [\"{public}\"]\n\n\
             [modules.tagger]\npath = \"{TEST_MODULE}\"\nbudget_ms = 1000\n\n\
             [[routes]]\nprefix = \"/object\"\norigin = \"media\"\non_error = \"fail-open\"\n\
             [routes.cache]\nenabled = false\n\
             [[routes.modules]]\nmodule = \"tagger\"\nconfig = {module_config}\n",
            admin_table(),
            origin.url
        ),
        IDENTITY,
    )
}

/// `edge module VERB --admin … --token … --name tagger EXTRA…`: its stdout.
fn tagger_cli(node: &Node, verb: &str, extra: &[&str]) -> String {
    let url = admin_url(node);
    let mut args = vec![
        "module", verb, "--admin", &url, "--token", TOKEN, "--name", "tagger",
    ];
    args.extend_from_slice(extra);
    edge_cli(&args, &[]).0
}

fn version_of(a: &clients::Answer) -> String {
    a.headers
        .get("x-module-version")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default()
}

async fn modules(node: &Node) -> serde_json::Value {
    let (status, body) = admin(node, "GET", "/modules", b"").await;
    assert_eq!(status, 200, "{body}");
    let list: serde_json::Value = serde_json::from_str(&body).unwrap();
    list.as_array()
        .unwrap()
        .iter()
        .find(|m| m["module"] == "tagger")
        .cloned()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_canary_is_rolled_back_by_the_node() {
    let origin = Origin::start("o");
    let keys = tempfile::tempdir().unwrap();
    let (key, public) = keygen(keys.path(), "team.pem");
    // Version 2 of the test module traps on every request under this config.
    let node = tagger_node(&origin, &public, "{ mode = \"tag\", v2_mode = \"trap\" }");
    let v2 = keys.path().join("tagger-v2.wasm");
    std::fs::copy(TEST_MODULE_V2, &v2).unwrap();
    let v2 = v2.to_str().unwrap().to_owned();
    edge_cli(&["module", "sign", "--key", &key, &v2], &[]);

    // A bad policy is refused before anything runs.
    let (status, body) = admin(&node, "PUT", "/modules/tagger/canary?percent=0", b"").await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("percent"), "{body}");

    let out = tagger_cli(
        &node,
        "canary",
        &[
            "--percent",
            "50",
            "--window-s",
            "10",
            "--max-error-ratio",
            "0.2",
            "--min-requests",
            "10",
            &v2,
        ],
    );
    let started: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(started["state"], "running", "{out}");
    assert_eq!(modules(&node).await["canary"]["policy"]["percent"], 50);

    // Viewers keep getting answers (the route fails open) while the node notices.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut sent = 0;
    loop {
        let a = clients::get(Proto::H1, &node.ca, &node.url("/object/c?size=10"), &[]).await;
        assert_eq!(a.status, 200);
        sent += 1;
        let m = modules(&node).await;
        if m["canary"].is_null() {
            assert_eq!(m["last_canary"]["state"], "rolled-back", "{m}");
            assert!(
                m["last_canary"]["reason"]
                    .as_str()
                    .unwrap()
                    .contains("error ratio"),
                "{m}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no rollback after {sent} requests: {m}"
        );
    }
    let log = std::fs::read_to_string(&node.log).unwrap();
    assert!(log.contains("canary rolled back"), "{log}");
    // Every request runs version 1 again.
    for _ in 0..20 {
        let a = clients::get(Proto::H3, &node.ca, &node.url("/object/c?size=10"), &[]).await;
        assert_eq!((a.status.as_u16(), version_of(&a)), (200, "1".into()));
    }
    let (_, metrics) = admin(&node, "GET", "/metrics", b"").await;
    assert!(
        metrics.contains("edge_module_failures_total{module=\"test-module\",kind=\"trap\"}"),
        "{metrics}"
    );
    assert!(metrics.contains("edge_module_duration_seconds_count{module=\"tagger\"}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_takes_its_share_and_is_promoted_or_aborted() {
    let origin = Origin::start("o");
    let keys = tempfile::tempdir().unwrap();
    let (key, public) = keygen(keys.path(), "team.pem");
    let node = tagger_node(&origin, &public, "{ mode = \"tag\" }");
    let sign = |path: &str, name: &str| {
        let copy = keys.path().join(name);
        std::fs::copy(path, &copy).unwrap();
        let copy = copy.to_str().unwrap().to_owned();
        edge_cli(&["module", "sign", "--key", &key, &copy], &[]);
        copy
    };
    let (v1, v2) = (
        sign(TEST_MODULE, "v1.wasm"),
        sign(TEST_MODULE_V2, "v2.wasm"),
    );
    let canary =
        |file: &str, percent: &str| tagger_cli(&node, "canary", &["--percent", percent, file]);
    canary(&v2, "25");
    // Picks are counted per request: exactly a quarter of each hundred.
    let mut twos = 0;
    for _ in 0..100 {
        let a = clients::get(Proto::H2, &node.ca, &node.url("/object/p?size=10"), &[]).await;
        assert_eq!(a.status, 200);
        if version_of(&a) == "2" {
            twos += 1;
        }
    }
    assert_eq!(twos, 25);
    let out = tagger_cli(&node, "promote", &[]);
    assert!(out.contains("2.0.0"), "{out}");
    let m = modules(&node).await;
    assert_eq!(m["current"]["version"], "2.0.0");
    assert_eq!(m["last_canary"]["state"], "promoted");
    for _ in 0..10 {
        let a = clients::get(Proto::H1, &node.ca, &node.url("/object/p?size=10"), &[]).await;
        assert_eq!(version_of(&a), "2");
    }
    // Back to version 1 for a tenth of requests, then aborted: all on 2 again.
    canary(&v1, "10");
    assert_eq!(modules(&node).await["canary"]["state"], "running");
    tagger_cli(&node, "abort-canary", &[]);
    let m = modules(&node).await;
    assert!(m["canary"].is_null());
    assert_eq!(m["last_canary"]["state"], "aborted");
    for _ in 0..20 {
        let a = clients::get(Proto::H3, &node.ca, &node.url("/object/p?size=10"), &[]).await;
        assert_eq!(version_of(&a), "2");
    }
    // Nothing to promote or abort now; an unknown module is named.
    let (status, body) = admin(&node, "POST", "/modules/tagger/canary/promote", b"").await;
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("no canary"), "{body}");
    let (status, body) = admin(&node, "DELETE", "/modules/nope/canary", b"").await;
    assert_eq!(status, 404, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_turns_503_while_the_node_drains() {
    let origin = Origin::start("o");
    let node = Node::start_with(
        &format!(
            "{}\n[origins.media]\nprimary = \"{}\"\n\n[[routes]]\nprefix = \"/\"\norigin = \"media\"\n",
            admin_table(),
            origin.url
        ),
        "drain_timeout_ms = 20000\n",
    );
    let addr = admin_addr(&node);
    // A slow request keeps the node draining for a while.
    let (ca, url) = (node.ca.clone(), node.url("/delay/3000/slow"));
    let slow = tokio::spawn(async move { clients::get(Proto::H2, &ca, &url, &[]).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    node.proc.signal("TERM");
    let deadline = Instant::now() + support::WAIT;
    loop {
        let (status, body) = admin_request(addr, None, "GET", "/ready", &[], b"").await;
        if status == 503 {
            assert_eq!(body.trim(), "draining");
            break;
        }
        assert_eq!(status, 200);
        assert!(Instant::now() < deadline, "readiness never turned 503");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Liveness stays up while draining: the pod is not restarted mid-drain.
    let (status, _) = admin_request(addr, None, "GET", "/health", &[], b"").await;
    assert_eq!(status, 200);
    let a = slow.await.unwrap();
    assert_eq!(a.status, 200, "the in-flight request finishes");
}
