//! The analysis the monitor serves at `/performance/report`
//! (`botfleet_analyze::fleet` over the monitor's store), with the index
//! advisor's evidence when the database binds and is PostgreSQL.

use std::sync::Arc;
use std::time::Duration;

use botfleet_analyze::fleet::{self, Advice, IndexAdvice, Input, SeqScanned};
use botfleet_db::Database;
use botfleet_db::advise::{self, AdvisorOptions};
use botfleet_monitor::AnalysisSource;

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
async fn advice(
    url: &str,
    settings: &botfleet_config::DatabaseSettings,
) -> botfleet_db::Result<Advice> {
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
