//! `botfleet bench chaos`: the whole fleet, as `botfleet run` in a process
//! of its own, under steady traffic while every fault production brings
//! comes at once: a random worker killed with SIGKILL every half second,
//! poison updates (their handler kills its worker, every time), stuck chats
//! (an update whose handler never ends), PostgreSQL killed and started
//! again, Redis killed and started again, and the supervisor itself killed
//! with SIGKILL and started again. Every ordinary update's handler writes a
//! row to PostgreSQL and a required value to Redis, so an outage reaches
//! the handlers (they answer "retry" and the supervisor keeps the update).
//!
//! Counts what handlers saw (lost, duplicated, out of order), which
//! duplicates an ack in flight at a kill explains (the process that handled
//! the update first died before its ack was recorded), the updates set
//! aside as dead letters (they must be exactly the poison and stuck ones),
//! and the latency of the updates no fault touched.

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::{Context, bail};
use botfleet_config::{BotFile, FleetFile};
use botfleet_testkit::{PostgresServer, RedisServer};
use clap::Args;
use serde::Serialize;
use tokio::task::JoinHandle;
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
    /// How long traffic runs and faults come (`60s`, `2m`, or seconds).
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
    /// PostgreSQL restarts: the server killed with SIGKILL, as a crash
    /// would, and started again after `--outage`.
    #[arg(long, default_value_t = 1)]
    postgres_restarts: u32,
    /// Redis kills: the server killed with SIGKILL and started again
    /// (empty) after `--outage`.
    #[arg(long, default_value_t = 1)]
    redis_kills: u32,
    /// Supervisor kills: `botfleet run` killed with SIGKILL mid-traffic and
    /// started again at once.
    #[arg(long, default_value_t = 1)]
    supervisor_kills: u32,
    /// How long PostgreSQL and Redis stay down each time.
    #[arg(long, default_value = "3s", value_parser = botfleet_config::duration::positive_arg)]
    outage: Duration,
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
    /// p99 of the updates no fault touched (see `untouched`).
    p99_ms_untouched: f64,
    /// The updates counted in `p99_ms_untouched`: outside the chats of
    /// poison and stuck updates, not arrived while a server was down or the
    /// supervisor was away, and not queued behind an update that was.
    untouched: u64,
    /// Duplicates an ack in flight at a kill explains: the process that
    /// handled the update first died (a worker kill, a poison crash, the
    /// supervisor's kill) before its ack was recorded.
    duplicates_in_flight: u64,
    duration_s: f64,
    rate: u32,
    chats: u32,
    workers: u32,
    kills: u64,
    sent: u64,
    handled: u64,
    lost: u64,
    /// Every update a handler saw more than once.
    duplicates_to_handlers: u64,
    order_violations: u64,
    p50_ms: f64,
    p99_ms: f64,
    /// Rows the handlers wrote to PostgreSQL (one per ordinary update, the
    /// warm-up's included: at least `handled`).
    rows: u64,
    /// Each outage: its kind and how long its window lasted (from the
    /// fault to the server back, or to the restarted supervisor's first
    /// answer), in seconds.
    outages: Vec<Outage>,
}

#[derive(Clone, Debug, Serialize)]
struct Outage {
    kind: &'static str,
    window_s: f64,
}

/// The text of a poison update, and of a stuck one.
const POISON: &str = "poison";
const STUCK: &str = "stuck";
/// The table every ordinary update's handler writes a row to.
const TABLE: &str = "chaos_handled";

/// Runs `botfleet bench chaos` (or its hidden worker role) and prints its report.
pub fn run(args: &ChaosBench) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    if let Some(log) = &args.worker {
        return runtime.block_on(worker(log.clone()));
    }
    if args.rate == 0 || args.chats == 0 || args.workers == 0 {
        bail!("--rate, --chats and --workers must be at least 1");
    }
    let postgres = PostgresServer::builder()
        .max_connections(100)
        .start()
        .context("cannot start PostgreSQL (is it installed?)")?;
    postgres
        .psql(
            "postgres",
            &format!("CREATE TABLE {TABLE} (update_id BIGINT PRIMARY KEY)"),
        )
        .context("cannot create the handlers' table")?;
    let redis = RedisServer::start().context("cannot start Redis (is redis-server installed?)")?;
    let postgres = Arc::new(postgres);
    let mut report = runtime.block_on(measure(args, postgres.clone(), Arc::new(redis)))?;
    report.rows = postgres
        .psql("postgres", &format!("SELECT count(*) FROM {TABLE}"))
        .context("cannot count the handlers' rows")?
        .trim()
        .parse()
        .context("the handlers' row count")?;
    super::output(args.json, &report, print)
}

/// The benchmark's worker: poison kills it (saying so first in
/// `crashes.log` beside the log), stuck never ends, and every other update
/// writes its row to PostgreSQL and its value to Redis, both required.
async fn worker(log: PathBuf) -> anyhow::Result<ExitCode> {
    let crashes = log.with_file_name("crashes.log");
    let cache: Arc<OnceLock<botfleet_cache::TieredCache<i64, i64>>> = Arc::new(OnceLock::new());
    harness::logging_worker(log, move |text, cx| {
        let crashes = crashes.clone();
        let cache = cache.clone();
        async move {
            match text.as_str() {
                // A handler that kills its process: a segfault, an abort,
                // `os._exit` in Python.
                POISON => {
                    let line = format!("{} {}\n", std::process::id(), now_ns());
                    let _ = std::fs::OpenOptions::new()
                        .append(true)
                        .create(true)
                        .open(&crashes)
                        .and_then(|mut f| f.write_all(line.as_bytes()));
                    std::process::exit(13)
                }
                STUCK => std::future::pending().await,
                _ => {
                    if let Some(db) = cx.db() {
                        db.query(&format!(
                            "INSERT INTO {TABLE} (update_id) VALUES ($1) ON CONFLICT (update_id) DO NOTHING"
                        ))
                        .bind(cx.update_id())
                        .execute()
                        .await?;
                    }
                    if cx.redis().is_some() {
                        let cache =
                            cache.get_or_init(|| cx.cache("chaos").capacity(10_000).build());
                        cache.set_required(cx.update_id(), cx.update_id()).await?;
                    }
                    Ok(())
                }
            }
        }
    })
    .await
}

/// `botfleet run` of the benchmark's fleet file in `dir`, its output
/// appended to `dir/supervisor.out` and `dir/supervisor.err`.
fn spawn_supervisor(dir: &Path, incarnation: u32) -> anyhow::Result<tokio::process::Child> {
    let exe = std::env::current_exe().context("cannot find the botfleet executable")?;
    let open = |name: &str| {
        std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(dir.join(name))
            .with_context(|| format!("cannot open {name}"))
    };
    let socket_dir = format!("run-{incarnation}");
    tokio::process::Command::new(exe)
        .args(["run", "fleet.toml", "--data-dir", "data", "--socket-dir"])
        .arg(&socket_dir)
        .current_dir(dir)
        .stdin(std::process::Stdio::null())
        .stdout(open("supervisor.out")?)
        .stderr(open("supervisor.err")?)
        .kill_on_drop(true)
        .spawn()
        .context("cannot start `botfleet run`")
}

/// The processes whose parent is `parent` (a supervisor's workers).
fn children_of(parent: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|stat| {
                    // `pid (comm) state ppid ...`; comm may hold anything.
                    let rest = &stat[stat.rfind(')')? + 1..];
                    rest.split_whitespace().nth(1)?.parse::<u32>().ok()
                })
                == Some(parent)
        })
        .collect()
}

/// The last lines of the supervisor's stderr, for an error.
fn tail(dir: &Path) -> String {
    let text = std::fs::read_to_string(dir.join("supervisor.err")).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

/// A server fault in progress: when it began, and the task that brings the
/// server back (answering when it was back).
type Down = (&'static str, u128, JoinHandle<anyhow::Result<u128>>);

/// Kills a server now and starts it again after `outage`, off the async
/// threads.
fn outage<S: Send + Sync + 'static>(
    kind: &'static str,
    server: &Arc<S>,
    kill: fn(&S) -> botfleet_testkit::Result<()>,
    start: fn(&S) -> botfleet_testkit::Result<()>,
    outage: Duration,
) -> Down {
    let server = server.clone();
    let began = now_ns();
    let task = tokio::spawn(async move {
        let s = server.clone();
        tokio::task::spawn_blocking(move || kill(&s))
            .await?
            .with_context(|| format!("cannot kill {kind}"))?;
        tokio::time::sleep(outage).await;
        tokio::task::spawn_blocking(move || start(&server))
            .await?
            .with_context(|| format!("cannot start {kind} again"))?;
        Ok(now_ns())
    });
    (kind, began, task)
}

/// When each fault of a kind comes: `n` of them spread over the run,
/// starting at `offset` of its share.
fn schedule(start: Instant, length: Duration, n: u32, offset: f64) -> Vec<Instant> {
    (0..n)
        .map(|i| {
            start + length.mul_f64((0.1 + 0.75 * (f64::from(i) + offset) / f64::from(n)).min(0.95))
        })
        .collect()
}

async fn measure(
    args: &ChaosBench,
    postgres: Arc<PostgresServer>,
    redis: Arc<RedisServer>,
) -> anyhow::Result<Report> {
    let work = botfleet_testkit::TempDir::new("bench-chaos").context("a work directory")?;
    let dir = work.path();
    let log = dir.join("handled.log");
    // The faults' own chats come after the ordinary ones.
    let special = i64::from(args.poison + args.stuck);
    let emulator = harness::emulator("chaos_bot", i64::from(args.chats) + special).await?;
    let exe = std::env::current_exe().context("cannot find the botfleet executable")?;
    let file = FleetFile::new()
        .telegram_api(emulator.base_url())
        .database(postgres.url("postgres"))
        .redis(redis.url())
        .bot(
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
        );
    harness::fleet_config(file.clone())?;
    std::fs::write(dir.join("fleet.toml"), file.to_toml()).context("cannot write fleet.toml")?;
    let mut incarnation = 0;
    let mut supervisor = spawn_supervisor(dir, incarnation)?;

    // Warm-up: one update in each of the first chats, handled before the
    // clock starts.
    let mut warm = HashSet::new();
    for chat in 1..=i64::from(args.workers.min(args.chats)) {
        warm.insert(
            emulator
                .inject_message(TOKEN, chat, chat, "warm-up")
                .map_err(|e| anyhow::anyhow!("inject: {e}"))?,
        );
    }
    let ready_by = Instant::now() + Duration::from_secs(60);
    loop {
        let seen: HashSet<i64> = harness::read_log(&log).iter().map(|h| h.id).collect();
        if warm.is_subset(&seen) {
            break;
        }
        if Instant::now() > ready_by {
            bail!(
                "the fleet did not answer within 60 s; its log ends:\n{}",
                tail(dir)
            );
        }
        if let Some(status) = supervisor.try_wait()? {
            bail!("`botfleet run` ended ({status}):\n{}", tail(dir));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = writeln!(
        std::io::stderr(),
        "[chaos] {} updates/s over {} chats for {:?}: a worker killed every {:?}, {} poison, {} stuck, \
         {} PostgreSQL restarts, {} Redis kills, {} supervisor kills ...",
        args.rate,
        args.chats,
        args.duration,
        args.kill_every,
        args.poison,
        args.stuck,
        args.postgres_restarts,
        args.redis_kills,
        args.supervisor_kills,
    );
    // Each update: its chat and when it was injected.
    let mut injected: HashMap<i64, (i64, u128)> = HashMap::new();
    let start = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    let mut next_kill = start + args.kill_every;
    let mut worker_kills: Vec<(u32, u128)> = Vec::new();
    // Each supervisor kill: when, and its workers then (they finish what
    // they hold, but their acks have nobody to reach).
    let mut supervisor_kills: Vec<(u128, Vec<u32>)> = Vec::new();
    let mut restarted: Vec<u128> = Vec::new();
    let mut ordinary = 0u64;
    let mut rng = fastrand::Rng::with_seed(0x2545_f491_4f6c_dd1d);
    // The poison and stuck updates, spread over the first half of the run:
    // chat chats+1.. for poison, then the stuck ones; each followed by
    // ordinary updates in its chat.
    let mut special_sent = 0u32;
    let special_every = args.duration / 2 / (args.poison + args.stuck).max(1);
    let mut next_special = start + special_every / 2;
    let mut touched_chats: HashSet<i64> = HashSet::new();
    let mut pg_at = schedule(start, args.duration, args.postgres_restarts, 0.2);
    let mut redis_at = schedule(start, args.duration, args.redis_kills, 0.45);
    let mut supervisor_at = schedule(start, args.duration, args.supervisor_kills, 0.7);
    let mut downs: Vec<Down> = Vec::new();
    while start.elapsed() < args.duration {
        tick.tick().await;
        let now = Instant::now();
        if special_sent < args.poison + args.stuck && now >= next_special {
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
                injected.insert(id, (chat, now_ns()));
            }
            touched_chats.insert(chat);
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
            injected.insert(id, (chat, now_ns()));
            ordinary += 1;
        }
        if pg_at.first().is_some_and(|&t| now >= t) {
            pg_at.remove(0);
            downs.push(outage(
                "postgres_restart",
                &postgres,
                PostgresServer::kill,
                PostgresServer::start_again,
                args.outage,
            ));
        }
        if redis_at.first().is_some_and(|&t| now >= t) {
            redis_at.remove(0);
            downs.push(outage(
                "redis_kill",
                &redis,
                RedisServer::kill,
                RedisServer::start_again,
                args.outage,
            ));
        }
        if supervisor_at.first().is_some_and(|&t| now >= t) {
            supervisor_at.remove(0);
            let orphans = supervisor.id().map(children_of).unwrap_or_default();
            supervisor_kills.push((now_ns(), orphans));
            supervisor
                .start_kill()
                .context("cannot kill the supervisor")?;
            supervisor.wait().await?;
            incarnation += 1;
            supervisor = spawn_supervisor(dir, incarnation)?;
            restarted.push(now_ns());
        }
        if now >= next_kill {
            next_kill += args.kill_every;
            let workers = supervisor.id().map(children_of).unwrap_or_default();
            if !workers.is_empty() {
                let pid = workers[rng.usize(..workers.len())];
                if let Some(pid) = rustix::process::Pid::from_raw(pid as i32) {
                    let at = now_ns();
                    if rustix::process::kill_process_group(pid, rustix::process::Signal::KILL)
                        .is_ok()
                    {
                        worker_kills.push((pid.as_raw_nonzero().get() as u32, at));
                    }
                }
            }
        }
        if let Some(status) = supervisor.try_wait()? {
            bail!("`botfleet run` ended ({status}):\n{}", tail(dir));
        }
    }
    // The servers' windows: from the kill to the server back.
    let mut windows: Vec<(&'static str, u128, u128)> = Vec::new();
    for (kind, began, task) in downs {
        let back = task.await.context("an outage's task")??;
        windows.push((kind, began, back));
    }
    let _ = writeln!(
        std::io::stderr(),
        "[chaos] traffic over; waiting for every update to be handled or set aside ..."
    );
    let data = dir.join("data");
    let faults_sent = u64::from(special_sent);
    let settle_by = Instant::now() + Duration::from_secs(120);
    let dead_lettered = loop {
        let seen: HashSet<i64> = harness::read_log(&log).iter().map(|h| h.id).collect();
        let dead = botfleet_runtime::dead::list(&data, Some("chaos"))
            .map(|l| l.len() as u64)
            .unwrap_or(0);
        if (injected.keys().all(|id| seen.contains(id)) && dead >= faults_sent)
            || Instant::now() > settle_by
        {
            break dead;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    // A graceful stop: the workers drain.
    if let Some(pid) = supervisor
        .id()
        .and_then(|p| rustix::process::Pid::from_raw(p as i32))
    {
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
    }
    if tokio::time::timeout(Duration::from_secs(30), supervisor.wait())
        .await
        .is_err()
    {
        let _ = supervisor.start_kill();
        let _ = supervisor.wait().await;
    }

    // What the handlers saw.
    let lines = harness::read_log(&log);
    let crashes = read_crashes(&dir.join("crashes.log"));
    // Each supervisor's window: from its kill to the first update handled
    // after its successor started.
    for ((kill, _), &again) in supervisor_kills.iter().zip(&restarted) {
        let kill = *kill;
        let answered = lines
            .iter()
            .map(|h| h.at_ns)
            .filter(|&t| t > again)
            .min()
            .unwrap_or(again);
        windows.push(("supervisor_kill", kill, answered));
    }
    let mut first: HashMap<i64, (u128, u32)> = HashMap::new();
    let mut last: HashMap<i64, i64> = HashMap::new();
    let (mut duplicates, mut in_flight, mut violations) = (0u64, 0u64, 0u64);
    for h in &lines {
        if let Some(&(t1, p1)) = first.get(&h.id) {
            duplicates += 1;
            // The first handler's process died after it, or its supervisor
            // did before the second: its ack was in flight.
            let died = worker_kills
                .iter()
                .chain(&crashes)
                .any(|&(pid, at)| pid == p1 && (t1..=h.at_ns).contains(&at))
                || supervisor_kills
                    .iter()
                    .any(|(at, orphans)| *at <= h.at_ns && orphans.contains(&p1));
            if died {
                in_flight += 1;
            } else {
                let _ = writeln!(
                    std::io::stderr(),
                    "[chaos] a duplicate no kill explains: update {} (chat {}) handled by pid {p1}, then again by pid {} {:.3} s later",
                    h.id,
                    h.chat,
                    h.pid,
                    h.at_ns.saturating_sub(t1) as f64 / 1e9
                );
            }
            continue;
        }
        first.insert(h.id, (h.at_ns, h.pid));
        let previous = last.entry(h.chat).or_insert(i64::MIN);
        if h.id < *previous {
            violations += 1;
        }
        *previous = (*previous).max(h.id);
    }
    let (latencies, untouched) = latencies(&injected, &first, &touched_chats, &windows);
    let handled = injected.keys().filter(|id| first.contains_key(id)).count() as u64;
    let sent = injected.len() as u64;
    let round = |v: f64| (v * 100.0).round() / 100.0;
    let count = |kind: &str| windows.iter().filter(|w| w.0 == kind).count() as u64;
    Ok(Report {
        machine: Machine::current(),
        faults: vec![
            Fault {
                kind: "worker_kill",
                injected: worker_kills.len() as u64,
            },
            Fault {
                kind: "poison",
                injected: u64::from(args.poison.min(special_sent)),
            },
            Fault {
                kind: "stuck_chat",
                injected: u64::from(special_sent.saturating_sub(args.poison)),
            },
            Fault {
                kind: "postgres_restart",
                injected: count("postgres_restart"),
            },
            Fault {
                kind: "redis_kill",
                injected: count("redis_kill"),
            },
            Fault {
                kind: "supervisor_kill",
                injected: supervisor_kills.len() as u64,
            },
        ],
        dead_lettered,
        p99_ms_untouched: round(quantile(&untouched, 0.99)),
        untouched: untouched.len() as u64,
        duplicates_in_flight: in_flight,
        duration_s: args.duration.as_secs_f64(),
        rate: args.rate,
        chats: args.chats,
        workers: args.workers,
        kills: worker_kills.len() as u64,
        sent,
        handled,
        lost: sent - handled,
        duplicates_to_handlers: duplicates,
        order_violations: violations,
        p50_ms: round(quantile(&latencies, 0.5)),
        p99_ms: round(quantile(&latencies, 0.99)),
        rows: 0,
        outages: windows
            .iter()
            .map(|&(kind, from, to)| Outage {
                kind,
                window_s: round(to.saturating_sub(from) as f64 / 1e9),
            })
            .collect(),
    })
}

/// Lines `pid ns` the poison handler writes before it kills its process.
fn read_crashes(path: &Path) -> Vec<(u32, u128)> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|line| {
            let (pid, at) = line.split_once(' ')?;
            Some((pid.parse().ok()?, at.parse().ok()?))
        })
        .collect()
}

/// The latency (injected -> first handled, ms) of every handled update, and
/// of the untouched ones: not in a chat of a poison or stuck update, not
/// injected inside a fault's window, and not queued behind a touched update
/// of its chat still unhandled when it arrived.
fn latencies(
    injected: &HashMap<i64, (i64, u128)>,
    first: &HashMap<i64, (u128, u32)>,
    touched_chats: &HashSet<i64>,
    windows: &[(&'static str, u128, u128)],
) -> (Vec<f64>, Vec<f64>) {
    let mut by_chat: HashMap<i64, Vec<i64>> = HashMap::new();
    for (&id, &(chat, _)) in injected {
        by_chat.entry(chat).or_default().push(id);
    }
    let (mut all, mut untouched) = (Vec::new(), Vec::new());
    for (chat, mut ids) in by_chat {
        ids.sort_unstable();
        // When the last touched update of the chat was handled.
        let mut touched_until = 0u128;
        for id in ids {
            let (_, at) = injected[&id];
            let Some(&(done, _)) = first.get(&id) else {
                continue;
            };
            let ms = done.saturating_sub(at) as f64 / 1e6;
            all.push(ms);
            let touched = touched_chats.contains(&chat)
                || windows
                    .iter()
                    .any(|&(_, from, to)| (from..=to).contains(&at))
                || at < touched_until;
            if touched {
                touched_until = touched_until.max(done);
            } else {
                untouched.push(ms);
            }
        }
    }
    (all, untouched)
}

fn print(out: &mut impl Write, r: &Report) -> std::io::Result<()> {
    writeln!(
        out,
        "machine: {} cores, {} MiB; {} workers, {} updates/s over {} chats for {:.0} s",
        r.machine.cores, r.machine.memory_mib, r.workers, r.rate, r.chats, r.duration_s
    )?;
    let faults: Vec<String> = r
        .faults
        .iter()
        .map(|f| format!("{} {}", f.kind, f.injected))
        .collect();
    writeln!(out, "\nfaults: {}", faults.join(", "))?;
    for o in &r.outages {
        writeln!(out, "  {:<17} window {:>6.2} s", o.kind, o.window_s)?;
    }
    writeln!(
        out,
        "\nsent  {:>8}   handled  {:>8}   lost {:>8}",
        r.sent, r.handled, r.lost
    )?;
    writeln!(
        out,
        "duplicates reaching handlers {} ({} from acks in flight at a kill, {} unexplained)   order violations {}",
        r.duplicates_to_handlers,
        r.duplicates_in_flight,
        r.duplicates_to_handlers - r.duplicates_in_flight,
        r.order_violations
    )?;
    writeln!(
        out,
        "set aside as dead letters: {}   rows the handlers wrote to PostgreSQL: {}",
        r.dead_lettered, r.rows
    )?;
    writeln!(
        out,
        "latency (injected -> handled): p50 {:.1} ms, p99 {:.1} ms; untouched by any fault ({} updates): p99 {:.1} ms",
        r.p50_ms, r.p99_ms, r.untouched, r.p99_ms_untouched
    )
}
