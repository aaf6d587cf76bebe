//! What the database layer reports through the `metrics` facade (names in
//! docs/metrics.md; labels `bot`, `query` (a fingerprint id) and `reason`).
//!
//! Latencies (acquire wait, query duration) are recorded as they happen,
//! through handles made once per pool and per query shape. Counters live in
//! the handle's atomics and are exported as absolute values by
//! `Database::report_metrics`.

use std::sync::Once;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use metrics::{
    Unit, counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram,
};

use crate::database::PoolStatus;

const ACQUIRE_WAIT: &str = "botfleet_db_acquire_wait_seconds";
const QUERY_DURATION: &str = "botfleet_db_query_duration_seconds";
const SLOW_QUERIES: &str = "botfleet_db_slow_queries_total";
const IN_USE: &str = "botfleet_db_pool_connections_in_use";
const IDLE: &str = "botfleet_db_pool_connections_idle";
const MAX: &str = "botfleet_db_pool_connections_max";
const WAITERS: &str = "botfleet_db_pool_waiters";
const TIMEOUTS: &str = "botfleet_db_acquire_timeouts_total";
const OPENED: &str = "botfleet_db_connections_opened_total";
const CLOSED: &str = "botfleet_db_connections_closed_total";
const CONNECT_ERRORS: &str = "botfleet_db_connect_errors_total";
pub(crate) const BATCH_ROWS: &str = "botfleet_db_batch_rows_total";
pub(crate) const BATCH_FLUSHES: &str = "botfleet_db_batch_flushes_total";
pub(crate) const BATCH_REJECTED: &str = "botfleet_db_batch_rows_rejected_total";
pub(crate) const BATCH_QUEUE: &str = "botfleet_db_batch_queue_rows";

/// The pool's counters, shared with its connection hooks.
#[derive(Debug, Default)]
pub(crate) struct PoolCounters {
    pub(crate) opened: AtomicU64,
    pub(crate) closed_lifetime: AtomicU64,
    pub(crate) closed_stale: AtomicU64,
    pub(crate) acquire_timeouts: AtomicU64,
    pub(crate) connect_errors: AtomicU64,
    pub(crate) waiters: AtomicI64,
}

pub(crate) fn describe() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        describe_histogram!(
            ACQUIRE_WAIT,
            Unit::Seconds,
            "Time to get a connection from the pool."
        );
        describe_histogram!(
            QUERY_DURATION,
            Unit::Seconds,
            "Execution time of one query, by fingerprint id."
        );
        describe_counter!(
            SLOW_QUERIES,
            "Queries slower than the slow-query threshold (logged at most once per interval)."
        );
        describe_gauge!(IN_USE, "Connections in use.");
        describe_gauge!(IDLE, "Open connections not in use.");
        describe_gauge!(MAX, "The pool's size.");
        describe_gauge!(WAITERS, "Callers waiting for a connection.");
        describe_counter!(TIMEOUTS, "Acquires that timed out.");
        describe_counter!(OPENED, "Connections opened.");
        describe_counter!(
            CLOSED,
            "Connections closed, by reason (lifetime, stale, idle_or_error)."
        );
        describe_counter!(CONNECT_ERRORS, "Failed attempts to open a connection.");
        describe_counter!(BATCH_ROWS, "Rows written by the write batcher.");
        describe_counter!(
            BATCH_FLUSHES,
            "Batches written (one statement each, splits included)."
        );
        describe_counter!(
            BATCH_REJECTED,
            "Rows the database refused, isolated from their batch."
        );
        describe_gauge!(BATCH_QUEUE, "Rows waiting in the write batcher.");
    });
}

pub(crate) fn acquire_histogram(bot: &str) -> metrics::Histogram {
    histogram!(ACQUIRE_WAIT, "bot" => bot.to_owned())
}

pub(crate) fn query_histogram(bot: &str, query: &str) -> metrics::Histogram {
    histogram!(QUERY_DURATION, "bot" => bot.to_owned(), "query" => query.to_owned())
}

pub(crate) fn slow_query(bot: &str) {
    counter!(SLOW_QUERIES, "bot" => bot.to_owned()).increment(1);
}

pub(crate) fn batch_written(db: &crate::Database, rows: u64) {
    let bot = db.bot().to_owned();
    counter!(BATCH_ROWS, "bot" => bot.clone()).increment(rows);
    counter!(BATCH_FLUSHES, "bot" => bot).increment(1);
}

pub(crate) fn batch_rejected(db: &crate::Database) {
    counter!(BATCH_REJECTED, "bot" => db.bot().to_owned()).increment(1);
}

pub(crate) fn batch_queue(db: &crate::Database, rows: u64) {
    gauge!(BATCH_QUEUE, "bot" => db.bot().to_owned()).set(rows as f64);
}

pub(crate) fn report_pool(bot: &str, status: PoolStatus, c: &PoolCounters) {
    let bot = bot.to_owned();
    gauge!(IN_USE, "bot" => bot.clone()).set(f64::from(status.in_use));
    gauge!(IDLE, "bot" => bot.clone()).set(f64::from(status.idle));
    gauge!(MAX, "bot" => bot.clone()).set(f64::from(status.max));
    gauge!(WAITERS, "bot" => bot.clone()).set(f64::from(status.waiters));
    let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
    counter!(TIMEOUTS, "bot" => bot.clone()).absolute(load(&c.acquire_timeouts));
    counter!(CONNECT_ERRORS, "bot" => bot.clone()).absolute(load(&c.connect_errors));
    let opened = load(&c.opened);
    counter!(OPENED, "bot" => bot.clone()).absolute(opened);
    let lifetime = load(&c.closed_lifetime);
    let stale = load(&c.closed_stale);
    // sqlx closes idle and broken connections without telling: they are what
    // is neither open nor closed for a known reason.
    let other = opened.saturating_sub(lifetime + stale + u64::from(status.open));
    for (reason, n) in [
        ("lifetime", lifetime),
        ("stale", stale),
        ("idle_or_error", other),
    ] {
        counter!(CLOSED, "bot" => bot.clone(), "reason" => reason).absolute(n);
    }
}
