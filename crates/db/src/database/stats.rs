//! Statistics per query shape: calls, errors, time, a histogram, and one
//! call's parameters for `EXPLAIN`.

use super::*;

/// Query texts remembered with their fingerprint; beyond this (a program
/// that writes literals into its SQL) each new text is normalized on every
/// call, which costs a few microseconds.
pub(super) const MAX_QUERY_TEXTS: usize = 10_000;
/// Query shapes with statistics and a histogram of their own; beyond this,
/// new shapes share one entry.
pub(super) const MAX_QUERY_SHAPES: usize = 2_000;
/// The shape of the shared entry.
pub(super) const OTHER_QUERIES: u64 = 0;

#[derive(Default)]
pub(super) struct Queries {
    pub(super) by_sql: HashMap<String, Arc<QueryEntry>>,
    pub(super) by_shape: HashMap<u64, Arc<QueryEntry>>,
}

impl Queries {
    /// No query seen yet but the shared entry of shapes over the cap.
    pub(super) fn with_other(bot: &str) -> Queries {
        let other = Fingerprint {
            text: "(other queries)".to_owned(),
            id: OTHER_QUERIES,
            kind: StatementKind::Other,
            writes: None,
        };
        let mut queries = Queries::default();
        queries
            .by_shape
            .insert(OTHER_QUERIES, Arc::new(QueryEntry::new(other, bot)));
        queries
    }
}

/// Statistics of one query shape.
pub(crate) struct QueryEntry {
    pub(crate) fingerprint: Fingerprint,
    pub(super) calls: AtomicU64,
    pub(super) errors: AtomicU64,
    pub(super) total_ns: AtomicU64,
    pub(super) max_ns: AtomicU64,
    pub(super) duration: metrics::Histogram,
    pub(super) last_slow_log: Mutex<Option<Instant>>,
    /// The parameters of one call, so an advisor can `EXPLAIN` the query.
    pub(super) sample: std::sync::OnceLock<(String, Vec<Value>)>,
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

impl QueryEntry {
    pub(super) fn new(fingerprint: Fingerprint, bot: &str) -> QueryEntry {
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
impl Database {
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

    /// Switches query instrumentation (timing, statistics, histograms, the
    /// slow-query log) on or off for every clone of this handle. It is on by
    /// default; `botfleet bench db` switches it off to measure its cost.
    /// Write hooks run either way.
    pub fn set_instrumented(&self, on: bool) {
        self.inner.instrumented.store(on, Ordering::Relaxed);
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
    pub(super) fn finish(
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
}
