//! `[telegram]`: the Bot API client of every bot, and Telegram's send
//! limits, shared by the client's limiter and the emulator that enforces
//! them.

use std::time::Duration;

use crate::duration::{format as format_duration, parse as parse_duration};
use crate::reader::{Ctx, Spanned, Table};

/// A send limit: `max` sends per `window`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SendLimit {
    /// Sends allowed in one window.
    pub max: u32,
    /// The window.
    pub window: Duration,
}

/// Telegram's send limits for one bot token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SendLimits {
    /// Per chat (private or group): 1 per second.
    pub chat: SendLimit,
    /// Per group, supergroup or channel (negative chat ids): 20 per minute.
    pub group: SendLimit,
    /// Per token: 30 per second.
    pub token: SendLimit,
    /// Per token with `allow_paid_broadcast`: 1000 per second.
    pub paid: SendLimit,
}

impl Default for SendLimits {
    /// The Bots FAQ's limits.
    fn default() -> Self {
        let per = |max, secs| SendLimit {
            max,
            window: Duration::from_secs(secs),
        };
        SendLimits {
            chat: per(1, 1),
            group: per(20, 60),
            token: per(30, 1),
            paid: per(1000, 1),
        }
    }
}

impl SendLimits {
    /// No limits at all (throughput runs against the emulator).
    pub fn unlimited() -> SendLimits {
        let none = SendLimit {
            max: u32::MAX,
            window: Duration::from_millis(1),
        };
        SendLimits {
            chat: none,
            group: none,
            token: none,
            paid: none,
        }
    }
}

impl SendLimit {
    /// `max/window`, as the config file writes it (`20/1m`).
    pub fn to_config_string(&self) -> String {
        format!("{}/{}", self.max, format_duration(self.window))
    }
}

/// Telegram's own address.
pub const TELEGRAM_API_URL: &str = "https://api.telegram.org";

/// `[telegram]`.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct TelegramConfig {
    /// The Bot API's base URL: Telegram's, a local Bot API server, or the
    /// emulator.
    pub api_url: String,
    /// The longest one call may take (long polls get their own timeout on
    /// top).
    pub timeout: Duration,
    /// Calls in flight at once per token.
    pub max_in_flight: u32,
    /// Attempts for a call that fails with a server or network error.
    pub attempts: u32,
    /// The first wait between attempts (doubling, with jitter, to 30 s).
    pub first_backoff: Duration,
    /// `[telegram.limits]`: the send limits per token.
    pub limits: SendLimits,
}

impl Default for TelegramConfig {
    fn default() -> Self {
        TelegramConfig {
            api_url: TELEGRAM_API_URL.to_owned(),
            timeout: Duration::from_secs(30),
            max_in_flight: 64,
            attempts: 8,
            first_backoff: Duration::from_millis(500),
            limits: SendLimits::default(),
        }
    }
}

pub(crate) fn telegram(cx: &mut Ctx<'_>, table: Option<Table<'_>>) -> TelegramConfig {
    let base = TelegramConfig::default();
    let Some(mut t) = table else {
        return base;
    };
    let api_url = t.string(cx, "api_url").and_then(|url| {
        let value = url.value.value.trim_end_matches('/').to_owned();
        if crate::bot::is_https_or_loopback(&value) {
            Some(value)
        } else {
            cx.error(
                &url.span,
                &t.key_path("api_url"),
                "the Bot API is reached over HTTPS: the url must start with https:// (http:// is accepted for 127.0.0.1 and localhost, for the emulator)",
            );
            None
        }
    });
    let limits = match t.table(cx, "limits") {
        Some(mut lt) => {
            let d = base.limits;
            let limits = SendLimits {
                chat: limit(cx, &mut lt, "chat").unwrap_or(d.chat),
                group: limit(cx, &mut lt, "group").unwrap_or(d.group),
                token: limit(cx, &mut lt, "token").unwrap_or(d.token),
                paid: limit(cx, &mut lt, "paid").unwrap_or(d.paid),
            };
            lt.finish(cx);
            limits
        }
        None => base.limits,
    };
    let config = TelegramConfig {
        api_url: api_url.unwrap_or(base.api_url),
        timeout: t
            .duration(
                cx,
                "timeout",
                Duration::from_secs(1)..=Duration::from_secs(600),
            )
            .map_or(base.timeout, |v| v.value),
        max_in_flight: t
            .integer(cx, "max_in_flight", 1..=10_000)
            .map_or(base.max_in_flight, |v| v.value as u32),
        attempts: t
            .integer(cx, "attempts", 1..=100)
            .map_or(base.attempts, |v| v.value as u32),
        first_backoff: t
            .duration(
                cx,
                "first_backoff",
                Duration::from_millis(1)..=Duration::from_secs(60),
            )
            .map_or(base.first_backoff, |v| v.value),
        limits,
    };
    t.finish(cx);
    config
}

/// A limit written `MAX/WINDOW`: `30/1s`, `20/1m`.
fn limit(cx: &mut Ctx<'_>, t: &mut Table<'_>, key: &'static str) -> Option<SendLimit> {
    let Spanned { value, span } = t.string(cx, key)?;
    let parsed = value.value.split_once('/').and_then(|(max, window)| {
        let max: u32 = max.trim().parse().ok().filter(|&m| m > 0)?;
        let window = parse_duration(window.trim()).filter(|w| !w.is_zero())?;
        Some(SendLimit { max, window })
    });
    if parsed.is_none() {
        cx.error(
            &span,
            &t.key_path(key),
            format!(
                "expected MAX/WINDOW, such as \"20/1m\" or \"30/1s\", with MAX at least 1, found \"{}\"",
                value.value
            ),
        );
    }
    parsed
}
