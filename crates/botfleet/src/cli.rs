//! Command-line flags, parsed into typed arguments, and the dispatch to
//! `commands`.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::{commands, exit, logging};

/// The configuration file, when `FILE` is not given.
pub(crate) const BOTFLEET_CONFIG: &str = "BOTFLEET_CONFIG";

/// Run a fleet of Telegram bots in production.
///
/// botfleet runs each bot's workers under one supervisor with a tiered cache,
/// a fleet-wide database connection budget and a Telegram sender that uses the
/// full allowance without being throttled.
#[derive(Debug, Parser)]
#[command(name = "botfleet", version, propagate_version = true)]
struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Args)]
struct GlobalArgs {
    /// More log output: -v info, -vv debug, -vvv trace (default: warnings).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    /// Less log output: -q errors only, -qq nothing.
    #[arg(short, long, action = clap::ArgAction::Count, global = true, conflicts_with = "verbose")]
    quiet: u8,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// The two reference bots (dating, analytics) under the supervisor,
    /// against the Bot API emulator and a few thousand synthetic users, on
    /// the embedded SQLite: a live view every second, a summary at the end.
    /// No configuration, no token, no server needed.
    Demo(commands::demo::DemoArgs),
    /// Be one of the demo's worker processes (started by `botfleet demo`).
    #[command(hide = true)]
    DemoWorker(commands::demo::DemoWorkerArgs),
    /// Run the fleet: each bot's workers as processes, updates routed to
    /// them by chat, sends through one limiter per token, restarts; Ctrl-C
    /// or SIGTERM stops it without losing an update.
    Run(commands::run::RunArgs),
    /// Check or print a fleet configuration (fleet.toml).
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Measure what botfleet promises, side by side with its peers: a
    /// table, or one JSON document with --json.
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Run the Telegram Bot API emulator (limits enforced, control plane
    /// for tests and benchmarks) until Ctrl-C.
    Emulator(commands::emulator::EmulatorArgs),
    /// Database tools: the index advisor.
    #[command(subcommand)]
    Db(commands::db::DbCommand),
    /// Plan the fleet's database connections: read the server's limits and
    /// print each bot's workers x pool size, within the budget, and the
    /// preset's pool settings.
    Tune(commands::tune::TuneArgs),
}

#[derive(Debug, Subcommand)]
pub(crate) enum BenchCommand {
    /// The tiered cache: hit ratio on real traces (against moka,
    /// quick_cache, LRU and OPT), L1/L2 speed, stampede, cold start,
    /// invalidation delay.
    Cache(commands::bench::cache::CacheBench),
    /// The database layer: acquire + SELECT 1 against a raw connection and
    /// sqlx's default pool, batched inserts, instrumentation overhead, the
    /// fleet budget under load.
    Db(commands::bench::db::DbBench),
    /// The Telegram sender against the emulator with Telegram's limits:
    /// workloads W1-W7 (efficiency, 429s, delivery, order, latency).
    Telegram(commands::bench::telegram::TelegramBench),
    /// The supervisor-worker IPC: updates to a real worker process and
    /// their acks, batched and one per frame; the round trip.
    Ipc(commands::bench::ipc::IpcBench),
    /// The runtime under traffic while a random worker is killed every
    /// half second: lost, duplicated and reordered updates, latency.
    Chaos(commands::bench::chaos::ChaosBench),
    /// The autoscaler on a step from 100 to 2,000 updates/s and back, with
    /// a 5 ms PostgreSQL handler: workers, settle time, p99, connections
    /// against the budget.
    Scaling(commands::bench::scaling::ScalingBench),
    /// botfleet's supervisor side by side with supervisord, s6, runit,
    /// daemontools and PM2 (when installed): start N, kill -9 to
    /// replacement, memory, graceful stop.
    Supervisor(commands::bench::supervisor::SupervisorBench),
    /// The end-to-end load test: the two reference bots under the fleet
    /// against synthetic users at an open-loop rate; the highest rate with
    /// p99 under 100 ms, p50/p99 at half of it, where the time goes.
    Fleet(commands::bench::fleet::FleetBench),
}

#[derive(Debug, Subcommand)]
pub(crate) enum ConfigCommand {
    /// Validate a fleet.toml: exit 0 with a summary, or 64 with every problem
    /// as FILE:LINE:COL.
    Check(ConfigFile),
    /// Print the resolved configuration: presets applied, ${VAR} resolved,
    /// secrets shown as ***.
    Show(ConfigFile),
}

#[derive(Debug, Args)]
pub(crate) struct ConfigFile {
    /// The fleet configuration file.
    #[arg(value_name = "FILE", env = BOTFLEET_CONFIG, default_value = botfleet_config::DEFAULT_CONFIG_FILE)]
    pub(crate) file: PathBuf,
}

/// Parses the command line, runs the command and turns the outcome into an
/// exit code. Errors are printed once, as `error: ...` with their causes.
pub(crate) fn run() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            let code = if error.use_stderr() {
                exit::USAGE
            } else {
                exit::OK
            };
            // Help and version go to stdout, usage errors to stderr.
            let _ = error.print();
            return ExitCode::from(code);
        }
    };
    if let Some(warning) = logging::init(cli.global.verbose, cli.global.quiet) {
        tracing::warn!("{warning}.");
    }
    let result = match cli.command {
        Command::Config(command) => commands::config::run(&command),
        Command::Run(args) => commands::run::run(&args),
        Command::Demo(args) => commands::demo::run(&args),
        Command::DemoWorker(args) => commands::demo::worker(&args),
        Command::Bench(BenchCommand::Cache(args)) => commands::bench::cache::run(&args),
        Command::Bench(BenchCommand::Db(args)) => commands::bench::db::run(&args),
        Command::Bench(BenchCommand::Telegram(args)) => commands::bench::telegram::run(&args),
        Command::Bench(BenchCommand::Ipc(args)) => commands::bench::ipc::run(&args),
        Command::Bench(BenchCommand::Chaos(args)) => commands::bench::chaos::run(&args),
        Command::Bench(BenchCommand::Scaling(args)) => commands::bench::scaling::run(&args),
        Command::Bench(BenchCommand::Supervisor(args)) => commands::bench::supervisor::run(&args),
        Command::Bench(BenchCommand::Fleet(args)) => commands::bench::fleet::run(&args),
        Command::Tune(args) => commands::tune::run(&args),
        Command::Db(command) => commands::db::run(&command),
        Command::Emulator(args) => commands::emulator::run(&args),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            if !exit::is_broken_pipe(&error) {
                let _ = writeln!(std::io::stderr().lock(), "error: {error:#}");
            }
            exit::code_for(&error)
        }
    }
}
