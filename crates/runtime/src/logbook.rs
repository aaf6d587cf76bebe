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
    pub(crate) fn push(&self, line: LogLine) {
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
}
