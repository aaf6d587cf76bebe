//! Opening the handle: the builder, the pool's options and hooks, the
//! first connection.

use super::*;

/// Builds a [`Database`].
#[must_use]
pub struct DatabaseBuilder {
    pub(super) url: String,
    pub(super) settings: DatabaseSettings,
    pub(super) pool_size: Option<u32>,
    pub(super) application_name: String,
    pub(super) bot: String,
}

impl std::fmt::Debug for DatabaseBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may carry a password.
        f.debug_struct("DatabaseBuilder")
            .field("url", &botfleet_config::redact_url(&self.url))
            .field("pool_size", &self.pool_size)
            .field("application_name", &self.application_name)
            .field("bot", &self.bot)
            .finish_non_exhaustive()
    }
}

impl DatabaseBuilder {
    /// Pool, timeout, slow-query and batcher settings (from
    /// `FleetConfig::database.settings`).
    pub fn settings(mut self, settings: DatabaseSettings) -> Self {
        self.settings = settings;
        self
    }

    /// This process's pool size, from the fleet budget plan
    /// ([`crate::budget::plan`]); capped by `pool.max_connections`. Without
    /// it the pool has `pool.max_connections`.
    pub fn pool_size(mut self, size: u32) -> Self {
        self.pool_size = Some(size);
        self
    }

    /// `application_name` on PostgreSQL, so `pg_stat_activity` shows who is
    /// who: `botfleet/<bot>/<worker>` by convention.
    pub fn application_name(mut self, name: impl Into<String>) -> Self {
        self.application_name = name.into();
        self
    }

    /// The `bot` label of this handle's metrics and logs.
    pub fn bot(mut self, bot: impl Into<String>) -> Self {
        self.bot = bot.into();
        self
    }

    /// Opens the pool (and one connection, within `pool.connect_timeout`, to
    /// fail early with a clear error).
    pub async fn connect(self) -> Result<Database> {
        static DRIVERS: Once = Once::new();
        DRIVERS.call_once(sqlx::any::install_default_drivers);
        m::describe();

        let backend = backend_of(&self.url)?;
        let password = botfleet_config::url_password(&self.url).map(str::to_owned);
        let target = target_of(&self.url);
        let s = &self.settings.pool;
        let memory = backend == Backend::Sqlite && self.url.contains(":memory:");
        // Each connection to `:memory:` is a database of its own.
        let size = if memory {
            1
        } else {
            self.pool_size
                .unwrap_or(s.max_connections)
                .min(s.max_connections)
                .max(1)
        };
        let url = match backend {
            Backend::Postgres => with_param(
                &self.url,
                "application_name",
                &sanitize(&self.application_name),
            ),
            _ => self.url.clone(),
        };
        let options = AnyConnectOptions::from_str(&url)
            .map_err(|e| Error::Config(scrub(e.to_string(), password.as_deref())))?
            .disable_statement_logging();
        let counters = Arc::new(PoolCounters::default());
        let connect = pool_options(s, size, memory, &counters).connect_with(options);
        let pool =
            match tokio::time::timeout(s.connect_timeout.max(Duration::from_millis(1)), connect)
                .await
            {
                Ok(Ok(pool)) => pool,
                Ok(Err(e)) => {
                    let said = scrub(e.to_string(), password.as_deref());
                    let cause = match backend {
                        Backend::Postgres => diagnose(&self.url).await.unwrap_or(said),
                        _ => said,
                    };
                    return Err(Error::Connect { target, cause });
                }
                Err(_) => {
                    let waited = format!(
                        "no connection within the connect timeout ({:?})",
                        s.connect_timeout
                    );
                    let cause = match backend {
                        Backend::Postgres => diagnose(&self.url).await.unwrap_or(waited),
                        _ => waited,
                    };
                    return Err(Error::Connect { target, cause });
                }
            };
        let bot = self.bot;
        Ok(Database {
            inner: Arc::new(Inner {
                pool,
                backend,
                target,
                password,
                acquire_wait: m::acquire_histogram(&bot),
                queries: RwLock::new(Queries::with_other(&bot)),
                bot,
                pool_size: size,
                settings: self.settings,
                counters,
                write_hooks: RwLock::new(Vec::new()),
                hot: Mutex::new(None),
                instrumented: std::sync::atomic::AtomicBool::new(true),
            }),
        })
    }
}

/// The backend a URL names, or a configuration error that names the URL
/// without its password.
fn backend_of(url: &str) -> Result<Backend> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Backend::Postgres)
    } else if url.starts_with("sqlite:") {
        Ok(Backend::Sqlite)
    } else {
        Err(Error::Config(format!(
            "unsupported database URL `{}`: expected postgres://, postgresql:// or sqlite:",
            botfleet_config::redact_url(url)
        )))
    }
}

/// The pool's options and its connection hooks: each connection's session
/// set up when opened (PostgreSQL's statement timeout; SQLite's pragmas),
/// pinged before use after `ping_idle_after` idle, retired at
/// `max_lifetime`; opens and closes counted by reason in `counters`.
fn pool_options(
    s: &botfleet_config::PoolSettings,
    size: u32,
    memory: bool,
    counters: &Arc<PoolCounters>,
) -> AnyPoolOptions {
    let lifetime = s.max_lifetime;
    let ping_after = s.ping_idle_after;
    let statement_timeout = s.statement_timeout;
    let (c, c2, c3) = (counters.clone(), counters.clone(), counters.clone());
    let pool = AnyPoolOptions::new()
        .max_connections(size)
        .min_connections(s.min_connections.min(size))
        .acquire_timeout(s.acquire_timeout)
        .idle_timeout((!memory).then_some(s.idle_timeout))
        .max_lifetime(None)
        .test_before_acquire(false)
        .after_connect(move |conn, _| {
            let c = c.clone();
            Box::pin(async move {
                c.opened.fetch_add(1, Ordering::Relaxed);
                match conn.backend_name() {
                    "PostgreSQL" if !statement_timeout.is_zero() => {
                        let sql =
                            format!("SET statement_timeout = {}", statement_timeout.as_millis());
                        conn.execute(sql.as_str()).await?;
                    }
                    "SQLite" => {
                        conn.execute("PRAGMA busy_timeout = 5000").await?;
                        conn.execute("PRAGMA foreign_keys = ON").await?;
                        if !memory {
                            conn.execute("PRAGMA journal_mode = WAL").await?;
                            // With WAL, a commit need not wait for the
                            // disk: the database survives a crashed
                            // process intact; a power cut may lose the
                            // last commits, never consistency.
                            conn.execute("PRAGMA synchronous = NORMAL").await?;
                        }
                    }
                    _ => {}
                }
                Ok(())
            })
        })
        .before_acquire(move |conn, meta| {
            let c = c2.clone();
            Box::pin(async move {
                if !memory && meta.age >= lifetime {
                    c.closed_lifetime.fetch_add(1, Ordering::Relaxed);
                    return Ok(false);
                }
                if meta.idle_for >= ping_after && conn.ping().await.is_err() {
                    c.closed_stale.fetch_add(1, Ordering::Relaxed);
                    return Ok(false);
                }
                Ok(true)
            })
        })
        .after_release(move |_, meta| {
            let c = c3.clone();
            Box::pin(async move {
                if !memory && meta.age >= lifetime {
                    c.closed_lifetime.fetch_add(1, Ordering::Relaxed);
                    return Ok(false);
                }
                Ok(true)
            })
        });
    if memory {
        pool.min_connections(1)
    } else {
        pool
    }
}

/// `host:port/database` of a PostgreSQL URL, or the file of a SQLite one;
/// never credentials.
pub(crate) fn target_of(url: &str) -> String {
    if let Some(rest) = url.strip_prefix("sqlite:") {
        let path = rest.trim_start_matches("//");
        return path.split('?').next().unwrap_or(path).to_owned();
    }
    // What the driver will use: `?host=` and `?port=` win over the
    // authority, and the defaults (PGHOST, PGPORT, 5432) fill the gaps.
    if let Ok(options) = sqlx::postgres::PgConnectOptions::from_str(url) {
        let database = options.get_database().unwrap_or_default();
        let host = options.get_host();
        let port = options.get_port();
        return if host.starts_with('/') {
            format!("the socket in {host} (port {port}) database {database}")
        } else if host.contains(':') {
            format!("[{host}]:{port}/{database}")
        } else {
            format!("{host}:{port}/{database}")
        };
    }
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let rest = rest.split('?').next().unwrap_or(rest);
    let rest = rest.rsplit_once('@').map_or(rest, |(_, r)| r);
    rest.to_owned()
}

/// Why a PostgreSQL server at `url` could not be reached, when a TCP
/// connection says more than the pool did ("pool timed out" hides a
/// refused connection): `None` when it connects, or for a Unix socket.
async fn diagnose(url: &str) -> Option<String> {
    let options = sqlx::postgres::PgConnectOptions::from_str(url).ok()?;
    let host = options.get_host().to_owned();
    let port = options.get_port();
    if host.starts_with('/') {
        return None;
    }
    let shown = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    let attempt = tokio::net::TcpStream::connect((host.as_str(), port));
    match tokio::time::timeout(Duration::from_secs(2), attempt).await {
        Ok(Ok(_)) => None,
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => Some(format!(
            "connection refused by {shown} (is PostgreSQL running and listening there?)"
        )),
        Ok(Err(e)) => Some(format!("cannot reach {shown}: {e}")),
        Err(_) => Some(format!("no answer from {shown} within 2s")),
    }
}

pub(super) fn with_param(url: &str, name: &str, value: &str) -> String {
    if url.contains(&format!("{name}=")) {
        return url.to_owned();
    }
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}{name}={value}")
}

pub(super) fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "/_-.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .take(63)
        .collect()
}
impl Database {
    pub(super) fn connect_error(&self, e: &sqlx::Error) -> Error {
        Error::Connect {
            target: self.inner.target.clone(),
            cause: scrub(e.to_string(), self.inner.password.as_deref()),
        }
    }
}
