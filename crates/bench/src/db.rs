//! `botfleet bench db`: acquire + `SELECT 1` with our pool against a raw
//! connection and sqlx's default pool; batched inserts against one INSERT
//! per row; the cost of query instrumentation; and the fleet budget held by
//! six worker processes under load.

use std::io::Write;
use std::process::{Command, ExitCode, Stdio};
use std::str::FromStr;
use std::time::Duration;

use anyhow::{Context, bail};
use botfleet_config::Environment;
use botfleet_db::batch::Batcher;
use botfleet_db::budget::{self, BotDemand, ServerLimits, check};
use botfleet_db::{Database, Row as _, Value};
use clap::Args;
use serde::Serialize;
use sqlx::ConnectOptions;
use sqlx::any::AnyPoolOptions;
use sqlx::postgres::PgConnectOptions;
use tokio::time::Instant;

use super::Machine;
use super::stats::quantile;

/// The flags of `botfleet bench db`.
#[derive(Debug, Args)]
pub struct DbBench {
    /// Print exactly one JSON document on stdout instead of the table.
    #[arg(long)]
    json: bool,
    /// The PostgreSQL for the acquire, batch and instrumentation sections;
    /// without it one is started (the PostgreSQL server programs must be
    /// installed). The budget section always starts its own, with
    /// max_connections = 20.
    #[arg(long, value_name = "URL", hide_env_values = true, env = botfleet_protocol::env::DATABASE_URL)]
    database_url: Option<String>,
    /// Rows inserted by each side of the batch section.
    #[arg(long, default_value_t = 100_000)]
    rows: u32,
    /// Queries per variant and round in the latency sections.
    #[arg(long, default_value_t = 100)]
    queries: u32,
    /// Rounds; the variants alternate within each, so a change in the
    /// machine's load affects them alike.
    #[arg(long, default_value_t = 100)]
    rounds: u32,
    /// Run one load worker of the budget section (internal).
    #[arg(long, hide = true, value_name = "URL,POOL,NAME,SECONDS")]
    budget_worker: Option<String>,
}

#[derive(Debug, Serialize)]
struct Report {
    machine: Machine,
    database: String,
    server_version: String,
    acquire: Acquire,
    batch: Batch,
    instrumentation_overhead_pct: f64,
    instrumentation: Instrumentation,
    budget: Budget,
}

#[derive(Debug, Serialize)]
struct Acquire {
    queries: u32,
    p50_us_raw: f64,
    p99_us_raw: f64,
    p50_us_pool: f64,
    p99_us_pool: f64,
    p50_us_sqlx_default: f64,
    p99_us_sqlx_default: f64,
    pool_vs_raw_p50: f64,
}

#[derive(Debug, Serialize)]
struct Batch {
    rows: u32,
    rows_per_s_single: f64,
    rows_per_s_batched: f64,
    speedup: f64,
    written_single: u64,
    written_batched: u64,
}

#[derive(Debug, Serialize)]
struct Instrumentation {
    rounds: u32,
    queries_per_round: u32,
    p50_us_handle: f64,
    /// The same handle with instrumentation switched off.
    p50_us_uninstrumented: f64,
    /// The per-round overheads, in %, sorted.
    round_overheads_pct: Vec<f64>,
}

#[derive(Debug, Serialize)]
struct Budget {
    max_connections: u32,
    usable: u32,
    planned: u32,
    processes: u32,
    peak_connections: i64,
    samples: u32,
    queries: u64,
}

struct Progress;

impl Progress {
    fn say(&self, line: &str) {
        let _ = writeln!(std::io::stderr(), "{line}");
    }
}

/// Runs `botfleet bench db` (or its hidden worker role) and prints its report.
pub fn run(args: &DbBench) -> anyhow::Result<ExitCode> {
    // One thread, as a worker's query path usually runs: the pool returns
    // a connection through a spawned task, which on a multi-threaded
    // runtime wakes another thread and adds its latency to the next query.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    if let Some(spec) = &args.budget_worker {
        return runtime.block_on(budget_worker(spec));
    }
    let progress = Progress;
    // Keep a started server alive for the whole run.
    let (url, _server) = match &args.database_url {
        Some(url) => (url.clone(), None),
        None => {
            progress.say("[setup] starting a PostgreSQL server ...");
            let server = botfleet_testkit::PostgresServer::start()
                .context("cannot start PostgreSQL for the benchmark (or pass --database-url)")?;
            (server.url("postgres"), Some(server))
        }
    };
    let report = runtime.block_on(async {
        let db = connect(&url, "botfleet/bench").await?;
        let version = db
            .query("SELECT version()")
            .fetch_one()
            .await?
            .try_get::<String, _>(0)
            .unwrap_or_default();
        let database = db.target().to_owned();
        progress.say("[acquire] SELECT 1: raw connection, our pool, sqlx's default pool ...");
        let acquire = acquire(&url, &db, args).await?;
        progress
            .say("[instrumentation] SELECT 1 through the handle, instrumentation on and off ...");
        let instrumentation = instrumentation(&db, args).await?;
        progress.say(&format!(
            "[batch] {} rows one INSERT each, then batched ...",
            args.rows
        ));
        let batch = batch(&db, args.rows).await?;
        progress.say("[budget] six worker processes against max_connections = 20 ...");
        let budget = budget().await?;
        let overheads = instrumentation.round_overheads_pct.clone();
        Ok::<_, anyhow::Error>(Report {
            machine: Machine::current(),
            database,
            server_version: version,
            acquire,
            batch,
            instrumentation_overhead_pct: round2(quantile(&overheads, 0.5)),
            instrumentation,
            budget,
        })
    })?;
    super::output(args.json, &report, print)
}

async fn connect(url: &str, name: &str) -> anyhow::Result<Database> {
    Ok(Database::builder(url)
        .settings(Environment::Prod.preset().database)
        .pool_size(4)
        .application_name(name)
        .bot("bench")
        .connect()
        .await?)
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

async fn acquire(url: &str, db: &Database, args: &DbBench) -> anyhow::Result<Acquire> {
    // Statement logging off, as the handle has it: the same work per query.
    let mut raw = PgConnectOptions::from_str(url)?
        .disable_statement_logging()
        .connect()
        .await?;
    let default_pool = AnyPoolOptions::new().connect(url).await?;
    let (mut r, mut p, mut d) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..args.rounds {
        for _ in 0..args.queries {
            let t = Instant::now();
            sqlx::query("SELECT 1").fetch_one(&mut raw).await?;
            r.push(micros(t.elapsed()));
        }
        for _ in 0..args.queries {
            let t = Instant::now();
            db.query("SELECT 1").fetch_one().await?;
            p.push(micros(t.elapsed()));
        }
        for _ in 0..args.queries {
            let t = Instant::now();
            sqlx::query("SELECT 1").fetch_one(&default_pool).await?;
            d.push(micros(t.elapsed()));
        }
    }
    default_pool.close().await;
    let p50_raw = quantile(&r, 0.5);
    let p50_pool = quantile(&p, 0.5);
    Ok(Acquire {
        queries: args.queries * args.rounds,
        p50_us_raw: round2(p50_raw),
        p99_us_raw: round2(quantile(&r, 0.99)),
        p50_us_pool: round2(p50_pool),
        p99_us_pool: round2(quantile(&p, 0.99)),
        p50_us_sqlx_default: round2(quantile(&d, 0.5)),
        p99_us_sqlx_default: round2(quantile(&d, 0.99)),
        pool_vs_raw_p50: round2(p50_pool / p50_raw),
    })
}

/// The handle's query path with its instrumentation on and off (the same
/// pool, the same connections), alternating in rounds: the difference is
/// the fingerprint lookup, the timing, the histogram and the counters.
async fn instrumentation(db: &Database, args: &DbBench) -> anyhow::Result<Instrumentation> {
    let (mut all_on, mut all_off, mut overheads) = (Vec::new(), Vec::new(), Vec::new());
    let n = args.queries * 2;
    for round in 0..args.rounds {
        let (mut on, mut off) = (Vec::new(), Vec::new());
        // Alternate which side goes first, so drift favours neither.
        for side in [round % 2, 1 - round % 2] {
            db.set_instrumented(side == 0);
            for _ in 0..n {
                let t = Instant::now();
                db.query("SELECT 1").fetch_one().await?;
                let us = micros(t.elapsed());
                if side == 0 { on.push(us) } else { off.push(us) }
            }
        }
        let (m_on, m_off) = (quantile(&on, 0.5), quantile(&off, 0.5));
        overheads.push(round2((m_on / m_off - 1.0) * 100.0));
        all_on.extend(on);
        all_off.extend(off);
    }
    db.set_instrumented(true);
    overheads.sort_by(f64::total_cmp);
    Ok(Instrumentation {
        rounds: args.rounds,
        queries_per_round: n,
        p50_us_handle: round2(quantile(&all_on, 0.5)),
        p50_us_uninstrumented: round2(quantile(&all_off, 0.5)),
        round_overheads_pct: overheads,
    })
}

async fn batch(db: &Database, rows: u32) -> anyhow::Result<Batch> {
    let row = |i: u32| -> Vec<Value> {
        vec![
            Value::from(i64::from(i)),
            Value::from(i64::from(i % 97)),
            Value::from("message"),
            Value::from(i32::try_from(i % 500).unwrap_or(0)),
        ]
    };
    let reset = "DROP TABLE IF EXISTS bench_events; CREATE TABLE bench_events (id BIGINT NOT NULL, chat BIGINT NOT NULL, kind TEXT NOT NULL, length INTEGER NOT NULL)";
    db.pool().execute_raw(reset).await?;
    let t = Instant::now();
    for i in 0..rows {
        db.query("INSERT INTO bench_events (id, chat, kind, length) VALUES ($1, $2, $3, $4)")
            .bind_all(row(i))
            .execute()
            .await?;
    }
    let single = t.elapsed();
    let written_single = count(db).await?;
    db.pool().execute_raw(reset).await?;
    let settings = Environment::Prod.preset().database.batcher;
    let batcher = Batcher::start(
        db,
        "bench_events",
        &["id", "chat", "kind", "length"],
        &settings,
    )?;
    let t = Instant::now();
    for i in 0..rows {
        batcher.push(row(i)).await?;
    }
    let report = batcher.shutdown(Duration::from_secs(60)).await;
    let batched = t.elapsed();
    let written_batched = count(db).await?;
    if written_single != u64::from(rows) || written_batched != u64::from(rows) {
        bail!("rows lost: {written_single} and {written_batched} of {rows} written ({report:?})");
    }
    db.pool().execute_raw("DROP TABLE bench_events").await?;
    let single_rate = f64::from(rows) / single.as_secs_f64();
    let batched_rate = f64::from(rows) / batched.as_secs_f64();
    Ok(Batch {
        rows,
        rows_per_s_single: single_rate.round(),
        rows_per_s_batched: batched_rate.round(),
        speedup: round2(batched_rate / single_rate),
        written_single,
        written_batched,
    })
}

async fn count(db: &Database) -> anyhow::Result<u64> {
    let n: i64 = db
        .query("SELECT count(*) FROM bench_events")
        .fetch_one()
        .await?
        .try_get(0)?;
    Ok(u64::try_from(n).unwrap_or(0))
}

trait ExecuteRaw {
    async fn execute_raw(&self, sql: &str) -> anyhow::Result<()>;
}

impl ExecuteRaw for sqlx::AnyPool {
    async fn execute_raw(&self, sql: &str) -> anyhow::Result<()> {
        sqlx::Executor::execute(self, sql).await?;
        Ok(())
    }
}

/// How long each budget worker keeps its pool busy.
const BUDGET_LOAD_S: u64 = 3;

async fn budget() -> anyhow::Result<Budget> {
    let server = botfleet_testkit::PostgresServer::builder()
        .max_connections(20)
        .start()
        .context("cannot start PostgreSQL with max_connections = 20")?;
    server.psql("postgres", "CREATE ROLE bot LOGIN")?;
    let url = server.url("postgres").replace("postgres@", "bot@");
    let db = Database::builder(&url).pool_size(1).connect().await?;
    let limits = ServerLimits::read(&db)
        .await?
        .context("PostgreSQL has limits")?;
    db.close().await;
    let bots = [
        BotDemand {
            name: "dating".into(),
            max_workers: 3,
            weight: 2.0,
        },
        BotDemand {
            name: "stats".into(),
            max_workers: 3,
            weight: 1.0,
        },
    ];
    let plan = budget::plan(limits, 2, 10, &bots)?;
    let exe = std::env::current_exe().context("cannot find the botfleet executable")?;
    let mut children = Vec::new();
    for bot in &plan.bots {
        for worker in 1..=bot.max_workers {
            let spec = format!(
                "{url},{},botfleet/{}/{worker},{BUDGET_LOAD_S}",
                bot.pool_size, bot.name
            );
            #[expect(
                clippy::disallowed_methods,
                reason = "the benchmark runs itself as load workers and waits for each"
            )]
            let child = Command::new(&exe)
                .args(["bench", "db", "--budget-worker", &spec])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .context("cannot start a load worker")?;
            children.push(child);
        }
    }
    let until = Instant::now() + Duration::from_secs(BUDGET_LOAD_S + 15);
    let (peak, samples) =
        check::watch_connections(&server.url("postgres"), Duration::from_millis(5), until, 50)
            .await?;
    let processes = children.len() as u32;
    let mut queries = 0;
    for child in children {
        let out = child.wait_with_output()?;
        if !out.status.success() {
            bail!(
                "a load worker failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        queries += String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse::<u64>()
            .unwrap_or(0);
    }
    Ok(Budget {
        max_connections: limits.max_connections,
        usable: plan.usable,
        planned: plan.total(),
        processes,
        peak_connections: peak,
        samples,
        queries,
    })
}

/// One load worker: 30 tasks keep a pool of the planned size busy; prints
/// its query count.
async fn budget_worker(spec: &str) -> anyhow::Result<ExitCode> {
    let parts: Vec<&str> = spec.split(',').collect();
    let [url, pool, name, seconds] = parts[..] else {
        bail!("--budget-worker takes URL,POOL,NAME,SECONDS");
    };
    let mut settings = Environment::Prod.preset().database;
    settings.pool.acquire_timeout = Duration::from_secs(10);
    let db = Database::builder(url)
        .settings(settings)
        .pool_size(pool.parse()?)
        .application_name(name)
        .connect()
        .await?;
    let total = check::keep_busy(&db, 30, Duration::from_secs(seconds.parse()?)).await?;
    db.close().await;
    writeln!(std::io::stdout(), "{total}")?;
    Ok(ExitCode::SUCCESS)
}

fn print(out: &mut impl Write, r: &Report) -> std::io::Result<()> {
    writeln!(
        out,
        "machine: {} cores, {} MiB; database: {} ({})",
        r.machine.cores,
        r.machine.memory_mib,
        r.database,
        r.server_version.split(" on ").next().unwrap_or("")
    )?;
    let a = &r.acquire;
    writeln!(out, "\nacquire + SELECT 1 ({} queries each, µs)", a.queries)?;
    writeln!(out, "  {:<28} {:>9} {:>9}", "", "p50", "p99")?;
    writeln!(
        out,
        "  {:<28} {:>9.1} {:>9.1}",
        "raw connection", a.p50_us_raw, a.p99_us_raw
    )?;
    writeln!(
        out,
        "  {:<28} {:>9.1} {:>9.1}",
        "botfleet pool (prod preset)", a.p50_us_pool, a.p99_us_pool
    )?;
    writeln!(
        out,
        "  {:<28} {:>9.1} {:>9.1}",
        "sqlx default pool", a.p50_us_sqlx_default, a.p99_us_sqlx_default
    )?;
    writeln!(
        out,
        "  botfleet pool / raw at p50: {:.2}x (goal: at most 1.2x)",
        a.pool_vs_raw_p50
    )?;
    let i = &r.instrumentation;
    writeln!(
        out,
        "\ninstrumentation: {:.2} % (median of {} rounds; p50 {:.1} µs on, {:.1} µs off; goal: under 2 %)",
        r.instrumentation_overhead_pct, i.rounds, i.p50_us_handle, i.p50_us_uninstrumented
    )?;
    let b = &r.batch;
    writeln!(
        out,
        "\nbatch: {} rows: one INSERT each {:.0} rows/s, batched {:.0} rows/s: {:.1}x (goal: at least 10x)",
        b.rows, b.rows_per_s_single, b.rows_per_s_batched, b.speedup
    )?;
    let g = &r.budget;
    writeln!(
        out,
        "\nbudget: {} processes, max_connections {}, usable {}, planned {}, peak seen {} over {} samples",
        g.processes, g.max_connections, g.usable, g.planned, g.peak_connections, g.samples
    )?;
    Ok(())
}
