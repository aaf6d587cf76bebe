//! `botfleet run`: the fleet's supervisor in the foreground.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use botfleet_runtime::{Fleet, RunOptions};
use clap::Args;

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
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let mut options = RunOptions::default().data_dir(&args.data_dir);
        if let Some(dir) = &args.socket_dir {
            options = options.socket_dir(dir);
        }
        let fleet = Fleet::start(&config, options)
            .await
            .context("cannot start the fleet")?;
        tracing::info!("{}; Ctrl-C or SIGTERM stops it gracefully", config.summary());
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .context("cannot wait for SIGTERM")?;
        let failed = tokio::select! {
            r = tokio::signal::ctrl_c() => {
                r.context("cannot wait for Ctrl-C")?;
                None
            }
            _ = term.recv() => None,
            bot = fleet.failed() => Some(bot),
        };
        if let Some(bot) = &failed {
            tracing::error!(bot = %bot, "a bot failed (restart intensity exceeded); stopping the fleet");
        }
        let report = fleet.shutdown().await;
        for s in &report.bots {
            tracing::info!(
                bot = %s.bot,
                received = s.received,
                acked = s.acked,
                failed = s.failed,
                redelivered = s.redelivered,
                restarts = s.restarts,
                "final"
            );
        }
        Ok::<_, anyhow::Error>(if failed.is_some() {
            ExitCode::from(exit::FAILURE)
        } else {
            ExitCode::SUCCESS
        })
    })
}
