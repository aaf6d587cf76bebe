//! `botfleet bench scaling`: a step in traffic, from 100 to 2,000 updates a
//! second and back, with a handler that holds a PostgreSQL connection for
//! 5 ms; how the autoscaler follows, and the connections it used against
//! the fleet's budget.

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use botfleet_config::{BotFile, FleetFile};
use clap::Args;
use serde::Serialize;
use tokio::time::Instant;

use super::Machine;
use super::harness::{self, TOKEN, now_ns};
use super::stats::quantile;

/// The flags of `botfleet bench scaling`.
#[derive(Debug, Args)]
pub struct ScalingBench {
    /// Print exactly one JSON document on stdout instead of the table.
    #[arg(long)]
    json: bool,
    /// A PostgreSQL server to use (its `max_connections` sets the budget);
    /// without it the benchmark starts one with `max_connections = 30`.
    #[arg(long, value_name = "URL")]
    database_url: Option<String>,
    /// The low and the high rate, updates per second.
    #[arg(long, default_value_t = 100)]
    low: u32,
    #[arg(long, default_value_t = 2000)]
    high: u32,
    /// How long each step lasts (`30s`, `1m`...).
    #[arg(long, default_value = "30s", value_parser = botfleet_config::duration::positive_arg)]
    step: Duration,
    /// The most workers.
    #[arg(long, default_value_t = 8)]
    max_workers: u32,
    /// Run as the benchmark's worker (internal).
    #[arg(long, hide = true, value_name = "LOG")]
    worker: Option<PathBuf>,
}

#[derive(Debug, Serialize)]
struct Step {
    rate: u32,
    workers_settled: usize,
    /// From the step's start to the last change of the worker count.
    settle_s: f64,
    /// Over the second half of the step.
    p99_ms: f64,
    handled: u64,
}

#[derive(Debug, Serialize)]
struct Report {
    machine: Machine,
    database: &'static str,
    handler_ms: u32,
    target_latency_ms: u64,
    max_workers: u32,
    steps: Vec<Step>,
    /// The most `botfleet/%` connections seen in `pg_stat_activity`.
    peak_connections: i64,
    /// The connections the fleet may use (the plan's `usable`).
    budget: u32,
    samples: u32,
}

/// Runs `botfleet bench scaling` (or its hidden worker role) and prints its report.
pub fn run(args: &ScalingBench) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    if let Some(log) = &args.worker {
        // Each update is a 5 ms query on the worker's pool.
        return runtime.block_on(harness::logging_worker(
            log.clone(),
            |_text, cx| async move {
                let db = cx.db().ok_or("the benchmark's worker has no database")?;
                db.query("SELECT pg_sleep(0.005)").execute().await?;
                Ok(())
            },
        ));
    }
    if args.low == 0 || args.high <= args.low || args.max_workers == 0 {
        bail!("need 0 < --low < --high and --max-workers at least 1");
    }
    let server = match &args.database_url {
        Some(_) => None,
        None => Some(
            botfleet_testkit::PostgresServer::builder()
                .max_connections(30)
                .start()
                .context("cannot start PostgreSQL (is it installed?)")?,
        ),
    };
    let url = match (&args.database_url, &server) {
        (Some(url), _) => url.clone(),
        (None, Some(server)) => server.url("postgres"),
        (None, None) => unreachable!("a server is started without --database-url"),
    };
    let report = runtime.block_on(measure(args, &url))?;
    super::output(args.json, &report, print)
}

async fn measure(args: &ScalingBench, url: &str) -> anyhow::Result<Report> {
    let dir = botfleet_testkit::TempDir::new("bench-scaling").context("a work directory")?;
    let log = dir.path().join("handled.log");
    let chats = 1000i64;
    let emulator = harness::emulator("scaling_bot", chats).await?;
    let exe = std::env::current_exe().context("cannot find the botfleet executable")?;
    let config = harness::fleet_config(
        FleetFile::new()
            .set("environment", "staging")
            .database(url)
            .set("database.reserve", 2)
            .telegram_api(emulator.base_url())
            .bot(
                BotFile::new("scaling", TOKEN)
                    .workers(1, args.max_workers)
                    .set("heartbeat_interval", "500ms")
                    .set("scaling.target_queue_per_worker", 20)
                    .set("scaling.target_latency", "100ms")
                    .set("scaling.tick", "1s")
                    .set("scaling.scale_down_window", "10s")
                    .command(
                        exe.display().to_string(),
                        ["bench", "scaling", "--worker"]
                            .map(String::from)
                            .into_iter()
                            .chain([log.display().to_string()]),
                    ),
            ),
    )?;
    // The budget the runtime will plan with.
    let limits =
        botfleet_db::budget::ServerLimits::fetch(url, &config.database.settings, "botfleet/bench")
            .await?
            .context("not a PostgreSQL server")?;
    let budget = botfleet_db::budget::plan_fleet(&config, limits)?.usable;
    let fleet = harness::start_fleet(&config, dir.path()).await?;
    let total = args.step * 3 + Duration::from_secs(20);
    let watcher = {
        let url = url.to_owned();
        tokio::spawn(async move {
            botfleet_db::budget::check::watch_connections(
                &url,
                Duration::from_millis(50),
                Instant::now() + total,
                u32::MAX,
            )
            .await
        })
    };
    let mut injected: HashMap<i64, u128> = HashMap::new();
    let mut samples: Vec<(f64, usize)> = Vec::new();
    let rates = [args.low, args.high, args.low];
    let mut step_bounds = Vec::new();
    let start = Instant::now();
    let mut sent = 0u64;
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    for (i, &rate) in rates.iter().enumerate() {
        let _ = writeln!(
            std::io::stderr(),
            "[step {}/3] {rate} updates/s for {:?} ...",
            i + 1,
            args.step
        );
        let step_start = start.elapsed().as_secs_f64();
        let began = Instant::now();
        let mut step_sent = 0u64;
        let mut last_sample = Instant::now();
        while began.elapsed() < args.step {
            tick.tick().await;
            let due = (began.elapsed().as_secs_f64() * f64::from(rate)) as u64;
            while step_sent < due {
                let chat = 1 + (sent % chats as u64) as i64;
                let id = emulator
                    .inject_message(TOKEN, chat, chat, "step")
                    .map_err(|e| anyhow::anyhow!("inject: {e}"))?;
                injected.insert(id, now_ns());
                sent += 1;
                step_sent += 1;
            }
            if last_sample.elapsed() >= Duration::from_millis(200) {
                last_sample = Instant::now();
                samples.push((start.elapsed().as_secs_f64(), fleet.workers().len()));
            }
        }
        step_bounds.push((rate, step_start, start.elapsed().as_secs_f64()));
    }
    let _ = writeln!(std::io::stderr(), "[settle] waiting for every ack ...");
    let settle_by = Instant::now() + Duration::from_secs(60);
    while fleet.status().await[0].unacked > 0 && Instant::now() < settle_by {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    fleet.shutdown().await;
    let (peak_connections, conn_samples) = watcher
        .await
        .context("the connection watcher")?
        .context("watching pg_stat_activity")?;
    // Latency per update, by when it was handled.
    let t0 = now_ns().saturating_sub(start.elapsed().as_nanos());
    let handled: Vec<(f64, f64)> = harness::read_log(&log)
        .into_iter()
        .filter_map(|h| {
            let sent_at = *injected.get(&h.id)?;
            let when = h.at_ns.saturating_sub(t0) as f64 / 1e9;
            Some((when, h.at_ns.saturating_sub(sent_at) as f64 / 1e6))
        })
        .collect();
    let steps = step_bounds
        .iter()
        .map(|&(rate, from, to)| {
            let in_step: Vec<&(f64, usize)> = samples
                .iter()
                .filter(|(t, _)| *t >= from && *t < to)
                .collect();
            let settled = in_step.last().map_or(0, |s| s.1);
            let mut last_change = from;
            for w in in_step.windows(2) {
                if w[0].1 != w[1].1 {
                    last_change = w[1].0;
                }
            }
            let half = from + (to - from) / 2.0;
            let lat: Vec<f64> = handled
                .iter()
                .filter(|(t, _)| *t >= half && *t < to)
                .map(|(_, l)| *l)
                .collect();
            let count = handled
                .iter()
                .filter(|(t, _)| *t >= from && *t < to)
                .count();
            Step {
                rate,
                workers_settled: settled,
                settle_s: ((last_change - from) * 10.0).round() / 10.0,
                p99_ms: (quantile(&lat, 0.99) * 10.0).round() / 10.0,
                handled: count as u64,
            }
        })
        .collect();
    Ok(Report {
        machine: Machine::current(),
        database: "postgres",
        handler_ms: 5,
        target_latency_ms: 100,
        max_workers: args.max_workers,
        steps,
        peak_connections,
        budget,
        samples: conn_samples,
    })
}

fn print(out: &mut impl Write, r: &Report) -> std::io::Result<()> {
    writeln!(
        out,
        "machine: {} cores, {} MiB; a {} ms handler on PostgreSQL, at most {} workers",
        r.machine.cores, r.machine.memory_mib, r.handler_ms, r.max_workers
    )?;
    writeln!(
        out,
        "\n{:>10} {:>16} {:>10} {:>10} {:>10}",
        "rate", "workers settled", "settle s", "p99 ms", "handled"
    )?;
    for s in &r.steps {
        writeln!(
            out,
            "{:>10} {:>16} {:>10.1} {:>10.1} {:>10}",
            s.rate, s.workers_settled, s.settle_s, s.p99_ms, s.handled
        )?;
    }
    writeln!(
        out,
        "\npeak connections {} of a budget of {} ({} samples of pg_stat_activity)",
        r.peak_connections, r.budget, r.samples
    )
}
