//! Predictive prefetch: which key tends to follow which.
//!
//! A bounded first-order model: for each key, the successor that most often
//! follows it (Boyer–Moore majority vote: one candidate and a counter, so
//! constant memory per key). A successor is predicted once a key was seen
//! `MIN_OBSERVATIONS` times and the vote says the candidate follows it in
//! most cases.
//!
//! Prefetch pays only if prefetched keys are read: the model counts
//! precision over windows of `WINDOW` prefetches and switches itself off
//! below `PRECISION_FLOOR` (a random workload then pays only for the vote),
//! trying again after `RETRY_AFTER` reads, since workloads change.

use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::Hash;

const MIN_OBSERVATIONS: u32 = 4;
/// Predict when the vote margin is at least this share of observations
/// (a margin of 0.2 means the candidate followed at least 60 % of the time).
const MIN_MARGIN: f64 = 0.2;
/// Prefetches per precision window.
const WINDOW: u64 = 200;
/// Below this share of prefetched keys being read, prefetch turns off.
pub(crate) const PRECISION_FLOOR: f64 = 0.3;
/// Reads after which a disabled prefetch tries again.
const RETRY_AFTER: u64 = 50_000;

#[derive(Debug)]
struct Vote<K> {
    candidate: K,
    margin: u32,
    observations: u32,
}

/// Counters of the prefetcher.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct PrefetchCounts {
    pub(crate) issued: u64,
    pub(crate) used: u64,
    pub(crate) disabled: u64,
}

#[derive(Debug)]
pub(crate) struct Prefetcher<K> {
    votes: HashMap<K, Vote<K>>,
    capacity: usize,
    last: Option<K>,
    /// Prefetched and not yet read (bounded, oldest first).
    pending: VecDeque<K>,
    pending_set: HashSet<K>,
    enabled: bool,
    window_issued: u64,
    window_used: u64,
    reads_while_disabled: u64,
    pub(crate) counts: PrefetchCounts,
}

impl<K: Hash + Eq + Clone> Prefetcher<K> {
    /// A model of at most `capacity` keys.
    pub(crate) fn new(capacity: usize) -> Self {
        Prefetcher {
            votes: HashMap::new(),
            capacity: capacity.max(16),
            last: None,
            pending: VecDeque::new(),
            pending_set: HashSet::new(),
            enabled: true,
            window_issued: 0,
            window_used: 0,
            reads_while_disabled: 0,
            counts: PrefetchCounts::default(),
        }
    }

    pub(crate) fn is_enabled(&self) -> bool {
        self.enabled
    }

    /// Records a read of `key`; returns the key to prefetch, if any.
    pub(crate) fn on_read(&mut self, key: &K) -> Option<K> {
        if self.pending_set.remove(key) {
            self.counts.used += 1;
            self.window_used += 1;
        }
        if let Some(previous) = self.last.replace(key.clone()) {
            if previous != *key {
                self.learn(previous, key);
            }
        }
        if !self.enabled {
            self.reads_while_disabled += 1;
            if self.reads_while_disabled >= RETRY_AFTER {
                self.enabled = true;
                self.reads_while_disabled = 0;
            }
            return None;
        }
        let vote = self.votes.get(key)?;
        let confident = vote.observations >= MIN_OBSERVATIONS
            && f64::from(vote.margin) >= MIN_MARGIN * f64::from(vote.observations);
        if !confident || self.pending_set.contains(&vote.candidate) {
            return None;
        }
        Some(vote.candidate.clone())
    }

    /// Notes that `key` was prefetched (it was not in L1 and is being
    /// fetched); judges precision at the end of each window.
    pub(crate) fn issued(&mut self, key: K) {
        self.counts.issued += 1;
        self.window_issued += 1;
        if self.pending_set.insert(key.clone()) {
            self.pending.push_back(key);
        }
        while self.pending.len() > self.capacity {
            if let Some(old) = self.pending.pop_front() {
                self.pending_set.remove(&old);
            }
        }
        if self.window_issued >= WINDOW {
            let precision = self.window_used as f64 / self.window_issued as f64;
            if precision < PRECISION_FLOOR {
                self.enabled = false;
                self.counts.disabled += 1;
            }
            self.window_issued = 0;
            self.window_used = 0;
        }
    }

    fn learn(&mut self, previous: K, next: &K) {
        if !self.votes.contains_key(&previous) && self.votes.len() >= self.capacity {
            // Full: forget half the model. Crude, bounded, and cheap on
            // average; the keys that matter are relearnt quickly.
            let keep = self.capacity / 2;
            let mut kept = 0;
            self.votes.retain(|_, _| {
                kept += 1;
                kept <= keep
            });
        }
        let vote = self.votes.entry(previous).or_insert_with(|| Vote {
            candidate: next.clone(),
            margin: 0,
            observations: 0,
        });
        vote.observations += 1;
        if vote.candidate == *next {
            vote.margin += 1;
        } else if vote.margin == 0 {
            vote.candidate = next.clone();
            vote.margin = 1;
        } else {
            vote.margin -= 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn learns_a_successor_and_predicts_it() {
        let mut p = Prefetcher::new(1000);
        let mut predicted = Vec::new();
        for round in 0..10u64 {
            for (a, b) in [(1u64, 2u64), (3, 4)] {
                if let Some(next) = p.on_read(&a) {
                    predicted.push((round, a, next));
                    p.issued(next);
                }
                p.on_read(&b);
            }
        }
        assert!(predicted.iter().all(|(_, a, next)| *next == a + 1));
        assert!(predicted.len() >= 10, "{predicted:?}");
        assert!(p.counts.used >= 10);
        assert!(p.is_enabled());
    }

    #[test]
    fn switches_itself_off_when_predictions_are_not_read() {
        let mut p = Prefetcher::new(10_000);
        // 300 keys are each followed by a fixed successor 6 times...
        for _ in 0..6 {
            for a in 0..300u64 {
                p.on_read(&a);
                p.on_read(&(10_000 + a));
            }
        }
        p.pending_set.clear();
        // ...then by something else: the confident predictions go unread.
        let mut issued = 0;
        for round in 0..3 {
            for a in 0..300u64 {
                if let Some(next) = p.on_read(&a) {
                    p.issued(next);
                    issued += 1;
                }
                p.on_read(&(20_000 + round * 1000 + a));
            }
        }
        assert!(!p.is_enabled(), "issued {issued}, used {}", p.counts.used);
        assert_eq!(p.counts.disabled, 1);
        assert_eq!(issued, WINDOW, "nothing issued once off");
        // A random workload: the vote rarely gets confident at all.
        let mut q = Prefetcher::new(10_000);
        let mut rng = fastrand::Rng::with_seed(12345);
        let mut predictions = 0;
        for _ in 0..100_000 {
            if q.on_read(&rng.u64(..50)).is_some() {
                predictions += 1;
            }
        }
        assert!(
            predictions < 1_000,
            "{predictions} predictions on random keys"
        );
    }

    #[test]
    fn the_model_stays_bounded() {
        let mut p = Prefetcher::new(100);
        for k in 0..10_000u64 {
            p.on_read(&k);
        }
        assert!(p.votes.len() <= 100);
    }
}
