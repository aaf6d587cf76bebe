//! `botfleet dead-letters`: the updates a fleet set aside because they
//! crashed their worker or ran past their deadline `max_attempts` times.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use botfleet_runtime::dead;
use clap::{Args, Subcommand};

#[derive(Debug, Args)]
pub(crate) struct DeadLettersArgs {
    /// The fleet's data directory (`botfleet run --data-dir`).
    #[arg(
        long,
        value_name = "DIR",
        default_value = "botfleet-data",
        global = true
    )]
    data_dir: PathBuf,
    #[command(subcommand)]
    command: DeadLettersCommand,
}

#[derive(Debug, Subcommand)]
enum DeadLettersCommand {
    /// One line per dead letter: bot, update, chat, attempts, when, why.
    List {
        /// Only this bot's.
        bot: Option<String>,
    },
    /// One dead letter whole: the update, why, its worker's last output.
    Show { bot: String, update_id: i64 },
    /// Hand dead letters back to their bot, with fresh attempts: the
    /// running fleet takes them within a second (or the next start does).
    Replay(Which),
    /// Delete dead letters.
    Drop(Which),
}

#[derive(Debug, Args)]
struct Which {
    bot: String,
    /// The update's id.
    #[arg(required_unless_present = "all", conflicts_with = "all")]
    update_id: Option<i64>,
    /// Every dead letter of the bot.
    #[arg(long)]
    all: bool,
}

pub(crate) fn run(args: &DeadLettersArgs) -> anyhow::Result<ExitCode> {
    let data = &args.data_dir;
    let mut out = std::io::stdout().lock();
    match &args.command {
        DeadLettersCommand::List { bot } => {
            let letters = dead::list(data, bot.as_deref())
                .with_context(|| format!("cannot read the dead letters in {}", data.display()))?;
            if letters.is_empty() {
                writeln!(out, "no dead letters in {}", dead::dir(data).display())?;
            }
            for l in letters {
                writeln!(
                    out,
                    "{}\t{}\tchat {}\t{} attempts\t{}\t{}",
                    l.bot,
                    l.update_id,
                    l.chat,
                    l.attempts,
                    when(l.dead_at),
                    l.reason
                )?;
            }
        }
        DeadLettersCommand::Show { bot, update_id } => {
            let l = dead::show(data, bot, *update_id).with_context(|| {
                format!(
                    "no dead letter {update_id} of bot {bot} in {}",
                    data.display()
                )
            })?;
            writeln!(out, "bot:      {}", l.bot)?;
            writeln!(out, "update:   {}", l.update_id)?;
            writeln!(out, "chat:     {}", l.chat)?;
            writeln!(out, "attempts: {}", l.attempts)?;
            writeln!(out, "set aside {}: {}", when(l.dead_at), l.reason)?;
            writeln!(out, "the worker's last output:")?;
            for line in &l.output {
                writeln!(out, "  {line}")?;
            }
            writeln!(out, "the update:")?;
            writeln!(out, "{}", serde_json::to_string_pretty(&l.update)?)?;
        }
        DeadLettersCommand::Replay(which) | DeadLettersCommand::Drop(which) => {
            let replay = matches!(args.command, DeadLettersCommand::Replay(_));
            let ids = hand_back(data, &which.bot, which.update_id, replay)?;
            if ids.is_empty() && which.all {
                writeln!(out, "bot {} has no dead letters", which.bot)?;
            }
            let what = if replay {
                "handed back to"
            } else {
                "dropped from"
            };
            for id in ids {
                writeln!(out, "update {id} {what} bot {}", which.bot)?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Replays (hands back to the bot, with fresh attempts) or drops `bot`'s
/// dead letter `update_id`, or all of them with `None`; the ids done.
pub(crate) fn hand_back(
    data: &std::path::Path,
    bot: &str,
    update_id: Option<i64>,
    replay: bool,
) -> anyhow::Result<Vec<i64>> {
    let ids: Vec<i64> = match update_id {
        Some(id) => vec![id],
        None => dead::list(data, Some(bot))?
            .iter()
            .map(|l| l.update_id)
            .collect(),
    };
    for &id in &ids {
        let done = if replay {
            dead::replay(data, bot, id)
        } else {
            dead::drop(data, bot, id)
        };
        if let Err(e) = done {
            if e.kind() == std::io::ErrorKind::NotFound {
                bail!("no dead letter {id} of bot {bot} in {}", data.display());
            }
            return Err(e).with_context(|| format!("dead letter {id} of bot {bot}"));
        }
    }
    Ok(ids)
}

/// `secs` since the epoch, in RFC 3339 (UTC).
fn when(secs: u64) -> String {
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs))
        .to_string()
}

#[cfg(test)]
mod tests {
    #[test]
    fn times_read_as_utc() {
        assert_eq!(super::when(0), "1970-01-01T00:00:00Z");
        assert_eq!(super::when(1_796_645_045), "2026-12-07T12:04:05Z");
    }
}
