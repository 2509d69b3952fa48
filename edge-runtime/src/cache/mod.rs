//! The cache in front of origins: an in-memory, byte-bounded, sharded LRU ([`store`]),
//! RFC 9111 rules as pure functions ([`policy`]), cache keys ([`key`]) and request
//! coalescing with streaming to every waiter ([`inflight`]).
//!
//! [`Cache::serve`] is the cache phase of the pipeline: hit → serve from memory (with
//! `Age`, conditional 304s and byte ranges); stale → serve while refreshing in the
//! background (`stale-while-revalidate`) or revalidate with the stored validators; miss →
//! one coalesced fetch for everyone asking at once. A failed origin falls back to a stale
//! copy where `stale-if-error` allows.

pub mod inflight;
pub mod key;
pub mod policy;
pub mod store;

use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use inflight::{FillOutcome, FillWriter, Head, Inflights, Role, SharedHead};
use origin::headers::ForwardedFor;
use origin::http::OriginError;
use origin::range::RangeAnswer;
use origin::Body;
use origin::Origin;
use policy::{CacheControl, Freshness, RoutePolicy};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use store::{Entry, Store};

pub use key::KeySpec;

/// Cache settings of one route.
#[derive(Clone, Debug, Default)]
pub struct RouteCache {
    pub policy: RoutePolicy,
    pub key: KeySpec,
}

/// How a response was served, for `X-Cache`, the access log and metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CacheStatus {
    Hit,
    Miss,
    /// Served stale: `stale-while-revalidate`, or `stale-if-error` with the origin down.
    Stale,
    /// The origin confirmed the stored copy (304).
    Revalidated,
    /// Not cacheable here (the origin answered for this viewer only, or HEAD on a miss).
    Pass,
}

impl CacheStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            CacheStatus::Hit => "HIT",
            CacheStatus::Miss => "MISS",
            CacheStatus::Stale => "STALE",
            CacheStatus::Revalidated => "REVALIDATED",
            CacheStatus::Pass => "PASS",
        }
    }
}

/// Counters for the metrics endpoint.
#[derive(Default)]
pub struct CacheMetrics {
    pub hits: AtomicU64,
    pub misses: AtomicU64,
    pub stale: AtomicU64,
    pub revalidated: AtomicU64,
    pub coalesced: AtomicU64,
    pub passes: AtomicU64,
    pub bytes_from_cache: AtomicU64,
    pub fills_failed: AtomicU64,
    pub not_stored_too_large: AtomicU64,
}

fn inc(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

pub struct Cache {
    pub store: Store,
    inflight: Inflights,
    max_object_bytes: usize,
    pub metrics: CacheMetrics,
    /// Bumped by every purge by surrogate key: a fill's tags are unknown until its response
    /// arrives, so a fill that started before such a purge does not store its result.
    /// URL and prefix purges mark the matching fills instead.
    purge_generation: AtomicU64,
}

/// Why the cache could not produce a response.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error(transparent)]
    Origin(#[from] OriginError),
    #[error("{reason}")]
    Fill { status: StatusCode, reason: String },
    /// RFC 9111 §5.2.1.7: `only-if-cached` and nothing stored → 504.
    #[error("only-if-cached requested and no stored response")]
    OnlyIfCached,
}

impl CacheError {
    pub fn status(&self) -> StatusCode {
        match self {
            CacheError::Origin(e) if e.is_timeout() => StatusCode::GATEWAY_TIMEOUT,
            CacheError::Origin(_) => StatusCode::BAD_GATEWAY,
            CacheError::Fill { status, .. } => *status,
            CacheError::OnlyIfCached => StatusCode::GATEWAY_TIMEOUT,
        }
    }
}

/// What the cache answered, with what the access log and `Server-Timing` report.
pub struct CacheAnswer {
    pub response: Response<Body>,
    pub status: CacheStatus,
    pub origin_time: Option<Duration>,
    pub upstream: Option<Arc<str>>,
}

/// The request-scoped things the cache needs besides the request.
pub struct Ctx<'a> {
    pub origin: &'a Arc<Origin>,
    pub forwarded: &'a ForwardedFor,
    pub started: Instant,
    pub route: &'a RouteCache,
    /// The request's cache key ([`key::primary`]), computed by the caller.
    pub key: String,
}

/// Purge selectors for the admin API.
#[derive(Clone, Debug)]
pub enum Purge {
    /// One URL (`host/path?query` as the cache key normalizes it), all variants.
    Url(String),
    /// Every URL starting with this prefix.
    Prefix(String),
    /// Every response tagged with this `Surrogate-Key` / `Cache-Tag`.
    SurrogateKey(String),
}

const X_CACHE: HeaderName = HeaderName::from_static("x-cache");
const SURROGATE_KEY: HeaderName = HeaderName::from_static("surrogate-key");
const CACHE_TAG: HeaderName = HeaderName::from_static("cache-tag");

/// Request fields the node handles itself and must not pass to the origin on a fill: a
/// fill fetches the whole object, unconditionally (or with the node's own validators).
const VIEWER_ONLY: [HeaderName; 5] = [
    header::RANGE,
    header::IF_RANGE,
    header::IF_NONE_MATCH,
    header::IF_MODIFIED_SINCE,
    header::IF_MATCH,
];

impl Cache {
    /// `max_bytes` of memory over `shards` LRU shards; objects over `max_object_bytes`
    /// (or over one shard's share) pass through without being stored.
    pub fn new(max_bytes: usize, shards: usize, max_object_bytes: usize) -> Arc<Cache> {
        let store = Store::new(max_bytes, shards);
        let max_object_bytes = max_object_bytes.min(store.max_object_bytes());
        Arc::new(Cache {
            store,
            inflight: Inflights::default(),
            max_object_bytes,
            metrics: CacheMetrics::default(),
            purge_generation: AtomicU64::new(0),
        })
    }

    pub fn fills_in_progress(&self) -> usize {
        self.inflight.len()
    }

    /// Removes what `purge` selects; new requests stop seeing it at once.
    /// A fetch already on its way never undoes a purge: matching fills are marked and do
    /// not store their result.
    pub fn purge(&self, purge: &Purge) -> usize {
        match purge {
            Purge::Url(url) => {
                self.inflight.purge(|k| key::url_part(k) == url);
                self.store.remove_url(url)
            }
            Purge::Prefix(prefix) => {
                let under = |k: &str| key::url_part(k).starts_with(prefix.as_str());
                self.inflight.purge(under);
                self.store.remove_where(|k, _| under(k))
            }
            Purge::SurrogateKey(tag) => {
                self.purge_generation.fetch_add(1, Ordering::SeqCst);
                self.store
                    .remove_where(|_, e| e.surrogate_keys.iter().any(|k| k == tag))
            }
        }
    }

    /// The cache phase for a GET or HEAD on a caching route.
    pub async fn serve(
        self: &Arc<Self>,
        req: Request<Body>,
        ctx: Ctx<'_>,
    ) -> Result<CacheAnswer, CacheError> {
        // When the node received the request: close enough for ages, and one clock read less.
        let now = ctx.started;
        let request_cc = CacheControl::parse(req.headers());
        let key = ctx.key.as_str();
        let found = self
            .store
            .get(key, |names| key::vary_values(names, req.headers()));
        let mut stale = None;
        match found {
            Some(entry) => {
                let age = entry.age(now);
                match policy::freshness(
                    age,
                    entry.lifetime,
                    &entry.cc,
                    &request_cc,
                    &ctx.route.policy,
                ) {
                    Freshness::Fresh => {
                        inc(&self.metrics.hits);
                        return Ok(self.answer_from_entry(&entry, &req, CacheStatus::Hit, now));
                    }
                    Freshness::StaleWhileRevalidate => {
                        inc(&self.metrics.stale);
                        // RFC 5861 §3: one background refresh, however many viewers.
                        if !entry.refreshing.swap(true, Ordering::Relaxed) {
                            self.start_refresh(key, &entry, &req, &ctx);
                        }
                        return Ok(self.answer_from_entry(&entry, &req, CacheStatus::Stale, now));
                    }
                    Freshness::Stale { if_error } => stale = Some((entry, if_error)),
                }
            }
            None if request_cc.only_if_cached => return Err(CacheError::OnlyIfCached),
            None => {}
        }

        // A HEAD miss is answered by the origin directly: filling needs the body.
        if req.method() == Method::HEAD && stale.is_none() {
            return self.pass(req, &ctx).await;
        }

        let (fill, leader_rx) = match self.inflight.join(key) {
            Role::Leader(fill, writer) => {
                let (tx, rx) = tokio::sync::oneshot::channel();
                let job = FillJob {
                    cache: self.clone(),
                    writer,
                    key: key.to_owned(),
                    request: fill_request(&req, stale.as_ref().map(|(e, _)| e)),
                    origin: ctx.origin.clone(),
                    forwarded: ctx.forwarded.clone(),
                    started: ctx.started,
                    policy: ctx.route.policy.clone(),
                    stale: stale.as_ref().map(|(e, _)| e.clone()),
                    serve_stale_on_error: stale.as_ref().is_some_and(|(_, ok)| *ok),
                    leader_wants_range: req.headers().contains_key(header::RANGE),
                    leader: tx,
                };
                tokio::spawn(job.run());
                (fill, Some(rx))
            }
            Role::Follower(fill) => {
                inc(&self.metrics.coalesced);
                (fill, None)
            }
        };

        let head = fill.head().await;
        match &*head {
            Head::Shared(shared) => {
                if !shared.vary_names.is_empty()
                    && key::vary_values(&shared.vary_names, req.headers()) != shared.vary_values
                {
                    // Coalesced with a request that varies differently: fetch our own.
                    return self.pass(req, &ctx).await;
                }
                let status = match shared.outcome {
                    FillOutcome::Fetched => {
                        inc(&self.metrics.misses);
                        CacheStatus::Miss
                    }
                    FillOutcome::Revalidated => {
                        inc(&self.metrics.revalidated);
                        CacheStatus::Revalidated
                    }
                };
                let response = answer_from_fill(&fill, shared, &req, status);
                if shared.outcome != FillOutcome::Fetched {
                    // Revalidated: the body is the stored copy, like a hit's.
                    self.metrics
                        .bytes_from_cache
                        .fetch_add(body_bytes(&response), Ordering::Relaxed);
                }
                Ok(CacheAnswer {
                    response,
                    status,
                    origin_time: shared.origin_time,
                    upstream: shared.upstream.clone(),
                })
            }
            Head::NotShared => match leader_rx {
                // The fill fetched this viewer's own response; hand it over.
                Some(rx) => match rx.await {
                    Ok(Some(answer)) => {
                        inc(&self.metrics.passes);
                        Ok(answer)
                    }
                    // A range of an object too large to cache: ask the origin for the range.
                    Ok(None) => self.pass(req, &ctx).await,
                    Err(_) => Err(CacheError::Fill {
                        status: StatusCode::BAD_GATEWAY,
                        reason: "origin fetch abandoned".into(),
                    }),
                },
                None => self.pass(req, &ctx).await,
            },
            Head::Failed { status, reason } => match stale {
                Some((entry, true)) => {
                    inc(&self.metrics.stale);
                    Ok(self.answer_from_entry(&entry, &req, CacheStatus::Stale, Instant::now()))
                }
                _ => Err(CacheError::Fill {
                    status: *status,
                    reason: reason.clone(),
                }),
            },
        }
    }

    /// Sends the viewer's own request to the origin, storing nothing.
    async fn pass(&self, req: Request<Body>, ctx: &Ctx<'_>) -> Result<CacheAnswer, CacheError> {
        inc(&self.metrics.passes);
        let answer = ctx.origin.send(req, ctx.forwarded, ctx.started).await?;
        Ok(passed(answer))
    }

    fn start_refresh(
        self: &Arc<Self>,
        key: &str,
        entry: &Arc<Entry>,
        req: &Request<Body>,
        ctx: &Ctx<'_>,
    ) {
        // Joins (or becomes) the fill for this key; nobody waits on it.
        if let Role::Leader(_, writer) = self.inflight.join(key) {
            let (tx, _) = tokio::sync::oneshot::channel();
            let job = FillJob {
                cache: self.clone(),
                writer,
                key: key.to_owned(),
                request: fill_request(req, Some(entry)),
                origin: ctx.origin.clone(),
                forwarded: ctx.forwarded.clone(),
                started: Instant::now(),
                policy: ctx.route.policy.clone(),
                stale: Some(entry.clone()),
                serve_stale_on_error: true,
                leader_wants_range: false,
                leader: tx,
            };
            tokio::spawn(job.run());
        }
    }

    fn answer_from_entry(
        &self,
        entry: &Entry,
        req: &Request<Body>,
        status: CacheStatus,
        now: Instant,
    ) -> CacheAnswer {
        let age = entry.age(now).as_secs();
        let response = if policy::not_modified(req.headers(), &entry.headers) {
            let mut r = Response::new(origin::body::empty());
            *r.status_mut() = StatusCode::NOT_MODIFIED;
            *r.headers_mut() = policy::not_modified_fields(&entry.headers);
            r
        } else {
            let mut headers = entry.headers.clone();
            let total = entry.body.len() as u64;
            let (code, body) = match range_for(req, &entry.headers, entry.status, total) {
                RangeAnswer::Partial { start, end } => {
                    set_content_range(&mut headers, Some((start, end)), total);
                    let slice = entry.body.slice(start as usize..=end as usize);
                    (StatusCode::PARTIAL_CONTENT, slice)
                }
                RangeAnswer::Unsatisfiable => {
                    set_content_range(&mut headers, None, total);
                    (StatusCode::RANGE_NOT_SATISFIABLE, Bytes::new())
                }
                RangeAnswer::Full => (entry.status, entry.body.clone()),
            };
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
            if req.method() != Method::HEAD {
                self.metrics
                    .bytes_from_cache
                    .fetch_add(body.len() as u64, Ordering::Relaxed);
            }
            let body = if req.method() == Method::HEAD {
                origin::body::empty()
            } else {
                origin::body::full(body)
            };
            let mut r = Response::new(body);
            *r.status_mut() = code;
            *r.headers_mut() = headers;
            r
        };
        let mut response = response;
        let h = response.headers_mut();
        h.insert(header::AGE, HeaderValue::from(age));
        h.insert(X_CACHE, HeaderValue::from_static(status.as_str()));
        CacheAnswer {
            response,
            status,
            origin_time: None,
            upstream: None,
        }
    }
}

/// An origin response handed to the viewer as is, marked as not cached.
fn passed(answer: origin::http::OriginResponse) -> CacheAnswer {
    let mut response = answer.response;
    response.headers_mut().insert(
        X_CACHE,
        HeaderValue::from_static(CacheStatus::Pass.as_str()),
    );
    CacheAnswer {
        response,
        status: CacheStatus::Pass,
        origin_time: Some(answer.time_to_first_byte),
        upstream: Some(answer.upstream),
    }
}

/// The range to serve from a stored or streaming response: only for a full 200, and
/// only when `If-Range` (if any) still matches (RFC 9110 §13.1.5).
fn range_for(
    req: &Request<Body>,
    stored: &HeaderMap,
    status: StatusCode,
    total: u64,
) -> RangeAnswer {
    let Some(range) = req.headers().get(header::RANGE) else {
        return RangeAnswer::Full;
    };
    if status != StatusCode::OK || req.method() != Method::GET {
        return RangeAnswer::Full;
    }
    if let Some(if_range) = req.headers().get(header::IF_RANGE) {
        // Strong comparison only: a weak ETag never satisfies If-Range.
        let etag_match = stored
            .get(header::ETAG)
            .is_some_and(|e| e == if_range && !e.as_bytes().starts_with(b"W/"));
        let date_match = stored.get(header::LAST_MODIFIED) == Some(if_range);
        if !etag_match && !date_match {
            return RangeAnswer::Full;
        }
    }
    origin::range::parse(Some(range), total)
}

fn set_content_range(headers: &mut HeaderMap, range: Option<(u64, u64)>, total: u64) {
    let value = match range {
        Some((start, end)) => format!("bytes {start}-{end}/{total}"),
        None => format!("bytes */{total}"),
    };
    if let Ok(v) = HeaderValue::from_str(&value) {
        headers.insert(header::CONTENT_RANGE, v);
    }
}

/// The response for one waiter of a coalesced fetch, streaming as the fill receives.
fn answer_from_fill(
    fill: &Arc<inflight::Fill>,
    head: &SharedHead,
    req: &Request<Body>,
    status: CacheStatus,
) -> Response<Body> {
    let mut headers = head.headers.clone();
    headers.insert(X_CACHE, HeaderValue::from_static(status.as_str()));
    if head.status == StatusCode::OK && policy::not_modified(req.headers(), &head.headers) {
        let mut r = Response::new(origin::body::empty());
        *r.status_mut() = StatusCode::NOT_MODIFIED;
        let mut fields = policy::not_modified_fields(&head.headers);
        fields.insert(X_CACHE, HeaderValue::from_static(status.as_str()));
        *r.headers_mut() = fields;
        return r;
    }
    let head_only = req.method() == Method::HEAD;
    let (code, body) = match head.length {
        Some(total) => match range_for(req, &head.headers, head.status, total) {
            RangeAnswer::Partial { start, end } => {
                set_content_range(&mut headers, Some((start, end)), total);
                headers.insert(header::CONTENT_LENGTH, HeaderValue::from(end - start + 1));
                (
                    StatusCode::PARTIAL_CONTENT,
                    fill.reader(start, Some(end - start + 1)),
                )
            }
            RangeAnswer::Unsatisfiable => {
                set_content_range(&mut headers, None, total);
                headers.insert(header::CONTENT_LENGTH, HeaderValue::from(0));
                (StatusCode::RANGE_NOT_SATISFIABLE, fill.reader(0, Some(0)))
            }
            RangeAnswer::Full => {
                // A stored copy refreshed by a 304 keeps the origin's fields, which lack
                // a length if the origin sent it chunked; the length is known here.
                headers.insert(header::CONTENT_LENGTH, HeaderValue::from(total));
                (head.status, fill.reader(0, None))
            }
        },
        None => (head.status, fill.reader(0, None)),
    };
    let body = if head_only {
        origin::body::empty()
    } else {
        body.boxed_unsync()
    };
    let mut r = Response::new(body);
    *r.status_mut() = code;
    *r.headers_mut() = headers;
    r
}

/// The body bytes an answer will carry: none for a 304 or a HEAD answer (empty bodies),
/// else its Content-Length, which every answer of known length has.
fn body_bytes(response: &Response<Body>) -> u64 {
    if http_body::Body::is_end_stream(response.body()) {
        return 0;
    }
    response
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse().ok())
        .unwrap_or(0)
}

/// The origin request for a fill: the viewer's request without the fields the node
/// answers itself, plus the stored validators when revalidating (RFC 9111 §4.3.1).
fn fill_request(req: &Request<Body>, stale: Option<&Arc<Entry>>) -> Request<Body> {
    let mut headers = req.headers().clone();
    for name in VIEWER_ONLY {
        headers.remove(name);
    }
    if let Some(entry) = stale {
        if let Some(etag) = entry.headers.get(header::ETAG) {
            headers.insert(header::IF_NONE_MATCH, etag.clone());
        }
        if let Some(lm) = entry.headers.get(header::LAST_MODIFIED) {
            headers.insert(header::IF_MODIFIED_SINCE, lm.clone());
        }
    }
    let mut fill = Request::new(origin::body::empty());
    *fill.method_mut() = Method::GET;
    *fill.uri_mut() = req.uri().clone();
    *fill.version_mut() = req.version();
    *fill.headers_mut() = headers;
    fill
}

/// One coalesced origin fetch, run as its own task.
struct FillJob {
    cache: Arc<Cache>,
    writer: FillWriter,
    key: String,
    request: Request<Body>,
    origin: Arc<Origin>,
    forwarded: ForwardedFor,
    started: Instant,
    policy: RoutePolicy,
    stale: Option<Arc<Entry>>,
    serve_stale_on_error: bool,
    leader_wants_range: bool,
    /// The leader's own answer when the response cannot be shared: `None` tells it to
    /// send its own request.
    leader: tokio::sync::oneshot::Sender<Option<CacheAnswer>>,
}

impl FillJob {
    async fn run(self) {
        let FillJob {
            cache,
            writer,
            key,
            request,
            origin,
            forwarded,
            started,
            policy,
            stale,
            serve_stale_on_error,
            leader_wants_range,
            leader,
        } = self;
        let generation = cache.purge_generation.load(Ordering::SeqCst);
        let request_time = SystemTime::now();
        let request_headers = request.headers().clone();
        let request_cc = CacheControl::parse(&request_headers);
        let method = request.method().clone();
        let fail = |status: StatusCode, reason: String| {
            inc(&cache.metrics.fills_failed);
            writer.set_head(Head::Failed {
                status,
                reason: reason.clone(),
            });
            writer.fail(&reason);
            cache.inflight.close(&key, writer.fill());
            // A failed background refresh may be tried again by a later request.
            if let Some(old) = &stale {
                old.refreshing.store(false, Ordering::Relaxed);
            }
        };

        let answer = match origin.send(request, &forwarded, started).await {
            Ok(answer) => answer,
            Err(e) => {
                let status = if e.is_timeout() {
                    StatusCode::GATEWAY_TIMEOUT
                } else {
                    StatusCode::BAD_GATEWAY
                };
                fail(status, e.to_string());
                return;
            }
        };
        let response_time = SystemTime::now();
        let (parts, mut body) = answer.response.into_parts();

        // RFC 9111 §4.3.3: 304 → the stored body is current; freshen its fields.
        if let (Some(old), StatusCode::NOT_MODIFIED) = (&stale, parts.status) {
            // A 304 naming another ETag does not describe the stored copy: leave it as is.
            let selected = policy::selects(&old.headers, &parts.headers);
            let mut headers = old.headers.clone();
            if selected {
                policy::freshen(&mut headers, &parts.headers);
            }
            let entry = new_entry(
                old.status,
                headers,
                old.body.clone(),
                &policy,
                request_time,
                response_time,
                old.vary_names.clone(),
                old.vary_values.clone(),
            );
            // Served from the stored copy: with its Age (the 304's own Age, if the origin
            // is a cache itself, plus the time the answer took), like any hit.
            let mut viewer_headers = entry.headers.clone();
            viewer_headers.insert(
                header::AGE,
                HeaderValue::from(entry.age(Instant::now()).as_secs()),
            );
            let shared = SharedHead {
                status: entry.status,
                headers: viewer_headers,
                length: Some(entry.body.len() as u64),
                vary_names: entry.vary_names.clone(),
                vary_values: entry.vary_values.clone(),
                outcome: FillOutcome::Revalidated,
                upstream: Some(answer.upstream.clone()),
                origin_time: Some(answer.time_to_first_byte),
            };
            let body = entry.body.clone();
            if selected
                && cache.purge_generation.load(Ordering::SeqCst) == generation
                && !writer.fill().purged()
            {
                cache.store.insert(key.clone(), Arc::new(entry));
            }
            writer.set_head(Head::Shared(shared));
            writer.push(body);
            writer.finish();
            cache.inflight.close(&key, writer.fill());
            return;
        }
        // RFC 5861 §4: an origin error while revalidating may be answered with the stale copy.
        if stale.is_some() && serve_stale_on_error && parts.status.is_server_error() {
            fail(parts.status, format!("origin answered {}", parts.status));
            return;
        }

        let response_cc = CacheControl::parse(&parts.headers);
        let length = parts
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        // Responses meant for one viewer are never handed to another (nor stored).
        // §3.5: with Authorization, only public, s-maxage or must-revalidate responses
        // may be shared.
        let authorized_shareable =
            response_cc.public || response_cc.s_maxage.is_some() || response_cc.must_revalidate;
        let for_one_viewer = response_cc.private
            || parts.headers.contains_key(header::SET_COOKIE)
            || (request_headers.contains_key(header::AUTHORIZATION) && !authorized_shareable);
        // Objects too large to store bypass the cache: each viewer streams its own, with
        // its own backpressure, instead of the node buffering the whole object for them.
        let too_large = length.is_some_and(|n| n > cache.max_object_bytes as u64);
        if too_large {
            inc(&cache.metrics.not_stored_too_large);
        }
        if for_one_viewer || too_large {
            let answer = if too_large && leader_wants_range {
                None
            } else {
                Some(passed(origin::http::OriginResponse {
                    response: Response::from_parts(parts, body),
                    ..answer
                }))
            };
            let _ = leader.send(answer);
            writer.set_head(Head::NotShared);
            cache.inflight.close(&key, writer.fill());
            return;
        }
        let lifetime =
            policy::freshness_lifetime(parts.status, &parts.headers, &response_cc, &policy);
        let has_validators = parts.headers.contains_key(header::ETAG)
            || parts.headers.contains_key(header::LAST_MODIFIED);
        let mut store_it = policy::storable(&method, &request_headers, &request_cc, parts.status, &parts.headers, &response_cc, &policy)
            // Useless to keep: already stale and nothing to revalidate with.
            && (lifetime > Duration::ZERO || has_validators);
        let vary_names: Vec<String> = policy::vary_names(&parts.headers).collect();
        let vary_values = key::vary_values(&vary_names, &request_headers);
        // Surrogate-Control speaks to this cache only; viewers never see it.
        let mut viewer_headers = parts.headers.clone();
        viewer_headers.remove(policy::SURROGATE_CONTROL);
        writer.set_head(Head::Shared(SharedHead {
            status: parts.status,
            headers: viewer_headers,
            length,
            vary_names: vary_names.clone(),
            vary_values: vary_values.clone(),
            outcome: FillOutcome::Fetched,
            upstream: Some(answer.upstream.clone()),
            origin_time: Some(answer.time_to_first_byte),
        }));
        drop(leader);

        let mut received: u64 = 0;
        // The last chunk is held back until the entry is stored: a viewer that has every
        // byte and asks again must find it stored, not fall into the gap before the insert.
        let mut last = None;
        loop {
            match body.frame().await {
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        received += data.len() as u64;
                        if received > cache.max_object_bytes as u64 && store_it {
                            inc(&cache.metrics.not_stored_too_large);
                            store_it = false;
                            // It will not be stored: later viewers fetch their own instead
                            // of replaying an ever-growing buffer from the start.
                            cache.inflight.close(&key, writer.fill());
                        }
                        if http_body::Body::is_end_stream(&body) {
                            last = Some(data);
                            break;
                        }
                        writer.push(data);
                    }
                }
                Some(Err(e)) => {
                    // A truncated or failed body is never stored; every waiter's stream
                    // ends with this error instead of looking complete.
                    inc(&cache.metrics.fills_failed);
                    writer.fail(&format!("origin body failed after {received} bytes: {e}"));
                    cache.inflight.close(&key, writer.fill());
                    return;
                }
                None => break,
            }
        }
        if let Some(expected) = length {
            if received != expected {
                inc(&cache.metrics.fills_failed);
                writer.fail(&format!(
                    "origin sent {received} bytes, Content-Length said {expected}"
                ));
                cache.inflight.close(&key, writer.fill());
                return;
            }
        }
        if store_it
            && cache.purge_generation.load(Ordering::SeqCst) == generation
            && !writer.fill().purged()
        {
            let body = writer.fill().collect_body(last.as_ref());
            let entry = new_entry(
                parts.status,
                parts.headers,
                body,
                &policy,
                request_time,
                response_time,
                vary_names,
                vary_values,
            );
            cache.store.insert(key.clone(), Arc::new(entry));
        }
        if let Some(last) = last {
            writer.push(last);
        }
        writer.finish();
        cache.inflight.close(&key, writer.fill());
    }
}

#[allow(clippy::too_many_arguments)]
fn new_entry(
    status: StatusCode,
    mut headers: HeaderMap,
    body: Bytes,
    policy: &RoutePolicy,
    request_time: SystemTime,
    response_time: SystemTime,
    vary_names: Vec<String>,
    vary_values: Vec<Option<String>>,
) -> Entry {
    let cc = CacheControl::parse(&headers);
    let lifetime = policy::freshness_lifetime(status, &headers, &cc, policy);
    let initial_age = policy::initial_age(
        &headers,
        policy::AgeInputs {
            request_time,
            response_time,
        },
    );
    // The node computes Age itself; fields `no-cache="..."` names are not stored, nor is
    // Surrogate-Control (its lifetime is in `lifetime` now).
    headers.remove(header::AGE);
    headers.remove(policy::SURROGATE_CONTROL);
    for field in &cc.no_cache_fields {
        headers.remove(field.as_str());
    }
    let headers = compact(headers);
    let surrogate_keys = headers
        .get_all(SURROGATE_KEY)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split_whitespace())
        .chain(
            headers
                .get_all(CACHE_TAG)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(','))
                .map(str::trim),
        )
        .filter(|k| !k.is_empty())
        .map(str::to_owned)
        .collect();
    Entry {
        status,
        headers,
        body,
        stored_at: Instant::now(),
        stored_at_wall: response_time,
        initial_age,
        lifetime,
        cc,
        vary_names,
        vary_values,
        surrogate_keys,
        refreshing: AtomicBool::new(false),
    }
}

/// Header values parsed from an origin response share that connection's read buffer; a
/// stored copy gets its own small allocations so it pins nothing else.
fn compact(headers: HeaderMap) -> HeaderMap {
    let mut out = HeaderMap::with_capacity(headers.len());
    let mut last = None;
    for (name, value) in headers {
        let name = match name {
            Some(name) => {
                last = Some(name.clone());
                name
            }
            None => match &last {
                Some(name) => name.clone(),
                None => continue,
            },
        };
        let value = HeaderValue::from_bytes(value.as_bytes()).unwrap_or(value);
        out.append(name, value);
    }
    out
}

impl inflight::Fill {
    /// The whole body as one exact-size buffer, for the store: one copy per fill, none
    /// per hit. Even a single chunk is copied: it is a slice of the origin connection's
    /// read buffer, and keeping it would pin that whole buffer behind a small entry,
    /// outside the store's byte accounting.
    fn collect_body(&self, last: Option<&Bytes>) -> Bytes {
        let chunks = self.chunks();
        let size = chunks.iter().chain(last).map(|c| c.len()).sum();
        let mut all = BytesMut::with_capacity(size);
        for chunk in chunks.iter().chain(last) {
            all.extend_from_slice(chunk);
        }
        all.freeze()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn first_chunk(response: Response<Body>) -> Bytes {
        let frame = response.into_body().frame().await.unwrap().unwrap();
        frame.into_data().unwrap()
    }

    /// A hit lends the stored bytes themselves: the body of a whole answer and of a range
    /// point into the entry's buffer, so no viewer's answer copies the object.
    #[tokio::test]
    async fn hits_lend_the_stored_bytes_without_copying() {
        let cache = Cache::new(1 << 20, 1, 1 << 20);
        let stored = Bytes::from(vec![7u8; 10_000]);
        let now = SystemTime::now();
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("max-age=60"),
        );
        let entry = new_entry(
            StatusCode::OK,
            headers,
            stored.clone(),
            &RoutePolicy::default(),
            now,
            now,
            Vec::new(),
            Vec::new(),
        );
        let get = |range: Option<&str>| {
            let mut req = Request::get("/a");
            if let Some(range) = range {
                req = req.header(header::RANGE, range);
            }
            req.body(origin::body::empty()).unwrap()
        };
        let answer = |req: &Request<Body>| {
            cache
                .answer_from_entry(&entry, req, CacheStatus::Hit, Instant::now())
                .response
        };
        let whole = first_chunk(answer(&get(None))).await;
        assert_eq!((whole.as_ptr(), whole.len()), (stored.as_ptr(), 10_000));
        let part = answer(&get(Some("bytes=100-199")));
        assert_eq!(part.status(), StatusCode::PARTIAL_CONTENT);
        let part = first_chunk(part).await;
        assert_eq!((part.as_ptr(), part.len()), (stored[100..].as_ptr(), 100));
    }
}
