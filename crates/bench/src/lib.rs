//! `botfleet bench <area>`: every performance promise as a command that
//! prints a table (progress on stderr) or exactly one JSON document
//! (`--json`). The contract is in docs/benchmarks.md; the report types of
//! each module are its JSON keys (../shared/BENCHMARKS.md).
//!
//! This crate is *not* part of the production binary: `botfleet` links it
//! behind its `bench` feature (on by default), and `cargo build -p botfleet
//! --no-default-features` leaves it, the peers it compares with (moka,
//! quick_cache, the supervisors) and `botfleet-testkit` out. Like the
//! binary, it is an application crate: it uses `anyhow`, and it is the one
//! crate with `botfleet-testkit` as a normal dependency (benchmarks start
//! their own servers). No library crate may depend on it.
//!
//! It also holds the world the demo shares with `bench fleet` ([`world`]),
//! and the hidden worker roles of the benchmarks (`botfleet bench ipc
//! --worker`, ...): the benchmarks re-execute the botfleet binary in them.

pub mod analyze;
pub mod cache;
pub mod chaos;
pub mod compare;
pub mod dashboard;
pub mod db;
pub mod faults;
pub mod fleet;
mod harness;
pub mod ipc;
pub mod journal;
mod machine;
pub mod monitor;
mod peers;
pub mod scaling;
pub mod stats;
pub mod supervisor;
pub mod telegram;
pub mod world;

use machine::Machine;

/// `botfleet bench <area>`: the benchmarks, each a subcommand.
#[derive(Debug, clap::Subcommand)]
pub enum BenchCommand {
    /// The tiered cache: hit ratio on real traces (against moka,
    /// quick_cache, LRU and OPT), L1/L2 speed, stampede, cold start,
    /// invalidation delay.
    Cache(cache::CacheBench),
    /// The database layer: acquire + SELECT 1 against a raw connection and
    /// sqlx's default pool, batched inserts, instrumentation overhead, the
    /// fleet budget under load.
    Db(db::DbBench),
    /// The Telegram sender against the emulator with Telegram's limits:
    /// workloads W1-W7 (efficiency, 429s, delivery, order, latency).
    Telegram(telegram::TelegramBench),
    /// The supervisor-worker IPC: updates to a real worker process and
    /// their acks, batched and one per frame; the round trip.
    Ipc(ipc::IpcBench),
    /// `botfleet run` under traffic while every fault comes (worker kills,
    /// poison and stuck updates, PostgreSQL and Redis killed, the
    /// supervisor killed): lost, duplicated and reordered updates, dead
    /// letters, latency.
    Chaos(chaos::ChaosBench),
    /// The autoscaler on a step from 100 to 2,000 updates/s and back, with
    /// a 5 ms PostgreSQL handler: workers, settle time, p99, connections
    /// against the budget.
    Scaling(scaling::ScalingBench),
    /// botfleet's supervisor side by side with supervisord, s6, runit,
    /// daemontools and PM2 (when installed): start N, kill -9 to
    /// replacement, memory, graceful stop.
    Supervisor(supervisor::SupervisorBench),
    /// The end-to-end load test: the two reference bots under the fleet
    /// against synthetic users at an open-loop rate; the highest rate with
    /// p99 under 100 ms, p50/p99 at half of it, where the time goes.
    Fleet(fleet::FleetBench),
    /// Where the ingest journal lives: its append-only file against a
    /// SQLite and a PostgreSQL table doing the same durable appends and
    /// acks.
    Journal(journal::JournalBench),
    /// The monitor's costs: recording and rendering beside
    /// metrics-exporter-prometheus and prometheus-client, memory per
    /// stored series.
    Monitor(monitor::MonitorBench),
    /// The operator's surfaces on the demo's fleet: the dashboard's page
    /// weight and time to first chart in headless Chromium, the supervisor's
    /// CPU per connected dashboard, `botfleet status`'s answer time.
    Dashboard(dashboard::DashboardBench),
    /// `botfleet compare`'s error rates on a noise model: false alarms on
    /// A/A and the detection of a 5 % change, by runs per side.
    Compare(compare::CompareBench),
    /// `botfleet analyze`'s accuracy (the demo with each fault knob: is
    /// the injected kind named first?) and its time on a store of 10,000
    /// series.
    Analyze(analyze::AnalyzeBench),
}

impl BenchCommand {
    /// Runs the benchmark (or its hidden worker role) and returns the exit
    /// code.
    pub fn run(&self) -> anyhow::Result<std::process::ExitCode> {
        match self {
            BenchCommand::Cache(args) => cache::run(args),
            BenchCommand::Db(args) => db::run(args),
            BenchCommand::Telegram(args) => telegram::run(args),
            BenchCommand::Ipc(args) => ipc::run(args),
            BenchCommand::Chaos(args) => chaos::run(args),
            BenchCommand::Scaling(args) => scaling::run(args),
            BenchCommand::Supervisor(args) => supervisor::run(args),
            BenchCommand::Fleet(args) => fleet::run(args),
            BenchCommand::Journal(args) => journal::run(args),
            BenchCommand::Monitor(args) => monitor::run(args),
            BenchCommand::Dashboard(args) => dashboard::run(args),
            BenchCommand::Compare(args) => compare::run(args),
            BenchCommand::Analyze(args) => analyze::run(args),
        }
    }
}

/// Writes `report` as one JSON document (`json`) or with `print`, to a
/// locked stdout.
pub(crate) fn output<R: serde::Serialize>(
    json: bool,
    report: &R,
    print: impl FnOnce(&mut std::io::StdoutLock<'static>, &R) -> std::io::Result<()>,
) -> anyhow::Result<std::process::ExitCode> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    if json {
        serde_json::to_writer_pretty(&mut out, report)?;
        writeln!(out)?;
    } else {
        print(&mut out, report)?;
    }
    Ok(std::process::ExitCode::SUCCESS)
}
