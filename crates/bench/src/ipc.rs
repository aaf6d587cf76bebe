//! `botfleet bench ipc`: updates from the supervisor's side of the socket to
//! a real worker process (the worker SDK with a no-op handler) and their
//! acks back, with batching on and off, and the round trip at a moderate
//! rate.

use std::io::Write;
use std::process::{ExitCode, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};
use botfleet_protocol::{
    DEFAULT_MAX_BATCH, Delivery, Encoding, FrameReader, Json, Message, PROTOCOL_VERSION, Welcome,
    env, write_batched,
};
use clap::Args;
use serde::Serialize;
use tokio::net::UnixListener;
use tokio::net::unix::OwnedReadHalf;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::Machine;
use super::stats::quantile;

/// The flags of `botfleet bench ipc`.
#[derive(Debug, Args)]
pub struct IpcBench {
    /// Print exactly one JSON document on stdout instead of the table.
    #[arg(long)]
    json: bool,
    /// Updates per throughput round.
    #[arg(long, default_value_t = 50_000)]
    updates: usize,
    /// Rounds of each mode, alternating; the median is reported.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// The rate of the round-trip measurement, updates per second.
    #[arg(long, default_value_t = 1000)]
    rate: u32,
    /// Run as the benchmark's worker process (internal).
    #[arg(long, hide = true)]
    worker: bool,
    /// As the worker, parse each update into Bot API types (internal).
    #[arg(long, hide = true)]
    parse: bool,
}

#[derive(Debug, Serialize)]
struct Report {
    machine: Machine,
    updates: usize,
    rounds: usize,
    updates_per_s_batched: f64,
    updates_per_s_unbatched: f64,
    speedup: f64,
    /// Batched, with a handler that parses each update into Bot API types
    /// (the SDK parses only when asked).
    updates_per_s_batched_parsing: f64,
    /// One frame per update and one update in flight: each waits for the
    /// previous one's ack (a request/response design).
    updates_per_s_one_in_flight: f64,
    /// Frames the supervisor side wrote per round, median.
    frames_batched: usize,
    frames_unbatched: usize,
    rate: u32,
    rtt_us_p50: f64,
    rtt_us_p99: f64,
    rtt_samples: usize,
}

/// Runs `botfleet bench ipc` (or its hidden worker role) and prints its report.
pub fn run(args: &IpcBench) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    if args.worker {
        let parse = args.parse;
        return runtime.block_on(async move {
            botfleet_worker::Worker::new(move |update: botfleet_worker::Update, _cx| async move {
                if parse {
                    update.content()?;
                }
                Ok(())
            })
            .run()
            .await
            .context("the benchmark worker")?;
            Ok(ExitCode::SUCCESS)
        });
    }
    let report = runtime.block_on(measure(args))?;
    super::output(args.json, &report, print)
}

/// One worker process and the supervisor's end of its connection.
struct Peer {
    child: tokio::process::Child,
    reader: FrameReader<OwnedReadHalf>,
    outbox: mpsc::UnboundedSender<Message>,
    frames: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

async fn connect(
    listener: &UnixListener,
    socket: &str,
    max_batch: usize,
    parse: bool,
) -> anyhow::Result<Peer> {
    let exe = std::env::current_exe().context("cannot find the botfleet executable")?;
    let mut command = tokio::process::Command::new(exe);
    command.args(["bench", "ipc", "--worker"]);
    if parse {
        command.arg("--parse");
    }
    let child = command
        .env(env::SOCKET, socket)
        .env(env::WORKER_ID, "1")
        .env(env::BOT, "bench")
        .env(env::IPC_MAX_BATCH, max_batch.to_string())
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .context("cannot start the benchmark worker")?;
    let (stream, _) = tokio::time::timeout(Duration::from_secs(10), listener.accept())
        .await
        .context("the worker did not connect within 10 s")??;
    let (read, mut write) = stream.into_split();
    let mut reader = FrameReader::new(read);
    match reader.read().await? {
        Some((_, m)) if matches!(m.first(), Some(Message::Hello(_))) => {}
        other => bail!("expected the worker's hello, got {other:?}"),
    }
    let (outbox, mut rx) = mpsc::unbounded_channel();
    let frames = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = frames.clone();
    tokio::spawn(async move {
        write_batched(&mut rx, &mut write, Encoding::Binary, max_batch, |w| {
            counter.fetch_add(w.frames, std::sync::atomic::Ordering::Relaxed);
        })
        .await
    });
    let _ = outbox.send(Message::Welcome(Welcome {
        version: PROTOCOL_VERSION,
        worker_id: 1,
        heartbeat_ms: 1000,
    }));
    loop {
        match reader.read().await? {
            Some((_, m)) if m.iter().any(|m| matches!(m, Message::Ready)) => break,
            Some(_) => {}
            None => bail!("the worker closed the connection before it was ready"),
        }
    }
    Ok(Peer {
        child,
        reader,
        outbox,
        frames,
    })
}

impl Peer {
    async fn stop(mut self) {
        let _ = self.outbox.send(Message::Shutdown);
        if tokio::time::timeout(Duration::from_secs(5), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }

    /// Acks until `n` updates are acked; each ack's update id to `seen`.
    async fn acks(&mut self, mut n: usize, mut seen: impl FnMut(i64)) -> anyhow::Result<()> {
        while n > 0 {
            let Some((_, messages)) = self.reader.read().await? else {
                bail!("the worker closed the connection with {n} updates unacked");
            };
            for m in messages {
                if let Message::Acks(acks) = m {
                    for a in acks {
                        seen(a.update_id);
                        n = n.saturating_sub(1);
                    }
                }
            }
        }
        Ok(())
    }
}

/// A text message update as Telegram sends it (about 300 bytes).
fn update(id: i64) -> Json {
    let chat = 1_000_000 + id;
    Json::from_value(&serde_json::json!({
        "update_id": id,
        "message": {
            "message_id": id,
            "date": 1_767_225_600,
            "chat": { "id": chat, "type": "private", "first_name": "Ann", "username": "ann" },
            "from": { "id": chat, "is_bot": false, "first_name": "Ann", "username": "ann", "language_code": "en" },
            "text": format!("message number {id} from the benchmark"),
        }
    }))
}

async fn throughput(
    listener: &UnixListener,
    socket: &str,
    updates: &[Json],
    batched: bool,
    parse: bool,
) -> anyhow::Result<(f64, usize)> {
    let max_batch = if batched { DEFAULT_MAX_BATCH } else { 1 };
    let mut peer = connect(listener, socket, max_batch, parse).await?;
    let start = Instant::now();
    for (i, u) in updates.iter().enumerate() {
        let _ = peer.outbox.send(Message::Updates(vec![Delivery {
            update_id: i as i64,
            attempt: 0,
            update: u.clone(),
        }]));
    }
    peer.acks(updates.len(), |_| {}).await?;
    let elapsed = start.elapsed();
    let frames = peer.frames.load(std::sync::atomic::Ordering::Relaxed);
    peer.stop().await;
    Ok((updates.len() as f64 / elapsed.as_secs_f64(), frames))
}

async fn measure(args: &IpcBench) -> anyhow::Result<Report> {
    if args.updates == 0 || args.rounds == 0 || args.rate == 0 {
        bail!("--updates, --rounds and --rate must be at least 1");
    }
    let dir = botfleet_testkit::TempDir::new("bench-ipc").context("a socket directory")?;
    let socket = dir.path().join("ipc.sock");
    let listener = UnixListener::bind(&socket).context("cannot bind the benchmark socket")?;
    let socket = socket.display().to_string();
    let updates: Vec<Json> = (0..args.updates as i64).map(update).collect();
    let (mut on, mut off, mut parsing, mut frames_on, mut frames_off) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for round in 1..=args.rounds {
        let _ = writeln!(
            std::io::stderr(),
            "[round {round}/{}] {} updates: batched, one per frame, batched with parsing ...",
            args.rounds,
            args.updates
        );
        let (rate, frames) = throughput(&listener, &socket, &updates, true, false).await?;
        on.push(rate);
        frames_on.push(frames as f64);
        let (rate, frames) = throughput(&listener, &socket, &updates, false, false).await?;
        off.push(rate);
        frames_off.push(frames as f64);
        let (rate, _) = throughput(&listener, &socket, &updates, true, true).await?;
        parsing.push(rate);
    }
    // One update in flight at a time.
    let mut peer = connect(&listener, &socket, 1, false).await?;
    let k = (args.updates / 10).max(1);
    let start = Instant::now();
    for (i, u) in updates[..k].iter().enumerate() {
        let _ = peer.outbox.send(Message::Updates(vec![Delivery {
            update_id: i as i64,
            attempt: 0,
            update: u.clone(),
        }]));
        peer.acks(1, |_| {}).await?;
    }
    let one_in_flight = k as f64 / start.elapsed().as_secs_f64();
    peer.stop().await;
    // The round trip of one update at a moderate rate.
    let _ = writeln!(
        std::io::stderr(),
        "[round trip] {} updates/s for 3 s ...",
        args.rate
    );
    let mut peer = connect(&listener, &socket, DEFAULT_MAX_BATCH, false).await?;
    let n = (args.rate as usize * 3).min(updates.len());
    let every = Duration::from_secs_f64(1.0 / f64::from(args.rate));
    let sent_at: std::sync::Arc<parking_lot::Mutex<Vec<Option<Instant>>>> =
        std::sync::Arc::new(parking_lot::Mutex::new(vec![None; n]));
    let outbox = peer.outbox.clone();
    let stamps = sent_at.clone();
    let to_send: Vec<Json> = updates[..n].to_vec();
    let sender = tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        for (i, u) in to_send.into_iter().enumerate() {
            tick.tick().await;
            stamps.lock()[i] = Some(Instant::now());
            let _ = outbox.send(Message::Updates(vec![Delivery {
                update_id: i as i64,
                attempt: 0,
                update: u,
            }]));
        }
    });
    let mut rtts = Vec::with_capacity(n);
    peer.acks(n, |id| {
        let at = sent_at.lock()[id as usize];
        if let Some(at) = at {
            rtts.push(at.elapsed().as_secs_f64() * 1e6);
        }
    })
    .await?;
    let _ = sender.await;
    peer.stop().await;
    let on_median = quantile(&on, 0.5);
    let off_median = quantile(&off, 0.5);
    Ok(Report {
        machine: Machine::current(),
        updates: args.updates,
        rounds: args.rounds,
        updates_per_s_batched: on_median.round(),
        updates_per_s_unbatched: off_median.round(),
        speedup: ((on_median / off_median) * 100.0).round() / 100.0,
        updates_per_s_batched_parsing: quantile(&parsing, 0.5).round(),
        updates_per_s_one_in_flight: one_in_flight.round(),
        frames_batched: quantile(&frames_on, 0.5) as usize,
        frames_unbatched: quantile(&frames_off, 0.5) as usize,
        rate: args.rate,
        rtt_us_p50: quantile(&rtts, 0.5).round(),
        rtt_us_p99: quantile(&rtts, 0.99).round(),
        rtt_samples: rtts.len(),
    })
}

fn print(out: &mut impl Write, r: &Report) -> std::io::Result<()> {
    writeln!(
        out,
        "machine: {} cores, {} MiB; {} updates per round, median of {} rounds",
        r.machine.cores, r.machine.memory_mib, r.updates, r.rounds
    )?;
    writeln!(out, "\n{:<22} {:>14} {:>10}", "", "updates/s", "frames")?;
    writeln!(
        out,
        "{:<22} {:>14.0} {:>10}",
        "batched", r.updates_per_s_batched, r.frames_batched
    )?;
    writeln!(
        out,
        "{:<22} {:>14.0} {:>10}",
        "one per frame", r.updates_per_s_unbatched, r.frames_unbatched
    )?;
    writeln!(
        out,
        "{:<22} {:>14.0} {:>10}",
        "one in flight", r.updates_per_s_one_in_flight, "-"
    )?;
    writeln!(
        out,
        "{:<22} {:>14.0} {:>10}",
        "batched, parsing", r.updates_per_s_batched_parsing, "-"
    )?;
    writeln!(
        out,
        "{:<22} {:>13.2}x",
        "batched / one per frame", r.speedup
    )?;
    writeln!(
        out,
        "\nround trip at {} updates/s: p50 {:.0} µs, p99 {:.0} µs ({} samples)",
        r.rate, r.rtt_us_p50, r.rtt_us_p99, r.rtt_samples
    )
}
