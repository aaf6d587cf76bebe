//! What the client reports through the `metrics` facade (docs/metrics.md).

use std::time::Duration;

use metrics::{counter, gauge, histogram};

use crate::error::Error;
use crate::limiter::Priority;

pub(crate) fn call<R>(bot: &str, method: &str, result: &Result<R, Error>) {
    let outcome = match result {
        Ok(_) => "ok",
        Err(e) => match e.kind {
            crate::ErrorKind::RetryAfter(_) => "retry_after",
            crate::ErrorKind::Server { .. } => "server_error",
            crate::ErrorKind::Connect(_)
            | crate::ErrorKind::Timeout(_)
            | crate::ErrorKind::Transport(_) => "network",
            _ => "rejected",
        },
    };
    counter!("botfleet_telegram_calls_total", "bot" => bot.to_owned(), "method" => method.to_owned(), "outcome" => outcome).increment(1);
}

/// The time Telegram took to answer a call (its headers); `getUpdates`,
/// a long poll that waits for updates on purpose, is not recorded.
pub(crate) fn duration(bot: &str, method: &str, took: Duration) {
    if method == "getUpdates" {
        return;
    }
    histogram!("botfleet_telegram_call_duration_seconds", "bot" => bot.to_owned(), "method" => method.to_owned()).record(took);
}

pub(crate) fn retry(bot: &str, reason: &'static str) {
    counter!("botfleet_telegram_retries_total", "bot" => bot.to_owned(), "reason" => reason)
        .increment(1);
}

pub(crate) fn in_flight(bot: &str, delta: f64) {
    gauge!("botfleet_telegram_calls_in_flight", "bot" => bot.to_owned()).increment(delta);
}

pub(crate) fn limiter_wait(bot: &str, priority: Priority, waited: Duration) {
    let priority = match priority {
        Priority::Interactive => "interactive",
        Priority::Broadcast => "broadcast",
    };
    histogram!("botfleet_telegram_limiter_wait_seconds", "bot" => bot.to_owned(), "priority" => priority).record(waited);
}

pub(crate) fn report(bot: &str, limiter: &crate::limiter::Limiter) {
    let (interactive, broadcast) = limiter.waiting_by_priority();
    for (priority, n) in [("interactive", interactive), ("broadcast", broadcast)] {
        gauge!("botfleet_telegram_queue_depth", "bot" => bot.to_owned(), "priority" => priority)
            .set(n as f64);
    }
    let (chat, token) = limiter.refused();
    for (scope, n) in [("chat", chat), ("token", token)] {
        counter!("botfleet_telegram_429_total", "bot" => bot.to_owned(), "scope" => scope)
            .absolute(n);
    }
}

pub(crate) fn reads(bot: &str, reads: u64, calls: u64) {
    counter!("botfleet_telegram_cached_reads_total", "bot" => bot.to_owned()).absolute(reads);
    counter!("botfleet_telegram_read_calls_total", "bot" => bot.to_owned()).absolute(calls);
}
