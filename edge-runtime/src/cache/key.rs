//! Cache keys: the normalized URL plus configured key parts, and the secondary key that
//! `Vary` adds (RFC 9111 §4.1).

use http::header::HeaderMap;
use http::Uri;

/// How a route builds its cache keys.
#[derive(Clone, Debug, Default)]
pub struct KeySpec {
    /// Request header fields whose values become part of the key (e.g. `x-device`).
    pub headers: Vec<http::HeaderName>,
    /// Query parameters that only carry credentials (signed-URL tokens, expiry): every
    /// viewer has different ones, so keeping them would make every request a miss.
    pub exclude_query: Vec<String>,
}

/// The primary key: `host/path?query` normalized, then `\0name=value` per key header.
///
/// Normalization: the host is lower-cased without a default port; in the path,
/// percent-encoded unreserved characters are decoded and other escapes upper-cased
/// (RFC 3986 §6.2.2); excluded query parameters are removed, the others kept in order.
pub fn primary(host: &str, uri: &Uri, headers: &HeaderMap, spec: &KeySpec) -> String {
    let mut key = String::with_capacity(host.len() + uri.path().len() + 16);
    for c in host.chars() {
        key.push(c.to_ascii_lowercase());
    }
    normalize_path(uri.path(), &mut key);
    if let Some(query) = uri.query() {
        let mut first = true;
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let name = pair.split_once('=').map_or(pair, |(n, _)| n);
            if spec.exclude_query.iter().any(|x| x == name) {
                continue;
            }
            key.push(if first { '?' } else { '&' });
            key.push_str(pair);
            first = false;
        }
    }
    for name in &spec.headers {
        key.push('\0');
        key.push_str(name.as_str());
        key.push('=');
        for (i, value) in headers.get_all(name).iter().enumerate() {
            if i > 0 {
                key.push(',');
            }
            key.push_str(&String::from_utf8_lossy(value.as_bytes()));
        }
    }
    key
}

/// The URL part of a key, for purge by URL: what [`primary`] produces before key headers.
pub fn url_part(key: &str) -> &str {
    key.split('\0').next().unwrap_or(key)
}

/// Decodes percent-encoded unreserved characters and upper-cases the hex of the others
/// (RFC 3986 §6.2.2), so `/a%2db` and `/a-b` share an entry. Works on the text around
/// each `%`: a path may hold any UTF-8 (the fuzzer found that slicing by byte offsets
/// cut a character in two), and only `%` followed by two hex digits is an escape.
fn normalize_path(path: &str, out: &mut String) {
    let mut rest = path;
    while let Some(at) = rest.find('%') {
        out.push_str(&rest[..at]);
        let escape = &rest.as_bytes()[at + 1..];
        match (escape.first(), escape.get(1)) {
            (Some(&high), Some(&low)) if high.is_ascii_hexdigit() && low.is_ascii_hexdigit() => {
                let value = hex_digit(high) << 4 | hex_digit(low);
                if value.is_ascii_alphanumeric() || matches!(value, b'-' | b'.' | b'_' | b'~') {
                    out.push(value as char);
                } else {
                    out.push('%');
                    out.push(high.to_ascii_uppercase() as char);
                    out.push(low.to_ascii_uppercase() as char);
                }
                // Both digits are ASCII: the slice starts on a character boundary.
                rest = &rest[at + 3..];
            }
            _ => {
                out.push('%');
                rest = &rest[at + 1..];
            }
        }
    }
    out.push_str(rest);
}

fn hex_digit(b: u8) -> u8 {
    match b {
        b'0'..=b'9' => b - b'0',
        b'a'..=b'f' => b - b'a' + 10,
        _ => b - b'A' + 10,
    }
}

/// The request's values for the fields a stored response varies on, to compare with
/// later requests (RFC 9111 §4.1: same values, after combining multiple lines).
pub fn vary_values(names: &[String], request: &HeaderMap) -> Vec<Option<String>> {
    names
        .iter()
        .map(|name| {
            let mut values = request.get_all(name.as_str()).iter().peekable();
            values.peek()?;
            let joined: Vec<String> = values
                .map(|v| {
                    String::from_utf8_lossy(v.as_bytes())
                        .split_whitespace()
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .collect();
            Some(joined.join(","))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(host: &str, uri: &str, headers: &[(&str, &str)], spec: &KeySpec) -> String {
        let mut h = HeaderMap::new();
        for (k, v) in headers {
            h.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        primary(host, &uri.parse().unwrap(), &h, spec)
    }

    #[test]
    fn normalizes_host_path_and_escapes() {
        let spec = KeySpec::default();
        assert_eq!(
            key("Media.Example.COM", "/a/%7Euser/%2f%41.ts", &[], &spec),
            "media.example.com/a/~user/%2FA.ts"
        );
        assert_eq!(key("h", "/x?", &[], &spec), "h/x");
        assert_eq!(
            key("h", "/x?b=2&a=1", &[], &spec),
            "h/x?b=2&a=1",
            "order is meaningful to origins"
        );
        assert_eq!(
            key("h", "/x%", &[], &spec),
            "h/x%",
            "a dangling escape is kept as is"
        );
    }

    #[test]
    fn non_ascii_paths_and_broken_escapes_are_kept_whole() {
        let mut out = String::new();
        // A `%` right before a two-byte character (found by the h1 fuzz target: this
        // used to slice the character in two and panic).
        normalize_path("/ob/%ŕect/a", &mut out);
        assert_eq!(out, "/ob/%ŕect/a");
        out.clear();
        normalize_path("/é/%c3%a9/%+f/%2d", &mut out);
        assert_eq!(
            out, "/é/%C3%A9/%+f/-",
            "not a Latin-1 reading of UTF-8 bytes"
        );
    }

    #[test]
    fn auth_query_parameters_are_not_part_of_the_key() {
        let spec = KeySpec {
            exclude_query: vec!["token".into(), "exp".into()],
            ..Default::default()
        };
        let a = key("h", "/seg.ts?token=abc&exp=1&q=hd", &[], &spec);
        let b = key("h", "/seg.ts?q=hd&token=zzz&exp=2", &[], &spec);
        assert_eq!(a, "h/seg.ts?q=hd");
        assert_eq!(a, b);
        assert_eq!(key("h", "/seg.ts?token=abc", &[], &spec), "h/seg.ts");
    }

    #[test]
    fn key_headers_split_the_key() {
        let spec = KeySpec {
            headers: vec![http::HeaderName::from_static("x-device")],
            ..Default::default()
        };
        let tv = key("h", "/m.m3u8", &[("x-device", "tv")], &spec);
        let phone = key("h", "/m.m3u8", &[("x-device", "phone")], &spec);
        assert_ne!(tv, phone);
        assert_eq!(url_part(&tv), "h/m.m3u8");
    }

    #[test]
    fn vary_values_combine_lines_and_whitespace() {
        let mut h = HeaderMap::new();
        h.append("accept-encoding", "gzip,  br".parse().unwrap());
        h.append("accept-encoding", "zstd".parse().unwrap());
        let names = vec!["accept-encoding".to_owned(), "x-missing".to_owned()];
        assert_eq!(
            vary_values(&names, &h),
            vec![Some("gzip, br,zstd".to_owned()), None]
        );
    }
}
