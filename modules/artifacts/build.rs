//! Builds the module crates with a nested `cargo build`, so that the node can embed the
//! standard modules and `cargo test` at the root needs no separate step. The nested build
//! has its own target folder (`target/wasm-modules`): it must not wait on the lock of the
//! build that runs this script.
//!
//! The node's modules are built for `wasm32-unknown-unknown` and made into components
//! here (`wit-component`): they then import nothing but the `edge:module` interfaces,
//! which the host calls without a fiber and instantiates as one core instance, the
//! cheapest fresh instance per request (docs/benchmarks.md). The same crates also build
//! for `wasm32-wasip2` as module authors do; the test module is built that way too, so
//! the tests cover components that import WASI. The edge function is a `wasi:http`
//! component, built for `wasm32-wasip2`.
use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The target of the node's own module builds.
const LEAN: &str = "wasm32-unknown-unknown";
/// The target module authors build for, and the edge function's.
const WASIP2: &str = "wasm32-wasip2";
const PROFILE: &str = "wasm-module";

fn main() {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let workspace = manifest_dir.join("../..");
    let out_dir = PathBuf::from(env::var("OUT_DIR").unwrap());
    // OUT_DIR is <target>/<profile>/build/<pkg>-<hash>/out: share one nested target folder
    // between debug and release builds.
    let target_root = out_dir
        .ancestors()
        .nth(4)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| out_dir.clone());
    let nested_target = target_root.join("wasm-modules");

    for dir in [
        "wit",
        "modules/sdk",
        "modules/headers",
        "modules/token-auth",
        "modules/rate-limit",
        "modules/manifest-rewrite",
        "modules/waf",
        "modules/edge-function",
        "vendor/libinjectionrs",
        "modules/testing",
    ] {
        println!("cargo:rerun-if-changed={}", workspace.join(dir).display());
    }
    // The lock file pins the modules' dependencies; the workspace manifest holds the
    // `wasm-module` profile they are built with.
    for file in ["Cargo.lock", "Cargo.toml"] {
        println!("cargo:rerun-if-changed={}", workspace.join(file).display());
    }

    let lean = nested_target.join(LEAN).join(PROFILE);
    let wasip2 = nested_target.join(WASIP2).join(PROFILE);
    cargo_build(
        &workspace,
        &nested_target,
        LEAN,
        &[
            "-p",
            "edge-module-headers",
            "-p",
            "edge-module-token-auth",
            "-p",
            "edge-module-rate-limit",
            "-p",
            "edge-module-manifest-rewrite",
            "-p",
            "edge-module-waf",
            "-p",
            "edge-test-module",
        ],
    );
    for (crate_file, name) in [
        ("edge_module_headers", "headers"),
        ("edge_module_token_auth", "token-auth"),
        ("edge_module_rate_limit", "rate-limit"),
        ("edge_module_manifest_rewrite", "manifest-rewrite"),
        ("edge_module_waf", "waf"),
    ] {
        componentize(
            &lean.join(format!("{crate_file}.wasm")),
            &out_dir.join(format!("{name}.wasm")),
        );
    }
    componentize(
        &lean.join("edge_test_module.wasm"),
        &out_dir.join("test_module.wasm"),
    );
    cargo_build(
        &workspace,
        &nested_target,
        LEAN,
        &["-p", "edge-test-module", "--features", "v2"],
    );
    componentize(
        &lean.join("edge_test_module.wasm"),
        &out_dir.join("test_module_v2.wasm"),
    );
    // As a module author builds it: a component that imports WASI.
    cargo_build(
        &workspace,
        &nested_target,
        WASIP2,
        &["-p", "edge-test-module"],
    );
    copy(
        &wasip2.join("edge_test_module.wasm"),
        &out_dir.join("test_module_wasip2.wasm"),
    );
    // Its own build: the module crates it embeds are built without their edge:module
    // exports, which one build with the standard modules would unify away.
    cargo_build(&workspace, &nested_target, WASIP2, &["-p", "edge-function"]);
    copy(
        &wasip2.join("edge_function.wasm"),
        &out_dir.join("edge_function.wasm"),
    );
}

/// A core module built by wit-bindgen carries its WIT world in a custom section: this
/// makes the component that exports and imports it.
fn componentize(core: &Path, to: &Path) {
    let bytes = std::fs::read(core).unwrap_or_else(|e| panic!("read {}: {e}", core.display()));
    let component = wit_component::ComponentEncoder::default()
        .module(&bytes)
        .and_then(|encoder| encoder.validate(true).encode())
        .unwrap_or_else(|e| panic!("make a component of {}: {e:#}", core.display()));
    std::fs::write(to, component).unwrap_or_else(|e| panic!("write {}: {e}", to.display()));
}

fn cargo_build(workspace: &Path, target_dir: &Path, target: &str, packages: &[&str]) {
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(workspace)
        .args(["build", "--target", target, "--profile", PROFILE])
        .args(packages)
        .env("CARGO_TARGET_DIR", target_dir)
        // Flags and wrappers meant for the host build (clippy, coverage) must not leak
        // into the Wasm build.
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTFLAGS")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .env_remove("CARGO_BUILD_RUSTFLAGS")
        // SIMD in the modules' byte scans (memchr over a manifest's lines); every x86-64
        // and AArch64 host wasmtime runs on has the instructions it compiles them to.
        .env(
            "CARGO_TARGET_WASM32_WASIP2_RUSTFLAGS",
            "-C target-feature=+simd128",
        )
        .env(
            "CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUSTFLAGS",
            "-C target-feature=+simd128",
        );
    let status = cmd.status().expect("run cargo for the Wasm modules");
    if !status.success() {
        panic!(
            "building the Wasm modules failed: see the compiler's messages above \
             (the target must be installed: `rustup target add {target}`)"
        );
    }
}

fn copy(from: &Path, to: &Path) {
    std::fs::copy(from, to)
        .unwrap_or_else(|e| panic!("copy {} to {}: {e}", from.display(), to.display()));
}
