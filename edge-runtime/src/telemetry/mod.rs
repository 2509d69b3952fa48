//! Logs: JSON lines on stderr through `tracing`, with one access-log line per request
//! (target `access`).

pub mod access_log;
pub mod metrics;

use tracing_subscriber::EnvFilter;

/// Installs the JSON log subscriber. `level` is a tracing filter such as `info`;
/// `RUST_LOG` overrides it.
pub fn init(level: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    let _ = tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .with_span_list(false)
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
