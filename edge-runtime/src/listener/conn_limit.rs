//! Caps open connections per client IP address, across TCP and QUIC.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

#[derive(Clone)]
pub struct ConnLimiter {
    max: u32,
    open: Arc<Mutex<HashMap<IpAddr, u32>>>,
}

/// Held for the life of a connection; releases its slot when dropped.
pub struct ConnPermit {
    ip: IpAddr,
    open: Arc<Mutex<HashMap<IpAddr, u32>>>,
}

impl ConnLimiter {
    pub fn new(max: u32) -> Self {
        ConnLimiter {
            max,
            open: Arc::default(),
        }
    }

    /// `None` when `ip` already has the maximum number of connections open.
    pub fn try_acquire(&self, ip: IpAddr) -> Option<ConnPermit> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let count = open.entry(ip).or_insert(0);
        if *count >= self.max {
            return None;
        }
        *count += 1;
        Some(ConnPermit {
            ip,
            open: self.open.clone(),
        })
    }
}

impl Drop for ConnPermit {
    fn drop(&mut self) {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = open.get_mut(&self.ip) {
            *count -= 1;
            // Forget idle addresses so the map stays as small as the set of live clients.
            if *count == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_per_address_and_releases_on_drop() {
        let limiter = ConnLimiter::new(2);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let p1 = limiter.try_acquire(a).unwrap();
        let _p2 = limiter.try_acquire(a).unwrap();
        assert!(limiter.try_acquire(a).is_none());
        assert!(
            limiter.try_acquire(b).is_some(),
            "other addresses are not affected"
        );
        drop(p1);
        assert!(limiter.try_acquire(a).is_some());
    }

    #[test]
    fn map_forgets_closed_addresses() {
        let limiter = ConnLimiter::new(1);
        drop(limiter.try_acquire("192.0.2.9".parse().unwrap()));
        assert!(limiter.open.lock().unwrap().is_empty());
    }
}
