//! The update ids a worker has handled, bounded.

use std::collections::{HashSet, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};

/// The last `cap` handled update ids.
pub(crate) struct Dedupe {
    set: HashSet<i64, BuildHasherDefault<IdHasher>>,
    order: VecDeque<i64>,
    cap: usize,
}

impl Dedupe {
    pub(crate) fn new(cap: usize) -> Dedupe {
        Dedupe {
            set: HashSet::default(),
            order: VecDeque::new(),
            cap,
        }
    }

    pub(crate) fn contains(&self, id: i64) -> bool {
        self.set.contains(&id)
    }

    pub(crate) fn insert(&mut self, id: i64) {
        if self.set.insert(id) {
            self.order.push_back(id);
            while self.order.len() > self.cap {
                if let Some(old) = self.order.pop_front() {
                    self.set.remove(&old);
                }
            }
        }
    }
}

/// Update ids come from Telegram, not from an attacker choosing hash
/// collisions, and mostly in sequence: one multiplication spreads them
/// (SipHash cost more than the rest of the lookup).
#[derive(Default)]
pub(crate) struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_i64(&mut self, id: i64) {
        self.0 = (id as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_the_last_ids_only() {
        let mut d = Dedupe::new(3);
        for id in 1..=4 {
            d.insert(id);
        }
        d.insert(4);
        assert!(!d.contains(1));
        assert!((2..=4).all(|id| d.contains(id)));
        assert_eq!(d.order.len(), 3);
    }
}
