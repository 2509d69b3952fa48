//! End-to-end: protocol abuse against a real `edge` process while an ordinary viewer keeps
//! fetching on its own connection — HTTP/2 rapid reset (CVE-2023-44487), PING, SETTINGS
//! and CONTINUATION floods written as raw frames, and a QUIC handshake flood from 400
//! source ports. Every ordinary request must be served; the
//! viewer's p99 during the attack against its baseline is printed (timing targets live in
//! benchmarks, not in assertions: docs/reliability.md has the measured ratios).

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::clients::{self, Proto};
use support::{Node, Origin};
use tokio::io::AsyncWriteExt;

/// How long each attack runs, at most.
const ATTACK: Duration = Duration::from_secs(4);

fn node(origin: &Origin) -> Node {
    Node::start(&format!(
        "[origins.media]\nprimary = \"{}\"\n\n[[routes]]\nprefix = \"/\"\norigin = \"media\"\n",
        origin.url
    ))
}

async fn tls_h2(node: &Node) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let tcp = tokio::net::TcpStream::connect(node.https).await.unwrap();
    let connector =
        tokio_rustls::TlsConnector::from(Arc::new(clients::tls_config(&node.ca, &[b"h2"])));
    connector
        .connect("localhost".try_into().unwrap(), tcp)
        .await
        .unwrap()
}

/// A raw frame: 9-byte header and payload (RFC 9113 §4.1).
fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    f.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// The i-th frame (or frames) an attack writes.
type FrameMaker = Box<dyn Fn(u32) -> Vec<u8> + Send + Sync>;

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// A HEADERS block for `GET /` (HPACK: indexed :method GET, :scheme https, :path /, and a
/// literal :authority).
fn get_headers() -> Vec<u8> {
    let mut block = vec![0x82, 0x87, 0x84];
    block.extend_from_slice(&[0x41, 9]);
    block.extend_from_slice(b"localhost");
    block
}

/// Writes frames from `next` until the server stops taking them or `ATTACK` passes;
/// reconnects when the server closes (a bounded number of times). Returns the frames sent
/// and the connections used.
async fn flood(node: &Node, next: impl Fn(u32) -> Vec<u8>) -> (u64, u32) {
    let deadline = Instant::now() + ATTACK;
    let mut sent = 0u64;
    let mut connections = 0;
    while Instant::now() < deadline && connections < 50 {
        connections += 1;
        let mut tls = tls_h2(node).await;
        let mut start = PREFACE.to_vec();
        start.extend_from_slice(&frame(0x4, 0, 0, &[]));
        if tls.write_all(&start).await.is_err() {
            continue;
        }
        let mut i = 0u32;
        loop {
            if Instant::now() >= deadline {
                return (sent, connections);
            }
            let mut batch = Vec::with_capacity(64 * 1024);
            for _ in 0..256 {
                batch.extend_from_slice(&next(i));
                i = i.wrapping_add(1);
            }
            // The server may stop reading (backpressure) or close: either ends this
            // connection's attack.
            match tokio::time::timeout(Duration::from_millis(500), tls.write_all(&batch)).await {
                Ok(Ok(())) => sent += 256,
                _ => break,
            }
        }
    }
    (sent, connections)
}

/// Sequential GETs on the viewer's own h1 connections until `stop`; (latencies, failures).
async fn viewer(
    node_url: String,
    ca: std::path::PathBuf,
    stop: Arc<AtomicBool>,
) -> (Vec<Duration>, usize) {
    let mut latencies = Vec::new();
    let mut failures = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
        let t = Instant::now();
        let a = clients::get(Proto::H1, &ca, &node_url, &[]).await;
        latencies.push(t.elapsed());
        if a.status != 200 || a.body.len() != 4096 {
            failures += 1;
        }
    }
    (latencies, failures)
}

fn p99(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[(v.len() * 99 / 100).min(v.len() - 1)]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_floods_and_rapid_reset_leave_ordinary_viewers_served() {
    let origin = Origin::start("o");
    let mut node = node(&origin);
    let url = node.url("/object/v?size=4096&cc=max-age%3D60");
    let baseline_stop = Arc::new(AtomicBool::new(false));
    let base = tokio::spawn(viewer(url.clone(), node.ca.clone(), baseline_stop.clone()));
    tokio::time::sleep(Duration::from_secs(1)).await;
    baseline_stop.store(true, Ordering::Relaxed);
    let (baseline, failed) = base.await.unwrap();
    assert_eq!(failed, 0);
    let baseline_p99 = p99(baseline);

    let attacks: Vec<(&str, FrameMaker)> = vec![
        (
            "rapid reset",
            // HEADERS (END_STREAM | END_HEADERS) on a new stream, then RST_STREAM(CANCEL).
            Box::new(|i: u32| {
                let id = 1 + 2 * (i % 1_000_000_000);
                let mut f = frame(0x1, 0x5, id, &get_headers());
                f.extend_from_slice(&frame(0x3, 0, id, &8u32.to_be_bytes()));
                f
            }),
        ),
        (
            "PING flood",
            Box::new(|i: u32| frame(0x6, 0, 0, &u64::from(i).to_be_bytes())),
        ),
        (
            "SETTINGS flood",
            Box::new(|_| frame(0x4, 0, 0, &[0x00, 0x03, 0x00, 0x00, 0x00, 0x64])),
        ),
        (
            "CONTINUATION flood",
            // One HEADERS without END_HEADERS, then CONTINUATION frames that never end it.
            Box::new(|i: u32| {
                if i.is_multiple_of(100_000) {
                    frame(0x1, 0x1, 1, &get_headers())
                } else {
                    frame(0x9, 0, 1, &[0x40, 3, b'x', b'-', b'a', 3, b'a', b'a', b'a'])
                }
            }),
        ),
    ];
    for (name, attack) in attacks {
        let stop = Arc::new(AtomicBool::new(false));
        let during = tokio::spawn(viewer(url.clone(), node.ca.clone(), stop.clone()));
        let started = Instant::now();
        let (sent, connections) = flood(&node, attack).await;
        let lasted = started.elapsed();
        stop.store(true, Ordering::Relaxed);
        let (latencies, failures) = during.await.unwrap();
        assert_eq!(failures, 0, "{name}: ordinary requests failed");
        assert!(
            latencies.len() >= 10,
            "{name}: the viewer got only {} answers",
            latencies.len()
        );
        let ratio = p99(latencies.clone()).as_secs_f64() / baseline_p99.as_secs_f64().max(1e-4);
        eprintln!(
            "{name}: {sent} frames on {connections} connections in {lasted:.1?} (the node closes abusive ones); viewer {} requests, 0 failed, p99 {:?} ({ratio:.1}x baseline {:?})",
            latencies.len(),
            p99(latencies),
            baseline_p99
        );
        // Still serving h2 afterwards.
        let a = clients::get(Proto::H2, &node.ca, &url, &[]).await;
        assert_eq!(a.status, 200, "{name}: h2 after the attack");
    }
    // The node is still the same process: it never exited under the floods.
    assert!(
        node.proc.child.try_wait().unwrap().is_none(),
        "the node exited during the floods"
    );
    let a = clients::get(Proto::H3, &node.ca, &url, &[]).await;
    assert_eq!(a.status, 200);
}

/// One QUIC handshake from a new source port on 127.0.0.1: the endpoint and, when the node
/// accepted it within 10 s, the connection.
async fn quic_handshake(
    addr: std::net::SocketAddr,
    ca: std::path::PathBuf,
) -> (quinn::Endpoint, Option<quinn::Connection>) {
    let mut tls = clients::tls_config(&ca, &[b"h3"]);
    tls.enable_early_data = false;
    let quic = quinn::crypto::rustls::QuicClientConfig::try_from(tls).unwrap();
    let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    endpoint.set_default_client_config(quinn::ClientConfig::new(Arc::new(quic)));
    let connecting = endpoint.connect(addr, "localhost").unwrap();
    let conn = tokio::time::timeout(Duration::from_secs(10), connecting).await;
    (endpoint, conn.ok().and_then(Result::ok))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quic_handshake_flood_from_many_ports_leaves_other_viewers_served() {
    let origin = Origin::start("o");
    let node = node(&origin);
    let url = node.url("/object/q?size=4096&cc=max-age%3D60");
    // The viewer is another address (127.0.0.2): the attacker's own address hits the
    // per-address cap, which is the point of the cap.
    let viewer_addr: std::net::SocketAddr = "127.0.0.2:0".parse().unwrap();
    let mut viewer = clients::H3Client::connect_from(viewer_addr, node.https, &node.ca).await;
    assert_eq!(viewer.get(&url, &[]).await.status, 200);
    // 400 handshakes from 400 source ports, all at once, each connection kept open.
    let attempts: Vec<_> = (0..400)
        .map(|_| tokio::spawn(quic_handshake(node.https, node.ca.clone())))
        .collect();
    // The viewer keeps fetching while the handshakes land.
    let mut served = 0;
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        let a = tokio::time::timeout(support::WAIT, viewer.get(&url, &[]))
            .await
            .expect("viewer timed out");
        assert_eq!(a.status, 200);
        served += 1;
    }
    let mut held = Vec::new();
    let mut accepted = 0;
    for a in attempts {
        let (endpoint, conn) = a.await.unwrap();
        accepted += usize::from(conn.is_some());
        held.push((endpoint, conn));
    }
    eprintln!("QUIC flood: {accepted} of 400 handshakes completed (per-address cap 256); viewer served {served} requests meanwhile, none failed");
    assert!(
        accepted <= 256,
        "the per-address cap did not hold: {accepted}"
    );
    // Released, the attacker's address is served again.
    drop(held);
    let again = tokio::time::timeout(Duration::from_secs(30), async {
        while quic_handshake(node.https, node.ca.clone())
            .await
            .1
            .is_none()
        {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    assert!(
        again.is_ok(),
        "the attacker's address was never served again"
    );
    assert_eq!(
        clients::get(Proto::H3, &node.ca, &url, &[]).await.status,
        200
    );
    assert!(served >= 10);
}
