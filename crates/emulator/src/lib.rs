//! A local Telegram Bot API server for tests, the demo and benchmarks, which
//! enforces Telegram's limits.
//!
//! It speaks the Bot API at `/bot<token>/<method>` (method names in any
//! case; parameters in the query string, as a form, as JSON or as a
//! multipart upload) with the real
//! server's error envelope and description strings, and enforces the limits
//! of the Bots FAQ as strict sliding windows on its arrival time: 1 message
//! per second per chat, 20 per minute per group, 30 per second per token
//! (1000 with `allow_paid_broadcast`). A send over a limit gets
//! `429 Too Many Requests: retry after N` with `parameters.retry_after` and a
//! `Retry-After` header, and is not counted.
//!
//! `getUpdates` confirms by offset (negative offsets too), clamps `limit`
//! and `timeout` as the real server does, wakes a long poll as soon as an
//! update arrives, answers 409 to the older of two polls and while a webhook
//! is set (one 409 per bot every 3 s), and delivers to a webhook on
//! loopback over up to `max_connections` connections, a chat's updates in
//! order.
//!
//! A control plane at `/control/...` (and the same operations on
//! [`Emulator`]) creates bots, users and groups, injects updates, scripts
//! faults, and reads the log of every call with its arrival time and a
//! summary per bot.
//!
//! ```no_run
//! # async fn f() -> std::io::Result<()> {
//! use botfleet_emulator::{Emulator, EmulatorConfig};
//! let emulator = Emulator::start(EmulatorConfig::default()).await?;
//! let token = "110201543:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw1";
//! emulator.add_bot(token, "dating_bot");
//! emulator.add_user(1001, "Ann");
//! emulator.inject_message(token, 1001, 1001, "/start").expect("known chat and user");
//! // Point a client at emulator.base_url() instead of https://api.telegram.org.
//! # Ok(()) }
//! ```

mod files;
mod limits;
mod methods;
mod objects;
mod server;
mod traffic;

use parking_lot::Mutex;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State as Extract;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

pub use limits::{Limit, Limits, Scope};
pub use objects::{Chat, ChatKind, User};
pub use server::{Faults, LogEntry, Stats};
pub use traffic::{Replies, Traffic, TrafficHandle, TrafficReport};

use server::{Params, Shared, State};

/// How the emulator runs.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct EmulatorConfig {
    /// Where to listen; port 0 picks a free one. Loopback by default.
    pub bind: SocketAddr,
    /// The send limits, the same for every token.
    pub limits: Limits,
    /// Whether sends to chats never created answer "chat not found" (true)
    /// or create them on the fly (false: private for positive ids, a
    /// supergroup for negative ones).
    pub strict_chats: bool,
}

impl Default for EmulatorConfig {
    fn default() -> Self {
        EmulatorConfig {
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            limits: Limits::default(),
            strict_chats: true,
        }
    }
}

impl EmulatorConfig {
    /// Telegram's limits, or none at all (`Limits::unlimited()`).
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Create unknown chats on first use instead of answering "chat not
    /// found".
    pub fn lenient_chats(mut self) -> Self {
        self.strict_chats = false;
        self
    }

    /// Listen on `bind`.
    pub fn bind(mut self, bind: SocketAddr) -> Self {
        self.bind = bind;
        self
    }
}

/// A running emulator. Dropping it stops the server.
pub struct Emulator {
    addr: SocketAddr,
    pub(crate) state: Shared,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for Emulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Emulator")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Emulator {
    /// Starts the server on `config.bind`.
    pub async fn start(config: EmulatorConfig) -> std::io::Result<Emulator> {
        let state: Shared = Arc::new(Mutex::new(State::new(config.limits, config.strict_chats)));
        let listener = TcpListener::bind(config.bind).await?;
        let addr = listener.local_addr()?;
        let app = Router::new()
            .fallback(route)
            .layer(axum::extract::DefaultBodyLimit::max(files::MAX_UPLOAD))
            .with_state(state.clone());
        let task = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!(error = %e, "the emulator's server stopped");
            }
        });
        Ok(Emulator { addr, state, task })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`: the base URL to give a client in place of
    /// `https://api.telegram.org`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        f(&mut self.state.lock())
    }

    /// Registers a bot; `None` if the token is malformed.
    pub fn add_bot(&self, token: &str, username: &str) -> Option<User> {
        self.with(|s| s.add_bot(token, username))
    }

    /// Creates a user and its private chat (ids are positive).
    pub fn add_user(&self, id: i64, first_name: &str) {
        self.with(|s| s.add_user(id, first_name));
    }

    /// Creates a group, supergroup or channel (ids are negative).
    pub fn add_group(&self, id: i64, title: &str, kind: ChatKind) {
        self.with(|s| s.add_group(id, title, kind));
    }

    /// `user` has blocked `token`'s bot: sends to them answer 403.
    pub fn block(&self, token: &str, user: i64) -> bool {
        self.with(|s| s.block(token, user))
    }

    /// The group `from` became the supergroup `to`: sends to `from` answer
    /// 400 with `migrate_to_chat_id`.
    pub fn migrate(&self, from: i64, to: i64, title: &str) {
        self.with(|s| {
            s.migrated.insert(from, to);
            s.add_group(to, title, ChatKind::Supergroup);
        });
    }

    /// A text message from `from` in `chat` to `token`'s bot; returns its
    /// update id.
    pub fn inject_message(
        &self,
        token: &str,
        chat: i64,
        from: i64,
        text: &str,
    ) -> Result<i64, String> {
        self.with(|s| s.inject_message(token, chat, from, text))
    }

    /// Queues any update (its `update_id` is set) for `token`'s bot.
    pub fn inject_update(&self, token: &str, update: Value) -> Option<i64> {
        self.with(|s| s.push_update(token, |_| update))
    }

    /// Faults to inject from now on.
    pub fn set_faults(&self, faults: Faults) {
        self.with(|s| s.faults = faults);
    }

    /// Updates of the bot `token` not confirmed yet (nor delivered to a
    /// webhook).
    pub fn pending_updates(&self, token: &str) -> usize {
        self.with(|s| s.pending_updates(token))
    }

    /// Every call answered so far, in arrival order.
    pub fn log(&self) -> Vec<LogEntry> {
        self.with(|s| s.log.clone())
    }

    /// What the log says about the sends of the bot `bot_id`.
    pub fn stats(&self, bot_id: i64) -> Stats {
        self.with(|s| s.stats(bot_id))
    }
}

async fn route(
    Extract(state): Extract<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_owned();
    if let Some(rest) = path.strip_prefix("/bot") {
        let Some((token, api_method)) = rest.split_once('/') else {
            return not_found();
        };
        let params = match Params::parse(&uri, &headers, &body).await {
            Ok(p) => p,
            Err(why) => {
                let body = json!({ "ok": false, "error_code": 400, "description": format!("Bad Request: {why}") });
                return (StatusCode::BAD_REQUEST, axum::Json(body)).into_response();
            }
        };
        return server::bot_api(&state, token, api_method, params)
            .await
            .into_response();
    }
    if let Some(rest) = path.strip_prefix("/file/bot") {
        return file(&state, rest);
    }
    if let Some(rest) = path.strip_prefix("/control/") {
        return control(&state, &method, rest, &uri, &body);
    }
    not_found()
}

/// `/file/bot<token>/<path>`: a file a bot uploaded, by the path `getFile`
/// gave.
fn file(state: &Shared, rest: &str) -> Response {
    let Some((token, path)) = rest.split_once('/') else {
        return not_found();
    };
    let s = state.lock();
    if !s.bots.contains_key(token) {
        let body = json!({ "ok": false, "error_code": 401, "description": "Unauthorized" });
        return (StatusCode::UNAUTHORIZED, axum::Json(body)).into_response();
    }
    match s.files.by_path(path) {
        Some(f) => f.data.clone().into_response(),
        None => not_found(),
    }
}

fn not_found() -> Response {
    let body = json!({ "ok": false, "error_code": 404, "description": "Not Found" });
    (StatusCode::NOT_FOUND, axum::Json(body)).into_response()
}

/// The control plane: JSON in, JSON out.
fn control(state: &Shared, method: &Method, what: &str, uri: &Uri, body: &Bytes) -> Response {
    let input: Value = if body.is_empty() {
        json!({})
    } else {
        serde_json::from_slice(body).unwrap_or(Value::Null)
    };
    let bad =
        |why: &str| (StatusCode::BAD_REQUEST, axum::Json(json!({ "error": why }))).into_response();
    let ok = |v: Value| axum::Json(v).into_response();
    let mut s = state.lock();
    let str_of = |k: &str| input[k].as_str().map(str::to_owned);
    match (method.as_str(), what) {
        ("POST", "bots") => match (str_of("token"), str_of("username")) {
            (Some(t), Some(u)) => match s.add_bot(&t, &u) {
                Some(user) => ok(json!({ "id": user.id })),
                None => bad("malformed token"),
            },
            _ => bad("needs token and username"),
        },
        ("POST", "users") => match (input["id"].as_i64(), str_of("first_name")) {
            (Some(id), Some(name)) if id > 0 => {
                s.add_user(id, &name);
                ok(json!({ "id": id }))
            }
            _ => bad("needs a positive id and first_name"),
        },
        ("POST", "groups") => {
            let kind = match input["kind"].as_str().unwrap_or("supergroup") {
                "group" => ChatKind::Group,
                "channel" => ChatKind::Channel,
                _ => ChatKind::Supergroup,
            };
            match (input["id"].as_i64(), str_of("title")) {
                (Some(id), Some(title)) if id < 0 => {
                    s.add_group(id, &title, kind);
                    ok(json!({ "id": id }))
                }
                _ => bad("needs a negative id and a title"),
            }
        }
        ("POST", "updates") => match (
            str_of("token"),
            input["chat_id"].as_i64(),
            input["from"].as_i64(),
            str_of("text"),
        ) {
            (Some(t), Some(chat), Some(from), Some(text)) => {
                match s.inject_message(&t, chat, from, &text) {
                    Ok(id) => ok(json!({ "update_id": id })),
                    Err(e) => bad(&e),
                }
            }
            _ => bad("needs token, chat_id, from and text"),
        },
        ("PUT", "faults") => match serde_json::from_value::<Faults>(input.clone()) {
            Ok(f) => {
                s.faults = f;
                ok(json!({}))
            }
            Err(e) => bad(&e.to_string()),
        },
        ("GET", "log") => ok(serde_json::to_value(&s.log).unwrap_or(Value::Null)),
        ("GET", "stats") => {
            let bot_id = uri
                .query()
                .and_then(|q| q.strip_prefix("bot_id="))
                .and_then(|v| v.parse().ok());
            match bot_id {
                Some(id) => ok(serde_json::to_value(s.stats(id)).unwrap_or(Value::Null)),
                None => bad("needs ?bot_id=N"),
            }
        }
        _ => (
            StatusCode::NOT_FOUND,
            axum::Json(json!({ "error": "no such control route" })),
        )
            .into_response(),
    }
}
