//! Telegram's send limits as strict sliding windows on the server's arrival
//! time: a send arriving at `t` is accepted if and only if the accepted
//! sends of each of its scopes in `(t - window, t]` stay within that scope's
//! limit. Rejected sends are not counted.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;

/// Telegram's limits (the Bots FAQ's by default), as the client's limiter
/// knows them.
pub use botfleet_config::{SendLimit as Limit, SendLimits as Limits};

/// Which limit a rejected send broke.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// The per-token limit.
    Token,
    /// The per-group limit.
    Group,
    /// The per-chat limit.
    Chat,
    /// Injected by a fault script.
    Injected,
    /// A method's own limit (`setWebhook`: once a second).
    Method,
}

/// Accepted send times per scope key, pruned to the longest window.
#[derive(Debug, Default)]
pub(crate) struct Windows {
    token: VecDeque<Instant>,
    chats: HashMap<i64, VecDeque<Instant>>,
}

impl Windows {
    /// Accepts `count` sends to `chat` at `now`, or names the scope that
    /// refuses them and how long until it would accept (at least 1 s, as
    /// Telegram's `retry_after` is a whole number of seconds).
    pub(crate) fn try_send(
        &mut self,
        limits: &Limits,
        chat: i64,
        count: u32,
        paid: bool,
        now: Instant,
    ) -> Result<(), (Scope, u64)> {
        let token_limit = if paid { limits.paid } else { limits.token };
        let chat_log = self.chats.entry(chat).or_default();
        let mut checks = vec![(Scope::Token, token_limit, &self.token)];
        if chat < 0 {
            checks.push((Scope::Group, limits.group, &*chat_log));
        }
        checks.push((Scope::Chat, limits.chat, &*chat_log));
        for (scope, limit, log) in checks {
            // An album counts item by item, but never needs more of a
            // scope than the whole limit: a chat takes 1 a second, and an
            // album of three must still go through.
            let count = count.min(limit.max);
            if let Some(wait) = wait_for(log, limit, count, now) {
                return Err((scope, wait.as_secs_f64().ceil().max(1.0) as u64));
            }
        }
        for _ in 0..count {
            self.token.push_back(now);
            chat_log.push_back(now);
        }
        let keep = limits.token.window.max(limits.paid.window);
        prune(&mut self.token, now, keep);
        let keep = limits.chat.window.max(limits.group.window);
        prune(chat_log, now, keep);
        Ok(())
    }
}

/// How long until `log` accepts `count` more under `limit`, if it does not
/// now.
fn wait_for(log: &VecDeque<Instant>, limit: Limit, count: u32, now: Instant) -> Option<Duration> {
    let start = now.checked_sub(limit.window);
    let in_window: Vec<&Instant> = log
        .iter()
        .filter(|&&t| start.is_none_or(|s| t > s))
        .collect();
    let used = in_window.len() as u64;
    if used + u64::from(count) <= u64::from(limit.max) {
        return None;
    }
    // The send fits once enough of the oldest sends in the window age out.
    let must_leave = (used + u64::from(count) - u64::from(limit.max)) as usize;
    let frees = in_window
        .get(must_leave - 1)
        .map_or(now, |&&t| t + limit.window);
    Some(frees.saturating_duration_since(now))
}

fn prune(log: &mut VecDeque<Instant>, now: Instant, keep: Duration) {
    if let Some(start) = now.checked_sub(keep) {
        while log.front().is_some_and(|&t| t <= start) {
            log.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_are_strict_and_name_their_scope() {
        let limits = Limits::default();
        let mut w = Windows::default();
        let t0 = Instant::now();
        // One per second per private chat.
        assert!(w.try_send(&limits, 7, 1, false, t0).is_ok());
        assert_eq!(
            w.try_send(&limits, 7, 1, false, t0 + Duration::from_millis(999)),
            Err((Scope::Chat, 1))
        );
        assert!(
            w.try_send(&limits, 7, 1, false, t0 + Duration::from_secs(1))
                .is_ok()
        );
        // Twenty per minute per group, one per second too.
        let g = -100;
        for i in 0..20 {
            assert!(
                w.try_send(&limits, g, 1, false, t0 + Duration::from_secs(i))
                    .is_ok(),
                "{i}"
            );
        }
        let err = w.try_send(&limits, g, 1, false, t0 + Duration::from_secs(20));
        assert_eq!(err, Err((Scope::Group, 40)), "free at 60 s after the first");
        assert!(
            w.try_send(&limits, g, 1, false, t0 + Duration::from_secs(60))
                .is_ok()
        );
        // Thirty per second per token, across chats.
        let t1 = t0 + Duration::from_secs(100);
        for chat in 0..30 {
            assert!(w.try_send(&limits, 1_000 + chat, 1, false, t1).is_ok());
        }
        assert_eq!(
            w.try_send(&limits, 2_000, 1, false, t1),
            Err((Scope::Token, 1))
        );
        // Paid broadcasts may go on.
        assert!(w.try_send(&limits, 2_000, 1, true, t1).is_ok());
    }
}
