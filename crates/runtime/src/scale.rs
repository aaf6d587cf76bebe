//! The autoscaler of one bot: it owns the bot's worker slots, starts
//! `min_workers` of them, and every tick compares the load with the
//! targets, HPA-style.
//!
//! desired = clamp(ceil(current × max(queued per worker / target,
//! p95 handling time / target)), min, max), left alone within a 10 %
//! tolerance. "Queued" counts every update received and not acked, plus a
//! poll's worth when polls came back full since the last tick (a backlog
//! at Telegram the dispatcher cannot see); the handling time is from
//! dispatch to ack. Up at once, at most doubling per tick; down one worker at a
//! time, only after the load stayed low for the stabilization window, and
//! only once the leaving worker's chats were handed over (it gets no new
//! chat, and is stopped when it holds no update).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::bot::{BotCtx, Event, Load};
use crate::conn::Registry;
use crate::slot::{self, SlotShared};

/// HPA's tolerance: a ratio within 10 % of 1 changes nothing.
const TOLERANCE: f64 = 0.1;

struct Slot {
    id: u32,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

/// Runs `bot`'s slots until `stop` turns true, then stops them all.
pub(crate) async fn run(bot: Arc<BotCtx>, registry: Registry, mut stop: watch::Receiver<bool>) {
    let config = bot.config.clone();
    let s = config.supervision.scaling.clone();
    let mut slots: Vec<Slot> = (0..config.min_workers)
        .map(|_| start(&bot, &registry))
        .collect();
    let mut leaving: Vec<JoinHandle<()>> = Vec::new();
    let mut tick = tokio::time::interval(s.tick);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut low_since: Option<Instant> = None;
    let mut capped = false;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => break,
        }
        if *stop.borrow() {
            break;
        }
        if bot.failed.load(Ordering::SeqCst) {
            continue;
        }
        let (tx, rx) = oneshot::channel();
        bot.send(Event::Load(tx));
        let Ok(mut load) = rx.await else { break };
        // A full poll means more updates wait at Telegram: a backlog the
        // dispatcher cannot see, counted as another poll's worth.
        let full = bot.full_polls.swap(0, Ordering::Relaxed);
        if full > 0 {
            load.queued += crate::ingest::POLL_LIMIT as usize;
        }
        let current = slots.len() as u32;
        let want = desired(current, &load, s.target_queue_per_worker, s.target_latency);
        let name = bot.name.clone();
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
                tracing::info!(bot = %name, from = current, to = target, queued = load.queued, "scaling up");
                for _ in current..target {
                    slots.push(start(&bot, &registry));
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
    }
    for task in leaving {
        let _ = task.await;
    }
}

/// The worker count the load asks for (not yet clamped).
fn desired(current: u32, load: &Load, target_queue: u32, target_latency: Duration) -> u32 {
    let current = current.max(1);
    let queue = load.queued as f64 / f64::from(current) / f64::from(target_queue.max(1));
    let p95 = load
        .latencies
        .get(((load.latencies.len() as f64 - 1.0) * 0.95).round() as usize)
        .copied()
        .unwrap_or_default();
    let latency = p95.as_secs_f64() / target_latency.as_secs_f64().max(1e-6);
    let ratio = queue.max(latency);
    if (ratio - 1.0).abs() <= TOLERANCE {
        current
    } else {
        (f64::from(current) * ratio).ceil() as u32
    }
}

fn start(bot: &Arc<BotCtx>, registry: &Registry) -> Slot {
    let id = crate::next_worker_id();
    let shared = Arc::new(SlotShared::default());
    registry.lock().insert(id, (bot.clone(), shared.clone()));
    let (stop, rx) = watch::channel(false);
    let task = tokio::spawn(slot::supervise(bot.clone(), id, shared, rx));
    Slot { id, stop, task }
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

    fn load(queued: usize, p95_ms: u64) -> Load {
        Load {
            queued,
            latencies: vec![Duration::from_millis(p95_ms); 20],
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
