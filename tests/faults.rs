//! End-to-end: faults and hostile input a node must ride out — an origin that accepts and
//! never answers (black-holed), an origin made slow by a fault proxy, an origin name that
//! does not resolve, an origin whose certificate is not trusted, a full disk under the
//! compiled-module cache, absurd `Range` headers, and secrets that must never reach the
//! log. Recovery times are printed for docs/reliability.md, not asserted beyond a
//! bound.

mod support;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::clients::{self, Proto, ALL};
use support::{Node, Origin};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A TCP listener that accepts connections and never answers: a black-holed origin.
async fn black_hole() -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((tcp, _)) = listener.accept().await {
            held.push(tcp);
        }
    });
    (addr, task)
}

/// A listener whose accept queue is full and never drained: the kernel drops further
/// SYNs, so a new connection to it never completes (an origin behind a dropping firewall).
async fn unreachable_listener() -> (std::net::SocketAddr, Vec<std::net::TcpStream>) {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = socket.local_addr().unwrap();
    let listener = socket.listen(0).unwrap();
    // Fill the queue (backlog 0 still queues one); the connections are never accepted.
    let mut fillers = Vec::new();
    for _ in 0..4 {
        match std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
            Ok(tcp) => fillers.push(tcp),
            Err(_) => break,
        }
    }
    std::mem::forget(listener);
    (addr, fillers)
}

/// An origin whose TCP handshake never completes: the request fails at the connect
/// timeout (not the first-byte or total timeout, both far longer), with a reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_origin_that_never_completes_the_handshake_fails_at_the_connect_timeout() {
    let (addr, _fillers) = unreachable_listener().await;
    let node = Node::start(&format!(
        "[origins.media]\nprimary = \"http://{addr}\"\nconnect_timeout_ms = 300\n\
         first_byte_timeout_ms = 20000\ntotal_timeout_ms = 60000\nretries = 0\n\n\
         [[routes]]\nprefix = \"/\"\norigin = \"media\"\n[routes.cache]\nenabled = false\n"
    ));
    for proto in ALL {
        let started = Instant::now();
        let a = clients::get(proto, &node.ca, &node.url("/object/x?size=100"), &[]).await;
        let took = started.elapsed();
        assert!(
            [502, 504].contains(&a.status.as_u16()),
            "{proto:?}: {} {:?}",
            a.status,
            a.body
        );
        assert!(
            took >= Duration::from_millis(250) && took < Duration::from_secs(10),
            "{proto:?}: answered after {took:?}"
        );
    }
    let line = node.wait_for_access(|l| l["status"] == 502 || l["status"] == 504);
    let error = line["error"].as_str().unwrap_or_default().to_lowercase();
    assert!(error.contains("connect"), "{line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_black_holed_primary_fails_over_within_a_bounded_time() {
    let (hole, _task) = black_hole().await;
    let secondary = Origin::start("secondary");
    let node = Node::start(&format!(
        "[origins.media]\nprimary = \"http://{hole}\"\nsecondary = \"{}\"\n\
         first_byte_timeout_ms = 1000\nconnect_timeout_ms = 500\nhealth_path = \"/health\"\n\
         health_interval_ms = 500\nhealth_timeout_ms = 300\n\n\
         [[routes]]\nprefix = \"/\"\norigin = \"media\"\n[routes.cache]\nenabled = false\n",
        secondary.url
    ));
    let started = Instant::now();
    let mut first_success = None;
    let mut answers = Vec::new();
    while started.elapsed() < Duration::from_secs(15) {
        let t = Instant::now();
        let a = clients::get(Proto::H2, &node.ca, &node.url("/object/x?size=100"), &[]).await;
        answers.push((a.status.as_u16(), t.elapsed()));
        if a.status == 200 {
            first_success.get_or_insert(started.elapsed());
            // Steady state: five in a row, each fast (health checks took the primary out).
            if answers
                .iter()
                .rev()
                .take(5)
                .filter(|(s, d)| *s == 200 && *d < Duration::from_millis(900))
                .count()
                == 5
            {
                break;
            }
        } else {
            // Never a hang: a clear gateway error while the primary is still tried.
            assert!(matches!(a.status.as_u16(), 502..=504), "{answers:?}");
        }
    }
    let first = first_success.expect("never failed over to the secondary");
    let steady = started.elapsed();
    eprintln!(
        "black-holed primary: first success after {first:?}, steady (5 fast in a row) after {steady:?}; answers {answers:?}"
    );
    assert!(steady < Duration::from_secs(15), "{answers:?}");
    for proto in ALL {
        let a = clients::get(proto, &node.ca, &node.url("/object/y?size=100"), &[]).await;
        assert_eq!(a.status, 200, "{proto:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn absurd_range_headers_never_fail_or_amplify() {
    let origin = Origin::start("o");
    let node = Node::start(&format!(
        "[origins.media]\nprimary = \"{}\"\n\n[[routes]]\nprefix = \"/\"\norigin = \"media\"\n",
        origin.url
    ));
    let path = "/object/ranged?size=10000&cc=max-age%3D60";
    let many: String = (0..400)
        .map(|i| format!("{i}-{i}"))
        .collect::<Vec<_>>()
        .join(",");
    let ranges = [
        format!("bytes={many}"),
        "bytes=99999999999999999999999-".to_owned(),
        "bytes=-99999999999999999999999".to_owned(),
        "bytes=5-2".to_owned(),
        "bytes=-0".to_owned(),
        "bytes=abc".to_owned(),
        "items=0-5".to_owned(),
        "bytes=0-0,-1".to_owned(),
        "bytes=9999-".to_owned(),
        "bytes=10000-".to_owned(),
    ];
    for proto in ALL {
        for range in &ranges {
            let a = clients::get(proto, &node.ca, &node.url(path), &[("range", range)]).await;
            let status = a.status.as_u16();
            assert!(
                matches!(status, 200 | 206 | 416),
                "{proto:?} Range: {}…: {status}",
                &range[..range.len().min(40)]
            );
            match status {
                200 => assert_eq!(a.body.len(), 10_000),
                206 => assert!(a.body.len() <= 10_000),
                _ => {}
            }
        }
    }
    // One origin fetch for the object, whatever the viewers asked.
    let counts = origin.direct("/counts?path=/object/ranged").await;
    let n: u64 = String::from_utf8_lossy(&counts)
        .trim()
        .parse()
        .unwrap_or(99);
    assert!(n <= 2, "the origin was asked {n} times");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_never_reach_the_log() {
    const KEY: &str = "5ec7e75ec7e75ec7e75ec7e75ec7e75ec7e75ec7e75ec7e75ec7e75ec7e75ec7";
    const ADMIN: &str = "admin-secret-do-not-log-0123456789";
    let origin = Origin::start("o");
    let node = Node::start(&format!(
        "[admin]\nlisten = \"127.0.0.1:0\"\ntoken = \"{ADMIN}\"\n\n\
         [origins.media]\nprimary = \"{}\"\n\n[[routes]]\nprefix = \"/\"\norigin = \"media\"\n\
         [[routes.modules]]\nmodule = \"token-auth\"\n[routes.modules.config.native]\nkeys = {{ k1 = \"{KEY}\" }}\n",
        origin.url
    ));
    // Refusals of every kind, a good token, and admin calls with and without the token.
    let good = {
        use edge_runtime::token::{self, Key, SignSpec, TokenFormat};
        let url = token::sign(
            TokenFormat::Native,
            &Key::Secret(edge_module_token_auth::decode_hex(KEY).unwrap()),
            &SignSpec {
                key_id: Some("k1".into()),
                url: Some(node.url("/object/s?size=10")),
                prefix: Some("/".into()),
                expires: 4_000_000_000,
                ..Default::default()
            },
        )
        .unwrap();
        url[url.find('?').unwrap()..].to_owned()
    };
    for query in [
        "".to_owned(),
        "?edge_token=k=k1~e=1~p=/~sig=AAAA".to_owned(),
        "?edge_token=k=k2~e=4000000000~p=/~sig=AAAA".to_owned(),
        good.clone(),
    ] {
        let _ = clients::get(
            Proto::H1,
            &node.ca,
            &node.url(&format!("/object/s{query}")),
            &[],
        )
        .await;
    }
    let ok = clients::get(
        Proto::H1,
        &node.ca,
        &node.url(&format!("/object/s{good}")),
        &[],
    )
    .await;
    assert_eq!(ok.status, 200);
    let admin = node.proc.ready["admin_url"]
        .as_str()
        .unwrap()
        .trim_start_matches("http://")
        .parse()
        .unwrap();
    let _ = support::admin_request(admin, Some(ADMIN), "GET", "/modules", &[], b"").await;
    let _ = support::admin_request(admin, Some("wrong"), "GET", "/modules", &[], b"").await;
    let _ = support::admin_request(admin, Some(ADMIN), "POST", "/purge", &[], b"{not json").await;
    node.wait_for_access(|l| l["status"] == 200);
    let log = std::fs::read_to_string(&node.log).unwrap();
    assert!(!log.contains(KEY), "the token key is in the log");
    assert!(
        !log.contains(&KEY[..16]),
        "part of the token key is in the log"
    );
    assert!(!log.contains(ADMIN), "the admin token is in the log");
}

/// A TCP proxy in front of an origin that holds back the answer to each request by
/// `delay_ms` (0: none) before its first byte: an origin that has become slow.
struct FaultProxy {
    addr: std::net::SocketAddr,
    delay_ms: Arc<AtomicU64>,
    _task: tokio::task::JoinHandle<()>,
}

async fn fault_proxy(upstream: std::net::SocketAddr) -> FaultProxy {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let delay_ms = Arc::new(AtomicU64::new(0));
    let delay = delay_ms.clone();
    let task = tokio::spawn(async move {
        while let Ok((viewer_side, _)) = listener.accept().await {
            let Ok(origin_side) = tokio::net::TcpStream::connect(upstream).await else {
                continue;
            };
            let (mut from_node, mut to_node) = viewer_side.into_split();
            let (mut from_origin, mut to_origin) = origin_side.into_split();
            // Set by request bytes, cleared by the first answer byte that follows them.
            let asked = Arc::new(AtomicBool::new(false));
            let asked_up = asked.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 16 * 1024];
                while let Ok(n) = from_node.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    asked_up.store(true, Ordering::SeqCst);
                    if to_origin.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            });
            let delay = delay.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 16 * 1024];
                while let Ok(n) = from_origin.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    let ms = delay.load(Ordering::SeqCst);
                    if asked.swap(false, Ordering::SeqCst) && ms > 0 {
                        tokio::time::sleep(Duration::from_millis(ms)).await;
                    }
                    if to_node.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    FaultProxy {
        addr,
        delay_ms,
        _task: task,
    }
}

fn x_cache(a: &clients::Answer) -> &str {
    a.headers
        .get("x-cache")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_origin_gets_stale_where_allowed_and_a_bounded_504_elsewhere() {
    let origin = Origin::start("o");
    let proxy = fault_proxy(origin.addr()).await;
    let node = Node::start(&format!(
        "[origins.media]\nprimary = \"http://{}\"\nfirst_byte_timeout_ms = 1000\nretries = 0\n\n\
         [[routes]]\nprefix = \"/\"\norigin = \"media\"\n",
        proxy.addr
    ));
    // Stale at once (max-age=0) but allowed to be served on error for 10 minutes.
    let stale_ok = node.url("/object/s?size=5000&cc=max-age%3D0%2C%20stale-if-error%3D600&etag=v1");
    let uncached = node.url("/object/u?size=5000&cc=no-store");
    let first = clients::get(Proto::H2, &node.ca, &stale_ok, &[]).await;
    assert_eq!(first.status, 200, "{:?}", node.access_log());

    // The origin turns slow: 5 s before each answer, against a 1 s first-byte timeout.
    proxy.delay_ms.store(5000, Ordering::SeqCst);
    for proto in ALL {
        let t = Instant::now();
        let stale = clients::get(proto, &node.ca, &stale_ok, &[]).await;
        let took = t.elapsed();
        assert_eq!(
            (stale.status.as_u16(), x_cache(&stale)),
            (200, "STALE"),
            "{proto:?}"
        );
        assert_eq!(stale.body, first.body);
        eprintln!("slow origin, {proto:?}: stale copy served after {took:?}");
        assert!(took < Duration::from_secs(4), "{proto:?}: {took:?}");

        let t = Instant::now();
        let failed = clients::get(proto, &node.ca, &uncached, &[]).await;
        let took = t.elapsed();
        assert_eq!(failed.status, 504, "{proto:?}");
        eprintln!("slow origin, {proto:?}: 504 after {took:?}");
        assert!(took < Duration::from_secs(4), "{proto:?}: {took:?}");
    }
    let line = node.wait_for_access(|l| l["status"] == 504);
    assert!(
        line["error"].as_str().unwrap_or("").contains("no response"),
        "{line}"
    );

    // The origin recovers: the next request is served by it, no waiting out a penalty.
    proxy.delay_ms.store(0, Ordering::SeqCst);
    let t = Instant::now();
    let ok = clients::get(Proto::H2, &node.ca, &uncached, &[]).await;
    assert_eq!(ok.status, 200);
    eprintln!(
        "slow origin recovered: first fresh answer {:?} after the delay was lifted",
        t.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_origin_name_that_does_not_resolve_fails_over_or_is_a_clear_502() {
    let secondary = Origin::start("secondary");
    // `.invalid` never resolves (RFC 6761 §6.4).
    let node = Node::start(&format!(
        "[origins.backed]\nprimary = \"http://origin.invalid:8080\"\nsecondary = \"{}\"\n\
         first_byte_timeout_ms = 3000\n\n\
         [origins.alone]\nprimary = \"http://origin.invalid:8080\"\nfirst_byte_timeout_ms = 3000\n\n\
         [[routes]]\nprefix = \"/alone/\"\norigin = \"alone\"\n[routes.cache]\nenabled = false\n\n\
         [[routes]]\nprefix = \"/\"\norigin = \"backed\"\n[routes.cache]\nenabled = false\n",
        secondary.url
    ));
    for proto in ALL {
        let t = Instant::now();
        let a = clients::get(proto, &node.ca, &node.url("/object/d?size=100"), &[]).await;
        assert_eq!(a.status, 200, "{proto:?}");
        eprintln!(
            "DNS failure, {proto:?}: served by the secondary after {:?}",
            t.elapsed()
        );
        let t = Instant::now();
        let a = clients::get(proto, &node.ca, &node.url("/alone/object/d"), &[]).await;
        let took = t.elapsed();
        eprintln!("DNS failure, {proto:?}: {} after {took:?}", a.status);
        assert_eq!(a.status, 502, "{proto:?}");
        assert!(took < Duration::from_secs(5), "{took:?}");
    }
    let line = node.wait_for_access(|l| l["status"] == 502);
    let error = line["error"].as_str().unwrap_or("");
    assert!(
        error.contains("origin.invalid") && error.contains("dns"),
        "{line}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_origin_certificate_is_a_clear_502_until_its_ca_is_configured() {
    const TOKEN: &str = "faults-admin-token-0123456789";
    let origin = Origin::start("o");
    // A TLS origin: another node, with its own self-signed certificate.
    let tls_origin = Node::start(&format!(
        "[origins.media]\nprimary = \"{}\"\n\n[[routes]]\nprefix = \"/\"\norigin = \"media\"\n",
        origin.url
    ));
    let upstream = format!("https://127.0.0.1:{}", tls_origin.https.port());
    let node = Node::start(&format!(
        "[admin]\nlisten = \"127.0.0.1:0\"\ntoken = \"{TOKEN}\"\n\n\
         [origins.secure]\nprimary = \"{upstream}\"\n\n\
         [[routes]]\nprefix = \"/\"\norigin = \"secure\"\n[routes.cache]\nenabled = false\n"
    ));
    for proto in ALL {
        let a = clients::get(proto, &node.ca, &node.url("/object/t?size=100"), &[]).await;
        assert_eq!(a.status, 502, "{proto:?}");
    }
    let line = node.wait_for_access(|l| l["status"] == 502);
    let error = line["error"].as_str().unwrap_or("");
    assert!(
        error.contains("certificate") || error.contains("UnknownIssuer"),
        "{line}"
    );

    // Trusting the origin's CA and reloading heals it, with no restart.
    let config_path = node.dir.path().join("edge.toml");
    let config = std::fs::read_to_string(&config_path).unwrap().replace(
        &format!("primary = \"{upstream}\"\n"),
        &format!(
            "primary = \"{upstream}\"\nca_file = \"{}\"\n",
            tls_origin.ca.display()
        ),
    );
    std::fs::write(&config_path, config).unwrap();
    let admin = node.admin_addr();
    let t = Instant::now();
    let (status, body) =
        support::admin_request(admin, Some(TOKEN), "POST", "/reload", &[], b"").await;
    assert_eq!(status, 200, "{body}");
    for proto in ALL {
        let a = clients::get(proto, &node.ca, &node.url("/object/t?size=100"), &[]).await;
        assert_eq!(a.status, 200, "{proto:?}");
    }
    eprintln!(
        "untrusted origin certificate: healed {:?} after the reload with its CA",
        t.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_under_the_module_cache_costs_a_compile_never_a_request() {
    let origin = Origin::start("o");
    let cache = tempfile::tempdir().unwrap();
    let dir = cache.path().display().to_string();
    let config = format!(
        "[wasm]\ncache_dir = \"{dir}\"\n\n\
         [origins.media]\nprimary = \"{}\"\n\n[modules.test]\npath = \"{}\"\nbudget_ms = 1000\n\n\
         [[routes]]\nprefix = \"/\"\norigin = \"media\"\n[routes.cache]\nenabled = false\n\
         [[routes.modules]]\nmodule = \"test\"\nconfig = {{ mode = \"tag\" }}\n",
        origin.url,
        edge_module_artifacts::testing::TEST_MODULE
    );
    // The node runs in its own mount namespace with an 8 MiB tmpfs, private to it, as its
    // cache folder, filled to the last byte before it starts.
    let fill = "mount -t tmpfs -o size=8m,mode=0700 tmpfs \"$0\" && \
                (dd if=/dev/zero of=\"$0/filler\" bs=64k 2>/dev/null; true) && exec \"$@\"";
    let full = Node::start_wrapped(
        &config,
        "",
        &[],
        &[
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            fill,
            &dir,
        ],
    );
    let in_ns = format!("/proc/{}/root{dir}", full.proc.pid());
    let event = full.wait_for_event("module loaded");
    assert_eq!(event["compiled"], "Fresh");
    let warned = full.wait_for_log(|l| {
        l["message"]
            .as_str()
            .is_some_and(|m| m.contains("cannot write the compiled-module cache"))
    });
    assert!(
        warned["error"].as_str().unwrap_or("").contains("space"),
        "{warned}"
    );
    for proto in ALL {
        let a = clients::get(proto, &full.ca, &full.url("/object/m?size=10"), &[]).await;
        assert_eq!(a.status, 200, "{proto:?}");
    }
    // Nothing partial left behind under any name.
    let names = |path: &str| -> Vec<String> {
        std::fs::read_dir(path)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect()
    };
    assert_eq!(names(&in_ns), ["filler"]);

    // Space comes back: the next node to compile on that volume writes the cache, and the
    // one after loads from it.
    std::fs::remove_file(format!("{in_ns}/filler")).unwrap();
    let ns = format!("--mount=/proc/{}/ns/mnt", full.proc.pid());
    let t = Instant::now();
    let second = Node::start_wrapped(&config, "", &[], &["nsenter", &ns]);
    assert_eq!(second.wait_for_event("module loaded")["compiled"], "Fresh");
    let files = names(&in_ns);
    assert!(
        files.len() == 1 && files[0].ends_with(".cwasm"),
        "{files:?}"
    );
    drop(second);
    let third = Node::start_wrapped(&config, "", &[], &["nsenter", &ns]);
    assert_eq!(
        third.wait_for_event("module loaded")["compiled"],
        "FromCache"
    );
    assert_eq!(
        clients::get(Proto::H1, &third.ca, &third.url("/object/m?size=10"), &[])
            .await
            .status,
        200
    );
    eprintln!(
        "full module-cache disk: served throughout; cache written again {:?} after space came back",
        t.elapsed()
    );
}
