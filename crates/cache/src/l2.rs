//! L2: the Redis tier, shared by every cache of a process.
//!
//! One multiplexed connection per process, opened lazily (a worker starts
//! even when Redis is down), every call bounded by a timeout and guarded by
//! a [`Breaker`]: while Redis is unreachable, calls skip it at once and the
//! caches run on L1 and their loaders with no error to the caller
//! (invariant 5). When a probe finds Redis back, every cache registered with
//! [`Redis::on_recover`] is told, so it can drop L1 entries that may have
//! missed invalidations.

use parking_lot::Mutex;
use std::sync::{Arc, Weak};
use std::time::Duration;

use redis::aio::MultiplexedConnection;

use crate::breaker::{Breaker, Permit, Transition};
use crate::bus::{self, Bus, Sink};

/// The default bound on one Redis call.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(250);
/// The default wait before probing a Redis found unreachable.
pub const DEFAULT_PROBE_INTERVAL: Duration = Duration::from_secs(1);

type Listener = Weak<dyn Fn() + Send + Sync>;

/// A process's Redis, for the L2 tier of its caches. Cheap to clone.
#[derive(Clone)]
pub struct Redis {
    inner: Arc<RedisInner>,
}

pub(crate) struct RedisInner {
    client: redis::Client,
    url: String,
    /// The connection, read without a lock by every call (a multiplexed
    /// connection is a handle: cloning it is cheap, and calls on clones
    /// share it).
    connection: arc_swap::ArcSwapOption<MultiplexedConnection>,
    /// Held only while a connection is opened, so one caller opens it
    /// and the others wait for it rather than opening their own.
    connecting: tokio::sync::Mutex<()>,
    breaker: Breaker,
    timeout: Duration,
    probe_interval: Duration,
    listeners: Mutex<Vec<Listener>>,
    bus: Bus,
    /// Identifies this process's messages on the bus.
    origin: u64,
    subscribed: tokio::sync::watch::Sender<bool>,
    /// Taken by the subscriber task when it starts; dropping the handle
    /// drops the sender's peer and stops the task.
    listener: Mutex<Option<tokio::sync::oneshot::Receiver<()>>>,
    _stop_listener: tokio::sync::oneshot::Sender<()>,
    round_trips: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for Redis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redis")
            .field("url", &self.inner.url)
            .field("open", &self.inner.breaker.is_open())
            .finish()
    }
}

/// Why a Redis URL was refused.
#[derive(Debug, thiserror::Error)]
#[error("invalid Redis URL {url}: {reason}")]
pub struct RedisUrlError {
    url: String,
    reason: String,
}

impl Redis {
    /// A Redis at `url` with the default timeout and probe interval. Nothing
    /// is connected yet.
    pub fn new(url: &str) -> Result<Redis, RedisUrlError> {
        Redis::with_options(url, DEFAULT_TIMEOUT, DEFAULT_PROBE_INTERVAL)
    }

    /// A Redis at `url`; each call is bounded by `timeout`, and after a
    /// failure Redis is probed again every `probe_interval`.
    pub fn with_options(
        url: &str,
        timeout: Duration,
        probe_interval: Duration,
    ) -> Result<Redis, RedisUrlError> {
        let redacted = botfleet_config::redact_url(url);
        let client = redis::Client::open(url).map_err(|e| RedisUrlError {
            url: redacted.clone(),
            // The client's message can quote the URL: keep only its kind.
            reason: format!("{:?}", e.kind()),
        })?;
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let origin = {
            use std::hash::BuildHasher;
            std::collections::hash_map::RandomState::new().hash_one(std::process::id())
        };
        Ok(Redis {
            inner: Arc::new(RedisInner {
                client,
                url: redacted,
                connection: arc_swap::ArcSwapOption::empty(),
                connecting: tokio::sync::Mutex::new(()),
                breaker: Breaker::new(probe_interval),
                timeout,
                probe_interval,
                listeners: Mutex::new(Vec::new()),
                bus: Bus::default(),
                origin,
                subscribed: tokio::sync::watch::Sender::new(false),
                listener: Mutex::new(Some(stopped)),
                _stop_listener: stop,
                round_trips: std::sync::atomic::AtomicU64::new(0),
            }),
        })
    }

    /// The URL, password redacted.
    pub fn url(&self) -> &str {
        &self.inner.url
    }

    /// Whether Redis is currently considered unreachable.
    pub fn is_unavailable(&self) -> bool {
        self.inner.breaker.is_open()
    }

    /// Calls `listener` each time Redis is reachable again after an outage,
    /// for as long as `listener` is alive.
    pub fn on_recover(&self, listener: &Arc<dyn Fn() + Send + Sync>) {
        let mut listeners = self.inner.listeners.lock();
        listeners.retain(|l| l.strong_count() > 0);
        listeners.push(Arc::downgrade(listener));
    }

    /// Receives the keys invalidated on `channel` by other processes, for as
    /// long as `sink` is alive. Starts this process's subscriber on first
    /// use (it needs a tokio runtime; without one, nothing is received and
    /// L1 relies on its TTL).
    pub(crate) fn subscribe(&self, channel: &str, sink: &Arc<Sink>) {
        self.inner.bus.register(channel, Arc::downgrade(sink));
        let stopped = self.inner.listener.lock().take();
        let Some(stopped) = stopped else { return };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(bus::listen(
                    self.inner.client.clone(),
                    Arc::downgrade(&self.inner),
                    stopped,
                    self.inner.probe_interval,
                ));
            }
            Err(_) => {
                tracing::warn!(redis = %self.inner.url, "No tokio runtime: invalidations from other processes will not be received.");
            }
        }
    }

    /// Commands or pipelines sent to Redis so far (each is one round trip).
    pub fn round_trips(&self) -> u64 {
        self.inner
            .round_trips
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// This process's id on the invalidation bus.
    pub(crate) fn origin(&self) -> u64 {
        self.inner.origin
    }

    /// Waits until this process receives invalidations (its subscriber is
    /// subscribed), for at most `timeout`; whether it is.
    pub async fn wait_subscribed(&self, timeout: Duration) -> bool {
        let mut subscribed = self.inner.subscribed.subscribe();
        tokio::time::timeout(timeout, subscribed.wait_for(|s| *s))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Runs `call` on the connection, unless the breaker says Redis is down.
    /// `None` when Redis was skipped or failed; the caller carries on
    /// without L2. Errors that are about one key (a wrong type) do not trip
    /// the breaker.
    pub(crate) async fn run<T, F, Fut>(&self, call: F) -> Option<T>
    where
        F: FnOnce(MultiplexedConnection) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        let inner = &self.inner;
        if inner.breaker.permit() == Permit::Skip {
            return None;
        }
        inner
            .round_trips
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let attempt = async {
            let connection = match inner.connection.load_full() {
                Some(c) => MultiplexedConnection::clone(&c),
                None => {
                    let _opening = inner.connecting.lock().await;
                    match inner.connection.load_full() {
                        // Another caller opened it meanwhile.
                        Some(c) => MultiplexedConnection::clone(&c),
                        None => {
                            let c = inner.client.get_multiplexed_async_connection().await?;
                            inner.connection.store(Some(Arc::new(c.clone())));
                            c
                        }
                    }
                }
            };
            call(connection).await
        };
        let started = tokio::time::Instant::now();
        let outcome = tokio::time::timeout(inner.timeout, attempt).await;
        crate::metrics::record_l2_round_trip(started.elapsed());
        match outcome {
            Ok(Ok(value)) => {
                if inner.breaker.success() == Transition::Recovered {
                    tracing::info!(redis = %inner.url, "Redis is reachable again; clearing L1 entries that may have missed invalidations.");
                    self.notify_recovered();
                }
                Some(value)
            }
            Ok(Err(error)) if !is_connectivity(&error) => {
                tracing::debug!(redis = %inner.url, %error, "Redis call failed.");
                None
            }
            failed => {
                inner.connection.store(None);
                if inner.breaker.failure() == Transition::Opened {
                    let reason = match failed {
                        Ok(Err(error)) => error.to_string(),
                        _ => format!("no answer within {:?}", inner.timeout),
                    };
                    tracing::warn!(redis = %inner.url, %reason, "Redis is unreachable; caches serve from memory and loaders until it is back.");
                }
                None
            }
        }
    }

    fn notify_recovered(&self) {
        self.inner.notify_recovered();
    }
}

impl RedisInner {
    pub(crate) fn set_subscribed(&self, subscribed: bool, again: bool) {
        self.subscribed.send_replace(subscribed);
        if again {
            tracing::info!(redis = %self.url, "Invalidation subscriber reconnected; clearing L1 entries that may have missed invalidations.");
            self.notify_recovered();
        }
    }

    pub(crate) fn dispatch(&self, channel: &str, payload: &[u8]) {
        if !self.bus.dispatch(channel, payload, self.origin) {
            tracing::debug!(%channel, "Ignored a malformed invalidation message.");
        }
    }

    fn notify_recovered(&self) {
        let listeners: Vec<Arc<dyn Fn() + Send + Sync>> = self
            .listeners
            .lock()
            .iter()
            .filter_map(Weak::upgrade)
            .collect();
        for listener in listeners {
            listener();
        }
    }
}

fn is_connectivity(error: &redis::RedisError) -> bool {
    error.is_io_error()
        || error.is_connection_dropped()
        || error.is_connection_refusal()
        || error.is_timeout()
        || error.is_unrecoverable_error()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_redacted() {
        assert_eq!(
            Redis::new("redis://:pw@h:6379/1").unwrap().url(),
            "redis://:***@h:6379/1"
        );
        let error = Redis::new("redis://:secret@h:notaport")
            .unwrap_err()
            .to_string();
        assert!(!error.contains("secret"), "{error}");
    }
}
