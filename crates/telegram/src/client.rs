//! The transport: one HTTP connection pool per client, the error envelope,
//! retries, and every send through the limiter.

use std::sync::Arc;
use std::time::Duration;

use frankenstein::methods as m;
use frankenstein::types::{ChatFullInfo, ChatId, ChatMember, Message, MessageId, User};
use frankenstein::updates::Update;
use frankenstein::updates::WebhookInfo;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::Semaphore;

use crate::error::{Error, ErrorKind, classify};
use crate::limiter::{ChatKey, Limiter, Limits, Priority};
use crate::metrics as mx;
use crate::shared::SharedBudget;

/// Telegram's API.
pub const TELEGRAM_API: &str = "https://api.telegram.org";

/// A Bot API client for one bot token. Cheap to clone: clones share the
/// connection pool and the limiter.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    /// `<base>/bot<token>/`: never printed.
    prefix: String,
    limiter: Limiter,
    in_flight: Semaphore,
    retry: Retry,
    timeout: Duration,
    bot: String,
    shared: Option<Arc<SharedBudget>>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("bot", &self.inner.bot)
            .finish_non_exhaustive()
    }
}

/// How failed calls are tried again.
#[derive(Clone, Copy, Debug)]
struct Retry {
    /// Attempts for server errors and failed connections.
    attempts: u32,
    first: Duration,
    cap: Duration,
}

/// Builds a [`Client`].
#[must_use]
pub struct ClientBuilder {
    token: String,
    base_url: String,
    limits: Limits,
    bot: String,
    timeout: Duration,
    max_in_flight: usize,
    attempts: u32,
    first_backoff: Duration,
    shared: Option<Arc<SharedBudget>>,
}

impl std::fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientBuilder")
            .field("base_url", &self.base_url)
            .field("bot", &self.bot)
            .finish_non_exhaustive()
    }
}

impl ClientBuilder {
    /// The API's base URL: Telegram's by default, or the emulator's.
    pub fn base_url(mut self, url: impl Into<String>) -> Self {
        self.base_url = url.into().trim_end_matches('/').to_owned();
        self
    }

    /// Everything `[telegram]` sets: the base URL, the timeout, calls in
    /// flight, retries and the send limits.
    pub fn config(self, config: &botfleet_config::TelegramConfig) -> Self {
        self.base_url(config.api_url.clone())
            .timeout(config.timeout)
            .max_in_flight(config.max_in_flight as usize)
            .retries(config.attempts, config.first_backoff)
            .limits(config.limits)
    }

    /// The send limits (Telegram's Bots FAQ by default).
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// The `bot` label of the metrics and logs (never the token).
    pub fn bot(mut self, bot: impl Into<String>) -> Self {
        self.bot = bot.into();
        self
    }

    /// The longest a call may take (long polls get their own timeout on
    /// top). Default 30 s.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Calls in flight at once for this token. Default 64.
    pub fn max_in_flight(mut self, n: usize) -> Self {
        self.max_in_flight = n.max(1);
        self
    }

    /// Attempts for a call that fails with a server error or a failed
    /// connection, and the first wait between them (doubling, with jitter,
    /// up to 30 s). Default 8 attempts from 500 ms.
    pub fn retries(mut self, attempts: u32, first_backoff: Duration) -> Self {
        self.attempts = attempts.max(1);
        self.first_backoff = first_backoff;
        self
    }

    /// Share the token's send budget with the other processes that send for
    /// it, through Redis ([`SharedBudget`]).
    pub fn shared_budget(mut self, budget: SharedBudget) -> Self {
        self.shared = Some(Arc::new(budget));
        self
    }

    /// The client. It must be built inside a Tokio runtime (the limiter's
    /// scheduler runs there).
    pub fn build(self) -> Result<Client, Error> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .pool_idle_timeout(Duration::from_secs(90))
            .build()
            .map_err(|e| Error {
                method: "(client)".to_owned(),
                kind: ErrorKind::Transport(e.without_url().to_string()),
            })?;
        Ok(Client {
            inner: Arc::new(Inner {
                http,
                prefix: format!("{}/bot{}/", self.base_url, self.token),
                limiter: Limiter::new(self.limits),
                in_flight: Semaphore::new(self.max_in_flight),
                retry: Retry {
                    attempts: self.attempts,
                    first: self.first_backoff,
                    cap: Duration::from_secs(30),
                },
                timeout: self.timeout,
                bot: self.bot,
                shared: self.shared,
            }),
        })
    }
}

/// The Bot API's answer envelope.
#[derive(serde::Deserialize)]
struct Envelope<R> {
    ok: bool,
    result: Option<R>,
    description: Option<String>,
    error_code: Option<u16>,
    parameters: Option<Parameters>,
}

#[derive(serde::Deserialize)]
struct Parameters {
    retry_after: Option<u64>,
    migrate_to_chat_id: Option<i64>,
}

impl Client {
    /// A client for `token` (use `${VAR}` in fleet.toml; the token is never
    /// printed).
    pub fn builder(token: impl Into<String>) -> ClientBuilder {
        ClientBuilder {
            token: token.into(),
            base_url: TELEGRAM_API.to_owned(),
            limits: Limits::default(),
            bot: "-".to_owned(),
            timeout: Duration::from_secs(30),
            max_in_flight: 64,
            attempts: 8,
            first_backoff: Duration::from_millis(500),
            shared: None,
        }
    }

    /// Exports the limiter's queue depth by priority and the 429s by scope
    /// through the `metrics` facade (call it every second; calls, retries,
    /// in-flight and limiter waits are recorded as they happen).
    pub fn report_metrics(&self) {
        mx::report(&self.inner.bot, &self.inner.limiter);
    }

    /// The `bot` label of this client.
    pub fn bot(&self) -> &str {
        &self.inner.bot
    }

    /// The limiter every send of this client passes through.
    pub fn limiter(&self) -> &Limiter {
        &self.inner.limiter
    }

    /// One HTTP request and its envelope; no retries.
    async fn post<P: Serialize + ?Sized, R: DeserializeOwned>(
        &self,
        method: &str,
        params: &P,
        timeout: Duration,
    ) -> Result<R, Error> {
        let fail = |kind| Error {
            method: method.to_owned(),
            kind,
        };
        let _slot = self
            .inner
            .in_flight
            .acquire()
            .await
            .map_err(|_| fail(ErrorKind::Transport("client closed".into())))?;
        mx::in_flight(&self.inner.bot, 1.0);
        let began = tokio::time::Instant::now();
        let sent = self
            .inner
            .http
            .post(format!("{}{method}", self.inner.prefix))
            .json(params)
            .timeout(timeout)
            .send()
            .await;
        mx::in_flight(&self.inner.bot, -1.0);
        mx::duration(&self.inner.bot, method, began.elapsed());
        let response = sent.map_err(|e| {
            // reqwest puts the URL, and so the token, in its messages.
            let e = e.without_url();
            fail(if e.is_timeout() {
                ErrorKind::Timeout(timeout)
            } else if e.is_connect() {
                ErrorKind::Connect(e.to_string())
            } else {
                ErrorKind::Transport(e.to_string())
            })
        })?;
        let status = response.status().as_u16();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| fail(ErrorKind::Transport(e.without_url().to_string())))?;
        let envelope: Envelope<R> = serde_json::from_slice(&bytes).map_err(|e| {
            fail(if status >= 500 {
                ErrorKind::Server {
                    code: status,
                    description: "no JSON answer".into(),
                }
            } else {
                ErrorKind::Decode(format!("HTTP {status}: {e}"))
            })
        })?;
        match (envelope.ok, envelope.result) {
            (true, Some(result)) => Ok(result),
            (true, None) => Err(fail(ErrorKind::Decode("ok without a result".into()))),
            (false, _) => {
                let p = envelope.parameters;
                Err(fail(classify(
                    envelope.error_code.unwrap_or(status),
                    envelope.description.as_deref().unwrap_or(""),
                    p.as_ref().and_then(|p| p.retry_after),
                    p.as_ref().and_then(|p| p.migrate_to_chat_id),
                )))
            }
        }
    }

    fn backoff(&self, attempt: u32) -> Duration {
        let r = self.inner.retry;
        let base = r.first.saturating_mul(1 << attempt.min(16)).min(r.cap);
        // Full jitter: anywhere in (base/2, base].
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        base / 2 + base.mul_f64(f64::from(nanos % 1000) / 2000.0)
    }

    /// Any method, outside the limiter: 429s are waited out, server errors
    /// and failed connections retried with backoff; for reads and calls that
    /// send nothing to a chat.
    pub async fn call<P: Serialize + ?Sized, R: DeserializeOwned>(
        &self,
        method: &str,
        params: &P,
    ) -> Result<R, Error> {
        self.call_with_timeout(method, params, self.inner.timeout)
            .await
    }

    async fn call_with_timeout<P: Serialize + ?Sized, R: DeserializeOwned>(
        &self,
        method: &str,
        params: &P,
        timeout: Duration,
    ) -> Result<R, Error> {
        let mut attempt = 0;
        loop {
            let result = self.post(method, params, timeout).await;
            mx::call(&self.inner.bot, method, &result);
            match result {
                Err(Error {
                    kind: ErrorKind::RetryAfter(d),
                    ..
                }) => {
                    mx::retry(&self.inner.bot, "retry_after");
                    tokio::time::sleep(d).await;
                }
                Err(e) if e.is_retryable() && attempt + 1 < self.inner.retry.attempts => {
                    mx::retry(&self.inner.bot, "error");
                    tokio::time::sleep(self.backoff(attempt)).await;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    /// A send to `chat`: through the limiter at `priority`; a 429 is obeyed
    /// and the send tried again (never dropped); server errors and failed
    /// connections are retried with backoff. A timeout is returned, not
    /// retried: the message may have been sent, and a retry could send it
    /// twice.
    pub async fn send<P: Serialize + ?Sized, R: DeserializeOwned>(
        &self,
        method: &str,
        chat: &ChatId,
        priority: Priority,
        paid: bool,
        params: &P,
    ) -> Result<R, Error> {
        let key = match chat {
            ChatId::Integer(id) => ChatKey::Id(*id),
            ChatId::String(name) => ChatKey::Username(name.clone()),
        };
        let mut attempt = 0;
        loop {
            let waited = tokio::time::Instant::now();
            let permit = self
                .inner
                .limiter
                .acquire(key.clone(), priority, paid)
                .await;
            let place = match &self.inner.shared {
                Some(budget) => budget.take(&key, paid).await.map(|p| (budget, p)),
                None => None,
            };
            mx::limiter_wait(&self.inner.bot, priority, waited.elapsed());
            let result = self.post(method, params, self.inner.timeout).await;
            mx::call(&self.inner.bot, method, &result);
            if let Some((budget, place)) = place {
                // A 429 or an error before Telegram took the message does
                // not count; an answer, or no answer, does.
                let counted = match &result {
                    Ok(_) => true,
                    Err(e) => matches!(e.kind, ErrorKind::Timeout(_) | ErrorKind::Transport(_)),
                };
                budget.finish(place, counted).await;
            }
            match result {
                Ok(r) => {
                    permit.accepted();
                    return Ok(r);
                }
                Err(Error {
                    kind: ErrorKind::RetryAfter(d),
                    ..
                }) => {
                    mx::retry(&self.inner.bot, "retry_after");
                    tracing::warn!(bot = %self.inner.bot, method, retry_after_s = d.as_secs(), "429 from Telegram; waiting and sending again");
                    permit.refused(d);
                }
                Err(
                    e @ Error {
                        kind: ErrorKind::Timeout(_) | ErrorKind::Transport(_),
                        ..
                    },
                ) => {
                    permit.unknown();
                    return Err(e);
                }
                Err(e) if e.is_retryable() && attempt + 1 < self.inner.retry.attempts => {
                    permit.failed();
                    mx::retry(&self.inner.bot, "error");
                    tokio::time::sleep(self.backoff(attempt)).await;
                    attempt += 1;
                }
                Err(e) => {
                    permit.failed();
                    return Err(e);
                }
            }
        }
    }

    /// `getMe`.
    pub async fn get_me(&self) -> Result<User, Error> {
        self.call("getMe", &serde_json::json!({})).await
    }

    /// `getUpdates`; a long poll waits up to `params.timeout` seconds.
    pub async fn get_updates(&self, params: &m::GetUpdatesParams) -> Result<Vec<Update>, Error> {
        let poll = Duration::from_secs(u64::from(params.timeout.unwrap_or(0)));
        self.call_with_timeout("getUpdates", params, self.inner.timeout + poll)
            .await
    }

    /// `getUpdates` with the updates as Telegram sent them (the fleet's
    /// ingest forwards them to workers without re-serializing).
    /// `offset` confirms every update below it.
    pub async fn get_updates_raw(
        &self,
        offset: i64,
        limit: u32,
        timeout: u32,
    ) -> Result<Vec<Box<serde_json::value::RawValue>>, Error> {
        let params = serde_json::json!({ "offset": offset, "limit": limit, "timeout": timeout });
        let poll = Duration::from_secs(u64::from(timeout));
        self.call_with_timeout("getUpdates", &params, self.inner.timeout + poll)
            .await
    }

    /// `sendMessage`, as an interactive reply.
    pub async fn send_message(&self, params: &m::SendMessageParams) -> Result<Message, Error> {
        self.send_message_as(params, Priority::Interactive).await
    }

    /// `sendMessage` at `priority`.
    pub async fn send_message_as(
        &self,
        params: &m::SendMessageParams,
        priority: Priority,
    ) -> Result<Message, Error> {
        let paid = params.allow_paid_broadcast == Some(true);
        self.send("sendMessage", &params.chat_id, priority, paid, params)
            .await
    }

    /// `editMessageText` (edits count toward the chat's limit too).
    pub async fn edit_message_text(
        &self,
        params: &m::EditMessageTextParams,
    ) -> Result<serde_json::Value, Error> {
        match &params.chat_id {
            Some(chat) => {
                self.send(
                    "editMessageText",
                    chat,
                    Priority::Interactive,
                    false,
                    params,
                )
                .await
            }
            None => self.call("editMessageText", params).await,
        }
    }

    /// `sendPhoto` by file id or URL.
    pub async fn send_photo(&self, params: &m::SendPhotoParams) -> Result<Message, Error> {
        if matches!(
            params.photo,
            frankenstein::input_file::FileUpload::InputFile(_)
        ) {
            return Err(Error {
                method: "sendPhoto".into(),
                kind: ErrorKind::Unsupported(
                    "uploading a file is not supported yet: send a file id or an URL".into(),
                ),
            });
        }
        let paid = params.allow_paid_broadcast == Some(true);
        self.send(
            "sendPhoto",
            &params.chat_id,
            Priority::Interactive,
            paid,
            params,
        )
        .await
    }

    /// `forwardMessage`.
    pub async fn forward_message(
        &self,
        params: &m::ForwardMessageParams,
    ) -> Result<Message, Error> {
        self.send(
            "forwardMessage",
            &params.chat_id,
            Priority::Interactive,
            false,
            params,
        )
        .await
    }

    /// `copyMessage`.
    pub async fn copy_message(&self, params: &m::CopyMessageParams) -> Result<MessageId, Error> {
        let paid = params.allow_paid_broadcast == Some(true);
        self.send(
            "copyMessage",
            &params.chat_id,
            Priority::Interactive,
            paid,
            params,
        )
        .await
    }

    /// `deleteMessage` (not limited).
    pub async fn delete_message(&self, params: &m::DeleteMessageParams) -> Result<bool, Error> {
        self.call("deleteMessage", params).await
    }

    /// `answerCallbackQuery` (not limited).
    pub async fn answer_callback_query(
        &self,
        params: &m::AnswerCallbackQueryParams,
    ) -> Result<bool, Error> {
        self.call("answerCallbackQuery", params).await
    }

    /// `getChat`.
    pub async fn get_chat(&self, params: &m::GetChatParams) -> Result<ChatFullInfo, Error> {
        self.call("getChat", params).await
    }

    /// `getChatMember`.
    pub async fn get_chat_member(
        &self,
        params: &m::GetChatMemberParams,
    ) -> Result<ChatMember, Error> {
        self.call("getChatMember", params).await
    }

    /// `getChatMemberCount`.
    pub async fn get_chat_member_count(
        &self,
        params: &m::GetChatMemberCountParams,
    ) -> Result<u32, Error> {
        self.call("getChatMemberCount", params).await
    }

    /// `getChatAdministrators`.
    pub async fn get_chat_administrators(
        &self,
        params: &m::GetChatAdministratorsParams,
    ) -> Result<Vec<ChatMember>, Error> {
        self.call("getChatAdministrators", params).await
    }

    /// `setWebhook`.
    pub async fn set_webhook(&self, params: &m::SetWebhookParams) -> Result<bool, Error> {
        self.call("setWebhook", params).await
    }

    /// `deleteWebhook`.
    pub async fn delete_webhook(&self, params: &m::DeleteWebhookParams) -> Result<bool, Error> {
        self.call("deleteWebhook", params).await
    }

    /// `getWebhookInfo`.
    pub async fn get_webhook_info(&self) -> Result<WebhookInfo, Error> {
        self.call("getWebhookInfo", &serde_json::json!({})).await
    }
}
