//! `botfleet tune`: the fleet's connection budget against a live server.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use botfleet_config::{DatabaseSettings, Environment};
use botfleet_db::Database;
use botfleet_db::budget::{self, ServerLimits};
use clap::Args;
use serde::Serialize;

use crate::cli::ConfigFile;
use crate::exit;

/// The database URL, when `--database-url` is not given.
pub(crate) const BOTFLEET_DATABASE_URL: &str = botfleet_protocol::env::DATABASE_URL;

#[derive(Debug, Args)]
pub(crate) struct TuneArgs {
    /// The PostgreSQL server to plan for (default: `database.url` of the
    /// fleet file).
    #[arg(long, value_name = "URL", env = BOTFLEET_DATABASE_URL, hide_env_values = true)]
    database_url: Option<String>,
    /// The fleet file whose bots share the budget. Without it, only the
    /// server's limits and the preset are shown.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// The preset to show when no fleet file is given.
    #[arg(long, value_name = "ENV", default_value = "prod", value_parser = parse_environment)]
    environment: Environment,
    /// Print one JSON document instead of the text.
    #[arg(long)]
    json: bool,
}

fn parse_environment(s: &str) -> Result<Environment, String> {
    Environment::ALL
        .iter()
        .find(|(name, _)| *name == s)
        .map(|(_, e)| *e)
        .ok_or_else(|| "expected dev, staging, prod or high-performance".to_owned())
}

#[derive(Debug, Serialize)]
struct Report {
    server: String,
    environment: &'static str,
    limits: ServerLimits,
    reserve: u32,
    usable: u32,
    plan: Option<budget::Plan>,
    pool: PoolPreset,
}

#[derive(Debug, Serialize)]
struct PoolPreset {
    max_connections_per_process: u32,
    min_connections: u32,
    acquire_timeout_ms: u128,
    idle_timeout_s: u64,
    max_lifetime_s: u64,
    ping_idle_after_s: u64,
    connect_timeout_ms: u128,
    statement_timeout_ms: u128,
    slow_query_ms: u128,
}

pub(crate) fn run(args: &TuneArgs) -> anyhow::Result<ExitCode> {
    let config = match &args.config {
        Some(file) => match crate::commands::config::load(&ConfigFile { file: file.clone() })? {
            Some(config) => Some(config),
            None => return Ok(ExitCode::from(exit::USAGE)),
        },
        None => None,
    };
    let url = match (&args.database_url, &config) {
        (Some(url), _) => url.clone(),
        (None, Some(c)) => match &c.database.url {
            Some(url) => url.expose().to_owned(),
            None => bail!(
                "the fleet file has no database.url (the embedded SQLite database has no connection limit); give --database-url"
            ),
        },
        (None, None) => bail!(
            "give --database-url URL (or set {BOTFLEET_DATABASE_URL}), or --config with a database.url"
        ),
    };
    let (environment, settings) = match &config {
        Some(c) => (c.environment, c.database.settings.clone()),
        None => (args.environment, args.environment.preset().database),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let (server, limits) = runtime.block_on(async {
        let db = Database::builder(&url)
            .settings(settings.clone())
            .pool_size(1)
            .application_name("botfleet/tune")
            .connect()
            .await?;
        let limits = ServerLimits::read(&db).await?;
        let server = db.target().to_owned();
        db.close().await;
        Ok::<_, botfleet_db::Error>((server, limits))
    })?;
    let Some(limits) = limits else {
        bail!("{server} is an SQLite database: it has no connection limit to plan for");
    };
    let plan = match &config {
        Some(c) => Some(budget::plan_fleet(c, limits)?),
        None => None,
    };
    let usable = limits
        .max_connections
        .saturating_sub(limits.superuser_reserved + limits.reserved + settings.reserve);
    let p = &settings.pool;
    let report = Report {
        server,
        environment: environment.as_str(),
        limits,
        reserve: settings.reserve,
        usable,
        plan,
        pool: PoolPreset {
            max_connections_per_process: p.max_connections,
            min_connections: p.min_connections,
            acquire_timeout_ms: p.acquire_timeout.as_millis(),
            idle_timeout_s: p.idle_timeout.as_secs(),
            max_lifetime_s: p.max_lifetime.as_secs(),
            ping_idle_after_s: p.ping_idle_after.as_secs(),
            connect_timeout_ms: p.connect_timeout.as_millis(),
            statement_timeout_ms: p.statement_timeout.as_millis(),
            slow_query_ms: settings.slow_query.as_millis(),
        },
    };
    let mut out = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer_pretty(&mut out, &report)?;
        writeln!(out)?;
    } else {
        print(&mut out, &report, &settings)?;
    }
    Ok(ExitCode::SUCCESS)
}

fn print(out: &mut impl Write, r: &Report, s: &DatabaseSettings) -> std::io::Result<()> {
    let l = &r.limits;
    writeln!(
        out,
        "server: {} (environment \"{}\")",
        r.server, r.environment
    )?;
    match &r.plan {
        Some(plan) => writeln!(out, "{plan}")?,
        None => {
            writeln!(
                out,
                "usable connections: {} = max_connections {} - superuser_reserved_connections {} - reserved_connections {} - database.reserve {}",
                r.usable, l.max_connections, l.superuser_reserved, l.reserved, r.reserve
            )?;
            writeln!(
                out,
                "worker processes that fit (give --config for a plan per bot):"
            )?;
            for pool in [1u32, 2, 4, s.pool.max_connections] {
                writeln!(
                    out,
                    "  pools of {pool:>2}: {} processes",
                    r.usable / pool.max(1)
                )?;
            }
        }
    }
    let p = &r.pool;
    writeln!(
        out,
        "\npool settings per process (preset \"{}\" and [database]):",
        r.environment
    )?;
    writeln!(
        out,
        "  max_connections    {:>8}  (the plan may give less)",
        p.max_connections_per_process
    )?;
    writeln!(out, "  min_connections    {:>8}", p.min_connections)?;
    writeln!(out, "  acquire_timeout    {:>6}ms", p.acquire_timeout_ms)?;
    writeln!(out, "  idle_timeout       {:>7}s", p.idle_timeout_s)?;
    writeln!(out, "  max_lifetime       {:>7}s", p.max_lifetime_s)?;
    writeln!(
        out,
        "  ping_idle_after    {:>7}s  (0: ping on every acquire)",
        p.ping_idle_after_s
    )?;
    writeln!(out, "  connect_timeout    {:>6}ms", p.connect_timeout_ms)?;
    writeln!(
        out,
        "  statement_timeout  {:>6}ms  (0: none)",
        p.statement_timeout_ms
    )?;
    writeln!(out, "  slow_query         {:>6}ms", p.slow_query_ms)?;
    Ok(())
}
