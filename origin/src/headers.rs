//! Header rules for forwarding a message through the node (RFC 9110 §7.6).

use http::header::{HeaderMap, HeaderName, HeaderValue, CONNECTION};
use std::net::IpAddr;

/// RFC 9110 §7.6.1: hop-by-hop fields that a proxy must not forward, beyond those the
/// `Connection` field itself names. `Proxy-Connection` and `Keep-Alive` are the legacy
/// HTTP/1.0 ones that RFC 9110 also asks intermediaries to drop.
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
];

/// Removes hop-by-hop fields: the fixed list, `Upgrade` (the node does not tunnel), and
/// every field named in `Connection` (RFC 9110 §7.6.1).
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
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
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
    headers.remove(http::header::UPGRADE);
}

/// How the viewer reached the node, for the forwarding fields.
#[derive(Clone, Copy, Debug)]
pub struct ForwardedFor {
    pub client: IpAddr,
    /// `true` when the viewer's connection was TLS (h2/h3 or h1 over TLS).
    pub tls: bool,
}

/// Adds `Via` (RFC 9110 §7.6.3), `X-Forwarded-For`, `X-Forwarded-Proto` and `Forwarded`
/// (RFC 7239) to a request going to an origin. An existing `X-Forwarded-For` chain from a
/// CDN in front is kept and extended, as is `Forwarded`.
pub fn add_forwarding(
    headers: &mut HeaderMap,
    version: http::Version,
    via_name: &str,
    fwd: ForwardedFor,
) {
    append_comma(
        headers,
        "via",
        &format!("{} {via_name}", protocol_version(version)),
    );
    let ip = fwd.client.to_string();
    append_comma(headers, "x-forwarded-for", &ip);
    let proto = if fwd.tls { "https" } else { "http" };
    if !headers.contains_key("x-forwarded-proto") {
        headers.insert("x-forwarded-proto", HeaderValue::from_static(proto));
    }
    // RFC 7239 §6: IPv6 addresses are quoted and bracketed.
    let node = match fwd.client {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("\"[{v6}]\""),
    };
    append_comma(headers, "forwarded", &format!("for={node};proto={proto}"));
}

/// Adds `Via` to a response going back to the viewer (RFC 9110 §7.6.3).
pub fn add_response_via(headers: &mut HeaderMap, version: http::Version, via_name: &str) {
    append_comma(
        headers,
        "via",
        &format!("{} {via_name}", protocol_version(version)),
    );
}

fn protocol_version(version: http::Version) -> &'static str {
    match version {
        http::Version::HTTP_09 => "0.9",
        http::Version::HTTP_10 => "1.0",
        http::Version::HTTP_2 => "2",
        http::Version::HTTP_3 => "3",
        _ => "1.1",
    }
}

fn append_comma(headers: &mut HeaderMap, name: &'static str, value: &str) {
    let joined = match headers.get(name).and_then(|v| v.to_str().ok()) {
        Some(existing) if !existing.is_empty() => format!("{existing}, {value}"),
        _ => value.to_owned(),
    };
    if let Ok(v) = HeaderValue::from_str(&joined) {
        headers.insert(name, v);
    }
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
        let fwd = ForwardedFor {
            client: "192.0.2.1".parse().unwrap(),
            tls: true,
        };
        add_forwarding(&mut h, http::Version::HTTP_3, "edge", fwd);
        assert_eq!(h["x-forwarded-for"], "203.0.113.7, 192.0.2.1");
        assert_eq!(h["via"], "3 edge");
        assert_eq!(h["forwarded"], "for=192.0.2.1;proto=https");
        assert_eq!(h["x-forwarded-proto"], "https");
    }

    #[test]
    fn forwarded_quotes_ipv6() {
        let mut h = HeaderMap::new();
        let fwd = ForwardedFor {
            client: "2001:db8::1".parse().unwrap(),
            tls: false,
        };
        add_forwarding(&mut h, http::Version::HTTP_11, "edge", fwd);
        assert_eq!(h["forwarded"], "for=\"[2001:db8::1]\";proto=http");
        assert_eq!(h["via"], "1.1 edge");
    }
}
