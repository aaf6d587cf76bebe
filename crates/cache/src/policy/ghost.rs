//! Ghost lists: bounded FIFO sets of keys that recently left the cache,
//! remembered without their values.

use std::collections::VecDeque;

use super::hash::U64Map;

/// The last `max` keys added, with multiplicity (a key added twice stays
/// until both entries have aged out or been taken).
#[derive(Debug, Default)]
pub(crate) struct Ghost {
    fifo: VecDeque<u64>,
    counts: U64Map<u32>,
    max: usize,
}

impl Ghost {
    pub(crate) fn new(max: usize) -> Self {
        Ghost {
            max,
            ..Ghost::default()
        }
    }

    /// Distinct keys remembered.
    pub(crate) fn len(&self) -> usize {
        self.counts.len()
    }

    pub(crate) fn contains(&self, key: u64) -> bool {
        self.counts.contains_key(&key)
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
        *self.counts.entry(key).or_insert(0) += 1;
        while self.fifo.len() > self.max {
            if let Some(old) = self.fifo.pop_front() {
                self.decrement(old);
            }
        }
    }

    fn decrement(&mut self, key: u64) -> bool {
        match self.counts.get_mut(&key) {
            Some(n) => {
                *n -= 1;
                if *n == 0 {
                    self.counts.remove(&key);
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
        assert_eq!(g.len(), 2);
        let mut off = Ghost::new(0);
        off.add(1);
        assert!(!off.contains(1));
    }
}
