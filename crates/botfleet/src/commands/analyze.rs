//! `botfleet analyze`: the running fleet's bottlenecks, from its monitor's
//! `/performance/report`; and the analysis `run` and `demo` serve there
//! (`botfleet_analyze::fleet` over the monitor's store, with the index
//! advisor's evidence on PostgreSQL).

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use botfleet_analyze::fleet::{self, Advice, IndexAdvice, Input, SeqScanned, human_s};
use botfleet_db::Database;
use botfleet_db::advise::{self, AdvisorOptions};
use botfleet_monitor::AnalysisSource;
use serde_json::Value;

/// How long the index advisor may take inside one analysis.
const ADVISOR_LIMIT: Duration = Duration::from_secs(10);

/// The analysis of a fleet run from `config`: the store's figures, and when
/// the database's share of the time is large and it is PostgreSQL, what
/// the index advisor finds.
pub(crate) fn source(config: &botfleet_config::FleetConfig) -> AnalysisSource {
    let postgres = config
        .database
        .url
        .as_ref()
        .filter(|u| u.backend() == botfleet_config::Backend::Postgres)
        .map(|u| (u.expose().to_owned(), config.database.settings.clone()));
    Arc::new(move |store, now, window_s| {
        let postgres = postgres.clone();
        Box::pin(async move {
            let mut input = Input {
                store: &store,
                now,
                window_s,
                advice: None,
            };
            let mut report = fleet::analyze(&input);
            if fleet::wants_advice(&report) {
                match &postgres {
                    Some((url, settings)) => {
                        match tokio::time::timeout(ADVISOR_LIMIT, advice(url, settings)).await {
                            Ok(Ok(advice)) => {
                                input.advice = Some(advice);
                                report = fleet::analyze(&input);
                            }
                            Ok(Err(e)) => report
                                .notes
                                .push(format!("the index advisor could not run: {e}")),
                            Err(_) => report.notes.push(format!(
                                "the index advisor took over {} s and was left out",
                                ADVISOR_LIMIT.as_secs()
                            )),
                        }
                    }
                    None => report.notes.push(
                        "the database is not PostgreSQL: no index advice (SQLite has no planner statistics)".to_owned(),
                    ),
                }
            }
            serde_json::to_value(&report).unwrap_or_default()
        })
    })
}

/// The advisor's findings on the fleet's database, with a connection of its
/// own.
async fn advice(url: &str, settings: &botfleet_config::DatabaseSettings) -> anyhow::Result<Advice> {
    let db = Database::builder(url.to_owned())
        .settings(settings.clone())
        .pool_size(1)
        .application_name("botfleet/analyze")
        .connect()
        .await?;
    let found = advise::advise(&db, &[], &AdvisorOptions::default()).await;
    db.close().await;
    let found = found?;
    Ok(Advice {
        indexes: found
            .indexes
            .into_iter()
            .map(|i| IndexAdvice {
                table: i.table,
                create: i.create,
                query: i.query,
                cost_before: i.cost_before,
                cost_after: i.cost_after,
                table_rows: i.table_rows,
            })
            .collect(),
        seq_scanned: found
            .seq_scanned_tables
            .into_iter()
            .map(|t| SeqScanned {
                table: t.table,
                rows: t.rows,
                seq_scans: t.seq_scans,
                index_scans: t.index_scans,
            })
            .collect(),
        notes: found.notes,
    })
}

/// Prints an analysis (`/performance/report`'s `analysis`) for people.
pub(crate) fn print(out: &mut impl Write, a: &Value, url: &str) -> std::io::Result<()> {
    let window = a["window_s"].as_u64().unwrap_or(0);
    let findings = a["findings"].as_array().cloned().unwrap_or_default();
    if a["healthy"].as_bool() == Some(true) {
        writeln!(
            out,
            "healthy: nothing binds over the last {} at {url}",
            botfleet_config::duration::format(Duration::from_secs(window))
        )?;
    } else {
        writeln!(
            out,
            "{} bottleneck{} over the last {} at {url}, the worst first:",
            findings.len(),
            if findings.len() == 1 { "" } else { "s" },
            botfleet_config::duration::format(Duration::from_secs(window))
        )?;
        for f in &findings {
            writeln!(
                out,
                "\n{}. {}  {}",
                f["rank"],
                f["kind"].as_str().unwrap_or("?"),
                f["summary"].as_str().unwrap_or("")
            )?;
            for e in f["evidence"].as_array().into_iter().flatten() {
                writeln!(out, "   evidence: {}", e["what"].as_str().unwrap_or(""))?;
                writeln!(out, "             {}", e["series"].as_str().unwrap_or(""))?;
            }
            writeln!(out, "   fix: {}", f["fix"].as_str().unwrap_or(""))?;
        }
    }
    let bots = a["bots"].as_array().cloned().unwrap_or_default();
    if !bots.is_empty() {
        writeln!(
            out,
            "\nwhere an update's time goes (means per update):\n{:<12} {:>7} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
            "bot",
            "upd/s",
            "queue",
            "ipc",
            "handler",
            "cpu",
            "db wait",
            "db query",
            "cache L2",
            "loads",
            "tg limit",
            "tg api",
            "other"
        )?;
        for b in &bots {
            let s = |k: &str| human_s(b[k].as_f64().unwrap_or(0.0));
            writeln!(
                out,
                "{:<12} {:>7.1} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
                b["bot"].as_str().unwrap_or("?"),
                b["updates_per_s"].as_f64().unwrap_or(0.0),
                s("queue_s"),
                s("ipc_s"),
                s("handler_s"),
                s("cpu_s"),
                s("db_acquire_s"),
                s("db_query_s"),
                s("cache_l2_s"),
                s("cache_load_s"),
                s("telegram_limiter_s"),
                s("telegram_api_s"),
                s("other_s"),
            )?;
        }
        writeln!(
            out,
            "(handler = db wait + db query + cache L2 + tg limit + tg api + other; loads overlap the database's parts)"
        )?;
    }
    let s = &a["saturation"];
    let opt_pct = |v: &Value| {
        v.as_f64()
            .map_or("-".to_owned(), |x| format!("{:.0} %", x * 100.0))
    };
    writeln!(
        out,
        "\nsaturation: host CPU {} busy of {} CPUs, the fleet using {}; memory {} available{}; descriptors: supervisor {}, a worker at most {}",
        opt_pct(&s["host_cpu_busy"]),
        s["cpus"]
            .as_f64()
            .map_or("-".to_owned(), |c| format!("{c:.0}")),
        s["fleet_cpus"]
            .as_f64()
            .map_or("-".to_owned(), |c| format!("{c:.2}")),
        opt_pct(&s["memory_available"]),
        s["worker_memory_growth"]
            .as_f64()
            .filter(|g| g.abs() >= 1024.0 * 1024.0)
            .map(|g| format!(", the workers growing {:.1} MiB/s", g / 1048576.0))
            .unwrap_or_default(),
        s["supervisor_fds"]
            .as_f64()
            .map_or("-".to_owned(), |c| format!("{c:.0}")),
        s["worker_fds_max"]
            .as_f64()
            .map_or("-".to_owned(), |c| format!("{c:.0}")),
    )?;
    let d = &a["dependencies"];
    let up = |v: &Value| match v.as_bool() {
        Some(true) => "up",
        Some(false) => "DOWN",
        None => "not polled",
    };
    writeln!(
        out,
        "dependencies: PostgreSQL {}, Redis {}",
        up(&d["postgres_up"]),
        up(&d["redis_up"])
    )?;
    for note in a["notes"].as_array().into_iter().flatten() {
        writeln!(out, "note: {}", note.as_str().unwrap_or(""))?;
    }
    Ok(())
}
