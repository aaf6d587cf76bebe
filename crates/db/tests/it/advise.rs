//! The index advisor on a planted missing index.

use botfleet_db::Database;
use botfleet_db::advise::{AdvisorOptions, QuerySample, advise, apply};

use crate::support::{runtime, settings};

#[test]
fn finds_a_missing_index_on_a_large_table_and_none_on_a_small_one() {
    let server = botfleet_testkit::PostgresServer::builder()
        .setting("shared_preload_libraries", "pg_stat_statements")
        .start()
        .unwrap();
    runtime().block_on(async {
        let mut s = settings();
        s.pool.statement_timeout = std::time::Duration::from_secs(60);
        let db = Database::builder(server.url("postgres")).settings(s).connect().await.unwrap();
        let pool = db.pool();
        for sql in [
            "CREATE EXTENSION pg_stat_statements",
            "CREATE TABLE events (id BIGSERIAL PRIMARY KEY, chat_id BIGINT NOT NULL, user_id BIGINT NOT NULL, kind TEXT NOT NULL, at BIGINT NOT NULL)",
            "INSERT INTO events (chat_id, user_id, kind, at) SELECT i % 5000, i % 20000, 'text', i FROM generate_series(1, 200000) i",
            "CREATE TABLE settings (id BIGSERIAL PRIMARY KEY, chat_id BIGINT NOT NULL, value TEXT)",
            "INSERT INTO settings (chat_id, value) SELECT i, 'x' FROM generate_series(1, 100) i",
            "CREATE INDEX settings_value ON settings (value)",
            "ANALYZE",
        ] {
            sqlx::Executor::execute(pool, sql).await.unwrap();
        }
        // The bot's queries, through the handle (and so into its stats and
        // into pg_stat_statements).
        for chat in [7_i64, 8, 9] {
            db.query("SELECT count(*) FROM events WHERE chat_id = $1").bind(chat).fetch_one().await.unwrap();
            db.query("SELECT value FROM settings WHERE chat_id = $1").bind(chat).fetch_optional().await.unwrap();
        }
        let samples = QuerySample::from_stats(&db.query_stats());
        assert_eq!(samples.len(), 2);
        let advice = advise(&db, &samples, &AdvisorOptions::default()).await.unwrap();
        assert_eq!(advice.method, "transaction");
        assert!(advice.examined.get("pg_stat_statements").copied().unwrap_or(0) >= 1, "{advice:?}");
        assert_eq!(advice.indexes.len(), 1, "{advice:#?}");
        let s = &advice.indexes[0];
        assert_eq!((s.table.as_str(), s.columns.as_slice()), ("events", ["chat_id".to_owned()].as_slice()));
        assert_eq!(s.create, "CREATE INDEX CONCURRENTLY ON events (chat_id)");
        assert!(s.cost_after <= s.cost_before / 2.0, "{s:?}");
        assert!(advice.unused_indexes.iter().any(|u| u.index == "settings_value"), "{advice:?}");
        assert!(advice.cache_hit_ratio.is_some());
        // The trial index was rolled back.
        let indexes: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_indexes WHERE tablename = 'events'")
            .fetch_one(pool)
            .await
            .unwrap();
        assert_eq!(indexes, 1, "only the primary key");

        // Applied, the index is used and no longer proposed.
        apply(&db, s).await.unwrap();
        let indexes: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_indexes WHERE tablename = 'events'")
            .fetch_one(pool)
            .await
            .unwrap();
        assert_eq!(indexes, 2);
        let again = advise(&db, &samples, &AdvisorOptions::default()).await.unwrap();
        assert!(again.indexes.is_empty(), "{:#?}", again.indexes);
        // The handle still works after the advisor's session changes.
        db.query("SELECT count(*) FROM events WHERE chat_id = $1").bind(1_i64).fetch_one().await.unwrap();
    });
}
