//! Spawning and supervising server processes: the testkit's one place that
//! creates child processes.

use parking_lot::{Mutex, MutexGuard};
use std::ffi::OsStr;
use std::fs::File;
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::time::Duration;

use crate::error::{Error, Result};
use crate::wait::poll;

/// A `Command` for `program`. Every child of the testkit starts here.
pub(crate) fn command(program: impl AsRef<OsStr>) -> Command {
    #[expect(
        clippy::disallowed_methods,
        reason = "the testkit's spawn helper: servers, their tools and the watchdog"
    )]
    let command = Command::new(program);
    command
}

/// Runs `command` to completion, returning its stdout, or an error with its
/// stderr.
pub(crate) fn output(mut command: Command, what: &str) -> Result<String> {
    let output = command
        .stdin(Stdio::null())
        .output()
        .map_err(|e| Error::io(format!("cannot run {what}"), &e))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let stdout = String::from_utf8_lossy(&output.stdout);
        Err(Error::Io {
            context: format!("{what} failed ({})", output.status),
            detail: format!("{}{}", stderr.trim(), stdout.trim()),
        })
    }
}

/// The user a server runs as when the tests run as root. PostgreSQL refuses
/// to run as root, so servers run as `postgres` (or `nobody`).
#[derive(Clone, Copy, Debug)]
pub(crate) struct RunAs {
    uid: u32,
    gid: u32,
}

impl RunAs {
    /// `None` when the process is not root: servers then run as the
    /// current user.
    pub(crate) fn for_servers() -> Result<Option<RunAs>> {
        if effective_uid() != Some(0) {
            return Ok(None);
        }
        let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
        ["postgres", "nobody"]
            .iter()
            .find_map(|name| lookup_user(&passwd, name))
            .map(Some)
            .ok_or_else(|| {
                Error::Unsupported(
                    "the tests run as root, PostgreSQL refuses to, and there is no `postgres` or `nobody` user to run it as: create one (`useradd --system postgres`) or run the tests as a normal user".into(),
                )
            })
    }

    pub(crate) fn apply(self, command: &mut Command) {
        command.uid(self.uid).gid(self.gid);
    }

    pub(crate) fn chown(self, path: &Path) -> Result<()> {
        std::os::unix::fs::chown(path, Some(self.uid), Some(self.gid))
            .map_err(|e| Error::io(format!("chown {}", path.display()), &e))
    }
}

fn effective_uid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    // Real, effective, saved, filesystem.
    line.split_whitespace().nth(2)?.parse().ok()
}

fn lookup_user(passwd: &str, name: &str) -> Option<RunAs> {
    passwd.lines().find_map(|line| {
        let mut fields = line.split(':');
        if fields.next()? != name {
            return None;
        }
        let uid = fields.nth(1)?.parse().ok()?;
        let gid = fields.next()?.parse().ok()?;
        Some(RunAs { uid, gid })
    })
}

/// A long-running server child process, with its log file.
#[derive(Debug)]
pub(crate) struct ServerProcess {
    name: String,
    log: PathBuf,
    child: Mutex<Option<Child>>,
}

impl ServerProcess {
    pub(crate) fn new(name: impl Into<String>, log: PathBuf) -> Self {
        ServerProcess {
            name: name.into(),
            log,
            child: Mutex::new(None),
        }
    }

    fn child(&self) -> MutexGuard<'_, Option<Child>> {
        // A panic while holding the lock leaves a valid `Option<Child>`.
        self.child.lock()
    }

    /// Starts `command` with its output appended to the log, in a process
    /// group of its own (so a Ctrl-C meant for the tests does not kill it
    /// half-way; the watchdog cleans up instead).
    pub(crate) fn spawn(&self, mut command: Command) -> Result<()> {
        let log = File::options()
            .create(true)
            .append(true)
            .open(&self.log)
            .map_err(|e| Error::io(format!("cannot open {}", self.log.display()), &e))?;
        let log2 = log
            .try_clone()
            .map_err(|e| Error::io("cannot duplicate the log file", &e))?;
        command
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .process_group(0);
        let child = command
            .spawn()
            .map_err(|e| Error::io(format!("cannot start {}", self.name), &e))?;
        *self.child() = Some(child);
        Ok(())
    }

    /// The exit status, if the process has exited.
    pub(crate) fn exited(&self) -> Option<ExitStatus> {
        let mut guard = self.child();
        match guard.as_mut() {
            Some(child) => child.try_wait().ok().flatten(),
            None => None,
        }
    }

    /// The running child's process id.
    pub(crate) fn pid(&self) -> Option<u32> {
        self.child().as_ref().map(Child::id)
    }

    pub(crate) fn is_running(&self) -> bool {
        self.child().is_some() && self.exited().is_none()
    }

    /// Sends SIGKILL and reaps the process.
    pub(crate) fn kill(&self) -> Result<()> {
        let mut guard = self.child();
        if let Some(mut child) = guard.take() {
            let _ = child.kill();
            child
                .wait()
                .map_err(|e| Error::io(format!("cannot reap {}", self.name), &e))?;
        }
        Ok(())
    }

    /// Waits for the process to exit after a shutdown request; kills it if
    /// it takes longer than `timeout`.
    pub(crate) fn wait_exit(&self, timeout: Duration) -> Result<()> {
        let exited = poll(timeout, Duration::from_millis(10), || {
            self.exited().map(|_| ())
        });
        if exited.is_none() {
            self.kill()?;
            return Err(Error::Start {
                server: self.name.clone(),
                detail: format!("did not stop within {timeout:?} and was killed"),
            });
        }
        self.child().take();
        Ok(())
    }

    /// Asks the server to shut down with `request`, then waits for it to
    /// exit (killing it after `timeout`). Nothing to do if it is not running.
    pub(crate) fn stop_with(
        &self,
        timeout: Duration,
        request: impl FnOnce() -> Result<()>,
    ) -> Result<()> {
        if !self.is_running() {
            return Ok(());
        }
        request()?;
        self.wait_exit(timeout)
    }

    /// Starts the server with `launch` unless it is running.
    pub(crate) fn start_again_with(&self, launch: impl FnOnce() -> Result<()>) -> Result<()> {
        if self.is_running() {
            return Ok(());
        }
        launch()
    }

    /// Runs `launch` on a free port until the server starts. A port found
    /// free may be taken before the server binds it; when the log says so
    /// (it contains `taken`), the start is retried on another port, up to
    /// five times. Returns the port and what `launch` returned.
    pub(crate) fn start_on_free_port<T>(
        &self,
        taken: &str,
        mut launch: impl FnMut(u16) -> Result<T>,
    ) -> Result<(u16, T)> {
        let mut attempts = 0;
        loop {
            let port = crate::port::free_port()?;
            let log_start = self.log().len();
            match launch(port) {
                Ok(value) => return Ok((port, value)),
                Err(error) => {
                    let _ = self.kill();
                    attempts += 1;
                    let port_taken = self.log().get(log_start..).unwrap_or("").contains(taken);
                    if !port_taken || attempts == 5 {
                        return Err(error);
                    }
                }
            }
        }
    }

    /// The last lines of the server's log, for error messages.
    pub(crate) fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        let tail = &lines[lines.len().saturating_sub(15)..];
        format!(
            "\n--- last lines of {} ---\n{}",
            self.log.display(),
            tail.join("\n")
        )
    }

    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// Removes a server's directory after the test process is gone, however it
/// ended (normal exit, panic, `kill -9`).
///
/// A small `sh` reads its stdin until end of file. Only this process holds
/// the other end of that pipe (std opens pipes close-on-exec), so end of
/// file means the test process has exited; the shell then stops the server
/// named in `pidfile` and deletes `dir`.
#[derive(Debug)]
pub(crate) struct Watchdog {
    stdin: Option<ChildStdin>,
    child: Child,
}

const WATCHDOG: &str = r#"
trap '' INT TERM HUP
cat >/dev/null
pidfile=$1 name=$2 signal=$3 dir=$4
if [ -f "$pidfile" ]; then
  pid=$(head -n 1 "$pidfile")
  if [ -n "$pid" ] && grep -q "$name" "/proc/$pid/cmdline" 2>/dev/null; then
    kill -"$signal" "$pid" 2>/dev/null
    i=0
    while kill -0 "$pid" 2>/dev/null && [ "$i" -lt 100 ]; do sleep 0.05; i=$((i + 1)); done
    kill -KILL "$pid" 2>/dev/null
  fi
fi
rm -rf "$dir"
"#;

impl Watchdog {
    /// `name` must appear in the server's command line (a guard against a
    /// stale pid file naming an unrelated process); `signal` is the one that
    /// stops the server quickly (`QUIT` for PostgreSQL, `TERM` for Redis).
    pub(crate) fn arm(pidfile: &Path, name: &str, signal: &str, dir: &Path) -> Result<Watchdog> {
        let mut command = command("sh");
        command
            .arg("-c")
            .arg(WATCHDOG)
            .arg("botfleet-testkit-watchdog")
            .arg(pidfile)
            .arg(name)
            .arg(signal)
            .arg(dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0);
        let mut child = command
            .spawn()
            .map_err(|e| Error::io("cannot start the cleanup watchdog (is `sh` installed?)", &e))?;
        let stdin = child.stdin.take();
        Ok(Watchdog { stdin, child })
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        if let Some(mut stdin) = self.stdin.take() {
            let _ = stdin.flush();
        }
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_are_read_from_passwd() {
        let passwd = "root:x:0:0:root:/root:/bin/bash\npostgres:x:101:104:PostgreSQL:/var/lib/postgresql:/bin/bash\n";
        let user = lookup_user(passwd, "postgres").unwrap();
        assert_eq!((user.uid, user.gid), (101, 104));
        assert!(lookup_user(passwd, "nobody").is_none());
    }

    #[test]
    fn effective_uid_is_known_on_linux() {
        assert!(effective_uid().is_some());
    }
}
