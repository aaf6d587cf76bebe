//! `botfleet bench journal`: where the ingest journal lives, measured. The
//! same work — append a batch of updates durably, then remove the batch
//! before it (its acks) — done by the journal's append-only file
//! (`botfleet_runtime::journal`, one data sync per batch) and by a table in
//! SQLite (WAL, `synchronous = FULL`) and in PostgreSQL (`fsync` on,
//! `synchronous_commit` on), each durable at the point ingest would confirm
//! the offset. Rounds alternate the stores, so a change in the machine's
//! load touches them alike.

use std::io::Write;
use std::process::ExitCode;
use std::str::FromStr;
use std::time::Duration;

use anyhow::{Context, bail};
use botfleet_protocol::Json;
use clap::Args;
use serde::Serialize;
use sqlx::{ConnectOptions, QueryBuilder};
use tokio::time::Instant;

use super::Machine;
use super::stats::quantile;

/// The flags of `botfleet bench journal`.
#[derive(Debug, Args)]
pub struct JournalBench {
    /// Print exactly one JSON document on stdout instead of the table.
    #[arg(long)]
    json: bool,
    /// A PostgreSQL to use (its settings are its own); without it one is
    /// started with fsync on.
    #[arg(long, value_name = "URL", hide_env_values = true)]
    database_url: Option<String>,
    /// Updates each store writes per round.
    #[arg(long, default_value_t = 10_000)]
    updates: u32,
    /// Updates per append (a getUpdates batch).
    #[arg(long, default_value_t = 50)]
    batch: u32,
    /// Rounds; the stores alternate within each.
    #[arg(long, default_value_t = 3)]
    rounds: u32,
}

#[derive(Debug, Serialize)]
struct StoreRun {
    store: &'static str,
    /// Median over the rounds.
    updates_per_s: f64,
    /// One durable append of a batch, over every round.
    append_p50_us: f64,
    append_p99_us: f64,
}

#[derive(Debug, Serialize)]
struct Report {
    machine: Machine,
    updates: u32,
    batch: u32,
    rounds: u32,
    update_bytes: usize,
    stores: Vec<StoreRun>,
}

/// An update of about the size of a text message.
fn update(id: i64) -> String {
    format!(
        r#"{{"update_id":{id},"message":{{"message_id":{id},"from":{{"id":{c},"is_bot":false,"first_name":"User"}},"chat":{{"id":{c},"type":"private","first_name":"User"}},"date":1796645045,"text":"hello, I would like to see more profiles near me, please {id}"}}}}"#,
        c = id % 1000 + 1
    )
}

/// A store of the journal's work.
enum Store {
    File(botfleet_runtime::journal::Journal),
    Sqlite(sqlx::SqliteConnection),
    Postgres(sqlx::PgConnection),
}

impl Store {
    fn name(&self) -> &'static str {
        match self {
            Store::File(_) => "file",
            Store::Sqlite(_) => "sqlite",
            Store::Postgres(_) => "postgres",
        }
    }

    /// Appends `ids` durably; returns how long it took.
    async fn append(&mut self, ids: &[i64]) -> anyhow::Result<Duration> {
        let began = Instant::now();
        match self {
            Store::File(j) => {
                let entries = ids
                    .iter()
                    .map(|&id| Ok((id, id % 1000, Json::parse(update(id))?)))
                    .collect::<Result<Vec<_>, serde_json::Error>>()?;
                j.append(entries).await?;
            }
            Store::Sqlite(c) => {
                let mut q = QueryBuilder::new("INSERT INTO journal (update_id, chat, body) ");
                q.push_values(ids, |mut b, &id| {
                    b.push_bind(id).push_bind(id % 1000).push_bind(update(id));
                });
                q.build().execute(&mut *c).await?;
            }
            Store::Postgres(c) => {
                let mut q = QueryBuilder::new("INSERT INTO journal (update_id, chat, body) ");
                q.push_values(ids, |mut b, &id| {
                    b.push_bind(id).push_bind(id % 1000).push_bind(update(id));
                });
                q.build().execute(&mut *c).await?;
            }
        }
        Ok(began.elapsed())
    }

    /// Removes `ids` (their acks).
    async fn ack(&mut self, ids: &[i64]) -> anyhow::Result<()> {
        match self {
            Store::File(j) => ids.iter().for_each(|&id| j.ack(id)),
            Store::Sqlite(c) => {
                let mut q = QueryBuilder::new("DELETE FROM journal WHERE update_id IN (");
                let mut list = q.separated(", ");
                for &id in ids {
                    list.push_bind(id);
                }
                q.push(")");
                q.build().execute(&mut *c).await?;
            }
            Store::Postgres(c) => {
                sqlx::query("DELETE FROM journal WHERE update_id = ANY($1)")
                    .bind(ids)
                    .execute(&mut *c)
                    .await?;
            }
        }
        Ok(())
    }
}

/// Runs `botfleet bench journal` and prints its report.
pub fn run(args: &JournalBench) -> anyhow::Result<ExitCode> {
    if args.batch == 0 || args.updates < args.batch || args.rounds == 0 {
        bail!("--updates must be at least --batch, and --batch and --rounds above 0");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let report = runtime.block_on(measure(args))?;
    super::output(args.json, &report, print)
}

async fn measure(args: &JournalBench) -> anyhow::Result<Report> {
    let dir = botfleet_testkit::TempDir::new("bench-journal")?;
    let server = match &args.database_url {
        Some(_) => None,
        None => Some(
            botfleet_testkit::PostgresServer::builder()
                .setting("fsync", "on")
                .setting("full_page_writes", "on")
                .start()
                .context(
                    "cannot start PostgreSQL (give --database-url, or install its server programs)",
                )?,
        ),
    };
    let pg_url = match (&args.database_url, &server) {
        (Some(url), _) => url.clone(),
        (None, Some(s)) => s.url("postgres"),
        (None, None) => unreachable!("a server was started"),
    };
    let (journal, _) =
        botfleet_runtime::journal::Journal::open(&dir.path().join("journal"), "bench", usize::MAX)?;
    let sqlite = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(dir.path().join("journal.sqlite"))
        .create_if_missing(true)
        .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
        .synchronous(sqlx::sqlite::SqliteSynchronous::Full)
        .connect()
        .await?;
    let pg = sqlx::postgres::PgConnectOptions::from_str(&pg_url)?
        .connect()
        .await
        .context("cannot connect to PostgreSQL")?;
    let mut stores = vec![
        Store::File(journal),
        Store::Sqlite(sqlite),
        Store::Postgres(pg),
    ];
    for store in &mut stores {
        match store {
            Store::Sqlite(c) => {
                sqlx::query("CREATE TABLE journal (update_id INTEGER PRIMARY KEY, chat INTEGER NOT NULL, body TEXT NOT NULL)")
                    .execute(&mut *c)
                    .await?;
            }
            Store::Postgres(c) => {
                sqlx::query("DROP TABLE IF EXISTS journal")
                    .execute(&mut *c)
                    .await?;
                sqlx::query("CREATE TABLE journal (update_id BIGINT PRIMARY KEY, chat BIGINT NOT NULL, body TEXT NOT NULL)")
                    .execute(&mut *c)
                    .await?;
            }
            Store::File(_) => {}
        }
    }
    let mut rates: Vec<Vec<f64>> = vec![Vec::new(); stores.len()];
    let mut appends: Vec<Vec<f64>> = vec![Vec::new(); stores.len()];
    let mut next_id: i64 = 1;
    let progress = !args.json;
    for round in 0..args.rounds {
        for (i, store) in stores.iter_mut().enumerate() {
            if progress {
                let _ = write!(
                    std::io::stderr(),
                    "\rround {}/{}: {:<8}",
                    round + 1,
                    args.rounds,
                    store.name()
                );
            }
            let began = Instant::now();
            let mut previous: Vec<i64> = Vec::new();
            let mut written = 0;
            while written < args.updates {
                let ids: Vec<i64> = (next_id..next_id + i64::from(args.batch)).collect();
                next_id += i64::from(args.batch);
                appends[i].push(store.append(&ids).await?.as_secs_f64() * 1e6);
                store.ack(&previous).await?;
                previous = ids;
                written += args.batch;
            }
            store.ack(&previous).await?;
            rates[i].push(f64::from(written) / began.elapsed().as_secs_f64());
        }
    }
    if progress {
        let _ = writeln!(std::io::stderr());
    }
    Ok(Report {
        machine: Machine::current(),
        updates: args.updates,
        batch: args.batch,
        rounds: args.rounds,
        update_bytes: update(1_000_000).len(),
        stores: stores
            .iter()
            .enumerate()
            .map(|(i, s)| StoreRun {
                store: s.name(),
                updates_per_s: quantile(&rates[i], 0.5).round(),
                append_p50_us: quantile(&appends[i], 0.5).round(),
                append_p99_us: quantile(&appends[i], 0.99).round(),
            })
            .collect(),
    })
}

fn print(out: &mut std::io::StdoutLock<'static>, r: &Report) -> std::io::Result<()> {
    writeln!(
        out,
        "the ingest journal's work: {} updates of {} bytes per store and round, appended {} at a time (durable), acked a batch later; {} rounds",
        r.updates, r.update_bytes, r.batch, r.rounds
    )?;
    writeln!(
        out,
        "{:<10} {:>12} {:>16} {:>16}",
        "store", "updates/s", "append p50 µs", "append p99 µs"
    )?;
    for s in &r.stores {
        writeln!(
            out,
            "{:<10} {:>12.0} {:>16.0} {:>16.0}",
            s.store, s.updates_per_s, s.append_p50_us, s.append_p99_us
        )?;
    }
    Ok(())
}
