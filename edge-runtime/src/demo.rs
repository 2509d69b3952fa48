//! `edge demo`: the node and the sample media origin in one process, with a self-signed
//! certificate, so a viewer (or a test) can play HLS over h1, h2 and h3 at once. The
//! route runs the standard modules embedded in `edge`.

use crate::config::Config;
use crate::node::{self, NodeError, Ready};
use origin::server::SampleOrigin;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("preparing {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Tls(#[from] crate::listener::tls::TlsError),
    #[error("demo config: {0}")]
    Config(String),
    #[error(transparent)]
    Node(#[from] NodeError),
}

/// Runs the demo until SIGTERM/SIGINT. `dir` receives the certificate and the media
/// library. Prints one JSON line on stdout when ready.
/// With `crs`, a folder holding an OWASP CRS (`rules/` and `crs-setup.conf` or
/// `crs-setup.conf.example`), the `waf` module runs that rule set, blocking at paranoia
/// level 1, on both routes.
pub async fn run(addr: SocketAddr, dir: &Path, crs: Option<&Path>) -> Result<(), DemoError> {
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| DemoError::Io { path, source }
    };
    let media = dir.join("media");
    if !media.join("vod/sample/master.m3u8").exists() {
        origin::sample::generate_library(&media).map_err(io(&media))?;
    }
    // The same library under `/secure/`, which only signed URLs open.
    let secure = media.join("secure");
    if !secure.join("vod/sample/master.m3u8").exists() {
        origin::sample::generate_library(&secure).map_err(io(&secure))?;
    }
    // A fresh signing key each run: the ready line carries a URL signed with it.
    let mut secret = [0u8; 32];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut secret)
        .map_err(|_| DemoError::Config("no system randomness for the demo's token key".into()))?;
    let secret_hex = edge_module_token_auth::encode_hex(&secret);
    let ip = addr.ip().to_string();
    let (cert, key) = crate::listener::tls::generate_self_signed(dir, &["localhost", &ip])?;

    let origin_listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(io(dir))?;
    let origin_addr = origin_listener.local_addr().map_err(io(dir))?;
    let origin = SampleOrigin::new(media, "sample".into());
    tokio::spawn(origin.serve(origin_listener));

    let waf = match crs {
        Some(crs) => waf_module(crs)?,
        None => String::new(),
    };
    let mut modules = vec!["headers", "token-auth", "rate-limit", "manifest-rewrite"];
    if crs.is_some() {
        modules.push("waf");
    }
    let toml = format!(
        r#"
[server]
listen = "{addr}"
drain_timeout_ms = 5000

[[tls.certs]]
cert = "{cert}"
key = "{key}"

[origins.sample]
primary = "http://{origin_addr}"
health_path = "/health"

[rate_limits.viewer]
rate = "100/s"
burst = 200

# Signed URLs only (the node's own format; `edge token sign` mints them), carried into
# every playlist and segment URI, and a session cookie; each viewer address limited to
# 100 requests/s.
[[routes]]
host = "*"
prefix = "/secure/"
origin = "sample"
name = "secure"
[[routes.modules]]
module = "token-auth"
[routes.modules.config.native]
keys = {{ demo = "{secret_hex}" }}
signing_key = "demo"
[routes.modules.config.session]
path = "/secure/"
same_site = "None"
{waf}
[[routes.modules]]
module = "rate-limit"
[routes.modules.config]
headers = true
rules = [{{ policy = "viewer", key = ["ip"] }}]
# The validated token on every playlist and segment URI, for players that keep no cookies.
[[routes.modules]]
module = "manifest-rewrite"
[[routes.modules]]
module = "headers"
[routes.modules.config]
response_set = {{ "access-control-allow-origin" = "*", "x-content-type-options" = "nosniff" }}

[[routes]]
host = "*"
prefix = "/"
origin = "sample"
name = "media"
{waf}
# Browser players fetch from another origin: the standard headers module adds CORS and
# hardening fields to every response.
[[routes.modules]]
module = "headers"
[routes.modules.config]
response_set = {{ "access-control-allow-origin" = "*", "timing-allow-origin" = "*", "x-content-type-options" = "nosniff" }}
"#,
        cert = cert.display(),
        key = key.display(),
    );
    let config = Config::from_toml(&toml, dir).map_err(DemoError::Config)?;
    let print_ready = |ready: &Ready| {
        let base = &ready.https_url;
        let secure_url = crate::token::sign(
            crate::token::TokenFormat::Native,
            &crate::token::Key::Secret(secret.to_vec()),
            &crate::token::SignSpec {
                key_id: Some("demo".into()),
                url: Some(format!("{base}/secure/vod/sample/master.m3u8")),
                prefix: Some("/secure/".into()),
                expires: unix_now() + 24 * 3600,
                ..Default::default()
            },
        )
        .unwrap_or_default();
        let line = serde_json::json!({
            "event": "ready",
            "https_url": base,
            "h3_udp_port": ready.h3_udp_port,
            "ca_pem": cert,
            "manifest_url": format!("{base}/vod/sample/master.m3u8"),
            "dash_url": format!("{base}/vod/sample/manifest.mpd"),
            "live_url": format!("{base}/live/demo/index.m3u8"),
            "origin_url": format!("http://{origin_addr}"),
            "secure_url": secure_url,
            "modules": modules,
            "try": format!("curl --cacert {} {base}/vod/sample/master.m3u8", cert.display()),
        });
        println!("{line}");
    };
    node::run(config, None, print_ready, node::shutdown_signal()).await?;
    Ok(())
}

/// The `waf` module's route entry for a CRS folder.
fn waf_module(crs: &Path) -> Result<String, DemoError> {
    let rules = crs.join("rules");
    let setup = ["crs-setup.conf", "crs-setup.conf.example"]
        .iter()
        .map(|name| crs.join(name))
        .find(|p| p.is_file());
    let (true, Some(setup)) = (rules.is_dir(), setup) else {
        return Err(DemoError::Config(format!(
            "--crs {}: expected a CRS folder with rules/ and crs-setup.conf (or crs-setup.conf.example)",
            crs.display()
        )));
    };
    let abs = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_owned());
    Ok(format!(
        "# OWASP CRS from --crs, blocking at paranoia level 1.\n\
         [[routes.modules]]\nmodule = \"waf\"\n[routes.modules.config]\n\
         setup_file = \"{}\"\nrules_dir = \"{}\"\nmode = \"blocking\"\nparanoia = 1\n",
        abs(&setup).display(),
        abs(&rules).display()
    ))
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
