//! The local tag index: which L1 keys carry each tag.

use std::collections::{HashMap, HashSet};
use std::hash::Hash;

/// Tag → keys, with a running count of (tag, key) pairs. Keys evicted from
/// L1 linger until the count passes `limit`; then the index is pruned to
/// the keys still in L1. Adding is O(tags), never O(index).
pub(crate) struct TagIndex<K> {
    tags: HashMap<String, HashSet<K>>,
    pairs: usize,
    limit: usize,
}

impl<K: Hash + Eq + Clone> TagIndex<K> {
    /// An index for an L1 of `capacity` (entries, or total weight).
    pub(crate) fn new(capacity: u64) -> Self {
        let capacity = usize::try_from(capacity)
            .unwrap_or(usize::MAX)
            .clamp(1024, 1 << 20);
        TagIndex {
            tags: HashMap::new(),
            pairs: 0,
            limit: 4 * capacity,
        }
    }

    /// Records that `key` carries `tags`; when the index has outgrown the
    /// cache, keeps only the keys for which `alive` holds.
    pub(crate) fn add(&mut self, key: &K, tags: &[String], alive: impl Fn(&K) -> bool) {
        for tag in tags {
            if self
                .tags
                .entry(tag.clone())
                .or_default()
                .insert(key.clone())
            {
                self.pairs += 1;
            }
        }
        if self.pairs > self.limit {
            self.tags.retain(|_, keys| {
                keys.retain(|k| alive(k));
                !keys.is_empty()
            });
            self.pairs = self.tags.values().map(HashSet::len).sum();
        }
    }

    /// Forgets `tag`, returning the keys that carried it.
    pub(crate) fn take(&mut self, tag: &str) -> Vec<K> {
        let keys = self.tags.remove(tag).unwrap_or_default();
        self.pairs -= keys.len();
        keys.into_iter().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prunes_dead_keys_once_it_outgrows_the_cache() {
        let mut index = TagIndex::new(1);
        assert_eq!(index.limit, 4096);
        for k in 0..4096u64 {
            index.add(&k, &[format!("t{}", k % 10)], |_| true);
        }
        assert_eq!(index.pairs, 4096);
        // One more pair: only even keys are still alive.
        index.add(&5000, &["t0".to_owned()], |k| k % 2 == 0);
        assert_eq!(index.pairs, 2049);
        let t0 = index.take("t0");
        assert!(t0.iter().all(|k| k % 2 == 0) && t0.contains(&5000));
        assert_eq!(index.pairs, 2049 - t0.len());
        assert!(index.take("t0").is_empty());
    }
}
