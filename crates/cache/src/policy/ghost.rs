//! Ghost lists: bounded FIFO sets of keys that recently left the cache,
//! remembered without their values.

use std::collections::VecDeque;

use super::hash::U64Map;

/// The last `max` keys added, with multiplicity (a key added twice stays
/// until both entries have aged out or been taken).
#[derive(Debug, Default)]
pub(crate) struct Ghost {
    fifo: VecDeque<u64>,
    /// Per key: how many FIFO entries it has, and the sequence number of the
    /// latest.
    entries: U64Map<(u32, u64)>,
    /// Keys added so far.
    added: u64,
    max: usize,
}

impl Ghost {
    pub(crate) fn new(max: usize) -> Self {
        Ghost {
            max,
            ..Ghost::default()
        }
    }

    pub(crate) fn contains(&self, key: u64) -> bool {
        self.entries.contains_key(&key)
    }

    /// How many keys were added after the latest entry of `key` (0: it was
    /// the last one added), if it is remembered.
    pub(crate) fn age(&self, key: u64) -> Option<u64> {
        self.entries.get(&key).map(|&(_, at)| self.added - at)
    }

    /// Forgets one entry of `key`; whether there was one. Its slot in the
    /// FIFO stays and is skipped when it ages out.
    pub(crate) fn take(&mut self, key: u64) -> bool {
        self.decrement(key)
    }

    pub(crate) fn add(&mut self, key: u64) {
        if self.max == 0 {
            return;
        }
        self.fifo.push_back(key);
        self.added += 1;
        let entry = self.entries.entry(key).or_insert((0, 0));
        entry.0 += 1;
        entry.1 = self.added;
        while self.fifo.len() > self.max {
            if let Some(old) = self.fifo.pop_front() {
                self.decrement(old);
            }
        }
    }

    fn decrement(&mut self, key: u64) -> bool {
        match self.entries.get_mut(&key) {
            Some((n, _)) => {
                *n -= 1;
                if *n == 0 {
                    self.entries.remove(&key);
                }
                true
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_the_last_keys() {
        let mut g = Ghost::new(2);
        g.add(1);
        g.add(2);
        g.add(3);
        assert!(!g.contains(1) && g.contains(2) && g.contains(3));
        assert!(g.take(2));
        assert!(!g.contains(2) && !g.take(2));
        // The stale FIFO slot of 2 ages out without disturbing 3.
        g.add(4);
        assert!(g.contains(3) && g.contains(4));
        assert_eq!(g.entries.len(), 2);
        assert_eq!((g.age(4), g.age(3), g.age(1)), (Some(0), Some(1), None));
        g.add(3);
        assert_eq!(g.age(3), Some(0), "the latest entry counts");
        let mut off = Ghost::new(0);
        off.add(1);
        assert!(!off.contains(1));
    }
}
