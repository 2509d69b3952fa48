//! The node's own compact signed URL, for users who need none of the other formats:
//!
//! ```text
//! ?edge_token=k=<key id>[~s=<start, unix s>]~e=<expiry, unix s>~p=<path prefix>[~i=<client ip>]~sig=<base64url>
//! ```
//!
//! `sig` is HMAC-SHA256 over `edge-token-v1~` followed by the token up to `~sig=`; values
//! are percent-encoded where they would break the `~`/`=` structure or a URL. The same
//! token serves as the session cookie.

use crate::request::Source;
use crate::{Crypto, Failure, Format, Hmac, Reason, Request, Verified};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, CONTROLS};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::IpAddr;

/// Domain separation: a native signature can never be replayed as another format's.
const CONTEXT: &str = "edge-token-v1~";

const VALUE: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'&')
    .add(b'+')
    .add(b',')
    .add(b';')
    .add(b'=')
    .add(b'~');

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Secrets by key id, hex; several for rotation.
    pub keys: BTreeMap<String, String>,
    /// The key that signs (session cookies, `edge token sign`).
    pub signing_key: Option<String>,
    #[serde(default = "default_from")]
    pub from: Source,
}

fn default_from() -> Source {
    Source {
        query: Some("edge_token".into()),
        header: None,
        cookie: None,
    }
}

/// Mints a token for `prefix` from `start` (if given) until `expires`, optionally bound
/// to `ip`.
pub fn sign(
    key_id: &str,
    key: &[u8],
    start: Option<u64>,
    expires: u64,
    prefix: &str,
    ip: Option<IpAddr>,
    crypto: &dyn Crypto,
) -> String {
    let mut token = format!("k={}", utf8_percent_encode(key_id, VALUE));
    if let Some(start) = start {
        token.push_str(&format!("~s={start}"));
    }
    token.push_str(&format!(
        "~e={expires}~p={}",
        utf8_percent_encode(prefix, VALUE)
    ));
    if let Some(ip) = ip {
        token.push_str(&format!("~i={ip}"));
    }
    let tag = crypto.hmac_sign(Hmac::Sha256, key, format!("{CONTEXT}{token}").as_bytes());
    token.push_str("~sig=");
    token.push_str(&URL_SAFE_NO_PAD.encode(tag));
    token
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

    /// Verifies one token (from a URL or the session cookie) for this request.
    pub fn check_token(
        &self,
        token: &str,
        req: &Request<'_>,
        crypto: &dyn Crypto,
        now: u64,
        skew: u64,
    ) -> Result<Verified, Failure> {
        let fail = |reason, detail: &str| Failure::new(Format::Native, reason, detail);
        let (signed, sig) = token
            .rsplit_once("~sig=")
            .ok_or_else(|| fail(Reason::Malformed, "no ~sig= field"))?;
        let (mut kid, mut start, mut exp, mut prefix, mut ip) = (None, None, None, None, None);
        for field in signed.split('~') {
            let (name, value) = field
                .split_once('=')
                .ok_or_else(|| fail(Reason::Malformed, "a field without `=`"))?;
            let value = percent_decode_str(value)
                .decode_utf8()
                .map_err(|_| fail(Reason::Malformed, "a field is not UTF-8"))?;
            let slot = match name {
                "k" => &mut kid,
                "s" => &mut start,
                "e" => &mut exp,
                "p" => &mut prefix,
                "i" => &mut ip,
                _ => return Err(fail(Reason::Malformed, "an unknown field")),
            };
            if slot.replace(value).is_some() {
                return Err(fail(Reason::Malformed, "a repeated field"));
            }
        }
        let kid = kid.ok_or_else(|| fail(Reason::Malformed, "no key id (k=)"))?;
        let tag = URL_SAFE_NO_PAD
            .decode(sig)
            .map_err(|_| fail(Reason::Malformed, "the signature is not base64url"))?;
        let key = self.keys.get(kid.as_ref()).ok_or_else(|| {
            fail(
                Reason::UnknownKey,
                &format!("key id `{}`", kid.escape_debug()),
            )
        })?;
        let key = crate::decode_hex(key)
            .ok_or_else(|| fail(Reason::UnknownKey, &format!("key `{kid}` is not hex")))?;
        if !crypto.hmac_verify(
            Hmac::Sha256,
            &key,
            format!("{CONTEXT}{signed}").as_bytes(),
            &tag,
        ) {
            return Err(fail(Reason::BadSignature, ""));
        }
        let exp: u64 = exp
            .ok_or_else(|| fail(Reason::Malformed, "no expiry (e=)"))?
            .parse()
            .map_err(|_| fail(Reason::Malformed, "the expiry is not a number"))?;
        if now >= exp.saturating_add(skew) {
            return Err(fail(Reason::Expired, &format!("expired at {exp}")));
        }
        if let Some(start) = start {
            let start: u64 = start
                .parse()
                .map_err(|_| fail(Reason::Malformed, "the start is not a number"))?;
            if now.saturating_add(skew) < start {
                return Err(fail(Reason::NotYetValid, &format!("valid from {start}")));
            }
        }
        let prefix = prefix.ok_or_else(|| fail(Reason::Malformed, "no path prefix (p=)"))?;
        if !req.path.starts_with(prefix.as_ref()) {
            return Err(fail(
                Reason::AclMismatch,
                &format!("{} is not under {prefix}", req.path),
            ));
        }
        if let Some(ip) = ip {
            let bound: IpAddr = ip
                .parse()
                .map_err(|_| fail(Reason::Malformed, "the IP field is not an address"))?;
            if req.client_ip != Some(bound) {
                return Err(fail(Reason::IpMismatch, ""));
            }
        }
        Ok(Verified {
            format: Format::Native,
            subject: None,
            expires: exp,
            query: None,
        })
    }
}
