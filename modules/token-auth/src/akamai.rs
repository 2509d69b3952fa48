//! Akamai EdgeAuth tokens (`hdnts=ip=…~st=…~exp=…~acl=…~id=…~data=…~hmac=…`), as Akamai's
//! published token generators write them:
//!
//! - the HMAC (hex) is over the token's fields up to `~hmac=`, exactly as sent, followed
//!   for URL tokens (no `acl=`) by `~url=<path>`, and by `~salt=<salt>` when configured;
//! - `acl` is one pattern or several separated by `!`, `*` matching any run of
//!   characters; generators that "escape early" percent-encode field values (lower-case
//!   hex), which the HMAC covers as written and the ACL match decodes.

use crate::request::Source;
use crate::{wildcard, Crypto, Failure, Format, Hmac, Reason, Request, Verified};
use percent_encoding::percent_decode_str;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::IpAddr;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Secrets (hex) by a name of your choosing; each is tried (the format has no key id).
    pub keys: BTreeMap<String, String>,
    #[serde(default)]
    pub algorithm: Algorithm,
    /// Appended to the HMAC input as `~salt=…` when the generator was given one.
    pub salt: Option<String>,
    /// The generator escaped URL tokens' paths early: the HMAC covers `url=<escaped path>`.
    #[serde(default)]
    pub escape_early: bool,
    #[serde(default = "default_from")]
    pub from: Source,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Algorithm {
    #[default]
    Sha256,
    Sha1,
    Md5,
}

impl Algorithm {
    pub fn hmac(self) -> Hmac {
        match self {
            Algorithm::Sha256 => Hmac::Sha256,
            Algorithm::Sha1 => Hmac::Sha1,
            Algorithm::Md5 => Hmac::Md5,
        }
    }
}

fn default_from() -> Source {
    Source {
        query: Some("hdnts".into()),
        header: None,
        cookie: Some("hdnts".into()),
    }
}

/// The fields of a token to mint (for `edge token sign` and tests).
#[derive(Debug, Default, Clone)]
pub struct Fields<'a> {
    pub ip: Option<&'a str>,
    pub start: Option<u64>,
    pub end: u64,
    /// An ACL token (`acl=`), or else a URL token for `url`.
    pub acl: Option<&'a str>,
    pub url: Option<&'a str>,
    pub id: Option<&'a str>,
    pub data: Option<&'a str>,
}

/// Mints a token the way Akamai's generators do (no early escaping).
pub fn sign(
    fields: &Fields<'_>,
    key: &[u8],
    algorithm: Algorithm,
    salt: Option<&str>,
    crypto: &dyn Crypto,
) -> String {
    let mut parts = Vec::new();
    if let Some(ip) = fields.ip {
        parts.push(format!("ip={ip}"));
    }
    if let Some(st) = fields.start {
        parts.push(format!("st={st}"));
    }
    parts.push(format!("exp={}", fields.end));
    if let Some(acl) = fields.acl {
        parts.push(format!("acl={acl}"));
    }
    if let Some(id) = fields.id {
        parts.push(format!("id={id}"));
    }
    if let Some(data) = fields.data {
        parts.push(format!("data={data}"));
    }
    let token = parts.join("~");
    let input = hmac_input(
        &token,
        fields.acl.is_none().then_some(fields.url).flatten(),
        salt,
    );
    let tag = crypto.hmac_sign(algorithm.hmac(), key, input.as_bytes());
    format!("{token}~hmac={}", crate::encode_hex(&tag))
}

fn hmac_input(fields: &str, url: Option<&str>, salt: Option<&str>) -> String {
    let mut input = fields.to_owned();
    if let Some(url) = url {
        input.push_str("~url=");
        input.push_str(url);
    }
    if let Some(salt) = salt {
        input.push_str("~salt=");
        input.push_str(salt);
    }
    input
}

/// Escapes like the Python generator's early escaping: `quote_plus` (space as `+`), hex
/// digits in lower case.
fn escape_early(text: &str) -> String {
    const SET: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'~')
        .remove(b' ');
    let escaped = percent_encoding::utf8_percent_encode(text, SET).to_string();
    let mut out = String::with_capacity(escaped.len());
    let mut hex_left = 0;
    for c in escaped.chars() {
        match c {
            '%' => {
                hex_left = 2;
                out.push(c);
            }
            ' ' => out.push('+'),
            _ if hex_left > 0 => {
                hex_left -= 1;
                out.push(c.to_ascii_lowercase());
            }
            _ => out.push(c),
        }
    }
    out
}

/// Undoes early escaping of a field value (`+` is a space there).
fn unescape(value: &str) -> String {
    if !value.contains(['%', '+']) {
        return value.to_owned();
    }
    percent_decode_str(&value.replace('+', " "))
        .decode_utf8_lossy()
        .into_owned()
}

impl Config {
    pub fn check(
        &self,
        req: &Request<'_>,
        crypto: &dyn Crypto,
        now: u64,
        skew: u64,
    ) -> Option<Result<Verified, Failure>> {
        self.from
            .check_with(req, |token| self.check_token(token, req, crypto, now, skew))
    }

    pub fn check_token(
        &self,
        token: &str,
        req: &Request<'_>,
        crypto: &dyn Crypto,
        now: u64,
        skew: u64,
    ) -> Result<Verified, Failure> {
        let fail = |reason, detail: &str| Failure::new(Format::Akamai, reason, detail);
        let (fields, hmac_hex) = token
            .rsplit_once("~hmac=")
            .ok_or_else(|| fail(Reason::Malformed, "no ~hmac= field"))?;
        let tag = crate::decode_hex(hmac_hex)
            .ok_or_else(|| fail(Reason::Malformed, "the hmac is not hex"))?;
        let (mut ip, mut st, mut exp, mut acl, mut id) = (None, None, None, None, None);
        for field in fields.split('~') {
            let (name, value) = field
                .split_once('=')
                .ok_or_else(|| fail(Reason::Malformed, "a field without `=`"))?;
            let slot = match name {
                "ip" => &mut ip,
                "st" => &mut st,
                "exp" => &mut exp,
                "acl" => &mut acl,
                "id" => &mut id,
                // `data` is signed but means nothing to the edge; `url` never travels.
                "data" => continue,
                _ => return Err(fail(Reason::Malformed, "an unknown field")),
            };
            if slot.replace(value).is_some() {
                return Err(fail(Reason::Malformed, "a repeated field"));
            }
        }
        // A URL token signs the path, or the path and query (without the token itself);
        // an early-escaping generator escaped them as the viewer's client decodes them.
        let mut urls = Vec::new();
        if acl.is_none() {
            let param = self.from.query.as_deref().unwrap_or("hdnts");
            let rest = crate::request::query_without(req.query, &[param]);
            urls.push(req.path.to_owned());
            if let Some(rest) = rest {
                urls.push(format!("{}?{rest}", req.path));
            }
            if self.escape_early {
                for url in &mut urls {
                    *url = escape_early(&unescape(url));
                }
            }
        }
        let inputs: Vec<String> = if urls.is_empty() {
            vec![hmac_input(fields, None, self.salt.as_deref())]
        } else {
            urls.iter()
                .map(|u| hmac_input(fields, Some(u), self.salt.as_deref()))
                .collect()
        };
        let algorithm = self.algorithm.hmac();
        let mut known_key = false;
        let mut good = false;
        for key in self.keys.values() {
            let Some(key) = crate::decode_hex(key) else {
                continue;
            };
            known_key = true;
            // Every key is tried, so the time taken says nothing about which one matched.
            for input in &inputs {
                good |= crypto.hmac_verify(algorithm, &key, input.as_bytes(), &tag);
            }
        }
        if !known_key {
            return Err(fail(Reason::UnknownKey, "no usable key configured"));
        }
        if !good {
            return Err(fail(Reason::BadSignature, ""));
        }
        let number = |v: Option<&str>, what: &str| -> Result<Option<u64>, Failure> {
            v.map(|v| {
                v.parse()
                    .map_err(|_| fail(Reason::Malformed, &format!("`{what}` is not a number")))
            })
            .transpose()
        };
        let exp = number(exp, "exp")?.ok_or_else(|| fail(Reason::Malformed, "no exp field"))?;
        if now >= exp.saturating_add(skew) {
            return Err(fail(Reason::Expired, &format!("expired at {exp}")));
        }
        if let Some(st) = number(st, "st")? {
            if now.saturating_add(skew) < st {
                return Err(fail(Reason::NotYetValid, &format!("valid from {st}")));
            }
        }
        // Generators never escape the ACL.
        if let Some(acl) = acl {
            let decoded = percent_decode_str(req.path).decode_utf8_lossy();
            let matches = |p: &str| {
                wildcard::matches(p, req.path, false) || wildcard::matches(p, &decoded, false)
            };
            if !acl.split('!').any(matches) {
                return Err(fail(
                    Reason::AclMismatch,
                    &format!("{} is not in the ACL", req.path),
                ));
            }
        }
        if let Some(ip) = ip {
            let bound: IpAddr = unescape(ip)
                .parse()
                .map_err(|_| fail(Reason::Malformed, "the ip field is not an address"))?;
            if req.client_ip != Some(bound) {
                return Err(fail(Reason::IpMismatch, ""));
            }
        }
        Ok(Verified {
            format: Format::Akamai,
            subject: id.map(unescape),
            expires: exp,
            query: None,
        })
    }
}
