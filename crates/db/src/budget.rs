//! The fleet's connection budget (invariant 4): every pool of every worker
//! process together never exceeds the connections PostgreSQL can give.
//!
//! The usable connections are `max_connections` minus the server's own
//! reserves (`superuser_reserved_connections`, and `reserved_connections`
//! from PostgreSQL 16) minus a configured reserve for other clients. The
//! planner gives every worker of a bot the same pool size and sizes the
//! pools at each bot's *maximum* worker count, so no scaling decision can
//! break the budget: one connection per worker first, then the rest by
//! weight, one connection per worker at a time, up to the per-process cap.

use std::fmt;

use serde::Serialize;

use crate::{Database, Result};

/// What the server allows, read live.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct ServerLimits {
    /// `max_connections`.
    pub max_connections: u32,
    /// `superuser_reserved_connections`.
    pub superuser_reserved: u32,
    /// `reserved_connections` (PostgreSQL 16 and later; 0 before).
    pub reserved: u32,
}

impl ServerLimits {
    /// Reads the limits with `SHOW`-equivalent queries. SQLite has no
    /// connection limit: it answers `None`.
    pub async fn read(db: &Database) -> Result<Option<ServerLimits>> {
        if db.backend() != botfleet_config::Backend::Postgres {
            return Ok(None);
        }
        let setting = |name: &'static str| async move {
            let row = db
                .query("SELECT COALESCE(current_setting($1, true), '0')")
                .bind(name)
                .fetch_one()
                .await?;
            let text: String = sqlx::Row::try_get(&row, 0).unwrap_or_default();
            Ok::<u32, crate::Error>(text.trim().parse().unwrap_or(0))
        };
        Ok(Some(ServerLimits {
            max_connections: setting("max_connections").await?,
            superuser_reserved: setting("superuser_reserved_connections").await?,
            reserved: setting("reserved_connections").await?,
        }))
    }

    /// Reads the limits of the database at `url` over one connection opened
    /// for it (named `application_name`) and closed again.
    pub async fn fetch(
        url: &str,
        settings: &botfleet_config::DatabaseSettings,
        application_name: &str,
    ) -> Result<Option<ServerLimits>> {
        let db = Database::builder(url.to_owned())
            .settings(settings.clone())
            .pool_size(1)
            .application_name(application_name)
            .connect()
            .await?;
        let limits = ServerLimits::read(&db).await;
        db.close().await;
        limits
    }
}

/// The plan for a fleet file: its bots, its `database.reserve` and its
/// per-process cap (`pool.max_connections`).
pub fn plan_fleet(
    config: &botfleet_config::FleetConfig,
    limits: ServerLimits,
) -> std::result::Result<Plan, PlanError> {
    let settings = &config.database.settings;
    plan(
        limits,
        settings.reserve,
        settings.pool.max_connections,
        &BotDemand::of_fleet(config),
    )
}

/// One bot's claim on the budget.
#[derive(Clone, Debug, PartialEq)]
pub struct BotDemand {
    /// The bot's name.
    pub name: String,
    /// The most workers it may run (the plan holds at this count).
    pub max_workers: u32,
    /// Its share relative to the other bots (`db_weight`).
    pub weight: f64,
}

impl BotDemand {
    /// The demands of every bot of a fleet file.
    pub fn of_fleet(config: &botfleet_config::FleetConfig) -> Vec<BotDemand> {
        config
            .bots
            .iter()
            .map(|b| BotDemand {
                name: b.name.clone(),
                max_workers: b.max_workers,
                weight: b.db_weight,
            })
            .collect()
    }
}

/// The budget, divided.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Plan {
    /// The server's limits the plan was made for.
    pub limits: ServerLimits,
    /// The configured reserve for other clients.
    pub reserve: u32,
    /// Connections the fleet may use.
    pub usable: u32,
    /// The largest pool one process may have (`pool.max_connections`).
    pub per_process_cap: u32,
    /// Each bot's share.
    pub bots: Vec<BotPlan>,
}

/// One bot's share of the budget.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BotPlan {
    /// The bot's name.
    pub name: String,
    /// Its most workers.
    pub max_workers: u32,
    /// The pool size of each of its worker processes.
    pub pool_size: u32,
}

impl BotPlan {
    /// Connections the bot holds at most: `max_workers × pool_size`.
    pub fn connections(&self) -> u32 {
        self.max_workers * self.pool_size
    }
}

impl Plan {
    /// Connections the whole fleet holds at most.
    pub fn total(&self) -> u32 {
        self.bots.iter().map(BotPlan::connections).sum()
    }

    /// The pool size of a worker of `bot`.
    pub fn pool_size(&self, bot: &str) -> Option<u32> {
        self.bots
            .iter()
            .find(|b| b.name == bot)
            .map(|b| b.pool_size)
    }
}

/// A budget that cannot be met, with what to change.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PlanError {
    /// The reserves take every connection.
    #[error(
        "the fleet has no database connections left: max_connections {max_connections} - superuser_reserved_connections {superuser_reserved} - reserved_connections {reserved} - database.reserve {reserve} leaves {usable}; raise max_connections on the server or lower database.reserve"
    )]
    NoRoom {
        /// `max_connections`.
        max_connections: u32,
        /// `superuser_reserved_connections`.
        superuser_reserved: u32,
        /// `reserved_connections`.
        reserved: u32,
        /// `database.reserve`.
        reserve: u32,
        /// What is left (0 or less, shown as 0).
        usable: u32,
    },
    /// One connection per worker at the maximum worker counts is already
    /// more than the budget.
    #[error(
        "the fleet needs at least {needed} database connections (one per worker at max_workers: {detail}) but the server leaves {usable} usable ({limits}); raise max_connections on the server, lower max_workers, or lower database.reserve"
    )]
    TooManyWorkers {
        /// Σ max_workers.
        needed: u32,
        /// The usable connections.
        usable: u32,
        /// `dating 8 + analytics 6`.
        detail: String,
        /// How `usable` was computed.
        limits: String,
    },
    /// A fleet with no bots has nothing to plan.
    #[error("the fleet has no bots to plan connections for")]
    NoBots,
}

/// Divides the usable connections among `bots`.
pub fn plan(
    limits: ServerLimits,
    reserve: u32,
    per_process_cap: u32,
    bots: &[BotDemand],
) -> Result<Plan, PlanError> {
    if bots.is_empty() {
        return Err(PlanError::NoBots);
    }
    let taken = limits.superuser_reserved + limits.reserved + reserve;
    let usable = limits.max_connections.saturating_sub(taken);
    if usable == 0 {
        return Err(PlanError::NoRoom {
            max_connections: limits.max_connections,
            superuser_reserved: limits.superuser_reserved,
            reserved: limits.reserved,
            reserve,
            usable,
        });
    }
    let needed: u32 = bots.iter().map(|b| b.max_workers).sum();
    if needed > usable {
        let detail = bots
            .iter()
            .map(|b| format!("{} {}", b.name, b.max_workers))
            .collect::<Vec<_>>()
            .join(" + ");
        return Err(PlanError::TooManyWorkers {
            needed,
            usable,
            detail,
            limits: format!(
                "max_connections {} - superuser_reserved_connections {} - reserved_connections {} - database.reserve {reserve}",
                limits.max_connections, limits.superuser_reserved, limits.reserved
            ),
        });
    }
    let cap = per_process_cap.max(1);
    let mut pools = vec![1u32; bots.len()];
    let mut used = needed;
    loop {
        // The bot furthest below its weighted share that still fits.
        let next = bots
            .iter()
            .enumerate()
            .filter(|&(i, b)| pools[i] < cap && b.max_workers <= usable - used)
            .min_by(|&(i, a), &(j, b)| {
                let ra = f64::from(pools[i]) / a.weight.max(f64::MIN_POSITIVE);
                let rb = f64::from(pools[j]) / b.weight.max(f64::MIN_POSITIVE);
                ra.total_cmp(&rb)
            })
            .map(|(i, _)| i);
        let Some(i) = next else { break };
        pools[i] += 1;
        used += bots[i].max_workers;
    }
    Ok(Plan {
        limits,
        reserve,
        usable,
        per_process_cap: cap,
        bots: bots
            .iter()
            .zip(pools)
            .map(|(b, pool_size)| BotPlan {
                name: b.name.clone(),
                max_workers: b.max_workers,
                pool_size,
            })
            .collect(),
    })
}

/// Checking a plan under load (the budget test and `botfleet bench db`):
/// worker processes keep their pools busy with [`check::keep_busy`] while
/// [`check::watch_connections`] samples the server.
pub mod check {
    use std::time::Duration;

    use sqlx::{Connection, PgConnection};
    use tokio::time::Instant;

    use crate::{Database, Result};

    /// Keeps `db`'s pool busy for `duration` with `tasks` concurrent short
    /// queries (`SELECT pg_sleep(0.002)`); returns how many ran. The first
    /// failure ends it.
    pub async fn keep_busy(db: &Database, tasks: usize, duration: Duration) -> Result<u64> {
        let until = Instant::now() + duration;
        let mut running = Vec::new();
        for _ in 0..tasks {
            let db = db.clone();
            running.push(tokio::spawn(async move {
                let mut n = 0u64;
                while Instant::now() < until {
                    db.query("SELECT pg_sleep(0.002)").execute().await?;
                    n += 1;
                }
                Ok::<u64, crate::Error>(n)
            }));
        }
        let mut total = 0;
        for task in running {
            total += task
                .await
                .map_err(|e| crate::Error::Config(format!("a load task failed: {e}")))??;
        }
        Ok(total)
    }

    /// Samples the fleet's connections in `pg_stat_activity` (those whose
    /// `application_name` starts with `botfleet/`) every `every` through a
    /// connection of its own to `admin_url`, until `until`, or until none
    /// is left after `min_samples`. Returns the peak and the samples taken.
    pub async fn watch_connections(
        admin_url: &str,
        every: Duration,
        until: Instant,
        min_samples: u32,
    ) -> Result<(i64, u32)> {
        let fail = |e: sqlx::Error| crate::Error::Connect {
            target: crate::database::target_of(admin_url),
            cause: crate::error::scrub(e.to_string(), botfleet_config::url_password(admin_url)),
        };
        let mut admin = PgConnection::connect(admin_url).await.map_err(fail)?;
        let (mut peak, mut samples) = (0i64, 0u32);
        while Instant::now() < until {
            let n: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'botfleet/%'",
            )
            .fetch_one(&mut admin)
            .await
            .map_err(fail)?;
            peak = peak.max(n);
            samples += 1;
            if samples > min_samples && n == 0 {
                break;
            }
            tokio::time::sleep(every).await;
        }
        admin.close().await.map_err(fail)?;
        Ok((peak, samples))
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let l = &self.limits;
        writeln!(
            f,
            "usable connections: {} = max_connections {} - superuser_reserved_connections {} - reserved_connections {} - database.reserve {}",
            self.usable, l.max_connections, l.superuser_reserved, l.reserved, self.reserve
        )?;
        writeln!(
            f,
            "{:<24} {:>11} {:>9} {:>11}",
            "bot", "max_workers", "pool", "connections"
        )?;
        for b in &self.bots {
            writeln!(
                f,
                "{:<24} {:>11} {:>9} {:>11}",
                b.name,
                b.max_workers,
                b.pool_size,
                b.connections()
            )?;
        }
        write!(
            f,
            "{:<24} {:>11} {:>9} {:>11}  (of {} usable; pools capped at {} per process)",
            "total",
            self.bots.iter().map(|b| b.max_workers).sum::<u32>(),
            "",
            self.total(),
            self.usable,
            self.per_process_cap
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max: u32) -> ServerLimits {
        ServerLimits {
            max_connections: max,
            superuser_reserved: 3,
            reserved: 0,
        }
    }

    fn bot(name: &str, max_workers: u32, weight: f64) -> BotDemand {
        BotDemand {
            name: name.to_owned(),
            max_workers,
            weight,
        }
    }

    #[test]
    fn pools_fill_the_budget_by_weight() {
        // 100 - 3 - 5 = 92 usable; dating 8 workers weight 2, stats 4 weight 1.
        let p = plan(
            limits(100),
            5,
            10,
            &[bot("dating", 8, 2.0), bot("stats", 4, 1.0)],
        )
        .unwrap();
        assert_eq!(p.usable, 92);
        // Twice the weight, about twice the pool: 9 × 8 + 5 × 4 = 92.
        assert_eq!(p.pool_size("dating"), Some(9));
        assert_eq!(p.pool_size("stats"), Some(5));
        assert_eq!(p.total(), 92, "{p}");
        // With more room than the cap allows, the cap wins.
        let q = plan(
            limits(1000),
            5,
            6,
            &[bot("dating", 8, 2.0), bot("stats", 4, 1.0)],
        )
        .unwrap();
        assert_eq!(
            (q.pool_size("dating"), q.pool_size("stats")),
            (Some(6), Some(6))
        );
    }

    #[test]
    fn the_cap_per_process_holds() {
        let p = plan(limits(1000), 0, 10, &[bot("a", 2, 1.0)]).unwrap();
        assert_eq!(p.pool_size("a"), Some(10));
        assert_eq!(p.total(), 20);
    }

    #[test]
    fn impossible_plans_say_what_to_change() {
        let e = plan(
            limits(20),
            5,
            10,
            &[bot("dating", 8, 1.0), bot("stats", 6, 1.0)],
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "the fleet needs at least 14 database connections (one per worker at max_workers: dating 8 + stats 6) but the server leaves 12 usable (max_connections 20 - superuser_reserved_connections 3 - reserved_connections 0 - database.reserve 5); raise max_connections on the server, lower max_workers, or lower database.reserve"
        );
        let e = plan(limits(8), 5, 10, &[bot("a", 1, 1.0)]).unwrap_err();
        assert!(matches!(e, PlanError::NoRoom { usable: 0, .. }), "{e}");
        assert!(e.to_string().contains("lower database.reserve"));
        assert_eq!(plan(limits(8), 0, 10, &[]).unwrap_err(), PlanError::NoBots);
    }

    #[test]
    fn never_over_budget() {
        // Every combination of a few shapes: the sum at max workers fits.
        for max in [5u32, 17, 20, 50, 100, 400] {
            for reserve in [0u32, 2, 5] {
                for cap in [1u32, 3, 10, 40] {
                    for shape in [
                        vec![bot("a", 1, 1.0)],
                        vec![bot("a", 3, 1.0), bot("b", 3, 1.0)],
                        vec![bot("a", 7, 0.5), bot("b", 2, 3.0), bot("c", 4, 1.0)],
                    ] {
                        match plan(limits(max), reserve, cap, &shape) {
                            Ok(p) => {
                                assert!(p.total() <= p.usable, "{p}");
                                assert!(p.bots.iter().all(|b| (1..=cap).contains(&b.pool_size)));
                            }
                            Err(PlanError::TooManyWorkers { needed, usable, .. }) => {
                                assert!(needed > usable);
                            }
                            Err(PlanError::NoRoom { .. }) => assert!(max <= 3 + reserve),
                            Err(e) => panic!("{e}"),
                        }
                    }
                }
            }
        }
    }
}
