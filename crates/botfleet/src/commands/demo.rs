//! `botfleet demo`: the two reference bots under the supervisor, against the
//! emulator with Telegram's limits and a population of synthetic users, on
//! the embedded SQLite and the in-process cache (or on real servers), with a
//! live view every second and a summary at the end.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use parking_lot::Mutex;
use tokio::time::Instant;

use botfleet_bench::faults::Fault;
use botfleet_bench::stats::quantile;
use botfleet_bench::world::{BOTS, World, WorldOptions};
use botfleet_protocol::stats::Stat;

/// The delay each way of `--fault ipc`.
const IPC_DELAY: Duration = Duration::from_millis(25);

#[derive(Debug, Args)]
pub(crate) struct DemoArgs {
    /// How long to run (`30s`, `2m`, or seconds); without it, until Ctrl-C.
    #[arg(long, value_parser = botfleet_config::duration::positive_arg)]
    duration: Option<Duration>,
    /// Updates per second from the synthetic users, both bots together.
    #[arg(long, default_value_t = 30.0)]
    rate: f64,
    /// Synthetic users (about half start with a dating profile).
    #[arg(long, default_value_t = 3000)]
    users: u32,
    /// Run on this PostgreSQL instead of the embedded SQLite.
    #[arg(long, value_name = "URL")]
    postgres: Option<String>,
    /// Give the workers this Redis as the cache's second tier and
    /// invalidation bus.
    #[arg(long, value_name = "URL")]
    redis: Option<String>,
    /// Let the emulator accept every send at once, without Telegram's
    /// limits (to see the fleet's own speed).
    #[arg(long)]
    no_limits: bool,
    /// Where the fleet's monitor listens (metrics for Prometheus, /ready);
    /// port 0 lets the system pick one.
    #[arg(long, value_name = "ADDR", default_value = botfleet_config::DEFAULT_MONITOR_BIND)]
    monitor: std::net::SocketAddr,
    /// Inject a bottleneck that `botfleet analyze` names by the same kind
    /// (repeatable): db.down, cache.redis_down, host.memory, host.cpu,
    /// db.missing_index, db.pool_exhausted, db.slow_query,
    /// cache.too_small, telegram.rate_limited, telegram.slow_api, ipc,
    /// handler.errors, workers.capped_by_budget, workers.saturated
    /// (docs/analyze.md says what each does).
    #[arg(long = "fault", value_name = "KIND", value_parser = Fault::parse)]
    faults: Vec<Fault>,
}

/// `botfleet demo-worker BOT`: be one of the demo's workers.
#[derive(Debug, Args)]
pub(crate) struct DemoWorkerArgs {
    /// `dating` or `analytics`.
    #[arg(value_parser = ["dating", "analytics"])]
    bot: String,
    /// The demo's fault knobs that run in the workers.
    #[arg(long = "fault", value_name = "KIND", value_parser = Fault::parse)]
    faults: Vec<Fault>,
}

pub(crate) fn worker(args: &DemoWorkerArgs) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let socket = if args.faults.contains(&Fault::Ipc) {
            Some(botfleet_bench::faults::delay_line(IPC_DELAY)?)
        } else {
            None
        };
        let before = botfleet_bench::faults::before(&args.faults);
        if args.bot == "dating" {
            dating_bot::run_with(before, socket).await?;
        } else {
            analytics_bot::run_with(before, socket).await?;
        }
        Ok(ExitCode::SUCCESS)
    })
}

pub(crate) fn run(args: &DemoArgs) -> anyhow::Result<ExitCode> {
    if !args.rate.is_finite() || args.rate <= 0.0 {
        anyhow::bail!("--rate must be above 0 (got {})", args.rate);
    }
    if args.users < 10 {
        anyhow::bail!("--users must be at least 10 (got {})", args.users);
    }
    if let Some(url) = &args.postgres {
        if !url.starts_with("postgres://") && !url.starts_with("postgresql://") {
            anyhow::bail!("--postgres takes a postgres:// URL");
        }
    }
    for fault in &args.faults {
        let given = match fault.needs() {
            Some("--postgres") => args.postgres.is_some(),
            Some(_) => args.redis.is_some(),
            None => true,
        };
        if !given {
            anyhow::bail!(
                "--fault {} needs {} (it acts on that server: {})",
                fault.kind(),
                fault.needs().unwrap_or_default(),
                fault.what()
            );
        }
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(demo(args))
}

async fn demo(args: &DemoArgs) -> anyhow::Result<ExitCode> {
    let mut out = std::io::stdout().lock();
    let live = out.is_terminal();
    let mut world = World::start(&WorldOptions {
        users: args.users,
        postgres: args.postgres.clone(),
        redis: args.redis.clone(),
        no_limits: args.no_limits,
        chat_limits: false,
        workers: None,
        monitor: Some(args.monitor),
        faults: args.faults.clone(),
    })
    .await?;
    let mut rules = vec![botfleet_monitor::alerts::default_rules()];
    rules.extend(world.config.alerts.groups.iter().cloned());
    let mut monitor =
        botfleet_runtime::monitor::start(&world.config, world.fleet().view(), rules).await;
    // The control API, as `run` has it: `botfleet restart --url ...` and
    // the rest act on the demo's fleet too.
    let (mut control_rx, control_files) = match &mut monitor {
        Some(m) => {
            let (rx, files) = super::control::open(m, None, world.data_dir());
            (Some(rx), files)
        }
        None => (None, None),
    };
    // What the actions did, shown under the view (stdout is this loop's).
    let said = Arc::new(Mutex::new(Vec::<String>::new()));
    let say: super::control::Say = {
        let said = Arc::clone(&said);
        Arc::new(move |line| said.lock().push(line))
    };
    let storage = world.storage;
    writeln!(
        out,
        "botfleet demo: {storage}; the Bot API emulator{} at {}",
        if args.no_limits {
            " without limits"
        } else {
            " with Telegram's limits"
        },
        world.emulator.base_url()
    )?;
    match &monitor {
        Some(m) => {
            writeln!(
                out,
                "the dashboard at http://{}/ (open it in a browser; /metrics for Prometheus)",
                m.addr()
            )?;
            if let Some(files) = &control_files {
                writeln!(
                    out,
                    "from another terminal: botfleet status|top|logs|restart|stop|start|reload --url http://{} --token-file {}",
                    m.addr(),
                    files.token_path().display()
                )?;
            }
        }
        None => writeln!(
            out,
            "the fleet's monitor is off (it could not listen; see the log)"
        )?,
    }
    writeln!(
        out,
        "{} users, {} of them with a dating profile; the synthetic users start writing",
        args.users, world.seeded
    )?;
    for fault in &args.faults {
        writeln!(
            out,
            "fault knob {}: {} (`botfleet analyze` names it)",
            fault.kind(),
            fault.what()
        )?;
    }
    let [dating, analytics] = world.traffic(args.users, args.rate, Duration::ZERO);
    let started = Instant::now();
    let deadline = args.duration.map(|d| started + d);
    let mut ticks = tokio::time::interval(Duration::from_secs(1));
    ticks.tick().await;
    // Each bot's acked count at the last tick.
    let mut last = [0u64; 2];
    let mut seen_latencies = 0;
    let mut view = super::live::Live::new(live);
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    // The last lines the actions said, under the view on a terminal.
    let mut recent: std::collections::VecDeque<String> = std::collections::VecDeque::new();
    let fleet_file = world.fleet_file();
    let data_dir = world.data_dir().to_owned();
    let failed = loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = &mut ctrl_c => break None,
            // With a fault knob a failed bot is part of the show: the
            // demo goes on (the bot starts again after its wait).
            bot = world.fleet().failed(), if args.faults.is_empty() => break Some(bot),
            Some(asked) = super::control::recv(&mut control_rx) => {
                super::control::act(world.fleet_mut(), &fleet_file, &data_dir, asked, &say).await;
                continue;
            }
        }
        let status = world.status().await;
        let window = world.emulator.latencies_ms_from(seen_latencies);
        seen_latencies += window.len();
        let mut lines = vec![format!(
            "{:>4} s   e2e latency p50 {:>6} p99 {:>6}   (update created -> reply accepted, last second)",
            started.elapsed().as_secs(),
            ms(&window, 0.5),
            ms(&window, 0.99),
        )];
        lines.push(format!(
            "{:<10} {:>6} {:>8} {:>7} {:>8} {:>6} {:>5} {:>8} {:>8} {:>6} {:>7}",
            "bot",
            "upd/s",
            "handled",
            "workers",
            "restarts",
            "queue",
            "429s",
            "cache L1",
            "cache L2",
            "loads",
            "pool"
        ));
        for (i, (name, token)) in BOTS.iter().enumerate() {
            let Some(s) = status.iter().find(|s| s.bot == *name) else {
                continue;
            };
            let rejected: u64 = bot_id(token)
                .map(|id| world.emulator.stats(id).rejected_429.values().sum())
                .unwrap_or(0);
            let stat = |k: Stat| s.stat(k);
            let ratio = |hits: f64, misses: f64| {
                if hits + misses > 0.0 {
                    format!("{:.0} %", 100.0 * hits / (hits + misses))
                } else {
                    "-".to_owned()
                }
            };
            lines.push(format!(
                "{:<10} {:>6} {:>8} {:>7} {:>8} {:>6} {:>5} {:>8} {:>8} {:>6} {:>7}",
                name,
                s.acked.saturating_sub(last[i]),
                s.acked,
                s.ready_workers,
                s.restarts,
                s.queued + s.unacked,
                rejected,
                ratio(stat(Stat::CacheL1Hits), stat(Stat::CacheL1Misses)),
                ratio(stat(Stat::CacheL2Hits), stat(Stat::CacheL2Misses)),
                stat(Stat::CacheLoads),
                format!(
                    "{:.0}/{:.0}",
                    stat(Stat::DbPoolInUse),
                    stat(Stat::DbPoolSize)
                ),
            ));
            last[i] = s.acked;
        }
        lines.push(
            "cache: hit ratio per tier since the start (L2: Redis); loads: misses; pool: in use/size"
                .to_owned(),
        );
        let new = std::mem::take(&mut *said.lock());
        if live {
            recent.extend(new);
            while recent.len() > 3 {
                recent.pop_front();
            }
            lines.extend(recent.iter().map(|l| format!("> {l}")));
        } else {
            lines.extend(new.into_iter().map(|l| format!("> {l}")));
        }
        view.draw(&mut out, &lines)?;
        if deadline.is_some_and(|d| Instant::now() >= d) {
            break None;
        }
    };
    if let Some(files) = control_files {
        files.remove();
    }
    // What the last actions said since the last frame.
    for line in std::mem::take(&mut *said.lock()) {
        writeln!(out, "> {line}")?;
    }
    writeln!(
        out,
        "stopping: the synthetic users first, then the fleet (drain, nothing lost)"
    )?;
    let sent_dating = dating.stop().await;
    let sent_analytics = analytics.stop().await;
    // The fleet answers what is still queued before it stops.
    world.settle(Duration::from_secs(10)).await;
    let report = world.shutdown().await;
    if let Some(m) = monitor {
        m.stop().await;
    }
    summary(
        &mut out,
        &world,
        &report,
        started.elapsed(),
        [sent_dating.updates, sent_analytics.updates],
    )
    .await?;
    world.db.close().await;
    if let Some(bot) = failed {
        writeln!(
            out,
            "the bot {bot} failed (restart intensity exceeded); see the log above"
        )?;
        return Ok(ExitCode::from(crate::exit::FAILURE));
    }
    Ok(ExitCode::SUCCESS)
}

/// The summary at the end: what the users sent, what each bot did, the
/// latency of the replies, and what landed in the database.
async fn summary(
    out: &mut impl Write,
    world: &World,
    report: &botfleet_runtime::Report,
    took: Duration,
    [dating, analytics]: [u64; 2],
) -> std::io::Result<()> {
    let latencies = world.emulator.latencies_ms();
    let profiles = world
        .count("SELECT COUNT(*) AS n FROM dating_profiles WHERE step = 'done'")
        .await;
    let likes = world
        .count("SELECT COUNT(*) AS n FROM dating_verdicts WHERE verdict = 'like'")
        .await;
    let matches = world
        .count("SELECT COUNT(*) AS n FROM dating_matches")
        .await
        / 2;
    let events = world
        .count("SELECT COUNT(*) AS n FROM analytics_events")
        .await;
    writeln!(
        out,
        "\nsummary after {:.0} s ({}):",
        took.as_secs_f64(),
        world.storage
    )?;
    writeln!(
        out,
        "  synthetic updates: {dating} to the dating bot, {analytics} to the analytics bot"
    )?;
    for s in &report.bots {
        writeln!(
            out,
            "  {:<10} received {}, handled {}, failed {}, redelivered {}, restarts {}",
            s.bot, s.received, s.acked, s.failed, s.redelivered, s.restarts
        )?;
    }
    writeln!(
        out,
        "  replies: {}; end-to-end latency p50 {}, p99 {}",
        latencies.len(),
        ms(&latencies, 0.5),
        ms(&latencies, 0.99)
    )?;
    writeln!(
        out,
        "  database: {profiles} complete profiles, {likes} likes, {matches} matches, {events} group messages recorded"
    )
}

/// The bot id of a token: the digits before the colon.
fn bot_id(token: &str) -> Option<i64> {
    token.split(':').next()?.parse().ok()
}

/// The `q` quantile of `samples` in milliseconds, or `-` when there are
/// none.
fn ms(samples: &[f64], q: f64) -> String {
    if samples.is_empty() {
        "-".to_owned()
    } else {
        format!("{:.1} ms", quantile(samples, q))
    }
}
