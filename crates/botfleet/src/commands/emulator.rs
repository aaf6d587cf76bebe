//! `botfleet emulator`: the Bot API emulator as a server of its own.

use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;

use anyhow::{Context, bail};
use botfleet_emulator::{Emulator, EmulatorConfig, Limits};
use clap::Args;

#[derive(Debug, Args)]
pub(crate) struct EmulatorArgs {
    /// Where to listen. Anything but loopback is refused: the emulator has
    /// no authentication of its control plane.
    #[arg(long, default_value = "127.0.0.1:8081")]
    bind: SocketAddr,
    /// Register a bot: `TOKEN` or `TOKEN=username` (repeatable). More can
    /// be added with `POST /control/bots`.
    #[arg(long = "bot", value_name = "TOKEN[=USERNAME]")]
    bots: Vec<String>,
    /// Create chats on first use instead of answering "chat not found".
    #[arg(long)]
    lenient_chats: bool,
    /// Enforce no send limits (throughput runs).
    #[arg(long)]
    no_limits: bool,
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
        for spec in &args.bots {
            let (token, username) = spec.split_once('=').unwrap_or((spec, "botfleet_test_bot"));
            if emulator.add_bot(token, username).is_none() {
                bail!("--bot: malformed token (expected <bot id>:<secret>)");
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
