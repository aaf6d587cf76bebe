//! The autoscaler of one bot: it owns the bot's worker slots, starts
//! `min_workers` of them, and every tick compares the load with the
//! targets, HPA-style.
//!
//! desired = clamp(ceil(current × max(runnable per worker / target,
//! busy time / target)), min, max), left alone within a 10 % tolerance.
//! It scales on what more workers can fix. "Runnable" counts the chats with
//! an update at a worker or ready to go, less the Bot API calls in progress:
//! a chat's updates go one at a time, so a chat is one unit of work, and a
//! chat waiting for Telegram's limits or answer, or for a dependency's
//! outage to pass, is no work for another worker. "Busy time" is the
//! handlers' mean time per update less their time in Bot API calls, from
//! the workers' stats. Up at once, at most doubling per tick; down one
//! worker at a time, only after the load stayed low for the stabilization
//! window, and only once the leaving worker's chats were handed over (it
//! gets no new chat, and is stopped when it holds no update). When the
//! updates waiting are many but more workers would not help, it says so
//! once.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::bot::{BotCtx, Event, Load};
use crate::conn::Registry;
use crate::process::Spec;
use crate::slot::{self, SlotShared};

/// HPA's tolerance: a ratio within 10 % of 1 changes nothing.
const TOLERANCE: f64 = 0.1;

struct Slot {
    id: u32,
    shared: Arc<SlotShared>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

/// A reload's ask: replace the bot's workers with workers of `spec`, one
/// at a time; `done` says how it went.
pub(crate) struct Roll {
    pub(crate) spec: Spec,
    pub(crate) done: oneshot::Sender<Result<(), String>>,
}

/// Runs `bot`'s slots until `stop` turns true, then stops them all. Between
/// its ticks it carries out the rolls it is asked for.
pub(crate) async fn run(
    bot: Arc<BotCtx>,
    registry: Registry,
    mut stop: watch::Receiver<bool>,
    mut rolls: mpsc::UnboundedReceiver<Roll>,
) {
    let config = bot.config.clone();
    let s = config.supervision.scaling.clone();
    let mut slots: Vec<Slot> = Vec::new();
    for _ in 0..config.min_workers {
        let slot = start(&bot, &registry, &slots);
        slots.push(slot);
    }
    metrics::gauge!("botfleet_bot_target_latency_seconds", "bot" => config.name.clone())
        .set(s.target_latency.as_secs_f64());
    let mut leaving: Vec<JoinHandle<()>> = Vec::new();
    let mut tick = tokio::time::interval(s.tick);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut low_since: Option<Instant> = None;
    let mut capped = false;
    let mut declined = false;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => break,
            Some(asked) = rolls.recv() => {
                let outcome = roll(&bot, &registry, &mut slots, asked.spec, &mut stop).await;
                let _ = asked.done.send(outcome);
                low_since = None;
                continue;
            }
        }
        if *stop.borrow() {
            break;
        }
        replay_dead_letters(&bot).await;
        if bot.failed.load(Ordering::SeqCst) {
            continue;
        }
        let (tx, rx) = oneshot::channel();
        bot.send(Event::Load(tx));
        let Ok(load) = rx.await else { break };
        let current = slots.len() as u32;
        let want = desired(current, &load, s.target_queue_per_worker, s.target_latency);
        let name = bot.name.clone();
        // Many updates wait, but not for workers: say why nothing is added.
        let waiting_elsewhere = load.calling + load.backing_off;
        let many = load.unacked > (current.max(1) * s.target_queue_per_worker) as usize;
        if want <= current && many && waiting_elsewhere > 0 {
            if !declined {
                tracing::info!(
                    bot = %name,
                    unacked = load.unacked,
                    waiting_for_telegram = load.calling,
                    waiting_out_an_outage = load.backing_off,
                    "not scaling up: the updates wait for Telegram's limits or answer, or for a dependency to come back, which more workers cannot speed up"
                );
                declined = true;
            }
        } else if !many {
            declined = false;
        }
        metrics::gauge!("botfleet_workers_max", "bot" => name.clone())
            .set(f64::from(config.max_workers));
        metrics::gauge!("botfleet_workers_desired", "bot" => name.clone()).set(f64::from(
            want.clamp(config.min_workers, config.max_workers),
        ));
        if want > current {
            low_since = None;
            let mut target = want.min(current.max(1) * 2);
            if target > config.max_workers {
                metrics::counter!("botfleet_scale_capped_total", "bot" => name.clone())
                    .increment(1);
                if !capped {
                    tracing::warn!(bot = %name, wanted = want, max_workers = config.max_workers, "the load asks for more workers than max_workers (the fleet's connection budget was planned for max_workers); staying at {}", config.max_workers);
                }
                capped = true;
                target = config.max_workers;
            } else {
                capped = false;
            }
            if target > current {
                tracing::info!(bot = %name, from = current, to = target, runnable = load.runnable, busy = ?load.busy, "scaling up");
                for _ in current..target {
                    let slot = start(&bot, &registry, &slots);
                    slots.push(slot);
                }
            }
        } else if want < current && current > config.min_workers {
            capped = false;
            let since = *low_since.get_or_insert_with(Instant::now);
            if since.elapsed() >= s.scale_down_window {
                let slot = slots.pop().expect("more than min_workers");
                tracing::info!(bot = %name, from = current, to = current - 1, "scaling down");
                leaving.push(tokio::spawn(retire(bot.clone(), registry.clone(), slot)));
                // The next one waits for a window of its own.
                low_since = Some(Instant::now());
            }
        } else {
            capped = false;
            low_since = None;
        }
        metrics::gauge!("botfleet_workers", "bot" => name).set(slots.len() as f64);
    }
    for slot in &slots {
        let _ = slot.stop.send(true);
    }
    for slot in slots {
        let _ = slot.task.await;
        registry.lock().remove(&slot.id);
    }
    for task in leaving {
        let _ = task.await;
    }
}

/// Hands out again the dead letters `botfleet dead-letters replay` put in
/// the bot's `replay/` directory: journaled first, with fresh attempts. A
/// letter the journal cannot take goes back among the dead letters.
async fn replay_dead_letters(bot: &Arc<BotCtx>) {
    let (dir, name) = (bot.data_dir.clone(), bot.name.clone());
    let letters =
        match tokio::task::spawn_blocking(move || crate::dead::take_replays(&dir, &name)).await {
            Ok(Ok(letters)) if !letters.is_empty() => letters,
            Ok(Ok(_)) | Err(_) => return,
            Ok(Err(e)) => {
                tracing::warn!(bot = %bot.name, "cannot read the dead letters to replay: {e}");
                return;
            }
        };
    let entries: Vec<crate::journal::Entry> = letters
        .iter()
        .filter_map(|l| {
            botfleet_protocol::Json::parse(l.update.to_string())
                .ok()
                .map(|json| (l.update_id, l.chat, json))
        })
        .collect();
    match bot.journal.replay(entries).await {
        Ok(fresh) => {
            let ids: Vec<i64> = fresh.iter().map(|e| e.0).collect();
            tracing::warn!(bot = %bot.name, updates = ?ids, "handing dead letters out again");
            metrics::counter!("botfleet_dead_letters_replayed_total", "bot" => bot.name.clone())
                .increment(ids.len() as u64);
            bot.send(Event::Batch { updates: fresh });
        }
        Err(e) => {
            tracing::error!(bot = %bot.name, "cannot journal the dead letters to replay; they stay dead letters: {e}");
            let data_dir = bot.data_dir.clone();
            let _ = tokio::task::spawn_blocking(move || {
                for letter in &letters {
                    let _ = crate::dead::write(&data_dir, letter);
                }
            })
            .await;
        }
    }
}

/// The worker count the load asks for (not yet clamped).
fn desired(current: u32, load: &Load, target_queue: u32, target_latency: Duration) -> u32 {
    let current = current.max(1);
    let queue = load.runnable as f64 / f64::from(current) / f64::from(target_queue.max(1));
    let latency =
        load.busy.unwrap_or_default().as_secs_f64() / target_latency.as_secs_f64().max(1e-6);
    let ratio = queue.max(latency);
    if (ratio - 1.0).abs() <= TOLERANCE {
        current
    } else {
        (f64::from(current) * ratio).ceil() as u32
    }
}

/// Starts a worker slot, labelled in metrics by the smallest index no slot
/// of `others` has: labels stay within `0..max_workers` however often
/// workers come and go.
fn start(bot: &Arc<BotCtx>, registry: &Registry, others: &[Slot]) -> Slot {
    let id = crate::next_worker_id();
    let index = (0..)
        .find(|i| !others.iter().any(|s| s.shared.index == *i))
        .unwrap_or(0);
    let shared = Arc::new(SlotShared {
        index,
        ..SlotShared::default()
    });
    registry.lock().insert(id, (bot.clone(), shared.clone()));
    let (stop, rx) = watch::channel(false);
    let task = tokio::spawn(slot::supervise(bot.clone(), id, shared.clone(), rx));
    Slot {
        id,
        shared,
        stop,
        task,
    }
}

/// Replaces every worker of `slots` by one started with `spec`, one at a
/// time. Below `max_workers` the new worker is ready before an old one is
/// retired (its chats handed over once idle, then stopped); at
/// `max_workers` (the connection budget's plan) the old one goes first. A
/// new worker not ready within `ready_timeout` ends the roll: the old spec
/// is put back, so the workers left and every later restart run it.
async fn roll(
    bot: &Arc<BotCtx>,
    registry: &Registry,
    slots: &mut Vec<Slot>,
    spec: Spec,
    stop: &mut watch::Receiver<bool>,
) -> Result<(), String> {
    let old_spec = std::mem::replace(&mut *bot.spec.lock(), spec);
    let count = slots.len();
    tracing::info!(bot = %bot.name, workers = count, "rolling the workers onto the new command");
    let old: Vec<Slot> = std::mem::take(slots);
    let mut old = old.into_iter();
    let mut rolled = 0;
    while let Some(slot) = old.next() {
        let surge = (count as u32) < bot.config.max_workers;
        let mut waiting = Some(slot);
        if !surge {
            if let Some(slot) = waiting.take() {
                retire(bot.clone(), registry.clone(), slot).await;
            }
        }
        let new = start(bot, registry, slots);
        let ready = ready_within(&new, bot.config.supervision.ready_timeout, stop).await;
        if ready {
            slots.push(new);
            if let Some(slot) = waiting {
                retire(bot.clone(), registry.clone(), slot).await;
            }
            rolled += 1;
            continue;
        }
        // Give up: the old spec comes back for everything that starts next.
        *bot.spec.lock() = old_spec;
        match waiting {
            Some(slot) => {
                let id = new.id;
                stop_slot(registry, new).await;
                bot.send(Event::Forget { worker: id });
                slots.push(slot);
            }
            // The replacement restarts with the old spec.
            None => slots.push(new),
        }
        slots.extend(old);
        let why = format!(
            "a worker of the new command was not ready within {}; the roll stopped after {rolled} of {count} workers and the old command is kept",
            botfleet_config::duration::format(bot.config.supervision.ready_timeout)
        );
        tracing::error!(bot = %bot.name, "{why}");
        return Err(why);
    }
    tracing::info!(bot = %bot.name, workers = count, "rolled");
    Ok(())
}

/// Whether `slot`'s worker is ready within `limit` (false when the fleet
/// stops meanwhile).
async fn ready_within(slot: &Slot, limit: Duration, stop: &mut watch::Receiver<bool>) -> bool {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if slot.shared.is_ready.load(Ordering::SeqCst) {
            return true;
        }
        if *stop.borrow() {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    slot.shared.is_ready.load(Ordering::SeqCst)
}

/// Stops `slot` at once (its worker holds nothing yet) and forgets it.
async fn stop_slot(registry: &Registry, slot: Slot) {
    let _ = slot.stop.send(true);
    let _ = slot.task.await;
    registry.lock().remove(&slot.id);
}

/// Hands the slot's chats over, then stops it.
async fn retire(bot: Arc<BotCtx>, registry: Registry, slot: Slot) {
    let (tx, rx) = oneshot::channel();
    bot.send(Event::Retire {
        worker: slot.id,
        done: tx,
    });
    // Once it holds nothing (or after the grace period) the slot stops it:
    // SIGTERM, SIGKILL after another grace period.
    let _ = tokio::time::timeout(bot.config.supervision.shutdown_grace, rx).await;
    let _ = slot.stop.send(true);
    let _ = slot.task.await;
    registry.lock().remove(&slot.id);
    bot.send(Event::Forget { worker: slot.id });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(runnable: usize, busy_ms: u64) -> Load {
        Load {
            runnable,
            busy: Some(Duration::from_millis(busy_ms)),
            ..Load::default()
        }
    }

    #[test]
    fn the_rule_of_hpa() {
        let ms = Duration::from_millis;
        // On target, or within 10 %: no change.
        assert_eq!(desired(4, &load(40, 100), 10, ms(200)), 4);
        assert_eq!(desired(4, &load(43, 0), 10, ms(200)), 4);
        // Twice the queue: twice the workers; latency rules when worse.
        assert_eq!(desired(2, &load(40, 0), 10, ms(200)), 4);
        assert_eq!(desired(2, &load(0, 600), 10, ms(200)), 6);
        // No load: as few as allowed (the caller clamps to min).
        assert_eq!(desired(3, &load(0, 0), 10, ms(200)), 0);
    }
}
