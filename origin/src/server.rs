//! The sample media origin's HTTP server (bin `origin`): a VOD library from a directory,
//! a live HLS stream, and a few endpoints that tests and benchmarks rely on.
//!
//! | path | answer |
//! |---|---|
//! | `/health` | 200 `ok` |
//! | `/bytes/<n>` | exactly `n` deterministic bytes, streamed, cacheable |
//! | `/status/<code>` | that status with a short body |
//! | `/delay/<ms>/<rest>` | waits, then answers `<rest>` |
//! | `/echo` | the request head as JSON (what a proxy forwarded) |
//! | `/live/<name>/index.m3u8`, `/live/<name>/seg_<n>.ts` | live HLS, rolling window |
//! | `/object/<name>?...` | a response shaped by its query (below), for cache tests |
//! | `/counts?path=/object/x` | how many requests this origin saw for that path |
//! | `/counts?connections` | how many TCP connections this origin accepted |
//!
//! `/object` parameters: `size` (bytes, default 1000), `v` (content version), `cc`
//! (`Cache-Control`), `etag` (answered with 304 on a matching `If-None-Match`), `lm`
//! (`Last-Modified`, unix seconds; without `etag`, answered with 304 on an
//! `If-Modified-Since` at or after it), `expires` (unix seconds), `hop=1` (hop-by-hop
//! fields a proxy must drop: `Connection: x-hop`, `X-Hop`, `Keep-Alive`,
//! `Proxy-Connection`, `Upgrade`), `sk` (`Surrogate-Key`),
//! `tag` (`Cache-Tag`), `age` (`Age`, seconds: an origin that is itself a cache),
//! `fail_after=N` (503 from the N+1th request for that path on), `vary`, `loc` (`Location`), `status`, `cookie=1` (`Set-Cookie`), `delay_ms` (before the head),
//! `chunk_ms` (between 16 KiB chunks), `truncate=1` (announce `size`, send half, abort),
//! `ct` (the Content-Type; default `application/octet-stream`), `reflect=a,b` (the values
//! of request fields `a` and `b` in `X-Reflected`), `chunked=1` (no `Content-Length`: sent
//! chunked over HTTP/1.1).
//! | anything else | a file under the library directory, with `Range` support |

use crate::body::{self, Body, BoxError};
use crate::range::RangeAnswer;
use crate::sample::{self, LiveStream};
use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};
use std::convert::Infallible;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::net::TcpListener;

/// Chunk size of generated bodies: large enough to keep per-chunk overhead negligible.
const CHUNK: usize = 64 * 1024;

pub struct SampleOrigin {
    root: PathBuf,
    name: String,
    counts: std::sync::Mutex<std::collections::HashMap<String, u64>>,
    /// TCP connections accepted, for tests of the node's connection reuse.
    connections: std::sync::atomic::AtomicU64,
    live: LiveStream,
    /// One chunk of the `/bytes` pattern, shared by every response (sliced, never copied).
    pattern: Bytes,
}

impl SampleOrigin {
    /// `root` holds the VOD library; `name` is sent as `X-Origin-Name` so tests can tell
    /// which origin answered.
    pub fn new(root: PathBuf, name: String) -> Arc<Self> {
        let pattern: Vec<u8> = (0..CHUNK).map(|i| (i % 251) as u8).collect();
        Arc::new(SampleOrigin {
            root,
            name,
            counts: Default::default(),
            connections: Default::default(),
            live: LiveStream::new(Duration::from_secs(2), 5, 32 * 1024, UNIX_EPOCH),
            pattern: Bytes::from(pattern),
        })
    }

    /// Serves HTTP/1.1 and HTTP/2 (prior knowledge) until the listener fails.
    pub async fn serve(self: Arc<Self>, listener: TcpListener) -> std::io::Result<()> {
        loop {
            let (stream, _) = listener.accept().await?;
            self.connections
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let _ = stream.set_nodelay(true);
            let origin = self.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| {
                    let origin = origin.clone();
                    async move { Ok::<_, Infallible>(origin.handle(req).await) }
                });
                let builder = hyper_util::server::conn::auto::Builder::new(
                    hyper_util::rt::TokioExecutor::new(),
                );
                let _ = builder
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    }

    pub async fn handle<B>(&self, req: Request<B>) -> Response<Body>
    where
        B: http_body::Body,
    {
        // What reached the origin, byte for byte: a digest of the body, for tests that
        // check a proxy forwards bodies whole.
        if req.uri().path() == "/echo-body" {
            use http_body_util::BodyExt;
            let (parts, body) = req.into_parts();
            return match body.collect().await {
                Ok(all) => {
                    let all = all.to_bytes();
                    let json = serde_json::json!({
                        "method": parts.method.as_str(),
                        "length": all.len(),
                        "body": String::from_utf8_lossy(&all[..all.len().min(64 << 10)]),
                    });
                    text(StatusCode::OK, &json.to_string())
                }
                Err(_) => text(StatusCode::BAD_REQUEST, "body failed\n"),
            };
        }
        let mut response = self.route(&req).await;
        if req.method() == Method::HEAD {
            *response.body_mut() = body::empty();
        }
        if let Ok(name) = HeaderValue::from_str(&self.name) {
            response.headers_mut().insert("x-origin-name", name);
        }
        response
    }

    async fn route<B>(&self, req: &Request<B>) -> Response<Body> {
        let any_method = req.uri().path() == "/echo" || req.uri().path().starts_with("/object/");
        if !matches!(*req.method(), Method::GET | Method::HEAD) && !any_method {
            return text(StatusCode::METHOD_NOT_ALLOWED, "GET or HEAD only\n");
        }
        let path = req.uri().path();
        let mut seen = 0;
        if path != "/counts" {
            let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
            let count = counts.entry(path.to_owned()).or_default();
            *count += 1;
            seen = *count;
        }
        if path == "/counts" && req.uri().query() == Some("connections") {
            let n = self.connections.load(std::sync::atomic::Ordering::Relaxed);
            return text(StatusCode::OK, &format!("{n}\n"));
        }
        if path == "/counts" {
            let wanted = query_param(req.uri().query(), "path").unwrap_or_default();
            let counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
            let n = counts.get(&wanted).copied().unwrap_or(0);
            return text(StatusCode::OK, &format!("{n}\n"));
        }
        if let Some(name) = path.strip_prefix("/object/") {
            // `fail_after=N`: a 503 from the (N+1)th request on, for origin-error tests.
            let failing = query_param(req.uri().query(), "fail_after")
                .and_then(|n| n.parse::<u64>().ok())
                .is_some_and(|n| seen > n);
            if failing {
                return text(StatusCode::SERVICE_UNAVAILABLE, "failing on purpose\n");
            }
            return object(name, req).await;
        }
        if path == "/health" {
            return text(StatusCode::OK, "ok\n");
        }
        if path == "/echo" {
            return echo(req);
        }
        if let Some(n) = path.strip_prefix("/bytes/") {
            return match n.parse::<u64>() {
                Ok(n) => self.bytes(n),
                Err(_) => text(StatusCode::BAD_REQUEST, "bad length\n"),
            };
        }
        if let Some(code) = path.strip_prefix("/status/") {
            return match code
                .parse::<u16>()
                .ok()
                .and_then(|c| StatusCode::from_u16(c).ok())
            {
                Some(status) => text(status, "status\n"),
                None => text(StatusCode::BAD_REQUEST, "bad status\n"),
            };
        }
        if let Some(rest) = path.strip_prefix("/delay/") {
            let (ms, rest) = rest.split_once('/').unwrap_or((rest, ""));
            let Ok(ms) = ms.parse::<u64>() else {
                return text(StatusCode::BAD_REQUEST, "bad delay\n");
            };
            tokio::time::sleep(Duration::from_millis(ms.min(60_000))).await;
            return text(StatusCode::OK, &format!("/{rest}\n"));
        }
        if let Some(rest) = path.strip_prefix("/live/") {
            return self.live(rest);
        }
        self.file(path, req.headers().get(header::RANGE)).await
    }

    fn bytes(&self, n: u64) -> Response<Body> {
        let pattern = self.pattern.clone();
        let chunks = futures_util::stream::iter((0..n).step_by(CHUNK).map(move |offset| {
            let len = (n - offset).min(CHUNK as u64) as usize;
            Ok::<_, BoxError>(Frame::data(pattern.slice(..len)))
        }));
        let mut response = Response::new(StreamBody::new(chunks).boxed_unsync());
        let h = response.headers_mut();
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(n));
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        );
        h.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("public, max-age=60"),
        );
        if let Ok(etag) = HeaderValue::from_str(&format!("\"b-{n}\"")) {
            h.insert(header::ETAG, etag);
        }
        response
    }

    fn live(&self, rest: &str) -> Response<Body> {
        let now = SystemTime::now();
        let Some((_name, file)) = rest.split_once('/') else {
            return text(StatusCode::NOT_FOUND, "no such live stream\n");
        };
        if file == "index.m3u8" {
            let max_age = self.live.playlist_max_age(now);
            let mut response = Response::new(body::full(self.live.playlist(now)));
            let h = response.headers_mut();
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(sample::content_type(file)),
            );
            if let Ok(cc) = HeaderValue::from_str(&format!("public, max-age={max_age}")) {
                h.insert(header::CACHE_CONTROL, cc);
            }
            return response;
        }
        let seq = file
            .strip_prefix("seg_")
            .and_then(|f| f.strip_suffix(".ts"))
            .and_then(|n| n.parse::<u64>().ok());
        match seq.and_then(|seq| self.live.segment(seq, now)) {
            Some(bytes) => {
                let mut response = Response::new(body::full(bytes));
                let h = response.headers_mut();
                h.insert(header::CONTENT_TYPE, HeaderValue::from_static("video/mp2t"));
                h.insert(
                    header::CACHE_CONTROL,
                    HeaderValue::from_static("public, max-age=3600"),
                );
                response
            }
            None => text(StatusCode::NOT_FOUND, "segment not available\n"),
        }
    }

    async fn file(&self, path: &str, range: Option<&HeaderValue>) -> Response<Body> {
        let Some(full_path) = safe_join(&self.root, path) else {
            return text(StatusCode::BAD_REQUEST, "bad path\n");
        };
        let Ok(data) = tokio::fs::read(&full_path).await else {
            return text(StatusCode::NOT_FOUND, "not found\n");
        };
        let modified = tokio::fs::metadata(&full_path)
            .await
            .and_then(|m| m.modified())
            .unwrap_or(UNIX_EPOCH);
        let data = Bytes::from(data);
        let total = data.len() as u64;
        let mtime = modified
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let mut response = match crate::range::parse(range, total) {
            RangeAnswer::Partial { start, end } => {
                let mut r = Response::new(body::full(data.slice(start as usize..=end as usize)));
                *r.status_mut() = StatusCode::PARTIAL_CONTENT;
                if let Ok(v) = HeaderValue::from_str(&format!("bytes {start}-{end}/{total}")) {
                    r.headers_mut().insert(header::CONTENT_RANGE, v);
                }
                r
            }
            RangeAnswer::Unsatisfiable => {
                let mut r = text(StatusCode::RANGE_NOT_SATISFIABLE, "range not satisfiable\n");
                if let Ok(v) = HeaderValue::from_str(&format!("bytes */{total}")) {
                    r.headers_mut().insert(header::CONTENT_RANGE, v);
                }
                return r;
            }
            RangeAnswer::Full => Response::new(body::full(data)),
        };
        let h = response.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(sample::content_type(path)),
        );
        h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
        let max_age = if path.ends_with(".m3u8") || path.ends_with(".mpd") {
            10
        } else {
            86400
        };
        if let Ok(v) = HeaderValue::from_str(&format!("public, max-age={max_age}")) {
            h.insert(header::CACHE_CONTROL, v);
        }
        if let Ok(v) = HeaderValue::from_str(&format!("\"{total:x}-{mtime:x}\"")) {
            h.insert(header::ETAG, v);
        }
        if let Ok(v) = HeaderValue::from_str(&httpdate::fmt_http_date(modified)) {
            h.insert(header::LAST_MODIFIED, v);
        }
        response
    }
}

/// The programmable response of `/object/<name>` (see the module docs).
async fn object<B>(name: &str, req: &Request<B>) -> Response<Body> {
    let q = req.uri().query();
    let param = |k: &str| query_param(q, k);
    let num = |k: &str| param(k).and_then(|v| v.parse::<u64>().ok());
    if let Some(ms) = num("delay_ms") {
        tokio::time::sleep(Duration::from_millis(ms.min(60_000))).await;
    }
    let size = num("size").unwrap_or(1000).min(256 * 1024 * 1024);
    let version = param("v").unwrap_or_default();
    let status = num("status")
        .and_then(|c| StatusCode::from_u16(c as u16).ok())
        .unwrap_or(StatusCode::OK);
    let etag = param("etag").map(|e| format!("\"{e}\""));
    let mut headers = http::HeaderMap::new();
    let mut set = |name: &'static str, value: String| {
        if let Ok(v) = HeaderValue::from_str(&value) {
            headers.insert(name, v);
        }
    };
    if let Some(cc) = param("cc") {
        set("cache-control", cc);
    }
    if let Some(etag) = &etag {
        set("etag", etag.clone());
    }
    let last_modified = num("lm");
    if let Some(lm) = last_modified {
        set(
            "last-modified",
            httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(lm)),
        );
    }
    if let Some(exp) = num("expires") {
        set(
            "expires",
            httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(exp)),
        );
    }
    if param("hop").is_some() {
        set("connection", "x-hop".into());
        set("x-hop", "1".into());
        set("keep-alive", "timeout=5".into());
        set("proxy-connection", "keep-alive".into());
        set("upgrade", "h2c".into());
    }
    if let Some(sk) = param("sk") {
        set("surrogate-key", sk);
    }
    if let Some(tag) = param("tag") {
        set("cache-tag", tag);
    }
    if let Some(age) = num("age") {
        set("age", age.to_string());
    }
    if let Some(vary) = param("vary") {
        set("vary", vary);
    }
    if let Some(location) = param("loc") {
        set("location", location);
    }
    if param("cookie").is_some() {
        set("set-cookie", format!("session={name}"));
    }
    if let Some(names) = param("reflect") {
        // What the origin saw of these request fields, for cache-poisoning tests.
        let seen: Vec<String> = names
            .split(',')
            .map(|n| {
                let value = req.headers().get(n).and_then(|v| v.to_str().ok());
                format!("{n}={}", value.unwrap_or("-"))
            })
            .collect();
        set("x-reflected", seen.join("; "));
    }
    let matches = match (&etag, last_modified) {
        (Some(e), _) => req
            .headers()
            .get(header::IF_NONE_MATCH)
            .is_some_and(|inm| inm.as_bytes() == e.as_bytes()),
        (None, Some(lm)) => req
            .headers()
            .get(header::IF_MODIFIED_SINCE)
            .and_then(|v| httpdate::parse_http_date(v.to_str().ok()?).ok())
            .is_some_and(|since| since >= UNIX_EPOCH + Duration::from_secs(lm)),
        (None, None) => false,
    };
    if matches {
        let mut r = Response::new(body::empty());
        *r.status_mut() = StatusCode::NOT_MODIFIED;
        *r.headers_mut() = headers;
        return r;
    }
    // Body: "<name>:<version>;" repeated, so content changes are visible to tests.
    let unit = format!("{name}:{version};");
    let full: Bytes = unit
        .bytes()
        .cycle()
        .take(size as usize)
        .collect::<Vec<u8>>()
        .into();
    let truncate = param("truncate").is_some();
    let content_type = param("ct")
        .and_then(|ct| HeaderValue::from_str(&ct).ok())
        .unwrap_or(HeaderValue::from_static("application/octet-stream"));
    let chunk_ms = num("chunk_ms").unwrap_or(0);
    let send = if truncate { full.len() / 2 } else { full.len() };
    let chunks: Vec<Bytes> = (0..send)
        .step_by(16 * 1024)
        .map(|at| full.slice(at..(at + 16 * 1024).min(send)))
        .collect();
    let frames = futures_util::stream::unfold(
        (chunks.into_iter(), truncate, true),
        move |(mut chunks, truncate, first)| async move {
            if !first && chunk_ms > 0 {
                tokio::time::sleep(Duration::from_millis(chunk_ms)).await;
            }
            match chunks.next() {
                Some(chunk) => Some((
                    Ok::<_, BoxError>(Frame::data(chunk)),
                    (chunks, truncate, false),
                )),
                None if truncate => Some((
                    Err(BoxError::from("truncated on purpose")),
                    (chunks, false, false),
                )),
                None => None,
            }
        },
    );
    let mut r = Response::new(StreamBody::new(frames).boxed_unsync());
    *r.status_mut() = status;
    *r.headers_mut() = headers;
    if param("chunked").is_none() {
        r.headers_mut()
            .insert(header::CONTENT_LENGTH, HeaderValue::from(size));
    }
    r.headers_mut().insert(header::CONTENT_TYPE, content_type);
    r
}

fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    query?.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == name).then(|| percent_decode(v))
    })
}

/// Minimal `%XX` and `+` decoding for the test endpoints' query values.
fn percent_decode(v: &str) -> String {
    let bytes = v.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 3 <= bytes.len() => match u8::from_str_radix(&v[i + 1..i + 3], 16) {
                Ok(b) => {
                    out.push(b);
                    i += 2;
                }
                Err(_) => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Joins a URL path under `root`, refusing anything that would escape it.
fn safe_join(root: &Path, url_path: &str) -> Option<PathBuf> {
    let relative = Path::new(url_path.trim_start_matches('/'));
    let mut out = root.to_path_buf();
    for component in relative.components() {
        match component {
            Component::Normal(part) => out.push(part),
            Component::CurDir => {}
            _ => return None,
        }
    }
    Some(out)
}

fn echo<B>(req: &Request<B>) -> Response<Body> {
    let headers: serde_json::Map<String, serde_json::Value> = req
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_owned(),
                serde_json::Value::String(String::from_utf8_lossy(v.as_bytes()).into_owned()),
            )
        })
        .collect();
    let json = serde_json::json!({
        "method": req.method().as_str(),
        "uri": req.uri().to_string(),
        "version": format!("{:?}", req.version()),
        "headers": headers,
    });
    let mut response = Response::new(body::full(json.to_string()));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

fn text(status: StatusCode, message: &str) -> Response<Body> {
    let mut response = Response::new(body::full(message.to_owned()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_cannot_escape_root() {
        let root = Path::new("/srv/media");
        assert_eq!(
            safe_join(root, "/vod/a.ts"),
            Some(PathBuf::from("/srv/media/vod/a.ts"))
        );
        assert_eq!(safe_join(root, "/../etc/passwd"), None);
        assert_eq!(safe_join(root, "/vod/../../x"), None);
    }
}
