//! [`TieredCacheBuilder`]: how a cache is configured.

use std::fmt::Display;
use std::hash::Hash;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::stats::Counters;
use super::{Inner, Tagger, TieredCache};
use crate::flight::Flights;
use crate::l1::{L1, Weigher};
use crate::l2::Redis;

/// How long values stay when nothing else is said.
pub const DEFAULT_TTL: Duration = Duration::from_secs(300);
/// How long "not found" is remembered when nothing else is said.
pub const DEFAULT_NEGATIVE_TTL: Duration = Duration::from_secs(30);
/// The default share of the TTL taken off at random.
pub const DEFAULT_JITTER: f64 = 0.1;
/// The default L1 capacity, in entries.
pub const DEFAULT_CAPACITY: u64 = 10_000;
/// The default largest encoded value.
pub const DEFAULT_MAX_VALUE_BYTES: usize = 1 << 20;

/// Builds a [`TieredCache`].
#[must_use]
pub struct TieredCacheBuilder<K, V> {
    namespace: String,
    bot: Option<String>,
    redis: Option<Redis>,
    max_value_bytes: usize,
    lease: Option<Duration>,
    tagger: Option<Tagger<K, V>>,
    refresh_ahead: Option<f64>,
    hot_keys: usize,
    prefetch_keys: usize,
    capacity: u64,
    weigher: Option<Weigher<K, V>>,
    ttl: Duration,
    negative_ttl: Duration,
    jitter: f64,
}

impl<K, V> TieredCacheBuilder<K, V> {
    pub(super) fn new(namespace: String) -> Self {
        TieredCacheBuilder {
            namespace,
            bot: None,
            redis: None,
            max_value_bytes: DEFAULT_MAX_VALUE_BYTES,
            lease: None,
            tagger: None,
            refresh_ahead: None,
            hot_keys: 0,
            prefetch_keys: 0,
            capacity: DEFAULT_CAPACITY,
            weigher: None,
            ttl: DEFAULT_TTL,
            negative_ttl: DEFAULT_NEGATIVE_TTL,
            jitter: DEFAULT_JITTER,
        }
    }

    /// Shares values through `redis` (L2): a value loaded by one process is
    /// found there by the others, and writes reach their L1. Without it the
    /// cache is L1 and the loader.
    pub fn redis(mut self, redis: Redis) -> Self {
        self.redis = Some(redis);
        self
    }

    /// The bot this cache belongs to; it prefixes the Redis keys
    /// (`bf:<bot>:<namespace>:<key>`), so two bots never share entries.
    pub fn bot(mut self, bot: impl Into<String>) -> Self {
        self.bot = Some(bot.into());
        self
    }

    /// Values whose encoding is larger are refused with
    /// [`Error::TooLarge`](crate::Error::TooLarge) instead of being cached.
    pub fn max_value_bytes(mut self, max: usize) -> Self {
        self.max_value_bytes = max;
        self
    }

    /// Across processes, only one loads a missing key: it takes a lease in
    /// Redis (`SET NX PX`) for at most `lease`; the others wait for its value
    /// to appear in Redis, and load it themselves if the lease runs out (a
    /// dead leaseholder blocks nobody for longer).
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = Some(lease);
        self
    }

    /// Tags each value with the rows it depends on (for example
    /// `user:42`), so [`TieredCache::invalidate_tag`] can drop every entry
    /// built from a row that changed, in every process.
    pub fn tags(mut self, tagger: impl Fn(&K, &V) -> Vec<String> + Send + Sync + 'static) -> Self {
        self.tagger = Some(Arc::new(tagger));
        self
    }

    /// Reads in the last `share` of an entry's TTL (0.05 to 0.9) reload it
    /// in the background while the current value is served, so hot keys
    /// never expire under their readers. It takes a loader known to the
    /// cache: see [`TieredCache::with_loader`].
    pub fn refresh_ahead(mut self, share: f64) -> Self {
        self.refresh_ahead = Some(share.clamp(0.05, 0.9));
        self
    }

    /// Tracks the `top_k` most read keys (in constant memory), so
    /// [`TieredCache::persist_hot_set`] can save them to Redis and a
    /// restarted process can [`TieredCache::warm`] its L1 before serving.
    pub fn warming(mut self, top_k: usize) -> Self {
        self.hot_keys = top_k;
        self
    }

    /// Learns which key usually follows which (a model of up to
    /// `model_keys` keys) and, when a read's successor is predicted with
    /// confidence and not in L1, fetches it from Redis in the background.
    /// Precision is measured; below 30 % prefetch switches itself off for a
    /// while, so workloads without patterns pay nothing. Needs Redis.
    pub fn prefetch(mut self, model_keys: usize) -> Self {
        self.prefetch_keys = model_keys;
        self
    }

    /// The L1 capacity: entries, or total weight with a weigher.
    pub fn capacity(mut self, capacity: u64) -> Self {
        self.capacity = capacity;
        self
    }

    /// Weighs entries (for example by their size in bytes); the capacity is
    /// then a total weight.
    pub fn weigher(mut self, weigher: impl Fn(&K, &V) -> u64 + Send + Sync + 'static) -> Self {
        self.weigher = Some(Arc::new(weigher));
        self
    }

    /// How long a value stays (before jitter).
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// How long "not found" is remembered; zero disables negative caching.
    pub fn negative_ttl(mut self, ttl: Duration) -> Self {
        self.negative_ttl = ttl;
        self
    }

    /// The share of each TTL taken off at random (0 to 0.5), so entries
    /// loaded together do not expire together.
    pub fn jitter(mut self, jitter: f64) -> Self {
        self.jitter = jitter.clamp(0.0, 0.5);
        self
    }

    /// The namespace, as given to [`TieredCache::builder`].
    pub fn get_namespace(&self) -> &str {
        &self.namespace
    }

    /// The configured TTL.
    pub fn get_ttl(&self) -> Duration {
        self.ttl
    }
}

impl<K, V> TieredCacheBuilder<K, V>
where
    K: Hash + Eq + Clone + Display + FromStr + Send + Sync + 'static,
    V: Clone + Serialize + DeserializeOwned + Send + Sync + 'static,
{
    /// Builds the cache. With Redis, it subscribes to invalidations from
    /// other processes (which needs a tokio runtime).
    pub fn build(self) -> TieredCache<K, V> {
        let prefix = match &self.bot {
            Some(bot) => format!("bf:{bot}:{}:", self.namespace),
            None => format!("bf:{}:", self.namespace),
        };
        let channel = format!(
            "bf:inv:{}",
            prefix.trim_start_matches("bf:").trim_end_matches(':')
        );
        let has_redis = self.redis.is_some();
        let inner = Arc::new_cyclic(|this: &Weak<Inner<K, V>>| {
            // After a Redis outage, entries may have missed invalidations:
            // correctness first, drop them all.
            let weak = this.clone();
            let on_recover: Arc<dyn Fn() + Send + Sync> = Arc::new(move || {
                if let Some(inner) = weak.upgrade() {
                    inner.l1.clear();
                    inner.counters.l1_clears.fetch_add(1, Ordering::Relaxed);
                }
            });
            // Keys set or invalidated by other processes leave L1.
            let weak = this.clone();
            let on_invalidate: Arc<crate::bus::Sink> = Arc::new(move |keys: &[String]| {
                if let Some(inner) = weak.upgrade() {
                    for key in keys.iter().filter_map(|k| k.parse::<K>().ok()) {
                        inner.l1.remove(&key);
                    }
                    inner
                        .counters
                        .invalidations_received
                        .fetch_add(keys.len() as u64, Ordering::Relaxed);
                }
            });
            if let Some(redis) = &self.redis {
                redis.on_recover(&on_recover);
                redis.subscribe(&channel, &on_invalidate);
            }
            Inner {
                l1: L1::new(self.capacity, self.weigher),
                l2: self.redis,
                prefix,
                channel,
                max_value_bytes: self.max_value_bytes,
                lease: self.lease,
                tagger: self.tagger,
                refresh_ahead: self.refresh_ahead,
                prefetch: (self.prefetch_keys > 0 && has_redis).then(|| {
                    parking_lot::Mutex::new(crate::prefetch::Prefetcher::new(self.prefetch_keys))
                }),
                hot: (self.hot_keys > 0)
                    .then(|| parking_lot::Mutex::new(crate::hot::HotSet::new(self.hot_keys))),
                tag_index: parking_lot::Mutex::new(super::tags::TagIndex::new(self.capacity)),
                flights: Flights::new(),
                namespace: self.namespace,
                bot: self.bot.unwrap_or_default(),
                ttl: self.ttl,
                negative_ttl: self.negative_ttl,
                jitter: self.jitter,
                sequence: AtomicU64::new(0),
                counters: Counters::default(),
                _on_recover: on_recover,
                _on_invalidate: on_invalidate,
            }
        });
        let weak = Arc::downgrade(&inner);
        super::registry::register(Box::new(move |report| {
            weak.upgrade().map(|inner| {
                let cache = TieredCache { inner };
                if report {
                    cache.report_metrics();
                }
                cache.stats()
            })
        }));
        TieredCache { inner }
    }
}
