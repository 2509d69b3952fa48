//! The URI operations shared by HLS and DASH: URL rewriting, `base_url` and appending the
//! viewer's query. Written by hand: a manifest URI is often a relative reference or a DASH
//! template (`seg-$Number%05d$.m4s`), which URL libraries refuse or re-encode, and the
//! rewriter must change nothing it does not mean to.

use crate::Plan;

/// Checks query parameters to append (`k=v&k2=v2`): characters a URI query may hold
/// (RFC 3986), none that would end an HLS quoted string or need escaping in XML text.
pub fn valid_query(q: &str) -> Result<(), String> {
    if q.is_empty() {
        return Err("empty query".into());
    }
    if let Some(c) = q.chars().find(|&c| !query_char(c)) {
        return Err(format!(
            "{c:?} cannot be part of a URI query (percent-encode it)"
        ));
    }
    if q.split('&')
        .any(|pair| pair.split('=').next().is_none_or(str::is_empty))
    {
        return Err(format!("{q:?} has a parameter with no name"));
    }
    Ok(())
}

fn query_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-._~%!$&'()*+,;=:@/?".contains(c)
}

/// Characters a URI written into a manifest may hold: no space, control, quote or angle
/// bracket (they would end an HLS quoted string or an XML value).
pub fn check_uri_chars(s: &str) -> Result<(), String> {
    match s
        .chars()
        .find(|&c| c.is_control() || c.is_whitespace() || "\"<>".contains(c))
    {
        Some(c) => Err(format!("{c:?} cannot be part of a URI")),
        None if s.is_empty() => Err("empty URI".into()),
        None => Ok(()),
    }
}

fn starts_with_ci(s: &str, prefix: &str) -> bool {
    s.len() >= prefix.len() && s.as_bytes()[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes())
}

pub fn is_absolute_http(s: &str) -> bool {
    host_of(s).is_some_and(|h| !h.is_empty()) && !s.starts_with("//")
}

/// The scheme of an absolute URI (`https`, `data`, `skd`), `None` for a relative reference.
pub(crate) fn scheme(s: &str) -> Option<&str> {
    let bytes = s.as_bytes();
    if !bytes.first()?.is_ascii_alphabetic() {
        return None;
    }
    // Stops at the first byte a scheme cannot hold: a relative path rarely gets far.
    for (i, &b) in bytes.iter().enumerate().skip(1) {
        match b {
            b':' => return Some(&s[..i]),
            b'+' | b'-' | b'.' => {}
            _ if b.is_ascii_alphanumeric() => {}
            _ => return None,
        }
    }
    None
}

/// The host of `http(s)://host…` or `//host…`, without user info or port.
pub fn host_of(s: &str) -> Option<&str> {
    let rest = if let Some(r) = s.strip_prefix("//") {
        r
    } else if starts_with_ci(s, "http://") {
        &s[7..]
    } else if starts_with_ci(s, "https://") {
        &s[8..]
    } else {
        return None;
    };
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    let host_port = authority.rsplit('@').next().unwrap_or(authority);
    if let Some(v6) = host_port.strip_prefix('[') {
        return v6.split(']').next();
    }
    Some(host_port.split(':').next().unwrap_or(host_port))
}

/// The directory of a path (`/vod/a/` for `/vod/a/master.m3u8`).
pub fn dir_of(path: &str) -> &str {
    match path.rfind('/') {
        Some(i) => &path[..=i],
        None => "/",
    }
}

/// RFC 3986 §5.2.4 on a path (no query).
fn remove_dot_segments(path: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    let segments: Vec<&str> = path.split('/').collect();
    let last = segments.len() - 1;
    for (i, seg) in segments.iter().enumerate() {
        match *seg {
            "." => {
                if i == last {
                    out.push("");
                }
            }
            ".." => {
                if out.len() > 1 {
                    out.pop();
                }
                if i == last {
                    out.push("");
                }
            }
            s => out.push(s),
        }
    }
    let joined = out.join("/");
    if joined.starts_with('/') {
        joined
    } else {
        format!("/{joined}")
    }
}

/// Which parts of a plan apply where a URI sits. A DASH URL resolved against a `BaseURL`
/// takes no `base_url` (it applied to that BaseURL), and under a BaseURL on a third
/// party's host, no query; a directory BaseURL passes no query on either.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Scope {
    pub base_url: bool,
    pub query: bool,
    /// A DASH template: `$` in what is added is doubled.
    pub template: bool,
}

impl Scope {
    pub const ALL: Scope = Scope {
        base_url: true,
        query: true,
        template: false,
    };
}

pub(crate) fn map(plan: &Plan, original: &str, scope: Scope) -> Option<String> {
    let mut out = String::new();
    write_mapped(plan, &mut out, original, scope).then_some(out)
}

/// Writes the new form of `original` into `out`; writes nothing and returns false when it
/// stays as it is. The common case (a relative URI that gets the query) allocates nothing.
pub(crate) fn write_mapped(plan: &Plan, out: &mut String, original: &str, scope: Scope) -> bool {
    if original.is_empty() {
        return false;
    }
    let base_url = plan.base_url.as_deref().filter(|_| scope.base_url);
    let query = if scope.query { plan.query.as_str() } else { "" };
    let scheme = scheme(original);
    if scheme.is_none() && !original.starts_with("//") && base_url.is_none() {
        // A relative reference (most segment URIs): only the query can change.
        if query.is_empty() {
            return false;
        }
        append_query(out, original, query, &plan.query_names, scope.template);
        return true;
    }
    let http =
        scheme.is_some_and(|s| s.eq_ignore_ascii_case("http") || s.eq_ignore_ascii_case("https"));
    if scheme.is_some() && !http {
        // data:, skd:// (FairPlay key IDs) and other schemes are not fetched over HTTP.
        return false;
    }
    let mut rewritten: Option<String> = None;
    if http {
        if let Some(rule) = plan
            .rewrite
            .iter()
            .find(|r| starts_with_ci(original, &r.from))
        {
            rewritten = Some(format!("{}{}", rule.to, &original[rule.from.len()..]));
        }
    } else if let Some(base) = base_url.filter(|_| !original.starts_with("//")) {
        let split = original.find(['?', '#']).unwrap_or(original.len());
        let (path, rest) = original.split_at(split);
        let absolute = if path.starts_with('/') {
            remove_dot_segments(path)
        } else {
            remove_dot_segments(&format!("{}{path}", plan.manifest_dir))
        };
        rewritten = Some(format!("{}{absolute}{rest}", base.trim_end_matches('/')));
    }
    let uri = rewritten.as_deref().unwrap_or(original);
    if !query.is_empty() && eligible(plan, uri) {
        append_query(out, uri, query, &plan.query_names, scope.template);
        return true;
    }
    match &rewritten {
        Some(r) => {
            out.push_str(r);
            true
        }
        None => false,
    }
}

/// Whether the viewer's query may travel with this URI: relative references, and
/// absolute URLs on the edge's own hosts. A token never goes to a third party's host.
pub(crate) fn eligible(plan: &Plan, uri: &str) -> bool {
    match host_of(uri) {
        Some(host) => plan
            .token_hosts
            .iter()
            .any(|h| h.eq_ignore_ascii_case(host)),
        None => scheme(uri).is_none(),
    }
}

/// Writes `uri` with `query` appended to its query, replacing parameters of the same
/// names (a stale token the origin wrote), before any fragment.
fn append_query(out: &mut String, uri: &str, query: &str, names: &[String], escape_template: bool) {
    // One scan for the end of the path; a query, if any, runs to the fragment.
    let (path, existing, fragment) = match uri.bytes().position(|b| b == b'?' || b == b'#') {
        None => (uri, None, ""),
        Some(i) if uri.as_bytes()[i] == b'#' => (&uri[..i], None, &uri[i..]),
        Some(i) => {
            let rest = &uri[i + 1..];
            let end = rest.bytes().position(|b| b == b'#').unwrap_or(rest.len());
            (&uri[..i], Some(&rest[..end]), &rest[end..])
        }
    };
    out.push_str(path);
    out.push('?');
    let mut first = true;
    for pair in existing.into_iter().flat_map(|q| q.split('&')) {
        if pair.is_empty() || names.iter().any(|n| n == param_name(pair)) {
            continue;
        }
        if !first {
            out.push('&');
        }
        out.push_str(pair);
        first = false;
    }
    if !first {
        out.push('&');
    }
    if escape_template && query.contains('$') {
        // `$` opens an identifier in a DASH template; `$$` is a literal dollar.
        out.push_str(&query.replace('$', "$$"));
    } else {
        out.push_str(query);
    }
    out.push_str(fragment);
}

pub(crate) fn param_name(pair: &str) -> &str {
    pair.split('=').next().unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{parse_config, Viewer};

    fn plan(json: &str, host: Option<&str>) -> Plan {
        parse_config(json).unwrap().plan(&Viewer {
            host,
            path: "/vod/a/master.m3u8",
            ..Viewer::default()
        })
    }

    #[test]
    fn queries_are_appended_to_relative_and_own_host_uris_only() {
        let p = plan(
            r#"{"append_query":"t=1&u=2","token_hosts":["cdn.example"]}"#,
            Some("edge.example"),
        );
        let cases = [
            ("seg1.ts", Some("seg1.ts?t=1&u=2")),
            ("/abs/seg1.ts?x=1", Some("/abs/seg1.ts?x=1&t=1&u=2")),
            ("seg1.ts?t=old&x=1#frag", Some("seg1.ts?x=1&t=1&u=2#frag")),
            (
                "https://EDGE.example/a.ts",
                Some("https://EDGE.example/a.ts?t=1&u=2"),
            ),
            (
                "https://cdn.example:8443/a.ts",
                Some("https://cdn.example:8443/a.ts?t=1&u=2"),
            ),
            ("//cdn.example/a.ts", Some("//cdn.example/a.ts?t=1&u=2")),
            ("https://third.party/a.ts", None),
            ("skd://key-id-1", None),
            ("data:text/plain;base64,AAAA", None),
            ("", None),
        ];
        for (uri, want) in cases {
            assert_eq!(map(&p, uri, Scope::ALL).as_deref(), want, "{uri}");
        }
        let p = plan(r#"{"append_query":"t=a$b"}"#, None);
        assert_eq!(
            map(
                &p,
                "seg-$Number$.m4s",
                Scope {
                    template: true,
                    ..Scope::ALL
                }
            )
            .as_deref(),
            Some("seg-$Number$.m4s?t=a$$b")
        );
    }

    #[test]
    fn origin_urls_are_rewritten_then_tokened() {
        let p = plan(
            r#"{"append_query":"t=1","rewrite":[{"from":"https://origin.example/media/","to":"/"},
                {"from":"http://old.example/","to":"https://cdn.example/x/"}]}"#,
            None,
        );
        assert_eq!(
            map(&p, "HTTPS://origin.example/media/a/1.ts", Scope::ALL).as_deref(),
            Some("/a/1.ts?t=1")
        );
        assert_eq!(
            map(&p, "http://old.example/b.ts", Scope::ALL).as_deref(),
            Some("https://cdn.example/x/b.ts?t=1")
        );
        assert_eq!(map(&p, "https://elsewhere/b.ts", Scope::ALL), None);
    }

    #[test]
    fn base_url_resolves_against_the_manifest_directory() {
        let p = plan(r#"{"base_url":"https://cdn.example/"}"#, None);
        let cases = [
            (
                "360p/index.m3u8",
                "https://cdn.example/vod/a/360p/index.m3u8",
            ),
            ("../b/./x.ts?q=1", "https://cdn.example/vod/b/x.ts?q=1"),
            ("/other/x.ts", "https://cdn.example/other/x.ts"),
            ("../../../../x.ts", "https://cdn.example/x.ts"),
        ];
        for (uri, want) in cases {
            assert_eq!(map(&p, uri, Scope::ALL).as_deref(), Some(want), "{uri}");
        }
        assert_eq!(map(&p, "https://o.example/x.ts", Scope::ALL), None);
    }

    #[test]
    fn query_validation() {
        assert!(valid_query("edge_token=k=a~e=1~sig=AbC-_").is_ok());
        assert!(valid_query("Policy=eyJ&Signature=a~b&Key-Pair-Id=K1").is_ok());
        for bad in ["", "a b", "a=\"", "a=<", "a=1#x", "=v", "a&&b", "é=1"] {
            assert!(valid_query(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn hosts() {
        assert_eq!(host_of("https://user@h.example:443/x"), Some("h.example"));
        assert_eq!(host_of("http://[::1]:80/"), Some("::1"));
        assert_eq!(host_of("//h?x"), Some("h"));
        assert_eq!(host_of("/x"), None);
        assert!(is_absolute_http("https://h/"));
        assert!(!is_absolute_http("https:///x"));
    }
}
