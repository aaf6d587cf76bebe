//! The update ids a worker has handled, bounded.

use std::collections::{HashSet, VecDeque};

/// The last `cap` handled update ids.
pub(crate) struct Dedupe {
    set: HashSet<i64>,
    order: VecDeque<i64>,
    cap: usize,
}

impl Dedupe {
    pub(crate) fn new(cap: usize) -> Dedupe {
        Dedupe {
            set: HashSet::new(),
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
