//! Any request through OWASP CRS v4 at paranoia level 4 (every rule runs): a verdict,
//! never a panic. The input is split into method, target, headers and body.

#![no_main]

use edge_module_waf::config::Config;
use edge_module_waf::{evaluate, Request, RuleSet};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

fn crs() -> &'static RuleSet {
    static SET: OnceLock<RuleSet> = OnceLock::new();
    SET.get_or_init(|| {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../modules/waf/crs");
        let mut rules = serde_json::Map::new();
        for e in std::fs::read_dir(dir.join("rules")).unwrap() {
            let p = e.unwrap().path();
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            rules.insert(name, std::fs::read_to_string(&p).unwrap().into());
        }
        let json = serde_json::json!({
            "setup": std::fs::read_to_string(dir.join("crs-setup.conf.example")).unwrap(),
            "rules": rules,
            "mode": "blocking",
            "paranoia": 4,
        });
        Config::parse(&json.to_string()).unwrap().compile().unwrap()
    })
}

fuzz_target!(|data: &[u8]| {
    // Fields separated by 0xff: method, target, then header lines, then the body.
    let mut parts = data.split(|&b| b == 0xff);
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    let method = parts.next().map(text).unwrap_or_default();
    let uri = parts.next().map(text).unwrap_or_default();
    let mut headers = Vec::new();
    let mut body = Vec::new();
    for (i, part) in parts.enumerate() {
        match part.iter().position(|&b| b == b':') {
            Some(at) if i < 16 => headers.push((text(&part[..at]), part[at + 1..].to_vec())),
            _ => body.extend_from_slice(part),
        }
    }
    let request = Request {
        method,
        uri,
        protocol: "HTTP/1.1".into(),
        headers,
        body,
        body_length: None,
        remote_addr: "192.0.2.1".into(),
        remote_port: 0,
        unique_id: "fuzz".into(),
        verified_args: Vec::new(),
    };
    let _ = evaluate(crs(), &request);
});
