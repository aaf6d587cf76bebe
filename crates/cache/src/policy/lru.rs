//! Plain least-recently-used eviction: the reference every policy is
//! compared with.

use super::EvictionPolicy;
use super::lists::Lists;

/// Evicts the least recently used key. Weighted: the capacity is a total
/// weight, and a key heavier than the capacity is never admitted.
#[derive(Debug)]
pub struct Lru {
    lists: Lists<1>,
    capacity: u64,
}

impl Lru {
    /// An LRU holding up to `capacity` total weight (entries, when every
    /// weight is 1).
    pub fn new(capacity: u64) -> Self {
        Lru {
            lists: Lists::new(),
            capacity,
        }
    }
}

impl EvictionPolicy for Lru {
    fn contains(&self, key: u64) -> bool {
        self.lists.list_of(key).is_some()
    }

    fn record_hit(&mut self, key: u64) {
        self.lists.move_to(0, key);
    }

    fn record_miss(&mut self, _key: u64) {}

    fn insert(&mut self, key: u64, weight: u64, evicted: &mut Vec<u64>) {
        if weight > self.capacity {
            self.lists.remove(key);
            evicted.push(key);
            return;
        }
        if self.contains(key) {
            self.lists.set_weight(key, weight);
            self.lists.move_to(0, key);
        } else {
            self.lists.push(0, key, weight);
        }
        while self.lists.weight(0) > self.capacity {
            let Some(victim) = self.lists.lru(0) else {
                break;
            };
            self.lists.remove(victim);
            evicted.push(victim);
        }
    }

    fn remove(&mut self, key: u64) {
        self.lists.remove(key);
    }

    fn len(&self) -> usize {
        self.lists.total_len()
    }

    fn weight(&self) -> u64 {
        self.lists.weight(0)
    }
}
