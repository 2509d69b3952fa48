//! Logs: JSON lines on stderr through `tracing`, with one access-log line per request
//! (target `access`). Every line carries the node's region and id.

pub mod access_log;
pub mod metrics;
pub mod status;

use crate::config::Identity;
use std::io::Write;
use std::sync::Arc;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

/// Installs the JSON log subscriber. `level` is a tracing filter such as `info`;
/// `RUST_LOG` overrides it. With an identity, every line starts with
/// `{"region":…,"node_id":…,`.
pub fn init(level: &str, identity: Option<&Identity>) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    let writer = IdentityWriter {
        prefix: identity.map(|i| {
            let fields = serde_json::json!({"region": i.region, "node_id": i.node_id}).to_string();
            // `{"node_id":…,"region":…}` → `{"node_id":…,"region":…,`: the event's own
            // fields follow.
            Arc::from(format!("{},", &fields[..fields.len() - 1]).into_bytes())
        }),
    };
    let _ = tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .with_span_list(false)
        .with_env_filter(filter)
        .with_writer(writer)
        .try_init();
}

/// Puts the identity fields at the front of each JSON line. The JSON formatter has no way
/// to add constant fields to every event (spans would not reach spawned tasks), and it
/// writes each event as one buffer that starts with `{`, so the writer can.
struct IdentityWriter {
    prefix: Option<Arc<[u8]>>,
}

impl<'a> MakeWriter<'a> for IdentityWriter {
    type Writer = LineWriter;

    fn make_writer(&'a self) -> LineWriter {
        LineWriter {
            prefix: self.prefix.clone(),
        }
    }
}

struct LineWriter {
    prefix: Option<Arc<[u8]>>,
}

impl Write for LineWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut stderr = std::io::stderr().lock();
        match (&self.prefix, buf.split_first()) {
            (Some(prefix), Some((b'{', rest))) => {
                // One lock for both parts: lines of other threads cannot come between.
                stderr.write_all(prefix)?;
                stderr.write_all(rest)?;
                Ok(buf.len())
            }
            _ => stderr.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}
