//! What went wrong with a call, and whether trying again can help. No
//! message ever contains the bot token.

use std::time::Duration;

/// A failed Bot API call.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{method} failed: {kind}")]
pub struct Error {
    /// The method called.
    pub method: String,
    /// What went wrong.
    pub kind: ErrorKind,
}

/// The kinds of failure a bot acts on differently.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ErrorKind {
    /// 429: flood control; `retry_after` said how long to wait. Sends are
    /// retried by the client; this reaches the caller only from calls made
    /// without retries.
    #[error("Too Many Requests: retry after {}", .0.as_secs())]
    RetryAfter(Duration),
    /// 400 "chat not found".
    #[error("Bad Request: chat not found (not retryable)")]
    ChatNotFound,
    /// 403 "bot was blocked by the user".
    #[error("Forbidden: bot was blocked by the user (not retryable)")]
    Blocked,
    /// 400: the group became a supergroup; send to the new id.
    #[error("the group was upgraded to the supergroup {0}; send there (not retryable as is)")]
    Migrated(i64),
    /// Another 400 or 403: the request itself is wrong.
    #[error("{0} (not retryable)")]
    Rejected(String),
    /// 401: the token is wrong or revoked.
    #[error("Unauthorized: the bot token is invalid or revoked (not retryable)")]
    Unauthorized,
    /// 404: no such method (or a wrong API base URL).
    #[error("Not Found: {0} (not retryable)")]
    NotFound(String),
    /// 409: another `getUpdates` consumer, or a webhook is set.
    #[error("{0} (another instance is polling, or a webhook is set)")]
    Conflict(String),
    /// 5xx: the server failed or is restarting.
    #[error("server error {code}: {description} (retryable)")]
    Server {
        /// The HTTP status.
        code: u16,
        /// Its description.
        description: String,
    },
    /// No connection could be made: nothing was sent.
    #[error("cannot connect: {0} (retryable)")]
    Connect(String),
    /// No answer in time: the request may or may not have been processed.
    #[error("no answer within {0:?} (the request may have been processed)")]
    Timeout(Duration),
    /// Another transport failure.
    #[error("transport error: {0}")]
    Transport(String),
    /// The answer was not what the Bot API sends.
    #[error("unexpected answer: {0}")]
    Decode(String),
    /// The client does not do this (yet).
    #[error("{0}")]
    Unsupported(String),
}

impl Error {
    /// Whether the same call may succeed later without a change: 429s,
    /// server errors and failed connections.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self.kind,
            ErrorKind::RetryAfter(_) | ErrorKind::Server { .. } | ErrorKind::Connect(_)
        )
    }
}

/// The Bot API's error envelope, as a kind.
pub(crate) fn classify(
    code: u16,
    description: &str,
    retry_after: Option<u64>,
    migrate_to: Option<i64>,
) -> ErrorKind {
    match code {
        429 => ErrorKind::RetryAfter(Duration::from_secs(retry_after.unwrap_or(1).max(1))),
        401 => ErrorKind::Unauthorized,
        404 => ErrorKind::NotFound(description.trim_start_matches("Not Found: ").to_owned()),
        409 => ErrorKind::Conflict(description.to_owned()),
        _ if migrate_to.is_some() => ErrorKind::Migrated(migrate_to.unwrap_or(0)),
        400 if description.contains("chat not found") => ErrorKind::ChatNotFound,
        403 if description.contains("blocked by the user") => ErrorKind::Blocked,
        500..=599 => ErrorKind::Server {
            code,
            description: description.to_owned(),
        },
        _ => ErrorKind::Rejected(description.to_owned()),
    }
}
