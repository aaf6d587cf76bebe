//! The hot set: which keys are read most, in constant memory.
//!
//! Space-Saving (Metwally, Agrawal, El Abbadi, 2005): at most `k` counters.
//! A key that is counted gets +1; a new key takes over the smallest counter
//! (inheriting its count, so it is over- never under-estimated). Every key
//! whose true count exceeds `n / k` is guaranteed to be in the set.

use std::collections::{BTreeSet, HashMap};
use std::hash::Hash;

/// The approximately most frequent keys of a stream. Every record is
/// O(log k): counters live in slots, ordered by count in a `BTreeSet`, so
/// the smallest is found without a scan.
#[derive(Debug)]
pub(crate) struct HotSet<K> {
    /// Key and count per slot.
    slots: Vec<(K, u64)>,
    index: HashMap<K, usize>,
    /// `(count, slot)` of every slot.
    order: BTreeSet<(u64, usize)>,
    capacity: usize,
}

impl<K: Hash + Eq + Clone> HotSet<K> {
    pub(crate) fn new(capacity: usize) -> Self {
        HotSet {
            slots: Vec::with_capacity(capacity),
            index: HashMap::with_capacity(capacity),
            order: BTreeSet::new(),
            capacity: capacity.max(1),
        }
    }

    pub(crate) fn record(&mut self, key: &K) {
        let slot = match self.index.get(key) {
            Some(&slot) => {
                self.order.remove(&(self.slots[slot].1, slot));
                self.slots[slot].1 += 1;
                slot
            }
            None if self.slots.len() < self.capacity => {
                self.slots.push((key.clone(), 1));
                self.index.insert(key.clone(), self.slots.len() - 1);
                self.slots.len() - 1
            }
            None => {
                // Take over the least counted slot, inheriting its count.
                let Some((min, slot)) = self.order.pop_first() else {
                    return;
                };
                self.index.remove(&self.slots[slot].0);
                self.slots[slot] = (key.clone(), min + 1);
                self.index.insert(key.clone(), slot);
                slot
            }
        };
        self.order.insert((self.slots[slot].1, slot));
    }

    /// The keys, most counted first.
    pub(crate) fn top(&self) -> Vec<K> {
        self.order
            .iter()
            .rev()
            .map(|&(_, slot)| self.slots[slot].0.clone())
            .collect()
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
        assert_eq!(hot.index.len(), 10);
        assert_eq!(hot.order.len(), 10);
    }
}
