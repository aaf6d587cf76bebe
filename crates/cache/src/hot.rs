//! The hot set: which keys are read most, in constant memory.
//!
//! Space-Saving (Metwally, Agrawal, El Abbadi, 2005): at most `k` counters.
//! A key that is counted gets +1; a new key takes over the smallest counter
//! (inheriting its count, so it is over- never under-estimated). Every key
//! whose true count exceeds `n / k` is guaranteed to be in the set.

use std::collections::HashMap;
use std::hash::Hash;

/// The approximately most frequent keys of a stream.
#[derive(Debug)]
pub(crate) struct HotSet<K> {
    counts: HashMap<K, u64>,
    capacity: usize,
}

impl<K: Hash + Eq + Clone> HotSet<K> {
    pub(crate) fn new(capacity: usize) -> Self {
        HotSet {
            counts: HashMap::with_capacity(capacity + 1),
            capacity: capacity.max(1),
        }
    }

    pub(crate) fn record(&mut self, key: &K) {
        if let Some(count) = self.counts.get_mut(key) {
            *count += 1;
            return;
        }
        if self.counts.len() < self.capacity {
            self.counts.insert(key.clone(), 1);
            return;
        }
        // Replace the least counted key. A linear scan: the set is small
        // (hundreds) and this runs on a sample of reads only.
        let Some((victim, min)) = self
            .counts
            .iter()
            .min_by_key(|(_, c)| **c)
            .map(|(k, c)| (k.clone(), *c))
        else {
            return;
        };
        self.counts.remove(&victim);
        self.counts.insert(key.clone(), min + 1);
    }

    /// The keys, most counted first.
    pub(crate) fn top(&self) -> Vec<K> {
        let mut entries: Vec<(&K, &u64)> = self.counts.iter().collect();
        entries.sort_by(|a, b| b.1.cmp(a.1));
        entries.into_iter().map(|(k, _)| k.clone()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frequent_keys_survive_a_stream_of_rare_ones() {
        let mut hot = HotSet::new(10);
        for round in 0..1000u64 {
            for k in 0..5u64 {
                hot.record(&k);
            }
            hot.record(&(1000 + round)); // each rare key once
        }
        let top = hot.top();
        assert_eq!(top.len(), 10);
        let mut first: Vec<u64> = top[..5].to_vec();
        first.sort_unstable();
        assert_eq!(first, [0, 1, 2, 3, 4]);
    }
}
