//! The cache API: read-through over the tiers, single-flight, TTL with
//! jitter, negative caching.

use std::fmt::Display;
use std::hash::{BuildHasher, Hash};
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::time::Instant;

use crate::codec;
use crate::error::{BoxError, Error};
use crate::flight::Flights;
use crate::l1::{Cached, L1, Weigher};
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
    capacity: u64,
    weigher: Option<Weigher<K, V>>,
    ttl: Duration,
    negative_ttl: Duration,
    jitter: f64,
}

impl<K, V> TieredCacheBuilder<K, V> {
    /// Shares values through `redis` (L2): a value loaded by one process is
    /// found there by the others. Without it the cache is L1 and the loader.
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
    /// [`Error::TooLarge`] instead of being cached.
    pub fn max_value_bytes(mut self, max: usize) -> Self {
        self.max_value_bytes = max;
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
    /// Builds the cache.
    pub fn build(self) -> TieredCache<K, V> {
        let prefix = match &self.bot {
            Some(bot) => format!("bf:{bot}:{}:", self.namespace),
            None => format!("bf:{}:", self.namespace),
        };
        let channel = format!(
            "bf:inv:{}",
            prefix.trim_start_matches("bf:").trim_end_matches(':')
        );
        let inner = Arc::new_cyclic(|this: &std::sync::Weak<Inner<K, V>>| {
            let weak = this.clone();
            // After a Redis outage, entries may have missed invalidations:
            // correctness first, drop them all.
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
                max_value_bytes: self.max_value_bytes,
                flights: Flights::new(),
                namespace: self.namespace,
                ttl: self.ttl,
                negative_ttl: self.negative_ttl,
                jitter: self.jitter,
                random: std::collections::hash_map::RandomState::new(),
                sequence: AtomicU64::new(0),
                counters: Counters::default(),
                channel,
                _on_recover: on_recover,
                _on_invalidate: on_invalidate,
            }
        });
        TieredCache { inner }
    }
}

/// A snapshot of a cache's counters, for tests and reports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Reads answered by L1 (values and remembered absences).
    pub l1_hits: u64,
    /// Reads L1 could not answer.
    pub l1_misses: u64,
    /// Loader calls.
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
}

#[derive(Default)]
struct Counters {
    loads: AtomicU64,
    load_errors: AtomicU64,
    negative_hits: AtomicU64,
    single_flight_waits: AtomicU64,
    l2_hits: AtomicU64,
    l2_misses: AtomicU64,
    l2_corrupt: AtomicU64,
    l2_unavailable: AtomicU64,
    l1_clears: AtomicU64,
    invalidations_received: AtomicU64,
}

struct Inner<K, V> {
    l1: L1<K, V>,
    l2: Option<Redis>,
    /// `bf:[<bot>:]<namespace>:`, before each key in Redis.
    prefix: String,
    max_value_bytes: usize,
    flights: Flights<K, Result<Option<V>, Error>>,
    namespace: String,
    ttl: Duration,
    negative_ttl: Duration,
    jitter: f64,
    random: std::collections::hash_map::RandomState,
    sequence: AtomicU64,
    counters: Counters,
    /// Where this cache's invalidations are published.
    channel: String,
    /// Registered with Redis (which holds it weakly) to clear L1 on recovery.
    _on_recover: Arc<dyn Fn() + Send + Sync>,
    /// Registered with Redis to drop keys invalidated by other processes.
    _on_invalidate: Arc<crate::bus::Sink>,
}

/// A read-through cache over L1 memory, L2 Redis (optional) and a loader.
/// Cheap to clone: clones share the cache.
pub struct TieredCache<K, V> {
    inner: Arc<Inner<K, V>>,
}

impl<K, V> Clone for TieredCache<K, V> {
    fn clone(&self) -> Self {
        TieredCache {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<K, V> TieredCache<K, V>
where
    K: Hash + Eq + Clone + Display + FromStr + Send + Sync + 'static,
    V: Clone + Serialize + DeserializeOwned + Send + Sync + 'static,
{
    /// A builder for a cache of `namespace` (for example `profiles`).
    pub fn builder(namespace: impl Into<String>) -> TieredCacheBuilder<K, V> {
        TieredCacheBuilder {
            namespace: namespace.into(),
            bot: None,
            redis: None,
            max_value_bytes: DEFAULT_MAX_VALUE_BYTES,
            capacity: DEFAULT_CAPACITY,
            weigher: None,
            ttl: DEFAULT_TTL,
            negative_ttl: DEFAULT_NEGATIVE_TTL,
            jitter: DEFAULT_JITTER,
        }
    }

    /// The value of `key`: from L1, else from Redis, else from `loader`,
    /// whose result is written to Redis and L1 (`None` as a remembered
    /// absence for the negative TTL). Concurrent misses of one key in this
    /// process call the loader once and share its result; a loader error is
    /// returned to all of them and not cached. With Redis unreachable the
    /// call carries on with L1 and the loader, without error.
    pub async fn get_or_load<F, Fut, E>(&self, key: &K, loader: F) -> Result<Option<V>, Error>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Option<V>, E>>,
        E: Into<BoxError>,
    {
        if let Some(found) = self.lookup(key) {
            return Ok(found);
        }
        let inner = &self.inner;
        let (result, waited) = inner
            .flights
            .run(key, || async {
                // Another caller may have filled L1 between our miss and
                // this flight.
                match inner.l1.peek(key, Instant::now()) {
                    Some(Cached::Value(v)) => return Ok(Some(v)),
                    Some(Cached::Absent) => return Ok(None),
                    None => {}
                }
                if let Some(found) = self.l2_get(key).await {
                    return Ok(found);
                }
                inner.counters.loads.fetch_add(1, Ordering::Relaxed);
                match loader().await {
                    Ok(value) => {
                        self.store(key.clone(), value.clone(), None, false).await?;
                        Ok(value)
                    }
                    Err(error) => {
                        inner.counters.load_errors.fetch_add(1, Ordering::Relaxed);
                        Err(Error::Load {
                            namespace: inner.namespace.clone(),
                            key: key.to_string(),
                            source: Arc::new(error.into()),
                        })
                    }
                }
            })
            .await;
        if waited {
            inner
                .counters
                .single_flight_waits
                .fetch_add(1, Ordering::Relaxed);
        }
        result
    }

    /// The cached value of `key`, without loading. `Some(None)` is a
    /// remembered absence.
    pub fn get(&self, key: &K) -> Option<Option<V>> {
        self.lookup(key)
    }

    /// Caches `value` for `key` with the cache's TTL, in L1 and Redis.
    /// Other processes drop their L1 copy of `key`.
    pub async fn set(&self, key: K, value: V) -> Result<(), Error> {
        self.store(key, Some(value), None, true).await
    }

    /// Caches `value` for `key` for `ttl` (jitter applies).
    pub async fn set_with_ttl(&self, key: K, value: V, ttl: Duration) -> Result<(), Error> {
        self.store(key, Some(value), Some(ttl), true).await
    }

    /// Drops `key` from L1 and Redis.
    pub async fn invalidate(&self, key: &K) {
        self.invalidate_many(std::slice::from_ref(key)).await;
    }

    /// Drops every key of `keys` from L1 and Redis, and from the L1 of
    /// every other process (one Redis round trip: `DEL` and `PUBLISH`).
    pub async fn invalidate_many<'k>(&self, keys: impl IntoIterator<Item = &'k K>)
    where
        K: 'k,
    {
        let mut redis_keys = Vec::new();
        let mut texts = Vec::new();
        for key in keys {
            self.inner.l1.remove(key);
            redis_keys.push(self.redis_key(key));
            texts.push(key.to_string());
        }
        if let (Some(redis), false) = (&self.inner.l2, redis_keys.is_empty()) {
            let message = crate::bus::payload(redis.origin(), &texts);
            let channel = &self.inner.channel;
            let done = redis
                .run(|mut c| async move {
                    redis::pipe()
                        .del(&redis_keys)
                        .ignore()
                        .publish(channel, message)
                        .ignore()
                        .query_async::<()>(&mut c)
                        .await
                })
                .await;
            if done.is_none() {
                self.inner
                    .counters
                    .l2_unavailable
                    .fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// The Redis key of `key`: `bf:[<bot>:]<namespace>:<key>`.
    pub fn redis_key(&self, key: &K) -> String {
        format!("{}{key}", self.inner.prefix)
    }

    /// The namespace.
    pub fn namespace(&self) -> &str {
        &self.inner.namespace
    }

    /// The counters so far.
    pub fn stats(&self) -> Stats {
        let c = &self.inner.counters;
        let l1 = &self.inner.l1.counters;
        Stats {
            l1_hits: l1.hits.load(Ordering::Relaxed),
            l1_misses: l1.misses.load(Ordering::Relaxed),
            loads: c.loads.load(Ordering::Relaxed),
            load_errors: c.load_errors.load(Ordering::Relaxed),
            negative_hits: c.negative_hits.load(Ordering::Relaxed),
            single_flight_waits: c.single_flight_waits.load(Ordering::Relaxed),
            evictions: l1.evictions.load(Ordering::Relaxed),
            expirations: l1.expirations.load(Ordering::Relaxed),
            l1_entries: self.inner.l1.len() as u64,
            l2_hits: c.l2_hits.load(Ordering::Relaxed),
            l2_misses: c.l2_misses.load(Ordering::Relaxed),
            l2_corrupt: c.l2_corrupt.load(Ordering::Relaxed),
            l2_unavailable: c.l2_unavailable.load(Ordering::Relaxed),
            l1_clears: c.l1_clears.load(Ordering::Relaxed),
            invalidations_received: c.invalidations_received.load(Ordering::Relaxed),
        }
    }

    fn lookup(&self, key: &K) -> Option<Option<V>> {
        match self.inner.l1.get(key, Instant::now())? {
            Cached::Value(v) => Some(Some(v)),
            Cached::Absent => {
                self.inner
                    .counters
                    .negative_hits
                    .fetch_add(1, Ordering::Relaxed);
                Some(None)
            }
        }
    }

    /// Looks `key` up in Redis. `Some` when Redis answered with a value or
    /// an absence (now also in L1); `None` to carry on with the loader.
    async fn l2_get(&self, key: &K) -> Option<Option<V>> {
        let inner = &self.inner;
        let redis = inner.l2.as_ref()?;
        let redis_key = self.redis_key(key);
        let reply = redis
            .run(|mut c| async move {
                redis::pipe()
                    .get(&redis_key)
                    .pttl(&redis_key)
                    .query_async::<(Option<Vec<u8>>, i64)>(&mut c)
                    .await
            })
            .await;
        let Some((bytes, pttl)) = reply else {
            inner
                .counters
                .l2_unavailable
                .fetch_add(1, Ordering::Relaxed);
            return None;
        };
        let Some(bytes) = bytes else {
            inner.counters.l2_misses.fetch_add(1, Ordering::Relaxed);
            return None;
        };
        let Some(value) = codec::decode::<V>(&bytes) else {
            // Not ours, truncated, or of another shape: a miss; the load
            // that follows overwrites it.
            inner.counters.l2_corrupt.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(namespace = %inner.namespace, "Undecodable value in Redis; reloading it.");
            return None;
        };
        inner.counters.l2_hits.fetch_add(1, Ordering::Relaxed);
        // L1 keeps it no longer than Redis does.
        let remaining = u64::try_from(pttl).map_or(inner.ttl, Duration::from_millis);
        let found = match &value {
            Cached::Value(v) => Some(v.clone()),
            Cached::Absent => None,
        };
        let ttl = match value {
            Cached::Value(_) => inner.ttl,
            Cached::Absent => inner.negative_ttl,
        }
        .min(remaining);
        inner.l1.insert(key.clone(), value, Instant::now() + ttl);
        Some(found)
    }

    /// Writes to Redis (and tells other processes when `publish`: for
    /// writes, not for loads of a value the source already had) and L1.
    async fn store(
        &self,
        key: K,
        value: Option<V>,
        ttl: Option<Duration>,
        publish: bool,
    ) -> Result<(), Error> {
        let inner = &self.inner;
        let (value, ttl) = match value {
            Some(v) => (Cached::Value(v), ttl.unwrap_or(inner.ttl)),
            None if inner.negative_ttl.is_zero() => return Ok(()),
            None => (Cached::Absent, inner.negative_ttl),
        };
        let ttl = self.jittered(ttl);
        if let Some(redis) = &inner.l2 {
            let bytes = codec::encode(&value).map_err(|e| Error::Load {
                namespace: inner.namespace.clone(),
                key: key.to_string(),
                source: Arc::new(Box::new(e)),
            })?;
            if bytes.len() > inner.max_value_bytes {
                return Err(Error::TooLarge {
                    namespace: inner.namespace.clone(),
                    key: key.to_string(),
                    size: bytes.len(),
                    max: inner.max_value_bytes,
                });
            }
            let redis_key = self.redis_key(&key);
            let millis = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
            let message = publish.then(|| crate::bus::payload(redis.origin(), &[key.to_string()]));
            let channel = &inner.channel;
            let done = redis
                .run(|mut c| async move {
                    let mut pipe = redis::pipe();
                    pipe.cmd("SET")
                        .arg(&redis_key)
                        .arg(bytes)
                        .arg("PX")
                        .arg(millis)
                        .ignore();
                    if let Some(message) = message {
                        pipe.publish(channel, message).ignore();
                    }
                    pipe.query_async::<()>(&mut c).await
                })
                .await;
            if done.is_none() {
                inner
                    .counters
                    .l2_unavailable
                    .fetch_add(1, Ordering::Relaxed);
            }
        }
        inner.l1.insert(key, value, Instant::now() + ttl);
        Ok(())
    }

    /// `ttl` minus a random share of up to `jitter` of it.
    fn jittered(&self, ttl: Duration) -> Duration {
        if self.inner.jitter == 0.0 {
            return ttl;
        }
        let n = self.inner.sequence.fetch_add(1, Ordering::Relaxed);
        let r = self.inner.random.hash_one(n) as f64 / u64::MAX as f64;
        ttl.mul_f64(1.0 - self.inner.jitter * r)
    }
}
