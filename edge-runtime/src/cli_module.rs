//! `edge module …`: the security team's workflow around the deploy API. Key generation
//! and signing are local; deploy, rollback and list talk to a node's admin listener.

use crate::cli_admin::{admin_call, AdminArgs};
use anyhow::Context;
use bytes::Bytes;
use clap::Subcommand;
use edge_runtime::wasm::signing;
use http::Method;
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
    /// Start a signed component as a canary for a share of requests; the node rolls it
    /// back by itself when its error (or block) ratio over the window passes the maximum.
    Canary {
        #[command(flatten)]
        admin: AdminArgs,
        #[arg(long)]
        name: String,
        /// The signature file (default `<FILE>.sig`).
        #[arg(long)]
        signature: Option<PathBuf>,
        /// Share of requests for the canary, 1–99.
        #[arg(long)]
        percent: u32,
        /// The sliding window the ratios are measured over, in seconds.
        #[arg(long, default_value_t = 60)]
        window_s: u64,
        /// Roll back when module errors / requests in the window exceed this.
        #[arg(long, default_value_t = 0.01)]
        max_error_ratio: f64,
        /// Roll back when requests the module answered with 4xx/5xx exceed this share.
        #[arg(long)]
        max_block_ratio: Option<f64>,
        /// Judge only over at least this many canary requests.
        #[arg(long, default_value_t = 20)]
        min_requests: u64,
        file: PathBuf,
    },
    /// Make the running canary the current version.
    Promote {
        #[command(flatten)]
        admin: AdminArgs,
        #[arg(long)]
        name: String,
    },
    /// Stop the running canary.
    AbortCanary {
        #[command(flatten)]
        admin: AdminArgs,
        #[arg(long)]
        name: String,
    },
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
            let (bytes, sig) = signed_file(&file, signature)?;
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
        ModuleCommand::Canary {
            admin,
            name,
            signature,
            percent,
            window_s,
            max_error_ratio,
            max_block_ratio,
            min_requests,
            file,
        } => {
            let (bytes, sig) = signed_file(&file, signature)?;
            let mut path = format!(
                "/modules/{name}/canary?percent={percent}&window_s={window_s}&max_error_ratio={max_error_ratio}&min_requests={min_requests}"
            );
            if let Some(max) = max_block_ratio {
                path.push_str(&format!("&max_block_ratio={max}"));
            }
            let body = admin_call(
                &admin,
                Method::PUT,
                &path,
                Some(("edge-signature", sig.trim().to_owned())),
                Bytes::from(bytes),
            )?;
            println!("{body}");
            Ok(())
        }
        ModuleCommand::Promote { admin, name } => {
            let path = format!("/modules/{name}/canary/promote");
            println!(
                "{}",
                admin_call(&admin, Method::POST, &path, None, Bytes::new())?
            );
            Ok(())
        }
        ModuleCommand::AbortCanary { admin, name } => {
            let path = format!("/modules/{name}/canary");
            println!(
                "{}",
                admin_call(&admin, Method::DELETE, &path, None, Bytes::new())?
            );
            Ok(())
        }
    }
}

/// A component (or data file) and its signature (default `<FILE>.sig`).
fn signed_file(file: &Path, signature: Option<PathBuf>) -> anyhow::Result<(Vec<u8>, String)> {
    let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let sig_file = signature.unwrap_or_else(|| sig_path(file));
    let sig = std::fs::read_to_string(&sig_file).with_context(|| {
        format!(
            "reading {} (sign first: `edge module sign`)",
            sig_file.display()
        )
    })?;
    Ok((bytes, sig))
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
