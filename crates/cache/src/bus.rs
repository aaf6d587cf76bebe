//! Invalidation across processes: Redis pub/sub.
//!
//! Every cache publishes on `bf:inv:[<bot>:]<namespace>` the keys it set or
//! invalidated; one subscriber connection per process (pattern `bf:inv:*`)
//! hands them to the caches of that channel, which drop those keys from L1.
//! A payload is postcard `(origin, keys)`; a process skips its own messages.
//!
//! Pub/sub delivers at most once: while the subscriber is disconnected,
//! messages are lost. So every time it subscribes again after having been
//! subscribed, every cache clears its L1 (correctness first), as after a
//! Redis outage.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Weak;

use futures_util::StreamExt;

/// The pattern the subscriber listens to.
pub(crate) const PATTERN: &str = "bf:inv:*";

/// Receives the keys (as text) invalidated on one channel.
pub(crate) type Sink = dyn Fn(&[String]) + Send + Sync;

/// The channels this process listens to and who wants their messages.
#[derive(Default)]
pub(crate) struct Bus {
    sinks: Mutex<HashMap<String, Vec<Weak<Sink>>>>,
}

impl Bus {
    pub(crate) fn register(&self, channel: &str, sink: Weak<Sink>) {
        let mut sinks = self.sinks.lock();
        let list = sinks.entry(channel.to_owned()).or_default();
        list.retain(|s| s.strong_count() > 0);
        list.push(sink);
    }

    /// Hands a message to the sinks of `channel`, unless it came from
    /// `own_origin`. Malformed payloads are ignored (and counted by the
    /// caller).
    pub(crate) fn dispatch(&self, channel: &str, payload: &[u8], own_origin: u64) -> bool {
        let Ok((origin, keys)) = postcard::from_bytes::<(u64, Vec<String>)>(payload) else {
            return false;
        };
        if origin == own_origin {
            return true;
        }
        let sinks: Vec<_> = {
            let sinks = self.sinks.lock();
            sinks
                .get(channel)
                .map(|l| l.iter().filter_map(Weak::upgrade).collect())
                .unwrap_or_default()
        };
        for sink in sinks {
            sink(&keys);
        }
        true
    }
}

/// Encodes a message.
pub(crate) fn payload(origin: u64, keys: &[String]) -> Vec<u8> {
    postcard::to_allocvec(&(origin, keys)).unwrap_or_default()
}

/// Listens until `shutdown` fires: subscribes, dispatches, and on a lost
/// connection waits `retry` and subscribes again.
pub(crate) async fn listen(
    client: redis::Client,
    handle: Weak<crate::l2::RedisInner>,
    mut shutdown: tokio::sync::oneshot::Receiver<()>,
    retry: std::time::Duration,
) {
    let mut subscribed_before = false;
    loop {
        let connect = async {
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.psubscribe(PATTERN).await?;
            Ok::<_, redis::RedisError>(pubsub)
        };
        let pubsub = tokio::select! {
            _ = &mut shutdown => return,
            result = tokio::time::timeout(retry.max(std::time::Duration::from_secs(1)) * 5, connect) => result,
        };
        if let Ok(Ok(pubsub)) = pubsub {
            let Some(inner) = handle.upgrade() else {
                return;
            };
            inner.set_subscribed(true, subscribed_before);
            drop(inner);
            subscribed_before = true;
            let mut messages = pubsub.into_on_message();
            loop {
                let message = tokio::select! {
                    _ = &mut shutdown => return,
                    message = messages.next() => message,
                };
                let Some(message) = message else { break };
                let Some(inner) = handle.upgrade() else {
                    return;
                };
                inner.dispatch(message.get_channel_name(), message.get_payload_bytes());
            }
            if let Some(inner) = handle.upgrade() {
                inner.set_subscribed(false, false);
            }
        }
        tokio::select! {
            _ = &mut shutdown => return,
            () = tokio::time::sleep(retry) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[test]
    fn messages_reach_the_sinks_of_their_channel_except_our_own() {
        let bus = Bus::default();
        let seen = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&seen);
        let sink: Arc<Sink> = Arc::new(move |keys: &[String]| {
            counter.fetch_add(keys.len(), Ordering::SeqCst);
        });
        bus.register("bf:inv:a", Arc::downgrade(&sink));
        let keys = vec!["1".to_owned(), "2".to_owned()];
        assert!(bus.dispatch("bf:inv:a", &payload(7, &keys), 1));
        assert!(bus.dispatch("bf:inv:b", &payload(7, &keys), 1));
        assert!(
            bus.dispatch("bf:inv:a", &payload(1, &keys), 1),
            "own message skipped"
        );
        assert!(!bus.dispatch("bf:inv:a", b"garbage", 1));
        assert_eq!(seen.load(Ordering::SeqCst), 2);
        drop(sink);
        assert!(bus.dispatch("bf:inv:a", &payload(7, &keys), 1));
        assert_eq!(seen.load(Ordering::SeqCst), 2, "dropped sinks are gone");
    }
}
