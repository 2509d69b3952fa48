//! HTTP/1.1 and HTTP/2 on TCP: TLS with ALPN, or plaintext HTTP/1.1 behind a CDN that
//! terminates TLS. hyper serves the connection; every request goes to the pipeline.

use super::conn_limit::ConnPermit;
use super::h2_send::{self, StreamExecutor};
use super::linger::LingeringTcp;
use super::stall::{StallGuard, StallLimits};
use super::Shared;
use crate::config::Limits;
use crate::pipeline::Conn;
use http::header::ALT_SVC;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use origin::BoxError;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

/// Accepts until `stop` turns true, then closes idle connections, sends GOAWAY on HTTP/2
/// ones, and returns once every connection has finished its in-flight requests.
pub async fn serve(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) {
    let graceful = GracefulShutdown::new();
    let builders = Arc::new(Builders::new(&shared));
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, client)) => {
                    let Some(permit) = shared.per_ip.try_acquire(client.ip()) else {
                        tracing::debug!(%client, "connection refused: per-IP limit");
                        continue;
                    };
                    let (shared, builders, tls) = (shared.clone(), builders.clone(), tls.clone());
                    let watcher = graceful.watcher();
                    tokio::spawn(connection(stream, client, tls, shared, builders, watcher, permit));
                }
                // Out of file descriptors and the like: back off instead of spinning.
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            _ = stop.changed() => break,
        }
    }
    drop(listener);
    graceful.shutdown().await;
    shared.lingering.wait_idle().await;
}

/// hyper connection builders, configured once with the limits.
struct Builders {
    http1: auto::Builder<StreamExecutor>,
    limits: Limits,
}

impl Builders {
    fn new(shared: &Shared) -> Self {
        let limits = &shared.limits;
        // HTTP/1.1 spawns no stream tasks; the executor is never used.
        let executor = StreamExecutor {
            limits: stall_limits(limits),
            conn: Arc::default(),
        };
        let mut http1 = auto::Builder::new(executor).http1_only();
        http1
            .http1()
            .timer(TokioTimer::new())
            // Slowloris: the whole request head must arrive within this time.
            .header_read_timeout(limits.header_read_timeout)
            .max_buf_size(limits.max_header_bytes)
            .max_headers(limits.max_headers)
            .keep_alive(true);
        Builders {
            http1,
            limits: limits.clone(),
        }
    }

    /// One per HTTP/2 connection: its streams share the connection's send progress
    /// (h2_send.rs).
    fn http2(&self) -> auto::Builder<StreamExecutor> {
        let limits = &self.limits;
        let executor = StreamExecutor {
            limits: stall_limits(limits),
            conn: Arc::default(),
        };
        let mut http2 = auto::Builder::new(executor).http2_only();
        http2
            .http2()
            .timer(TokioTimer::new())
            .max_concurrent_streams(limits.max_concurrent_streams)
            .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX))
            // No keep-alive PINGs: hyper sends them on idle connections too, and their
            // bytes would keep an idle viewer's connection open past `idle_timeout` (the
            // stall guard counts bytes). The idle timeout is what reaps dead peers.
            .keep_alive_interval(None);
        http2
    }
}

fn stall_limits(limits: &Limits) -> StallLimits {
    StallLimits {
        idle_timeout: limits.idle_timeout,
        min_send_rate: limits.min_send_rate,
        send_rate_window: limits.send_rate_window,
    }
}

async fn connection(
    stream: TcpStream,
    client: SocketAddr,
    tls: Option<TlsAcceptor>,
    shared: Arc<Shared>,
    builders: Arc<Builders>,
    watcher: Watcher,
    permit: ConnPermit,
) {
    let _ = stream.set_nodelay(true);
    let stream = LingeringTcp::new(stream, shared.lingering.clone(), Some(permit));
    let io = StallGuard::new(stream, stall_limits(&shared.limits));
    let Some(acceptor) = tls else {
        let _open = shared.metrics.connections.open("h1");
        serve_http(
            io,
            Conn::new(client, false),
            &builders.http1,
            shared,
            watcher,
        )
        .await;
        return;
    };
    let handshake = tokio::time::timeout(shared.limits.tls_handshake_timeout, acceptor.accept(io));
    let stream = match handshake.await {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => {
            tracing::debug!(%client, error = %e, "TLS handshake failed");
            return;
        }
        Err(_) => {
            tracing::debug!(%client, "TLS handshake timed out");
            return;
        }
    };
    let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
    let http2;
    let builder = if h2 {
        http2 = builders.http2();
        &http2
    } else {
        &builders.http1
    };
    let _open = shared
        .metrics
        .connections
        .open(if h2 { "h2" } else { "h1" });
    serve_http(stream, Conn::new(client, true), builder, shared, watcher).await;
}

async fn serve_http<IO>(
    io: IO,
    conn: Conn,
    builder: &auto::Builder<StreamExecutor>,
    shared: Arc<Shared>,
    watcher: Watcher,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let conn = Arc::new(conn);
    let client = conn.client;
    let service = hyper::service::service_fn(move |req: http::Request<Incoming>| {
        let (shared, conn) = (shared.clone(), conn.clone());
        async move {
            let req = req.map(|body| body.map_err(|e| -> BoxError { Box::new(e) }).boxed_unsync());
            let response = shared.pipeline().handle(req, &conn).await;
            let mut response = response.map(h2_send::watch_body);
            // Only viewers on TLS can switch to h3; behind a TLS-terminating CDN the
            // plaintext listener's Alt-Svc would point viewers at the wrong place.
            if let (true, Some(alt_svc)) = (conn.tls, &shared.alt_svc) {
                response.headers_mut().insert(ALT_SVC, alt_svc.clone());
            }
            Ok::<_, Infallible>(response)
        }
    });
    let connection = builder.serve_connection(TokioIo::new(io), service);
    if let Err(e) = watcher.watch(connection).await {
        tracing::debug!(%client, error = %e, "connection ended with an error");
    }
}
