//! `setWebhook`, `deleteWebhook` and `getWebhookInfo`, with the real
//! server's checks (one `setWebhook` a second, the secret token's
//! alphabet).

use std::sync::atomic::Ordering;
use std::time::Duration;

use serde_json::json;
use tokio::time::Instant;

use super::Reply;
use crate::limits::Scope;
use crate::server::{Answer, Params, State, Webhook};

/// `setWebhook`; an empty URL deletes the webhook.
pub(super) fn set_webhook(s: &mut State, token: &str, p: &Params, now: Instant) -> Reply {
    let b = s.bots.get_mut(token).expect("checked");
    if b.last_set_webhook
        .is_some_and(|t| now.saturating_duration_since(t) < Duration::from_secs(1))
    {
        return Reply::from(Answer::too_many(1)).scope(Scope::Method);
    }
    b.last_set_webhook = Some(now);
    let Some(url) = p.str("url").filter(|u| !u.is_empty()) else {
        return delete_webhook(s, token, p).into();
    };
    let b = s.bots.get_mut(token).expect("checked");
    let max_connections = p.i64("max_connections").unwrap_or(40).clamp(1, 100) as u32;
    let secret_token = p.str("secret_token").filter(|t| !t.is_empty());
    if secret_token.as_ref().is_some_and(|t| {
        t.len() > 256
            || !t
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    }) {
        return Answer::error(
            400,
            "Bad Request: secret token contains unallowed characters",
        )
        .into();
    }
    let same = b.webhook.as_ref().is_some_and(|w| w.url == url);
    b.webhook_generation += 1;
    b.webhook = Some(Webhook {
        url,
        max_connections,
        secret_token,
        generation: b.webhook_generation,
    });
    if p.bool("drop_pending_updates") {
        b.updates.clear();
    }
    // A pending long poll is ended.
    b.poll_generation.fetch_add(1, Ordering::SeqCst);
    b.wake.notify_waiters();
    let description = if same {
        "Webhook is already set"
    } else {
        "Webhook was set"
    };
    Answer::ok_described(json!(true), description).into()
}

/// `deleteWebhook`, and what `setWebhook` with an empty URL does.
pub(super) fn delete_webhook(s: &mut State, token: &str, p: &Params) -> Answer {
    let b = s.bots.get_mut(token).expect("checked");
    if p.bool("drop_pending_updates") {
        b.updates.clear();
    }
    b.webhook_generation += 1;
    match b.webhook.take() {
        Some(_) => Answer::ok_described(json!(true), "Webhook was deleted"),
        None => Answer::ok_described(json!(true), "Webhook is already deleted"),
    }
}

/// `getWebhookInfo`.
pub(super) fn get_webhook_info(s: &State, token: &str) -> Answer {
    let b = &s.bots[token];
    let info = match &b.webhook {
        Some(w) => json!({
            "url": w.url,
            "has_custom_certificate": false,
            "pending_update_count": b.updates.len(),
            "max_connections": w.max_connections,
        }),
        None => {
            json!({ "url": "", "has_custom_certificate": false, "pending_update_count": b.updates.len() })
        }
    };
    Answer::ok(info)
}
