//! The config loader on any text: it must answer with a config or an error that names a
//! place (`file:line: key: reason`), never panic. Seeds: the shipped configs and the
//! README's examples (see `fuzz/run`).

#![no_main]

use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

fuzz_target!(|data: &[u8]| {
    // Certificates, modules and other files named by a config resolve against this
    // folder; it holds nothing, so they are reported missing rather than read.
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    let dir = DIR.get_or_init(|| tempfile::tempdir().expect("temp dir"));
    let text = String::from_utf8_lossy(data);
    if let Err(e) = edge_runtime::config::Config::from_toml(&text, dir.path()) {
        assert!(!e.is_empty(), "an empty error for {text:?}");
    }
});
