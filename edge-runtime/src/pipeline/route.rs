//! Route matching: host (exact, `*.domain`, or `*`) and path prefix on segment boundaries.

use crate::config::RouteConfig;

#[derive(Clone, Debug)]
pub struct Route {
    /// Index in the config's route list: the name the access log reports.
    pub index: usize,
    pub host: HostPattern,
    pub prefix: String,
    pub origin: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HostPattern {
    Any,
    Exact(String),
    /// `*.example.com` stored as `.example.com`.
    Suffix(String),
}

impl HostPattern {
    fn parse(host: &str) -> Self {
        match host {
            "*" => HostPattern::Any,
            h => match h.strip_prefix('*') {
                Some(suffix) => HostPattern::Suffix(suffix.to_owned()),
                None => HostPattern::Exact(h.to_owned()),
            },
        }
    }

    fn matches(&self, host: &str) -> bool {
        match self {
            HostPattern::Any => true,
            HostPattern::Exact(h) => h == host,
            HostPattern::Suffix(s) => host.len() > s.len() && host.ends_with(s.as_str()),
        }
    }

    /// Exact hosts win over wildcards, and longer wildcards over shorter ones.
    fn specificity(&self) -> usize {
        match self {
            HostPattern::Any => 0,
            HostPattern::Suffix(s) => s.len(),
            HostPattern::Exact(_) => usize::MAX,
        }
    }
}

/// Why no route matched; the pipeline answers 421 or 404 accordingly.
#[derive(Debug, PartialEq, Eq)]
pub enum NoRoute {
    /// No route serves this host at all (RFC 9110 §15.5.20: 421 Misdirected Request).
    UnknownHost,
    /// The host is served, but not this path.
    UnknownPath,
}

pub struct Router {
    /// Sorted most specific first: host specificity, then prefix length.
    routes: Vec<Route>,
}

impl Router {
    pub fn new(configs: &[RouteConfig]) -> Self {
        let mut routes: Vec<Route> = configs
            .iter()
            .enumerate()
            .map(|(index, r)| Route {
                index,
                host: HostPattern::parse(&r.host),
                prefix: r.prefix.clone(),
                origin: r.origin.clone(),
            })
            .collect();
        routes.sort_by(|a, b| {
            (b.host.specificity(), b.prefix.len(), a.index).cmp(&(
                a.host.specificity(),
                a.prefix.len(),
                b.index,
            ))
        });
        Router { routes }
    }

    /// `host` is already lower-cased and without a port.
    pub fn find(&self, host: &str, path: &str) -> Result<&Route, NoRoute> {
        let mut host_known = false;
        for route in &self.routes {
            if !route.host.matches(host) {
                continue;
            }
            host_known = true;
            if prefix_matches(&route.prefix, path) {
                return Ok(route);
            }
        }
        Err(if host_known {
            NoRoute::UnknownPath
        } else {
            NoRoute::UnknownHost
        })
    }
}

/// `/vod` matches `/vod` and `/vod/x` but not `/vodka`; `/vod/` matches what starts with it.
fn prefix_matches(prefix: &str, path: &str) -> bool {
    match path.strip_prefix(prefix) {
        Some(rest) => prefix.ends_with('/') || rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn router(routes: &[(&str, &str, &str)]) -> Router {
        let configs: Vec<RouteConfig> = routes
            .iter()
            .map(|(host, prefix, origin)| RouteConfig {
                host: host.to_string(),
                prefix: prefix.to_string(),
                origin: origin.to_string(),
                cache: None,
                name: format!("{host}{prefix}"),
                on_error: crate::wasm::OnError::FailClosed,
                modules: Vec::new(),
            })
            .collect();
        Router::new(&configs)
    }

    #[test]
    fn most_specific_route_wins() {
        let r = router(&[
            ("*", "/", "default"),
            ("media.example.com", "/", "media"),
            ("media.example.com", "/live", "live"),
            ("*.example.com", "/", "wild"),
        ]);
        assert_eq!(
            r.find("media.example.com", "/live/x.m3u8").unwrap().origin,
            "live"
        );
        assert_eq!(
            r.find("media.example.com", "/livestream").unwrap().origin,
            "media"
        );
        assert_eq!(r.find("a.example.com", "/x").unwrap().origin, "wild");
        assert_eq!(r.find("example.com", "/x").unwrap().origin, "default");
    }

    #[test]
    fn unknown_host_and_unknown_path_differ() {
        let r = router(&[("media.example.com", "/vod", "media")]);
        assert_eq!(
            r.find("other.example.com", "/vod").unwrap_err(),
            NoRoute::UnknownHost
        );
        assert_eq!(
            r.find("media.example.com", "/vodka").unwrap_err(),
            NoRoute::UnknownPath
        );
        assert_eq!(r.find("media.example.com", "/vod").unwrap().origin, "media");
    }
}
