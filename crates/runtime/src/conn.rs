//! Worker connections: the handshake, reading frames, the coalescing
//! writer, heartbeats, and Bot API calls handed to the sender.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use botfleet_protocol::{
    Encoding, FrameReader, Hello, Message, PROTOCOL_VERSION, ReadError, Welcome, encode_frame,
    error_codes, write_coalesced,
};
use tokio::io::AsyncWriteExt;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::bot::{BotCtx, Event};
use crate::slot::SlotShared;

/// The workers the supervisor started, by worker id.
pub(crate) type Registry = Arc<Mutex<HashMap<u32, (Arc<BotCtx>, Arc<SlotShared>)>>>;

static CONNECTIONS: AtomicU64 = AtomicU64::new(1);

/// How long a new connection has to send its `hello`.
const HANDSHAKE_DEADLINE: Duration = Duration::from_secs(5);
/// The largest frame before the `hello` (a `hello` is a few dozen bytes).
const MAX_HELLO_FRAME: usize = 4 << 10;
/// Connections waiting for their `hello`, at most; more are refused.
const MAX_PENDING: usize = 64;
/// File descriptors kept free for restarts (a worker's pipes and its
/// connection) and the fleet's own sockets: past `limit - RESERVE_FDS`
/// open, new connections are refused.
const RESERVE_FDS: u64 = 64;
/// A `stats` message's values kept, at most, and the longest name.
const MAX_STATS: usize = 256;
const MAX_STAT_NAME: usize = 128;
/// A `series` message's series kept, at most; what one series may hold.
const MAX_SERIES: usize = 1024;
const MAX_LABELS: usize = 16;
const MAX_LABEL_VALUE: usize = 256;
const MAX_BOUNDS: usize = 64;

/// Whether a worker's series can be served as it is: a valid Prometheus
/// metric name and label names, bounded sizes, a histogram's bounds finite
/// and increasing with one count more. The rest is dropped.
fn valid_series(s: &botfleet_protocol::Series) -> bool {
    fn name_ok(name: &str, colon: bool) -> bool {
        let mut chars = name.chars();
        let first_ok = chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || (colon && c == ':'));
        first_ok
            && name.len() <= MAX_STAT_NAME
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || (colon && c == ':'))
    }
    let labels_ok = s.labels.len() <= MAX_LABELS
        && s.labels
            .iter()
            .all(|(k, v)| name_ok(k, false) && !k.starts_with("__") && v.len() <= MAX_LABEL_VALUE);
    let value_ok = match &s.value {
        botfleet_protocol::SeriesValue::Counter(_) => true,
        botfleet_protocol::SeriesValue::Gauge(v) => !v.is_nan(),
        botfleet_protocol::SeriesValue::Histogram {
            bounds,
            counts,
            sum,
        } => {
            bounds.len() <= MAX_BOUNDS
                && counts.len() == bounds.len() + 1
                && bounds.iter().all(|b| b.is_finite())
                && bounds.windows(2).all(|w| w[0] < w[1])
                && sum.is_finite()
        }
    };
    name_ok(&s.name, true) && labels_ok && value_ok
}

/// Why a connection was refused: the label of
/// `botfleet_ipc_refused_total` and the log's words.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Refusal {
    Busy,
    Descriptors,
    TooSlow,
    /// With the frame error's code.
    BadFrame(u16),
    NotHello,
    Version,
    UnknownWorker,
    NotTheWorker,
    AlreadyConnected,
}

impl Refusal {
    fn label(self) -> &'static str {
        match self {
            Refusal::Busy => "busy",
            Refusal::Descriptors => "descriptors",
            Refusal::TooSlow => "handshake_timeout",
            Refusal::BadFrame(_) => "bad_frame",
            Refusal::NotHello => "not_hello",
            Refusal::Version => "version",
            Refusal::UnknownWorker => "unknown_worker",
            Refusal::NotTheWorker => "not_the_worker",
            Refusal::AlreadyConnected => "already_connected",
        }
    }

    fn code(self) -> u16 {
        match self {
            Refusal::Busy | Refusal::Descriptors => error_codes::BUSY,
            Refusal::TooSlow => error_codes::TOO_SLOW,
            Refusal::BadFrame(code) => code,
            Refusal::NotHello => error_codes::UNEXPECTED,
            Refusal::Version => error_codes::VERSION,
            Refusal::UnknownWorker => error_codes::UNKNOWN_WORKER,
            Refusal::NotTheWorker => error_codes::NOT_THE_WORKER,
            Refusal::AlreadyConnected => error_codes::ALREADY_CONNECTED,
        }
    }
}

/// What the accept loop and the handshakes share.
struct Gate {
    registry: Registry,
    /// A permit per connection waiting for its `hello`.
    pending: Arc<tokio::sync::Semaphore>,
    /// Refusals logged at most 10 a second after a burst of 20; the rest
    /// are counted.
    budget: Mutex<crate::process::LogBudget>,
}

impl Gate {
    /// Whether process `pid` is a worker process the supervisor started, or
    /// one of its descendants.
    fn started(&self, pid: i32) -> bool {
        let Ok(pid) = u32::try_from(pid) else {
            return false;
        };
        let started: Vec<u32> = self
            .registry
            .lock()
            .values()
            .map(|(_, slot)| slot.pid.load(Ordering::SeqCst))
            .filter(|&p| p != 0)
            .collect();
        !started.is_empty() && lineage(pid).iter().any(|p| started.contains(p))
    }

    /// Counts the refusal and logs it at WARN (within the budget).
    fn refused(&self, why: Refusal, detail: &str) {
        metrics::counter!("botfleet_ipc_refused_total", "reason" => why.label()).increment(1);
        let take = self.budget.lock().take(Instant::now());
        if let crate::process::Take::Log { dropped } = take {
            tracing::warn!(
                reason = why.label(),
                unlogged_before = dropped,
                "refused a connection to the worker socket: {detail}"
            );
        }
    }
}

/// Accepts worker connections until the listener fails.
pub(crate) async fn accept(listener: UnixListener, registry: Registry) {
    let gate = Arc::new(Gate {
        registry,
        pending: Arc::new(tokio::sync::Semaphore::new(MAX_PENDING)),
        budget: Mutex::new(crate::process::LogBudget::new(Instant::now(), 20.0, 10.0)),
    });
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                // A process the supervisor started (or its descendant)
                // always gets to its handshake: strangers cannot crowd a
                // restarted worker out.
                let peer = stream.peer_cred().ok().and_then(|c| c.pid());
                if peer.is_some_and(|p| gate.started(p)) {
                    tokio::spawn(serve(stream, peer, gate.clone(), None));
                    continue;
                }
                let refusal = match fds_left() {
                    Some(left) if left < RESERVE_FDS => Some((
                        Refusal::Descriptors,
                        format!(
                            "{left} file descriptors left, fewer than the {RESERVE_FDS} kept for restarts"
                        ),
                    )),
                    _ => None,
                };
                let (why, detail) = match refusal {
                    Some(refusal) => refusal,
                    None => match gate.pending.clone().try_acquire_owned() {
                        Ok(permit) => {
                            tokio::spawn(serve(stream, peer, gate.clone(), Some(permit)));
                            continue;
                        }
                        Err(_) => (
                            Refusal::Busy,
                            format!(
                                "{MAX_PENDING} connections from processes it did not start already wait for their hello"
                            ),
                        ),
                    },
                };
                gate.refused(why, &detail);
                let (_, mut write) = stream.into_split();
                // A fresh socket's buffer takes the answer at once; the
                // timeout only guards the accept loop.
                let _ = tokio::time::timeout(
                    Duration::from_millis(100),
                    refuse(&mut write, Encoding::Binary, why.code(), detail),
                )
                .await;
            }
            Err(e) => {
                tracing::error!("the worker socket failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}
/// Answers `error` in `encoding` and closes.
async fn refuse(
    stream: &mut tokio::net::unix::OwnedWriteHalf,
    encoding: Encoding,
    code: u16,
    message: String,
) {
    let mut frame = Vec::new();
    encode_frame(encoding, &[Message::Error { code, message }], &mut frame);
    let _ = stream.write_all(&frame).await;
    let _ = stream.shutdown().await;
}

/// The handshake: within [`HANDSHAKE_DEADLINE`], a `hello` of this
/// protocol version, in a small frame, from the process this supervisor
/// started for the worker id it names (or a descendant), of that worker's
/// bot, while that worker has no other connection. Anything else is
/// refused with an `error` that says why, and the connection ends
/// (`None`). On success the slot records the connection (`conn`).
async fn handshake(
    reader: &mut FrameReader<tokio::net::unix::OwnedReadHalf>,
    write: &mut tokio::net::unix::OwnedWriteHalf,
    peer: Option<i32>,
    gate: &Gate,
    conn: u64,
) -> Option<(Encoding, Hello, Arc<BotCtx>, Arc<SlotShared>)> {
    let mut encoding = Encoding::Binary;
    let checked = match tokio::time::timeout(HANDSHAKE_DEADLINE, reader.read()).await {
        Err(_) => Err((
            Refusal::TooSlow,
            format!("no hello within {HANDSHAKE_DEADLINE:?}"),
        )),
        Ok(Ok(None) | Err(ReadError::Io(_))) => return None,
        Ok(Err(e)) => {
            frame_error(None, &e);
            let code = e.code().unwrap_or(error_codes::MALFORMED);
            Err((Refusal::BadFrame(code), e.to_string()))
        }
        Ok(Ok(Some((e, mut messages)))) => {
            encoding = e;
            match messages.remove(0) {
                Message::Hello(h) if messages.is_empty() => check_hello(h, peer, gate, conn).await,
                other => Err((
                    Refusal::NotHello,
                    format!("expected hello first, got {}", other.name()),
                )),
            }
        }
    };
    match checked {
        Ok((hello, bot, slot)) => Some((encoding, hello, bot, slot)),
        Err((why, detail)) => {
            gate.refused(why, &detail);
            refuse(write, encoding, why.code(), detail).await;
            None
        }
    }
}

/// Whether `hello` is from the worker it names (see [`handshake`]).
async fn check_hello(
    hello: Hello,
    peer: Option<i32>,
    gate: &Gate,
    conn: u64,
) -> Result<(Hello, Arc<BotCtx>, Arc<SlotShared>), (Refusal, String)> {
    if hello.version != PROTOCOL_VERSION {
        return Err((
            Refusal::Version,
            format!(
                "protocol version {} is not spoken here; this supervisor speaks {PROTOCOL_VERSION}",
                hello.version
            ),
        ));
    }
    let id = hello.worker_id;
    let found = gate.registry.lock().get(&id).cloned();
    let Some((bot, slot)) = found else {
        return Err((
            Refusal::UnknownWorker,
            format!("worker {id} was not started by this supervisor"),
        ));
    };
    let not_the_worker = |detail: String| Err((Refusal::NotTheWorker, detail));
    if hello.bot != bot.name {
        return not_the_worker(format!(
            "worker {id} is a worker of bot {}, not of {:?}",
            bot.name, hello.bot
        ));
    }
    let Some(peer) = peer.and_then(|p| u32::try_from(p).ok()) else {
        return not_the_worker("the connecting process's credentials cannot be read".to_owned());
    };
    if peer != hello.pid {
        return not_the_worker(format!(
            "the hello names pid {}, but process {peer} is connecting",
            hello.pid
        ));
    }
    // The slot records its process's pid right after the spawn returns; a
    // worker that connects in that instant waits for it a little.
    let mut started = slot.pid.load(Ordering::SeqCst);
    for _ in 0..20 {
        if started != 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
        started = slot.pid.load(Ordering::SeqCst);
    }
    if started == 0 || !descends_from(peer, started) {
        return not_the_worker(format!(
            "process {peer} is neither worker {id}'s process ({started}) nor one of its descendants"
        ));
    }
    if let Err(live) = slot
        .conn
        .compare_exchange(0, conn, Ordering::SeqCst, Ordering::SeqCst)
    {
        return Err((
            Refusal::AlreadyConnected,
            format!("worker {id} is already connected (connection {live})"),
        ));
    }
    Ok((hello, bot, slot))
}

/// Whether `pid` is `ancestor` or one of its descendants.
fn descends_from(pid: u32, ancestor: u32) -> bool {
    lineage(pid).contains(&ancestor)
}

/// `pid`, its parent, its parent's parent... by the parent links of /proc,
/// up to (not including) init, at most 64 generations.
fn lineage(pid: u32) -> Vec<u32> {
    let mut line = vec![pid];
    let mut pid = pid;
    while line.len() < 64 {
        match parent(pid) {
            Some(p) if p > 1 => {
                line.push(p);
                pid = p;
            }
            _ => break,
        }
    }
    line
}

/// `pid`'s parent, from /proc/PID/stat (the field after the command, which
/// may itself hold spaces and parentheses).
fn parent(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(1)?.parse().ok()
}

/// File descriptors this process may still open (`None` when unknown).
fn fds_left() -> Option<u64> {
    let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile).current?;
    let open = std::fs::read_dir("/proc/self/fd").ok()?.count() as u64;
    Some(limit.saturating_sub(open))
}

/// Serves one connection from process `peer`; `pending` is its place
/// among the strangers' handshakes (none for a process the supervisor
/// started).
async fn serve(
    stream: UnixStream,
    peer: Option<i32>,
    gate: Arc<Gate>,
    pending: Option<tokio::sync::OwnedSemaphorePermit>,
) {
    let (read, mut write) = stream.into_split();
    let mut reader = FrameReader::new(read).max_frame(MAX_HELLO_FRAME);
    let conn = CONNECTIONS.fetch_add(1, Ordering::Relaxed);
    let Some((encoding, hello, bot, slot)) =
        handshake(&mut reader, &mut write, peer, &gate, conn).await
    else {
        return;
    };
    drop(pending);
    let mut reader = reader.max_frame(botfleet_protocol::MAX_FRAME);
    let worker = hello.worker_id;
    let name = bot.name.clone();
    let (outbox, mut rx) = mpsc::unbounded_channel();
    let writer_bot = name.clone();
    let writer = tokio::spawn(async move {
        write_coalesced(&mut rx, &mut write, encoding, |w| {
            metrics::counter!("botfleet_ipc_frames_total", "bot" => writer_bot.clone(), "direction" => "out")
                .increment(w.frames as u64);
            metrics::histogram!("botfleet_ipc_batch_size", "bot" => writer_bot.clone())
                .record(w.items as f64);
        })
        .await
    });
    let heartbeat = bot.config.supervision.heartbeat_interval;
    let _ = outbox.send(Message::Welcome(Welcome {
        version: PROTOCOL_VERSION,
        worker_id: worker,
        heartbeat_ms: u32::try_from(heartbeat.as_millis()).unwrap_or(u32::MAX),
    }));
    bot.send(Event::Connected {
        worker,
        conn,
        outbox: outbox.clone(),
        slot: slot.clone(),
    });
    tracing::debug!(bot = %name, worker, pid = hello.pid, "worker connected");
    let mut last_beat = Instant::now();
    let mut check = tokio::time::interval(heartbeat);
    loop {
        tokio::select! {
            read = reader.read() => {
                let messages = match read {
                    Ok(Some((_, messages))) => messages,
                    Ok(None) => break,
                    Err(ReadError::Io(e)) => {
                        tracing::debug!(bot = %name, worker, "the worker's connection closed: {e}");
                        break;
                    }
                    Err(e) => {
                        frame_error(Some(&name), &e);
                        tracing::error!(bot = %name, worker, "bad frame from the worker, closing its connection: {e}");
                        if let Some(code) = e.code() {
                            let _ = outbox.send(Message::Error { code, message: e.to_string() });
                        }
                        break;
                    }
                };
                metrics::counter!("botfleet_ipc_frames_total", "bot" => name.clone(), "direction" => "in").increment(1);
                last_beat = Instant::now();
                for m in messages {
                    match m {
                        Message::Ready => {
                            slot.is_ready.store(true, Ordering::SeqCst);
                            slot.ready.notify_one();
                            bot.send(Event::Ready { worker, conn });
                        }
                        Message::Acks(acks) => bot.send(Event::Acks { worker, acks }),
                        Message::Actions(actions) => {
                            for action in actions {
                                let bot = bot.clone();
                                let outbox = outbox.clone();
                                tokio::spawn(async move {
                                    // Calls in progress: time that waits for
                                    // Telegram (its limits, its answer), which
                                    // more workers cannot shorten.
                                    bot.calling.fetch_add(1, Ordering::Relaxed);
                                    let result = crate::sender::perform(&bot.client, action).await;
                                    bot.calling.fetch_sub(1, Ordering::Relaxed);
                                    let _ = outbox.send(Message::Results(vec![result]));
                                });
                            }
                        }
                        Message::Heartbeat(_) => {}
                        Message::Metrics(metrics) => bot.send(Event::Metrics { worker, metrics }),
                        Message::Stats(mut values) => {
                            values.truncate(MAX_STATS);
                            values.retain(|(name, _)| name.len() <= MAX_STAT_NAME);
                            bot.send(Event::Stats { worker, values });
                        }
                        Message::Series(mut list) => {
                            list.truncate(MAX_SERIES);
                            list.retain(valid_series);
                            bot.send(Event::Series { worker, list });
                        }
                        Message::Drained => bot.send(Event::Drained { worker }),
                        Message::Error { code, message } => {
                            let mut end = message.len().min(1024);
                            while !message.is_char_boundary(end) {
                                end -= 1;
                            }
                            tracing::error!(bot = %name, worker, code, "the worker reports an error: {}", &message[..end]);
                        }
                        other => {
                            tracing::error!(bot = %name, worker, message = other.name(), "a message out of turn from the worker; closing its connection");
                            let _ = outbox.send(Message::Error {
                                code: error_codes::UNEXPECTED,
                                message: format!("{} is not a message a worker sends", other.name()),
                            });
                            break;
                        }
                    }
                }
            }
            _ = check.tick() => {
                if last_beat.elapsed() > heartbeat * 3 {
                    metrics::counter!("botfleet_heartbeat_misses_total", "bot" => name.clone()).increment(1);
                    tracing::error!(bot = %name, worker, "no heartbeat for {:?}; restarting the worker", last_beat.elapsed());
                    slot.kill.notify_one();
                    break;
                }
            }
        }
    }
    slot.is_ready.store(false, Ordering::SeqCst);
    bot.send(Event::Gone { worker, conn });
    // The worker may connect again (a replacement under the same id).
    let _ = slot
        .conn
        .compare_exchange(conn, 0, Ordering::SeqCst, Ordering::SeqCst);
    drop(outbox);
    // Let a final error message reach the worker.
    let _ = tokio::time::timeout(Duration::from_millis(500), writer).await;
}

fn frame_error(bot: Option<&str>, e: &ReadError) {
    if matches!(e, ReadError::Io(_)) {
        return;
    }
    let kind = match e {
        ReadError::TooLarge { .. } => "too_large",
        ReadError::Truncated { .. } => "truncated",
        _ => "malformed",
    };
    metrics::counter!("botfleet_ipc_frame_errors_total", "bot" => bot.unwrap_or("-").to_owned(), "kind" => kind)
        .increment(1);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_workers_series_is_served_only_when_prometheus_can_read_it() {
        use botfleet_protocol::{Series, SeriesValue};
        let series = |name: &str, labels: &[(&str, &str)], value: SeriesValue| Series {
            name: name.to_owned(),
            labels: labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            value,
        };
        let histogram = |bounds: Vec<f64>, n: usize| SeriesValue::Histogram {
            bounds,
            counts: vec![1; n],
            sum: 1.0,
        };
        assert!(valid_series(&series(
            "orders_total",
            &[("kind", "paid \"x\"")],
            SeriesValue::Counter(1)
        )));
        assert!(valid_series(&series(
            "ns:rate",
            &[],
            SeriesValue::Gauge(-1.0)
        )));
        assert!(valid_series(&series(
            "t_seconds",
            &[],
            histogram(vec![0.1, 1.0], 3)
        )));
        for bad in [
            series("9lives", &[], SeriesValue::Counter(1)),
            series("a-b", &[], SeriesValue::Counter(1)),
            series("", &[], SeriesValue::Counter(1)),
            series("x", &[("__name__", "y")], SeriesValue::Counter(1)),
            series("x", &[("a:b", "y")], SeriesValue::Counter(1)),
            series("x", &[("a", &"v".repeat(300))], SeriesValue::Counter(1)),
            series("x", &[], SeriesValue::Gauge(f64::NAN)),
            series("x", &[], histogram(vec![1.0, 0.1], 3)),
            series("x", &[], histogram(vec![0.1, 1.0], 2)),
            series("x", &[], histogram(vec![0.1, f64::INFINITY], 3)),
            series(&"x".repeat(200), &[], SeriesValue::Counter(1)),
        ] {
            assert!(!valid_series(&bad), "{bad:?}");
        }
    }

    #[test]
    fn a_process_descends_from_its_parents_not_from_its_children() {
        let me = std::process::id();
        let parent_pid = parent(me).expect("this process has a parent");
        assert_eq!(
            parent_pid,
            rustix::process::getppid().map_or(0, |p| p.as_raw_nonzero().get() as u32)
        );
        assert!(descends_from(me, me));
        assert!(descends_from(me, parent_pid));
        assert!(!descends_from(parent_pid, me));
        assert!(!descends_from(me, u32::MAX), "no such process");
        assert!(fds_left().is_some_and(|left| left > 0));
    }
}
