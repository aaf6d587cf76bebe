//! `botfleet bench chaos`: the whole runtime under steady traffic while
//! faults come: a random worker killed with SIGKILL every half second,
//! poison updates (their handler kills its worker, every time) and stuck
//! chats (an update whose handler never ends), each in a chat of its own.
//! Counts what handlers saw (lost, duplicated, out of order), the updates
//! set aside as dead letters (they must be exactly the poison and stuck
//! ones), and the latency of the chats no poison or stuck update touched.

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use botfleet_config::{BotFile, FleetFile};
use clap::Args;
use serde::Serialize;
use tokio::time::Instant;

use super::Machine;
use super::harness::{self, TOKEN, now_ns};
use super::stats::quantile;

/// The flags of `botfleet bench chaos`.
#[derive(Debug, Args)]
pub struct ChaosBench {
    /// Print exactly one JSON document on stdout instead of the table.
    #[arg(long)]
    json: bool,
    /// How long traffic runs and workers are killed (`60s`, `2m`, or
    /// seconds).
    #[arg(long, default_value = "60s", value_parser = botfleet_config::duration::positive_arg)]
    duration: Duration,
    /// Updates per second.
    #[arg(long, default_value_t = 1000)]
    rate: u32,
    /// Chats the updates are spread over.
    #[arg(long, default_value_t = 1000)]
    chats: u32,
    /// Worker processes.
    #[arg(long, default_value_t = 4)]
    workers: u32,
    /// How often a random worker is killed (SIGKILL to its process group).
    #[arg(long, default_value = "500ms", value_parser = botfleet_config::duration::positive_arg)]
    kill_every: Duration,
    /// Poison updates: each kills the worker that handles it, every time,
    /// until it is set aside. Each goes to a chat of its own, followed by
    /// ordinary updates there.
    #[arg(long, default_value_t = 3)]
    poison: u32,
    /// Stuck chats: an update whose handler never ends (the worker goes on
    /// heartbeating), past the 2 s handling deadline, in a chat of its own.
    #[arg(long, default_value_t = 1)]
    stuck: u32,
    /// Run as the benchmark's worker, appending what it handles to this
    /// file (internal).
    #[arg(long, hide = true, value_name = "LOG")]
    worker: Option<PathBuf>,
}

#[derive(Debug, Serialize)]
struct Fault {
    kind: &'static str,
    injected: u64,
}

#[derive(Debug, Serialize)]
struct Report {
    machine: Machine,
    faults: Vec<Fault>,
    /// Updates set aside (should be exactly the poison and stuck ones).
    dead_lettered: u64,
    /// p99 of the chats no poison or stuck update touched.
    p99_ms_untouched: f64,
    duration_s: f64,
    rate: u32,
    chats: u32,
    workers: u32,
    kills: u64,
    restarts: u64,
    sent: u64,
    handled: u64,
    lost: u64,
    duplicates_to_handlers: u64,
    order_violations: u64,
    redelivered: u64,
    p50_ms: f64,
    p99_ms: f64,
}

/// The text of a poison update, and of a stuck one.
const POISON: &str = "poison";
const STUCK: &str = "stuck";

/// Runs `botfleet bench chaos` (or its hidden worker role) and prints its report.
pub fn run(args: &ChaosBench) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    if let Some(log) = &args.worker {
        return runtime.block_on(harness::logging_worker(
            log.clone(),
            |text, _cx| async move {
                match text.as_str() {
                    // A handler that kills its process: a segfault, an abort,
                    // `os._exit` in Python.
                    POISON => std::process::exit(13),
                    STUCK => std::future::pending().await,
                    _ => Ok(()),
                }
            },
        ));
    }
    if args.rate == 0 || args.chats == 0 || args.workers == 0 {
        bail!("--rate, --chats and --workers must be at least 1");
    }
    let report = runtime.block_on(measure(args))?;
    super::output(args.json, &report, print)
}

async fn measure(args: &ChaosBench) -> anyhow::Result<Report> {
    let dir = botfleet_testkit::TempDir::new("bench-chaos").context("a work directory")?;
    let log = dir.path().join("handled.log");
    // The faults' own chats come after the ordinary ones.
    let special = i64::from(args.poison + args.stuck);
    let emulator = harness::emulator("chaos_bot", i64::from(args.chats) + special).await?;
    let exe = std::env::current_exe().context("cannot find the botfleet executable")?;
    let config = harness::fleet_config(
        FleetFile::new().telegram_api(emulator.base_url()).bot(
            BotFile::new("chaos", TOKEN)
                .workers(args.workers, args.workers)
                .set("heartbeat_interval", "200ms")
                .set("handling_deadline", "2s")
                .set("scaling.tick", "500ms")
                .set("restart.intensity", 10_000)
                .set("restart.period", "1s")
                .set("restart.first_backoff", "10ms")
                .set("restart.max_backoff", "100ms")
                .command(
                    exe.display().to_string(),
                    ["bench", "chaos", "--worker"]
                        .map(String::from)
                        .into_iter()
                        .chain([log.display().to_string()]),
                ),
        ),
    )?;
    let fleet = harness::start_fleet(&config, dir.path()).await?;
    // Wait for the workers.
    let ready_by = Instant::now() + Duration::from_secs(30);
    while fleet.status().await[0].ready_workers < args.workers as usize {
        if Instant::now() > ready_by {
            bail!("the workers were not ready within 30 s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = writeln!(
        std::io::stderr(),
        "[chaos] {} updates/s over {} chats for {:?}, a worker killed every {:?} ...",
        args.rate,
        args.chats,
        args.duration,
        args.kill_every
    );
    let mut injected: HashMap<i64, u128> = HashMap::new();
    let start = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    let mut next_kill = start + args.kill_every;
    let mut kills = 0u64;
    // Updates whose handling is counted (the faults' own are not: they
    // are to be set aside), and the ordinary ones alone, for the rate.
    let mut sent = 0u64;
    let mut ordinary = 0u64;
    let mut rng = fastrand::Rng::with_seed(0x2545_f491_4f6c_dd1d);
    // The faults' updates, spread over the first half of the run: chat
    // chats+1.. for poison, then the stuck ones; each followed by ordinary
    // updates in its chat.
    let mut special_sent = 0u32;
    let special_every = args.duration / 2 / (args.poison + args.stuck).max(1);
    let mut next_special = start + special_every / 2;
    let mut touched: HashSet<i64> = HashSet::new();
    while start.elapsed() < args.duration {
        tick.tick().await;
        if special_sent < args.poison + args.stuck && Instant::now() >= next_special {
            next_special += special_every;
            let chat = i64::from(args.chats) + 1 + i64::from(special_sent);
            let text = if special_sent < args.poison {
                POISON
            } else {
                STUCK
            };
            emulator
                .inject_message(TOKEN, chat, chat, text)
                .map_err(|e| anyhow::anyhow!("inject: {e}"))?;
            for n in 1..=3 {
                let id = emulator
                    .inject_message(TOKEN, chat, chat, &format!("after #{n}"))
                    .map_err(|e| anyhow::anyhow!("inject: {e}"))?;
                injected.insert(id, now_ns());
                sent += 1;
            }
            touched.insert(chat);
            special_sent += 1;
        }
        let due = (start.elapsed().as_secs_f64() * f64::from(args.rate)) as u64;
        while ordinary < due {
            let chat = 1 + (ordinary % u64::from(args.chats)) as i64;
            let id = emulator
                .inject_message(
                    TOKEN,
                    chat,
                    chat,
                    &format!("#{}", ordinary / u64::from(args.chats) + 1),
                )
                .map_err(|e| anyhow::anyhow!("inject: {e}"))?;
            injected.insert(id, now_ns());
            sent += 1;
            ordinary += 1;
        }
        if Instant::now() >= next_kill {
            next_kill += args.kill_every;
            let workers: Vec<u32> = fleet
                .workers()
                .into_iter()
                .map(|(_, _, pid)| pid)
                .filter(|&pid| pid > 0)
                .collect();
            if !workers.is_empty() {
                let pid = workers[rng.usize(..workers.len())];
                if let Some(pid) = rustix::process::Pid::from_raw(pid as i32) {
                    if rustix::process::kill_process_group(pid, rustix::process::Signal::KILL)
                        .is_ok()
                    {
                        kills += 1;
                    }
                }
            }
        }
    }
    let _ = writeln!(
        std::io::stderr(),
        "[chaos] traffic over; waiting for every ack ..."
    );
    let settle_by = Instant::now() + Duration::from_secs(60);
    loop {
        let s = &fleet.status().await[0];
        let faults = u64::from(args.poison + args.stuck);
        if s.received >= sent + faults && s.unacked == 0 {
            break;
        }
        if Instant::now() > settle_by {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let report = fleet.shutdown().await;
    let status = report.bots.first().cloned().unwrap_or_default();
    // What the handlers saw.
    let mut seen: HashSet<i64> = HashSet::new();
    let mut last: HashMap<i64, i64> = HashMap::new();
    let (mut duplicates, mut violations) = (0u64, 0u64);
    let mut latencies = Vec::new();
    let mut untouched = Vec::new();
    for h in harness::read_log(&log) {
        if !seen.insert(h.id) {
            duplicates += 1;
            continue;
        }
        let previous = last.entry(h.chat).or_insert(i64::MIN);
        if h.id < *previous {
            violations += 1;
        }
        *previous = (*previous).max(h.id);
        if let Some(&t) = injected.get(&h.id) {
            let ms = h.at_ns.saturating_sub(t) as f64 / 1e6;
            latencies.push(ms);
            if !touched.contains(&h.chat) {
                untouched.push(ms);
            }
        }
    }
    let handled = seen.len() as u64;
    Ok(Report {
        machine: Machine::current(),
        faults: vec![
            Fault {
                kind: "worker_kill",
                injected: kills,
            },
            Fault {
                kind: "poison",
                injected: u64::from(args.poison.min(special_sent)),
            },
            Fault {
                kind: "stuck_chat",
                injected: u64::from(special_sent.saturating_sub(args.poison)),
            },
        ],
        dead_lettered: status.dead_lettered,
        p99_ms_untouched: (quantile(&untouched, 0.99) * 100.0).round() / 100.0,
        duration_s: args.duration.as_secs_f64(),
        rate: args.rate,
        chats: args.chats,
        workers: args.workers,
        kills,
        restarts: status.restarts,
        sent,
        handled,
        lost: sent.saturating_sub(handled),
        duplicates_to_handlers: duplicates,
        order_violations: violations,
        redelivered: status.redelivered,
        p50_ms: (quantile(&latencies, 0.5) * 100.0).round() / 100.0,
        p99_ms: (quantile(&latencies, 0.99) * 100.0).round() / 100.0,
    })
}

fn print(out: &mut impl Write, r: &Report) -> std::io::Result<()> {
    writeln!(
        out,
        "machine: {} cores, {} MiB; {} workers, {} updates/s over {} chats for {:.0} s",
        r.machine.cores, r.machine.memory_mib, r.workers, r.rate, r.chats, r.duration_s
    )?;
    writeln!(
        out,
        "\nkills {:>8}   restarts {:>8}   redelivered {:>8}",
        r.kills, r.restarts, r.redelivered
    )?;
    writeln!(
        out,
        "sent  {:>8}   handled  {:>8}   lost        {:>8}",
        r.sent, r.handled, r.lost
    )?;
    writeln!(
        out,
        "duplicates reaching handlers {}   order violations {}",
        r.duplicates_to_handlers, r.order_violations
    )?;
    writeln!(
        out,
        "latency (injected -> handled): p50 {:.1} ms, p99 {:.1} ms; chats no poison or stuck update touched: p99 {:.1} ms",
        r.p50_ms, r.p99_ms, r.p99_ms_untouched
    )?;
    let faults: Vec<String> = r
        .faults
        .iter()
        .map(|f| format!("{} {}", f.kind, f.injected))
        .collect();
    writeln!(
        out,
        "faults: {}; set aside as dead letters: {}",
        faults.join(", "),
        r.dead_lettered
    )
}
