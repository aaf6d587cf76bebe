//! The Bot API as a worker sees it: each call is an action sent to the
//! supervisor, and its result comes back.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use botfleet_protocol::{Action, ActionResult, Json, Message, PRIORITY_PARAM};
use botfleet_telegram::types::Message as TgMessage;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::{mpsc, oneshot};

/// A failed Bot API call, as Telegram (or the supervisor) described it.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{method}: {description} ({code})")]
#[non_exhaustive]
pub struct ApiError {
    /// The method called.
    pub method: String,
    /// Telegram's `error_code` (0 when the call never reached Telegram).
    pub code: i64,
    /// Telegram's `description`, or what went wrong.
    pub description: String,
    /// For a group upgraded to a supergroup: the new chat id.
    pub migrate_to_chat_id: Option<i64>,
}

/// Broadcast sends waiting for their result at once.
const BROADCAST_IN_FLIGHT: usize = 256;

/// What [`Api::broadcast`] did.
#[derive(Clone, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct BroadcastReport {
    /// Chats it was asked to send to.
    pub total: usize,
    /// Delivered.
    pub delivered: usize,
    /// The chats that failed and why, by chat id.
    pub failed: Vec<(i64, ApiError)>,
}

/// The Bot API through the supervisor. Cheap to clone.
#[derive(Clone)]
pub struct Api {
    inner: Arc<Inner>,
}

struct Inner {
    outbox: mpsc::UnboundedSender<Message>,
    next: AtomicU64,
    /// Calls answered, and the time spent waiting for them, µs.
    calls: AtomicU64,
    wait_us: AtomicU64,
    pending: Mutex<Option<HashMap<u64, oneshot::Sender<ActionResult>>>>,
}

impl std::fmt::Debug for Api {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Api").finish_non_exhaustive()
    }
}

impl Api {
    pub(crate) fn new(outbox: mpsc::UnboundedSender<Message>) -> Api {
        Api {
            inner: Arc::new(Inner {
                outbox,
                next: AtomicU64::new(1),
                calls: AtomicU64::new(0),
                wait_us: AtomicU64::new(0),
                pending: Mutex::new(Some(HashMap::new())),
            }),
        }
    }

    /// Calls `method` with `params`; the supervisor sends it through the
    /// bot's limiter (sends) or straight (other methods), with retries.
    pub async fn call<P: Serialize + ?Sized, R: DeserializeOwned>(
        &self,
        method: &str,
        params: &P,
    ) -> Result<R, ApiError> {
        let fail = |code, description: String| ApiError {
            method: method.to_owned(),
            code,
            description,
            migrate_to_chat_id: None,
        };
        let request_id = self.inner.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        {
            let mut pending = self.inner.pending.lock();
            let Some(pending) = pending.as_mut() else {
                return Err(fail(0, "the worker is shutting down".into()));
            };
            pending.insert(request_id, tx);
        }
        let action = Action {
            request_id,
            method: method.to_owned(),
            params: Json::from_value(params),
        };
        if self
            .inner
            .outbox
            .send(Message::Actions(vec![action]))
            .is_err()
        {
            return Err(fail(0, "the connection to the supervisor is closed".into()));
        }
        let started = tokio::time::Instant::now();
        let result = rx.await.map_err(|_| {
            fail(
                0,
                "the connection to the supervisor closed before the result came".into(),
            )
        })?;
        self.inner.calls.fetch_add(1, Ordering::Relaxed);
        self.inner
            .wait_us
            .fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
        if result.ok {
            result
                .body
                .deserialize()
                .map_err(|e| fail(0, format!("unexpected result: {e}")))
        } else {
            #[derive(serde::Deserialize)]
            struct Failure {
                #[serde(default)]
                error_code: i64,
                #[serde(default)]
                description: String,
                #[serde(default)]
                parameters: Option<Parameters>,
            }
            #[derive(serde::Deserialize)]
            struct Parameters {
                migrate_to_chat_id: Option<i64>,
            }
            let f: Failure = result
                .body
                .deserialize()
                .map_err(|e| fail(0, format!("unexpected error body: {e}")))?;
            Err(ApiError {
                method: method.to_owned(),
                code: f.error_code,
                description: f.description,
                migrate_to_chat_id: f.parameters.and_then(|p| p.migrate_to_chat_id),
            })
        }
    }

    /// `sendMessage` with a plain text.
    pub async fn send_message(&self, chat_id: i64, text: &str) -> Result<TgMessage, ApiError> {
        self.call(
            "sendMessage",
            &serde_json::json!({ "chat_id": chat_id, "text": text }),
        )
        .await
    }

    /// Sends each chat its text as a broadcast: at the limiter's broadcast
    /// priority in the supervisor (replies to users go first), up to
    /// `BROADCAST_IN_FLIGHT` sends waiting at once; returns when every send
    /// has an answer, with what was delivered and what failed.
    pub async fn broadcast(&self, messages: Vec<(i64, String)>) -> BroadcastReport {
        let total = messages.len();
        let room = Arc::new(tokio::sync::Semaphore::new(BROADCAST_IN_FLIGHT));
        let mut sends = tokio::task::JoinSet::new();
        for (chat, text) in messages {
            let Ok(permit) = room.clone().acquire_owned().await else {
                break;
            };
            let api = self.clone();
            sends.spawn(async move {
                let params = serde_json::json!({
                    "chat_id": chat,
                    "text": text,
                    PRIORITY_PARAM: "broadcast",
                });
                let result = api
                    .call::<_, serde_json::Value>("sendMessage", &params)
                    .await;
                drop(permit);
                (chat, result)
            });
        }
        let mut results = Vec::with_capacity(total);
        while let Some(done) = sends.join_next().await {
            if let Ok(r) = done {
                results.push(r);
            }
        }
        let mut report = BroadcastReport {
            total,
            ..BroadcastReport::default()
        };
        for (chat, result) in results {
            match result {
                Ok(_) => report.delivered += 1,
                Err(e) => report.failed.push((chat, e)),
            }
        }
        report.failed.sort_by_key(|(chat, _)| *chat);
        report
    }

    /// Calls answered so far, and the time spent waiting for them, µs.
    pub(crate) fn totals(&self) -> (u64, u64) {
        (
            self.inner.calls.load(Ordering::Relaxed),
            self.inner.wait_us.load(Ordering::Relaxed),
        )
    }

    /// Hands each result to the call waiting for it.
    pub(crate) fn resolve(&self, results: Vec<ActionResult>) {
        let mut pending = self.inner.pending.lock();
        let Some(pending) = pending.as_mut() else {
            return;
        };
        for r in results {
            match pending.remove(&r.request_id) {
                Some(tx) => {
                    let _ = tx.send(r);
                }
                None => tracing::warn!(
                    request_id = r.request_id,
                    "a result for no call in flight; ignored"
                ),
            }
        }
    }

    /// Fails every call in flight, and every later one.
    pub(crate) fn close(&self) {
        self.inner.pending.lock().take();
    }
}
