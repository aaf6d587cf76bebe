//! `botfleet demo`: the two reference bots under the supervisor, against the
//! emulator with Telegram's limits and a population of synthetic users, on
//! the embedded SQLite and the in-process cache (or on real servers), with a
//! live view every second and a summary at the end.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use botfleet_db::batch::Batcher;
use botfleet_db::{Database, Row};
use botfleet_emulator::{Emulator, EmulatorConfig, Limits, Replies, Traffic};
use botfleet_runtime::{Fleet, RunOptions};
use clap::Args;
use tokio::time::Instant;

use super::bench::stats::quantile;

/// The demo bots' tokens: the emulator's, never Telegram's.
const DATING_TOKEN: &str = "110201543:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw1";
const ANALYTICS_TOKEN: &str = "220302654:AAGjJ7rRq6cl8mTnUf0m8l6rHd0qXz3xYp2";
/// The first synthetic user's id.
const FIRST_USER: i64 = 100_000_001;

#[derive(Debug, Args)]
pub(crate) struct DemoArgs {
    /// How long to run (`30s`, `2m`, or seconds); without it, until Ctrl-C.
    #[arg(long, value_parser = super::bench::parse_duration)]
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
}

/// `botfleet demo-worker BOT`: be one of the demo's workers.
#[derive(Debug, Args)]
pub(crate) struct DemoWorkerArgs {
    /// `dating` or `analytics`.
    #[arg(value_parser = ["dating", "analytics"])]
    bot: String,
}

pub(crate) fn worker(args: &DemoWorkerArgs) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        if args.bot == "dating" {
            botfleet_worker::run(dating_bot::handle).await?;
        } else {
            let result = botfleet_worker::run(analytics_bot::handle).await;
            analytics_bot::finish().await;
            result?;
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
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(demo(args))
}

/// The fleet's configuration for the demo.
fn fleet_toml(api: &str, exe: &str, database: &str, redis: Option<&str>) -> String {
    let redis = redis.map_or(String::new(), |url| format!("[redis]\nurl = \"{url}\"\n\n"));
    format!(
        r#"# Written by `botfleet demo`.
environment = "dev"

[database]
url = "{database}"

{redis}[telegram]
api_url = "{api}"

[[bot]]
name = "dating"
token = "{DATING_TOKEN}"
min_workers = 2
max_workers = 4

[bot.worker]
command = "{exe}"
args = ["demo-worker", "dating"]

[[bot]]
name = "analytics"
token = "{ANALYTICS_TOKEN}"
min_workers = 1
max_workers = 3

[bot.worker]
command = "{exe}"
args = ["demo-worker", "analytics"]
"#
    )
}

/// A small generator for the seed population (the same run, the same
/// people).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// Gives about half the users a complete dating profile, so browsing,
/// likes and matches happen from the first second.
async fn seed(db: &Database, users: u32) -> anyhow::Result<u64> {
    db.migrate(dating_bot::MIGRATIONS)
        .await
        .context("cannot create the dating bot's tables")?;
    db.migrate(analytics_bot::MIGRATIONS)
        .await
        .context("cannot create the analytics bot's tables")?;
    let existing: i64 = db
        .query("SELECT COUNT(*) AS n FROM dating_profiles")
        .fetch_one()
        .await?
        .try_get("n")?;
    if existing > 0 {
        return Ok(0);
    }
    let batcher = Batcher::start(
        db,
        "dating_profiles",
        &dating_bot::SEED_COLUMNS,
        &db.settings().batcher,
    )?;
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let mut seeded = 0;
    for i in 0..i64::from(users) {
        if rng.below(2) == 0 {
            continue;
        }
        let gender = if rng.below(2) == 0 { "f" } else { "m" };
        let looking_for = match rng.below(10) {
            0 => "any",
            1 => gender,
            _ if gender == "f" => "m",
            _ => "f",
        };
        let city = dating_bot::CITIES[rng.below(dating_bot::CITIES.len() as u64) as usize];
        let age = 18 + rng.below(30) as i64;
        batcher
            .push(dating_bot::seed_row(
                FIRST_USER + i,
                &format!("User{}", i + 1),
                age,
                gender,
                looking_for,
                city,
            ))
            .await?;
        seeded += 1;
    }
    let report = batcher.shutdown(Duration::from_secs(10)).await;
    if report.refused > 0 || !report.unwritten.is_empty() {
        anyhow::bail!(
            "seeding the profiles: {} refused, {} unwritten",
            report.refused,
            report.unwritten.len()
        );
    }
    Ok(seeded)
}

/// Per-bot counters at the last tick.
#[derive(Clone, Copy, Default)]
struct Last {
    acked: u64,
}

async fn demo(args: &DemoArgs) -> anyhow::Result<ExitCode> {
    let mut out = std::io::stdout().lock();
    let live = out.is_terminal();
    let mut emulator_config = EmulatorConfig::default().lenient_chats();
    if args.no_limits {
        emulator_config = emulator_config.limits(Limits::unlimited());
    }
    let emulator = Emulator::start(emulator_config)
        .await
        .context("cannot start the emulator")?;
    emulator.add_bot(DATING_TOKEN, "demo_dating_bot");
    emulator.add_bot(ANALYTICS_TOKEN, "demo_analytics_bot");
    let dir = botfleet_testkit::TempDir::new("demo").context("a work directory")?;
    let database = match &args.postgres {
        Some(url) => url.clone(),
        None => format!(
            "sqlite://{}?mode=rwc",
            dir.path().join("demo.sqlite").display()
        ),
    };
    let storage = match (&args.postgres, &args.redis) {
        (Some(_), Some(_)) => "PostgreSQL + Redis",
        (Some(_), None) => "PostgreSQL + in-process cache",
        (None, Some(_)) => "SQLite + Redis",
        (None, None) => "SQLite + in-process cache",
    };
    let exe = std::env::current_exe().context("cannot find botfleet's own program")?;
    let toml = fleet_toml(
        &emulator.base_url(),
        &exe.display().to_string(),
        &database,
        args.redis.as_deref(),
    );
    let config_path = dir.path().join("fleet.toml");
    std::fs::write(&config_path, &toml).context("cannot write the demo's fleet.toml")?;
    let config = botfleet_config::load(&config_path)
        .map_err(|e| anyhow::anyhow!("the demo's fleet.toml: {e}"))?;

    writeln!(
        out,
        "botfleet demo: {storage}; the Bot API emulator with Telegram's limits at {}",
        emulator.base_url()
    )?;
    let db = Database::builder(database.clone())
        .bot("demo")
        .pool_size(2)
        .connect()
        .await
        .context("cannot open the demo's database")?;
    let seeded = seed(&db, args.users).await?;
    writeln!(
        out,
        "{} users, {seeded} of them with a dating profile; starting the fleet",
        args.users
    )?;

    let fleet = Fleet::start(&config, RunOptions::default().data_dir(dir.path()))
        .await
        .context("cannot start the fleet")?;
    let dating = emulator.start_traffic(
        DATING_TOKEN,
        Traffic {
            users: args.users,
            groups: 0,
            rate: args.rate * 0.7,
            commands: 0.25,
            buttons: 0.5,
            in_groups: 0.0,
            command_list: ["/start", "/next", "/next", "/matches", "/profile"]
                .map(String::from)
                .to_vec(),
            button_data: vec!["next".into()],
            first_user: FIRST_USER,
            user_gap: Duration::from_secs(2),
            replies: Replies::All,
            seed: 7,
            ..Traffic::default()
        },
    );
    let analytics = emulator.start_traffic(
        ANALYTICS_TOKEN,
        Traffic {
            users: args.users,
            groups: 40,
            rate: args.rate * 0.3,
            commands: 0.04,
            buttons: 0.0,
            in_groups: 0.97,
            command_list: ["/stats", "/stats", "/subscribe"]
                .map(String::from)
                .to_vec(),
            first_user: FIRST_USER,
            user_gap: Duration::from_secs(2),
            replies: Replies::Commands,
            seed: 11,
            ..Traffic::default()
        },
    );

    let started = Instant::now();
    let deadline = args.duration.map(|d| started + d);
    let mut ticks = tokio::time::interval(Duration::from_secs(1));
    ticks.tick().await;
    let mut last = [Last::default(); 2];
    let mut seen_latencies = 0;
    let mut drawn = 0;
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    let failed = loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = &mut ctrl_c => break None,
            bot = fleet.failed() => break Some(bot),
        }
        let status = fleet.status().await;
        let latencies = emulator.latencies_ms();
        let mut window: Vec<f64> = latencies[seen_latencies.min(latencies.len())..].to_vec();
        seen_latencies = latencies.len();
        let mut lines = vec![format!(
            "{:>4} s   e2e latency p50 {:>6} p99 {:>6}   (update created -> reply accepted, last second)",
            started.elapsed().as_secs(),
            ms(&mut window, 0.5),
            ms(&mut window, 0.99),
        )];
        lines.push(format!(
            "{:<10} {:>8} {:>8} {:>8} {:>8} {:>8} {:>6}",
            "bot", "upd/s", "handled", "workers", "restarts", "queue", "429s"
        ));
        for (i, (name, token)) in [("dating", DATING_TOKEN), ("analytics", ANALYTICS_TOKEN)]
            .iter()
            .enumerate()
        {
            let Some(s) = status.iter().find(|s| s.bot == *name) else {
                continue;
            };
            let rejected: u64 = bot_id(token)
                .map(|id| emulator.stats(id).rejected_429.values().sum())
                .unwrap_or(0);
            lines.push(format!(
                "{:<10} {:>8} {:>8} {:>8} {:>8} {:>8} {:>6}",
                name,
                s.acked.saturating_sub(last[i].acked),
                s.acked,
                s.ready_workers,
                s.restarts,
                s.queued + s.unacked,
                rejected
            ));
            last[i].acked = s.acked;
        }
        if live {
            if drawn > 0 {
                write!(out, "\x1b[{drawn}A")?;
            }
            for line in &lines {
                writeln!(out, "\x1b[2K{line}")?;
            }
            drawn = lines.len();
        } else {
            writeln!(out, "{}", lines.join("\n"))?;
        }
        out.flush()?;
        if deadline.is_some_and(|d| Instant::now() >= d) {
            break None;
        }
    };
    writeln!(
        out,
        "stopping: the synthetic users first, then the fleet (drain, nothing lost)"
    )?;
    let sent_dating = dating.stop().await;
    let sent_analytics = analytics.stop().await;
    // The fleet answers what is still queued before it stops.
    let drain_until = Instant::now() + Duration::from_secs(10);
    while Instant::now() < drain_until {
        let status = fleet.status().await;
        if status.iter().all(|s| s.queued + s.unacked == 0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let report = fleet.shutdown().await;
    let mut latencies = emulator.latencies_ms();
    let count = |sql: &'static str| {
        let db = &db;
        async move {
            db.query(sql)
                .fetch_one()
                .await
                .ok()
                .and_then(|r| r.try_get::<i64, _>("n").ok())
                .unwrap_or(0)
        }
    };
    let profiles = count("SELECT COUNT(*) AS n FROM dating_profiles WHERE step = 'done'").await;
    let likes = count("SELECT COUNT(*) AS n FROM dating_verdicts WHERE verdict = 'like'").await;
    let matches = count("SELECT COUNT(*) AS n FROM dating_matches").await / 2;
    let events = count("SELECT COUNT(*) AS n FROM analytics_events").await;
    db.close().await;
    writeln!(
        out,
        "\nsummary after {:.0} s ({storage}):",
        started.elapsed().as_secs_f64()
    )?;
    writeln!(
        out,
        "  synthetic updates: {} to the dating bot, {} to the analytics bot",
        sent_dating.updates, sent_analytics.updates
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
        ms(&mut latencies, 0.5),
        ms(&mut latencies, 0.99)
    )?;
    writeln!(
        out,
        "  database: {profiles} complete profiles, {likes} likes, {matches} matches, {events} group messages recorded"
    )?;
    if let Some(bot) = failed {
        writeln!(
            out,
            "the bot {bot} failed (restart intensity exceeded); see the log above"
        )?;
        return Ok(ExitCode::from(crate::exit::FAILURE));
    }
    Ok(ExitCode::SUCCESS)
}

/// The bot id of a token: the digits before the colon.
fn bot_id(token: &str) -> Option<i64> {
    token.split(':').next()?.parse().ok()
}

/// The `q` quantile of `samples` in milliseconds, or `-` when there are
/// none.
fn ms(samples: &mut [f64], q: f64) -> String {
    if samples.is_empty() {
        "-".to_owned()
    } else {
        format!("{:.1} ms", quantile(samples, q))
    }
}
