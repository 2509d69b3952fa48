//! The HTTP/1.1 request path: any bytes from a viewer, through hyper's HTTP/1.1 server
//! (with the node's limits) into the node's real pipeline — routing, cache keys and
//! lookups, `Range`, conditionals, forwarding rules — in front of the sample origin,
//! running in-process. No input may panic, and the node never answers 500 (that is kept
//! for its own bugs; a bad request is a 4xx, an origin problem a 502/504).

#![no_main]

use edge_runtime::cache::Cache;
use edge_runtime::config::Config;
use edge_runtime::pipeline::{Conn, Pipeline};
use edge_runtime::telemetry::metrics::NodeMetrics;
use http_body_util::BodyExt;
use libfuzzer_sys::fuzz_target;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct World {
    rt: tokio::runtime::Runtime,
    pipeline: Arc<Pipeline>,
    _dir: tempfile::TempDir,
}

fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let dir = tempfile::tempdir().expect("temp dir");
        let pipeline = rt.block_on(async {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let origin = listener.local_addr().unwrap();
            let sample = origin::server::SampleOrigin::new(dir.path().into(), "fuzz".into());
            tokio::spawn(sample.serve(listener));
            let text = format!(
                "[server]\nlisten = \"127.0.0.1:0\"\n\n\
                 [cache]\nmax_bytes = 16777216\nmax_object_bytes = 1048576\n\n\
                 [origins.media]\nprimary = \"http://{origin}\"\nfirst_byte_timeout_ms = 500\ntotal_timeout_ms = 1000\n\n\
                 [[routes]]\nhost = \"uncached.example\"\norigin = \"media\"\n[routes.cache]\nenabled = false\n\n\
                 [[routes]]\nprefix = \"/\"\norigin = \"media\"\n"
            );
            let config = Config::from_toml(&text, dir.path()).expect("fuzz config");
            let cache = Cache::new(
                config.cache.max_bytes,
                config.cache.shards,
                config.cache.max_object_bytes,
            );
            let metrics = NodeMetrics::new(config.server.identity.clone());
            Arc::new(Pipeline::new(&config, cache, None, metrics).expect("pipeline"))
        });
        World {
            rt,
            pipeline,
            _dir: dir,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    // The sample origin can be asked to wait (`/delay/`, `delay_ms`, `chunk_ms`): a
    // fuzzer finds those fast and then spends its time sleeping. The timeouts above bound
    // the rest.
    if [&b"delay"[..], b"chunk_ms"]
        .iter()
        .any(|w| data.windows(w.len()).any(|d| d.eq_ignore_ascii_case(w)))
    {
        return;
    }
    let world = world();
    let pipeline = world.pipeline.clone();
    let answer = world.rt.block_on(async move {
        let (viewer, node) = tokio::io::duplex(64 * 1024);
        let conn = Arc::new(Conn::new("127.0.0.1:40000".parse().unwrap(), true));
        let service =
            hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                let (pipeline, conn) = (pipeline.clone(), conn.clone());
                async move {
                    let req = req.map(|b| {
                        b.map_err(|e| -> origin::BoxError { Box::new(e) })
                            .boxed_unsync()
                    });
                    Ok::<_, std::convert::Infallible>(pipeline.handle(req, &conn).await)
                }
            });
        let server = tokio::spawn(
            hyper::server::conn::http1::Builder::new()
                .max_buf_size(16 * 1024)
                .max_headers(100)
                .serve_connection(hyper_util::rt::TokioIo::new(node), service),
        );
        let (mut read, mut write) = tokio::io::split(viewer);
        let _ = write.write_all(data).await;
        let _ = write.shutdown().await;
        let mut answer = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), read.read_to_end(&mut answer)).await;
        server.abort();
        answer
    });
    for line in answer.split(|&b| b == b'\n') {
        if let Some(status) = line.strip_prefix(b"HTTP/1.1 ") {
            assert!(
                !status.starts_with(b"500"),
                "500 for {:?}",
                String::from_utf8_lossy(data)
            );
        }
    }
});
