//! The Wasm export: verifies the request's token with the host's crypto, hands the
//! result to later modules through the request context, and sets the session cookie.

use crate::{parse_ip, Config, Crypto, Hmac, Lazy, PublicKey, Reason, Signature};
use edge_module_sdk::crypto::{self as host, HmacAlgorithm, SignatureAlgorithm};
use edge_module_sdk::{export_module, log, metrics, Action, Module, Request, Response};
use std::cell::{OnceCell, RefCell};

struct TokenAuth;

/// The node's crypto import.
struct HostCrypto;

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

impl Crypto for HostCrypto {
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

thread_local! {
    /// The session cookie to set on this request's response: set by `on_request`, taken by
    /// `on_response`, cleared when the next request starts.
    static SESSION_COOKIE: RefCell<Option<String>> = const { RefCell::new(None) };
    /// The route's config, parsed once per instance by `init` (the module is resident).
    static CONFIG: OnceCell<Config> = const { OnceCell::new() };
}

impl Module for TokenAuth {
    const NAME: &'static str = "token-auth";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    // Every segment request of a protected route comes here: the instance (and its parsed
    // keys) is kept across requests. Nothing of a viewer's request outlives it but the
    // session cookie, which the next request clears first.
    const RESIDENT: bool = true;

    fn init() -> Result<(), String> {
        let config = Config::parse(&edge_module_sdk::bindings::edge::module::config::get())?;
        CONFIG.with(|c| {
            let _ = c.set(config);
        });
        Ok(())
    }

    fn on_request(req: &Request) -> Action {
        SESSION_COOKIE.with(|c| c.borrow_mut().take());
        CONFIG.with(|config| match config.get() {
            Some(config) => verify(config, req),
            // `init` runs first or the node would not call this; refuse rather than pass.
            None => Action::respond(
                500,
                "500 Internal Server Error: token-auth not initialised\n",
            ),
        })
    }

    fn on_response(_req: &Request, resp: &Response) {
        if let Some(cookie) = SESSION_COOKIE.with(|c| c.borrow_mut().take()) {
            if let Err(e) = resp.append_header("set-cookie", &cookie) {
                log::warn(&e);
            }
        }
    }
}

/// Checks the request's token against the route's config.
fn verify(config: &Config, req: &Request) -> Action {
    let path = req.path();
    let query = req.query();
    let header = |name: &str| req.header(name);
    let request = crate::Request {
        url: Lazy::new(|| Some(req.url())),
        path: &path,
        query: query.as_deref(),
        cookies: Lazy::new(|| {
            let all = req.header_all("cookie");
            (!all.is_empty()).then(|| all.join("; "))
        }),
        client_ip: parse_ip(&req.client_addr()),
        header: &header,
    };
    let now = edge_module_sdk::clock::now_ms() / 1000;
    match config.verify(&request, &HostCrypto, now) {
        Ok(verified) => {
            req.set_context("token.format", verified.format.name());
            if let Some(subject) = &verified.subject {
                req.set_context("token.subject", subject);
            }
            if let Some(query) = &verified.query {
                req.set_context("token.query", query);
            }
            match config.session_cookie(&verified, &request, &HostCrypto, now) {
                Some(cookie) => {
                    SESSION_COOKIE.with(|c| *c.borrow_mut() = Some(cookie));
                    Action::Continue
                }
                // Nothing to add to the response: skip the response hook.
                None => Action::Done,
            }
        }
        Err(failure) => {
            let format = failure.format.map_or("-", |f| f.name());
            log::info(&format!(
                "token refused: reason={} format={format} {}",
                failure.reason, failure.detail
            ));
            metrics::counter_add(failure.reason.code(), 1);
            if failure.reason == Reason::Missing && config.wants_bearer() {
                return Action::respond_with(
                    401,
                    &[
                        ("content-type", "text/plain; charset=utf-8"),
                        ("www-authenticate", "Bearer realm=\"edge\""),
                    ],
                    b"unauthorized\n",
                );
            }
            Action::respond(403, "forbidden\n")
        }
    }
}

export_module!(TokenAuth);
