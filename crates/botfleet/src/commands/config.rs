//! `botfleet config check` and `botfleet config show`.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;
use botfleet_config::{ConfigError, FleetConfig};

use crate::cli::{ConfigCommand, ConfigFile};
use crate::exit;

pub(crate) fn run(command: &ConfigCommand) -> anyhow::Result<ExitCode> {
    match command {
        ConfigCommand::Check(file) => check(file),
        ConfigCommand::Show(file) => show(file),
    }
}

fn check(args: &ConfigFile) -> anyhow::Result<ExitCode> {
    let Some(config) = load(args)? else {
        return Ok(ExitCode::from(exit::USAGE));
    };
    let mut err = std::io::stderr().lock();
    for warning in warnings(&config) {
        writeln!(err, "{}: warning: {warning}", args.file.display())?;
    }
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}: ok: {}", args.file.display(), config.summary())?;
    Ok(ExitCode::from(exit::OK))
}

/// What is valid but will not work: a worker command that is not found
/// (in the bot's `PATH`, or botfleet's).
pub(crate) fn warnings(config: &FleetConfig) -> Vec<String> {
    config
        .bots
        .iter()
        .filter_map(|bot| {
            worker_program(bot).err().map(|e| {
                format!(
                    "bot `{}`: worker command {e}; its workers cannot start",
                    bot.name
                )
            })
        })
        .collect()
}

/// Where `bot`'s worker command is (in the bot's `PATH`, or botfleet's),
/// or why it is not found.
pub(crate) fn worker_program(
    bot: &botfleet_config::BotConfig,
) -> Result<std::path::PathBuf, String> {
    let path = bot
        .worker
        .env
        .iter()
        .find(|(name, _)| name == "PATH")
        .map(|(_, v)| std::ffi::OsString::from(v.value()))
        .or_else(|| std::env::var_os("PATH"));
    botfleet_runtime::find_program(&bot.worker.command, path.as_deref())
}

fn show(args: &ConfigFile) -> anyhow::Result<ExitCode> {
    let Some(config) = load(args)? else {
        return Ok(ExitCode::from(exit::USAGE));
    };
    let mut out = std::io::stdout().lock();
    out.write_all(config.to_redacted_toml().as_bytes())?;
    out.flush()?;
    Ok(ExitCode::from(exit::OK))
}

/// Loads the file; an invalid one has its problems printed to stderr and
/// gives `None`. A file that cannot be read is an error.
pub(crate) fn load(args: &ConfigFile) -> anyhow::Result<Option<FleetConfig>> {
    let path = &args.file;
    match botfleet_config::load(path) {
        Ok(config) => {
            tracing::debug!(
                file = %path.display(),
                environment = %config.environment,
                bots = config.bots.len(),
                "Loaded the fleet configuration."
            );
            Ok(Some(config))
        }
        Err(ConfigError::Invalid(diagnostics)) => {
            let mut err = std::io::stderr().lock();
            for diagnostic in &diagnostics {
                writeln!(err, "{diagnostic}")?;
            }
            let n = diagnostics.len();
            let problems = if n == 1 { "problem" } else { "problems" };
            writeln!(err, "error: {} has {n} {problems}", path.display())?;
            Ok(None)
        }
        Err(error) => Err(error).with_context(|| {
            format!(
                "cannot load the fleet configuration (give its path, or set {})",
                crate::cli::BOTFLEET_CONFIG
            )
        }),
    }
}
