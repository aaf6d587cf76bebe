//! The write batcher on both backends: size and linger flushes, draining on
//! shutdown, a poisoned row isolated, backpressure, an outage ridden out.
//! Every test counts rows: nothing lost, nothing written twice.

use std::time::Duration;

use botfleet_config::{BatcherSettings, WhenFull};
use botfleet_db::batch::Batcher;
use botfleet_db::batch::Row;
use botfleet_db::{Database, Value};

use crate::support::{postgres, runtime, settings, sqlite};

const TABLE: &str = "CREATE TABLE events (id BIGINT NOT NULL, chat BIGINT NOT NULL, n INTEGER NOT NULL CHECK (n >= 0), kind TEXT)";

fn batcher_settings(max_rows: u32, linger_ms: u64) -> BatcherSettings {
    let mut s = settings().batcher;
    s.max_rows = max_rows;
    s.linger = Duration::from_millis(linger_ms);
    s
}

fn row(id: i64) -> Row {
    vec![
        Value::from(id),
        Value::from(id % 7),
        Value::from(1_i32),
        Value::from("text"),
    ]
}

async fn count(db: &Database) -> (i64, i64) {
    let r = db
        .query("SELECT count(*), count(DISTINCT id) FROM events")
        .fetch_one()
        .await
        .unwrap();
    use botfleet_db::Row as _;
    (r.try_get(0).unwrap(), r.try_get(1).unwrap())
}

async fn start(db: &Database, s: &BatcherSettings) -> Batcher {
    db.query(TABLE).execute().await.unwrap();
    Batcher::start(db, "events", &["id", "chat", "n", "kind"], s).unwrap()
}

async fn size_linger_drain_and_poison(db: &Database) {
    // Size: 250 rows with a long linger: two full batches are written at
    // once, the last 50 wait for the linger or the shutdown.
    let b = start(db, &batcher_settings(100, 60_000)).await;
    for id in 0..250 {
        b.push(row(id)).await.unwrap();
    }
    let mut seen = (0, 0);
    for _ in 0..100 {
        seen = count(db).await;
        // The batcher books a flush just after its rows are committed.
        if seen.0 >= 200 && b.pending() <= 50 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(seen, (200, 200), "two full batches");
    assert_eq!(b.pending(), 50);
    // Shutdown drains.
    let report = b.shutdown(Duration::from_secs(5)).await;
    assert_eq!(
        (report.written, report.flushes, report.refused),
        (250, 3, 0)
    );
    assert_eq!(count(db).await, (250, 250));

    // Linger: 10 rows are written within the linger, without a shutdown.
    db.query("DELETE FROM events").execute().await.unwrap();
    let b = Batcher::start(
        db,
        "events",
        &["id", "chat", "n", "kind"],
        &batcher_settings(100, 50),
    )
    .unwrap();
    for id in 0..10 {
        b.push(row(id)).await.unwrap();
    }
    assert_eq!(count(db).await.0, 0, "nothing before the linger");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(count(db).await, (10, 10), "written after the linger");

    // A poisoned row: 500 rows, one breaking the CHECK constraint. The
    // other 499 are written once each; the bad one is reported.
    for id in 10..510 {
        let mut r = row(id);
        if id == 321 {
            r[2] = Value::from(-1_i32);
        }
        b.push(r).await.unwrap();
    }
    // A row of the wrong width is refused at once.
    let err = b.push(vec![Value::from(1_i64)]).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "a row for `events` has 1 values; the batcher has 4 columns"
    );
    let report = b.shutdown(Duration::from_secs(5)).await;
    assert_eq!((report.written, report.refused), (509, 1), "{report:?}");
    assert_eq!(report.rejected[0].row[0], Value::from(321_i64));
    assert!(
        report.rejected[0].error.to_lowercase().contains("check"),
        "{}",
        report.rejected[0].error
    );
    assert_eq!(count(db).await, (509, 509));
}

#[test]
fn sqlite_batches() {
    runtime().block_on(async {
        let (_dir, db) = sqlite().await;
        size_linger_drain_and_poison(&db).await;
    });
}

#[test]
fn postgres_batches() {
    runtime().block_on(async {
        let (_test_db, db) = postgres().await;
        size_linger_drain_and_poison(&db).await;
    });
}

#[test]
fn a_full_queue_waits_or_refuses() {
    runtime().block_on(async {
        let (_test_db, db) = postgres().await;
        db.query(TABLE).execute().await.unwrap();
        // Another client holds the table: the batcher's first statement
        // blocks, and its queue of 20 fills.
        let mut tx = db.begin().await.unwrap();
        tx.query("LOCK TABLE events IN ACCESS EXCLUSIVE MODE")
            .execute()
            .await
            .unwrap();
        let mut s = batcher_settings(5, 0);
        s.queue = 20;
        s.when_full = WhenFull::Error;
        let b = Batcher::start(&db, "events", &["id", "chat", "n", "kind"], &s).unwrap();
        let mut accepted = 0;
        let mut refused = None;
        for id in 0..100 {
            match b.push(row(id)).await {
                Ok(()) => accepted += 1,
                Err(e) => {
                    refused = Some(e.to_string());
                    break;
                }
            }
            tokio::task::yield_now().await;
        }
        assert_eq!(
            refused.as_deref(),
            Some(
                "the batcher queue for `events` is full (20 rows): the database is not keeping up"
            )
        );
        assert!((20..=26).contains(&accepted), "{accepted}");

        // In wait mode the caller waits instead.
        let mut s = s.clone();
        s.when_full = WhenFull::Wait;
        let waiting = Batcher::start(&db, "events", &["id", "chat", "n", "kind"], &s).unwrap();
        let mut pushed = 0;
        let blocked = tokio::time::timeout(Duration::from_millis(500), async {
            for id in 1000..1100 {
                waiting.push(row(id)).await.unwrap();
                pushed += 1;
            }
        })
        .await;
        assert!(blocked.is_err(), "push waited for room");
        assert!(pushed < 100);

        tx.rollback().await.unwrap();
        let a = b.shutdown(Duration::from_secs(5)).await;
        let w = waiting.shutdown(Duration::from_secs(5)).await;
        assert_eq!(a.written + w.written, accepted + pushed);
        assert_eq!(count(&db).await.0 as u64, accepted + pushed);
    });
}

#[test]
fn an_outage_is_ridden_out() {
    let server = botfleet_testkit::PostgresServer::start().unwrap();
    runtime().block_on(async {
        let mut s = settings();
        s.pool.acquire_timeout = Duration::from_millis(300);
        let db = Database::builder(server.url("postgres"))
            .settings(s)
            .connect()
            .await
            .unwrap();
        let b = start(&db, &batcher_settings(50, 5)).await;
        for id in 0..100 {
            b.push(row(id)).await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        server.stop().unwrap();
        for id in 100..300 {
            b.push(row(id)).await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        server.start_again().unwrap();
        let report = b.shutdown(Duration::from_secs(20)).await;
        assert_eq!(
            (report.written, report.unwritten.len()),
            (300, 0),
            "{report:?}"
        );
        assert_eq!(count(&db).await, (300, 300));

        // Past the grace period the rows come back, not lost.
        let b = Batcher::start(
            &db,
            "events",
            &["id", "chat", "n", "kind"],
            &batcher_settings(50, 5),
        )
        .unwrap();
        server.stop().unwrap();
        for id in 300..320 {
            b.push(row(id)).await.unwrap();
        }
        let report = b.shutdown(Duration::from_millis(300)).await;
        assert_eq!(
            (report.written, report.unwritten.len()),
            (0, 20),
            "{report:?}"
        );
    });
}
