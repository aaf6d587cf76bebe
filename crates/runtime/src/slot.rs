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

use botfleet_config::RestartPolicy;

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
    let mut restarts = Restarts::default();
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
        if let Some(recent) = restarts.exceeded(Instant::now(), &policy) {
            if !bot.failed.swap(true, Ordering::SeqCst) {
                tracing::error!(
                    bot = %bot.name,
                    "bot failed: {recent} restarts within {:?} (restart intensity {}); its workers are not started again until botfleet is restarted",
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
        let delay = restarts.backoff(started.elapsed(), &policy, jitter());
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

/// A slot's restart history: OTP's restart intensity and the backoff.
#[derive(Debug, Default)]
struct Restarts {
    /// When the restarts within the last period happened.
    recent: VecDeque<Instant>,
    /// Restarts in a row, for the backoff.
    consecutive: u32,
}

impl Restarts {
    /// Records a restart at `now`; `Some(count)` when the restarts within
    /// the period are more than the intensity allows (the bot fails).
    fn exceeded(&mut self, now: Instant, policy: &RestartPolicy) -> Option<usize> {
        self.recent.push_back(now);
        while self
            .recent
            .front()
            .is_some_and(|&t| now.duration_since(t) > policy.period)
        {
            self.recent.pop_front();
        }
        (self.recent.len() as u32 > policy.intensity).then_some(self.recent.len())
    }

    /// The wait before the next start of a worker that ran for `ran`: none
    /// for the first restart in a row (a worker that ran a whole period
    /// starts the count again), then from `first_backoff` doubling up to
    /// `max_backoff`, between half and all of it (`jitter` in [0, 1)).
    fn backoff(&mut self, ran: Duration, policy: &RestartPolicy, jitter: f64) -> Duration {
        if ran > policy.period {
            self.consecutive = 0;
        }
        let delay = if self.consecutive == 0 {
            Duration::ZERO
        } else {
            let base = policy
                .first_backoff
                .saturating_mul(1 << (self.consecutive - 1).min(20))
                .min(policy.max_backoff);
            base / 2 + base.mul_f64(jitter / 2.0)
        };
        self.consecutive += 1;
        delay
    }
}

/// A number in [0, 1), to spread restarts.
fn jitter() -> f64 {
    fastrand::f64()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RestartPolicy {
        let mut p = botfleet_config::Supervision::default().restart;
        p.intensity = 3;
        p.period = Duration::from_secs(10);
        p.first_backoff = Duration::from_millis(100);
        p.max_backoff = Duration::from_millis(500);
        p
    }

    #[test]
    fn backoff_starts_at_once_doubles_and_is_capped() {
        let p = policy();
        let mut r = Restarts::default();
        let short = Duration::from_millis(10);
        assert_eq!(r.backoff(short, &p, 0.0), Duration::ZERO);
        assert_eq!(r.backoff(short, &p, 0.0), Duration::from_millis(50));
        // Between half and all of 200 ms: the jitter's top end.
        let d = r.backoff(short, &p, 0.999_999);
        assert!(
            d > Duration::from_millis(199) && d < Duration::from_millis(200),
            "{d:?}"
        );
        assert_eq!(r.backoff(short, &p, 0.0), Duration::from_millis(200));
        // Capped at max_backoff (500 ms, halved without jitter).
        assert_eq!(r.backoff(short, &p, 0.0), Duration::from_millis(250));
        assert_eq!(r.backoff(short, &p, 0.0), Duration::from_millis(250));
        // A worker that ran a whole period starts the count again.
        assert_eq!(r.backoff(Duration::from_secs(11), &p, 0.0), Duration::ZERO);
    }

    #[test]
    fn more_restarts_than_the_intensity_within_the_period_fail_the_bot() {
        let p = policy();
        let mut r = Restarts::default();
        let t0 = Instant::now();
        for i in 0..3 {
            assert_eq!(r.exceeded(t0 + Duration::from_secs(i), &p), None);
        }
        assert_eq!(r.exceeded(t0 + Duration::from_secs(3), &p), Some(4));
        // Restarts older than the period no longer count.
        let mut r = Restarts::default();
        for i in 0..10 {
            assert_eq!(r.exceeded(t0 + Duration::from_secs(4 * i), &p), None);
        }
    }
}
