//! The dispatcher of one bot: routes updates to workers by chat, one
//! update per chat at a time (invariant 2), and redelivers what a dead
//! worker held. Every update it holds is in the bot's journal until its ack
//! (invariant 1): the actor removes what [`Dispatcher::acks`] says was
//! acked.

use std::collections::{HashMap, HashSet, VecDeque};

use botfleet_protocol::{Ack, Delivery, Json, Message, Outcome};
use tokio::sync::mpsc;
use tokio::time::{Duration, Instant};

use crate::ring::Ring;

/// An update waiting for, or at, a worker.
#[derive(Debug)]
struct Pending {
    update_id: i64,
    attempt: u32,
    update: Json,
}

#[derive(Debug, Default)]
struct Chat {
    queue: VecDeque<Pending>,
    /// The worker holding the chat's current update, and the update.
    in_flight: Option<(u32, Pending)>,
}

#[derive(Debug)]
struct Worker {
    conn: u64,
    outbox: mpsc::UnboundedSender<Message>,
    ready: bool,
    /// Being removed by the autoscaler: gets no new chats.
    retiring: bool,
    /// Chats whose update this worker holds.
    chats: HashSet<i64>,
}

/// What the dispatcher did, for metrics and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Counts {
    pub(crate) received: u64,
    pub(crate) dispatched: u64,
    pub(crate) acked: u64,
    pub(crate) failed: u64,
    pub(crate) redelivered: u64,
    pub(crate) stray_acks: u64,
    /// Dispatch-to-ack time of every acked update, summed, µs.
    pub(crate) ack_us_total: u64,
}

/// One bot's routing state.
#[derive(Debug, Default)]
pub(crate) struct Dispatcher {
    chats: HashMap<i64, Chat>,
    /// update id -> its chat and when it was sent, while a worker holds it.
    held: HashMap<i64, (i64, Instant)>,
    /// Dispatch-to-ack times since the last [`Dispatcher::take_latencies`].
    latencies: Vec<Duration>,
    workers: HashMap<u32, Worker>,
    ring: Ring,
    /// Workers the autoscaler is removing.
    retiring: HashSet<u32>,
    pub(crate) counts: Counts,
}

impl Dispatcher {
    /// Updates from the journal, as `(update id, routing key, update)`,
    /// each appended to its chat's queue.
    pub(crate) fn batch(&mut self, updates: Vec<(i64, i64, Json)>) {
        let mut touched = Vec::new();
        for (update_id, key, update) in updates {
            self.counts.received += 1;
            self.chats.entry(key).or_default().queue.push_back(Pending {
                update_id,
                attempt: 0,
                update,
            });
            touched.push(key);
        }
        for key in touched {
            self.try_send(key);
        }
    }

    /// A worker connected (not ready yet).
    pub(crate) fn connected(
        &mut self,
        worker: u32,
        conn: u64,
        outbox: mpsc::UnboundedSender<Message>,
    ) {
        if self.workers.contains_key(&worker) {
            // A reconnect: whatever the old connection held goes again.
            self.gone(worker, None);
        }
        self.workers.insert(
            worker,
            Worker {
                conn,
                outbox,
                ready: false,
                retiring: self.retiring.contains(&worker),
                chats: HashSet::new(),
            },
        );
    }

    /// A worker is ready: it joins the ring, and waiting chats start.
    pub(crate) fn ready(&mut self, worker: u32, conn: u64) {
        let Some(w) = self.workers.get_mut(&worker).filter(|w| w.conn == conn) else {
            return;
        };
        if !w.ready {
            w.ready = true;
            if !w.retiring {
                self.ring.add(worker);
                self.kick();
            }
        }
    }

    /// A worker's connection closed (its process died or exited). The
    /// updates it held go back to the front of their chats' queues, to be
    /// sent again (`attempt` + 1) to whichever worker owns the chat now.
    /// `conn` guards against a stale close of an older connection.
    /// Returns the ids of the updates it held.
    pub(crate) fn gone(&mut self, worker: u32, conn: Option<u64>) -> Vec<i64> {
        match self.workers.get(&worker) {
            Some(w) if conn.is_none_or(|c| c == w.conn) => {}
            _ => return Vec::new(),
        }
        let w = self.workers.remove(&worker).expect("checked");
        self.ring.remove(worker);
        let mut held = Vec::with_capacity(w.chats.len());
        for key in w.chats {
            if let Some(chat) = self.chats.get_mut(&key) {
                if let Some((_, mut pending)) = chat.in_flight.take() {
                    self.held.remove(&pending.update_id);
                    held.push(pending.update_id);
                    pending.attempt += 1;
                    self.counts.redelivered += 1;
                    chat.queue.push_front(pending);
                }
            }
        }
        self.kick();
        held.sort_unstable();
        held
    }

    /// Whether `worker` has a connection.
    pub(crate) fn is_connected(&self, worker: u32) -> bool {
        self.workers.contains_key(&worker)
    }

    /// Acks from `worker`: each frees its chat for the next update.
    /// Returns the ids acked (an ack for an update the worker does not hold
    /// is counted and ignored).
    pub(crate) fn acks(&mut self, worker: u32, acks: &[Ack]) -> Vec<i64> {
        let mut acked = Vec::with_capacity(acks.len());
        for ack in acks {
            let Some(&(key, sent)) = self.held.get(&ack.update_id) else {
                self.counts.stray_acks += 1;
                continue;
            };
            let chat = self
                .chats
                .get_mut(&key)
                .expect("a held update has its chat");
            match &chat.in_flight {
                Some((w, p)) if *w == worker && p.update_id == ack.update_id => {}
                _ => {
                    self.counts.stray_acks += 1;
                    continue;
                }
            }
            chat.in_flight = None;
            self.held.remove(&ack.update_id);
            acked.push(ack.update_id);
            let took = sent.elapsed();
            self.counts.ack_us_total += took.as_micros() as u64;
            if self.latencies.len() < 100_000 {
                self.latencies.push(took);
            }
            if let Some(w) = self.workers.get_mut(&worker) {
                w.chats.remove(&key);
            }
            self.counts.acked += 1;
            if ack.outcome == Outcome::Failed {
                self.counts.failed += 1;
            }
            self.try_send(key);
        }
        acked
    }

    /// Updates received and not yet acked.
    pub(crate) fn unacked(&self) -> usize {
        self.chats
            .values()
            .map(|c| c.queue.len() + usize::from(c.in_flight.is_some()))
            .sum()
    }

    /// Updates waiting for a worker (not sent yet).
    pub(crate) fn queued(&self) -> usize {
        self.chats.values().map(|c| c.queue.len()).sum()
    }

    /// Ready workers.
    pub(crate) fn ready_workers(&self) -> usize {
        self.workers.values().filter(|w| w.ready).count()
    }

    /// The dispatch-to-ack times since the last call.
    pub(crate) fn take_latencies(&mut self) -> Vec<Duration> {
        std::mem::take(&mut self.latencies)
    }

    /// Takes `worker` off the ring: its chats move to the others as each
    /// becomes idle. [`Dispatcher::holds_nothing`] tells when it is done.
    pub(crate) fn retire(&mut self, worker: u32) {
        self.retiring.insert(worker);
        self.ring.remove(worker);
        if let Some(w) = self.workers.get_mut(&worker) {
            w.retiring = true;
        }
        self.kick();
    }

    /// Whether `worker` holds no update (or is gone).
    pub(crate) fn holds_nothing(&self, worker: u32) -> bool {
        self.workers.get(&worker).is_none_or(|w| w.chats.is_empty())
    }

    /// Forgets a retired worker once its slot is stopped.
    pub(crate) fn forget(&mut self, worker: u32) {
        self.retiring.remove(&worker);
    }

    /// Sends `key`'s next update if the chat is idle and a worker is ready.
    fn try_send(&mut self, key: i64) {
        let Some(chat) = self.chats.get_mut(&key) else {
            return;
        };
        if chat.in_flight.is_some() {
            return;
        }
        let Some(worker) = self.ring.pick(key) else {
            return;
        };
        let Some(pending) = chat.queue.pop_front() else {
            // Idle and empty: forget the chat.
            self.chats.remove(&key);
            return;
        };
        let w = self
            .workers
            .get_mut(&worker)
            .expect("ring members are workers");
        let delivery = Delivery {
            update_id: pending.update_id,
            attempt: pending.attempt,
            update: pending.update.clone(),
        };
        // The writer task coalesces what is queued into one frame.
        let _ = w.outbox.send(Message::Updates(vec![delivery]));
        w.chats.insert(key);
        self.held.insert(pending.update_id, (key, Instant::now()));
        chat.in_flight = Some((worker, pending));
        self.counts.dispatched += 1;
    }

    /// Tries every chat with something queued (after the ring changed).
    fn kick(&mut self) {
        if self.ring.is_empty() {
            return;
        }
        let waiting: Vec<i64> = self
            .chats
            .iter()
            .filter(|(_, c)| c.in_flight.is_none() && !c.queue.is_empty())
            .map(|(&k, _)| k)
            .collect();
        for key in waiting {
            self.try_send(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn update(id: i64) -> Json {
        Json::from_value(&serde_json::json!({ "update_id": id }))
    }

    fn received(rx: &mut mpsc::UnboundedReceiver<Message>) -> Vec<(i64, u32)> {
        let mut out = Vec::new();
        while let Ok(m) = rx.try_recv() {
            if let Message::Updates(list) = m {
                out.extend(list.iter().map(|d| (d.update_id, d.attempt)));
            }
        }
        out
    }

    fn ack(id: i64) -> Ack {
        Ack {
            update_id: id,
            outcome: Outcome::Handled,
        }
    }

    #[test]
    fn one_update_per_chat_at_a_time_and_every_ack_is_reported() {
        let mut d = Dispatcher::default();
        let (tx, mut rx) = mpsc::unbounded_channel();
        d.connected(1, 1, tx);
        // Chat 7 has three updates, chat 8 one; nobody is ready yet.
        d.batch(vec![
            (1, 7, update(1)),
            (2, 7, update(2)),
            (3, 8, update(3)),
            (4, 7, update(4)),
        ]);
        assert!(received(&mut rx).is_empty());
        d.ready(1, 1);
        assert_eq!(
            {
                let mut r = received(&mut rx);
                r.sort_unstable();
                r
            },
            [(1, 0), (3, 0)]
        );
        assert_eq!(d.acks(1, &[ack(1)]), [1]);
        assert_eq!(received(&mut rx), [(2, 0)]);
        assert_eq!(d.acks(1, &[ack(3), ack(2)]), [3, 2]);
        assert_eq!(received(&mut rx), [(4, 0)]);
        assert_eq!(d.acks(1, &[ack(4)]), [4]);
        assert_eq!(d.unacked(), 0);
        assert!(d.chats.is_empty(), "idle chats are forgotten");
        // An ack for nothing held is counted, not obeyed.
        assert!(d.acks(1, &[ack(99)]).is_empty());
        assert_eq!(d.counts.stray_acks, 1);
    }

    #[test]
    fn a_dead_workers_updates_go_again_first_in_their_chat() {
        let mut d = Dispatcher::default();
        let (tx1, mut rx1) = mpsc::unbounded_channel();
        d.connected(1, 1, tx1);
        d.ready(1, 1);
        d.batch(vec![(1, 7, update(1)), (2, 7, update(2))]);
        assert_eq!(received(&mut rx1), [(1, 0)]);
        assert_eq!(d.gone(1, Some(1)), [1], "the update it held");
        assert_eq!(d.counts.redelivered, 1);
        // The replacement connects under the same id and gets update 1
        // again, before 2.
        let (tx2, mut rx2) = mpsc::unbounded_channel();
        d.connected(1, 2, tx2);
        d.ready(1, 2);
        assert_eq!(received(&mut rx2), [(1, 1)]);
        // A late close of the old connection changes nothing.
        assert_eq!(d.gone(1, Some(1)), [0_i64; 0]);
        d.acks(1, &[ack(1)]);
        assert_eq!(received(&mut rx2), [(2, 0)]);
    }

    #[test]
    fn a_chat_moves_to_a_new_worker_only_when_idle() {
        let mut d = Dispatcher::default();
        let (tx1, mut rx1) = mpsc::unbounded_channel();
        d.connected(1, 1, tx1);
        d.ready(1, 1);
        let updates: Vec<_> = (0..200).map(|k| (k, k, update(k))).collect();
        d.batch(updates);
        assert_eq!(received(&mut rx1).len(), 200);
        let (tx2, mut rx2) = mpsc::unbounded_channel();
        d.connected(2, 2, tx2);
        d.ready(2, 2);
        // Worker 2 gets nothing while every chat is in flight at worker 1.
        assert!(received(&mut rx2).is_empty());
        let updates: Vec<_> = (0..200).map(|k| (1000 + k, k, update(1000 + k))).collect();
        d.batch(updates);
        assert!(received(&mut rx2).is_empty() && received(&mut rx1).is_empty());
        // As each chat is acked, its next update goes to its new owner.
        for k in 0..200 {
            d.acks(1, &[ack(k)]);
        }
        let to_2 = received(&mut rx2).len();
        let to_1 = received(&mut rx1).len();
        assert_eq!(to_1 + to_2, 200);
        assert!((50..=150).contains(&to_2), "{to_2} chats moved");
    }
}
