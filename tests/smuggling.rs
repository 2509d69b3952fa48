//! End-to-end: request smuggling attempts against a real `edge` process, with a raw-TCP
//! origin that records every byte that reaches it. Ambiguous framing (conflicting
//! `Content-Length` / `Transfer-Encoding`, obs-fold, bad chunk sizes) gets a 400 and
//! nothing of it is forwarded; a well-framed request reaches the origin exactly once, in
//! the node's own framing.

mod support;

use std::sync::{Arc, Mutex};
use support::clients;
use support::Node;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// An origin that answers every request head it sees with a fixed 200 and keeps all the
/// bytes it received.
struct Recorder {
    addr: std::net::SocketAddr,
    seen: Arc<Mutex<Vec<u8>>>,
}

impl Recorder {
    async fn start() -> Recorder {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let all = seen.clone();
        tokio::spawn(async move {
            while let Ok((mut tcp, _)) = listener.accept().await {
                let all = all.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 65536];
                    let mut pending = Vec::new();
                    loop {
                        let n = match tcp.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => n,
                        };
                        all.lock().unwrap().extend_from_slice(&buf[..n]);
                        pending.extend_from_slice(&buf[..n]);
                        // One answer per request head (these tests send no bodies through).
                        while let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
                            pending.drain(..end + 4);
                            let reply = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nCache-Control: no-store\r\n\r\nok";
                            if tcp.write_all(reply).await.is_err() {
                                return;
                            }
                        }
                    }
                });
            }
        });
        Recorder { addr, seen }
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.seen.lock().unwrap()).into_owned()
    }

    fn clear(&self) {
        self.seen.lock().unwrap().clear();
    }
}

async fn send(node: &Node, plain: bool, request: &[u8]) -> String {
    if plain {
        let mut tcp = tokio::net::TcpStream::connect(node.plain.unwrap())
            .await
            .unwrap();
        clients::exchange(&mut tcp, request).await
    } else {
        let mut tls = clients::raw_tls(node.https, &node.ca).await;
        clients::exchange(&mut tls, request).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ambiguous_framing_is_refused_and_never_reaches_the_origin() {
    let origin = Recorder::start().await;
    let node = Node::start(&format!(
        "[origins.raw]\nprimary = \"http://{}\"\nretries = 0\n\n[[routes]]\nprefix = \"/\"\norigin = \"raw\"\n[routes.cache]\nenabled = false\n",
        origin.addr
    ));
    let attacks: &[(&str, &[u8])] = &[
        (
            "two different Content-Lengths",
            b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 40\r\n\r\nabcGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n",
        ),
        (
            "a Content-Length list",
            b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 3, 40\r\n\r\nabc",
        ),
        (
            "obs-fold",
            b"GET /a HTTP/1.1\r\nHost: x\r\nX-Folded: a\r\n b\r\n\r\n",
        ),
        (
            "Transfer-Encoding not ending in chunked",
            b"POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n",
        ),
        (
            "an obfuscated Transfer-Encoding",
            b"POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n",
        ),
        (
            "space before the colon",
            b"POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n",
        ),
        (
            "a negative Content-Length",
            b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
        ),
        (
            "a control character in a field value",
            b"GET /a HTTP/1.1\r\nHost: x\r\nX-Bad: a\x01b\r\n\r\n",
        ),
        (
            "a request line with two spaces",
            b"GET  /a HTTP/1.1\r\nHost: x\r\n\r\n",
        ),
        (
            "HTTP/1.1 without Host",
            b"GET /a HTTP/1.1\r\nX-A: 1\r\n\r\n",
        ),
    ];
    for plain in [false, true] {
        for (name, attack) in attacks {
            origin.clear();
            let answer = send(&node, plain, attack).await;
            assert_eq!(
                clients::status_of(&answer),
                400,
                "{name} (plain: {plain}): {answer}"
            );
            assert!(
                !origin.text().contains("smuggled") && !origin.text().contains("/a "),
                "{name} (plain: {plain}) reached the origin:\n{}",
                origin.text()
            );
        }
    }

    // Content-Length and Transfer-Encoding together (CL.TE): RFC 9112 §6.3 — chunked
    // framing wins, Content-Length is dropped, the connection closes after the answer. The
    // bytes after the chunked body (the smuggled request) are never read as a request, and
    // the origin gets the body in the node's own framing.
    for plain in [false, true] {
        origin.clear();
        let answer = send(
            &node,
            plain,
            b"POST /clte HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n",
        )
        .await;
        assert_eq!(clients::status_of(&answer), 200, "{answer}");
        assert!(
            answer.to_ascii_lowercase().contains("connection: close"),
            "{answer}"
        );
        assert_eq!(
            answer.matches("HTTP/1.1 ").count(),
            1,
            "one answer only: {answer}"
        );
        let seen = origin.text().to_ascii_lowercase();
        assert!(!seen.contains("smuggled"), "{seen}");
        assert_eq!(seen.matches("post /clte ").count(), 1, "{seen}");
        assert!(
            !seen.contains("content-length: 6"),
            "forwarded with the viewer's framing: {seen}"
        );
    }

    // A bad chunk size on a chunked body: the viewer gets a 4xx, and the origin never
    // sees a complete request (its copy is cut off, never re-framed into two).
    for plain in [false, true] {
        origin.clear();
        let answer = send(
            &node,
            plain,
            b"POST /chunks HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nGET /smuggled HTTP/1.1\r\n\r\n",
        )
        .await;
        let status = clients::status_of(&answer);
        assert!(
            (400..500).contains(&status),
            "bad chunk size (plain: {plain}): {answer}"
        );
        let seen = origin.text();
        assert!(!seen.contains("smuggled"), "{seen}");
        assert!(
            !seen.contains("\r\n0\r\n\r\n"),
            "a complete body was forwarded: {seen}"
        );
    }

    // A well-framed request still works, reaching the origin once in the node's framing.
    origin.clear();
    let answer = send(
        &node,
        false,
        b"POST /fine HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
    )
    .await;
    assert_eq!(clients::status_of(&answer), 200, "{answer}");
    let seen = origin.text();
    assert_eq!(seen.matches("POST /fine ").count(), 1, "{seen}");
    assert!(
        seen.ends_with("hello") || seen.contains("\r\n\r\nhello"),
        "{seen}"
    );
}
