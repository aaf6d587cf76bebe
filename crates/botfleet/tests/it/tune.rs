//! `botfleet tune` against a real PostgreSQL with `max_connections = 20`.

use botfleet_config::{BotFile, FleetFile};

use crate::{TOKEN, botfleet, scratch, stderr, stdout};

fn fleet(dating_workers: u32) -> String {
    // `${DATABASE_URL}` is resolved by botfleet from the environment.
    FleetFile::new()
        .set("environment", "prod")
        .database("${DATABASE_URL}")
        .set("database.reserve", 2)
        .bot(
            BotFile::new("dating", TOKEN)
                .set("max_workers", i64::from(dating_workers))
                .set("db_weight", 2)
                .command("dating-bot", Vec::<String>::new()),
        )
        .bot(
            BotFile::new("stats", &TOKEN.replace("110201543", "110201544"))
                .set("max_workers", 3)
                .command("stats-bot", Vec::<String>::new()),
        )
        .to_toml()
}

#[test]
fn tune_plans_each_bot_within_the_budget() {
    let server = botfleet_testkit::PostgresServer::builder()
        .max_connections(20)
        .start()
        .unwrap();
    let dir = scratch("tune");
    std::fs::write(dir.join("fleet.toml"), fleet(3)).unwrap();
    let url = server.url("postgres");
    let vars = [("DATABASE_URL", url.as_str())];
    let output = botfleet(&dir, &["tune", "--config", "fleet.toml"], &vars);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let text = stdout(&output);
    assert!(
        text.contains("usable connections: 15 = max_connections 20 - superuser_reserved_connections 3 - reserved_connections 0 - database.reserve 2"),
        "{text}"
    );
    let line = |bot: &str| {
        text.lines()
            .find(|l| l.starts_with(bot))
            .unwrap()
            .split_whitespace()
            .collect::<Vec<_>>()
    };
    assert_eq!(line("dating"), ["dating", "3", "3", "9"], "{text}");
    assert_eq!(line("stats"), ["stats", "3", "2", "6"], "{text}");
    assert!(
        text.contains("ping_idle_after"),
        "the preset is shown: {text}"
    );

    let output = botfleet(&dir, &["tune", "--config", "fleet.toml", "--json"], &vars);
    let json: serde_json::Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert_eq!(json["plan"]["bots"][0]["pool_size"], 3);
    assert_eq!(json["limits"]["max_connections"], 20);

    // Too many workers: an error that says what to change.
    std::fs::write(dir.join("fleet.toml"), fleet(14)).unwrap();
    let output = botfleet(&dir, &["tune", "--config", "fleet.toml"], &vars);
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        stderr(&output).trim(),
        "error: the fleet needs at least 17 database connections (one per worker at max_workers: dating 14 + stats 3) but the server leaves 15 usable (max_connections 20 - superuser_reserved_connections 3 - reserved_connections 0 - database.reserve 2); raise max_connections on the server, lower max_workers, or lower database.reserve"
    );
}

#[test]
fn tune_without_a_fleet_shows_the_limits_and_a_bad_url_hides_its_password() {
    let server = botfleet_testkit::PostgresServer::builder()
        .max_connections(20)
        .start()
        .unwrap();
    let dir = scratch("tune-url");
    let url = server.url("postgres");
    let output = botfleet(&dir, &["tune", "--database-url", &url], &[]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let text = stdout(&output);
    assert!(
        text.contains("usable connections: 12 = max_connections 20"),
        "{text}"
    );
    assert!(text.contains("pools of  2: 6 processes"), "{text}");

    let output = botfleet(
        &dir,
        &[
            "tune",
            "--database-url",
            "postgres://bot:hunter2secret@127.0.0.1:1/fleet",
        ],
        &[],
    );
    assert_eq!(output.status.code(), Some(1));
    let err = stderr(&output);
    assert!(
        err.starts_with("error: cannot connect to the database 127.0.0.1:1/fleet: "),
        "{err}"
    );
    assert!(!err.contains("hunter2secret"), "{err}");
    let output = botfleet(&dir, &["tune"], &[]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("give --database-url URL"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn db_advise_proposes_and_applies_a_missing_index() {
    let server = botfleet_testkit::PostgresServer::start().unwrap();
    server
        .psql(
            "postgres",
            "CREATE TABLE events (id BIGSERIAL PRIMARY KEY, chat_id BIGINT NOT NULL, at BIGINT NOT NULL); \
             INSERT INTO events (chat_id, at) SELECT i % 3000, i FROM generate_series(1, 100000) i; ANALYZE",
        )
        .unwrap();
    let dir = scratch("advise");
    std::fs::write(dir.join("queries.sql"), "SELECT * FROM events WHERE chat_id = 17;\nSELECT count(*) FROM events WHERE chat_id = $1 AND at > $2;\n").unwrap();
    let url = server.url("postgres");
    let output = botfleet(
        &dir,
        &[
            "db",
            "advise",
            "--database-url",
            &url,
            "--sql",
            "queries.sql",
        ],
        &[],
    );
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let text = stdout(&output);
    // One index serves both queries: (chat_id) alone is not proposed too.
    assert!(
        text.contains("CREATE INDEX CONCURRENTLY ON events (chat_id, at);"),
        "{text}"
    );
    assert_eq!(text.matches("CREATE INDEX").count(), 1, "{text}");
    assert!(
        text.contains("note: pg_stat_statements is not installed"),
        "{text}"
    );

    let output = botfleet(
        &dir,
        &[
            "db",
            "advise",
            "--database-url",
            &url,
            "--sql",
            "queries.sql",
            "--apply",
        ],
        &[],
    );
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(stderr(&output).contains("applied: CREATE INDEX CONCURRENTLY ON events (chat_id, at)"));
    let indexes = server
        .psql(
            "postgres",
            "SELECT count(*) FROM pg_indexes WHERE tablename = 'events'",
        )
        .unwrap();
    assert_eq!(indexes.trim(), "2");
    let output = botfleet(
        &dir,
        &[
            "db",
            "advise",
            "--database-url",
            &url,
            "--sql",
            "queries.sql",
            "--json",
        ],
        &[],
    );
    let json: serde_json::Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert_eq!(json["indexes"].as_array().map(Vec::len), Some(0), "{json}");
}
