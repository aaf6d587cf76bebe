//! The `Database` handle on both backends.

use std::time::Duration;

use tokio::time::Instant;

use botfleet_db::{Database, Error, Migration, Row, Value};

use crate::support::{Logs, postgres, runtime, settings, sqlite};

const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        description: "profiles",
        sql: "CREATE TABLE profiles (user_id BIGINT PRIMARY KEY, name TEXT NOT NULL, age INTEGER, bio TEXT)",
    },
    Migration {
        version: 2,
        description: "likes",
        sql: "CREATE TABLE likes (from_id BIGINT NOT NULL, to_id BIGINT NOT NULL); CREATE INDEX likes_to ON likes (to_id)",
    },
];

/// The same queries on either backend.
async fn round_trip(db: &Database) {
    assert_eq!(db.migrate(MIGRATIONS).await.unwrap(), 2);
    assert_eq!(db.migrate(MIGRATIONS).await.unwrap(), 0, "applied once");
    let n = db
        .query("INSERT INTO profiles (user_id, name, age, bio) VALUES ($1, $2, $3, $4)")
        .bind(42_i64)
        .bind("Ann")
        .bind(31_i32)
        .bind(None::<String>)
        .execute()
        .await
        .unwrap();
    assert_eq!(n, 1);
    let row = db
        .query("SELECT name, age, bio FROM profiles WHERE user_id = $1")
        .bind(42_i64)
        .fetch_one()
        .await
        .unwrap();
    assert_eq!(row.try_get::<String, _>("name").unwrap(), "Ann");
    assert_eq!(row.try_get::<i64, _>("age").unwrap(), 31);
    assert_eq!(row.try_get::<Option<String>, _>("bio").unwrap(), None);
    let none = db
        .query("SELECT name FROM profiles WHERE user_id = $1")
        .bind(7_i64)
        .fetch_optional()
        .await
        .unwrap();
    assert!(none.is_none());

    // A transaction rolled back leaves nothing; one committed stays.
    let mut tx = db.begin().await.unwrap();
    tx.query("INSERT INTO likes (from_id, to_id) VALUES ($1, $2)")
        .bind(1_i64)
        .bind(2_i64)
        .execute()
        .await
        .unwrap();
    tx.rollback().await.unwrap();
    let mut tx = db.begin().await.unwrap();
    for to in [2_i64, 3] {
        tx.query("INSERT INTO likes (from_id, to_id) VALUES ($1, $2)")
            .bind(1_i64)
            .bind(to)
            .execute()
            .await
            .unwrap();
    }
    tx.commit().await.unwrap();
    // A transaction dropped without commit rolls back too.
    {
        let mut tx = db.begin().await.unwrap();
        tx.query("DELETE FROM likes").execute().await.unwrap();
    }
    let rows = db
        .query("SELECT to_id FROM likes WHERE from_id = $1 ORDER BY to_id")
        .bind_all([Value::from(1_i64)])
        .fetch_all()
        .await
        .unwrap();
    let to: Vec<i64> = rows.iter().map(|r| r.try_get(0).unwrap()).collect();
    assert_eq!(to, [2, 3]);

    // Statistics per query shape: literals do not make new shapes.
    for id in [5, 6, 7] {
        let sql = format!("SELECT count(*) FROM likes WHERE to_id = {id}");
        db.query(&sql).fetch_one().await.unwrap();
    }
    let stats = db.query_stats();
    let shape = stats
        .iter()
        .find(|s| s.query == "SELECT count(*) FROM likes WHERE to_id = ?")
        .expect("the shape is recorded");
    assert_eq!((shape.calls, shape.errors), (3, 0));
    let err = db
        .query("SELECT nope FROM likes")
        .execute()
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Query { .. }), "{err}");
    assert!(err.to_string().contains("SELECT nope FROM likes"), "{err}");
    assert!(!err.is_unavailable());
    assert!(db.health(Duration::from_secs(2)).await.is_ok());
}

#[test]
fn sqlite_round_trip() {
    runtime().block_on(async {
        let (_dir, db) = sqlite().await;
        round_trip(&db).await;
    });
}

#[test]
fn postgres_round_trip() {
    runtime().block_on(async {
        let (_test_db, db) = postgres().await;
        round_trip(&db).await;
        // The pool is named in pg_stat_activity.
        let row = db
            .query("SELECT count(*) FROM pg_stat_activity WHERE application_name = $1")
            .bind("botfleet/test/1")
            .fetch_one()
            .await
            .unwrap();
        assert!(row.try_get::<i64, _>(0).unwrap() >= 1);
    });
}

#[test]
fn a_changed_migration_is_an_error() {
    runtime().block_on(async {
        let (_dir, db) = sqlite().await;
        db.migrate(&MIGRATIONS[..1]).await.unwrap();
        let changed = [Migration {
            sql: "CREATE TABLE profiles (user_id BIGINT PRIMARY KEY)",
            ..MIGRATIONS[0]
        }];
        let err = db.migrate(&changed).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            "migrations failed: migration 1 (profiles) was changed after it was applied; add a new migration instead"
        );
        let broken = [MIGRATIONS[0], Migration { version: 3, description: "bad", sql: "CREATE TABLE" }];
        let err = db.migrate(&broken).await.unwrap_err();
        assert!(err.to_string().starts_with("migrations failed: migration 3 (bad):"), "{err}");
    });
}

#[test]
fn statement_timeout_is_enforced() {
    runtime().block_on(async {
        let test_db = botfleet_testkit::database().unwrap();
        let mut s = settings();
        s.pool.statement_timeout = Duration::from_millis(200);
        let db = Database::builder(test_db.url())
            .settings(s)
            .connect()
            .await
            .unwrap();
        let start = Instant::now();
        let err = db.query("SELECT pg_sleep(5)").execute().await.unwrap_err();
        assert!(start.elapsed() < Duration::from_secs(3));
        assert_eq!(
            err.to_string(),
            "statement cancelled after the statement timeout of 200ms: SELECT pg_sleep(?)"
        );
        // The connection is still good.
        db.query("SELECT 1").execute().await.unwrap();
    });
}

#[test]
fn a_bad_url_names_the_host_and_hides_the_password() {
    runtime().block_on(async {
        // Nothing listens on port 1.
        let err = Database::builder("postgres://bot:hunter2secret@127.0.0.1:1/fleet")
            .settings(settings())
            .connect()
            .await
            .unwrap_err();
        let text = err.to_string();
        assert_eq!(
            text,
            "cannot connect to the database 127.0.0.1:1/fleet: connection refused by 127.0.0.1:1 (is PostgreSQL running and listening there?)",
        );
        assert!(!text.contains("hunter2secret"), "{text}");
        // `?port=` wins over the URL's port, in what the error names too.
        let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = free.local_addr().unwrap().port();
        drop(free);
        let err = Database::builder(format!("postgres://bot:pw@127.0.0.1:5432/fleet?port={port}"))
            .settings(settings())
            .connect()
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("cannot connect to the database 127.0.0.1:{port}/fleet: connection refused by 127.0.0.1:{port} (is PostgreSQL running and listening there?)"),
        );
        assert!(!format!("{err:?}").contains("hunter2secret"), "{err:?}");
        assert!(err.is_unavailable());

        let builder = Database::builder("postgres://bot:hunter2secret@127.0.0.1:1/fleet");
        assert!(!format!("{builder:?}").contains("hunter2secret"), "{builder:?}");
        let err = Database::builder("mysql://root:hunter2secret@db/x").connect().await.unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid database configuration: unsupported database URL `mysql://root:***@db/x`: expected postgres://, postgresql:// or sqlite:"
        );
    });
}

#[test]
fn the_pool_recovers_when_postgres_restarts() {
    let server = botfleet_testkit::PostgresServer::start().unwrap();
    runtime().block_on(async {
        let mut s = settings();
        s.pool.acquire_timeout = Duration::from_secs(1);
        s.pool.min_connections = 2;
        let db = Database::builder(server.url("postgres"))
            .settings(s)
            .pool_size(3)
            .connect()
            .await
            .unwrap();
        db.query("SELECT 1").execute().await.unwrap();

        server.stop().unwrap();
        // During the outage: errors, fast, that say the database is away.
        for _ in 0..3 {
            let start = Instant::now();
            let err = db.query("SELECT 1").execute().await.unwrap_err();
            assert!(
                start.elapsed() < Duration::from_secs(3),
                "{:?}",
                start.elapsed()
            );
            assert!(err.is_unavailable(), "{err}");
        }
        assert!(db.health(Duration::from_millis(500)).await.is_err());

        server.start_again().unwrap();
        // The same handle works again without a restart of the worker; a
        // connection that died with the server may fail once.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match db.query("SELECT 1").execute().await {
                Ok(_) => break,
                Err(e) if Instant::now() < deadline => {
                    assert!(
                        e.is_unavailable() || matches!(e, Error::Query { .. }),
                        "{e}"
                    );
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("no recovery within 10 s: {e}"),
            }
        }
        for _ in 0..5 {
            db.query("SELECT 1").execute().await.unwrap();
        }
        assert!(db.health(Duration::from_secs(2)).await.is_ok());
    });
}

#[test]
fn slow_queries_are_logged_once_per_interval_with_their_plan() {
    let logs = Logs::default();
    let _guard = logs.capture();
    runtime().block_on(async {
        let test_db = botfleet_testkit::database().unwrap();
        let mut s = settings();
        s.slow_query = Duration::from_millis(50);
        let db = Database::builder(test_db.url())
            .settings(s)
            .bot("dating")
            .connect()
            .await
            .unwrap();
        for _ in 0..3 {
            db.query("SELECT pg_sleep(0.08) WHERE $1 > 0")
                .bind(1_i64)
                .execute()
                .await
                .unwrap();
        }
        db.query("SELECT 1").execute().await.unwrap();
        // The plan is fetched in the background.
        for _ in 0..50 {
            if logs.text().contains("plan=") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    let text = logs.text();
    let lines: Vec<&str> = text.lines().filter(|l| l.contains("slow query")).collect();
    assert_eq!(lines.len(), 1, "{text}");
    let line = lines[0];
    assert!(
        line.contains("query=SELECT pg_sleep(?) WHERE $1 > ?"),
        "{line}"
    );
    assert!(line.contains("bot=dating"), "{line}");
    assert!(line.contains("plan=Result"), "the EXPLAIN output: {line}");
}

#[test]
fn pool_health_and_query_timing_reach_the_metrics() {
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    metrics::with_local_recorder(&recorder, || {
        runtime().block_on(async {
            let (_test_db, db) = postgres().await;
            for _ in 0..5 {
                db.query("SELECT $1::bigint")
                    .bind(1_i64)
                    .fetch_one()
                    .await
                    .unwrap();
            }
            db.report_metrics();
        });
    });
    let snapshot = snapshotter.snapshot().into_vec();
    let find = |name: &str| {
        snapshot
            .iter()
            .filter(|(k, ..)| k.key().name() == name)
            .map(|(k, _, _, v)| (k.key().clone(), v))
            .collect::<Vec<_>>()
    };
    let acquire = find("botfleet_db_acquire_wait_seconds");
    assert!(
        matches!(&acquire[0].1, DebugValue::Histogram(v) if v.len() >= 5),
        "{acquire:?}"
    );
    let queries = find("botfleet_db_query_duration_seconds");
    let id = botfleet_db::Fingerprint::of("SELECT $1::bigint").id_hex();
    let (key, value) = queries
        .iter()
        .find(|(k, _)| k.labels().any(|l| l.key() == "query" && l.value() == id))
        .expect("a histogram for the query shape");
    assert!(
        key.labels()
            .any(|l| l.key() == "bot" && l.value() == "test")
    );
    assert!(
        matches!(value, DebugValue::Histogram(v) if v.len() == 5),
        "{value:?}"
    );
    let opened = find("botfleet_db_connections_opened_total");
    assert!(
        matches!(opened[0].1, DebugValue::Counter(n) if *n >= 1),
        "{opened:?}"
    );
    let max = find("botfleet_db_pool_connections_max");
    assert!(
        matches!(max[0].1, DebugValue::Gauge(v) if v.into_inner() == 4.0),
        "{max:?}"
    );
    assert_eq!(
        find("botfleet_db_connections_closed_total").len(),
        3,
        "one per reason"
    );
}

#[test]
fn the_preset_shapes_the_pool() {
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    metrics::with_local_recorder(&recorder, || {
        runtime().block_on(async {
            let test_db = botfleet_testkit::database().unwrap();
            let mut s = settings();
            s.pool.min_connections = 2;
            s.pool.max_lifetime = Duration::from_secs(1);
            let db = Database::builder(test_db.url())
                .settings(s)
                .pool_size(3)
                .connect()
                .await
                .unwrap();
            // min_connections are opened (in the background) at start.
            for _ in 0..100 {
                if db.status().open >= 2 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            assert!(db.status().open >= 2, "{:?}", db.status());
            assert_eq!(db.status().max, 3);
            // Past max_lifetime, connections are retired when next taken
            // or returned.
            db.query("SELECT 1").execute().await.unwrap();
            tokio::time::sleep(Duration::from_millis(1_300)).await;
            for _ in 0..3 {
                db.query("SELECT 1").execute().await.unwrap();
            }
            db.report_metrics();
        });
    });
    let retired = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .find(|(k, ..)| {
            k.key().name() == "botfleet_db_connections_closed_total"
                && k.key().labels().any(|l| l.value() == "lifetime")
        })
        .map(|(.., v)| v);
    assert!(
        matches!(retired, Some(DebugValue::Counter(n)) if n >= 1),
        "{retired:?}"
    );
}
