//! What the runtime's benchmarks share: a fleet of benchmark workers against
//! an emulator without limits, each worker logging every update it handled
//! as a line `update_id chat ns pid` (one `write` per line; O_APPEND keeps
//! lines whole across processes).

use std::future::Future;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;
use botfleet_config::{FleetConfig, FleetFile};
use botfleet_emulator::{Emulator, EmulatorConfig, Limits};
use botfleet_runtime::{Fleet, RunOptions};
use botfleet_worker::HandlerResult;

/// The benchmarks' bot token (the emulator's; no such bot exists).
pub(crate) const TOKEN: &str = "110201543:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw1";

/// The wall clock in nanoseconds: comparable across processes.
pub(crate) fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

/// One line of the log: an update a handler finished, and when.
pub(crate) struct Handled {
    pub(crate) id: i64,
    pub(crate) chat: i64,
    pub(crate) at_ns: u128,
    /// The worker process that handled it.
    pub(crate) pid: u32,
}

/// The log's lines, in the order they were written.
pub(crate) fn read_log(log: &Path) -> Vec<Handled> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    text.lines()
        .filter_map(|line| {
            let mut parts = line.split_whitespace();
            Some(Handled {
                id: parts.next()?.parse().ok()?,
                chat: parts.next()?.parse().ok()?,
                at_ns: parts.next()?.parse().ok()?,
                pid: parts.next()?.parse().ok()?,
            })
        })
        .collect()
}

/// Runs a benchmark worker: for each update, `work` (given the message's
/// text), then its log line.
pub(crate) async fn logging_worker<F, Fut>(log: PathBuf, work: F) -> anyhow::Result<ExitCode>
where
    F: Fn(String, botfleet_worker::Context) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = HandlerResult> + Send + 'static,
{
    let file = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(&log)
        .with_context(|| format!("cannot open {}", log.display()))?;
    let file = std::sync::Arc::new(file);
    let work = std::sync::Arc::new(work);
    botfleet_worker::Worker::new(move |update, cx| {
        let file = file.clone();
        let work = work.clone();
        async move {
            let (chat, text) = match update.content()? {
                botfleet_telegram::updates::UpdateContent::Message(m) => {
                    (m.chat.id, m.text.clone().unwrap_or_default())
                }
                _ => (0, String::new()),
            };
            work(text, cx).await?;
            let line = format!(
                "{} {chat} {} {}\n",
                update.id(),
                now_ns(),
                std::process::id()
            );
            (&*file).write_all(line.as_bytes())?;
            Ok(())
        }
    })
    .run()
    .await
    .context("the benchmark worker")?;
    Ok(ExitCode::SUCCESS)
}

/// An emulator without limits, with users 1..=`users` (a private chat each).
pub(crate) async fn emulator(bot: &str, users: i64) -> anyhow::Result<Emulator> {
    let emulator = Emulator::start(EmulatorConfig::default().limits(Limits::unlimited()))
        .await
        .context("cannot start the emulator")?;
    emulator.add_bot(TOKEN, bot);
    for u in 1..=users {
        emulator.add_user(u, "user");
    }
    Ok(emulator)
}

/// The benchmark's own fleet file.
pub(crate) fn fleet_config(file: FleetFile) -> anyhow::Result<FleetConfig> {
    file.parse()
        .map_err(|e| anyhow::anyhow!("the benchmark's fleet file: {e}"))
}

/// Starts `config`'s fleet, its socket and data in `dir`.
pub(crate) async fn start_fleet(config: &FleetConfig, dir: &Path) -> anyhow::Result<Fleet> {
    Fleet::start(
        config,
        RunOptions::default()
            .socket_dir(dir.join("run"))
            .data_dir(dir.join("data")),
    )
    .await
    .context("cannot start the fleet")
}
