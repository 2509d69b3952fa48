//! Tokens outside a request: `edge token sign|verify` and the demo's signed URL. Checking
//! runs the token-auth module's own verifier with the host's crypto functions, so the CLI
//! and the node agree by construction.

use crate::wasm::bindings::edge::module::crypto::{HmacAlgorithm, SignatureAlgorithm};
use crate::wasm::crypto as host;
use edge_module_token_auth::{
    akamai, cloudfront, jwt, native, Config, Crypto, Failure, Hmac, Lazy, PublicKey, Request,
    Signature, Verified,
};
use ring::rand::SystemRandom;
use ring::signature as sig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::PrivatePkcs8KeyDer;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;

/// The host's crypto, called directly.
pub struct NativeCrypto;

fn hmac(a: Hmac) -> HmacAlgorithm {
    match a {
        Hmac::Sha256 => HmacAlgorithm::Sha256,
        Hmac::Sha384 => HmacAlgorithm::Sha384,
        Hmac::Sha512 => HmacAlgorithm::Sha512,
        Hmac::Sha1 => HmacAlgorithm::Sha1,
        Hmac::Md5 => HmacAlgorithm::Md5,
    }
}

fn signature(s: Signature) -> SignatureAlgorithm {
    match s {
        Signature::RsaPkcs1Sha1 => SignatureAlgorithm::RsaPkcs1Sha1,
        Signature::RsaPkcs1Sha256 => SignatureAlgorithm::RsaPkcs1Sha256,
        Signature::RsaPssSha256 => SignatureAlgorithm::RsaPssSha256,
        Signature::EcdsaP256Sha256 => SignatureAlgorithm::EcdsaP256Sha256,
        Signature::Ed25519 => SignatureAlgorithm::Ed25519,
    }
}

impl Crypto for NativeCrypto {
    fn hmac_sign(&self, a: Hmac, key: &[u8], data: &[u8]) -> Vec<u8> {
        host::hmac_sign(hmac(a), key, data)
    }
    fn hmac_verify(&self, a: Hmac, key: &[u8], data: &[u8], tag: &[u8]) -> bool {
        host::hmac_verify(hmac(a), key, data, tag)
    }
    fn verify(
        &self,
        s: Signature,
        key: PublicKey<'_>,
        data: &[u8],
        sig: &[u8],
    ) -> Result<bool, String> {
        match key {
            PublicKey::Encoded(k) => host::verify_signature(signature(s), k, data, sig),
            PublicKey::Rsa { n, e } => host::verify_rsa_components(signature(s), n, e, data, sig),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("{0}")]
    Usage(String),
    #[error("key: {0}")]
    Key(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TokenFormat {
    Akamai,
    #[value(name = "cloudfront")]
    CloudFront,
    Jwt,
    Native,
}

/// `--key VALUE`: the text of the file when `VALUE` names one, else a hex secret.
#[derive(Debug, Clone)]
pub enum Key {
    Secret(Vec<u8>),
    File(String),
}

impl Key {
    pub fn parse(value: &str) -> Result<Key, TokenError> {
        let path = Path::new(value);
        if path.is_file() {
            return std::fs::read_to_string(path)
                .map(Key::File)
                .map_err(|e| TokenError::Key(format!("reading {value}: {e}")));
        }
        edge_module_token_auth::decode_hex(value)
            .map(Key::Secret)
            .ok_or_else(|| {
                // The value may be a mistyped secret: not echoed.
                TokenError::Key("--key is neither a file nor an even number of hex digits".into())
            })
    }

    fn secret(&self, format: &str) -> Result<&[u8], TokenError> {
        match self {
            Key::Secret(s) => Ok(s),
            Key::File(_) => Err(TokenError::Key(format!("{format} takes a hex secret"))),
        }
    }

    fn text(&self, format: &str) -> Result<&str, TokenError> {
        match self {
            Key::File(t) => Ok(t),
            Key::Secret(_) => Err(TokenError::Key(format!(
                "{format} takes the path of a PEM or JWKS file"
            ))),
        }
    }
}

/// What to mint.
#[derive(Debug, Clone, Default)]
pub struct SignSpec {
    pub key_id: Option<String>,
    /// The URL to sign (native, CloudFront; Akamai URL tokens).
    pub url: Option<String>,
    pub expires: u64,
    pub start: Option<u64>,
    pub ip: Option<String>,
    /// Native: the path prefix granted (default: the URL's path).
    pub prefix: Option<String>,
    /// Akamai: an ACL token for this ACL (else a URL token).
    pub acl: Option<String>,
    /// Akamai: sha256, sha1 or md5.
    pub algorithm: Option<String>,
    pub id: Option<String>,
    pub data: Option<String>,
    /// CloudFront: a custom policy for this resource pattern.
    pub resource: Option<String>,
    /// CloudFront: print the cookies instead of a URL.
    pub cookie: bool,
    /// JWT: the algorithm.
    pub alg: Option<String>,
    pub sub: Option<String>,
    pub iss: Option<String>,
    pub aud: Option<String>,
    /// JWT: paths the token opens (`paths` claim).
    pub paths: Vec<String>,
}

fn append_query(url: &str, pair: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}{pair}")
}

fn url_path(url: &str) -> Result<String, TokenError> {
    let uri: http::Uri = url
        .parse()
        .map_err(|_| TokenError::Usage(format!("`{url}` is not a URL")))?;
    Ok(uri.path().to_owned())
}

fn parse_ip(text: &str) -> Result<IpAddr, TokenError> {
    text.parse()
        .map_err(|_| TokenError::Usage(format!("`{text}` is not an IP address")))
}

/// Mints a token; returns what `edge token sign` prints.
pub fn sign(format: TokenFormat, key: &Key, spec: &SignSpec) -> Result<String, TokenError> {
    let need_url = || {
        spec.url
            .clone()
            .ok_or_else(|| TokenError::Usage("--url is required for this format".into()))
    };
    match format {
        TokenFormat::Native => {
            let url = need_url()?;
            let prefix = match &spec.prefix {
                Some(p) => p.clone(),
                None => url_path(&url)?,
            };
            let ip = spec.ip.as_deref().map(parse_ip).transpose()?;
            let kid = spec.key_id.as_deref().unwrap_or("k1");
            let token = native::sign(
                kid,
                key.secret("native")?,
                spec.start,
                spec.expires,
                &prefix,
                ip,
                &NativeCrypto,
            );
            Ok(append_query(&url, &format!("edge_token={token}")))
        }
        TokenFormat::Akamai => {
            let algorithm = match spec.algorithm.as_deref().unwrap_or("sha256") {
                "sha256" => akamai::Algorithm::Sha256,
                "sha1" => akamai::Algorithm::Sha1,
                "md5" => akamai::Algorithm::Md5,
                other => {
                    return Err(TokenError::Usage(format!(
                        "--algorithm `{other}` is not sha256, sha1 or md5"
                    )))
                }
            };
            let path = spec.url.as_deref().map(url_path).transpose()?;
            if spec.acl.is_none() && path.is_none() {
                return Err(TokenError::Usage("--acl or --url is required".into()));
            }
            let fields = akamai::Fields {
                ip: spec.ip.as_deref(),
                start: spec.start,
                end: spec.expires,
                acl: spec.acl.as_deref(),
                url: path.as_deref(),
                id: spec.id.as_deref(),
                data: spec.data.as_deref(),
            };
            let token = akamai::sign(
                &fields,
                key.secret("akamai")?,
                algorithm,
                None,
                &NativeCrypto,
            );
            let pair = format!("hdnts={token}");
            Ok(match &spec.url {
                Some(url) => append_query(url, &pair),
                None => pair,
            })
        }
        TokenFormat::CloudFront => sign_cloudfront(key.text("cloudfront")?, spec, need_url()?),
        TokenFormat::Jwt => sign_jwt(key, spec),
    }
}

fn sign_cloudfront(pem: &str, spec: &SignSpec, url: String) -> Result<String, TokenError> {
    use rsa::pkcs1::DecodeRsaPrivateKey;
    use rsa::pkcs8::DecodePrivateKey;
    use rsa::signature::{SignatureEncoding, Signer};
    let key = rsa::RsaPrivateKey::from_pkcs8_pem(pem)
        .or_else(|_| rsa::RsaPrivateKey::from_pkcs1_pem(pem))
        .map_err(|e| TokenError::Key(format!("not an RSA private key PEM: {e}")))?;
    let key_id = spec
        .key_id
        .as_deref()
        .ok_or_else(|| TokenError::Usage("--key-id (the key pair id) is required".into()))?;
    let custom = spec.resource.is_some() || spec.start.is_some() || spec.ip.is_some();
    let policy = if custom {
        cloudfront::custom_policy(
            spec.resource.as_deref().unwrap_or(&url),
            spec.expires,
            spec.start,
            spec.ip.as_deref(),
        )
    } else {
        cloudfront::canned_policy(&url, spec.expires)
    };
    let signer = rsa::pkcs1v15::SigningKey::<sha1::Sha1>::new(key);
    let signature = cloudfront::encode(&signer.sign(policy.as_bytes()).to_vec());
    let (first_name, first_value) = if custom {
        ("Policy", cloudfront::encode(policy.as_bytes()))
    } else {
        ("Expires", spec.expires.to_string())
    };
    if spec.cookie {
        return Ok(format!(
            "CloudFront-{first_name}={first_value}; CloudFront-Signature={signature}; CloudFront-Key-Pair-Id={key_id}"
        ));
    }
    Ok(append_query(
        &url,
        &format!("{first_name}={first_value}&Signature={signature}&Key-Pair-Id={key_id}"),
    ))
}

fn sign_jwt(key: &Key, spec: &SignSpec) -> Result<String, TokenError> {
    let alg = spec.alg.as_deref().unwrap_or("HS256");
    let mut header = serde_json::json!({ "alg": alg, "typ": "JWT" });
    if let Some(kid) = &spec.key_id {
        header["kid"] = kid.clone().into();
    }
    let mut claims = serde_json::Map::new();
    for (name, value) in [("sub", &spec.sub), ("iss", &spec.iss), ("aud", &spec.aud)] {
        if let Some(v) = value {
            claims.insert(name.into(), v.clone().into());
        }
    }
    claims.insert("exp".into(), spec.expires.into());
    if let Some(nbf) = spec.start {
        claims.insert("nbf".into(), nbf.into());
    }
    if !spec.paths.is_empty() {
        claims.insert("paths".into(), spec.paths.clone().into());
    }
    if let Some(ip) = &spec.ip {
        claims.insert("ip".into(), ip.clone().into());
    }
    let input = jwt::signing_input(
        &header.to_string(),
        &serde_json::Value::Object(claims).to_string(),
    );
    let data = input.as_bytes();
    let signature = match alg {
        "HS256" | "HS384" | "HS512" => {
            let h = match alg {
                "HS256" => Hmac::Sha256,
                "HS384" => Hmac::Sha384,
                _ => Hmac::Sha512,
            };
            NativeCrypto.hmac_sign(h, key.secret("jwt HS*")?, data)
        }
        "RS256" | "PS256" | "ES256" | "EdDSA" => {
            let der = PrivatePkcs8KeyDer::from_pem_slice(key.text("jwt")?.as_bytes())
                .map_err(|e| TokenError::Key(format!("not a PKCS#8 private key PEM: {e}")))?;
            let der = der.secret_pkcs8_der();
            let rng = SystemRandom::new();
            let bad = |e: &dyn std::fmt::Display| TokenError::Key(format!("{alg} key: {e}"));
            match alg {
                "RS256" | "PS256" => {
                    let pair = sig::RsaKeyPair::from_pkcs8(der).map_err(|e| bad(&e))?;
                    let mut out = vec![0; pair.public().modulus_len()];
                    let padding: &dyn sig::RsaEncoding = if alg == "RS256" {
                        &sig::RSA_PKCS1_SHA256
                    } else {
                        &sig::RSA_PSS_SHA256
                    };
                    pair.sign(padding, &rng, data, &mut out)
                        .map_err(|e| bad(&e))?;
                    out
                }
                "ES256" => {
                    let pair = sig::EcdsaKeyPair::from_pkcs8(
                        &sig::ECDSA_P256_SHA256_FIXED_SIGNING,
                        der,
                        &rng,
                    )
                    .map_err(|e| bad(&e))?;
                    pair.sign(&rng, data)
                        .map_err(|e| bad(&e))?
                        .as_ref()
                        .to_vec()
                }
                _ => {
                    let pair = sig::Ed25519KeyPair::from_pkcs8_maybe_unchecked(der)
                        .map_err(|e| bad(&e))?;
                    pair.sign(data).as_ref().to_vec()
                }
            }
        }
        other => {
            return Err(TokenError::Usage(format!(
                "--alg `{other}` is not one of {}",
                jwt::ALGORITHMS.join(", ")
            )))
        }
    };
    Ok(jwt::assemble(&input, &signature))
}

/// What to check.
#[derive(Debug, Clone, Default)]
pub struct VerifySpec {
    pub key_id: Option<String>,
    pub url: String,
    pub token: Option<String>,
    pub cookie: Option<String>,
    pub ip: Option<String>,
    pub now: u64,
    /// Akamai: sha256, sha1 or md5.
    pub algorithm: Option<String>,
    pub escape_early: bool,
    pub issuer: Option<String>,
    pub audience: Option<String>,
    pub path_claim: Option<String>,
    pub ip_claim: Option<String>,
    /// Clock skew allowed on time checks, in seconds (the CLI checks with none; a route's
    /// default is 30).
    pub skew_s: u64,
}

/// The token-auth config for one format and key.
fn config_for(format: TokenFormat, key: &Key, spec: &VerifySpec) -> Result<Config, TokenError> {
    let mut config = serde_json::json!({ "skew_s": spec.skew_s });
    let one = |id: &str, value: String| {
        let mut m = BTreeMap::new();
        m.insert(id.to_owned(), value);
        m
    };
    match format {
        TokenFormat::Native => {
            let id = spec
                .key_id
                .clone()
                .or_else(|| native_key_id(spec.token.as_deref().unwrap_or(&spec.url)))
                .unwrap_or_else(|| "k1".into());
            let hex = edge_module_token_auth::encode_hex(key.secret("native")?);
            config["native"] = serde_json::json!({ "keys": one(&id, hex) });
        }
        TokenFormat::Akamai => {
            let hex = edge_module_token_auth::encode_hex(key.secret("akamai")?);
            config["akamai"] = serde_json::json!({
                "keys": one("key", hex),
                "algorithm": spec.algorithm.as_deref().unwrap_or("sha256"),
                "escape_early": spec.escape_early,
            });
        }
        TokenFormat::CloudFront => {
            let pem = key.text("cloudfront")?.to_owned();
            let id = spec
                .key_id
                .clone()
                .or_else(|| in_query_or_cookie(spec, "Key-Pair-Id", "CloudFront-Key-Pair-Id"))
                .unwrap_or_default();
            config["cloudfront"] = serde_json::json!({ "public_keys": one(&id, pem) });
        }
        TokenFormat::Jwt => {
            let mut jwt = serde_json::json!({
                "from": { "header": "authorization", "query": "jwt", "cookie": "jwt" },
                "issuer": spec.issuer,
                "audience": spec.audience,
                "path_claim": spec.path_claim,
                "ip_claim": spec.ip_claim,
            });
            // A key given without `--key-id` is filed under the kid the token names, so
            // it is the key the verifier looks for.
            let kid = spec
                .key_id
                .clone()
                .or_else(|| jwt_key_id(spec))
                .unwrap_or_else(|| "key".into());
            match key {
                Key::Secret(s) => {
                    jwt["secrets"] =
                        serde_json::json!(one(&kid, edge_module_token_auth::encode_hex(s)))
                }
                Key::File(text) if text.trim_start().starts_with('{') => {
                    jwt["jwks"] = serde_json::from_str(text)
                        .map_err(|e| TokenError::Key(format!("the JWKS is not JSON: {e}")))?
                }
                Key::File(text) => jwt["public_keys"] = serde_json::json!(one(&kid, text.clone())),
            }
            config["jwt"] = jwt;
        }
    }
    Config::parse(&config.to_string()).map_err(TokenError::Usage)
}

/// The value of query parameter `query` in the request's URL, else of cookie `cookie`.
fn in_query_or_cookie(spec: &VerifySpec, query: &str, cookie: &str) -> Option<String> {
    edge_module_token_auth::request::query_param(spec.url.split_once('?').map(|(_, q)| q), query)
        .map(|(_, v)| v.into_owned())
        .or_else(|| {
            edge_module_token_auth::request::cookie(spec.cookie.as_deref(), cookie)
                .map(str::to_owned)
        })
}

/// The `kid` in the header of the JWT the request carries (`--token`, else the `jwt`
/// query parameter or cookie), if it names one.
fn jwt_key_id(spec: &VerifySpec) -> Option<String> {
    use base64::Engine;
    let token = spec
        .token
        .clone()
        .or_else(|| in_query_or_cookie(spec, "jwt", "jwt"))?;
    let header = token.split('.').next()?;
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header)
        .ok()?;
    let header: serde_json::Value = serde_json::from_slice(&json).ok()?;
    header["kid"].as_str().map(str::to_owned)
}

/// The `k=` field of a native token found in `text` (a token or a URL).
fn native_key_id(text: &str) -> Option<String> {
    let start = text.find("k=")? + 2;
    let rest = &text[start..];
    let end = rest.find(['~', '&']).unwrap_or(rest.len());
    Some(
        percent_encoding::percent_decode_str(&rest[..end])
            .decode_utf8_lossy()
            .into_owned(),
    )
}

/// Checks a token as the node would for a request to `spec.url`.
pub fn verify(
    format: TokenFormat,
    key: &Key,
    spec: &VerifySpec,
) -> Result<Result<Verified, Failure>, TokenError> {
    let config = config_for(format, key, spec)?;
    let uri: http::Uri = spec
        .url
        .parse()
        .map_err(|_| TokenError::Usage(format!("--url `{}` is not a URL", spec.url)))?;
    let client_ip = spec.ip.as_deref().map(parse_ip).transpose()?;
    let bearer = spec.token.as_ref().map(|t| format!("Bearer {t}"));
    let header = |name: &str| (name == "authorization").then(|| bearer.clone()).flatten();
    let req = Request {
        url: Lazy::known(Some(spec.url.clone())),
        path: uri.path(),
        query: uri.query(),
        cookies: Lazy::known(spec.cookie.clone()),
        client_ip,
        header: &header,
    };
    let crypto = &NativeCrypto;
    let (now, skew) = (spec.now, config.skew_s);
    Ok(match (format, &spec.token) {
        (TokenFormat::Native, Some(t)) => config
            .native
            .as_ref()
            .map(|c| c.check_token(t, &req, crypto, now, skew))
            .unwrap_or_else(|| unreachable!("configured above")),
        (TokenFormat::Akamai, Some(t)) => {
            let t = t.strip_prefix("hdnts=").unwrap_or(t);
            config
                .akamai
                .as_ref()
                .map(|c| c.check_token(t, &req, crypto, now, skew))
                .unwrap_or_else(|| unreachable!("configured above"))
        }
        (TokenFormat::CloudFront, Some(_)) => {
            return Err(TokenError::Usage(
                "CloudFront signatures travel in the URL (--url) or the cookies (--cookie), not --token"
                    .into(),
            ))
        }
        // JWT: `--token` arrives as `Authorization: Bearer`.
        _ => config.verify(&req, crypto, now),
    })
}

/// Vectors from outside the project (`modules/token-auth/testdata/README.md` says how
/// they were produced): Akamai's Python generator, AWS's botocore signer, RFC 7515 and
/// RFC 8037 examples, PyJWT.
#[cfg(test)]
mod tests {
    use super::*;
    use edge_module_token_auth::{Format, Reason};
    use serde_json::Value;

    fn testdata(name: &str) -> String {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../modules/token-auth/testdata")
            .join(name);
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    fn fixture(name: &str) -> Value {
        serde_json::from_str(&testdata(name)).unwrap()
    }

    fn s(v: &Value) -> Option<String> {
        v.as_str().map(str::to_owned)
    }

    fn check(format: TokenFormat, key: &Key, spec: &VerifySpec) -> Result<Verified, Reason> {
        verify(format, key, spec).unwrap().map_err(|f| f.reason)
    }

    /// A request path an Akamai case's token should open.
    fn akamai_spec(case: &Value) -> VerifySpec {
        let path = match (s(&case["acl"]), s(&case["url"])) {
            (Some(acl), _) => acl.split('!').next().unwrap().replace('*', "video/seg1.ts"),
            (None, Some(url)) => url,
            _ => unreachable!(),
        };
        let url = format!("https://edge.example{}", path.replace(' ', "%20"));
        VerifySpec {
            url,
            token: s(&case["token"]),
            ip: s(&case["ip"]),
            now: case["end"].as_u64().unwrap() - 60,
            algorithm: s(&case["algorithm"]),
            escape_early: case["escape_early"].as_bool().unwrap(),
            ..Default::default()
        }
    }

    #[test]
    fn akamai_generator_tokens_verify_and_fail_for_the_right_reason() {
        let cases = fixture("akamai.json");
        for case in cases["cases"].as_array().unwrap() {
            let name = case["name"].as_str().unwrap();
            let key = Key::Secret(
                edge_module_token_auth::decode_hex(case["key_hex"].as_str().unwrap()).unwrap(),
            );
            let spec = akamai_spec(case);
            let verified =
                check(TokenFormat::Akamai, &key, &spec).unwrap_or_else(|r| panic!("{name}: {r}"));
            assert_eq!(verified.format, Format::Akamai);
            assert_eq!(verified.subject, s(&case["session_id"]), "{name}");

            // What our signer writes is what Akamai's writes.
            if !spec.escape_early {
                let path = s(&case["url"]);
                let fields = akamai::Fields {
                    ip: case["ip"].as_str(),
                    start: case["start"].as_u64(),
                    end: case["end"].as_u64().unwrap(),
                    acl: case["acl"].as_str(),
                    url: path.as_deref(),
                    id: case["session_id"].as_str(),
                    data: case["payload"].as_str(),
                };
                let algorithm = match case["algorithm"].as_str().unwrap() {
                    "sha1" => akamai::Algorithm::Sha1,
                    "md5" => akamai::Algorithm::Md5,
                    _ => akamai::Algorithm::Sha256,
                };
                let Key::Secret(secret) = &key else {
                    unreachable!()
                };
                assert_eq!(
                    akamai::sign(&fields, secret, algorithm, None, &NativeCrypto),
                    case["token"].as_str().unwrap(),
                    "{name}"
                );
            }
        }

        // An ACL of several patterns (`!` between them): each one opens, nothing else does.
        let list = &cases["cases"][1];
        assert_eq!(list["name"], "acl-list-sha256");
        let key = Key::Secret(
            edge_module_token_auth::decode_hex(list["key_hex"].as_str().unwrap()).unwrap(),
        );
        let at = |url: &str| {
            let mut spec = akamai_spec(list);
            spec.url = url.into();
            check(TokenFormat::Akamai, &key, &spec).map(|_| ())
        };
        assert_eq!(at("https://edge.example/secure/a/seg1.ts"), Ok(()));
        assert_eq!(at("https://edge.example/other/b.ts"), Ok(()));
        assert_eq!(
            at("https://edge.example/else/c.ts"),
            Err(Reason::AclMismatch)
        );

        let case = &cases["cases"][3]; // acl-ip-sha256: st, exp, acl, ip
        assert_eq!(case["name"], "acl-ip-sha256");
        let key = Key::Secret(
            edge_module_token_auth::decode_hex(case["key_hex"].as_str().unwrap()).unwrap(),
        );
        let good = akamai_spec(case);
        let token = good.token.clone().unwrap();
        let with = |f: &dyn Fn(&mut VerifySpec)| {
            let mut spec = good.clone();
            f(&mut spec);
            check(TokenFormat::Akamai, &key, &spec).map(|_| ())
        };
        assert_eq!(with(&|_| {}), Ok(()));
        assert_eq!(with(&|s| s.now = 1_700_003_600), Err(Reason::Expired));
        assert_eq!(with(&|s| s.now = 1_699_999_000), Err(Reason::NotYetValid));
        let wrong = Key::Secret(vec![7; 32]);
        assert_eq!(
            check(TokenFormat::Akamai, &wrong, &good).map(|_| ()),
            Err(Reason::BadSignature)
        );
        let flipped = format!("{}0", &token[..token.len() - 1]);
        let flipped = if flipped == token {
            format!("{}1", &token[..token.len() - 1])
        } else {
            flipped
        };
        assert_eq!(
            with(&|s| s.token = Some(flipped.clone())),
            Err(Reason::BadSignature)
        );
        assert_eq!(
            with(&|s| s.token = Some(token.replace("exp=1700003600", "exp=1800003600"))),
            Err(Reason::BadSignature)
        );
        assert_eq!(
            with(&|s| s.url = "https://edge.example/other/seg1.ts".into()),
            Err(Reason::AclMismatch)
        );
        assert_eq!(
            with(&|s| s.ip = Some("203.0.113.8".into())),
            Err(Reason::IpMismatch)
        );
        assert_eq!(with(&|s| s.ip = None), Err(Reason::IpMismatch));
        assert_eq!(
            with(&|s| s.algorithm = Some("sha1".into())),
            Err(Reason::BadSignature)
        );
        for bad in [
            "garbage",
            "exp=1~hmac=zz",
            "exp=1~acl~hmac=00",
            "exp=x~hmac=00",
        ] {
            let r = with(&|s| s.token = Some(bad.into()));
            assert!(
                matches!(r, Err(Reason::Malformed | Reason::BadSignature)),
                "{bad}: {r:?}"
            );
        }
        assert_eq!(
            with(&|s| s.token = Some("exp=1~hmac=zz".into())),
            Err(Reason::Malformed)
        );
        // No token at all.
        assert_eq!(with(&|s| s.token = None), Err(Reason::Missing));
        // The token in the URL's query, as viewers carry it.
        assert_eq!(
            with(&|s| {
                s.url = format!("https://edge.example/secure/video/seg1.ts?hdnts={token}");
                s.token = None;
            }),
            Ok(())
        );
    }

    fn cloudfront_spec(case: &Value) -> VerifySpec {
        let ip = match case["ip_address"].as_str() {
            Some(cidr) => Some(cidr.split('/').next().unwrap().to_owned()),
            None => Some("198.51.100.1".to_owned()),
        };
        let (url, cookie) = match case["kind"].as_str().unwrap() {
            "url" => (s(&case["url"]).unwrap(), None),
            _ => {
                let cookies = case["cookies"].as_object().unwrap();
                let header: Vec<String> = cookies
                    .iter()
                    .map(|(k, v)| format!("{k}={}", v.as_str().unwrap()))
                    .collect();
                (s(&case["resource_url"]).unwrap(), Some(header.join("; ")))
            }
        };
        VerifySpec {
            url,
            cookie,
            ip,
            now: case["date_less_than"].as_u64().unwrap() - 60,
            ..Default::default()
        }
    }

    #[test]
    fn cloudfront_signed_urls_and_cookies_from_aws_signer() {
        let fx = fixture("cloudfront.json");
        let public = Key::File(s(&fx["public_key_pem"]).unwrap());
        let private = Key::File(s(&fx["private_key_pem"]).unwrap());
        let key_id = s(&fx["key_pair_id"]).unwrap();
        for case in fx["cases"].as_array().unwrap() {
            let name = case["name"].as_str().unwrap();
            let spec = cloudfront_spec(case);
            let v = check(TokenFormat::CloudFront, &public, &spec)
                .unwrap_or_else(|r| panic!("{name}: {r}"));
            assert_eq!(v.expires, case["date_less_than"].as_u64().unwrap());

            // Our signer writes byte-identical URLs and cookies (RSA PKCS#1 v1.5 is
            // deterministic).
            let custom = case["policy_type"] == "custom";
            let sign_spec = SignSpec {
                key_id: Some(key_id.clone()),
                url: s(&case["resource_url"]),
                expires: case["date_less_than"].as_u64().unwrap(),
                start: case["date_greater_than"].as_u64(),
                ip: s(&case["ip_address"]),
                resource: custom.then(|| s(&case["policy_resource"])).flatten(),
                cookie: case["kind"] == "cookie",
                ..Default::default()
            };
            let ours = sign(TokenFormat::CloudFront, &private, &sign_spec).unwrap();
            match case["kind"].as_str().unwrap() {
                "url" => assert_eq!(ours, case["url"].as_str().unwrap(), "{name}"),
                _ => {
                    let set = |c: &str| {
                        let mut v: Vec<String> = c.split("; ").map(str::to_owned).collect();
                        v.sort();
                        v
                    };
                    assert_eq!(set(&ours), set(spec.cookie.as_deref().unwrap()), "{name}")
                }
            }
        }

        let canned = cloudfront_spec(&fx["cases"][0]);
        let custom = cloudfront_spec(&fx["cases"][1]);
        assert_eq!(fx["cases"][1]["name"], "url-custom-wildcard-ip");
        let with = |base: &VerifySpec, f: &dyn Fn(&mut VerifySpec)| {
            let mut spec = base.clone();
            f(&mut spec);
            check(TokenFormat::CloudFront, &public, &spec).map(|_| ())
        };
        assert_eq!(
            with(&canned, &|s| s.now = 1_700_003_600),
            Err(Reason::Expired)
        );
        assert_eq!(
            with(&custom, &|s| s.now = 1_699_999_999),
            Err(Reason::NotYetValid)
        );
        assert_eq!(
            with(&custom, &|s| s.ip = Some("203.0.114.1".into())),
            Err(Reason::IpMismatch)
        );
        // The canned policy covers the exact URL: another path changes what was signed.
        assert_eq!(
            with(&canned, &|s| s.url = s.url.replace("seg1.ts", "seg2.ts")),
            Err(Reason::BadSignature)
        );
        // The custom policy's wildcard: another path under it passes, outside it fails.
        assert_eq!(
            with(&custom, &|s| s.url =
                s.url.replace("video/seg1.ts", "x/y.ts")),
            Ok(())
        );
        assert_eq!(
            with(&custom, &|s| s.url =
                s.url.replace("/secure/video/", "/open/")),
            Err(Reason::AclMismatch)
        );
        assert_eq!(
            with(&canned, &|s| s.url =
                s.url.replace("Expires=1700003600", "Expires=1800003600")),
            Err(Reason::BadSignature)
        );
        assert_eq!(
            with(&canned, &|s| s.url =
                s.url.replace("Signature=", "Signature=AAAA")),
            Err(Reason::BadSignature)
        );
        assert_eq!(
            with(&canned, &|s| s.url =
                s.url.replace("Signature=", "Signature=%%")),
            Err(Reason::Malformed)
        );
        assert_eq!(
            with(&canned, &|s| {
                s.url = s.url.replace("K2JCJMDEHXQW5F", "KUNKNOWN");
                s.key_id = Some("K2JCJMDEHXQW5F".into());
            }),
            Err(Reason::UnknownKey)
        );
        assert_eq!(
            with(&canned, &|s| s.url =
                "https://d111111abcdef8.cloudfront.net/secure/video/seg1.ts"
                    .into()),
            Err(Reason::Missing)
        );
        // Another key pair's public key under the same id.
        let other = Key::File(
            std::fs::read_to_string(
                Path::new(env!("CARGO_MANIFEST_DIR")).join("src/wasm/testdata/rsa2048.pub.pem"),
            )
            .unwrap(),
        );
        assert_eq!(
            check(TokenFormat::CloudFront, &other, &canned).map(|_| ()),
            Err(Reason::BadSignature)
        );
    }

    fn jwt_spec(token: &str, now: u64) -> VerifySpec {
        VerifySpec {
            url: "https://edge.example/secure/video/seg1.ts".into(),
            token: Some(token.into()),
            now,
            ..Default::default()
        }
    }

    #[test]
    fn jwt_rfc_examples_and_pyjwt_tokens() {
        let fx = fixture("jwt.json");
        let jwks = Key::File(testdata("jwks.json"));
        for case in fx["cases"].as_array().unwrap() {
            let name = case["name"].as_str().unwrap();
            let token = case["token"].as_str().unwrap();
            if name.starts_with("rfc8037") {
                // Its payload is text, not claims: check the JWS layer, then the refusal.
                let config = jwt::Config {
                    jwks: Some(
                        serde_json::value::RawValue::from_string(testdata("jwks.json")).unwrap(),
                    ),
                    public_keys: BTreeMap::new(),
                    secrets: BTreeMap::new(),
                    issuer: None,
                    audience: None,
                    path_claim: None,
                    ip_claim: None,
                    require_exp: true,
                    algorithms: None,
                    from: edge_module_token_auth::Source::default(),
                };
                let payload = config.verify_jws(token, &NativeCrypto).unwrap();
                assert_eq!(payload, b"Example of Ed25519 signing");
                assert_eq!(
                    check(TokenFormat::Jwt, &jwks, &jwt_spec(token, 0)),
                    Err(Reason::Malformed)
                );
                continue;
            }
            let now = if name.starts_with("rfc7515") {
                1_300_819_000
            } else {
                1_700_000_100
            };
            let v = check(TokenFormat::Jwt, &jwks, &jwt_spec(token, now))
                .unwrap_or_else(|r| panic!("{name}: {r}"));
            assert_eq!(v.subject, s(&case["claims"]["sub"]), "{name}");
            if name.starts_with("pyjwt") {
                let mut spec = jwt_spec(token, now);
                spec.issuer = Some("https://issuer.example".into());
                spec.audience = Some("edge".into());
                spec.path_claim = Some("paths".into());
                assert!(check(TokenFormat::Jwt, &jwks, &spec).is_ok(), "{name}");
                let with = |f: &dyn Fn(&mut VerifySpec)| {
                    let mut s = spec.clone();
                    f(&mut s);
                    check(TokenFormat::Jwt, &jwks, &s).map(|_| ())
                };
                assert_eq!(
                    with(&|s| s.now = 1_700_003_600),
                    Err(Reason::Expired),
                    "{name}"
                );
                assert_eq!(
                    with(&|s| s.now = 1_699_999_000),
                    Err(Reason::NotYetValid),
                    "{name}"
                );
                assert_eq!(
                    with(&|s| s.issuer = Some("other".into())),
                    Err(Reason::BadIssuer)
                );
                assert_eq!(
                    with(&|s| s.audience = Some("other".into())),
                    Err(Reason::BadAudience)
                );
                assert_eq!(
                    with(&|s| s.url = "https://edge.example/open/x.ts".into()),
                    Err(Reason::AclMismatch)
                );
                // A changed claim no longer matches the signature.
                let parts: Vec<&str> = token.split('.').collect();
                let claims = jwt::signing_input(
                    "{}",
                    &case["claims"].to_string().replace("viewer-42", "viewer-43"),
                );
                let forged = format!(
                    "{}.{}.{}",
                    parts[0],
                    claims.split('.').nth(1).unwrap(),
                    parts[2]
                );
                assert_eq!(
                    with(&|s| s.token = Some(forged.clone())),
                    Err(Reason::BadSignature),
                    "{name}"
                );
                let mut sig = parts[2].to_owned();
                let last = if sig.ends_with('A') { 'B' } else { 'A' };
                sig.pop();
                sig.push(last);
                let tampered = format!("{}.{}.{sig}", parts[0], parts[1]);
                assert!(
                    matches!(
                        with(&|s| s.token = Some(tampered.clone())),
                        Err(Reason::BadSignature | Reason::Malformed)
                    ),
                    "{name}"
                );
            }
        }
    }

    /// `verify --format jwt --key HEX` without `--key-id`: the secret stands for the key the
    /// token names; another secret is a bad signature, not an unknown key. An `ip` claim
    /// binds the token to the viewer's address.
    #[test]
    fn jwt_secrets_from_the_command_line_and_the_ip_claim() {
        let secret = Key::Secret(b"0123456789abcdef0123456789abcdef".to_vec());
        let now = 1_700_000_000;
        let signed = |ip: Option<&str>| {
            sign(
                TokenFormat::Jwt,
                &secret,
                &SignSpec {
                    key_id: Some("edge-1".into()),
                    expires: now + 600,
                    ip: ip.map(str::to_owned),
                    ..Default::default()
                },
            )
            .unwrap()
        };
        let token = signed(None);
        assert!(check(TokenFormat::Jwt, &secret, &jwt_spec(&token, now)).is_ok());
        let other = Key::Secret(b"another secret of the same length".to_vec());
        assert_eq!(
            check(TokenFormat::Jwt, &other, &jwt_spec(&token, now)).map(|_| ()),
            Err(Reason::BadSignature)
        );

        let bound = signed(Some("203.0.113.7"));
        let from = |ip: &str| {
            let mut spec = jwt_spec(&bound, now);
            spec.ip_claim = Some("ip".into());
            spec.ip = Some(ip.into());
            check(TokenFormat::Jwt, &secret, &spec).map(|_| ())
        };
        assert_eq!(from("203.0.113.7"), Ok(()));
        assert_eq!(from("203.0.113.8"), Err(Reason::IpMismatch));

        // Clock skew: 20 s past `exp` (or before `nbf`) passes with 30 s allowed, not
        // with none.
        let early = sign(
            TokenFormat::Jwt,
            &secret,
            &SignSpec {
                key_id: Some("edge-1".into()),
                start: Some(now),
                expires: now + 600,
                ..Default::default()
            },
        )
        .unwrap();
        let at = |t: u64, skew_s: u64| {
            let mut spec = jwt_spec(&early, t);
            spec.skew_s = skew_s;
            check(TokenFormat::Jwt, &secret, &spec).map(|_| ())
        };
        assert_eq!(at(now + 620, 30), Ok(()));
        assert_eq!(at(now + 620, 0), Err(Reason::Expired));
        assert_eq!(at(now - 20, 30), Ok(()));
        assert_eq!(at(now - 20, 0), Err(Reason::NotYetValid));
    }

    #[test]
    fn jwt_refusals_alg_confusion_and_round_trips() {
        let fx = fixture("jwt.json");
        let jwks = Key::File(testdata("jwks.json"));
        let now = 1_700_000_100;
        let hs = fx["cases"][4]["token"].as_str().unwrap();
        let parts: Vec<&str> = hs.split('.').collect();
        let header = |json: &str| {
            jwt::signing_input(json, "{}")
                .split('.')
                .next()
                .unwrap()
                .to_owned()
        };
        // `none`, unknown algorithms, and an HMAC header naming an RSA key's kid.
        for (h, reason) in [
            (r#"{"alg":"none"}"#, Reason::BadAlgorithm),
            (
                r#"{"alg":"HS1024","kid":"edge-hs256"}"#,
                Reason::BadAlgorithm,
            ),
            (r#"{"alg":"HS256","kid":"edge-rs256"}"#, Reason::UnknownKey),
            (r#"{"alg":"RS256","kid":"nope"}"#, Reason::UnknownKey),
        ] {
            let token = format!("{}.{}.{}", header(h), parts[1], parts[2]);
            assert_eq!(
                check(TokenFormat::Jwt, &jwks, &jwt_spec(&token, now)),
                Err(reason),
                "{h}"
            );
        }
        for bad in ["", "a.b", "a.b.c.d", "!!.!!.!!"] {
            assert_eq!(
                check(TokenFormat::Jwt, &jwks, &jwt_spec(bad, now)),
                Err(Reason::Malformed),
                "{bad}"
            );
        }
        let mut missing = jwt_spec("", now);
        missing.token = None;
        assert_eq!(
            check(TokenFormat::Jwt, &jwks, &missing),
            Err(Reason::Missing)
        );

        // `edge token sign` with every algorithm, checked against the JWKS.
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../modules/token-auth/testdata");
        let secrets = &fx["hmac_secrets_hex"];
        for (alg, kid, key) in [
            (
                "HS256",
                "edge-hs256",
                Key::parse(secrets["edge-hs256"].as_str().unwrap()).unwrap(),
            ),
            (
                "HS384",
                "edge-hs384",
                Key::parse(secrets["edge-hs384"].as_str().unwrap()).unwrap(),
            ),
            (
                "RS256",
                "edge-rs256",
                Key::parse(dir.join("jwt-rs256.pem").to_str().unwrap()).unwrap(),
            ),
            (
                "PS256",
                "edge-ps256",
                Key::parse(dir.join("jwt-ps256.pem").to_str().unwrap()).unwrap(),
            ),
            (
                "ES256",
                "edge-es256",
                Key::parse(dir.join("jwt-es256.pem").to_str().unwrap()).unwrap(),
            ),
            (
                "EdDSA",
                "edge-ed25519",
                Key::parse(dir.join("jwt-ed25519.pem").to_str().unwrap()).unwrap(),
            ),
        ] {
            let spec = SignSpec {
                key_id: Some(kid.into()),
                alg: Some(alg.into()),
                sub: Some("viewer-7".into()),
                expires: now + 60,
                paths: vec!["/secure/*".into()],
                ..Default::default()
            };
            let token = sign(TokenFormat::Jwt, &key, &spec).unwrap();
            let v = check(TokenFormat::Jwt, &jwks, &jwt_spec(&token, now))
                .unwrap_or_else(|r| panic!("{alg}: {r}"));
            assert_eq!(v.subject.as_deref(), Some("viewer-7"));
            let mut spec = jwt_spec(&token, now);
            spec.path_claim = Some("paths".into());
            spec.url = "https://edge.example/open/1.ts".into();
            assert_eq!(
                check(TokenFormat::Jwt, &jwks, &spec).map(|_| ()),
                Err(Reason::AclMismatch),
                "{alg}"
            );
        }
    }

    #[test]
    fn native_round_trip_and_refusals() {
        let key = Key::parse("00112233445566778899aabbccddeeff").unwrap();
        let spec = SignSpec {
            key_id: Some("k1".into()),
            url: Some("https://edge.example/secure/v/index.m3u8".into()),
            prefix: Some("/secure/".into()),
            expires: 2_000,
            ip: Some("203.0.113.9".into()),
            ..Default::default()
        };
        let url = sign(TokenFormat::Native, &key, &spec).unwrap();
        assert!(url.starts_with("https://edge.example/secure/v/index.m3u8?edge_token=k=k1~e=2000~p=/secure/~i=203.0.113.9~sig="), "{url}");
        let good = VerifySpec {
            url: url.clone(),
            ip: Some("203.0.113.9".into()),
            now: 1_000,
            ..Default::default()
        };
        let with = |f: &dyn Fn(&mut VerifySpec)| {
            let mut s = good.clone();
            f(&mut s);
            check(TokenFormat::Native, &key, &s).map(|_| ())
        };
        assert_eq!(with(&|_| {}), Ok(()));
        // Another file under the prefix: the token is for the prefix.
        assert_eq!(
            with(&|s| s.url = url.replace("index.m3u8", "seg_1.ts")),
            Ok(())
        );
        assert_eq!(with(&|s| s.now = 2_000), Err(Reason::Expired));
        // A start time, when the token has one.
        let later = sign(
            TokenFormat::Native,
            &key,
            &SignSpec {
                start: Some(1_500),
                ..spec.clone()
            },
        )
        .unwrap();
        assert!(later.contains("~s=1500~e=2000~"), "{later}");
        assert_eq!(with(&|s| s.url = later.clone()), Err(Reason::NotYetValid));
        assert_eq!(
            with(&|s| {
                s.url = later.clone();
                s.now = 1_600;
            }),
            Ok(())
        );
        assert_eq!(
            with(&|s| s.url = url.replace("/secure/v/", "/open/v/")),
            Err(Reason::AclMismatch)
        );
        assert_eq!(
            with(&|s| s.ip = Some("203.0.113.10".into())),
            Err(Reason::IpMismatch)
        );
        assert_eq!(
            with(&|s| s.url = url.replace("e=2000", "e=3000")),
            Err(Reason::BadSignature)
        );
        assert_eq!(
            with(&|s| s.url = url.replace("p=/secure/", "p=/")),
            Err(Reason::BadSignature)
        );
        assert_eq!(
            with(&|s| s.url = url.replace("sig=", "sig=AAAA")),
            Err(Reason::BadSignature)
        );
        assert_eq!(
            with(&|s| s.url = url.replace("sig=", "sig=*")),
            Err(Reason::Malformed)
        );
        assert_eq!(
            with(&|s| {
                s.url = url.replace("k=k1", "k=k9");
                s.key_id = Some("k1".into());
            }),
            Err(Reason::UnknownKey)
        );
        assert_eq!(
            with(&|s| s.url = "https://edge.example/secure/v/index.m3u8".into()),
            Err(Reason::Missing)
        );
        let wrong = Key::parse("ffeeddccbbaa99887766554433221100").unwrap();
        assert_eq!(
            check(TokenFormat::Native, &wrong, &good).map(|_| ()),
            Err(Reason::BadSignature)
        );
    }
}
