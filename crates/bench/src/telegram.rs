//! `botfleet bench telegram`: the client's sender against the emulator with
//! Telegram's limits enforced, workloads W1-W7 of the team's Telegram
//! reference (section 5), with and without network jitter.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};
use botfleet_emulator::{ChatKind, Emulator, EmulatorConfig, Faults};
use botfleet_telegram::Client;
use botfleet_telegram::limiter::Priority;
use botfleet_telegram::methods::SendMessageParams;
use clap::Args;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::Machine;
use super::stats::quantile;

/// The flags of `botfleet bench telegram`.
#[derive(Debug, Args)]
pub struct TelegramBench {
    /// Print exactly one JSON document on stdout instead of the table.
    #[arg(long)]
    json: bool,
    /// The workloads to run (W1 to W7), comma separated.
    #[arg(long, value_delimiter = ',', default_value = "W1,W2,W3,W4,W5,W6,W7")]
    workloads: Vec<String>,
    /// Also run every workload with 50 ± 30 ms of latency before each
    /// request reaches the emulator.
    #[arg(long)]
    jitter: bool,
    /// Also run every workload through teloxide-core's Throttle adaptor,
    /// with its default limits and with the supergroup limit raised to
    /// 20/min. The peer program is built apart from botfleet: `cargo build
    /// --release --manifest-path bench/teloxide-peer/Cargo.toml --target-dir
    /// target`.
    #[arg(long)]
    teloxide: bool,
    /// The teloxide peer program [default: `botfleet-teloxide-peer` next to
    /// this executable].
    #[arg(long, value_name = "PATH", requires = "teloxide")]
    teloxide_peer: Option<PathBuf>,
}

#[derive(Debug, Serialize)]
struct Report {
    machine: Machine,
    /// The peers' versions, as each reported it (`teloxide-core 0.13.0`).
    peers: Vec<String>,
    runs: Vec<Run>,
}

#[derive(Debug, Serialize)]
struct Run {
    workload: &'static str,
    client: String,
    jitter_ms: &'static str,
    time_s: f64,
    t_min_s: f64,
    efficiency: f64,
    /// 429s caused by pacing (the emulator's limits), over all tokens.
    pacing_429: u64,
    injected_429: u64,
    delivered: u64,
    expected: u64,
    duplicates: u64,
    order_violations: u64,
    p50_ms: f64,
    p99_ms: f64,
    /// W3/W4: when the last private message was delivered.
    private_done_s: Option<f64>,
}

/// One workload: what is sent, and its theoretical minimum time.
struct Workload {
    name: &'static str,
    tokens: u32,
    privates: u32,
    groups_first: bool,
    group_messages: u32,
    paid: bool,
    faults: bool,
    t_min_s: f64,
}

const WORKLOADS: &[Workload] = &[
    Workload {
        name: "W1",
        tokens: 1,
        privates: 1000,
        groups_first: false,
        group_messages: 0,
        paid: false,
        faults: false,
        t_min_s: 33.0,
    },
    Workload {
        name: "W2",
        tokens: 1,
        privates: 0,
        groups_first: false,
        group_messages: 200,
        paid: false,
        faults: false,
        t_min_s: 79.0,
    },
    Workload {
        name: "W3",
        tokens: 1,
        privates: 1000,
        groups_first: false,
        group_messages: 200,
        paid: false,
        faults: false,
        t_min_s: 79.0,
    },
    Workload {
        name: "W4",
        tokens: 1,
        privates: 1000,
        groups_first: true,
        group_messages: 200,
        paid: false,
        faults: false,
        t_min_s: 79.0,
    },
    Workload {
        name: "W5",
        tokens: 1,
        privates: 1000,
        groups_first: false,
        group_messages: 200,
        paid: false,
        faults: true,
        t_min_s: 79.0,
    },
    Workload {
        name: "W6",
        tokens: 10,
        privates: 1000,
        groups_first: false,
        group_messages: 200,
        paid: false,
        faults: false,
        t_min_s: 79.0,
    },
    Workload {
        name: "W7",
        tokens: 1,
        privates: 1000,
        groups_first: false,
        group_messages: 0,
        paid: true,
        faults: false,
        t_min_s: 0.999,
    },
];

/// Five groups (supergroup ids in the range teloxide accepts).
const GROUPS: [i64; 5] = [
    -1_001_000_000_001,
    -1_001_000_000_002,
    -1_001_000_000_003,
    -1_001_000_000_004,
    -1_001_000_000_005,
];
const FIRST_USER: i64 = 100_000_001;

fn token(i: u32) -> String {
    format!(
        "{}:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDs{i:03}",
        110_201_543 + u64::from(i)
    )
}

/// Runs `botfleet bench telegram` (or its hidden worker role) and prints its report.
pub fn run(args: &TelegramBench) -> anyhow::Result<ExitCode> {
    let selected: Vec<&Workload> = args
        .workloads
        .iter()
        .map(|w| {
            WORKLOADS
                .iter()
                .find(|x| x.name.eq_ignore_ascii_case(w.trim()))
                .with_context(|| format!("unknown workload `{w}`: expected W1 to W7"))
        })
        .collect::<anyhow::Result<_>>()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let mut clients = vec![Sender::Botfleet];
    let mut peers = Vec::new();
    if args.teloxide {
        let peer = find_peer(args.teloxide_peer.as_deref())?;
        peers.push(peer_version(&peer)?);
        // Telegram's supergroup limit is 20/min; teloxide's default is 10.
        clients.push(Sender::Teloxide {
            peer: peer.clone(),
            group_per_min: 10,
        });
        clients.push(Sender::Teloxide {
            peer,
            group_per_min: 20,
        });
    }
    let mut runs = Vec::new();
    let jitters: &[bool] = if args.jitter {
        &[false, true]
    } else {
        &[false]
    };
    for &jitter in jitters {
        for w in &selected {
            // Alternating clients workload by workload, so that a slow
            // spell of the machine does not fall on one client only.
            for client in &clients {
                let _ = writeln!(
                    std::io::stderr(),
                    "[{} {}{}] at least {:.0} s ...",
                    w.name,
                    client.name(),
                    if jitter { ", 50±30 ms" } else { "" },
                    w.t_min_s
                );
                runs.push(runtime.block_on(run_workload(w, jitter, client))?);
            }
        }
    }
    let report = Report {
        machine: Machine::current(),
        peers,
        runs,
    };
    super::output(args.json, &report, print)
}

/// Who sends the workload's messages.
enum Sender {
    Botfleet,
    /// teloxide-core's Throttle, driven by the peer program.
    Teloxide {
        peer: PathBuf,
        group_per_min: u32,
    },
}

impl Sender {
    fn name(&self) -> String {
        match self {
            Sender::Botfleet => "botfleet".to_owned(),
            Sender::Teloxide { group_per_min, .. } => {
                format!("teloxide-throttle-{group_per_min}pm")
            }
        }
    }
}

/// One delivered message: its chat, its latency, and when it was done
/// (since the start).
type Delivery = (i64, Duration, Duration);

async fn run_workload(w: &Workload, jitter: bool, sender: &Sender) -> anyhow::Result<Run> {
    let emulator = Emulator::start(EmulatorConfig::default())
        .await
        .context("cannot start the emulator")?;
    for u in 0..w.privates {
        emulator.add_user(FIRST_USER + i64::from(u), "user");
    }
    for (i, g) in GROUPS.iter().enumerate() {
        emulator.add_group(*g, &format!("group {i}"), ChatKind::Supergroup);
    }
    let mut faults = Faults::default();
    if jitter {
        faults.latency_ms = (50, 30);
    }
    if w.faults {
        faults.random_429 = 0.01;
        faults.retry_after = (1, 3);
        faults.restart_burst = 3;
    }
    emulator.set_faults(faults);
    let mut bot_ids = Vec::new();
    let mut tokens = Vec::new();
    for t in 0..w.tokens {
        let tok = token(t);
        let bot = emulator
            .add_bot(&tok, &format!("bench{t}_bot"))
            .context("a bench token")?;
        bot_ids.push(bot.id);
        tokens.push(tok);
    }
    // One task per chat and token, sending that chat's messages in order.
    let mut chats: Vec<(i64, u32)> = Vec::new();
    let groups: Vec<(i64, u32)> = GROUPS
        .iter()
        .map(|&g| (g, w.group_messages / 5))
        .filter(|(_, n)| *n > 0)
        .collect();
    let privates: Vec<(i64, u32)> = (0..w.privates)
        .map(|u| (FIRST_USER + i64::from(u), 1))
        .collect();
    if w.groups_first {
        chats.extend(&groups);
        chats.extend(&privates);
    } else {
        // Interleaved: a group, then 200 private chats, and so on.
        let mut p = privates.iter();
        for g in &groups {
            chats.push(*g);
            chats.extend(p.by_ref().take(200));
        }
        chats.extend(p);
    }
    let start = Instant::now();
    let deliveries = match sender {
        Sender::Botfleet => send_botfleet(&emulator, tokens, &chats, w.paid, start).await?,
        Sender::Teloxide {
            peer,
            group_per_min,
        } => {
            send_teloxide(
                &emulator,
                peer,
                tokens,
                &chats,
                w.paid,
                *group_per_min,
                start,
            )
            .await?
        }
    };
    let mut latencies = Vec::new();
    let mut private_done = Duration::ZERO;
    for (chat, latency, done) in deliveries {
        latencies.push(latency.as_secs_f64() * 1e3);
        if chat > 0 {
            private_done = private_done.max(done);
        }
    }
    let time = start.elapsed();
    let expected = u64::from(w.tokens) * (u64::from(w.privates) + u64::from(w.group_messages));
    let (mut pacing, mut injected, mut delivered, mut violations) = (0, 0, 0, 0);
    for id in &bot_ids {
        let s = emulator.stats(*id);
        delivered += s.accepted;
        violations += s.order_violations;
        for (scope, n) in &s.rejected_429 {
            if scope == "injected" {
                injected += n;
            } else {
                pacing += n;
            }
        }
    }
    // A message is identified by its bot, chat and text.
    let mut seen: HashMap<(i64, i64, String), u32> = HashMap::new();
    for e in emulator
        .log()
        .into_iter()
        .filter(|e| e.status == 200 && e.method == "sendmessage")
    {
        if let (Some(chat), Some(text)) = (e.chat_id, e.text) {
            *seen.entry((e.bot_id, chat, text)).or_default() += 1;
        }
    }
    let duplicates: u64 = seen.values().map(|&n| u64::from(n.saturating_sub(1))).sum();
    let time_s = time.as_secs_f64();
    Ok(Run {
        workload: w.name,
        client: sender.name(),
        jitter_ms: if jitter { "50±30" } else { "0" },
        time_s: round2(time_s),
        t_min_s: w.t_min_s,
        efficiency: round3(w.t_min_s / time_s),
        pacing_429: pacing,
        injected_429: injected,
        delivered,
        expected,
        duplicates,
        order_violations: violations,
        p50_ms: round2(quantile(&latencies, 0.5)),
        p99_ms: round2(quantile(&latencies, 0.99)),
        private_done_s: (w.privates > 0 && w.group_messages > 0)
            .then(|| round2(private_done.as_secs_f64())),
    })
}

/// Sends the workload through botfleet's client: one task per chat and
/// token, sending that chat's messages in order.
async fn send_botfleet(
    emulator: &Emulator,
    tokens: Vec<String>,
    chats: &[(i64, u32)],
    paid: bool,
    start: Instant,
) -> anyhow::Result<Vec<Delivery>> {
    let mut clients = Vec::new();
    for (t, tok) in tokens.into_iter().enumerate() {
        let client = Client::builder(tok)
            .base_url(emulator.base_url())
            .bot(format!("bench{t}"))
            .retries(20, Duration::from_millis(200))
            .build()?;
        clients.push(client);
    }
    let mut tasks = Vec::new();
    for client in &clients {
        for &(chat, n) in chats {
            let client = client.clone();
            tasks.push(tokio::spawn(async move {
                let mut latencies = Vec::new();
                for k in 1..=n {
                    let params = SendMessageParams::builder()
                        .chat_id(chat)
                        .text(format!("message #{k}"))
                        .maybe_allow_paid_broadcast(paid.then_some(true))
                        .build();
                    let t = Instant::now();
                    client.send_message_as(&params, Priority::Broadcast).await?;
                    latencies.push((chat, t.elapsed(), start.elapsed()));
                }
                Ok::<_, botfleet_telegram::Error>(latencies)
            }));
        }
    }
    let mut deliveries = Vec::new();
    for task in tasks {
        deliveries.extend(task.await.context("a send task")??);
    }
    Ok(deliveries)
}

/// One line of the peer's output.
#[derive(Deserialize)]
#[serde(untagged)]
enum PeerLine {
    Sent {
        chat: i64,
        latency_ms: f64,
        done_s: f64,
    },
    Failed {
        chat: i64,
        error: String,
    },
}

/// Sends the workload through teloxide's Throttle, in the peer process.
async fn send_teloxide(
    emulator: &Emulator,
    peer: &Path,
    tokens: Vec<String>,
    chats: &[(i64, u32)],
    paid: bool,
    group_per_min: u32,
    start: Instant,
) -> anyhow::Result<Vec<Delivery>> {
    let job = serde_json::json!({
        "api_url": emulator.base_url(),
        "tokens": tokens,
        "chats": chats,
        "paid": paid,
        "group_per_min": group_per_min,
    });
    #[expect(
        clippy::disallowed_methods,
        reason = "the benchmark runs the peer client it compares with and waits for it"
    )]
    let mut child = std::process::Command::new(peer)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start the teloxide peer {}", peer.display()))?;
    let mut stdin = child.stdin.take().context("the peer's stdin")?;
    stdin
        .write_all(job.to_string().as_bytes())
        .context("cannot send the job to the teloxide peer")?;
    drop(stdin);
    let out = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .context("waiting for the teloxide peer")?
        .context("waiting for the teloxide peer")?;
    let spawned = start.elapsed();
    if !out.status.success() {
        bail!(
            "the teloxide peer failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let mut deliveries = Vec::new();
    for (n, line) in String::from_utf8_lossy(&out.stdout).lines().enumerate() {
        let parsed: PeerLine = serde_json::from_str(line)
            .with_context(|| format!("the teloxide peer's output, line {}", n + 1))?;
        match parsed {
            PeerLine::Sent {
                chat,
                latency_ms,
                done_s,
            } => deliveries.push((
                chat,
                Duration::from_secs_f64(latency_ms / 1e3),
                Duration::from_secs_f64(done_s).min(spawned),
            )),
            // Reported, not fatal: the table's `delivered` shows the loss.
            PeerLine::Failed { chat, error } => {
                let _ = writeln!(
                    std::io::stderr(),
                    "teloxide could not deliver a message to chat {chat}: {error}"
                );
            }
        }
    }
    Ok(deliveries)
}

/// The peer at `path`, or else `botfleet-teloxide-peer` next to this
/// executable.
fn find_peer(path: Option<&Path>) -> anyhow::Result<PathBuf> {
    const BUILD: &str =
        "cargo build --release --manifest-path bench/teloxide-peer/Cargo.toml --target-dir target";
    let peer = match path {
        Some(path) => path.to_owned(),
        None => std::env::current_exe()
            .context("cannot find the botfleet executable")?
            .with_file_name("botfleet-teloxide-peer"),
    };
    if !peer.is_file() {
        bail!(
            "the teloxide peer {} does not exist; build it with `{BUILD}`",
            peer.display()
        );
    }
    Ok(peer)
}

/// The peer's `--version` line.
fn peer_version(peer: &Path) -> anyhow::Result<String> {
    #[expect(
        clippy::disallowed_methods,
        reason = "the benchmark asks the peer client it compares with for its version"
    )]
    let out = std::process::Command::new(peer)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run {}", peer.display()))?;
    if !out.status.success() {
        bail!("{} --version failed ({})", peer.display(), out.status);
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

fn print(out: &mut impl Write, r: &Report) -> std::io::Result<()> {
    writeln!(
        out,
        "machine: {} cores, {} MiB",
        r.machine.cores, r.machine.memory_mib
    )?;
    for peer in &r.peers {
        writeln!(out, "peer: {peer}")?;
    }
    writeln!(
        out,
        "\n{:<4} {:<22} {:<9} {:>7} {:>6} {:>6} {:>7} {:>8} {:>10} {:>5} {:>6} {:>8} {:>8} {:>9}",
        "",
        "client",
        "jitter",
        "time s",
        "T_min",
        "eff.",
        "pacing",
        "injected",
        "delivered",
        "dup.",
        "order",
        "p50 ms",
        "p99 ms",
        "private s"
    )?;
    for run in &r.runs {
        writeln!(
            out,
            "{:<4} {:<22} {:<9} {:>7.2} {:>6.1} {:>6.3} {:>7} {:>8} {:>10} {:>5} {:>6} {:>8.1} {:>8.1} {:>9}",
            run.workload,
            run.client,
            run.jitter_ms,
            run.time_s,
            run.t_min_s,
            run.efficiency,
            run.pacing_429,
            run.injected_429,
            format!("{}/{}", run.delivered, run.expected),
            run.duplicates,
            run.order_violations,
            run.p50_ms,
            run.p99_ms,
            run.private_done_s
                .map_or("-".to_owned(), |s| format!("{s:.1}")),
        )?;
    }
    Ok(())
}
