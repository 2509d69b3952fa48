//! JWT (RFC 7519) in compact JWS form (RFC 7515): HS256/384/512, RS256, PS256, ES256 and
//! EdDSA (RFC 8037), with keys from a JWKS (RFC 7517). The key must suit the header's
//! `alg` (its `kty`, curve and own `alg`), so an RSA public key can never be used as an
//! HMAC secret; `none` and every other algorithm are refused.

use crate::request::Source;
use crate::Verified;
use crate::{wildcard, Crypto, Failure, Format, Hmac, PublicKey, Reason, Request, Signature};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::Deserialize;
use std::borrow::Cow;
use std::collections::BTreeMap;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The JWKS: JSON (what `jwks_file = "keys.json"` in the node's config gives, parsed
    /// in the same pass as the rest of the config) or a string of JSON text.
    pub jwks: Option<Box<serde_json::value::RawValue>>,
    /// Public keys as PEM by kid (RS256, PS256, ES256, EdDSA), besides the JWKS.
    #[serde(default)]
    pub public_keys: BTreeMap<String, String>,
    /// HMAC secrets as hex by kid (HS256/384/512), besides the JWKS's `oct` keys.
    #[serde(default)]
    pub secrets: BTreeMap<String, String>,
    /// Required `iss`, when set.
    pub issuer: Option<String>,
    /// Required member of `aud`, when set.
    pub audience: Option<String>,
    /// A claim (string or list of `*` patterns) that restricts the paths the token opens.
    pub path_claim: Option<String>,
    /// A claim holding the client address (or CIDR) the token is bound to.
    pub ip_claim: Option<String>,
    /// Refuse tokens without `exp`.
    #[serde(default = "yes")]
    pub require_exp: bool,
    /// Algorithms accepted (default: all the supported ones).
    pub algorithms: Option<Vec<String>>,
    #[serde(default = "default_from")]
    pub from: Source,
}

fn yes() -> bool {
    true
}

fn default_from() -> Source {
    Source {
        query: None,
        header: Some("authorization".into()),
        cookie: None,
    }
}

/// JWKS and header strings borrow from the text where they can (no escapes), saving an
/// allocation each.
#[derive(Debug, Deserialize)]
struct Jwks<'a> {
    #[serde(borrow)]
    keys: Vec<Jwk<'a>>,
}

#[derive(Debug, Deserialize)]
struct Jwk<'a> {
    #[serde(borrow)]
    kty: Cow<'a, str>,
    #[serde(borrow)]
    kid: Option<Cow<'a, str>>,
    #[serde(borrow)]
    alg: Option<Cow<'a, str>>,
    #[serde(borrow)]
    crv: Option<Cow<'a, str>>,
    #[serde(borrow)]
    n: Option<Cow<'a, str>>,
    #[serde(borrow)]
    e: Option<Cow<'a, str>>,
    #[serde(borrow)]
    x: Option<Cow<'a, str>>,
    #[serde(borrow)]
    y: Option<Cow<'a, str>>,
    #[serde(borrow)]
    k: Option<Cow<'a, str>>,
}

#[derive(Debug, Deserialize)]
struct Header<'a> {
    #[serde(borrow)]
    alg: Cow<'a, str>,
    #[serde(borrow)]
    kid: Option<Cow<'a, str>>,
}

/// What a header `alg` needs.
#[derive(Clone, Copy)]
enum Scheme {
    Hmac(Hmac),
    Signature(Signature),
}

fn scheme(alg: &str) -> Option<Scheme> {
    Some(match alg {
        "HS256" => Scheme::Hmac(Hmac::Sha256),
        "HS384" => Scheme::Hmac(Hmac::Sha384),
        "HS512" => Scheme::Hmac(Hmac::Sha512),
        "RS256" => Scheme::Signature(Signature::RsaPkcs1Sha256),
        "PS256" => Scheme::Signature(Signature::RsaPssSha256),
        "ES256" => Scheme::Signature(Signature::EcdsaP256Sha256),
        "EdDSA" => Scheme::Signature(Signature::Ed25519),
        _ => return None,
    })
}

/// The algorithms `edge token sign --format jwt` and the verifier know.
pub const ALGORITHMS: [&str; 7] = [
    "HS256", "HS384", "HS512", "RS256", "PS256", "ES256", "EdDSA",
];

fn b64(text: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(text.trim_end_matches('=')).ok()
}

impl Jwk<'_> {
    /// Whether this key may check `alg`.
    fn suits(&self, alg: &str) -> bool {
        if self.alg.as_deref().is_some_and(|a| a != alg) {
            return false;
        }
        match alg {
            "HS256" | "HS384" | "HS512" => self.kty == "oct",
            "RS256" | "PS256" => self.kty == "RSA",
            "ES256" => self.kty == "EC" && self.crv.as_deref() == Some("P-256"),
            "EdDSA" => self.kty == "OKP" && self.crv.as_deref() == Some("Ed25519"),
            _ => false,
        }
    }

    fn check(
        &self,
        scheme: Scheme,
        input: &[u8],
        signature: &[u8],
        crypto: &dyn Crypto,
    ) -> Result<bool, String> {
        let part = |v: &Option<Cow<'_, str>>, name: &str| {
            v.as_deref()
                .and_then(b64)
                .ok_or_else(|| format!("JWK `{name}` is missing or not base64url"))
        };
        match scheme {
            Scheme::Hmac(h) => Ok(crypto.hmac_verify(h, &part(&self.k, "k")?, input, signature)),
            Scheme::Signature(s) if self.kty == "RSA" => {
                let (n, e) = (part(&self.n, "n")?, part(&self.e, "e")?);
                crypto.verify(s, PublicKey::Rsa { n: &n, e: &e }, input, signature)
            }
            Scheme::Signature(s) if self.kty == "EC" => {
                let mut point = vec![4u8];
                point.extend(part(&self.x, "x")?);
                point.extend(part(&self.y, "y")?);
                crypto.verify(s, PublicKey::Encoded(&point), input, signature)
            }
            Scheme::Signature(s) => crypto.verify(
                s,
                PublicKey::Encoded(&part(&self.x, "x")?),
                input,
                signature,
            ),
        }
    }
}

/// A key the config offers for one token.
enum Candidate<'a> {
    Jwk(&'a Jwk<'a>),
    Pem(&'a str),
    Secret(Vec<u8>),
}

impl Config {
    /// Checks a compact JWS's signature against the configured keys; returns its payload.
    pub fn verify_jws(&self, token: &str, crypto: &dyn Crypto) -> Result<Vec<u8>, Failure> {
        let fail = |reason, detail: &str| Failure::new(Format::Jwt, reason, detail);
        let mut parts = token.split('.');
        let (Some(header), Some(payload), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(fail(Reason::Malformed, "not three dot-separated parts"));
        };
        let header_json =
            b64(header).ok_or_else(|| fail(Reason::Malformed, "the header is not base64url"))?;
        let header: Header = serde_json::from_slice(&header_json)
            .map_err(|_| fail(Reason::Malformed, "the header is not JSON"))?;
        let allowed = self.algorithms.as_deref();
        let scheme = scheme(&header.alg)
            .filter(|_| allowed.is_none_or(|a| a.iter().any(|x| *x == header.alg)))
            .ok_or_else(|| fail(Reason::BadAlgorithm, &format!("alg `{}`", header.alg)))?;
        let signature = b64(signature)
            .ok_or_else(|| fail(Reason::Malformed, "the signature is not base64url"))?;
        let payload =
            b64(payload).ok_or_else(|| fail(Reason::Malformed, "the payload is not base64url"))?;
        let bad_jwks = |e: serde_json::Error| {
            fail(Reason::UnknownKey, &format!("the JWKS does not parse: {e}"))
        };
        let jwks_text: Option<Cow<'_, str>> = match self.jwks.as_deref().map(|r| r.get()) {
            Some(text) if text.starts_with('"') => Some(Cow::Owned(
                serde_json::from_str::<String>(text).map_err(bad_jwks)?,
            )),
            other => other.map(Cow::Borrowed),
        };
        let jwks: Option<Jwks> = jwks_text
            .as_deref()
            .map(serde_json::from_str)
            .transpose()
            .map_err(bad_jwks)?;
        let kid_ok = |kid: Option<&str>| header.kid.is_none() || kid == header.kid.as_deref();
        let mut candidates: Vec<Candidate<'_>> = jwks
            .iter()
            .flat_map(|j| &j.keys)
            .filter(|k| kid_ok(k.kid.as_deref()) && k.suits(&header.alg))
            .map(Candidate::Jwk)
            .collect();
        match scheme {
            Scheme::Hmac(_) => {
                for (kid, hex) in &self.secrets {
                    if kid_ok(Some(kid)) {
                        let secret = crate::decode_hex(hex).ok_or_else(|| {
                            fail(Reason::UnknownKey, &format!("secret `{kid}` is not hex"))
                        })?;
                        candidates.push(Candidate::Secret(secret));
                    }
                }
            }
            Scheme::Signature(_) => candidates.extend(
                self.public_keys
                    .iter()
                    .filter(|(kid, _)| kid_ok(Some(kid)))
                    .map(|(_, pem)| Candidate::Pem(pem)),
            ),
        }
        if candidates.is_empty() {
            return Err(fail(
                Reason::UnknownKey,
                &format!(
                    "no {} key with kid `{}`",
                    header.alg,
                    header.kid.as_deref().unwrap_or("")
                ),
            ));
        }
        // The signing input is the token's first two parts as sent.
        let input_len = token.len() - token.rsplit('.').next().map_or(0, str::len) - 1;
        let input = &token.as_bytes()[..input_len];
        let mut good = false;
        let several = candidates.len() > 1;
        for candidate in candidates {
            let checked = match (&candidate, scheme) {
                (Candidate::Jwk(key), _) => key.check(scheme, input, &signature, crypto),
                (Candidate::Secret(s), Scheme::Hmac(h)) => {
                    Ok(crypto.hmac_verify(h, s, input, &signature))
                }
                (Candidate::Pem(pem), Scheme::Signature(s)) => {
                    crypto.verify(s, PublicKey::Encoded(pem.as_bytes()), input, &signature)
                }
                _ => Ok(false),
            };
            match checked {
                Ok(ok) => good |= ok,
                // With several candidates, a key of another type is just not the one.
                Err(_) if several => {}
                Err(e) => return Err(fail(Reason::UnknownKey, &e)),
            }
        }
        if !good {
            return Err(fail(Reason::BadSignature, ""));
        }
        Ok(payload)
    }
}

/// The claims the checks read, taken in one pass over the payload; the others are skipped
/// without being built (in Wasm, building a whole `serde_json::Value` was a third of a
/// JWT check).
struct Claims {
    read: Vec<(String, serde_json::Value)>,
}

impl Claims {
    fn read(payload: &[u8], wanted: &[&str]) -> Result<Claims, serde_json::Error> {
        use serde::de::{Deserializer, IgnoredAny, MapAccess, Visitor};

        struct Wanted<'w>(&'w [&'w str]);

        impl<'de> Visitor<'de> for Wanted<'_> {
            type Value = Claims;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object of claims")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Claims, A::Error> {
                let mut read = Vec::new();
                while let Some(key) = map.next_key::<String>()? {
                    if self.0.contains(&key.as_str()) {
                        read.push((key, map.next_value()?));
                    } else {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
                Ok(Claims { read })
            }
        }

        let mut de = serde_json::Deserializer::from_slice(payload);
        let claims = de.deserialize_map(Wanted(wanted))?;
        de.end()?;
        Ok(claims)
    }

    fn get(&self, name: &str) -> Option<&serde_json::Value> {
        self.read.iter().find(|(k, _)| k == name).map(|(_, v)| v)
    }
}

/// `base64url(header).base64url(claims)`: what a signer signs.
pub fn signing_input(header_json: &str, claims_json: &str) -> String {
    format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header_json),
        URL_SAFE_NO_PAD.encode(claims_json)
    )
}

/// The compact token from a signing input and its signature.
pub fn assemble(input: &str, signature: &[u8]) -> String {
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature))
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
        let fail = |reason, detail: &str| Failure::new(Format::Jwt, reason, detail);
        let payload = self.verify_jws(token, crypto)?;
        let mut wanted = vec!["exp", "nbf", "iss", "sub", "aud"];
        wanted.extend(self.path_claim.as_deref());
        wanted.extend(self.ip_claim.as_deref());
        let claims = Claims::read(&payload, &wanted)
            .map_err(|_| fail(Reason::Malformed, "the claims are not a JSON object"))?;
        let time = |name: &str| -> Result<Option<u64>, Failure> {
            match claims.get(name) {
                None => Ok(None),
                Some(v) => v
                    .as_f64()
                    .filter(|t| *t >= 0.0)
                    .map(|t| Some(t as u64))
                    .ok_or_else(|| fail(Reason::Malformed, &format!("`{name}` is not a number"))),
            }
        };
        let exp = time("exp")?;
        match exp {
            Some(exp) if now >= exp.saturating_add(skew) => {
                return Err(fail(Reason::Expired, &format!("expired at {exp}")))
            }
            None if self.require_exp => return Err(fail(Reason::Malformed, "no `exp` claim")),
            _ => {}
        }
        if let Some(nbf) = time("nbf")? {
            if now.saturating_add(skew) < nbf {
                return Err(fail(Reason::NotYetValid, &format!("valid from {nbf}")));
            }
        }
        if let Some(issuer) = &self.issuer {
            if claims.get("iss").and_then(serde_json::Value::as_str) != Some(issuer) {
                return Err(fail(Reason::BadIssuer, ""));
            }
        }
        if let Some(audience) = &self.audience {
            let ok = match claims.get("aud") {
                Some(serde_json::Value::String(a)) => a == audience,
                Some(serde_json::Value::Array(list)) => {
                    list.iter().any(|a| a.as_str() == Some(audience))
                }
                _ => false,
            };
            if !ok {
                return Err(fail(Reason::BadAudience, ""));
            }
        }
        if let Some(claim) = &self.path_claim {
            let patterns: Vec<&str> = match claims.get(claim) {
                None => Vec::new(),
                Some(serde_json::Value::String(p)) => vec![p.as_str()],
                Some(serde_json::Value::Array(list)) => {
                    list.iter().filter_map(serde_json::Value::as_str).collect()
                }
                Some(_) => {
                    return Err(fail(
                        Reason::Malformed,
                        &format!("`{claim}` is not a string or list"),
                    ))
                }
            };
            if claims.get(claim).is_some()
                && !patterns
                    .iter()
                    .any(|p| wildcard::matches(p, req.path, false))
            {
                return Err(fail(
                    Reason::AclMismatch,
                    &format!("{} is not in `{claim}`", req.path),
                ));
            }
        }
        if let Some(claim) = &self.ip_claim {
            if let Some(bound) = claims.get(claim) {
                let bound = bound.as_str().ok_or_else(|| {
                    fail(Reason::Malformed, &format!("`{claim}` is not a string"))
                })?;
                let net: ipnet::IpNet = bound
                    .parse()
                    .or_else(|_| bound.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                    .map_err(|_| {
                        fail(Reason::Malformed, &format!("`{claim}` is not an address"))
                    })?;
                if !req.client_ip.is_some_and(|ip| net.contains(&ip)) {
                    return Err(fail(Reason::IpMismatch, ""));
                }
            }
        }
        Ok(Verified {
            format: Format::Jwt,
            subject: claims
                .get("sub")
                .and_then(serde_json::Value::as_str)
                .map(str::to_owned),
            expires: exp.unwrap_or(u64::MAX),
            query: None,
        })
    }
}
