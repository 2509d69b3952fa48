//! Values known to match nothing, remembered across requests.
//!
//! A player sends the same `User-Agent`, `Accept`, session id, cookies and token on every
//! segment request, and thousands of viewers ask for the same segment paths: most of the
//! values the WAF inspects were inspected before. For a rule link whose result depends on
//! nothing but the value (its transformations and operator are pure: no macro, no
//! per-request state), "this value did not match" stays true, so the link need not run
//! on that value again. A *match* is never remembered: a match has side effects (scores,
//! captures, `setvar`) that must happen on every request.
//!
//! The store is a fixed-size two-way set-associative table keyed by the value's exact
//! bytes (compared in full, never by hash alone), so its memory is bounded and a crafted
//! collision can only evict entries — back to the full evaluation, never a skipped match.
//! An entry a request is using is never evicted during that request.

use crate::ruleset::RuleSet;

/// Values longer than this are always evaluated in full: long values are rarely repeated
/// (bodies, free text), and the bound keeps the table's memory bounded.
pub const VALUE_MAX: usize = 512;

/// The per-request address map keeps room for this many values between requests.
const ADDRESSES_KEPT: usize = 1024;

/// The default number of remembered values (about 1 MiB with CRS at the usual value sizes).
pub const DEFAULT_ENTRIES: usize = 8192;

pub struct CleanValues {
    /// The rule set whose link numbers the bits refer to.
    rules_id: u64,
    /// 64-bit words per entry: one bit per memoizable link.
    stride: usize,
    keys: Vec<Option<Box<[u8]>>>,
    /// The request that last used each entry (0: never).
    stamps: Vec<u64>,
    bits: Vec<u64>,
    request: u64,
    /// This request's values by where they live (address, length) → entry; `u32::MAX`: not
    /// remembered (too long, or both ways of its set taken by this request's values).
    by_address: std::collections::HashMap<(usize, usize), u32, BuildFx>,
    hits: u64,
    lookups: u64,
    links_skipped: u64,
}

impl CleanValues {
    /// A table of `entries` values (rounded up to an even number) for `rules`.
    pub fn new(rules: &RuleSet, entries: usize) -> CleanValues {
        let entries = entries.max(2).next_multiple_of(2);
        let stride = rules.memo_links.div_ceil(64).max(1);
        CleanValues {
            rules_id: rules.id,
            stride,
            keys: vec![None; entries],
            stamps: vec![0; entries],
            bits: vec![0; entries * stride],
            request: 0,
            by_address: Default::default(),
            hits: 0,
            lookups: 0,
            links_skipped: 0,
        }
    }

    /// How many values the table holds at most.
    pub fn capacity(&self) -> usize {
        self.keys.len()
    }

    /// Whether the bits were made for `rules`.
    pub fn fits(&self, rules: &RuleSet) -> bool {
        self.rules_id == rules.id
    }

    /// Since the start: links skipped whole (every value they read known clean), and
    /// (values known clean, values looked up) for the links evaluated value by value.
    pub fn counts(&self) -> (u64, u64, u64) {
        (self.links_skipped, self.hits, self.lookups)
    }

    /// A new request: entries used from now on are pinned until the next one.
    pub(crate) fn begin_request(&mut self) {
        self.request += 1;
        self.by_address.clear();
        // One request with thousands of values (a large form or JSON body) must not leave
        // its map's size behind for the instance's lifetime.
        if self.by_address.capacity() > ADDRESSES_KEPT {
            self.by_address.shrink_to(ADDRESSES_KEPT);
        }
    }

    /// The request's values moved (the body processor replaced the argument lists): an
    /// address may now hold another value.
    pub(crate) fn forget_addresses(&mut self) {
        self.by_address.clear();
    }

    /// The entry of `value`, which lives at its address for the rest of the request.
    pub(crate) fn entry(&mut self, value: &[u8]) -> Option<u32> {
        let at = (value.as_ptr() as usize, value.len());
        if let Some(&e) = self.by_address.get(&at) {
            return (e != u32::MAX).then_some(e);
        }
        let e = self.find_or_insert(value).unwrap_or(u32::MAX);
        self.by_address.insert(at, e);
        (e != u32::MAX).then_some(e)
    }

    fn find_or_insert(&mut self, value: &[u8]) -> Option<u32> {
        if value.len() > VALUE_MAX {
            return None;
        }
        let sets = self.keys.len() / 2;
        let set = (fx_hash(value) % sets as u64) as usize * 2;
        for way in set..set + 2 {
            if self.keys[way].as_deref() == Some(value) {
                self.stamps[way] = self.request;
                return Some(way as u32);
            }
        }
        // The way used least recently, unless this request uses it.
        let way = if self.stamps[set] <= self.stamps[set + 1] {
            set
        } else {
            set + 1
        };
        if self.stamps[way] == self.request {
            return None;
        }
        self.keys[way] = Some(value.into());
        self.stamps[way] = self.request;
        self.bits[way * self.stride..(way + 1) * self.stride].fill(0);
        Some(way as u32)
    }

    pub(crate) fn is_clean(&mut self, entry: u32, link: u32) -> bool {
        let word = self.bits[entry as usize * self.stride + link as usize / 64];
        let clean = word & (1 << (link % 64)) != 0;
        self.lookups += 1;
        self.hits += u64::from(clean);
        clean
    }

    /// 64-bit words per entry.
    pub(crate) fn stride(&self) -> usize {
        self.stride
    }

    /// The links `entry` is clean for, one bit each.
    pub(crate) fn clean_links(&self, entry: u32) -> &[u64] {
        &self.bits[entry as usize * self.stride..(entry as usize + 1) * self.stride]
    }

    /// Counts a link skipped whole: every value it reads is clean for it.
    pub(crate) fn skipped_link(&mut self) {
        self.links_skipped += 1;
    }

    pub(crate) fn set_clean(&mut self, entry: u32, link: u32) {
        self.bits[entry as usize * self.stride + link as usize / 64] |= 1 << (link % 64);
    }
}

/// FxHash over the bytes: a collision costs an eviction, nothing else, so a fast
/// unkeyed hash is enough.
fn fx_hash(bytes: &[u8]) -> u64 {
    use std::hash::Hasher;
    let mut h = crate::transaction::FxHasher::default();
    h.write(bytes);
    h.write_usize(bytes.len());
    h.finish()
}

type BuildFx = std::hash::BuildHasherDefault<crate::transaction::FxHasher>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ruleset::{LoadOptions, MemorySource};

    fn rules() -> RuleSet {
        let mut files = MemorySource::default();
        files.files.insert(
            "r.conf".into(),
            r#"SecRule ARGS "@rx attack" "id:1,phase:1,deny""#.into(),
        );
        RuleSet::load(&files, &["r.conf".into()], LoadOptions::default()).unwrap()
    }

    #[test]
    fn a_value_is_found_again_by_its_bytes_in_a_later_request() {
        let set = rules();
        let mut memo = CleanValues::new(&set, 8);
        memo.begin_request();
        let a = b"AppleCoreMedia/1.0".to_vec();
        let e = memo.entry(&a).unwrap();
        assert!(!memo.is_clean(e, 0));
        memo.set_clean(e, 0);
        memo.begin_request();
        let again = b"AppleCoreMedia/1.0".to_vec();
        let e2 = memo.entry(&again).unwrap();
        assert_eq!(e, e2);
        assert!(memo.is_clean(e2, 0));
        let other = b"AppleCoreMedia/1.1".to_vec();
        if let Some(e3) = memo.entry(&other) {
            assert!(!memo.is_clean(e3, 0), "another value is not clean");
        }
    }

    #[test]
    fn entries_in_use_by_the_request_are_never_evicted() {
        let set = rules();
        // One set of two ways: the third value of a request cannot take a way.
        let mut memo = CleanValues::new(&set, 2);
        memo.begin_request();
        let values: Vec<Vec<u8>> = (0..3).map(|i| format!("v{i}").into_bytes()).collect();
        let a = memo.entry(&values[0]).unwrap();
        let b = memo.entry(&values[1]).unwrap();
        assert_ne!(a, b);
        memo.set_clean(a, 0);
        assert_eq!(memo.entry(&values[2]), None);
        let again = memo.entry(&values[0]).unwrap();
        assert!(memo.is_clean(again, 0));
        // The next request may evict the least recently used one; a new value starts clean
        // of nothing.
        memo.begin_request();
        let c = memo.entry(&values[2]).unwrap();
        assert!(!memo.is_clean(c, 0));
    }

    #[test]
    fn a_request_with_many_values_leaves_no_large_map_behind() {
        let set = rules();
        let mut memo = CleanValues::new(&set, 8);
        memo.begin_request();
        let values: Vec<Vec<u8>> = (0..10_000).map(|i| format!("v{i}").into_bytes()).collect();
        for v in &values {
            memo.entry(v);
        }
        assert!(memo.by_address.capacity() >= 10_000);
        memo.begin_request();
        assert!(memo.by_address.capacity() <= 2 * ADDRESSES_KEPT);
    }

    #[test]
    fn long_values_are_not_remembered() {
        let set = rules();
        let mut memo = CleanValues::new(&set, 8);
        memo.begin_request();
        assert_eq!(memo.entry(&vec![b'a'; VALUE_MAX + 1]), None);
        assert!(memo.entry(&vec![b'a'; VALUE_MAX]).is_some());
    }

    #[test]
    fn a_table_made_for_one_rule_set_does_not_fit_another() {
        let memo = CleanValues::new(&rules(), 8);
        assert!(!memo.fits(&rules()));
    }
}
