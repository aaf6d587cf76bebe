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

use crate::bot::{BotCtx, Event};
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
    /// The worker said ready on its live connection (the connection sets
    /// and clears it).
    pub(crate) is_ready: std::sync::atomic::AtomicBool,
    /// The worker's last lines of output.
    pub(crate) output: crate::process::Recent,
    /// The worker's live connection (0 when none): one at a time.
    pub(crate) conn: std::sync::atomic::AtomicU64,
    /// The slot's `worker` label in metrics: the smallest index free among
    /// its bot's slots when it started (its restarts keep it).
    pub(crate) index: u32,
    /// When its current process started (Unix seconds; 0 before the first).
    pub(crate) started_unix: std::sync::atomic::AtomicU64,
    /// Its processes started again after one ended.
    pub(crate) restarts: std::sync::atomic::AtomicU64,
}

/// Why a worker process ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Reason {
    Exit,
    Crash,
    /// SIGKILL or SIGTERM from outside (the OOM killer, an operator): not
    /// the fault of the updates it held.
    Killed,
    NotReady,
    Heartbeat,
    SpawnFailed,
}

impl Reason {
    fn as_str(self) -> &'static str {
        match self {
            Reason::Exit => "exit",
            Reason::Crash => "crash",
            Reason::Killed => "killed",
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
        let mut spec = bot.spec.lock().clone();
        spec.env
            .push((botfleet_protocol::env::WORKER_ID.into(), worker.to_string()));
        let started = Instant::now();
        let spawned = process::spawn(
            &spec,
            &bot.name,
            worker,
            &shared.output,
            &bot.logs,
            shared.index,
        );
        tracing::debug!(bot = %bot.name, worker, spawn_us = started.elapsed().as_micros() as u64, "spawned");
        // Why the process ended, and how, for the log.
        let (reason, status) = match spawned {
            Err(e) => {
                let status = format!("cannot start `{}`: {e}", spec.program);
                tracing::warn!(bot = %bot.name, worker, "{status}");
                (Reason::SpawnFailed, status)
            }
            Ok(mut child) => {
                let pid = child.id().unwrap_or(0);
                shared.pid.store(pid, Ordering::SeqCst);
                shared.started_unix.store(
                    std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| d.as_secs()),
                    Ordering::Relaxed,
                );
                // Ready within the timeout, or it is killed.
                let ready = tokio::select! {
                    () = shared.ready.notified() => None,
                    status = child.wait() => Some(exited(status, "before it was ready")),
                    () = tokio::time::sleep(supervision.ready_timeout) => {
                        process::signal_group(pid, Signal::KILL);
                        let _ = child.wait().await;
                        Some((Reason::NotReady, format!(
                            "killed: not ready within {}",
                            botfleet_config::duration::format(supervision.ready_timeout)
                        )))
                    }
                    _ = stop.changed() => {
                        stop_child(&mut child, pid, supervision.shutdown_grace).await;
                        return;
                    }
                };
                let ended = match ready {
                    Some(ended) => ended,
                    None => {
                        metrics::histogram!("botfleet_worker_ready_seconds", "bot" => bot.name.clone())
                            .record(started.elapsed().as_secs_f64());
                        tracing::info!(bot = %bot.name, worker, pid, ready_ms = started.elapsed().as_millis() as u64, "worker ready");
                        tokio::select! {
                            status = child.wait() => exited(status, "after it was ready"),
                            () = shared.kill.notified() => {
                                process::signal_group(pid, Signal::KILL);
                                let _ = child.wait().await;
                                (Reason::Heartbeat, "killed by the supervisor: its heartbeats stopped, or an update ran past its deadline".to_owned())
                            }
                            _ = stop.changed() => {
                                stop_child(&mut child, pid, supervision.shutdown_grace).await;
                                return;
                            }
                        }
                    }
                };
                shared.pid.store(0, Ordering::SeqCst);
                bot.send(Event::Exited {
                    worker,
                    pid,
                    status: ended.1.clone(),
                    blame: ended.0 != Reason::Killed,
                });
                ended
            }
        };
        if *stop.borrow() {
            return;
        }
        metrics::counter!("botfleet_worker_restarts_total", "bot" => bot.name.clone(), "reason" => reason.as_str())
            .increment(1);
        bot.restarts.fetch_add(1, Ordering::Relaxed);
        shared.restarts.fetch_add(1, Ordering::Relaxed);
        let now = Instant::now();
        // Past the intensity this slot fails the bot; a bot another slot
        // failed waits all the same.
        let retry = match restarts.exceeded(now, &policy) {
            Some(recent) => Some(fail(&bot, now, &policy, recent, &status)),
            None => bot.failure.lock().retry_at,
        };
        if let Some(at) = retry {
            tokio::select! {
                () = tokio::time::sleep_until(at) => {}
                _ = stop.changed() => return,
            }
            retry_now(&bot);
            restarts = Restarts::default();
            continue;
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

/// The reason and the words for a process that ended `when`.
fn exited(status: std::io::Result<std::process::ExitStatus>, when: &str) -> (Reason, String) {
    use std::os::unix::process::ExitStatusExt;
    match status {
        Ok(s) if s.success() => (Reason::Exit, format!("{s} {when}")),
        // Only the supervisor's own kills go through `kill`; these came
        // from outside.
        Ok(s) if matches!(s.signal(), Some(9 | 15)) => (Reason::Killed, format!("{s} {when}")),
        Ok(s) => (Reason::Crash, format!("{s} {when}")),
        Err(e) => (Reason::Crash, format!("cannot wait for it {when}: {e}")),
    }
}

/// Marks `bot` failed (once, whichever of its slots gets here first) and
/// says so; returns when its workers start again.
fn fail(bot: &BotCtx, now: Instant, policy: &RestartPolicy, recent: usize, last: &str) -> Instant {
    let (at, first) = bot.failure.lock().fail(now, policy);
    if first {
        bot.failed.store(true, Ordering::SeqCst);
        tracing::error!(
            bot = %bot.name,
            "bot failed: {recent} restarts within {} (restart intensity {}), the last: {last}; its workers start again in {}, the other bots run on",
            botfleet_config::duration::format(policy.period),
            policy.intensity,
            botfleet_config::duration::format(at.duration_since(now)),
        );
        metrics::gauge!("botfleet_bot_failed", "bot" => bot.name.clone()).set(1.0);
        bot.failed_notify.notify_waiters();
    }
    at
}

/// The failed bot's wait is over: its slots start their workers again.
fn retry_now(bot: &BotCtx) {
    if bot.failure.lock().retry(Instant::now()) {
        bot.failed.store(false, Ordering::SeqCst);
        tracing::warn!(bot = %bot.name, "starting the failed bot's workers again");
        metrics::gauge!("botfleet_bot_failed", "bot" => bot.name.clone()).set(0.0);
    }
}

/// A bot's failures: a failed bot is retried after `failed_retry`, doubling
/// with each failure in a row up to `failed_retry_max`; a bot that ran
/// `failed_retry_max` since its last retry starts the count again.
#[derive(Debug, Default)]
pub(crate) struct Failure {
    /// When a failed bot's workers start again (`None` while not failed).
    pub(crate) retry_at: Option<Instant>,
    /// Failures in a row.
    count: u32,
    /// When it was last retried.
    retried: Option<Instant>,
}

impl Failure {
    /// The bot fails at `now`: when it is retried, and whether this call
    /// failed it (`false` when it already was).
    fn fail(&mut self, now: Instant, policy: &RestartPolicy) -> (Instant, bool) {
        if let Some(at) = self.retry_at {
            return (at, false);
        }
        if self
            .retried
            .is_some_and(|t| now.duration_since(t) > policy.failed_retry_max)
        {
            self.count = 0;
        }
        let wait = policy
            .failed_retry
            .saturating_mul(1 << self.count.min(20))
            .min(policy.failed_retry_max);
        self.count += 1;
        let at = now + wait;
        self.retry_at = Some(at);
        (at, true)
    }

    /// The retry is due: `true` for the first of the bot's slots to ask.
    fn retry(&mut self, now: Instant) -> bool {
        let due = self.retry_at.take().is_some();
        if due {
            self.retried = Some(now);
        }
        due
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
        p.failed_retry = Duration::from_secs(60);
        p.failed_retry_max = Duration::from_secs(30 * 60);
        p
    }

    #[test]
    fn a_failed_bot_is_retried_after_a_doubling_wait() {
        let p = policy();
        let min = Duration::from_secs(60);
        let mut f = Failure::default();
        let t0 = Instant::now();
        assert_eq!(f.fail(t0, &p), (t0 + min, true));
        // A second slot failing it changes nothing.
        assert_eq!(f.fail(t0 + min / 2, &p), (t0 + min, false));
        assert!(f.retry(t0 + min));
        assert!(!f.retry(t0 + min), "only the first slot retries");
        // Failing again soon: twice the wait, then capped at 30 min.
        let t1 = t0 + min * 2;
        assert_eq!(f.fail(t1, &p).0, t1 + min * 2);
        let mut t = t1;
        for _ in 0..10 {
            f.retry(t);
            t += Duration::from_secs(1);
            let (at, _) = f.fail(t, &p);
            assert!(at - t <= p.failed_retry_max);
        }
        assert_eq!(f.retry_at, Some(t + p.failed_retry_max));
        // Running longer than the longest wait starts the count again.
        f.retry(t);
        let later = t + p.failed_retry_max + Duration::from_secs(1);
        assert_eq!(f.fail(later, &p).0, later + min);
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
