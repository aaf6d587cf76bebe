//! L1 eviction policies.
//!
//! A policy decides which keys stay in a size-bounded memory cache. It sees
//! key hashes and weights only, never values, so it can be simulated on
//! access traces (`sim`) exactly as it runs in the cache. The seam is the
//! small [`EvictionPolicy`] trait, so the policy can change without touching
//! the cache around it.

mod ghost;
mod hash;
mod lists;
mod lru;
mod sketch;
mod wtinylfu;

pub(crate) use hash::BuildU64Hasher;
pub use lru::Lru;
pub use wtinylfu::WTinyLfu;

/// Decides which keys a bounded cache keeps.
pub trait EvictionPolicy: Send {
    /// Whether `key` is resident.
    fn contains(&self, key: u64) -> bool;
    /// A resident `key` was read.
    fn record_hit(&mut self, key: u64);
    /// A `key` that is not resident was read (policies that learn popularity
    /// count misses too).
    fn record_miss(&mut self, key: u64);
    /// Adds `key` with `weight` (or updates the weight of a resident key).
    /// Every key that must leave the cache — possibly `key` itself, when the
    /// policy does not admit it — is pushed to `evicted`.
    fn insert(&mut self, key: u64, weight: u64, evicted: &mut Vec<u64>);
    /// `key` left the cache for another reason (invalidation, expiry).
    fn remove(&mut self, key: u64);
    /// Resident keys.
    fn len(&self) -> usize;
    /// Whether no key is resident.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The total weight of resident keys.
    fn weight(&self) -> u64;
}

/// One read of `key` through `policy`, as a read-through cache does it:
/// a hit, or a miss followed by an insert. Returns whether it was a hit.
pub fn access(
    policy: &mut dyn EvictionPolicy,
    key: u64,
    weight: u64,
    evicted: &mut Vec<u64>,
) -> bool {
    if policy.contains(key) {
        policy.record_hit(key);
        true
    } else {
        policy.record_miss(key);
        policy.insert(key, weight, evicted);
        false
    }
}
