//! One bot's actor: owns its dispatcher and applies the events of ingest and
//! of the worker connections in order.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use botfleet_protocol::stats::{Kind, Stat};
use botfleet_protocol::{Ack, Json, Message, WorkerMetrics};
use botfleet_telegram::Client;
use tokio::sync::{Notify, mpsc, oneshot};

use crate::dispatcher::{Counts, Dispatcher};
use crate::process::Spec;

/// What the actor is told.
#[derive(Debug)]
pub(crate) enum Event {
    /// Updates written to the journal by ingest (or read back from it at
    /// start): `(update id, routing key, update)`.
    Batch {
        updates: Vec<(i64, i64, Json)>,
    },
    /// What the journal held at start, with the strikes of the updates that
    /// had any.
    Recovered {
        updates: Vec<(i64, i64, Json)>,
        strikes: HashMap<i64, u32>,
    },
    Connected {
        worker: u32,
        conn: u64,
        outbox: mpsc::UnboundedSender<Message>,
        /// Its slot: to restart it for a stuck update, to read its output.
        slot: Arc<crate::slot::SlotShared>,
    },
    Ready {
        worker: u32,
        conn: u64,
    },
    Acks {
        worker: u32,
        acks: Vec<Ack>,
    },
    Metrics {
        worker: u32,
        metrics: WorkerMetrics,
    },
    Stats {
        worker: u32,
        values: Vec<(String, f64)>,
    },
    /// The worker's own metrics (checked by the connection).
    Series {
        worker: u32,
        list: Vec<botfleet_protocol::Series>,
    },
    Drained {
        worker: u32,
    },
    Gone {
        worker: u32,
        conn: u64,
    },
    /// A worker's process ended (`status` says how): the actor says so,
    /// with the updates it held.
    Exited {
        worker: u32,
        pid: u32,
        status: String,
        /// Whether the updates it held are to blame (not when it was killed
        /// from outside).
        blame: bool,
    },
    /// Send `drain` to every worker; answer when all said `drained`.
    Drain(oneshot::Sender<()>),
    /// Send `shutdown` to every worker.
    Shutdown,
    /// The bot is stopped: the actor ends (and with it the bot's journal,
    /// once nothing else holds the bot).
    Stop,
    Status(oneshot::Sender<Status>),
    /// The autoscaler's inputs since its last ask.
    Load(oneshot::Sender<Load>),
    /// Take a worker off the ring; answer once it holds nothing.
    Retire {
        worker: u32,
        done: oneshot::Sender<()>,
    },
    /// A retired worker's slot is stopped.
    Forget {
        worker: u32,
    },
}

/// What the autoscaler decides on: the work more workers could do.
#[derive(Clone, Debug, Default)]
pub(crate) struct Load {
    /// Chats with an update being handled or ready to go, less the Bot API
    /// calls in progress (a chat whose update waits for Telegram's limits
    /// or answer is not work for another worker).
    pub(crate) runnable: usize,
    /// The handlers' mean busy time per update since the last ask: their
    /// time less the time in Bot API calls (`None` when none finished).
    pub(crate) busy: Option<std::time::Duration>,
    /// Updates waiting for Telegram's limits or answer (in Bot API calls).
    pub(crate) calling: usize,
    /// Updates waiting out a dependency's outage.
    pub(crate) backing_off: usize,
    /// Updates received and not acked.
    pub(crate) unacked: usize,
}

/// A snapshot of one bot.
#[derive(Clone, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct Status {
    /// The bot's name.
    pub bot: String,
    /// Workers connected and ready.
    pub ready_workers: usize,
    /// Updates received and not acked yet.
    pub unacked: usize,
    /// Updates waiting for a worker.
    pub queued: usize,
    /// Updates received from Telegram.
    pub received: u64,
    /// Updates sent to workers (redeliveries included).
    pub dispatched: u64,
    /// Updates acked by workers.
    pub acked: u64,
    /// Of those, acked as failed.
    pub failed: u64,
    /// Updates sent again after their worker died.
    pub redelivered: u64,
    /// Updates set aside as dead letters.
    pub dead_lettered: u64,
    /// Updates handed back by a worker because a dependency was down, and
    /// given out again after a backoff.
    pub retried: u64,
    /// Worker restarts, all reasons.
    pub restarts: u64,
    /// Whether the bot gave up restarting its workers.
    pub failed_bot: bool,
    /// Dispatch-to-ack time of every acked update, summed, µs (IPC both
    /// ways, the worker's queue and the handler).
    pub ack_us_total: u64,
    /// What the workers report of their own (docs/protocol.md, "Worker
    /// stats"), summed over the bot's workers; counters include workers
    /// that have exited. [`Status::stat`] reads the SDK's by their typed
    /// name.
    pub worker_stats: std::collections::BTreeMap<String, f64>,
}

impl Status {
    /// The bot's sum of one of the SDK's stats; 0 when no worker reported
    /// it (for example the pool's when the bot has no database).
    pub fn stat(&self, stat: Stat) -> f64 {
        self.worker_stats.get(stat.name()).copied().unwrap_or(0.0)
    }
}

/// What every part of one bot shares.
pub(crate) struct BotCtx {
    pub(crate) name: String,
    pub(crate) config: botfleet_config::BotConfig,
    pub(crate) client: Client,
    pub(crate) events: mpsc::UnboundedSender<Event>,
    /// How its workers are started; a reload that changes it rolls them.
    pub(crate) spec: parking_lot::Mutex<Spec>,
    /// Set while the bot is failed (its restart intensity was exceeded):
    /// its workers wait for the bot's retry ([`crate::slot::Failure`]).
    pub(crate) failed: AtomicBool,
    /// When the failed bot is retried, and how often it failed.
    pub(crate) failure: parking_lot::Mutex<crate::slot::Failure>,
    pub(crate) restarts: std::sync::atomic::AtomicU64,
    /// Told when the bot is marked failed (shared by the fleet's bots).
    pub(crate) failed_notify: Arc<Notify>,
    /// Bot API calls of its workers in progress.
    pub(crate) calling: std::sync::atomic::AtomicUsize,
    /// Where every update is kept until it is acked.
    pub(crate) journal: crate::journal::Journal,
    /// The fleet's data directory (the journal, dead letters).
    pub(crate) data_dir: std::path::PathBuf,
    /// Every worker's recent output, the fleet's.
    pub(crate) logs: crate::logbook::LogBook,
}

impl BotCtx {
    pub(crate) fn send(&self, event: Event) {
        let _ = self.events.send(event);
    }
}

/// Runs the actor until every sender of events is gone.
pub(crate) async fn actor(ctx: Arc<BotCtx>, mut events: mpsc::UnboundedReceiver<Event>) {
    let bot = ctx.name.clone();
    let mut d = Dispatcher::new(ctx.config.supervision.max_attempts);
    // Each worker's slot, while it is connected or until its exit is seen.
    let mut slots: HashMap<u32, Arc<crate::slot::SlotShared>> = HashMap::new();
    // Each worker's current connection and its outbox.
    let mut outboxes: HashMap<u32, (u64, mpsc::UnboundedSender<Message>)> = HashMap::new();
    let mut drain: Option<(oneshot::Sender<()>, Vec<u32>)> = None;
    // Workers were told to stop: their exits are expected.
    let mut shutting_down = false;
    // The totals each worker slot last sent of its own metrics.
    let mut forwarded = Forwarded::default();
    let mut retiring: Vec<(u32, oneshot::Sender<()>)> = Vec::new();
    let mut last = Counts::default();
    let mut stats = WorkerStats::default();
    // The workers' handler time, Bot API time and updates handled, summed,
    // at the autoscaler's last ask.
    let mut busy_seen = (0.0, 0.0, 0.0);
    // The workers' handler time and its Bot API part, seconds, summed.
    let mut handler_seconds = (0.0f64, 0.0f64);
    // Workers whose connection closed: what they held waits for their
    // exit (which tells whether those updates are to blame), or for
    // CLOSE_WAIT.
    let mut closing: HashMap<u32, (u64, tokio::time::Instant)> = HashMap::new();
    // Metrics go out at most every REPORT_EVERY, not on every ack: the
    // gauges walk every chat. The autoscaler's tick is an event too, so
    // they stay fresh while the bot is idle.
    let mut reported: Option<tokio::time::Instant> = None;
    while let Some(event) = events.recv().await {
        match event {
            Event::Batch { updates } => d.batch(updates),
            Event::Recovered { updates, strikes } => d.recovered(updates, &strikes),
            Event::Connected {
                worker,
                conn,
                outbox,
                slot,
            } => {
                slots.insert(worker, slot);
                outboxes.insert(worker, (conn, outbox.clone()));
                d.connected(worker, conn, outbox);
            }
            Event::Ready { worker, conn } => d.ready(worker, conn),
            Event::Acks { worker, acks } => {
                for id in d.acks(worker, &acks) {
                    ctx.journal.ack(id);
                }
            }
            Event::Metrics { worker, metrics } => {
                if let Some(worker) = slots.get(&worker).map(|s| s.index.to_string()) {
                    metrics::gauge!("botfleet_worker_in_flight", "bot" => bot.clone(), "worker" => worker.clone())
                        .set(f64::from(metrics.in_flight));
                    metrics::gauge!("botfleet_worker_handling_p99_seconds", "bot" => bot.clone(), "worker" => worker)
                        .set(metrics.handling_p99_us as f64 / 1e6);
                }
            }
            Event::Stats { worker, values } => stats.latest(worker, values),
            Event::Series { worker, list } => {
                if let (Some(slot), Some(registry)) =
                    (slots.get(&worker), botfleet_monitor::installed())
                {
                    forwarded.merge(&registry, &bot, slot.index, list);
                }
            }
            Event::Drained { worker } => {
                if let Some((_, left)) = &mut drain {
                    left.retain(|&w| w != worker);
                }
            }
            Event::Gone { worker, conn } => {
                if d.pause(worker, conn) {
                    closing.insert(worker, (conn, tokio::time::Instant::now()));
                }
                stats.gone(worker);
                if let Some((_, left)) = &mut drain {
                    left.retain(|&w| w != worker);
                }
                // The outbox of the connection that went, not the one of a
                // replacement already connected: a drain must not wait for
                // a connection that is gone.
                if outboxes.get(&worker).is_some_and(|(c, _)| *c == conn) {
                    outboxes.remove(&worker);
                }
            }
            Event::Exited {
                worker,
                pid,
                status,
                blame,
            } => {
                // What it held goes back to the queues now, with a strike
                // each unless it was killed from outside.
                let conn = closing.remove(&worker).map(|(c, _)| c);
                let gone = if conn.is_some() || d.is_connected(worker) {
                    d.gone(worker, conn, blame)
                } else {
                    crate::dispatcher::Gone::default()
                };
                let held = gone.held.clone();
                if let Some(slot) = slots.get(&worker) {
                    forwarded.restarted(slot.index);
                }
                set_aside(&ctx, slots.get(&worker), worker, gone);
                if held.is_empty() && shutting_down {
                    tracing::info!(bot = %bot, worker, pid, "worker stopped ({status})");
                } else if held.is_empty() {
                    tracing::warn!(bot = %bot, worker, pid, "worker exited ({status})");
                } else {
                    tracing::warn!(
                        bot = %bot,
                        worker,
                        pid,
                        held = held.len(),
                        updates = ?&held[..held.len().min(10)],
                        "worker exited ({status}) holding {} updates; they are delivered again",
                        held.len()
                    );
                }
            }
            Event::Drain(done) => {
                d.stop_sending();
                let left: Vec<u32> = outboxes
                    .iter()
                    .filter(|(_, (_, o))| o.send(Message::Drain).is_ok())
                    .map(|(&w, _)| w)
                    .collect();
                drain = Some((done, left));
            }
            Event::Shutdown => {
                shutting_down = true;
                for (_, o) in outboxes.values() {
                    let _ = o.send(Message::Shutdown);
                }
            }
            Event::Stop => {
                // The bot is stopped: its workers' series leave the monitor.
                for slot in slots.values() {
                    forwarded.gone(botfleet_monitor::installed(), &bot, slot.index);
                }
                break;
            }
            Event::Load(reply) => {
                d.wake();
                // A connection closed without its process's exit (a worker
                // that closed its socket and lives on, or a retired one).
                let waited: Vec<(u32, u64)> = closing
                    .iter()
                    .filter(|(_, (_, at))| at.elapsed() >= CLOSE_WAIT)
                    .map(|(&w, &(c, _))| (w, c))
                    .collect();
                for (worker, conn) in waited {
                    closing.remove(&worker);
                    let gone = d.gone(worker, Some(conn), true);
                    set_aside(&ctx, slots.get(&worker), worker, gone);
                }
                let sums = stats.sums();
                let sum = |stat: Stat| sums.get(stat.name()).copied().unwrap_or(0.0);
                let now = (sum(Stat::HandlerUs), sum(Stat::ApiUs), sum(Stat::Handled));
                let handled = now.2 - busy_seen.2;
                // The workers' own account of their time, as counters for
                // the analyzer: what a handler spent, of it waiting for
                // the Bot API (a restarted worker's sums start again: only
                // growth counts).
                handler_seconds.0 += (now.0 - busy_seen.0).max(0.0) / 1e6;
                handler_seconds.1 += (now.1 - busy_seen.1).max(0.0) / 1e6;
                if let Some(registry) = botfleet_monitor::installed() {
                    let labels = [("bot".to_owned(), bot.clone())];
                    registry.set_float_counter(
                        "botfleet_handler_seconds_total",
                        &labels,
                        handler_seconds.0,
                    );
                    registry.set_float_counter(
                        "botfleet_handler_api_seconds_total",
                        &labels,
                        handler_seconds.1,
                    );
                }
                let busy = (handled > 0.0).then(|| {
                    let us = ((now.0 - busy_seen.0) - (now.1 - busy_seen.1)).max(0.0) / handled;
                    std::time::Duration::from_micros(us as u64)
                });
                busy_seen = now;
                // Stuck updates: their workers are restarted, and they take
                // the blame.
                let deadline = ctx.config.supervision.handling_deadline;
                for (worker, id, chat, held_for) in d.overdue(tokio::time::Instant::now(), deadline)
                {
                    metrics::counter!("botfleet_updates_stuck_total", "bot" => bot.clone())
                        .increment(1);
                    tracing::warn!(
                        bot = %bot,
                        worker,
                        update = id,
                        chat,
                        "update handled for {} at worker {worker}, past its deadline of {}; restarting the worker",
                        botfleet_config::duration::format(held_for),
                        botfleet_config::duration::format(deadline),
                    );
                    if let Some(slot) = slots.get(&worker) {
                        slot.kill.notify_one();
                    }
                }
                for l in d.take_latencies() {
                    metrics::histogram!("botfleet_update_handling_seconds", "bot" => bot.clone())
                        .record(l.as_secs_f64());
                }
                let calling = ctx.calling.load(Ordering::Relaxed);
                let _ = reply.send(Load {
                    runnable: d.active_chats().saturating_sub(calling),
                    busy,
                    calling,
                    backing_off: d.backing_off(),
                    unacked: d.unacked(),
                });
            }
            Event::Retire { worker, done } => {
                d.retire(worker);
                retiring.push((worker, done));
            }
            Event::Forget { worker } => {
                if let Some((conn, _)) = closing.remove(&worker) {
                    let gone = d.gone(worker, Some(conn), true);
                    set_aside(&ctx, slots.get(&worker), worker, gone);
                }
                d.forget(worker);
                if let Some(slot) = slots.remove(&worker) {
                    forwarded.gone(botfleet_monitor::installed(), &bot, slot.index);
                }
                outboxes.remove(&worker);
            }
            Event::Status(reply) => {
                let c = d.counts;
                let _ = reply.send(Status {
                    bot: bot.clone(),
                    ready_workers: d.ready_workers(),
                    unacked: d.unacked(),
                    queued: d.queued(),
                    received: c.received,
                    dispatched: c.dispatched,
                    acked: c.acked,
                    failed: c.failed,
                    redelivered: c.redelivered,
                    dead_lettered: c.dead,
                    retried: c.retried,
                    restarts: ctx.restarts.load(Ordering::Relaxed),
                    failed_bot: ctx.failed.load(Ordering::Relaxed),
                    ack_us_total: c.ack_us_total,
                    worker_stats: stats.sums(),
                });
            }
        }
        // A retiring worker that holds nothing more may go (its slot stops
        // it).
        let mut i = 0;
        while i < retiring.len() {
            if d.holds_nothing(retiring[i].0) {
                let (_, done) = retiring.swap_remove(i);
                let _ = done.send(());
            } else {
                i += 1;
            }
        }
        if drain.as_ref().is_some_and(|(_, left)| left.is_empty()) {
            if let Some((done, _)) = drain.take() {
                let _ = done.send(());
            }
        }
        if reported.is_none_or(|t| t.elapsed() >= REPORT_EVERY) {
            report(&bot, &d, &mut last);
            metrics::gauge!("botfleet_journal_oldest_seconds", "bot" => bot.clone())
                .set(ctx.journal.oldest_age().as_secs_f64());
            reported = Some(tokio::time::Instant::now());
        }
    }
}

/// A worker slot's index, a series' name and its labels (with `bot` and
/// `worker`).
type SlotSeries = (u32, String, Vec<(String, String)>);

/// Series of its workers one bot keeps at most: a worker that invents
/// series without end (a hostile or broken one) cannot grow the
/// supervisor's memory; the monitor's own cap bounds what it serves.
const MAX_FORWARDED: usize = 20_000;

/// The last totals each worker slot sent of its own metrics, to serve
/// them as series that only grow across the worker's restarts
/// (docs/protocol.md, "Worker metrics").
#[derive(Default)]
struct Forwarded {
    last: HashMap<SlotSeries, botfleet_protocol::SeriesValue>,
    /// Series dropped past [`MAX_FORWARDED`].
    refused: u64,
}

impl Forwarded {
    /// The slot's worker exited: what its successor sends starts from zero.
    fn restarted(&mut self, index: u32) {
        self.last.retain(|(i, _, _), _| *i != index);
    }

    /// The slot is gone: its series leave the monitor too.
    fn gone(&mut self, registry: Option<botfleet_monitor::Registry>, bot: &str, index: u32) {
        self.restarted(index);
        if let Some(registry) = registry {
            registry.remove_labelled(&[("bot", bot), ("worker", &index.to_string())]);
        }
    }

    /// Adds what changed in `list`, from `bot`'s slot `index`, to
    /// `registry`, with `bot` and `worker` labels.
    fn merge(
        &mut self,
        registry: &botfleet_monitor::Registry,
        bot: &str,
        index: u32,
        list: Vec<botfleet_protocol::Series>,
    ) {
        use botfleet_protocol::SeriesValue;
        for series in list {
            let mut labels: Vec<(String, String)> = series
                .labels
                .into_iter()
                .filter(|(k, _)| k != "bot" && k != "worker")
                .collect();
            labels.push(("bot".to_owned(), bot.to_owned()));
            labels.push(("worker".to_owned(), index.to_string()));
            labels.sort();
            let key = (index, series.name, labels);
            if !self.last.contains_key(&key) && self.last.len() >= MAX_FORWARDED {
                self.refused += 1;
                if self.refused == 1 {
                    tracing::warn!(bot, worker = index, metric = %key.1, "the bot's workers sent more than {MAX_FORWARDED} series; new ones are dropped");
                }
                continue;
            }
            let previous = self.last.get(&key);
            match (&series.value, previous) {
                (SeriesValue::Counter(n), previous) => {
                    let before = match previous {
                        Some(SeriesValue::Counter(p)) if p <= n => *p,
                        // First seen, or lower: a restarted worker.
                        _ => 0,
                    };
                    registry.add_counter(&key.1, &key.2, n - before);
                }
                (SeriesValue::Gauge(v), _) => registry.set_gauge(&key.1, &key.2, *v),
                (
                    SeriesValue::Histogram {
                        bounds,
                        counts,
                        sum,
                    },
                    previous,
                ) => {
                    let (before, before_sum) = match previous {
                        Some(SeriesValue::Histogram {
                            counts: p,
                            sum: ps,
                            bounds: pb,
                        }) if pb == bounds && p.iter().zip(counts).all(|(a, b)| a <= b) => {
                            (p.clone(), *ps)
                        }
                        _ => (vec![0; counts.len()], 0.0),
                    };
                    let delta: Vec<u64> = counts.iter().zip(&before).map(|(n, b)| n - b).collect();
                    if !registry.add_histogram(&key.1, &key.2, bounds, &delta, sum - before_sum) {
                        tracing::debug!(bot, metric = %key.1, "a worker's histogram changed its bounds; dropped");
                    }
                }
            }
            self.last.insert(key, series.value);
        }
    }
}

/// What `worker`'s end left: the strikes go to the journal, and each dead
/// letter is written (with the worker's last output), then removed from
/// the journal; says so at ERROR. A letter that cannot be written stays in
/// the journal, to come back at the next start.
fn set_aside(
    ctx: &Arc<BotCtx>,
    slot: Option<&Arc<crate::slot::SlotShared>>,
    worker: u32,
    gone: crate::dispatcher::Gone,
) {
    for &(id, strikes) in &gone.struck {
        ctx.journal.strike(id, strikes);
    }
    let dead = gone.dead;
    if dead.is_empty() {
        return;
    }
    let output: Vec<String> = slot
        .map(|s| s.output.lock().iter().cloned().collect())
        .unwrap_or_default();
    let max = ctx.config.supervision.max_attempts;
    for letter in dead {
        let p = &letter.pending;
        let reason = if letter.stuck {
            format!(
                "it ran past its handling deadline ({}); {} strikes in {} attempts",
                botfleet_config::duration::format(ctx.config.supervision.handling_deadline),
                p.strikes,
                p.attempt
            )
        } else {
            format!(
                "its worker died while handling it, {} times in {} attempts",
                p.strikes, p.attempt
            )
        };
        let record = crate::dead::DeadLetter {
            bot: ctx.name.clone(),
            update_id: p.update_id,
            chat: letter.chat,
            attempts: p.attempt,
            reason,
            output: output.clone(),
            dead_at: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            update: serde_json::from_str(p.update.get()).unwrap_or(serde_json::Value::Null),
        };
        let ctx = ctx.clone();
        tokio::spawn(async move {
            let data_dir = ctx.data_dir.clone();
            let written = tokio::task::spawn_blocking(move || {
                crate::dead::write(&data_dir, &record).map(|path| (path, record))
            })
            .await;
            match written {
                Ok(Ok((path, record))) => {
                    ctx.journal.ack(record.update_id);
                    tracing::error!(
                        bot = %ctx.name,
                        worker,
                        update = record.update_id,
                        chat = record.chat,
                        file = %path.display(),
                        "update set aside as a dead letter after {max} strikes: {}; its chat goes on (botfleet dead-letters show {} {})",
                        record.reason,
                        ctx.name,
                        record.update_id
                    );
                }
                Ok(Err(e)) => {
                    tracing::error!(bot = %ctx.name, worker, "cannot write a dead letter; the update stays in the journal: {e}")
                }
                Err(e) => {
                    tracing::error!(bot = %ctx.name, worker, "cannot write a dead letter: {e}")
                }
            }
        });
    }
}

/// What the workers of a bot report of their own (`stats`): each live
/// worker's latest values, and the counters of workers that are gone.
#[derive(Debug, Default)]
struct WorkerStats {
    latest: HashMap<u32, Vec<(String, f64)>>,
    carried: std::collections::BTreeMap<String, f64>,
}

impl WorkerStats {
    /// `worker`'s values now.
    fn latest(&mut self, worker: u32, values: Vec<(String, f64)>) {
        self.latest.insert(worker, values);
    }

    /// `worker` is gone: its counters live on in the bot's sums, its
    /// gauges leave with it.
    fn gone(&mut self, worker: u32) {
        for (name, value) in self.latest.remove(&worker).unwrap_or_default() {
            if Kind::of(&name) == Kind::Counter {
                *self.carried.entry(name).or_default() += value;
            }
        }
    }

    /// The bot's sum of every name.
    fn sums(&self) -> std::collections::BTreeMap<String, f64> {
        let mut sum = self.carried.clone();
        for (name, value) in self.latest.values().flatten() {
            *sum.entry(name.clone()).or_default() += value;
        }
        sum
    }
}

/// How long the updates of a closed connection wait for its process's exit
/// before they go to another worker anyway.
const CLOSE_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// How often the actor publishes its metrics at most.
const REPORT_EVERY: std::time::Duration = std::time::Duration::from_millis(100);

/// The dispatcher's counters and gauges, as metrics (docs/metrics.md).
fn report(bot: &str, d: &Dispatcher, last: &mut Counts) {
    let c = d.counts;
    // Every counter from the bot's first report, at 0 until something
    // happens: a rule's `increase()` then sees the first updates too (a
    // series born at 8 would count nothing before its second sample).
    let bump = |name: &'static str, now: u64, before: u64| {
        metrics::counter!(name, "bot" => bot.to_owned()).increment(now.saturating_sub(before));
    };
    bump("botfleet_updates_received_total", c.received, last.received);
    bump(
        "botfleet_updates_dispatched_total",
        c.dispatched,
        last.dispatched,
    );
    bump("botfleet_updates_acked_total", c.acked, last.acked);
    bump("botfleet_updates_failed_total", c.failed, last.failed);
    bump("botfleet_updates_retried_total", c.retried, last.retried);
    bump("botfleet_dead_letters_total", c.dead, last.dead);
    bump(
        "botfleet_updates_redelivered_total",
        c.redelivered,
        last.redelivered,
    );
    *last = c;
    metrics::gauge!("botfleet_queue_depth", "bot" => bot.to_owned()).set(d.queued() as f64);
    metrics::gauge!("botfleet_workers_ready", "bot" => bot.to_owned())
        .set(d.ready_workers() as f64);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_series_grow_across_restarts_and_are_bounded() {
        use botfleet_protocol::{Series, SeriesValue};
        let registry = botfleet_monitor::Registry::new(100_000);
        let counter = |name: &str, n: u64| Series {
            name: name.to_owned(),
            labels: vec![("worker".to_owned(), "spoofed".to_owned())],
            value: SeriesValue::Counter(n),
        };
        let value = |r: &botfleet_monitor::Registry| {
            r.snapshot()
                .series
                .into_iter()
                .find(|s| s.name == "jobs_total")
                .map(|s| (s.labels, s.value))
        };
        let mut f = Forwarded::default();
        f.merge(&registry, "echo", 0, vec![counter("jobs_total", 5)]);
        f.merge(&registry, "echo", 0, vec![counter("jobs_total", 8)]);
        // The worker restarts: its total starts again, and adds.
        f.restarted(0);
        f.merge(&registry, "echo", 0, vec![counter("jobs_total", 2)]);
        let (labels, v) = value(&registry).unwrap();
        assert_eq!(v, botfleet_monitor::registry::Value::Counter(10));
        assert_eq!(
            labels,
            [
                ("bot".to_owned(), "echo".to_owned()),
                ("worker".to_owned(), "0".to_owned())
            ],
            "the worker's own `worker` label is replaced"
        );
        // A worker inventing series without end: bounded.
        let flood: Vec<Series> = (0..MAX_FORWARDED + 500)
            .map(|i| counter(&format!("flood_{i}_total"), 1))
            .collect();
        f.merge(&registry, "echo", 1, flood);
        assert_eq!(f.last.len(), MAX_FORWARDED);
        assert!(f.refused >= 500);
        // The slot goes: its series leave the monitor.
        f.gone(Some(registry.clone()), "echo", 0);
        assert_eq!(value(&registry), None);
    }

    #[test]
    fn counters_outlive_their_worker_and_gauges_do_not() {
        let mut stats = WorkerStats::default();
        let values = |handled: f64, pool: f64| {
            vec![
                (Stat::Handled.name().to_owned(), handled),
                (Stat::DbPoolSize.name().to_owned(), pool),
                ("queue_depth".to_owned(), 3.0),
            ]
        };
        stats.latest(1, values(10.0, 4.0));
        stats.latest(2, values(5.0, 4.0));
        stats.gone(1);
        let sums = stats.sums();
        assert_eq!(sums[Stat::Handled.name()], 15.0);
        assert_eq!(sums[Stat::DbPoolSize.name()], 4.0);
        assert_eq!(sums["queue_depth"], 3.0);
        stats.gone(2);
        let sums = stats.sums();
        assert_eq!(sums[Stat::Handled.name()], 15.0);
        assert!(!sums.contains_key(Stat::DbPoolSize.name()), "{sums:?}");
    }
}
