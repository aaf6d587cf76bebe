//! Telegram's send limits, shared by the client's limiter and the emulator
//! that enforces them (a `[telegram]` section will make them configurable).

use std::time::Duration;

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
