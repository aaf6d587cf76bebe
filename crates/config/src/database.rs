//! The settings of `[database]` beyond its URL: the connection pool of each
//! worker, the fleet's connection reserve, the slow-query log and the write
//! batcher. Every value has a preset default (the rationale is in
//! docs/config.md) and can be overridden.

use std::time::Duration;

use crate::reader::{Ctx, Table, choice};

/// `[database.pool]`: the connection pool of one worker process.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct PoolSettings {
    /// Connections kept open while idle.
    pub min_connections: u32,
    /// The most connections one process opens; the fleet budget may give a
    /// process fewer, never more.
    pub max_connections: u32,
    /// The longest a query waits for a connection before failing.
    pub acquire_timeout: Duration,
    /// An idle connection above `min_connections` is closed after this.
    pub idle_timeout: Duration,
    /// A connection is replaced after this age (server-side caches and
    /// leaks do not grow forever).
    pub max_lifetime: Duration,
    /// A connection idle longer than this is pinged before it is handed
    /// out; zero pings on every acquire (one round trip more each time).
    pub ping_idle_after: Duration,
    /// The longest the first connection may take at start; later ones are
    /// bounded by `acquire_timeout`.
    pub connect_timeout: Duration,
    /// The server cancels a statement running longer (PostgreSQL's
    /// `statement_timeout`); zero: no limit.
    pub statement_timeout: Duration,
}

/// What a full write batcher queue does to the next row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WhenFull {
    /// The caller waits for room (backpressure).
    Wait,
    /// The row is refused with an error at once.
    Error,
}

impl WhenFull {
    /// Every choice with its `fleet.toml` spelling.
    pub const ALL: [(&'static str, WhenFull); 2] =
        [("wait", WhenFull::Wait), ("error", WhenFull::Error)];

    /// The spelling used in `fleet.toml`.
    pub fn as_str(self) -> &'static str {
        match self {
            WhenFull::Wait => "wait",
            WhenFull::Error => "error",
        }
    }
}

/// `[database.batcher]`: the write batcher for high-volume inserts.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct BatcherSettings {
    /// A batch is written when it has this many rows ...
    pub max_rows: u32,
    /// ... or when its first row has waited this long.
    pub linger: Duration,
    /// Rows that may wait in the queue.
    pub queue: u32,
    /// What a full queue does.
    pub when_full: WhenFull,
}

/// `[database]` without its URL.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct DatabaseSettings {
    /// The pool of each worker process.
    pub pool: PoolSettings,
    /// Connections the fleet budget leaves to other clients (psql, backups,
    /// migrations, monitoring), on top of the server's superuser reserve.
    pub reserve: u32,
    /// Queries slower than this are logged (once per query shape per
    /// `slow_query_log_interval`).
    pub slow_query: Duration,
    /// How often one query shape may be logged as slow.
    pub slow_query_log_interval: Duration,
    /// Log the plan (`EXPLAIN`, without `ANALYZE`) of slow PostgreSQL
    /// queries.
    pub explain_slow_queries: bool,
    /// The write batcher.
    pub batcher: BatcherSettings,
}

const MS: Duration = Duration::from_millis(1);
const S: Duration = Duration::from_secs(1);
const HOUR: Duration = Duration::from_secs(3600);

pub(crate) fn preset(
    max_connections: u32,
    min_connections: u32,
    acquire: Duration,
    ping_idle_after: Duration,
    statement_timeout: Duration,
    slow_query: Duration,
    reserve: u32,
) -> DatabaseSettings {
    DatabaseSettings {
        pool: PoolSettings {
            min_connections,
            max_connections,
            acquire_timeout: acquire,
            idle_timeout: 10 * 60 * S,
            max_lifetime: 30 * 60 * S,
            ping_idle_after,
            connect_timeout: acquire.min(5 * S),
            statement_timeout,
        },
        reserve,
        slow_query,
        slow_query_log_interval: 60 * S,
        explain_slow_queries: true,
        batcher: BatcherSettings {
            max_rows: 100,
            linger: 10 * MS,
            queue: 10_000,
            when_full: WhenFull::Wait,
        },
    }
}

/// Reads the settings keys of `[database]` (and its `pool` and `batcher`
/// tables) over the preset's values. The caller reads `url` and finishes
/// the table.
pub(crate) fn settings(
    cx: &mut Ctx<'_>,
    t: &mut Table<'_>,
    base: &DatabaseSettings,
) -> DatabaseSettings {
    let pool = match t.table(cx, "pool") {
        Some(mut p) => {
            let pool = pool(cx, &mut p, &base.pool);
            p.finish(cx);
            pool
        }
        None => base.pool.clone(),
    };
    let batcher = match t.table(cx, "batcher") {
        Some(mut b) => {
            let batcher = batcher(cx, &mut b, &base.batcher);
            b.finish(cx);
            batcher
        }
        None => base.batcher.clone(),
    };
    DatabaseSettings {
        pool,
        reserve: t
            .integer(cx, "reserve", 0..=10_000)
            .map_or(base.reserve, |v| v.value as u32),
        slow_query: t
            .duration(cx, "slow_query", MS..=HOUR)
            .map_or(base.slow_query, |v| v.value),
        slow_query_log_interval: t
            .duration(cx, "slow_query_log_interval", S..=24 * HOUR)
            .map_or(base.slow_query_log_interval, |v| v.value),
        explain_slow_queries: t
            .boolean(cx, "explain_slow_queries")
            .map_or(base.explain_slow_queries, |v| v.value),
        batcher,
    }
}

fn pool(cx: &mut Ctx<'_>, t: &mut Table<'_>, base: &PoolSettings) -> PoolSettings {
    let min = t.integer(cx, "min_connections", 0..=10_000);
    let max = t.integer(cx, "max_connections", 1..=10_000);
    let min_connections = min
        .as_ref()
        .map_or(base.min_connections, |v| v.value as u32);
    let max_connections = max
        .as_ref()
        .map_or(base.max_connections, |v| v.value as u32);
    if min_connections > max_connections {
        let (span, key) = match (&min, &max) {
            (Some(m), _) => (m.span.clone(), "min_connections"),
            (None, Some(m)) => (m.span.clone(), "max_connections"),
            (None, None) => (t.span_of("min_connections"), "min_connections"),
        };
        cx.error(
            &span,
            &t.key_path(key),
            format!(
                "min_connections ({min_connections}) is greater than max_connections ({max_connections})"
            ),
        );
    }
    PoolSettings {
        min_connections: min_connections.min(max_connections),
        max_connections,
        acquire_timeout: t
            .duration(cx, "acquire_timeout", MS..=10 * 60 * S)
            .map_or(base.acquire_timeout, |v| v.value),
        idle_timeout: t
            .duration(cx, "idle_timeout", S..=24 * HOUR)
            .map_or(base.idle_timeout, |v| v.value),
        max_lifetime: t
            .duration(cx, "max_lifetime", S..=7 * 24 * HOUR)
            .map_or(base.max_lifetime, |v| v.value),
        ping_idle_after: t
            .duration(cx, "ping_idle_after", Duration::ZERO..=24 * HOUR)
            .map_or(base.ping_idle_after, |v| v.value),
        connect_timeout: t
            .duration(cx, "connect_timeout", MS..=10 * 60 * S)
            .map_or(base.connect_timeout, |v| v.value),
        statement_timeout: t
            .duration(cx, "statement_timeout", Duration::ZERO..=24 * HOUR)
            .map_or(base.statement_timeout, |v| v.value),
    }
}

fn batcher(cx: &mut Ctx<'_>, t: &mut Table<'_>, base: &BatcherSettings) -> BatcherSettings {
    let when_full = match t.string(cx, "when_full") {
        Some(v) => {
            choice(cx, &v, &t.key_path("when_full"), &WhenFull::ALL).unwrap_or(base.when_full)
        }
        None => base.when_full,
    };
    BatcherSettings {
        max_rows: t
            .integer(cx, "max_rows", 1..=10_000)
            .map_or(base.max_rows, |v| v.value as u32),
        linger: t
            .duration(cx, "linger", Duration::ZERO..=60 * S)
            .map_or(base.linger, |v| v.value),
        queue: t
            .integer(cx, "queue", 1..=10_000_000)
            .map_or(base.queue, |v| v.value as u32),
        when_full,
    }
}
