//! The fleet's dependencies, polled every few seconds into the monitor's
//! registry: PostgreSQL (`pg_stat_activity` by state and application, the
//! database's cache-hit ratio, `pg_stat_statements`' top queries when the
//! extension is there) and Redis (`INFO`: memory, hits and misses,
//! clients, evictions). Whether each answered feeds `/ready`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use botfleet_db::{Database, Row};
use botfleet_monitor::Registry;

/// Each poll's bound: a dependency that does not answer within it is down.
const TIMEOUT: Duration = Duration::from_secs(3);
/// Rows of `pg_stat_activity` kept (the busiest application names).
const MAX_ACTIVITY_ROWS: usize = 20;
/// Queries of `pg_stat_statements` kept.
const TOP_QUERIES: usize = 10;

/// A dependency's state, as `/ready` reads it.
#[derive(Debug, Default)]
pub(crate) struct Health {
    /// 0 not polled yet (or not configured), 1 up, 2 down.
    postgres: AtomicU8,
    redis: AtomicU8,
}

impl Health {
    /// What is down, one line each.
    pub(crate) fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.postgres.load(Ordering::Relaxed) == 2 {
            out.push("PostgreSQL does not answer".to_owned());
        }
        if self.redis.load(Ordering::Relaxed) == 2 {
            out.push("Redis does not answer".to_owned());
        }
        out
    }
}

fn set(flag: &AtomicU8, up: bool) {
    flag.store(if up { 1 } else { 2 }, Ordering::Relaxed);
}

/// Polls `config`'s PostgreSQL and Redis every `[monitor] poll_interval`
/// until aborted (never when it is zero).
pub(crate) async fn poll(
    config: botfleet_config::FleetConfig,
    registry: Registry,
    health: Arc<Health>,
) {
    let postgres = config
        .database
        .url
        .as_ref()
        .filter(|u| u.backend() == botfleet_config::Backend::Postgres)
        .map(|u| u.expose().to_owned());
    let redis = config
        .redis
        .as_ref()
        .and_then(|r| redis::Client::open(r.expose_url()).ok());
    let every = config.monitor.poll_interval;
    if every.is_zero() {
        return;
    }
    let mut db: Option<Database> = None;
    let mut connection: Option<redis::aio::MultiplexedConnection> = None;
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if let Some(url) = &postgres {
            let up = tokio::time::timeout(TIMEOUT, poll_postgres(url, &mut db, &registry))
                .await
                .is_ok_and(|r| r.is_ok());
            if !up {
                db = None;
            }
            registry.set_gauge("botfleet_postgres_up", &[], f64::from(u8::from(up)));
            set(&health.postgres, up);
        }
        if let Some(client) = &redis {
            let up = tokio::time::timeout(TIMEOUT, poll_redis(client, &mut connection, &registry))
                .await
                .is_ok_and(|r| r.is_ok());
            if !up {
                connection = None;
            }
            registry.set_gauge("botfleet_redis_up", &[], f64::from(u8::from(up)));
            set(&health.redis, up);
        }
    }
}

async fn poll_postgres(
    url: &str,
    db: &mut Option<Database>,
    registry: &Registry,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    if db.is_none() {
        *db = Some(
            Database::builder(url)
                .bot("monitor")
                .application_name("botfleet-monitor")
                .pool_size(1)
                .connect()
                .await?,
        );
    }
    let Some(db) = db.as_ref() else {
        return Ok(());
    };
    let rows = db
        .query(
            "SELECT coalesce(state, 'unknown') AS state, coalesce(nullif(application_name, ''), 'unknown') AS app, count(*) AS n \
             FROM pg_stat_activity WHERE datname = current_database() GROUP BY 1, 2 ORDER BY 3 DESC",
        )
        .fetch_all()
        .await?;
    for row in rows.iter().take(MAX_ACTIVITY_ROWS) {
        let state: String = row.try_get("state")?;
        let app: String = row.try_get("app")?;
        let n: i64 = row.try_get("n")?;
        registry.set_gauge(
            "botfleet_postgres_connections",
            &[("application".to_owned(), app), ("state".to_owned(), state)],
            n as f64,
        );
    }
    let ratio = db
        .query(
            "SELECT coalesce(blks_hit::float8 / nullif(blks_hit + blks_read, 0), 1.0) AS ratio \
             FROM pg_stat_database WHERE datname = current_database()",
        )
        .fetch_one()
        .await?;
    let ratio: f64 = ratio.try_get("ratio")?;
    registry.set_gauge("botfleet_postgres_cache_hit_ratio", &[], ratio);
    let server = db
        .query(
            "SELECT current_setting('max_connections')::float8 AS max, \
             (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend')::float8 AS backends",
        )
        .fetch_one()
        .await?;
    registry.set_gauge(
        "botfleet_postgres_max_connections",
        &[],
        server.try_get::<f64, _>("max")?,
    );
    registry.set_gauge(
        "botfleet_postgres_backends",
        &[],
        server.try_get::<f64, _>("backends")?,
    );
    // pg_stat_statements, when installed in this database.
    if let Ok(rows) = db
        .query(
            "SELECT queryid::text AS id, calls::float8 AS calls, total_exec_time::float8 / 1000.0 AS seconds \
             FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) \
             ORDER BY total_exec_time DESC LIMIT 10",
        )
        .fetch_all()
        .await
    {
        for row in rows.iter().take(TOP_QUERIES) {
            let (Ok(id), Ok(calls), Ok(seconds)) = (
                row.try_get::<String, _>("id"),
                row.try_get::<f64, _>("calls"),
                row.try_get::<f64, _>("seconds"),
            ) else {
                continue;
            };
            let labels = [("queryid".to_owned(), id)];
            registry.set_float_counter("botfleet_postgres_top_query_calls_total", &labels, calls);
            registry.set_float_counter("botfleet_postgres_top_query_seconds_total", &labels, seconds);
        }
    }
    Ok(())
}

async fn poll_redis(
    client: &redis::Client,
    connection: &mut Option<redis::aio::MultiplexedConnection>,
    registry: &Registry,
) -> redis::RedisResult<()> {
    if connection.is_none() {
        *connection = Some(client.get_multiplexed_async_connection().await?);
    }
    let Some(c) = connection.as_mut() else {
        return Ok(());
    };
    let info: String = redis::cmd("INFO").query_async(c).await?;
    for (field, name, counter) in [
        ("used_memory", "botfleet_redis_used_memory_bytes", false),
        ("maxmemory", "botfleet_redis_maxmemory_bytes", false),
        (
            "connected_clients",
            "botfleet_redis_connected_clients",
            false,
        ),
        ("keyspace_hits", "botfleet_redis_keyspace_hits_total", true),
        (
            "keyspace_misses",
            "botfleet_redis_keyspace_misses_total",
            true,
        ),
        ("evicted_keys", "botfleet_redis_evicted_keys_total", true),
    ] {
        if let Some(v) = info_field(&info, field) {
            if counter {
                registry.set_float_counter(name, &[], v);
            } else {
                registry.set_gauge(name, &[], v);
            }
        }
    }
    Ok(())
}

/// A numeric `field:value` line of `INFO`.
fn info_field(info: &str, field: &str) -> Option<f64> {
    info.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_fields_are_read_by_their_whole_name() {
        let info = "# Memory\r\nused_memory:1024\r\nused_memory_human:1K\r\nmaxmemory:0\r\n# Stats\r\nkeyspace_hits:7\r\n";
        assert_eq!(info_field(info, "used_memory"), Some(1024.0));
        assert_eq!(info_field(info, "maxmemory"), Some(0.0));
        assert_eq!(info_field(info, "keyspace_hits"), Some(7.0));
        assert_eq!(info_field(info, "keyspace_misses"), None);
    }
}
