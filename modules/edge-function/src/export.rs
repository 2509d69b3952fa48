//! The `wasi:http/proxy` export: one request in, the chain's decisions from `lib.rs`, the
//! origin fetched through `wasi:http/outgoing-handler`, the answer streamed back (whole
//! only for manifests it rewrites).

use crate::{client_ip, forwarded, hop_by_hop, Answer, EdgeFunction, Passed, Viewer};
use std::sync::OnceLock;
use wasip2::http::outgoing_handler;
use wasip2::http::types::{
    Fields, IncomingBody, IncomingRequest, Method, OutgoingBody, OutgoingRequest, OutgoingResponse,
    ResponseOutparam, Scheme,
};
use wasip2::io::streams::{InputStream, OutputStream, StreamError};

struct Handler;

wasip2::http::proxy::export!(Handler);

/// The chain, built on the instance's first request (hosts that keep instances reuse it;
/// `wasmtime serve` starts one per request, so a large WAF rule set costs its compile
/// time per request there: see docs/edge-function.md).
fn chain() -> Result<&'static EdgeFunction, String> {
    static CHAIN: OnceLock<Result<EdgeFunction, String>> = OnceLock::new();
    CHAIN
        .get_or_init(|| {
            let f = EdgeFunction::from_env();
            if let Ok(f) = &f {
                if f.rate_limit_ignored {
                    eprintln!("edge-function: rate_limit is configured but not enforced: wasi:http/proxy keeps no state between requests");
                }
            }
            f
        })
        .as_ref()
        .map_err(Clone::clone)
}

impl wasip2::exports::http::incoming_handler::Guest for Handler {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let chain = match chain() {
            Ok(c) => c,
            Err(e) => {
                eprintln!("edge-function: config: {e}");
                return respond(
                    out,
                    Answer {
                        status: 500,
                        headers: vec![("content-type".into(), "text/plain; charset=utf-8".into())],
                        body: format!("500 Internal Server Error: edge function config: {e}\n")
                            .into_bytes(),
                    },
                );
            }
        };
        let method = method_name(&request.method());
        let path_and_query = request.path_with_query().unwrap_or_else(|| "/".into());
        let (path, query) = match path_and_query.split_once('?') {
            Some((p, q)) => (p.to_owned(), Some(q.to_owned())),
            None => (path_and_query.clone(), None),
        };
        let headers: Vec<(String, String)> = request
            .headers()
            .entries()
            .into_iter()
            .map(|(k, v)| {
                (
                    k.to_ascii_lowercase(),
                    String::from_utf8_lossy(&v).into_owned(),
                )
            })
            .collect();
        let authority = request
            .authority()
            .or_else(|| {
                headers
                    .iter()
                    .find(|(k, _)| k == "host")
                    .map(|(_, v)| v.clone())
            })
            .unwrap_or_default();
        let has_body = !matches!(
            method.as_str(),
            "GET" | "HEAD" | "OPTIONS" | "DELETE" | "TRACE"
        );
        let body = if has_body {
            request.consume().ok()
        } else {
            None
        };
        let stream = body.as_ref().and_then(|b| b.stream().ok());
        // The WAF reads at most its bound of the body; the origin still gets all of it.
        let (seen, truncated) = match (&stream, chain.inspects_bodies()) {
            (Some(s), true) => read_up_to(s, chain.waf_body_bytes),
            _ => (Vec::new(), false),
        };
        let viewer = Viewer {
            method: &method,
            authority: &authority,
            path: &path,
            query: query.as_deref(),
            headers: &headers,
            client_ip: client_ip(&headers),
            body: &seen,
            body_truncated: truncated,
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let passed = match chain.admit(&viewer, now) {
            Ok(p) => p,
            Err(answer) => return respond(out, answer),
        };
        // Rate limiting: nothing to do here (see `chain`).
        let response = match fetch(chain, &viewer, &path_and_query, &request, stream, &seen) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("edge-function: origin: {e}");
                return respond(out, bad_gateway(&format!("origin: {e}")));
            }
        };
        drop(body);
        send_back(chain, &viewer, &passed, response, out);
    }
}

fn method_name(m: &Method) -> String {
    match m {
        Method::Get => "GET".into(),
        Method::Head => "HEAD".into(),
        Method::Post => "POST".into(),
        Method::Put => "PUT".into(),
        Method::Delete => "DELETE".into(),
        Method::Connect => "CONNECT".into(),
        Method::Options => "OPTIONS".into(),
        Method::Trace => "TRACE".into(),
        Method::Patch => "PATCH".into(),
        Method::Other(s) => s.clone(),
    }
}

fn read_up_to(stream: &InputStream, limit: usize) -> (Vec<u8>, bool) {
    let mut seen = Vec::new();
    while seen.len() <= limit {
        match stream.blocking_read(65536) {
            Ok(chunk) => seen.extend_from_slice(&chunk),
            Err(_) => return (seen, false),
        }
    }
    (seen, true)
}

/// The origin's response, after the request (and its body) went out.
fn fetch(
    chain: &EdgeFunction,
    viewer: &Viewer<'_>,
    path_and_query: &str,
    request: &IncomingRequest,
    body: Option<InputStream>,
    seen: &[u8],
) -> Result<wasip2::http::types::IncomingResponse, String> {
    let mut fields: Vec<(String, Vec<u8>)> = viewer
        .headers
        .iter()
        .filter(|(k, _)| forwarded(k))
        .map(|(k, v)| (k.clone(), v.clone().into_bytes()))
        .collect();
    let via = match viewer.header("via") {
        Some(v) => format!("{v}, 1.1 edge-function"),
        None => "1.1 edge-function".into(),
    };
    fields.retain(|(k, _)| k != "via");
    fields.push(("via".into(), via.into_bytes()));
    let headers = Fields::from_list(&fields).map_err(|e| format!("request fields: {e:?}"))?;
    let outgoing = OutgoingRequest::new(headers);
    let _ = outgoing.set_method(&request.method());
    let _ = outgoing.set_path_with_query(Some(path_and_query));
    let _ = outgoing.set_scheme(Some(if chain.origin.https {
        &Scheme::Https
    } else {
        &Scheme::Http
    }));
    let _ = outgoing.set_authority(Some(&chain.origin.authority));
    let out_body = outgoing
        .body()
        .map_err(|_| "request body taken".to_string())?;
    let future = outgoing_handler::handle(outgoing, None).map_err(|e| format!("{e:?}"))?;
    {
        let sink = out_body
            .write()
            .map_err(|_| "request body stream".to_string())?;
        write_all(&sink, seen)?;
        if let Some(rest) = &body {
            splice_all(&sink, rest)?;
        }
    }
    OutgoingBody::finish(out_body, None).map_err(|e| format!("request body: {e:?}"))?;
    future.subscribe().block();
    match future.get() {
        Some(Ok(Ok(response))) => Ok(response),
        Some(Ok(Err(e))) => Err(format!("{e:?}")),
        Some(Err(())) | None => Err("no response".into()),
    }
}

fn send_back(
    chain: &EdgeFunction,
    viewer: &Viewer<'_>,
    passed: &Passed,
    response: wasip2::http::types::IncomingResponse,
    out: ResponseOutparam,
) {
    let status = response.status();
    let mut headers: Vec<(String, Vec<u8>)> = response
        .headers()
        .entries()
        .into_iter()
        .filter(|(k, _)| !hop_by_hop(&k.to_ascii_lowercase()))
        .collect();
    if let Some(cookie) = &passed.set_cookie {
        headers.push(("set-cookie".into(), cookie.clone().into_bytes()));
    }
    let content_type = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-type"))
        .map(|(_, v)| String::from_utf8_lossy(v).into_owned());
    let Ok(body) = response.consume() else {
        return respond(out, bad_gateway("origin body"));
    };
    let Ok(stream) = body.stream() else {
        return respond(out, bad_gateway("origin body"));
    };
    if status == 200 && chain.rewrites(viewer, passed, content_type.as_deref()) {
        let (manifest, _) = read_up_to(&stream, 16 << 20);
        drop(stream);
        drop(body);
        match chain.rewrite(viewer, passed, content_type.as_deref(), &manifest) {
            Err(answer) => return respond(out, answer),
            Ok(result) => {
                let (new_body, per_viewer) = match result {
                    Some(r) => (r.body, r.per_viewer),
                    None => (None, false),
                };
                let changed = new_body.is_some();
                let bytes = new_body.unwrap_or(manifest);
                headers.retain(|(k, _)| {
                    let k = k.to_ascii_lowercase();
                    k != "content-length" && !(changed && (k == "etag" || k == "accept-ranges"))
                });
                headers.push((
                    "content-length".into(),
                    bytes.len().to_string().into_bytes(),
                ));
                if per_viewer {
                    headers.retain(|(k, _)| !k.eq_ignore_ascii_case("cache-control"));
                    headers.push(("cache-control".into(), b"private, no-store".to_vec()));
                }
                return respond_bytes(out, status, &headers, &bytes);
            }
        }
    }
    // Everything else (segments) streams through.
    let Ok(fields) = Fields::from_list(&headers) else {
        return respond(out, bad_gateway("origin fields"));
    };
    let resp = OutgoingResponse::new(fields);
    let _ = resp.set_status_code(status);
    let Ok(out_body) = resp.body() else { return };
    ResponseOutparam::set(out, Ok(resp));
    if let Ok(sink) = out_body.write() {
        if let Err(e) = splice_all(&sink, &stream) {
            // The viewer sees a truncated body, never one marked complete.
            eprintln!("edge-function: origin body failed: {e}");
            return;
        }
    }
    let _ = OutgoingBody::finish(out_body, None);
    drop(stream);
    let _ = IncomingBody::finish(body);
}

fn bad_gateway(reason: &str) -> Answer {
    Answer {
        status: 502,
        headers: vec![("content-type".into(), "text/plain; charset=utf-8".into())],
        body: format!("502 Bad Gateway: {reason}\n").into_bytes(),
    }
}

fn respond(out: ResponseOutparam, answer: Answer) {
    let headers: Vec<(String, Vec<u8>)> = answer
        .headers
        .into_iter()
        .map(|(k, v)| (k, v.into_bytes()))
        .collect();
    respond_bytes(out, answer.status, &headers, &answer.body);
}

fn respond_bytes(out: ResponseOutparam, status: u16, headers: &[(String, Vec<u8>)], body: &[u8]) {
    let fields = Fields::from_list(headers).unwrap_or_else(|_| Fields::new());
    let resp = OutgoingResponse::new(fields);
    let _ = resp.set_status_code(status);
    let Ok(out_body) = resp.body() else { return };
    ResponseOutparam::set(out, Ok(resp));
    if let Ok(sink) = out_body.write() {
        if write_all(&sink, body).is_err() {
            return;
        }
    }
    let _ = OutgoingBody::finish(out_body, None);
}

fn write_all(sink: &OutputStream, mut bytes: &[u8]) -> Result<(), String> {
    // `blocking-write-and-flush` takes at most 4096 bytes per call.
    while !bytes.is_empty() {
        let n = bytes.len().min(4096);
        sink.blocking_write_and_flush(&bytes[..n])
            .map_err(|e| format!("write: {e:?}"))?;
        bytes = &bytes[n..];
    }
    Ok(())
}

fn splice_all(sink: &OutputStream, source: &InputStream) -> Result<(), String> {
    loop {
        match sink.blocking_splice(source, 1 << 20) {
            Ok(_) => {}
            Err(StreamError::Closed) => {
                return sink.blocking_flush().map_err(|e| format!("flush: {e:?}"))
            }
            Err(e) => return Err(format!("{e:?}")),
        }
    }
}
