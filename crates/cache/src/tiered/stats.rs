//! The counters of a cache and their snapshot.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::l1::L1Counters;

/// A snapshot of a cache's counters, for tests and reports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Reads answered by L1 (values and remembered absences).
    pub l1_hits: u64,
    /// Reads L1 could not answer.
    pub l1_misses: u64,
    /// Loader calls (a batch loader call counts once).
    pub loads: u64,
    /// Loader calls that failed.
    pub load_errors: u64,
    /// Reads answered "not found" from a remembered absence.
    pub negative_hits: u64,
    /// Callers that waited for another caller's load of the same key.
    pub single_flight_waits: u64,
    /// Entries evicted by the L1 policy.
    pub evictions: u64,
    /// Entries found expired.
    pub expirations: u64,
    /// Entries in L1 now.
    pub l1_entries: u64,
    /// L1 misses answered by Redis.
    pub l2_hits: u64,
    /// L1 misses Redis did not have.
    pub l2_misses: u64,
    /// Values in Redis that could not be decoded (treated as misses and
    /// overwritten).
    pub l2_corrupt: u64,
    /// Redis calls skipped or failed (Redis unreachable or slow).
    pub l2_unavailable: u64,
    /// Times L1 was cleared because Redis (or the invalidation subscriber)
    /// came back after an outage.
    pub l1_clears: u64,
    /// Keys dropped from L1 on invalidations from other processes.
    pub invalidations_received: u64,
    /// Misses that waited for another process's load (it held the lease).
    pub lease_waits: u64,
    /// Background reloads of entries read near the end of their TTL.
    pub refreshes: u64,
    /// Entries put in L1 by warming at start.
    pub warmed: u64,
    /// Successors fetched ahead of their read.
    pub prefetch_issued: u64,
    /// Prefetched keys that were then read.
    pub prefetch_used: u64,
    /// Times prefetch switched itself off for low precision.
    pub prefetch_disabled: u64,
    /// Whether prefetch is on now.
    pub prefetch_on: bool,
}

#[derive(Default)]
pub(crate) struct Counters {
    pub(super) loads: AtomicU64,
    pub(super) load_errors: AtomicU64,
    pub(super) negative_hits: AtomicU64,
    pub(super) single_flight_waits: AtomicU64,
    pub(super) l2_hits: AtomicU64,
    pub(super) l2_misses: AtomicU64,
    pub(super) l2_corrupt: AtomicU64,
    pub(super) l2_unavailable: AtomicU64,
    pub(super) l1_clears: AtomicU64,
    pub(super) invalidations_received: AtomicU64,
    pub(super) lease_waits: AtomicU64,
    pub(crate) refreshes: AtomicU64,
    pub(crate) warmed: AtomicU64,
}

impl Counters {
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub(super) fn snapshot(&self, l1: &L1Counters, l1_entries: u64) -> Stats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Stats {
            l1_hits: get(&l1.hits),
            l1_misses: get(&l1.misses),
            loads: get(&self.loads),
            load_errors: get(&self.load_errors),
            negative_hits: get(&self.negative_hits),
            single_flight_waits: get(&self.single_flight_waits),
            evictions: get(&l1.evictions),
            expirations: get(&l1.expirations),
            l1_entries,
            l2_hits: get(&self.l2_hits),
            l2_misses: get(&self.l2_misses),
            l2_corrupt: get(&self.l2_corrupt),
            l2_unavailable: get(&self.l2_unavailable),
            l1_clears: get(&self.l1_clears),
            invalidations_received: get(&self.invalidations_received),
            lease_waits: get(&self.lease_waits),
            refreshes: get(&self.refreshes),
            warmed: get(&self.warmed),
            ..Stats::default()
        }
    }
}
