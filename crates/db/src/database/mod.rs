//! The `Database` handle: one pool per process, instrumented. One concept
//! a file: the handle and its write hooks here; `connect.rs` opens it;
//! `hot.rs` is the connection kept between queries; `query.rs` the queries
//! and `transaction.rs` the transactions; `stats.rs` the statistics per
//! query shape; `slow.rs` the slow-query log.

mod connect;
mod hot;
mod query;
mod slow;
mod stats;
mod transaction;

// The children (`use super::*`) share these imports.
use parking_lot::{Mutex, RwLock};
use std::collections::HashMap;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Once};
use std::time::Duration;

use tokio::time::Instant;

use botfleet_config::{Backend, DatabaseSettings};
use sqlx::any::{AnyConnectOptions, AnyPoolOptions, AnyRow};
use sqlx::pool::PoolConnection;
use sqlx::{Any, AnyPool, ConnectOptions, Connection, Executor};

use crate::error::{Error, Result, scrub};
use crate::fingerprint::{Fingerprint, StatementKind};
use crate::metrics::{self as m, PoolCounters};
use crate::value::Value;

pub use connect::DatabaseBuilder;
pub(crate) use connect::target_of;
pub(crate) use hot::HotConn;
pub use query::Query;
use stats::Queries;
pub(crate) use stats::QueryEntry;
pub use stats::QueryStats;
pub use transaction::{Transaction, TxQuery};

/// A database: PostgreSQL, or the embedded SQLite, behind one pool per
/// process. Cheap to clone (the clones share the pool).
///
/// Every query through it is timed per [`Fingerprint`]; slow ones are
/// logged with their plan; the pool's health is counted. See the crate
/// docs for the whole picture.
#[derive(Clone)]
pub struct Database {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Database")
            .field("target", &self.inner.target)
            .field("pool_size", &self.inner.pool_size)
            .finish_non_exhaustive()
    }
}

pub(crate) struct Inner {
    pub(crate) pool: AnyPool,
    pub(crate) backend: Backend,
    pub(crate) target: String,
    password: Option<String>,
    pub(crate) bot: String,
    pub(crate) pool_size: u32,
    pub(crate) settings: DatabaseSettings,
    pub(crate) counters: Arc<PoolCounters>,
    /// Query texts seen, and the shapes they normalize to.
    queries: RwLock<Queries>,
    acquire_wait: metrics::Histogram,
    write_hooks: RwLock<Vec<WriteHook>>,
    /// The connection the last query used, kept for the next one.
    hot: Mutex<Option<HotConn>>,
    /// Whether queries are timed and counted (on unless switched off to
    /// measure what that costs).
    instrumented: std::sync::atomic::AtomicBool,
}

type WriteHook = Arc<
    dyn Fn(String) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> + Send + Sync,
>;

/// A snapshot of the pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct PoolStatus {
    /// The pool's size (the most connections it opens).
    pub max: u32,
    /// Open connections.
    pub open: u32,
    /// Open connections not in use.
    pub idle: u32,
    /// Connections in use.
    pub in_use: u32,
    /// Callers waiting for a connection.
    pub waiters: u32,
}

impl Database {
    /// A handle on the database at `url` (`postgres://...`, `postgresql://...`
    /// or `sqlite:...`), with the `dev` preset's settings until
    /// [`DatabaseBuilder::settings`] says otherwise.
    pub fn builder(url: impl Into<String>) -> DatabaseBuilder {
        DatabaseBuilder {
            url: url.into(),
            settings: botfleet_config::Environment::Dev.preset().database,
            pool_size: None,
            application_name: "botfleet".to_owned(),
            bot: "-".to_owned(),
        }
    }

    /// The embedded SQLite database in the file at `path` (created if
    /// missing): what `environment = "dev"` uses without a `database.url`.
    pub fn embedded(path: &std::path::Path) -> DatabaseBuilder {
        Database::builder(format!("sqlite://{}?mode=rwc", path.display()))
    }

    /// The database's kind.
    pub fn backend(&self) -> Backend {
        self.inner.backend
    }

    /// `host:port/database` or the SQLite file: how errors and logs name
    /// this database (never with credentials).
    pub fn target(&self) -> &str {
        &self.inner.target
    }

    /// The `bot` label of this handle's metrics.
    pub fn bot(&self) -> &str {
        &self.inner.bot
    }

    /// The settings in force.
    pub fn settings(&self) -> &DatabaseSettings {
        &self.inner.settings
    }

    /// The underlying sqlx pool, for what this handle does not offer. Work
    /// done through it is neither timed nor counted.
    pub fn pool(&self) -> &AnyPool {
        &self.inner.pool
    }

    /// A query; bind its parameters (`$1`, `$2`, ... on both backends) with
    /// [`Query::bind`], then run it.
    pub fn query<'q>(&'q self, sql: &'q str) -> Query<'q> {
        Query {
            db: self,
            sql,
            args: Vec::new(),
        }
    }

    /// Starts a transaction on a connection of the pool.
    pub async fn begin(&self) -> Result<Transaction> {
        let conn = self.acquire().await?;
        let mut tx = Transaction {
            db: self.clone(),
            conn,
            open: false,
            written: Vec::new(),
        };
        tx.run_raw("BEGIN").await?;
        tx.open = true;
        Ok(tx)
    }

    /// Runs `SELECT 1` within `timeout`: what the monitor's `/health` asks.
    /// Returns the round trip.
    pub async fn health(&self, timeout: Duration) -> Result<Duration> {
        let start = Instant::now();
        match tokio::time::timeout(timeout, self.query("SELECT 1").fetch_one()).await {
            Ok(Ok(_)) => Ok(start.elapsed()),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(Error::HealthTimeout {
                target: self.inner.target.clone(),
                timeout,
            }),
        }
    }

    /// The pool now.
    pub fn status(&self) -> PoolStatus {
        let open = self.inner.pool.size();
        let hot = self.hot().is_some();
        let idle = u32::try_from(self.inner.pool.num_idle())
            .unwrap_or(u32::MAX)
            .saturating_add(u32::from(hot));
        PoolStatus {
            max: self.inner.pool_size,
            open,
            idle,
            in_use: open.saturating_sub(idle),
            waiters: u32::try_from(self.inner.counters.waiters.load(Ordering::Relaxed).max(0))
                .unwrap_or(0),
        }
    }

    /// Runs `hook` with the table's name after every successful write
    /// statement (`INSERT`, `UPDATE`, `DELETE`, ...) through this handle, and
    /// waits for it before the write returns; in a transaction, after the
    /// commit. This is how cached results of that table are invalidated
    /// ([`crate::QueryCache`]).
    pub fn on_write<F, Fut>(&self, hook: F)
    where
        F: Fn(String) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let hook: WriteHook = Arc::new(move |table| Box::pin(hook(table)));
        self.inner.write_hooks.write().push(hook);
    }

    async fn after_write(&self, table: Option<String>) {
        let Some(table) = table else { return };
        let hooks: Vec<WriteHook> = self.inner.write_hooks.read().clone();
        for hook in hooks {
            hook(table.clone()).await;
        }
    }

    /// Closes every connection; later queries fail.
    pub async fn close(&self) {
        let hot = self.hot().take();
        drop(hot);
        self.inner.pool.close().await;
    }

    /// The table a write statement changes, when write hooks need it.
    fn written_table(&self, sql: &str) -> Option<String> {
        let hooks = self.inner.write_hooks.read();
        if hooks.is_empty() {
            return None;
        }
        drop(hooks);
        let entry = self.entry(sql);
        match entry.fingerprint.kind {
            StatementKind::Write => entry.fingerprint.writes.clone(),
            _ => None,
        }
    }

    pub(crate) fn query_error(&self, query: &str, e: sqlx::Error) -> Error {
        let password = self.inner.password.as_deref();
        if let sqlx::Error::Database(db) = &e {
            // 57014: query_canceled, which statement_timeout raises.
            if db.code().as_deref() == Some("57014") && db.message().contains("statement timeout") {
                return Error::StatementTimeout {
                    timeout: self.inner.settings.pool.statement_timeout,
                    query: Fingerprint::of(query).text,
                };
            }
        }
        if matches!(e, sqlx::Error::PoolTimedOut) {
            return Error::AcquireTimeout {
                timeout: self.inner.settings.pool.acquire_timeout,
                pool_size: self.inner.pool_size,
                target: self.inner.target.clone(),
            };
        }
        Error::Query {
            query: Fingerprint::of(query).text,
            cause: scrub(e.to_string(), password),
            source: e,
        }
    }
}
