//! Ingest by long polling (one `getUpdates` consumer per token) or by
//! webhook. Every update is written to the bot's journal before its offset
//! is confirmed (by asking for the next batch) or its webhook request is
//! answered (invariant 1); ingest then goes on at once, whatever the
//! workers are doing, until the journal is full.

use std::sync::Arc;
use std::time::Duration;

use botfleet_protocol::Json;
use botfleet_telegram::ErrorKind;
use serde_json::Value;
use tokio::sync::watch;

use crate::bot::{BotCtx, Event};

/// The long poll's timeout, in seconds (the real server allows up to 50).
const POLL_TIMEOUT: u32 = 25;
/// Updates per `getUpdates`.
pub(crate) const POLL_LIMIT: u32 = 100;

/// Polls from `offset` until `stop` turns true; returns the offset to
/// confirm (everything below it is in the journal).
pub(crate) async fn poll(
    bot: Arc<BotCtx>,
    mut stop: watch::Receiver<bool>,
    mut offset: i64,
) -> i64 {
    let mut backoff = Duration::from_secs(1);
    loop {
        if *stop.borrow() {
            break;
        }
        // A full journal holds ingest back until acks make room.
        if bot.journal.depth() >= crate::journal::MAX_DEPTH {
            tracing::warn!(bot = %bot.name, depth = bot.journal.depth(), "the journal is full; ingest waits for the workers");
        }
        tokio::select! {
            () = bot.journal.room() => {}
            _ = stop.changed() => break,
        }
        let result = tokio::select! {
            r = bot.client.get_updates_raw(offset, POLL_LIMIT, POLL_TIMEOUT) => r,
            _ = stop.changed() => break,
        };
        let raw = match result {
            Ok(raw) => {
                backoff = Duration::from_secs(1);
                raw
            }
            Err(e) => {
                let conflict = matches!(e.kind, ErrorKind::Conflict(_));
                if conflict {
                    metrics::counter!("botfleet_ingest_conflicts_total", "bot" => bot.name.clone())
                        .increment(1);
                    tracing::error!(bot = %bot.name, "409 Conflict from getUpdates: another instance polls this token, or a webhook is set; retrying in {backoff:?} ({e})");
                } else {
                    tracing::warn!(bot = %bot.name, "getUpdates failed; retrying in {backoff:?}: {e}");
                }
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    _ = stop.changed() => break,
                }
                backoff = (backoff * 2).min(Duration::from_secs(30));
                continue;
            }
        };
        if raw.is_empty() {
            continue;
        }
        let mut updates = Vec::with_capacity(raw.len());
        let mut next = offset;
        for r in raw {
            let head: Value = match serde_json::from_str(r.get()) {
                Ok(v) => v,
                Err(_) => continue,
            };
            let Some(id) = head["update_id"].as_i64() else {
                tracing::error!(bot = %bot.name, "an update without update_id; skipped");
                continue;
            };
            next = next.max(id + 1);
            let key = crate::route::key(&head, id);
            updates.push((id, key, Json::from_raw(r)));
        }
        // Durable before the offset moves past it. A journal that cannot
        // be written keeps the updates at Telegram, to be fetched again.
        match bot.journal.append(updates).await {
            Ok(fresh) => {
                if !fresh.is_empty() {
                    bot.send(Event::Batch { updates: fresh });
                }
                offset = next;
            }
            Err(e) => {
                tracing::error!(bot = %bot.name, "cannot journal the updates; they stay at Telegram, retrying in {backoff:?}: {e}");
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    _ = stop.changed() => break,
                }
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        }
    }
    offset
}

/// Confirms every update below `offset` without taking new ones.
pub(crate) async fn confirm(bot: &BotCtx, offset: i64) {
    if offset <= 0 {
        return;
    }
    match bot.client.get_updates_raw(offset, 1, 0).await {
        Ok(_) => tracing::info!(bot = %bot.name, offset, "offset confirmed"),
        Err(e) => tracing::warn!(bot = %bot.name, offset, "cannot confirm the offset: {e}"),
    }
}

/// Why a webhook endpoint could not start.
#[derive(Debug, thiserror::Error)]
pub(crate) enum WebhookError {
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("setWebhook failed: {0}")]
    SetWebhook(botfleet_telegram::Error),
}

/// The webhook's shared state.
struct Hook {
    bot: Arc<BotCtx>,
    secret: String,
    stopping: watch::Receiver<bool>,
}

/// Starts the bot's webhook endpoint and registers it with `setWebhook`.
/// Each POST is answered 200 only once its update is in the journal
/// (invariant 1); a wrong or missing secret header gets 401, a body that is
/// not an update 400, both counted. Serves until `stop` turns true, then
/// lets the requests in hand finish.
pub(crate) async fn webhook(
    bot: Arc<BotCtx>,
    stop: watch::Receiver<bool>,
) -> Result<tokio::task::JoinHandle<()>, WebhookError> {
    let hook_config = bot
        .config
        .webhook
        .clone()
        .expect("a webhook bot has [bot.webhook]");
    let listener = tokio::net::TcpListener::bind(hook_config.listen)
        .await
        .map_err(|source| WebhookError::Listen {
            addr: hook_config.listen,
            source,
        })?;
    let state = Arc::new(Hook {
        bot: bot.clone(),
        secret: hook_config.secret_token.expose().clone(),
        stopping: stop.clone(),
    });
    let app = axum::Router::new()
        .fallback(axum::routing::post(receive))
        .with_state(state);
    let mut stop_serving = stop.clone();
    let server = tokio::spawn(async move {
        let shutdown = async move {
            let _ = stop_serving.wait_for(|s| *s).await;
        };
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
        {
            tracing::error!("the webhook endpoint failed: {e}");
        }
    });
    let params = serde_json::json!({
        "url": hook_config.url,
        "secret_token": hook_config.secret_token.expose(),
        "max_connections": 40,
    });
    bot.client
        .call::<_, bool>("setWebhook", &params)
        .await
        .map_err(WebhookError::SetWebhook)?;
    tracing::info!(bot = %bot.name, listen = %hook_config.listen, "webhook set");
    Ok(server)
}

async fn receive(
    axum::extract::State(hook): axum::extract::State<Arc<Hook>>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> axum::http::StatusCode {
    use axum::http::StatusCode;
    let bot = &hook.bot;
    let given = headers
        .get("x-telegram-bot-api-secret-token")
        .map(|v| v.as_bytes())
        .unwrap_or_default();
    if !constant_time_eq(given, hook.secret.as_bytes()) {
        metrics::counter!("botfleet_webhook_rejected_total", "bot" => bot.name.clone(), "reason" => "secret")
            .increment(1);
        tracing::warn!(bot = %bot.name, "a webhook request without the right secret token; refused");
        return StatusCode::UNAUTHORIZED;
    }
    if *hook.stopping.borrow() {
        // Telegram sends it again later, to the next run.
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    let text = match String::from_utf8(body.to_vec()) {
        Ok(t) => t,
        Err(_) => return bad_body(bot, "not UTF-8"),
    };
    let Ok(head) = serde_json::from_str::<Value>(&text) else {
        return bad_body(bot, "not JSON");
    };
    let Some(id) = head["update_id"].as_i64() else {
        return bad_body(bot, "no update_id");
    };
    let Ok(update) = Json::parse(text) else {
        return bad_body(bot, "not JSON");
    };
    let key = crate::route::key(&head, id);
    // A full journal: Telegram keeps the update and sends it again later.
    if bot.journal.depth() >= crate::journal::MAX_DEPTH {
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    match bot.journal.append(vec![(id, key, update)]).await {
        Ok(fresh) => {
            if !fresh.is_empty() {
                bot.send(Event::Batch { updates: fresh });
            }
            StatusCode::OK
        }
        Err(e) => {
            tracing::error!(bot = %bot.name, update = id, "cannot journal a webhook update; Telegram sends it again: {e}");
            StatusCode::SERVICE_UNAVAILABLE
        }
    }
}

fn bad_body(bot: &BotCtx, why: &str) -> axum::http::StatusCode {
    metrics::counter!("botfleet_webhook_rejected_total", "bot" => bot.name.clone(), "reason" => "body")
        .increment(1);
    tracing::warn!(bot = %bot.name, "a webhook body that is not an update ({why}); refused");
    axum::http::StatusCode::BAD_REQUEST
}

/// Compares without an early exit, so timing does not tell how much of a
/// guessed secret was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
