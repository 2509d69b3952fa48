//! Keyed GCRA rate limiters (`governor`) that modules call through the `rate-limit`
//! import: the module picks the key (an IP, a token subject, a path) and the policy; the
//! node decides.
//!
//! Memory is bounded per policy: keys live in a sharded LRU of `max_keys` entries, so a
//! flood of distinct keys evicts the keys idle longest (which start over with a full
//! burst) instead of growing the node.

use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::nanos::Nanos;
use governor::state::StateStore;
use governor::{Quota, RateLimiter};
use lru::LruCache;
use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A key longer than this is refused: it would be a way to spend the node's memory.
pub const MAX_KEY_BYTES: usize = 512;
const SHARDS: usize = 16;

#[derive(Clone, Debug, PartialEq)]
pub struct PolicyConfig {
    pub name: String,
    /// One request conforms every `period`.
    pub period: Duration,
    pub burst: u32,
    pub max_keys: usize,
}

/// One check's answer, with the numbers the IETF `RateLimit` header fields report.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub struct Verdict {
    pub allowed: bool,
    /// The policy's burst.
    pub limit: u32,
    /// Requests the key could still make at once.
    pub remaining: u32,
    /// Time for a spent burst to refill entirely.
    pub window: Duration,
    /// Time until the key has its whole burst again.
    pub reset: Duration,
    /// When denied, time until a request conforms; zero when allowed.
    pub retry_after: Duration,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RateLimitError {
    #[error("no rate-limit policy named `{0}`")]
    UnknownPolicy(String),
    #[error("rate-limit key is {0} bytes, the limit is {MAX_KEY_BYTES}")]
    KeyTooLong(usize),
}

/// Every policy of the node, by name.
#[derive(Default)]
pub struct RateLimits {
    policies: HashMap<String, Policy>,
}

struct Policy {
    limiter: RateLimiter<String, SharedStore, DefaultClock, StateInformationMiddleware>,
    burst: u32,
    period: Duration,
    max_keys: usize,
    store: Arc<BoundedStore>,
    clock: DefaultClock,
}

impl RateLimits {
    pub fn new(configs: &[PolicyConfig]) -> Self {
        let policies = configs
            .iter()
            .map(|c| {
                let quota = Quota::with_period(c.period)
                    .unwrap_or(Quota::per_second(nonzero(1)))
                    .allow_burst(nonzero(c.burst));
                let clock = DefaultClock::default();
                let store = Arc::new(BoundedStore::new(c.max_keys));
                let limiter: RateLimiter<String, SharedStore, DefaultClock> =
                    RateLimiter::new(quota, SharedStore(store.clone()), clock.clone());
                let limiter = limiter.with_middleware::<StateInformationMiddleware>();
                (
                    c.name.clone(),
                    Policy {
                        limiter,
                        burst: quota.burst_size().get(),
                        period: quota.replenish_interval(),
                        max_keys: c.max_keys,
                        store,
                        clock,
                    },
                )
            })
            .collect();
        RateLimits { policies }
    }

    /// Counts one request for `key` under `policy`.
    pub fn check(&self, policy: &str, key: &str) -> Result<Verdict, RateLimitError> {
        let p = self
            .policies
            .get(policy)
            .ok_or_else(|| RateLimitError::UnknownPolicy(policy.to_owned()))?;
        if key.len() > MAX_KEY_BYTES {
            return Err(RateLimitError::KeyTooLong(key.len()));
        }
        let window = p.period * p.burst;
        Ok(match p.limiter.check_key(&key.to_owned()) {
            Ok(snapshot) => {
                let remaining = snapshot.remaining_burst_capacity().min(p.burst);
                Verdict {
                    allowed: true,
                    limit: p.burst,
                    remaining,
                    window,
                    reset: p.period * (p.burst - remaining),
                    retry_after: Duration::ZERO,
                }
            }
            Err(not_until) => {
                let retry_after = not_until.wait_time_from(p.clock.now());
                Verdict {
                    allowed: false,
                    limit: p.burst,
                    remaining: 0,
                    window,
                    // One request conforms after `retry_after`; the rest of the burst
                    // one period each after it.
                    reset: retry_after + p.period * p.burst.saturating_sub(1),
                    retry_after,
                }
            }
        })
    }

    /// (policy, keys held, bound) for every policy.
    pub fn sizes(&self) -> Vec<(&str, usize, usize)> {
        self.policies
            .iter()
            .map(|(name, p)| (name.as_str(), p.store.len(), p.max_keys))
            .collect()
    }

    /// Keys held by a policy (for tests and metrics).
    pub fn keys(&self, policy: &str) -> usize {
        self.policies.get(policy).map_or(0, |p| p.store.len())
    }
}

fn nonzero(n: u32) -> std::num::NonZeroU32 {
    std::num::NonZeroU32::new(n.max(1)).unwrap_or(std::num::NonZeroU32::MIN)
}

/// governor's state for each key, in a sharded LRU bounded to `max_keys` in all.
/// Written here because governor's own keyed store (a DashMap) only shrinks when asked.
pub struct BoundedStore {
    shards: Vec<Mutex<LruCache<String, Nanos>>>,
    hasher: RandomState,
}

impl BoundedStore {
    /// The shards' capacities add up to exactly `max_keys`.
    fn new(max_keys: usize) -> Self {
        let max_keys = max_keys.max(1);
        let shards = SHARDS.min(max_keys);
        let (base, extra) = (max_keys / shards, max_keys % shards);
        BoundedStore {
            shards: (0..shards)
                .map(|i| {
                    let cap = base + usize::from(i < extra);
                    Mutex::new(LruCache::new(
                        NonZeroUsize::new(cap).unwrap_or(NonZeroUsize::MIN),
                    ))
                })
                .collect(),
            hasher: RandomState::new(),
        }
    }

    fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().map_or(0, |l| l.len()))
            .sum()
    }
}

/// The limiter's handle on a store the policy also reads (for its size).
pub struct SharedStore(Arc<BoundedStore>);

impl StateStore for SharedStore {
    type Key = String;

    fn measure_and_replace<T, F, E>(&self, key: &String, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        let store = &self.0;
        let shard = &store.shards[store.hasher.hash_one(key) as usize % store.shards.len()];
        // A poisoned shard only means a panic elsewhere mid-update of plain numbers; the
        // state is still usable.
        let mut lru = shard.lock().unwrap_or_else(|p| p.into_inner());
        let previous = lru.get(key).copied();
        let (outcome, next) = f(previous)?;
        match lru.get_mut(key) {
            Some(slot) => *slot = next,
            None => {
                lru.put(key.clone(), next);
            }
        }
        Ok(outcome)
    }
}

/// `"100/s"`, `"6000/m"`, `"50000/h"` → one request per period.
pub fn parse_rate(text: &str) -> Result<(u32, Duration), String> {
    let (count, unit) = text
        .split_once('/')
        .ok_or_else(|| format!("`{text}` is not a rate like \"100/s\""))?;
    let count: u32 = count
        .trim()
        .parse()
        .ok()
        .filter(|&n| n > 0)
        .ok_or_else(|| format!("`{text}`: the count must be a positive integer"))?;
    let window = match unit.trim() {
        "s" | "sec" | "second" => Duration::from_secs(1),
        "m" | "min" | "minute" => Duration::from_secs(60),
        "h" | "hour" => Duration::from_secs(3600),
        other => return Err(format!("`{text}`: unknown unit `{other}` (use s, m or h)")),
    };
    Ok((count, window / count))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(burst: u32, max_keys: usize) -> RateLimits {
        RateLimits::new(&[PolicyConfig {
            name: "p".into(),
            period: Duration::from_secs(60),
            burst,
            max_keys,
        }])
    }

    #[test]
    fn burst_then_deny_with_retry_after() {
        let l = limits(3, 100);
        for remaining in [2, 1, 0] {
            let v = l.check("p", "1.2.3.4").unwrap();
            assert!(v.allowed, "{v:?}");
            assert_eq!((v.limit, v.remaining), (3, remaining), "{v:?}");
            assert_eq!(v.window, Duration::from_secs(180));
            assert_eq!(v.retry_after, Duration::ZERO);
        }
        let v = l.check("p", "1.2.3.4").unwrap();
        assert!(!v.allowed);
        assert!(
            v.retry_after > Duration::from_secs(50) && v.retry_after <= Duration::from_secs(60),
            "{v:?}"
        );
        assert!(v.reset > Duration::from_secs(170), "{v:?}");
        // Another key has its own budget.
        assert!(l.check("p", "5.6.7.8").unwrap().allowed);
    }

    #[test]
    fn keys_are_bounded() {
        let l = limits(1, 64);
        for i in 0..10_000 {
            l.check("p", &format!("k{i}")).unwrap();
        }
        assert!(l.keys("p") <= 64, "{}", l.keys("p"));
        for bound in [1, 7, 200, 1001] {
            let l = limits(1, bound);
            for i in 0..5_000 {
                l.check("p", &format!("k{i}")).unwrap();
            }
            assert!(l.keys("p") <= bound, "{} > {bound}", l.keys("p"));
        }
    }

    /// A million random client IPs: the store never holds more than its bound, and the
    /// keys it evicted start over with a full burst.
    #[test]
    fn a_million_ips_stay_within_the_bound() {
        let l = limits(2, 10_000);
        let mut x: u32 = 0x9e37_79b9;
        for _ in 0..1_000_000 {
            // xorshift: distinct-enough addresses without a dependency.
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            let ip = std::net::Ipv4Addr::from(x).to_string();
            assert!(l.check("p", &ip).unwrap().allowed);
        }
        assert!(l.keys("p") <= 10_000, "{}", l.keys("p"));
    }

    #[test]
    fn bad_policy_and_key() {
        let l = limits(1, 10);
        assert_eq!(
            l.check("nope", "k"),
            Err(RateLimitError::UnknownPolicy("nope".into()))
        );
        assert_eq!(
            l.check("p", &"x".repeat(600)),
            Err(RateLimitError::KeyTooLong(600))
        );
    }

    #[test]
    fn rates_parse() {
        assert_eq!(
            parse_rate("100/s").unwrap(),
            (100, Duration::from_millis(10))
        );
        assert_eq!(parse_rate("60/m").unwrap(), (60, Duration::from_secs(1)));
        assert!(parse_rate("0/s").is_err());
        assert!(parse_rate("5/d").is_err());
        assert!(parse_rate("fast").is_err());
    }
}
