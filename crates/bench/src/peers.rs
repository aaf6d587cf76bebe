//! The peer libraries the cache is compared with, as simulated caches.

use botfleet_cache::sim::{Request, Simulated};

/// The versions compared with (checked against Cargo.lock by a test).
pub(crate) const MOKA_VERSION: &str = "0.12.16";
pub(crate) const QUICK_CACHE_VERSION: &str = "0.7.0";

/// moka's sync cache; with a weigher only for weighted traces, because a
/// weigher changes its admission (as a user of unit-weight entries would
/// not configure one).
pub(crate) struct Moka(moka::sync::Cache<u64, u32>);

impl Moka {
    pub(crate) fn new(capacity: u64, weighted: bool) -> Self {
        let builder = moka::sync::Cache::builder().max_capacity(capacity);
        Moka(if weighted {
            builder.weigher(|_: &u64, w: &u32| *w).build()
        } else {
            builder.build()
        })
    }
}

impl Simulated for Moka {
    fn access(&mut self, r: Request) -> bool {
        if self.0.get(&r.key).is_some() {
            return true;
        }
        self.0
            .insert(r.key, u32::try_from(r.weight).unwrap_or(u32::MAX));
        false
    }
}

#[derive(Clone)]
pub(crate) struct Weight;

impl quick_cache::Weighter<u64, u64> for Weight {
    fn weight(&self, _key: &u64, weight: &u64) -> u64 {
        *weight
    }
}

/// quick_cache's unsync cache, weighted by request size.
pub(crate) struct QuickCache(quick_cache::unsync::Cache<u64, u64, Weight>);

impl QuickCache {
    pub(crate) fn new(capacity: u64, expected_entries: usize) -> Self {
        QuickCache(quick_cache::unsync::Cache::with_weighter(
            expected_entries.max(1),
            capacity,
            Weight,
        ))
    }
}

impl Simulated for QuickCache {
    fn access(&mut self, r: Request) -> bool {
        if self.0.get(&r.key).is_some() {
            return true;
        }
        self.0.insert(r.key, r.weight);
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reported_versions_match_the_lock_file() {
        let lock = include_str!("../../../Cargo.lock");
        for (name, version) in [("moka", MOKA_VERSION), ("quick_cache", QUICK_CACHE_VERSION)] {
            let entry = format!("name = \"{name}\"\nversion = \"{version}\"");
            assert!(
                lock.contains(&entry),
                "{name} is not {version} in Cargo.lock"
            );
        }
    }
}
