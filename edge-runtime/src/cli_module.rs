//! `edge module …`: the security team's workflow around the deploy API. Key generation
//! and signing are local; deploy, rollback and list talk to a node's admin listener.

use anyhow::{bail, Context};
use bytes::Bytes;
use clap::Subcommand;
use edge_runtime::wasm::signing;
use http::{Method, Request};
use http_body_util::{BodyExt, Full};
use std::path::{Path, PathBuf};

#[derive(Subcommand)]
pub enum ModuleCommand {
    /// Make an Ed25519 key pair: writes the private key (PKCS#8 PEM) and prints the public
    /// key for the node's `wasm.trusted_keys`.
    Keygen {
        #[arg(long)]
        out: PathBuf,
    },
    /// Sign a component: writes `<FILE>.sig` (base64) unless `--out` says otherwise.
    Sign {
        #[arg(long)]
        key: PathBuf,
        #[arg(long)]
        out: Option<PathBuf>,
        file: PathBuf,
    },
    /// Deploy a signed component to a node: it verifies, compiles, and swaps it in.
    Deploy {
        #[command(flatten)]
        admin: AdminArgs,
        /// The module name routes use.
        #[arg(long)]
        name: String,
        /// The signature file (default `<FILE>.sig`).
        #[arg(long)]
        signature: Option<PathBuf>,
        /// FILE is the module's data (a JSON object, e.g. a WAF rule set from `edge waf
        /// bundle`), not a component: it is merged under every route's config for the module.
        #[arg(long)]
        data: bool,
        file: PathBuf,
    },
    /// Make the previous version (or `--to ID`) current again.
    Rollback {
        #[command(flatten)]
        admin: AdminArgs,
        #[arg(long)]
        name: String,
        #[arg(long)]
        to: Option<u64>,
    },
    /// List a node's modules and their versions (JSON).
    List {
        #[command(flatten)]
        admin: AdminArgs,
    },
}

#[derive(clap::Args)]
pub struct AdminArgs {
    /// The node's admin listener.
    #[arg(long, default_value = "http://127.0.0.1:9901")]
    admin: String,
    /// The admin bearer token (or the EDGE_ADMIN_TOKEN environment variable).
    #[arg(long)]
    token: Option<String>,
}

pub fn run(command: ModuleCommand) -> anyhow::Result<()> {
    match command {
        ModuleCommand::Keygen { out } => {
            let (private, public) = signing::generate()?;
            write_private(&out, &private)?;
            println!("{public}");
            eprintln!(
                "wrote {}; add the public key above to wasm.trusted_keys",
                out.display()
            );
            Ok(())
        }
        ModuleCommand::Sign { key, out, file } => {
            let key_pem =
                std::fs::read(&key).with_context(|| format!("reading {}", key.display()))?;
            let bytes =
                std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            let signature =
                signing::sign(&key_pem, &bytes).with_context(|| key.display().to_string())?;
            let out = out.unwrap_or_else(|| sig_path(&file));
            std::fs::write(&out, format!("{signature}\n"))
                .with_context(|| format!("writing {}", out.display()))?;
            println!("{signature}");
            eprintln!("wrote {}", out.display());
            Ok(())
        }
        ModuleCommand::Deploy {
            admin,
            name,
            signature,
            data,
            file,
        } => {
            let bytes =
                std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            let sig_file = signature.unwrap_or_else(|| sig_path(&file));
            let sig = std::fs::read_to_string(&sig_file).with_context(|| {
                format!(
                    "reading {} (sign first: `edge module sign`)",
                    sig_file.display()
                )
            })?;
            let body = admin_call(
                &admin,
                Method::PUT,
                &if data {
                    format!("/modules/{name}/data")
                } else {
                    format!("/modules/{name}")
                },
                Some(("edge-signature", sig.trim().to_owned())),
                Bytes::from(bytes),
            )?;
            println!("{body}");
            Ok(())
        }
        ModuleCommand::Rollback { admin, name, to } => {
            let path = match to {
                Some(id) => format!("/modules/{name}/rollback?to={id}"),
                None => format!("/modules/{name}/rollback"),
            };
            println!(
                "{}",
                admin_call(&admin, Method::POST, &path, None, Bytes::new())?
            );
            Ok(())
        }
        ModuleCommand::List { admin } => {
            println!(
                "{}",
                admin_call(&admin, Method::GET, "/modules", None, Bytes::new())?
            );
            Ok(())
        }
    }
}

fn sig_path(file: &Path) -> PathBuf {
    let mut name = file.as_os_str().to_owned();
    name.push(".sig");
    PathBuf::from(name)
}

fn write_private(path: &Path, pem: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut f = options
        .open(path)
        .with_context(|| format!("creating {} (it must not exist yet)", path.display()))?;
    f.write_all(pem.as_bytes())?;
    Ok(())
}

/// One request to the admin listener (plain HTTP/1.1); the response body, or an error
/// carrying the node's message.
fn admin_call(
    admin: &AdminArgs,
    method: Method,
    path: &str,
    header: Option<(&str, String)>,
    body: Bytes,
) -> anyhow::Result<String> {
    let token = match &admin.token {
        Some(t) => t.clone(),
        None => {
            std::env::var("EDGE_ADMIN_TOKEN").context("give --token or set EDGE_ADMIN_TOKEN")?
        }
    };
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
