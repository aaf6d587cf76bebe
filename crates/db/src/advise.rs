//! The index advisor ("smart indexing"): finds queries whose plans scan
//! large tables sequentially under a selective filter, proposes indexes,
//! and keeps only those the planner confirms: the estimated cost must fall
//! by at least half (Dexter's rule). Also reports unused indexes and the
//! tables' cache-hit ratio (PgHero's checks).
//!
//! Queries come from `pg_stat_statements` when the extension is installed
//! (normalized, with `$n` placeholders: planned generically with
//! `plan_cache_mode = force_generic_plan`, which needs no values) and from
//! samples the caller passes, such as the handle's own
//! [`Database::query_stats`], which keeps one call's parameters per shape.
//!
//! A candidate index is costed with HypoPG's hypothetical indexes when the
//! extension is installed; otherwise it is built inside a transaction,
//! `EXPLAIN`ed and rolled back, on tables under `max_build_rows` only
//! (building takes a lock that blocks writes to the table meanwhile).

use std::collections::{BTreeSet, HashMap};

use serde::Serialize;
use sqlx::pool::PoolConnection;
use sqlx::{Any, Executor, Row};

use crate::{Database, Error, Result, Value};

/// What the advisor looks at.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct AdvisorOptions {
    /// Tables with fewer rows are never indexed (a sequential scan of a
    /// small table is cheap). PgHero's threshold is 10,000.
    pub min_rows: f64,
    /// Without HypoPG, candidates are built for real, in a rolled-back
    /// transaction, only on tables up to this many rows.
    pub max_build_rows: f64,
    /// The share of the estimated cost an index must save (0.5: half).
    pub min_saving: f64,
    /// Queries taken from `pg_stat_statements`, the most total time first.
    pub statements: u32,
}

impl Default for AdvisorOptions {
    fn default() -> Self {
        AdvisorOptions {
            min_rows: 10_000.0,
            max_build_rows: 2_000_000.0,
            min_saving: 0.5,
            statements: 50,
        }
    }
}

/// One query to examine: SQL and, when it has `$n` placeholders and no
/// values are known, an empty parameter list.
#[derive(Clone, Debug)]
pub struct QuerySample {
    /// The SQL.
    pub sql: String,
    /// Its parameters, if known.
    pub params: Option<Vec<Value>>,
    /// Where it came from (`pg_stat_statements`, `handle`, a file).
    pub source: &'static str,
}

impl QuerySample {
    /// The handle's own query shapes that have a sample call: the queries
    /// this process runs, with real parameters.
    pub fn from_stats(stats: &[crate::QueryStats]) -> Vec<QuerySample> {
        stats
            .iter()
            .filter_map(|s| s.sample.clone())
            .map(|(sql, params)| QuerySample {
                sql,
                params: Some(params),
                source: "handle",
            })
            .collect()
    }
}

/// The advisor's findings.
#[derive(Clone, Debug, Default, Serialize)]
#[non_exhaustive]
pub struct Advice {
    /// Indexes the planner confirmed.
    pub indexes: Vec<IndexSuggestion>,
    /// Non-unique indexes never used since the statistics were reset.
    pub unused_indexes: Vec<UnusedIndex>,
    /// Heap cache-hit ratio of the whole database (PgHero wants ≥ 99 %).
    pub cache_hit_ratio: Option<f64>,
    /// Tables read mostly by sequential scans (≥ `min_rows` rows, index use
    /// under 95 % of scans).
    pub seq_scanned_tables: Vec<SeqScannedTable>,
    /// How candidates were costed: `hypopg` or `transaction`.
    pub method: &'static str,
    /// Queries examined, by source.
    pub examined: HashMap<&'static str, u32>,
    /// What the advisor could not do, and why.
    pub notes: Vec<String>,
}

/// A proposed index.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[non_exhaustive]
pub struct IndexSuggestion {
    /// The table.
    pub table: String,
    /// Its columns, in order.
    pub columns: Vec<String>,
    /// The statement `--apply` runs.
    pub create: String,
    /// The query it speeds up (as examined).
    pub query: String,
    /// The planner's estimated cost without the index ...
    pub cost_before: f64,
    /// ... and with it.
    pub cost_after: f64,
    /// The table's rows (estimated).
    pub table_rows: f64,
}

/// An index with no scans.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[non_exhaustive]
pub struct UnusedIndex {
    /// The table.
    pub table: String,
    /// The index.
    pub index: String,
    /// Its size on disk.
    pub bytes: i64,
}

/// A large table read mostly by sequential scans.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[non_exhaustive]
pub struct SeqScannedTable {
    /// The table.
    pub table: String,
    /// Its rows (estimated).
    pub rows: f64,
    /// Sequential scans.
    pub seq_scans: i64,
    /// Index scans.
    pub index_scans: i64,
}

/// A sequential scan found in a plan.
#[derive(Clone, Debug, PartialEq)]
struct SeqScan {
    table: String,
    /// Columns the filter compares, equality first.
    columns: Vec<String>,
}

/// Examines the database's queries and statistics. PostgreSQL only.
pub async fn advise(
    db: &Database,
    samples: &[QuerySample],
    options: &AdvisorOptions,
) -> Result<Advice> {
    if db.backend() != botfleet_config::Backend::Postgres {
        return Err(Error::Config(
            "the index advisor needs PostgreSQL (SQLite has no planner statistics to work from)"
                .to_owned(),
        ));
    }
    let mut conn = db.acquire().await?;
    let fail = |what: &str| {
        let what = what.to_owned();
        move |e: sqlx::Error| db.query_error(&what, e)
    };
    let mut advice = Advice::default();
    let hypopg = has_extension(&mut conn, "hypopg").await?;
    advice.method = if hypopg { "hypopg" } else { "transaction" };
    if !hypopg {
        advice.notes.push(format!(
            "HypoPG is not installed: candidates are built in a rolled-back transaction, on tables up to {} rows only",
            options.max_build_rows
        ));
    }

    let mut queries: Vec<QuerySample> = samples.to_vec();
    if has_extension(&mut conn, "pg_stat_statements").await? {
        let rows = sqlx::query(
            "SELECT query FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) AND query ~* '^\\s*select' AND query !~* 'pg_(catalog|stat|class|index|extension|database|settings)|hypopg|information_schema' ORDER BY total_exec_time DESC LIMIT $1",
        )
        .bind(i64::from(options.statements))
        .fetch_all(&mut *conn)
        .await
        .map_err(fail("pg_stat_statements"))?;
        for row in rows {
            let sql: String = row.try_get(0).unwrap_or_default();
            queries.push(QuerySample {
                sql,
                params: None,
                source: "pg_stat_statements",
            });
        }
    } else {
        advice.notes.push(
            "pg_stat_statements is not installed in this database: only the given queries were examined (add it to shared_preload_libraries and CREATE EXTENSION pg_stat_statements)".to_owned(),
        );
    }

    let rows = table_rows(&mut conn).await.map_err(fail("pg_class"))?;
    let mut seen = BTreeSet::new();
    for q in &queries {
        let trimmed = q.sql.trim_start().to_ascii_lowercase();
        if !(trimmed.starts_with("select") || trimmed.starts_with("with")) {
            continue;
        }
        *advice.examined.entry(q.source).or_default() += 1;
        let Ok((cost, scans)) = plan(&mut conn, q).await else {
            advice
                .notes
                .push(format!("could not plan `{}`", short(&q.sql)));
            continue;
        };
        for scan in scans {
            let table_rows = rows.get(&scan.table).copied().unwrap_or(0.0);
            if table_rows < options.min_rows || scan.columns.is_empty() {
                continue;
            }
            if !hypopg && table_rows > options.max_build_rows {
                advice.notes.push(format!(
                    "{}: {table_rows} rows is over the limit for building a trial index; install HypoPG to cost it",
                    scan.table
                ));
                continue;
            }
            let mut best: Option<(Vec<String>, f64)> = None;
            for columns in candidates(&scan.columns) {
                if !seen.insert((scan.table.clone(), columns.clone(), q.sql.clone())) {
                    continue;
                }
                let Ok(after) = cost_with(&mut conn, hypopg, &scan.table, &columns, q).await else {
                    continue;
                };
                if best.as_ref().is_none_or(|(_, c)| after < c * 0.99) {
                    best = Some((columns, after));
                }
            }
            if let Some((columns, after)) = best {
                if after <= cost * (1.0 - options.min_saving)
                    && !advice
                        .indexes
                        .iter()
                        .any(|s| s.table == scan.table && s.columns == columns)
                {
                    advice.indexes.push(IndexSuggestion {
                        create: format!(
                            "CREATE INDEX CONCURRENTLY ON {} ({})",
                            quote(&scan.table),
                            columns
                                .iter()
                                .map(|c| quote(c))
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                        table: scan.table.clone(),
                        columns,
                        query: q.sql.clone(),
                        cost_before: cost,
                        cost_after: after,
                        table_rows,
                    });
                }
            }
        }
    }

    // An index whose columns lead another proposed one is served by it.
    let all = advice.indexes.clone();
    advice.indexes.retain(|a| {
        !all.iter().any(|b| {
            b.table == a.table
                && b.columns.len() > a.columns.len()
                && b.columns.starts_with(&a.columns)
        })
    });

    advice.unused_indexes = sqlx::query(
        "SELECT s.relname::text, s.indexrelname::text, pg_relation_size(s.indexrelid)::bigint FROM pg_stat_user_indexes s JOIN pg_index i ON i.indexrelid = s.indexrelid WHERE s.idx_scan = 0 AND NOT i.indisunique AND NOT i.indisprimary ORDER BY 3 DESC",
    )
    .fetch_all(&mut *conn)
    .await
    .map_err(fail("pg_stat_user_indexes"))?
    .iter()
    .map(|r| UnusedIndex {
        table: r.try_get(0).unwrap_or_default(),
        index: r.try_get(1).unwrap_or_default(),
        bytes: r.try_get(2).unwrap_or_default(),
    })
    .collect();
    let hit = sqlx::query(
        "SELECT COALESCE(sum(heap_blks_hit), 0)::float8, COALESCE(sum(heap_blks_read), 0)::float8 FROM pg_statio_user_tables",
    )
    .fetch_one(&mut *conn)
    .await
    .map_err(fail("pg_statio_user_tables"))?;
    let (h, r): (f64, f64) = (hit.try_get(0).unwrap_or(0.0), hit.try_get(1).unwrap_or(0.0));
    advice.cache_hit_ratio = (h + r > 0.0).then(|| h / (h + r));
    // The session's settings were changed and restored; do not hand the
    // connection to another caller anyway.
    conn.close_on_drop();
    advice.seq_scanned_tables = sqlx::query(
        "SELECT relname::text, GREATEST(n_live_tup, 0)::float8, COALESCE(seq_scan, 0)::bigint, COALESCE(idx_scan, 0)::bigint FROM pg_stat_user_tables ORDER BY seq_scan DESC",
    )
    .fetch_all(&mut *conn)
    .await
    .map_err(fail("pg_stat_user_tables"))?
    .iter()
    .map(|r| SeqScannedTable {
        table: r.try_get(0).unwrap_or_default(),
        rows: r.try_get::<f64, _>(1).unwrap_or(0.0).max(rows.get(&r.try_get::<String, _>(0).unwrap_or_default()).copied().unwrap_or(0.0)),
        seq_scans: r.try_get(2).unwrap_or(0),
        index_scans: r.try_get(3).unwrap_or(0),
    })
    .filter(|t| {
        let scans = t.seq_scans + t.index_scans;
        t.rows >= options.min_rows && scans > 0 && (t.index_scans as f64) < 0.95 * scans as f64
    })
    .collect();
    Ok(advice)
}

/// Runs each suggestion's `CREATE INDEX CONCURRENTLY` (outside a
/// transaction, as PostgreSQL requires).
pub async fn apply(db: &Database, suggestion: &IndexSuggestion) -> Result<()> {
    let mut conn = db.acquire().await?;
    // Building can take long: no statement timeout for it.
    conn.execute("SET statement_timeout = 0")
        .await
        .map_err(|e| db.query_error("SET statement_timeout", e))?;
    let result = conn.execute(suggestion.create.as_str()).await;
    // Give the connection back as the pool configured it.
    conn.close_on_drop();
    result
        .map(drop)
        .map_err(|e| db.query_error(&suggestion.create, e))
}

async fn has_extension(conn: &mut PoolConnection<Any>, name: &str) -> Result<bool> {
    let row = sqlx::query("SELECT count(*) FROM pg_extension WHERE extname = $1")
        .bind(name)
        .fetch_one(&mut **conn)
        .await
        .map_err(|e| Error::Config(format!("cannot read pg_extension: {e}")))?;
    Ok(row.try_get::<i64, _>(0).unwrap_or(0) > 0)
}

async fn table_rows(conn: &mut PoolConnection<Any>) -> Result<HashMap<String, f64>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT c.relname::text, GREATEST(c.reltuples, COALESCE(s.n_live_tup, 0))::float8 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema')",
    )
    .fetch_all(&mut **conn)
    .await?;
    Ok(rows
        .iter()
        .map(|r| {
            (
                r.try_get(0).unwrap_or_default(),
                r.try_get(1).unwrap_or(0.0),
            )
        })
        .collect())
}

/// The query's estimated cost and its sequential scans.
async fn plan(
    conn: &mut PoolConnection<Any>,
    q: &QuerySample,
) -> Result<(f64, Vec<SeqScan>), sqlx::Error> {
    let lines = explain(conn, q).await?;
    Ok(parse_plan(&lines))
}

/// `EXPLAIN` (text: the `json` format's type is not one the backend-neutral
/// driver decodes), with the sample's parameters, or generically for `$n`
/// placeholders without values.
async fn explain(
    conn: &mut PoolConnection<Any>,
    q: &QuerySample,
) -> Result<Vec<String>, sqlx::Error> {
    let placeholders = max_placeholder(&q.sql);
    let lines = |rows: Vec<sqlx::any::AnyRow>| -> Result<Vec<String>, sqlx::Error> {
        rows.iter().map(|r| r.try_get::<String, _>(0)).collect()
    };
    match &q.params {
        Some(params) => {
            let sql = format!("EXPLAIN {}", q.sql);
            let mut query = sqlx::query(&sql);
            for p in params {
                query = p.bind(query);
            }
            lines(query.fetch_all(&mut **conn).await?)
        }
        None if placeholders == 0 => {
            let sql = format!("EXPLAIN {}", q.sql);
            lines(sqlx::query(&sql).fetch_all(&mut **conn).await?)
        }
        None => {
            conn.execute(format!("PREPARE botfleet_advise AS {}", q.sql).as_str())
                .await?;
            conn.execute("SET plan_cache_mode = force_generic_plan")
                .await?;
            let nulls = vec!["NULL"; placeholders].join(", ");
            let sql = format!("EXPLAIN EXECUTE botfleet_advise({nulls})");
            let result = sqlx::query(&sql).fetch_all(&mut **conn).await;
            let reset = conn
                .execute("RESET plan_cache_mode; DEALLOCATE botfleet_advise")
                .await;
            let rows = result?;
            reset?;
            lines(rows)
        }
    }
}

/// The total cost (the first node's) and the sequential scans with their
/// filters, from a text plan:
///
/// ```text
/// Aggregate  (cost=3791.07..3791.08 rows=1 width=8)
///   ->  Seq Scan on events  (cost=0.00..3791.00 rows=40 width=0)
///         Filter: (chat_id = '7'::bigint)
/// ```
fn parse_plan(lines: &[String]) -> (f64, Vec<SeqScan>) {
    let cost = lines
        .first()
        .and_then(|l| l.split("cost=").nth(1))
        .and_then(|c| c.split("..").nth(1))
        .and_then(|c| c.split_whitespace().next())
        .and_then(|c| c.parse().ok())
        .unwrap_or(0.0);
    let mut scans = Vec::new();
    let mut current: Option<(usize, String)> = None;
    for line in lines {
        let indent = line.len() - line.trim_start().len();
        let text = line.trim_start().trim_start_matches("->").trim_start();
        if let Some(rest) = text.split("Seq Scan on ").nth(1) {
            let table = rest.split_whitespace().next().unwrap_or("");
            let table = table.rsplit('.').next().unwrap_or(table).trim_matches('"');
            current = Some((indent, table.to_owned()));
            continue;
        }
        if let Some((scan_indent, table)) = &current {
            if indent <= *scan_indent || text.contains("(cost=") {
                current = None;
            } else if let Some(filter) = text.strip_prefix("Filter: ") {
                scans.push(SeqScan {
                    table: table.clone(),
                    columns: filter_columns(filter),
                });
                current = None;
            }
        }
    }
    (cost, scans)
}

/// The query's cost with a candidate index.
async fn cost_with(
    conn: &mut PoolConnection<Any>,
    hypopg: bool,
    table: &str,
    columns: &[String],
    q: &QuerySample,
) -> Result<f64, sqlx::Error> {
    let cols = columns
        .iter()
        .map(|c| quote(c))
        .collect::<Vec<_>>()
        .join(", ");
    let create = format!("CREATE INDEX ON {} ({cols})", quote(table));
    if hypopg {
        sqlx::query("SELECT * FROM hypopg_create_index($1)")
            .bind(create)
            .fetch_all(&mut **conn)
            .await?;
        let result = plan(conn, q).await;
        conn.execute("SELECT hypopg_reset()").await?;
        return result.map(|(cost, _)| cost);
    }
    conn.execute("BEGIN").await?;
    let result = async {
        conn.execute("SET LOCAL statement_timeout = '60s'").await?;
        conn.execute(create.as_str()).await?;
        plan(conn, q).await
    }
    .await;
    conn.execute("ROLLBACK").await?;
    result.map(|(cost, _)| cost)
}

/// Columns compared in a plan's filter, such as
/// `((city = 'Berlin'::text) AND (age >= 18))`: equality comparisons first,
/// then ranges, each once.
fn filter_columns(filter: &str) -> Vec<String> {
    let (mut eq, mut range) = (Vec::new(), Vec::new());
    let bytes = filter.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'(' {
            let start = i + 1;
            let mut j = start;
            let quoted = bytes.get(j) == Some(&b'"');
            if quoted {
                j += 1;
                while j < bytes.len() && bytes[j] != b'"' {
                    j += 1;
                }
                j += 1;
            } else {
                while j < bytes.len() && (bytes[j].is_ascii_alphanumeric() || bytes[j] == b'_') {
                    j += 1;
                }
            }
            let ident = filter[start..j.min(filter.len())].trim_matches('"');
            let rest = filter[j.min(filter.len())..].trim_start();
            let is_ident = !ident.is_empty() && !ident.starts_with(|c: char| c.is_ascii_digit());
            if is_ident {
                let op: String = rest.chars().take_while(|c| "=<>!~".contains(*c)).collect();
                match op.as_str() {
                    "=" => eq.push(ident.to_owned()),
                    "<" | ">" | "<=" | ">=" => range.push(ident.to_owned()),
                    _ => {}
                }
            }
        }
        i += 1;
    }
    let mut out: Vec<String> = Vec::new();
    for c in eq.into_iter().chain(range) {
        if !out.contains(&c) {
            out.push(c);
        }
    }
    out
}

/// Indexes worth trying for a filter's columns: each column alone, and the
/// first two together.
fn candidates(columns: &[String]) -> Vec<Vec<String>> {
    let mut out: Vec<Vec<String>> = columns.iter().take(3).map(|c| vec![c.clone()]).collect();
    if columns.len() >= 2 {
        out.push(columns[..2].to_vec());
    }
    out
}

fn max_placeholder(sql: &str) -> usize {
    let bytes = sql.as_bytes();
    let mut max = 0;
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'$' {
            let digits: String = sql[i + 1..]
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            if let Ok(n) = digits.parse::<usize>() {
                max = max.max(n);
            }
            i += digits.len();
        }
        i += 1;
    }
    max
}

fn quote(ident: &str) -> String {
    if ident
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && !ident.starts_with(|c: char| c.is_ascii_digit())
    {
        ident.to_owned()
    } else {
        format!("\"{}\"", ident.replace('"', "\"\""))
    }
}

fn short(sql: &str) -> String {
    let one_line: String = sql.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.chars().count() > 100 {
        format!("{}...", one_line.chars().take(100).collect::<String>())
    } else {
        one_line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_columns_put_equality_first() {
        assert_eq!(
            filter_columns("((age >= 18) AND (city = 'Berlin'::text) AND (\"Zip\" = $1))"),
            ["city", "Zip", "age"]
        );
        assert_eq!(filter_columns("(chat_id = '42'::bigint)"), ["chat_id"]);
        assert!(filter_columns("(lower(name) ~~ 'a%'::text)").is_empty());
    }

    #[test]
    fn text_plans() {
        let plan: Vec<String> = [
            "Aggregate  (cost=3791.07..3791.08 rows=1 width=8)",
            "  ->  Seq Scan on public.events e  (cost=0.00..3791.00 rows=40 width=0)",
            "        Filter: ((chat_id = '7'::bigint) AND (at > 5))",
            "  ->  Index Scan using t_pkey on t  (cost=0.29..8.30 rows=1 width=8)",
            "        Index Cond: (id = 1)",
            "  ->  Seq Scan on small  (cost=0.00..1.10 rows=10 width=8)",
        ]
        .map(str::to_owned)
        .to_vec();
        let (cost, scans) = parse_plan(&plan);
        assert_eq!(cost, 3791.08);
        assert_eq!(
            scans,
            [SeqScan {
                table: "events".into(),
                columns: vec!["chat_id".into(), "at".into()]
            }]
        );
    }

    #[test]
    fn placeholders_and_candidates() {
        assert_eq!(
            max_placeholder("SELECT * FROM t WHERE a = $1 AND b = $12"),
            12
        );
        assert_eq!(max_placeholder("SELECT '$x'"), 0);
        let c = candidates(&["a".into(), "b".into()]);
        assert_eq!(
            c,
            [
                vec!["a".to_owned()],
                vec!["b".to_owned()],
                vec!["a".to_owned(), "b".to_owned()]
            ]
        );
        assert_eq!(quote("Events"), "\"Events\"");
        assert_eq!(quote("events"), "events");
    }
}
