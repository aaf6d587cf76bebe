//! Ingest by long polling: one `getUpdates` consumer per token. A batch's
//! offset is confirmed (by asking for the next batch) only when every
//! update of it was acked by a worker (invariant 1).

use std::sync::Arc;
use std::time::Duration;

use botfleet_protocol::Json;
use botfleet_telegram::ErrorKind;
use serde_json::Value;
use tokio::sync::{oneshot, watch};

use crate::bot::{BotCtx, Event};

/// The long poll's timeout, in seconds (the real server allows up to 50).
const POLL_TIMEOUT: u32 = 25;
/// Updates per `getUpdates`.
const POLL_LIMIT: u32 = 100;

/// Polls until `stop` turns true, then waits (within `grace`) for the batch
/// in hand to be acked and confirms it. Returns the offset confirmed last.
pub(crate) async fn poll(
    bot: Arc<BotCtx>,
    mut stop: watch::Receiver<bool>,
    grace: Duration,
) -> i64 {
    let mut offset: i64 = 0;
    let mut backoff = Duration::from_secs(1);
    loop {
        if *stop.borrow() {
            break;
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
        let (done, mut acked) = oneshot::channel();
        bot.send(Event::Batch { updates, done });
        let finished = tokio::select! {
            r = &mut acked => r.is_ok(),
            // Shutting down: the batch in hand gets the grace period.
            _ = stop.changed() => matches!(tokio::time::timeout(grace, &mut acked).await, Ok(Ok(()))),
        };
        if !finished {
            // Not all acked: those updates stay unconfirmed, and Telegram
            // gives them again to the next run.
            break;
        }
        offset = next;
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
