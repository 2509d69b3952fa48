//! `edge admin …`: an ops team's calls to a node's admin listener — probes, status,
//! reload, purge, metrics — for scripts and for the container's health check.

use anyhow::{bail, Context};
use bytes::Bytes;
use clap::Subcommand;
use http::{Method, Request};
use http_body_util::{BodyExt, Full};

#[derive(Subcommand)]
pub enum AdminCommand {
    /// Exit 0 if the node is ready (`GET /ready` answers 200), 1 otherwise; no token
    /// needed. The container's health check.
    Health {
        /// The node's admin listener.
        #[arg(long, default_value = "http://127.0.0.1:9901")]
        admin: String,
    },
    /// The node's identity, modules, canaries and last minutes of traffic (JSON).
    Status {
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Re-read the config file (and region overlay) and apply it without dropping
    /// connections; settings that need a restart are refused by name.
    Reload {
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Remove cached responses: exactly one of --url, --prefix, --surrogate-key.
    Purge {
        #[command(flatten)]
        admin: AdminArgs,
        #[arg(long)]
        url: Option<String>,
        #[arg(long)]
        prefix: Option<String>,
        #[arg(long)]
        surrogate_key: Option<String>,
    },
    /// The metrics, as Prometheus scrapes them.
    Metrics {
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Each origin's upstreams and their health (JSON).
    Origins {
        #[command(flatten)]
        admin: AdminArgs,
    },
}

#[derive(clap::Args)]
pub struct AdminArgs {
    /// The node's admin listener.
    #[arg(long, default_value = "http://127.0.0.1:9901")]
    pub admin: String,
    /// The admin bearer token (or the EDGE_ADMIN_TOKEN environment variable).
    #[arg(long)]
    pub token: Option<String>,
}

impl AdminArgs {
    fn token(&self) -> anyhow::Result<String> {
        match &self.token {
            Some(t) => Ok(t.clone()),
            None => {
                std::env::var("EDGE_ADMIN_TOKEN").context("give --token or set EDGE_ADMIN_TOKEN")
            }
        }
    }
}

pub fn run(command: AdminCommand) -> anyhow::Result<std::process::ExitCode> {
    let (admin, method, path, body) = match command {
        AdminCommand::Health { admin } => {
            let args = AdminArgs {
                admin,
                token: Some(String::new()),
            };
            return Ok(
                match admin_call(&args, Method::GET, "/ready", None, Bytes::new()) {
                    Ok(_) => std::process::ExitCode::SUCCESS,
                    Err(e) => {
                        eprintln!("not ready: {e:#}");
                        std::process::ExitCode::FAILURE
                    }
                },
            );
        }
        AdminCommand::Status { admin } => (admin, Method::GET, "/status.json", Bytes::new()),
        AdminCommand::Reload { admin } => (admin, Method::POST, "/reload", Bytes::new()),
        AdminCommand::Metrics { admin } => (admin, Method::GET, "/metrics", Bytes::new()),
        AdminCommand::Origins { admin } => (admin, Method::GET, "/origins", Bytes::new()),
        AdminCommand::Purge {
            admin,
            url,
            prefix,
            surrogate_key,
        } => {
            let request = match (url, prefix, surrogate_key) {
                (Some(url), None, None) => serde_json::json!({ "url": url }),
                (None, Some(prefix), None) => serde_json::json!({ "prefix": prefix }),
                (None, None, Some(key)) => serde_json::json!({ "surrogate_key": key }),
                _ => bail!("give exactly one of --url, --prefix, --surrogate-key"),
            };
            (
                admin,
                Method::POST,
                "/purge",
                Bytes::from(request.to_string()),
            )
        }
    };
    println!("{}", admin_call(&admin, method, path, None, body)?);
    Ok(std::process::ExitCode::SUCCESS)
}

/// One request to the admin listener (plain HTTP/1.1); the response body, or an error
/// carrying the node's message.
pub fn admin_call(
    admin: &AdminArgs,
    method: Method,
    path: &str,
    header: Option<(&str, String)>,
    body: Bytes,
) -> anyhow::Result<String> {
    let token = admin.token()?;
    let base: http::Uri = admin.admin.parse().context("--admin must be a URL")?;
    let authority = base
        .authority()
        .context("--admin must be a URL like http://127.0.0.1:9901")?
        .clone();
    if base.scheme_str() != Some("http") {
        bail!("--admin must be an http:// URL (the admin listener is plain HTTP)");
    }
    let mut builder = Request::builder()
        .method(method)
        .uri(path)
        .header(http::header::HOST, authority.as_str())
        .header(http::header::AUTHORIZATION, format!("Bearer {token}"));
    if let Some((name, value)) = header {
        builder = builder.header(name, value);
    }
    let request = builder.body(Full::new(body))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let addr = format!(
            "{}:{}",
            authority.host(),
            authority.port_u16().unwrap_or(80)
        );
        let stream = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            tokio::net::TcpStream::connect(&addr),
        )
        .await
        .context("connecting to the admin listener timed out")?
        .with_context(|| format!("connecting to {addr}"))?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
        tokio::spawn(conn);
        let response = tokio::time::timeout(
            std::time::Duration::from_secs(120),
            sender.send_request(request),
        )
        .await
        .context("the admin listener did not answer in 120 s")??;
        let status = response.status();
        let text = String::from_utf8_lossy(&response.into_body().collect().await?.to_bytes())
            .trim()
            .to_owned();
        if !status.is_success() {
            bail!("{status}: {text}");
        }
        Ok(text)
    })
}
