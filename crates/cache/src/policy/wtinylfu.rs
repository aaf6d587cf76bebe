//! Adaptive Window-TinyLFU with ghost-driven window sizing: botfleet's L1
//! policy.
//!
//! New keys enter a small LRU *window*. A key pushed out of the window is a
//! candidate for the *main* region (a segmented LRU: probation and
//! protected) and is admitted only if a frequency sketch says it is more
//! popular than the key it would evict. The window absorbs bursts and
//! recency; the admission filter keeps scans and one-hit wonders out of the
//! main region.
//!
//! Two ghost lists (keys without values) make it adaptive, in the manner of
//! ARC:
//!
//! - a candidate that was *rejected* and is soon read again is admitted
//!   outright the next time (frequency was the wrong signal for it), and it
//!   tells the policy that a larger window would have kept it: the window
//!   grows;
//! - a main-region *victim* that is soon read again says the opposite: the
//!   window shrinks.
//!
//! Each step is weighted by the ratio of the two ghosts' sizes, as ARC does,
//! so the more common kind of event does not win by volume alone, and the
//! window stays between one entry and 60 % of the capacity, so a phase of
//! recency cannot trap the policy in plain LRU. On the shared traces this
//! adapts within a few thousand requests where a hit-ratio hill climber
//! (Caffeine's) needs samples of ten times the capacity; the measurements are
//! in the crate's README.
//!
//! Ties in admission are rejected (no random admission). Against an
//! attacker who floods the sketch to protect a victim, the sketch's hashing
//! is seeded per instance instead.

use super::EvictionPolicy;
use super::ghost::Ghost;
use super::lists::Lists;
use super::sketch::FrequencySketch;

const WINDOW: usize = 0;
const PROBATION: usize = 1;
const PROTECTED: usize = 2;

/// The window's share of the capacity at the start.
const INITIAL_WINDOW: f64 = 0.01;
/// The largest share of the capacity the window may grow to.
const MAX_WINDOW: f64 = 0.60;
/// The protected segment's share of the main region.
const PROTECTED_SHARE: f64 = 0.80;
/// Rejected candidates remembered, as a share of the capacity (in entries).
const REJECTED_GHOST: f64 = 0.5;
/// Main-region victims remembered, as a share of the capacity (in entries).
const VICTIM_GHOST: f64 = 1.0;
/// One adaptation step, as a share of the capacity (at least one unit).
const STEP: f64 = 0.001;

/// Adaptive W-TinyLFU over key hashes.
#[derive(Debug)]
pub struct WTinyLfu {
    lists: Lists<3>,
    sketch: FrequencySketch,
    capacity: u64,
    window_max: u64,
    window_limit: u64,
    protected_max: u64,
    rejected: Ghost,
    victims: Ghost,
    step: f64,
    seed: u64,
    /// Scratch space for `evict`, kept to avoid an allocation per insert.
    candidates: Vec<(u64, u64)>,
}

impl WTinyLfu {
    /// A policy holding up to `capacity` total weight, sized for about
    /// `expected_entries` keys (the capacity itself when every weight is 1).
    /// The sketch's hashing is seeded at random.
    pub fn new(capacity: u64, expected_entries: usize) -> Self {
        use std::hash::BuildHasher;
        let seed = std::collections::hash_map::RandomState::new().hash_one(0u64);
        Self::with_seed(capacity, expected_entries, seed)
    }

    /// Like [`WTinyLfu::new`] with a fixed seed, for reproducible simulations.
    pub fn with_seed(capacity: u64, expected_entries: usize, seed: u64) -> Self {
        let capacity = capacity.max(1);
        let share = |s: f64| (capacity as f64 * s) as u64;
        let entries = |s: f64| (expected_entries as f64 * s) as usize;
        let mut policy = WTinyLfu {
            lists: Lists::new(),
            sketch: FrequencySketch::new(expected_entries, seed),
            capacity,
            window_max: share(INITIAL_WINDOW).clamp(1, capacity),
            window_limit: share(MAX_WINDOW).clamp(1, capacity),
            protected_max: 0,
            rejected: Ghost::new(entries(REJECTED_GHOST)),
            victims: Ghost::new(entries(VICTIM_GHOST)),
            step: (capacity as f64 * STEP).max(1.0),
            seed,
            candidates: Vec::new(),
        };
        policy.protected_max = policy.main_protected_max();
        policy
    }

    /// The current window size (total weight), which the policy adapts.
    pub fn window_capacity(&self) -> u64 {
        self.window_max
    }

    fn main_protected_max(&self) -> u64 {
        ((self.capacity - self.window_max) as f64 * PROTECTED_SHARE) as u64
    }

    fn admit(&self, candidate: u64, victim: u64) -> bool {
        self.rejected.contains(candidate)
            || self.sketch.frequency(candidate) > self.sketch.frequency(victim)
    }

    fn resize_window(&mut self, window_max: u64) {
        self.window_max = window_max.clamp(1, self.window_limit);
        self.protected_max = self.main_protected_max();
        self.demote_protected_overflow();
    }

    /// ARC's rule: a ghost hit moves the window towards the side that would
    /// have kept the key, by a step scaled by the other ghost's relative size.
    fn adapt(&mut self, key: u64) {
        let rejected = self.rejected.len().max(1) as f64;
        let victims = self.victims.len().max(1) as f64;
        if self.rejected.contains(key) {
            let step = (victims / rejected).max(1.0) * self.step;
            self.resize_window(self.window_max + step as u64);
        } else if self.victims.take(key) {
            let step = (rejected / victims).max(1.0) * self.step;
            self.resize_window(self.window_max.saturating_sub(step as u64));
        }
    }

    fn demote_protected_overflow(&mut self) {
        while self.lists.weight(PROTECTED) > self.protected_max {
            let Some(key) = self.lists.lru(PROTECTED) else {
                break;
            };
            self.lists.move_to(PROBATION, key);
        }
    }

    /// Takes the window's overflow out as admission candidates (oldest
    /// first). Each one enters probation only if it fits, or if it beats
    /// every main-region victim that must leave to make room; otherwise it is
    /// evicted itself. Whatever still overflows (the window grew, so the main
    /// region must shrink) leaves from the main region's LRU ends, and from
    /// the window only when the main region is empty.
    fn evict(&mut self, evicted: &mut Vec<u64>) {
        let mut candidates = std::mem::take(&mut self.candidates);
        candidates.clear();
        while self.lists.weight(WINDOW) > self.window_max {
            let Some(key) = self.lists.lru(WINDOW) else {
                break;
            };
            if let Some((_, weight)) = self.lists.remove(key) {
                candidates.push((key, weight));
            }
        }
        for &(candidate, weight) in &candidates {
            let mut admitted = true;
            while self.total_weight() + weight > self.capacity {
                let victim = self
                    .lists
                    .lru(PROBATION)
                    .or_else(|| self.lists.lru(PROTECTED));
                let Some(victim) = victim else { break };
                if self.admit(candidate, victim) {
                    self.lists.remove(victim);
                    self.victims.add(victim);
                    evicted.push(victim);
                } else {
                    admitted = false;
                    break;
                }
            }
            if admitted && self.total_weight() + weight <= self.capacity {
                self.rejected.take(candidate);
                self.lists.push(PROBATION, candidate, weight);
            } else {
                self.rejected.add(candidate);
                evicted.push(candidate);
            }
        }
        self.candidates = candidates;
        while self.total_weight() > self.capacity {
            let victim = self
                .lists
                .lru(PROBATION)
                .or_else(|| self.lists.lru(PROTECTED))
                .or_else(|| self.lists.lru(WINDOW));
            let Some(key) = victim else { break };
            self.lists.remove(key);
            evicted.push(key);
        }
    }

    fn total_weight(&self) -> u64 {
        self.lists.weight(WINDOW) + self.lists.weight(PROBATION) + self.lists.weight(PROTECTED)
    }
}

impl EvictionPolicy for WTinyLfu {
    fn contains(&self, key: u64) -> bool {
        self.lists.list_of(key).is_some()
    }

    fn record_hit(&mut self, key: u64) {
        self.sketch.increment(key);
        match self.lists.list_of(key) {
            Some(WINDOW) => self.lists.move_to(WINDOW, key),
            Some(PROBATION) => {
                self.lists.move_to(PROTECTED, key);
                self.demote_protected_overflow();
            }
            Some(_) => self.lists.move_to(PROTECTED, key),
            None => {}
        }
    }

    fn record_miss(&mut self, key: u64) {
        self.adapt(key);
        self.sketch.increment(key);
    }

    fn insert(&mut self, key: u64, weight: u64, evicted: &mut Vec<u64>) {
        if weight > self.capacity {
            self.lists.remove(key);
            evicted.push(key);
            return;
        }
        if self.lists.weight_of(key).is_some() {
            self.lists.set_weight(key, weight);
        } else {
            if self.lists.total_len() >= self.sketch.capacity() {
                // More keys than the sketch was sized for (weighted caches):
                // grow it; the popularity learnt so far is lost once.
                self.sketch = FrequencySketch::new(self.lists.total_len() * 2, self.seed);
            }
            self.lists.push(WINDOW, key, weight);
        }
        self.evict(evicted);
    }

    fn remove(&mut self, key: u64) {
        self.lists.remove(key);
    }

    fn len(&self) -> usize {
        self.lists.total_len()
    }

    fn weight(&self) -> u64 {
        self.total_weight()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::access;

    fn run(policy: &mut WTinyLfu, keys: impl IntoIterator<Item = u64>) -> usize {
        let mut evicted = Vec::new();
        keys.into_iter()
            .filter(|&k| access(policy, k, 1, &mut evicted))
            .count()
    }

    #[test]
    fn never_exceeds_its_capacity() {
        let mut p = WTinyLfu::new(100, 100);
        let mut evicted = Vec::new();
        for k in 0..10_000u64 {
            access(&mut p, k * 7919 % 1000, 1 + k % 3, &mut evicted);
            assert!(p.weight() <= 100, "weight {}", p.weight());
        }
        p.insert(5, 101, &mut evicted);
        assert!(!p.contains(5), "heavier than the capacity: never admitted");
    }

    #[test]
    fn a_scan_does_not_flush_hot_keys() {
        let mut p = WTinyLfu::new(100, 100);
        let hot: Vec<u64> = (0..50).collect();
        for _ in 0..20 {
            run(&mut p, hot.iter().copied());
        }
        // A scan of 10,000 keys read once.
        run(&mut p, 1_000..11_000);
        let hits = run(&mut p, hot.iter().copied());
        assert!(hits >= 45, "only {hits} of 50 hot keys survived the scan");
    }

    #[test]
    fn recency_grows_the_window() {
        // Every key is read twice, 300 reads apart: only a large window hits.
        let mut p = WTinyLfu::new(1000, 1000);
        let start = p.window_capacity();
        let mut keys = Vec::new();
        for k in 0..200_000u64 {
            keys.push(k);
            if k >= 300 {
                keys.push(k - 300);
            }
        }
        run(&mut p, keys);
        assert!(
            p.window_capacity() > start * 20,
            "window {}",
            p.window_capacity()
        );
    }
}
