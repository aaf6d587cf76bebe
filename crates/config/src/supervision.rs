//! `[[bot]]`'s supervision settings: heartbeats, readiness, shutdown,
//! `[bot.restart]` and `[bot.scaling]`.

use std::time::Duration;

use crate::reader::{Ctx, Table};

/// How the supervisor runs one bot's workers.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct Supervision {
    /// How often a worker sends a heartbeat; three missed in a row get it
    /// restarted.
    pub heartbeat_interval: Duration,
    /// How long a started worker has to connect and say it is ready.
    pub ready_timeout: Duration,
    /// On shutdown, how long workers have to drain before SIGTERM, and
    /// again after SIGTERM before SIGKILL.
    pub shutdown_grace: Duration,
    /// How long one update may be handled before it is taken for stuck:
    /// logged, and its worker restarted.
    pub handling_deadline: Duration,
    /// An update that crashed its worker or ran past the deadline this many
    /// times is set aside as a dead letter.
    pub max_attempts: u32,
    /// `[bot.restart]`.
    pub restart: RestartPolicy,
    /// `[bot.scaling]`.
    pub scaling: Scaling,
}

/// When and how fast dead workers are started again.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct RestartPolicy {
    /// More than this many restarts within `period` mark the bot failed
    /// (OTP's restart intensity).
    pub intensity: u32,
    /// The window of `intensity`.
    pub period: Duration,
    /// The wait before the second restart in a row (the first is
    /// immediate); it doubles, with jitter, up to `max_backoff`.
    pub first_backoff: Duration,
    /// The longest wait between restarts.
    pub max_backoff: Duration,
    /// How long a failed bot waits before its workers are started again;
    /// it doubles each time the bot fails again, up to `failed_retry_max`.
    pub failed_retry: Duration,
    /// The longest wait of a failed bot.
    pub failed_retry_max: Duration,
}

/// The autoscaler's targets.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct Scaling {
    /// Runnable chats per worker the autoscaler aims at (chats with an
    /// update at a worker or ready to go, less the Bot API calls in
    /// progress).
    pub target_queue_per_worker: u32,
    /// The handlers' mean busy time per update it aims at (their time less
    /// their time in Bot API calls).
    pub target_latency: Duration,
    /// How often it decides.
    pub tick: Duration,
    /// How long the load must stay low before a worker is removed.
    pub scale_down_window: Duration,
}

impl Default for Supervision {
    fn default() -> Self {
        Supervision {
            heartbeat_interval: Duration::from_secs(1),
            ready_timeout: Duration::from_secs(10),
            shutdown_grace: Duration::from_secs(10),
            handling_deadline: Duration::from_secs(60),
            max_attempts: 3,
            restart: RestartPolicy {
                intensity: 5,
                period: Duration::from_secs(10),
                first_backoff: Duration::from_millis(100),
                max_backoff: Duration::from_secs(10),
                failed_retry: Duration::from_secs(60),
                failed_retry_max: Duration::from_secs(30 * 60),
            },
            scaling: Scaling {
                target_queue_per_worker: 10,
                target_latency: Duration::from_millis(200),
                tick: Duration::from_secs(1),
                scale_down_window: Duration::from_secs(60),
            },
        }
    }
}

const MS: Duration = Duration::from_millis(1);
const S: Duration = Duration::from_secs(1);
const HOUR: Duration = Duration::from_secs(3600);

/// Reads the supervision keys of a `[[bot]]` table.
pub(crate) fn supervision(cx: &mut Ctx<'_>, t: &mut Table<'_>) -> Supervision {
    let d = Supervision::default();
    let restart = match t.table(cx, "restart") {
        Some(mut r) => {
            let p = &d.restart;
            let first_backoff = r
                .duration(cx, "first_backoff", MS..=HOUR)
                .map_or(p.first_backoff, |v| v.value);
            let max = r.duration(cx, "max_backoff", MS..=HOUR);
            let max_backoff = match max {
                Some(m) if m.value < first_backoff => {
                    cx.error(
                        &m.span,
                        &r.key_path("max_backoff"),
                        "max_backoff is shorter than first_backoff",
                    );
                    first_backoff
                }
                Some(m) => m.value,
                None => p.max_backoff.max(first_backoff),
            };
            let failed_retry = r
                .duration(cx, "failed_retry", 100 * MS..=24 * HOUR)
                .map_or(p.failed_retry, |v| v.value);
            let failed_retry_max = match r.duration(cx, "failed_retry_max", 100 * MS..=24 * HOUR) {
                Some(m) if m.value < failed_retry => {
                    cx.error(
                        &m.span,
                        &r.key_path("failed_retry_max"),
                        "failed_retry_max is shorter than failed_retry",
                    );
                    failed_retry
                }
                Some(m) => m.value,
                None => p.failed_retry_max.max(failed_retry),
            };
            let policy = RestartPolicy {
                intensity: r
                    .integer(cx, "intensity", 0..=10_000)
                    .map_or(p.intensity, |v| v.value as u32),
                period: r
                    .duration(cx, "period", S..=24 * HOUR)
                    .map_or(p.period, |v| v.value),
                first_backoff,
                max_backoff,
                failed_retry,
                failed_retry_max,
            };
            r.finish(cx);
            policy
        }
        None => d.restart.clone(),
    };
    let scaling = match t.table(cx, "scaling") {
        Some(mut s) => {
            let p = &d.scaling;
            let scaling = Scaling {
                target_queue_per_worker: s
                    .integer(cx, "target_queue_per_worker", 1..=100_000)
                    .map_or(p.target_queue_per_worker, |v| v.value as u32),
                target_latency: s
                    .duration(cx, "target_latency", MS..=HOUR)
                    .map_or(p.target_latency, |v| v.value),
                tick: s
                    .duration(cx, "tick", 100 * MS..=HOUR)
                    .map_or(p.tick, |v| v.value),
                scale_down_window: s
                    .duration(cx, "scale_down_window", Duration::ZERO..=24 * HOUR)
                    .map_or(p.scale_down_window, |v| v.value),
            };
            s.finish(cx);
            scaling
        }
        None => d.scaling.clone(),
    };
    Supervision {
        heartbeat_interval: t
            .duration(cx, "heartbeat_interval", 10 * MS..=HOUR)
            .map_or(d.heartbeat_interval, |v| v.value),
        ready_timeout: t
            .duration(cx, "ready_timeout", 10 * MS..=HOUR)
            .map_or(d.ready_timeout, |v| v.value),
        shutdown_grace: t
            .duration(cx, "shutdown_grace", Duration::ZERO..=HOUR)
            .map_or(d.shutdown_grace, |v| v.value),
        handling_deadline: t
            .duration(cx, "handling_deadline", 100 * MS..=24 * HOUR)
            .map_or(d.handling_deadline, |v| v.value),
        max_attempts: t
            .integer(cx, "max_attempts", 1..=100)
            .map_or(d.max_attempts, |v| v.value as u32),
        restart,
        scaling,
    }
}
