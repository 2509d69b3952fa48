//! Active health checks: a periodic `GET` of a configured path on every upstream.

use super::HttpOrigin;
use http::{Request, Uri};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

#[derive(Clone, Debug)]
pub struct HealthCheck {
    pub path: String,
    pub interval: Duration,
    pub timeout: Duration,
    /// Consecutive failures before an upstream is marked down.
    pub unhealthy_after: u32,
    /// Consecutive successes before it is marked up again.
    pub healthy_after: u32,
}

/// One task per origin; it ends when the origin is dropped (config reload or shutdown).
pub(super) fn spawn(origin: &Arc<HttpOrigin>, check: HealthCheck) {
    let weak: Weak<HttpOrigin> = Arc::downgrade(origin);
    tokio::spawn(async move {
        let count = match weak.upgrade() {
            Some(o) => o.upstreams.len(),
            None => return,
        };
        let mut streaks = vec![0i64; count];
        let mut ticker = tokio::time::interval(check.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            let Some(origin) = weak.upgrade() else { return };
            for (i, streak) in streaks.iter_mut().enumerate() {
                let ok = probe(&origin, i, &check).await;
                // Positive streak counts successes, negative counts failures.
                *streak = match (ok, *streak) {
                    (true, s) if s > 0 => s + 1,
                    (true, _) => 1,
                    (false, s) if s < 0 => s - 1,
                    (false, _) => -1,
                };
                let upstream = &origin.upstreams[i];
                let was = upstream.healthy.load(Ordering::Relaxed);
                if !was && *streak >= i64::from(check.healthy_after) {
                    upstream.healthy.store(true, Ordering::Relaxed);
                    tracing::info!(origin = %origin.config.name, upstream = %upstream.label, "upstream healthy");
                } else if was && -*streak >= i64::from(check.unhealthy_after) {
                    upstream.healthy.store(false, Ordering::Relaxed);
                    tracing::warn!(origin = %origin.config.name, upstream = %upstream.label, "upstream unhealthy");
                }
            }
        }
    });
}

async fn probe(origin: &HttpOrigin, index: usize, check: &HealthCheck) -> bool {
    let upstream = &origin.upstreams[index];
    let base_path = upstream.base.path().trim_end_matches('/');
    let Ok(uri) = Uri::builder()
        .scheme(upstream.base.scheme_str().unwrap_or("http"))
        .authority(upstream.base.authority().map(|a| a.as_str()).unwrap_or(""))
        .path_and_query(format!("{base_path}{}", check.path))
        .build()
    else {
        return false;
    };
    let mut request = Request::new(crate::body::empty());
    *request.uri_mut() = uri;
    request
        .headers_mut()
        .insert(http::header::HOST, upstream.authority.clone());
    matches!(
        tokio::time::timeout(check.timeout, origin.client.request(request)).await,
        Ok(Ok(response)) if response.status().is_success() || response.status().is_redirection()
    )
}
