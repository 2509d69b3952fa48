//! `edge manifest rewrite FILE`: the manifest-rewrite module's code run on a file, for
//! debugging a route's rewrite without a running node. Prints the manifest (rewritten, or
//! unchanged when nothing applies); exits 1 with the parse error when it cannot be
//! rewritten, 2 when the arguments or config cannot be used.

use clap::{Subcommand, ValueEnum};
use edge_module_manifest_rewrite::{
    self as manifest, Config, Filter, Kind, RewriteRule, Steering, Viewer,
};
use edge_runtime::config::Config as NodeConfig;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Subcommand)]
pub enum ManifestCommand {
    /// Rewrite an HLS playlist or DASH MPD with the operations given as flags or a
    /// route's `manifest-rewrite` config, and print it.
    Rewrite(RewriteArgs),
}

#[derive(clap::Args)]
pub struct RewriteArgs {
    /// The manifest (`-` for stdin).
    file: PathBuf,
    /// The viewer's token or other query parameters (`k=v&…`), appended to every URI the
    /// player fetches.
    #[arg(long)]
    token_query: Option<String>,
    /// Make relative URIs absolute under this URL (resolved from the manifest's path).
    #[arg(long, conflicts_with = "config")]
    base_url: Option<String>,
    /// Drop variants above this bandwidth (bits/s).
    #[arg(long, conflicts_with = "config")]
    max_bandwidth: Option<u64>,
    /// Drop variants above this vertical resolution.
    #[arg(long, conflicts_with = "config")]
    max_height: Option<u32>,
    /// Drop variants using this codec (prefix, e.g. `hvc1`); repeatable.
    #[arg(long = "deny-codec", conflicts_with = "config")]
    deny_codecs: Vec<String>,
    /// Rewrite absolute URLs starting with FROM to start with TO; repeatable.
    #[arg(long, num_args = 2, value_names = ["FROM", "TO"], conflicts_with = "config")]
    rewrite: Vec<String>,
    /// Keep only the last SECONDS of a live media playlist.
    #[arg(long, value_name = "SECONDS", conflicts_with = "config")]
    live_window: Option<f64>,
    /// Insert or replace EXT-X-CONTENT-STEERING with this server URI.
    #[arg(long, conflicts_with = "config")]
    steering_uri: Option<String>,
    /// The steering pathway ID (with --steering-uri).
    #[arg(long, requires = "steering_uri")]
    pathway: Option<String>,
    /// Take the operations from this node config's route instead of the flags (which
    /// it refuses beside it; `--token-query`, `--url` and `--device` describe the viewer).
    #[arg(long, requires = "route")]
    config: Option<PathBuf>,
    /// The route (by name) whose `manifest-rewrite` config applies.
    #[arg(long, requires = "config")]
    route: Option<String>,
    /// The URL the viewer asked for (`https://host/path?query`): its host, path (for
    /// --base-url) and query (forwarded parameters, device class).
    #[arg(long)]
    url: Option<String>,
    /// The viewer's device class header value (the route's `device_header`).
    #[arg(long)]
    device: Option<String>,
    /// hls | dash (default: by extension, then by content).
    #[arg(long)]
    kind: Option<KindArg>,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum KindArg {
    Hls,
    Dash,
}

pub fn run(command: ManifestCommand) -> ExitCode {
    let ManifestCommand::Rewrite(args) = command;
    match rewrite(&args) {
        Ok(code) => code,
        Err(message) => {
            eprintln!("edge manifest rewrite: {message}");
            ExitCode::from(2)
        }
    }
}

fn config_from_flags(args: &RewriteArgs) -> Result<Config, String> {
    let rewrite = args
        .rewrite
        .chunks(2)
        .map(|pair| RewriteRule {
            from: pair[0].clone(),
            to: pair[1].clone(),
        })
        .collect();
    let config = Config {
        propagate_token: true,
        base_url: args.base_url.clone(),
        rewrite,
        filter: Filter {
            max_bandwidth: args.max_bandwidth,
            max_height: args.max_height,
            deny_codecs: args.deny_codecs.clone(),
        },
        live_window_s: args.live_window,
        steering: args.steering_uri.clone().map(|server_uri| Steering {
            server_uri,
            pathway: args.pathway.clone(),
        }),
        max_bytes: manifest::DEFAULT_MAX_BYTES,
        ..Config::default()
    };
    config.check().map_err(|e| e.to_string())?;
    Ok(config)
}

fn config_from_route(path: &std::path::Path, route: &str) -> Result<Config, String> {
    let node = NodeConfig::load(path, None).map_err(|e| e.to_string())?;
    let found = node
        .routes
        .iter()
        .find(|r| r.name == route)
        .ok_or_else(|| {
            let names: Vec<&str> = node.routes.iter().map(|r| r.name.as_str()).collect();
            format!(
                "{}: no route named {route:?} (routes: {})",
                path.display(),
                names.join(", ")
            )
        })?;
    let module = found
        .modules
        .iter()
        .find(|m| m.module == "manifest-rewrite")
        .ok_or_else(|| format!("route {route:?} has no manifest-rewrite module"))?;
    manifest::parse_config(&module.config_json).map_err(|e| format!("route {route:?}: {e}"))
}

fn rewrite(args: &RewriteArgs) -> Result<ExitCode, String> {
    let config = match (&args.config, &args.route) {
        (Some(path), Some(route)) => config_from_route(path, route)?,
        _ => config_from_flags(args)?,
    };
    if let Some(q) = &args.token_query {
        manifest::valid_query(q).map_err(|e| format!("--token-query: {e}"))?;
    }
    let input = if args.file.as_os_str() == "-" {
        let mut buf = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut buf)
            .map_err(|e| format!("stdin: {e}"))?;
        buf
    } else {
        std::fs::read(&args.file).map_err(|e| format!("{}: {e}", args.file.display()))?
    };

    // The viewer's URL: host, path and query, as the module reads them from the request.
    let url = args.url.clone().unwrap_or_else(|| {
        let name = args
            .file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned());
        format!("/{}", name.unwrap_or_default())
    });
    let (host, rest) = match url.split_once("://") {
        Some((_, after)) => match after.find('/') {
            Some(i) => (Some(&after[..i]), &after[i..]),
            None => (Some(after), "/"),
        },
        None => (None, url.as_str()),
    };
    let host = host.map(|h| {
        h.rsplit('@')
            .next()
            .unwrap_or(h)
            .split(':')
            .next()
            .unwrap_or(h)
    });
    let (path, query) = match rest.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (rest, None),
    };
    let plan = config.plan(&Viewer {
        host,
        path,
        query,
        token_query: args.token_query.as_deref(),
        device_header: args.device.as_deref(),
    });
    let kind = match args.kind {
        Some(KindArg::Hls) => Kind::Hls,
        Some(KindArg::Dash) => Kind::Dash,
        None => Kind::detect(None, &args.file.to_string_lossy(), &input).ok_or_else(|| {
            format!(
                "{}: neither an HLS playlist nor a DASH MPD (use --kind)",
                args.file.display()
            )
        })?,
    };
    match manifest::rewrite(kind, &input, &plan, config.max_bytes) {
        Ok(out) => {
            let bytes = out.body.as_deref().unwrap_or(&input);
            std::io::stdout()
                .write_all(bytes)
                .map_err(|e| format!("stdout: {e}"))?;
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("{}: {e}", args.file.display());
            Ok(ExitCode::from(1))
        }
    }
}
