//! `botfleet bench fleet`: the end-to-end load test. The two reference bots
//! run under the fleet runtime against the emulator, synthetic users write
//! at an open-loop rate (latency counts from each update's scheduled
//! arrival, so a slow fleet cannot slow the load down and hide itself), and
//! the latency from update created to reply accepted goes into an HDR
//! histogram. Telegram's limits are lifted on both sides, or replies would
//! stop at 30/s per token.
//!
//! Without `--rate`, it first searches the highest rate whose p99 stays
//! under 100 ms (rates doubling, then halving the interval between the last
//! good and the first bad twice), then measures at half that rate. Where
//! the time goes comes from the workers' own stats (docs/protocol.md).

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use botfleet_protocol::stats::Stat;
use clap::{Args, ValueEnum};
use hdrhistogram::Histogram;
use serde::Serialize;
use tokio::time::Instant;

use super::Machine;
use super::stats::quantile;
use crate::world::{ANALYTICS_TOKEN, World, WorldOptions};
use botfleet_emulator::{ChatKind, Replies, Traffic};

/// Where the fleet's ingest journal lives (`bench journal` measured the
/// choice).
const JOURNAL: &str = "file: <data dir>/journal/<bot>.journal, synced per batch";

/// The p99 the search keeps under.
const TARGET_P99_MS: f64 = 100.0;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Storage {
    /// The embedded SQLite and the in-process cache.
    Sqlite,
    /// PostgreSQL and Redis (`--database-url`/`--redis-url`, or servers the
    /// benchmark starts through botfleet-testkit).
    Servers,
}

/// Whether the fleet runs its monitor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Monitor {
    /// As `botfleet run`: the recorder, worker metrics forwarded, the
    /// sampler, the store and the built-in alert rules.
    On,
    /// No recorder anywhere: the workers are told to send no metrics.
    Off,
}

/// The flags of `botfleet bench fleet`.
#[derive(Debug, Args)]
pub struct FleetBench {
    /// Print exactly one JSON document on stdout instead of the table.
    #[arg(long)]
    json: bool,
    /// Run the fleet with its monitor, as `botfleet run` does, or without
    /// (`bench monitor` compares the two).
    #[arg(long, value_enum, default_value = "on")]
    monitor: Monitor,
    /// Where the bots keep their data.
    #[arg(long, value_enum, default_value = "sqlite")]
    storage: Storage,
    /// PostgreSQL to use with `--storage servers` (default: one started
    /// for the run).
    #[arg(long, value_name = "URL")]
    database_url: Option<String>,
    /// Redis to use with `--storage servers` (default: one started for the
    /// run).
    #[arg(long, value_name = "URL")]
    redis_url: Option<String>,
    /// Measure at this rate (updates/s) and skip the search.
    #[arg(long)]
    rate: Option<f64>,
    /// How long the measurement runs at its rate (`30s`, `2m`, seconds).
    #[arg(long, default_value = "30s", value_parser = botfleet_config::duration::positive_arg)]
    duration: Duration,
    /// How long the rate climbs before any run counts.
    #[arg(long, default_value = "3s", value_parser = botfleet_config::duration::positive_arg)]
    ramp: Duration,
    /// How long each step of the search runs at its rate.
    #[arg(long, default_value = "10s", value_parser = botfleet_config::duration::positive_arg)]
    step: Duration,
    /// The search's first rate (updates/s).
    #[arg(long, default_value_t = 50.0)]
    start_rate: f64,
    /// Synthetic users.
    #[arg(long, default_value_t = 5000)]
    users: u32,
    /// The head-of-line scenario: private chats of the analytics bot served
    /// while one of its groups is held at Telegram's 20-per-minute limit
    /// (0 skips the scenario).
    #[arg(long, default_value_t = 1000)]
    hol_chats: u32,
    /// Commands sent to the held group at the scenario's start, each
    /// answered in the group.
    #[arg(long, default_value_t = 30)]
    hol_group: u32,
    /// Private updates per second in the scenario (each user writes at most
    /// once every 2 s).
    #[arg(long, default_value_t = 200.0)]
    hol_rate: f64,
    /// How long the private chats write in the scenario.
    #[arg(long, default_value = "15s", value_parser = botfleet_config::duration::positive_arg)]
    hol_duration: Duration,
}

/// The head-of-line scenario's figures.
#[derive(Debug, Serialize)]
struct Hol {
    /// Private chats answered while the group was held.
    private_chats: u64,
    /// Private updates sent.
    private_updates: u64,
    private_p50_ms: f64,
    private_p99_ms: f64,
    /// Commands sent to the held group.
    group_updates: u64,
    /// Of them, answered while the private chats wrote (the rest waited for
    /// the group's limit).
    group_replies: u64,
}

#[derive(Debug, Serialize)]
struct Breakdown {
    /// The handler's whole time per update (the three below are parts of
    /// it).
    handler: f64,
    /// Queries through the bot's database handle.
    database: f64,
    /// The rest of the handler's time: cache lookups (and Redis round
    /// trips) and the handler's own code.
    cache: f64,
    /// Dispatch to ack, less the handler: both socket trips and the
    /// worker's reader.
    ipc: f64,
    /// Bot API calls awaited by the handler: through the supervisor, its
    /// limiter and the Bot API server.
    sender: f64,
}

#[derive(Debug, Serialize)]
struct Step {
    rate: f64,
    replied: u64,
    p50_ms: f64,
    p99_ms: f64,
    ok: bool,
}

#[derive(Debug, Serialize)]
struct Report {
    machine: Machine,
    storage: String,
    /// Whether the fleet ran its monitor.
    monitor: bool,
    /// Where the ingest journal lives.
    journal: &'static str,
    rate: f64,
    duration_s: f64,
    sent: u64,
    handled: u64,
    replied: u64,
    lost: u64,
    p50_ms: f64,
    p99_ms: f64,
    p999_ms: f64,
    max_ms: f64,
    /// The highest rate of the search whose p99 stayed under 100 ms; `None`
    /// with `--rate`.
    max_rate_p99_under_100ms: Option<f64>,
    search: Vec<Step>,
    /// Per handled update, in milliseconds.
    breakdown_ms: Breakdown,
    /// The measured run's latency distribution: `[ms, count]` per HDR
    /// bucket (3 significant digits), raw counts.
    latency_distribution: Vec<(f64, u64)>,
    users: u32,
    workers: Vec<(String, usize)>,
    /// The head-of-line scenario (`None` with `--hol-chats 0`).
    hol: Option<Hol>,
}

/// Runs `botfleet bench fleet` (or its hidden worker role) and prints its report.
pub fn run(args: &FleetBench) -> anyhow::Result<ExitCode> {
    if args.rate.is_some_and(|r| !r.is_finite() || r <= 0.0) || args.start_rate <= 0.0 {
        bail!("--rate and --start-rate must be above 0");
    }
    if !args.hol_rate.is_finite() || args.hol_rate <= 0.0 {
        bail!("--hol-rate must be above 0");
    }
    if args.users < 100 {
        bail!("--users must be at least 100 (got {})", args.users);
    }
    if args.storage == Storage::Sqlite && (args.database_url.is_some() || args.redis_url.is_some())
    {
        bail!("--database-url and --redis-url go with --storage servers");
    }
    if args.monitor == Monitor::On {
        // Before anything records, as the CLI does for `run`.
        botfleet_monitor::install(botfleet_monitor::registry::DEFAULT_SERIES_CAP);
    }
    // Servers started for the run live until it ends.
    let (postgres, redis) = match args.storage {
        Storage::Sqlite => (None, None),
        Storage::Servers => (
            match &args.database_url {
                Some(_) => None,
                None => Some(
                    botfleet_testkit::PostgresServer::builder()
                        .max_connections(60)
                        .start()
                        .context("cannot start PostgreSQL (is it installed?)")?,
                ),
            },
            match &args.redis_url {
                Some(_) => None,
                None => Some(
                    botfleet_testkit::RedisServer::start()
                        .context("cannot start Redis (is redis-server installed?)")?,
                ),
            },
        ),
    };
    let options = WorldOptions {
        users: args.users,
        postgres: args
            .database_url
            .clone()
            .or_else(|| postgres.as_ref().map(|p| p.url("postgres"))),
        redis: args
            .redis_url
            .clone()
            .or_else(|| redis.as_ref().map(botfleet_testkit::RedisServer::url)),
        no_limits: true,
        chat_limits: false,
        workers: None,
        monitor: None,
        faults: Vec::new(),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let report = runtime.block_on(measure(args, &options))?;
    super::output(args.json, &report, print)
}

/// The counters a run's breakdown is the difference of.
#[derive(Clone, Debug, Default)]
struct Snapshot {
    acked: u64,
    ack_us: u64,
    handled: f64,
    handler_us: f64,
    db_us: f64,
    api_us: f64,
}

async fn snapshot(world: &World) -> Snapshot {
    let mut s = Snapshot::default();
    for b in world.status().await {
        s.acked += b.acked;
        s.ack_us += b.ack_us_total;
        s.handled += b.stat(Stat::Handled);
        s.handler_us += b.stat(Stat::HandlerUs);
        s.db_us += b.stat(Stat::DbUs) + b.stat(Stat::DbBatchWaitUs);
        s.api_us += b.stat(Stat::ApiUs);
    }
    s
}

/// One run at `rate`: the latencies of replies after the ramp, what was
/// sent and handled.
struct Run {
    histogram: Histogram<u64>,
    sent: u64,
    handled: u64,
    before: Snapshot,
    after: Snapshot,
}

async fn run_at(
    world: &World,
    users: u32,
    rate: f64,
    ramp: Duration,
    length: Duration,
    label: &str,
) -> anyhow::Result<Run> {
    let handled_before: u64 = world.status().await.iter().map(|s| s.acked).sum();
    let traffic = world.traffic(users, rate, ramp);
    // Not locked across the awaits below: the fleet's own log lines (the
    // autoscaler's, say) write to stderr from the runtime's threads, and a
    // lock held here would stop them all.
    let err = std::io::stderr();
    let live = err.is_terminal();
    let began = Instant::now();
    tokio::time::sleep(ramp).await;
    let skip = world.emulator.latencies_ms().len();
    let before = snapshot(world).await;
    let counted = Instant::now();
    let mut histogram =
        Histogram::<u64>::new_with_bounds(1, 600_000_000, 3).context("an HDR histogram")?;
    let mut seen = skip;
    let mut ticks = 0u64;
    while counted.elapsed() < length {
        ticks += 1;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let fresh = world.emulator.latencies_ms_from(seen);
        seen += fresh.len();
        for ms in fresh {
            histogram.saturating_record((ms * 1e3).max(1.0) as u64);
        }
        let line = format!(
            "{label}: {rate:.0} updates/s, {:>3.0} of {:.0} s, {} replies, p99 {:.1} ms",
            began.elapsed().as_secs_f64(),
            (ramp + length).as_secs_f64(),
            histogram.len(),
            histogram.value_at_quantile(0.99) as f64 / 1e3
        );
        if live {
            let _ = write!(err.lock(), "\r{line}   ");
        } else if ticks % 10 == 0 {
            let _ = writeln!(err.lock(), "{line}");
        }
    }
    let after = snapshot(world).await;
    let mut sent = 0;
    for t in traffic {
        sent += t.stop().await.updates;
    }
    // What was sent is answered before the next run starts.
    world.settle(Duration::from_secs(60)).await;
    let fresh = world.emulator.latencies_ms_from(seen);
    for ms in fresh {
        histogram.saturating_record((ms * 1e3).max(1.0) as u64);
    }
    let handled = world.status().await.iter().map(|s| s.acked).sum::<u64>() - handled_before;
    if live {
        let _ = writeln!(err.lock());
    }
    Ok(Run {
        histogram,
        sent,
        handled,
        before,
        after,
    })
}

fn ms_at(h: &Histogram<u64>, q: f64) -> f64 {
    if h.is_empty() {
        0.0
    } else {
        (h.value_at_quantile(q) as f64 / 1e3 * 100.0).round() / 100.0
    }
}

async fn measure(args: &FleetBench, options: &WorldOptions) -> anyhow::Result<Report> {
    let mut world = World::start(options).await?;
    let monitor = match args.monitor {
        Monitor::On => {
            let rules = vec![botfleet_monitor::alerts::default_rules()];
            botfleet_runtime::monitor::start(&world.config, world.fleet().view(), rules).await
        }
        Monitor::Off => None,
    };
    let mut err = std::io::stderr().lock();
    let _ = writeln!(
        err,
        "bench fleet: {}, {} users ({} with a dating profile)",
        world.storage, args.users, world.seeded
    );
    drop(err);
    let mut search = Vec::new();
    let mut max_ok: Option<f64> = None;
    if args.rate.is_none() {
        let mut rate = args.start_rate;
        let mut bad: Option<f64> = None;
        let mut bisections = 0;
        // Doubling until a step fails (or 20,000/s), then two bisections.
        for i in 0..16 {
            let run = run_at(
                &world,
                args.users,
                rate,
                args.ramp,
                args.step,
                &format!("search {}", i + 1),
            )
            .await?;
            let p99 = ms_at(&run.histogram, 0.99);
            let ok = p99 < TARGET_P99_MS && run.sent == run.handled && !run.histogram.is_empty();
            search.push(Step {
                rate,
                replied: run.histogram.len(),
                p50_ms: ms_at(&run.histogram, 0.5),
                p99_ms: p99,
                ok,
            });
            if ok {
                max_ok = Some(max_ok.map_or(rate, |m: f64| m.max(rate)));
            } else {
                bad = Some(bad.map_or(rate, |b: f64| b.min(rate)));
            }
            rate = match (max_ok, bad) {
                (Some(good), None) if good < 20_000.0 => good * 2.0,
                (Some(good), Some(bad)) if bisections < 2 && bad / good > 1.2 => {
                    bisections += 1;
                    ((good + bad) / 2.0).round()
                }
                (None, Some(bad)) if bad > 5.0 => bad / 2.0,
                _ => break,
            };
        }
    }
    let rate = args
        .rate
        .unwrap_or_else(|| max_ok.map_or(args.start_rate / 2.0, |m| m / 2.0));
    let run = run_at(
        &world,
        args.users,
        rate,
        args.ramp,
        args.duration,
        "measure",
    )
    .await?;
    let workers: Vec<(String, usize)> = world
        .status()
        .await
        .iter()
        .map(|s| (s.bot.clone(), s.ready_workers))
        .collect();
    if let Some(monitor) = monitor {
        monitor.stop().await;
    }
    world.shutdown().await;
    world.db.close().await;
    drop(world);
    let hol = if args.hol_chats > 0 {
        Some(head_of_line(args, options).await?)
    } else {
        None
    };

    let (b, a) = (&run.before, &run.after);
    let handled = (a.handled - b.handled).max(1.0);
    let acked = a.acked.saturating_sub(b.acked).max(1) as f64;
    let handler = (a.handler_us - b.handler_us) / handled / 1e3;
    let database = (a.db_us - b.db_us) / handled / 1e3;
    let sender = (a.api_us - b.api_us) / handled / 1e3;
    let dispatch_to_ack = a.ack_us.saturating_sub(b.ack_us) as f64 / acked / 1e3;
    let round = |v: f64| (v.max(0.0) * 1000.0).round() / 1000.0;
    let latency_distribution = run
        .histogram
        .iter_recorded()
        .map(|v| (v.value_iterated_to() as f64 / 1e3, v.count_at_value()))
        .collect();
    Ok(Report {
        machine: Machine::current(),
        storage: match args.storage {
            Storage::Sqlite => "sqlite+memory".to_owned(),
            Storage::Servers => "postgres+redis".to_owned(),
        },
        monitor: args.monitor == Monitor::On,
        journal: JOURNAL,
        rate,
        duration_s: args.duration.as_secs_f64(),
        sent: run.sent,
        handled: run.handled,
        replied: run.histogram.len(),
        lost: run.sent.saturating_sub(run.handled),
        p50_ms: ms_at(&run.histogram, 0.5),
        p99_ms: ms_at(&run.histogram, 0.99),
        p999_ms: ms_at(&run.histogram, 0.999),
        max_ms: ms_at(&run.histogram, 1.0),
        max_rate_p99_under_100ms: max_ok.filter(|_| args.rate.is_none()),
        search,
        breakdown_ms: Breakdown {
            handler: round(handler),
            database: round(database),
            cache: round(handler - database - sender),
            ipc: round(dispatch_to_ack - handler),
            sender: round(sender),
        },
        latency_distribution,
        users: args.users,
        workers,
        hol,
    })
}

/// The held group, and the member who writes there.
const HELD_GROUP: i64 = -1_002_000_000_001;
const GROUP_MEMBER: i64 = 300_000_001;

/// A fleet that keeps Telegram's per-chat and per-group limits (the
/// token's is lifted, as everywhere in this benchmark): `--hol-group`
/// `/stats` in one group, whose answers the group's limit holds, then the
/// analytics bot's private chats write `/start` for `--hol-duration`. Their
/// latency is what a held group must not touch.
async fn head_of_line(args: &FleetBench, options: &WorldOptions) -> anyhow::Result<Hol> {
    let mut world = World::start(&WorldOptions {
        users: 100,
        chat_limits: true,
        ..options.clone()
    })
    .await?;
    let e = &world.emulator;
    e.add_group(HELD_GROUP, "held group", ChatKind::Group);
    e.add_user(GROUP_MEMBER, "member");
    for _ in 0..args.hol_group {
        e.inject_message(ANALYTICS_TOKEN, HELD_GROUP, GROUP_MEMBER, "/stats")
            .map_err(|m| anyhow::anyhow!("cannot write to the held group: {m}"))?;
    }
    let _ = writeln!(
        std::io::stderr(),
        "head of line: {} commands to one group (20 answers a minute), {} private chats at {} updates/s for {:?} ...",
        args.hol_group,
        args.hol_chats,
        args.hol_rate,
        args.hol_duration
    );
    let skip = e.latencies_ms().len();
    let log_from = e.log().len();
    let traffic = e.start_traffic(
        ANALYTICS_TOKEN,
        Traffic {
            users: args.hol_chats,
            groups: 0,
            rate: args.hol_rate,
            zipf: 0.0,
            commands: 1.0,
            buttons: 0.0,
            in_groups: 0.0,
            command_list: vec!["/start".to_owned()],
            first_user: 200_000_001,
            user_gap: Duration::from_secs(2),
            replies: Replies::Commands,
            seed: 13,
            ..Traffic::default()
        },
    );
    tokio::time::sleep(args.hol_duration).await;
    let private_updates = traffic.stop().await.updates;
    // Every private update answered (the group may still be held).
    let until = Instant::now() + Duration::from_secs(30);
    while (e.latencies_ms().len() - skip) < private_updates as usize && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let latencies = e.latencies_ms_from(skip);
    let sends: Vec<_> = e
        .log()
        .into_iter()
        .skip(log_from)
        .filter(|l| l.status == 200 && l.method == "sendmessage")
        .collect();
    let private_chats = sends
        .iter()
        .filter_map(|l| l.chat_id)
        .filter(|&c| c > 0)
        .collect::<std::collections::HashSet<_>>()
        .len() as u64;
    let group_replies = sends
        .iter()
        .filter(|l| l.chat_id == Some(HELD_GROUP))
        .count() as u64;
    world.shutdown().await;
    world.db.close().await;
    let round = |v: f64| (v * 100.0).round() / 100.0;
    Ok(Hol {
        private_chats,
        private_updates,
        private_p50_ms: round(quantile(&latencies, 0.5)),
        private_p99_ms: round(quantile(&latencies, 0.99)),
        group_updates: u64::from(args.hol_group),
        group_replies,
    })
}

fn print(out: &mut impl Write, r: &Report) -> std::io::Result<()> {
    writeln!(
        out,
        "machine: {} cores, {} MiB; storage {}; {} users; monitor {}",
        r.machine.cores,
        r.machine.memory_mib,
        r.storage,
        r.users,
        if r.monitor { "on" } else { "off" }
    )?;
    if !r.search.is_empty() {
        writeln!(
            out,
            "\nsearch (p99 under {TARGET_P99_MS} ms, nothing lost):"
        )?;
        writeln!(
            out,
            "{:>10} {:>9} {:>9} {:>9}  ok",
            "rate/s", "replies", "p50 ms", "p99 ms"
        )?;
        for s in &r.search {
            writeln!(
                out,
                "{:>10.1} {:>9} {:>9.2} {:>9.2}  {}",
                s.rate,
                s.replied,
                s.p50_ms,
                s.p99_ms,
                if s.ok { "yes" } else { "no" }
            )?;
        }
        match r.max_rate_p99_under_100ms {
            Some(m) => writeln!(out, "highest rate with p99 under 100 ms: {m:.1}/s")?,
            None => writeln!(out, "no rate of the search kept p99 under 100 ms")?,
        }
    }
    writeln!(
        out,
        "\nmeasured at {:.1} updates/s for {:.0} s: sent {}, handled {}, lost {}, replies {}",
        r.rate, r.duration_s, r.sent, r.handled, r.lost, r.replied
    )?;
    writeln!(
        out,
        "latency (update created -> reply accepted): p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, max {:.2} ms",
        r.p50_ms, r.p99_ms, r.p999_ms, r.max_ms
    )?;
    let b = &r.breakdown_ms;
    writeln!(out, "ingest journal: {}", r.journal)?;
    writeln!(out, "\nwhere the time goes, per update (ms):")?;
    writeln!(out, "  ipc (both ways)          {:>8.3}", b.ipc)?;
    writeln!(out, "  handler                  {:>8.3}", b.handler)?;
    writeln!(out, "    database               {:>8.3}", b.database)?;
    writeln!(out, "    sender (Bot API calls) {:>8.3}", b.sender)?;
    writeln!(out, "    cache and own code     {:>8.3}", b.cache)?;
    let workers: Vec<String> = r.workers.iter().map(|(b, n)| format!("{b} {n}")).collect();
    writeln!(out, "workers at the end: {}", workers.join(", "))?;
    if let Some(h) = &r.hol {
        writeln!(
            out,
            "\nhead of line: {} private chats ({} updates) answered while a group was held at 20 a minute \
             ({} of its {} commands answered meanwhile): private p50 {:.2} ms, p99 {:.2} ms",
            h.private_chats,
            h.private_updates,
            h.group_replies,
            h.group_updates,
            h.private_p50_ms,
            h.private_p99_ms
        )?;
    }
    Ok(())
}
