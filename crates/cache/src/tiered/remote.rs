//! The Redis side of a cache: reads, writes, invalidation messages and the
//! cross-process load lease. Every method degrades to "no Redis" when the
//! Redis handle skips or fails a call.

use std::collections::HashMap;
use std::fmt::Display;
use std::hash::Hash;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::time::Instant;

use super::TieredCache;
use super::stats::Counters;
use crate::codec;
use crate::error::Error;
use crate::l1::Cached;

/// The outcome of asking for the load lease of a key.
pub(super) enum Lease<V> {
    /// No lease in use (not configured, or Redis unreachable): just load.
    None,
    /// This process holds the lease with this token: load, then release.
    Held(u64),
    /// Another process loaded the key meanwhile.
    Waited(Option<V>),
}

/// Deletes the lease only if it still holds our token.
const RELEASE: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end";

impl<K, V> TieredCache<K, V>
where
    K: Hash + Eq + Clone + Display + FromStr + Send + Sync + 'static,
    V: Clone + Serialize + DeserializeOwned + Send + Sync + 'static,
{
    /// Looks `key` up in Redis (`GET` and `PTTL` in one round trip). `Some`
    /// when Redis had a value or an absence (now also in L1); `None` to
    /// carry on with the loader.
    pub(super) async fn l2_get(&self, key: &K) -> Option<Option<V>> {
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
            Counters::add(&inner.counters.l2_unavailable, 1);
            return None;
        };
        self.accept_l2(key, bytes, pttl)
    }

    /// Looks `keys` up in Redis in one round trip; what Redis had (values
    /// and absences) is returned and put in L1.
    pub(super) async fn l2_get_many(&self, keys: &[K]) -> HashMap<K, Option<V>> {
        let inner = &self.inner;
        let mut found = HashMap::new();
        let Some(redis) = &inner.l2 else {
            return found;
        };
        let redis_keys: Vec<String> = keys.iter().map(|k| self.redis_key(k)).collect();
        let reply = redis
            .run(|mut c| async move {
                let mut pipe = redis::pipe();
                for k in &redis_keys {
                    pipe.get(k).pttl(k);
                }
                pipe.query_async::<Vec<(Option<Vec<u8>>, i64)>>(&mut c)
                    .await
            })
            .await;
        let Some(replies) = reply else {
            Counters::add(&inner.counters.l2_unavailable, 1);
            return found;
        };
        for (key, (bytes, pttl)) in keys.iter().zip(replies) {
            if let Some(value) = self.accept_l2(key, bytes, pttl) {
                found.insert(key.clone(), value);
            }
        }
        found
    }

    /// Turns Redis's answer for `key` into a result, counting it and putting
    /// it in L1 for no longer than Redis keeps it. `None`: a miss.
    fn accept_l2(&self, key: &K, bytes: Option<Vec<u8>>, pttl: i64) -> Option<Option<V>> {
        let inner = &self.inner;
        let Some(bytes) = bytes else {
            Counters::add(&inner.counters.l2_misses, 1);
            return None;
        };
        let Some(value) = codec::decode::<V>(&bytes) else {
            // Not ours, truncated, or of another shape: a miss; the load
            // that follows overwrites it.
            Counters::add(&inner.counters.l2_corrupt, 1);
            tracing::debug!(namespace = %inner.namespace, "Undecodable value in Redis; reloading it.");
            return None;
        };
        Counters::add(&inner.counters.l2_hits, 1);
        let remaining = u64::try_from(pttl).map_or(inner.ttl, Duration::from_millis);
        let (found, ttl) = match &value {
            Cached::Value(v) => (Some(v.clone()), inner.ttl),
            Cached::Absent => (None, inner.negative_ttl),
        };
        self.index_tags(key, &value);
        self.l1_insert(key.clone(), value, ttl.min(remaining));
        Some(found)
    }

    /// Writes one entry to Redis and L1. With `publish` (writes, not loads
    /// of what the source already had), other processes drop their L1 copy.
    /// With `required`, a write that did not reach Redis fails with
    /// [`Error::Unavailable`] and leaves L1 as it was.
    pub(super) async fn store(
        &self,
        key: K,
        value: Option<V>,
        ttl: Option<Duration>,
        publish: bool,
        required: bool,
    ) -> Result<(), Error> {
        let inner = &self.inner;
        let (value, ttl) = match value {
            Some(v) => (Cached::Value(v), ttl.unwrap_or(inner.ttl)),
            None if inner.negative_ttl.is_zero() => return Ok(()),
            None => (Cached::Absent, inner.negative_ttl),
        };
        let ttl = self.jittered(ttl);
        let tags = self.index_tags(&key, &value);
        if let Some(redis) = &inner.l2 {
            let bytes = self.encode(&key, &value)?;
            let redis_key = self.redis_key(&key);
            let message = publish.then(|| crate::bus::payload(redis.origin(), &[key.to_string()]));
            let channel = &inner.channel;
            let tag_keys: Vec<String> = tags.iter().map(|t| self.tag_key(t)).collect();
            let key_text = key.to_string();
            let done = redis
                .run(|mut c| async move {
                    let mut pipe = redis::pipe();
                    pipe.cmd("SET")
                        .arg(&redis_key)
                        .arg(bytes)
                        .arg("PX")
                        .arg(ttl_millis(ttl))
                        .ignore();
                    add_tags(&mut pipe, &tag_keys, &key_text, ttl);
                    if let Some(message) = message {
                        pipe.publish(channel, message).ignore();
                    }
                    pipe.query_async::<()>(&mut c).await
                })
                .await;
            if done.is_none() {
                Counters::add(&inner.counters.l2_unavailable, 1);
                if required {
                    return Err(Error::Unavailable {
                        namespace: inner.namespace.clone(),
                        key: key.to_string(),
                    });
                }
            }
        }
        self.l1_insert(key, value, ttl);
        Ok(())
    }

    /// Writes loaded entries to Redis in one round trip, and to L1. An entry
    /// too large for Redis fails the whole batch before anything is written.
    pub(super) async fn store_many(&self, entries: Vec<(K, Option<V>)>) -> Result<(), Error> {
        let inner = &self.inner;
        let mut prepared = Vec::with_capacity(entries.len());
        let mut writes = Vec::new();
        for (key, value) in entries {
            let (value, ttl) = match value {
                Some(v) => (Cached::Value(v), inner.ttl),
                None if inner.negative_ttl.is_zero() => continue,
                None => (Cached::Absent, inner.negative_ttl),
            };
            let ttl = self.jittered(ttl);
            let tags = self.index_tags(&key, &value);
            if inner.l2.is_some() {
                let bytes = self.encode(&key, &value)?;
                let tag_keys: Vec<String> = tags.iter().map(|t| self.tag_key(t)).collect();
                writes.push((self.redis_key(&key), bytes, ttl, key.to_string(), tag_keys));
            }
            prepared.push((key, value, ttl));
        }
        if let (Some(redis), false) = (&inner.l2, writes.is_empty()) {
            let done = redis
                .run(|mut c| async move {
                    let mut pipe = redis::pipe();
                    for (k, bytes, ttl, text, tags) in &writes {
                        pipe.cmd("SET")
                            .arg(k)
                            .arg(bytes)
                            .arg("PX")
                            .arg(ttl_millis(*ttl))
                            .ignore();
                        add_tags(&mut pipe, tags, text, *ttl);
                    }
                    pipe.query_async::<()>(&mut c).await
                })
                .await;
            if done.is_none() {
                Counters::add(&inner.counters.l2_unavailable, 1);
            }
        }
        for (key, value, ttl) in prepared {
            self.l1_insert(key, value, ttl);
        }
        Ok(())
    }

    /// `DEL`s `keys` in Redis and publishes them to other processes, in one
    /// round trip.
    pub(super) async fn l2_invalidate(&self, keys: &[&K]) {
        let inner = &self.inner;
        let (Some(redis), false) = (&inner.l2, keys.is_empty()) else {
            return;
        };
        let redis_keys: Vec<String> = keys.iter().map(|k| self.redis_key(k)).collect();
        let texts: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
        let message = crate::bus::payload(redis.origin(), &texts);
        let channel = &inner.channel;
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
            Counters::add(&inner.counters.l2_unavailable, 1);
        }
    }

    /// Reads and deletes the Redis set of keys tagged `tag` (atomically).
    pub(super) async fn l2_take_tag(&self, tag: &str) -> Vec<K> {
        let inner = &self.inner;
        let Some(redis) = &inner.l2 else {
            return Vec::new();
        };
        let tag_key = self.tag_key(tag);
        let members = redis
            .run(|mut c| async move {
                redis::pipe()
                    .atomic()
                    .smembers(&tag_key)
                    .del(&tag_key)
                    .ignore()
                    .query_async::<(Vec<String>,)>(&mut c)
                    .await
            })
            .await;
        match members {
            Some((members,)) => members.iter().filter_map(|m| m.parse().ok()).collect(),
            None => {
                Counters::add(&inner.counters.l2_unavailable, 1);
                Vec::new()
            }
        }
    }

    /// Replaces the saved hot set with `keys` (kept a day).
    pub(super) async fn l2_save_hot_set(&self, keys: &[String]) -> bool {
        let Some(redis) = &self.inner.l2 else {
            return false;
        };
        let hot_key = format!("{}hot", self.inner.prefix);
        let payload = postcard::to_allocvec(keys).unwrap_or_default();
        redis
            .run(|mut c| async move {
                redis::cmd("SET")
                    .arg(&hot_key)
                    .arg(payload)
                    .arg("EX")
                    .arg(86_400)
                    .query_async::<()>(&mut c)
                    .await
            })
            .await
            .is_some()
    }

    /// The saved hot set, if any.
    pub(super) async fn l2_load_hot_set(&self) -> Vec<String> {
        let Some(redis) = &self.inner.l2 else {
            return Vec::new();
        };
        let hot_key = format!("{}hot", self.inner.prefix);
        let bytes = redis
            .run(|mut c| async move {
                redis::cmd("GET")
                    .arg(&hot_key)
                    .query_async::<Option<Vec<u8>>>(&mut c)
                    .await
            })
            .await
            .flatten();
        bytes
            .and_then(|b| postcard::from_bytes::<Vec<String>>(&b).ok())
            .unwrap_or_default()
    }

    fn tag_key(&self, tag: &str) -> String {
        format!("{}tag:{tag}", self.inner.prefix)
    }

    /// Takes the load lease of `key`, or waits (up to the lease time) for
    /// the holder's value to appear in Redis.
    pub(super) async fn acquire_lease(&self, key: &K) -> Lease<V> {
        let inner = &self.inner;
        let (Some(redis), Some(lease)) = (&inner.l2, inner.lease) else {
            return Lease::None;
        };
        let lease_key = self.lease_key(key);
        let token = redis.origin() ^ inner.sequence.fetch_add(1, Ordering::Relaxed);
        let taken = redis
            .run(|mut c| async move {
                redis::cmd("SET")
                    .arg(&lease_key)
                    .arg(token)
                    .arg("NX")
                    .arg("PX")
                    .arg(ttl_millis(lease))
                    .query_async::<Option<String>>(&mut c)
                    .await
            })
            .await;
        match taken {
            Some(Some(_)) => Lease::Held(token),
            // Redis unreachable: load without a lease.
            None => Lease::None,
            Some(None) => {
                Counters::add(&inner.counters.lease_waits, 1);
                let deadline = Instant::now() + lease;
                let mut pause = Duration::from_millis(2);
                while Instant::now() < deadline {
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_millis(25));
                    if let Some(found) = self.l2_get(key).await {
                        return Lease::Waited(found);
                    }
                }
                // The holder died or is slow: load it ourselves.
                Lease::None
            }
        }
    }

    /// Gives the lease back, if it is still ours.
    pub(super) async fn release_lease(&self, key: &K, token: u64) {
        let Some(redis) = &self.inner.l2 else { return };
        let lease_key = self.lease_key(key);
        redis
            .run(|mut c| async move {
                redis::cmd("EVAL")
                    .arg(RELEASE)
                    .arg(1)
                    .arg(lease_key)
                    .arg(token)
                    .query_async::<i64>(&mut c)
                    .await
            })
            .await;
    }

    fn lease_key(&self, key: &K) -> String {
        format!("{}lease:{key}", self.inner.prefix)
    }

    fn encode(&self, key: &K, value: &Cached<V>) -> Result<Vec<u8>, Error> {
        let inner = &self.inner;
        let bytes = codec::encode(value).map_err(|e| Error::Load {
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
        Ok(bytes)
    }
}

/// Adds `key` to the Redis set of each tag, which lives at least as long as
/// the entry.
fn add_tags(pipe: &mut redis::Pipeline, tag_keys: &[String], key: &str, ttl: Duration) {
    for tag_key in tag_keys {
        pipe.sadd(tag_key, key)
            .ignore()
            .cmd("PEXPIRE")
            .arg(tag_key)
            .arg(ttl_millis(ttl))
            .arg("GT")
            .ignore()
            .cmd("PEXPIRE")
            .arg(tag_key)
            .arg(ttl_millis(ttl))
            .arg("NX")
            .ignore();
    }
}

/// A TTL in whole milliseconds for Redis, at least 1.
fn ttl_millis(ttl: Duration) -> u64 {
    u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1)
}
