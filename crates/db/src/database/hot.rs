//! The connection kept out of the pool between two queries.

use super::*;

/// How long one connection may stay hot before it goes back through the
/// pool (which checks its lifetime and liveness), and how many queries.
pub(super) const HOT_MAX_AGE: Duration = Duration::from_secs(1);
pub(super) const HOT_MAX_USES: u32 = 10_000;

/// A connection kept out of the pool between two queries.
///
/// sqlx returns a connection through a spawned task and hands out idle
/// connections first in, first out, so consecutive queries rotate over
/// every connection of the pool: each lands on a server process that has
/// been asleep, and the spawned return costs a task switch. Keeping the
/// last connection for the next query (last in, first out) keeps one
/// server process hot, as a single connection does. It is kept only while
/// nobody waits for a connection, for at most `HOT_MAX_AGE`.
pub(crate) struct HotConn {
    pub(crate) conn: PoolConnection<Any>,
    pub(super) since: Instant,
    pub(super) uses: u32,
}

impl Database {
    /// A connection of the pool, its wait timed and counted.
    pub(crate) async fn acquire(&self) -> Result<PoolConnection<Any>> {
        self.acquire_hot().await.map(|h| h.conn)
    }

    /// A connection: the hot one if it is free, else one from the pool.
    pub(crate) async fn acquire_hot(&self) -> Result<HotConn> {
        let counters = &self.inner.counters;
        // Counted before the hot slot is looked at, and `release` looks at
        // the count after filling the slot: one of the two sees the other.
        counters.waiters.fetch_add(1, Ordering::SeqCst);
        let start = Instant::now();
        let hot = self.hot().take();
        if let Some(hot) = hot {
            counters.waiters.fetch_sub(1, Ordering::SeqCst);
            self.inner.acquire_wait.record(start.elapsed());
            return Ok(hot);
        }
        let result = self.inner.pool.acquire().await;
        counters.waiters.fetch_sub(1, Ordering::SeqCst);
        self.inner.acquire_wait.record(start.elapsed());
        let result = result.map(|conn| HotConn {
            conn,
            since: Instant::now(),
            uses: 0,
        });
        result.map_err(|e| match e {
            sqlx::Error::PoolTimedOut => {
                counters.acquire_timeouts.fetch_add(1, Ordering::Relaxed);
                Error::AcquireTimeout {
                    timeout: self.inner.settings.pool.acquire_timeout,
                    pool_size: self.inner.pool_size,
                    target: self.inner.target.clone(),
                }
            }
            e => {
                counters.connect_errors.fetch_add(1, Ordering::Relaxed);
                self.connect_error(&e)
            }
        })
    }

    /// The hot connection's slot.
    pub(super) fn hot(&self) -> parking_lot::MutexGuard<'_, Option<HotConn>> {
        self.inner.hot.lock()
    }

    /// Gives a connection back after a query: kept hot for the next query
    /// if it worked and nobody waits, else returned to the pool.
    pub(crate) fn release(&self, mut hot: HotConn, ok: bool) {
        hot.uses += 1;
        if !ok
            || hot.uses >= HOT_MAX_USES
            || hot.since.elapsed() >= HOT_MAX_AGE
            || self.inner.pool.is_closed()
        {
            return;
        }
        let displaced = {
            let mut slot = self.hot();
            if slot.is_some() {
                Some(hot)
            } else {
                *slot = Some(hot);
                None
            }
        };
        drop(displaced);
        if self.inner.counters.waiters.load(Ordering::SeqCst) > 0 {
            // Someone may be waiting in the pool: give it back there.
            let taken = self.hot().take();
            drop(taken);
        }
    }
}
