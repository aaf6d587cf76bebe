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
//!   with the default day of minutes).

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
    let report = Report {
        machine: Machine::current(),
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
    )
}
