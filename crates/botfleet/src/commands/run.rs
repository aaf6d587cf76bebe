//! `botfleet run`: the fleet's supervisor in the foreground.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use botfleet_runtime::{Fleet, RunOptions};
use clap::Args;
use tokio::signal::unix::SignalKind;

use crate::cli::ConfigFile;
use crate::exit;

#[derive(Debug, Args)]
pub(crate) struct RunArgs {
    #[command(flatten)]
    config: ConfigFile,
    /// Where the embedded SQLite database lives when the file gives no
    /// `database.url` (environment "dev").
    #[arg(long, value_name = "DIR", default_value = "botfleet-data")]
    data_dir: PathBuf,
    /// Where the worker socket goes [default: a new private directory under
    /// the system's temporary directory].
    #[arg(long, value_name = "DIR")]
    socket_dir: Option<PathBuf>,
}

pub(crate) fn run(args: &RunArgs) -> anyhow::Result<ExitCode> {
    let Some(config) = super::config::load(&args.config)? else {
        return Ok(ExitCode::from(exit::USAGE));
    };
    let rules = match super::rules::fleet_rules(&config, &args.config.file) {
        Ok(rules) => rules,
        Err(e) => {
            writeln!(std::io::stderr().lock(), "{e}")?;
            writeln!(
                std::io::stderr().lock(),
                "error: the alert rules of {} are invalid (`botfleet rules check` checks them)",
                args.config.file.display()
            )?;
            return Ok(ExitCode::from(exit::USAGE));
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let mut options = RunOptions::default().data_dir(&args.data_dir);
        if let Some(dir) = &args.socket_dir {
            options = options.socket_dir(dir);
        }
        for warning in super::config::warnings(&config) {
            tracing::warn!("{warning}");
        }
        // Before the fleet starts: from here a SIGHUP reloads, it does not
        // kill.
        let mut term = signal(SignalKind::terminate(), "SIGTERM")?;
        let mut hangup = signal(SignalKind::hangup(), "SIGHUP")?;
        let mut fleet = Fleet::start(&config, options)
            .await
            .context("cannot start the fleet")?;
        let mut monitor = botfleet_runtime::monitor::start(&config, fleet.view(), rules).await;
        // The control API's way into this loop, and where a local CLI
        // finds it (docs/operating.md).
        let (mut control_rx, control_files) = match &mut monitor {
            Some(m) => {
                let token = config.monitor.token.as_ref().map(|t| t.expose().as_str());
                let (rx, files) = super::control::open(m, token, &args.data_dir);
                (Some(rx), files)
            }
            None => (None, None),
        };
        let say: super::control::Say = Arc::new(|line| {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "botfleet: {line}");
            let _ = out.flush();
        });
        let mut out = std::io::stdout().lock();
        writeln!(out, "botfleet: {}", config.summary())?;
        for bot in &config.bots {
            writeln!(out, "{}", super::control::bot_line(bot))?;
        }
        match &monitor {
            Some(m) => writeln!(
                out,
                "botfleet: monitor at http://{}/ (the dashboard; /metrics for Prometheus; `botfleet status`, `top`, `logs` from here)",
                m.addr()
            )?,
            None => writeln!(
                out,
                "botfleet: monitor off (it could not listen; see the log)"
            )?,
        }
        writeln!(
            out,
            "botfleet: running; Ctrl-C or SIGTERM stops it gracefully, SIGHUP reloads {}",
            args.config.file.display()
        )?;
        out.flush()?;
        drop(out);
        loop {
            tokio::select! {
                r = tokio::signal::ctrl_c() => {
                    r.context("cannot wait for Ctrl-C")?;
                    break;
                }
                _ = term.recv() => break,
                _ = hangup.recv() => {
                    // Its problems are logged; the fleet runs on either way.
                    let _ = super::control::reload(&mut fleet, &args.config.file, &say).await;
                }
                Some(asked) = super::control::recv(&mut control_rx) => {
                    super::control::act(&mut fleet, &args.config.file, &args.data_dir, asked, &say).await;
                }
            }
        }
        if let Some(files) = control_files {
            files.remove();
        }
        let failed = fleet.failed_bots();
        let mut out = std::io::stdout().lock();
        writeln!(out, "botfleet: stopping (draining the workers)")?;
        out.flush()?;
        drop(out);
        let report = fleet.shutdown().await;
        if let Some(m) = monitor {
            m.stop().await;
        }
        let mut out = std::io::stdout().lock();
        for s in &report.bots {
            writeln!(out, "{}", summary_line(s))?;
        }
        Ok::<_, anyhow::Error>(if failed.is_empty() {
            writeln!(out, "botfleet: stopped")?;
            ExitCode::SUCCESS
        } else {
            writeln!(
                out,
                "botfleet: stopped while {} failed (exit status {})",
                failed.join(", "),
                exit::FAILURE
            )?;
            ExitCode::from(exit::FAILURE)
        })
    })
}

/// A handler of `kind`, named `name` in its error.
fn signal(kind: SignalKind, name: &str) -> anyhow::Result<tokio::signal::unix::Signal> {
    tokio::signal::unix::signal(kind).with_context(|| format!("cannot wait for {name}"))
}

/// What `run` says of a bot at stop.
fn summary_line(s: &botfleet_runtime::Status) -> String {
    format!(
        "bot {}: {} updates received, {} handled ({} failed), {} delivered again, {} worker restarts{}",
        s.bot,
        s.received,
        s.acked,
        s.failed,
        s.redelivered,
        s.restarts,
        if s.failed_bot {
            "; the bot is failed"
        } else {
            ""
        }
    )
}
