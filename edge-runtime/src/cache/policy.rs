//! HTTP caching rules for a shared cache (RFC 9111), as pure functions over headers and
//! times: what may be stored, for how long it is fresh, how old it is, and whether a
//! viewer's conditional request is satisfied. No I/O; tested with fixed clocks.

use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, StatusCode};
use std::time::{Duration, SystemTime};

/// RFC 9111 §1.2.2: delta-seconds too large to represent are taken as 2^31.
const DELTA_SECONDS_CAP: u64 = 2_147_483_648;

/// Heuristic freshness (RFC 9111 §4.2.2) is a fraction of the time since Last-Modified,
/// capped so a long-unchanged object is still rechecked daily.
const HEURISTIC_FRACTION: u32 = 10;
const HEURISTIC_CAP: Duration = Duration::from_secs(86_400);

/// The `Cache-Control` directives a shared cache acts on (RFC 9111 §5.2), from a request
/// or a response. Unknown directives are ignored (§5.2.3).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CacheControl {
    pub max_age: Option<u64>,
    pub s_maxage: Option<u64>,
    pub max_stale: Option<u64>,
    /// `max-stale` without a value: any staleness is acceptable.
    pub max_stale_any: bool,
    pub min_fresh: Option<u64>,
    pub no_store: bool,
    /// `no-cache` without field names. With field names (§5.2.2.4) it only restricts
    /// those fields, which the node handles by not storing them.
    pub no_cache: bool,
    pub no_cache_fields: Vec<String>,
    pub private: bool,
    pub public: bool,
    pub must_revalidate: bool,
    pub proxy_revalidate: bool,
    pub only_if_cached: bool,
    pub stale_while_revalidate: Option<u64>,
    pub stale_if_error: Option<u64>,
    pub immutable: bool,
    /// RFC 9111 §5.2.2.3: store only if the cache understands the status code.
    pub must_understand: bool,
    /// A directive we act on had an invalid value (e.g. `max-age=abc`). §4.2.1 asks a
    /// cache to treat such a response as stale.
    pub invalid: bool,
}

impl CacheControl {
    pub fn parse(headers: &HeaderMap) -> CacheControl {
        let mut cc = CacheControl::default();
        for value in headers.get_all(header::CACHE_CONTROL) {
            let Ok(text) = value.to_str() else {
                cc.invalid = true;
                continue;
            };
            for directive in split_list(text) {
                cc.apply(directive);
            }
        }
        cc
    }

    fn apply(&mut self, directive: &str) {
        let (name, value) = match directive.split_once('=') {
            Some((n, v)) => (n.trim(), Some(unquote(v.trim()))),
            None => (directive.trim(), None),
        };
        let seconds = |v: Option<&str>| -> Result<u64, ()> {
            let v = v.ok_or(())?;
            if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
                return Err(());
            }
            Ok(v.parse::<u64>()
                .unwrap_or(DELTA_SECONDS_CAP)
                .min(DELTA_SECONDS_CAP))
        };
        let name = name.to_ascii_lowercase();
        let value = value.as_deref();
        match name.as_str() {
            "max-age" => match seconds(value) {
                // §4.2.1: with several, the first wins; a later duplicate is ignored.
                Ok(s) => {
                    self.max_age.get_or_insert(s);
                }
                Err(()) => self.invalid = true,
            },
            "s-maxage" => match seconds(value) {
                Ok(s) => {
                    self.s_maxage.get_or_insert(s);
                }
                Err(()) => self.invalid = true,
            },
            "max-stale" => match value {
                None => self.max_stale_any = true,
                Some(_) => {
                    if let Ok(s) = seconds(value) {
                        self.max_stale = Some(s);
                    }
                }
            },
            "min-fresh" => self.min_fresh = seconds(value).ok(),
            "no-store" => self.no_store = true,
            "no-cache" => match value {
                Some(fields) if !fields.is_empty() => self
                    .no_cache_fields
                    .extend(fields.split(',').map(|f| f.trim().to_ascii_lowercase())),
                _ => self.no_cache = true,
            },
            // §5.2.2.7: `private` with field names only restricts those fields; a shared
            // cache treats both forms as "do not store" to stay safe.
            "private" => self.private = true,
            "public" => self.public = true,
            "must-revalidate" => self.must_revalidate = true,
            "proxy-revalidate" => self.proxy_revalidate = true,
            "only-if-cached" => self.only_if_cached = true,
            "stale-while-revalidate" => self.stale_while_revalidate = seconds(value).ok(),
            "stale-if-error" => self.stale_if_error = seconds(value).ok(),
            "immutable" => self.immutable = true,
            "must-understand" => self.must_understand = true,
            _ => {}
        }
    }

    /// `must-revalidate` or, for a shared cache, `proxy-revalidate` (§5.2.2.8): a stale
    /// response must never be served without a successful revalidation.
    pub fn forbids_stale(&self) -> bool {
        self.must_revalidate || self.proxy_revalidate || self.s_maxage.is_some()
    }
}

/// Splits a comma-separated list, keeping commas inside quoted strings.
fn split_list(text: &str) -> impl Iterator<Item = &str> {
    let mut parts = Vec::new();
    let mut start = 0;
    let mut quoted = false;
    for (i, b) in text.bytes().enumerate() {
        match b {
            b'"' => quoted = !quoted,
            b',' if !quoted => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts.into_iter().map(str::trim).filter(|p| !p.is_empty())
}

fn unquote(v: &str) -> String {
    v.strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(v)
        .to_owned()
}

/// `Surrogate-Control` (W3C Edge Architecture): directives for caches like this one,
/// taking precedence over `Cache-Control`. The node removes the field before viewers see it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SurrogateControl {
    pub max_age: Option<u64>,
    pub no_store: bool,
}

pub const SURROGATE_CONTROL: http::HeaderName = http::HeaderName::from_static("surrogate-control");

impl SurrogateControl {
    pub fn parse(headers: &HeaderMap) -> Option<SurrogateControl> {
        let mut sc = SurrogateControl::default();
        let mut present = false;
        for value in headers.get_all(&SURROGATE_CONTROL) {
            present = true;
            let Ok(text) = value.to_str() else { continue };
            for directive in split_list(text) {
                // `max-age=60;edge-a` targets one surrogate; this node takes every target.
                let directive = directive.split(';').next().unwrap_or("").trim();
                let (name, value) = match directive.split_once('=') {
                    Some((n, v)) => (n.trim(), Some(v.trim().trim_matches('"'))),
                    None => (directive, None),
                };
                match name.to_ascii_lowercase().as_str() {
                    "no-store" => sc.no_store = true,
                    "max-age" => {
                        sc.max_age = value
                            .and_then(|v| v.parse::<u64>().ok())
                            .map(|s| s.min(DELTA_SECONDS_CAP))
                    }
                    _ => {}
                }
            }
        }
        present.then_some(sc)
    }
}

/// Route settings that bend the origin's caching headers.
#[derive(Clone, Debug, Default)]
pub struct RoutePolicy {
    /// Freshness for responses that carry no explicit lifetime.
    pub default_ttl: Option<Duration>,
    /// Freshness that replaces whatever the origin says (but not `no-store`/`private`).
    pub override_ttl: Option<Duration>,
}

/// RFC 9111 §3: whether a response to `method` may be stored by a shared cache.
pub fn storable(
    method: &Method,
    request: &HeaderMap,
    request_cc: &CacheControl,
    status: StatusCode,
    response: &HeaderMap,
    response_cc: &CacheControl,
    route: &RoutePolicy,
) -> bool {
    // Only GET responses are stored (HEAD is answered from them).
    if method != Method::GET {
        return false;
    }
    // §3: "the response status code is final"; partial content is not stored as an object.
    if status.is_informational() || status == StatusCode::PARTIAL_CONTENT {
        return false;
    }
    let surrogate = SurrogateControl::parse(response);
    if surrogate.is_some_and(|sc| sc.no_store) {
        return false;
    }
    // Surrogate-Control max-age speaks for this cache and outranks Cache-Control.
    let surrogate_fresh = surrogate.is_some_and(|sc| sc.max_age.is_some());
    if request_cc.no_store || (!surrogate_fresh && (response_cc.no_store || response_cc.private)) {
        return false;
    }
    // §5.2.2.3: must-understand limits storing to status codes whose caching rules the
    // cache implements.
    if response_cc.must_understand && !understood_status(status) {
        return false;
    }
    // A cookie set for one viewer must never reach another.
    if response.contains_key(header::SET_COOKIE) {
        return false;
    }
    // §4.1: `Vary: *` can never match a later request.
    if vary_names(response).any(|n| n == "*") {
        return false;
    }
    // §3.5: a request with Authorization is stored only when the response says so.
    if request.contains_key(header::AUTHORIZATION)
        && !(response_cc.must_revalidate || response_cc.public || response_cc.s_maxage.is_some())
    {
        return false;
    }
    let explicit = surrogate_fresh
        || response_cc.s_maxage.is_some()
        || response_cc.max_age.is_some()
        || response.contains_key(header::EXPIRES);
    explicit
        || response_cc.public
        || response_cc.no_cache
        || route.override_ttl.is_some()
        || route.default_ttl.is_some()
        || heuristically_cacheable(status)
}

/// Status codes whose semantics (and caching rules) the node implements.
fn understood_status(status: StatusCode) -> bool {
    matches!(
        status.as_u16(),
        200 | 203
            | 204
            | 206
            | 300
            | 301
            | 302
            | 303
            | 304
            | 307
            | 308
            | 400
            | 403
            | 404
            | 405
            | 410
            | 414
            | 500
            | 501
            | 502
            | 503
            | 504
    )
}

/// RFC 9110 §15.1: statuses cacheable by default (heuristic freshness allowed).
pub fn heuristically_cacheable(status: StatusCode) -> bool {
    matches!(
        status.as_u16(),
        200 | 203 | 204 | 206 | 300 | 301 | 308 | 404 | 405 | 410 | 414 | 501
    )
}

/// RFC 9111 §4.2.1 (and route policy): how long a stored response stays fresh.
pub fn freshness_lifetime(
    status: StatusCode,
    response: &HeaderMap,
    cc: &CacheControl,
    route: &RoutePolicy,
) -> Duration {
    if let Some(ttl) = route.override_ttl {
        return ttl;
    }
    if let Some(s) = SurrogateControl::parse(response).and_then(|sc| sc.max_age) {
        return Duration::from_secs(s);
    }
    if cc.invalid {
        return Duration::ZERO;
    }
    if let Some(s) = cc.s_maxage.or(cc.max_age) {
        return Duration::from_secs(s);
    }
    if let Some(expires) = response.get(header::EXPIRES) {
        // §5.3: an invalid Expires (e.g. "0") means already expired.
        let Some(expires) = http_date(expires) else {
            return Duration::ZERO;
        };
        let date = response.get(header::DATE).and_then(http_date);
        return match date {
            Some(date) => expires.duration_since(date).unwrap_or_default(),
            None => expires
                .duration_since(SystemTime::now())
                .unwrap_or_default(),
        };
    }
    if let Some(ttl) = route.default_ttl {
        return ttl;
    }
    // §4.2.2: heuristic freshness from Last-Modified, only for default-cacheable statuses.
    if heuristically_cacheable(status) {
        let last_modified = response.get(header::LAST_MODIFIED).and_then(http_date);
        let date = response.get(header::DATE).and_then(http_date);
        if let (Some(lm), Some(date)) = (last_modified, date) {
            let since = date.duration_since(lm).unwrap_or_default();
            return (since / HEURISTIC_FRACTION).min(HEURISTIC_CAP);
        }
    }
    Duration::ZERO
}

/// The times RFC 9111 §4.2.3 needs to compute a response's age.
#[derive(Clone, Copy, Debug)]
pub struct AgeInputs {
    pub request_time: SystemTime,
    pub response_time: SystemTime,
}

/// RFC 9111 §4.2.3: `corrected_initial_age`, the age a response had when it was stored.
pub fn initial_age(response: &HeaderMap, at: AgeInputs) -> Duration {
    let age_value = parse_age(response.get_all(header::AGE).iter())
        .map(Duration::from_secs)
        .unwrap_or_default();
    let date_value = response.get(header::DATE).and_then(http_date);
    let apparent_age = date_value
        .and_then(|date| at.response_time.duration_since(date).ok())
        .unwrap_or_default();
    let response_delay = at
        .response_time
        .duration_since(at.request_time)
        .unwrap_or_default();
    let corrected_age_value = age_value + response_delay;
    apparent_age.max(corrected_age_value)
}

/// RFC 9111 §5.1 `Age`: one non-negative integer. Anything else (a list, several lines,
/// a fraction, a parameter, garbage) is taken as the oldest possible age: the cache then
/// revalidates instead of trusting a value it cannot read, which never serves anything
/// staler than the origin meant.
fn parse_age<'a>(mut values: impl Iterator<Item = &'a HeaderValue>) -> Option<u64> {
    let first = values.next()?;
    if values.next().is_some() {
        return Some(DELTA_SECONDS_CAP);
    }
    let text = first.to_str().map(str::trim).unwrap_or("");
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Some(DELTA_SECONDS_CAP);
    }
    Some(
        text.parse::<u64>()
            .unwrap_or(DELTA_SECONDS_CAP)
            .min(DELTA_SECONDS_CAP),
    )
}

/// What a stored response is at a given moment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Freshness {
    Fresh,
    /// Stale, but `stale-while-revalidate` allows serving it while a refresh runs.
    StaleWhileRevalidate,
    /// Stale: revalidate; if the origin fails, serve it only when this is true
    /// (`stale-if-error`).
    Stale {
        if_error: bool,
    },
}

/// RFC 9111 §4.2 and RFC 5861: freshness of a stored response of `age`, given the
/// viewer's request directives.
pub fn freshness(
    age: Duration,
    lifetime: Duration,
    stored: &CacheControl,
    request: &CacheControl,
    route: &RoutePolicy,
) -> Freshness {
    // A stored `no-cache` (§5.2.2.4) always needs validation.
    let needs_validation = stored.no_cache && route.override_ttl.is_none();
    let mut limit = lifetime;
    // §5.2.1.1: the viewer accepts nothing older than its max-age.
    if let Some(max_age) = request.max_age {
        limit = limit.min(Duration::from_secs(max_age));
    }
    // §5.2.1.3: nor anything that will not stay fresh for min-fresh more.
    if let Some(min_fresh) = request.min_fresh {
        limit = limit.saturating_sub(Duration::from_secs(min_fresh));
    }
    // The viewer's `no-cache` (§5.2.1.4) asks for validation too.
    if !needs_validation && !request.no_cache && age < limit {
        return Freshness::Fresh;
    }
    let staleness = age.saturating_sub(lifetime);
    let stale_allowed = !stored.forbids_stale() && !needs_validation && !request.no_cache;
    // §5.2.1.2: the viewer may accept a stale response outright.
    if stale_allowed
        && age >= lifetime
        && (request.max_stale_any
            || request
                .max_stale
                .is_some_and(|s| staleness <= Duration::from_secs(s)))
    {
        return Freshness::Fresh;
    }
    if stale_allowed
        && age >= lifetime
        && stored
            .stale_while_revalidate
            .is_some_and(|s| staleness < Duration::from_secs(s))
    {
        return Freshness::StaleWhileRevalidate;
    }
    let if_error = !stored.must_revalidate
        && !stored.proxy_revalidate
        && [stored.stale_if_error, request.stale_if_error]
            .into_iter()
            .flatten()
            .any(|s| staleness <= Duration::from_secs(s));
    Freshness::Stale { if_error }
}

/// The field names listed in `Vary`, lower-cased.
pub fn vary_names(headers: &HeaderMap) -> impl Iterator<Item = String> + '_ {
    headers
        .get_all(header::VARY)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|n| n.trim().to_ascii_lowercase())
        .filter(|n| !n.is_empty())
}

/// RFC 9110 §13.1.2 / §13.2.2: whether the viewer's `If-None-Match` (preferred) or
/// `If-Modified-Since` is satisfied by a stored response, so that a 304 is the answer.
pub fn not_modified(request: &HeaderMap, stored: &HeaderMap) -> bool {
    if let Some(inm) = request.get(header::IF_NONE_MATCH) {
        let Some(etag) = stored.get(header::ETAG).and_then(|e| e.to_str().ok()) else {
            return false;
        };
        let Ok(inm) = inm.to_str() else { return false };
        if inm.trim() == "*" {
            return true;
        }
        // Weak comparison (§8.8.3.2): opaque tags equal, W/ ignored.
        let opaque = |t: &str| t.trim().trim_start_matches("W/").to_owned();
        let etag = opaque(etag);
        return split_list(inm).any(|candidate| opaque(candidate) == etag);
    }
    if let Some(ims) = request.get(header::IF_MODIFIED_SINCE).and_then(http_date) {
        let reference = stored
            .get(header::LAST_MODIFIED)
            .or_else(|| stored.get(header::DATE))
            .and_then(http_date);
        return reference.is_some_and(|lm| lm <= ims);
    }
    false
}

/// Fields a 304 must not change in a stored response: they describe the stored body
/// (RFC 9111 §3.2), which the 304 does not carry.
fn describes_body(name: &http::HeaderName) -> bool {
    matches!(
        name,
        &header::CONTENT_LENGTH
            | &header::CONTENT_RANGE
            | &header::TRANSFER_ENCODING
            | &header::CONTENT_ENCODING
    ) || name.as_str() == "content-md5"
}

/// RFC 9111 §4.3.4: a 304 selects the stored response when its strong validator matches
/// (or it has none); a 304 for another representation must not update it.
pub fn selects(stored: &HeaderMap, not_modified: &HeaderMap) -> bool {
    match (not_modified.get(header::ETAG), stored.get(header::ETAG)) {
        (Some(new), Some(old)) => new == old,
        (Some(_), None) => false,
        (None, _) => true,
    }
}

/// RFC 9111 §4.3.4: a 304 from the origin freshens the stored header fields.
pub fn freshen(stored: &mut HeaderMap, not_modified: &HeaderMap) {
    for name in not_modified.keys() {
        if !describes_body(name) {
            stored.remove(name);
        }
    }
    for (name, value) in not_modified {
        if !describes_body(name) {
            stored.append(name.clone(), value.clone());
        }
    }
}

/// The fields a 304 from the cache carries (RFC 9110 §15.4.5).
pub fn not_modified_fields(stored: &HeaderMap) -> HeaderMap {
    let mut out = HeaderMap::new();
    for name in [
        header::CACHE_CONTROL,
        header::CONTENT_LOCATION,
        header::DATE,
        header::ETAG,
        header::EXPIRES,
        header::VARY,
        header::LAST_MODIFIED,
    ] {
        for value in stored.get_all(&name) {
            out.append(name.clone(), value.clone());
        }
    }
    out
}

pub fn http_date(value: &HeaderValue) -> Option<SystemTime> {
    httpdate::parse_http_date(value.to_str().ok()?.trim()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    fn cc(value: &str) -> CacheControl {
        CacheControl::parse(&headers(&[("cache-control", value)]))
    }

    fn date(secs: u64) -> String {
        httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(secs))
    }

    const NO_ROUTE: RoutePolicy = RoutePolicy {
        default_ttl: None,
        override_ttl: None,
    };

    #[test]
    fn parses_directives_case_and_quotes() {
        let c = cc("Max-Age=60, s-maxage=\"120\", no-cache=\"set-cookie, x-a\", Public");
        assert_eq!(c.max_age, Some(60));
        assert_eq!(c.s_maxage, Some(120));
        assert!(c.public && !c.no_cache);
        assert_eq!(c.no_cache_fields, vec!["set-cookie", "x-a"]);
        let c = cc("max-age=abc");
        assert!(c.invalid && c.max_age.is_none());
        assert_eq!(
            cc("max-age=99999999999999999999").max_age,
            Some(DELTA_SECONDS_CAP)
        );
        assert_eq!(
            cc("max-age=10, max-age=20").max_age,
            Some(10),
            "first one wins"
        );
        let c = CacheControl::parse(&headers(&[
            ("cache-control", "no-store"),
            ("cache-control", "max-age=5"),
        ]));
        assert!(
            c.no_store && c.max_age == Some(5),
            "multiple fields combine"
        );
    }

    #[test]
    fn storability_rules() {
        let get = Method::GET;
        let none = HeaderMap::new();
        let ok = StatusCode::OK;
        let store = |req: &HeaderMap, resp: &HeaderMap| {
            storable(
                &get,
                req,
                &CacheControl::parse(req),
                ok,
                resp,
                &CacheControl::parse(resp),
                &NO_ROUTE,
            )
        };
        assert!(store(&none, &headers(&[("cache-control", "max-age=60")])));
        assert!(!store(&none, &headers(&[("cache-control", "no-store")])));
        assert!(!store(
            &none,
            &headers(&[("cache-control", "private, max-age=60")])
        ));
        assert!(!store(
            &headers(&[("cache-control", "no-store")]),
            &headers(&[("cache-control", "max-age=60")])
        ));
        assert!(!store(
            &none,
            &headers(&[("cache-control", "max-age=60"), ("vary", "*")])
        ));
        assert!(!store(
            &none,
            &headers(&[("cache-control", "max-age=60"), ("set-cookie", "a=b")])
        ));
        let auth = headers(&[("authorization", "Bearer x")]);
        assert!(!store(&auth, &headers(&[("cache-control", "max-age=60")])));
        assert!(store(&auth, &headers(&[("cache-control", "s-maxage=60")])));
        assert!(store(
            &auth,
            &headers(&[("cache-control", "public, max-age=60")])
        ));
        // Default-cacheable status without explicit freshness: storable (heuristics).
        assert!(store(&none, &none));
        let post = storable(
            &Method::POST,
            &none,
            &CacheControl::default(),
            ok,
            &headers(&[("cache-control", "max-age=60")]),
            &cc("max-age=60"),
            &NO_ROUTE,
        );
        assert!(!post);
        let created = storable(
            &get,
            &none,
            &CacheControl::default(),
            StatusCode::CREATED,
            &none,
            &CacheControl::default(),
            &NO_ROUTE,
        );
        assert!(!created, "201 without explicit freshness is not cacheable");
    }

    #[test]
    fn lifetime_precedence() {
        let ok = StatusCode::OK;
        let h = headers(&[("cache-control", "max-age=60, s-maxage=30")]);
        assert_eq!(
            freshness_lifetime(ok, &h, &CacheControl::parse(&h), &NO_ROUTE),
            Duration::from_secs(30)
        );
        let h = headers(&[("date", &date(1000)), ("expires", &date(1100))]);
        assert_eq!(
            freshness_lifetime(ok, &h, &CacheControl::parse(&h), &NO_ROUTE),
            Duration::from_secs(100)
        );
        let h = headers(&[("date", &date(1000)), ("expires", "0")]);
        assert_eq!(
            freshness_lifetime(ok, &h, &CacheControl::parse(&h), &NO_ROUTE),
            Duration::ZERO
        );
        let h = headers(&[("date", &date(100_000)), ("last-modified", &date(0))]);
        assert_eq!(
            freshness_lifetime(ok, &h, &CacheControl::parse(&h), &NO_ROUTE),
            Duration::from_secs(10_000)
        );
        let route = RoutePolicy {
            default_ttl: Some(Duration::from_secs(5)),
            override_ttl: None,
        };
        assert_eq!(
            freshness_lifetime(ok, &HeaderMap::new(), &CacheControl::default(), &route),
            Duration::from_secs(5)
        );
        let route = RoutePolicy {
            default_ttl: None,
            override_ttl: Some(Duration::from_secs(7)),
        };
        let h = headers(&[("cache-control", "max-age=60")]);
        assert_eq!(
            freshness_lifetime(ok, &h, &CacheControl::parse(&h), &route),
            Duration::from_secs(7)
        );
        let h = headers(&[("cache-control", "max-age=x")]);
        assert_eq!(
            freshness_lifetime(ok, &h, &CacheControl::parse(&h), &NO_ROUTE),
            Duration::ZERO
        );
    }

    #[test]
    fn age_field_parsing() {
        let age = |lines: &[&'static str]| {
            let values: Vec<HeaderValue> =
                lines.iter().map(|l| HeaderValue::from_static(l)).collect();
            parse_age(values.iter())
        };
        assert_eq!(age(&["7200"]), Some(7200));
        assert_eq!(age(&[]), None);
        for unreadable in [
            &["7200,0"][..],
            &["7200.0"],
            &["7200;foo=bar"],
            &["abc"],
            &["-7200"],
            &["0", "7200"],
            &["0, 0"],
        ] {
            assert_eq!(
                age(unreadable),
                Some(DELTA_SECONDS_CAP),
                "{unreadable:?} must count as old"
            );
        }
    }

    #[test]
    fn surrogate_control_outranks_cache_control() {
        let none = HeaderMap::new();
        let ok = StatusCode::OK;
        let store = |h: &HeaderMap| {
            storable(
                &Method::GET,
                &none,
                &CacheControl::default(),
                ok,
                h,
                &CacheControl::parse(h),
                &NO_ROUTE,
            )
        };
        let h = headers(&[
            ("surrogate-control", "no-store"),
            ("cache-control", "max-age=600"),
        ]);
        assert!(!store(&h));
        let h = headers(&[
            ("surrogate-control", "max-age=60"),
            ("cache-control", "no-store"),
        ]);
        assert!(store(&h));
        assert_eq!(
            freshness_lifetime(ok, &h, &CacheControl::parse(&h), &NO_ROUTE),
            Duration::from_secs(60)
        );
        let h = headers(&[
            ("surrogate-control", "max-age=0;edge"),
            ("cache-control", "max-age=600"),
        ]);
        assert_eq!(
            freshness_lifetime(ok, &h, &CacheControl::parse(&h), &NO_ROUTE),
            Duration::ZERO
        );
    }

    #[test]
    fn must_understand_limits_storing_to_known_statuses() {
        let h = headers(&[("cache-control", "max-age=3600, must-understand")]);
        let c = CacheControl::parse(&h);
        let none = HeaderMap::new();
        let s = |code: u16| {
            let status = StatusCode::from_u16(code).unwrap();
            storable(
                &Method::GET,
                &none,
                &CacheControl::default(),
                status,
                &h,
                &c,
                &NO_ROUTE,
            )
        };
        assert!(s(200));
        assert!(!s(599));
    }

    #[test]
    fn a_304_for_another_etag_selects_nothing() {
        let stored = headers(&[("etag", "\"a\"")]);
        assert!(selects(&stored, &headers(&[("etag", "\"a\"")])));
        assert!(!selects(&stored, &headers(&[("etag", "\"b\"")])));
        assert!(selects(&stored, &HeaderMap::new()));
    }

    #[test]
    fn age_calculation() {
        let at = AgeInputs {
            request_time: UNIX_EPOCH + Duration::from_secs(1000),
            response_time: UNIX_EPOCH + Duration::from_secs(1002),
        };
        // Age header plus the response delay.
        let h = headers(&[("age", "10"), ("date", &date(1001))]);
        assert_eq!(initial_age(&h, at), Duration::from_secs(12));
        // Date far in the past dominates.
        let h = headers(&[("date", &date(900))]);
        assert_eq!(initial_age(&h, at), Duration::from_secs(102));
    }

    #[test]
    fn freshness_with_request_directives_and_stale_extensions() {
        let secs = Duration::from_secs;
        let stored = cc("max-age=10, stale-while-revalidate=5, stale-if-error=100");
        let none = CacheControl::default();
        let f =
            |age: u64, req: &CacheControl| freshness(secs(age), secs(10), &stored, req, &NO_ROUTE);
        assert_eq!(f(5, &none), Freshness::Fresh);
        assert_eq!(f(12, &none), Freshness::StaleWhileRevalidate);
        assert_eq!(f(20, &none), Freshness::Stale { if_error: true });
        assert_eq!(f(200, &none), Freshness::Stale { if_error: false });
        assert_eq!(
            f(5, &cc("max-age=3")),
            Freshness::Stale { if_error: true },
            "viewer max-age"
        );
        assert_eq!(f(5, &cc("no-cache")), Freshness::Stale { if_error: true });
        assert_eq!(
            f(8, &cc("min-fresh=5")),
            Freshness::Stale { if_error: true }
        );
        assert_eq!(f(50, &cc("max-stale=60")), Freshness::Fresh);
        assert_eq!(f(50, &cc("max-stale")), Freshness::Fresh);

        let strict =
            cc("max-age=10, must-revalidate, stale-if-error=100, stale-while-revalidate=5");
        let g = |age: u64| freshness(secs(age), secs(10), &strict, &cc("max-stale"), &NO_ROUTE);
        assert_eq!(
            g(12),
            Freshness::Stale { if_error: false },
            "must-revalidate forbids stale"
        );

        let no_cache = cc("no-cache, max-age=100");
        assert_eq!(
            freshness(secs(1), secs(100), &no_cache, &none, &NO_ROUTE),
            Freshness::Stale { if_error: false }
        );
    }

    #[test]
    fn conditional_requests() {
        let stored = headers(&[("etag", "\"v1\""), ("last-modified", &date(1000))]);
        assert!(not_modified(
            &headers(&[("if-none-match", "\"v1\"")]),
            &stored
        ));
        assert!(not_modified(
            &headers(&[("if-none-match", "\"v0\", W/\"v1\"")]),
            &stored
        ));
        assert!(not_modified(&headers(&[("if-none-match", "*")]), &stored));
        assert!(!not_modified(
            &headers(&[("if-none-match", "\"v2\"")]),
            &stored
        ));
        // If-None-Match takes precedence over If-Modified-Since.
        assert!(!not_modified(
            &headers(&[
                ("if-none-match", "\"v2\""),
                ("if-modified-since", &date(2000))
            ]),
            &stored
        ));
        assert!(not_modified(
            &headers(&[("if-modified-since", &date(1000))]),
            &stored
        ));
        assert!(!not_modified(
            &headers(&[("if-modified-since", &date(999))]),
            &stored
        ));
        assert!(!not_modified(
            &headers(&[("if-modified-since", "garbage")]),
            &stored
        ));
    }

    #[test]
    fn freshen_replaces_fields_but_keeps_body_framing() {
        let mut stored = headers(&[
            ("etag", "\"v1\""),
            ("content-length", "10"),
            ("content-encoding", "gzip"),
            ("cache-control", "max-age=1"),
            ("x-keep", "1"),
        ]);
        let update = headers(&[
            ("cache-control", "max-age=60"),
            ("content-length", "0"),
            ("content-encoding", "br"),
            ("x-new", "2"),
        ]);
        freshen(&mut stored, &update);
        assert_eq!(stored["cache-control"], "max-age=60");
        assert_eq!(stored["content-length"], "10");
        assert_eq!(stored["content-encoding"], "gzip");
        assert_eq!(stored["x-keep"], "1");
        assert_eq!(stored["x-new"], "2");
    }
}
