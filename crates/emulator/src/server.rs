//! The HTTP server: routing, parameters, the error envelope, the methods and
//! the control plane.

use parking_lot::Mutex;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{Map, Value, json};
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::files::{self, Files, Part};
use crate::limits::{Limits, Scope, Windows};
use crate::objects::{self, Chat, ChatKind, User};

/// The longest long poll the real server allows (`LONG_POLL_MAX_TIMEOUT`).
pub(crate) const MAX_POLL_TIMEOUT: u64 = 50;

/// Faults to inject into the Bot API routes.
#[derive(Clone, Debug, Default, PartialEq, serde::Deserialize, Serialize)]
#[serde(default)]
pub struct Faults {
    /// Probability that a send is refused with a 429 regardless of limits.
    pub random_429: f64,
    /// The `retry_after` of injected 429s, seconds, from..=to.
    pub retry_after: (u64, u64),
    /// The next this many Bot API requests answer 500 "Internal Server
    /// Error: restart".
    pub restart_burst: u32,
    /// Added before every Bot API request is handled (network delay): mean
    /// and jitter (±), milliseconds.
    pub latency_ms: (u64, u64),
}

/// One call the emulator answered, with its server arrival time.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LogEntry {
    /// Order of arrival.
    pub seq: u64,
    /// Arrival, milliseconds since the emulator started.
    pub at_ms: f64,
    /// The bot's id (never its token).
    pub bot_id: i64,
    /// The method, lower case.
    pub method: String,
    /// The target chat, for chat methods.
    pub chat_id: Option<i64>,
    /// The message text, for sends.
    pub text: Option<String>,
    /// The HTTP status answered.
    pub status: u16,
    /// The limit that refused it, for 429s.
    pub scope: Option<Scope>,
    /// The `retry_after` given, for 429s.
    pub retry_after: Option<u64>,
}

/// What the log says about the sends of one bot.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Stats {
    /// Sends accepted.
    pub accepted: u64,
    /// 429s by scope.
    pub rejected_429: HashMap<String, u64>,
    /// Other errors answered.
    pub errors: u64,
    /// The most sends accepted for one chat in any window of the chat limit.
    pub max_per_chat_window: u32,
    /// The most sends accepted for one group in any window of the group
    /// limit.
    pub max_per_group_window: u32,
    /// The most sends accepted for the token in any window of the token
    /// limit.
    pub max_per_token_window: u32,
    /// Sends whose text carried a sequence number (`#n`) lower than an
    /// earlier one in the same chat.
    pub order_violations: u64,
}

pub(crate) struct Bot {
    pub(crate) user: User,
    pub(crate) updates: VecDeque<Value>,
    pub(crate) next_update_id: i64,
    pub(crate) poll_generation: Arc<AtomicU64>,
    pub(crate) wake: Arc<Notify>,
    pub(crate) webhook: Option<Webhook>,
    pub(crate) webhook_generation: u64,
    pub(crate) windows: Windows,
    pub(crate) blocked_by: std::collections::HashSet<i64>,
    /// The last `setWebhook` accepted (it is limited to one a second).
    pub(crate) last_set_webhook: Option<Instant>,
    /// When the next 409 may be answered (one every 3 s; the others wait).
    pub(crate) next_conflict: Option<Instant>,
    /// The offset of the last `getUpdates` and when it came.
    pub(crate) last_poll: Option<(i64, Instant)>,
}

#[derive(Clone, Debug)]
pub(crate) struct Webhook {
    pub(crate) url: String,
    pub(crate) max_connections: u32,
    pub(crate) secret_token: Option<String>,
    /// Which `setWebhook` this is: its delivery task stops when another
    /// one (or `deleteWebhook`) replaces it.
    pub(crate) generation: u64,
}

/// The first wait before an update the webhook refused is sent again; it
/// doubles up to `WEBHOOK_MAX_RETRY` (the real server waits up to 60 s).
const WEBHOOK_FIRST_RETRY: Duration = Duration::from_millis(200);
const WEBHOOK_MAX_RETRY: Duration = Duration::from_secs(10);

pub(crate) struct State {
    pub(crate) limits: Limits,
    pub(crate) strict_chats: bool,
    pub(crate) started: Instant,
    pub(crate) bots: HashMap<String, Bot>,
    pub(crate) chats: HashMap<i64, Chat>,
    pub(crate) users: HashMap<i64, User>,
    pub(crate) migrated: HashMap<i64, i64>,
    message_ids: HashMap<i64, i64>,
    pub(crate) log: Vec<LogEntry>,
    pub(crate) faults: Faults,
    rng: fastrand::Rng,
    /// Synthetic updates not answered yet, per (bot id, chat): when each
    /// was created. A send to the chat answers the oldest.
    pub(crate) awaiting: HashMap<(i64, i64), VecDeque<Instant>>,
    /// End-to-end latencies (update created -> reply accepted), ms.
    pub(crate) e2e_ms: Vec<f64>,
    /// The last message each bot sent to each chat (for button presses).
    pub(crate) bot_messages: HashMap<(i64, i64), Value>,
    /// Uploaded files.
    pub(crate) files: Files,
}

pub(crate) type Shared = Arc<Mutex<State>>;

impl State {
    pub(crate) fn new(limits: Limits, strict_chats: bool) -> State {
        State {
            limits,
            strict_chats,
            started: Instant::now(),
            bots: HashMap::new(),
            chats: HashMap::new(),
            users: HashMap::new(),
            migrated: HashMap::new(),
            message_ids: HashMap::new(),
            log: Vec::new(),
            faults: Faults::default(),
            // Seeded: the same faults in the same order on every run.
            rng: fastrand::Rng::with_seed(0x9e37_79b9_7f4a_7c15),
            awaiting: HashMap::new(),
            e2e_ms: Vec::new(),
            bot_messages: HashMap::new(),
            files: Files::default(),
        }
    }

    pub(crate) fn pending_updates(&self, token: &str) -> usize {
        self.bots.get(token).map_or(0, |b| b.updates.len())
    }

    pub(crate) fn random(&mut self) -> f64 {
        self.rng.f64()
    }

    pub(crate) fn add_bot(&mut self, token: &str, username: &str) -> Option<User> {
        let id = token_bot_id(token)?;
        let user = User {
            id,
            is_bot: true,
            first_name: username.trim_end_matches("_bot").to_owned(),
            username: Some(username.to_owned()),
        };
        self.bots.entry(token.to_owned()).or_insert_with(|| Bot {
            user: user.clone(),
            updates: VecDeque::new(),
            next_update_id: 1,
            poll_generation: Arc::new(AtomicU64::new(0)),
            wake: Arc::new(Notify::new()),
            webhook: None,
            webhook_generation: 0,
            windows: Windows::default(),
            blocked_by: Default::default(),
            last_set_webhook: None,
            next_conflict: None,
            last_poll: None,
        });
        Some(user)
    }

    pub(crate) fn add_user(&mut self, id: i64, first_name: &str) {
        let user = User {
            id,
            is_bot: false,
            first_name: first_name.to_owned(),
            username: None,
        };
        self.chats.insert(
            id,
            Chat {
                id,
                kind: ChatKind::Private,
                title: first_name.to_owned(),
            },
        );
        self.users.insert(id, user);
    }

    pub(crate) fn add_group(&mut self, id: i64, title: &str, kind: ChatKind) {
        self.chats.insert(
            id,
            Chat {
                id,
                kind,
                title: title.to_owned(),
            },
        );
    }

    pub(crate) fn block(&mut self, token: &str, user: i64) -> bool {
        self.bots
            .get_mut(token)
            .map(|b| b.blocked_by.insert(user))
            .is_some()
    }

    /// Queues an update for `token`'s bot and wakes its long poll. Returns
    /// the update id.
    pub(crate) fn push_update(
        &mut self,
        token: &str,
        make: impl FnOnce(i64) -> Value,
    ) -> Option<i64> {
        let bot = self.bots.get_mut(token)?;
        let id = bot.next_update_id;
        bot.next_update_id += 1;
        let mut update = make(id);
        update["update_id"] = json!(id);
        bot.updates.push_back(update);
        bot.wake.notify_waiters();
        Some(id)
    }

    /// A message from `from` in `chat` to `token`'s bot, as an update.
    pub(crate) fn inject_message(
        &mut self,
        token: &str,
        chat_id: i64,
        from: i64,
        text: &str,
    ) -> Result<i64, String> {
        let chat = self
            .chats
            .get(&chat_id)
            .cloned()
            .ok_or_else(|| format!("no chat {chat_id}"))?;
        let user = self
            .users
            .get(&from)
            .cloned()
            .ok_or_else(|| format!("no user {from}"))?;
        let message_id = self.next_message_id(chat_id);
        let date = self.unix_time();
        let message = objects::message(message_id, date, &chat, &user, text);
        self.push_update(token, |_| json!({ "message": message }))
            .ok_or_else(|| "no such bot".to_owned())
    }

    pub(crate) fn next_message_id(&mut self, chat: i64) -> i64 {
        let n = self.message_ids.entry(chat).or_insert(0);
        *n += 1;
        *n
    }

    pub(crate) fn unix_time(&self) -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64)
    }

    fn at_ms(&self, now: Instant) -> f64 {
        now.saturating_duration_since(self.started).as_secs_f64() * 1e3
    }

    pub(crate) fn stats(&self, bot_id: i64) -> Stats {
        let mut stats = Stats::default();
        let mut per_chat: HashMap<i64, Vec<f64>> = HashMap::new();
        let mut token_times = Vec::new();
        let mut last_seq: HashMap<i64, u64> = HashMap::new();
        for e in self.log.iter().filter(|e| e.bot_id == bot_id) {
            match (e.status, e.chat_id) {
                (200, Some(chat)) if e.text.is_some() => {
                    stats.accepted += 1;
                    per_chat.entry(chat).or_default().push(e.at_ms);
                    token_times.push(e.at_ms);
                    if let Some(n) = e.text.as_deref().and_then(sequence_number) {
                        let last = last_seq.entry(chat).or_insert(0);
                        if n < *last {
                            stats.order_violations += 1;
                        }
                        *last = (*last).max(n);
                    }
                }
                (429, _) => {
                    let scope = e.scope.map_or("other".to_owned(), |s| {
                        serde_json::to_value(s)
                            .ok()
                            .and_then(|v| v.as_str().map(str::to_owned))
                            .unwrap_or_default()
                    });
                    *stats.rejected_429.entry(scope).or_default() += 1;
                }
                (200, _) => {}
                _ => stats.errors += 1,
            }
        }
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        for (chat, times) in &per_chat {
            stats.max_per_chat_window = stats
                .max_per_chat_window
                .max(max_in_window(times, ms(self.limits.chat.window)));
            if *chat < 0 {
                stats.max_per_group_window = stats
                    .max_per_group_window
                    .max(max_in_window(times, ms(self.limits.group.window)));
            }
        }
        token_times.sort_by(f64::total_cmp);
        stats.max_per_token_window = max_in_window(&token_times, ms(self.limits.token.window));
        stats
    }
}

/// The most entries of sorted `times` in any half-open window `(t - w, t]`.
fn max_in_window(times: &[f64], w: f64) -> u32 {
    let (mut best, mut start) = (0, 0);
    for (end, &t) in times.iter().enumerate() {
        while times[start] <= t - w {
            start += 1;
        }
        best = best.max(end + 1 - start);
    }
    u32::try_from(best).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_loopback_webhooks_are_served() {
        for url in [
            "http://127.0.0.1:9/x",
            "https://localhost/h",
            "http://[::1]:80/",
            "http://u:p@127.0.0.2/",
        ] {
            assert!(super::is_loopback_url(url), "{url}");
        }
        for url in [
            "https://example.org/h",
            "http://10.0.0.1/",
            "ftp://127.0.0.1/",
            "http://127.0.0.1.evil.org/",
        ] {
            assert!(!super::is_loopback_url(url), "{url}");
        }
    }
}

/// `#n` in a message text: how benchmarks number a chat's messages.
fn sequence_number(text: &str) -> Option<u64> {
    let rest = text.split('#').nth(1)?;
    rest.chars()
        .take_while(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .ok()
}

/// Whether `url` points at this machine (`127.0.0.0/8`, `localhost`,
/// `[::1]`).
fn is_loopback_url(url: &str) -> bool {
    let Some(rest) = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
    else {
        return false;
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = if host.starts_with('[') {
        host.split(']')
            .next()
            .map_or(host, |h| h.trim_start_matches('['))
    } else {
        host.rsplit_once(':').map_or(host, |(h, _)| h)
    };
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The bot id of a well-formed token (`<id>:<secret>`, as the real server
/// checks it: ≤ 80 characters, no `/`, id in 1..2^54).
pub(crate) fn token_bot_id(token: &str) -> Option<i64> {
    if token.len() > 80 || token.contains('/') {
        return None;
    }
    let (id, secret) = token.split_once(':')?;
    let id: i64 = id.parse().ok()?;
    (id > 0 && id < (1 << 54) && !secret.is_empty()).then_some(id)
}

/// A Bot API answer: the envelope and its HTTP status.
pub(crate) struct Answer {
    status: StatusCode,
    body: Value,
    retry_after: Option<u64>,
}

impl Answer {
    pub(crate) fn ok(result: Value) -> Answer {
        Answer {
            status: StatusCode::OK,
            body: json!({ "ok": true, "result": result }),
            retry_after: None,
        }
    }

    pub(crate) fn ok_described(result: Value, description: &str) -> Answer {
        Answer {
            status: StatusCode::OK,
            body: json!({ "ok": true, "result": result, "description": description }),
            retry_after: None,
        }
    }

    pub(crate) fn error(code: u16, description: &str) -> Answer {
        Answer {
            status: StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_REQUEST),
            body: json!({ "ok": false, "error_code": code, "description": description }),
            retry_after: None,
        }
    }

    pub(crate) fn too_many(retry_after: u64) -> Answer {
        Answer {
            status: StatusCode::TOO_MANY_REQUESTS,
            body: json!({
                "ok": false,
                "error_code": 429,
                "description": format!("Too Many Requests: retry after {retry_after}"),
                "parameters": { "retry_after": retry_after },
            }),
            retry_after: Some(retry_after),
        }
    }

    pub(crate) fn migrated(to: i64) -> Answer {
        Answer {
            status: StatusCode::BAD_REQUEST,
            body: json!({
                "ok": false,
                "error_code": 400,
                "description": "Bad Request: group chat was upgraded to a supergroup chat",
                "parameters": { "migrate_to_chat_id": to },
            }),
            retry_after: None,
        }
    }
}

/// The envelope in the real server's key order: `ok`, `result`,
/// `error_code`, `description`, `parameters`.
#[derive(Serialize)]
struct Envelope<'a> {
    ok: &'a Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    result: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error_code: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    parameters: Option<&'a Value>,
}

impl IntoResponse for Answer {
    fn into_response(self) -> Response {
        let b = &self.body;
        let envelope = Envelope {
            ok: &b["ok"],
            result: b.get("result"),
            error_code: b.get("error_code"),
            description: b.get("description"),
            parameters: b.get("parameters"),
        };
        let mut response = (self.status, axum::Json(envelope)).into_response();
        if let Some(n) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(n));
        }
        response
    }
}

/// Parameters from the query string and the body (JSON, a form, or
/// `multipart/form-data` with its uploaded files).
pub(crate) struct Params(pub(crate) Map<String, Value>, pub(crate) Vec<Part>);

impl Params {
    pub(crate) async fn parse(
        uri: &Uri,
        headers: &HeaderMap,
        body: &Bytes,
    ) -> Result<Params, String> {
        let mut map = Map::new();
        if let Some(q) = uri.query() {
            for (k, v) in serde_urlencoded::from_str::<Vec<(String, String)>>(q)
                .map_err(|_| "bad query string")?
            {
                map.insert(k, Value::String(v));
            }
        }
        if !body.is_empty() {
            let ct = headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            if let Some(boundary) = files::boundary(ct) {
                let mut uploads = Vec::new();
                for part in files::parse_multipart(body, &boundary).await? {
                    if part.filename.is_some() {
                        uploads.push(part);
                    } else {
                        let value = String::from_utf8(part.data.to_vec())
                            .map_err(|_| "a multipart field is not UTF-8")?;
                        map.insert(part.name, Value::String(value));
                    }
                }
                return Ok(Params(map, uploads));
            } else if ct.starts_with("application/json") {
                match serde_json::from_slice::<Value>(body)
                    .map_err(|_| "can't parse JSON object")?
                {
                    Value::Object(o) => map.extend(o),
                    _ => return Err("can't parse JSON object".to_owned()),
                }
            } else {
                for (k, v) in serde_urlencoded::from_bytes::<Vec<(String, String)>>(body)
                    .map_err(|_| "bad form body")?
                {
                    map.insert(k, Value::String(v));
                }
            }
        }
        Ok(Params(map, Vec::new()))
    }

    /// The file uploaded as `name`: directly, or as `attach://name`.
    pub(crate) fn upload(&self, name: &str) -> Option<&Part> {
        let name = name.strip_prefix("attach://").unwrap_or(name);
        self.1.iter().find(|p| p.name == name)
    }

    pub(crate) fn i64(&self, key: &str) -> Option<i64> {
        match self.0.get(key)? {
            Value::Number(n) => n.as_i64(),
            Value::String(s) => s.trim().parse().ok(),
            _ => None,
        }
    }

    pub(crate) fn str(&self, key: &str) -> Option<String> {
        match self.0.get(key)? {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        }
    }

    pub(crate) fn bool(&self, key: &str) -> bool {
        match self.0.get(key) {
            Some(Value::Bool(b)) => *b,
            Some(Value::String(s)) => s == "true" || s == "1",
            _ => false,
        }
    }
}

/// Handles `/bot<token>/<method>`.
pub(crate) async fn bot_api(state: &Shared, token: &str, method: &str, params: Params) -> Answer {
    let method = method.to_ascii_lowercase();
    // Network delay and injected faults, before the arrival is timed.
    let delay = {
        let mut s = state.lock();
        let (mean, jitter) = s.faults.latency_ms;
        let r = s.random();
        Duration::from_secs_f64((mean as f64 + (r * 2.0 - 1.0) * jitter as f64).max(0.0) / 1e3)
    };
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let now = Instant::now();
    if token_bot_id(token).is_none() {
        return Answer::error(401, "Unauthorized: invalid token specified");
    }
    if method == "getupdates" {
        if !state.lock().bots.contains_key(token) {
            return Answer::error(401, "Unauthorized");
        }
        return crate::methods::updates::get_updates(state, token, &params).await;
    }
    answer_now(state, token, &method, &params, now)
}

/// Every method but `getUpdates`, under the lock, without waiting.
fn answer_now(state: &Shared, token: &str, method: &str, params: &Params, now: Instant) -> Answer {
    let mut s = state.lock();
    let Some(bot_id) = s.bots.get(token).map(|b| b.user.id) else {
        return Answer::error(401, "Unauthorized");
    };
    if s.faults.restart_burst > 0 {
        s.faults.restart_burst -= 1;
        let answer = Answer::error(500, "Internal Server Error: restart");
        let reply = crate::methods::Reply::from(answer);
        log(&mut s, now, bot_id, method, &reply);
        return reply.answer;
    }
    let reply = crate::methods::call(&mut s, token, method, params, now);
    log(&mut s, now, bot_id, method, &reply);
    let answer = reply.answer;
    if method == "setwebhook" && answer.status == StatusCode::OK {
        if let Some(w) = &s.bots[token].webhook {
            tokio::spawn(deliver(state.clone(), token.to_owned(), w.generation));
        }
    }
    answer
}

/// Delivers `token`'s updates to its webhook: one update per POST with
/// the secret header, up to the webhook's `max_connections` at once, but a
/// chat's updates one at a time and oldest first. An update the webhook
/// does not answer with 2xx is sent again after a growing pause of all
/// deliveries. Stops when the webhook changes.
async fn deliver(state: Shared, token: String, generation: u64) {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap_or_default();
    let wake = match state.lock().bots.get(&token) {
        Some(b) => b.wake.clone(),
        None => return,
    };
    let mut posts = tokio::task::JoinSet::new();
    let mut in_flight = std::collections::HashSet::new();
    let mut retry = WEBHOOK_FIRST_RETRY;
    let mut paused_until: Option<Instant> = None;
    loop {
        let notified = wake.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let (url, secret, starts) = {
            let s = state.lock();
            let Some(b) = s.bots.get(&token) else { return };
            let w = match &b.webhook {
                Some(w) if w.generation == generation => w,
                _ => return,
            };
            let mut starts = Vec::new();
            if paused_until.is_none() {
                let free = (w.max_connections as usize).saturating_sub(in_flight.len());
                // A chat whose older update is still pending waits for it.
                let mut chats_seen = std::collections::HashSet::new();
                for u in &b.updates {
                    if starts.len() >= free {
                        break;
                    }
                    let id = u["update_id"].as_i64().unwrap_or(0);
                    let first_of_chat = update_chat(u).is_none_or(|c| chats_seen.insert(c));
                    if first_of_chat && !in_flight.contains(&id) {
                        starts.push((id, u.clone()));
                    }
                }
            }
            (w.url.clone(), w.secret_token.clone(), starts)
        };
        if !is_loopback_url(&url) {
            // Never any traffic off this machine: the updates stay pending.
            tracing::warn!(bot = %token_bot_id(&token).unwrap_or(0), "webhook is not on loopback; the emulator does not deliver to it");
            return;
        }
        for (id, update) in starts {
            in_flight.insert(id);
            let mut request = client.post(&url).json(&update);
            if let Some(secret) = &secret {
                request = request.header("X-Telegram-Bot-Api-Secret-Token", secret);
            }
            posts.spawn(async move {
                let ok = request.send().await.is_ok_and(|r| r.status().is_success());
                (id, ok)
            });
        }
        tokio::select! {
            Some(done) = posts.join_next(), if !posts.is_empty() => {
                let Ok((id, ok)) = done else { continue };
                in_flight.remove(&id);
                if ok {
                    retry = WEBHOOK_FIRST_RETRY;
                    let mut s = state.lock();
                    if let Some(b) = s.bots.get_mut(&token) {
                        if let Some(i) = b.updates.iter().position(|u| u["update_id"].as_i64() == Some(id)) {
                            b.updates.remove(i);
                        }
                    }
                } else {
                    paused_until = Some(Instant::now() + retry);
                    retry = (retry * 2).min(WEBHOOK_MAX_RETRY);
                }
            }
            () = tokio::time::sleep_until(paused_until.unwrap_or_else(Instant::now)), if paused_until.is_some() => {
                paused_until = None;
            }
            () = &mut notified => {}
        }
    }
}

/// The chat an update belongs to, for keeping a chat's updates in order.
fn update_chat(update: &Value) -> Option<i64> {
    let body = update.as_object()?.values().find(|v| v.is_object())?;
    body["chat"]["id"]
        .as_i64()
        .or_else(|| body["message"]["chat"]["id"].as_i64())
        .or_else(|| body["from"]["id"].as_i64())
}

/// The call log's line for `reply`.
fn log(s: &mut State, now: Instant, bot_id: i64, method: &str, reply: &crate::methods::Reply) {
    let seq = s.log.len() as u64;
    let at_ms = s.at_ms(now);
    s.log.push(LogEntry {
        seq,
        at_ms,
        bot_id,
        method: method.to_owned(),
        chat_id: reply.chat,
        text: reply.text.clone(),
        status: reply.answer.status.as_u16(),
        scope: reply.scope,
        retry_after: reply.answer.retry_after,
    });
}
