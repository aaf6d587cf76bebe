//! Redis: shared and dedicated servers, faults.

use botfleet_testkit::RedisServer;
use redis::{Value, cmd};

/// `args` as one command, its reply as `T`.
fn query<T: redis::FromRedisValue>(
    conn: &mut redis::Connection,
    args: &[&str],
) -> redis::RedisResult<T> {
    let mut c = cmd(args[0]);
    for a in &args[1..] {
        c.arg(*a);
    }
    c.query(conn)
}

#[test]
fn each_test_gets_its_own_keys() {
    let a = botfleet_testkit::redis().unwrap();
    let b = botfleet_testkit::redis().unwrap();
    assert_ne!(a.prefix(), b.prefix());
    let mut ca = a.connect().unwrap();
    let mut cb = b.connect().unwrap();
    assert_eq!(query::<String>(&mut ca, &["PING"]).unwrap(), "PONG");
    query::<Value>(&mut ca, &["SET", &a.key("user:1"), "ann"]).unwrap();
    assert_eq!(
        query::<Option<String>>(&mut ca, &["GET", &a.key("user:1")]).unwrap(),
        Some("ann".to_owned())
    );
    assert_eq!(
        query::<Option<String>>(&mut cb, &["GET", &b.key("user:1")]).unwrap(),
        None
    );
    if std::env::var_os(botfleet_testkit::BOTFLEET_TEST_REDIS_URL).is_none() {
        // On a local server each test also has a database of its own.
        assert_ne!(a.url(), b.url());
        assert_eq!(query::<i64>(&mut cb, &["DBSIZE"]).unwrap(), 0);
    }
}

#[test]
fn redis_errors_are_replies_or_errors() {
    let redis = botfleet_testkit::redis().unwrap();
    let mut conn = redis.connect().unwrap();
    let error = query::<Value>(&mut conn, &["NOSUCHCOMMAND"])
        .unwrap_err()
        .to_string();
    assert!(error.contains("unknown command"), "{error}");
    // The connection goes on after an error reply.
    assert_eq!(query::<String>(&mut conn, &["PING"]).unwrap(), "PONG");
}

#[test]
fn dedicated_servers_take_settings_and_survive_faults() {
    let server = RedisServer::builder()
        .setting("maxmemory", "16mb")
        .start()
        .unwrap();
    let port = server.port();
    let mut conn = server.connect().unwrap();
    let maxmemory: Vec<String> = query(&mut conn, &["CONFIG", "GET", "maxmemory"]).unwrap();
    assert_eq!(maxmemory, ["maxmemory", "16777216"]);
    query::<Value>(&mut conn, &["SET", "k", "v"]).unwrap();

    server.kill().unwrap();
    assert!(!server.is_running());
    assert!(
        query::<Value>(&mut conn, &["PING"]).is_err(),
        "a killed server must not answer"
    );
    assert!(server.connect().is_err());

    server.start_again().unwrap();
    assert_eq!(server.port(), port);
    let mut conn = server.connect().unwrap();
    assert_eq!(query::<String>(&mut conn, &["PING"]).unwrap(), "PONG");
    assert_eq!(
        query::<Option<String>>(&mut conn, &["GET", "k"]).unwrap(),
        None,
        "no persistence"
    );

    server.restart().unwrap();
    assert_eq!(
        query::<String>(&mut server.connect().unwrap(), &["PING"]).unwrap(),
        "PONG"
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
        query::<Value>(&mut conn, &["SET", &a.key(&i.to_string()), "x"]).unwrap();
    }
    query::<Value>(&mut conn, &["SET", &b.key("kept"), "y"]).unwrap();
    assert_eq!(query::<i64>(&mut conn, &["DBSIZE"]).unwrap(), 2501);
    drop(a);
    assert_eq!(query::<i64>(&mut conn, &["DBSIZE"]).unwrap(), 1);
    assert!(botfleet_testkit::TestRedis::on("redis://127.0.0.1:1").is_err());
}
