//! End-to-end: Wasm modules on routes of a real `edge` process — hooks, chains, limits,
//! failure policies, the disk cache of compiled code, and signed hot deploys under load.

mod support;

use futures_util::future::join_all;
use std::net::SocketAddr;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::clients::{self, Answer, Proto, ALL};
use support::{edge_bin, edge_cli, keygen, Node, Origin};

const TOKEN: &str = "test-admin-token-0123456789";
const TEST_MODULE: &str = edge_module_artifacts::testing::TEST_MODULE;
const TEST_MODULE_V2: &str = edge_module_artifacts::testing::TEST_MODULE_V2;
/// Debug builds of modules are slow: they get a generous budget unless a test is about
/// the deadline itself.
const BUDGET: &str = "budget_ms = 1000";

/// A node whose routes are given by the test; the origin is `media`; the admin listener
/// is on; `extra` adds tables (modules, wasm, rate limits).
fn node(origin: &Origin, extra: &str, routes: &str) -> Node {
    Node::start(&format!(
        "[admin]\nlisten = \"127.0.0.1:0\"\ntoken = \"{TOKEN}\"\n\n\
         [origins.media]\nprimary = \"{}\"\n\n[modules.test]\npath = \"{TEST_MODULE}\"\n{BUDGET}\n{extra}\n{routes}",
        origin.url
    ))
}

/// A route on `prefix` through the test module in `mode` (no caching, so every request
/// reaches the hooks' effects at the origin).
fn route(prefix: &str, modules: &[&str], on_error: &str) -> String {
    let mut text = format!(
        "[[routes]]\nprefix = \"{prefix}\"\norigin = \"media\"\non_error = \"{on_error}\"\n\
         [routes.cache]\nenabled = false\n"
    );
    for m in modules {
        text.push_str(&format!(
            "[[routes.modules]]\nmodule = \"test\"\nconfig = {m}\n"
        ));
    }
    text
}

async fn get(node: &Node, proto: Proto, path: &str) -> Answer {
    clients::get(proto, &node.ca, &node.url(path), &[]).await
}

fn header<'a>(a: &'a Answer, name: &str) -> &'a str {
    a.headers
        .get(name)
        .map(|v| v.to_str().unwrap())
        .unwrap_or("")
}

fn admin_addr(node: &Node) -> SocketAddr {
    node.proc.ready["admin_url"]
        .as_str()
        .unwrap()
        .trim_start_matches("http://")
        .parse()
        .unwrap()
}

/// One admin request with the test's token: (status, body).
async fn admin(
    node: &Node,
    method: &str,
    path: &str,
    extra: &[(&str, &str)],
    body: &[u8],
) -> (u16, String) {
    support::admin_request(admin_addr(node), Some(TOKEN), method, path, extra, body).await
}

fn wait_for_event(
    node: &Node,
    message: &str,
    pred: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    node.wait_for_log(|l| l["message"] == message && pred(l))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_hooks_in_order_response_hooks_in_reverse_over_every_protocol() {
    let origin = Origin::start("o");
    let routes = route(
        "/echo",
        &[
            r#"{ mode = "tag", tag = "a" }"#,
            r#"{ mode = "tag", tag = "b" }"#,
        ],
        "fail-closed",
    ) + &route("/object/denied", &[r#"{ mode = "deny" }"#], "fail-closed");
    let node = node(&origin, "", &routes);
    for proto in ALL {
        let a = get(&node, proto, "/echo").await;
        assert_eq!(a.status, 200, "{proto:?}");
        let echo: serde_json::Value = serde_json::from_slice(&a.body).unwrap();
        // The origin saw both request hooks' changes, in route order...
        assert_eq!(echo["headers"]["x-chain"], "a,b", "{proto:?}");
        // ...and the response hooks ran in reverse.
        assert_eq!(header(&a, "x-chain-response"), "b,a", "{proto:?}");
        assert!(
            header(&a, "server-timing").contains("wasm;dur="),
            "{proto:?}"
        );
        // Context set by one module is read by the next; each module's response hook
        // reports what its request hook saw.
        let seen: Vec<&str> = a
            .headers
            .get_all("x-context-seen")
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect();
        assert_eq!(seen, ["b<a", "a<"], "{proto:?}");
        // The clock import is the wall clock.
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        // The URL as the viewer asked for it.
        assert_eq!(
            header(&a, "x-module-url"),
            "https://localhost/echo",
            "{proto:?}"
        );
        // A fresh instance per request: each module's instance has seen one request,
        // however many this route has served.
        let seen: Vec<&str> = a
            .headers
            .get_all("x-instance-requests")
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect();
        assert_eq!(seen, ["1", "1"], "{proto:?}");
        // The request as the hook sees it: method, protocol, route, client address.
        let protocol = match proto {
            Proto::H1 => "http1",
            Proto::H2 => "http2",
            Proto::H3 => "http3",
        };
        assert_eq!(
            header(&a, "x-module-request"),
            format!("GET {protocol} */echo 127.0.0.1"),
            "{proto:?}"
        );
        let module_now: i64 = header(&a, "x-module-clock").parse().unwrap();
        assert!((now - module_now).abs() < 60_000, "{module_now} vs {now}");

        let denied = get(&node, proto, "/object/denied").await;
        assert_eq!(denied.status, 403, "{proto:?}");
        assert_eq!(&denied.body[..], b"denied by test-module\n");
    }
    // A module's answer never reached the origin.
    let count = origin.direct("/counts?path=/object/denied").await;
    assert_eq!(&count[..], b"0\n");
    // The log import writes into the node's log with the module's name and version.
    let line = wait_for_event(&node, "tagged b after [a]", |_| true);
    assert_eq!(line["module"], "test-module");
    assert_eq!(line["version"], "1.0.0");
    // The metrics import and the host's own counters reach /metrics.
    let (_, metrics) = admin(&node, "GET", "/metrics", &[], b"").await;
    assert!(
        metrics.contains("edge_module_counter_total{module=\"test-module\",name=\"tagged\"} 6"),
        "{metrics}"
    );
    assert!(
        metrics
            .contains("edge_module_histogram_count{module=\"test-module\",name=\"chain_bytes\"} 6"),
        "{metrics}"
    );
    assert!(
        metrics.contains("edge_module_calls_total{module=\"test\"} 9"),
        "{metrics}"
    );
}

/// A module that answers `done` is finished with the request: the modules after it still
/// run, but its own response hook is never called.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_done_module_skips_its_response_hook() {
    let origin = Origin::start("o");
    let routes = route(
        "/echo",
        &[
            r#"{ mode = "tag", tag = "a" }"#,
            r#"{ mode = "done" }"#,
            r#"{ mode = "tag", tag = "b" }"#,
        ],
        "fail-closed",
    );
    let node = node(&origin, "", &routes);
    for proto in ALL {
        let a = get(&node, proto, "/echo").await;
        assert_eq!(a.status, 200, "{proto:?}");
        let echo: serde_json::Value = serde_json::from_slice(&a.body).unwrap();
        assert_eq!(echo["headers"]["x-chain"], "a,done,b", "{proto:?}");
        assert_eq!(header(&a, "x-chain-response"), "b,a", "{proto:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_transform_for_declared_types_only() {
    let origin = Origin::start("o");
    let routes = route("/object", &[r#"{ mode = "upper" }"#], "fail-closed");
    let node = node(&origin, "", &routes);
    for proto in ALL {
        let text = get(
            &node,
            proto,
            "/object/t?size=20&ct=text/plain;%20charset=utf-8",
        )
        .await;
        assert_eq!(text.status, 200);
        assert_eq!(&text.body[..], b"T:;T:;T:;T:;T:;T:;T:");
        assert_eq!(header(&text, "content-length"), "20");
        // Not a declared type: untouched.
        let binary = get(&node, proto, "/object/t?size=20").await;
        assert_eq!(&binary.body[..], b"t:;t:;t:;t:;t:;t:;t:");
        // Over the module's bound (64 KiB): passes unchanged, whole.
        let big = get(&node, proto, "/object/t?size=100000&ct=text/plain").await;
        assert_eq!(big.body.len(), 100_000);
        assert!(big.body.starts_with(b"t:;t:;"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traps_fail_closed_or_open_per_route_and_are_logged_with_the_module() {
    let origin = Origin::start("o");
    let routes = route("/object/closed", &[r#"{ mode = "trap" }"#], "fail-closed")
        + &route("/object/open", &[r#"{ mode = "trap" }"#], "fail-open")
        + &route(
            "/object/late",
            &[r#"{ mode = "trap-response" }"#],
            "fail-closed",
        )
        + &route(
            "/object/bad-closed",
            &[r#"{ mode = "bad-answer" }"#],
            "fail-closed",
        )
        + &route(
            "/object/bad-open",
            &[r#"{ mode = "bad-answer" }"#],
            "fail-open",
        )
        + &route("/echo", &[r#"{ mode = "tag-then-trap" }"#], "fail-open")
        + &route("/object/status", &[r#"{ mode = "status" }"#], "fail-closed");
    let node = node(&origin, "", &routes);
    for proto in ALL {
        let closed = get(&node, proto, "/object/closed").await;
        assert_eq!(closed.status, 500, "{proto:?}");
        assert!(std::str::from_utf8(&closed.body)
            .unwrap()
            .contains("module"));
        let open = get(&node, proto, "/object/open?size=10").await;
        assert_eq!(open.status, 200, "{proto:?}");
        assert_eq!(&open.body[..], b"open:;open");
        let late = get(&node, proto, "/object/late").await;
        assert_eq!(late.status, 500, "{proto:?}");
        // An answer with a field the node manages is refused like a trap.
        assert_eq!(get(&node, proto, "/object/bad-closed").await.status, 500);
        let open = get(&node, proto, "/object/bad-open?size=3").await;
        assert_eq!((open.status.as_u16(), &open.body[..]), (200, &b"bad"[..]));
        // Fail-open undoes what the failed module changed: the origin sees the request
        // as the viewer sent it (no header, the path not rewritten).
        let half = get(&node, proto, "/echo?half=1").await;
        assert_eq!(half.status, 200, "{proto:?}");
        let echo: serde_json::Value = serde_json::from_slice(&half.body).unwrap();
        assert!(
            echo["headers"].get("x-chain").is_none(),
            "{proto:?}: {echo}"
        );
        assert_eq!(echo["uri"], "/echo?half=1", "{proto:?}: {echo}");
        // A response hook sets the status.
        let status = get(&node, proto, "/object/status?size=4").await;
        assert_eq!(status.status, 203, "{proto:?}");
        assert_eq!(status.body.len(), 4, "{proto:?}");
    }
    let event = wait_for_event(&node, "module failed", |e| {
        e["hook"] == "on-request" && e["kind"] == "trap"
    });
    let f = &event;
    assert_eq!(f["module"], "test-module");
    assert_eq!(f["version"], "1.0.0");
    assert_eq!(f["kind"], "trap");
    assert!(
        f["detail"].as_str().unwrap().contains("trapped on purpose"),
        "{event}"
    );
    wait_for_event(&node, "module failed", |e| {
        e["hook"] == "on-response" && e["on_error"] == "fail-closed"
    });
    let bad = wait_for_event(&node, "module failed", |e| e["kind"] == "bad-response");
    assert!(
        bad["detail"].as_str().unwrap().contains("content-length"),
        "{bad}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endless_loop_stops_at_the_deadline_while_other_requests_are_served() {
    let origin = Origin::start("o");
    let extra = "[modules.slow]\npath = \"".to_owned() + TEST_MODULE + "\"\nbudget_ms = 50\n";
    let routes = "[[routes]]\nprefix = \"/object/loop\"\norigin = \"media\"\n\
                  [[routes.modules]]\nmodule = \"slow\"\nconfig = { mode = \"loop\" }\n"
        .to_owned()
        + &route("/object/ok", &[r#"{ mode = "noop" }"#], "fail-closed");
    let node = node(&origin, &extra, &routes);
    let started = Instant::now();
    let loops = (0..4).map(|_| get(&node, Proto::H2, "/object/loop"));
    let ordinary = (0..24).map(|i| get(&node, ALL[i % 3], "/object/ok?size=5"));
    let (loops, ordinary) = tokio::join!(join_all(loops), join_all(ordinary));
    for a in &loops {
        assert_eq!(a.status, 500);
    }
    for a in &ordinary {
        assert_eq!(a.status, 200);
        assert_eq!(&a.body[..], b"ok:;o");
    }
    // Four 50 ms budgets, not an endless wait (a generous bound: the machine is shared).
    assert!(started.elapsed() < Duration::from_secs(15));
    let event = wait_for_event(&node, "module failed", |_| true);
    assert_eq!(event["kind"], "deadline", "{event}");
    // Stopped by its CPU budget (a module that computes), not the wall-clock cap.
    let detail = event["detail"].as_str().unwrap();
    assert!(detail.contains("CPU budget of 50ms spent"), "{event}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_bomb_stops_at_the_limit() {
    let origin = Origin::start("o");
    let extra = "[modules.hungry]\npath = \"".to_owned()
        + TEST_MODULE
        + "\"\nmemory_mib = 8\nbudget_ms = 2000\n";
    let routes = "[[routes]]\nprefix = \"/object\"\norigin = \"media\"\n\
                  [[routes.modules]]\nmodule = \"hungry\"\nconfig = { mode = \"memory-bomb\" }\n";
    let node = node(&origin, &extra, routes);
    for proto in ALL {
        assert_eq!(get(&node, proto, "/object/x").await.status, 500);
    }
    let event = wait_for_event(&node, "module failed", |_| true);
    assert_eq!(event["kind"], "memory", "{event}");
    // The node is fine afterwards, and reports the failures.
    let (status, metrics) = admin(&node, "GET", "/metrics", &[], b"").await;
    assert_eq!(status, 200);
    assert!(
        metrics.contains("edge_module_failures_total{module=\"test-module\",kind=\"memory\"} 3"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_policy_answers_429_with_retry_after() {
    let origin = Origin::start("o");
    let extra = "[rate_limits.tight]\nrate = \"2/m\"\n";
    let routes = route(
        "/object",
        &[r#"{ mode = "rate-limit", policy = "tight" }"#],
        "fail-closed",
    );
    let node = node(&origin, extra, &routes);
    let statuses: Vec<u16> = {
        let mut v = Vec::new();
        for _ in 0..3 {
            v.push(get(&node, Proto::H1, "/object/r").await.status.as_u16());
        }
        v
    };
    assert_eq!(statuses, [200, 200, 429]);
    let limited = get(&node, Proto::H3, "/object/r").await;
    assert_eq!(limited.status, 429);
    let retry: u64 = header(&limited, "retry-after").parse().unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_crypto_from_a_module() {
    let origin = Origin::start("o");
    let node = node(
        &origin,
        "",
        &route("/sig", &[r#"{ mode = "hmac" }"#], "fail-closed"),
    );
    let a = get(&node, Proto::H1, "/sig/x").await;
    assert_eq!(
        header(&a, "x-verified"),
        "yes",
        "{} {:?}; log:\n{}",
        a.status,
        a.body,
        std::fs::read_to_string(&node.log).unwrap_or_default()
    );
    // HMAC-SHA256(key = "key", "/sig/x"), computed independently.
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"key");
    let expected: String = ring::hmac::sign(&key, b"/sig/x")
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(std::str::from_utf8(&a.body).unwrap(), expected);
    // SHA-256 of the path, and the constant-time compare (equal, then one bit off).
    let digest: String = ring::digest::digest(&ring::digest::SHA256, b"/sig/x")
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(header(&a, "x-sha256"), digest);
    assert_eq!(header(&a, "x-ct-eq"), "true,false");
}

/// Signs `bytes` with `key` (`edge module sign`, in `dir`) and deploys them as `name`
/// through the admin API: (status, body).
async fn signed_deploy(
    node: &Node,
    dir: &std::path::Path,
    key: &str,
    name: &str,
    bytes: &[u8],
) -> (u16, String) {
    let file = dir.join(format!("{name}.wasm"));
    std::fs::write(&file, bytes).unwrap();
    let (sig, _) = edge_cli(
        &["module", "sign", "--key", key, file.to_str().unwrap()],
        &[],
    );
    let path = format!("/modules/{name}");
    admin(node, "PUT", &path, &[("edge-signature", sig.trim())], bytes).await
}

/// A node with the test module as `tagger` (tag mode) on `/object`, deployable by the
/// holder of `public`'s private key.
fn tagger_node(origin: &Origin, public: &str, wasm_extra: &str) -> Node {
    let extra = format!(
        "[wasm]\ntrusted_keys = [\"{public}\"]\n{wasm_extra}\n[modules.tagger]\npath = \"{TEST_MODULE}\"\n{BUDGET}\n"
    );
    let routes =
        "[[routes]]\nprefix = \"/object\"\norigin = \"media\"\n[routes.cache]\nenabled = false\n\
                  [[routes.modules]]\nmodule = \"tagger\"\nconfig = { mode = \"tag\" }\n";
    node(origin, &extra, routes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hot_swap_under_load_over_h1_and_h3_fails_no_request() {
    let origin = Origin::start("o");
    let keys = tempfile::tempdir().unwrap();
    let (key, public) = keygen(keys.path(), "team.pem");
    let node = tagger_node(&origin, &public, "");
    let admin_url = node.proc.ready["admin_url"].as_str().unwrap().to_owned();

    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(AtomicUsize::new(0));
    let served = Arc::new(AtomicUsize::new(0));
    // The version each client saw last: [h1, h3].
    let last: Arc<[std::sync::Mutex<String>; 2]> = Arc::default();
    let mut load = Vec::new();
    for (slot, proto) in [Proto::H1, Proto::H3].into_iter().enumerate() {
        let (stop, failures, served, last) =
            (stop.clone(), failures.clone(), served.clone(), last.clone());
        let (ca, url, addr) = (
            node.ca.clone(),
            node.url("/object/live?size=64"),
            node.https,
        );
        load.push(tokio::spawn(async move {
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
                let version = header(&a, "x-module-version").to_owned();
                if a.status != 200 || a.body.len() != 64 || version.is_empty() {
                    failures.fetch_add(1, Ordering::Relaxed);
                }
                served.fetch_add(1, Ordering::Relaxed);
                *last[slot].lock().unwrap() = version;
            }
        }));
    }
    let wait_until_both_see = |version: &'static str| {
        let last = last.clone();
        async move {
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                let now: Vec<String> = last.iter().map(|m| m.lock().unwrap().clone()).collect();
                if now.iter().all(|v| v == version) {
                    return;
                }
                assert!(
                    Instant::now() < deadline,
                    "never saw version {version} on both: {now:?}"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    wait_until_both_see("1").await;

    // The security team's workflow: sign, deploy; the node swaps while traffic flows.
    let v2 = keys.path().join("tagger-v2.wasm");
    std::fs::copy(TEST_MODULE_V2, &v2).unwrap();
    let v2 = v2.to_str().unwrap().to_owned();
    edge_cli(&["module", "sign", "--key", &key, &v2], &[]);
    let env = [("EDGE_ADMIN_TOKEN", TOKEN)];
    let (deployed, _) = tokio::task::spawn_blocking({
        let (admin_url, v2) = (admin_url.clone(), v2.clone());
        move || {
            edge_cli(
                &[
                    "module", "deploy", "--admin", &admin_url, "--name", "tagger", &v2,
                ],
                &env,
            )
        }
    })
    .await
    .unwrap();
    let deployed: serde_json::Value = serde_json::from_str(&deployed).unwrap();
    assert_eq!(deployed["version"], "2.0.0");
    wait_until_both_see("2").await;

    // And back.
    tokio::task::spawn_blocking({
        let admin_url = admin_url.clone();
        move || {
            edge_cli(
                &[
                    "module", "rollback", "--admin", &admin_url, "--name", "tagger",
                ],
                &env,
            )
        }
    })
    .await
    .unwrap();
    wait_until_both_see("1").await;
    stop.store(true, Ordering::Relaxed);
    for task in load {
        task.await.unwrap();
    }
    assert_eq!(failures.load(Ordering::Relaxed), 0);
    assert!(served.load(Ordering::Relaxed) > 10);

    let (list, _) = tokio::task::spawn_blocking(move || {
        edge_cli(&["module", "list", "--admin", &admin_url], &env)
    })
    .await
    .unwrap();
    let list: serde_json::Value = serde_json::from_str(&list).unwrap();
    let tagger = list
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["module"] == "tagger")
        .unwrap();
    assert_eq!(tagger["current"]["version"], "1.0.0");
    assert_eq!(tagger["versions"].as_array().unwrap().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_deploys_are_rejected_with_their_reason_and_the_old_version_keeps_serving() {
    let origin = Origin::start("o");
    let keys = tempfile::tempdir().unwrap();
    let (key, public) = keygen(keys.path(), "team.pem");
    let (intruder, _) = keygen(keys.path(), "intruder.pem");
    let node = tagger_node(&origin, &public, "\nmax_module_bytes = 1048576");
    let sign = |key: &str, bytes: &[u8]| {
        let file = keys.path().join("candidate.wasm");
        std::fs::write(&file, bytes).unwrap();
        let (sig, _) = edge_cli(
            &["module", "sign", "--key", key, file.to_str().unwrap()],
            &[],
        );
        sig.trim().to_owned()
    };
    let deploy_to = |name: &'static str, bytes: Vec<u8>, sig: String| {
        let node = &node;
        async move {
            let path = format!("/modules/{name}");
            admin(node, "PUT", &path, &[("edge-signature", &sig)], &bytes).await
        }
    };
    let deploy = |bytes: Vec<u8>, sig: String| deploy_to("tagger", bytes, sig);
    let v2 = std::fs::read(TEST_MODULE_V2).unwrap();

    // Not a component at all.
    let junk = b"this is not wasm".to_vec();
    let (status, body) = deploy(junk.clone(), sign(&key, &junk)).await;
    assert_eq!(status, 422);
    assert!(body.contains("not a valid WebAssembly component"), "{body}");
    // A valid component that does not implement the world (an empty component).
    let empty = b"\0asm\x0d\0\x01\0".to_vec();
    let (status, body) = deploy(empty.clone(), sign(&key, &empty)).await;
    assert_eq!(status, 422);
    assert!(
        body.contains("does not implement the edge:module world"),
        "{body}"
    );
    // Signed by a key the node does not trust.
    let (status, body) = deploy(v2.clone(), sign(&intruder, &v2)).await;
    assert_eq!(status, 422);
    assert!(
        body.contains("no trusted key verifies the signature"),
        "{body}"
    );
    // The same through the CLI: a non-zero exit and the node's reason on stderr.
    let candidate = keys.path().join("intruder-v2.wasm");
    std::fs::copy(TEST_MODULE_V2, &candidate).unwrap();
    let candidate = candidate.to_str().unwrap().to_owned();
    edge_cli(&["module", "sign", "--key", &intruder, &candidate], &[]);
    let admin_url = node.proc.ready["admin_url"].as_str().unwrap().to_owned();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(edge_bin())
            .args([
                "module", "deploy", "--admin", &admin_url, "--name", "tagger", &candidate,
            ])
            .env("EDGE_ADMIN_TOKEN", TOKEN)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a refused deploy exited 0: {stderr}");
    assert!(
        stderr.contains("no trusted key verifies the signature"),
        "{stderr}"
    );
    // A signature of other bytes.
    let (status, body) = deploy(v2.clone(), sign(&key, b"other bytes")).await;
    assert_eq!(status, 422, "{body}");
    assert!(
        body.contains("no trusted key verifies the signature"),
        "{body}"
    );
    // No signature.
    let (status, body) = admin(&node, "PUT", "/modules/tagger", &[], &v2).await;
    assert_eq!(status, 400);
    assert!(body.contains("edge-signature"), "{body}");
    // Too large.
    let huge = vec![0u8; 2 * 1024 * 1024];
    let (status, _) = deploy(huge, "AAAA".into()).await;
    assert_eq!(status, 413);

    for proto in ALL {
        let a = get(&node, proto, "/object/x").await;
        assert_eq!(
            (a.status.as_u16(), header(&a, "x-module-version")),
            (200, "1")
        );
    }
    // Rollback past the first version is refused too.
    let (status, body) = admin(&node, "POST", "/modules/tagger/rollback", &[], b"").await;
    assert_eq!(status, 404, "{body}");
    let (status, _) = admin(&node, "POST", "/modules/nope/rollback", &[], b"").await;
    assert_eq!(status, 404);
    let (status, body) = admin(
        &node,
        "POST",
        "/modules/tagger/rollback?to=latest",
        &[],
        b"",
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("version id"), "{body}");
    // A module name that could not be a path segment or a metric label.
    let sig = sign(&key, &v2);
    let (status, body) = deploy_to("bad%20name", v2.clone(), sig).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("module names"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compiled_code_is_cached_on_disk_and_a_restart_does_not_recompile() {
    let origin = Origin::start("o");
    let cache = tempfile::tempdir().unwrap();
    let extra = format!("[wasm]\ncache_dir = \"{}\"\n", cache.path().display());
    let routes = route("/object", &[r#"{ mode = "tag" }"#], "fail-closed");
    let compiled_as = |node: &Node| {
        let event = wait_for_event(node, "module loaded", |e| e["module"] == "test");
        event["compiled"].as_str().unwrap().to_owned()
    };
    let first = node(&origin, &extra, &routes);
    assert_eq!(compiled_as(&first), "Fresh");
    let files: Vec<_> = std::fs::read_dir(cache.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    assert!(files[0].extension().unwrap() == "cwasm");
    drop(first);

    let second = node(&origin, &extra, &routes);
    assert_eq!(compiled_as(&second), "FromCache");
    assert_eq!(get(&second, Proto::H1, "/object/x").await.status, 200);
    drop(second);

    // A damaged file is noticed, ignored and rewritten; nothing breaks.
    let mut bytes = std::fs::read(&files[0]).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&files[0], bytes).unwrap();
    let third = node(&origin, &extra, &routes);
    assert_eq!(compiled_as(&third), "Fresh");
    assert_eq!(get(&third, Proto::H1, "/object/x").await.status, 200);
    drop(third);
    let fourth = node(&origin, &extra, &routes);
    assert_eq!(compiled_as(&fourth), "FromCache");
}

#[test]
fn check_config_names_a_bad_module_file() {
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.wasm");
    std::fs::write(&junk, b"not wasm").unwrap();
    let config = dir.path().join("edge.toml");
    std::fs::write(
        &config,
        format!(
            "[origins.o]\nprimary = \"http://127.0.0.1:1\"\n\n[modules.junk]\npath = \"{}\"\n\n\
             [[routes]]\norigin = \"o\"\n[[routes.modules]]\nmodule = \"junk\"\n",
            junk.display()
        ),
    )
    .unwrap();
    let out = Command::new(edge_bin())
        .args(["check-config", "--config", config.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("module `junk`: not a valid WebAssembly component"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_in_flight_during_a_deploy_finishes_on_the_old_version() {
    let origin = Origin::start("o");
    let keys = tempfile::tempdir().unwrap();
    let (key, public) = keygen(keys.path(), "team.pem");
    let node = tagger_node(&origin, &public, "");
    // The origin holds this response head for a while: the request hook has run on v1.
    let slow = tokio::spawn({
        let (ca, url) = (node.ca.clone(), node.url("/object/slow?delay_ms=4000"));
        async move { clients::get(Proto::H2, &ca, &url, &[]).await }
    });
    // Deploy only once the origin has the request (its hooks ran on v1 by then).
    let deadline = Instant::now() + support::WAIT;
    while &origin.direct("/counts?path=/object/slow").await[..] == b"0\n" {
        assert!(
            Instant::now() < deadline,
            "the slow request never reached the origin"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let v2 = std::fs::read(TEST_MODULE_V2).unwrap();
    let (status, body) = signed_deploy(&node, keys.path(), &key, "tagger", &v2).await;
    assert_eq!(status, 201, "{body}");
    assert!(
        !slow.is_finished(),
        "the slow request must still be in flight during the deploy"
    );
    let fresh = get(&node, Proto::H1, "/object/new").await;
    assert_eq!(header(&fresh, "x-module-version"), "2");
    // The in-flight request's response hook ran on the instance it started with.
    let old = slow.await.unwrap();
    assert_eq!(old.status, 200);
    assert_eq!(header(&old, "x-module-version"), "1");
}

/// A deploy compiles the new component off the request path: while a large one (the
/// WAF, 2 MB, compiled afresh into an empty code cache) compiles, requests on another
/// route keep being answered at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deploy_compiles_off_the_request_path() {
    let origin = Origin::start("o");
    let keys = tempfile::tempdir().unwrap();
    let (key, public) = keygen(keys.path(), "team.pem");
    let cache = tempfile::tempdir().unwrap();
    let node = tagger_node(
        &origin,
        &public,
        &format!("cache_dir = \"{}\"", cache.path().join("cwasm").display()),
    );
    let big = keys.path().join("big.wasm");
    std::fs::write(&big, edge_module_artifacts::standard::WAF).unwrap();
    let (sig, _) = edge_cli(
        &["module", "sign", "--key", &key, big.to_str().unwrap()],
        &[],
    );
    let stop = Arc::new(AtomicBool::new(false));
    let probe = tokio::spawn({
        let (stop, ca, url) = (stop.clone(), node.ca.clone(), node.url("/object/p?size=10"));
        async move {
            let mut slowest = Duration::ZERO;
            let mut served = 0u32;
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                let a = clients::get(Proto::H2, &ca, &url, &[]).await;
                assert_eq!(a.status, 200);
                slowest = slowest.max(t.elapsed());
                served += 1;
            }
            (slowest, served)
        }
    });
    let started = Instant::now();
    let (status, body) = admin(
        &node,
        "PUT",
        "/modules/big",
        &[("edge-signature", sig.trim())],
        edge_module_artifacts::standard::WAF,
    )
    .await;
    let compile = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let (slowest, served) = probe.await.unwrap();
    assert_eq!(status, 201, "{body}");
    eprintln!(
        "deploy of the WAF component: {compile:?}; {served} requests meanwhile, the slowest {slowest:?}"
    );
    assert!(served >= 3, "{served} requests during a {compile:?} deploy");
    // A real component of another world (a wasi:http handler, properly signed) is
    // refused by name.
    let other = std::fs::read(edge_module_artifacts::edge_function::COMPONENT).unwrap();
    let (status, refused) = signed_deploy(&node, keys.path(), &key, "handler", &other).await;
    assert_eq!(status, 422, "{refused}");
    assert!(
        refused.contains("does not implement the edge:module world"),
        "{refused}"
    );
    // The code cache was empty: this was a real compile, long enough to stall a worker.
    assert!(compile > Duration::from_millis(300), "{compile:?}");
    assert!(
        slowest < compile / 2,
        "a request took {slowest:?} while the deploy took {compile:?}"
    );
}
