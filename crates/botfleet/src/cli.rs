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
    #[cfg(feature = "bench")]
    Demo(commands::demo::DemoArgs),
    /// Be one of the demo's worker processes (started by `botfleet demo`).
    #[cfg(feature = "bench")]
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
    #[cfg(feature = "bench")]
    #[command(subcommand)]
    Bench(botfleet_bench::BenchCommand),
    /// Run the Telegram Bot API emulator (limits enforced, control plane
    /// for tests and benchmarks) until Ctrl-C.
    Emulator(commands::emulator::EmulatorArgs),
    /// The updates a fleet set aside (dead letters): list, show, replay,
    /// drop.
    DeadLetters(commands::dead_letters::DeadLettersArgs),
    /// A running fleet's bots and workers: pid, state, uptime, restarts,
    /// CPU, memory, updates/s, p99, queue, 429s, failed/dead-lettered.
    Status {
        /// One JSON document instead of the table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        remote: commands::remote::Remote,
    },
    /// A running fleet's bottlenecks, the worst first, each with its
    /// evidence and its fix; where each bot's update time goes; the host's
    /// saturation and the dependencies (docs/analyze.md). Exit 1 when
    /// something binds.
    Analyze {
        /// The window looked at, ending now.
        #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = botfleet_config::duration::positive_arg)]
        window: std::time::Duration,
        /// One JSON document (BENCHMARKS.md's shape) instead of the text.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        remote: commands::remote::Remote,
    },
    /// A running fleet's status redrawn every second, with its alerts.
    Top {
        #[command(flatten)]
        top: commands::remote::TopArgs,
        #[command(flatten)]
        remote: commands::remote::Remote,
    },
    /// The recent output of a running fleet's workers (1,000 lines per
    /// worker kept by the supervisor), or with --follow as it comes.
    Logs {
        #[command(flatten)]
        logs: commands::remote::LogsArgs,
        #[command(flatten)]
        remote: commands::remote::Remote,
    },
    /// Make a running fleet read its fleet file again and apply it (as
    /// SIGHUP does).
    Reload {
        #[command(flatten)]
        remote: commands::remote::Remote,
    },
    /// Restart a bot of a running fleet: its workers one at a time, each
    /// drained first; nothing is lost.
    Restart {
        /// The bot.
        bot: String,
        #[command(flatten)]
        remote: commands::remote::Remote,
    },
    /// Stop a bot of a running fleet (drained; nothing is lost).
    Stop {
        /// The bot.
        bot: String,
        #[command(flatten)]
        remote: commands::remote::Remote,
    },
    /// Start a bot `botfleet stop` stopped.
    Start {
        /// The bot.
        bot: String,
        #[command(flatten)]
        remote: commands::remote::Remote,
    },
    /// Alert rules: check them, run their unit tests, export them for
    /// Prometheus.
    #[command(subcommand)]
    Rules(commands::rules::RulesCommand),
    /// Database tools: the index advisor.
    #[command(subcommand)]
    Db(commands::db::DbCommand),
    /// Plan the fleet's database connections: read the server's limits and
    /// print each bot's workers x pool size, within the budget, and the
    /// preset's pool settings.
    Tune(commands::tune::TuneArgs),
    /// Is a change real or noise? Benchmark JSON documents (BASE NEW...),
    /// or two commands run interleaved (--runs N -- CMD_A -- CMD_B),
    /// compared figure by figure: medians, change with its 95 % interval,
    /// Mann-Whitney p, verdict. Exit 1 when a figure is worse.
    Compare(commands::compare::CompareArgs),
    /// Is this machine ready to run the fleet file in production? Checks
    /// the file, each token (getMe, its webhook against its mode),
    /// PostgreSQL (version, max_connections against the budget,
    /// pg_stat_statements), Redis (version, eviction), the worker programs
    /// (with --start-workers, their hello), the directories, the
    /// descriptor limit, the disk and the monitor's address; one line
    /// each with the fix. Exit 0 only when all pass.
    Doctor(commands::doctor::DoctorArgs),
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

/// What to say when a lean build (without the `bench` feature) is asked for
/// a command only the full build has.
fn lean_build_hint(args: impl Iterator<Item = String>) -> Option<String> {
    let command = args.into_iter().find(|a| !a.starts_with('-'))?;
    ["demo", "demo-worker", "bench"]
        .contains(&command.as_str())
        .then(|| {
            format!(
                "`botfleet {command}` is not in this build: it was built without the `bench` feature (the lean production binary); build botfleet with its default features for `demo` and `bench`"
            )
        })
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
            if !cfg!(feature = "bench") {
                if let Some(hint) = lean_build_hint(std::env::args().skip(1)) {
                    let _ = writeln!(std::io::stderr().lock(), "error: {hint}");
                    return ExitCode::from(exit::USAGE);
                }
            }
            // Help and version go to stdout, usage errors to stderr.
            let _ = error.print();
            return ExitCode::from(code);
        }
    };
    if let Some(warning) = logging::init(cli.global.verbose, cli.global.quiet) {
        tracing::warn!("{warning}.");
    }
    // The monitor's recorder, before anything records: components cache
    // their metric handles (the database at connect).
    #[cfg(feature = "bench")]
    let monitored = matches!(cli.command, Command::Run(_) | Command::Demo(_));
    #[cfg(not(feature = "bench"))]
    let monitored = matches!(cli.command, Command::Run(_));
    if monitored {
        botfleet_monitor::install(botfleet_monitor::registry::DEFAULT_SERIES_CAP);
    }
    let result = match cli.command {
        Command::Config(command) => commands::config::run(&command),
        Command::Run(args) => commands::run::run(&args),
        #[cfg(feature = "bench")]
        Command::Demo(args) => commands::demo::run(&args),
        #[cfg(feature = "bench")]
        Command::DemoWorker(args) => commands::demo::worker(&args),
        #[cfg(feature = "bench")]
        Command::Bench(command) => command.run(),
        Command::Tune(args) => commands::tune::run(&args),
        Command::Compare(args) => commands::compare::run(&args),
        Command::Doctor(args) => commands::doctor::run(&args),
        Command::Db(command) => commands::db::run(&command),
        Command::DeadLetters(args) => commands::dead_letters::run(&args),
        Command::Rules(command) => commands::rules::run(&command),
        Command::Status { json, remote } => {
            commands::remote::run(&commands::remote::Ask::Status { json }, &remote)
        }
        Command::Analyze {
            window,
            json,
            remote,
        } => commands::remote::run(&commands::remote::Ask::Analyze { window, json }, &remote),
        Command::Top { top, remote } => {
            commands::remote::run(&commands::remote::Ask::Top(top), &remote)
        }
        Command::Logs { logs, remote } => {
            commands::remote::run(&commands::remote::Ask::Logs(logs), &remote)
        }
        Command::Reload { remote } => {
            commands::remote::run(&commands::remote::Ask::Reload, &remote)
        }
        Command::Restart { bot, remote } => {
            commands::remote::run(&commands::remote::Ask::Restart(bot), &remote)
        }
        Command::Stop { bot, remote } => {
            commands::remote::run(&commands::remote::Ask::Stop(bot), &remote)
        }
        Command::Start { bot, remote } => {
            commands::remote::run(&commands::remote::Ask::Start(bot), &remote)
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lean_build_says_which_feature_a_command_needs() {
        let hint = |args: &[&str]| lean_build_hint(args.iter().map(|a| (*a).to_owned()));
        let message = hint(&["-q", "demo", "--duration", "5s"]).unwrap();
        assert!(message.contains("`botfleet demo`"), "{message}");
        assert!(message.contains("`bench` feature"), "{message}");
        assert!(hint(&["bench", "ipc"]).is_some());
        assert_eq!(hint(&["run", "fleet.toml"]), None);
        assert_eq!(hint(&["--help"]), None);
    }
}
