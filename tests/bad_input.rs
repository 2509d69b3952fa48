//! End-to-end: every kind of bad input the node handles gets its specific status, and the
//! node keeps serving.

mod support;

use std::time::{Duration, Instant};
use support::clients::{self, Proto, ALL};
use support::{Node, Origin};
use tokio::io::AsyncReadExt;

const LIMITS: &str = "[limits]\nmax_headers = 20\nmax_uri_bytes = 2048\nheader_read_timeout_ms = 500\n\
                      idle_timeout_ms = 1500\nmax_concurrent_streams = 8\nmax_connections_per_ip = 64\n\n";

fn node_with_limits(origin: &Origin) -> Node {
    let config = format!(
        "{LIMITS}[origins.media]\nprimary = \"{}\"\n\n[[routes]]\nhost = \"localhost\"\norigin = \"media\"\n\n\
         [[routes]]\nhost = \"127.0.0.1\"\nprefix = \"/vod\"\norigin = \"media\"\n",
        origin.url
    );
    Node::start(&config)
}

async fn raw(node: &Node, request: &[u8]) -> String {
    let mut tls = clients::raw_tls(node.https, &node.ca).await;
    clients::exchange(&mut tls, request).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_oversized_http1_requests() {
    let origin = Origin::start("o1");
    let node = node_with_limits(&origin);

    let big_header = format!(
        "GET / HTTP/1.1\r\nHost: localhost\r\nX-Big: {}\r\n\r\n",
        "a".repeat(20 * 1024)
    );
    assert_eq!(
        clients::status_of(&raw(&node, big_header.as_bytes()).await),
        431,
        "header bytes"
    );

    let mut many = String::from("GET / HTTP/1.1\r\nHost: localhost\r\n");
    for i in 0..30 {
        many.push_str(&format!("X-H{i}: v\r\n"));
    }
    many.push_str("\r\n");
    assert_eq!(
        clients::status_of(&raw(&node, many.as_bytes()).await),
        431,
        "header count"
    );

    let long_uri = format!(
        "GET /{} HTTP/1.1\r\nHost: localhost\r\n\r\n",
        "u".repeat(3000)
    );
    assert_eq!(
        clients::status_of(&raw(&node, long_uri.as_bytes()).await),
        414,
        "request target"
    );

    for (what, request) in [
        ("garbage request line", &b"THIS IS NOT HTTP\r\n\r\n"[..]),
        ("bad version", b"GET / HTTP/9.9\r\nHost: localhost\r\n\r\n"),
        ("missing Host", b"GET / HTTP/1.1\r\n\r\n"),
        (
            "two Hosts",
            b"GET / HTTP/1.1\r\nHost: localhost\r\nHost: other\r\n\r\n",
        ),
        (
            "bad header name",
            b"GET / HTTP/1.1\r\nHost: localhost\r\nBad Header: x\r\n\r\n",
        ),
        ("bad Host", b"GET / HTTP/1.1\r\nHost: local host\r\n\r\n"),
        (
            "bad Content-Length",
            b"POST /echo HTTP/1.1\r\nHost: localhost\r\nContent-Length: abc\r\n\r\n",
        ),
    ] {
        let response = raw(&node, request).await;
        assert_eq!(clients::status_of(&response), 400, "{what}: {response}");
    }

    // Still serving.
    let ok = clients::get(Proto::H1, &node.ca, &node.url("/health"), &[]).await;
    assert_eq!(ok.status, 200);
    let line = node.wait_for_access(|l| {
        l["status"] == 400 && l["error"].as_str().is_some_and(|e| e.contains("Host"))
    });
    assert_eq!(line["error_side"], "client");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routing_and_origin_failures_over_every_protocol() {
    let origin = Origin::start("o1");
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_addr = dead.local_addr().unwrap();
    drop(dead);
    let config = format!(
        "{LIMITS}[origins.media]\nprimary = \"{}\"\nfirst_byte_timeout_ms = 300\n\n\
         [origins.down]\nprimary = \"http://{dead_addr}\"\nretries = 0\n\n\
         [[routes]]\nhost = \"localhost\"\nprefix = \"/vod\"\norigin = \"media\"\n\n\
         [[routes]]\nhost = \"localhost\"\nprefix = \"/delay\"\norigin = \"media\"\n\n\
         [[routes]]\nhost = \"localhost\"\nprefix = \"/down\"\norigin = \"down\"\n",
        origin.url
    );
    let node = Node::start(&config);
    let long = format!("/vod/{}", "u".repeat(3000));
    for proto in ALL {
        // Routes serve `localhost` only; `127.0.0.1` (also in the certificate) is unknown.
        let status = |path: &str, host: Option<&str>| {
            let url = node.url(path);
            let url = match host {
                Some(h) => url.replace("localhost", h),
                None => url,
            };
            let ca = node.ca.clone();
            async move { clients::get(proto, &ca, &url, &[]).await.status }
        };
        assert_eq!(
            status("/vod/sample/master.m3u8", None).await,
            200,
            "{proto:?}"
        );
        assert_eq!(
            status("/elsewhere", None).await,
            404,
            "{proto:?} unknown path"
        );
        assert_eq!(
            status("/vod/sample/master.m3u8", Some("127.0.0.1")).await,
            421,
            "{proto:?} unknown host"
        );
        assert_eq!(status("/down/x", None).await, 502, "{proto:?} origin down");
        assert_eq!(
            status("/delay/3000/x", None).await,
            504,
            "{proto:?} origin slow"
        );
        assert_eq!(status(&long, None).await, 414, "{proto:?} long target");
    }
    let down = node.wait_for_access(|l| l["status"] == 502);
    let reason = down["error"].as_str().unwrap();
    assert!(
        reason.contains("cannot connect") && reason.contains(&dead_addr.to_string()),
        "{reason}"
    );
    assert_eq!(down["error_side"], "origin");
    let slow = node.wait_for_access(|l| l["status"] == 504);
    assert!(
        slow["error"].as_str().unwrap().contains("no response"),
        "{slow}"
    );
    let misdirected = node.wait_for_access(|l| l["status"] == 421);
    assert!(misdirected["error"].as_str().unwrap().contains("127.0.0.1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_and_too_many_headers_over_h2_and_h3_get_431() {
    let origin = Origin::start("o1");
    let node = node_with_limits(&origin);
    let big = "a".repeat(20 * 1024);
    let answer = clients::get(
        Proto::H2,
        &node.ca,
        &node.url("/vod/sample/master.m3u8"),
        &[("x-big", &big)],
    )
    .await;
    assert_eq!(answer.status, 431);

    // More fields than max_headers (20): h2 and h3 bound only the field section's bytes
    // in the protocol, so the node counts them itself.
    let names: Vec<String> = (0..30).map(|i| format!("x-h{i}")).collect();
    let many: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "v")).collect();
    for proto in [Proto::H2, Proto::H3] {
        let answer =
            clients::get(proto, &node.ca, &node.url("/vod/sample/master.m3u8"), &many).await;
        assert_eq!(answer.status, 431, "{proto:?}");
        let text = String::from_utf8_lossy(&answer.body);
        assert!(
            text.contains("header fields, the limit is 20"),
            "{proto:?}: {text}"
        );
        let few = &many[..10];
        let answer = clients::get(proto, &node.ca, &node.url("/vod/sample/master.m3u8"), few).await;
        assert_eq!(answer.status, 200, "{proto:?} under the limit");
        // A browser's cookies, one field each as h2 and h3 allow: one field to the limit.
        let crumbs: Vec<String> = (0..40).map(|i| format!("c{i}=v")).collect();
        let mut jar: Vec<(&str, &str)> = crumbs.iter().map(|c| ("cookie", c.as_str())).collect();
        jar.extend_from_slice(&many[..10]);
        let answer =
            clients::get(proto, &node.ca, &node.url("/vod/sample/master.m3u8"), &jar).await;
        assert_eq!(answer.status, 200, "{proto:?} with 40 cookie fields");
    }

    // The h3 client library refuses to send a field section over the server's advertised
    // limit, so the request is written by hand: one HEADERS frame, QPACK literals only.
    let h3 = clients::H3Client::connect(node.https, &node.ca).await;
    let (mut send, mut recv) = h3.conn.open_bi().await.unwrap();
    let fields = [
        (":method", "GET"),
        (":scheme", "https"),
        (":authority", "localhost"),
        (":path", "/"),
        ("x-big", big.as_str()),
    ];
    send.write_all(&clients::h3_headers_frame(&fields))
        .await
        .unwrap();
    send.finish().unwrap();
    let response = tokio::time::timeout(support::WAIT, recv.read_to_end(64 * 1024))
        .await
        .unwrap()
        .unwrap();
    // 431 is not in the QPACK static table: the server sends `:status` by static name
    // reference with the value "431", Huffman-coded as 0x69 0x90 0xff (RFC 7541 App. B).
    assert!(
        response.windows(3).any(|w| w == [0x69, 0x90, 0xff]),
        "{response:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_and_idle_connections_are_closed() {
    let origin = Origin::start("o1");
    let node = node_with_limits(&origin);

    // Half a request head, then silence: closed after header_read_timeout (500 ms).
    let started = Instant::now();
    let mut tls = clients::raw_tls(node.https, &node.ca).await;
    use tokio::io::AsyncWriteExt;
    tls.write_all(b"GET /vod/sample/master.m3u8 HTTP/1.1\r\nHost: localhost\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 1024];
    let read = tokio::time::timeout(support::WAIT, tls.read(&mut buf))
        .await
        .expect("slowloris connection kept open");
    let text = match read {
        Ok(n) => String::from_utf8_lossy(&buf[..n]).into_owned(),
        Err(_) => String::new(),
    };
    assert!(
        text.is_empty() || text.starts_with("HTTP/1.1 408"),
        "{text}"
    );
    assert!(started.elapsed() >= Duration::from_millis(500));

    // A kept-alive connection that goes quiet is closed after idle_timeout (1.5 s).
    let mut tls = clients::raw_tls(node.https, &node.ca).await;
    let first = clients::exchange(
        &mut tls,
        b"GET /vod/sample/master.m3u8 HTTP/1.1\r\nHost: localhost\r\n\r\n",
    )
    .await;
    assert_eq!(clients::status_of(&first), 200);
    let idle_since = Instant::now();
    let closed = tokio::time::timeout(support::WAIT, tls.read(&mut buf))
        .await
        .expect("idle connection kept open");
    assert!(matches!(closed, Ok(0) | Err(_)));
    // HTTP/1.1: hyper's head timer starts when it waits for the next request, so a quiet
    // keep-alive connection goes after header_read_timeout (500 ms), the shorter one.
    assert!(idle_since.elapsed() >= Duration::from_millis(400));

    // HTTP/2: after idle_timeout (1.5 s). (The node sends no keep-alive PINGs, which would
    // count as traffic; with the 1.5 s timeout here a PING every 30 s could not show.)
    let tls = clients::raw_tls_alpn(node.https, &node.ca, b"h2").await;
    let (send, connection) = h2::client::handshake(tls).await.unwrap();
    let ended = tokio::spawn(connection);
    let mut send = send.ready().await.unwrap();
    let request = http::Request::get(node.url("/vod/sample/master.m3u8"))
        .body(())
        .unwrap();
    let (response, _) = send.send_request(request, true).unwrap();
    let mut body = response.await.unwrap().into_body();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.unwrap();
        let _ = body.flow_control().release_capacity(chunk.len());
    }
    let idle_since = Instant::now();
    tokio::time::timeout(support::WAIT, ended)
        .await
        .expect("idle h2 connection kept open")
        .unwrap()
        .ok();
    assert!(idle_since.elapsed() >= Duration::from_millis(1000));

    // And over HTTP/3, where the QUIC idle timeout closes it.
    let mut h3 = clients::H3Client::connect(node.https, &node.ca).await;
    let answer = h3.get(&node.url("/vod/sample/master.m3u8"), &[]).await;
    assert_eq!(answer.status, 200);
    let idle_since = Instant::now();
    tokio::time::timeout(support::WAIT, h3.conn.closed())
        .await
        .expect("idle h3 connection kept open");
    assert!(idle_since.elapsed() >= Duration::from_millis(1000));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_ip_connection_cap() {
    let origin = Origin::start("o1");
    let config = format!(
        "[limits]\nmax_connections_per_ip = 3\n\n{}",
        support::one_origin(&origin.url)
    );
    let node = Node::start(&config);
    let mut open = Vec::new();
    for _ in 0..3 {
        let mut tls = clients::raw_tls(node.https, &node.ca).await;
        let r =
            clients::exchange(&mut tls, b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n").await;
        assert_eq!(clients::status_of(&r), 200);
        open.push(tls);
    }
    // The fourth is closed before the TLS handshake completes.
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(clients::tls_config(
        &node.ca,
        &[b"http/1.1"],
    )));
    let tcp = tokio::net::TcpStream::connect(node.https).await.unwrap();
    let refused = tokio::time::timeout(
        support::WAIT,
        connector.connect("localhost".try_into().unwrap(), tcp),
    )
    .await
    .expect("handshake neither failed nor finished");
    assert!(refused.is_err(), "fourth connection was accepted");
    // The cap counts QUIC connections from the same address too: refused at once.
    let quic = tokio::time::timeout(support::WAIT, quic_connect(&node))
        .await
        .expect("QUIC connect neither failed nor finished");
    assert!(
        matches!(quic, Err(quinn::ConnectionError::ConnectionClosed(_))),
        "QUIC connection over the cap: {quic:?}"
    );

    // Closing one frees a slot (the count drops when the server sees the close).
    drop(open.pop());
    let deadline = Instant::now() + support::WAIT;
    loop {
        let tcp = tokio::net::TcpStream::connect(node.https).await.unwrap();
        if connector
            .connect("localhost".try_into().unwrap(), tcp)
            .await
            .is_ok()
        {
            break;
        }
        assert!(Instant::now() < deadline, "slot never freed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // That one took the freed slot; freeing another lets a QUIC connection in.
    drop(open.pop());
    let deadline = Instant::now() + support::WAIT;
    loop {
        if quic_connect(&node).await.is_ok() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "QUIC never admitted after a slot freed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A bare QUIC connection to the node (h3 ALPN), or why it failed.
async fn quic_connect(node: &Node) -> Result<quinn::Connection, quinn::ConnectionError> {
    let endpoint = clients::quic_endpoint("127.0.0.1:0".parse().unwrap(), &node.ca);
    endpoint.connect(node.https, "localhost").unwrap().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_stream_limits_are_advertised_and_enforced() {
    let origin = Origin::start("o1");
    let node = node_with_limits(&origin);

    // h2: the server's SETTINGS carry max_concurrent_streams = 8.
    let tcp = tokio::net::TcpStream::connect(node.https).await.unwrap();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(clients::tls_config(
        &node.ca,
        &[b"h2"],
    )));
    let tls = connector
        .connect("localhost".try_into().unwrap(), tcp)
        .await
        .unwrap();
    let (send, connection) = h2::client::handshake(tls).await.unwrap();
    tokio::spawn(connection);
    let mut send = send.ready().await.unwrap();
    let request = http::Request::get(node.url("/health")).body(()).unwrap();
    let (response, _) = send.send_request(request, true).unwrap();
    assert_eq!(response.await.unwrap().status(), 200);
    assert_eq!(send.current_max_send_streams(), 8);

    // ... and enforced: a client that ignores it and opens a ninth stream while eight
    // slow ones are open gets that stream refused (RST_STREAM REFUSED_STREAM, RFC 9113
    // §5.1.2); the eight are served.
    use tokio::io::AsyncWriteExt;
    let mut tls = clients::raw_tls_alpn(node.https, &node.ca, b"h2").await;
    let mut out = clients::H2_PREFACE.to_vec();
    out.extend_from_slice(&clients::h2_frame(0x4, 0, 0, &[]));
    let fields: Fields = vec![
        (b":method", b"GET"),
        (b":scheme", b"https"),
        (b":authority", b"localhost"),
        (b":path", b"/delay/900/x"),
    ];
    for stream in (1..=17).step_by(2) {
        out.extend_from_slice(&clients::h2_frame(
            0x1,
            0x5,
            stream,
            &clients::hpack_literals(&fields),
        ));
    }
    tls.write_all(&out).await.unwrap();
    let mut buf = Vec::new();
    let mut answered = std::collections::BTreeSet::new();
    let mut refused = None;
    let deadline = Instant::now() + support::WAIT;
    loop {
        while let Some((kind, flags, stream, payload)) = clients::take_h2_frame(&mut buf) {
            match kind {
                0x4 if flags & 1 == 0 => tls
                    .write_all(&clients::h2_frame(0x4, 1, 0, &[]))
                    .await
                    .unwrap(),
                0x1 => {
                    answered.insert(stream);
                }
                0x3 => {
                    refused = Some((stream, u32::from_be_bytes(payload[..4].try_into().unwrap())))
                }
                0x7 => panic!("GOAWAY instead of a refused stream: {payload:?}"),
                _ => {}
            }
        }
        if answered.len() == 8 && refused.is_some() {
            break;
        }
        let mut chunk = [0u8; 16384];
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, tls.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => buf.extend_from_slice(&chunk[..n]),
            other => panic!("connection ended or timed out ({other:?}): {answered:?} {refused:?}"),
        }
    }
    assert_eq!(refused, Some((17, 0x7)), "ninth stream: REFUSED_STREAM");
    assert_eq!(
        answered.into_iter().collect::<Vec<_>>(),
        vec![1, 3, 5, 7, 9, 11, 13, 15]
    );

    // h3: with 8 slow requests open, a ninth stream cannot open until one finishes.
    let mut h3 = clients::H3Client::connect(node.https, &node.ca).await;
    let mut slow = Vec::new();
    for _ in 0..8 {
        // Shorter than the 1.5 s idle timeout, which would close the quiet connection.
        slow.push(h3.start(&node.url("/delay/900/x"), &[]).await);
    }
    let ninth = tokio::time::timeout(Duration::from_millis(300), h3.conn.open_bi()).await;
    assert!(
        ninth.is_err(),
        "a ninth concurrent stream was allowed: {ninth:?}"
    );
    for mut stream in slow {
        let response = tokio::time::timeout(support::WAIT, stream.recv_response())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(response.status(), 200);
        while stream.recv_data().await.unwrap().is_some() {}
    }
    // Stream credit comes back as requests finish: many more requests on one connection.
    for _ in 0..24 {
        let answer = h3.get(&node.url("/health"), &[]).await;
        assert_eq!(answer.status, 200);
    }
    let tenth = tokio::time::timeout(support::WAIT, h3.conn.open_bi()).await;
    assert!(matches!(tenth, Ok(Ok(_))), "streams were not released");
}

/// Field lines written by hand: any bytes.
type Fields<'a> = Vec<(&'a [u8], &'a [u8])>;

/// Sends one raw HTTP/2 request (HEADERS with END_STREAM on stream 1) and returns the
/// status the node answered with, or `None` when it reset the stream or the connection
/// (refused at the protocol level). Frames are parsed only as far as needed.
async fn raw_h2_status(node: &Node, fields: &[(&[u8], &[u8])]) -> Option<u16> {
    use tokio::io::AsyncWriteExt;
    let mut tls = clients::raw_tls_alpn(node.https, &node.ca, b"h2").await;
    let mut out = clients::H2_PREFACE.to_vec();
    out.extend_from_slice(&clients::h2_frame(0x4, 0, 0, &[]));
    out.extend_from_slice(&clients::h2_frame(
        0x1,
        0x5,
        1,
        &clients::hpack_literals(fields),
    ));
    tls.write_all(&out).await.unwrap();
    let mut buf = Vec::new();
    let deadline = Instant::now() + support::WAIT;
    loop {
        while let Some((kind, flags, stream, block)) = clients::take_h2_frame(&mut buf) {
            if kind == 0x4 && flags & 1 == 0 {
                // Acknowledge the node's SETTINGS, as a client must.
                tls.write_all(&clients::h2_frame(0x4, 1, 0, &[]))
                    .await
                    .unwrap();
            }
            match (kind, stream) {
                // HEADERS: hyper sends the status as an indexed static entry (RFC 7541
                // App. A: 8 = 200, 12 = 400, 13 = 404) or a literal with name index 8.
                (0x1, 1) => {
                    return Some(match block[0] {
                        0x88 => 200,
                        0x8c => 400,
                        0x8d => 404,
                        _ => {
                            let text = String::from_utf8_lossy(&block[2..5.min(block.len())]);
                            text.parse().unwrap_or(0)
                        }
                    });
                }
                (0x3, 1) | (0x7, _) => return None,
                _ => {}
            }
        }
        let mut chunk = [0u8; 4096];
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, tls.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => buf.extend_from_slice(&chunk[..n]),
            Ok(_) => return None,
            Err(_) => panic!("no answer to a raw h2 request"),
        }
    }
}

/// Sends one raw HTTP/3 request and returns the response bytes, or `None` when the
/// stream was reset.
async fn raw_h3(node: &Node, fields: &[(&[u8], &[u8])]) -> Option<Vec<u8>> {
    let h3 = clients::H3Client::connect(node.https, &node.ca).await;
    let (mut send, mut recv) = h3.conn.open_bi().await.unwrap();
    send.write_all(&clients::h3_headers_frame_bytes(fields))
        .await
        .unwrap();
    let _ = send.finish();
    tokio::time::timeout(support::WAIT, recv.read_to_end(64 * 1024))
        .await
        .expect("no answer to a raw h3 request")
        .ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_utf8_and_control_characters_over_every_protocol() {
    let origin = Origin::start("o1");
    let node = node_with_limits(&origin);

    // HTTP/1.1: raw bytes outside the grammar are refused with 400.
    for (what, request) in [
        (
            "0xff in the target",
            &b"GET /object/\xff\xfe HTTP/1.1\r\nHost: localhost\r\n\r\n"[..],
        ),
        (
            "control character in the target",
            b"GET /object/a\x01b HTTP/1.1\r\nHost: localhost\r\n\r\n",
        ),
        (
            "DEL in the target",
            b"GET /object/a\x7fb HTTP/1.1\r\nHost: localhost\r\n\r\n",
        ),
        ("0xff in Host", b"GET / HTTP/1.1\r\nHost: \xff\xfe\r\n\r\n"),
        (
            "NUL in a field value",
            b"GET / HTTP/1.1\r\nHost: localhost\r\nX-A: a\x00b\r\n\r\n",
        ),
        (
            "control character in a field value",
            b"GET / HTTP/1.1\r\nHost: localhost\r\nX-A: a\x01b\r\n\r\n",
        ),
        (
            "0xff in a field name",
            b"GET / HTTP/1.1\r\nHost: localhost\r\nX-\xff: a\r\n\r\n",
        ),
    ] {
        let response = raw(&node, request).await;
        assert_eq!(clients::status_of(&response), 400, "{what}: {response}");
    }
    // What the grammar allows is served, and logged as valid JSON: percent-encoded bytes
    // that are not UTF-8, and obs-text (0x80-0xff) in a field value (RFC 9110 §5.5).
    let response = raw(
        &node,
        b"GET /object/%ff%fe?q=%c3%28 HTTP/1.1\r\nHost: localhost\r\nUser-Agent: viewer \xff\xfe\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(clients::status_of(&response), 200, "{response}");
    let line = node.wait_for_access(|l| l["path"].as_str().is_some_and(|p| p.contains("%ff%fe")));
    assert_eq!(line["status"], 200);

    // HTTP/2 (RFC 9113 §8.2.1): a field value with NUL, CR, LF or other controls, or a
    // `:path` outside the URI grammar, makes the request malformed: 400 or a stream reset.
    let base: [(&[u8], &[u8]); 3] = [
        (b":method", b"GET"),
        (b":scheme", b"https"),
        (b":authority", b"localhost"),
    ];
    // Malformed on both protocols; HTTP/2 also refuses upper-case field names.
    let malformed: Vec<(&str, Fields)> = vec![
        ("0xff in :path", vec![(b":path", b"/object/\xff\xfe")]),
        (
            "control character in :path",
            vec![(b":path", b"/object/a\x01b")],
        ),
        (
            "LF in a field value",
            vec![(b":path", b"/object/x"), (b"x-a", b"a\nb")],
        ),
        (
            "NUL in a field value",
            vec![(b":path", b"/object/x"), (b"x-a", b"a\x00b")],
        ),
    ];
    let upper_case: (&str, Fields) = (
        "upper case field name",
        vec![(b":path", b"/object/x"), (b"X-A", b"b")],
    );
    for (what, extra) in malformed.iter().chain([&upper_case]) {
        let fields: Vec<(&[u8], &[u8])> = base.iter().chain(extra).copied().collect();
        let status = raw_h2_status(&node, &fields).await;
        eprintln!("h2 {what}: {status:?}");
        assert!(
            matches!(status, None | Some(400)),
            "h2 {what}: answered {status:?}"
        );
    }
    let ok: Vec<(&[u8], &[u8])> = base
        .iter()
        .copied()
        .chain([(&b":path"[..], &b"/object/%ff?q=%c3%28"[..])])
        .collect();
    assert_eq!(raw_h2_status(&node, &ok).await, Some(200));

    // HTTP/3 (RFC 9114 §4.2, §4.3): the same rules.
    let status_400 = [0x69, 0x90, 0xff];
    for (what, extra) in &malformed {
        let fields: Vec<(&[u8], &[u8])> = base.iter().chain(extra).copied().collect();
        let answer = raw_h3(&node, &fields).await;
        eprintln!(
            "h3 {what}: {}",
            if answer.is_some() {
                "answered"
            } else {
                "stream reset"
            }
        );
        if let Some(bytes) = answer {
            assert!(
                bytes.windows(3).any(|w| w == status_400),
                "h3 {what}: answered {bytes:?}"
            );
        }
    }

    // The control: a valid request written the same way is answered 200 (`:status` 200 is
    // static entry 25, after the field section's two-byte prefix).
    let ok: Vec<(&[u8], &[u8])> = base
        .iter()
        .copied()
        .chain([(&b":path"[..], &b"/object/%ff?q=%c3%28"[..])])
        .collect();
    let answer = raw_h3(&node, &ok).await.expect("valid h3 request reset");
    assert!(
        answer.windows(3).any(|w| w == [0, 0, 0xc0 | 25]),
        "{answer:?}"
    );

    // Nothing above reached the origin as a request or made the node fail.
    assert!(!node
        .access_log()
        .iter()
        .any(|l| l["status"].as_u64().is_some_and(|s| s >= 500)));
    for proto in ALL {
        let a = clients::get(proto, &node.ca, &node.url("/object/after?size=10"), &[]).await;
        assert_eq!(a.status, 200, "{proto:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_request_bodies_get_413_over_every_protocol() {
    let origin = Origin::start("o1");
    let node = Node::start(&format!(
        "[limits]\nmax_request_body_bytes = 1000\n\n\
         [origins.media]\nprimary = \"{}\"\nretries = 0\n\n\
         [[routes]]\nprefix = \"/\"\norigin = \"media\"\n[routes.cache]\nenabled = false\n",
        origin.url
    ));
    let echo_count = || async {
        let counts = origin.direct("/counts?path=/echo").await;
        String::from_utf8_lossy(&counts).trim().to_owned()
    };
    // HTTP/1.1, declared: refused before a byte of the body is read or sent on.
    let mut big =
        b"POST /echo HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5000\r\n\r\n".to_vec();
    big.extend_from_slice(&[b'x'; 5000]);
    let answer = raw(&node, &big).await;
    assert_eq!(clients::status_of(&answer), 413, "{answer}");
    assert!(answer.contains("over the limit of 1000 bytes"), "{answer}");
    assert_eq!(
        echo_count().await,
        "0",
        "a declared oversized body reached the origin"
    );

    // HTTP/1.1, chunked: counted as it streams; at the limit it passes, one byte over
    // fails with 413 (the origin request is abandoned).
    let chunked = |sizes: &[usize]| {
        let mut r =
            b"POST /echo-body HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n"
                .to_vec();
        for &n in sizes {
            r.extend_from_slice(format!("{n:x}\r\n").as_bytes());
            r.extend_from_slice(&vec![b'y'; n]);
            r.extend_from_slice(b"\r\n");
        }
        r.extend_from_slice(b"0\r\n\r\n");
        r
    };
    let at_limit = raw(&node, &chunked(&[400, 600])).await;
    assert_eq!(clients::status_of(&at_limit), 200, "{at_limit}");
    assert!(at_limit.contains("\"length\":1000"), "{at_limit}");
    let over = raw(&node, &chunked(&[400, 400, 400])).await;
    assert_eq!(clients::status_of(&over), 413, "{over}");

    // HTTP/2 and HTTP/3: DATA frames without a Content-Length (`/echo-body` reads the
    // whole body before it answers).
    let tls = clients::raw_tls_alpn(node.https, &node.ca, b"h2").await;
    let (mut h2, conn) = h2::client::handshake(tls).await.unwrap();
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let request = http::Request::post(node.url("/echo-body"))
        .body(())
        .unwrap();
    let (response, mut body) = h2.send_request(request, false).unwrap();
    let _ = body.send_data(bytes::Bytes::from(vec![b'z'; 5000]), true);
    let status = tokio::time::timeout(support::WAIT, response)
        .await
        .expect("no h2 answer")
        .unwrap()
        .status();
    assert_eq!(status, 413);
    let mut h3 = clients::H3Client::connect(node.https, &node.ca).await;
    let a = h3
        .send_body("POST", &node.url("/echo-body"), &[b'w'; 5000])
        .await;
    assert_eq!(a.status, 413);
    let a = h3
        .send_body("POST", &node.url("/echo-body"), &[b'w'; 999])
        .await;
    assert_eq!(a.status, 200);
    assert!(String::from_utf8_lossy(&a.body).contains("\"length\":999"));
    let line = node.wait_for_access(|l| l["status"] == 413);
    assert_eq!(line["error_side"], "client");
}
