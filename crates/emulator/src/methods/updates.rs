//! `getUpdates`: long polling as the real server does it (a repeated
//! offset slows the client, a newer poll ends an older one, 409s are
//! spaced).

use std::sync::atomic::Ordering;
use std::time::Duration;

use serde_json::Value;
use tokio::time::Instant;

use crate::server::{Answer, MAX_POLL_TIMEOUT, Params, Shared};

/// A repeated offset within this long gets a poll of at least this long.
const REPEAT_SLOW: Duration = Duration::from_secs(3);
/// A repeated offset within this long gets one update at most.
const REPEAT_ONE: Duration = Duration::from_millis(500);
/// The real server answers one 409 per bot in this long; later ones wait.
const CONFLICT_SPACING: Duration = Duration::from_secs(3);

/// A 409 answer, after the wait that spaces a bot's 409s.
async fn conflict(state: &Shared, token: &str, description: &str) -> Answer {
    let at = {
        let mut s = state.lock();
        let Some(b) = s.bots.get_mut(token) else {
            return Answer::error(401, "Unauthorized");
        };
        let now = Instant::now();
        let at = b.next_conflict.map_or(now, |t| t.max(now));
        b.next_conflict = Some(at + CONFLICT_SPACING);
        at
    };
    tokio::time::sleep_until(at).await;
    Answer::error(409, description)
}

/// Answers a `getUpdates`: at once when updates wait, else when one
/// arrives or the timeout passes.
pub(crate) async fn get_updates(state: &Shared, token: &str, p: &Params) -> Answer {
    let offset = p.i64("offset").unwrap_or(0);
    let mut limit = p.i64("limit").unwrap_or(100).clamp(1, 100) as usize;
    let mut timeout = Duration::from_secs(
        p.i64("timeout")
            .unwrap_or(0)
            .clamp(0, MAX_POLL_TIMEOUT as i64) as u64,
    );
    let now = Instant::now();
    let polling = {
        let mut s = state.lock();
        let b = s.bots.get_mut(token).expect("checked");
        if b.webhook.is_some() {
            None
        } else {
            // The real server slows a client that repeats an offset: within
            // 3 s a short poll becomes a 3-s poll, within 0.5 s it gets one
            // update at most.
            if let Some((last, at)) = b.last_poll {
                let since = now.saturating_duration_since(at);
                if last == offset && since < REPEAT_SLOW {
                    timeout = timeout.max(REPEAT_SLOW);
                }
                if last == offset && since < REPEAT_ONE {
                    limit = 1;
                }
            }
            b.last_poll = Some((offset, now));
            // This poll ends any older one.
            let mine = b.poll_generation.fetch_add(1, Ordering::SeqCst) + 1;
            b.wake.notify_waiters();
            // Confirm: updates below the offset are forgotten; a negative
            // offset keeps only the last -offset.
            if offset > 0 {
                while b
                    .updates
                    .front()
                    .is_some_and(|u| u["update_id"].as_i64().unwrap_or(0) < offset)
                {
                    b.updates.pop_front();
                }
            } else if offset < 0 {
                let keep = offset.unsigned_abs() as usize;
                while b.updates.len() > keep {
                    b.updates.pop_front();
                }
            }
            Some((b.poll_generation.clone(), mine, b.wake.clone()))
        }
    };
    let Some((generation, my_generation, wake)) = polling else {
        return conflict(
            state,
            token,
            "Conflict: can't use getUpdates method while webhook is active; use deleteWebhook to delete the webhook first",
        )
        .await;
    };
    let deadline = now + timeout;
    loop {
        let notified = wake.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let terminated_by = {
            let s = state.lock();
            let b = &s.bots[token];
            if generation.load(Ordering::SeqCst) != my_generation {
                if b.webhook.is_some() {
                    "setWebhook request"
                } else {
                    "other getUpdates request; make sure that only one bot instance is running"
                }
            } else {
                let ready: Vec<Value> = b.updates.iter().take(limit).cloned().collect();
                if !ready.is_empty() || Instant::now() >= deadline {
                    return Answer::ok(Value::Array(ready));
                }
                ""
            }
        };
        if !terminated_by.is_empty() {
            return conflict(
                state,
                token,
                &format!("Conflict: terminated by {terminated_by}"),
            )
            .await;
        }
        if tokio::time::timeout_at(deadline, notified).await.is_err() {
            // Timed out: answer with what there is (nothing).
            let s = state.lock();
            if generation.load(Ordering::SeqCst) == my_generation {
                let ready: Vec<Value> = s.bots[token].updates.iter().take(limit).cloned().collect();
                return Answer::ok(Value::Array(ready));
            }
        }
    }
}
