//! Starting worker processes: each in its own process group, its output
//! captured into the supervisor's log with the bot and worker as fields.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// What a worker process is started with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Spec {
    pub(crate) program: String,
    pub(crate) args: Vec<String>,
    /// Environment variables, added to the supervisor's own (values are
    /// never logged: some are secrets).
    pub(crate) env: Vec<(String, String)>,
}

/// Where `program` is found the way a worker is started: a name with a
/// `/` as a path (relative to the current directory), any other name in
/// `path` (a `PATH` value). The error says what is wrong.
pub fn find_program(program: &str, path: Option<&std::ffi::OsStr>) -> Result<PathBuf, String> {
    use std::os::unix::fs::PermissionsExt;
    let executable = |p: &Path| {
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if program.is_empty() {
        return Err("the worker command is empty".to_owned());
    }
    if program.contains('/') {
        let p = Path::new(program);
        return match std::fs::metadata(p) {
            Err(e) => Err(format!("`{program}`: {e}")),
            Ok(_) if !executable(p) => Err(format!("`{program}` is not an executable file")),
            Ok(_) => Ok(p.to_owned()),
        };
    }
    std::env::split_paths(path.unwrap_or_default())
        .map(|dir| dir.join(program))
        .find(|p| executable(p))
        .ok_or_else(|| format!("`{program}` is not found in PATH"))
}

/// Starts `spec` in a process group of its own, stdin closed, stdout and
/// stderr read line by line into the log.
/// A worker's last lines of output (both streams), for its dead letters.
pub(crate) type Recent = std::sync::Arc<parking_lot::Mutex<std::collections::VecDeque<String>>>;

/// Lines [`Recent`] keeps.
const RECENT_LINES: usize = 20;

/// Where a worker's output lines go besides the log.
#[derive(Clone)]
struct Sink {
    recent: Recent,
    book: crate::logbook::LogBook,
    slot: u32,
    pid: u32,
}

pub(crate) fn spawn(
    spec: &Spec,
    bot: &str,
    worker: u32,
    recent: &Recent,
    book: &crate::logbook::LogBook,
    slot: u32,
) -> std::io::Result<Child> {
    let mut command = Command::new(&spec.program);
    command
        .args(&spec.args)
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let mut child = command.spawn()?;
    let sink = Sink {
        recent: recent.clone(),
        book: book.clone(),
        slot,
        pid: child.id().unwrap_or(0),
    };
    if let Some(out) = child.stdout.take() {
        tokio::spawn(relay(
            BufReader::new(out),
            bot.to_owned(),
            worker,
            "stdout",
            sink.clone(),
        ));
    }
    if let Some(err) = child.stderr.take() {
        tokio::spawn(relay(
            BufReader::new(err),
            bot.to_owned(),
            worker,
            "stderr",
            sink,
        ));
    }
    Ok(child)
}

/// The longest line of a worker's output kept for the log; the rest of a
/// longer line is counted and dropped, so a worker that prints without
/// newlines cannot grow the supervisor's memory.
const MAX_LINE: usize = 16 * 1024;

async fn relay<R: tokio::io::AsyncBufRead + Unpin>(
    reader: R,
    bot: String,
    worker: u32,
    stream: &'static str,
    sink: Sink,
) {
    let mut budget = LogBudget::new(tokio::time::Instant::now(), LINE_BURST, LINES_PER_SECOND);
    relay_lines(reader, |line| {
        {
            let mut recent = sink.recent.lock();
            if recent.len() == RECENT_LINES {
                recent.pop_front();
            }
            recent.push_back(line.to_owned());
        }
        // A worker's stderr is where its errors and tracebacks go; a line
        // that names its level is logged at that level.
        let level = announced_level(line).unwrap_or(if stream == "stderr" {
            tracing::Level::WARN
        } else {
            tracing::Level::INFO
        });
        sink.book.push(crate::logbook::LogLine {
            t_ms: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
            bot: bot.clone(),
            worker: sink.slot,
            pid: sink.pid,
            stream,
            level: match level {
                tracing::Level::ERROR => "error",
                tracing::Level::WARN => "warn",
                tracing::Level::INFO => "info",
                _ => "debug",
            },
            line: line.to_owned(),
        });
        match budget.take(tokio::time::Instant::now()) {
            Take::Log { dropped } => report_dropped(&bot, worker, stream, dropped),
            Take::Drop => return,
        }
        match level {
            tracing::Level::ERROR => {
                tracing::error!(target: "botfleet::worker", bot = %bot, worker, stream, "{line}");
            }
            tracing::Level::WARN => {
                tracing::warn!(target: "botfleet::worker", bot = %bot, worker, stream, "{line}");
            }
            tracing::Level::INFO => {
                tracing::info!(target: "botfleet::worker", bot = %bot, worker, stream, "{line}");
            }
            _ => tracing::debug!(target: "botfleet::worker", bot = %bot, worker, stream, "{line}"),
        }
    })
    .await;
    report_dropped(&bot, worker, stream, budget.dropped);
}

/// The level a line of worker output names near its start, the way common
/// loggers print it: a word `ERROR`, `CRITICAL`, `FATAL`, `WARN`,
/// `WARNING`, `INFO`, `DEBUG` or `TRACE` (Python's `WARNING:root:...`,
/// `[ERROR] ...`, `2026-01-01 12:00:00 INFO ...`), or `level=warn` and
/// `"level":"warn"` in any case (logfmt, JSON).
fn announced_level(line: &str) -> Option<tracing::Level> {
    use tracing::Level;
    let mut end = line.len().min(120);
    while !line.is_char_boundary(end) {
        end -= 1;
    }
    let head = &line[..end];
    let level = |word: &str| match word {
        "ERROR" | "CRITICAL" | "FATAL" | "error" | "critical" | "fatal" => Some(Level::ERROR),
        "WARN" | "WARNING" | "warn" | "warning" => Some(Level::WARN),
        "INFO" | "info" => Some(Level::INFO),
        "DEBUG" | "TRACE" | "debug" | "trace" => Some(Level::DEBUG),
        _ => None,
    };
    for key in ["level=", "\"level\":\"", "\"level\": \""] {
        if let Some(at) = head.find(key) {
            let rest = &head[at + key.len()..];
            let word: String = rest
                .chars()
                .take_while(char::is_ascii_alphabetic)
                .map(|c| c.to_ascii_lowercase())
                .collect();
            return level(&word);
        }
    }
    // The first few words, upper case only: "error" in a sentence is not a
    // level.
    head.split(|c: char| !c.is_ascii_alphabetic())
        .filter(|w| !w.is_empty())
        .take(6)
        .filter(|w| w.bytes().all(|b| b.is_ascii_uppercase()))
        .find_map(level)
}

/// Counts and says the `dropped` lines of a worker's stream (nothing when
/// none were).
fn report_dropped(bot: &str, worker: u32, stream: &str, dropped: u64) {
    if dropped > 0 {
        metrics::counter!("botfleet_worker_log_lines_dropped_total", "bot" => bot.to_owned())
            .increment(dropped);
        tracing::warn!(target: "botfleet::worker", bot = %bot, worker, stream, dropped, "Worker output over the log's rate; lines dropped.");
    }
}

/// Lines a worker's stream may log: a burst of this many...
const LINE_BURST: f64 = 200.0;
/// ...refilled at this many a second.
const LINES_PER_SECOND: f64 = 100.0;

/// A token bucket of log lines: one stream of one worker, or the worker
/// socket's refusals.
#[derive(Debug)]
pub(crate) struct LogBudget {
    burst: f64,
    per_second: f64,
    tokens: f64,
    at: tokio::time::Instant,
    /// Lines dropped since the last one logged.
    dropped: u64,
}

/// Whether a line is logged, and how many were dropped before it.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Take {
    Log { dropped: u64 },
    Drop,
}

impl LogBudget {
    /// A burst of `burst` lines, refilled at `per_second`.
    pub(crate) fn new(now: tokio::time::Instant, burst: f64, per_second: f64) -> LogBudget {
        LogBudget {
            burst,
            per_second,
            tokens: burst,
            at: now,
            dropped: 0,
        }
    }

    /// Whether a line may be logged at `now`.
    pub(crate) fn take(&mut self, now: tokio::time::Instant) -> Take {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.per_second).min(self.burst);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Take::Log {
                dropped: std::mem::take(&mut self.dropped),
            }
        } else {
            self.dropped += 1;
            Take::Drop
        }
    }
}

/// Reads `reader` to its end and gives `emit` each line, as text: bytes
/// that are not UTF-8 become U+FFFD, a line over [`MAX_LINE`] is cut with
/// a note of what was dropped. The pipe is read to the end whatever comes
/// through it: a worker whose output stopped being read would get EPIPE
/// (or block) on its next write.
async fn relay_lines<R: tokio::io::AsyncBufRead + Unpin>(
    mut reader: R,
    mut emit: impl FnMut(&str),
) {
    let mut line: Vec<u8> = Vec::new();
    let mut dropped = 0usize;
    let mut flush = |line: &mut Vec<u8>, dropped: &mut usize| {
        let text = String::from_utf8_lossy(line);
        let text = text.trim_end_matches(['\r', '\n']);
        if *dropped > 0 {
            emit(&format!("{text} [line cut: {} more bytes]", *dropped));
        } else {
            emit(text);
        }
        line.clear();
        *dropped = 0;
    };
    loop {
        let chunk = match reader.fill_buf().await {
            Ok([]) => break,
            Ok(chunk) => chunk,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        // The line's bytes in this chunk (without its newline), and how
        // much of the chunk they use.
        let (part, used, end) = match chunk.iter().position(|&b| b == b'\n') {
            Some(i) => (&chunk[..i], i + 1, true),
            None => (chunk, chunk.len(), false),
        };
        let kept = part.len().min(MAX_LINE.saturating_sub(line.len()));
        line.extend_from_slice(&part[..kept]);
        dropped += part.len() - kept;
        reader.consume(used);
        if end {
            flush(&mut line, &mut dropped);
        }
    }
    if !line.is_empty() || dropped > 0 {
        flush(&mut line, &mut dropped);
    }
}

/// Sends `signal` to the whole process group led by `pid` (the worker and
/// anything it started). A group already gone is not an error.
pub(crate) fn signal_group(pid: u32, signal: rustix::process::Signal) {
    if let Some(pid) = rustix::process::Pid::from_raw(pid as i32) {
        let _ = rustix::process::kill_process_group(pid, signal);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_may_name_its_level() {
        use tracing::Level;
        let cases = [
            ("WARNING:root:disk almost full", Some(Level::WARN)),
            ("ERROR:bot:Traceback follows", Some(Level::ERROR)),
            ("[INFO] started", Some(Level::INFO)),
            (
                "2026-12-07 10:00:00,123 DEBUG worker: got update",
                Some(Level::DEBUG),
            ),
            (
                "time=2026-12-07T10:00:00Z level=Error msg=boom",
                Some(Level::ERROR),
            ),
            (r#"{"ts":1,"level":"warn","msg":"slow"}"#, Some(Level::WARN)),
            ("CRITICAL the database is gone", Some(Level::ERROR)),
            // Words in a sentence are not levels; neither are long prefixes.
            ("an error occurred while handling", None),
            ("Traceback (most recent call last):", None),
            ("a b c d e f g ERROR", None),
            ("", None),
        ];
        for (line, want) in cases {
            assert_eq!(announced_level(line), want, "{line:?}");
        }
    }

    #[test]
    fn a_burst_is_logged_then_lines_are_dropped_and_counted() {
        let t0 = tokio::time::Instant::now();
        let mut budget = LogBudget::new(t0, LINE_BURST, LINES_PER_SECOND);
        for _ in 0..200 {
            assert_eq!(budget.take(t0), Take::Log { dropped: 0 });
        }
        for _ in 0..50 {
            assert_eq!(budget.take(t0), Take::Drop);
        }
        // A second later, 100 more lines may go; the first says what was
        // dropped.
        let t1 = t0 + std::time::Duration::from_secs(1);
        assert_eq!(budget.take(t1), Take::Log { dropped: 50 });
        for _ in 0..99 {
            assert_eq!(budget.take(t1), Take::Log { dropped: 0 });
        }
        assert_eq!(budget.take(t1), Take::Drop);
    }

    async fn lines(input: Vec<u8>) -> Vec<String> {
        let mut out = Vec::new();
        // A small buffer, so lines span many reads.
        let reader = BufReader::with_capacity(64, std::io::Cursor::new(input));
        relay_lines(reader, |l| out.push(l.to_owned())).await;
        out
    }

    #[tokio::test]
    async fn bytes_that_are_not_utf8_are_replaced_and_the_reading_goes_on() {
        let got = lines(b"ok\nbad \xff\xfe byte\r\nafter\nno newline".to_vec()).await;
        assert_eq!(
            got,
            ["ok", "bad \u{fffd}\u{fffd} byte", "after", "no newline"]
        );
    }

    #[tokio::test]
    async fn a_line_longer_than_the_cap_is_cut_and_the_next_one_is_whole() {
        let mut input = vec![b'x'; MAX_LINE + 10_000];
        input.extend_from_slice(b"\nnext\n");
        let got = lines(input).await;
        assert_eq!(
            got.len(),
            2,
            "{:?}",
            got.iter().map(String::len).collect::<Vec<_>>()
        );
        assert!(got[0].starts_with(&"x".repeat(MAX_LINE)));
        assert!(
            got[0].ends_with(" [line cut: 10000 more bytes]"),
            "{}",
            &got[0][MAX_LINE..]
        );
        assert_eq!(got[1], "next");
    }
}
