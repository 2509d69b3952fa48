//! `edge`: argument parsing only; the node lives in the library.

use anyhow::Context;
use clap::{Parser, Subcommand};
use edge_runtime::config::Config;
use edge_runtime::reload::ConfigSource;
use edge_runtime::{demo, node, telemetry};
use std::net::SocketAddr;
use std::path::PathBuf;

mod cli_admin;
mod cli_manifest;
mod cli_module;
mod cli_token;
mod cli_waf;

// glibc's allocator showed up as a tenth of the node's CPU per proxied request; mimalloc's
// thread-local free lists make the many small per-request allocations cheap.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "edge",
    version,
    about = "Edge node: HTTP/1.1, HTTP/2 and HTTP/3 in front of media origins"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve with a config file; prints one JSON line on stdout when listening.
    Serve {
        #[arg(long, default_value = "edge.toml")]
        config: PathBuf,
        /// Merge `regions/<REGION>.toml` (next to the config file) over the config.
        #[arg(long)]
        region: Option<String>,
    },
    /// Validate a config (and its region overlay) without serving.
    CheckConfig {
        #[arg(long, default_value = "edge.toml")]
        config: PathBuf,
        #[arg(long)]
        region: Option<String>,
    },
    /// Call a node's admin listener: health, status, reload, purge, metrics.
    #[command(subcommand)]
    Admin(cli_admin::AdminCommand),
    /// Sign, deploy, roll back and list Wasm modules; canary rollouts.
    #[command(subcommand)]
    Module(cli_module::ModuleCommand),
    /// Mint and check signed URLs, cookies and JWTs in every format token-auth accepts.
    #[command(subcommand)]
    Token(Box<cli_token::TokenCommand>),
    /// Rewrite HLS and DASH manifests as the manifest-rewrite module does, offline.
    #[command(subcommand)]
    Manifest(cli_manifest::ManifestCommand),
    /// Test and lint WAF rule sets (ModSecurity SecLang, the OWASP CRS dialect).
    #[command(subcommand)]
    Waf(cli_waf::WafCommand),
    /// Run the node and the sample media origin together with a self-signed certificate.
    Demo {
        /// Address for TCP (h1/h2) and UDP (h3), same port.
        #[arg(long, default_value = "127.0.0.1:8443")]
        addr: SocketAddr,
        /// Where to write the certificate and the sample library.
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Put the WAF with this OWASP CRS folder (rules/ and crs-setup.conf) on the
        /// sample routes, blocking at paranoia level 1.
        #[arg(long)]
        crs: Option<PathBuf>,
    },
}

fn main() -> anyhow::Result<std::process::ExitCode> {
    let cli = Cli::parse();
    match cli.command {
        Command::Token(command) => Ok(cli_token::run(*command)),
        Command::Admin(command) => cli_admin::run(command),
        Command::Manifest(command) => Ok(cli_manifest::run(command)),
        Command::Waf(command) => Ok(cli_waf::run(command)),
        Command::CheckConfig { config, region } => {
            let loaded = Config::load(&config, region.as_deref())?;
            // Modules are part of the config: compile them and check their world too.
            runtime(1)?.block_on(node::load_modules(&loaded))?;
            println!(
                "{}: ok ({} routes, {} origins, {} certificates, {} modules)",
                config.display(),
                loaded.routes.len(),
                loaded.origins.len(),
                loaded.tls.len(),
                loaded.wasm.modules.len()
            );
            Ok(std::process::ExitCode::SUCCESS)
        }
        Command::Module(command) => {
            cli_module::run(command).map(|()| std::process::ExitCode::SUCCESS)
        }
        Command::Serve { config, region } => {
            let source = ConfigSource {
                path: config.clone(),
                region: region.clone(),
            };
            let config = Config::load(&config, region.as_deref())?;
            telemetry::init(&config.logging.level, Some(&config.server.identity));
            runtime(config.server.workers)?.block_on(node::run(
                config,
                Some(source),
                |ready| println!("{}", ready_line(ready)),
                node::shutdown_signal(),
            ))?;
            Ok(std::process::ExitCode::SUCCESS)
        }
        Command::Demo { addr, dir, crs } => {
            telemetry::init("info", None);
            let dir = dir.unwrap_or_else(|| std::env::temp_dir().join("edge-demo"));
            runtime(0)?.block_on(demo::run(addr, &dir, crs.as_deref()))?;
            Ok(std::process::ExitCode::SUCCESS)
        }
    }
}

fn ready_line(ready: &node::Ready) -> serde_json::Value {
    let mut line = serde_json::to_value(ready).unwrap_or_default();
    line["event"] = "ready".into();
    line
}

/// One worker means the single-threaded scheduler: no work-stealing queues or cross-thread
/// wake-ups, the cheapest way to run one core's worth of connections (like one nginx
/// worker). More workers use the multi-threaded scheduler.
fn runtime(workers: usize) -> anyhow::Result<tokio::runtime::Runtime> {
    let mut builder = if workers == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        // Modules without WASI imports run on the worker's own stack (no fiber): room for
        // their 512 KiB of Wasm stack on top of the request path's own frames.
        builder.thread_stack_size(4 << 20);
        if workers > 1 {
            builder.worker_threads(workers);
        }
        builder
    };
    builder
        .enable_all()
        .build()
        .context("starting the Tokio runtime")
}
