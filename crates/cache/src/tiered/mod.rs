//! The cache API: read-through over L1, Redis and a loader, single-flight,
//! TTL with jitter, negative caching, batch reads.

mod builder;
mod registry;
mod remote;

pub use registry::{all_stats, report_all_metrics};
mod stats;
mod tags;

use std::collections::HashMap;
use std::fmt::Display;
use std::hash::Hash;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::time::Instant;

pub use builder::{
    DEFAULT_CAPACITY, DEFAULT_JITTER, DEFAULT_MAX_VALUE_BYTES, DEFAULT_NEGATIVE_TTL, DEFAULT_TTL,
    TieredCacheBuilder,
};
use remote::Lease;
use stats::Counters;
pub use stats::Stats;

use crate::error::{BoxError, Error};
use crate::flight::Flights;
use crate::l1::{Cached, L1};
use crate::l2::Redis;

/// Derives the tags of a value.
pub(crate) type Tagger<K, V> = Arc<dyn Fn(&K, &V) -> Vec<String> + Send + Sync>;

struct Inner<K, V> {
    l1: L1<K, V>,
    l2: Option<Redis>,
    /// `bf:[<bot>:]<namespace>:`, before each key in Redis.
    prefix: String,
    /// Where this cache's invalidations are published.
    channel: String,
    max_value_bytes: usize,
    lease: Option<Duration>,
    tagger: Option<Tagger<K, V>>,
    refresh_ahead: Option<f64>,
    /// The successor model, when prefetch is on.
    prefetch: Option<parking_lot::Mutex<crate::prefetch::Prefetcher<K>>>,
    /// The most read keys, when warming is on.
    hot: Option<parking_lot::Mutex<crate::hot::HotSet<K>>>,
    /// Which L1 keys carry each tag (may name keys already gone from L1).
    tag_index: parking_lot::Mutex<tags::TagIndex<K>>,
    flights: Flights<K, Result<Option<V>, Error>>,
    namespace: String,
    bot: String,
    ttl: Duration,
    negative_ttl: Duration,
    jitter: f64,
    sequence: AtomicU64,
    counters: Counters,
    /// Registered with Redis (which holds it weakly) to clear L1 on recovery.
    _on_recover: Arc<dyn Fn() + Send + Sync>,
    /// Registered with Redis to drop keys invalidated by other processes.
    _on_invalidate: Arc<crate::bus::Sink>,
}

/// A read-through cache over L1 memory, L2 Redis (optional) and a loader.
/// Cheap to clone: clones share the cache.
///
/// Keys are written to Redis and invalidation messages as their `Display`
/// text and read back with `FromStr`.
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
        TieredCacheBuilder::new(namespace.into())
    }

    /// The value of `key`: from L1, else from Redis, else from `loader`,
    /// whose result is written to Redis and L1 (`None` as a remembered
    /// absence for the negative TTL). Concurrent misses of one key in this
    /// process call the loader once and share its result; with a lease,
    /// misses in other processes wait for it too. A loader error is returned
    /// to every waiter and not cached. With Redis unreachable the call
    /// carries on with L1 and the loader, without error.
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
                let lease = match self.acquire_lease(key).await {
                    Lease::Waited(found) => return Ok(found),
                    lease => lease,
                };
                Counters::add(&inner.counters.loads, 1);
                let started = Instant::now();
                let loaded = loader().await;
                crate::metrics::record_load(&inner.bot, &inner.namespace, started.elapsed());
                let stored = match &loaded {
                    Ok(value) => {
                        self.store(key.clone(), value.clone(), None, false, false)
                            .await
                    }
                    Err(_) => Ok(()),
                };
                // Released after the value is in Redis, so the processes
                // waiting on the lease find it there.
                if let Lease::Held(token) = lease {
                    self.release_lease(key, token).await;
                }
                stored?;
                loaded.map_err(|error| {
                    Counters::add(&inner.counters.load_errors, 1);
                    Error::Load {
                        namespace: inner.namespace.clone(),
                        key: key.to_string(),
                        source: Arc::new(error.into()),
                    }
                })
            })
            .await;
        if waited {
            Counters::add(&inner.counters.single_flight_waits, 1);
        }
        result
    }

    /// The values of `keys`, in order. L1 first; every L1 miss is looked up
    /// in Redis in one round trip; `batch_loader` is called once with the
    /// keys still missing and returns the values it found (keys it leaves
    /// out are remembered as absent). What it loads is written to Redis in
    /// one more round trip. Batch reads do not wait for single-key loads in
    /// flight.
    pub async fn get_many<F, Fut, E>(
        &self,
        keys: &[K],
        batch_loader: F,
    ) -> Result<Vec<Option<V>>, Error>
    where
        F: FnOnce(Vec<K>) -> Fut,
        Fut: Future<Output = Result<HashMap<K, V>, E>>,
        E: Into<BoxError>,
    {
        let inner = &self.inner;
        let mut out: Vec<Option<Option<V>>> = keys.iter().map(|k| self.lookup(k)).collect();
        let mut missing: Vec<K> = Vec::new();
        for (key, found) in keys.iter().zip(&out) {
            if found.is_none() && !missing.contains(key) {
                missing.push(key.clone());
            }
        }
        if missing.is_empty() {
            return Ok(out.into_iter().map(Option::flatten).collect());
        }
        let mut found = self.l2_get_many(&missing).await;
        missing.retain(|k| !found.contains_key(k));
        if !missing.is_empty() {
            Counters::add(&inner.counters.loads, 1);
            let mut loaded = batch_loader(missing.clone()).await.map_err(|error| {
                Counters::add(&inner.counters.load_errors, 1);
                Error::Load {
                    namespace: inner.namespace.clone(),
                    key: format!("({} keys)", missing.len()),
                    source: Arc::new(error.into()),
                }
            })?;
            let entries: Vec<(K, Option<V>)> = missing
                .into_iter()
                .map(|key| {
                    let value = loaded.remove(&key);
                    (key, value)
                })
                .collect();
            for (key, value) in &entries {
                found.insert(key.clone(), value.clone());
            }
            self.store_many(entries).await?;
        }
        for (key, slot) in keys.iter().zip(out.iter_mut()) {
            if slot.is_none() {
                *slot = found.get(key).cloned();
            }
        }
        Ok(out.into_iter().map(Option::flatten).collect())
    }

    /// The cached value of `key` in L1, without loading. `Some(None)` is a
    /// remembered absence.
    pub fn get(&self, key: &K) -> Option<Option<V>> {
        self.lookup(key)
    }

    /// Caches `value` for `key` with the cache's TTL, in L1 and Redis.
    /// Other processes drop their L1 copy of `key`.
    pub async fn set(&self, key: K, value: V) -> Result<(), Error> {
        self.store(key, Some(value), None, true, false).await
    }

    /// Like [`set`](Self::set), for a write the caller cannot do without
    /// (a session, a counter other workers read): when the cache has Redis
    /// and the write did not reach it (Redis down, its breaker open), it
    /// fails with [`Error::Unavailable`] and L1 is left as it was. A worker's
    /// handler that returns the error has its update handed out again later,
    /// in its chat's order.
    pub async fn set_required(&self, key: K, value: V) -> Result<(), Error> {
        self.store(key, Some(value), None, true, true).await
    }

    /// Caches `value` for `key` for `ttl` (jitter applies).
    pub async fn set_with_ttl(&self, key: K, value: V, ttl: Duration) -> Result<(), Error> {
        self.store(key, Some(value), Some(ttl), true, false).await
    }

    /// Drops `key` from L1 and Redis, and from the L1 of other processes.
    pub async fn invalidate(&self, key: &K) {
        self.invalidate_many(std::slice::from_ref(key)).await;
    }

    /// Drops every key of `keys` from L1 and Redis, and from the L1 of
    /// every other process (one Redis round trip: `DEL` and `PUBLISH`).
    pub async fn invalidate_many<'k>(&self, keys: impl IntoIterator<Item = &'k K>)
    where
        K: 'k,
    {
        let keys: Vec<&K> = keys.into_iter().collect();
        for key in &keys {
            self.inner.l1.remove(key);
        }
        self.l2_invalidate(&keys).await;
    }

    /// Drops every entry tagged `tag` (see the builder's `tags`) from L1 and
    /// Redis, and from the L1 of every other process.
    pub async fn invalidate_tag(&self, tag: &str) {
        let local = self.inner.tag_index.lock().take(tag);
        let remote = self.l2_take_tag(tag).await;
        let keys: std::collections::HashSet<K> = local.into_iter().chain(remote).collect();
        self.invalidate_many(&keys).await;
    }

    /// Remembers the tags of `value` for `key` in the local index; returns
    /// them for Redis.
    fn index_tags(&self, key: &K, value: &Cached<V>) -> Vec<String> {
        let (Some(tagger), Cached::Value(value)) = (&self.inner.tagger, value) else {
            return Vec::new();
        };
        let tags = tagger(key, value);
        if !tags.is_empty() {
            let l1 = &self.inner.l1;
            let now = Instant::now();
            self.inner
                .tag_index
                .lock()
                .add(key, &tags, |k| l1.peek(k, now).is_some());
        }
        tags
    }

    /// The Redis key of `key`: `bf:[<bot>:]<namespace>:<key>`.
    pub fn redis_key(&self, key: &K) -> String {
        format!("{}{key}", self.inner.prefix)
    }

    /// The namespace.
    pub fn namespace(&self) -> &str {
        &self.inner.namespace
    }

    /// The bot, as given to the builder (empty when none was).
    pub fn bot(&self) -> &str {
        &self.inner.bot
    }

    /// The Redis handle, if the cache has an L2.
    pub fn redis(&self) -> Option<&Redis> {
        self.inner.l2.as_ref()
    }

    /// L1's capacity (entries, or the weigher's unit).
    pub fn l1_capacity(&self) -> u64 {
        self.inner.l1.capacity()
    }

    /// The counters so far.
    pub fn stats(&self) -> Stats {
        let inner = &self.inner;
        let mut stats = inner
            .counters
            .snapshot(&inner.l1.counters, inner.l1.len() as u64);
        if let Some(prefetch) = &inner.prefetch {
            let model = prefetch.lock();
            stats.prefetch_issued = model.counts.issued;
            stats.prefetch_used = model.counts.used;
            stats.prefetch_disabled = model.counts.disabled;
            stats.prefetch_on = model.is_enabled();
        }
        stats
    }

    fn lookup(&self, key: &K) -> Option<Option<V>> {
        self.lookup_marked(key).map(|(value, _)| value)
    }

    /// An L1 read, with whether the entry is due for a refresh.
    pub(crate) fn lookup_marked(&self, key: &K) -> Option<(Option<V>, bool)> {
        self.track(key);
        self.prefetch_after(key);
        let (value, due) = self.inner.l1.get_marked(key, Instant::now())?;
        match value {
            Cached::Value(v) => Some((Some(v), due)),
            Cached::Absent => {
                Counters::add(&self.inner.counters.negative_hits, 1);
                Some((None, false))
            }
        }
    }

    /// Counts a read of `key` for the hot set, on one read in `HOT_SAMPLE`
    /// chosen at random (popularity survives sampling; the hit path stays
    /// cheap). Random, not every n-th: a periodic workload would alias with
    /// a fixed stride and count the same few keys forever.
    fn track(&self, key: &K) {
        const HOT_SAMPLE: u64 = 4;
        let Some(hot) = &self.inner.hot else { return };
        if fastrand::u64(..HOT_SAMPLE) == 0 {
            hot.lock().record(key);
        }
    }

    /// Asks the successor model about a read of `key`; fetches a confident
    /// successor missing from L1 from Redis in the background.
    fn prefetch_after(&self, key: &K) {
        let Some(prefetch) = &self.inner.prefetch else {
            return;
        };
        let next = {
            let mut model = prefetch.lock();
            let next = model.on_read(key);
            let next = next.filter(|n| self.inner.l1.peek(n, Instant::now()).is_none());
            if let Some(n) = &next {
                model.issued(n.clone());
            }
            next
        };
        let Some(next) = next else { return };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let cache = self.clone();
        runtime.spawn(async move {
            cache.l2_get(&next).await;
        });
    }

    /// Saves the hot set (the most read keys) to Redis, for [`warm`](Self::warm)
    /// in processes that start later. Returns how many keys were saved (0
    /// when warming is off or Redis is unreachable). Call it periodically.
    pub async fn persist_hot_set(&self) -> usize {
        let Some(hot) = &self.inner.hot else { return 0 };
        let keys: Vec<String> = hot.lock().top().iter().map(ToString::to_string).collect();
        if keys.is_empty() {
            return 0;
        }
        if self.l2_save_hot_set(&keys).await {
            keys.len()
        } else {
            0
        }
    }

    /// Fills L1 with the values of the hot set saved by
    /// [`persist_hot_set`](Self::persist_hot_set), from Redis in one round
    /// trip, so a restarted process does not start cold. Returns how many
    /// entries it put in L1.
    pub async fn warm(&self) -> usize {
        let keys: Vec<K> = self
            .l2_load_hot_set()
            .await
            .iter()
            .filter_map(|k| k.parse().ok())
            .collect();
        if keys.is_empty() {
            return 0;
        }
        let found = self.l2_get_many(&keys).await.len();
        Counters::add(&self.inner.counters.warmed, found as u64);
        found
    }

    /// Reloads `key` with `loader` and stores the result, in Redis and L1
    /// (the background half of refresh-ahead). Errors keep the old value.
    pub(crate) async fn refresh<F, Fut, E>(&self, key: K, loader: F)
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Option<V>, E>>,
        E: Into<BoxError>,
    {
        Counters::add(&self.inner.counters.refreshes, 1);
        match loader().await {
            Ok(value) => {
                if let Err(error) = self.store(key, value, None, true, false).await {
                    tracing::debug!(namespace = %self.inner.namespace, %error, "Refresh not stored.");
                }
            }
            Err(error) => {
                Counters::add(&self.inner.counters.load_errors, 1);
                let error: BoxError = error.into();
                tracing::debug!(namespace = %self.inner.namespace, %error, "Refresh failed; the current value stays until it expires.");
            }
        }
    }

    /// Puts `value` in L1 for `ttl`, due for refresh in the last share of
    /// it when refresh-ahead is on.
    fn l1_insert(&self, key: K, value: Cached<V>, ttl: Duration) {
        let now = Instant::now();
        let refresh_at = match (self.inner.refresh_ahead, &value) {
            (Some(share), Cached::Value(_)) => now + ttl.mul_f64(1.0 - share),
            _ => now + ttl,
        };
        self.inner
            .l1
            .insert_refreshing(key, value, now + ttl, refresh_at);
    }

    /// `ttl` minus a random share of up to `jitter` of it.
    fn jittered(&self, ttl: Duration) -> Duration {
        let inner = &self.inner;
        if inner.jitter == 0.0 {
            return ttl;
        }
        let r = fastrand::f64();
        ttl.mul_f64(1.0 - inner.jitter * r)
    }
}
