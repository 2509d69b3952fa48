//! The floor the node's HTTP/1.1 proxy path is measured against: a hyper server that
//! forwards every request to one origin and nothing else (no routing, limits, forwarding
//! fields, timeouts, metrics or logs). `bench/floor.sh` runs it beside the node and nginx.
//!
//! `floor_proxy pooled|in-task ORIGIN_ADDR` prints its port, then serves on 127.0.0.1:
//!
//! - `pooled`: hyper-util's pooled client, as the node uses. Each exchange crosses tasks:
//!   the request goes to the connection's task through a channel, the response comes back
//!   through another.
//! - `in-task`: a hyper client connection driven by the request's own task, kept in a
//!   pool between requests (how Pingora-style proxies avoid the hand-offs).
//!
//! - `static`: no origin at all; every request gets the same 1 KiB body from memory, with
//!   the fields of a cached answer. The floor for a cache hit: what hyper alone costs.
//!
//! Plain HTTP/1.1 with a bodiless request, on a current-thread runtime like the node's
//! `workers = 1`.

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::{Empty, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1 as client;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::future::{poll_fn, Future};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use tokio::net::{TcpListener, TcpStream};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// An idle origin connection: the handle to send on and the connection state machine,
/// which only moves when the task using it polls it.
struct Idle {
    sender: client::SendRequest<Empty<Bytes>>,
    connection: client::Connection<TokioIo<TcpStream>, Empty<Bytes>>,
}

type Pool = Arc<Mutex<Vec<Idle>>>;

/// The origin's response body; polling it also drives the origin connection, which goes
/// back to the pool once the body is complete.
struct Streamed {
    body: Incoming,
    origin: Option<Idle>,
    pool: Pool,
}

impl Body for Streamed {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = &mut *self;
        if let Some(idle) = this.origin.as_mut() {
            if Pin::new(&mut idle.connection).poll(cx).is_ready() {
                // Closed or failed: the body below reports how.
                this.origin = None;
            }
        }
        let frame = Pin::new(&mut this.body).poll_frame(cx);
        let done = match &frame {
            Poll::Ready(None) => true,
            Poll::Ready(Some(Ok(_))) => this.body.is_end_stream(),
            _ => false,
        };
        if done {
            if let Some(idle) = this.origin.take() {
                this.pool
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(idle);
            }
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// A connection ready to send on: an idle pooled one that is still open, else a new one.
async fn checkout(pool: &Pool, origin: SocketAddr) -> Result<Idle, hyper::Error> {
    loop {
        let pooled = pool.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let fresh = pooled.is_none();
        let mut idle = match pooled {
            Some(idle) => idle,
            None => {
                // A floor measurement needs its origin: without it there is nothing to measure.
                let tcp = TcpStream::connect(origin).await.unwrap_or_else(|e| {
                    eprintln!("cannot connect to the origin {origin}: {e}");
                    std::process::exit(1)
                });
                let _ = tcp.set_nodelay(true);
                let (sender, connection) = client::handshake(TokioIo::new(tcp)).await?;
                Idle { sender, connection }
            }
        };
        let mut closed = false;
        let ready = poll_fn(|cx| {
            if !closed && Pin::new(&mut idle.connection).poll(cx).is_ready() {
                closed = true;
            }
            idle.sender.poll_ready(cx)
        })
        .await;
        match ready {
            Ok(()) if !closed => return Ok(idle),
            Err(e) if fresh => return Err(e),
            // The origin closed it while it sat in the pool: take another.
            _ => continue,
        }
    }
}

async fn in_task(
    req: Request<Incoming>,
    pool: Pool,
    origin: SocketAddr,
) -> Result<Response<Streamed>, hyper::Error> {
    let (parts, _) = req.into_parts();
    let outgoing = Request::from_parts(parts, Empty::<Bytes>::new());
    let mut idle = checkout(&pool, origin).await?;
    let mut closed = false;
    let mut response = std::pin::pin!(idle.sender.send_request(outgoing));
    let response = poll_fn(|cx| {
        if !closed && Pin::new(&mut idle.connection).poll(cx).is_ready() {
            closed = true;
        }
        response.as_mut().poll(cx)
    })
    .await?;
    let (parts, body) = response.into_parts();
    let mut origin = (!closed).then_some(idle);
    // hyper never polls an empty body (HEAD, 204, 304): its connection goes back now.
    if body.is_end_stream() {
        if let Some(idle) = origin.take() {
            pool.lock().unwrap_or_else(|e| e.into_inner()).push(idle);
        }
    }
    Ok(Response::from_parts(parts, Streamed { body, origin, pool }))
}

/// A cached 1 KiB answer: the body is shared, never copied, like a cache entry's.
fn stored(body: &Bytes) -> Response<Full<Bytes>> {
    Response::builder()
        .header("content-type", "application/octet-stream")
        .header("cache-control", "max-age=3600")
        .header("etag", "\"5f3a-400\"")
        .header("age", "1")
        .body(Full::new(body.clone()))
        .expect("response")
}

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Pooled,
    InTask,
    Static,
}

fn main() {
    let mut args = std::env::args().skip(1);
    let mode = match args.next().as_deref() {
        Some("in-task") => Mode::InTask,
        Some("pooled") => Mode::Pooled,
        Some("static") => Mode::Static,
        _ => {
            eprintln!("usage: floor_proxy pooled|in-task ORIGIN_ADDR | floor_proxy static");
            std::process::exit(2);
        }
    };
    let origin: SocketAddr = match (mode, args.next()) {
        (Mode::Static, _) => SocketAddr::from(([127, 0, 0, 1], 0)),
        (_, Some(origin)) => origin.parse().expect("ORIGIN_ADDR is host:port"),
        (_, None) => {
            eprintln!(
                "{}: needs ORIGIN_ADDR",
                std::env::args().nth(1).unwrap_or_default()
            );
            std::process::exit(2);
        }
    };
    let body = Bytes::from(vec![b'x'; 1024]);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        println!("{}", listener.local_addr().expect("address").port());
        let pool: Pool = Arc::default();
        let mut connector = hyper_util::client::legacy::connect::HttpConnector::new();
        connector.set_nodelay(true);
        let pooled = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(256)
            .build(connector);
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let _ = tcp.set_nodelay(true);
            let (pool, pooled, body) = (pool.clone(), pooled.clone(), body.clone());
            tokio::spawn(async move {
                let io = TokioIo::new(tcp);
                let server = hyper::server::conn::http1::Builder::new();
                if mode == Mode::Static {
                    let service = service_fn(move |_req: Request<Incoming>| {
                        std::future::ready(Ok::<_, std::convert::Infallible>(stored(&body)))
                    });
                    let _ = server.serve_connection(io, service).await;
                } else if mode == Mode::InTask {
                    let service = service_fn(move |req| in_task(req, pool.clone(), origin));
                    let _ = server.serve_connection(io, service).await;
                } else {
                    let service = service_fn(move |req: Request<Incoming>| {
                        let pooled = pooled.clone();
                        async move {
                            let (mut parts, _) = req.into_parts();
                            let target = parts.uri.path_and_query().map_or("/", |p| p.as_str());
                            parts.uri = format!("http://{origin}{target}")
                                .parse()
                                .expect("origin URL");
                            pooled
                                .request(Request::from_parts(parts, Empty::<Bytes>::new()))
                                .await
                        }
                    });
                    let _ = server.serve_connection(io, service).await;
                }
            });
        }
    });
}
