//! `origin`: the sample media origin. Serves a generated HLS + DASH VOD library and a live
//! HLS stream, and prints one JSON line when ready.

use anyhow::Context;
use clap::Parser;
use std::path::PathBuf;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(about = "Sample media origin: HLS + DASH VOD library and a live HLS stream")]
struct Args {
    /// Address to listen on (port 0 picks a free port; the ready line says which).
    #[arg(long, default_value = "127.0.0.1:9000")]
    listen: String,
    /// Library directory; the sample library is generated into it if it has none.
    #[arg(long, default_value = "media")]
    dir: PathBuf,
    /// Name sent in `X-Origin-Name` on every response.
    #[arg(long, default_value = "origin")]
    name: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    if !args.dir.join("vod/sample/master.m3u8").exists() {
        origin::sample::generate_library(&args.dir)
            .with_context(|| format!("generating the sample library in {}", args.dir.display()))?;
    }
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    let addr = listener.local_addr()?;
    println!(
        "{}",
        serde_json::json!({"event": "ready", "url": format!("http://{addr}"), "dir": args.dir})
    );
    let server = origin::server::SampleOrigin::new(args.dir, args.name);
    tokio::select! {
        result = server.serve(listener) => result.context("accepting connections")?,
        _ = tokio::signal::ctrl_c() => {}
    }
    Ok(())
}
