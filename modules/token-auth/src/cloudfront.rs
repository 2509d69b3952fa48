//! CloudFront signed URLs and signed cookies, as CloudFront checks them:
//!
//! - canned policy: `Expires`, `Signature`, `Key-Pair-Id`; the signed policy is rebuilt
//!   from the request URL (without those parameters) and `Expires`:
//!   `{"Statement":[{"Resource":"<url>","Condition":{"DateLessThan":{"AWS:EpochTime":<n>}}}]}`;
//! - custom policy: `Policy` (the JSON, base64), `Signature`, `Key-Pair-Id`; conditions
//!   `DateLessThan` (required), `DateGreaterThan`, `IpAddress` and a `Resource` with `*`
//!   and `?` wildcards;
//! - cookies carry the same values as `CloudFront-Expires`/`CloudFront-Policy`,
//!   `CloudFront-Signature` and `CloudFront-Key-Pair-Id`;
//! - the signature is RSA PKCS#1 v1.5 with SHA-1 over the policy bytes, and binary values
//!   use CloudFront's URL-safe base64 (`+`→`-`, `=`→`_`, `/`→`~`).

use crate::request::{cookie, query_param, query_without};
use crate::{wildcard, Crypto, Failure, Format, PublicKey, Reason, Request, Signature, Verified};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde::Deserialize;
use std::collections::BTreeMap;

const SIGNING_PARAMS: [&str; 4] = ["Expires", "Policy", "Signature", "Key-Pair-Id"];

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Public keys (PEM) by key pair id, as in the CloudFront key group.
    pub public_keys: BTreeMap<String, String>,
    /// Accept signed URLs (query parameters).
    #[serde(default = "yes")]
    pub urls: bool,
    /// Accept signed cookies.
    #[serde(default = "yes")]
    pub cookies: bool,
}

fn yes() -> bool {
    true
}

/// CloudFront's URL-safe base64 of `bytes`.
pub fn encode(bytes: &[u8]) -> String {
    STANDARD
        .encode(bytes)
        .replace('+', "-")
        .replace('=', "_")
        .replace('/', "~")
}

pub fn decode(text: &str) -> Option<Vec<u8>> {
    let standard: String = text
        .chars()
        .map(|c| match c {
            '-' => '+',
            '_' => '=',
            '~' => '/',
            c => c,
        })
        .collect();
    STANDARD.decode(standard).ok()
}

/// The canned policy CloudFront signs for `resource` until `expires`.
pub fn canned_policy(resource: &str, expires: u64) -> String {
    format!(
        r#"{{"Statement":[{{"Resource":"{resource}","Condition":{{"DateLessThan":{{"AWS:EpochTime":{expires}}}}}}}]}}"#
    )
}

/// A custom policy (the conditions in the order AWS's signers write them).
pub fn custom_policy(
    resource: &str,
    expires: u64,
    starts: Option<u64>,
    ip: Option<&str>,
) -> String {
    // Written by hand to keep AWS's condition order (serde_json's map would sort it).
    let mut condition = format!(r#""DateLessThan":{{"AWS:EpochTime":{expires}}}"#);
    if let Some(ip) = ip {
        let ip = if ip.contains('/') {
            ip.to_owned()
        } else {
            format!("{ip}/32")
        };
        condition.push_str(&format!(
            r#","IpAddress":{{"AWS:SourceIp":{}}}"#,
            serde_json::Value::from(ip)
        ));
    }
    if let Some(starts) = starts {
        condition.push_str(&format!(
            r#","DateGreaterThan":{{"AWS:EpochTime":{starts}}}"#
        ));
    }
    format!(
        r#"{{"Statement":[{{"Resource":{},"Condition":{{{condition}}}}}]}}"#,
        serde_json::Value::from(resource)
    )
}

/// The request's signing values, from the query or the cookies.
struct Signed<'a> {
    expires: Option<std::borrow::Cow<'a, str>>,
    policy: Option<std::borrow::Cow<'a, str>>,
    signature: std::borrow::Cow<'a, str>,
    key_id: std::borrow::Cow<'a, str>,
    query_pairs: Option<String>,
}

impl Config {
    fn find<'a>(&self, req: &'a Request<'_>) -> Option<Signed<'a>> {
        if self.urls {
            let q = |name| query_param(req.query, name);
            if let Some((sig_pair, signature)) = q("Signature") {
                let expires = q("Expires");
                let policy = q("Policy");
                let key = q("Key-Pair-Id");
                let pairs: Vec<&str> = [&expires, &policy]
                    .into_iter()
                    .flatten()
                    .map(|(pair, _)| *pair)
                    .chain([sig_pair])
                    .chain(key.as_ref().map(|(pair, _)| *pair))
                    .collect();
                return Some(Signed {
                    expires: expires.map(|(_, v)| v),
                    policy: policy.map(|(_, v)| v),
                    signature,
                    key_id: key.map(|(_, v)| v).unwrap_or_default(),
                    query_pairs: Some(pairs.join("&")),
                });
            }
        }
        if self.cookies {
            let c = |name| cookie(req.cookies.get(), name).map(std::borrow::Cow::Borrowed);
            if let Some(signature) = c("CloudFront-Signature") {
                return Some(Signed {
                    expires: c("CloudFront-Expires"),
                    policy: c("CloudFront-Policy"),
                    signature,
                    key_id: c("CloudFront-Key-Pair-Id").unwrap_or_default(),
                    query_pairs: None,
                });
            }
        }
        None
    }

    pub fn check(
        &self,
        req: &Request<'_>,
        crypto: &dyn Crypto,
        now: u64,
        skew: u64,
    ) -> Option<Result<Verified, Failure>> {
        let signed = self.find(req)?;
        Some(self.check_signed(&signed, req, crypto, now, skew))
    }

    fn check_signed(
        &self,
        signed: &Signed<'_>,
        req: &Request<'_>,
        crypto: &dyn Crypto,
        now: u64,
        skew: u64,
    ) -> Result<Verified, Failure> {
        let fail = |reason, detail: &str| Failure::new(Format::CloudFront, reason, detail);
        if signed.key_id.is_empty() {
            return Err(fail(Reason::Malformed, "no Key-Pair-Id"));
        }
        let key = self
            .public_keys
            .get(signed.key_id.as_ref())
            .ok_or_else(|| {
                fail(
                    Reason::UnknownKey,
                    &format!("key pair id `{}`", signed.key_id),
                )
            })?;
        let signature = decode(&signed.signature)
            .ok_or_else(|| fail(Reason::Malformed, "the signature is not base64"))?;
        // The URL the viewer asked for, without the signing parameters.
        let url = req.url.get().unwrap_or_default();
        let base = url.split_once('?').map_or(url, |(b, _)| b);
        let resource = match query_without(req.query, &SIGNING_PARAMS) {
            Some(q) => format!("{base}?{q}"),
            None => base.to_owned(),
        };
        let policy = match (&signed.policy, &signed.expires) {
            (Some(policy), _) => {
                decode(policy).ok_or_else(|| fail(Reason::Malformed, "the policy is not base64"))?
            }
            (None, Some(expires)) => {
                let expires: u64 = expires
                    .parse()
                    .map_err(|_| fail(Reason::Malformed, "Expires is not a number"))?;
                canned_policy(&resource, expires).into_bytes()
            }
            (None, None) => return Err(fail(Reason::Malformed, "neither Expires nor Policy")),
        };
        let good = crypto
            .verify(
                Signature::RsaPkcs1Sha1,
                PublicKey::Encoded(key.as_bytes()),
                &policy,
                &signature,
            )
            .map_err(|e| fail(Reason::UnknownKey, &format!("key `{}`: {e}", signed.key_id)))?;
        if !good {
            return Err(fail(Reason::BadSignature, ""));
        }
        let policy: serde_json::Value = serde_json::from_slice(&policy)
            .map_err(|_| fail(Reason::Malformed, "the policy is not JSON"))?;
        let statement = policy
            .pointer("/Statement/0")
            .ok_or_else(|| fail(Reason::Malformed, "the policy has no statement"))?;
        let time = |name: &str| {
            statement
                .pointer(&format!("/Condition/{name}/AWS:EpochTime"))
                .and_then(serde_json::Value::as_u64)
        };
        let expires = time("DateLessThan")
            .ok_or_else(|| fail(Reason::Malformed, "the policy has no DateLessThan"))?;
        if now >= expires.saturating_add(skew) {
            return Err(fail(Reason::Expired, &format!("expired at {expires}")));
        }
        if let Some(starts) = time("DateGreaterThan") {
            if now.saturating_add(skew) <= starts {
                return Err(fail(Reason::NotYetValid, &format!("valid after {starts}")));
            }
        }
        if let Some(pattern) = statement.get("Resource") {
            let pattern = pattern
                .as_str()
                .ok_or_else(|| fail(Reason::Malformed, "the policy's Resource is not a string"))?;
            if !wildcard::matches(pattern, &resource, true) {
                return Err(fail(
                    Reason::AclMismatch,
                    &format!("{resource} is not {pattern}"),
                ));
            }
        }
        if let Some(cidr) = statement.pointer("/Condition/IpAddress/AWS:SourceIp") {
            let cidr = cidr
                .as_str()
                .ok_or_else(|| fail(Reason::Malformed, "AWS:SourceIp is not a string"))?;
            let net: ipnet::IpNet = cidr
                .parse()
                .or_else(|_| cidr.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                .map_err(|_| fail(Reason::Malformed, "AWS:SourceIp is not a CIDR"))?;
            if !req.client_ip.is_some_and(|ip| net.contains(&ip)) {
                return Err(fail(Reason::IpMismatch, ""));
            }
        }
        Ok(Verified {
            format: Format::CloudFront,
            subject: None,
            expires,
            query: signed.query_pairs.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_alphabet_and_policies() {
        assert_eq!(encode(&[0xfb, 0xff]), "-~8_");
        assert_eq!(decode("-~8_").unwrap(), vec![0xfb, 0xff]);
        assert_eq!(
            canned_policy("https://d.example/a.ts", 5),
            r#"{"Statement":[{"Resource":"https://d.example/a.ts","Condition":{"DateLessThan":{"AWS:EpochTime":5}}}]}"#
        );
        assert_eq!(
            custom_policy("https://d.example/*", 9, Some(1), Some("203.0.113.7")),
            r#"{"Statement":[{"Resource":"https://d.example/*","Condition":{"DateLessThan":{"AWS:EpochTime":9},"IpAddress":{"AWS:SourceIp":"203.0.113.7/32"},"DateGreaterThan":{"AWS:EpochTime":1}}}]}"#
        );
    }
}
