//! Commands against a running fleet, through its monitor's API:
//! `botfleet status`, `reload`, `restart`, `stop`, `start`; and the files
//! `run` writes so they find it (`monitor.url`, and `control.token`, mode
//! 0600, in its data directory).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::Args;

use crate::exit;

/// The file with the control token, in the data directory.
const TOKEN_FILE: &str = "control.token";
/// The file with the monitor's address, in the data directory.
const URL_FILE: &str = "monitor.url";

/// A fresh control token: 32 hex digits from the system's random source.
pub(crate) fn new_token() -> String {
    let mut bytes = [0u8; 16];
    // /dev/urandom does not fail on Linux once booted; a short read still
    // leaves a token nobody can guess from outside the process.
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        let _ = std::io::Read::read_exact(&mut f, &mut bytes);
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The files `run` wrote; removed when it stops.
pub(crate) struct ControlFiles {
    token: PathBuf,
    url: PathBuf,
}

impl ControlFiles {
    /// The token's file, for `--token-file` (the demo prints it).
    #[cfg(feature = "bench")]
    pub(crate) fn token_path(&self) -> &Path {
        &self.token
    }

    /// Removes both.
    pub(crate) fn remove(self) {
        let _ = std::fs::remove_file(&self.token);
        let _ = std::fs::remove_file(&self.url);
    }
}

/// Writes `monitor.url` and `control.token` (0600) in `data_dir`.
pub(crate) fn write_files(
    data_dir: &Path,
    addr: std::net::SocketAddr,
    token: &str,
) -> anyhow::Result<ControlFiles> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("cannot create {}", data_dir.display()))?;
    let token_path = data_dir.join(TOKEN_FILE);
    let _ = std::fs::remove_file(&token_path);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&token_path)
        .with_context(|| format!("cannot write {}", token_path.display()))?;
    f.write_all(token.as_bytes())?;
    let url_path = data_dir.join(URL_FILE);
    std::fs::write(&url_path, format!("http://{addr}\n"))
        .with_context(|| format!("cannot write {}", url_path.display()))?;
    Ok(ControlFiles {
        token: token_path,
        url: url_path,
    })
}

/// How a command finds the fleet.
#[derive(Debug, Args)]
pub(crate) struct Remote {
    /// The fleet's monitor, such as http://127.0.0.1:8001 [default: what
    /// `run` wrote in --data-dir, else the fleet file's `[monitor] bind`].
    #[arg(long, value_name = "URL")]
    url: Option<String>,
    /// A file holding the control token [default: control.token in
    /// --data-dir, else the fleet file's `[monitor] token`].
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,
    /// The data directory `botfleet run` was given.
    #[arg(long, value_name = "DIR", default_value = "botfleet-data")]
    data_dir: PathBuf,
    /// The fleet file, read when the data directory says nothing.
    #[arg(long = "config", value_name = "FLEET_FILE", env = crate::cli::BOTFLEET_CONFIG, default_value = botfleet_config::DEFAULT_CONFIG_FILE)]
    config: PathBuf,
}

/// A fleet found: its base URL and token.
struct Fleet {
    url: String,
    token: Option<String>,
    /// Where the token came from, for errors.
    token_from: String,
}

impl Remote {
    fn find(&self) -> anyhow::Result<Fleet> {
        let fleet_file = || botfleet_config::load(&self.config).ok();
        let url = match &self.url {
            Some(u) => u.trim_end_matches('/').to_owned(),
            None => match std::fs::read_to_string(self.data_dir.join(URL_FILE)) {
                Ok(u) => u.trim().trim_end_matches('/').to_owned(),
                Err(_) => match fleet_file() {
                    Some(c) => format!("http://{}", c.monitor.bind),
                    None => format!("http://{}", botfleet_config::DEFAULT_MONITOR_BIND),
                },
            },
        };
        let (token, token_from) = match &self.token_file {
            Some(f) => (
                Some(
                    std::fs::read_to_string(f)
                        .with_context(|| format!("cannot read the token file {}", f.display()))?
                        .trim()
                        .to_owned(),
                ),
                f.display().to_string(),
            ),
            None => {
                let path = self.data_dir.join(TOKEN_FILE);
                match std::fs::read_to_string(&path) {
                    Ok(t) => (Some(t.trim().to_owned()), path.display().to_string()),
                    Err(_) => (
                        fleet_file().and_then(|c| c.monitor.token.map(|t| t.expose().clone())),
                        format!("{}'s [monitor] token", self.config.display()),
                    ),
                }
            }
        };
        Ok(Fleet {
            url,
            token,
            token_from,
        })
    }
}

impl Fleet {
    /// GETs or POSTs `path`; the JSON answer, or an error that says what
    /// went wrong in the user's terms.
    async fn call(&self, post: bool, path: &str) -> anyhow::Result<serde_json::Value> {
        let client = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(600))
            .build()?;
        let url = format!("{}{path}", self.url);
        let mut request = if post {
            client.post(&url)
        } else {
            client.get(&url)
        };
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.map_err(|e| {
            if e.is_connect() || e.is_timeout() {
                anyhow::anyhow!(
                    "no fleet answers at {} (is `botfleet run` running? give --url, or the --data-dir it was given)",
                    self.url
                )
            } else {
                anyhow::anyhow!("{}: {e}", self.url)
            }
        })?;
        let status = response.status();
        let body: serde_json::Value = response
            .json()
            .await
            .unwrap_or_else(|_| serde_json::json!({}));
        if status == reqwest::StatusCode::UNAUTHORIZED {
            match &self.token {
                Some(_) => bail!(
                    "the fleet at {} refused the token from {} (give the running fleet's --token-file, or its --data-dir)",
                    self.url,
                    self.token_from
                ),
                None => bail!(
                    "the fleet at {} wants a token and none was found (give --token-file, or the --data-dir `botfleet run` was given)",
                    self.url
                ),
            }
        }
        if !status.is_success() {
            let why = body["error"]
                .as_str()
                .unwrap_or("no reason given")
                .to_owned();
            bail!("{why}");
        }
        Ok(body)
    }
}

/// What `botfleet logs` asks.
#[derive(Debug, Args)]
pub(crate) struct LogsArgs {
    /// Only this bot's workers.
    bot: Option<String>,
    /// Only this worker slot (the `worker` label; `status` lists them).
    #[arg(long, value_name = "N")]
    worker: Option<u32>,
    /// Keep printing new lines until Ctrl-C.
    #[arg(long, short)]
    follow: bool,
    /// Lines from this long ago [default: all the fleet kept, 1,000 per
    /// worker].
    #[arg(long, value_name = "DURATION", value_parser = botfleet_config::duration::positive_arg)]
    since: Option<std::time::Duration>,
    /// This level and above: debug, info, warn, error.
    #[arg(long, default_value = "debug", value_parser = ["debug", "info", "warn", "error"])]
    level: String,
}

/// What `botfleet top` asks.
#[derive(Debug, Args)]
pub(crate) struct TopArgs {
    /// Between two frames.
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = botfleet_config::duration::positive_arg)]
    interval: std::time::Duration,
    /// Stop after this many frames [default: until Ctrl-C].
    #[arg(long, value_name = "N")]
    frames: Option<u32>,
}

/// What a remote command asks.
#[derive(Debug)]
pub(crate) enum Ask {
    Status {
        json: bool,
    },
    Analyze {
        window: std::time::Duration,
        json: bool,
    },
    Top(TopArgs),
    Logs(LogsArgs),
    Reload,
    Restart(String),
    Stop(String),
    Start(String),
}

pub(crate) fn run(ask: &Ask, remote: &Remote) -> anyhow::Result<ExitCode> {
    let fleet = remote.find()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    if let Ask::Logs(args) = ask {
        return runtime.block_on(logs(&fleet, args));
    }
    if let Ask::Top(args) = ask {
        return runtime.block_on(top(&fleet, args));
    }
    let (post, path) = match ask {
        Ask::Logs(_) | Ask::Top(_) => unreachable!("answered above"),
        Ask::Status { .. } => (false, "/api/v1/fleet".to_owned()),
        Ask::Analyze { window, .. } => (
            false,
            format!("/performance/report?window={}s", window.as_secs().max(2)),
        ),
        Ask::Reload => (true, "/api/v1/reload".to_owned()),
        Ask::Restart(bot) => (true, format!("/api/v1/bots/{bot}/restart")),
        Ask::Stop(bot) => (true, format!("/api/v1/bots/{bot}/stop")),
        Ask::Start(bot) => (true, format!("/api/v1/bots/{bot}/start")),
    };
    let answer = runtime.block_on(fleet.call(post, &path))?;
    let mut out = std::io::stdout().lock();
    match ask {
        Ask::Logs(_) | Ask::Top(_) => {}
        Ask::Status { json: true } => writeln!(out, "{answer}")?,
        Ask::Status { json: false } => status_table(&mut out, &answer)?,
        Ask::Analyze { json, .. } => {
            let analysis = &answer["analysis"];
            if analysis.is_null() {
                bail!(
                    "the fleet at {} serves no analysis in /performance/report (a botfleet older than `analyze`?)",
                    fleet.url
                );
            }
            if *json {
                writeln!(out, "{analysis}")?;
            } else {
                super::analyze::print(&mut out, analysis, &fleet.url)?;
            }
            if analysis["healthy"].as_bool() != Some(true) {
                return Ok(ExitCode::from(exit::FAILURE));
            }
        }
        Ask::Reload => {
            let list = |key: &str| -> String {
                answer[key]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|v| v.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    })
                    .unwrap_or_default()
            };
            let mut changes = Vec::new();
            for key in ["added", "removed", "rolled", "restarted"] {
                let l = list(key);
                if !l.is_empty() {
                    changes.push(format!("{key} {l}"));
                }
            }
            if changes.is_empty() {
                writeln!(out, "reloaded; no bot changed")?;
            } else {
                writeln!(out, "reloaded: {}", changes.join("; "))?;
            }
            let problems = list("problems");
            if !problems.is_empty() {
                writeln!(out, "problems: {problems}")?;
                return Ok(ExitCode::from(exit::FAILURE));
            }
        }
        Ask::Restart(bot) | Ask::Stop(bot) | Ask::Start(bot) => {
            writeln!(out, "{bot} {}", answer["done"].as_str().unwrap_or("done"))?;
        }
    }
    Ok(ExitCode::from(exit::OK))
}

/// Prints the lines `args` asks for, and with `--follow` the new ones
/// every half second.
async fn logs(fleet: &Fleet, args: &LogsArgs) -> anyhow::Result<ExitCode> {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let mut since = args
        .since
        .map_or(0, |d| now_ms.saturating_sub(d.as_millis() as u64));
    loop {
        let mut query = vec![
            ("since".to_owned(), since.to_string()),
            ("level".to_owned(), args.level.clone()),
        ];
        if let Some(bot) = &args.bot {
            query.push(("bot".to_owned(), bot.clone()));
        }
        if let Some(w) = args.worker {
            query.push(("worker".to_owned(), w.to_string()));
        }
        let path = format!(
            "/api/v1/logs?{}",
            serde_urlencoded::to_string(&query).unwrap_or_default()
        );
        let answer = fleet.call(false, &path).await?;
        let mut out = std::io::stdout().lock();
        for l in answer["lines"].as_array().into_iter().flatten() {
            let t = l["t_ms"].as_u64().unwrap_or(0);
            since = since.max(t);
            writeln!(
                out,
                "{} {}/{} [{}] {:<5} {}",
                botfleet_monitor::notify::rfc3339((t / 1000) as i64),
                l["bot"].as_str().unwrap_or("?"),
                l["worker"],
                l["pid"],
                l["level"].as_str().unwrap_or("?").to_uppercase(),
                l["line"].as_str().unwrap_or("")
            )?;
        }
        out.flush()?;
        drop(out);
        if !args.follow {
            return Ok(ExitCode::from(exit::OK));
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
}

/// The status table redrawn every `--interval`, with the alerts firing
/// and pending: `pm2 monit` for a fleet.
async fn top(fleet: &Fleet, args: &TopArgs) -> anyhow::Result<ExitCode> {
    use std::io::IsTerminal;
    let mut view = super::live::Live::new(std::io::stdout().is_terminal());
    let mut frames = 0;
    loop {
        let status = fleet.call(false, "/api/v1/fleet").await?;
        let alerts = fleet.call(false, "/api/v1/alerts").await.ok();
        let mut table = Vec::new();
        status_table(&mut table, &status)?;
        let mut lines = vec![format!(
            "botfleet top: {} (every {}; Ctrl-C ends)",
            fleet.url,
            botfleet_config::duration::format(args.interval)
        )];
        lines.extend(String::from_utf8_lossy(&table).lines().map(str::to_owned));
        lines.push(alert_line(alerts.as_ref()));
        view.draw(&mut std::io::stdout().lock(), &lines)?;
        frames += 1;
        if args.frames.is_some_and(|n| frames >= n) {
            return Ok(ExitCode::from(exit::OK));
        }
        tokio::time::sleep(args.interval).await;
    }
}

/// `alerts: 1 firing (BotSlow bot=dating), 2 pending`.
fn alert_line(alerts: Option<&serde_json::Value>) -> String {
    let Some(alerts) = alerts.and_then(|a| a["alerts"].as_array()) else {
        return "alerts: - (this fleet runs no rules)".to_owned();
    };
    let named = |a: &serde_json::Value| {
        let labels = a["labels"].as_object();
        let name = labels
            .and_then(|l| l.get("alertname"))
            .and_then(|v| v.as_str())
            .unwrap_or("?");
        match labels.and_then(|l| l.get("bot")).and_then(|v| v.as_str()) {
            Some(bot) => format!("{name} bot={bot}"),
            None => name.to_owned(),
        }
    };
    let firing: Vec<String> = alerts
        .iter()
        .filter(|a| a["state"] == "firing")
        .map(named)
        .collect();
    let pending = alerts.iter().filter(|a| a["state"] == "pending").count();
    if firing.is_empty() {
        format!("alerts: none firing, {pending} pending")
    } else {
        format!(
            "alerts: {} firing ({}), {pending} pending",
            firing.len(),
            firing.join(", ")
        )
    }
}

/// `pm2 ls` for a fleet: a line per bot, a line per worker under it.
fn status_table(out: &mut impl Write, fleet: &serde_json::Value) -> std::io::Result<()> {
    let num = |v: &serde_json::Value, digits: usize| {
        v.as_f64()
            .map_or_else(|| "-".to_owned(), |x| format!("{x:.digits$}"))
    };
    writeln!(
        out,
        "{:<14} {:>6} {:>8} {:<9} {:>8} {:>8} {:>6} {:>8} {:>9} {:>8} {:>6} {:>5} {:>7}",
        "bot/worker",
        "slot",
        "pid",
        "state",
        "uptime",
        "restarts",
        "cpu%",
        "mem MiB",
        "updates/s",
        "p99 ms",
        "queue",
        "429s",
        "failed"
    )?;
    for bot in fleet["bots"].as_array().into_iter().flatten() {
        writeln!(
            out,
            "{:<14} {:>6} {:>8} {:<9} {:>8} {:>8} {:>6} {:>8} {:>9} {:>8} {:>6} {:>5} {:>7}",
            bot["name"].as_str().unwrap_or("?"),
            "",
            "",
            bot["state"].as_str().unwrap_or("?"),
            "",
            bot["restarts"],
            "",
            "",
            num(&bot["rate"], 1),
            num(&bot["p99_ms"], 1),
            bot["queue"],
            bot["throttled"],
            format!("{}/{}", bot["failed"], bot["dead_lettered"]),
        )?;
        for w in bot["workers"].as_array().into_iter().flatten() {
            let uptime = w["uptime_s"].as_u64().map_or_else(
                || "-".to_owned(),
                |s| botfleet_config::duration::format(std::time::Duration::from_secs(s)),
            );
            writeln!(
                out,
                "{:<14} {:>6} {:>8} {:<9} {:>8} {:>8} {:>6} {:>8}",
                "",
                w["slot"],
                w["pid"],
                w["state"].as_str().unwrap_or("?"),
                uptime,
                w["restarts"],
                num(&w["cpu_pct"], 1),
                num(&w["rss_mib"], 1),
            )?;
        }
    }
    Ok(())
}
