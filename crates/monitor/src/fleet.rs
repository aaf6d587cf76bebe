//! `/api/v1/fleet`: the fleet at a glance — per bot its state, rate, p99
//! and queue; per worker its pid, state, uptime, restarts, CPU and memory.
//! The binary says what runs ([`FleetSummary`]); the figures come from the
//! store. The JSON is the one `botfleet status --json` prints
//! (../shared/BENCHMARKS.md): `{bots: [{name, state, workers: [{slot, pid,
//! state, uptime_s, restarts, cpu_pct, rss_mib}], rate, p99_ms, queue}]}`,
//! with a few more keys.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use serde::Serialize;

use crate::store::Store;

/// One bot, as the supervisor sees it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BotSummary {
    /// Its name.
    pub name: String,
    /// `ready` (a worker is ready), `starting` (none yet) or `failed`.
    pub state: String,
    /// Updates waiting for a worker or in a worker's hands.
    pub queue: u64,
    /// Worker restarts since the fleet started.
    pub restarts: u64,
    /// Updates acked as failed.
    pub failed: u64,
    /// Updates set aside as dead letters.
    pub dead_lettered: u64,
}

/// One worker slot with a process.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WorkerSummary {
    /// Its bot.
    pub bot: String,
    /// The slot's index (the `worker` label).
    pub slot: u32,
    /// Its process.
    pub pid: u32,
    /// Whether it said ready.
    pub ready: bool,
    /// When its process started (Unix seconds).
    pub started_unix: u64,
    /// Its slot's restarts.
    pub restarts: u64,
}

/// What runs now.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FleetSummary {
    /// Every bot.
    pub bots: Vec<BotSummary>,
    /// Every worker with a process.
    pub workers: Vec<WorkerSummary>,
}

/// Asks the fleet what runs (for `/api/v1/fleet`).
pub type FleetSource =
    Arc<dyn Fn() -> Pin<Box<dyn Future<Output = FleetSummary> + Send>> + Send + Sync>;

#[derive(Debug, Serialize)]
struct Worker {
    slot: u32,
    pid: u32,
    state: &'static str,
    uptime_s: u64,
    restarts: u64,
    cpu_pct: Option<f64>,
    rss_mib: Option<f64>,
}

#[derive(Debug, Serialize)]
struct Bot {
    name: String,
    state: String,
    workers: Vec<Worker>,
    /// Updates acked per second over the last 10 s.
    rate: Option<f64>,
    /// The 99th percentile of dispatch-to-ack over the last minute.
    p99_ms: Option<f64>,
    queue: u64,
    restarts: u64,
    failed: u64,
    dead_lettered: u64,
    /// 429s from Telegram since the start.
    throttled: u64,
}

/// The fleet's JSON at `now` (Unix seconds).
pub fn json(summary: &FleetSummary, store: &Store, now: u64) -> serde_json::Value {
    let round = |v: f64| (v * 100.0).round() / 100.0;
    let bots: Vec<Bot> = summary
        .bots
        .iter()
        .map(|b| {
            let bot = vec![("bot".to_owned(), b.name.clone())];
            let workers = summary
                .workers
                .iter()
                .filter(|w| w.bot == b.name)
                .map(|w| {
                    let mut labels = bot.clone();
                    labels.push(("worker".to_owned(), w.slot.to_string()));
                    let cpu = store
                        .increase("botfleet_worker_cpu_seconds_total", &labels, 5)
                        .filter(|(_, secs)| *secs > 0.0)
                        .map(|(cpu, secs)| round(cpu / secs * 100.0));
                    let rss = store
                        .latest("botfleet_worker_resident_memory_bytes", &labels)
                        .map(|b| round(b / 1_048_576.0));
                    Worker {
                        slot: w.slot,
                        pid: w.pid,
                        state: if w.ready { "ready" } else { "starting" },
                        uptime_s: now.saturating_sub(w.started_unix),
                        restarts: w.restarts,
                        cpu_pct: cpu,
                        rss_mib: rss,
                    }
                })
                .collect();
            Bot {
                name: b.name.clone(),
                state: b.state.clone(),
                workers,
                rate: store
                    .increase("botfleet_updates_acked_total", &bot, 10)
                    .filter(|(_, secs)| *secs > 0.0)
                    .map(|(n, secs)| round(n / secs)),
                p99_ms: store
                    .quantile("botfleet_update_handling_seconds", &bot, 60, 0.99)
                    .map(|s| round(s * 1000.0)),
                queue: b.queue,
                restarts: b.restarts,
                failed: b.failed,
                dead_lettered: b.dead_lettered,
                throttled: store
                    .latest("botfleet_telegram_429_total", &bot)
                    .map_or(0, |n| n as u64),
            }
        })
        .collect();
    serde_json::json!({ "bots": bots })
}
