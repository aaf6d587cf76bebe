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
        let (control_tx, mut control_rx) = tokio::sync::mpsc::unbounded_channel::<Asked>();
        let control_files = match &mut monitor {
            Some(m) => {
                let token = config
                    .monitor
                    .token
                    .as_ref()
                    .map_or_else(super::remote::new_token, |t| t.expose().clone());
                let send: botfleet_monitor::control::ControlSend = Arc::new(move |action| {
                    let (reply, answer) = tokio::sync::oneshot::channel();
                    let sent = control_tx.send((action, reply));
                    Box::pin(async move {
                        sent.map_err(|_| "the fleet is stopping".to_owned())?;
                        answer
                            .await
                            .map_err(|_| "the fleet is stopping".to_owned())?
                    })
                });
                m.start_control(&token, send);
                match super::remote::write_files(&args.data_dir, m.addr(), &token) {
                    Ok(files) => Some(files),
                    Err(e) => {
                        tracing::error!("{e:#}; `botfleet status` and the other commands need --url and --token-file");
                        None
                    }
                }
            }
            None => None,
        };
        let mut out = std::io::stdout().lock();
        writeln!(out, "botfleet: {}", config.summary())?;
        for bot in &config.bots {
            writeln!(out, "{}", bot_line(bot))?;
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
                    let _ = reload(&mut fleet, &args.config.file).await?;
                }
                Some((action, reply)) = control_rx.recv() => {
                    let outcome = act(&mut fleet, &args.config.file, &args.data_dir, action).await?;
                    let _ = reply.send(outcome);
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

/// An action of the control API and where its outcome goes.
type Asked = (
    botfleet_monitor::control::Control,
    tokio::sync::oneshot::Sender<Result<serde_json::Value, String>>,
);

/// Carries out an operator's action; its outcome, or why not.
async fn act(
    fleet: &mut Fleet,
    file: &std::path::Path,
    data_dir: &std::path::Path,
    action: botfleet_monitor::control::Control,
) -> anyhow::Result<Result<serde_json::Value, String>> {
    use botfleet_monitor::control::Control;
    let done = |bot: &str, what: &str| serde_json::json!({ "bot": bot, "done": what });
    Ok(match action {
        Control::Reload => reload(fleet, file).await?.map(|r| {
            serde_json::json!({
                "added": r.added, "removed": r.removed, "rolled": r.rolled,
                "restarted": r.restarted, "problems": r.problems,
                "not_applied": r.not_applied,
            })
        }),
        Control::Restart(bot) => {
            say(&format!(
                "botfleet: restarting {bot} (one worker at a time)"
            ))?;
            let r = fleet
                .restart_bot(&bot)
                .await
                .map(|()| done(&bot, "restarted"));
            say(&format!(
                "botfleet: {}",
                outcome_line(&bot, "restarted", &r)
            ))?;
            r
        }
        Control::Stop(bot) => {
            let r = fleet.stop_bot(&bot).await.map(|()| done(&bot, "stopped"));
            say(&format!("botfleet: {}", outcome_line(&bot, "stopped", &r)))?;
            r
        }
        Control::Start(bot) => {
            let r = fleet
                .start_stopped_bot(&bot)
                .await
                .map(|()| done(&bot, "started"));
            say(&format!("botfleet: {}", outcome_line(&bot, "started", &r)))?;
            r
        }
        Control::DeadLetters(bot) => botfleet_runtime::dead::list(data_dir, bot.as_deref())
            .map(|letters| {
                let letters: Vec<serde_json::Value> = letters.iter().map(|l| l.to_json()).collect();
                serde_json::json!({ "dead_letters": letters })
            })
            .map_err(|e| format!("cannot read the dead letters: {e}")),
        Control::Replay(bot, id) => dead_letters(data_dir, &bot, id, true),
        Control::Drop(bot, id) => dead_letters(data_dir, &bot, id, false),
    })
}

/// Replays or drops dead letters, as `botfleet dead-letters` does.
fn dead_letters(
    data_dir: &std::path::Path,
    bot: &str,
    id: Option<i64>,
    replay: bool,
) -> Result<serde_json::Value, String> {
    let key = if replay { "replayed" } else { "dropped" };
    super::dead_letters::hand_back(data_dir, bot, id, replay)
        .map(|ids| serde_json::json!({ "bot": bot, key: ids }))
        .map_err(|e| format!("{e:#}"))
}

fn outcome_line(bot: &str, what: &str, r: &Result<serde_json::Value, String>) -> String {
    match r {
        Ok(_) => format!("{bot} {what}"),
        Err(e) => format!("{bot} not {what}: {e}"),
    }
}

/// One line on stdout, now.
fn say(line: &str) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")?;
    out.flush()
}

/// Reads `file` again and applies it (SIGHUP, or the control API). An
/// invalid or unreadable file changes nothing: its problems are logged,
/// returned, and the fleet runs on.
async fn reload(
    fleet: &mut Fleet,
    file: &std::path::Path,
) -> anyhow::Result<Result<botfleet_runtime::Reloaded, String>> {
    let config = match botfleet_config::load(file) {
        Ok(config) => config,
        Err(botfleet_config::ConfigError::Invalid(problems)) => {
            for problem in &problems {
                tracing::error!("{problem}");
            }
            tracing::error!(
                "reload: {} has {} problems; the running fleet is kept as it is",
                file.display(),
                problems.len()
            );
            let lines: Vec<String> = problems.iter().map(ToString::to_string).collect();
            return Ok(Err(lines.join("\n")));
        }
        Err(e) => {
            tracing::error!("reload: {e:#}; the running fleet is kept as it is");
            return Ok(Err(format!("{e:#}")));
        }
    };
    for warning in super::config::warnings(&config) {
        tracing::warn!("{warning}");
    }
    let mut out = std::io::stdout().lock();
    writeln!(out, "botfleet: reloading {}", file.display())?;
    out.flush()?;
    drop(out);
    let done = fleet.reload(&config).await;
    for problem in &done.problems {
        tracing::error!("reload: {problem}");
    }
    for section in &done.not_applied {
        tracing::warn!("reload: {section} changed; it applies when botfleet starts again");
    }
    let list = |what: &str, bots: &[String]| {
        (!bots.is_empty()).then(|| format!("{what} {}", bots.join(", ")))
    };
    let changes: Vec<String> = [
        list("added", &done.added),
        list("removed", &done.removed),
        list("rolled", &done.rolled),
        list("restarted", &done.restarted),
    ]
    .into_iter()
    .flatten()
    .collect();
    let mut out = std::io::stdout().lock();
    if changes.is_empty() {
        writeln!(out, "botfleet: reloaded; no bot changed")?;
    } else {
        writeln!(out, "botfleet: reloaded: {}", changes.join("; "))?;
    }
    for bot in config.bots.iter().filter(|b| {
        done.added.contains(&b.name)
            || done.restarted.contains(&b.name)
            || done.rolled.contains(&b.name)
    }) {
        writeln!(out, "{}", bot_line(bot))?;
    }
    out.flush()?;
    Ok(Ok(done))
}

/// A handler of `kind`, named `name` in its error.
fn signal(kind: SignalKind, name: &str) -> anyhow::Result<tokio::signal::unix::Signal> {
    tokio::signal::unix::signal(kind).with_context(|| format!("cannot wait for {name}"))
}

/// What `run` says of a bot at start: its mode, its workers, its command.
fn bot_line(bot: &botfleet_config::BotConfig) -> String {
    let workers = if bot.min_workers == bot.max_workers {
        let s = if bot.min_workers == 1 { "" } else { "s" };
        format!("{} worker{s}", bot.min_workers)
    } else {
        format!("{} to {} workers", bot.min_workers, bot.max_workers)
    };
    let mut command = bot.worker.command.clone();
    for arg in &bot.worker.args {
        command.push_str(&format!(" {arg}"));
    }
    format!(
        "bot {}: {}, {workers}, `{command}`",
        bot.name,
        bot.mode.as_str()
    )
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
