//! `botfleet-testkit`: real servers for tests.
//!
//! Every botfleet test that needs PostgreSQL or Redis gets a real one, never a
//! mock:
//!
//! - [`database()`] and [`redis()`] give a test its own database (or Redis
//!   database and key prefix) on a server shared by the test binary, started
//!   on first use and removed when the binary ends;
//! - [`PostgresServer`] and [`RedisServer`] are dedicated servers a test
//!   controls: settings such as `max_connections`, and faults (stop,
//!   `kill -9`, start again on the same port and data).
//!
//! Servers run from the system's binaries (`initdb`/`postgres`,
//! `redis-server`) on free loopback ports, in private temporary directories.
//! A watchdog process removes them even when the test binary is killed. When
//! the tests run as root, PostgreSQL runs as the `postgres` user.
//!
//! With `BOTFLEET_TEST_DATABASE_URL` / `BOTFLEET_TEST_REDIS_URL` set, the
//! shared servers are those instead (dedicated servers are still started
//! locally: faults need a process to kill). A missing binary is an error that
//! says what to install; nothing is skipped silently.
//!
//! The testkit is synchronous and has no async runtime, so tests of any kind
//! can use it. It must not depend on the runtime crates; it is a leaf used
//! only as a dev-dependency.
//!
//! ```no_run
//! let db = botfleet_testkit::database()?;
//! assert_eq!(db.psql("SELECT 1 + 1")?, "2");
//!
//! let server = botfleet_testkit::PostgresServer::builder().max_connections(20).start()?;
//! server.kill()?;
//! server.start_again()?;
//! # Ok::<(), botfleet_testkit::Error>(())
//! ```

mod browser;
mod error;
mod port;
mod postgres;
mod process;
mod prometheus;
mod redis;
mod tempdir;
mod wait;

use std::sync::OnceLock;

pub use browser::{ChromeDriver, chromium};
pub use error::{Error, Result};
pub use postgres::{PostgresBuilder, PostgresServer, SUPERUSER, TestDatabase};
pub use prometheus::{AlertmanagerServer, PrometheusServer, check_metrics, check_rules, promtool};
pub use redis::{RedisBuilder, RedisServer, TestRedis};
pub use tempdir::{BOTFLEET_TEST_TMPDIR, TempDir};

/// A PostgreSQL server to use instead of starting one, as a URL whose user
/// may create databases.
pub const BOTFLEET_TEST_DATABASE_URL: &str = "BOTFLEET_TEST_DATABASE_URL";
/// A Redis server to use instead of starting one.
pub const BOTFLEET_TEST_REDIS_URL: &str = "BOTFLEET_TEST_REDIS_URL";

enum SharedPostgres {
    Local(PostgresServer),
    External(String),
}

enum SharedRedis {
    Local(RedisServer),
    External(String),
}

/// The test binary's shared server: the one named by `var` if set, else one
/// started on first use. A failure to start is kept and given to every test.
fn shared<T>(
    cell: &'static OnceLock<Result<T>>,
    var: &str,
    external: fn(String) -> T,
    start: fn() -> Result<T>,
) -> Result<&'static T> {
    cell.get_or_init(|| match std::env::var(var) {
        Ok(url) if !url.is_empty() => Ok(external(url)),
        _ => start(),
    })
    .as_ref()
    .map_err(Clone::clone)
}

fn shared_postgres() -> Result<&'static SharedPostgres> {
    static SERVER: OnceLock<Result<SharedPostgres>> = OnceLock::new();
    shared(
        &SERVER,
        BOTFLEET_TEST_DATABASE_URL,
        SharedPostgres::External,
        || PostgresServer::start().map(SharedPostgres::Local),
    )
}

fn shared_redis() -> Result<&'static SharedRedis> {
    static SERVER: OnceLock<Result<SharedRedis>> = OnceLock::new();
    shared(
        &SERVER,
        BOTFLEET_TEST_REDIS_URL,
        SharedRedis::External,
        || RedisServer::start().map(SharedRedis::Local),
    )
}

/// Checks that the server programs the tests need are installed: the
/// PostgreSQL server programs, `psql`, `redis-server` and `promtool`. Every
/// missing one is listed with what to install.
pub fn preflight() -> std::result::Result<(), Vec<Error>> {
    let bins = postgres::PgBins::find();
    let psql = postgres::PgBins::psql(bins.as_ref().ok());
    let redis = redis::find_redis_server();
    let promtool = prometheus::promtool();
    let prometheus = prometheus::find_prometheus();
    let alertmanager = prometheus::find_alertmanager();
    let chromium = browser::chromium();
    let chromedriver = prometheus::find("chromedriver", "chromium-driver");
    let errors: Vec<Error> = [
        bins.err(),
        psql.err(),
        redis.err(),
        promtool.err(),
        prometheus.err(),
        alertmanager.err(),
        chromium.err(),
        chromedriver.err(),
    ]
    .into_iter()
    .flatten()
    .collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

/// A fresh, empty PostgreSQL database for one test, on the test binary's
/// shared server.
pub fn database() -> Result<TestDatabase> {
    match shared_postgres()? {
        SharedPostgres::Local(server) => server.create_database(),
        SharedPostgres::External(url) => TestDatabase::create_on(url),
    }
}

/// An isolated Redis for one test, on the test binary's shared server: a
/// database of its own on a local server, a key prefix on one given by URL.
/// Tests should put [`TestRedis::prefix`] in front of their keys either way.
pub fn redis() -> Result<TestRedis> {
    match shared_redis()? {
        SharedRedis::Local(server) => server.isolated(),
        SharedRedis::External(url) => TestRedis::on(url),
    }
}
