//! The `Database` handle: one pool per process, instrumented.

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

/// Query texts remembered with their fingerprint; beyond this (a program
/// that writes literals into its SQL) each new text is normalized on every
/// call, which costs a few microseconds.
const MAX_QUERY_TEXTS: usize = 10_000;
/// Query shapes with statistics and a histogram of their own; beyond this,
/// new shapes share one entry.
const MAX_QUERY_SHAPES: usize = 2_000;
/// The shape of the shared entry.
const OTHER_QUERIES: u64 = 0;

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

/// How long one connection may stay hot before it goes back through the
/// pool (which checks its lifetime and liveness), and how many queries.
const HOT_MAX_AGE: Duration = Duration::from_secs(1);
const HOT_MAX_USES: u32 = 10_000;

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
    since: Instant,
    uses: u32,
}

type WriteHook = Arc<
    dyn Fn(String) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> + Send + Sync,
>;

#[derive(Default)]
struct Queries {
    by_sql: HashMap<String, Arc<QueryEntry>>,
    by_shape: HashMap<u64, Arc<QueryEntry>>,
}

/// Statistics of one query shape.
pub(crate) struct QueryEntry {
    pub(crate) fingerprint: Fingerprint,
    calls: AtomicU64,
    errors: AtomicU64,
    total_ns: AtomicU64,
    max_ns: AtomicU64,
    duration: metrics::Histogram,
    last_slow_log: Mutex<Option<Instant>>,
    /// The parameters of one call, so an advisor can `EXPLAIN` the query.
    sample: std::sync::OnceLock<(String, Vec<Value>)>,
}

/// A snapshot of one query shape's statistics.
#[derive(Clone, Debug, serde::Serialize)]
#[non_exhaustive]
pub struct QueryStats {
    /// The fingerprint text.
    pub query: String,
    /// The fingerprint id as in the metrics' `query` label.
    pub id: String,
    /// Calls, failed or not.
    pub calls: u64,
    /// Failed calls.
    pub errors: u64,
    /// Time spent executing (after a connection was acquired).
    pub total: Duration,
    /// The slowest call.
    pub max: Duration,
    /// One call's SQL and parameters, for `EXPLAIN`.
    #[serde(skip)]
    pub sample: Option<(String, Vec<Value>)>,
}

impl QueryStats {
    /// The mean execution time.
    pub fn mean(&self) -> Duration {
        self.total / u32::try_from(self.calls.max(1)).unwrap_or(u32::MAX)
    }
}

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

/// Builds a [`Database`].
#[must_use]
pub struct DatabaseBuilder {
    url: String,
    settings: DatabaseSettings,
    pool_size: Option<u32>,
    application_name: String,
    bot: String,
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

    /// Queries run through this handle, and their time in all: what
    /// [`query_stats`](Self::query_stats) sums, without copying each shape.
    pub fn query_totals(&self) -> (u64, Duration) {
        let queries = self.inner.queries.read();
        queries
            .by_shape
            .values()
            .fold((0, Duration::ZERO), |(n, t), e| {
                (
                    n + e.calls.load(Ordering::Relaxed),
                    t + Duration::from_nanos(e.total_ns.load(Ordering::Relaxed)),
                )
            })
    }

    /// Statistics of every query shape seen, the most total time first.
    pub fn query_stats(&self) -> Vec<QueryStats> {
        let queries = self.inner.queries.read();
        let mut stats: Vec<QueryStats> = queries
            .by_shape
            .values()
            .filter(|e| e.calls.load(Ordering::Relaxed) > 0)
            .map(|e| QueryStats {
                query: e.fingerprint.text.clone(),
                id: e.fingerprint.id_hex(),
                calls: e.calls.load(Ordering::Relaxed),
                errors: e.errors.load(Ordering::Relaxed),
                total: Duration::from_nanos(e.total_ns.load(Ordering::Relaxed)),
                max: Duration::from_nanos(e.max_ns.load(Ordering::Relaxed)),
                sample: e.sample.get().cloned(),
            })
            .collect();
        stats.sort_by_key(|s| std::cmp::Reverse(s.total));
        stats
    }

    /// Exports the pool's gauges and counters through the `metrics` facade
    /// (names in docs/metrics.md). Call it periodically; query and acquire
    /// latencies are recorded as they happen.
    pub fn report_metrics(&self) {
        m::report_pool(&self.inner.bot, self.status(), &self.inner.counters);
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
    fn hot(&self) -> parking_lot::MutexGuard<'_, Option<HotConn>> {
        self.inner.hot.lock()
    }

    /// Switches query instrumentation (timing, statistics, histograms, the
    /// slow-query log) on or off for every clone of this handle. It is on by
    /// default; `botfleet bench db` switches it off to measure its cost.
    /// Write hooks run either way.
    pub fn set_instrumented(&self, on: bool) {
        self.inner.instrumented.store(on, Ordering::Relaxed);
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

    fn connect_error(&self, e: &sqlx::Error) -> Error {
        Error::Connect {
            target: self.inner.target.clone(),
            cause: scrub(e.to_string(), self.inner.password.as_deref()),
        }
    }

    pub(crate) fn entry(&self, sql: &str) -> Arc<QueryEntry> {
        let inner = &self.inner;
        if let Some(e) = inner.queries.read().by_sql.get(sql) {
            return e.clone();
        }
        let fingerprint = Fingerprint::of(sql);
        let mut queries = inner.queries.write();
        let shapes = queries.by_shape.len();
        let entry = match queries.by_shape.get(&fingerprint.id) {
            Some(e) => e.clone(),
            None if shapes >= MAX_QUERY_SHAPES => queries.by_shape[&OTHER_QUERIES].clone(),
            None => {
                let id = fingerprint.id;
                let e = Arc::new(QueryEntry::new(fingerprint, &inner.bot));
                queries.by_shape.insert(id, e.clone());
                e
            }
        };
        if queries.by_sql.len() < MAX_QUERY_TEXTS {
            queries.by_sql.insert(sql.to_owned(), entry.clone());
        }
        entry
    }

    /// Records one execution and logs it when slow; returns the table a
    /// successful write changed.
    fn finish(
        &self,
        entry: &Arc<QueryEntry>,
        elapsed: Duration,
        ok: bool,
        sql: &str,
        args: &[Value],
    ) -> Option<String> {
        let ns = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        entry.calls.fetch_add(1, Ordering::Relaxed);
        entry.total_ns.fetch_add(ns, Ordering::Relaxed);
        entry.max_ns.fetch_max(ns, Ordering::Relaxed);
        entry.duration.record(elapsed);
        if !ok {
            entry.errors.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        // Lock-free once set: this runs on every read.
        if entry.fingerprint.kind == StatementKind::Read && entry.sample.get().is_none() {
            let _ = entry.sample.set((sql.to_owned(), args.to_vec()));
        }
        if elapsed >= self.inner.settings.slow_query {
            self.slow(entry, elapsed, sql, args);
        }
        match entry.fingerprint.kind {
            StatementKind::Write => entry.fingerprint.writes.clone(),
            _ => None,
        }
    }

    fn slow(&self, entry: &Arc<QueryEntry>, elapsed: Duration, sql: &str, args: &[Value]) {
        let interval = self.inner.settings.slow_query_log_interval;
        {
            let mut last = entry.last_slow_log.lock();
            if last.is_some_and(|t| t.elapsed() < interval) {
                return;
            }
            *last = Some(Instant::now());
        }
        m::slow_query(&self.inner.bot);
        let explain = self.inner.settings.explain_slow_queries
            && self.inner.backend == Backend::Postgres
            && entry.fingerprint.kind == StatementKind::Read;
        if !explain {
            log_slow(&self.inner.bot, &entry.fingerprint, elapsed, None);
            return;
        }
        let db = self.clone();
        let entry = entry.clone();
        let sql = format!("EXPLAIN {sql}");
        let args = args.to_vec();
        tokio::spawn(async move {
            let plan = match db.explain_raw(&sql, &args).await {
                Ok(plan) => plan,
                Err(e) => format!("(no plan: {e})"),
            };
            log_slow(&db.inner.bot, &entry.fingerprint, elapsed, Some(&plan));
        });
    }

    /// Runs `EXPLAIN ...` (given whole) and returns its lines, without
    /// recording it as a query of the bot.
    pub(crate) async fn explain_raw(&self, explain_sql: &str, args: &[Value]) -> Result<String> {
        let mut conn = self.acquire().await?;
        let mut q = sqlx::query(explain_sql);
        for a in args {
            q = a.bind(q);
        }
        let rows = q
            .fetch_all(&mut *conn)
            .await
            .map_err(|e| self.query_error(explain_sql, e))?;
        let lines: Vec<String> = rows
            .iter()
            .filter_map(|r| sqlx::Row::try_get::<String, _>(r, 0).ok())
            .collect();
        Ok(lines.join("\n"))
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

impl QueryEntry {
    fn new(fingerprint: Fingerprint, bot: &str) -> QueryEntry {
        let duration = m::query_histogram(bot, &fingerprint.id_hex());
        QueryEntry {
            fingerprint,
            calls: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            total_ns: AtomicU64::new(0),
            max_ns: AtomicU64::new(0),
            duration,
            last_slow_log: Mutex::new(None),
            sample: std::sync::OnceLock::new(),
        }
    }
}

/// One slow-query log line, with the plan when there is one.
fn log_slow(bot: &str, fingerprint: &Fingerprint, elapsed: Duration, plan: Option<&str>) {
    tracing::warn!(
        target: "botfleet_db::slow",
        bot = %bot,
        query = %fingerprint.text,
        id = %fingerprint.id_hex(),
        duration_ms = elapsed.as_secs_f64() * 1e3,
        plan = plan.map(tracing::field::display),
        "slow query"
    );
}

/// A query being built: SQL and parameters.
#[derive(Debug)]
#[must_use = "a query does nothing until it is executed or fetched"]
pub struct Query<'q> {
    db: &'q Database,
    sql: &'q str,
    args: Vec<Value>,
}

macro_rules! run {
    ($self:ident, $conn:expr, $method:ident) => {{
        let mut q = sqlx::query($self.sql);
        for a in &$self.args {
            q = a.bind(q);
        }
        if $self.db.inner.instrumented.load(Ordering::Relaxed) {
            let entry = $self.db.entry($self.sql);
            let start = Instant::now();
            let result = q.$method($conn).await;
            let elapsed = start.elapsed();
            let written = $self
                .db
                .finish(&entry, elapsed, result.is_ok(), $self.sql, &$self.args);
            (
                result.map_err(|e| $self.db.query_error($self.sql, e)),
                written,
            )
        } else {
            let result = q.$method($conn).await;
            let written = match &result {
                Ok(_) => $self.db.written_table($self.sql),
                Err(_) => None,
            };
            (
                result.map_err(|e| $self.db.query_error($self.sql, e)),
                written,
            )
        }
    }};
}

impl Query<'_> {
    /// Binds the next parameter (`$1`, then `$2`, ...).
    pub fn bind(mut self, value: impl Into<Value>) -> Self {
        self.args.push(value.into());
        self
    }

    /// Binds every value of `values`, in order.
    pub fn bind_all(mut self, values: impl IntoIterator<Item = Value>) -> Self {
        self.args.extend(values);
        self
    }

    /// Every row, each decoded with `FromRow` (derive it with sqlx, or
    /// implement it).
    pub async fn fetch_all_as<T>(self) -> Result<Vec<T>>
    where
        T: for<'r> sqlx::FromRow<'r, AnyRow>,
    {
        let sql = self.sql;
        let db = self.db;
        let rows = self.fetch_all().await?;
        rows.iter()
            .map(|r| T::from_row(r).map_err(|e| db.query_error(sql, e)))
            .collect()
    }
}

/// A transaction: queries on one connection, then [`commit`](Self::commit)
/// or [`rollback`](Self::rollback). Dropped without either, the connection
/// is closed instead of returned, so the server rolls back.
pub struct Transaction {
    db: Database,
    conn: PoolConnection<Any>,
    open: bool,
    /// Tables written, for the write hooks at commit.
    written: Vec<String>,
}

impl std::fmt::Debug for Transaction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transaction")
            .field("open", &self.open)
            .finish()
    }
}

/// A query inside a [`Transaction`].
#[derive(Debug)]
#[must_use = "a query does nothing until it is executed or fetched"]
pub struct TxQuery<'t> {
    tx: &'t mut Transaction,
    sql: &'t str,
    args: Vec<Value>,
}

impl Transaction {
    /// A query on the transaction's connection.
    pub fn query<'t>(&'t mut self, sql: &'t str) -> TxQuery<'t> {
        TxQuery {
            tx: self,
            sql,
            args: Vec::new(),
        }
    }

    /// Commits.
    pub async fn commit(mut self) -> Result<()> {
        self.run_raw("COMMIT").await?;
        self.open = false;
        let mut written = std::mem::take(&mut self.written);
        written.sort();
        written.dedup();
        for table in written {
            self.db.after_write(Some(table)).await;
        }
        Ok(())
    }

    /// Rolls back.
    pub async fn rollback(mut self) -> Result<()> {
        self.run_raw("ROLLBACK").await?;
        self.open = false;
        Ok(())
    }

    async fn run_raw(&mut self, sql: &'static str) -> Result<()> {
        self.conn
            .execute(sql)
            .await
            .map(drop)
            .map_err(|e| self.db.query_error(sql, e))
    }
}

impl Drop for Transaction {
    fn drop(&mut self) {
        if self.open {
            // Not committed: do not hand a connection inside a transaction
            // back to the pool.
            self.conn.close_on_drop();
        }
    }
}

impl TxQuery<'_> {
    /// Binds the next parameter.
    pub fn bind(mut self, value: impl Into<Value>) -> Self {
        self.args.push(value.into());
        self
    }
}

/// The methods that run a query: on a connection of the pool for `Query`,
/// on the transaction's for `TxQuery`.
macro_rules! run_methods {
    ($($(#[$doc:meta])* fn $name:ident -> $out:ty = $sqlx:ident $(, $map:expr)?;)*) => {
        impl Query<'_> {
            $(
                $(#[$doc])*
                pub async fn $name(self) -> Result<$out> {
                    let mut conn = self.db.acquire_hot().await?;
                    let (result, written) = run!(self, &mut *conn.conn, $sqlx);
                    self.db.release(conn, result.is_ok());
                    self.db.after_write(written).await;
                    result$(.map($map))?
                }
            )*
        }

        impl TxQuery<'_> {
            $(
                $(#[$doc])*
                pub async fn $name(self) -> Result<$out> {
                    let TxQuery { tx, sql, args } = self;
                    let this = Query { db: &tx.db, sql, args };
                    let (result, written) = run!(this, &mut *tx.conn, $sqlx);
                    // Write hooks run at the commit.
                    tx.written.extend(written);
                    result$(.map($map))?
                }
            )*
        }
    };
}

run_methods! {
    /// Runs the statement; returns the number of rows it changed.
    fn execute -> u64 = execute, |r: sqlx::any::AnyQueryResult| r.rows_affected();
    /// Every row of the result.
    fn fetch_all -> Vec<AnyRow> = fetch_all;
    /// The first row; an error when there is none.
    fn fetch_one -> AnyRow = fetch_one;
    /// The first row, if any.
    fn fetch_optional -> Option<AnyRow> = fetch_optional;
}

impl std::fmt::Debug for DatabaseBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may carry a password.
        f.debug_struct("DatabaseBuilder")
            .field("url", &botfleet_config::redact_url(&self.url))
            .field("pool_size", &self.pool_size)
            .field("application_name", &self.application_name)
            .field("bot", &self.bot)
            .finish_non_exhaustive()
    }
}

impl DatabaseBuilder {
    /// Pool, timeout, slow-query and batcher settings (from
    /// `FleetConfig::database.settings`).
    pub fn settings(mut self, settings: DatabaseSettings) -> Self {
        self.settings = settings;
        self
    }

    /// This process's pool size, from the fleet budget plan
    /// ([`crate::budget::plan`]); capped by `pool.max_connections`. Without
    /// it the pool has `pool.max_connections`.
    pub fn pool_size(mut self, size: u32) -> Self {
        self.pool_size = Some(size);
        self
    }

    /// `application_name` on PostgreSQL, so `pg_stat_activity` shows who is
    /// who: `botfleet/<bot>/<worker>` by convention.
    pub fn application_name(mut self, name: impl Into<String>) -> Self {
        self.application_name = name.into();
        self
    }

    /// The `bot` label of this handle's metrics and logs.
    pub fn bot(mut self, bot: impl Into<String>) -> Self {
        self.bot = bot.into();
        self
    }

    /// Opens the pool (and one connection, within `pool.connect_timeout`, to
    /// fail early with a clear error).
    pub async fn connect(self) -> Result<Database> {
        static DRIVERS: Once = Once::new();
        DRIVERS.call_once(sqlx::any::install_default_drivers);
        m::describe();

        let backend =
            if self.url.starts_with("postgres://") || self.url.starts_with("postgresql://") {
                Backend::Postgres
            } else if self.url.starts_with("sqlite:") {
                Backend::Sqlite
            } else {
                return Err(Error::Config(format!(
                    "unsupported database URL `{}`: expected postgres://, postgresql:// or sqlite:",
                    botfleet_config::redact_url(&self.url)
                )));
            };
        let password = botfleet_config::url_password(&self.url).map(str::to_owned);
        let target = target_of(&self.url);
        let s = &self.settings.pool;
        let memory = backend == Backend::Sqlite && self.url.contains(":memory:");
        let mut size = self
            .pool_size
            .unwrap_or(s.max_connections)
            .min(s.max_connections)
            .max(1);
        if memory {
            // Each connection to `:memory:` is a database of its own.
            size = 1;
        }
        let url = match backend {
            Backend::Postgres => with_param(
                &self.url,
                "application_name",
                &sanitize(&self.application_name),
            ),
            _ => self.url.clone(),
        };
        let options = AnyConnectOptions::from_str(&url)
            .map_err(|e| Error::Config(scrub(e.to_string(), password.as_deref())))?
            .disable_statement_logging();

        let counters = Arc::new(PoolCounters::default());
        let lifetime = s.max_lifetime;
        let ping_after = s.ping_idle_after;
        let statement_timeout = s.statement_timeout;
        let c = counters.clone();
        let c2 = counters.clone();
        let c3 = counters.clone();
        let mut pool = AnyPoolOptions::new()
            .max_connections(size)
            .min_connections(s.min_connections.min(size))
            .acquire_timeout(s.acquire_timeout)
            .idle_timeout((!memory).then_some(s.idle_timeout))
            .max_lifetime(None)
            .test_before_acquire(false)
            .after_connect(move |conn, _| {
                let c = c.clone();
                Box::pin(async move {
                    c.opened.fetch_add(1, Ordering::Relaxed);
                    match conn.backend_name() {
                        "PostgreSQL" if !statement_timeout.is_zero() => {
                            let sql = format!(
                                "SET statement_timeout = {}",
                                statement_timeout.as_millis()
                            );
                            conn.execute(sql.as_str()).await?;
                        }
                        "SQLite" => {
                            conn.execute("PRAGMA busy_timeout = 5000").await?;
                            conn.execute("PRAGMA foreign_keys = ON").await?;
                            if !memory {
                                conn.execute("PRAGMA journal_mode = WAL").await?;
                                // With WAL, a commit need not wait for the
                                // disk: the database survives a crashed
                                // process intact; a power cut may lose the
                                // last commits, never consistency.
                                conn.execute("PRAGMA synchronous = NORMAL").await?;
                            }
                        }
                        _ => {}
                    }
                    Ok(())
                })
            })
            .before_acquire(move |conn, meta| {
                let c = c2.clone();
                Box::pin(async move {
                    if !memory && meta.age >= lifetime {
                        c.closed_lifetime.fetch_add(1, Ordering::Relaxed);
                        return Ok(false);
                    }
                    if meta.idle_for >= ping_after && conn.ping().await.is_err() {
                        c.closed_stale.fetch_add(1, Ordering::Relaxed);
                        return Ok(false);
                    }
                    Ok(true)
                })
            })
            .after_release(move |_, meta| {
                let c = c3.clone();
                Box::pin(async move {
                    if !memory && meta.age >= lifetime {
                        c.closed_lifetime.fetch_add(1, Ordering::Relaxed);
                        return Ok(false);
                    }
                    Ok(true)
                })
            });
        if memory {
            pool = pool.min_connections(1);
        }
        let connect = pool.connect_with(options);
        let pool =
            match tokio::time::timeout(s.connect_timeout.max(Duration::from_millis(1)), connect)
                .await
            {
                Ok(Ok(pool)) => pool,
                Ok(Err(e)) => {
                    return Err(Error::Connect {
                        target,
                        cause: scrub(e.to_string(), password.as_deref()),
                    });
                }
                Err(_) => {
                    return Err(Error::Connect {
                        target,
                        cause: format!(
                            "no connection within the connect timeout ({:?})",
                            s.connect_timeout
                        ),
                    });
                }
            };
        let bot = self.bot;
        let other = Fingerprint {
            text: "(other queries)".to_owned(),
            id: OTHER_QUERIES,
            kind: StatementKind::Other,
            writes: None,
        };
        let mut queries = Queries::default();
        queries
            .by_shape
            .insert(OTHER_QUERIES, Arc::new(QueryEntry::new(other, &bot)));
        Ok(Database {
            inner: Arc::new(Inner {
                pool,
                backend,
                target,
                password,
                acquire_wait: m::acquire_histogram(&bot),
                bot,
                pool_size: size,
                settings: self.settings,
                counters,
                queries: RwLock::new(queries),
                write_hooks: RwLock::new(Vec::new()),
                hot: Mutex::new(None),
                instrumented: std::sync::atomic::AtomicBool::new(true),
            }),
        })
    }
}

/// `host:port/database` of a PostgreSQL URL, or the file of a SQLite one;
/// never credentials.
pub(crate) fn target_of(url: &str) -> String {
    if let Some(rest) = url.strip_prefix("sqlite:") {
        let path = rest.trim_start_matches("//");
        return path.split('?').next().unwrap_or(path).to_owned();
    }
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let rest = rest.split('?').next().unwrap_or(rest);
    let rest = rest.rsplit_once('@').map_or(rest, |(_, r)| r);
    rest.to_owned()
}

fn with_param(url: &str, name: &str, value: &str) -> String {
    if url.contains(&format!("{name}=")) {
        return url.to_owned();
    }
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}{name}={value}")
}

fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "/_-.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .take(63)
        .collect()
}
