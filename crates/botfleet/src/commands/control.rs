//! The fleet's side of the control API, shared by `run` and `demo`: an
//! operator's action reaches the command's loop through a channel and is
//! carried out there, on the fleet the command owns. What happens is told
//! through a [`Say`], which `run` prints and `demo` shows in its view.

use std::path::Path;
use std::sync::Arc;

use botfleet_monitor::control::Control;
use botfleet_runtime::Fleet;
use botfleet_runtime::monitor::Running;
use tokio::sync::{mpsc, oneshot};

use super::remote::ControlFiles;

/// Tells the operator one line of what the fleet does.
pub(crate) type Say = Arc<dyn Fn(String) + Send + Sync>;

/// An action's outcome as the API answers it, or why it was not done.
pub(crate) type Outcome = Result<serde_json::Value, String>;

/// An action of the control API and where its outcome goes.
pub(crate) type Asked = (Control, oneshot::Sender<Outcome>);

/// Starts the control API on `monitor` with `token` (a fresh one when
/// `None`) and writes the files a local CLI finds it by in `data_dir`.
/// Returns the actions asked and the files (`None` when they could not be
/// written; that is logged).
pub(crate) fn open(
    monitor: &mut Running,
    token: Option<&str>,
    data_dir: &Path,
) -> (mpsc::UnboundedReceiver<Asked>, Option<ControlFiles>) {
    let token = token.map_or_else(super::remote::new_token, ToOwned::to_owned);
    let (tx, rx) = mpsc::unbounded_channel::<Asked>();
    let send: botfleet_monitor::control::ControlSend = Arc::new(move |action| {
        let (reply, answer) = oneshot::channel();
        let sent = tx.send((action, reply));
        Box::pin(async move {
            sent.map_err(|_| "the fleet is stopping".to_owned())?;
            answer
                .await
                .map_err(|_| "the fleet is stopping".to_owned())?
        })
    });
    monitor.start_control(&token, send);
    let files = match super::remote::write_files(data_dir, monitor.addr(), &token) {
        Ok(files) => Some(files),
        Err(e) => {
            tracing::error!(
                "{e:#}; `botfleet status` and the other commands need --url and --token-file"
            );
            None
        }
    };
    (rx, files)
}

/// The next action asked of the control API; never, without one.
pub(crate) async fn recv(
    rx: &mut Option<tokio::sync::mpsc::UnboundedReceiver<Asked>>,
) -> Option<Asked> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// Carries out an operator's action and answers it. A restart is only
/// begun here: it rolls the workers in the background and answers when the
/// last one is replaced, so the caller's loop goes on meanwhile. `Err` only
/// when the operator can no longer be told anything (stdout closed).
pub(crate) async fn act(
    fleet: &mut Fleet,
    file: &Path,
    data_dir: &Path,
    (action, reply): Asked,
    say: &Say,
) {
    let done = |bot: &str, what: &str| serde_json::json!({ "bot": bot, "done": what });
    let outcome = match action {
        Control::Reload => reload(fleet, file, say).await.map(|r| {
            serde_json::json!({
                "added": r.added, "removed": r.removed, "rolled": r.rolled,
                "restarted": r.restarted, "problems": r.problems,
                "not_applied": r.not_applied,
            })
        }),
        Control::Restart(bot) => {
            say(format!("restarting {bot} (one worker at a time)"));
            let rolled = fleet.restart_bot(&bot);
            let say = Arc::clone(say);
            tokio::spawn(async move {
                let r = rolled.await.map(|()| done(&bot, "restarted"));
                say(outcome_line(&bot, "restarted", &r));
                let _ = reply.send(r);
            });
            return;
        }
        Control::Stop(bot) => {
            let r = fleet.stop_bot(&bot).await.map(|()| done(&bot, "stopped"));
            say(outcome_line(&bot, "stopped", &r));
            r
        }
        Control::Start(bot) => {
            let r = fleet
                .start_stopped_bot(&bot)
                .await
                .map(|()| done(&bot, "started"));
            say(outcome_line(&bot, "started", &r));
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
    };
    let _ = reply.send(outcome);
}

/// Replays or drops dead letters, as `botfleet dead-letters` does.
fn dead_letters(data_dir: &Path, bot: &str, id: Option<i64>, replay: bool) -> Outcome {
    let key = if replay { "replayed" } else { "dropped" };
    super::dead_letters::hand_back(data_dir, bot, id, replay)
        .map(|ids| serde_json::json!({ "bot": bot, key: ids }))
        .map_err(|e| format!("{e:#}"))
}

fn outcome_line(bot: &str, what: &str, r: &Outcome) -> String {
    match r {
        Ok(_) => format!("{bot} {what}"),
        Err(e) => format!("{bot} not {what}: {e}"),
    }
}

/// Reads `file` again and applies it (SIGHUP, or the control API). An
/// invalid or unreadable file changes nothing: its problems are logged,
/// returned, and the fleet runs on.
pub(crate) async fn reload(
    fleet: &mut Fleet,
    file: &Path,
    say: &Say,
) -> Result<botfleet_runtime::Reloaded, String> {
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
            return Err(lines.join("\n"));
        }
        Err(e) => {
            tracing::error!("reload: {e:#}; the running fleet is kept as it is");
            return Err(format!("{e:#}"));
        }
    };
    for warning in super::config::warnings(&config) {
        tracing::warn!("{warning}");
    }
    say(format!("reloading {}", file.display()));
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
    if changes.is_empty() {
        say("reloaded; no bot changed".to_owned());
    } else {
        say(format!("reloaded: {}", changes.join("; ")));
    }
    for bot in config.bots.iter().filter(|b| {
        done.added.contains(&b.name)
            || done.restarted.contains(&b.name)
            || done.rolled.contains(&b.name)
    }) {
        say(bot_line(bot));
    }
    Ok(done)
}

/// What is said of a bot when it starts: its mode, its workers, its
/// command.
pub(crate) fn bot_line(bot: &botfleet_config::BotConfig) -> String {
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
