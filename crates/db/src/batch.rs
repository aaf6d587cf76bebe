//! The write batcher: rows for one table are collected and written as one
//! multi-row `INSERT` when `max_rows` have arrived or the first of them has
//! waited `linger` (the one place botfleet waits on a timer to fill a batch,
//! with a bound; DESIGN.md invariant 6).
//!
//! Nothing is lost:
//! - a batch the database refuses for one bad row is split in halves until
//!   the bad row is alone; it is reported with its error, the rest is
//!   written (a refused statement wrote nothing, so no row is written twice);
//! - a batch that fails because the database is away is retried, with
//!   backoff, until it is written or the shutdown grace period ends; rows
//!   still unwritten then are handed back in the report;
//! - [`Batcher::shutdown`] writes everything queued before it returns.
//!
//! The queue is bounded: a full queue makes `push` wait, or refuse the row
//! at once, as `when_full` says.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use botfleet_config::{BatcherSettings, WhenFull};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::metrics as m;
use crate::{Database, Error, Result, Value};

/// One row: a value per column, in the batcher's column order.
pub type Row = Vec<Value>;

/// Time callers of [`Batcher::write`] waited, all batchers of the process.
static WRITE_WAIT_US: AtomicU64 = AtomicU64::new(0);

/// How long callers of [`Batcher::write`] have waited in all, every
/// batcher of this process together, in microseconds (the worker SDK
/// reports it as database time).
pub fn write_wait_us_total() -> u64 {
    WRITE_WAIT_US.load(Ordering::Relaxed)
}

/// A queued row, and who waits for it to be written ([`Batcher::write`]).
type Entry = (Row, Option<oneshot::Sender<Result<()>>>);

/// Bind parameters one statement may carry on both backends (SQLite's
/// default limit is 32,766; PostgreSQL's 65,535).
const MAX_PARAMETERS: usize = 32_000;
/// The longest wait between two attempts at a batch while the database is
/// away.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// Refused rows kept in the report (all are counted and logged).
const MAX_REPORTED: usize = 1_000;

/// Writes rows of one table in batches. Cheap to clone; every clone feeds
/// the same queue.
#[derive(Clone, Debug)]
pub struct Batcher {
    tx: mpsc::Sender<Entry>,
    shared: Arc<Shared>,
}

/// The batcher's state shared with its task.
#[derive(Debug)]
struct Shared {
    table: String,
    columns: usize,
    when_full: WhenFull,
    queued: AtomicU64,
    deadline: watch::Sender<Option<Instant>>,
    task: parking_lot::Mutex<Option<JoinHandle<BatchReport>>>,
}

/// What a batcher did, from start to shutdown.
#[derive(Clone, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct BatchReport {
    /// Rows written.
    pub written: u64,
    /// Statements that wrote rows.
    pub flushes: u64,
    /// Rows the database refused, with its error (the first
    /// `MAX_REPORTED`; `refused` counts them all).
    pub rejected: Vec<RejectedRow>,
    /// Rows the database refused.
    pub refused: u64,
    /// Rows not written because the database stayed away past the shutdown
    /// grace period: yours to keep.
    pub unwritten: Vec<Row>,
}

/// A row the database refused.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct RejectedRow {
    /// The row.
    pub row: Row,
    /// Why.
    pub error: String,
}

impl Batcher {
    /// Starts a batcher for `columns` of `table` (names are written into
    /// the SQL as given: use trusted identifiers).
    pub fn start(
        db: &Database,
        table: &str,
        columns: &[&str],
        settings: &BatcherSettings,
    ) -> Result<Batcher> {
        let valid = |s: &str| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
        };
        if !valid(table) || columns.is_empty() || !columns.iter().all(|c| valid(c)) {
            return Err(Error::Batcher(format!(
                "cannot batch into `{table}` ({}): table and column names must be plain identifiers, and at least one column is needed",
                columns.join(", ")
            )));
        }
        let (tx, rx) = mpsc::channel(settings.queue.max(1) as usize);
        let (deadline, deadline_rx) = watch::channel(None);
        let shared = Arc::new(Shared {
            table: table.to_owned(),
            columns: columns.len(),
            when_full: settings.when_full,
            queued: AtomicU64::new(0),
            deadline,
            task: parking_lot::Mutex::new(None),
        });
        let rows_per_statement = (MAX_PARAMETERS / columns.len()).max(1);
        let writer = Writer {
            db: db.clone(),
            sql_head: format!("INSERT INTO {table} ({}) VALUES ", columns.join(", ")),
            columns: columns.len(),
            max_rows: (settings.max_rows as usize).min(rows_per_statement).max(1),
            linger: settings.linger,
            shared: shared.clone(),
            deadline: deadline_rx,
            report: BatchReport::default(),
        };
        let task = tokio::spawn(writer.run(rx));
        *shared.task.lock() = Some(task);
        Ok(Batcher { tx, shared })
    }

    /// Queues `row`. A full queue waits for room or refuses the row, as
    /// `when_full` says.
    pub async fn push(&self, row: Row) -> Result<()> {
        self.enqueue(row, None).await
    }

    /// Queues `row` like [`push`](Self::push), then waits until it is
    /// written: batched with the rows of concurrent callers, durable when
    /// this returns `Ok`. An error when the database refused the row, or
    /// stayed away past the shutdown grace period.
    pub async fn write(&self, row: Row) -> Result<()> {
        let started = Instant::now();
        let (tx, rx) = oneshot::channel();
        self.enqueue(row, Some(tx)).await?;
        let result = rx.await.map_err(|_| {
            Error::Batcher(format!(
                "the batcher for `{}` stopped before the row was written",
                self.shared.table
            ))
        })?;
        WRITE_WAIT_US.fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
        result
    }

    async fn enqueue(&self, row: Row, done: Option<oneshot::Sender<Result<()>>>) -> Result<()> {
        let s = &self.shared;
        if row.len() != s.columns {
            return Err(Error::Batcher(format!(
                "a row for `{}` has {} values; the batcher has {} columns",
                s.table,
                row.len(),
                s.columns
            )));
        }
        let closed = || Error::Batcher(format!("the batcher for `{}` is shut down", s.table));
        match s.when_full {
            WhenFull::Wait => self.tx.send((row, done)).await.map_err(|_| closed())?,
            WhenFull::Error => self.tx.try_send((row, done)).map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => Error::Batcher(format!(
                    "the batcher queue for `{}` is full ({} rows): the database is not keeping up",
                    s.table,
                    self.tx.max_capacity()
                )),
                mpsc::error::TrySendError::Closed(_) => closed(),
            })?,
        }
        s.queued.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Rows waiting (queued, or in a batch not yet written).
    pub fn pending(&self) -> u64 {
        self.shared.queued.load(Ordering::Relaxed)
    }

    /// Stops taking rows, writes everything queued and returns the report.
    /// While the database is away, batches are retried for up to `grace`;
    /// what is still unwritten then is in `BatchReport::unwritten`. Other
    /// clones of this batcher can no longer push.
    pub async fn shutdown(self, grace: Duration) -> BatchReport {
        let s = self.shared.clone();
        s.deadline.send_replace(Some(Instant::now() + grace));
        drop(self);
        let task = s.task.lock().take();
        match task {
            Some(task) => task.await.unwrap_or_default(),
            None => BatchReport::default(),
        }
    }
}

struct Writer {
    db: Database,
    sql_head: String,
    columns: usize,
    max_rows: usize,
    linger: Duration,
    shared: Arc<Shared>,
    deadline: watch::Receiver<Option<Instant>>,
    report: BatchReport,
}

impl Writer {
    async fn run(mut self, mut rx: mpsc::Receiver<Entry>) -> BatchReport {
        let mut closing = false;
        loop {
            let first = if closing {
                rx.try_recv().ok()
            } else {
                tokio::select! {
                    row = rx.recv() => row,
                    _ = self.deadline.changed() => { closing = true; rx.try_recv().ok() }
                }
            };
            let Some(first) = first else {
                if closing || rx.is_closed() && rx.is_empty() {
                    break;
                }
                continue;
            };
            let mut batch = vec![first];
            let until = Instant::now() + self.linger;
            while batch.len() < self.max_rows {
                if closing {
                    // Shutting down: take what is queued, wait for nothing.
                    match rx.try_recv() {
                        Ok(row) => batch.push(row),
                        Err(_) => break,
                    }
                    continue;
                }
                tokio::select! {
                    row = rx.recv() => match row {
                        Some(row) => batch.push(row),
                        None => { closing = true; }
                    },
                    _ = tokio::time::sleep_until(until) => break,
                    _ = self.deadline.changed() => { closing = true; }
                }
            }
            self.write(batch).await;
            m::batch_queue(&self.db, self.shared.queued.load(Ordering::Relaxed));
        }
        self.report
    }

    /// Writes `batch`, splitting it to isolate refused rows, retrying while
    /// the database is away.
    async fn write(&mut self, batch: Vec<Entry>) {
        let mut pending = vec![batch];
        let mut backoff = Duration::from_millis(50);
        while let Some(rows) = pending.pop() {
            match self.insert(&rows).await {
                Ok(()) => {
                    backoff = Duration::from_millis(50);
                    let n = rows.len() as u64;
                    for (_, done) in rows {
                        if let Some(done) = done {
                            let _ = done.send(Ok(()));
                        }
                    }
                    self.shared.queued.fetch_sub(n, Ordering::Relaxed);
                    self.report.written += n;
                    self.report.flushes += 1;
                    m::batch_written(&self.db, n);
                }
                Err(e) if e.is_unavailable() => {
                    let deadline = *self.deadline.borrow();
                    if deadline.is_some_and(|d| Instant::now() >= d) {
                        tracing::error!(
                            table = %self.shared.table,
                            rows = rows.len(),
                            error = %e,
                            "the database stayed away past the shutdown grace period; rows handed back unwritten"
                        );
                        self.shared
                            .queued
                            .fetch_sub(rows.len() as u64, Ordering::Relaxed);
                        for (row, done) in rows {
                            if let Some(done) = done {
                                let _ = done.send(Err(Error::Batcher(format!(
                                    "the row for `{}` was not written: {e}",
                                    self.shared.table
                                ))));
                            }
                            self.report.unwritten.push(row);
                        }
                        continue;
                    }
                    tracing::warn!(table = %self.shared.table, rows = rows.len(), error = %e, retry_in_ms = backoff.as_millis() as u64, "batch not written; retrying");
                    pending.push(rows);
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
                Err(e) if rows.len() == 1 => {
                    let error = e.to_string();
                    tracing::warn!(table = %self.shared.table, error = %error, "row refused by the database; the rest of its batch is written");
                    self.shared.queued.fetch_sub(1, Ordering::Relaxed);
                    self.report.refused += 1;
                    m::batch_rejected(&self.db);
                    let (row, done) = rows.into_iter().next().unwrap_or_default();
                    if let Some(done) = done {
                        let _ = done.send(Err(Error::Batcher(format!(
                            "the database refused the row for `{}`: {error}",
                            self.shared.table
                        ))));
                    }
                    if self.report.rejected.len() < MAX_REPORTED {
                        self.report.rejected.push(RejectedRow { row, error });
                    }
                }
                Err(_) => {
                    // One row spoils the statement: find it by halves.
                    let mut rows = rows;
                    let back = rows.split_off(rows.len() / 2);
                    pending.push(back);
                    pending.push(rows);
                }
            }
        }
    }

    async fn insert(&self, rows: &[Entry]) -> Result<()> {
        let mut sql = String::with_capacity(self.sql_head.len() + rows.len() * self.columns * 6);
        sql.push_str(&self.sql_head);
        let mut n = 0;
        for (i, _) in rows.iter().enumerate() {
            if i > 0 {
                sql.push(',');
            }
            sql.push('(');
            for c in 0..self.columns {
                if c > 0 {
                    sql.push(',');
                }
                n += 1;
                sql.push('$');
                sql.push_str(&n.to_string());
            }
            sql.push(')');
        }
        self.db
            .query(&sql)
            .bind_all(rows.iter().flat_map(|(row, _)| row).cloned())
            .execute()
            .await
            .map(drop)
    }
}
