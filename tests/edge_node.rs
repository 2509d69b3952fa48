//! End-to-end: the edge node as a real process in front of real origin processes, driven
//! over HTTP/1.1, HTTP/2 (TLS) and HTTP/3 (QUIC).

mod support;

use std::process::Command;
use std::time::{Duration, Instant};
use support::clients::{self, Proto, ALL};
use support::{Node, Origin, Proc};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_bytes_over_h1_h2_h3_with_alt_svc_and_server_timing() {
    let origin = Origin::start("o1");
    let node = Node::start(&support::one_origin(&origin.url));
    let paths = [
        "/vod/sample/master.m3u8",
        "/vod/sample/720p/index.m3u8",
        "/vod/sample/720p/seg_00002.ts",
        "/vod/sample/manifest.mpd",
        "/bytes/1000000",
    ];
    for path in paths {
        let direct = origin.direct(path).await;
        for proto in ALL {
            let answer = clients::get(proto, &node.ca, &node.url(path), &[]).await;
            assert_eq!(answer.status, 200, "{proto:?} {path}");
            assert_eq!(
                answer.body, direct,
                "{proto:?} {path}: bytes differ from the origin's"
            );
            let timing = answer.headers["server-timing"].to_str().unwrap();
            let cache = answer.headers["x-cache"].to_str().unwrap();
            assert!(timing.contains("edge;dur="), "{timing}");
            assert!(timing.contains(&format!("cache;desc={cache}")), "{timing}");
            // The first request of each path fills the cache from the origin.
            if proto == Proto::H1 {
                assert_eq!(cache, "MISS", "{path}");
                assert!(timing.contains("origin;dur="), "{timing}");
            } else {
                assert_eq!(cache, "HIT", "{path}");
            }
            assert_eq!(answer.headers["x-origin-name"], "o1");
            if proto != Proto::H3 {
                let alt_svc = answer.headers["alt-svc"].to_str().unwrap();
                assert_eq!(alt_svc, format!("h3=\":{}\"; ma=86400", node.https.port()));
            }
        }
    }
    // Every request is logged once with its protocol and byte count.
    let log = node.wait_for_access(|l| l["protocol"] == "h3" && l["path"] == "/bytes/1000000");
    assert_eq!(log["bytes"], 1_000_000);
    assert_eq!(log["complete"], true);
    assert_eq!(log["status"], 200);
    assert_eq!(log["route"], 0);
    assert_eq!(log["cache"], "HIT");
    assert!(log["duration_ms"].as_f64().is_some() && log["origin_ms"].is_null());
    let miss =
        node.wait_for_access(|l| l["protocol"] == "http/1.1" && l["path"] == "/bytes/1000000");
    assert_eq!(miss["cache"], "MISS");
    assert!(miss["origin_ms"].as_f64().is_some());
    assert_eq!(miss["upstream"], origin.url.as_str());
    assert_eq!(miss["complete"], true);
    for proto in ["http/1.1", "h2"] {
        node.wait_for_access(|l| l["protocol"] == proto && l["path"] == "/vod/sample/master.m3u8");
    }
}

/// The plaintext listener (behind a TLS-terminating CDN) serves the same pipeline and does
/// not advertise h3, which its viewers could not reach.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plaintext_listener_serves_without_alt_svc() {
    let origin = Origin::start("o1");
    let node = Node::start(&support::one_origin(&origin.url));
    let mut tcp = tokio::net::TcpStream::connect(node.plain.unwrap())
        .await
        .unwrap();
    let response = clients::exchange(
        &mut tcp,
        b"GET /vod/sample/master.m3u8 HTTP/1.1\r\nHost: media.example\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(clients::status_of(&response), 200);
    assert!(response.contains("#EXTM3U"));
    assert!(!response.to_ascii_lowercase().contains("alt-svc"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarding_headers_and_hop_by_hop_rules() {
    let origin = Origin::start("o1");
    let node = Node::start(&support::one_origin(&origin.url));
    for proto in ALL {
        let headers: &[(&str, &str)] = if proto == Proto::H1 {
            // Connection-specific fields only exist in HTTP/1.1 (RFC 9113 §8.2.2).
            &[
                ("connection", "x-private"),
                ("x-private", "1"),
                ("x-forwarded-for", "203.0.113.9"),
                ("te", "trailers"),
            ]
        } else {
            &[("x-forwarded-for", "203.0.113.9")]
        };
        // A URL per protocol: one protocol's echo, kept by the cache, must not answer
        // another's request (a CI run saw H3 get the H2 echo).
        let url = node.url(&format!("/echo?proto={proto:?}"));
        let answer = clients::get(proto, &node.ca, &url, headers).await;
        assert_eq!(answer.status, 200);
        let echo: serde_json::Value = serde_json::from_slice(&answer.body).unwrap();
        let h = &echo["headers"];
        let version = match proto {
            Proto::H1 => "1.1",
            Proto::H2 => "2",
            Proto::H3 => "3",
        };
        // The pseudonym, then the node's identity as a comment (its host name here).
        let via = h["via"].as_str().unwrap_or_default();
        assert!(
            via.starts_with(&format!("{version} edge (")) && via.ends_with(')'),
            "{proto:?}: {h}"
        );
        assert_eq!(h["x-forwarded-for"], "203.0.113.9, 127.0.0.1");
        assert_eq!(h["forwarded"], "for=127.0.0.1;proto=https");
        assert_eq!(h["x-forwarded-proto"], "https");
        assert_eq!(
            h["host"],
            format!("{}", origin.addr()),
            "upstream authority by default"
        );
        for hop in ["connection", "x-private", "te", "keep-alive"] {
            assert!(h.get(hop).is_none(), "{proto:?}: {hop} was forwarded: {h}");
        }
        // The response carries Via too.
        assert!(answer.headers["via"].to_str().unwrap().contains(" edge ("));
    }
}

/// `http2 = true`: the node speaks HTTP/2 (prior knowledge) to a plaintext upstream,
/// whatever the viewer's protocol, and the answers are the origin's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_upstream_is_reached_over_http2_from_every_protocol() {
    let origin = Origin::start("o1");
    let node = Node::start(&format!(
        "[origins.media]\nprimary = \"{}\"\nhttp2 = true\n\n[[routes]]\norigin = \"media\"\n\
         [routes.cache]\nenabled = false\n",
        origin.url
    ));
    let direct = origin.direct("/bytes/200000").await;
    for proto in ALL {
        let a = clients::get(proto, &node.ca, &node.url("/echo"), &[]).await;
        assert_eq!(a.status, 200, "{proto:?}");
        let echo: serde_json::Value = serde_json::from_slice(&a.body).unwrap();
        assert_eq!(echo["version"], "HTTP/2.0", "{proto:?}: {echo}");
        let bytes = clients::get(proto, &node.ca, &node.url("/bytes/200000"), &[]).await;
        assert_eq!(bytes.body, direct, "{proto:?}");
    }
}

/// Several certificates, chosen by SNI over TCP and over QUIC: a viewer asking for
/// `media.test` gets that name's certificate, one asking for `localhost` the default.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_are_chosen_by_sni_over_tcp_and_quic() {
    let origin = Origin::start("o1");
    let second = tempfile::tempdir().unwrap();
    let (cert, key) =
        edge_runtime::listener::tls::generate_self_signed(second.path(), &["media.test"]).unwrap();
    let node = Node::start(&format!(
        "[[tls.certs]]\ncert = \"{}\"\nkey = \"{}\"\nnames = [\"media.test\"]\n\n{}",
        cert.display(),
        key.display(),
        support::one_origin(&origin.url)
    ));
    // TCP: a client that trusts only one certificate completes the handshake only when
    // the node presents that one.
    let tls_with = |trusted: &std::path::Path, name: &'static str| {
        let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(clients::tls_config(
            trusted,
            &[b"http/1.1"],
        )));
        let addr = node.https;
        async move {
            let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
            connector
                .connect(name.try_into().unwrap(), tcp)
                .await
                .is_ok()
        }
    };
    assert!(tls_with(&cert, "media.test").await, "media.test over TCP");
    assert!(tls_with(&node.ca, "localhost").await, "default over TCP");
    assert!(
        !tls_with(&cert, "localhost").await,
        "default presented to media.test's name"
    );
    assert!(
        !tls_with(&node.ca, "media.test").await,
        "media.test got the default"
    );

    // QUIC: the same choice.
    let quic_with = |trusted: &std::path::Path, name: &'static str| {
        let endpoint = clients::quic_endpoint("127.0.0.1:0".parse().unwrap(), trusted);
        let addr = node.https;
        async move {
            let connecting = endpoint.connect(addr, name).unwrap();
            let ok = tokio::time::timeout(support::WAIT, connecting)
                .await
                .expect("QUIC handshake hung")
                .is_ok();
            endpoint.close(0u32.into(), b"done");
            ok
        }
    };
    assert!(quic_with(&cert, "media.test").await, "media.test over QUIC");
    assert!(quic_with(&node.ca, "localhost").await, "default over QUIC");
    assert!(!quic_with(&cert, "localhost").await);
    assert!(!quic_with(&node.ca, "media.test").await);
}

/// On a route without cache every answer comes through the origin client, so each
/// protocol's bytes are the origin's own; the origin's hop-by-hop fields stay on its hop;
/// and sequential requests share one pooled upstream connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uncached_answers_keep_their_bytes_drop_hop_by_hop_fields_and_reuse_connections() {
    let origin = Origin::start("o1");
    let node = Node::start(&format!(
        "[origins.media]\nprimary = \"{}\"\n\n[[routes]]\norigin = \"media\"\n\
         [routes.cache]\nenabled = false\n",
        origin.url
    ));
    let paths = [
        "/vod/sample/720p/seg_00001.ts",
        "/bytes/1000000",
        "/object/hop?hop=1&size=3000",
    ];
    for path in paths {
        let direct = origin.direct(path).await;
        for proto in ALL {
            let answer = clients::get(proto, &node.ca, &node.url(path), &[]).await;
            assert_eq!(answer.status, 200, "{proto:?} {path}");
            assert_eq!(answer.body, direct, "{proto:?} {path}: bytes differ");
            for hop in [
                "connection",
                "x-hop",
                "keep-alive",
                "proxy-connection",
                "upgrade",
            ] {
                assert!(
                    answer.headers.get(hop).is_none(),
                    "{proto:?} {path}: the origin's {hop} reached the viewer: {:?}",
                    answer.headers
                );
            }
        }
    }
    assert_eq!(
        origin_count_of(&origin, "/object/hop").await,
        4,
        "every request went to the origin"
    );

    // Twenty requests one after another: one upstream connection (or one per worker),
    // not one per request. Each direct read of the count is a connection of its own.
    let accepted = || async {
        let body = origin.direct("/counts?connections").await;
        std::str::from_utf8(&body)
            .unwrap()
            .trim()
            .parse::<u64>()
            .unwrap()
    };
    let before = accepted().await;
    for i in 0..20 {
        let proto = ALL[i % 3];
        let answer = clients::get(proto, &node.ca, &node.url("/bytes/1000"), &[]).await;
        assert_eq!(answer.status, 200);
    }
    let opened = accepted().await - before - 1;
    assert!(
        opened <= 2,
        "{opened} new upstream connections for 20 requests"
    );
}

async fn origin_count_of(origin: &Origin, path: &str) -> u64 {
    let body = origin.direct(&format!("/counts?path={path}")).await;
    std::str::from_utf8(&body).unwrap().trim().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_to_secondary_when_primary_is_killed() {
    let mut primary = Origin::start("primary");
    let secondary = Origin::start("secondary");
    let config = format!(
        "[origins.media]\nprimary = \"{}\"\nsecondary = \"{}\"\nhealth_path = \"/health\"\n\
         health_interval_ms = 100\nconnect_timeout_ms = 500\nretries = 1\n\n\
         [[routes]]\norigin = \"media\"\n",
        primary.url, secondary.url
    );
    let node = Node::start(&config);
    // Not cacheable (no freshness, no validators): every request goes to an origin.
    let url = node.url("/health");
    for proto in ALL {
        let answer = clients::get(proto, &node.ca, &url, &[]).await;
        assert_eq!(answer.headers["x-origin-name"], "primary");
    }
    primary.proc.kill();
    // Not one failed request: the first one after the kill retries on the secondary, and
    // the health check then keeps traffic there.
    for round in 0..5 {
        for proto in ALL {
            let answer = clients::get(proto, &node.ca, &url, &[]).await;
            assert_eq!(answer.status, 200, "round {round} {proto:?}");
            assert_eq!(answer.headers["x-origin-name"], "secondary");
        }
    }
    let failed_over = node.wait_for_access(|l| l["upstream"] == secondary.url.as_str());
    assert_eq!(failed_over["status"], 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_in_flight_downloads_then_exits_zero() {
    let origin = Origin::start("o1");
    let mut node = Node::start_with(
        &support::one_origin(&origin.url),
        "drain_timeout_ms = 15000",
    );
    let size: usize = 48 * 1024 * 1024;
    let path = format!("/bytes/{size}");

    // h3: start the download and read only its first chunk.
    let mut h3 = clients::H3Client::connect(node.https, &node.ca).await;
    let mut h3_stream = h3.start(&node.url(&path), &[]).await;
    assert_eq!(h3_stream.recv_response().await.unwrap().status(), 200);
    let mut h3_read = 0usize;
    if let Some(chunk) = h3_stream.recv_data().await.unwrap() {
        h3_read += bytes::Buf::remaining(&chunk);
    }

    // h1 over TLS: same, by hand, so nothing buffers the body ahead of us.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut h1 = clients::raw_tls(node.https, &node.ca).await;
    h1.write_all(format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut buf = vec![0u8; 64 * 1024];
    let mut h1_bytes = Vec::new();
    let n = h1.read(&mut buf).await.unwrap();
    h1_bytes.extend_from_slice(&buf[..n]);

    // h2: same, through hyper's client.
    use http_body_util::BodyExt;
    let mut h2 = clients::start_tcp(Proto::H2, &node.ca, &node.url(&path), &[]).await;
    assert_eq!(h2.version(), http::Version::HTTP_2);
    let mut h2_read = 0usize;
    if let Some(frame) = h2.body_mut().frame().await {
        h2_read += frame.unwrap().into_data().map(|d| d.len()).unwrap_or(0);
    }

    node.proc.signal("TERM");
    // New connections are refused once the listener is closed.
    let refused = async {
        loop {
            if tokio::net::TcpStream::connect(node.https).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(support::WAIT, refused)
        .await
        .expect("listener still open after SIGTERM");
    // And new QUIC connections too, while the in-flight h3 download goes on.
    let quic_refused = async {
        loop {
            let endpoint = clients::quic_endpoint("127.0.0.1:0".parse().unwrap(), &node.ca);
            let attempt = endpoint.connect(node.https, "localhost").unwrap();
            match tokio::time::timeout(Duration::from_secs(2), attempt).await {
                Ok(Err(_)) => break,
                Ok(Ok(conn)) => conn.close(0u32.into(), b"done"),
                Err(_) => {}
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(support::WAIT, quic_refused)
        .await
        .expect("QUIC still accepts new connections after SIGTERM");

    // Both in-flight downloads complete in full.
    let h1_done = async {
        loop {
            let n = h1.read(&mut buf).await.unwrap();
            if n == 0 {
                break;
            }
            h1_bytes.extend_from_slice(&buf[..n]);
            if h1_bytes.len() >= size {
                let head_end = h1_bytes.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
                if h1_bytes.len() - head_end == size {
                    break;
                }
            }
        }
        let head_end = h1_bytes.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        h1_bytes.len() - head_end
    };
    let h3_done = async {
        while let Some(chunk) = h3_stream.recv_data().await.expect("h3 body during drain") {
            h3_read += bytes::Buf::remaining(&chunk);
        }
        h3_read
    };
    let h2_done = async {
        while let Some(frame) = h2.body_mut().frame().await {
            h2_read += frame
                .expect("h2 body during drain")
                .into_data()
                .map(|d| d.len())
                .unwrap_or(0);
        }
        h2_read
    };
    let (h1_len, h2_len, h3_len) = tokio::time::timeout(support::WAIT, async {
        tokio::join!(h1_done, h2_done, h3_done)
    })
    .await
    .expect("downloads did not finish during drain");
    assert_eq!(h1_len, size, "h1 download cut short");
    assert_eq!(h2_len, size, "h2 download cut short");
    assert_eq!(h3_len, size, "h3 download cut short");
    drop(h1);
    // A client closes its QUIC connection once its requests are done after a GOAWAY.
    h3.conn.close(0u32.into(), b"done");
    assert_eq!(node.proc.wait_exit(support::WAIT), Some(0));
    let log = std::fs::read_to_string(&node.log).unwrap();
    assert!(log.contains("\"drained\""), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_with_idle_viewers_sends_goaway_and_exits_before_the_drain_timeout() {
    let origin = Origin::start("o1");
    let mut node = Node::start_with(
        &support::one_origin(&origin.url),
        "drain_timeout_ms = 60000",
    );
    // Idle viewers: one request each, then nothing, and they never close.
    let mut h3 = clients::H3Client::connect(node.https, &node.ca).await;
    assert_eq!(h3.get(&node.url("/health"), &[]).await.status, 200);
    let tls = clients::raw_tls_alpn(node.https, &node.ca, b"h2").await;
    let (send, connection) = h2::client::handshake(tls).await.unwrap();
    let h2_ended = tokio::spawn(connection);
    let mut send = send.ready().await.unwrap();
    let request = http::Request::get(node.url("/health")).body(()).unwrap();
    let (response, _) = send.send_request(request, true).unwrap();
    assert_eq!(response.await.unwrap().status(), 200);

    // A third, on a raw HTTP/2 connection, to read the frames the node sends.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut raw = clients::raw_tls_alpn(node.https, &node.ca, b"h2").await;
    let mut hello = clients::H2_PREFACE.to_vec();
    hello.extend(clients::h2_frame(0x4, 0, 0, &[]));
    raw.write_all(&hello).await.unwrap();

    let signalled = Instant::now();
    node.proc.signal("INT");
    // Its frames until the node closes (answering its SETTINGS and PINGs as a live
    // client does): a GOAWAY with NO_ERROR among them.
    let mut goaway = None;
    let read_all = async {
        let (mut pending, mut buf) = (Vec::new(), [0u8; 4096]);
        loop {
            let n = raw.read(&mut buf).await.unwrap_or(0);
            if n == 0 {
                break;
            }
            pending.extend_from_slice(&buf[..n]);
            while let Some((kind, flags, _, payload)) = clients::take_h2_frame(&mut pending) {
                let answer = match (kind, flags & 0x1) {
                    (0x4, 0) => clients::h2_frame(0x4, 0x1, 0, &[]),
                    (0x6, 0) => clients::h2_frame(0x6, 0x1, 0, &payload),
                    (0x7, _) => {
                        goaway = Some(u32::from_be_bytes(payload[4..8].try_into().unwrap()));
                        continue;
                    }
                    _ => continue,
                };
                if raw.write_all(&answer).await.is_err() {
                    return;
                }
            }
        }
    };
    tokio::time::timeout(support::WAIT, read_all)
        .await
        .expect("the raw h2 connection stayed open");
    assert_eq!(goaway, Some(0), "no GOAWAY with NO_ERROR before the close");
    // h2: a GOAWAY with NO_ERROR, then the node closes: the client's connection ends
    // cleanly (an abrupt close would end it with an error).
    tokio::time::timeout(support::WAIT, h2_ended)
        .await
        .expect("h2 connection still open")
        .unwrap()
        .expect("h2 connection ended without a clean GOAWAY");
    // h3: the node closes the idle connection with H3_NO_ERROR after a short grace.
    let closed = tokio::time::timeout(support::WAIT, h3.conn.closed())
        .await
        .expect("h3 connection still open");
    match closed {
        quinn::ConnectionError::ApplicationClosed(close) => {
            assert_eq!(
                close.error_code,
                quinn::VarInt::from_u32(0x100),
                "{close:?}"
            )
        }
        other => panic!("h3 connection ended with {other:?}"),
    }
    assert_eq!(node.proc.wait_exit(support::WAIT), Some(0));
    assert!(
        signalled.elapsed() < Duration::from_secs(15),
        "idle viewers held the drain for {:?}",
        signalled.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_drain_timeout_ends_downloads_that_outlast_it_and_still_exits_zero() {
    let origin = Origin::start("o1");
    let mut node = Node::start_with(&support::one_origin(&origin.url), "drain_timeout_ms = 1000");
    // 1 MB in 16 KiB chunks every 200 ms: about 12 s, far past the drain timeout.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut h1 = clients::raw_tls(node.https, &node.ca).await;
    h1.write_all(b"GET /object/long?size=1000000&chunk_ms=200 HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 64 * 1024];
    let mut got = h1.read(&mut buf).await.unwrap();
    assert!(got > 0);
    let signalled = Instant::now();
    node.proc.signal("TERM");
    assert_eq!(node.proc.wait_exit(support::WAIT), Some(0));
    let took = signalled.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(8),
        "exit {took:?} after SIGTERM with a 1 s drain timeout"
    );
    // The viewer's download was cut, not completed.
    loop {
        match tokio::time::timeout(support::WAIT, h1.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => got += n,
            _ => break,
        }
    }
    assert!(got < 1_000_000, "the download finished: {got} bytes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_serves_hls_over_every_protocol() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(support::edge_bin());
    cmd.args(["demo", "--addr", "127.0.0.1:0", "--dir"])
        .arg(dir.path())
        .stderr(std::process::Stdio::null());
    let demo = Proc::start(cmd);
    let ready = &demo.ready;
    let ca = std::path::PathBuf::from(ready["ca_pem"].as_str().unwrap());
    let https = ready["https_url"].as_str().unwrap();
    assert_eq!(
        ready["h3_udp_port"].as_u64().unwrap().to_string(),
        https.rsplit(':').next().unwrap()
    );
    let manifest = ready["manifest_url"]
        .as_str()
        .unwrap()
        .replace("127.0.0.1", "localhost");
    let live = ready["live_url"]
        .as_str()
        .unwrap()
        .replace("127.0.0.1", "localhost");
    for proto in ALL {
        let master = clients::get(proto, &ca, &manifest, &[]).await;
        assert_eq!(master.status, 200);
        // The standard headers module runs on the demo's route.
        assert_eq!(master.headers["access-control-allow-origin"], "*");
        assert!(master.headers["server-timing"]
            .to_str()
            .unwrap()
            .contains("wasm;dur="));
        let text = std::str::from_utf8(&master.body).unwrap();
        assert!(text.starts_with("#EXTM3U"));
        // Follow the playlist down to a segment, as a player would.
        let variant = text
            .lines()
            .find(|l| !l.starts_with('#') && !l.is_empty())
            .unwrap();
        let base = manifest.rsplit_once('/').unwrap().0;
        let media = clients::get(proto, &ca, &format!("{base}/{variant}"), &[]).await;
        let media_text = std::str::from_utf8(&media.body).unwrap();
        assert!(media_text.contains("#EXT-X-ENDLIST"));
        let segment = media_text.lines().find(|l| l.ends_with(".ts")).unwrap();
        let variant_base = format!("{base}/{}", variant.rsplit_once('/').unwrap().0);
        let ts = clients::get(proto, &ca, &format!("{variant_base}/{segment}"), &[]).await;
        assert_eq!(ts.status, 200);
        assert_eq!(ts.body[0], 0x47, "MPEG-TS sync byte");
        assert_eq!(ts.body.len() % 188, 0);
        let live_playlist = clients::get(proto, &ca, &live, &[]).await;
        assert_eq!(live_playlist.status, 200);
        assert!(std::str::from_utf8(&live_playlist.body)
            .unwrap()
            .contains("#EXT-X-MEDIA-SEQUENCE"));

        // `/secure/` opens with the freshly signed URL from the ready line, then with the
        // session cookie it sets; never without either. Rate limiting reports its state.
        let secure = ready["secure_url"]
            .as_str()
            .unwrap()
            .replace("127.0.0.1", "localhost");
        let master = clients::get(proto, &ca, &secure, &[]).await;
        assert_eq!(master.status, 200, "{proto:?} {secure}");
        let master_text = std::str::from_utf8(&master.body).unwrap();
        assert!(master_text.starts_with("#EXTM3U"));
        // manifest-rewrite carried the token into every variant URI.
        let token = &secure[secure.find("edge_token=").unwrap()..];
        let variants: Vec<&str> = master_text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .collect();
        assert_eq!(variants.len(), 2, "{master_text}");
        assert!(variants.iter().all(|v| v.ends_with(token)), "{master_text}");
        assert!(master.headers["ratelimit"]
            .to_str()
            .unwrap()
            .starts_with("\"viewer\";r="));
        let cookie = master.headers["set-cookie"].to_str().unwrap();
        let session = cookie.split(';').next().unwrap();
        let unsigned = secure.split_once('?').unwrap().0;
        assert_eq!(clients::get(proto, &ca, unsigned, &[]).await.status, 403);
        let with_cookie = clients::get(proto, &ca, unsigned, &[("cookie", session)]).await;
        assert_eq!(with_cookie.status, 200);
    }
}

#[test]
fn bad_config_is_rejected_with_file_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("edge.toml");
    std::fs::write(
        &path,
        "[server]\nlisten = \"127.0.0.1:0\"\n\n[origins.media]\nprimary = \"http://127.0.0.1:9\"\n\n[[routes]]\nprefix = \"/\"\norigin = \"missing\"\n",
    )
    .unwrap();
    for command in ["check-config", "serve"] {
        let out = Command::new(support::edge_bin())
            .args([command, "--config"])
            .arg(&path)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{command} accepted a bad config");
        let stderr = String::from_utf8_lossy(&out.stderr);
        let expected = format!(
            "{}:9: key `routes[0].origin`: unknown origin `missing`",
            path.display()
        );
        assert!(stderr.contains(&expected), "{command}: {stderr}");
    }

    // A region overlay with a typo names the overlay file and its line.
    std::fs::create_dir(dir.path().join("regions")).unwrap();
    std::fs::write(
        &path,
        "[origins.media]\nprimary = \"http://127.0.0.1:9\"\n\n[[routes]]\norigin = \"media\"\n",
    )
    .unwrap();
    let check_with_overlay = |overlay: &str| {
        std::fs::write(dir.path().join("regions/eu-west.toml"), overlay).unwrap();
        Command::new(support::edge_bin())
            .args(["check-config", "--region", "eu-west", "--config"])
            .arg(&path)
            .output()
            .unwrap()
    };
    let out = check_with_overlay("[origins.media]\nprimry = \"http://10.0.0.1\"\n");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("regions/eu-west.toml:2: key `origins.media.primry`: unknown field"),
        "{stderr}"
    );
    let out = check_with_overlay("[origins.media]\nsecondary = \"http://10.0.0.1\"\n");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
