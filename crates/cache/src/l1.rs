//! L1: the bounded in-process store around an eviction policy.
//!
//! Keys are hashed once; the store is split into shards by hash, each a map
//! and its own [`WTinyLfu`] behind a mutex, so threads working on different
//! keys rarely meet. Small caches use one shard: a policy split into tiny
//! pieces would lose hit ratio. Entries expire lazily: an expired entry is a
//! miss when read and is dropped then, or evicted by the policy before.

use parking_lot::{Mutex, MutexGuard};
use std::collections::HashMap;
use std::hash::{BuildHasher, Hash};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::time::Instant;

use crate::policy::{EvictionPolicy, WTinyLfu};

/// Below this many entries per shard, fewer shards are used.
const MIN_SHARD_CAPACITY: u64 = 4096;
/// The most shards.
const MAX_SHARDS: usize = 16;

/// Weighs an entry; the capacity is in the same unit.
pub type Weigher<K, V> = Arc<dyn Fn(&K, &V) -> u64 + Send + Sync>;

/// What the store holds for a key: a value, or the knowledge that there is
/// none (negative caching).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cached<V> {
    /// The value.
    Value(V),
    /// The loader found nothing for this key, recently.
    Absent,
}

struct Slot<K, V> {
    key: K,
    value: Cached<V>,
    expires_at: Instant,
    /// From here on, a read should refresh the entry in the background.
    refresh_at: Instant,
}

struct Shard<K, V> {
    map: HashMap<u64, Slot<K, V>, crate::policy::BuildU64Hasher>,
    policy: WTinyLfu,
    evicted: Vec<u64>,
}

/// Counters of an L1 store.
#[derive(Debug, Default)]
pub(crate) struct L1Counters {
    pub(crate) hits: AtomicU64,
    pub(crate) misses: AtomicU64,
    pub(crate) evictions: AtomicU64,
    pub(crate) expirations: AtomicU64,
}

/// A bounded, concurrent map with expiry.
pub struct L1<K, V> {
    shards: Box<[Mutex<Shard<K, V>>]>,
    hasher: std::collections::hash_map::RandomState,
    weigher: Weigher<K, V>,
    capacity: u64,
    pub(crate) counters: L1Counters,
}

impl<K, V> L1<K, V>
where
    K: Hash + Eq + Clone,
    V: Clone,
{
    /// A store of at most `capacity` total weight. With the default weigher
    /// (every entry weighs 1) the capacity is in entries.
    pub fn new(capacity: u64, weigher: Option<Weigher<K, V>>) -> Self {
        let shards = shard_count(capacity);
        let per_shard = (capacity / shards as u64).max(1);
        let weighted = weigher.is_some();
        L1 {
            shards: (0..shards)
                .map(|_| {
                    // With a weigher the entry count is unknown; the sketch
                    // grows as needed from a modest start.
                    let expected = if weighted { 1024 } else { per_shard as usize };
                    Mutex::new(Shard {
                        map: HashMap::default(),
                        policy: WTinyLfu::new(per_shard, expected),
                        evicted: Vec::new(),
                    })
                })
                .collect(),
            hasher: std::collections::hash_map::RandomState::new(),
            weigher: weigher.unwrap_or_else(|| Arc::new(|_, _| 1)),
            capacity,
            counters: L1Counters::default(),
        }
    }

    /// The capacity it was made with (entries, or the weigher's unit).
    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    fn locate(&self, key: &K) -> (u64, MutexGuard<'_, Shard<K, V>>) {
        let hash = self.hasher.hash_one(key);
        let index = (hash >> 32) as usize % self.shards.len();
        // A panic under the lock leaves the shard consistent enough to use:
        // every mutation completes before anything that could panic.
        let guard = self.shards[index].lock();
        (hash, guard)
    }

    /// The entry for `key`, if present and not expired at `now`.
    pub fn get(&self, key: &K, now: Instant) -> Option<Cached<V>> {
        self.get_marked(key, now).map(|(value, _)| value)
    }

    /// Like [`L1::get`], with whether the entry is due for a refresh.
    pub fn get_marked(&self, key: &K, now: Instant) -> Option<(Cached<V>, bool)> {
        let (hash, mut shard) = self.locate(key);
        let found = match shard.map.get(&hash) {
            Some(slot) if slot.key == *key && slot.expires_at > now => {
                Some((slot.value.clone(), slot.refresh_at <= now))
            }
            Some(slot) if slot.key == *key => {
                shard.map.remove(&hash);
                shard.policy.remove(hash);
                self.counters.expirations.fetch_add(1, Ordering::Relaxed);
                None
            }
            _ => None,
        };
        if found.is_some() {
            shard.policy.record_hit(hash);
            self.counters.hits.fetch_add(1, Ordering::Relaxed);
        } else {
            shard.policy.record_miss(hash);
            self.counters.misses.fetch_add(1, Ordering::Relaxed);
        }
        found
    }

    /// Like [`L1::get`], but neither counted nor seen by the policy: for a
    /// second look at a key already read once.
    pub fn peek(&self, key: &K, now: Instant) -> Option<Cached<V>> {
        let (hash, shard) = self.locate(key);
        match shard.map.get(&hash) {
            Some(slot) if slot.key == *key && slot.expires_at > now => Some(slot.value.clone()),
            _ => None,
        }
    }

    /// Stores `value` for `key` until `expires_at`. The policy may decline
    /// to keep it (or evict others); returns whether it was kept.
    pub fn insert(&self, key: K, value: Cached<V>, expires_at: Instant) -> bool {
        self.insert_refreshing(key, value, expires_at, expires_at)
    }

    /// Like [`L1::insert`], with the instant from which reads should
    /// refresh the entry in the background.
    pub fn insert_refreshing(
        &self,
        key: K,
        value: Cached<V>,
        expires_at: Instant,
        refresh_at: Instant,
    ) -> bool {
        let weight = match &value {
            Cached::Value(v) => (self.weigher)(&key, v).max(1),
            Cached::Absent => 1,
        };
        let (hash, mut shard) = self.locate(&key);
        let shard = &mut *shard;
        shard.evicted.clear();
        shard.policy.insert(hash, weight, &mut shard.evicted);
        let mut kept = true;
        for victim in shard.evicted.drain(..) {
            if victim == hash {
                kept = false;
            } else {
                shard.map.remove(&victim);
                self.counters.evictions.fetch_add(1, Ordering::Relaxed);
            }
        }
        if kept {
            shard.map.insert(
                hash,
                Slot {
                    key,
                    value,
                    expires_at,
                    refresh_at,
                },
            );
        } else {
            // Not admitted: an older value of the same key must not survive.
            shard.map.remove(&hash);
        }
        kept
    }

    /// Drops `key`; whether it was present.
    pub fn remove(&self, key: &K) -> bool {
        let (hash, mut shard) = self.locate(key);
        match shard.map.get(&hash) {
            Some(slot) if slot.key == *key => {
                shard.map.remove(&hash);
                shard.policy.remove(hash);
                true
            }
            _ => false,
        }
    }

    /// Drops every entry.
    pub fn clear(&self) {
        for shard in self.shards.iter() {
            let mut shard = shard.lock();
            let hashes: Vec<u64> = shard.map.keys().copied().collect();
            for hash in hashes {
                shard.policy.remove(hash);
            }
            shard.map.clear();
        }
    }

    /// Entries held (expired ones included until they are noticed).
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().map.len()).sum()
    }

    /// Whether the store is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The total weight held.
    pub fn weight(&self) -> u64 {
        self.shards.iter().map(|s| s.lock().policy.weight()).sum()
    }
}

fn shard_count(capacity: u64) -> usize {
    let by_size = (capacity / MIN_SHARD_CAPACITY).max(1) as usize;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    by_size
        .min((threads * 4).next_power_of_two())
        .min(MAX_SHARDS)
        .next_power_of_two()
        .min(MAX_SHARDS)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn get_insert_remove_and_expiry() {
        let l1: L1<String, u32> = L1::new(100, None);
        let now = Instant::now();
        let later = now + Duration::from_secs(10);
        assert_eq!(l1.get(&"a".into(), now), None);
        assert!(l1.insert("a".into(), Cached::Value(1), later));
        assert!(l1.insert("b".into(), Cached::Absent, later));
        assert_eq!(l1.get(&"a".into(), now), Some(Cached::Value(1)));
        assert_eq!(l1.get(&"b".into(), now), Some(Cached::Absent));
        assert_eq!(l1.get(&"a".into(), later), None, "expired");
        assert!(
            !l1.remove(&"a".into()),
            "expired entries are dropped when read"
        );
        assert!(l1.remove(&"b".into()));
        assert!(l1.is_empty());
        assert_eq!(l1.counters.hits.load(Ordering::Relaxed), 2);
        assert_eq!(l1.counters.expirations.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn the_bound_holds_by_weight() {
        let weigher: Weigher<u32, Vec<u8>> = Arc::new(|_, v| v.len() as u64);
        let l1 = L1::new(1000, Some(weigher));
        let until = Instant::now() + Duration::from_secs(60);
        for k in 0..500 {
            l1.insert(k, Cached::Value(vec![0; 10 + (k as usize % 50)]), until);
            assert!(l1.weight() <= 1000);
        }
        assert!(
            !l1.insert(9999, Cached::Value(vec![0; 1001]), until),
            "heavier than the cache"
        );
        assert!(l1.len() > 10);
    }

    #[test]
    fn shards_follow_the_capacity() {
        assert_eq!(shard_count(100), 1);
        assert_eq!(shard_count(4096), 1);
        assert!(shard_count(1 << 30) <= MAX_SHARDS);
        assert!(shard_count(1 << 30).is_power_of_two());
    }
}
