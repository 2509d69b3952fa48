//! The request the WAF inspects, as the node hands it over.

/// One viewer request. Header names keep the case they came with (HTTP/2 and HTTP/3 send
/// them lower-case); selectors compare case-insensitively.
#[derive(Clone, Debug, Default)]
pub struct Request {
    /// `GET`, `POST`, ...
    pub method: String,
    /// The request target as received: `/path?query`, or absolute-form
    /// (`http://host/path?query`).
    pub uri: String,
    /// `HTTP/1.1`, `HTTP/2.0`, `HTTP/3.0`.
    pub protocol: String,
    pub headers: Vec<(String, Vec<u8>)>,
    /// The body, at most the rule set's body limit (see [`Request::body_length`]).
    pub body: Vec<u8>,
    /// The body's whole length when the node saw more than it passed on.
    pub body_length: Option<usize>,
    pub remote_addr: String,
    pub remote_port: u16,
    /// The node's id for the request (`UNIQUE_ID`, and in the audit log and 403 page).
    pub unique_id: String,
    /// Query parameters the node's token auth verified before the WAF (the signature of
    /// a signed URL and its fields): not inspected by the rules.
    pub verified_args: Vec<String>,
}

/// The parameter names of a verified token's query (`k=v&k2=v2` → `k`, `k2`): what
/// [`Request::verified_args`] holds.
pub fn verified_arg_names(token_query: &str) -> Vec<String> {
    token_query
        .split('&')
        .filter_map(|p| p.split('=').next())
        .filter(|n| !n.is_empty())
        .map(str::to_owned)
        .collect()
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    }

    pub fn body_length(&self) -> usize {
        self.body_length
            .unwrap_or(self.body.len())
            .max(self.body.len())
    }
}
