//! Header rules for forwarding a message through the node (RFC 9110 §7.6).

use http::header::{
    HeaderMap, HeaderName, HeaderValue, CONNECTION, TE, TRAILER, TRANSFER_ENCODING, UPGRADE,
};
use http::header::{PROXY_AUTHENTICATE, PROXY_AUTHORIZATION, VIA};
use std::net::IpAddr;

const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
const PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const FORWARDED: HeaderName = HeaderName::from_static("forwarded");

/// RFC 9110 §7.6.1: hop-by-hop fields that a proxy must not forward, beyond those the
/// `Connection` field itself names. `Proxy-Connection` and `Keep-Alive` are the legacy
/// HTTP/1.0 ones that RFC 9110 also asks intermediaries to drop; `Upgrade` because the
/// node does not tunnel.
fn is_hop_by_hop(name: &HeaderName) -> bool {
    [
        &CONNECTION,
        &KEEP_ALIVE,
        &PROXY_CONNECTION,
        &PROXY_AUTHENTICATE,
        &PROXY_AUTHORIZATION,
        &TE,
        &TRAILER,
        &TRANSFER_ENCODING,
        &UPGRADE,
    ]
    .contains(&name)
}

/// Removes hop-by-hop fields: the fixed list and every field named in `Connection`
/// (RFC 9110 §7.6.1).
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // Most messages carry none: one pass over the names is cheaper than nine removals.
    if !headers.keys().any(is_hop_by_hop) {
        return;
    }
    let named: Vec<HeaderName> = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in [
        CONNECTION,
        KEEP_ALIVE,
        PROXY_CONNECTION,
        PROXY_AUTHENTICATE,
        PROXY_AUTHORIZATION,
        TE,
        TRAILER,
        TRANSFER_ENCODING,
        UPGRADE,
    ] {
        headers.remove(name);
    }
}

/// How the viewer reached the node, as the forwarding fields will say it. Built once per
/// connection, so each request only clones reference-counted values.
#[derive(Clone, Debug)]
pub struct ForwardedFor {
    pub client: IpAddr,
    /// `true` when the viewer's connection was TLS (h2/h3 or h1 over TLS).
    pub tls: bool,
    ip: HeaderValue,
    forwarded: HeaderValue,
}

impl ForwardedFor {
    pub fn new(client: IpAddr, tls: bool) -> Self {
        let ip = client.to_string();
        let proto = if tls { "https" } else { "http" };
        // RFC 7239 §6: IPv6 addresses are quoted and bracketed.
        let forwarded = match client {
            IpAddr::V4(_) => format!("for={ip};proto={proto}"),
            IpAddr::V6(_) => format!("for=\"[{ip}]\";proto={proto}"),
        };
        ForwardedFor {
            client,
            tls,
            ip: HeaderValue::from_str(&ip).expect("an IP address is a valid header value"),
            forwarded: HeaderValue::from_str(&forwarded).expect("ASCII without controls"),
        }
    }
}

/// `Via` values for each protocol version, built once per origin (RFC 9110 §7.6.3).
#[derive(Clone, Debug)]
pub struct Via {
    http10: HeaderValue,
    http11: HeaderValue,
    http2: HeaderValue,
    http3: HeaderValue,
}

impl Via {
    /// `name` must be a valid header value (config validation checks it is a token).
    pub fn new(name: &str) -> Via {
        let value = |version: &str| {
            HeaderValue::from_str(&format!("{version} {name}"))
                .unwrap_or_else(|_| HeaderValue::from_static("1.1 edge"))
        };
        Via {
            http10: value("1.0"),
            http11: value("1.1"),
            http2: value("2"),
            http3: value("3"),
        }
    }

    fn for_version(&self, version: http::Version) -> &HeaderValue {
        match version {
            http::Version::HTTP_09 | http::Version::HTTP_10 => &self.http10,
            http::Version::HTTP_2 => &self.http2,
            http::Version::HTTP_3 => &self.http3,
            _ => &self.http11,
        }
    }

    /// Adds this hop to a message's `Via`, after any hops already listed.
    pub fn append_to(&self, headers: &mut HeaderMap, version: http::Version) {
        append_comma(headers, VIA, self.for_version(version));
    }
}

/// Adds `Via`, `X-Forwarded-For`, `X-Forwarded-Proto` and `Forwarded` (RFC 7239) to a
/// request going to an origin. An existing `X-Forwarded-For` chain from a CDN in front is
/// kept and extended, as is `Forwarded`.
pub fn add_forwarding(
    headers: &mut HeaderMap,
    version: http::Version,
    via: &Via,
    fwd: &ForwardedFor,
) {
    via.append_to(headers, version);
    append_comma(headers, X_FORWARDED_FOR, &fwd.ip);
    if !headers.contains_key(X_FORWARDED_PROTO) {
        let proto = if fwd.tls { "https" } else { "http" };
        headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static(proto));
    }
    append_comma(headers, FORWARDED, &fwd.forwarded);
}

fn append_comma(headers: &mut HeaderMap, name: HeaderName, value: &HeaderValue) {
    let joined = match headers.get(&name) {
        Some(existing) if !existing.is_empty() => {
            let mut bytes = Vec::with_capacity(existing.len() + 2 + value.len());
            bytes.extend_from_slice(existing.as_bytes());
            bytes.extend_from_slice(b", ");
            bytes.extend_from_slice(value.as_bytes());
            HeaderValue::from_bytes(&bytes).unwrap_or_else(|_| value.clone())
        }
        _ => value.clone(),
    };
    headers.insert(name, joined);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_fixed_and_connection_named_fields() {
        let mut h = HeaderMap::new();
        h.insert(
            "connection",
            HeaderValue::from_static("keep-alive, x-secret"),
        );
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("te", HeaderValue::from_static("trailers"));
        h.insert("transfer-encoding", HeaderValue::from_static("chunked"));
        h.insert("upgrade", HeaderValue::from_static("websocket"));
        h.insert("x-keep", HeaderValue::from_static("yes"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert_eq!(h["x-keep"], "yes");
    }

    #[test]
    fn forwarding_extends_existing_chain() {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", HeaderValue::from_static("203.0.113.7"));
        let fwd = ForwardedFor::new("192.0.2.1".parse().unwrap(), true);
        add_forwarding(&mut h, http::Version::HTTP_3, &Via::new("edge"), &fwd);
        assert_eq!(h["x-forwarded-for"], "203.0.113.7, 192.0.2.1");
        assert_eq!(h["via"], "3 edge");
        assert_eq!(h["forwarded"], "for=192.0.2.1;proto=https");
        assert_eq!(h["x-forwarded-proto"], "https");
    }

    #[test]
    fn forwarded_quotes_ipv6() {
        let mut h = HeaderMap::new();
        let fwd = ForwardedFor::new("2001:db8::1".parse().unwrap(), false);
        add_forwarding(&mut h, http::Version::HTTP_11, &Via::new("edge"), &fwd);
        assert_eq!(h["forwarded"], "for=\"[2001:db8::1]\";proto=http");
        assert_eq!(h["via"], "1.1 edge");
    }
}
