//! `HttpOrigin` against real upstreams on 127.0.0.1: which failures are replayed (and to
//! which upstream), the total timeout on a slow body, HTTP/2 with prior knowledge, and
//! health checks that take an upstream out and bring it back.

use bytes::Bytes;
use http::{Method, Request, StatusCode, Version};
use http_body_util::BodyExt;
use origin::headers::ForwardedFor;
use origin::http::{HealthCheck, HttpOrigin, OriginConfig, OriginError};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Every wait in these tests is bounded by this.
const WAIT: Duration = Duration::from_secs(10);

fn config(upstreams: &[SocketAddr]) -> OriginConfig {
    OriginConfig {
        name: "test".into(),
        upstreams: upstreams
            .iter()
            .map(|a| format!("http://{a}").parse().unwrap())
            .collect(),
        connect_timeout: Duration::from_secs(2),
        first_byte_timeout: Duration::from_secs(2),
        total_timeout: Duration::from_secs(5),
        retries: 1,
        health: None,
        ca_roots: None,
        preserve_host: false,
        http2_only: false,
        max_idle_per_upstream: 8,
        via_name: "edge-test".into(),
    }
}

/// An upstream that answers every request with 200 and its own name, counting requests
/// and recording the HTTP version each came in.
struct Good {
    addr: SocketAddr,
    requests: Arc<AtomicUsize>,
    versions: Arc<Mutex<Vec<Version>>>,
    down: Arc<std::sync::atomic::AtomicBool>,
}

async fn good(name: &'static str, h2: bool) -> Good {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let requests = Arc::new(AtomicUsize::new(0));
    let versions = Arc::new(Mutex::new(Vec::new()));
    let down = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (r, v, d) = (requests.clone(), versions.clone(), down.clone());
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (r, v, d) = (r.clone(), v.clone(), d.clone());
            tokio::spawn(async move {
                let service =
                    hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                        r.fetch_add(1, Ordering::SeqCst);
                        v.lock().unwrap().push(req.version());
                        let status = if d.load(Ordering::SeqCst) {
                            StatusCode::SERVICE_UNAVAILABLE
                        } else {
                            StatusCode::OK
                        };
                        async move {
                            let mut response = http::Response::new(http_body_util::Full::new(
                                Bytes::from_static(name.as_bytes()),
                            ));
                            *response.status_mut() = status;
                            Ok::<_, std::convert::Infallible>(response)
                        }
                    });
                let io = hyper_util::rt::TokioIo::new(tcp);
                if h2 {
                    let _ = hyper::server::conn::http2::Builder::new(
                        hyper_util::rt::TokioExecutor::new(),
                    )
                    .serve_connection(io, service)
                    .await;
                } else {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(io, service)
                        .await;
                }
            });
        }
    });
    Good {
        addr,
        requests,
        versions,
        down,
    }
}

/// An upstream that reads each request head and hangs up without answering (a crashed
/// worker): a protocol error after the request was sent.
async fn hang_up() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let heads = Arc::new(AtomicUsize::new(0));
    let counted = heads.clone();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            let counted = counted.clone();
            tokio::spawn(async move {
                let mut seen = Vec::new();
                let mut buf = [0u8; 4096];
                while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tcp.read(&mut buf).await {
                        Ok(n) if n > 0 => seen.extend_from_slice(&buf[..n]),
                        _ => return,
                    }
                }
                counted.fetch_add(1, Ordering::SeqCst);
            });
        }
    });
    (addr, heads)
}

fn request(method: Method, body: &'static [u8]) -> Request<origin::Body> {
    let body = if body.is_empty() {
        origin::body::empty()
    } else {
        origin::body::full(Bytes::from_static(body))
    };
    Request::builder()
        .method(method)
        .uri("/thing")
        .header("host", "viewer.example")
        .body(body)
        .unwrap()
}

async fn body_of(answer: origin::http::OriginResponse) -> Bytes {
    let body = answer.response.into_body().collect();
    tokio::time::timeout(WAIT, body)
        .await
        .expect("body not bounded")
        .unwrap()
        .to_bytes()
}

async fn send(
    origin: &HttpOrigin,
    req: Request<origin::Body>,
) -> Result<origin::http::OriginResponse, OriginError> {
    let fwd = ForwardedFor::new("192.0.2.1".parse().unwrap(), true);
    tokio::time::timeout(WAIT, origin.send(req, &fwd, Instant::now()))
        .await
        .expect("origin exchange not bounded")
}

#[tokio::test]
async fn only_safe_requests_are_replayed_and_on_the_next_upstream() {
    let (broken, heads) = hang_up().await;
    let backup = good("backup", false).await;
    let origin = HttpOrigin::new(config(&[broken, backup.addr])).unwrap();

    // GET is idempotent: the hang-up is replayed on the secondary.
    let answer = send(&origin, request(Method::GET, b"")).await.unwrap();
    assert_eq!(answer.attempts, 2);
    assert_eq!(answer.response.status(), 200);
    let body = body_of(answer).await;
    assert_eq!(&body[..], b"backup");
    assert_eq!(heads.load(Ordering::SeqCst), 1);
    assert_eq!(backup.requests.load(Ordering::SeqCst), 1);

    // POST is not: the primary may have acted on it, so the error is the answer.
    let error = send(&origin, request(Method::POST, b""))
        .await
        .err()
        .unwrap();
    assert!(matches!(error, OriginError::Protocol { .. }), "{error}");
    assert_eq!(heads.load(Ordering::SeqCst), 2);
    assert_eq!(
        backup.requests.load(Ordering::SeqCst),
        1,
        "POST was replayed"
    );

    // A streamed body is gone once sent: even a PUT (idempotent) is not replayed.
    let error = send(&origin, request(Method::PUT, b"payload"))
        .await
        .err()
        .unwrap();
    assert!(matches!(error, OriginError::Protocol { .. }), "{error}");
    assert_eq!(
        backup.requests.load(Ordering::SeqCst),
        1,
        "PUT with a body was replayed"
    );
}

#[tokio::test]
async fn a_refused_connection_is_replayed_even_for_post() {
    // A port with nothing listening: the request never left, so any method may go on.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let backup = good("backup", false).await;
    let origin = HttpOrigin::new(config(&[closed, backup.addr])).unwrap();
    let answer = send(&origin, request(Method::POST, b"")).await.unwrap();
    assert_eq!(
        (answer.attempts, answer.response.status()),
        (2, StatusCode::OK)
    );
}

#[tokio::test]
async fn the_total_timeout_ends_a_body_that_trickles() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = tcp.read(&mut buf).await;
                let _ = tcp
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\nfirst bytes")
                    .await;
                // The rest never comes within the exchange's time.
                tokio::time::sleep(WAIT).await;
            });
        }
    });
    let mut cfg = config(&[addr]);
    cfg.total_timeout = Duration::from_millis(600);
    let origin = HttpOrigin::new(cfg).unwrap();
    let started = Instant::now();
    let answer = send(&origin, request(Method::GET, b"")).await.unwrap();
    assert_eq!(answer.response.status(), 200);
    let body = tokio::time::timeout(WAIT, answer.response.into_body().collect())
        .await
        .expect("body not bounded by the total timeout");
    assert!(body.is_err(), "a cut body must end with an error");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(550) && took < Duration::from_secs(5),
        "{took:?}"
    );
}

#[tokio::test]
async fn http2_with_prior_knowledge() {
    let upstream = good("h2", true).await;
    let mut cfg = config(&[upstream.addr]);
    cfg.http2_only = true;
    let origin = HttpOrigin::new(cfg).unwrap();
    for _ in 0..3 {
        let answer = send(&origin, request(Method::GET, b"")).await.unwrap();
        assert_eq!(answer.response.version(), Version::HTTP_2);
        let body = body_of(answer).await;
        assert_eq!(&body[..], b"h2");
    }
    let versions = upstream.versions.lock().unwrap().clone();
    assert_eq!(versions, vec![Version::HTTP_2; 3]);
}

#[tokio::test]
async fn health_checks_take_an_upstream_out_and_bring_it_back() {
    let primary = good("primary", false).await;
    let secondary = good("secondary", false).await;
    let mut cfg = config(&[primary.addr, secondary.addr]);
    cfg.health = Some(HealthCheck {
        path: "/health".into(),
        interval: Duration::from_millis(50),
        timeout: Duration::from_millis(500),
        unhealthy_after: 2,
        healthy_after: 2,
    });
    let origin = HttpOrigin::new(cfg).unwrap();
    let healthy = |o: &HttpOrigin| o.health().iter().map(|(_, up)| *up).collect::<Vec<_>>();
    let wait_for = |want: Vec<bool>| {
        let origin = origin.clone();
        async move {
            let deadline = Instant::now() + WAIT;
            while healthy(&origin) != want {
                assert!(Instant::now() < deadline, "health never became {want:?}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };

    primary.down.store(true, Ordering::SeqCst);
    wait_for(vec![false, true]).await;
    let answer = send(&origin, request(Method::GET, b"")).await.unwrap();
    let body = body_of(answer).await;
    assert_eq!(&body[..], b"secondary", "traffic stays off a down primary");

    primary.down.store(false, Ordering::SeqCst);
    wait_for(vec![true, true]).await;
    let answer = send(&origin, request(Method::GET, b"")).await.unwrap();
    let body = body_of(answer).await;
    assert_eq!(&body[..], b"primary", "a recovered primary is first again");
}
