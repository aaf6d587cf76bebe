//! The names a worker reports in its `stats` message, typed: the Rust SDK
//! writes them, the supervisor sums them, the demo and the benchmarks read
//! them back, all through [`Stat`] (docs/protocol.md, "Worker stats").
//!
//! A worker in another language may send names of its own; [`Kind::of`]
//! tells a counter from a gauge for those by the documented rule (counters
//! end in `_total`, as in Prometheus), and the known names by this table.

/// Whether a stat is a count since the worker started or a value now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Only grows while the worker lives; the supervisor keeps a worker's
    /// last count when it exits, so a bot's sum only grows.
    Counter,
    /// A value now; it leaves with its worker.
    Gauge,
}

impl Kind {
    /// The kind of any stat name: the table's for the names of [`Stat`],
    /// else by the naming rule (`_total` is a counter).
    pub fn of(name: &str) -> Kind {
        match Stat::from_name(name) {
            Some(stat) => stat.kind(),
            None if name.ends_with("_total") => Kind::Counter,
            None => Kind::Gauge,
        }
    }
}

macro_rules! stats {
    ($($(#[$doc:meta])* $variant:ident = $name:literal, $kind:ident;)*) => {
        /// A stat the Rust SDK reports.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Stat {
            $($(#[$doc])* $variant,)*
        }

        impl Stat {
            /// Every stat, in the order docs/protocol.md lists them.
            pub const ALL: &'static [Stat] = &[$(Stat::$variant,)*];

            /// The name on the wire.
            pub const fn name(self) -> &'static str {
                match self {
                    $(Stat::$variant => $name,)*
                }
            }

            /// Counter or gauge.
            pub const fn kind(self) -> Kind {
                match self {
                    $(Stat::$variant => Kind::$kind,)*
                }
            }

            /// The stat of a name on the wire, if it is one of the SDK's.
            pub fn from_name(name: &str) -> Option<Stat> {
                match name {
                    $($name => Some(Stat::$variant),)*
                    _ => None,
                }
            }
        }
    };
}

stats! {
    /// Updates handled.
    Handled = "handled_total", Counter;
    /// Time in handlers, µs (what follows is part of it).
    HandlerUs = "handler_us_total", Counter;
    /// Bot API calls answered.
    ApiCalls = "api_calls_total", Counter;
    /// Time handlers waited for Bot API calls (the round trip through the
    /// supervisor, its limiter and Telegram), µs.
    ApiUs = "api_us_total", Counter;
    /// Queries through the bot's `Database`.
    DbQueries = "db_queries_total", Counter;
    /// Their time, µs.
    DbUs = "db_us_total", Counter;
    /// Time handlers waited in `Batcher::write` for their row, µs.
    DbBatchWaitUs = "db_batch_wait_us_total", Counter;
    /// The pool's size.
    DbPoolSize = "db_pool_size", Gauge;
    /// Connections open now.
    DbPoolOpen = "db_pool_open", Gauge;
    /// Connections in use now.
    DbPoolInUse = "db_pool_in_use", Gauge;
    /// Tasks waiting for a connection now.
    DbPoolWaiters = "db_pool_waiters", Gauge;
    /// L1 hits of every tiered cache of the process.
    CacheL1Hits = "cache_l1_hits_total", Counter;
    /// L1 misses.
    CacheL1Misses = "cache_l1_misses_total", Counter;
    /// L2 (Redis) hits.
    CacheL2Hits = "cache_l2_hits_total", Counter;
    /// L2 misses.
    CacheL2Misses = "cache_l2_misses_total", Counter;
    /// Loader calls.
    CacheLoads = "cache_loads_total", Counter;
}

impl std::fmt::Display for Stat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_follow_the_rule() {
        for &stat in Stat::ALL {
            assert_eq!(Stat::from_name(stat.name()), Some(stat));
            // The table agrees with the rule other languages rely on.
            let by_rule = if stat.name().ends_with("_total") {
                Kind::Counter
            } else {
                Kind::Gauge
            };
            assert_eq!(stat.kind(), by_rule, "{stat}");
        }
        assert_eq!(Kind::of("my_events_total"), Kind::Counter);
        assert_eq!(Kind::of("queue_depth"), Kind::Gauge);
        assert_eq!(Stat::from_name("handled"), None);
    }
}
