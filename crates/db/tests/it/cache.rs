//! Query results through the tiered cache, invalidated by writes.

use std::time::Duration;

use botfleet_cache::{Redis, TieredCache};
use botfleet_db::{AnyRow, Database, QueryCache, Row, Value};

use crate::support::{runtime, sqlite};

type Names = Vec<String>;

const ADULTS: &str = "SELECT name FROM profiles WHERE age >= $1 ORDER BY name";

fn names(rows: Vec<AnyRow>) -> botfleet_db::Result<Names> {
    Ok(rows.iter().map(|r| r.try_get("name").unwrap()).collect())
}

async fn setup(db: &Database) {
    db.query("CREATE TABLE IF NOT EXISTS profiles (id BIGINT, name TEXT, age INTEGER)")
        .execute()
        .await
        .unwrap();
    db.query("CREATE TABLE IF NOT EXISTS likes (a BIGINT, b BIGINT)")
        .execute()
        .await
        .unwrap();
}

async fn insert(db: &Database, id: i64, name: &str) {
    db.query("INSERT INTO profiles (id, name, age) VALUES ($1, $2, 30)")
        .bind(id)
        .bind(name)
        .execute()
        .await
        .unwrap();
}

fn calls(db: &Database) -> u64 {
    let shape = botfleet_db::Fingerprint::of(ADULTS).text;
    db.query_stats()
        .iter()
        .find(|s| s.query == shape)
        .map_or(0, |s| s.calls)
}

async fn adults(cache: &QueryCache<Names>) -> Names {
    cache
        .fetch(ADULTS, vec![Value::from(18_i32)], &["profiles"], names)
        .await
        .unwrap()
}

#[test]
fn results_are_cached_until_their_table_is_written() {
    runtime().block_on(async {
        let (_dir, db) = sqlite().await;
        setup(&db).await;
        insert(&db, 1, "Ann").await;
        let cache = QueryCache::new(
            &db,
            TieredCache::builder("adults").ttl(Duration::from_secs(60)),
        );
        assert_eq!(adults(&cache).await, ["Ann"]);
        assert_eq!(adults(&cache).await, ["Ann"]);
        assert_eq!(calls(&db), 1, "the second read came from the cache");
        // Other parameters are another entry.
        let none = cache
            .fetch(ADULTS, vec![Value::from(99_i32)], &["profiles"], names)
            .await
            .unwrap();
        assert!(none.is_empty());
        assert_eq!(calls(&db), 2);

        // A write to another table leaves it; a write to its table drops it.
        db.query("INSERT INTO likes (a, b) VALUES (1, 2)")
            .execute()
            .await
            .unwrap();
        assert_eq!(adults(&cache).await, ["Ann"]);
        assert_eq!(calls(&db), 2);
        insert(&db, 2, "Bob").await;
        assert_eq!(adults(&cache).await, ["Ann", "Bob"]);
        assert_eq!(calls(&db), 3);

        // In a transaction, the cache is dropped at the commit: a read
        // between the write and the commit cannot cache the old result for
        // after it.
        let mut tx = db.begin().await.unwrap();
        tx.query("UPDATE profiles SET name = $1 WHERE id = $2")
            .bind("Anna")
            .bind(1_i64)
            .execute()
            .await
            .unwrap();
        tx.commit().await.unwrap();
        assert_eq!(adults(&cache).await, ["Anna", "Bob"]);

        // A failing query is an error, and nothing is cached.
        let err = cache
            .fetch("SELECT nope FROM profiles", vec![], &["profiles"], names)
            .await
            .unwrap_err();
        assert!(matches!(err, botfleet_db::Error::Query { .. }), "{err}");
    });
}

#[test]
fn a_write_drops_the_result_in_other_processes_too() {
    runtime().block_on(async {
        let redis = tokio::task::spawn_blocking(|| botfleet_testkit::redis().unwrap())
            .await
            .unwrap();
        let (_dir, db) = sqlite().await;
        setup(&db).await;
        insert(&db, 1, "Ann").await;
        // Two processes' caches over one Redis (one database file here).
        let make = |db: &Database| {
            QueryCache::new(
                db,
                TieredCache::builder("adults")
                    .bot(redis.prefix())
                    .redis(Redis::new(redis.url()).unwrap())
                    .ttl(Duration::from_secs(60)),
            )
        };
        let other_db = Database::builder(format!(
            "sqlite://{}",
            _dir.path().join("fleet.db").display()
        ))
        .connect()
        .await
        .unwrap();
        let a = make(&db);
        let b = make(&other_db);
        assert_eq!(adults(&a).await, ["Ann"]);
        assert_eq!(adults(&b).await, ["Ann"], "from Redis");
        assert_eq!(calls(&other_db), 0);
        for c in [a.cache(), b.cache()] {
            let r = c.redis().unwrap();
            assert!(r.wait_subscribed(Duration::from_secs(5)).await);
        }
        insert(&db, 2, "Bob").await;
        // B's L1 is dropped by the invalidation message, its Redis copy by A.
        let mut seen = adults(&b).await;
        for _ in 0..100 {
            if seen.len() == 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
            seen = adults(&b).await;
        }
        assert_eq!(seen, ["Ann", "Bob"]);
    });
}
