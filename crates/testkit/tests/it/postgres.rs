//! PostgreSQL: shared and dedicated servers, faults.

use botfleet_testkit::PostgresServer;

#[test]
fn each_test_database_is_fresh_and_separate() {
    let a = botfleet_testkit::database().unwrap();
    let b = botfleet_testkit::database().unwrap();
    assert_ne!(a.name(), b.name());
    assert_eq!(a.psql("SELECT 40 + 2").unwrap(), "42");
    a.psql("CREATE TABLE only_in_a (id int)").unwrap();
    let tables = "SELECT count(*) FROM pg_tables WHERE tablename = 'only_in_a'";
    assert_eq!(a.psql(tables).unwrap(), "1");
    assert_eq!(b.psql(tables).unwrap(), "0");
    assert!(a.url().ends_with(a.name()));
}

#[test]
fn errors_carry_the_server_message() {
    let db = botfleet_testkit::database().unwrap();
    let error = db
        .psql("SELECT * FROM no_such_table")
        .unwrap_err()
        .to_string();
    assert!(error.contains("no_such_table"), "{error}");
}

#[test]
fn dedicated_servers_take_settings() {
    let server = PostgresServer::builder()
        .max_connections(7)
        .setting("shared_preload_libraries", "pg_stat_statements")
        .start()
        .unwrap();
    assert_eq!(
        server.psql("postgres", "SHOW max_connections").unwrap(),
        "7"
    );
    assert_eq!(
        server
            .psql("postgres", "SHOW shared_preload_libraries")
            .unwrap(),
        "pg_stat_statements"
    );
    let db = server.create_database().unwrap();
    db.psql("CREATE EXTENSION pg_stat_statements").unwrap();
    assert_eq!(
        db.psql("SELECT count(*) >= 0 FROM pg_stat_statements")
            .unwrap(),
        "t"
    );
}

#[test]
fn data_survives_kill_and_restart_on_the_same_port() {
    let server = PostgresServer::start().unwrap();
    let db = server.create_database().unwrap();
    db.psql("CREATE TABLE profiles (id int primary key, name text)")
        .unwrap();
    db.psql("INSERT INTO profiles VALUES (1, 'ann'), (2, 'bob')")
        .unwrap();
    let port = server.port();

    server.kill().unwrap();
    assert!(!server.is_running());
    assert!(
        db.psql("SELECT 1").is_err(),
        "a killed server must not answer"
    );

    server.start_again().unwrap();
    assert!(server.is_running());
    assert_eq!(server.port(), port);
    assert_eq!(
        db.psql("SELECT string_agg(name, ',' ORDER BY id) FROM profiles")
            .unwrap(),
        "ann,bob"
    );
    assert!(
        server.log().contains("database system was interrupted"),
        "crash recovery expected"
    );

    server.stop().unwrap();
    assert!(db.psql("SELECT 1").is_err());
    server.start_again().unwrap();
    db.psql("INSERT INTO profiles VALUES (3, 'cy')").unwrap();
    server.restart().unwrap();
    assert_eq!(db.psql("SELECT count(*) FROM profiles").unwrap(), "3");
}

#[test]
fn dropping_a_server_removes_it() {
    let server = PostgresServer::start().unwrap();
    let dir = server.dir().to_owned();
    let port = server.port();
    assert!(dir.join("data").is_dir());
    drop(server);
    assert!(!dir.exists(), "{} left behind", dir.display());
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
}

#[test]
fn databases_on_a_server_given_by_url_are_dropped_afterwards() {
    // What BOTFLEET_TEST_DATABASE_URL does, against a server of our own.
    let server = PostgresServer::start().unwrap();
    let admin = server.url("postgres");
    let db = botfleet_testkit::TestDatabase::create_on(&admin).unwrap();
    let name = db.name().to_owned();
    assert!(name.starts_with("botfleet_test_"));
    db.psql("CREATE TABLE t (id int)").unwrap();
    // An open connection must not keep the database alive (WITH (FORCE)).
    let exists = format!("SELECT count(*) FROM pg_database WHERE datname = '{name}'");
    assert_eq!(server.psql("postgres", &exists).unwrap(), "1");
    drop(db);
    assert_eq!(server.psql("postgres", &exists).unwrap(), "0");
}
