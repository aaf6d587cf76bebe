//! The cache API: read-through over the tiers, single-flight, TTL with
//! jitter, negative caching.

use std::fmt::Display;
use std::hash::{BuildHasher, Hash};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use crate::error::{BoxError, Error};
use crate::flight::Flights;
use crate::l1::{Cached, L1, Weigher};

/// How long values stay when nothing else is said.
pub const DEFAULT_TTL: Duration = Duration::from_secs(300);
/// How long "not found" is remembered when nothing else is said.
pub const DEFAULT_NEGATIVE_TTL: Duration = Duration::from_secs(30);
/// The default share of the TTL taken off at random.
pub const DEFAULT_JITTER: f64 = 0.1;
/// The default L1 capacity, in entries.
pub const DEFAULT_CAPACITY: u64 = 10_000;

/// Builds a [`TieredCache`].
#[must_use]
pub struct TieredCacheBuilder<K, V> {
    namespace: String,
    capacity: u64,
    weigher: Option<Weigher<K, V>>,
    ttl: Duration,
    negative_ttl: Duration,
    jitter: f64,
}

impl<K, V> TieredCacheBuilder<K, V> {
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
    K: Hash + Eq + Clone + Display + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// Builds the cache.
    pub fn build(self) -> TieredCache<K, V> {
        TieredCache {
            inner: Arc::new(Inner {
                l1: L1::new(self.capacity, self.weigher),
                flights: Flights::new(),
                namespace: self.namespace,
                ttl: self.ttl,
                negative_ttl: self.negative_ttl,
                jitter: self.jitter,
                random: std::collections::hash_map::RandomState::new(),
                sequence: AtomicU64::new(0),
                counters: Counters::default(),
            }),
        }
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
}

#[derive(Default)]
struct Counters {
    loads: AtomicU64,
    load_errors: AtomicU64,
    negative_hits: AtomicU64,
    single_flight_waits: AtomicU64,
}

struct Inner<K, V> {
    l1: L1<K, V>,
    flights: Flights<K, Result<Option<V>, Error>>,
    namespace: String,
    ttl: Duration,
    negative_ttl: Duration,
    jitter: f64,
    random: std::collections::hash_map::RandomState,
    sequence: AtomicU64,
    counters: Counters,
}

/// A read-through cache over L1 memory and a loader (L2 Redis is added by
/// its issue's next steps). Cheap to clone: clones share the cache.
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
    K: Hash + Eq + Clone + Display + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// A builder for a cache of `namespace` (for example `profiles`).
    pub fn builder(namespace: impl Into<String>) -> TieredCacheBuilder<K, V> {
        TieredCacheBuilder {
            namespace: namespace.into(),
            capacity: DEFAULT_CAPACITY,
            weigher: None,
            ttl: DEFAULT_TTL,
            negative_ttl: DEFAULT_NEGATIVE_TTL,
            jitter: DEFAULT_JITTER,
        }
    }

    /// The value of `key`: from L1, or from `loader`, whose result is cached
    /// (`None` as a remembered absence for the negative TTL). Concurrent
    /// misses of one key call the loader once and share its result; a loader
    /// error is returned to all of them and not cached.
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
                inner.counters.loads.fetch_add(1, Ordering::Relaxed);
                match loader().await {
                    Ok(value) => {
                        self.store(key.clone(), value.clone(), None);
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

    /// Caches `value` for `key` with the cache's TTL.
    pub fn set(&self, key: K, value: V) {
        self.store(key, Some(value), None);
    }

    /// Caches `value` for `key` for `ttl` (jitter applies).
    pub fn set_with_ttl(&self, key: K, value: V, ttl: Duration) {
        self.store(key, Some(value), Some(ttl));
    }

    /// Drops `key`.
    pub fn invalidate(&self, key: &K) {
        self.inner.l1.remove(key);
    }

    /// Drops every key of `keys`.
    pub fn invalidate_many<'k>(&self, keys: impl IntoIterator<Item = &'k K>)
    where
        K: 'k,
    {
        for key in keys {
            self.inner.l1.remove(key);
        }
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

    fn store(&self, key: K, value: Option<V>, ttl: Option<Duration>) {
        let (value, ttl) = match value {
            Some(v) => (Cached::Value(v), ttl.unwrap_or(self.inner.ttl)),
            None if self.inner.negative_ttl.is_zero() => return,
            None => (Cached::Absent, self.inner.negative_ttl),
        };
        let expires_at = Instant::now() + self.jittered(ttl);
        self.inner.l1.insert(key, value, expires_at);
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
