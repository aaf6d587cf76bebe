//! `botfleet emulator`: the Bot API emulator as a server of its own.

use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;

use anyhow::{Context, bail};
use botfleet_emulator::{Emulator, EmulatorConfig, Limits};
use clap::Args;

/// The variable that lists bots to register.
const BOTS_VAR: &str = "BOTFLEET_EMULATOR_BOTS";

#[derive(Debug, Args)]
pub(crate) struct EmulatorArgs {
    /// Where to listen. Anything but loopback is refused: the emulator has
    /// no authentication of its control plane.
    #[arg(long, default_value = "127.0.0.1:8081")]
    bind: SocketAddr,
    /// Register a bot: `TOKEN` or `TOKEN=username` (repeatable). Tokens on
    /// the command line show in `ps`: prefer --bots-file or
    /// BOTFLEET_EMULATOR_BOTS. More can be added with `POST /control/bots`.
    #[arg(long = "bot", value_name = "TOKEN[=USERNAME]")]
    bots: Vec<String>,
    /// Register the bots of FILE: one `TOKEN` or `TOKEN=username` per line;
    /// blank lines and lines starting with `#` are skipped.
    #[arg(long, value_name = "FILE")]
    bots_file: Option<std::path::PathBuf>,
    /// Register these bots too: `TOKEN[=USERNAME]`, separated by commas or
    /// whitespace.
    #[arg(long, env = BOTS_VAR, value_name = "TOKEN[=USERNAME],...", hide_env_values = true)]
    bots_env: Option<String>,
    /// Create chats on first use instead of answering "chat not found".
    #[arg(long)]
    lenient_chats: bool,
    /// Enforce no send limits (throughput runs).
    #[arg(long)]
    no_limits: bool,
}

/// Every bot to register, with where it came from (for errors, which
/// never quote the token).
fn bot_specs(args: &EmulatorArgs) -> anyhow::Result<Vec<(String, String)>> {
    let mut specs: Vec<(String, String)> = args
        .bots
        .iter()
        .map(|s| ("--bot".to_owned(), s.clone()))
        .collect();
    if let Some(path) = &args.bots_file {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read --bots-file {}", path.display()))?;
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if !line.is_empty() && !line.starts_with('#') {
                specs.push((format!("{}:{}", path.display(), n + 1), line.to_owned()));
            }
        }
    }
    if let Some(list) = &args.bots_env {
        for (n, spec) in list
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|s| !s.is_empty())
            .enumerate()
        {
            specs.push((format!("{BOTS_VAR} (entry {})", n + 1), spec.to_owned()));
        }
    }
    Ok(specs)
}

pub(crate) fn run(args: &EmulatorArgs) -> anyhow::Result<ExitCode> {
    if !args.bind.ip().is_loopback() {
        bail!(
            "the emulator binds to loopback only (its control plane has no authentication); got {}",
            args.bind
        );
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let mut config = EmulatorConfig::default().bind(args.bind);
        if args.no_limits {
            config = config.limits(Limits::unlimited());
        }
        if args.lenient_chats {
            config = config.lenient_chats();
        }
        let emulator = Emulator::start(config)
            .await
            .with_context(|| format!("cannot listen on {}", args.bind))?;
        for (origin, spec) in bot_specs(args)? {
            let (token, username) = spec.split_once('=').unwrap_or((&spec, "botfleet_test_bot"));
            if emulator.add_bot(token, username).is_none() {
                bail!("{origin}: malformed token (expected <bot id>:<secret>)");
            }
        }
        let mut out = std::io::stdout().lock();
        writeln!(
            out,
            "Bot API emulator on {} (Ctrl-C stops it)",
            emulator.base_url()
        )?;
        writeln!(
            out,
            "  Bot API:       {}/bot<TOKEN>/<method>",
            emulator.base_url()
        )?;
        writeln!(
            out,
            "  control plane: {}/control/ (bots, users, groups, updates, faults, log, stats)",
            emulator.base_url()
        )?;
        drop(out);
        tokio::signal::ctrl_c()
            .await
            .context("cannot wait for Ctrl-C")?;
        Ok::<_, anyhow::Error>(())
    })?;
    Ok(ExitCode::SUCCESS)
}
