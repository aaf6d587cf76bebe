//! The reference bots' world, shared by `botfleet demo` and `botfleet
//! bench fleet`: the emulator with two bots, a database seeded with a
//! population of dating profiles, the fleet running both bots (the workers
//! are this binary's `demo-worker`), and the synthetic users' traffic.

use std::time::Duration;

use anyhow::Context;
use botfleet_config::{BotFile, FleetFile};
use botfleet_db::batch::Batcher;
use botfleet_db::{Database, Row};
use botfleet_emulator::{Emulator, EmulatorConfig, Limits, Replies, Traffic, TrafficHandle};
use botfleet_runtime::{Fleet, Report, RunOptions, Status};

use crate::faults::{Fault, Relay};
use tokio::time::Instant;

/// The dating bot's token (the emulator's; no such bot exists on Telegram).
pub const DATING_TOKEN: &str = "110201543:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw1";
/// The analytics bot's token.
pub const ANALYTICS_TOKEN: &str = "220302654:AAGjJ7rRq6cl8mTnUf0m8l6rHd0qXz3xYp2";
/// Each bot's name in the fleet and its token.
pub const BOTS: [(&str, &str); 2] = [("dating", DATING_TOKEN), ("analytics", ANALYTICS_TOKEN)];
/// The first synthetic user's id.
const FIRST_USER: i64 = 100_000_001;

/// How the world is set up.
#[derive(Clone, Debug)]
pub struct WorldOptions {
    /// Synthetic users; about half get a dating profile.
    pub users: u32,
    /// PostgreSQL instead of the embedded SQLite.
    pub postgres: Option<String>,
    /// Redis as the caches' second tier.
    pub redis: Option<String>,
    /// The emulator accepts every send at once.
    pub no_limits: bool,
    /// With `no_limits`, the fleet still keeps Telegram's limits per chat
    /// and per group (one send a second, 20 a minute); only the token's is
    /// lifted.
    pub chat_limits: bool,
    /// Where the fleet file's monitor listens (`None`: a port the system
    /// picks).
    pub monitor: Option<std::net::SocketAddr>,
    /// Each bot's workers, fixed (`None`: dating 2 to 4, analytics 1 to 3,
    /// the autoscaler's choice).
    pub workers: Option<u32>,
    /// The demo's fault knobs (`faults.rs`).
    pub faults: Vec<Fault>,
}

/// The running world.
pub struct World {
    /// The Bot API emulator both bots talk to.
    pub emulator: Emulator,
    fleet: Option<Fleet>,
    /// A handle on the bots' database, for the summary.
    pub db: Database,
    /// "SQLite + in-process cache", "PostgreSQL + Redis", ...
    pub storage: &'static str,
    /// Users given a dating profile before the start.
    pub seeded: u64,
    /// The fleet file the fleet runs.
    pub config: botfleet_config::FleetConfig,
    dir: botfleet_testkit::TempDir,
    /// The relays the `db.down` and `cache.redis_down` knobs cut.
    relays: Vec<std::sync::Arc<Relay>>,
}

/// The fleet's file: both bots, their workers this binary's `demo-worker`.
fn fleet_file(
    api: &str,
    exe: &str,
    database: &str,
    redis: Option<&str>,
    o: &WorldOptions,
) -> FleetFile {
    let (no_limits, chat_limits, workers, faults) =
        (o.no_limits, o.chat_limits, o.workers, &o.faults);
    let mut file = FleetFile::new()
        .set("environment", "dev")
        .database(database)
        .telegram_api(api);
    if let Some(url) = redis {
        file = file.redis(url);
    }
    // Without limits on the emulator's side, the fleet's sender drops them
    // too (throughput runs).
    if no_limits {
        file = file.unlimited_sends();
        if chat_limits {
            let telegram = botfleet_config::SendLimits::default();
            file = file
                .set("telegram.limits.chat", telegram.chat.to_config_string())
                .set("telegram.limits.group", telegram.group.to_config_string());
        }
    }
    for fault in faults {
        file = match fault {
            Fault::CacheTooSmall => file.set("cache.capacity", 8),
            Fault::PoolExhausted => file.set("database.pool.max_connections", 1),
            Fault::RateLimited => file.set("telegram.limits.token", "8/1s"),
            _ => file,
        };
    }
    let args = |bot: &str| {
        let mut args = vec!["demo-worker".to_owned(), bot.to_owned()];
        for fault in faults.iter().filter(|f| f.in_worker()) {
            args.extend(["--fault".to_owned(), fault.kind().to_owned()]);
        }
        args
    };
    file.bot(
        BotFile::new("dating", DATING_TOKEN)
            .workers(workers.unwrap_or(2), workers.unwrap_or(4))
            .command(exe, args("dating")),
    )
    .bot(
        BotFile::new("analytics", ANALYTICS_TOKEN)
            .workers(workers.unwrap_or(1), workers.unwrap_or(3))
            .command(exe, args("analytics")),
    )
}

/// When the `db.down` and `cache.redis_down` knobs cut their path, after
/// the traffic starts.
const CUT_AFTER: Duration = Duration::from_secs(5);

/// Each bot's most workers when the options fix none (dating 4, analytics 3).
const MAX_WORKERS: u32 = 4 + 3;

/// Creates both bots' tables and gives about half the users a complete
/// dating profile, so browsing, likes and matches happen from the first
/// second; nothing when profiles exist already.
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
    // Seeded: the same run, the same people.
    let mut rng = fastrand::Rng::with_seed(0x2545_f491_4f6c_dd1d);
    let mut seeded = 0;
    for i in 0..i64::from(users) {
        if rng.u64(..2) == 0 {
            continue;
        }
        let gender = if rng.u64(..2) == 0 { "f" } else { "m" };
        let looking_for = match rng.u64(..10) {
            0 => "any",
            1 => gender,
            _ if gender == "f" => "m",
            _ => "f",
        };
        let city = dating_bot::CITIES[rng.u64(..dating_bot::CITIES.len() as u64) as usize];
        let age = 18 + rng.u64(..30) as i64;
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

impl World {
    /// Starts the emulator, seeds the database and starts the fleet.
    pub async fn start(o: &WorldOptions) -> anyhow::Result<World> {
        let mut config = EmulatorConfig::default().lenient_chats();
        if o.no_limits {
            config = config.limits(Limits::unlimited());
        }
        let emulator = Emulator::start(config)
            .await
            .context("cannot start the emulator")?;
        if o.faults.contains(&Fault::SlowApi) {
            emulator.set_faults(botfleet_emulator::Faults {
                latency_ms: (300, 50),
                ..botfleet_emulator::Faults::default()
            });
        }
        emulator.add_bot(DATING_TOKEN, "demo_dating_bot");
        emulator.add_bot(ANALYTICS_TOKEN, "demo_analytics_bot");
        let dir = botfleet_testkit::TempDir::new("bots").context("a work directory")?;
        let database = match &o.postgres {
            Some(url) => url.clone(),
            None => format!(
                "sqlite://{}?mode=rwc",
                dir.path().join("bots.sqlite").display()
            ),
        };
        let storage = match (&o.postgres, &o.redis) {
            (Some(_), Some(_)) => "PostgreSQL + Redis",
            (Some(_), None) => "PostgreSQL + in-process cache",
            (None, Some(_)) => "SQLite + Redis",
            (None, None) => "SQLite + in-process cache",
        };
        let exe = std::env::current_exe().context("cannot find botfleet's own program")?;
        // Written out, so a user can see and run what the demo ran.
        // The knobs that cut a path put a relay on it: the fleet reaches
        // the server through it, the world's own handle does not.
        let mut relays = Vec::new();
        let mut fleet_database = database.clone();
        let mut fleet_redis = o.redis.clone();
        for (fault, url) in [
            (Fault::DbDown, Some(&mut fleet_database)),
            (Fault::RedisDown, fleet_redis.as_mut()),
        ] {
            let Some(url) = url else { continue };
            if !o.faults.contains(&fault) {
                continue;
            }
            let target = crate::faults::target_of(url).with_context(|| {
                format!(
                    "--fault {}: cannot find the server's address in its URL",
                    fault.kind()
                )
            })?;
            let relay = Relay::start(target)
                .await
                .context("cannot start the relay the knob cuts")?;
            *url = crate::faults::redirect(url, relay.addr()).with_context(|| {
                format!("--fault {}: cannot rewrite the server's URL", fault.kind())
            })?;
            relays.push(std::sync::Arc::new(relay));
        }
        let mut file = fleet_file(
            &emulator.base_url(),
            &exe.display().to_string(),
            &fleet_database,
            fleet_redis.as_deref(),
            o,
        );
        if let Some(bind) = o.monitor {
            file = file.set("monitor.bind", bind.to_string());
        }
        if o.faults.contains(&Fault::CappedByBudget) {
            // No room in the budget beyond the workers' maximum, one
            // connection each.
            let settings = botfleet_config::Environment::Dev.preset().database;
            let limits =
                botfleet_db::budget::ServerLimits::fetch(&database, &settings, "botfleet/demo")
                    .await
                    .context(
                        "cannot read the server's limits for --fault workers.capped_by_budget",
                    )?
                    .context(
                        "--fault workers.capped_by_budget: the server's limits are unreadable",
                    )?;
            let planned = o.workers.map_or(MAX_WORKERS, |w| 2 * w);
            let reserve = limits
                .max_connections
                .saturating_sub(limits.superuser_reserved + limits.reserved + planned);
            file = file.set("database.reserve", i64::from(reserve));
        }
        std::fs::write(dir.path().join("fleet.toml"), file.to_toml())
            .context("cannot write the fleet.toml")?;
        let config = file
            .parse()
            .map_err(|e| anyhow::anyhow!("the generated fleet.toml: {e}"))?;
        let db = Database::builder(database)
            .bot("bots")
            .pool_size(2)
            .connect()
            .await
            .context("cannot open the bots' database")?;
        let seeded = seed(&db, o.users).await?;
        if o.faults.contains(&Fault::MissingIndex) {
            crate::faults::seed_lookups(&db)
                .await
                .context("cannot create the table of --fault db.missing_index")?;
        }
        let fleet = Fleet::start(&config, RunOptions::default().data_dir(dir.path()))
            .await
            .context("cannot start the fleet")?;
        Ok(World {
            emulator,
            fleet: Some(fleet),
            db,
            storage,
            seeded,
            config: config.clone(),
            dir,
            relays,
        })
    }

    /// Starts the synthetic users: `rate` updates/s in all, 70 % to the
    /// dating bot in private chats, 30 % to the analytics bot mostly in 40
    /// groups; nobody writes more than once every two seconds.
    pub fn traffic(&self, users: u32, rate: f64, ramp: Duration) -> [TrafficHandle; 2] {
        if !self.relays.is_empty() {
            let relays = self.relays.clone();
            tokio::spawn(async move {
                tokio::time::sleep(CUT_AFTER).await;
                for relay in relays {
                    relay.cut();
                }
            });
        }
        let dating = self.emulator.start_traffic(
            DATING_TOKEN,
            Traffic {
                users,
                groups: 0,
                rate: rate * 0.7,
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
                ramp,
                seed: 7,
                ..Traffic::default()
            },
        );
        let analytics = self.emulator.start_traffic(
            ANALYTICS_TOKEN,
            Traffic {
                users,
                groups: 40,
                rate: rate * 0.3,
                commands: 0.04,
                buttons: 0.0,
                in_groups: 0.97,
                command_list: ["/stats", "/stats", "/subscribe"]
                    .map(String::from)
                    .to_vec(),
                first_user: FIRST_USER,
                user_gap: Duration::from_secs(2),
                replies: Replies::Commands,
                ramp,
                seed: 11,
                ..Traffic::default()
            },
        );
        [dating, analytics]
    }

    /// The running fleet.
    pub fn fleet(&self) -> &Fleet {
        self.fleet.as_ref().expect("the fleet runs until shutdown")
    }

    /// The running fleet, for actions on it.
    pub fn fleet_mut(&mut self) -> &mut Fleet {
        self.fleet.as_mut().expect("the fleet runs until shutdown")
    }

    /// The fleet's data directory (journal, dead letters), temporary.
    pub fn data_dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// The fleet file the fleet was started from, in the data directory.
    pub fn fleet_file(&self) -> std::path::PathBuf {
        self.dir.path().join("fleet.toml")
    }

    /// Waits (at most `limit`) until every update the users sent was taken
    /// and confirmed, and none is queued or in hand.
    pub async fn settle(&self, limit: Duration) {
        let until = Instant::now() + limit;
        while Instant::now() < until {
            let waiting: usize = BOTS
                .iter()
                .map(|(_, token)| self.emulator.pending_updates(token))
                .sum();
            if waiting == 0
                && self
                    .fleet()
                    .status()
                    .await
                    .iter()
                    .all(|s| s.queued + s.unacked == 0)
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Each bot's status now.
    pub async fn status(&self) -> Vec<Status> {
        self.fleet().status().await
    }

    /// Stops the fleet gracefully.
    pub async fn shutdown(&mut self) -> Report {
        match self.fleet.take() {
            Some(fleet) => fleet.shutdown().await,
            None => Report::default(),
        }
    }

    /// `SELECT COUNT(*) AS n ...`, or 0 when it fails.
    pub async fn count(&self, sql: &str) -> i64 {
        self.db
            .query(sql)
            .fetch_one()
            .await
            .ok()
            .and_then(|r| r.try_get::<i64, _>("n").ok())
            .unwrap_or(0)
    }
}
