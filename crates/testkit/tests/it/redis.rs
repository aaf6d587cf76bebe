//! Redis: shared and dedicated servers, faults.

use botfleet_testkit::{RedisServer, Reply};

#[test]
fn each_test_gets_its_own_keys() {
    let a = botfleet_testkit::redis().unwrap();
    let b = botfleet_testkit::redis().unwrap();
    assert_ne!(a.prefix(), b.prefix());
    let mut ca = a.connect().unwrap();
    let mut cb = b.connect().unwrap();
    assert_eq!(ca.command(&["PING"]).unwrap(), Reply::Status("PONG".into()));
    ca.ok(&["SET", &a.key("user:1"), "ann"]).unwrap();
    assert_eq!(
        ca.ok(&["GET", &a.key("user:1")])
            .unwrap()
            .as_text()
            .as_deref(),
        Some("ann")
    );
    assert_eq!(
        cb.ok(&["GET", &b.key("user:1")]).unwrap(),
        Reply::Bulk(None)
    );
    if std::env::var_os(botfleet_testkit::BOTFLEET_TEST_REDIS_URL).is_none() {
        // On a local server each test also has a database of its own.
        assert_ne!(a.url(), b.url());
        assert_eq!(cb.ok(&["DBSIZE"]).unwrap(), Reply::Integer(0));
    }
}

#[test]
fn redis_errors_are_replies_or_errors() {
    let redis = botfleet_testkit::redis().unwrap();
    let mut conn = redis.connect().unwrap();
    assert!(matches!(
        conn.command(&["NOSUCHCOMMAND"]).unwrap(),
        Reply::Error(_)
    ));
    let error = conn.ok(&["NOSUCHCOMMAND"]).unwrap_err().to_string();
    assert!(error.contains("unknown command"), "{error}");
}

#[test]
fn dedicated_servers_take_settings_and_survive_faults() {
    let server = RedisServer::builder()
        .setting("maxmemory", "16mb")
        .start()
        .unwrap();
    let port = server.port();
    let mut conn = server.connect().unwrap();
    let maxmemory = conn.ok(&["CONFIG", "GET", "maxmemory"]).unwrap();
    assert_eq!(
        maxmemory,
        Reply::Array(Some(vec![
            Reply::Bulk(Some(b"maxmemory".to_vec())),
            Reply::Bulk(Some(b"16777216".to_vec()))
        ]))
    );
    conn.ok(&["SET", "k", "v"]).unwrap();

    server.kill().unwrap();
    assert!(!server.is_running());
    assert!(
        conn.command(&["PING"]).is_err(),
        "a killed server must not answer"
    );
    assert!(server.connect().is_err());

    server.start_again().unwrap();
    assert_eq!(server.port(), port);
    let mut conn = server.connect().unwrap();
    assert_eq!(
        conn.command(&["PING"]).unwrap(),
        Reply::Status("PONG".into())
    );
    assert_eq!(
        conn.ok(&["GET", "k"]).unwrap(),
        Reply::Bulk(None),
        "no persistence"
    );

    server.restart().unwrap();
    assert_eq!(
        server.connect().unwrap().command(&["PING"]).unwrap(),
        Reply::Status("PONG".into())
    );
    server.stop().unwrap();
    assert!(server.connect().is_err());
}

#[test]
fn dropping_a_server_removes_it() {
    let server = RedisServer::start().unwrap();
    let dir = server.dir().to_owned();
    let port = server.port();
    drop(server);
    assert!(!dir.exists(), "{} left behind", dir.display());
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
}

#[test]
fn keys_on_a_server_given_by_url_are_deleted_afterwards() {
    // What BOTFLEET_TEST_REDIS_URL does, against a server of our own.
    let server = RedisServer::start().unwrap();
    let a = botfleet_testkit::TestRedis::on(&format!("{}/3", server.url())).unwrap();
    let b = botfleet_testkit::TestRedis::on(&format!("{}/3", server.url())).unwrap();
    assert_ne!(a.prefix(), b.prefix());
    let mut conn = a.connect().unwrap();
    for i in 0..2500 {
        conn.ok(&["SET", &a.key(&i.to_string()), "x"]).unwrap();
    }
    conn.ok(&["SET", &b.key("kept"), "y"]).unwrap();
    assert_eq!(conn.ok(&["DBSIZE"]).unwrap(), Reply::Integer(2501));
    drop(a);
    assert_eq!(conn.ok(&["DBSIZE"]).unwrap(), Reply::Integer(1));
    assert!(botfleet_testkit::TestRedis::on("redis://127.0.0.1:1").is_err());
}
