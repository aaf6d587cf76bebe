//! Prometheus: `promtool`, which checks what the monitor exposes, and a
//! real Prometheus server that scrapes it.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use crate::process::{ServerProcess, Watchdog, command};
use crate::wait::poll;
use crate::{Error, Result, TempDir};

/// How long a Prometheus may take to be ready.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// `name` on PATH, `/usr/bin` or `/usr/local/bin`, from Debian's
/// `package`.
pub(crate) fn find(name: &str, package: &str) -> Result<PathBuf> {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .chain([PathBuf::from("/usr/bin"), PathBuf::from("/usr/local/bin")])
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
        .ok_or_else(|| Error::MissingBinary {
            what: name.into(),
            searched: "on PATH, /usr/bin and /usr/local/bin".into(),
            install: format!("install it with `apt-get install {package}` (Debian, Ubuntu)"),
        })
}

/// `prometheus` on PATH, `/usr/bin` or `/usr/local/bin`.
pub(crate) fn find_prometheus() -> Result<PathBuf> {
    find("prometheus", "prometheus")
}

/// Debian's Alertmanager (`prometheus-alertmanager`).
pub(crate) fn find_alertmanager() -> Result<PathBuf> {
    find("prometheus-alertmanager", "prometheus-alertmanager")
        .or_else(|_| find("alertmanager", "prometheus-alertmanager"))
}

/// Starts `what` with the arguments `args(port)` gives, on a free loopback
/// port, and waits for `ready` (a path answering 200); its pid goes to
/// `pidfile` for the watchdog.
pub(crate) fn start_ready(
    ready: &str,
    what: &str,
    binary: &std::path::Path,
    dir: &std::path::Path,
    pidfile: &std::path::Path,
    args: impl Fn(u16) -> Vec<String>,
) -> Result<(ServerProcess, u16)> {
    let process = ServerProcess::new(what, dir.join(format!("{}.log", what.to_lowercase())));
    let (port, ()) = process.start_on_free_port("address already in use", |port| {
        let mut cmd = command(binary);
        cmd.args(args(port)).current_dir(dir);
        process.spawn(cmd)?;
        if let Some(pid) = process.pid() {
            let _ = std::fs::write(pidfile, pid.to_string());
        }
        let outcome = poll(START_TIMEOUT, Duration::from_millis(50), || {
            if let Some(status) = process.exited() {
                return Some(Err(format!("{what} exited ({status})")));
            }
            http_get(port, ready)
                .is_some_and(|r| r.starts_with("HTTP/1.0 200") || r.starts_with("HTTP/1.1 200"))
                .then_some(Ok(()))
        });
        match outcome {
            Some(Ok(())) => Ok(()),
            Some(Err(detail)) => Err(Error::Start {
                server: format!("{what} on port {port}"),
                detail: format!("{detail}{}", process.log_tail()),
            }),
            None => Err(Error::Start {
                server: format!("{what} on port {port}"),
                detail: format!("not ready after {START_TIMEOUT:?}{}", process.log_tail()),
            }),
        }
    })?;
    Ok((process, port))
}

/// A Prometheus server of this test process, on a free loopback port,
/// scraping one target every second. Stopped on drop, and by a watchdog if
/// the test process dies first.
#[derive(Debug)]
pub struct PrometheusServer {
    served: Served,
}

/// A server process of this module on its port, with its watchdog and
/// folder; killed on drop.
#[derive(Debug)]
pub(crate) struct Served {
    pub(crate) process: ServerProcess,
    pub(crate) port: u16,
    pub(crate) _watchdog: Watchdog,
    pub(crate) _dir: TempDir,
}

impl Served {
    pub(crate) fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub(crate) fn log(&self) -> String {
        self.process.log()
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.process.kill();
    }
}

impl PrometheusServer {
    /// Starts one that scrapes `target` (`host:port`, its `/metrics`) every
    /// second, with `bearer` as the token when given.
    pub fn start(target: &str, bearer: Option<&str>) -> Result<PrometheusServer> {
        let binary = find_prometheus()?;
        let dir = TempDir::new("prometheus")?;
        let authorization = bearer
            .map(|t| format!("    authorization:\n      credentials: \"{t}\"\n"))
            .unwrap_or_default();
        let config = format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
             scrape_configs:\n  - job_name: botfleet\n{authorization}    static_configs:\n      - targets: [\"{target}\"]\n"
        );
        let config_file = dir.path().join("prometheus.yml");
        std::fs::write(&config_file, config)
            .map_err(|e| Error::io("cannot write prometheus.yml", &e))?;
        let pidfile = dir.path().join("prometheus.pid");
        let watchdog = Watchdog::arm(&pidfile, "prometheus", "TERM", dir.path())?;
        let data = dir.path().join("data");
        let (process, port) = start_ready(
            "/-/ready",
            "Prometheus",
            &binary,
            dir.path(),
            &pidfile,
            |port| {
                vec![
                    format!("--config.file={}", config_file.display()),
                    format!("--storage.tsdb.path={}", data.display()),
                    format!("--web.listen-address=127.0.0.1:{port}"),
                ]
            },
        )?;
        Ok(PrometheusServer {
            served: Served {
                process,
                port,
                _watchdog: watchdog,
                _dir: dir,
            },
        })
    }

    /// Its base URL (`http://127.0.0.1:PORT`).
    pub fn url(&self) -> String {
        self.served.url()
    }

    /// Its log so far.
    pub fn log(&self) -> String {
        self.served.log()
    }
}

/// A plain HTTP/1.1 GET on loopback, for readiness: the response's first
/// bytes (its status line), without waiting for a server that keeps the
/// connection open.
fn http_get(port: u16, path: &str) -> Option<String> {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .ok()?;
    let mut head = [0u8; 64];
    let n = stream.read(&mut head).ok()?;
    Some(String::from_utf8_lossy(&head[..n]).into_owned())
}

/// `promtool` on PATH, `/usr/bin` or `/usr/local/bin`.
pub fn promtool() -> Result<PathBuf> {
    find("promtool", "prometheus")
}

/// `promtool check metrics` on `text` (Prometheus's exposition linter):
/// whether it passed, and what it said.
pub fn check_metrics(text: &str) -> Result<(bool, String)> {
    let mut child = command(promtool()?)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Error::io("promtool check metrics", &e))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(text.as_bytes())
            .map_err(|e| Error::io("promtool's stdin", &e))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| Error::io("promtool check metrics", &e))?;
    let said =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    Ok((out.status.success(), said))
}

/// `promtool check rules` on a rule file of `text` (Prometheus's YAML):
/// whether it passed, and what it said.
pub fn check_rules(text: &str) -> Result<(bool, String)> {
    let dir = TempDir::new("rules")?;
    let file = dir.path().join("rules.yml");
    std::fs::write(&file, text).map_err(|e| Error::io("cannot write rules.yml", &e))?;
    let out = command(promtool()?)
        .args(["check", "rules"])
        .arg(&file)
        .output()
        .map_err(|e| Error::io("promtool check rules", &e))?;
    let said =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    Ok((out.status.success(), said))
}

/// An Alertmanager of this test process (Debian's
/// `prometheus-alertmanager`), on a free loopback port, clustering off.
/// Stopped on drop, and by a watchdog if the test process dies first.
#[derive(Debug)]
pub struct AlertmanagerServer {
    served: Served,
}

impl AlertmanagerServer {
    /// Starts one that takes alerts and groups them for a receiver that
    /// sends nowhere (what it received is read back from its API).
    pub fn start() -> Result<AlertmanagerServer> {
        let binary = find_alertmanager()?;
        let dir = TempDir::new("alertmanager")?;
        let config = "route:\n  receiver: none\n  group_wait: 1s\n  group_interval: 1s\nreceivers:\n  - name: none\n";
        let config_file = dir.path().join("alertmanager.yml");
        std::fs::write(&config_file, config)
            .map_err(|e| Error::io("cannot write alertmanager.yml", &e))?;
        let pidfile = dir.path().join("alertmanager.pid");
        let watchdog = Watchdog::arm(&pidfile, "alertmanager", "TERM", dir.path())?;
        let data = dir.path().join("data");
        let (process, port) = start_ready(
            "/-/ready",
            "Alertmanager",
            &binary,
            dir.path(),
            &pidfile,
            |port| {
                vec![
                    format!("--config.file={}", config_file.display()),
                    format!("--storage.path={}", data.display()),
                    format!("--web.listen-address=127.0.0.1:{port}"),
                    "--cluster.listen-address=".to_owned(),
                ]
            },
        )?;
        Ok(AlertmanagerServer {
            served: Served {
                process,
                port,
                _watchdog: watchdog,
                _dir: dir,
            },
        })
    }

    /// Its base URL (`http://127.0.0.1:PORT`).
    pub fn url(&self) -> String {
        self.served.url()
    }

    /// Its log so far.
    pub fn log(&self) -> String {
        self.served.log()
    }
}
