//! Object-storage origins through the `object_store` crate: S3 and S3-compatible stores,
//! Google Cloud Storage, Azure Blob Storage and the local filesystem. A request path maps
//! to an object key under a configured prefix; byte ranges go to the store as ranges, and
//! the object's ETag, Last-Modified, Content-Type and length come back as headers.

use crate::body::{self, Body, BoxError};
use crate::http::{OriginError, OriginResponse};
use crate::range::RangeAnswer;
use futures_util::TryStreamExt;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};
use object_store::path::Path as ObjectPath;
use object_store::{Attribute, GetOptions, GetRange, ObjectStore};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, UNIX_EPOCH};

/// Which store, and where in it.
#[derive(Clone, Debug)]
pub enum StoreKind {
    /// S3 or an S3-compatible store. Credentials come from the usual `AWS_*` environment
    /// variables (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, web
    /// identity, instance metadata), never from the node's config file.
    S3 {
        bucket: String,
        region: Option<String>,
        /// For S3-compatible stores (`http://127.0.0.1:9000`); plain HTTP is allowed
        /// only when the endpoint says so.
        endpoint: Option<String>,
    },
    /// Credentials from `GOOGLE_APPLICATION_CREDENTIALS` / `GOOGLE_SERVICE_ACCOUNT*`.
    Gcs {
        bucket: String,
    },
    /// Credentials from `AZURE_STORAGE_*` environment variables.
    Azure {
        account: String,
        container: String,
        /// Azurite or another emulator at this URL.
        endpoint: Option<String>,
    },
    Fs {
        root: PathBuf,
    },
}

#[derive(Clone, Debug)]
pub struct ObjectConfig {
    pub name: String,
    pub kind: StoreKind,
    /// Key prefix in the bucket (`media/`), prepended to the request path.
    pub prefix: String,
    /// Bound on the wait for the object's metadata (the response head).
    pub first_byte_timeout: Duration,
}

pub struct ObjectOrigin {
    config: ObjectConfig,
    store: Arc<dyn ObjectStore>,
    label: Arc<str>,
}

impl ObjectOrigin {
    pub fn new(config: ObjectConfig) -> Result<ObjectOrigin, OriginError> {
        let fail = |e: object_store::Error| OriginError::Protocol {
            origin: config.name.clone(),
            upstream: describe(&config.kind),
            reason: e.to_string(),
        };
        let store: Arc<dyn ObjectStore> = match &config.kind {
            StoreKind::S3 {
                bucket,
                region,
                endpoint,
            } => {
                let mut b = object_store::aws::AmazonS3Builder::from_env().with_bucket_name(bucket);
                if let Some(region) = region {
                    b = b.with_region(region);
                }
                if let Some(endpoint) = endpoint {
                    b = b
                        .with_endpoint(endpoint)
                        .with_allow_http(endpoint.starts_with("http://"))
                        .with_virtual_hosted_style_request(false);
                }
                Arc::new(b.build().map_err(fail)?)
            }
            StoreKind::Gcs { bucket } => Arc::new(
                object_store::gcp::GoogleCloudStorageBuilder::from_env()
                    .with_bucket_name(bucket)
                    .build()
                    .map_err(fail)?,
            ),
            StoreKind::Azure {
                account,
                container,
                endpoint,
            } => {
                let mut b = object_store::azure::MicrosoftAzureBuilder::from_env()
                    .with_account(account)
                    .with_container_name(container);
                if let Some(endpoint) = endpoint {
                    b = b
                        .with_endpoint(endpoint.clone())
                        .with_allow_http(endpoint.starts_with("http://"));
                }
                Arc::new(b.build().map_err(fail)?)
            }
            StoreKind::Fs { root } => {
                Arc::new(object_store::local::LocalFileSystem::new_with_prefix(root).map_err(fail)?)
            }
        };
        Ok(ObjectOrigin {
            label: Arc::from(describe(&config.kind)),
            config,
            store,
        })
    }

    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// Answers a viewer's request from the store. Missing objects are 404, a failed
    /// precondition 304/412, an unsatisfiable range 416; only store failures are errors.
    pub async fn send(
        &self,
        req: Request<Body>,
        started: Instant,
    ) -> Result<OriginResponse, OriginError> {
        let respond = |response: Response<Body>| OriginResponse {
            response,
            upstream: self.label.clone(),
            time_to_first_byte: started.elapsed(),
            attempts: 1,
        };
        let head_only = match *req.method() {
            Method::GET => false,
            Method::HEAD => true,
            _ => {
                return Ok(respond(text(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "object origins serve GET and HEAD\n",
                )))
            }
        };
        let Some(key) = object_key(&self.config.prefix, req.uri().path()) else {
            return Ok(respond(text(StatusCode::BAD_REQUEST, "bad object path\n")));
        };
        let wanted_range = req.headers().get(header::RANGE).cloned();
        // An invalid or multi-range header is ignored (RFC 9110 §14.2): whole object.
        let range = origin_range(wanted_range.as_ref()).unwrap_or_default();
        // Cloud stores keep the quotes in their ETags and compare the header as sent; the
        // local filesystem's ETags are bare, so its comparison needs them stripped.
        let bare = matches!(self.config.kind, StoreKind::Fs { .. });
        let if_none_match = req
            .headers()
            .get(header::IF_NONE_MATCH)
            .and_then(|v| v.to_str().ok())
            .map(|v| {
                if bare {
                    v.replace('"', "")
                } else {
                    v.to_owned()
                }
            });
        // RFC 9110 §13.1.3: If-Modified-Since only counts without If-None-Match, and only
        // as a valid HTTP date.
        let if_modified_since = req
            .headers()
            .get(header::IF_MODIFIED_SINCE)
            .filter(|_| if_none_match.is_none())
            .and_then(|v| httpdate::parse_http_date(v.to_str().ok()?).ok())
            // HTTP dates have whole seconds and the store's times do not: the date stands
            // for the whole second it names, as the Last-Modified it echoes was cut to it.
            .map(|t| t + std::time::Duration::from_nanos(999_999_999))
            .map(chrono::DateTime::<chrono::Utc>::from);
        let options = GetOptions {
            if_none_match,
            if_modified_since,
            range: range.clone(),
            head: head_only,
            ..Default::default()
        };
        let get = tokio::time::timeout(
            self.config.first_byte_timeout,
            self.store.get_opts(&key, options),
        );
        let result = match get.await {
            Err(_) => {
                return Err(OriginError::Timeout {
                    origin: self.config.name.clone(),
                    upstream: self.label.to_string(),
                    timeout: self.config.first_byte_timeout,
                })
            }
            Ok(Ok(result)) => result,
            Ok(Err(object_store::Error::NotFound { .. })) => {
                return Ok(respond(text(StatusCode::NOT_FOUND, "no such object\n")))
            }
            Ok(Err(object_store::Error::NotModified { .. })) => {
                let mut r = Response::new(body::empty());
                *r.status_mut() = StatusCode::NOT_MODIFIED;
                if let Ok(meta) = self.store.head(&key).await {
                    set_validators(
                        r.headers_mut(),
                        meta.e_tag.as_deref(),
                        meta.last_modified.timestamp(),
                    );
                }
                return Ok(respond(r));
            }
            Ok(Err(object_store::Error::Precondition { .. })) => {
                return Ok(respond(text(
                    StatusCode::PRECONDITION_FAILED,
                    "precondition failed\n",
                )))
            }
            Ok(Err(e)) if range.is_some() => {
                // Out-of-range reads are errors in object_store; answer 416 with the size.
                return match self.store.head(&key).await {
                    Ok(meta) => {
                        let mut r =
                            text(StatusCode::RANGE_NOT_SATISFIABLE, "range not satisfiable\n");
                        if let Ok(v) = HeaderValue::from_str(&format!("bytes */{}", meta.size)) {
                            r.headers_mut().insert(header::CONTENT_RANGE, v);
                        }
                        Ok(respond(r))
                    }
                    Err(_) => Err(self.store_error(e)),
                };
            }
            Ok(Err(e)) => return Err(self.store_error(e)),
        };

        let meta = &result.meta;
        let mut response = Response::new(body::empty());
        let h = response.headers_mut();
        set_validators(h, meta.e_tag.as_deref(), meta.last_modified.timestamp());
        // The store's type wins, except the generic ones stores assign to untyped uploads:
        // for those the extension says more (`.m3u8`, `.ts`, `.mpd`).
        let content_type = result
            .attributes
            .get(&Attribute::ContentType)
            .map(|v| v.as_ref().to_owned())
            .filter(|t| {
                !matches!(
                    t.as_str(),
                    "binary/octet-stream" | "application/octet-stream"
                )
            })
            .unwrap_or_else(|| crate::sample::content_type(req.uri().path()).to_owned());
        if let Ok(v) = HeaderValue::from_str(&content_type) {
            h.insert(header::CONTENT_TYPE, v);
        }
        if let Some(cc) = result.attributes.get(&Attribute::CacheControl) {
            if let Ok(v) = HeaderValue::from_str(cc.as_ref()) {
                h.insert(header::CACHE_CONTROL, v);
            }
        }
        h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
        let served = result.range.clone();
        let partial = range.is_some() && (served.start > 0 || served.end < meta.size);
        h.insert(
            header::CONTENT_LENGTH,
            HeaderValue::from(served.end - served.start),
        );
        if partial {
            *response.status_mut() = StatusCode::PARTIAL_CONTENT;
            let value = format!(
                "bytes {}-{}/{}",
                served.start,
                served.end.saturating_sub(1),
                meta.size
            );
            if let Ok(v) = HeaderValue::from_str(&value) {
                response.headers_mut().insert(header::CONTENT_RANGE, v);
            }
        }
        if !head_only {
            let stream = result
                .into_stream()
                .map_ok(Frame::data)
                .map_err(|e| -> BoxError { Box::new(e) });
            *response.body_mut() = StreamBody::new(stream).boxed_unsync();
        }
        Ok(respond(response))
    }

    fn store_error(&self, e: object_store::Error) -> OriginError {
        OriginError::Protocol {
            origin: self.config.name.clone(),
            upstream: self.label.to_string(),
            reason: e.to_string(),
        }
    }
}

fn describe(kind: &StoreKind) -> String {
    match kind {
        StoreKind::S3 {
            bucket, endpoint, ..
        } => match endpoint {
            Some(e) => format!("s3://{bucket} at {e}"),
            None => format!("s3://{bucket}"),
        },
        StoreKind::Gcs { bucket } => format!("gs://{bucket}"),
        StoreKind::Azure {
            account, container, ..
        } => format!("azure://{account}/{container}"),
        StoreKind::Fs { root } => format!("file://{}", root.display()),
    }
}

/// `/vod/a b.ts` under prefix `media/` → `media/vod/a b.ts`. Percent-escapes are decoded;
/// empty, `.` and `..` segments are refused so a path cannot leave the prefix.
fn object_key(prefix: &str, path: &str) -> Option<ObjectPath> {
    let mut key = prefix.trim_matches('/').to_owned();
    for segment in path.split('/').filter(|s| !s.is_empty()) {
        let decoded = percent_decode(segment)?;
        if decoded == "." || decoded == ".." || decoded.contains('/') || decoded.contains('\0') {
            return None;
        }
        if !key.is_empty() {
            key.push('/');
        }
        key.push_str(&decoded);
    }
    if key.is_empty() || path.ends_with('/') {
        return None;
    }
    ObjectPath::parse(&key).ok()
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The viewer's single byte range as a store range; `Err` for a header to ignore.
fn origin_range(value: Option<&HeaderValue>) -> Result<Option<GetRange>, ()> {
    let Some(value) = value else { return Ok(None) };
    // Unknown total: parse against the largest size, then map to the store's forms.
    let spec = value.to_str().map_err(|_| ())?.trim();
    let spec = spec.strip_prefix("bytes=").ok_or(())?;
    if spec.contains(',') {
        return Err(());
    }
    match crate::range::parse(Some(value), u64::MAX) {
        RangeAnswer::Partial { start, end } => {
            if spec.trim_start().starts_with('-') {
                Ok(Some(GetRange::Suffix(u64::MAX - start)))
            } else if spec.trim_end().ends_with('-') {
                Ok(Some(GetRange::Offset(start)))
            } else {
                Ok(Some(GetRange::Bounded(start..end.saturating_add(1))))
            }
        }
        _ => Err(()),
    }
}

fn set_validators(h: &mut http::HeaderMap, etag: Option<&str>, modified_secs: i64) {
    if let Some(etag) = etag {
        let quoted = if etag.starts_with('"') || etag.starts_with("W/") {
            etag.to_owned()
        } else {
            format!("\"{etag}\"")
        };
        if let Ok(v) = HeaderValue::from_str(&quoted) {
            h.insert(header::ETAG, v);
        }
    }
    let modified = UNIX_EPOCH + Duration::from_secs(modified_secs.max(0) as u64);
    if let Ok(v) = HeaderValue::from_str(&httpdate::fmt_http_date(modified)) {
        h.insert(header::LAST_MODIFIED, v);
    }
}

fn text(status: StatusCode, message: &'static str) -> Response<Body> {
    let mut r = Response::new(body::full(message));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[test]
    fn keys_stay_under_the_prefix() {
        assert_eq!(
            object_key("media/", "/vod/a%20b.ts").unwrap().as_ref(),
            "media/vod/a b.ts"
        );
        assert_eq!(object_key("", "/x.ts").unwrap().as_ref(), "x.ts");
        assert!(object_key("media", "/vod/../../etc/passwd").is_none());
        assert!(object_key("media", "/vod/%2e%2e/x").is_none());
        assert!(object_key("media", "/vod/a%2Fb").is_none());
        assert!(object_key("media", "/vod/").is_none());
        assert!(object_key("", "/").is_none());
        assert!(object_key("m", "/bad%zz").is_none());
    }

    #[test]
    fn ranges_map_to_store_ranges() {
        let r = |v: &'static str| origin_range(Some(&HeaderValue::from_static(v)));
        assert_eq!(r("bytes=0-9"), Ok(Some(GetRange::Bounded(0..10))));
        assert_eq!(r("bytes=100-"), Ok(Some(GetRange::Offset(100))));
        assert_eq!(r("bytes=-50"), Ok(Some(GetRange::Suffix(50))));
        assert_eq!(r("bytes=5-1"), Err(()));
        assert_eq!(r("bytes=0-1,4-5"), Err(()));
        assert_eq!(origin_range(None), Ok(None));
    }

    #[tokio::test]
    async fn local_filesystem_objects_ranges_and_conditionals() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("media/vod")).unwrap();
        std::fs::write(dir.path().join("media/vod/seg.ts"), b"0123456789").unwrap();
        let origin = ObjectOrigin::new(ObjectConfig {
            name: "fs".into(),
            kind: StoreKind::Fs {
                root: dir.path().to_owned(),
            },
            prefix: "media/".into(),
            first_byte_timeout: Duration::from_secs(5),
        })
        .unwrap();
        let get = |path: &str, headers: &[(&str, &str)]| {
            let mut req = Request::get(path);
            for (k, v) in headers {
                req = req.header(*k, *v);
            }
            let req = req.body(body::empty()).unwrap();
            let origin = &origin;
            async move {
                let r = origin.send(req, Instant::now()).await.unwrap().response;
                let (parts, body) = r.into_parts();
                (parts, body.collect().await.unwrap().to_bytes())
            }
        };
        let (full, bytes) = get("/vod/seg.ts", &[]).await;
        assert_eq!(full.status, 200);
        assert_eq!(bytes, "0123456789");
        assert_eq!(full.headers["content-length"], "10");
        assert_eq!(full.headers["content-type"], "video/mp2t");
        let etag = full.headers["etag"].to_str().unwrap().to_owned();
        assert!(full.headers.contains_key("last-modified"));

        let (part, bytes) = get("/vod/seg.ts", &[("range", "bytes=2-4")]).await;
        assert_eq!((part.status.as_u16(), &bytes[..]), (206, &b"234"[..]));
        assert_eq!(part.headers["content-range"], "bytes 2-4/10");
        let (tail, bytes) = get("/vod/seg.ts", &[("range", "bytes=-3")]).await;
        assert_eq!((tail.status.as_u16(), &bytes[..]), (206, &b"789"[..]));
        let (bad, _) = get("/vod/seg.ts", &[("range", "bytes=50-")]).await;
        assert_eq!(bad.status, 416);
        assert_eq!(bad.headers["content-range"], "bytes */10");

        let (nm, _) = get("/vod/seg.ts", &[("if-none-match", etag.as_str())]).await;
        assert_eq!(nm.status, 304);
        // If-Modified-Since: 304 at or after the object's time, the object before it;
        // ignored when If-None-Match is there, or when it is not a date.
        let modified = full.headers["last-modified"].to_str().unwrap().to_owned();
        let (ims, _) = get("/vod/seg.ts", &[("if-modified-since", modified.as_str())]).await;
        assert_eq!(ims.status, 304);
        let (ims, bytes) = get(
            "/vod/seg.ts",
            &[("if-modified-since", "Thu, 01 Jan 1970 00:00:00 GMT")],
        )
        .await;
        assert_eq!((ims.status.as_u16(), &bytes[..]), (200, &b"0123456789"[..]));
        let (both, _) = get(
            "/vod/seg.ts",
            &[
                ("if-none-match", "\"other\""),
                ("if-modified-since", modified.as_str()),
            ],
        )
        .await;
        assert_eq!(both.status, 200);
        let (junk, _) = get("/vod/seg.ts", &[("if-modified-since", "yesterday")]).await;
        assert_eq!(junk.status, 200);
        let (missing, _) = get("/vod/none.ts", &[]).await;
        assert_eq!(missing.status, 404);
        let (escape, _) = get("/vod/../../secret", &[]).await;
        assert_eq!(escape.status, 400);
    }
}
