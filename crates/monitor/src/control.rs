//! The control API: an operator's actions on the running fleet, carried
//! out by whoever started the monitor (`botfleet run`):
//!
//! - `POST /api/v1/reload`: read the fleet file again and apply it, as
//!   SIGHUP does;
//! - `POST /api/v1/bots/{bot}/restart`: roll the bot's workers, one at a
//!   time, each drained first;
//! - `POST /api/v1/bots/{bot}/stop` and `.../start`.
//!
//! Every action wants the control token, always (on loopback too: any
//! local user can reach a loopback port, not every one can read the token
//! file the supervisor writes 0600), compared in constant time.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;

use crate::AppState;

/// An operator's action.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Control {
    /// Read the fleet file again and apply it.
    Reload,
    /// Roll a bot's workers.
    Restart(String),
    /// Stop a bot, losing nothing.
    Stop(String),
    /// Start a stopped bot.
    Start(String),
    /// List the dead letters (of one bot, or all).
    DeadLetters(Option<String>),
    /// Hand a bot's dead letter (or all of them) back, with fresh attempts.
    Replay(String, Option<i64>),
    /// Delete a bot's dead letter (or all of them).
    Drop(String, Option<i64>),
}

/// Carries out an action: its outcome as JSON, or why it could not be
/// done.
pub type ControlSend = Arc<
    dyn Fn(Control) -> Pin<Box<dyn Future<Output = Result<serde_json::Value, String>> + Send>>
        + Send
        + Sync,
>;

/// The control API's token and handler, once started.
pub(crate) struct ControlShared {
    pub(crate) token: Arc<[u8]>,
    pub(crate) send: ControlSend,
}

impl std::fmt::Debug for ControlShared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlShared").finish_non_exhaustive()
    }
}

fn json_error(status: StatusCode, message: impl Into<String>) -> Response {
    (
        status,
        axum::Json(serde_json::json!({ "error": message.into() })),
    )
        .into_response()
}

async fn act(state: &AppState, headers: &HeaderMap, action: Control) -> Response {
    let Some(control) = state.control.get() else {
        return json_error(
            StatusCode::NOT_FOUND,
            "this process takes no actions (only `botfleet run` does)",
        );
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::as_bytes)
        .unwrap_or_default();
    if !bool::from(given.ct_eq(&control.token)) {
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            axum::Json(serde_json::json!({
                "error": "actions want the fleet's control token (the file control.token in its data directory)"
            })),
        )
            .into_response();
    }
    tracing::info!(action = ?action, "the control API was asked");
    match (control.send)(action).await {
        Ok(outcome) => axum::Json(outcome).into_response(),
        Err(e) => json_error(StatusCode::CONFLICT, e),
    }
}

/// `GET /api/v1/dead-letters[?bot=BOT]` (with the control token: dead
/// letters hold users' messages).
pub(crate) async fn dead_letters(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: axum::http::Uri,
) -> Response {
    let pairs = match crate::query_pairs(&uri) {
        Ok(p) => p,
        Err(e) => return crate::bad_request(e),
    };
    let mut bot = None;
    for (k, v) in pairs {
        if k != "bot" {
            return crate::bad_request(format!("unknown parameter `{k}`; known: bot"));
        }
        bot = Some(v);
    }
    act(&state, &headers, Control::DeadLetters(bot)).await
}

/// `POST /api/v1/dead-letters/{bot}/{what}`: `replay` or `drop` them all;
/// `POST /api/v1/dead-letters/{bot}/{id}/{what}`: one.
pub(crate) async fn dead_letter(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(parts): Path<Vec<String>>,
) -> Response {
    let (bot, id, what) = match parts.as_slice() {
        [bot, what] => (bot.clone(), None, what.as_str()),
        [bot, id, what] => match id.parse::<i64>() {
            Ok(id) => (bot.clone(), Some(id), what.as_str()),
            Err(_) => {
                return json_error(
                    StatusCode::BAD_REQUEST,
                    format!("{id:?} is not an update id"),
                );
            }
        },
        _ => return json_error(StatusCode::NOT_FOUND, "no such path"),
    };
    let action = match what {
        "replay" => Control::Replay(bot, id),
        "drop" => Control::Drop(bot, id),
        other => {
            return json_error(
                StatusCode::NOT_FOUND,
                format!("no action {other:?}; dead letters can be told replay or drop"),
            );
        }
    };
    act(&state, &headers, action).await
}

/// `POST /api/v1/reload`.
pub(crate) async fn reload(State(state): State<AppState>, headers: HeaderMap) -> Response {
    act(&state, &headers, Control::Reload).await
}

/// `POST /api/v1/bots/{bot}/{action}`.
pub(crate) async fn bot(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((bot, action)): Path<(String, String)>,
) -> Response {
    let action = match action.as_str() {
        "restart" => Control::Restart(bot),
        "stop" => Control::Stop(bot),
        "start" => Control::Start(bot),
        other => {
            return json_error(
                StatusCode::NOT_FOUND,
                format!("no action {other:?}; a bot can be told restart, stop or start"),
            );
        }
    };
    act(&state, &headers, action).await
}
