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
pub(crate) struct Pending {
    pub(crate) update_id: i64,
    pub(crate) attempt: u32,
    pub(crate) update: Json,
    /// Times it crashed its worker (it was held when the worker died) or
    /// ran past the handling deadline.
    pub(crate) strikes: u32,
    /// After a strike it is handled alone on its worker, so the next crash
    /// tells for sure whether it is to blame.
    isolate: bool,
    /// Times a worker handed it back because a dependency was down.
    retries: u32,
    /// Not sent again before this (after a retry).
    not_before: Option<Instant>,
}

impl Pending {
    fn new(update_id: i64, update: Json) -> Pending {
        Pending {
            update_id,
            attempt: 0,
            update,
            strikes: 0,
            isolate: false,
            retries: 0,
            not_before: None,
        }
    }
}

/// An update set aside: it crashed its worker, or ran past the deadline,
/// `max_attempts` times.
#[derive(Debug)]
pub(crate) struct DeadLetter {
    pub(crate) chat: i64,
    pub(crate) pending: Pending,
    /// Whether its last strike was the deadline (else a crash).
    pub(crate) stuck: bool,
}

/// What a closed connection left behind.
#[derive(Debug, Default)]
pub(crate) struct Gone {
    /// The ids of the updates the worker held, delivered again (or set
    /// aside).
    pub(crate) held: Vec<i64>,
    pub(crate) dead: Vec<DeadLetter>,
    /// `(update id, strikes)` of those given a strike and kept, for the
    /// journal.
    pub(crate) struck: Vec<(i64, u32)>,
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
    /// It holds an update under isolation: it gets nothing else.
    isolated: bool,
    /// An isolated update waits for it to be idle: it gets no new update.
    reserved: bool,
    /// Updates past their deadline: the worker is being restarted for
    /// them, and only they are to blame.
    stuck: HashSet<i64>,
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
    /// Updates set aside as dead letters.
    pub(crate) dead: u64,
    /// Updates handed back for a retry (a dependency was down).
    pub(crate) retried: u64,
    /// Dispatch-to-ack time of every acked update, summed, µs.
    pub(crate) ack_us_total: u64,
}

/// The wait before an update handed back for a retry goes again; it
/// doubles with each retry of the same update...
const RETRY_FIRST: Duration = Duration::from_secs(1);
/// ...up to this.
const RETRY_MAX: Duration = Duration::from_secs(30);

/// One bot's routing state.
#[derive(Debug)]
pub(crate) struct Dispatcher {
    /// Strikes after which an update is set aside.
    max_attempts: u32,
    /// Updates under isolation not acked yet.
    isolating: HashSet<i64>,
    /// Chats whose next update waits for its retry time.
    backing_off: HashSet<i64>,
    /// Stopping: nothing more is sent; what is queued stays in the journal.
    stopping: bool,
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

impl Default for Dispatcher {
    fn default() -> Self {
        Dispatcher::new(3)
    }
}

impl Dispatcher {
    /// A dispatcher that sets an update aside after `max_attempts` strikes.
    pub(crate) fn new(max_attempts: u32) -> Dispatcher {
        Dispatcher {
            max_attempts: max_attempts.max(1),
            isolating: HashSet::new(),
            backing_off: HashSet::new(),
            stopping: false,
            chats: HashMap::new(),
            held: HashMap::new(),
            latencies: Vec::new(),
            workers: HashMap::new(),
            ring: Ring::default(),
            retiring: HashSet::new(),
            counts: Counts::default(),
        }
    }

    /// Updates from the journal, as `(update id, routing key, update)`,
    /// each appended to its chat's queue.
    pub(crate) fn batch(&mut self, updates: Vec<(i64, i64, Json)>) {
        self.recovered(updates, &HashMap::new());
    }

    /// Updates read back from the journal at start, with the strikes they
    /// had: a struck one is handled alone, and is set aside at
    /// `max_attempts` strikes in all.
    pub(crate) fn recovered(
        &mut self,
        updates: Vec<(i64, i64, Json)>,
        strikes: &HashMap<i64, u32>,
    ) {
        let mut touched = Vec::new();
        for (update_id, key, update) in updates {
            self.counts.received += 1;
            let mut pending = Pending::new(update_id, update);
            if let Some(&n) = strikes.get(&update_id) {
                pending.strikes = n;
                pending.attempt = n;
                pending.isolate = true;
                self.isolating.insert(update_id);
            }
            self.chats.entry(key).or_default().queue.push_back(pending);
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
            self.gone(worker, None, false);
        }
        self.workers.insert(
            worker,
            Worker {
                conn,
                outbox,
                ready: false,
                retiring: self.retiring.contains(&worker),
                chats: HashSet::new(),
                isolated: false,
                reserved: false,
                stuck: HashSet::new(),
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
    /// Each is given a strike (only the stuck ones when the worker was
    /// restarted for its deadline), is isolated from then on, and is set
    /// aside as a dead letter at `max_attempts` strikes when it was alone
    /// on its worker or known to be stuck. `conn` guards against a stale
    /// close of an older connection.
    pub(crate) fn gone(&mut self, worker: u32, conn: Option<u64>, blame: bool) -> Gone {
        match self.workers.get(&worker) {
            Some(w) if conn.is_none_or(|c| c == w.conn) => {}
            _ => return Gone::default(),
        }
        let w = self.workers.remove(&worker).expect("checked");
        self.ring.remove(worker);
        let alone = w.chats.len() == 1;
        let mut out = Gone::default();
        for key in w.chats {
            let Some(chat) = self.chats.get_mut(&key) else {
                continue;
            };
            let Some((_, mut pending)) = chat.in_flight.take() else {
                continue;
            };
            let id = pending.update_id;
            self.held.remove(&id);
            out.held.push(id);
            pending.attempt += 1;
            let stuck = w.stuck.contains(&id);
            let guilty = blame && (w.stuck.is_empty() || stuck);
            if guilty {
                pending.strikes += 1;
            }
            if guilty && pending.strikes >= self.max_attempts && (alone || stuck) {
                self.isolating.remove(&id);
                self.counts.dead += 1;
                out.dead.push(DeadLetter {
                    chat: key,
                    pending,
                    stuck,
                });
                continue;
            }
            // A crash may be any held update's doing: the suspect goes
            // alone next time. A stuck update is known; it needs no
            // isolation (which would hold its worker for the deadline).
            if guilty && !stuck && !pending.isolate {
                pending.isolate = true;
                self.isolating.insert(id);
            }
            if guilty {
                out.struck.push((id, pending.strikes));
            }
            self.counts.redelivered += 1;
            chat.queue.push_front(pending);
        }
        self.kick();
        out.held.sort_unstable();
        out
    }

    /// `worker`'s connection `conn` closed: it gets nothing more, and what
    /// it holds waits for [`Dispatcher::gone`]. False for a stale close.
    pub(crate) fn pause(&mut self, worker: u32, conn: u64) -> bool {
        match self.workers.get_mut(&worker) {
            Some(w) if w.conn == conn => {
                w.ready = false;
                self.ring.remove(worker);
                true
            }
            _ => false,
        }
    }

    /// Updates held longer than `deadline` at `now` and not yet reported:
    /// `(worker, update id, chat, held for)`. Their workers are to be
    /// restarted; only these updates take the blame.
    pub(crate) fn overdue(
        &mut self,
        now: Instant,
        deadline: Duration,
    ) -> Vec<(u32, i64, i64, Duration)> {
        let mut out = Vec::new();
        for (&id, &(key, sent)) in &self.held {
            let held_for = now.saturating_duration_since(sent);
            if held_for <= deadline {
                continue;
            }
            let Some((worker, _)) = self.chats.get(&key).and_then(|c| c.in_flight.as_ref()) else {
                continue;
            };
            if let Some(w) = self.workers.get_mut(worker) {
                if w.stuck.insert(id) {
                    out.push((*worker, id, key, held_for));
                }
            }
        }
        out
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
        let mut freed = false;
        let mut freed_chats = Vec::with_capacity(acks.len());
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
            let (_, mut pending) = chat.in_flight.take().expect("checked");
            self.held.remove(&ack.update_id);
            if ack.outcome == Outcome::Retry {
                // A dependency is down: the update stays (in the journal
                // too) and goes again, first in its chat, after a backoff.
                pending.retries += 1;
                pending.attempt += 1;
                let wait = RETRY_FIRST
                    .saturating_mul(1 << (pending.retries - 1).min(10))
                    .min(RETRY_MAX);
                pending.not_before = Some(Instant::now() + wait);
                chat.queue.push_front(pending);
                self.backing_off.insert(key);
                self.counts.retried += 1;
                if let Some(w) = self.workers.get_mut(&worker) {
                    w.chats.remove(&key);
                    freed |= w.isolated;
                }
                continue;
            }
            acked.push(ack.update_id);
            let took = sent.elapsed();
            self.counts.ack_us_total += took.as_micros() as u64;
            if self.latencies.len() < 100_000 {
                self.latencies.push(took);
            }
            if let Some(w) = self.workers.get_mut(&worker) {
                w.chats.remove(&key);
                freed |= w.isolated;
            }
            self.isolating.remove(&ack.update_id);
            self.counts.acked += 1;
            if ack.outcome == Outcome::Failed {
                self.counts.failed += 1;
            }
            freed_chats.push(key);
        }
        // A worker that held an isolated update takes others again; an
        // isolated update may be waiting for a worker to be idle: it goes
        // first.
        if freed {
            self.restore(worker);
        }
        if freed || !self.isolating.is_empty() || self.workers.values().any(|w| w.reserved) {
            self.kick();
        } else {
            for key in freed_chats {
                self.try_send(key);
            }
        }
        acked
    }

    /// Sends the updates whose retry time has come.
    pub(crate) fn wake(&mut self) {
        if self.backing_off.is_empty() {
            return;
        }
        for key in self.backing_off.clone() {
            self.try_send(key);
        }
    }

    /// Chats with an update at a worker or ready to go (not waiting out a
    /// retry): the work that more workers could share.
    pub(crate) fn active_chats(&self) -> usize {
        self.chats
            .iter()
            .filter(|(k, c)| {
                c.in_flight.is_some() || (!c.queue.is_empty() && !self.backing_off.contains(k))
            })
            .count()
    }

    /// Updates waiting for their retry time.
    pub(crate) fn backing_off(&self) -> usize {
        self.backing_off.len()
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

    /// Sends nothing more: the workers drain what they hold, and what is
    /// queued stays in the journal for the next start.
    pub(crate) fn stop_sending(&mut self) {
        self.stopping = true;
    }

    /// Sends `key`'s next update if the chat is idle and a worker is ready.
    fn try_send(&mut self, key: i64) {
        if self.stopping {
            return;
        }
        let Some(chat) = self.chats.get_mut(&key) else {
            return;
        };
        if chat.in_flight.is_some() {
            return;
        }
        let Some(head) = chat.queue.front() else {
            // Idle and empty: forget the chat.
            self.chats.remove(&key);
            self.backing_off.remove(&key);
            return;
        };
        if head.not_before.is_some_and(|t| t > Instant::now()) {
            return;
        }
        self.backing_off.remove(&key);
        // An update under isolation goes to an idle worker, which is taken
        // off the ring while it runs (its chats go to the others meanwhile,
        // each between two of its updates); without an idle one, the least
        // busy worker is taken off the ring until it is idle.
        let isolate = head.isolate;
        let worker = if isolate {
            let candidates = self
                .workers
                .iter()
                .filter(|(_, w)| w.ready && !w.retiring && !w.isolated);
            let Some((&worker, w)) = candidates.min_by_key(|(id, w)| (w.chats.len(), **id)) else {
                return;
            };
            if !w.chats.is_empty() {
                if !w.reserved {
                    self.workers.get_mut(&worker).expect("found").reserved = true;
                    self.ring.remove(worker);
                }
                return;
            }
            worker
        } else {
            let Some(worker) = self.ring.pick(key) else {
                return;
            };
            worker
        };
        let Some(chat) = self.chats.get_mut(&key) else {
            return;
        };
        let w = self
            .workers
            .get_mut(&worker)
            .expect("ring members are workers");
        if isolate {
            w.reserved = false;
            w.isolated = true;
            self.ring.remove(worker);
        }
        let pending = chat.queue.pop_front().expect("checked");
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

    /// Puts `worker` back on the ring after an isolation or a reservation
    /// (when it is ready and staying).
    fn restore(&mut self, worker: u32) {
        if let Some(w) = self.workers.get_mut(&worker) {
            w.reserved = false;
            w.isolated = false;
            if w.ready && !w.retiring {
                self.ring.add(worker);
            }
        }
    }

    /// Tries every chat with something queued (after the ring changed, an
    /// ack freed a worker an isolated update waits for...): isolated
    /// updates first, so they reserve their workers before others take
    /// them.
    fn kick(&mut self) {
        if self.ring.is_empty() {
            return;
        }
        let reserved: Vec<u32> = self
            .workers
            .iter()
            .filter(|(_, w)| w.reserved)
            .map(|(&id, _)| id)
            .collect();
        for id in reserved {
            self.restore(id);
        }
        let mut waiting: Vec<(bool, i64)> = self
            .chats
            .iter()
            .filter(|(_, c)| c.in_flight.is_none() && !c.queue.is_empty())
            .map(|(&k, c)| (!c.queue.front().is_some_and(|p| p.isolate), k))
            .collect();
        waiting.sort_unstable();
        for (_, key) in waiting {
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
        assert_eq!(d.gone(1, Some(1), true).held, [1], "the update it held");
        assert_eq!(d.counts.redelivered, 1);
        // The replacement connects under the same id and gets update 1
        // again, before 2.
        let (tx2, mut rx2) = mpsc::unbounded_channel();
        d.connected(1, 2, tx2);
        d.ready(1, 2);
        assert_eq!(received(&mut rx2), [(1, 1)]);
        // A late close of the old connection changes nothing.
        assert!(d.gone(1, Some(1), true).held.is_empty());
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

    #[test]
    fn updates_held_at_a_crash_go_alone_and_a_repeat_offender_is_set_aside() {
        let mut d = Dispatcher::new(2);
        let (tx1, mut rx1) = mpsc::unbounded_channel();
        d.connected(1, 1, tx1);
        d.ready(1, 1);
        d.batch(vec![
            (1, 7, update(1)),
            (2, 8, update(2)),
            (3, 7, update(3)),
        ]);
        assert_eq!(received(&mut rx1).len(), 2);
        // A crash with two updates held: both take a strike, neither is
        // set aside (either may be to blame), both are isolated.
        let gone = d.gone(1, Some(1), true);
        assert_eq!(gone.held, [1, 2]);
        assert!(gone.dead.is_empty());
        let (tx2, mut rx2) = mpsc::unbounded_channel();
        d.connected(1, 2, tx2);
        d.ready(1, 2);
        // One at a time on the worker.
        let first = received(&mut rx2);
        assert_eq!(first.len(), 1, "{first:?}");
        let (first_id, attempt) = first[0];
        assert_eq!(attempt, 1);
        // The other (isolated too) waits; nothing else goes meanwhile.
        assert!(received(&mut rx2).is_empty());
        let other = if first_id == 1 { 2 } else { 1 };
        assert_eq!(d.acks(1, &[ack(first_id)]), [first_id]);
        let next = received(&mut rx2);
        assert_eq!(next, [(other, 1)], "then the other, alone");
        // It crashes its worker again, alone: the second strike sets it
        // aside, and its chat goes on.
        let gone = d.gone(1, Some(2), true);
        assert_eq!(gone.dead.len(), 1);
        assert_eq!(gone.dead[0].pending.update_id, other);
        assert_eq!(d.counts.dead, 1);
        let (tx3, mut rx3) = mpsc::unbounded_channel();
        d.connected(1, 3, tx3);
        d.ready(1, 3);
        let rest = received(&mut rx3);
        if other == 1 {
            assert_eq!(rest, [(3, 0)], "chat 7 goes on with update 3");
        } else {
            assert!(rest.is_empty() || rest == [(3, 0)], "{rest:?}");
        }
    }

    #[test]
    fn strikes_read_back_from_the_journal_count_toward_max_attempts() {
        let mut d = Dispatcher::new(3);
        let (tx, mut rx) = mpsc::unbounded_channel();
        d.connected(1, 1, tx);
        d.ready(1, 1);
        // Update 1 had two strikes before the supervisor's crash.
        d.recovered(
            vec![(1, 7, update(1)), (2, 8, update(2))],
            &HashMap::from([(1, 2)]),
        );
        // It goes alone, as a redelivery.
        let first = received(&mut rx);
        assert_eq!(first, [(1, 2)], "alone first, attempt 2: {first:?}");
        // One more crash sets it aside; the strike went to the journal
        // with the others.
        let gone = d.gone(1, Some(1), true);
        assert_eq!(gone.dead.len(), 1);
        assert_eq!(gone.dead[0].pending.update_id, 1);
        assert!(gone.struck.is_empty(), "set aside, not kept");
        let (tx, mut rx) = mpsc::unbounded_channel();
        d.connected(1, 2, tx);
        d.ready(1, 2);
        assert_eq!(received(&mut rx), [(2, 0)]);
        // A crash with update 2 alone: one strike, kept, for the journal.
        let gone = d.gone(1, Some(2), true);
        assert_eq!(gone.struck, [(2, 1)]);
    }

    #[test]
    fn an_overdue_update_is_reported_once_and_alone_takes_the_blame() {
        let mut d = Dispatcher::new(1);
        let (tx, mut rx) = mpsc::unbounded_channel();
        d.connected(1, 1, tx);
        d.ready(1, 1);
        d.batch(vec![(1, 7, update(1))]);
        assert_eq!(received(&mut rx).len(), 1);
        let later = Instant::now() + Duration::from_secs(5);
        assert!(d.overdue(later, Duration::from_secs(10)).is_empty());
        let stuck = d.overdue(later, Duration::from_secs(1));
        assert_eq!(
            stuck.iter().map(|s| (s.0, s.1, s.2)).collect::<Vec<_>>(),
            [(1, 1, 7)]
        );
        assert!(d.overdue(later, Duration::from_secs(1)).is_empty(), "once");
        // Another update reaches the worker before it is restarted for the
        // stuck one: only update 1 takes the blame.
        d.batch(vec![(2, 8, update(2))]);
        assert_eq!(received(&mut rx).len(), 1);
        let gone = d.gone(1, Some(1), true);
        assert_eq!(gone.held, [1, 2]);
        assert_eq!(gone.dead.len(), 1);
        assert_eq!(gone.dead[0].pending.update_id, 1);
        assert!(gone.dead[0].stuck);
        let (tx, mut rx) = mpsc::unbounded_channel();
        d.connected(1, 2, tx);
        d.ready(1, 2);
        assert_eq!(received(&mut rx), [(2, 1)], "not isolated: no strike");
        assert!(d.isolating.is_empty());
    }

    #[test]
    fn an_update_handed_back_for_a_retry_goes_again_first_after_its_backoff() {
        let mut d = Dispatcher::default();
        let (tx, mut rx) = mpsc::unbounded_channel();
        d.connected(1, 1, tx);
        d.ready(1, 1);
        d.batch(vec![(1, 7, update(1)), (2, 7, update(2))]);
        assert_eq!(received(&mut rx), [(1, 0)]);
        let retry = Ack {
            update_id: 1,
            outcome: Outcome::Retry,
        };
        assert!(d.acks(1, &[retry]).is_empty(), "not acked: it stays");
        assert_eq!((d.counts.retried, d.counts.acked), (1, 0));
        assert_eq!(d.unacked(), 2);
        // Its chat waits, in order: nothing goes before the backoff.
        d.wake();
        assert!(received(&mut rx).is_empty());
        assert_eq!(d.backing_off(), 1);
        // Once its time has come, it goes again, before update 2.
        d.chats.get_mut(&7).unwrap().queue[0].not_before = Some(Instant::now());
        d.wake();
        assert_eq!(received(&mut rx), [(1, 1)]);
        assert_eq!(d.backing_off(), 0);
        assert_eq!(d.acks(1, &[ack(1)]), [1]);
        assert_eq!(received(&mut rx), [(2, 0)]);
    }

    #[test]
    fn a_worker_killed_from_outside_gives_its_updates_no_strike() {
        let mut d = Dispatcher::new(1);
        let (tx, mut rx) = mpsc::unbounded_channel();
        d.connected(1, 1, tx);
        d.ready(1, 1);
        d.batch(vec![(1, 7, update(1))]);
        assert_eq!(received(&mut rx).len(), 1);
        // Its connection closes first: nothing more goes to it.
        assert!(d.pause(1, 1));
        d.batch(vec![(2, 8, update(2))]);
        assert!(received(&mut rx).is_empty());
        // Then its exit: SIGKILL from outside, so with max_attempts = 1 the
        // update is still not set aside, nor isolated.
        let gone = d.gone(1, Some(1), false);
        assert_eq!(gone.held, [1]);
        assert!(gone.dead.is_empty());
        assert!(d.isolating.is_empty());
        let (tx, mut rx) = mpsc::unbounded_channel();
        d.connected(1, 2, tx);
        d.ready(1, 2);
        let mut got = received(&mut rx);
        got.sort_unstable();
        assert_eq!(got, [(1, 1), (2, 0)]);
    }
}
