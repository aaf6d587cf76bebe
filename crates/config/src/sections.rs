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
}

/// The shortest monitor token accepted.
const MIN_MONITOR_TOKEN: usize = 16;

pub(crate) fn monitor(cx: &mut Ctx<'_>, t: Option<Table<'_>>) -> MonitorConfig {
    let default_bind: SocketAddr = DEFAULT_MONITOR_BIND
        .parse()
        .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 8001)));
    let Some(mut t) = t else {
        return MonitorConfig {
            bind: default_bind,
            token: None,
        };
    };
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
        bind: bind.map_or(default_bind, |(a, _)| a),
        token,
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
