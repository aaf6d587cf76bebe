//! Every tiered cache of the process, for a report of them all
//! ([`all_stats`]): the worker SDK sends their sum to the supervisor.

use parking_lot::Mutex;

use super::Stats;

/// A cache's counters, or `None` once the cache is dropped.
type Source = Box<dyn Fn() -> Option<Stats> + Send + Sync>;

static CACHES: Mutex<Vec<Source>> = Mutex::new(Vec::new());

pub(super) fn register(source: Source) {
    CACHES.lock().push(source);
}

/// The counters of every tiered cache of this process still alive (caches
/// dropped are forgotten).
pub fn all_stats() -> Vec<Stats> {
    let mut caches = CACHES.lock();
    let mut out = Vec::with_capacity(caches.len());
    caches.retain(|source| match source() {
        Some(stats) => {
            out.push(stats);
            true
        }
        None => false,
    });
    out
}
