//! Real clients for the three protocols, trusting the node's generated certificate.

use bytes::{Buf, Bytes, BytesMut};
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proto {
    H1,
    H2,
    H3,
}

pub const ALL: [Proto; 3] = [Proto::H1, Proto::H2, Proto::H3];

pub fn tls_config(ca: &Path, alpn: &[&[u8]]) -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    config
}

/// One GET over the given protocol; `url` is `https://localhost:PORT/path`.
pub async fn get(proto: Proto, ca: &Path, url: &str, headers: &[(&str, &str)]) -> Answer {
    let fut = async {
        match proto {
            Proto::H1 | Proto::H2 => get_tcp(proto, ca, url, headers).await,
            Proto::H3 => {
                let uri: http::Uri = url.parse().unwrap();
                let addr: SocketAddr = format!("127.0.0.1:{}", uri.port_u16().unwrap())
                    .parse()
                    .unwrap();
                H3Client::connect(addr, ca).await.get(url, headers).await
            }
        }
    };
    tokio::time::timeout(super::WAIT, fut)
        .await
        .expect("request timed out")
}

/// Sends a GET over h1 or h2 (ALPN offers exactly that protocol) and returns the
/// response with its body still unread.
pub async fn start_tcp(
    proto: Proto,
    ca: &Path,
    url: &str,
    headers: &[(&str, &str)],
) -> http::Response<hyper::body::Incoming> {
    let builder = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls_config(ca, &[]))
        .https_only();
    let mut req = Request::get(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req.body(Empty::<Bytes>::new()).unwrap();
    let response = if proto == Proto::H2 {
        let client = Client::builder(TokioExecutor::new())
            .http2_only(true)
            .build(builder.enable_http2().build());
        client.request(req).await
    } else {
        let client = Client::builder(TokioExecutor::new()).build(builder.enable_http1().build());
        client.request(req).await
    };
    response.expect("request")
}

async fn get_tcp(proto: Proto, ca: &Path, url: &str, headers: &[(&str, &str)]) -> Answer {
    let response = start_tcp(proto, ca, url, headers).await;
    let expected = if proto == Proto::H2 {
        http::Version::HTTP_2
    } else {
        http::Version::HTTP_11
    };
    assert_eq!(response.version(), expected);
    let (parts, body) = response.into_parts();
    let body = body.collect().await.expect("body").to_bytes();
    Answer {
        status: parts.status,
        headers: parts.headers,
        body,
    }
}

/// An HTTP/3 connection (quinn + h3) that can carry several requests.
pub struct H3Client {
    pub endpoint: quinn::Endpoint,
    pub conn: quinn::Connection,
    send: h3::client::SendRequest<h3_quinn::OpenStreams, Bytes>,
    _driver: tokio::task::JoinHandle<()>,
}

/// A QUIC client endpoint on `local` that trusts `ca` and offers ALPN `h3`.
pub fn quic_endpoint(local: SocketAddr, ca: &Path) -> quinn::Endpoint {
    let mut tls = tls_config(ca, &[b"h3"]);
    tls.enable_early_data = false;
    let quic_tls = quinn::crypto::rustls::QuicClientConfig::try_from(tls).unwrap();
    let mut endpoint = quinn::Endpoint::client(local).unwrap();
    endpoint.set_default_client_config(quinn::ClientConfig::new(Arc::new(quic_tls)));
    endpoint
}

impl H3Client {
    pub async fn connect(addr: SocketAddr, ca: &Path) -> H3Client {
        H3Client::connect_from("127.0.0.1:0".parse().unwrap(), addr, ca).await
    }

    /// Connects from a chosen local address (another 127.0.0.0/8 address is another
    /// client to the node).
    pub async fn connect_from(local: SocketAddr, addr: SocketAddr, ca: &Path) -> H3Client {
        let endpoint = quic_endpoint(local, ca);
        let conn = endpoint
            .connect(addr, "localhost")
            .unwrap()
            .await
            .expect("QUIC handshake");
        let (mut driver, send) = h3::client::new(h3_quinn::Connection::new(conn.clone()))
            .await
            .expect("h3 setup");
        let driver = tokio::spawn(async move {
            let _ = std::future::poll_fn(|cx| driver.poll_close(cx)).await;
        });
        H3Client {
            endpoint,
            conn,
            send,
            _driver: driver,
        }
    }

    pub async fn get(&mut self, url: &str, headers: &[(&str, &str)]) -> Answer {
        let mut stream = self.start(url, headers).await;
        let response = stream.recv_response().await.expect("h3 response");
        let mut body = BytesMut::new();
        while let Some(mut chunk) = stream.recv_data().await.expect("h3 body") {
            body.extend_from_slice(&chunk.copy_to_bytes(chunk.remaining()));
        }
        let (parts, ()) = response.into_parts();
        Answer {
            status: parts.status,
            headers: parts.headers,
            body: body.freeze(),
        }
    }

    /// Sends a request with a body (no `Content-Length`: DATA frames only) and reads the
    /// whole answer.
    pub async fn send_body(&mut self, method: &str, url: &str, body: &[u8]) -> Answer {
        let req = Request::builder().method(method).uri(url).body(()).unwrap();
        let mut stream = self.send.send_request(req).await.expect("h3 send");
        // The node may answer (and stop our side) before the body is all sent.
        let _ = stream.send_data(Bytes::copy_from_slice(body)).await;
        let _ = stream.finish().await;
        let response = stream.recv_response().await.expect("h3 response");
        let mut all = BytesMut::new();
        while let Ok(Some(mut chunk)) = stream.recv_data().await {
            all.extend_from_slice(&chunk.copy_to_bytes(chunk.remaining()));
        }
        let (parts, ()) = response.into_parts();
        Answer {
            status: parts.status,
            headers: parts.headers,
            body: all.freeze(),
        }
    }

    /// Sends a GET and returns the stream, for tests that read the response slowly.
    pub async fn start(
        &mut self,
        url: &str,
        headers: &[(&str, &str)],
    ) -> h3::client::RequestStream<h3_quinn::BidiStream<Bytes>, Bytes> {
        let mut req = Request::get(url);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let mut stream = self
            .send
            .send_request(req.body(()).unwrap())
            .await
            .expect("h3 send");
        // RFC 9114 §4.1: the server may answer (and stop our side) before we finish; the
        // response is still valid, so a failed finish is not an error.
        let _ = stream.finish().await;
        stream
    }
}

/// A raw TLS connection speaking HTTP/1.1 by hand, for malformed requests.
pub async fn raw_tls(
    addr: SocketAddr,
    ca: &Path,
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    raw_tls_alpn(addr, ca, b"http/1.1").await
}

/// A raw TLS connection that negotiated `alpn` (`h2` for hand-written frames).
pub async fn raw_tls_alpn(
    addr: SocketAddr,
    ca: &Path,
    alpn: &[u8],
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let connector = tokio_rustls::TlsConnector::from(Arc::new(tls_config(ca, &[alpn])));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    connector
        .connect("localhost".try_into().unwrap(), tcp)
        .await
        .expect("TLS handshake")
}

/// The HTTP/2 connection preface (RFC 9113 §3.4).
pub const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// One HTTP/2 frame read off the front of `buf` (RFC 9113 §4.1): type, flags, stream and
/// payload; `None` until a whole frame is there.
pub fn take_h2_frame(buf: &mut Vec<u8>) -> Option<(u8, u8, u32, Vec<u8>)> {
    if buf.len() < 9 {
        return None;
    }
    let len = (usize::from(buf[0]) << 16) | (usize::from(buf[1]) << 8) | usize::from(buf[2]);
    if buf.len() < 9 + len {
        return None;
    }
    let (kind, flags) = (buf[3], buf[4]);
    let stream = u32::from_be_bytes([buf[5], buf[6], buf[7], buf[8]]) & 0x7fff_ffff;
    let payload = buf[9..9 + len].to_vec();
    buf.drain(..9 + len);
    Some((kind, flags, stream, payload))
}

/// A raw HTTP/2 frame: 9-byte header and payload (RFC 9113 §4.1).
pub fn h2_frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    f.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// An HPACK header block of literal fields without indexing, literal names (RFC 7541
/// §6.2.2), so any bytes can be sent.
pub fn hpack_literals(fields: &[(&[u8], &[u8])]) -> Vec<u8> {
    let mut block = Vec::new();
    for (name, value) in fields {
        block.push(0);
        prefixed_int(&mut block, 0, 7, name.len());
        block.extend_from_slice(name);
        prefixed_int(&mut block, 0, 7, value.len());
        block.extend_from_slice(value);
    }
    block
}

/// Writes `request` and reads until the server closes or `WAIT` passes; returns the text.
pub async fn exchange<S>(stream: &mut S, request: &[u8]) -> String
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stream.write_all(request).await.unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let read = async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    out.extend_from_slice(&buf[..n]);
                    // One response is enough: stop at the end of a head with no body.
                    if out.windows(4).any(|w| w == b"\r\n\r\n") && response_complete(&out) {
                        break;
                    }
                }
            }
        }
    };
    let _ = tokio::time::timeout(super::WAIT, read).await;
    String::from_utf8_lossy(&out).into_owned()
}

fn response_complete(bytes: &[u8]) -> bool {
    let text = String::from_utf8_lossy(bytes);
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        return false;
    };
    let length = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse::<usize>().ok())?
        })
        .unwrap_or(0);
    body.len() >= length
}

pub fn status_of(response: &str) -> u16 {
    response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {response:?}"))
}

/// An HTTP/3 HEADERS frame (RFC 9114 §7.2.2) whose field section uses only QPACK literal
/// field lines with literal names (RFC 9204 §4.5.6), so no encoder state is needed.
pub fn h3_headers_frame(fields: &[(&str, &str)]) -> Vec<u8> {
    let fields: Vec<(&[u8], &[u8])> = fields
        .iter()
        .map(|(n, v)| (n.as_bytes(), v.as_bytes()))
        .collect();
    h3_headers_frame_bytes(&fields)
}

/// As [`h3_headers_frame`], with any bytes in names and values.
pub fn h3_headers_frame_bytes(fields: &[(&[u8], &[u8])]) -> Vec<u8> {
    // Required Insert Count 0, Delta Base 0 (RFC 9204 §4.5.1).
    let mut block = vec![0u8, 0u8];
    for (name, value) in fields {
        prefixed_int(&mut block, 0b0010_0000, 3, name.len());
        block.extend_from_slice(name);
        prefixed_int(&mut block, 0, 7, value.len());
        block.extend_from_slice(value);
    }
    let mut frame = Vec::new();
    quic_varint(&mut frame, 0x01);
    quic_varint(&mut frame, block.len() as u64);
    frame.extend_from_slice(&block);
    frame
}

/// RFC 7541 §5.1 integer with an `n`-bit prefix; `flags` fills the bits above it.
fn prefixed_int(out: &mut Vec<u8>, flags: u8, n: u32, value: usize) {
    let max = (1usize << n) - 1;
    if value < max {
        out.push(flags | value as u8);
        return;
    }
    out.push(flags | max as u8);
    let mut rest = value - max;
    while rest >= 128 {
        out.push((rest % 128) as u8 | 0x80);
        rest /= 128;
    }
    out.push(rest as u8);
}

/// RFC 9000 §16 variable-length integer.
fn quic_varint(out: &mut Vec<u8>, v: u64) {
    match v {
        0..=63 => out.push(v as u8),
        64..=16383 => out.extend_from_slice(&(0x4000 | v as u16).to_be_bytes()),
        16384..=1_073_741_823 => out.extend_from_slice(&(0x8000_0000 | v as u32).to_be_bytes()),
        _ => out.extend_from_slice(&(0xc000_0000_0000_0000 | v).to_be_bytes()),
    }
}
