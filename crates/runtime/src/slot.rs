//! One worker slot: starts its process, waits for ready, restarts it when
//! it dies (first at once, then with exponential backoff and jitter), and
//! gives up on the bot past the restart intensity.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use rustix::process::Signal;
use tokio::sync::{Notify, watch};
use tokio::time::Instant;

use crate::bot::BotCtx;
use crate::process;

/// What a slot shares with its worker's connection.
#[derive(Debug, Default)]
pub(crate) struct SlotShared {
    /// The worker said ready.
    pub(crate) ready: Notify,
    /// The connection asks for the process to be killed (missed
    /// heartbeats).
    pub(crate) kill: Notify,
    /// The running process's id (0 when none).
    pub(crate) pid: std::sync::atomic::AtomicU32,
}

/// Why a worker process ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Reason {
    Exit,
    Crash,
    NotReady,
    Heartbeat,
    SpawnFailed,
}

impl Reason {
    fn as_str(self) -> &'static str {
        match self {
            Reason::Exit => "exit",
            Reason::Crash => "crash",
            Reason::NotReady => "ready_timeout",
            Reason::Heartbeat => "heartbeat",
            Reason::SpawnFailed => "spawn_failed",
        }
    }
}

/// Runs slot `worker` of `bot` until `stop` turns true; then stops its
/// process: SIGTERM to its group, SIGKILL after the grace period.
pub(crate) async fn supervise(
    bot: Arc<BotCtx>,
    worker: u32,
    shared: Arc<SlotShared>,
    mut stop: watch::Receiver<bool>,
) {
    let policy = bot.config.supervision.restart.clone();
    let supervision = bot.config.supervision.clone();
    let mut restarts: VecDeque<Instant> = VecDeque::new();
    let mut consecutive = 0u32;
    loop {
        if *stop.borrow() {
            return;
        }
        let mut env = bot.spec.env.clone();
        env.push((botfleet_protocol::env::WORKER_ID.into(), worker.to_string()));
        let spec = process::Spec {
            env,
            ..bot.spec.clone()
        };
        let started = Instant::now();
        let spawned = process::spawn(&spec, &bot.name, worker);
        tracing::debug!(bot = %bot.name, worker, spawn_us = started.elapsed().as_micros() as u64, "spawned");
        let reason = match spawned {
            Err(e) => {
                tracing::error!(bot = %bot.name, worker, program = %spec.program, "cannot start the worker: {e}");
                Reason::SpawnFailed
            }
            Ok(mut child) => {
                let pid = child.id().unwrap_or(0);
                shared.pid.store(pid, Ordering::SeqCst);
                // Ready within the timeout, or it is killed.
                let ready = tokio::select! {
                    () = shared.ready.notified() => Ok(()),
                    status = child.wait() => Err(status.ok()),
                    () = tokio::time::sleep(supervision.ready_timeout) => {
                        tracing::error!(bot = %bot.name, worker, "not ready within {:?}; killing it", supervision.ready_timeout);
                        process::signal_group(pid, Signal::KILL);
                        let _ = child.wait().await;
                        Err(None)
                    }
                    _ = stop.changed() => {
                        stop_child(&mut child, pid, supervision.shutdown_grace).await;
                        return;
                    }
                };
                match ready {
                    Err(status) => match status {
                        Some(s) => {
                            tracing::error!(bot = %bot.name, worker, "exited before it was ready ({s})");
                            if s.success() {
                                Reason::Exit
                            } else {
                                Reason::Crash
                            }
                        }
                        None => Reason::NotReady,
                    },
                    Ok(()) => {
                        metrics::histogram!("botfleet_worker_ready_seconds", "bot" => bot.name.clone())
                            .record(started.elapsed().as_secs_f64());
                        tracing::info!(bot = %bot.name, worker, pid, ready_ms = started.elapsed().as_millis() as u64, "worker ready");
                        tokio::select! {
                            status = child.wait() => {
                                let s = status.ok();
                                let clean = s.is_some_and(|s| s.success());
                                tracing::warn!(bot = %bot.name, worker, "worker exited ({})", s.map_or("unknown status".to_owned(), |s| s.to_string()));
                                if clean { Reason::Exit } else { Reason::Crash }
                            }
                            () = shared.kill.notified() => {
                                process::signal_group(pid, Signal::KILL);
                                let _ = child.wait().await;
                                Reason::Heartbeat
                            }
                            _ = stop.changed() => {
                                stop_child(&mut child, pid, supervision.shutdown_grace).await;
                                return;
                            }
                        }
                    }
                }
            }
        };
        if *stop.borrow() {
            return;
        }
        metrics::counter!("botfleet_worker_restarts_total", "bot" => bot.name.clone(), "reason" => reason.as_str())
            .increment(1);
        bot.restarts.fetch_add(1, Ordering::Relaxed);
        // OTP's restart intensity: too many restarts in the period and the
        // bot is failed.
        let now = Instant::now();
        restarts.push_back(now);
        while restarts
            .front()
            .is_some_and(|&t| now.duration_since(t) > policy.period)
        {
            restarts.pop_front();
        }
        if restarts.len() as u32 > policy.intensity {
            if !bot.failed.swap(true, Ordering::SeqCst) {
                tracing::error!(
                    bot = %bot.name,
                    "bot failed: {} restarts within {:?} (restart intensity {}); its workers are not started again until botfleet is restarted",
                    restarts.len(),
                    policy.period,
                    policy.intensity
                );
                metrics::gauge!("botfleet_bot_failed", "bot" => bot.name.clone()).set(1.0);
                bot.failed_notify.notify_waiters();
            }
            return;
        }
        if bot.failed.load(Ordering::SeqCst) {
            return;
        }
        // The first restart is immediate; a worker that ran a whole period
        // starts the count again.
        if started.elapsed() > policy.period {
            consecutive = 0;
        }
        let delay = if consecutive == 0 {
            Duration::ZERO
        } else {
            let base = policy
                .first_backoff
                .saturating_mul(1 << (consecutive - 1).min(20))
                .min(policy.max_backoff);
            base / 2 + base.mul_f64(jitter() / 2.0)
        };
        consecutive += 1;
        tracing::info!(bot = %bot.name, worker, reason = reason.as_str(), delay_ms = delay.as_millis() as u64, "restarting the worker");
        // No timer for the immediate restart: a zero sleep still waits for
        // the timer wheel's next tick, about a millisecond.
        if !delay.is_zero() {
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                _ = stop.changed() => return,
            }
        }
    }
}

/// SIGTERM to the group, then SIGKILL after `grace`.
async fn stop_child(child: &mut tokio::process::Child, pid: u32, grace: Duration) {
    process::signal_group(pid, Signal::TERM);
    if tokio::time::timeout(grace, child.wait()).await.is_err() {
        process::signal_group(pid, Signal::KILL);
        let _ = child.wait().await;
    }
}

/// A number in [0, 1), to spread restarts.
fn jitter() -> f64 {
    fastrand::f64()
}
