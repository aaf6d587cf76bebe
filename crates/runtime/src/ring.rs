//! Consistent hashing of chats onto workers: adding or removing a worker
//! moves only the chats of its share of the ring.

use std::collections::BTreeMap;

/// Points per worker on the ring: enough for an even share with a few
/// workers.
const POINTS: u64 = 64;

/// Workers placed on a hash ring.
#[derive(Debug, Default)]
pub(crate) struct Ring {
    points: BTreeMap<u64, u32>,
}

impl Ring {
    pub(crate) fn add(&mut self, worker: u32) {
        for i in 0..POINTS {
            self.points.insert(mix(u64::from(worker) << 16 | i), worker);
        }
    }

    pub(crate) fn remove(&mut self, worker: u32) {
        self.points.retain(|_, w| *w != worker);
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.points.is_empty()
    }

    /// The worker that owns `key`.
    pub(crate) fn pick(&self, key: i64) -> Option<u32> {
        let h = mix(key as u64 ^ 0x5bd1_e995_5bd1_e995);
        self.points
            .range(h..)
            .next()
            .or_else(|| self.points.iter().next())
            .map(|(_, &w)| w)
    }
}

/// splitmix64's finalizer: a cheap, well-spread 64-bit hash.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_worker_takes_a_fair_share_and_moves_nothing_else() {
        let mut ring = Ring::default();
        for w in 1..=4 {
            ring.add(w);
        }
        let before: Vec<u32> = (0..10_000).map(|k| ring.pick(k).unwrap()).collect();
        for w in 1..=4 {
            let share = before.iter().filter(|&&x| x == w).count();
            assert!((1_500..=3_500).contains(&share), "worker {w}: {share}");
        }
        ring.add(5);
        let after: Vec<u32> = (0..10_000).map(|k| ring.pick(k).unwrap()).collect();
        let moved = before.iter().zip(&after).filter(|(a, b)| a != b).count();
        assert!(after.iter().zip(&before).all(|(a, b)| a == b || *a == 5));
        assert!((1_000..=3_000).contains(&moved), "{moved} chats moved");
        ring.remove(5);
        let back: Vec<u32> = (0..10_000).map(|k| ring.pick(k).unwrap()).collect();
        assert_eq!(back, before);
        assert_eq!(Ring::default().pick(1), None);
    }
}
