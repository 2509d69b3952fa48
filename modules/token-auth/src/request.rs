//! What the verifiers read from a request, and where a token can come from.

use serde::Deserialize;
use std::borrow::Cow;
use std::net::IpAddr;

/// The request as the viewer sent it.
pub struct Request<'a> {
    /// `scheme://authority/path?query`, as asked.
    pub url: Lazy<'a>,
    pub path: &'a str,
    pub query: Option<&'a str>,
    /// The `Cookie` field(s), joined with `; `.
    pub cookies: Lazy<'a>,
    pub client_ip: Option<IpAddr>,
    /// Looks up a request header field by (lower-case) name.
    pub header: &'a dyn Fn(&str) -> Option<String>,
}

/// A request value fetched only when a verifier asks for it: in the node each one is a
/// call into the host, and most requests need few of them.
pub struct Lazy<'a> {
    cell: std::cell::OnceCell<Option<String>>,
    fetch: Option<Box<dyn Fn() -> Option<String> + 'a>>,
}

impl<'a> Lazy<'a> {
    pub fn new(fetch: impl Fn() -> Option<String> + 'a) -> Self {
        Lazy {
            cell: std::cell::OnceCell::new(),
            fetch: Some(Box::new(fetch)),
        }
    }

    /// A value known already.
    pub fn known(value: Option<String>) -> Self {
        Lazy {
            cell: std::cell::OnceCell::from(value),
            fetch: None,
        }
    }

    pub fn get(&self) -> Option<&str> {
        self.cell
            .get_or_init(|| self.fetch.as_ref().and_then(|f| f()))
            .as_deref()
    }
}

/// Where a format looks for its token; the first place that has one wins, in the order
/// query, header, cookie.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Source {
    pub query: Option<String>,
    pub header: Option<String>,
    pub cookie: Option<String>,
}

/// A token found in a request.
#[derive(Debug, Clone, PartialEq)]
pub struct Found<'a> {
    pub value: Cow<'a, str>,
    pub from: Place,
    /// The query parameter as it appeared (`name=value`), to carry into other URLs.
    pub query_pair: Option<&'a str>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    Query,
    Header,
    Cookie,
}

impl Found<'_> {
    /// The token itself: a header's `Bearer ` scheme (RFC 6750) taken off.
    pub fn token(&self) -> &str {
        if self.from != Place::Header {
            return &self.value;
        }
        let v = self.value.trim();
        match v.split_once(' ') {
            Some((scheme, t)) if scheme.eq_ignore_ascii_case("bearer") => t.trim(),
            _ => v,
        }
    }
}

impl Source {
    /// Checks the token this source finds with `check`, noting in the result the query
    /// parameter that carried it; `None` when the request has no token here.
    pub fn check_with(
        &self,
        req: &Request<'_>,
        check: impl FnOnce(&str) -> Result<crate::Verified, crate::Failure>,
    ) -> Option<Result<crate::Verified, crate::Failure>> {
        let found = self.find(req)?;
        Some(check(found.token()).map(|v| crate::Verified {
            query: found.query_pair.map(str::to_owned),
            ..v
        }))
    }

    pub fn find<'a>(&self, req: &'a Request<'_>) -> Option<Found<'a>> {
        if let Some(name) = &self.query {
            if let Some((pair, value)) = query_param(req.query, name) {
                return Some(Found {
                    value,
                    from: Place::Query,
                    query_pair: Some(pair),
                });
            }
        }
        if let Some(name) = &self.header {
            if let Some(value) = (req.header)(&name.to_ascii_lowercase()) {
                return Some(Found {
                    value: Cow::Owned(value),
                    from: Place::Header,
                    query_pair: None,
                });
            }
        }
        if let Some(name) = &self.cookie {
            if let Some(value) = cookie(req.cookies.get(), name) {
                return Some(Found {
                    value: Cow::Borrowed(value),
                    from: Place::Cookie,
                    query_pair: None,
                });
            }
        }
        None
    }
}

/// The first `name=value` pair of a query string; the value percent-decoded unless it is
/// plain already (Akamai and native tokens carry `=`, `~` and `%xx` escapes of their own
/// that must reach the verifier as signed).
pub fn query_param<'q>(query: Option<&'q str>, name: &str) -> Option<(&'q str, Cow<'q, str>)> {
    query?.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == name).then(|| (pair, decode_query_value(v)))
    })
}

fn decode_query_value(v: &str) -> Cow<'_, str> {
    // A value with `~` between fields is a token written as signed: leave it be.
    if v.contains('~') || !(v.contains('%') || v.contains('+')) {
        return Cow::Borrowed(v);
    }
    let spaced = v.replace('+', " ");
    match percent_encoding::percent_decode_str(&spaced).decode_utf8() {
        Ok(s) => Cow::Owned(s.into_owned()),
        Err(_) => Cow::Borrowed(v),
    }
}

/// The value of cookie `name` in a `Cookie` field (RFC 6265 §4.2: `a=b; c=d`), without
/// surrounding double quotes.
pub fn cookie<'c>(cookies: Option<&'c str>, name: &str) -> Option<&'c str> {
    cookies?.split(';').find_map(|pair| {
        let (k, v) = pair.trim().split_once('=')?;
        (k.trim() == name).then(|| {
            let v = v.trim();
            v.strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or(v)
        })
    })
}

/// The query string without the named parameters (`None` when nothing is left).
pub fn query_without(query: Option<&str>, names: &[&str]) -> Option<String> {
    let kept: Vec<&str> = query?
        .split('&')
        .filter(|pair| {
            let k = pair.split_once('=').map_or(*pair, |(k, _)| k);
            !pair.is_empty() && !names.contains(&k)
        })
        .collect();
    (!kept.is_empty()).then(|| kept.join("&"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_and_cookies() {
        let q = Some("a=1&hdnts=exp=5~acl=%2f*~hmac=ab&b=x%20y&c=p+q");
        assert_eq!(query_param(q, "hdnts").unwrap().1, "exp=5~acl=%2f*~hmac=ab");
        assert_eq!(query_param(q, "b").unwrap().1, "x y");
        assert_eq!(query_param(q, "c").unwrap().1, "p q");
        assert_eq!(query_param(q, "a").unwrap().0, "a=1");
        assert!(query_param(q, "z").is_none());
        assert!(query_param(None, "a").is_none());
        let c = Some("x=1; CloudFront-Policy=abc; q=\"quoted\"");
        assert_eq!(cookie(c, "CloudFront-Policy"), Some("abc"));
        assert_eq!(cookie(c, "q"), Some("quoted"));
        assert_eq!(cookie(c, "y"), None);
        assert_eq!(
            query_without(
                Some("quality=hd&Expires=1&Signature=s"),
                &["Expires", "Signature"]
            ),
            Some("quality=hd".into())
        );
        assert_eq!(query_without(Some("Expires=1"), &["Expires"]), None);
    }
}
