//! `botfleet db advise`: the index advisor against a live PostgreSQL.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use botfleet_config::Environment;
use botfleet_db::Database;
use botfleet_db::advise::{self, AdvisorOptions, QuerySample};
use clap::{Args, Subcommand};

use crate::commands::tune::BOTFLEET_DATABASE_URL;

#[derive(Debug, Subcommand)]
pub(crate) enum DbCommand {
    /// Propose indexes for the queries that scan large tables sequentially,
    /// each confirmed by the planner's cost (at least halved); report unused
    /// indexes and the cache-hit ratio.
    Advise(AdviseArgs),
}

#[derive(Debug, Args)]
pub(crate) struct AdviseArgs {
    /// The PostgreSQL database to examine.
    #[arg(long, value_name = "URL", env = BOTFLEET_DATABASE_URL, hide_env_values = true)]
    database_url: String,
    /// Create the proposed indexes (CREATE INDEX CONCURRENTLY: no write
    /// lock, but it takes a while on big tables).
    #[arg(long)]
    apply: bool,
    /// Also examine these queries: a file of SQL statements separated by
    /// `;` (with literal values, or `$n` placeholders).
    #[arg(long, value_name = "FILE")]
    sql: Option<PathBuf>,
    /// Tables with fewer rows are never indexed.
    #[arg(long, default_value_t = 10_000.0)]
    min_rows: f64,
    /// Print one JSON document instead of the text.
    #[arg(long)]
    json: bool,
}

pub(crate) fn run(command: &DbCommand) -> anyhow::Result<ExitCode> {
    match command {
        DbCommand::Advise(args) => advise_cmd(args),
    }
}

fn advise_cmd(args: &AdviseArgs) -> anyhow::Result<ExitCode> {
    let mut samples = Vec::new();
    if let Some(path) = &args.sql {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        samples.extend(
            text.split(';')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|sql| QuerySample {
                    sql: sql.to_owned(),
                    params: None,
                    source: "file",
                }),
        );
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let mut options = AdvisorOptions::default();
    options.min_rows = args.min_rows;
    runtime.block_on(async {
        let mut settings = Environment::Prod.preset().database;
        // Trial indexes and --apply can take longer than a bot's statement.
        settings.pool.statement_timeout = std::time::Duration::ZERO;
        let db = Database::builder(&args.database_url)
            .settings(settings)
            .pool_size(2)
            .application_name("botfleet/advise")
            .connect()
            .await?;
        let advice = advise::advise(&db, &samples, &options).await?;
        let mut out = std::io::stdout().lock();
        if args.json {
            serde_json::to_writer_pretty(&mut out, &advice)?;
            writeln!(out)?;
        } else {
            print(&mut out, &db, &advice)?;
        }
        if args.apply {
            for s in &advice.indexes {
                writeln!(std::io::stderr(), "applying: {} ...", s.create)?;
                advise::apply(&db, s).await?;
                writeln!(std::io::stderr(), "applied: {}", s.create)?;
            }
        }
        db.close().await;
        Ok::<_, anyhow::Error>(())
    })?;
    Ok(ExitCode::SUCCESS)
}

fn print(out: &mut impl Write, db: &Database, a: &advise::Advice) -> anyhow::Result<()> {
    writeln!(
        out,
        "database: {} (candidates costed by {})",
        db.target(),
        a.method
    )?;
    let examined: Vec<String> = a
        .examined
        .iter()
        .map(|(k, v)| format!("{v} from {k}"))
        .collect();
    writeln!(
        out,
        "queries examined: {}",
        if examined.is_empty() {
            "none".to_owned()
        } else {
            examined.join(", ")
        }
    )?;
    if a.indexes.is_empty() {
        writeln!(out, "\nno index would halve the cost of a query examined")?;
    } else {
        writeln!(out, "\nproposed indexes (estimated cost before -> after):")?;
        for s in &a.indexes {
            writeln!(
                out,
                "  {};\n      {:.0} -> {:.0} ({:.0}x) on {} rows, for: {}",
                s.create,
                s.cost_before,
                s.cost_after,
                s.cost_before / s.cost_after.max(0.01),
                s.table_rows,
                s.query.split_whitespace().collect::<Vec<_>>().join(" ")
            )?;
        }
    }
    if !a.unused_indexes.is_empty() {
        writeln!(
            out,
            "\nindexes never scanned since the statistics were reset (non-unique):"
        )?;
        for u in &a.unused_indexes {
            writeln!(out, "  {}.{} ({} kB)", u.table, u.index, u.bytes / 1024)?;
        }
    }
    if !a.seq_scanned_tables.is_empty() {
        writeln!(out, "\ntables read mostly by sequential scans:")?;
        for t in &a.seq_scanned_tables {
            writeln!(
                out,
                "  {} ({:.0} rows): {} sequential, {} index scans",
                t.table, t.rows, t.seq_scans, t.index_scans
            )?;
        }
    }
    match a.cache_hit_ratio {
        Some(r) => writeln!(
            out,
            "\ntable cache-hit ratio: {:.2} %{}",
            r * 100.0,
            if r < 0.99 {
                " (under 99 %: the working set does not fit in shared_buffers)"
            } else {
                ""
            }
        )?,
        None => writeln!(out, "\ntable cache-hit ratio: no table reads yet")?,
    }
    for n in &a.notes {
        writeln!(out, "note: {n}")?;
    }
    Ok(())
}
