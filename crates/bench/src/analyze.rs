//! `botfleet bench analyze`: how well `botfleet analyze` names what was
//! injected, and how long it takes.
//!
//! - Accuracy: `botfleet demo` with each fault knob (`faults.rs`), run as
//!   a process as a user runs it, its monitor's `/performance/report` read
//!   after the traffic;
//!   per kind, whether the injected kind came first, its rank, what came
//!   first, and the report's time. A fleet with no knob is to be healthy.
//! - Scale: the analyzer over a store of `--series` series (10,000 by
//!   default), by the second for ten minutes, over `analyze`'s default
//!   window of five, timed.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use botfleet_analyze::fleet::{self, Input};
use botfleet_monitor::Registry;
use botfleet_monitor::store::Store;
use clap::Args;
use serde::Serialize;

use crate::Machine;
use crate::faults::Fault;

/// `botfleet bench analyze`'s flags.
#[derive(Debug, Args)]
pub struct AnalyzeBench {
    /// Only these knobs (comma-separated kinds; `healthy` for none)
    /// [default: every knob and healthy].
    #[arg(long, value_delimiter = ',')]
    kinds: Vec<String>,
    /// Traffic before each analysis.
    #[arg(long, default_value = "20s", value_parser = botfleet_config::duration::positive_arg)]
    traffic: Duration,
    /// The analysis window (at most the traffic).
    #[arg(long, default_value = "15s", value_parser = botfleet_config::duration::positive_arg)]
    window: Duration,
    /// Updates per second from the synthetic users.
    #[arg(long, default_value_t = 30.0)]
    rate: f64,
    /// Series in the store the analyzer is timed on.
    #[arg(long, default_value_t = 10_000)]
    series: usize,
    /// Timed analyses over that store (the median is reported).
    #[arg(long, default_value_t = 9)]
    repeats: usize,
    /// Skip the accuracy part (the scale part only).
    #[arg(long)]
    no_accuracy: bool,
    /// Print one JSON document.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Serialize)]
struct Accuracy {
    /// The injected kind (`healthy`: no knob).
    kind: String,
    /// The kind analyze named first.
    first: String,
    /// Whether it is the injected one.
    correct: bool,
    /// The injected kind's rank (none when not found).
    rank: Option<u64>,
    /// Findings in all.
    findings: usize,
    /// `/performance/report`'s time, milliseconds.
    report_ms: f64,
}

#[derive(Debug, Serialize)]
struct Scale {
    series: usize,
    window_s: u64,
    /// The median of the timed analyses, milliseconds.
    analyze_ms_median: f64,
    analyze_ms_min: f64,
    analyze_ms_max: f64,
}

#[derive(Debug, Serialize)]
struct Report {
    machine: Machine,
    traffic_s: f64,
    window_s: f64,
    rate: f64,
    accuracy: Vec<Accuracy>,
    /// Kinds named first / kinds injected.
    accuracy_rate: Option<f64>,
    scale: Scale,
    took_s: f64,
}

/// Runs `botfleet bench analyze` and prints its report.
pub fn run(args: &AnalyzeBench) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        args.window <= args.traffic && args.window >= Duration::from_secs(2),
        "--window must be at least 2 s and at most --traffic"
    );
    anyhow::ensure!(args.series >= 100, "--series must be at least 100");
    let mut wanted: Vec<Option<Fault>> = Vec::new();
    if args.kinds.is_empty() {
        wanted.push(None);
        wanted.extend(Fault::ALL.map(Some));
    } else {
        for k in &args.kinds {
            if k == "healthy" {
                wanted.push(None);
            } else {
                wanted.push(Some(Fault::parse(k).map_err(anyhow::Error::msg)?));
            }
        }
    }
    let started = tokio::time::Instant::now();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let mut accuracy = Vec::new();
    if !args.no_accuracy {
        for fault in wanted {
            let row = runtime.block_on(one(args, fault))?;
            writeln!(
                std::io::stderr(),
                "{:<26} first {:<26} {}",
                row.kind,
                row.first,
                if row.correct { "ok" } else { "MISSED" }
            )?;
            accuracy.push(row);
        }
    }
    let scale = scale(args);
    let report = Report {
        machine: Machine::current(),
        traffic_s: args.traffic.as_secs_f64(),
        window_s: args.window.as_secs_f64(),
        rate: args.rate,
        accuracy_rate: (!accuracy.is_empty())
            .then(|| accuracy.iter().filter(|a| a.correct).count() as f64 / accuracy.len() as f64),
        accuracy,
        scale,
        took_s: started.elapsed().as_secs_f64(),
    };
    let mut out = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer_pretty(&mut out, &report)?;
        writeln!(out)?;
        return Ok(ExitCode::SUCCESS);
    }
    if !report.accuracy.is_empty() {
        writeln!(
            out,
            "analyze's accuracy: the demo with each fault knob, {} s of traffic at {} updates/s, a {} s window",
            report.traffic_s, report.rate, report.window_s
        )?;
        writeln!(
            out,
            "{:<26} {:<26} {:>7} {:>5} {:>9} {:>10}",
            "injected", "named first", "correct", "rank", "findings", "report ms"
        )?;
        for a in &report.accuracy {
            writeln!(
                out,
                "{:<26} {:<26} {:>7} {:>5} {:>9} {:>10.1}",
                a.kind,
                a.first,
                if a.correct { "yes" } else { "NO" },
                a.rank.map_or("-".to_owned(), |r| r.to_string()),
                a.findings,
                a.report_ms
            )?;
        }
        if let Some(r) = report.accuracy_rate {
            writeln!(out, "named first: {:.0} % of the kinds", r * 100.0)?;
        }
    }
    writeln!(
        out,
        "the analyzer over {} series, a {} s window: median {:.1} ms (min {:.1}, max {:.1}) over {} runs",
        report.scale.series,
        report.scale.window_s,
        report.scale.analyze_ms_median,
        report.scale.analyze_ms_min,
        report.scale.analyze_ms_max,
        args.repeats
    )?;
    Ok(ExitCode::SUCCESS)
}

/// `botfleet demo` with `fault`, run as a user runs it (a process of its
/// own, its own monitor and registry), its traffic, then its
/// `/performance/report`.
async fn one(args: &AnalyzeBench, fault: Option<Fault>) -> anyhow::Result<Accuracy> {
    use anyhow::Context as _;
    use tokio::io::AsyncBufReadExt;
    let needs = fault.and_then(Fault::needs);
    let postgres = match needs {
        Some("--postgres") => Some(
            botfleet_testkit::PostgresServer::builder()
                .setting("shared_preload_libraries", "pg_stat_statements")
                .start()?,
        ),
        _ => None,
    };
    let database = match &postgres {
        Some(server) => Some(server.create_database()?),
        None => None,
    };
    let redis = match needs {
        Some("--redis") => Some(botfleet_testkit::RedisServer::start()?),
        _ => None,
    };
    let exe = std::env::current_exe().context("cannot find botfleet's own program")?;
    let mut demo = tokio::process::Command::new(exe);
    demo.arg("demo")
        .arg("--duration")
        .arg(format!("{}s", args.traffic.as_secs() + 5))
        .arg("--rate")
        .arg(args.rate.to_string())
        .arg("--monitor")
        .arg("127.0.0.1:0");
    if let Some(f) = fault {
        demo.arg("--fault").arg(f.kind());
    }
    if let Some(db) = &database {
        demo.arg("--postgres").arg(db.url());
    }
    if let Some(r) = &redis {
        demo.arg("--redis").arg(r.url());
    }
    let mut child = demo
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .context("cannot start botfleet demo")?;
    let mut lines =
        tokio::io::BufReader::new(child.stdout.take().context("the demo's output")?).lines();
    let mut reach = None;
    let started = tokio::time::timeout(Duration::from_secs(120), async {
        while let Some(line) = lines.next_line().await? {
            if let Some(rest) = line.strip_prefix("from another terminal: ") {
                let words: Vec<&str> = rest.split_whitespace().collect();
                let after = |flag: &str| {
                    words
                        .iter()
                        .position(|w| *w == flag)
                        .and_then(|at| words.get(at + 1))
                        .map(|w| (*w).to_owned())
                };
                reach = after("--url").zip(after("--token-file"));
            }
            if line.contains("the synthetic users start writing") {
                return Ok(());
            }
        }
        anyhow::bail!("the demo ended before its traffic started")
    })
    .await;
    started.context("the demo did not start within 2 minutes")??;
    let (url, token_file) = reach.context("the demo did not say where its monitor is")?;
    let token = std::fs::read_to_string(&token_file)
        .with_context(|| format!("cannot read the demo's token file {token_file}"))?;
    // The rest of its output is drained, so it never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    tokio::time::sleep(args.traffic).await;
    let asked = tokio::time::Instant::now();
    let report: serde_json::Value = reqwest::Client::new()
        .get(format!(
            "{url}/performance/report?window={}s",
            args.window.as_secs()
        ))
        .bearer_auth(token.trim())
        .send()
        .await?
        .json()
        .await?;
    let report_ms = asked.elapsed().as_secs_f64() * 1e3;
    if tokio::time::timeout(Duration::from_secs(90), child.wait())
        .await
        .is_err()
    {
        let _ = child.kill().await;
    }
    let kind = fault.map_or("healthy", Fault::kind).to_owned();
    let findings = report["findings"].as_array().cloned().unwrap_or_default();
    let first = findings
        .first()
        .and_then(|f| f["kind"].as_str())
        .unwrap_or("-")
        .to_owned();
    let rank = findings
        .iter()
        .find(|f| f["kind"] == kind.as_str())
        .and_then(|f| f["rank"].as_u64());
    Ok(Accuracy {
        correct: first == kind,
        kind,
        first,
        rank,
        findings: findings.len(),
        report_ms,
    })
}

/// The analyzer over a store of `args.series` series: a fleet of bots with
/// five workers each, every series the analyzer reads, ten minutes of
/// samples by the second.
fn scale(args: &AnalyzeBench) -> Scale {
    let registry = Registry::new(args.series * 2);
    let store = Store::with_retention(args.series * 2, 60);
    // `analyze`'s default window, in a store that holds twice that.
    let window_s: u64 = 300;
    // Per bot: its own series, then five workers' (the histograms' buckets
    // included); enough bots to reach the count.
    let mut names: Vec<(String, Vec<(String, String)>)> = Vec::new();
    let mut bot = 0;
    while names.len() < args.series {
        let b = format!("bot{bot}");
        let l = |extra: &[(&str, String)]| {
            let mut v = vec![("bot".to_owned(), b.clone())];
            v.extend(extra.iter().map(|(k, x)| ((*k).to_owned(), x.clone())));
            v.sort();
            v
        };
        for n in [
            "botfleet_updates_acked_total",
            "botfleet_updates_received_total",
            "botfleet_updates_failed_total",
            "botfleet_queue_depth",
            "botfleet_handler_seconds_total",
            "botfleet_handler_api_seconds_total",
            "botfleet_update_handling_seconds_sum",
            "botfleet_update_handling_seconds_count",
            "botfleet_scale_capped_total",
            "botfleet_workers_max",
            "botfleet_telegram_limiter_wait_seconds_sum",
            "botfleet_telegram_limiter_wait_seconds_count",
            "botfleet_telegram_call_duration_seconds_sum",
            "botfleet_telegram_call_duration_seconds_count",
        ] {
            names.push((n.to_owned(), l(&[])));
        }
        for le in [
            "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "+Inf",
        ] {
            names.push((
                "botfleet_update_handling_seconds_bucket".to_owned(),
                l(&[("le", le.to_owned())]),
            ));
        }
        for w in 0..5 {
            let w = w.to_string();
            for n in [
                "botfleet_worker_cpu_seconds_total",
                "botfleet_worker_resident_memory_bytes",
                "botfleet_worker_open_fds",
                "botfleet_db_acquire_wait_seconds_sum",
                "botfleet_db_acquire_wait_seconds_count",
                "botfleet_db_pool_waiters",
                "botfleet_db_pool_connections_max",
                "botfleet_cache_load_duration_seconds_sum",
            ] {
                names.push((n.to_owned(), l(&[("worker", w.clone())])));
            }
            for q in 0..8 {
                let q = format!("{q:016x}");
                for n in [
                    "botfleet_db_query_duration_seconds_sum",
                    "botfleet_db_query_duration_seconds_count",
                ] {
                    names.push((
                        n.to_owned(),
                        l(&[("worker", w.clone()), ("query", q.clone())]),
                    ));
                }
            }
            for ns in ["cards", "queues"] {
                for tier in ["l1", "l2"] {
                    for n in ["botfleet_cache_hits_total", "botfleet_cache_misses_total"] {
                        names.push((
                            n.to_owned(),
                            l(&[
                                ("worker", w.clone()),
                                ("namespace", ns.to_owned()),
                                ("tier", tier.to_owned()),
                            ]),
                        ));
                    }
                }
            }
        }
        bot += 1;
    }
    names.truncate(args.series);
    let now: i64 = 1_800_000_000;
    let start = now - 2 * window_s as i64;
    for t in start..=now {
        let age = (t - start) as f64;
        for (i, (name, labels)) in names.iter().enumerate() {
            let v = age * (1.0 + (i % 7) as f64);
            if name.ends_with("_total")
                || name.ends_with("_sum")
                || name.ends_with("_count")
                || name.ends_with("_bucket")
            {
                registry.set_float_counter(name, labels, v);
            } else {
                registry.set_gauge(name, labels, (i % 13) as f64);
            }
        }
        store.record(t, &registry.snapshot());
    }
    let mut times = Vec::with_capacity(args.repeats);
    for _ in 0..args.repeats.max(1) {
        let began = tokio::time::Instant::now();
        let report = fleet::analyze(&Input {
            store: &store,
            now,
            window_s,
            advice: None,
        });
        std::hint::black_box(&report);
        times.push(began.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    Scale {
        series: store.len(),
        window_s,
        analyze_ms_median: times[times.len() / 2],
        analyze_ms_min: times[0],
        analyze_ms_max: times[times.len() - 1],
    }
}
