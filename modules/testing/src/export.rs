use crate::{append_tag, hex, parse_config, Config, Mode};
use edge_module_sdk::rate_limit::{self, Decision};
use edge_module_sdk::{
    clock, crypto, export_module, log, metrics, Action, Module, Protocol, Request, Response,
};

struct TestModule;

/// Requests this instance has seen: a fresh instance per request always reports 1.
static REQUESTS_SEEN: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

fn config() -> Config {
    let mut config = parse_config(&edge_module_sdk::bindings::edge::module::config::get())
        .unwrap_or_else(|e| panic!("{e}"));
    if cfg!(feature = "v2") {
        config.mode = config.v2_mode.unwrap_or(config.mode);
    }
    config
}

const BUILD: &str = if cfg!(feature = "v2") { "2" } else { "1" };

impl Module for TestModule {
    const NAME: &'static str = "test-module";
    const VERSION: &'static str = if cfg!(feature = "v2") {
        "2.0.0"
    } else {
        "1.0.0"
    };
    const BODY_TYPES: &'static [&'static str] = &["text/plain"];
    const MAX_BODY_BYTES: u32 = 64 * 1024;

    fn on_request(req: &Request) -> Action {
        let config = config();
        match config.mode {
            Mode::Noop | Mode::Upper | Mode::TrapResponse | Mode::Context | Mode::Status => {
                Action::Continue
            }
            Mode::TagThenTrap => {
                let value = append_tag(req.header("x-chain"), "half-done");
                req.set_header("x-chain", &value).expect("valid header");
                req.set_path_and_query("/echo?rewritten=1")
                    .expect("valid path");
                panic!("test-module trapped after changing the request")
            }
            Mode::Deny => Action::respond(403, "denied by test-module\n"),
            Mode::Tag => {
                REQUESTS_SEEN.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let tag = config.tag.as_deref().unwrap_or("tag");
                let value = append_tag(req.header("x-chain"), tag);
                req.set_header("x-chain", &value).expect("valid header");
                // What the module before this one left in the request's context.
                let before = req.get_context("last-tag").unwrap_or_default();
                req.set_context(&format!("seen-before-{tag}"), &before);
                req.set_context("last-tag", tag);
                log::info(&format!("tagged {tag} after [{before}]"));
                metrics::counter_add("tagged", 1);
                metrics::histogram_observe("chain_bytes", value.len() as f64);
                Action::Continue
            }
            Mode::Done => {
                let value = append_tag(req.header("x-chain"), "done");
                req.set_header("x-chain", &value).expect("valid header");
                Action::Done
            }
            Mode::Trap => panic!("test-module trapped on purpose"),
            Mode::Loop => {
                let mut n: u64 = 0;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            Mode::SleepLoop => loop {
                std::thread::sleep(std::time::Duration::from_millis(100));
            },
            Mode::SleepOnce => {
                std::thread::sleep(std::time::Duration::from_secs(3600));
                Action::Continue
            }
            Mode::MemoryBomb => {
                // Reserve without touching: memory.grow until the host says no.
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(Vec::with_capacity(1 << 20));
                    std::hint::black_box(&hoard);
                }
            }
            Mode::RateLimit => {
                let policy = config.policy.as_deref().unwrap_or("default");
                match rate_limit::check(policy, &req.client_addr()) {
                    Ok(Decision { allowed: true, .. }) => Action::Continue,
                    Ok(Decision { retry_after_ms, .. }) => {
                        let secs = retry_after_ms.div_ceil(1000).max(1).to_string();
                        Action::respond_with(429, &[("retry-after", &secs)], b"slow down\n")
                    }
                    Err(e) => Action::respond(500, &e),
                }
            }
            Mode::BadAnswer => Action::respond_with(200, &[("content-length", "1000")], b"short"),
            Mode::Hmac => {
                let path = req.path();
                let tag = crypto::hmac_sign(crypto::HmacAlgorithm::Sha256, b"key", path.as_bytes());
                let ok = crypto::hmac_verify(
                    crypto::HmacAlgorithm::Sha256,
                    b"key",
                    path.as_bytes(),
                    &tag,
                );
                let digest = hex(&crypto::sha256(path.as_bytes()));
                let mut flipped = tag.clone();
                flipped[0] ^= 1;
                let same = crypto::constant_time_eq(&tag, &tag);
                let differs = crypto::constant_time_eq(&tag, &flipped);
                let ct_eq = format!("{same},{differs}");
                Action::respond_with(
                    200,
                    &[
                        ("x-verified", if ok { "yes" } else { "no" }),
                        ("x-sha256", &digest),
                        ("x-ct-eq", &ct_eq),
                    ],
                    hex(&tag).as_bytes(),
                )
            }
        }
    }

    fn on_response(req: &Request, resp: &Response) {
        let config = config();
        match config.mode {
            Mode::Tag => {
                let tag = config.tag.as_deref().unwrap_or("tag");
                let value = append_tag(resp.header("x-chain-response"), tag);
                resp.set_header("x-chain-response", &value)
                    .expect("valid header");
                resp.set_header("x-module-version", BUILD)
                    .expect("valid header");
                let seen = req
                    .get_context(&format!("seen-before-{tag}"))
                    .unwrap_or_default();
                resp.append_header("x-context-seen", &format!("{tag}<{seen}"))
                    .expect("valid header");
                resp.set_header("x-module-clock", &clock::now_ms().to_string())
                    .expect("valid header");
                resp.set_header("x-module-url", &req.url())
                    .expect("valid header");
                let seen = REQUESTS_SEEN.load(std::sync::atomic::Ordering::Relaxed);
                resp.append_header("x-instance-requests", &seen.to_string())
                    .expect("valid header");
                let protocol = match req.protocol() {
                    Protocol::Http1 => "http1",
                    Protocol::Http2 => "http2",
                    Protocol::Http3 => "http3",
                };
                let what = format!(
                    "{} {protocol} {} {}",
                    req.method(),
                    req.route(),
                    req.client_addr()
                );
                resp.set_header("x-module-request", &what)
                    .expect("valid header");
            }
            Mode::TrapResponse => panic!("test-module trapped in the response hook"),
            Mode::Status => resp.set_status(203).expect("a valid status"),
            Mode::Done => {
                let value = append_tag(resp.header("x-chain-response"), "done");
                resp.set_header("x-chain-response", &value)
                    .expect("valid header");
            }
            Mode::Context => {
                for key in ["token.format", "token.subject", "token.query"] {
                    if let Some(value) = req.get_context(key) {
                        let name = format!("x-{}", key.replace('.', "-"));
                        resp.set_header(&name, &value).expect("valid header");
                    }
                }
            }
            _ => {}
        }
    }

    fn transform_body(
        _req: &Request,
        _resp: &Response,
        body: Vec<u8>,
    ) -> Result<Option<Vec<u8>>, String> {
        if config().mode != Mode::Upper {
            return Ok(None);
        }
        Ok(Some(body.to_ascii_uppercase()))
    }
}

export_module!(TestModule);
