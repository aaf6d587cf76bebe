//! Invariant 4 across processes: six worker processes under load, their pool
//! sizes from the budget plan, against a PostgreSQL started with
//! `max_connections = 20`. A sampler watches `pg_stat_activity` throughout.

use std::process::{Command, Stdio};
use std::time::Duration;

use botfleet_db::Database;
use botfleet_db::budget::{BotDemand, ServerLimits, check, plan};
use tokio::time::Instant;

use crate::support::{runtime, settings};

const TEST: &str = "budget::six_worker_processes_under_load_stay_within_the_budget";
const CHILD_URL: &str = "BOTFLEET_DB_TEST_CHILD_URL";
const CHILD_POOL: &str = "BOTFLEET_DB_TEST_CHILD_POOL";
const CHILD_NAME: &str = "BOTFLEET_DB_TEST_CHILD_NAME";
/// How long each worker keeps its pool busy.
const LOAD: Duration = Duration::from_secs(3);

#[test]
fn six_worker_processes_under_load_stay_within_the_budget() {
    if let Ok(url) = std::env::var(CHILD_URL) {
        return worker(&url);
    }
    let server = botfleet_testkit::PostgresServer::builder()
        .max_connections(20)
        .start()
        .unwrap();
    // The workers log in as an ordinary role: "too many clients" would
    // reach them at 17 connections, where superusers still get in.
    server.psql("postgres", "CREATE ROLE bot LOGIN").unwrap();
    let bot_url = server.url("postgres").replace("postgres@", "bot@");
    let rt = runtime();
    let plan = rt.block_on(async {
        let db = Database::builder(&bot_url)
            .settings(settings())
            .pool_size(1)
            .connect()
            .await
            .unwrap();
        let limits = ServerLimits::read(&db).await.unwrap().unwrap();
        assert_eq!(limits.max_connections, 20);
        db.close().await;
        let bots = [
            BotDemand {
                name: "dating".into(),
                max_workers: 3,
                weight: 2.0,
            },
            BotDemand {
                name: "stats".into(),
                max_workers: 3,
                weight: 1.0,
            },
        ];
        plan(limits, 2, 10, &bots).unwrap()
    });
    assert_eq!(plan.usable, 15, "{plan}");
    assert_eq!(plan.total(), 15, "{plan}");

    let exe = std::env::current_exe().unwrap();
    let mut children = Vec::new();
    for bot in &plan.bots {
        for worker in 1..=bot.max_workers {
            #[expect(
                clippy::disallowed_methods,
                reason = "the test runs itself as the worker processes"
            )]
            let child = Command::new(&exe)
                .args(["--exact", TEST, "--nocapture", "--test-threads=1"])
                .env(CHILD_URL, &bot_url)
                .env(CHILD_POOL, bot.pool_size.to_string())
                .env(CHILD_NAME, format!("botfleet/{}/{worker}", bot.name))
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            children.push(child);
        }
    }
    assert_eq!(children.len(), 6);

    // Sample pg_stat_activity as the superuser until the workers are done.
    let until = Instant::now() + LOAD + Duration::from_secs(10);
    let (peak, samples) = rt
        .block_on(check::watch_connections(
            &server.url("postgres"),
            Duration::from_millis(5),
            until,
            20,
        ))
        .unwrap();
    let mut queries = 0u64;
    for child in children {
        let out = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "a worker failed:\n{stdout}\n{stderr}");
        assert!(!stderr.contains("too many clients"), "{stderr}");
        queries += stdout
            .split_whitespace()
            .find_map(|w| w.strip_prefix("worker-queries="))
            .and_then(|n| n.parse::<u64>().ok())
            .expect("the worker reports its query count");
    }
    #[expect(clippy::print_stdout, reason = "the figures, with --nocapture")]
    {
        println!(
            "budget: peak {peak} of {} planned, {samples} samples, {queries} queries",
            plan.total()
        );
    }
    assert!(samples >= 100, "only {samples} samples");
    assert!(
        peak <= i64::from(plan.total()),
        "peak {peak} over the plan of {}",
        plan.total()
    );
    // Under load the pools fill: the check above is not vacuous.
    assert!(
        peak >= i64::from(plan.total()) - 3,
        "peak {peak}: the workers were not loaded"
    );
    assert!(queries > 1_000, "{queries} queries");
}

/// One worker process: 30 tasks keep its pool busy for `LOAD`.
fn worker(url: &str) {
    let pool: u32 = std::env::var(CHILD_POOL).unwrap().parse().unwrap();
    let name = std::env::var(CHILD_NAME).unwrap();
    let count = runtime().block_on(async {
        let mut s = settings();
        s.pool.acquire_timeout = Duration::from_secs(10);
        s.pool.min_connections = 0;
        let db = Database::builder(url)
            .settings(s)
            .pool_size(pool)
            .application_name(name)
            .connect()
            .await
            .unwrap();
        let total = check::keep_busy(&db, 30, LOAD).await.unwrap();
        db.close().await;
        total
    });
    #[expect(clippy::print_stdout, reason = "the worker reports to the test")]
    {
        println!("\nworker-queries={count}");
    }
}
