//! Starting worker processes: each in its own process group, its output
//! captured into the supervisor's log with the bot and worker as fields.

use std::process::Stdio;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// What a worker process is started with.
#[derive(Clone, Debug)]
pub(crate) struct Spec {
    pub(crate) program: String,
    pub(crate) args: Vec<String>,
    /// Environment variables, added to the supervisor's own (values are
    /// never logged: some are secrets).
    pub(crate) env: Vec<(String, String)>,
}

/// Starts `spec` in a process group of its own, stdin closed, stdout and
/// stderr read line by line into the log.
pub(crate) fn spawn(spec: &Spec, bot: &str, worker: u32) -> std::io::Result<Child> {
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
    if let Some(out) = child.stdout.take() {
        tokio::spawn(relay(BufReader::new(out), bot.to_owned(), worker, "stdout"));
    }
    if let Some(err) = child.stderr.take() {
        tokio::spawn(relay(BufReader::new(err), bot.to_owned(), worker, "stderr"));
    }
    Ok(child)
}

async fn relay<R: tokio::io::AsyncBufRead + Unpin>(
    mut reader: R,
    bot: String,
    worker: u32,
    stream: &'static str,
) {
    let mut line = String::new();
    loop {
        line.clear();
        match reader.read_line(&mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {
                tracing::info!(target: "botfleet::worker", bot = %bot, worker, stream, "{}", line.trim_end());
            }
        }
    }
}

/// Sends `signal` to the whole process group led by `pid` (the worker and
/// anything it started). A group already gone is not an error.
pub(crate) fn signal_group(pid: u32, signal: rustix::process::Signal) {
    if let Some(pid) = rustix::process::Pid::from_raw(pid as i32) {
        let _ = rustix::process::kill_process_group(pid, signal);
    }
}
