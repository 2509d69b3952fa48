//! End-to-end: the `rate-limit` standard module on a real `edge` process, over HTTP/1.1
//! and HTTP/3 — burst accuracy, refill at the rate, independent keys (clients on other
//! loopback addresses), the allowlist, the IETF fields, and the memory bound under a
//! flood of distinct keys.

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};
use support::clients::{self, Answer, H3Client, Proto};
use support::{Node, Origin};

const ADMIN_TOKEN: &str = "rate-limit-admin-token-0123";

fn node(origin: &Origin) -> Node {
    Node::start(&format!(
        r#"
[admin]
listen = "127.0.0.1:0"
token = "{ADMIN_TOKEN}"

[origins.media]
primary = "{origin}"

[modules.rate-limit]
budget_ms = 1000

# 5 at once, then one a minute: no refill while a test spends the burst, however slow
# the machine.
[rate_limits.viewer]
rate = "1/m"
burst = 5

# 10 requests/s, one at once: refill measured against the clock.
[rate_limits.refill]
rate = "10/s"
burst = 1

# One request per key per hour; at most 200 keys held.
[rate_limits.flood]
rate = "1/h"
burst = 1
max_keys = 200

[[routes]]
prefix = "/bytes/"
origin = "media"
[[routes.modules]]
module = "rate-limit"
[routes.modules.config]
headers = true
allow = ["127.0.0.2/32"]
rules = [{{ policy = "viewer", key = ["ip"] }}]

[[routes]]
prefix = "/echo"
origin = "media"
[[routes.modules]]
module = "rate-limit"
[routes.modules.config]
rules = [{{ policy = "refill", key = ["ip"] }}]

[[routes]]
prefix = "/object/"
origin = "media"
[[routes.modules]]
module = "rate-limit"
[routes.modules.config]
rules = [{{ policy = "flood", key = ["header:x-viewer"] }}]
"#,
        origin = origin.url
    ))
}

fn h<'a>(a: &'a Answer, name: &str) -> &'a str {
    a.headers
        .get(name)
        .map(|v| v.to_str().unwrap())
        .unwrap_or("")
}

/// The node's metrics (OpenMetrics text) from its admin listener.
async fn metrics(node: &Node) -> String {
    let admin: SocketAddr = node.proc.ready["admin_url"]
        .as_str()
        .unwrap()
        .trim_start_matches("http://")
        .parse()
        .unwrap();
    let mut tcp = tokio::net::TcpStream::connect(admin).await.unwrap();
    let request = format!(
        "GET /metrics HTTP/1.1\r\nHost: admin\r\nAuthorization: Bearer {ADMIN_TOKEN}\r\nConnection: close\r\n\r\n"
    );
    clients::exchange(&mut tcp, request.as_bytes()).await
}

fn gauge(metrics: &str, line_start: &str) -> u64 {
    metrics
        .lines()
        .find(|l| l.starts_with(line_start))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no `{line_start}` in\n{metrics}"))
}

/// Five pass (the burst), the sixth is refused with the IETF fields; `remaining` counts
/// down on the way.
async fn spend_burst(mut get: impl AsyncFnMut() -> Answer) {
    for remaining in (0..5).rev() {
        let a = get().await;
        assert_eq!(a.status, 200);
        assert_eq!(h(&a, "ratelimit-policy"), "\"viewer\";q=5;w=300");
        assert!(
            h(&a, "ratelimit").starts_with(&format!("\"viewer\";r={remaining};t=")),
            "{:?}",
            a.headers
        );
    }
    let a = get().await;
    assert_eq!(a.status, 429);
    let retry: u64 = h(&a, "retry-after").parse().unwrap();
    assert!((59..=60).contains(&retry), "{retry}");
    assert_eq!(h(&a, "ratelimit-policy"), "\"viewer\";q=5;w=300");
    assert_eq!(h(&a, "ratelimit"), format!("\"viewer\";r=0;t={retry}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn burst_refill_keys_and_allowlist_over_h1_and_h3() {
    let origin = Origin::start("rate-limit");
    let node = node(&origin);
    let url = node.url("/bytes/10");

    // HTTP/1.1 from 127.0.0.1.
    spend_burst(async || clients::get(Proto::H1, &node.ca, &url, &[]).await).await;

    // Refill at the rate (one request per 100 ms), over one HTTP/3 connection: after a
    // denial, at least one passes once a period has gone by, and never more than the
    // time since that denial allows, whatever the scheduling delays.
    let echo = node.url("/echo");
    let mut h3 = H3Client::connect(node.https, &node.ca).await;
    let mut denied_at = None;
    for _ in 0..20 {
        let before = Instant::now();
        let a = h3.get(&echo, &[]).await;
        // This route's rules leave `headers` off: no RateLimit fields on what passes.
        if a.status == 200 {
            assert_eq!(h(&a, "ratelimit"), "", "headers are off on /echo");
            assert_eq!(h(&a, "ratelimit-policy"), "");
        }
        if a.status == 429 {
            denied_at = Some(before);
            break;
        }
    }
    let denied_at = denied_at.expect("the refill policy never denied");
    tokio::time::sleep(Duration::from_millis(150)).await;
    let mut passed = 0;
    for _ in 0..3 {
        if h3.get(&echo, &[]).await.status == 200 {
            passed += 1;
        }
    }
    let allowed_by_time = 1 + (denied_at.elapsed().as_millis() / 100) as usize;
    assert!(
        passed >= 1 && passed <= allowed_by_time,
        "{passed} passed in {:?} since the denial",
        denied_at.elapsed()
    );

    // HTTP/3 from 127.0.0.3: another client, its own full burst.
    let mut h3 = H3Client::connect_from("127.0.0.3:0".parse().unwrap(), node.https, &node.ca).await;
    spend_burst(async || h3.get(&url, &[]).await).await;

    // HTTP/3 from the allowlisted 127.0.0.2: never counted.
    let mut allowed =
        H3Client::connect_from("127.0.0.2:0".parse().unwrap(), node.https, &node.ca).await;
    for _ in 0..20 {
        let a = allowed.get(&url, &[]).await;
        assert_eq!(a.status, 200);
        assert_eq!(h(&a, "ratelimit"), "");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_distinct_keys_stays_within_the_bound() {
    let origin = Origin::start("rate-limit-flood");
    let node = node(&origin);
    let url = node.url("/object/flood");
    let mut h3 = H3Client::connect(node.https, &node.ca).await;
    // 1000 distinct viewers over HTTP/3 and 50 over HTTP/1.1: each first request passes.
    for i in 0..1000 {
        let key = format!("viewer-{i}");
        let a = h3.get(&url, &[("x-viewer", key.as_str())]).await;
        assert_eq!(a.status, 200, "{key}");
    }
    for i in 1000..1050 {
        let key = format!("viewer-{i}");
        let a = clients::get(Proto::H1, &node.ca, &url, &[("x-viewer", key.as_str())]).await;
        assert_eq!(a.status, 200, "{key}");
    }
    let text = metrics(&node).await;
    let held = gauge(&text, "edge_rate_limit_keys{policy=\"flood\"}");
    assert!(held <= 200, "{held} keys held:\n{text}");
    assert_eq!(
        gauge(&text, "edge_rate_limit_max_keys{policy=\"flood\"}"),
        200
    );
    // A recent key is still limited; the oldest was evicted and starts over.
    let a = h3.get(&url, &[("x-viewer", "viewer-1049")]).await;
    assert_eq!(a.status, 429);
    let a = h3.get(&url, &[("x-viewer", "viewer-0")]).await;
    assert_eq!(a.status, 200);
}

/// token-auth then rate-limit: viewers behind one address are limited by their token's
/// subject, each with its own burst.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_subjects_are_limited_apart() {
    use edge_runtime::token::{self, Key, SignSpec, TokenFormat};
    const KEY: &str = "52a152a152a152a152a152a152a152a1";
    let origin = Origin::start("rate-limit-subject");
    let node = Node::start(&format!(
        r#"
[origins.media]
primary = "{origin}"

[modules.token-auth]
budget_ms = 1000
[modules.rate-limit]
budget_ms = 1000

[rate_limits.viewer]
rate = "1/h"
burst = 3

[[routes]]
prefix = "/bytes/"
origin = "media"
[[routes.modules]]
module = "token-auth"
config = {{ akamai = {{ keys = {{ k = "{KEY}" }} }} }}
[[routes.modules]]
module = "rate-limit"
config = {{ rules = [{{ policy = "viewer", key = ["subject"] }}] }}
"#,
        origin = origin.url
    ));
    let expires = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 600;
    let token_for = |id: &str| {
        token::sign(
            TokenFormat::Akamai,
            &Key::parse(KEY).unwrap(),
            &SignSpec {
                acl: Some("/bytes/*".into()),
                id: Some(id.into()),
                expires,
                ..Default::default()
            },
        )
        .unwrap()
    };
    let (alice, bob) = (token_for("alice"), token_for("bob"));
    let mut h3 = H3Client::connect(node.https, &node.ca).await;
    for _ in 0..3 {
        let a = h3.get(&node.url(&format!("/bytes/5?{alice}")), &[]).await;
        assert_eq!(a.status, 200);
    }
    let a = h3.get(&node.url(&format!("/bytes/5?{alice}")), &[]).await;
    assert_eq!(a.status, 429);
    let a = clients::get(
        Proto::H1,
        &node.ca,
        &node.url(&format!("/bytes/5?{bob}")),
        &[],
    )
    .await;
    assert_eq!(a.status, 200);
}
