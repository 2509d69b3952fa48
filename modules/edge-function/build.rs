//! The built-in config: `config.json` beside this crate, or the file named by
//! `EDGE_FUNCTION_CONFIG_FILE` when the component is built for a deployment.

fn main() {
    println!("cargo:rerun-if-env-changed=EDGE_FUNCTION_CONFIG_FILE");
    let path = match std::env::var("EDGE_FUNCTION_CONFIG_FILE") {
        Ok(path) => std::path::PathBuf::from(path),
        Err(_) => std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config.json"),
    };
    let path = path
        .canonicalize()
        .unwrap_or_else(|e| panic!("edge function config {}: {e}", path.display()));
    println!("cargo:rerun-if-changed={}", path.display());
    println!(
        "cargo:rustc-env=EDGE_FUNCTION_CONFIG_PATH={}",
        path.display()
    );
}
