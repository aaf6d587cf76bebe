//! Ephemeral Redis servers.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use crate::error::{Error, Result};
use crate::process::{ServerProcess, Watchdog, command};
use crate::tempdir::TempDir;
use crate::wait::poll;

const START_TIMEOUT: Duration = Duration::from_secs(20);
const STOP_TIMEOUT: Duration = Duration::from_secs(20);
/// Databases of an ephemeral server: one per test, up to this many.
const DATABASES: u32 = 1024;
/// The longest a fixture's connection or command may take.
const TIMEOUT: Duration = Duration::from_secs(10);

/// A blocking connection to `url` (`redis://[user:password@]host[:port][/db]`)
/// with the `redis` crate, which needs no async runtime; commands time out
/// after 10 s. Errors name the server with its password redacted.
pub(crate) fn connect(url: &str) -> Result<::redis::Connection> {
    let failed = |e: ::redis::RedisError| Error::Query {
        server: botfleet_config::redact_url(url),
        detail: e.to_string(),
    };
    let client = ::redis::Client::open(url).map_err(failed)?;
    let conn = client
        .get_connection_with_timeout(TIMEOUT)
        .map_err(failed)?;
    conn.set_read_timeout(Some(TIMEOUT)).map_err(failed)?;
    conn.set_write_timeout(Some(TIMEOUT)).map_err(failed)?;
    Ok(conn)
}

/// `PING` answered with `PONG`.
fn pong(conn: &mut ::redis::Connection) -> bool {
    ::redis::cmd("PING")
        .query::<String>(conn)
        .is_ok_and(|reply| reply == "PONG")
}

pub(crate) fn find_redis_server() -> Result<PathBuf> {
    let path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default();
    find_redis_server_in(
        path.into_iter()
            .chain([PathBuf::from("/usr/bin"), PathBuf::from("/usr/local/bin")]),
    )
}

fn find_redis_server_in(dirs: impl Iterator<Item = PathBuf>) -> Result<PathBuf> {
    dirs.map(|dir| dir.join("redis-server"))
        .find(|p| p.is_file())
        .ok_or_else(|| Error::MissingBinary {
            what: "redis-server".into(),
            searched: "on PATH, /usr/bin and /usr/local/bin".into(),
            install: "install it with `apt-get install redis-server` (Debian, Ubuntu), or set BOTFLEET_TEST_REDIS_URL to use a running server".into(),
        })
}

/// Options of a dedicated server.
#[derive(Clone, Debug, Default)]
#[must_use]
pub struct RedisBuilder {
    settings: Vec<(String, String)>,
}

impl RedisBuilder {
    /// A server setting, as in `redis.conf`, e.g. `.setting("maxmemory", "64mb")`.
    pub fn setting(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.settings.push((name.into(), value.into()));
        self
    }

    /// Starts the server on a free port.
    pub fn start(self) -> Result<RedisServer> {
        RedisServer::start_with(self)
    }
}

/// A Redis server of this test process: loopback only, no persistence,
/// 1024 databases. Shut down on drop, and by a watchdog if the process dies
/// first. [`kill`](Self::kill) and [`start_again`](Self::start_again) keep
/// the port (an outage, then recovery; the data is gone, as with a real
/// Redis without persistence).
#[derive(Debug)]
pub struct RedisServer {
    binary: PathBuf,
    process: ServerProcess,
    port: u16,
    settings: Vec<(String, String)>,
    next_database: AtomicU32,
    _watchdog: Watchdog,
    dir: TempDir,
}

impl RedisServer {
    /// A dedicated server with default settings.
    pub fn start() -> Result<RedisServer> {
        RedisBuilder::default().start()
    }

    /// A dedicated server with settings.
    pub fn builder() -> RedisBuilder {
        RedisBuilder::default()
    }

    fn start_with(builder: RedisBuilder) -> Result<RedisServer> {
        let binary = find_redis_server()?;
        let dir = TempDir::new("redis")?;
        let watchdog = Watchdog::arm(&dir.path().join("redis.pid"), "redis", "TERM", dir.path())?;
        let mut server = RedisServer {
            binary,
            process: ServerProcess::new("Redis", dir.path().join("redis.log")),
            port: 0,
            settings: builder.settings,
            next_database: AtomicU32::new(1),
            _watchdog: watchdog,
            dir,
        };
        let (port, ()) = server
            .process
            .start_on_free_port("Address already in use", |port| server.launch_on(port))?;
        server.port = port;
        Ok(server)
    }

    fn launch_on(&self, port: u16) -> Result<()> {
        let mut cmd = command(&self.binary);
        cmd.args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .args(["--databases", &DATABASES.to_string()])
            .arg("--dir")
            .arg(self.dir.path())
            .arg("--pidfile")
            .arg(self.dir.path().join("redis.pid"))
            .current_dir(self.dir.path());
        for (name, value) in &self.settings {
            cmd.arg(format!("--{name}")).arg(value);
        }
        self.process.spawn(cmd)?;
        let url = format!("redis://127.0.0.1:{port}");
        let outcome = poll(START_TIMEOUT, Duration::from_millis(10), || {
            if let Some(status) = self.process.exited() {
                return Some(Err(format!("redis-server exited ({status})")));
            }
            let answered = connect(&url).is_ok_and(|mut conn| pong(&mut conn));
            answered.then_some(Ok(()))
        });
        let detail = match outcome {
            Some(Ok(())) => return Ok(()),
            Some(Err(detail)) => detail,
            None => format!("no PONG after {START_TIMEOUT:?}"),
        };
        Err(Error::Start {
            server: format!("Redis on port {port}"),
            detail: format!("{detail}{}", self.process.log_tail()),
        })
    }

    /// The TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The server's own directory (pid file, log); deleted with it.
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// A blocking connection (database 0).
    pub fn connect(&self) -> Result<::redis::Connection> {
        connect(&self.url())
    }

    /// A database of its own (1 to 1023) and a key prefix for one test.
    pub fn isolated(&self) -> Result<TestRedis> {
        let n = self.next_database.fetch_add(1, Ordering::Relaxed);
        let db = 1 + (n - 1) % (DATABASES - 1);
        Ok(TestRedis {
            url: format!("{}/{db}", self.url()),
            prefix: format!("t{n}:"),
            clean_up: false,
        })
    }

    /// Whether the server process is running.
    pub fn is_running(&self) -> bool {
        self.process.is_running()
    }

    /// Shuts the server down cleanly (`SHUTDOWN NOSAVE`).
    pub fn stop(&self) -> Result<()> {
        self.process.stop_with(STOP_TIMEOUT, || {
            // The server closes the connection instead of answering.
            if let Ok(mut conn) = self.connect() {
                let _ = ::redis::cmd("SHUTDOWN")
                    .arg("NOSAVE")
                    .query::<::redis::Value>(&mut conn);
            }
            Ok(())
        })
    }

    /// Kills the server with SIGKILL: an outage without warning.
    pub fn kill(&self) -> Result<()> {
        self.process.kill()
    }

    /// Starts the server again on the same port after [`stop`](Self::stop)
    /// or [`kill`](Self::kill). It comes back empty.
    pub fn start_again(&self) -> Result<()> {
        self.process.start_again_with(|| self.launch_on(self.port))
    }

    /// [`stop`](Self::stop) then [`start_again`](Self::start_again).
    pub fn restart(&self) -> Result<()> {
        self.stop()?;
        self.start_again()
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        self.process.log()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.process.kill();
    }
}

/// An isolated place in Redis for one test: its own database on a server of
/// this process, or a key prefix on a server given by URL.
#[derive(Debug)]
pub struct TestRedis {
    url: String,
    prefix: String,
    clean_up: bool,
}

impl TestRedis {
    /// A key prefix of its own on any Redis, given its URL (this is what
    /// `BOTFLEET_TEST_REDIS_URL` uses). The keys with that prefix are deleted
    /// when the value is dropped.
    pub fn on(url: &str) -> Result<TestRedis> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        // Check now that the server answers, so the test fails with a clear
        // error rather than in its first command.
        let mut conn = connect(url)?;
        ::redis::cmd("PING")
            .query::<String>(&mut conn)
            .map_err(|e| Error::Query {
                server: botfleet_config::redact_url(url),
                detail: e.to_string(),
            })?;
        Ok(TestRedis {
            url: url.to_owned(),
            prefix: format!("botfleet-test-{}-{n}:", std::process::id()),
            clean_up: true,
        })
    }

    /// The URL to connect to, with the test's database selected.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The prefix this test's keys must start with.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// `key` with the test's prefix.
    pub fn key(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    /// A blocking connection with the test's database selected.
    pub fn connect(&self) -> Result<::redis::Connection> {
        connect(&self.url)
    }
}

impl Drop for TestRedis {
    fn drop(&mut self) {
        if !self.clean_up {
            return;
        }
        // On a shared server, remove what this test wrote.
        let Ok(mut conn) = self.connect() else {
            return;
        };
        let pattern = format!("{}*", self.prefix);
        let mut cursor = 0u64;
        loop {
            let Ok((next, keys)) = ::redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(1000)
                .query::<(u64, Vec<String>)>(&mut conn)
            else {
                return;
            };
            if !keys.is_empty() {
                let _ = ::redis::cmd("DEL")
                    .arg(&keys)
                    .query::<::redis::Value>(&mut conn);
            }
            if next == 0 {
                return;
            }
            cursor = next;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_server_says_what_to_install() {
        let empty = TempDir::new("empty").unwrap();
        let error = find_redis_server_in([empty.path().to_owned()].into_iter()).unwrap_err();
        let message = error.to_string();
        assert!(
            message.contains("apt-get install redis-server"),
            "{message}"
        );
        assert!(message.contains("BOTFLEET_TEST_REDIS_URL"), "{message}");
    }
}
