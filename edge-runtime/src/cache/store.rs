//! The in-memory store: a sharded LRU (the `lru` crate) bounded in bytes. Entries hold
//! the response head and body as shared `Bytes`, so a hit is served without a copy.

use super::policy::CacheControl;
use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use lru::LruCache;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

/// One stored response (one variant of a URL).
#[derive(Debug)]
pub struct Entry {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// When the response was received (RFC 9111 `response_time`), on both clocks: the
    /// monotonic one to compute age, the wall clock for `Date`-relative rules.
    pub stored_at: Instant,
    pub stored_at_wall: SystemTime,
    /// `corrected_initial_age` (RFC 9111 §4.2.3).
    pub initial_age: Duration,
    pub lifetime: Duration,
    pub cc: CacheControl,
    /// The request's values for the fields named in `Vary`, aligned with `vary_names`.
    pub vary_names: Vec<String>,
    pub vary_values: Vec<Option<String>>,
    /// `Surrogate-Key` / `Cache-Tag` values, for purge by key.
    pub surrogate_keys: Vec<String>,
    /// Set once a background refresh (stale-while-revalidate) has been started.
    pub refreshing: AtomicBool,
}

impl Entry {
    /// RFC 9111 §4.2.3 `current_age`.
    pub fn age(&self, now: Instant) -> Duration {
        self.initial_age + now.saturating_duration_since(self.stored_at)
    }

    /// Bytes this entry accounts for: body, header fields, and a fixed overhead for the
    /// structures around them.
    pub fn size(&self) -> usize {
        const OVERHEAD: usize = 256;
        let headers: usize = self
            .headers
            .iter()
            .map(|(k, v)| k.as_str().len() + v.len() + 32)
            .sum();
        self.body.len() + headers + OVERHEAD
    }
}

/// All stored variants of one primary key (RFC 9111 §4.1).
#[derive(Default)]
struct Variants {
    entries: Vec<Arc<Entry>>,
    bytes: usize,
}

struct Shard {
    lru: LruCache<String, Variants>,
    bytes: usize,
}

#[derive(Default)]
pub struct StoreStats {
    pub evictions: AtomicU64,
}

pub struct Store {
    shards: Box<[Mutex<Shard>]>,
    shard_capacity: usize,
    hasher: std::collections::hash_map::RandomState,
    pub stats: StoreStats,
}

impl Store {
    /// `capacity` bytes split evenly over `shards` shards. An object larger than one shard
    /// is never stored (callers keep their maximum object size below
    /// [`Store::max_object_bytes`]).
    pub fn new(capacity: usize, shards: usize) -> Store {
        let shards = shards.max(1);
        Store {
            shards: (0..shards)
                .map(|_| {
                    Mutex::new(Shard {
                        lru: LruCache::unbounded(),
                        bytes: 0,
                    })
                })
                .collect(),
            shard_capacity: capacity / shards,
            hasher: Default::default(),
            stats: StoreStats::default(),
        }
    }

    pub fn max_object_bytes(&self) -> usize {
        self.shard_capacity
    }

    pub fn capacity(&self) -> usize {
        self.shard_capacity * self.shards.len()
    }

    /// Keys are sharded by their URL part only, so every key of one URL (key-header
    /// variants included) lives in one shard and a URL purge touches one shard.
    fn shard(&self, key: &str) -> &Mutex<Shard> {
        let url = super::key::url_part(key);
        &self.shards[(self.hasher.hash_one(url) as usize) % self.shards.len()]
    }

    /// The variant of `key` whose `Vary` values match `vary_of`, most recent first.
    /// `vary_of` computes the request's values for a list of field names.
    pub fn get(
        &self,
        key: &str,
        vary_of: impl Fn(&[String]) -> Vec<Option<String>>,
    ) -> Option<Arc<Entry>> {
        let mut shard = lock(self.shard(key));
        let variants = shard.lru.get(key)?;
        variants
            .entries
            .iter()
            .find(|e| e.vary_names.is_empty() || vary_of(&e.vary_names) == e.vary_values)
            .cloned()
    }

    /// Stores `entry` under `key`, replacing the variant with the same `Vary` values and
    /// evicting least recently used keys first, so the shard never exceeds its share.
    pub fn insert(&self, key: String, entry: Arc<Entry>) -> bool {
        let size = entry.size();
        if size > self.shard_capacity {
            return false;
        }
        let mut guard = lock(self.shard(&key));
        let shard = &mut *guard;
        let mut variants = shard.lru.pop(&key).unwrap_or_default();
        shard.bytes -= variants.bytes;
        variants
            .entries
            .retain(|e| e.vary_names != entry.vary_names || e.vary_values != entry.vary_values);
        variants.entries.insert(0, entry);
        variants.bytes = variants.entries.iter().map(|e| e.size()).sum();
        while shard.bytes + variants.bytes > self.shard_capacity {
            match shard.lru.pop_lru() {
                Some((_, evicted)) => {
                    shard.bytes -= evicted.bytes;
                    self.stats.evictions.fetch_add(1, Ordering::Relaxed);
                }
                None => {
                    // Only this key's own variants are left: drop its oldest ones.
                    if variants.entries.len() <= 1 {
                        return false;
                    }
                    variants.entries.pop();
                    variants.bytes = variants.entries.iter().map(|e| e.size()).sum();
                    self.stats.evictions.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        shard.bytes += variants.bytes;
        shard.lru.push(key, variants);
        true
    }

    /// Removes every key for which `matches(key, entry)` holds for any of its variants.
    /// Returns how many keys were removed.
    pub fn remove_where(&self, matches: impl Fn(&str, &Entry) -> bool) -> usize {
        let mut removed = 0;
        for shard in self.shards.iter() {
            let mut guard = lock(shard);
            let shard = &mut *guard;
            let doomed: Vec<String> = shard
                .lru
                .iter()
                .filter(|(k, v)| v.entries.iter().any(|e| matches(k, e)))
                .map(|(k, _)| k.clone())
                .collect();
            for key in doomed {
                if let Some(v) = shard.lru.pop(&key) {
                    shard.bytes -= v.bytes;
                    removed += 1;
                }
            }
        }
        removed
    }

    /// Removes every key of one URL (its key-header variants too), looking in the one
    /// shard that holds them: cheap enough to run on every successful unsafe request.
    pub fn remove_url(&self, url: &str) -> usize {
        let mut guard = lock(self.shard(url));
        let shard = &mut *guard;
        let doomed: Vec<String> = shard
            .lru
            .iter()
            .map(|(k, _)| k)
            .filter(|k| super::key::url_part(k) == url)
            .cloned()
            .collect();
        for key in &doomed {
            if let Some(v) = shard.lru.pop(key) {
                shard.bytes -= v.bytes;
            }
        }
        doomed.len()
    }

    pub fn bytes_used(&self) -> usize {
        self.shards.iter().map(|s| lock(s).bytes).sum()
    }

    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| lock(s).lru.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A poisoned shard only means a panic elsewhere mid-update of plain counters; the LRU
/// itself stays consistent, so keep serving.
fn lock(shard: &Mutex<Shard>) -> std::sync::MutexGuard<'_, Shard> {
    shard.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
pub(crate) fn test_entry(body: &'static [u8], vary: &[(&str, Option<&str>)]) -> Arc<Entry> {
    Arc::new(Entry {
        status: StatusCode::OK,
        headers: HeaderMap::new(),
        body: Bytes::from_static(body),
        stored_at: Instant::now(),
        stored_at_wall: SystemTime::now(),
        initial_age: Duration::ZERO,
        lifetime: Duration::from_secs(60),
        cc: CacheControl::default(),
        vary_names: vary.iter().map(|(n, _)| n.to_string()).collect(),
        vary_values: vary.iter().map(|(_, v)| v.map(str::to_owned)).collect(),
        surrogate_keys: vec![],
        refreshing: AtomicBool::new(false),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    static KB: [u8; 1024] = [7; 1024];

    #[test]
    fn byte_bound_is_never_exceeded_and_lru_goes_first() {
        let store = Store::new(10 * 1024, 1);
        for i in 0..20 {
            store.insert(format!("k{i}"), test_entry(&KB, &[]));
            assert!(
                store.bytes_used() <= 10 * 1024,
                "over capacity after insert {i}"
            );
            // Touch k0 so it stays while others are evicted.
            store.get("k0", |_| vec![]);
        }
        assert!(
            store.get("k0", |_| vec![]).is_some(),
            "recently used key evicted"
        );
        assert!(
            store.get("k1", |_| vec![]).is_none(),
            "least recently used key kept"
        );
        assert!(store.stats.evictions.load(Ordering::Relaxed) > 0);
    }

    #[test]
    fn objects_larger_than_a_shard_are_refused() {
        let store = Store::new(4 * 1024, 2);
        assert!(!store.insert(
            "big".into(),
            test_entry(&KB, &[]).clone_with_body(&[0u8; 3000])
        ));
        assert!(store.is_empty());
    }

    #[test]
    fn variants_by_vary_values() {
        let store = Store::new(1 << 20, 4);
        store.insert(
            "k".into(),
            test_entry(b"gzip", &[("accept-encoding", Some("gzip"))]),
        );
        store.insert(
            "k".into(),
            test_entry(b"plain", &[("accept-encoding", None)]),
        );
        store.insert(
            "k".into(),
            test_entry(b"gzip2", &[("accept-encoding", Some("gzip"))]),
        );
        let get = |v: Option<&str>| {
            store
                .get("k", |_| vec![v.map(str::to_owned)])
                .map(|e| e.body.clone())
        };
        assert_eq!(
            get(Some("gzip")).unwrap(),
            "gzip2",
            "same Vary values replace"
        );
        assert_eq!(get(None).unwrap(), "plain");
        assert!(get(Some("br")).is_none());
    }

    #[test]
    fn remove_where_and_accounting() {
        let store = Store::new(1 << 20, 4);
        for i in 0..10 {
            store.insert(format!("h/vod/{i}"), test_entry(&KB, &[]));
            store.insert(format!("h/live/{i}"), test_entry(&KB, &[]));
        }
        let before = store.bytes_used();
        assert_eq!(store.remove_where(|k, _| k.starts_with("h/vod/")), 10);
        assert_eq!(store.len(), 10);
        assert_eq!(store.bytes_used(), before / 2);
        assert_eq!(store.remove_url("h/live/3"), 1);
        assert_eq!(store.remove_url("h/live/3"), 0);
        store.insert("h/x\0x-device=tv".into(), test_entry(&KB, &[]));
        store.insert("h/x\0x-device=phone".into(), test_entry(&KB, &[]));
        store.insert("h/xy".into(), test_entry(&KB, &[]));
        assert_eq!(
            store.remove_url("h/x"),
            2,
            "every key-header variant of the URL, nothing else"
        );
    }

    impl Entry {
        fn clone_with_body(&self, body: &'static [u8]) -> Arc<Entry> {
            let e = test_entry(body, &[]);
            Arc::new(Entry {
                lifetime: self.lifetime,
                ..Arc::try_unwrap(e).unwrap()
            })
        }
    }
}
