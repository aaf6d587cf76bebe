//! `GET /api/v1/logs`: the workers' recent output, as the fleet keeps it
//! (`botfleet logs` reads it).
//!
//! Parameters: `bot`, `worker` (a slot), `since` (Unix milliseconds: lines
//! read after it), `level` (`debug`, `info`, `warn`, `error`: that level
//! and above; default `debug`), `limit` (the newest N; default 1,000).
//! The answer: `{"lines": [{t_ms, bot, worker, pid, stream, level,
//! line}]}`, oldest first.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};

use crate::{AppState, bad_request, query_pairs, refused};

/// What a request asks of the logs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogQuery {
    /// Only this bot's.
    pub bot: Option<String>,
    /// Only this worker slot's.
    pub worker: Option<u32>,
    /// Lines read after this (Unix milliseconds).
    pub since_ms: u64,
    /// This level and above.
    pub level: String,
    /// The newest this many.
    pub limit: usize,
}

/// Answers a query with the lines, as JSON values.
pub type LogSource = Arc<dyn Fn(&LogQuery) -> Vec<serde_json::Value> + Send + Sync>;

/// The source, once served.
pub(crate) struct Served(pub(crate) LogSource);

impl std::fmt::Debug for Served {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Served").finish_non_exhaustive()
    }
}

pub(crate) async fn logs(State(state): State<AppState>, headers: HeaderMap, uri: Uri) -> Response {
    if let Some(refusal) = refused(&state, &headers) {
        return refusal;
    }
    let Some(source) = state.logs.get() else {
        return (
            StatusCode::NOT_FOUND,
            axum::Json(serde_json::json!({ "error": "this process keeps no worker logs" })),
        )
            .into_response();
    };
    let pairs = match query_pairs(&uri) {
        Ok(p) => p,
        Err(e) => return bad_request(e),
    };
    let mut q = LogQuery {
        bot: None,
        worker: None,
        since_ms: 0,
        level: "debug".to_owned(),
        limit: 1000,
    };
    for (k, v) in pairs {
        let number = |v: &str| {
            v.parse::<u64>()
                .map_err(|_| format!("`{k}` must be a whole number, not {v:?}"))
        };
        let parsed = match k.as_str() {
            "bot" => {
                q.bot = Some(v);
                Ok(())
            }
            "worker" => number(&v).map(|n| q.worker = Some(n as u32)),
            "since" => number(&v).map(|n| q.since_ms = n),
            "limit" => number(&v).map(|n| q.limit = n as usize),
            "level" => match v.as_str() {
                "debug" | "info" | "warn" | "error" => {
                    q.level = v;
                    Ok(())
                }
                _ => Err(format!("`level` is debug, info, warn or error; not {v:?}")),
            },
            other => Err(format!(
                "unknown parameter `{other}`; known: bot, worker, since, level, limit"
            )),
        };
        if let Err(e) = parsed {
            return bad_request(e);
        }
    }
    axum::Json(serde_json::json!({ "lines": (source.0)(&q) })).into_response()
}
