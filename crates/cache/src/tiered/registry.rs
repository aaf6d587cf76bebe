//! Every tiered cache of the process, for a report of them all: their
//! counters ([`all_stats`]), which the worker SDK sends summed to the
//! supervisor, and their metrics ([`report_all_metrics`]), which it
//! forwards each second.

use parking_lot::Mutex;

use super::Stats;

/// A cache's counters, or `None` once the cache is dropped; with `true`,
/// the cache also exports them as metrics (`TieredCache::report_metrics`).
type Source = Box<dyn Fn(bool) -> Option<Stats> + Send + Sync>;

static CACHES: Mutex<Vec<Source>> = Mutex::new(Vec::new());

pub(super) fn register(source: Source) {
    CACHES.lock().push(source);
}

/// The counters of every tiered cache of this process still alive (caches
/// dropped are forgotten).
pub fn all_stats() -> Vec<Stats> {
    each(false)
}

/// Exports the metrics of every tiered cache of this process still alive,
/// as `TieredCache::report_metrics` does for one.
pub fn report_all_metrics() {
    each(true);
}

fn each(report: bool) -> Vec<Stats> {
    let mut caches = CACHES.lock();
    let mut out = Vec::with_capacity(caches.len());
    caches.retain(|source| match source(report) {
        Some(stats) => {
            out.push(stats);
            true
        }
        None => false,
    });
    out
}
