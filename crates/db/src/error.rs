//! The one error type of the database layer. Messages name the database by
//! host, port and name, never by a URL that may carry a password.

use std::time::Duration;

/// What went wrong, in words a bot operator can act on.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The database could not be reached or refused the connection.
    #[error("cannot connect to the database {target}: {cause}")]
    Connect {
        /// `host:port/database` or the SQLite file, without credentials.
        target: String,
        /// Why, from the driver, with any password removed.
        cause: String,
    },
    /// The URL or a setting is not usable.
    #[error("invalid database configuration: {0}")]
    Config(String),
    /// No connection became free within the acquire timeout.
    #[error(
        "no database connection within {timeout:?} (pool of {pool_size} on {target}: every connection busy, or the database unreachable)"
    )]
    AcquireTimeout {
        /// The pool's acquire timeout.
        timeout: Duration,
        /// The pool's size.
        pool_size: u32,
        /// The database, without credentials.
        target: String,
    },
    /// The server cancelled a statement at the statement timeout.
    #[error("statement cancelled after the statement timeout of {timeout:?}: {query}")]
    StatementTimeout {
        /// The statement timeout in force.
        timeout: Duration,
        /// The query's fingerprint (literals replaced by `?`).
        query: String,
    },
    /// A query failed.
    #[error("query failed: {cause} (query: {query})")]
    Query {
        /// The query's fingerprint.
        query: String,
        /// The driver's message, with any password removed.
        cause: String,
        /// The driver's error.
        #[source]
        source: sqlx::Error,
    },
    /// A health check did not answer in time.
    #[error("the database {target} did not answer a health check within {timeout:?}")]
    HealthTimeout {
        /// The database, without credentials.
        target: String,
        /// The check's timeout.
        timeout: Duration,
    },
    /// Migrations could not be applied.
    #[error("migrations failed: {0}")]
    Migrate(String),
    /// The fleet's pools cannot fit in the server's connections.
    #[error("{0}")]
    Budget(#[from] crate::budget::PlanError),
    /// The query result cache failed in a way that is not the query's.
    #[error("query cache: {0}")]
    Cache(String),
    /// The write batcher refused a row.
    #[error("{0}")]
    Batcher(String),
}

impl Error {
    /// Whether the error says the database could not be used at all
    /// (unreachable, refused, out of connections), as opposed to a problem
    /// with one query.
    pub fn is_unavailable(&self) -> bool {
        match self {
            Error::Connect { .. } | Error::AcquireTimeout { .. } | Error::HealthTimeout { .. } => {
                true
            }
            Error::Query { source, .. } => match source {
                sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed => true,
                // SQLSTATE class 08 (connection exception), 53300 (too many
                // connections), 57P01-57P03 (the server shuts down, crashed
                // or is starting).
                sqlx::Error::Database(db) => db.code().is_some_and(|c| {
                    c.starts_with("08")
                        || c == "53300"
                        || ["57P01", "57P02", "57P03"].contains(&&*c)
                }),
                _ => false,
            },
            _ => false,
        }
    }
}

/// The result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Removes `secret` from `text` (driver messages may quote connection
/// strings).
pub(crate) fn scrub(text: String, secret: Option<&str>) -> String {
    match secret {
        Some(s) if !s.is_empty() && text.contains(s) => text.replace(s, "***"),
        _ => text,
    }
}
