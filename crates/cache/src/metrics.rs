//! What the cache reports through the `metrics` facade (names per
//! docs/metrics.md; labels `bot` and `namespace` only).
//!
//! Latencies are recorded per Redis round trip and per load (both cost far
//! more than a histogram record). Counters are kept in the cache's own
//! atomics and exported as absolute values by
//! [`TieredCache::report_metrics`], which the worker calls periodically:
//! nothing is emitted on the L1 hit path.

use std::fmt::Display;
use std::hash::Hash;
use std::str::FromStr;
use std::sync::Once;
use std::time::Duration;

use metrics::{
    Unit, counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram,
};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::tiered::{Stats, TieredCache};

pub(crate) const L2_ROUND_TRIP: &str = "botfleet_cache_l2_round_trip_seconds";
pub(crate) const LOAD_DURATION: &str = "botfleet_cache_load_duration_seconds";
const REDIS_AVAILABLE: &str = "botfleet_cache_redis_available";

/// Name, description and source field of one exported counter.
type CounterSpec = (&'static str, &'static str, fn(&Stats) -> u64);

/// The counters exported from [`Stats`] with one label set: name,
/// description and the field they come from. (Hits and misses, labelled by
/// tier as well, are exported separately.)
const COUNTERS: &[CounterSpec] = &[
    ("botfleet_cache_loads_total", "Loader calls.", |s| s.loads),
    (
        "botfleet_cache_load_errors_total",
        "Loader calls that failed.",
        |s| s.load_errors,
    ),
    (
        "botfleet_cache_negative_hits_total",
        "Reads answered by a remembered absence.",
        |s| s.negative_hits,
    ),
    (
        "botfleet_cache_single_flight_waits_total",
        "Callers that waited for another caller's load.",
        |s| s.single_flight_waits,
    ),
    (
        "botfleet_cache_lease_waits_total",
        "Misses that waited for another process's load.",
        |s| s.lease_waits,
    ),
    (
        "botfleet_cache_evictions_total",
        "Entries evicted from L1 by the policy.",
        |s| s.evictions,
    ),
    (
        "botfleet_cache_expirations_total",
        "L1 entries found expired.",
        |s| s.expirations,
    ),
    (
        "botfleet_cache_l2_corrupt_total",
        "Undecodable values found in Redis.",
        |s| s.l2_corrupt,
    ),
    (
        "botfleet_cache_l2_unavailable_total",
        "Redis calls skipped or failed.",
        |s| s.l2_unavailable,
    ),
    (
        "botfleet_cache_l1_clears_total",
        "L1 cleared after a Redis or subscriber outage.",
        |s| s.l1_clears,
    ),
    (
        "botfleet_cache_invalidations_received_total",
        "Keys dropped on other processes' invalidations.",
        |s| s.invalidations_received,
    ),
    (
        "botfleet_cache_refreshes_total",
        "Background refreshes of entries near expiry.",
        |s| s.refreshes,
    ),
];

fn describe() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        for (name, text, _) in COUNTERS {
            describe_counter!(*name, Unit::Count, *text);
        }
        describe_counter!(
            "botfleet_cache_hits_total",
            Unit::Count,
            "Reads answered, by tier (l1, l2)."
        );
        describe_counter!(
            "botfleet_cache_misses_total",
            Unit::Count,
            "Reads a tier could not answer, by tier (l1, l2)."
        );
        describe_gauge!("botfleet_cache_l1_entries", Unit::Count, "Entries in L1.");
        describe_gauge!(
            "botfleet_cache_l1_capacity",
            Unit::Count,
            "L1's capacity (entries, or the weigher's unit)."
        );
        describe_gauge!(
            REDIS_AVAILABLE,
            "1 when Redis is reachable, 0 while the breaker is open."
        );
        describe_histogram!(
            L2_ROUND_TRIP,
            Unit::Seconds,
            "Time of one Redis round trip."
        );
        describe_histogram!(LOAD_DURATION, Unit::Seconds, "Time of one loader call.");
    });
}

pub(crate) fn record_l2_round_trip(elapsed: Duration) {
    histogram!(L2_ROUND_TRIP).record(elapsed.as_secs_f64());
}

pub(crate) fn record_load(bot: &str, namespace: &str, elapsed: Duration) {
    histogram!(LOAD_DURATION, "bot" => bot.to_owned(), "namespace" => namespace.to_owned())
        .record(elapsed.as_secs_f64());
}

impl<K, V> TieredCache<K, V>
where
    K: Hash + Eq + Clone + Display + FromStr + Send + Sync + 'static,
    V: Clone + Serialize + DeserializeOwned + Send + Sync + 'static,
{
    /// Exports this cache's counters to the installed `metrics` recorder
    /// (absolute values, labelled by bot and namespace). Call it
    /// periodically, for example every second.
    pub fn report_metrics(&self) {
        describe();
        let s = self.stats();
        let bot = self.bot().to_owned();
        let ns = self.namespace().to_owned();
        let labels = [("bot", bot.clone()), ("namespace", ns.clone())];
        let tiered = |tier: &'static str| {
            [
                ("bot", bot.clone()),
                ("namespace", ns.clone()),
                ("tier", tier.to_owned()),
            ]
        };
        counter!("botfleet_cache_hits_total", &tiered("l1")).absolute(s.l1_hits);
        counter!("botfleet_cache_hits_total", &tiered("l2")).absolute(s.l2_hits);
        counter!("botfleet_cache_misses_total", &tiered("l1")).absolute(s.l1_misses);
        counter!("botfleet_cache_misses_total", &tiered("l2")).absolute(s.l2_misses);
        for (name, _, field) in COUNTERS {
            counter!(*name, &labels).absolute(field(&s));
        }
        gauge!("botfleet_cache_l1_entries", &labels).set(s.l1_entries as f64);
        gauge!("botfleet_cache_l1_capacity", &labels).set(self.l1_capacity() as f64);
        if let Some(redis) = self.redis() {
            gauge!(REDIS_AVAILABLE).set(if redis.is_unavailable() { 0.0 } else { 1.0 });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::COUNTERS;

    #[test]
    fn names_follow_the_naming_rules() {
        for (name, _, _) in COUNTERS {
            assert!(
                name.starts_with("botfleet_cache_") && name.ends_with("_total"),
                "{name}"
            );
        }
    }
}
