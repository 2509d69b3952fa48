//! The node: builds the pipeline and listeners from a validated config, reports where it
//! listens, and drains on shutdown.

use crate::admin::Admin;
use crate::cache::Cache;
use crate::config::Config;
use crate::config::ModuleSource;
use crate::listener::{self, tls, Shared};
use crate::pipeline::Pipeline;
use crate::ratelimit::RateLimits;
use crate::reload::{ConfigSource, Reloader};
use crate::telemetry::metrics::NodeMetrics;
use crate::telemetry::status::Status;
use crate::wasm::engine::EngineSettings;
use crate::wasm::metrics::ModuleMetrics;
use crate::wasm::registry::HostSettings;
use crate::wasm::state::Services;
use crate::wasm::{ModuleHost, Source, WasmError};
use http::HeaderValue;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::{TcpListener, TcpSocket};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    #[error(transparent)]
    Pipeline(#[from] crate::pipeline::PipelineError),
    #[error(transparent)]
    Wasm(#[from] crate::wasm::WasmError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// Where the node listens, once it does.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Ready {
    pub https_url: String,
    pub tcp_addr: SocketAddr,
    /// The UDP port for HTTP/3, when enabled (the same number as the TCP port).
    pub h3_udp_port: Option<u16>,
    pub plain_url: Option<String>,
    pub admin_url: Option<String>,
}

/// Runs the node until `shutdown` completes, then drains: stop accepting, GOAWAY on h2 and
/// h3, let in-flight requests finish for up to `server.drain_timeout`.
///
/// `source` is where `config` came from, for reloads (`POST /reload`, SIGHUP); `None`
/// (the demo) refuses them.
pub async fn run(
    config: Config,
    source: Option<ConfigSource>,
    on_ready: impl FnOnce(&Ready),
    shutdown: impl Future<Output = ()>,
) -> Result<(), NodeError> {
    let server_tls = tls::server_tls(&config.tls)?;
    let cache = Cache::new(
        config.cache.max_bytes,
        config.cache.shards,
        config.cache.max_object_bytes,
    );
    let metrics = NodeMetrics::new(config.server.identity.clone());
    let modules = load_modules(&config).await?;
    let pipeline = Arc::new(Pipeline::new(
        &config,
        cache.clone(),
        modules.clone(),
        metrics.clone(),
    )?);
    let (tcp, udp) = bind_tcp_and_udp(config.server.listen, config.server.http3)?;
    let tcp_addr = tcp.local_addr().map_err(|source| NodeError::Bind {
        addr: config.server.listen,
        source,
    })?;
    let plain = match config.server.plain_listen {
        Some(addr) => Some(bind_tcp(addr)?),
        None => None,
    };
    let alt_svc = udp.as_ref().and_then(|_| {
        HeaderValue::from_str(&format!(
            "h3=\":{}\"; ma={}",
            tcp_addr.port(),
            config.server.alt_svc_max_age
        ))
        .ok()
    });
    let shared = Arc::new(Shared::new(
        pipeline,
        config.limits.clone(),
        alt_svc,
        metrics.clone(),
    ));

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut tasks = JoinSet::new();
    let acceptor = TlsAcceptor::from(server_tls.tcp.clone());
    tasks.spawn(listener::tcp::serve(
        tcp,
        Some(acceptor),
        shared.clone(),
        stop_rx.clone(),
    ));
    let plain_url = match plain {
        Some(listener) => {
            let url = listener.local_addr().ok().map(|a| format!("http://{a}"));
            tasks.spawn(listener::tcp::serve(
                listener,
                None,
                shared.clone(),
                stop_rx.clone(),
            ));
            url
        }
        None => None,
    };
    let h3_udp_port = match udp {
        Some(socket) => {
            let endpoint =
                listener::quic::endpoint(socket, server_tls.quic.clone(), &config.limits).map_err(
                    |source| NodeError::Bind {
                        addr: tcp_addr,
                        source,
                    },
                )?;
            tasks.spawn(listener::quic::serve(
                endpoint,
                shared.clone(),
                stop_rx.clone(),
            ));
            Some(tcp_addr.port())
        }
        None => None,
    };

    let reloader = Reloader::new(
        source,
        config.clone(),
        shared.clone(),
        cache.clone(),
        modules.clone(),
    );
    let status = Status::new(metrics.clone(), cache.clone(), modules.clone());
    let (admin_stop_tx, admin_stop_rx) = tokio::sync::watch::channel(false);
    let mut admin_task = None;
    let admin_url = match &config.admin {
        Some(admin) => {
            let listener = bind_tcp(admin.listen)?;
            let url = listener.local_addr().ok().map(|a| format!("http://{a}"));
            let exclude_query = config
                .routes
                .iter()
                .filter_map(|r| r.cache.as_ref())
                .flat_map(|c| c.key.exclude_query.iter().cloned())
                .collect();
            let admin = Admin::new(
                admin.token.clone(),
                cache.clone(),
                shared.clone(),
                reloader.clone(),
                status.clone(),
                exclude_query,
            );
            // The admin listener outlives the drain: readiness answers 503 meanwhile.
            admin_task = Some(tokio::spawn(admin.serve(listener, admin_stop_rx)));
            url
        }
        None => None,
    };

    on_ready(&Ready {
        https_url: format!("https://{tcp_addr}"),
        tcp_addr,
        h3_udp_port,
        plain_url,
        admin_url,
    });
    let background = tokio::spawn(background(reloader.clone(), status, modules.clone()));
    shutdown.await;
    background.abort();
    shared
        .draining
        .store(true, std::sync::atomic::Ordering::Relaxed);
    tracing::info!(
        timeout_ms = config.server.drain_timeout.as_millis() as u64,
        "draining"
    );
    let _ = stop_tx.send(true);
    let drained = tokio::time::timeout(config.server.drain_timeout, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    match drained {
        Ok(()) => tracing::info!("drained"),
        Err(_) => tracing::warn!("drain timeout passed; closing the remaining connections"),
    }
    let _ = admin_stop_tx.send(true);
    if let Some(task) = admin_task {
        let _ = task.await;
    }
    Ok(())
}

/// The node's periodic work: canaries judged once a second, and config reloads on SIGHUP.
async fn background(
    reloader: Arc<Reloader>,
    status: Arc<Status>,
    modules: Option<Arc<ModuleHost>>,
) {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hangup = signal(SignalKind::hangup()).ok();
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                if let Some(host) = &modules {
                    host.check_canaries();
                }
                status.sample();
            }
            Some(()) = async { match hangup.as_mut() { Some(h) => h.recv().await, None => std::future::pending().await } } => {
                // The outcome is logged by the reloader.
                let _ = reloader.reload().await;
            }
        }
    }
}

/// Binds TCP and UDP on the same port. With port 0 the TCP port is picked first and the
/// UDP bind retried with a new pick if that UDP port happens to be taken.
fn bind_tcp_and_udp(
    addr: SocketAddr,
    with_udp: bool,
) -> Result<(TcpListener, Option<std::net::UdpSocket>), NodeError> {
    let attempts = if addr.port() == 0 { 16 } else { 1 };
    let mut last_error = None;
    for _ in 0..attempts {
        let tcp = bind_tcp(addr)?;
        if !with_udp {
            return Ok((tcp, None));
        }
        let port = tcp.local_addr().map(|a| a.port()).unwrap_or(0);
        match std::net::UdpSocket::bind(SocketAddr::new(addr.ip(), port)) {
            Ok(udp) => return Ok((tcp, Some(udp))),
            Err(e) => last_error = Some(e),
        }
    }
    Err(NodeError::Bind {
        addr,
        source: last_error.unwrap_or_else(|| std::io::Error::other("no UDP port")),
    })
}

fn bind_tcp(addr: SocketAddr) -> Result<TcpListener, NodeError> {
    let bind = || {
        let socket = if addr.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        socket.set_reuseaddr(true)?;
        socket.bind(addr)?;
        // A deep backlog absorbs connection bursts (a player fleet reconnecting at once).
        socket.listen(4096)
    };
    bind().map_err(|source| NodeError::Bind { addr, source })
}

/// Completes on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

/// Starts the module host and loads every module the config names, compiling off the
/// runtime's threads (or loading compiled code from the disk cache). No host when no
/// module is configured and nothing can be deployed.
pub async fn load_modules(config: &Config) -> Result<Option<Arc<ModuleHost>>, NodeError> {
    let wasm = &config.wasm;
    if wasm.modules.is_empty() && wasm.trusted_keys.is_empty() && config.handlers.is_empty() {
        return Ok(None);
    }
    let wasm = wasm.clone();
    let handlers = config.handlers.clone();
    let policies = config.rate_limits.clone();
    let host = tokio::task::spawn_blocking(move || -> Result<ModuleHost, WasmError> {
        let services = Arc::new(Services {
            rate_limits: Arc::new(RateLimits::new(&policies)),
            metrics: Arc::new(ModuleMetrics::default()),
            verified: Default::default(),
        });
        let host = ModuleHost::new(
            HostSettings {
                engine: EngineSettings {
                    max_instances: wasm.max_instances,
                    max_memory_bytes: wasm
                        .modules
                        .iter()
                        .map(|m| m.limits.memory_bytes)
                        .chain(handlers.iter().map(|h| h.settings.memory_bytes))
                        .chain([wasm.default_limits.memory_bytes])
                        .max()
                        .unwrap_or(wasm.default_limits.memory_bytes),
                },
                cache_dir: Some(wasm.cache_dir.clone()),
                trusted_keys: wasm.trusted_keys.clone(),
                max_module_bytes: wasm.max_module_bytes,
                default_limits: wasm.default_limits,
            },
            services,
        )?;
        for m in &wasm.modules {
            let (bytes, source) = match &m.source {
                ModuleSource::Standard(bytes) => (bytes.to_vec(), Source::Standard),
                ModuleSource::File(path) => {
                    let bytes = std::fs::read(path).map_err(|source| WasmError::Read {
                        module: m.name.clone(),
                        path: path.display().to_string(),
                        source,
                    })?;
                    (bytes, Source::File(path.clone()))
                }
            };
            let slot = host.load(&m.name, &bytes, source, m.limits)?;
            let v = slot.current();
            tracing::info!(module = %m.name, version = &*v.version, compiled = ?v.compiled, "module loaded");
        }
        for h in &handlers {
            load_handler(&host, h)?;
        }
        Ok(host)
    })
    .await
    .map_err(|e| WasmError::Engine(format!("module loading task failed: {e}")))??;
    Ok(Some(Arc::new(host)))
}

/// Reads and installs one handler component. Blocking.
pub fn load_handler(host: &ModuleHost, h: &crate::config::HandlerConfig) -> Result<(), WasmError> {
    let bytes = std::fs::read(&h.path).map_err(|source| WasmError::Read {
        module: h.name.clone(),
        path: h.path.display().to_string(),
        source,
    })?;
    let handler = host.load_handler(&h.name, &bytes, h.settings.clone())?;
    tracing::info!(handler = %h.name, sha256 = %handler.sha256, "handler loaded");
    Ok(())
}
