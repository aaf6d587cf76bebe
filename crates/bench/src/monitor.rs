//! `botfleet bench monitor`: what the monitor costs. Side by side in one
//! run, botfleet-monitor's recorder against metrics-exporter-prometheus's
//! (the `metrics` facade's usual exporter, histograms as buckets) and
//! prometheus-client (the Prometheus project's Rust client):
//!
//! - `record`: nanoseconds per counter increment and per histogram
//!   observation through a handle made once (as the `metrics` macros keep
//!   it), on 1 and 2 threads updating the same series;
//! - `render`: the time and size of the exposition for 1,000 and 10,000
//!   counter series (medians of the rounds);
//! - `memory_bytes_per_series_hour`: the resident memory a stored series
//!   costs for an hour of seconds, measured as the growth of this process
//!   while a store of one-hour retention fills 5,000 series (and the same
//!   with the default day of minutes);
//! - `alert_latency_ms`: from a series crossing a rule's threshold to the
//!   alert firing (a rule without `for`, evaluated every second as
//!   `[alerts] interval = "1s"`), read from the monitor's API: the median
//!   of the rounds, each started at a random phase of the sampler;
//! - `fleet_cost`: `bench fleet` with its monitor off and on, each in its
//!   own process: the highest rate whose p99 stays under 100 ms (each
//!   searched), then the p99 of both at one rate (half the lower of the
//!   two).

use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use anyhow::Context;
use clap::Args;
use serde::Serialize;
use tokio::time::Instant;

use super::Machine;
use super::stats::quantile;

/// The flags of `botfleet bench monitor`.
#[derive(Debug, Args)]
pub struct MonitorBench {
    /// Print exactly one JSON document on stdout instead of the table.
    #[arg(long)]
    json: bool,
    /// Operations per thread in each `record` measurement.
    #[arg(long, default_value_t = 2_000_000)]
    ops: u64,
    /// Rounds of each measurement (the median is reported).
    #[arg(long, default_value_t = 5)]
    rounds: u32,
    /// Alerts fired to measure the detection latency.
    #[arg(long, default_value_t = 10)]
    alert_rounds: u32,
    /// Skip the fleet's cost (two searches and the rounds below, about
    /// ten minutes).
    #[arg(long)]
    skip_fleet: bool,
    /// Pairs of fixed-rate `bench fleet` runs (off, then on) whose p99s'
    /// medians are compared.
    #[arg(long, default_value_t = 3)]
    fleet_rounds: u32,
}

#[derive(Debug, Serialize)]
struct FleetCost {
    max_rate_on: Option<f64>,
    max_rate_off: Option<f64>,
    /// The rate both p99s were measured at.
    rate: f64,
    /// Medians of the rounds.
    p99_ms_on: f64,
    p99_ms_off: f64,
    /// Each round's, in order.
    p99_ms_on_rounds: Vec<f64>,
    p99_ms_off_rounds: Vec<f64>,
}

#[derive(Debug, Serialize)]
struct Record {
    #[serde(rename = "impl")]
    implementation: &'static str,
    threads: u32,
    counter_ns: f64,
    histogram_ns: f64,
}

#[derive(Debug, Serialize)]
struct Render {
    #[serde(rename = "impl")]
    implementation: &'static str,
    series: usize,
    ms: f64,
    bytes: usize,
}

#[derive(Debug, Serialize)]
struct Report {
    machine: Machine,
    record: Vec<Record>,
    render: Vec<Render>,
    /// Measured: a store keeping an hour (by the second) per series.
    memory_bytes_per_series_hour: f64,
    /// Measured: a store with the default retention (an hour by the
    /// second, a day by the minute) per series.
    memory_bytes_per_series_default: f64,
    /// What the store's layout says a series costs with the default
    /// retention.
    memory_bytes_per_series_computed: usize,
    /// Median, in milliseconds, beyond `for`.
    alert_latency_ms: f64,
    /// The slowest round.
    alert_latency_ms_max: f64,
    /// The rules' evaluation interval in that measurement.
    alert_interval_s: u64,
    /// `None` with `--skip-fleet`.
    fleet_cost: Option<FleetCost>,
    ops: u64,
    rounds: u32,
}

const IMPLS: [&str; 3] = [
    "botfleet",
    "metrics-exporter-prometheus",
    "prometheus-client",
];

/// Runs `botfleet bench monitor` and prints its report.
pub fn run(args: &MonitorBench) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        args.ops > 0 && args.rounds > 0,
        "--ops and --rounds must be at least 1"
    );
    let mut record = Vec::new();
    for threads in [1, 2] {
        for implementation in IMPLS {
            let mut counter = Vec::new();
            let mut histogram = Vec::new();
            for _ in 0..args.rounds {
                let (c, h) = measure_record(implementation, threads, args.ops)?;
                counter.push(c);
                histogram.push(h);
            }
            record.push(Record {
                implementation,
                threads,
                counter_ns: round(quantile(&counter, 0.5)),
                histogram_ns: round(quantile(&histogram, 0.5)),
            });
        }
    }
    let mut render = Vec::new();
    for series in [1_000, 10_000] {
        for implementation in IMPLS {
            let mut times = Vec::new();
            let mut bytes = 0;
            let renderer = Renderer::new(implementation, series)?;
            for _ in 0..args.rounds {
                let started = Instant::now();
                bytes = renderer.render().len();
                times.push(started.elapsed().as_secs_f64() * 1e3);
            }
            render.push(Render {
                implementation,
                series,
                ms: round(quantile(&times, 0.5)),
                bytes,
            });
        }
    }
    // Both stores stay alive until both are measured: memory the first
    // freed would be reused by the second and hide its cost.
    let (hour, _kept) = store_memory(60);
    let (default, _kept_too) = store_memory(botfleet_monitor::store::MINUTES);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let latencies = runtime.block_on(alert_latency(args.alert_rounds.max(1)))?;
    drop(runtime);
    let fleet_cost = if args.skip_fleet {
        None
    } else {
        Some(fleet_cost(args.fleet_rounds.max(1))?)
    };
    let report = Report {
        machine: Machine::current(),
        alert_latency_ms: round(quantile(&latencies, 0.5)),
        alert_latency_ms_max: round(quantile(&latencies, 1.0)),
        alert_interval_s: 1,
        fleet_cost,
        record,
        render,
        memory_bytes_per_series_hour: hour,
        memory_bytes_per_series_default: default,
        memory_bytes_per_series_computed: botfleet_monitor::store::BYTES_PER_SERIES,
        ops: args.ops,
        rounds: args.rounds,
    };
    super::output(args.json, &report, print)
}

/// Fires `rounds` alerts through a real monitor (rules every second) and
/// returns, per round, the milliseconds from the series crossing the
/// threshold to the API listing the alert as firing.
async fn alert_latency(rounds: u32) -> anyhow::Result<Vec<f64>> {
    use botfleet_monitor::{Alerting, Monitor, Readiness, Sources};
    let text = r#"
[[bot]]
name = "probe"
token = "110201543:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw1"
worker.command = "true"
[monitor]
bind = "127.0.0.1:0"
[alerts]
interval = "1s"
default_rules = false
[[alerts.groups]]
name = "bench"
[[alerts.groups.rules]]
alert = "Probe"
expr = "botfleet_bench_probe > 0"
"#;
    let config = botfleet_config::FleetConfig::parse(
        text,
        "bench-monitor.toml",
        &std::collections::HashMap::<String, String>::new(),
    )
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let registry = botfleet_monitor::Registry::new(1000);
    let sources = Sources {
        ready: Arc::new(|| Box::pin(async { Readiness::default() })),
        processes: Arc::new(Vec::new),
        fleet: Arc::new(|| Box::pin(async { botfleet_monitor::fleet::FleetSummary::default() })),
    };
    let mut monitor = Monitor::start(&config.monitor, registry.clone(), sources).await?;
    monitor.start_alerting(Alerting {
        engine: botfleet_monitor::alerts::Engine::new(&config.alerts.groups)
            .map_err(anyhow::Error::msg)?,
        config: config.alerts.clone(),
        telegram: None,
    });
    let url = format!("http://{}/api/v1/alerts", monitor.addr());
    let client = reqwest::Client::new();
    let mut out = Vec::new();
    for round in 0..rounds {
        // A random phase against the sampler's and the rules' seconds.
        tokio::time::sleep(std::time::Duration::from_millis(fastrand::u64(0..1000))).await;
        let label = [("round".to_owned(), round.to_string())];
        let started = Instant::now();
        registry.set_gauge("botfleet_bench_probe", &label, 1.0);
        loop {
            let body: serde_json::Value = client.get(&url).send().await?.json().await?;
            let firing = body["alerts"].as_array().is_some_and(|alerts| {
                alerts.iter().any(|a| {
                    a["labels"]["round"] == round.to_string().as_str() && a["state"] == "firing"
                })
            });
            if firing {
                break;
            }
            anyhow::ensure!(
                started.elapsed() < std::time::Duration::from_secs(30),
                "the probe alert did not fire within 30 s"
            );
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        out.push(started.elapsed().as_secs_f64() * 1e3);
        registry.set_gauge("botfleet_bench_probe", &label, 0.0);
    }
    monitor.stop().await;
    Ok(out)
}

/// One `botfleet bench fleet --json` in its own process.
fn fleet_run(monitor: &str, rate: Option<f64>) -> anyhow::Result<serde_json::Value> {
    let exe = std::env::current_exe().context("cannot find the botfleet executable")?;
    #[expect(
        clippy::disallowed_methods,
        reason = "a benchmark runs its own binary as a child and waits for its report"
    )]
    let mut cmd = std::process::Command::new(exe);
    cmd.args([
        "bench",
        "fleet",
        "--json",
        "--hol-chats",
        "0",
        "--monitor",
        monitor,
    ]);
    if let Some(rate) = rate {
        cmd.args(["--rate", &rate.to_string()]);
    }
    let _ = writeln!(
        std::io::stderr(),
        "bench monitor: bench fleet with the monitor {monitor}{} ...",
        rate.map(|r| format!(" at {r} updates/s"))
            .unwrap_or_default()
    );
    let output = cmd
        .stderr(std::process::Stdio::inherit())
        .output()
        .context("cannot run bench fleet")?;
    anyhow::ensure!(
        output.status.success(),
        "bench fleet --monitor {monitor} failed ({})",
        output.status
    );
    serde_json::from_slice(&output.stdout).context("bench fleet printed no JSON report")
}

/// The fleet's rate and p99 with its monitor off and on.
fn fleet_cost(rounds: u32) -> anyhow::Result<FleetCost> {
    let off = fleet_run("off", None)?;
    let on = fleet_run("on", None)?;
    let max = |r: &serde_json::Value| r["max_rate_p99_under_100ms"].as_f64();
    let (max_off, max_on) = (max(&off), max(&on));
    let rate = (max_off.unwrap_or(100.0).min(max_on.unwrap_or(100.0)) / 2.0)
        .round()
        .max(1.0);
    let p99 = |r: serde_json::Value| r["p99_ms"].as_f64().unwrap_or(f64::NAN);
    let (mut p99_off, mut p99_on) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        p99_off.push(p99(fleet_run("off", Some(rate))?));
        p99_on.push(p99(fleet_run("on", Some(rate))?));
    }
    Ok(FleetCost {
        max_rate_on: max_on,
        max_rate_off: max_off,
        rate,
        p99_ms_on: round(quantile(&p99_on, 0.5)),
        p99_ms_off: round(quantile(&p99_off, 0.5)),
        p99_ms_on_rounds: p99_on,
        p99_ms_off_rounds: p99_off,
    })
}

fn round(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

/// One thread's work, `ops` times.
type Work = Arc<dyn Fn(u64) + Send + Sync>;

/// Counter and histogram nanoseconds per operation for `implementation`
/// on `threads` threads.
fn measure_record(implementation: &str, threads: u32, ops: u64) -> anyhow::Result<(f64, f64)> {
    let (counter, histogram): (Work, Work) = match implementation {
        "botfleet" => {
            let registry = botfleet_monitor::Registry::new(100);
            facade_handles(&registry)
        }
        "metrics-exporter-prometheus" => {
            let recorder = metrics_exporter_prometheus::PrometheusBuilder::new()
                .set_buckets(botfleet_monitor::registry::SECONDS_BUCKETS)
                .context("the exporter's buckets")?
                .build_recorder();
            facade_handles(&recorder)
        }
        _ => {
            let counter: prometheus_client::metrics::counter::Counter<u64, AtomicU64> =
                prometheus_client::metrics::counter::Counter::default();
            let histogram = prometheus_client::metrics::histogram::Histogram::new(
                botfleet_monitor::registry::SECONDS_BUCKETS.iter().copied(),
            );
            (
                Arc::new(move |n| {
                    for _ in 0..n {
                        counter.inc();
                    }
                }),
                Arc::new(move |n| {
                    for i in 0..n {
                        histogram.observe((i % 100) as f64 * 0.001);
                    }
                }),
            )
        }
    };
    Ok((
        timed(&counter, threads, ops),
        timed(&histogram, threads, ops),
    ))
}

/// A counter's and a histogram's handles from `recorder`, made once.
fn facade_handles(recorder: &dyn metrics::Recorder) -> (Work, Work) {
    let (counter, histogram) = metrics::with_local_recorder(recorder, || {
        (
            metrics::counter!("bench_ops_total", "bot" => "bench"),
            metrics::histogram!("bench_wait_seconds", "bot" => "bench"),
        )
    });
    (
        Arc::new(move |n| {
            for _ in 0..n {
                counter.increment(1);
            }
        }),
        Arc::new(move |n| {
            for i in 0..n {
                histogram.record((i % 100) as f64 * 0.001);
            }
        }),
    )
}

/// Nanoseconds per operation of `work` run `ops` times on each of
/// `threads` threads at once.
fn timed(work: &Work, threads: u32, ops: u64) -> f64 {
    let started = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..threads {
            let work = work.clone();
            s.spawn(move || work(std::hint::black_box(ops)));
        }
    });
    started.elapsed().as_nanos() as f64 / ops as f64
}

/// An implementation holding `series` counters, ready to render.
enum Renderer {
    Botfleet(botfleet_monitor::Registry),
    Exporter(metrics_exporter_prometheus::PrometheusHandle),
    Client(prometheus_client::registry::Registry),
}

impl Renderer {
    fn new(implementation: &str, series: usize) -> anyhow::Result<Renderer> {
        Ok(match implementation {
            "botfleet" => {
                let registry = botfleet_monitor::Registry::new(series + 10);
                fill(&registry, series);
                Renderer::Botfleet(registry)
            }
            "metrics-exporter-prometheus" => {
                let recorder =
                    metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
                fill(&recorder, series);
                Renderer::Exporter(recorder.handle())
            }
            _ => {
                use prometheus_client::metrics::counter::Counter;
                use prometheus_client::metrics::family::Family;
                let mut registry = prometheus_client::registry::Registry::default();
                let family: Family<Vec<(String, String)>, Counter> = Family::default();
                registry.register("bench_ops", "operations", family.clone());
                for i in 0..series {
                    family
                        .get_or_create(&vec![
                            ("bot".to_owned(), "bench".to_owned()),
                            ("shard".to_owned(), i.to_string()),
                        ])
                        .inc_by(i as u64);
                }
                Renderer::Client(registry)
            }
        })
    }

    fn render(&self) -> String {
        match self {
            Renderer::Botfleet(r) => r.render(botfleet_monitor::Format::Prometheus, |_| true),
            Renderer::Exporter(h) => h.render(),
            Renderer::Client(r) => {
                let mut out = String::new();
                let _ = prometheus_client::encoding::text::encode(&mut out, r);
                out
            }
        }
    }
}

/// `series` counters `bench_ops_total{bot, shard}` through the facade.
fn fill(recorder: &dyn metrics::Recorder, series: usize) {
    metrics::with_local_recorder(recorder, || {
        for i in 0..series {
            metrics::counter!("bench_ops_total", "bot" => "bench", "shard" => i.to_string())
                .increment(i as u64);
        }
    });
}

/// The resident memory this process grows by per series while a store
/// keeping `minutes` minutes fills 5,000 series, and the store.
fn store_memory(minutes: usize) -> (f64, botfleet_monitor::store::Store) {
    const SERIES: usize = 5_000;
    let registry = botfleet_monitor::Registry::new(SERIES + 10);
    fill(&registry, SERIES);
    let snapshot = registry.snapshot();
    let before = rss();
    let store = botfleet_monitor::store::Store::with_retention(SERIES + 10, minutes);
    // Two samples a minute apart: every ring allocated and written.
    store.record(1_796_645_040, &snapshot);
    store.record(1_796_645_100, &snapshot);
    let grown = rss().saturating_sub(before);
    (round(grown as f64 / SERIES as f64), store)
}

/// This process's resident memory, bytes.
fn rss() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4096)
}

fn print(out: &mut impl Write, r: &Report) -> std::io::Result<()> {
    writeln!(
        out,
        "machine: {} cores, {} MiB; medians of {} rounds",
        r.machine.cores, r.machine.memory_mib, r.rounds
    )?;
    writeln!(
        out,
        "\nrecording through a handle ({} ops per thread):",
        r.ops
    )?;
    writeln!(
        out,
        "{:<30} {:>7} {:>12} {:>14}",
        "impl", "threads", "counter ns", "histogram ns"
    )?;
    for x in &r.record {
        writeln!(
            out,
            "{:<30} {:>7} {:>12.2} {:>14.2}",
            x.implementation, x.threads, x.counter_ns, x.histogram_ns
        )?;
    }
    writeln!(out, "\nrendering the exposition:")?;
    writeln!(
        out,
        "{:<30} {:>7} {:>10} {:>10}",
        "impl", "series", "ms", "bytes"
    )?;
    for x in &r.render {
        writeln!(
            out,
            "{:<30} {:>7} {:>10.2} {:>10}",
            x.implementation, x.series, x.ms, x.bytes
        )?;
    }
    writeln!(
        out,
        "\nstore memory per series: {:.0} bytes for an hour by the second; {:.0} bytes with a day of minutes too (computed {})",
        r.memory_bytes_per_series_hour,
        r.memory_bytes_per_series_default,
        r.memory_bytes_per_series_computed
    )?;
    writeln!(
        out,
        "alert detection latency (rules every {} s): median {:.0} ms, slowest {:.0} ms",
        r.alert_interval_s, r.alert_latency_ms, r.alert_latency_ms_max
    )?;
    if let Some(c) = &r.fleet_cost {
        let show = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.0}"));
        writeln!(out, "\nthe monitor's cost on bench fleet:")?;
        writeln!(
            out,
            "{:<10} {:>22} {:>16}",
            "monitor",
            "max rate (p99<100ms)",
            format!("p99 at {:.0}/s", c.rate)
        )?;
        writeln!(
            out,
            "{:<10} {:>22} {:>16.2}",
            "off",
            show(c.max_rate_off),
            c.p99_ms_off
        )?;
        writeln!(
            out,
            "{:<10} {:>22} {:>16.2}",
            "on",
            show(c.max_rate_on),
            c.p99_ms_on
        )?;
    }
    Ok(())
}
