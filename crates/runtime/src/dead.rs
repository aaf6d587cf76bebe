//! Dead letters: updates set aside because they crashed their worker or ran
//! past their handling deadline `max_attempts` times, so their chat goes
//! on. One JSON file per update, `<data dir>/dead-letters/<bot>/<id>.json`,
//! with the update, why it was set aside and the worker's last output
//! lines. `botfleet dead-letters` lists, shows, replays and drops them; a
//! replayed letter moves to `<bot>/replay/`, where the running fleet (or
//! the next start) picks it up and hands it out again.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

/// The dead letters of every bot under `data_dir`.
pub fn dir(data_dir: &Path) -> PathBuf {
    data_dir.join("dead-letters")
}

/// One dead letter.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct DeadLetter {
    /// The bot.
    pub bot: String,
    /// The update's id.
    pub update_id: i64,
    /// Its routing key (the chat, or the user).
    pub chat: i64,
    /// Times it was handed to a worker.
    pub attempts: u32,
    /// Why it was set aside, in words.
    pub reason: String,
    /// The last lines its worker printed before it died.
    pub output: Vec<String>,
    /// When it was set aside (seconds since the Unix epoch).
    pub dead_at: u64,
    /// The update as Telegram sent it.
    pub update: Value,
}

impl DeadLetter {
    /// The letter as its file holds it.
    pub fn to_json(&self) -> Value {
        json!({
            "bot": self.bot,
            "update_id": self.update_id,
            "chat": self.chat,
            "attempts": self.attempts,
            "reason": self.reason,
            "output": self.output,
            "dead_at": self.dead_at,
            "update": self.update,
        })
    }

    fn from_json(v: &Value) -> Option<DeadLetter> {
        Some(DeadLetter {
            bot: v["bot"].as_str()?.to_owned(),
            update_id: v["update_id"].as_i64()?,
            chat: v["chat"].as_i64().unwrap_or_default(),
            attempts: v["attempts"].as_u64().unwrap_or_default() as u32,
            reason: v["reason"].as_str().unwrap_or_default().to_owned(),
            output: v["output"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|l| l.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default(),
            dead_at: v["dead_at"].as_u64().unwrap_or_default(),
            update: v["update"].clone(),
        })
    }
}

/// Writes `letter` durably (a temporary file, synced, renamed).
pub(crate) fn write(data_dir: &Path, letter: &DeadLetter) -> std::io::Result<PathBuf> {
    let dir = dir(data_dir).join(&letter.bot);
    std::fs::create_dir_all(&dir)?;
    let path = dir.join(format!("{}.json", letter.update_id));
    let tmp = dir.join(format!(".{}.json.tmp", letter.update_id));
    let text = serde_json::to_vec_pretty(&letter.to_json()).map_err(std::io::Error::other)?;
    {
        use std::io::Write;
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(&text)?;
        file.sync_all()?;
    }
    std::fs::rename(&tmp, &path)?;
    std::fs::File::open(&dir)?.sync_all()?;
    Ok(path)
}

/// Reads the letter at `path`.
fn read(path: &Path) -> std::io::Result<DeadLetter> {
    let text = std::fs::read(path)?;
    let value: Value = serde_json::from_slice(&text).map_err(|e| {
        std::io::Error::other(format!("{}: not a dead letter: {e}", path.display()))
    })?;
    DeadLetter::from_json(&value)
        .ok_or_else(|| std::io::Error::other(format!("{}: not a dead letter", path.display())))
}

/// The letters in `dir` (files `<id>.json`), by update id.
fn letters_in(dir: &Path) -> std::io::Result<Vec<(PathBuf, DeadLetter)>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for entry in entries {
        let path = entry?.path();
        let is_letter = path.extension().is_some_and(|e| e == "json")
            && path
                .file_stem()
                .and_then(|s| s.to_str())
                .is_some_and(|s| s.parse::<i64>().is_ok());
        if is_letter {
            out.push((path.clone(), read(&path)?));
        }
    }
    out.sort_by_key(|(_, l)| (l.bot.clone(), l.update_id));
    Ok(out)
}

/// Every dead letter under `data_dir`, of `bot` or of every bot.
pub fn list(data_dir: &Path, bot: Option<&str>) -> std::io::Result<Vec<DeadLetter>> {
    let root = dir(data_dir);
    let bots: Vec<String> = match bot {
        Some(b) => vec![b.to_owned()],
        None => match std::fs::read_dir(&root) {
            Ok(entries) => {
                let mut names = Vec::new();
                for e in entries {
                    let e = e?;
                    if e.file_type()?.is_dir() {
                        names.push(e.file_name().to_string_lossy().into_owned());
                    }
                }
                names.sort();
                names
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e),
        },
    };
    let mut out = Vec::new();
    for b in bots {
        out.extend(letters_in(&root.join(b))?.into_iter().map(|(_, l)| l));
    }
    Ok(out)
}

/// `bot`'s letter of `update_id`.
pub fn show(data_dir: &Path, bot: &str, update_id: i64) -> std::io::Result<DeadLetter> {
    read(&dir(data_dir).join(bot).join(format!("{update_id}.json")))
}

/// Hands `bot`'s letter of `update_id` back to its bot: the running fleet
/// (or the next start) takes it from `replay/` within a second and gives it
/// fresh attempts.
pub fn replay(data_dir: &Path, bot: &str, update_id: i64) -> std::io::Result<()> {
    let from = dir(data_dir).join(bot).join(format!("{update_id}.json"));
    read(&from)?;
    let to_dir = dir(data_dir).join(bot).join("replay");
    std::fs::create_dir_all(&to_dir)?;
    std::fs::rename(&from, to_dir.join(format!("{update_id}.json")))
}

/// Deletes `bot`'s letter of `update_id`.
pub fn drop(data_dir: &Path, bot: &str, update_id: i64) -> std::io::Result<()> {
    let path = dir(data_dir).join(bot).join(format!("{update_id}.json"));
    read(&path)?;
    std::fs::remove_file(path)
}

/// The letters waiting in `bot`'s `replay/`, taken out of it: each is to be
/// journaled and handed out again.
pub(crate) fn take_replays(data_dir: &Path, bot: &str) -> std::io::Result<Vec<DeadLetter>> {
    let letters = letters_in(&dir(data_dir).join(bot).join("replay"))?;
    let mut out = Vec::with_capacity(letters.len());
    for (path, letter) in letters {
        std::fs::remove_file(&path)?;
        out.push(letter);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn letter(id: i64) -> DeadLetter {
        DeadLetter {
            bot: "echo".into(),
            update_id: id,
            chat: 7,
            attempts: 3,
            reason: "crashed its worker 3 times".into(),
            output: vec!["Traceback (most recent call last):".into()],
            dead_at: 1_800_000_000,
            update: json!({"update_id": id, "message": {"text": "boom"}}),
        }
    }

    #[test]
    fn letters_are_written_listed_replayed_and_dropped() {
        let dir = botfleet_testkit::TempDir::new("dead").unwrap();
        let data = dir.path();
        assert!(list(data, None).unwrap().is_empty());
        write(data, &letter(5)).unwrap();
        write(data, &letter(3)).unwrap();
        let all = list(data, None).unwrap();
        assert_eq!(all.iter().map(|l| l.update_id).collect::<Vec<_>>(), [3, 5]);
        assert_eq!(show(data, "echo", 5).unwrap(), letter(5));
        replay(data, "echo", 3).unwrap();
        assert_eq!(list(data, Some("echo")).unwrap().len(), 1);
        let back = take_replays(data, "echo").unwrap();
        assert_eq!(back, [letter(3)]);
        assert!(take_replays(data, "echo").unwrap().is_empty());
        drop(data, "echo", 5).unwrap();
        assert!(list(data, None).unwrap().is_empty());
        let e = show(data, "echo", 5).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::NotFound);
    }
}
