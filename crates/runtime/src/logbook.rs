//! The recent output of every worker, kept by the supervisor for
//! `botfleet logs`: a bounded ring per bot and worker slot (a slot's
//! restarts share it, each line with its process's pid), whatever the log
//! level on stderr let through.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use parking_lot::Mutex;

/// Lines kept per worker slot.
pub const MAX_LINES: usize = 1000;
/// Bytes of text kept per worker slot (the oldest lines go first).
pub const MAX_BYTES: usize = 256 * 1024;

/// One line of a worker's output.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct LogLine {
    /// When it was read, Unix milliseconds.
    pub t_ms: u64,
    /// Its bot.
    pub bot: String,
    /// Its worker slot (the `worker` label).
    pub worker: u32,
    /// The process that printed it.
    pub pid: u32,
    /// `stdout` or `stderr`.
    pub stream: &'static str,
    /// `error`, `warn`, `info` or `debug`: what the line names, else
    /// `warn` for stderr and `info` for stdout.
    pub level: &'static str,
    /// The text (cut at 16 KiB).
    pub line: String,
}

#[derive(Default)]
struct Ring {
    lines: VecDeque<LogLine>,
    bytes: usize,
}

/// Every worker's recent lines (cheap to clone).
#[derive(Clone, Default)]
pub struct LogBook {
    rings: Arc<Mutex<HashMap<(String, u32), Ring>>>,
    /// The per-bot files' writer, when `[logs]` is set.
    files: Option<std::sync::mpsc::SyncSender<LogLine>>,
}

/// Lines waiting for the file writer; past it, lines are not written to
/// the files (they are still kept in memory and logged) and counted.
const FILE_QUEUE: usize = 10_000;

/// Writes each bot's lines to `<dir>/<bot>.log`, rotating a file to
/// `.1` (and `.1` to `.2`, ... up to `keep`) before it would pass
/// `max_bytes`. On a thread of its own: a slow disk never holds a
/// worker's output.
fn write_files(
    rx: std::sync::mpsc::Receiver<LogLine>,
    dir: std::path::PathBuf,
    max_bytes: u64,
    keep: u32,
) {
    use std::io::Write;
    let mut open: HashMap<String, (std::io::BufWriter<std::fs::File>, u64)> = HashMap::new();
    let path = |bot: &str, n: u32| {
        if n == 0 {
            dir.join(format!("{bot}.log"))
        } else {
            dir.join(format!("{bot}.log.{n}"))
        }
    };
    let mut warned = false;
    loop {
        // Flush when idle for 100 ms, so `tail -f` sees lines promptly.
        let line = match rx.recv_timeout(std::time::Duration::from_millis(100)) {
            Ok(line) => line,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                for (w, _) in open.values_mut() {
                    let _ = w.flush();
                }
                continue;
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
        };
        let text = format!(
            "{} worker={} pid={} {} {}\n",
            line.t_ms, line.worker, line.pid, line.level, line.line
        );
        let bytes = text.len() as u64;
        if let Some((w, size)) = open.get_mut(&line.bot) {
            if *size + bytes > max_bytes && *size > 0 {
                let _ = w.flush();
                open.remove(&line.bot);
                for n in (1..keep).rev() {
                    let _ = std::fs::rename(path(&line.bot, n), path(&line.bot, n + 1));
                }
                let _ = std::fs::rename(path(&line.bot, 0), path(&line.bot, 1));
            }
        }
        if !open.contains_key(&line.bot) {
            let file = std::fs::create_dir_all(&dir).and_then(|()| {
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path(&line.bot, 0))
            });
            match file {
                Ok(f) => {
                    let size = f.metadata().map_or(0, |m| m.len());
                    open.insert(line.bot.clone(), (std::io::BufWriter::new(f), size));
                }
                Err(e) => {
                    if !warned {
                        tracing::error!(dir = %dir.display(), error = %e, "cannot write the bots' log files; their lines are kept in memory only");
                        warned = true;
                    }
                    continue;
                }
            }
        }
        if let Some((w, size)) = open.get_mut(&line.bot) {
            if w.write_all(text.as_bytes()).is_ok() {
                *size += bytes;
            }
        }
    }
    for (w, _) in open.values_mut() {
        let _ = w.flush();
    }
}

impl std::fmt::Debug for LogBook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogBook")
            .field("slots", &self.rings.lock().len())
            .finish()
    }
}

/// The rank of a level name (error is the highest); unknown names rank as
/// debug.
pub fn rank(level: &str) -> u8 {
    match level {
        "error" => 3,
        "warn" | "warning" => 2,
        "info" => 1,
        _ => 0,
    }
}

impl LogBook {
    /// A book that also writes each bot's lines to `<dir>/<bot>.log`,
    /// rotated past `max_bytes`, `keep` old files kept.
    pub fn with_files(dir: std::path::PathBuf, max_bytes: u64, keep: u32) -> LogBook {
        let (tx, rx) = std::sync::mpsc::sync_channel(FILE_QUEUE);
        let spawned = std::thread::Builder::new()
            .name("log-files".into())
            .spawn(move || write_files(rx, dir, max_bytes, keep));
        LogBook {
            rings: Arc::default(),
            files: spawned.is_ok().then_some(tx),
        }
    }

    pub(crate) fn push(&self, line: LogLine) {
        if let Some(files) = &self.files {
            if files.try_send(line.clone()).is_err() {
                metrics::counter!("botfleet_worker_log_file_lines_dropped_total", "bot" => line.bot.clone())
                    .increment(1);
            }
        }
        let mut rings = self.rings.lock();
        let ring = rings.entry((line.bot.clone(), line.worker)).or_default();
        ring.bytes += line.line.len();
        ring.lines.push_back(line);
        while ring.lines.len() > MAX_LINES || ring.bytes > MAX_BYTES {
            match ring.lines.pop_front() {
                Some(old) => ring.bytes -= old.line.len(),
                None => break,
            }
        }
    }

    /// The lines of `bot` (all bots with `None`) and `worker` slot (all
    /// with `None`) read after `since_ms`, at `min_level` or above, oldest
    /// first, the newest `limit` of them.
    pub fn query(
        &self,
        bot: Option<&str>,
        worker: Option<u32>,
        since_ms: u64,
        min_level: &str,
        limit: usize,
    ) -> Vec<LogLine> {
        let floor = rank(min_level);
        let rings = self.rings.lock();
        let mut out: Vec<LogLine> = rings
            .iter()
            .filter(|((b, w), _)| bot.is_none_or(|x| x == b) && worker.is_none_or(|x| x == *w))
            .flat_map(|(_, ring)| ring.lines.iter())
            .filter(|l| l.t_ms > since_ms && rank(l.level) >= floor)
            .cloned()
            .collect();
        out.sort_by_key(|l| l.t_ms);
        let skip = out.len().saturating_sub(limit);
        out.drain(..skip);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(bot: &str, worker: u32, t_ms: u64, level: &'static str, text: &str) -> LogLine {
        LogLine {
            t_ms,
            bot: bot.to_owned(),
            worker,
            pid: 7,
            stream: "stderr",
            level,
            line: text.to_owned(),
        }
    }

    #[test]
    fn lines_are_kept_per_slot_within_bounds_and_filtered() {
        let book = LogBook::default();
        for i in 0..(MAX_LINES as u64 + 10) {
            book.push(line("a", 0, i + 1, "info", "x"));
        }
        book.push(line("a", 1, 5_000, "error", "boom"));
        book.push(line("b", 0, 5_001, "warn", "careful"));
        let a0 = book.query(Some("a"), Some(0), 0, "debug", usize::MAX);
        assert_eq!(a0.len(), MAX_LINES, "the oldest went");
        assert_eq!(a0[0].t_ms, 11);
        let warn = book.query(None, None, 0, "warn", 10);
        assert_eq!(
            warn.iter().map(|l| l.line.as_str()).collect::<Vec<_>>(),
            ["boom", "careful"]
        );
        assert_eq!(book.query(Some("a"), None, 4_999, "debug", 10).len(), 1);
        assert_eq!(
            book.query(None, None, 0, "debug", 3).len(),
            3,
            "the newest 3"
        );
        // Big lines are bounded by bytes too.
        for i in 0..10 {
            book.push(line("c", 0, i, "info", &"y".repeat(64 * 1024)));
        }
        assert_eq!(book.query(Some("c"), None, 0, "debug", 100).len(), 4);
    }

    #[test]
    fn files_are_written_per_bot_and_rotated_by_size() {
        let tmp = botfleet_testkit::TempDir::new("logbook").unwrap();
        let dir = tmp.path().join("logs");
        let book = LogBook::with_files(dir.clone(), 1000, 2);
        for i in 0..60 {
            book.push(line(
                "a",
                0,
                i,
                "info",
                &format!("line {i:03} {}", "x".repeat(40)),
            ));
        }
        book.push(line("b", 1, 99, "error", "only b"));
        // The writer flushes within 100 ms of going idle.
        let read = |name: &str| std::fs::read_to_string(dir.join(name)).unwrap_or_default();
        for _ in 0..50 {
            if read("a.log").contains("line 059") && read("b.log").contains("only b") {
                break;
            }
            #[expect(
                clippy::disallowed_methods,
                reason = "a sync test waits for the writer's own thread"
            )]
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        assert!(read("a.log").contains("line 059"));
        assert!(read("b.log").contains("worker=1 pid=7 error only b"));
        assert!(!read("a.log").contains("only b"), "one file per bot");
        // Rotated: each file under the size, two old ones kept, the oldest
        // lines gone.
        for name in ["a.log", "a.log.1", "a.log.2"] {
            let text = read(name);
            assert!(
                !text.is_empty() && text.len() <= 1000,
                "{name}: {}",
                text.len()
            );
        }
        assert!(!dir.join("a.log.3").exists());
        assert!(
            !read("a.log.2").contains("line 000"),
            "the oldest lines went"
        );
    }
}
