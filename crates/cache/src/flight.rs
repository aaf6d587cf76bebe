//! Single-flight: concurrent misses of one key share one load.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Arc;

use tokio::sync::OnceCell;

/// The loads in progress, by key.
///
/// The first caller of a key runs its load inside a shared `OnceCell`; the
/// others wait on the same cell and get a clone of its result. If the
/// leader is cancelled (its future dropped), the cell stays empty and the
/// next waiter runs its own load instead — nobody waits forever on a load
/// nobody is doing.
pub(crate) struct Flights<K, T> {
    map: Mutex<HashMap<K, Arc<OnceCell<T>>>>,
}

impl<K: Hash + Eq + Clone, T: Clone> Flights<K, T> {
    pub(crate) fn new() -> Self {
        Flights {
            map: Mutex::new(HashMap::new()),
        }
    }

    /// Runs `load` unless a load of `key` is already running, in which case
    /// its result is awaited instead. The flag says whether this caller
    /// waited for another's load.
    pub(crate) async fn run<F, Fut>(&self, key: &K, load: F) -> (T, bool)
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = T>,
    {
        let (cell, joined) = {
            let mut map = self.map.lock();
            match map.get(key) {
                Some(cell) => (Arc::clone(cell), true),
                None => {
                    let cell = Arc::new(OnceCell::new());
                    map.insert(key.clone(), Arc::clone(&cell));
                    (cell, false)
                }
            }
        };
        let value = cell.get_or_init(load).await.clone();
        // The first to finish removes the flight, so the next miss loads
        // again (a failed load is not remembered).
        let mut map = self.map.lock();
        if map.get(key).is_some_and(|c| Arc::ptr_eq(c, &cell)) {
            map.remove(key);
        }
        (value, joined)
    }

    #[cfg(test)]
    pub(crate) fn in_flight(&self) -> usize {
        self.map.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn concurrent_callers_share_one_load() {
        let flights: Arc<Flights<u32, u32>> = Arc::new(Flights::new());
        let calls = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..100 {
            let flights = Arc::clone(&flights);
            let calls = Arc::clone(&calls);
            tasks.push(tokio::spawn(async move {
                flights
                    .run(&7, || async {
                        calls.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        42
                    })
                    .await
            }));
        }
        let mut joined = 0;
        for task in tasks {
            let (value, waited) = task.await.unwrap();
            assert_eq!(value, 42);
            joined += usize::from(waited);
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert_eq!(joined, 99);
        assert_eq!(flights.in_flight(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_cancelled_leader_hands_over() {
        let flights: Arc<Flights<u32, u32>> = Arc::new(Flights::new());
        let leader = {
            let flights = Arc::clone(&flights);
            tokio::spawn(async move {
                flights
                    .run(&1, || async {
                        tokio::time::sleep(Duration::from_secs(3600)).await;
                        1
                    })
                    .await
            })
        };
        tokio::task::yield_now().await;
        let follower = {
            let flights = Arc::clone(&flights);
            tokio::spawn(async move { flights.run(&1, || async { 2 }).await })
        };
        tokio::task::yield_now().await;
        leader.abort();
        let (value, _) = follower.await.unwrap();
        assert_eq!(value, 2);
    }
}
