//! Every token format on attacker-chosen input: path, query, cookies and an
//! `Authorization` field, split at newlines. No input may panic; the crypto is a stand-in
//! (a fixed tag, signatures that verify for even-length data) so that the parsers behind
//! the signature checks are reached too.

#![no_main]

use edge_module_token_auth::{Config, Crypto, Hmac, Lazy, PublicKey, Request, Signature};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

struct StandIn;

impl Crypto for StandIn {
    fn hmac_sign(&self, _: Hmac, _: &[u8], _: &[u8]) -> Vec<u8> {
        vec![0; 32]
    }
    fn hmac_verify(&self, _: Hmac, _: &[u8], _: &[u8], tag: &[u8]) -> bool {
        tag.iter().all(|&b| b == 0)
    }
    fn verify(
        &self,
        _: Signature,
        _: PublicKey<'_>,
        data: &[u8],
        _: &[u8],
    ) -> Result<bool, String> {
        Ok(data.len().is_multiple_of(2))
    }
}

const CONFIG: &str = r#"{
  "native": { "keys": { "k1": "000102030405060708090a0b0c0d0e0f" }, "signing_key": "k1" },
  "akamai": { "keys": { "current": "000102030405060708090a0b0c0d0e0f" } },
  "cloudfront": { "public_keys": { "K2JCJMDEHXQW5F": "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----" } },
  "jwt": { "secrets": { "h1": "000102030405060708090a0b0c0d0e0f" }, "path_claim": "paths", "ip_claim": "ip" },
  "session": {}
}"#;

fuzz_target!(|data: &[u8]| {
    static PARSED: OnceLock<Config> = OnceLock::new();
    let config = PARSED.get_or_init(|| Config::parse(CONFIG).expect("the fuzz config loads"));
    let text = String::from_utf8_lossy(data);
    let mut parts = text.splitn(4, '\n');
    let path = parts.next().unwrap_or("/");
    let query = parts.next();
    let cookies = parts.next().map(str::to_owned);
    let authorization = parts.next().map(str::to_owned);
    let header = |name: &str| {
        (name == "authorization")
            .then(|| authorization.clone())
            .flatten()
    };
    let url = match query {
        Some(q) => format!("https://cdn.example{path}?{q}"),
        None => format!("https://cdn.example{path}"),
    };
    let request = Request {
        url: Lazy::known(Some(url)),
        path,
        query,
        cookies: Lazy::known(cookies),
        client_ip: Some("192.0.2.7".parse().unwrap()),
        header: &header,
    };
    if let Ok(verified) = config.verify(&request, &StandIn, 1_700_000_000) {
        let _ = config.session_cookie(&verified, &request, &StandIn, 1_700_000_000);
    }
});
