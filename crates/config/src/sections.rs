//! The `[database]`, `[redis]` and `[monitor]` sections.

use std::net::SocketAddr;

use crate::database::DatabaseSettings;
use crate::reader::{Ctx, Spanned, Table, Text};
use crate::secret::{Secret, redact_url, url_password};

/// The address the monitor binds to when `monitor.bind` is not set.
pub const DEFAULT_MONITOR_BIND: &str = "127.0.0.1:8001";

/// `[database]`: where the fleet's data lives.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct DatabaseConfig {
    /// `database.url`; `None` means the embedded SQLite database (allowed in
    /// `dev` only).
    pub url: Option<DatabaseUrl>,
    /// Pool, reserve, slow-query and batcher settings, with the preset's
    /// defaults.
    pub settings: DatabaseSettings,
}

/// Which database a URL points to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Backend {
    /// `postgres://` or `postgresql://`.
    Postgres,
    /// `sqlite:`.
    Sqlite,
}

/// A database URL. It may hold a password, so it is a [`Secret`]; use
/// [`DatabaseUrl::redacted`] to print it.
#[derive(Clone, Debug, PartialEq)]
pub struct DatabaseUrl {
    url: Secret<String>,
    backend: Backend,
}

impl DatabaseUrl {
    /// The full URL, password included. Do not log it.
    pub fn expose(&self) -> &str {
        self.url.expose()
    }

    /// The URL with its password replaced by `***`.
    pub fn redacted(&self) -> String {
        redact_url(self.url.expose())
    }

    /// The database the URL points to.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub(crate) fn password(&self) -> Option<&str> {
        url_password(self.url.expose())
    }
}

/// Reads `[database]` over the preset's settings; the flag says whether
/// `url` was written at all.
pub(crate) fn database(
    cx: &mut Ctx<'_>,
    mut t: Table<'_>,
    preset: &DatabaseSettings,
) -> (DatabaseConfig, bool) {
    let url = t.string(cx, "url").and_then(|url| {
        let path = t.key_path("url");
        let text = &url.value.value;
        let backend = if text.starts_with("postgres://") || text.starts_with("postgresql://") {
            Backend::Postgres
        } else if text.starts_with("sqlite:") {
            Backend::Sqlite
        } else {
            cx.error(
                &url.span,
                &path,
                bad_scheme(text, "postgres://, postgresql:// or sqlite:"),
            );
            return None;
        };
        Some(DatabaseUrl {
            url: Secret::new(url.value.value),
            backend,
        })
    });
    let url_given = t.contains("url");
    let settings = crate::database::settings(cx, &mut t, preset);
    t.finish(cx);
    (DatabaseConfig { url, settings }, url_given)
}

/// `[redis]`: the shared L2 cache, invalidation bus and cross-pod limiter.
/// Without this section, each process uses its in-process fallback.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct RedisConfig {
    url: Secret<String>,
}

impl RedisConfig {
    /// The full URL, password included. Do not log it.
    pub fn expose_url(&self) -> &str {
        self.url.expose()
    }

    /// The URL with its password replaced by `***`.
    pub fn redacted_url(&self) -> String {
        redact_url(self.url.expose())
    }

    pub(crate) fn password(&self) -> Option<&str> {
        url_password(self.url.expose())
    }
}

pub(crate) fn redis(cx: &mut Ctx<'_>, mut t: Table<'_>) -> Option<RedisConfig> {
    let url = t.string(cx, "url");
    let config = match url {
        None => {
            let message = "missing `url` (for example \"redis://127.0.0.1:6379\"); remove the [redis] section to use the in-process cache";
            if !t.contains("url") {
                cx.error(&t.span, t.path(), message);
            }
            None
        }
        Some(url) => {
            let text = &url.value.value;
            let schemes = ["redis://", "rediss://", "redis+unix://", "unix://"];
            if schemes.iter().any(|s| text.starts_with(s)) {
                Some(RedisConfig {
                    url: Secret::new(url.value.value),
                })
            } else {
                let path = t.key_path("url");
                cx.error(
                    &url.span,
                    &path,
                    bad_scheme(text, "redis://, rediss://, redis+unix:// or unix://"),
                );
                None
            }
        }
    };
    t.finish(cx);
    config
}

/// `[monitor]`: the metrics API and dashboard.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct MonitorConfig {
    /// Where the HTTP API and dashboard listen.
    pub bind: SocketAddr,
    /// The bearer token required when `bind` is not a loopback address.
    pub token: Option<Secret<String>>,
    /// The most series the recorder holds (one more is dropped, counted).
    pub series_cap: usize,
    /// The most series the store keeps.
    pub store_series: usize,
    /// How long the store keeps each minute's aggregates (the last hour
    /// is kept by the second either way).
    pub retention: std::time::Duration,
    /// How often PostgreSQL and Redis are polled (zero: never).
    pub poll_interval: std::time::Duration,
}

impl Default for MonitorConfig {
    fn default() -> Self {
        MonitorConfig {
            bind: DEFAULT_MONITOR_BIND
                .parse()
                .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 8001))),
            token: None,
            series_cap: 10_000,
            store_series: 2_000,
            retention: std::time::Duration::from_secs(24 * 3600),
            poll_interval: std::time::Duration::from_secs(5),
        }
    }
}

/// The shortest monitor token accepted.
const MIN_MONITOR_TOKEN: usize = 16;

pub(crate) fn monitor(cx: &mut Ctx<'_>, t: Option<Table<'_>>) -> MonitorConfig {
    let base = MonitorConfig::default();
    let Some(mut t) = t else {
        return base;
    };
    const HOUR: std::time::Duration = std::time::Duration::from_secs(3600);
    let series_cap = t
        .integer(cx, "series_cap", 100..=1_000_000)
        .map_or(base.series_cap, |v| v.value as usize);
    let store_series = t
        .integer(cx, "store_series", 0..=100_000)
        .map_or(base.store_series, |v| v.value as usize);
    let retention = t
        .duration(cx, "retention", HOUR..=7 * 24 * HOUR)
        .map_or(base.retention, |v| v.value);
    let poll_interval = t
        .duration(cx, "poll_interval", std::time::Duration::ZERO..=HOUR)
        .and_then(|v| {
            if !v.value.is_zero() && v.value < std::time::Duration::from_secs(1) {
                cx.error(
                    &v.span,
                    &t.key_path("poll_interval"),
                    "must be at least 1s, or 0 to poll nothing".to_owned(),
                );
                return None;
            }
            Some(v.value)
        })
        .unwrap_or(base.poll_interval);
    let bind = t
        .string(cx, "bind")
        .and_then(|bind| socket_addr(cx, &bind, &t.key_path("bind")).map(|a| (a, bind.span)));
    let token = t.string(cx, "token").and_then(|token| {
        if token.value.value.chars().count() < MIN_MONITOR_TOKEN {
            cx.error(
                &token.span,
                &t.key_path("token"),
                format!("must be at least {MIN_MONITOR_TOKEN} characters long"),
            );
            return None;
        }
        Some(Secret::new(token.value.value))
    });
    let token_given = t.contains("token");
    if let Some((addr, span)) = &bind {
        if !addr.ip().is_loopback() && !token_given {
            cx.error(
                span,
                &t.key_path("bind"),
                format!(
                    "binding the monitor to {addr}, which is not a loopback address, requires `monitor.token` (the dashboard shows the fleet's internals)"
                ),
            );
        }
    }
    t.finish(cx);
    MonitorConfig {
        bind: bind.map_or(base.bind, |(a, _)| a),
        token,
        series_cap,
        store_series,
        retention,
        poll_interval,
    }
}

/// Parses `HOST:PORT` with an IP address host.
pub(crate) fn socket_addr(
    cx: &mut Ctx<'_>,
    value: &Spanned<Text>,
    path: &str,
) -> Option<SocketAddr> {
    match value.value.value.parse::<SocketAddr>() {
        Ok(addr) => Some(addr),
        Err(_) => {
            cx.error(
                &value.span,
                path,
                format!(
                    "`{}` is not an IP address and port (for example \"127.0.0.1:8001\" or \"[::1]:8001\")",
                    value.value.value
                ),
            );
            None
        }
    }
}

fn bad_scheme(url: &str, expected: &str) -> String {
    // Only a scheme followed by `://` is echoed: anything else might be the
    // start of a password.
    match url.split_once("://") {
        Some((scheme, _)) if !scheme.is_empty() && scheme.len() <= 20 => {
            format!("unsupported URL scheme `{scheme}`; expected {expected}")
        }
        _ => format!("not a URL; expected one starting with {expected}"),
    }
}

/// `[logs]`: each bot's worker output also written to a file of its own,
/// rotated by size.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct LogFilesConfig {
    /// The folder of the files (`<dir>/<bot>.log`); relative to the data
    /// directory unless absolute.
    pub dir: std::path::PathBuf,
    /// A file is rotated when it would grow past this many bytes.
    pub max_bytes: u64,
    /// Rotated files kept (`<bot>.log.1` the newest).
    pub keep: u32,
}

pub(crate) fn logs(cx: &mut Ctx<'_>, t: Option<Table<'_>>) -> Option<LogFilesConfig> {
    let mut t = t?;
    let dir = t.string(cx, "dir");
    let max_size_mib = t
        .integer(cx, "max_size_mib", 1..=10_240)
        .map_or(10, |v| v.value as u64);
    let keep = t.integer(cx, "keep", 1..=100).map_or(5, |v| v.value as u32);
    let span = t.span.clone();
    t.finish(cx);
    let Some(dir) = dir else {
        cx.error(
            &span,
            "logs.dir",
            "is required: the folder of each bot's log file, such as \"logs\" (in the data directory)",
        );
        return None;
    };
    Some(LogFilesConfig {
        dir: dir.value.value.into(),
        max_bytes: max_size_mib * 1024 * 1024,
        keep,
    })
}
