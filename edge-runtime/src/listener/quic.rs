//! HTTP/3 on QUIC (quinn + h3): the same pipeline as TCP, on the same port number over UDP.

use super::h2_send::{ConnProgress, MAX_SLICE};
use super::Shared;
use crate::config::Limits;
use crate::pipeline::Conn;
use bytes::{Buf, Bytes};
use h3::server::RequestStream;
use http::Method;
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};
use origin::{Body, BoxError};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinSet;

/// Socket buffer size asked for, each way.
const UDP_BUFFER_BYTES: usize = 4 << 20;

/// A quinn endpoint on `socket` speaking h3 with the node's certificates and limits.
pub fn endpoint(
    socket: std::net::UdpSocket,
    tls: Arc<rustls::ServerConfig>,
    limits: &Limits,
) -> std::io::Result<quinn::Endpoint> {
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls)
        .map_err(|e| std::io::Error::other(format!("QUIC TLS config: {e}")))?;
    let mut server = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    let mut transport = quinn::TransportConfig::default();
    transport.max_concurrent_bidi_streams(limits.max_concurrent_streams.into());
    transport.max_idle_timeout(quinn::IdleTimeout::try_from(limits.idle_timeout).ok());
    server.transport_config(Arc::new(transport));
    // The default socket buffers (~200 KiB) can overflow when a burst of viewers' packets
    // arrives between two reads; what overflows is lost and shrinks their congestion
    // windows. The kernel caps these at net.core.[rw]mem_max; less is fine.
    let sock = socket2::SockRef::from(&socket);
    for (way, set) in [
        ("receive", sock.set_recv_buffer_size(UDP_BUFFER_BYTES)),
        ("send", sock.set_send_buffer_size(UDP_BUFFER_BYTES)),
    ] {
        if let Err(e) = set {
            tracing::debug!(error = %e, "UDP {way} buffer size not set");
        }
    }
    quinn::Endpoint::new(
        quinn::EndpointConfig::default(),
        Some(server),
        socket,
        Arc::new(quinn::TokioRuntime),
    )
}

/// Accepts QUIC connections until `stop` turns true; then every connection sends GOAWAY,
/// finishes its in-flight requests and closes, and this returns.
pub async fn serve(
    endpoint: quinn::Endpoint,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) {
    let mut connections = JoinSet::new();
    let handshaking = Arc::new(AtomicU32::new(0));
    loop {
        tokio::select! {
            incoming = endpoint.accept() => {
                let Some(incoming) = incoming else { break };
                let client = incoming.remote_address();
                // A flood of Initials (often from spoofed addresses, to reflect the
                // handshake at a victim) piles up handshakes: past the threshold, a client
                // must first echo a Retry token, which costs a spoofer everything and a
                // real viewer one round trip. Quinn limits what the node sends to an
                // unvalidated address to 3x what it received either way.
                if !incoming.remote_address_validated()
                    && handshaking.load(Ordering::Relaxed) >= shared.limits.quic_retry_above
                {
                    shared.metrics.connections.quic_retries.fetch_add(1, Ordering::Relaxed);
                    if let Err(e) = incoming.retry() {
                        e.into_incoming().ignore();
                    }
                    continue;
                }
                let Some(permit) = shared.per_ip.try_acquire(client.ip()) else {
                    tracing::debug!(%client, "QUIC connection refused: per-IP limit");
                    incoming.refuse();
                    continue;
                };
                let (shared, stop) = (shared.clone(), stop.clone());
                let in_handshake = Handshake::start(&handshaking);
                connections.spawn(async move {
                    let handshake = incoming.await;
                    drop(in_handshake);
                    match handshake {
                        Ok(conn) => connection(conn, client, shared, stop).await,
                        Err(e) => tracing::debug!(%client, error = %e, "QUIC handshake failed"),
                    }
                    drop(permit);
                });
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            _ = stop.changed() => break,
        }
    }
    // No new connections from here on: each is refused (CONNECTION_REFUSED) rather than
    // left unanswered, so a viewer fails over at once instead of waiting out its handshake
    // timeout. Existing connections drain on their own `stop` watch.
    loop {
        tokio::select! {
            Some(incoming) = endpoint.accept() => incoming.refuse(),
            joined = connections.join_next() => {
                if joined.is_none() {
                    break;
                }
            }
        }
    }
    endpoint.wait_idle().await;
}

/// Counts a handshake in progress for as long as it lives.
struct Handshake(Arc<AtomicU32>);

impl Handshake {
    fn start(count: &Arc<AtomicU32>) -> Handshake {
        count.fetch_add(1, Ordering::Relaxed);
        Handshake(count.clone())
    }
}

impl Drop for Handshake {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn connection(
    quic: quinn::Connection,
    client: SocketAddr,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) {
    let h3_conn = h3::server::builder()
        .max_field_section_size(shared.limits.max_header_bytes as u64)
        .build::<_, Bytes>(h3_quinn::Connection::new(quic.clone()))
        .await;
    let mut h3_conn = match h3_conn {
        Ok(c) => c,
        Err(e) => {
            tracing::debug!(%client, error = %e, "h3 setup failed");
            return;
        }
    };
    let conn = Arc::new(Conn::new(client, true));
    let progress = Arc::new(ConnProgress::default());
    let _open = shared.metrics.connections.open("h3");
    let mut requests = JoinSet::new();
    let mut draining = false;
    loop {
        tokio::select! {
            accepted = h3_conn.accept() => match accepted {
                Ok(Some(resolver)) => {
                    let (shared, conn, progress) = (shared.clone(), conn.clone(), progress.clone());
                    requests.spawn(async move {
                        // Slowloris over h3: a HEADERS frame that never completes (or
                        // announces a gigabyte) holds the stream only this long; dropping
                        // the resolver drops the stream.
                        let head = tokio::time::timeout(
                            shared.limits.header_read_timeout,
                            resolver.resolve_request(),
                        );
                        match head.await {
                            Ok(Ok((req, stream))) => request(req, stream, &conn, &shared, &progress).await,
                            // h3 has already answered 431 or reset the stream.
                            Ok(Err(e)) => tracing::debug!(%client, error = %e, "malformed h3 request"),
                            Err(_) => tracing::debug!(%client, "h3 request head not complete in time"),
                        }
                    });
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::debug!(%client, error = %e, "h3 connection ended");
                    break;
                }
            },
            Some(_) = requests.join_next(), if !requests.is_empty() => {
                if draining && requests.is_empty() {
                    break;
                }
            }
            _ = stop.changed(), if !draining => {
                draining = true;
                // RFC 9114 §5.2: GOAWAY tells the client which requests will be served.
                if h3_conn.shutdown(0).await.is_err() || requests.is_empty() {
                    break;
                }
            }
        }
    }
    while requests.join_next().await.is_some() {}
    if draining {
        // A finished request task has only handed its last bytes to quinn, which may
        // still hold megabytes the viewer has not acknowledged; closing now would discard
        // them. Clients close the connection themselves after a GOAWAY once their
        // requests are done (RFC 9114 §5.2). One that stays open (an idle viewer) is
        // closed once the connection has gone quiet — no acknowledgement arrived and
        // nothing was sent for a whole grace period, so nothing is left in flight —
        // instead of holding the node until the drain timeout (which still bounds all).
        let grace = (quic.rtt() * 8).max(DRAIN_GRACE_FLOOR);
        let mut seen = traffic(&quic);
        while tokio::time::timeout(grace, quic.closed()).await.is_err() {
            let now = traffic(&quic);
            if now == seen {
                quic.close(H3_NO_ERROR.into(), b"draining");
                break;
            }
            seen = now;
        }
    }
}

/// How long a draining connection must stay quiet before the node closes it: many round
/// trips on any path a viewer uses.
const DRAIN_GRACE_FLOOR: Duration = Duration::from_secs(1);

/// Acknowledgements received and bytes sent so far: while either moves, data is still
/// being delivered.
fn traffic(quic: &quinn::Connection) -> (u64, u64) {
    let stats = quic.stats();
    (stats.frame_rx.acks, stats.udp_tx.bytes)
}

/// RFC 9114 §8.1.
const H3_NO_ERROR: u32 = 0x100;

/// Boxed: a request's state machine (the pipeline's and h3's) is ~13 KB, and a request
/// task holding it inline copied it several times on its way into the task and out
/// (memmove fell from ~11 % to ~6 % of the samples of a 1 KiB h3 cache hit).
fn request<'a>(
    req: http::Request<()>,
    stream: RequestStream<h3_quinn::BidiStream<Bytes>, Bytes>,
    conn: &'a Conn,
    shared: &'a Shared,
    progress: &'a ConnProgress,
) -> Pin<Box<impl Future<Output = ()> + Send + 'a>> {
    Box::pin(serve_request(req, stream, conn, shared, progress))
}

async fn serve_request(
    req: http::Request<()>,
    stream: RequestStream<h3_quinn::BidiStream<Bytes>, Bytes>,
    conn: &Conn,
    shared: &Shared,
    progress: &ConnProgress,
) {
    let client = conn.client;
    let (mut send, recv) = stream.split();
    let (body, unread) = request_body(&req, recv);
    let response = shared.pipeline().handle(req.map(|()| body), conn).await;
    let (parts, mut body) = response.into_parts();
    if let Err(e) = send
        .send_response(http::Response::from_parts(parts, ()))
        .await
    {
        tracing::debug!(%client, error = %e, "h3 response head not sent");
        return;
    }
    while let Some(frame) = body.frame().await {
        let sent = match frame {
            Ok(frame) => match frame.into_data() {
                Ok(data) => send_paced(&mut send, data, &shared.limits, progress).await,
                Err(frame) => match frame.into_trailers() {
                    Ok(trailers) => send.send_trailers(trailers).await.map_err(SendError::H3),
                    Err(_) => Ok(()),
                },
            },
            Err(e) => {
                // The origin failed mid-body: reset the stream so the viewer sees an error
                // rather than a response that merely looks short.
                tracing::debug!(%client, error = %e, "response body failed");
                send.stop_stream(h3::error::Code::H3_INTERNAL_ERROR);
                return;
            }
        };
        match sent {
            Ok(()) => {}
            Err(SendError::Slow) => {
                tracing::debug!(%client, "h3 viewer reading below the minimum send rate");
                send.stop_stream(h3::error::Code::H3_REQUEST_CANCELLED);
                return;
            }
            Err(SendError::H3(e)) => {
                tracing::debug!(%client, error = %e, "h3 send failed");
                return;
            }
        }
    }
    let _ = send.finish().await;
    // RFC 9114 §4.1: a server that answers before the request is complete asks the client
    // to stop with H3_NO_ERROR. Dropping the stream instead would stop it with code 0,
    // which clients report as an error.
    if let Some(mut recv) = unread {
        recv.stop_sending(h3::error::Code::H3_NO_ERROR);
    }
}

enum SendError {
    /// The viewer took less than the minimum send rate (slow read).
    Slow,
    H3(h3::error::StreamError),
}

/// Sends `data` in slices of at most [`MAX_SLICE`]. Slow read over QUIC: the viewer's
/// flow-control credit decides when a send completes. As on HTTP/2 (h2_send.rs), a slice
/// may take the send-rate window plus its time at the minimum rate, and is cut only when,
/// besides, no stream of the connection delivered a slice for a whole window. A cache hit
/// is one chunk the size of the object, hence the slices (which share its buffer).
async fn send_paced(
    send: &mut RequestStream<h3_quinn::SendStream<Bytes>, Bytes>,
    mut data: Bytes,
    limits: &Limits,
    progress: &ConnProgress,
) -> Result<(), SendError> {
    while !data.is_empty() {
        let slice = data.split_to(data.len().min(MAX_SLICE));
        if limits.min_send_rate == 0 {
            send.send_data(slice).await.map_err(SendError::H3)?;
            continue;
        }
        let own = tokio::time::Instant::now()
            + limits.send_rate_window
            + Duration::from_secs(slice.len() as u64 / limits.min_send_rate);
        let sending = send.send_data(slice);
        tokio::pin!(sending);
        loop {
            let deadline = own.max(progress.quiet_deadline(limits.send_rate_window));
            match tokio::time::timeout_at(deadline, &mut sending).await {
                Ok(sent) => {
                    sent.map_err(SendError::H3)?;
                    progress.touch();
                    break;
                }
                // Another stream delivered meanwhile: wait on.
                Err(_) if progress.quiet_deadline(limits.send_rate_window) > deadline => {}
                Err(_) => return Err(SendError::Slow),
            }
        }
    }
    Ok(())
}

type RecvStream = RequestStream<h3_quinn::RecvStream, Bytes>;

/// The request body as a stream of frames. A GET or HEAD without `Content-Length` has no
/// body to read (RFC 9110 §9.3.1), which also lets the origin connector replay it; its
/// receive stream is handed back, unread, to be dropped after the response.
fn request_body(req: &http::Request<()>, recv: RecvStream) -> (Body, Option<RecvStream>) {
    let bodiless = matches!(*req.method(), Method::GET | Method::HEAD)
        && req
            .headers()
            .get(http::header::CONTENT_LENGTH)
            .is_none_or(|v| v.as_bytes() == b"0");
    if bodiless {
        return (origin::body::empty(), Some(recv));
    }
    let frames = futures_util::stream::unfold(Some(recv), |state| async move {
        let mut recv = state?;
        match recv.recv_data().await {
            Ok(Some(mut chunk)) => {
                let bytes = chunk.copy_to_bytes(chunk.remaining());
                Some((Ok(Frame::data(bytes)), Some(recv)))
            }
            Ok(None) => None,
            Err(e) => Some((Err(Box::new(e) as BoxError), None)),
        }
    });
    (StreamBody::new(frames).boxed_unsync(), None)
}
