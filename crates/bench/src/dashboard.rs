//! `botfleet bench dashboard`: what the operator's surfaces cost, on the
//! demo's fleet (both reference bots, `--workers` each, the emulator and
//! synthetic users at `--rate`):
//!
//! - `page_bytes`: the dashboard's page, script and style as served;
//! - `first_chart_ms`: in a headless Chromium (Debian's `chromium` and
//!   `chromium-driver`), from navigation to the first chart with data
//!   (median of `--rounds` loads; `None` without the browser);
//! - `cpu_pct_per_dashboard`: this process's CPU (the supervisor) with
//!   `--clients` live dashboards connected (`/api/v1/stream`) over
//!   `--seconds`, less the same without any, per dashboard;
//! - `status_ms`: `botfleet status --url` run as a user runs it, process
//!   start to exit (median of `--rounds`), and `fleet_api_ms` the
//!   `/api/v1/fleet` answer it reads.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use serde::Serialize;
use tokio::time::Instant;

use super::Machine;
use super::stats::quantile;
use crate::world::{World, WorldOptions};

/// The flags of `botfleet bench dashboard`.
#[derive(Debug, Args)]
pub struct DashboardBench {
    /// Print exactly one JSON document on stdout instead of the table.
    #[arg(long)]
    json: bool,
    /// Workers of each of the two bots.
    #[arg(long, default_value_t = 20)]
    workers: u32,
    /// Updates a second from the synthetic users meanwhile.
    #[arg(long, default_value_t = 50.0)]
    rate: f64,
    /// Dashboards connected for the CPU measurement.
    #[arg(long, default_value_t = 10)]
    clients: u32,
    /// Length of each CPU measurement.
    #[arg(long, default_value = "20s", value_parser = botfleet_config::duration::positive_arg)]
    seconds: Duration,
    /// Page loads and status runs measured (medians reported).
    #[arg(long, default_value_t = 5)]
    rounds: u32,
}

#[derive(Debug, Serialize)]
struct Report {
    machine: Machine,
    bots: u32,
    workers_per_bot: u32,
    page_bytes: usize,
    first_chart_ms: Option<f64>,
    cpu_pct_idle: f64,
    cpu_pct_with_dashboards: f64,
    clients: u32,
    cpu_pct_per_dashboard: f64,
    status_ms: f64,
    fleet_api_ms: f64,
}

/// This process's CPU time so far, in seconds (user + system).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command's closing parenthesis; utime and stime are
    // the 12th and 13th of them.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

/// CPU % of one core this process used over `length`.
async fn cpu_over(length: Duration) -> f64 {
    let (cpu, wall) = (cpu_seconds(), Instant::now());
    tokio::time::sleep(length).await;
    (cpu_seconds() - cpu) / wall.elapsed().as_secs_f64() * 100.0
}

/// Runs `botfleet bench dashboard` and prints its report.
pub fn run(args: &DashboardBench) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        args.workers >= 1 && args.rounds >= 1 && args.clients >= 1,
        "--workers, --rounds and --clients must be at least 1"
    );
    botfleet_monitor::install(botfleet_monitor::registry::DEFAULT_SERIES_CAP);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let report = runtime.block_on(measure(args))?;
    super::output(args.json, &report, print)
}

async fn measure(args: &DashboardBench) -> anyhow::Result<Report> {
    let mut world = World::start(&WorldOptions {
        users: 1000,
        postgres: None,
        redis: None,
        no_limits: true,
        chat_limits: false,
        monitor: None,
        workers: Some(args.workers),
        faults: Vec::new(),
    })
    .await?;
    let rules = vec![botfleet_monitor::alerts::default_rules()];
    let monitor = botfleet_runtime::monitor::start(&world.config, world.fleet().view(), rules)
        .await
        .context("the monitor did not start")?;
    let base = format!("http://{}", monitor.addr());
    let traffic = world.traffic(1000, args.rate, Duration::from_secs(1));
    let say = |line: String| {
        let _ = writeln!(std::io::stderr(), "bench dashboard: {line}");
    };
    say(format!(
        "2 bots x {} workers at {} updates/s; waiting for every worker",
        args.workers, args.rate
    ));
    for _ in 0..600 {
        let ready: usize = world.status().await.iter().map(|s| s.ready_workers).sum();
        if ready >= 2 * args.workers as usize {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let http = reqwest::Client::new();
    let mut page_bytes = 0;
    for path in ["/", "/assets/app.js", "/assets/style.css"] {
        page_bytes += http
            .get(format!("{base}{path}"))
            .send()
            .await?
            .bytes()
            .await?
            .len();
    }
    // The API the status command reads, and the command itself.
    let mut api = Vec::new();
    for _ in 0..args.rounds * 4 {
        let started = Instant::now();
        http.get(format!("{base}/api/v1/fleet"))
            .send()
            .await?
            .bytes()
            .await?;
        api.push(started.elapsed().as_secs_f64() * 1e3);
    }
    let exe = std::env::current_exe().context("cannot find the botfleet executable")?;
    let mut status = Vec::new();
    for _ in 0..args.rounds {
        let started = Instant::now();
        let out = tokio::process::Command::new(&exe)
            .args(["status", "--url", &base])
            .output()
            .await?;
        anyhow::ensure!(
            out.status.success(),
            "botfleet status failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        status.push(started.elapsed().as_secs_f64() * 1e3);
    }
    say(format!(
        "status {:.1} ms; the CPU without dashboards ...",
        quantile(&status, 0.5)
    ));
    let idle = cpu_over(args.seconds).await;
    // Connected dashboards: each reads the stream as a browser does.
    let mut streams = Vec::new();
    for _ in 0..args.clients {
        let mut response = http.get(format!("{base}/api/v1/stream")).send().await?;
        streams.push(tokio::spawn(async move {
            while let Ok(Some(_)) = response.chunk().await {}
        }));
    }
    say(format!("the CPU with {} dashboards ...", args.clients));
    let with = cpu_over(args.seconds).await;
    for s in streams {
        s.abort();
    }
    let first_chart_ms = first_chart(&base, args.rounds).await;
    for t in traffic {
        t.stop().await;
    }
    monitor.stop().await;
    world.shutdown().await;
    world.db.close().await;
    let round = |v: f64| (v * 100.0).round() / 100.0;
    Ok(Report {
        machine: Machine::current(),
        bots: 2,
        workers_per_bot: args.workers,
        page_bytes,
        first_chart_ms: first_chart_ms.map(round),
        cpu_pct_idle: round(idle),
        cpu_pct_with_dashboards: round(with),
        clients: args.clients,
        cpu_pct_per_dashboard: round((with - idle) / f64::from(args.clients)),
        status_ms: round(quantile(&status, 0.5)),
        fleet_api_ms: round(quantile(&api, 0.5)),
    })
}

/// The median, over `rounds` loads in a headless Chromium, of the time
/// from navigation to the first chart with data; `None` when the browser
/// is not installed.
async fn first_chart(base: &str, rounds: u32) -> Option<f64> {
    let driver = tokio::task::spawn_blocking(botfleet_testkit::ChromeDriver::start)
        .await
        .ok()?
        .ok()?;
    let chromium = botfleet_testkit::chromium().ok()?;
    let http = reqwest::Client::new();
    let session: serde_json::Value = http
        .post(format!("{}/session", driver.url()))
        .json(&serde_json::json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": chromium, "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"]},
        }}}))
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    let session = format!(
        "{}/session/{}",
        driver.url(),
        session["value"]["sessionId"].as_str()?
    );
    let script = "const c = [...document.querySelectorAll('canvas')].find(c => Number(c.dataset.points) > 0); \
                  return c ? performance.now() : null;";
    let mut times = Vec::new();
    for _ in 0..rounds {
        http.post(format!("{session}/url"))
            .json(&serde_json::json!({ "url": base }))
            .send()
            .await
            .ok()?;
        for _ in 0..500 {
            let v: serde_json::Value = http
                .post(format!("{session}/execute/sync"))
                .json(&serde_json::json!({ "script": script, "args": [] }))
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            if let Some(ms) = v["value"].as_f64() {
                times.push(ms);
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    let _ = http.delete(&session).send().await;
    (!times.is_empty()).then(|| quantile(&times, 0.5))
}

fn print(out: &mut impl Write, r: &Report) -> std::io::Result<()> {
    writeln!(
        out,
        "machine: {} cores, {} MiB; 2 bots x {} workers",
        r.machine.cores, r.machine.memory_mib, r.workers_per_bot
    )?;
    writeln!(
        out,
        "dashboard page weight: {} bytes (page, script, style)",
        r.page_bytes
    )?;
    match r.first_chart_ms {
        Some(ms) => writeln!(
            out,
            "first chart with data in headless Chromium: {ms:.0} ms (median)"
        )?,
        None => writeln!(
            out,
            "first chart: not measured (chromium and chromium-driver are not installed)"
        )?,
    }
    writeln!(
        out,
        "supervisor CPU: {:.2} % of a core idle, {:.2} % with {} dashboards: {:.3} % per dashboard",
        r.cpu_pct_idle, r.cpu_pct_with_dashboards, r.clients, r.cpu_pct_per_dashboard
    )?;
    writeln!(
        out,
        "botfleet status: {:.1} ms (process start to exit, median); /api/v1/fleet {:.2} ms",
        r.status_ms, r.fleet_api_ms
    )
}
