//! Ephemeral PostgreSQL servers.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use crate::error::{Error, Result};
use crate::process::{RunAs, ServerProcess, Watchdog, command, output};
use crate::tempdir::TempDir;
use crate::wait::{poll, sleep};

const INSTALL: &str = "install them with `apt-get install postgresql` (Debian, Ubuntu), or set BOTFLEET_TEST_DATABASE_URL to use a running server";
const START_TIMEOUT: Duration = Duration::from_secs(30);
const STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// The superuser of ephemeral servers (trust authentication on loopback).
pub const SUPERUSER: &str = "postgres";

/// The PostgreSQL programs, all from one installation.
#[derive(Clone, Debug)]
pub(crate) struct PgBins {
    dir: PathBuf,
}

impl PgBins {
    /// Finds a directory with `initdb` and `postgres`: on `PATH` first (links
    /// are followed, so `initdb` and `postgres` come from one version), then
    /// the newest `/usr/lib/postgresql/<version>/bin`.
    pub(crate) fn find() -> Result<PgBins> {
        let path: Vec<PathBuf> = std::env::var_os("PATH")
            .map(|path| std::env::split_paths(&path).collect())
            .unwrap_or_default();
        Self::find_in(path, Path::new("/usr/lib/postgresql"))
    }

    fn find_in(mut candidates: Vec<PathBuf>, versions_dir: &Path) -> Result<PgBins> {
        let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir(versions_dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|entry| {
                let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
                Some((version, entry.path().join("bin")))
            })
            .collect();
        versions.sort_by_key(|(version, _)| std::cmp::Reverse(*version));
        candidates.extend(versions.into_iter().map(|(_, dir)| dir));
        for dir in candidates {
            let Ok(initdb) = std::fs::canonicalize(dir.join("initdb")) else {
                continue;
            };
            let Some(real_dir) = initdb.parent() else {
                continue;
            };
            if real_dir.join("postgres").is_file() {
                return Ok(PgBins {
                    dir: real_dir.to_owned(),
                });
            }
        }
        Err(Error::MissingBinary {
            what: "PostgreSQL server programs (initdb, postgres)".into(),
            searched: "on PATH and in /usr/lib/postgresql/*/bin".into(),
            install: INSTALL.into(),
        })
    }

    pub(crate) fn get(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// `psql` from this installation, or from `PATH` (the client package can
    /// be installed without the server).
    pub(crate) fn psql(bins: Option<&PgBins>) -> Result<PathBuf> {
        if let Some(psql) = bins.map(|b| b.get("psql")).filter(|p| p.is_file()) {
            return Ok(psql);
        }
        std::env::var_os("PATH")
            .into_iter()
            .flat_map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
            .map(|dir| dir.join("psql"))
            .find(|p| p.is_file())
            .ok_or_else(|| Error::MissingBinary {
                what: "psql".into(),
                searched: "next to the server programs and on PATH".into(),
                install: "install it with `apt-get install postgresql-client`".into(),
            })
    }
}

/// Runs `sql` with `psql` against `url`; returns the rows, one per line,
/// columns separated by `|`.
pub(crate) fn psql(psql: &Path, url: &str, sql: &str) -> Result<String> {
    let mut cmd = command(psql);
    cmd.args([
        "-X",
        "-q",
        "-A",
        "-t",
        "-v",
        "ON_ERROR_STOP=1",
        "-d",
        url,
        "-c",
        sql,
    ])
    .env("PGCONNECT_TIMEOUT", "10");
    output(cmd, "psql")
        .map_err(|error| Error::Query {
            server: botfleet_config::redact_url(url),
            detail: error.to_string(),
        })
        .map(|out| out.trim_end().to_owned())
}

/// Options of a dedicated server.
#[derive(Clone, Debug, Default)]
#[must_use]
pub struct PostgresBuilder {
    settings: Vec<(String, String)>,
}

impl PostgresBuilder {
    /// A server setting, as in `postgresql.conf`, e.g.
    /// `.setting("shared_preload_libraries", "pg_stat_statements")`.
    pub fn setting(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.settings.push((name.into(), value.into()));
        self
    }

    /// Sugar for `.setting("max_connections", n)`.
    pub fn max_connections(self, n: u32) -> Self {
        self.setting("max_connections", n.to_string())
    }

    /// Creates the cluster (`initdb`) and starts the server on a free port.
    pub fn start(self) -> Result<PostgresServer> {
        PostgresServer::start_with(self)
    }
}

/// A PostgreSQL server of this test process: its own data directory, port
/// and Unix socket directory, `fsync` off. It is shut down and deleted on
/// drop, and by a watchdog if the process dies first.
///
/// Fault helpers ([`stop`](Self::stop), [`kill`](Self::kill),
/// [`start_again`](Self::start_again)) keep the port and the data, so a
/// client can reconnect to the same URL.
#[derive(Debug)]
pub struct PostgresServer {
    bins: PgBins,
    run_as: Option<RunAs>,
    process: ServerProcess,
    port: u16,
    args: Vec<OsString>,
    next_database: AtomicU32,
    // Dropped last: the watchdog, then the directory.
    _watchdog: Watchdog,
    dir: TempDir,
}

impl PostgresServer {
    /// A dedicated server with default settings.
    pub fn start() -> Result<PostgresServer> {
        PostgresBuilder::default().start()
    }

    /// A dedicated server with settings.
    pub fn builder() -> PostgresBuilder {
        PostgresBuilder::default()
    }

    fn start_with(builder: PostgresBuilder) -> Result<PostgresServer> {
        let bins = PgBins::find()?;
        let run_as = RunAs::for_servers()?;
        let dir = TempDir::new("pg")?;
        let data = dir.path().join("data");
        let socket_dir = dir.path().join("sock");
        std::fs::create_dir(&socket_dir)
            .map_err(|e| Error::io(format!("mkdir {}", socket_dir.display()), &e))?;
        if let Some(user) = run_as {
            user.chown(dir.path())?;
            user.chown(&socket_dir)?;
        }

        let mut initdb = command(bins.get("initdb"));
        initdb
            .arg("-D")
            .arg(&data)
            .args([
                "-U",
                SUPERUSER,
                "--auth=trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ])
            .current_dir(dir.path());
        if let Some(user) = run_as {
            user.apply(&mut initdb);
        }
        output(initdb, "initdb").map_err(|e| Error::Start {
            server: "PostgreSQL".into(),
            detail: e.to_string(),
        })?;

        let watchdog = Watchdog::arm(&data.join("postmaster.pid"), "postgres", "QUIT", dir.path())?;
        let process = ServerProcess::new("PostgreSQL", dir.path().join("postgres.log"));
        let (port, args) = process.start_on_free_port("could not bind", |port| {
            let args = server_args(&data, &socket_dir, port, &builder.settings);
            launch(&bins, run_as, &process, &args, &data, port).map(|()| args)
        })?;
        Ok(PostgresServer {
            bins,
            run_as,
            process,
            port,
            args,
            next_database: AtomicU32::new(0),
            _watchdog: watchdog,
            dir,
        })
    }

    /// The TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The directory of the server's Unix socket (`host=` in libpq terms).
    pub fn socket_dir(&self) -> PathBuf {
        self.dir.path().join("sock")
    }

    /// The server's own directory (data, socket, log); deleted with it.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// `postgres://postgres@127.0.0.1:PORT/DATABASE` (trust authentication).
    pub fn url(&self, database: &str) -> String {
        format!("postgres://{SUPERUSER}@127.0.0.1:{}/{database}", self.port)
    }

    /// Creates a fresh, empty database for one test.
    pub fn create_database(&self) -> Result<TestDatabase> {
        let n = self.next_database.fetch_add(1, Ordering::Relaxed);
        let name = format!("test_{n}");
        self.psql("postgres", &format!("CREATE DATABASE {name}"))?;
        Ok(TestDatabase {
            url: self.url(&name),
            name,
            psql: PgBins::psql(Some(&self.bins))?,
            drop_from: None,
        })
    }

    /// Runs `sql` in `database` with `psql`; rows one per line, columns
    /// separated by `|`.
    pub fn psql(&self, database: &str, sql: &str) -> Result<String> {
        psql(&PgBins::psql(Some(&self.bins))?, &self.url(database), sql)
    }

    /// Whether the server process is running.
    pub fn is_running(&self) -> bool {
        self.process.is_running()
    }

    /// Shuts the server down cleanly (fast mode: clients are disconnected,
    /// data is kept).
    pub fn stop(&self) -> Result<()> {
        self.process
            .stop_with(STOP_TIMEOUT, || self.pg_ctl_stop("fast"))
    }

    /// Kills the server with SIGKILL, as a crash or the OOM killer would.
    /// The data survives; [`start_again`](Self::start_again) recovers it.
    pub fn kill(&self) -> Result<()> {
        self.process.kill()
    }

    /// Starts the server again on the same port and data after
    /// [`stop`](Self::stop) or [`kill`](Self::kill). After a kill, it waits
    /// for the old backends to exit and for crash recovery.
    pub fn start_again(&self) -> Result<()> {
        self.process.start_again_with(|| {
            launch(
                &self.bins,
                self.run_as,
                &self.process,
                &self.args,
                &self.data_dir(),
                self.port,
            )
        })
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

    fn pg_ctl_stop(&self, mode: &str) -> Result<()> {
        let mut cmd = command(self.bins.get("pg_ctl"));
        cmd.arg("stop")
            .arg("-D")
            .arg(self.data_dir())
            .args(["-m", mode, "--no-wait"])
            .current_dir(self.dir.path());
        if let Some(user) = self.run_as {
            user.apply(&mut cmd);
        }
        output(cmd, "pg_ctl stop").map(drop)
    }
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        // Immediate mode: the data is about to be deleted anyway, and it
        // releases shared memory, which a SIGKILL would leave behind.
        if self.process.is_running() && self.pg_ctl_stop("immediate").is_ok() {
            let _ = self.process.wait_exit(STOP_TIMEOUT);
        }
        let _ = self.process.kill();
    }
}

fn server_args(
    data: &Path,
    socket_dir: &Path,
    port: u16,
    settings: &[(String, String)],
) -> Vec<OsString> {
    let mut args: Vec<OsString> = vec!["-D".into(), data.as_os_str().to_owned()];
    args.extend(["-p".into(), port.to_string().into()]);
    args.extend(["-k".into(), socket_dir.as_os_str().to_owned()]);
    let defaults = [
        ("listen_addresses", "127.0.0.1"),
        // Speed without losing what a crash test needs: with fsync off a
        // committed write still reaches the OS, so it survives a SIGKILL of
        // the server (not a power cut). synchronous_commit stays on: off, a
        // SIGKILL loses the last commits still in WAL buffers.
        ("fsync", "off"),
        ("full_page_writes", "off"),
        ("logging_collector", "off"),
    ];
    let defaults = defaults
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()));
    // Later settings win, so the caller's override the defaults.
    for (name, value) in defaults.chain(settings.iter().cloned()) {
        args.push("-c".into());
        args.push(format!("{name}={value}").into());
    }
    args
}

/// Starts `postgres` and waits until it accepts connections. After a
/// SIGKILL, the old backends may still hold the data directory for a moment:
/// the start is retried until they are gone.
fn launch(
    bins: &PgBins,
    run_as: Option<RunAs>,
    process: &ServerProcess,
    args: &[OsString],
    data: &Path,
    port: u16,
) -> Result<()> {
    let failure = |detail: String| Error::Start {
        server: format!("PostgreSQL on port {port}"),
        detail: format!("{detail}{}", process.log_tail()),
    };
    let spawn = || {
        let mut cmd = command(bins.get("postgres"));
        cmd.args(args).current_dir(data);
        if let Some(user) = run_as {
            user.apply(&mut cmd);
        }
        process.spawn(cmd)
    };
    spawn()?;
    let mut log_start = 0;
    let outcome = poll(START_TIMEOUT, Duration::from_millis(20), || {
        if let Some(status) = process.exited() {
            let log = process.log();
            let new = log.get(log_start..).unwrap_or_default();
            let busy = new.contains("lock file \"postmaster.pid\" already exists")
                || new.contains("shared memory block is still in use");
            if busy {
                log_start = log.len();
                sleep(Duration::from_millis(100));
                return spawn().err().map(Err);
            }
            return Some(Err(failure(format!("postgres exited ({status})"))));
        }
        is_ready(data, port).then_some(Ok(()))
    });
    outcome.unwrap_or_else(|| Err(failure(format!("not ready after {START_TIMEOUT:?}"))))
}

/// Ready when the postmaster says so in its pid file and the port answers.
fn is_ready(data: &Path, port: u16) -> bool {
    let pid_file = std::fs::read_to_string(data.join("postmaster.pid")).unwrap_or_default();
    pid_file.lines().nth(7).map(str::trim) == Some("ready")
        && std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
}

/// A database of its own for one test.
///
/// On a server of this process it is simply left for the server's deletion;
/// on a server given by URL it is dropped when this value is.
#[derive(Debug)]
pub struct TestDatabase {
    name: String,
    url: String,
    psql: PathBuf,
    /// The admin URL to drop the database from, for external servers.
    drop_from: Option<String>,
}

impl TestDatabase {
    /// Creates a database on any server, given a URL whose user may create
    /// databases (this is what `BOTFLEET_TEST_DATABASE_URL` uses). The
    /// database is dropped when the value is.
    pub fn create_on(admin_url: &str) -> Result<TestDatabase> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let name = format!("botfleet_test_{}_{n}", std::process::id());
        let psql_path = PgBins::psql(PgBins::find().ok().as_ref())?;
        psql(&psql_path, admin_url, &format!("CREATE DATABASE {name}"))?;
        Ok(TestDatabase {
            url: with_database(admin_url, &name),
            name,
            psql: psql_path,
            drop_from: Some(admin_url.to_owned()),
        })
    }

    /// The database's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A URL to connect to it, for sqlx or any libpq client.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Runs `sql` with `psql`; rows one per line, columns separated by `|`.
    pub fn psql(&self, sql: &str) -> Result<String> {
        psql(&self.psql, &self.url, sql)
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if let Some(admin) = &self.drop_from {
            let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
            let _ = psql(&self.psql, admin, &sql);
        }
    }
}

/// `url` with its database (the path) replaced by `database`; the query
/// string is kept.
pub(crate) fn with_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let path_start = base[authority_start..]
        .find('/')
        .map_or(base.len(), |i| authority_start + i);
    let mut out = format!("{}/{database}", &base[..path_start]);
    if let Some(query) = query {
        out.push('?');
        out.push_str(query);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_binaries_say_what_to_install() {
        let empty = TempDir::new("empty").unwrap();
        let error = PgBins::find_in(vec![empty.path().to_owned()], empty.path()).unwrap_err();
        let message = error.to_string();
        assert!(matches!(error, Error::MissingBinary { .. }));
        assert!(message.contains("apt-get install postgresql"), "{message}");
        assert!(message.contains("BOTFLEET_TEST_DATABASE_URL"), "{message}");
    }

    #[test]
    fn database_is_replaced_in_urls() {
        assert_eq!(
            with_database("postgres://u:p@h:5432/db", "t1"),
            "postgres://u:p@h:5432/t1"
        );
        assert_eq!(with_database("postgres://h", "t1"), "postgres://h/t1");
        assert_eq!(
            with_database("postgresql://u@h/db?sslmode=disable", "t1"),
            "postgresql://u@h/t1?sslmode=disable"
        );
    }

    #[test]
    fn caller_settings_come_after_the_defaults() {
        let args = server_args(
            Path::new("/d"),
            Path::new("/s"),
            5,
            &[("fsync".into(), "on".into())],
        );
        let args: Vec<String> = args
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let fsync: Vec<usize> = args
            .iter()
            .enumerate()
            .filter(|(_, a)| a.starts_with("fsync="))
            .map(|(i, _)| i)
            .collect();
        assert_eq!(fsync.len(), 2);
        assert_eq!(args[fsync[1]], "fsync=on");
    }
}
