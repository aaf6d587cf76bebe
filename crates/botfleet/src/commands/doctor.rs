//! `botfleet doctor [FILE] [--json] [--start-workers]`: is this machine
//! ready to run the fleet file in production? Each check probes the real
//! thing (Telegram with each token, PostgreSQL, Redis, the worker
//! programs, the directories, the limits) and says what to change when it
//! fails (docs/operating.md, "Before production"). The report's shape and
//! the rules are `botfleet_analyze::doctor`'s.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use botfleet_analyze::doctor::{self, Check, Report};
use botfleet_config::{FleetConfig, IngestMode};
use botfleet_db::Row as _;
use clap::Args;

use crate::exit;

/// How long one probe may take.
const PROBE: Duration = Duration::from_secs(10);

#[derive(Debug, Args)]
pub(crate) struct DoctorArgs {
    /// The fleet file.
    #[arg(value_name = "FILE", env = crate::cli::BOTFLEET_CONFIG, default_value = botfleet_config::DEFAULT_CONFIG_FILE)]
    file: PathBuf,
    /// One JSON document: `{ok, checks: [{name, ok, detail, fix}]}`.
    #[arg(long)]
    json: bool,
    /// Also start each bot's worker program once and wait for its hello.
    #[arg(long)]
    start_workers: bool,
    /// The data directory `botfleet run` will be given.
    #[arg(long, value_name = "DIR", default_value = "botfleet-data")]
    data_dir: PathBuf,
    /// The socket directory `botfleet run` will be given [default: a new
    /// private directory under the system's temporary directory].
    #[arg(long, value_name = "DIR")]
    socket_dir: Option<PathBuf>,
}

pub(crate) fn run(args: &DoctorArgs) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let report = runtime.block_on(checks(args));
    let mut out = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer_pretty(&mut out, &report)?;
        writeln!(out)?;
    } else {
        out.write_all(report.text().as_bytes())?;
    }
    Ok(ExitCode::from(if report.ok {
        exit::OK
    } else {
        exit::FAILURE
    }))
}

async fn checks(args: &DoctorArgs) -> Report {
    let mut checks = Vec::new();
    let config = match botfleet_config::load(&args.file) {
        Ok(c) => {
            checks.push(Check::pass(
                "fleet file",
                format!("{}: {}", args.file.display(), c.summary()),
            ));
            c
        }
        Err(e) => {
            let fix = if args.file.is_file() {
                "correct the file (`botfleet config check` lists every problem with its line)"
            } else {
                "give the fleet file's path (FILE, or $BOTFLEET_CONFIG)"
            };
            checks.push(Check::fail(
                "fleet file",
                format!("{}: {e}", args.file.display()),
                fix,
            ));
            return Report::of(checks);
        }
    };
    for bot in &config.bots {
        checks.extend(telegram(&config, bot).await);
    }
    checks.extend(database(&config, &args.data_dir).await);
    if let Some(redis) = &config.redis {
        checks.extend(redis_checks(redis.expose_url()).await);
    }
    for bot in &config.bots {
        let found = super::config::worker_program(bot);
        match found {
            Err(e) => checks.push(Check::fail(
                format!("worker {}", bot.name),
                format!("the worker command {e}"),
                "install the worker program, or correct [bot.worker] command (a path, or a name on the PATH of botfleet or of the bot's env)",
            )),
            Ok(path) => {
                if args.start_workers {
                    checks.push(hello(bot, &path).await);
                } else {
                    checks.push(Check::pass(
                        format!("worker {}", bot.name),
                        format!("{} exists and is executable (--start-workers starts it once)", path.display()),
                    ));
                }
            }
        }
    }
    checks.push(directory("data directory", &args.data_dir, "--data-dir"));
    match &args.socket_dir {
        Some(dir) => checks.push(directory("socket directory", dir, "--socket-dir")),
        None => checks.push(directory(
            "socket directory",
            &std::env::temp_dir(),
            "--socket-dir",
        )),
    }
    checks.push(descriptors(&config));
    checks.push(disk(&config, &args.data_dir));
    checks.push(monitor(&config).await);
    Report::of(checks)
}

/// A probe's answer within [`PROBE`], or the failed check `name`: `what`
/// and the error with `fix`, or no answer with `silent_fix`.
fn probed<T, E: std::fmt::Display>(
    name: &str,
    answer: Result<Result<T, E>, tokio::time::error::Elapsed>,
    what: &str,
    fix: &str,
    silent_fix: &str,
) -> Result<T, Check> {
    match answer {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(Check::fail(name, format!("{what}: {e}"), fix)),
        Err(_) => Err(Check::fail(
            name,
            format!("no answer within {} s", PROBE.as_secs()),
            silent_fix,
        )),
    }
}

/// `getMe` with the bot's token at `api_url`, and its webhook against its
/// mode.
async fn telegram(config: &FleetConfig, bot: &botfleet_config::BotConfig) -> Vec<Check> {
    let name = format!("telegram {}", bot.name);
    let client = match botfleet_telegram::Client::builder(bot.token.expose())
        .config(&config.telegram)
        .bot(bot.name.clone())
        // One attempt: a refused connection is the answer.
        .retries(1, Duration::from_millis(100))
        .timeout(PROBE)
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            return vec![Check::fail(
                name,
                format!("no client: {e}"),
                "correct [telegram] in the fleet file",
            )];
        }
    };
    let me = match tokio::time::timeout(PROBE, client.get_me()).await {
        Err(_) => {
            return vec![Check::fail(
                name,
                format!(
                    "getMe got no answer from {} within {} s",
                    config.telegram.api_url,
                    PROBE.as_secs()
                ),
                "check the network path to telegram.api_url (a proxy, a firewall, DNS)",
            )];
        }
        Ok(Err(e)) if matches!(e.kind, botfleet_telegram::ErrorKind::Unauthorized) => {
            return vec![Check::fail(
                name,
                format!(
                    "{} refused the token of bot `{}` (401 Unauthorized)",
                    config.telegram.api_url, bot.name
                ),
                "the token is wrong or revoked: take the bot's token from @BotFather (/token) and set it in the fleet file or its secret",
            )];
        }
        Ok(Err(e)) => {
            return vec![Check::fail(
                name,
                format!("getMe at {}: {}", config.telegram.api_url, e.kind),
                "check telegram.api_url and the network path to it",
            )];
        }
        Ok(Ok(me)) => me,
    };
    let mut checks = vec![Check::pass(
        name.clone(),
        format!(
            "getMe: @{} (id {})",
            me.username.as_deref().unwrap_or("?"),
            me.id
        ),
    )];
    let webhook = format!("webhook {}", bot.name);
    match tokio::time::timeout(PROBE, client.get_webhook_info()).await {
        Ok(Ok(info)) => match bot.mode {
            IngestMode::Polling if !info.url.is_empty() => checks.push(Check::fail(
                webhook,
                format!(
                    "a webhook is set ({}) while the fleet file polls: getUpdates answers 409 Conflict while it is",
                    info.url
                ),
                format!(
                    "delete it (deleteWebhook, or `curl {}/bot<TOKEN>/deleteWebhook`), or set mode = \"webhook\" for bot `{}`",
                    config.telegram.api_url.trim_end_matches('/'),
                    bot.name
                ),
            )),
            IngestMode::Polling => {
                checks.push(Check::pass(webhook, "none set: polling will work"));
            }
            _ => {
                let want = bot.webhook.as_ref().map(|w| w.url.as_str()).unwrap_or("");
                let detail = if info.url.is_empty() {
                    format!("none set yet: `botfleet run` sets {want} at start")
                } else if info.url == want {
                    format!("set to {want}, as the fleet file says")
                } else {
                    format!("set to {}; `botfleet run` replaces it with {want} at start", info.url)
                };
                checks.push(Check::pass(webhook, detail));
            }
        },
        Ok(Err(e)) => checks.push(Check::fail(
            webhook,
            format!("getWebhookInfo: {}", e.kind),
            "check telegram.api_url",
        )),
        Err(_) => checks.push(Check::fail(
            webhook,
            "getWebhookInfo got no answer",
            "check the network path to telegram.api_url",
        )),
    }
    checks
}

/// PostgreSQL: reachable, its version, `max_connections` against the
/// budget plan, `pg_stat_statements`; or the embedded SQLite's directory.
async fn database(config: &FleetConfig, data_dir: &Path) -> Vec<Check> {
    let Some(url) = &config.database.url else {
        return vec![Check::pass(
            "database",
            format!(
                "the embedded SQLite in {} (environment {}); give [database] url for PostgreSQL in production",
                data_dir.display(),
                config.environment
            ),
        )];
    };
    if url.backend() != botfleet_config::Backend::Postgres {
        return vec![Check::pass("database", "SQLite, as database.url says")];
    }
    let connected = tokio::time::timeout(
        PROBE,
        botfleet_db::Database::builder(url.expose().to_owned())
            .settings(config.database.settings.clone())
            .pool_size(1)
            .application_name("botfleet/doctor")
            .connect(),
    )
    .await;
    let db = match probed(
        "postgres",
        connected,
        "cannot connect",
        "start PostgreSQL, or correct database.url (host, port, user, password, database)",
        "check that PostgreSQL listens where database.url says",
    ) {
        Ok(db) => db,
        Err(failed) => return vec![failed],
    };
    let mut checks = Vec::new();
    let version: String = db
        .query("SELECT current_setting('server_version') AS v")
        .fetch_one()
        .await
        .ok()
        .and_then(|r| r.try_get::<String, _>("v").ok())
        .unwrap_or_else(|| "?".to_owned());
    checks.push(Check::pass(
        "postgres",
        format!("PostgreSQL {version} answers"),
    ));
    match botfleet_db::budget::ServerLimits::read(&db).await {
        Ok(Some(limits)) => match botfleet_db::budget::plan_fleet(config, limits) {
            Ok(plan) => checks.push(Check::pass(
                "postgres budget",
                format!(
                    "max_connections {} leaves {} for the fleet: {}",
                    limits.max_connections,
                    plan.usable,
                    plan.bots
                        .iter()
                        .map(|b| format!("{} {} workers × {}", b.name, b.max_workers, b.pool_size))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )),
            Err(e) => checks.push(Check::fail(
                "postgres budget",
                e.to_string(),
                "raise max_connections in postgresql.conf (and restart PostgreSQL), or lower the bots' max_workers; `botfleet tune` shows the plan",
            )),
        },
        Ok(None) => {}
        Err(e) => checks.push(Check::fail(
            "postgres budget",
            format!("cannot read the server's limits: {e}"),
            "let the fleet's user read current_setting('max_connections')",
        )),
    }
    let statements = db
        .query("SELECT COUNT(*) AS n FROM pg_extension WHERE extname = 'pg_stat_statements'")
        .fetch_one()
        .await
        .ok()
        .and_then(|r| r.try_get::<i64, _>("n").ok())
        .unwrap_or(0);
    checks.push(if statements > 0 {
        Check::pass(
            "pg_stat_statements",
            "installed: `botfleet analyze` and `db advise` name the exact index a slow query needs",
        )
    } else {
        Check::fail(
            "pg_stat_statements",
            "not installed in the fleet's database",
            "add pg_stat_statements to shared_preload_libraries (restart PostgreSQL), then CREATE EXTENSION pg_stat_statements; without it the advisor sees only sequential scans",
        )
    });
    db.close().await;
    checks
}

/// Redis: reachable, version 7 or later, its eviction policy against a
/// cache's needs, its persistence.
async fn redis_checks(url: &str) -> Vec<Check> {
    let info = async {
        let client = redis::Client::open(url)?;
        let mut c = client.get_multiplexed_async_connection().await?;
        let server: String = redis::cmd("INFO").arg("server").query_async(&mut c).await?;
        let memory: String = redis::cmd("INFO").arg("memory").query_async(&mut c).await?;
        let persistence: String = redis::cmd("INFO")
            .arg("persistence")
            .query_async(&mut c)
            .await?;
        Ok::<_, redis::RedisError>((server, memory, persistence))
    };
    let (server, memory, persistence) = match probed(
        "redis",
        tokio::time::timeout(PROBE, info).await,
        "cannot reach Redis",
        "start Redis, or correct [redis] url; without it the caches run on L1 alone and each process loads on its own",
        "check that Redis listens where [redis] url says",
    ) {
        Ok(i) => i,
        Err(failed) => return vec![failed],
    };
    let mut checks = Vec::new();
    match doctor::redis_version(&server) {
        Some((major, minor, patch)) if major >= doctor::REDIS_MAJOR => checks.push(Check::pass(
            "redis",
            format!("Redis {major}.{minor}.{patch} answers"),
        )),
        Some((major, minor, patch)) => checks.push(Check::fail(
            "redis",
            format!("Redis {major}.{minor}.{patch} is older than {}", doctor::REDIS_MAJOR),
            "upgrade to Redis 7 or later (the cache's invalidation bus and leases are built and tested on 7)",
        )),
        None => checks.push(Check::fail(
            "redis",
            "it answers INFO without a redis_version",
            "use Redis 7 or later",
        )),
    }
    let maxmemory: u64 = doctor::info_field(&memory, "maxmemory")
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    let policy = doctor::info_field(&memory, "maxmemory_policy")
        .unwrap_or("?")
        .trim()
        .to_owned();
    checks.push(if maxmemory > 0 && policy == "noeviction" {
        Check::fail(
            "redis memory",
            format!("maxmemory {} with maxmemory-policy noeviction: once full, Redis refuses the caches' writes", doctor::human_bytes(maxmemory)),
            "CONFIG SET maxmemory-policy allkeys-lfu (and in redis.conf): a cache should evict its coldest keys",
        )
    } else if maxmemory == 0 {
        Check::pass(
            "redis memory",
            format!("no maxmemory (policy {policy}): Redis grows with the caches; set maxmemory and allkeys-lfu to bound it"),
        )
    } else {
        Check::pass(
            "redis memory",
            format!("maxmemory {} with {policy}: full, it evicts", doctor::human_bytes(maxmemory)),
        )
    });
    let aof = doctor::info_field(&persistence, "aof_enabled").map(str::trim) == Some("1");
    checks.push(Check::pass(
        "redis persistence",
        if aof {
            "AOF on: fine, though a cache needs none (a restart starts it cold, which is safe)"
        } else {
            "AOF off: fine for a cache (a restart starts it cold, which is safe; nothing else lives there)"
        },
    ));
    checks
}

/// Starts `bot`'s worker program once with a socket of its own and waits
/// for its `hello`.
async fn hello(bot: &botfleet_config::BotConfig, program: &Path) -> Check {
    let name = format!("worker {}", bot.name);
    let dir = std::env::temp_dir().join(format!("botfleet-doctor-{}", std::process::id()));
    let made = std::fs::create_dir_all(&dir).and_then(|()| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
    });
    if let Err(e) = made {
        return Check::fail(
            name,
            format!("no directory for the socket: {e}"),
            "free the temporary directory",
        );
    }
    let socket = dir.join("doctor.sock");
    let listener = match tokio::net::UnixListener::bind(&socket) {
        Ok(l) => l,
        Err(e) => {
            return Check::fail(
                name,
                format!("cannot listen on {}: {e}", socket.display()),
                "free the temporary directory",
            );
        }
    };
    let mut command = tokio::process::Command::new(program);
    command
        .args(bot.worker.args.iter().map(|a| a.value().to_owned()))
        .envs(
            bot.worker
                .env
                .iter()
                .map(|(k, v)| (k.clone(), v.value().to_owned())),
        )
        .env(botfleet_protocol::env::SOCKET, &socket)
        .env(botfleet_protocol::env::WORKER_ID, "1")
        .env(botfleet_protocol::env::BOT, &bot.name)
        .env(botfleet_protocol::env::METRICS, "off")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    let began = tokio::time::Instant::now();
    let mut child = match command.spawn() {
        Ok(c) => c,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&dir);
            return Check::fail(
                name,
                format!("cannot start {}: {e}", program.display()),
                "check the program's permissions",
            );
        }
    };
    let pid = child.id().unwrap_or(0);
    let said = async {
        let (stream, _) = listener.accept().await?;
        let mut reader = botfleet_protocol::FrameReader::new(stream);
        let read = reader
            .read()
            .await
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        Ok::<_, std::io::Error>(read)
    };
    let outcome = tokio::select! {
        said = tokio::time::timeout(bot.supervision.ready_timeout.max(Duration::from_secs(5)), said) => Some(said),
        status = child.wait() => {
            let mut stderr = String::new();
            if let Some(mut e) = child.stderr.take() {
                use tokio::io::AsyncReadExt;
                let _ = tokio::time::timeout(Duration::from_secs(1), e.read_to_string(&mut stderr)).await;
            }
            let last = stderr.lines().last().unwrap_or("").to_owned();
            let _ = std::fs::remove_dir_all(&dir);
            return Check::fail(
                name,
                format!(
                    "{} exited ({}) before its hello{}",
                    program.display(),
                    status.map_or_else(|e| e.to_string(), |s| s.to_string()),
                    if last.is_empty() { String::new() } else { format!("; its last line: {last}") }
                ),
                "run the worker command by hand with BOTFLEET_SOCKET set to see why; a worker must connect to the socket and say hello first (docs/protocol.md)",
            );
        }
    };
    let _ = child.kill().await;
    let _ = std::fs::remove_dir_all(&dir);
    match outcome {
        Some(Ok(Ok(Some((_, messages))))) => match messages.first() {
            Some(botfleet_protocol::Message::Hello(h)) if h.pid == pid => Check::pass(
                name,
                format!(
                    "{} started and said hello (protocol {}, pid {}) in {:.0} ms",
                    program.display(),
                    h.version,
                    h.pid,
                    began.elapsed().as_secs_f64() * 1e3
                ),
            ),
            Some(botfleet_protocol::Message::Hello(h)) => Check::fail(
                name,
                format!(
                    "its hello names pid {}, but the process started is {pid}",
                    h.pid
                ),
                "the worker must say hello from the process botfleet starts (no wrapper that forks it)",
            ),
            other => Check::fail(
                name,
                format!(
                    "its first message is not a hello: {:?}",
                    other.map(botfleet_protocol::Message::name)
                ),
                "a worker's first message is hello (docs/protocol.md)",
            ),
        },
        Some(Ok(Ok(None))) => Check::fail(
            name,
            "it connected and closed without a hello",
            "a worker's first message is hello (docs/protocol.md)",
        ),
        Some(Ok(Err(e))) => Check::fail(
            name,
            format!("its first frame is not valid: {e}"),
            "a worker's first frame is a hello (docs/protocol.md)",
        ),
        Some(Err(_)) | None => Check::fail(
            name,
            format!(
                "no hello within {}",
                botfleet_config::duration::format(
                    bot.supervision.ready_timeout.max(Duration::from_secs(5))
                )
            ),
            "a worker connects to BOTFLEET_SOCKET and says hello at once; check the program starts quickly",
        ),
    }
}

/// A directory `run` writes: there or creatable, writable, private.
fn directory(name: &str, dir: &Path, flag: &str) -> Check {
    use std::os::unix::fs::PermissionsExt;
    let shown = dir.display();
    let (existing, exists) = if dir.exists() {
        (dir.to_owned(), true)
    } else {
        let parent = dir
            .ancestors()
            .skip(1)
            .find(|p| p.as_os_str().is_empty() || p.exists())
            .map(|p| {
                if p.as_os_str().is_empty() {
                    Path::new(".")
                } else {
                    p
                }
            })
            .unwrap_or(Path::new("."));
        (parent.to_owned(), false)
    };
    let probe = existing.join(format!(".botfleet-doctor-{}", std::process::id()));
    if let Err(e) = std::fs::write(&probe, b"") {
        return Check::fail(
            name,
            format!("{shown}: cannot write in {}: {e}", existing.display()),
            format!(
                "give botfleet's user write access to {}, or choose another with {flag}",
                existing.display()
            ),
        );
    }
    let _ = std::fs::remove_file(&probe);
    if !exists {
        return Check::pass(
            name,
            format!(
                "{shown} will be created, private (0700), in {}",
                existing.display()
            ),
        );
    }
    let mode = std::fs::metadata(dir)
        .map(|m| m.permissions().mode() & 0o777)
        .unwrap_or(0);
    let shared_tmp = dir == std::env::temp_dir();
    if mode & 0o077 != 0 && !shared_tmp {
        return Check::fail(
            name,
            format!(
                "{shown} is writable and its mode is {mode:o}: others can read it (it holds the journal's updates and the control token)"
            ),
            format!("chmod 700 {shown}"),
        );
    }
    Check::pass(
        name,
        if shared_tmp {
            format!("{shown} is writable; each run makes a private directory in it")
        } else {
            format!("{shown} is writable and private ({mode:o})")
        },
    )
}

/// The descriptor limit against the fleet's workers and connections
/// (`botfleet run` raises its soft limit to the hard one).
fn descriptors(config: &FleetConfig) -> Check {
    let workers: u32 = config.bots.iter().map(|b| b.max_workers).sum();
    let need = doctor::descriptors_needed(workers, config.bots.len() as u32);
    let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile);
    let hard = limit.maximum.unwrap_or(u64::MAX);
    let shown = limit
        .maximum
        .map_or("unlimited".to_owned(), |c| c.to_string());
    if hard < need {
        Check::fail(
            "descriptors",
            format!(
                "the hard limit is {shown} open files; {workers} workers at most and their connections need about {need}"
            ),
            format!(
                "raise it to at least {need} (65536 is usual): `ulimit -Hn 65536` in the shell that starts botfleet, or LimitNOFILE=65536 in the systemd unit (docs/deploy.md)"
            ),
        )
    } else {
        Check::pass(
            "descriptors",
            format!(
                "the hard limit is {shown} open files (botfleet run raises its soft limit to it); about {need} needed for {workers} workers at most"
            ),
        )
    }
}

/// Free disk where the journals go.
fn disk(config: &FleetConfig, data_dir: &Path) -> Check {
    let at = data_dir
        .ancestors()
        .find(|p| p.exists())
        .map_or_else(|| PathBuf::from("."), Path::to_owned);
    let need = doctor::disk_needed(config.bots.len() as u32);
    match rustix::fs::statvfs(&at) {
        Ok(s) => {
            let free = s.f_bavail * s.f_frsize;
            if free < need {
                Check::fail(
                    "disk",
                    format!(
                        "{} free at {}; the journals and logs need about {}",
                        doctor::human_bytes(free),
                        at.display(),
                        doctor::human_bytes(need)
                    ),
                    "free disk space there, or give --data-dir on a larger disk",
                )
            } else {
                Check::pass(
                    "disk",
                    format!(
                        "{} free at {} (the journals need up to {})",
                        doctor::human_bytes(free),
                        at.display(),
                        doctor::human_bytes(need)
                    ),
                )
            }
        }
        Err(e) => Check::fail(
            "disk",
            format!("cannot read the free space at {}: {e}", at.display()),
            "check --data-dir",
        ),
    }
}

/// The monitor's bind: free, and off loopback only with a token (the file
/// refuses the rest).
async fn monitor(config: &FleetConfig) -> Check {
    let bind = config.monitor.bind;
    let rule = if bind.ip().is_loopback() {
        "loopback: no token needed".to_owned()
    } else {
        "not loopback, with a token".to_owned()
    };
    match tokio::net::TcpListener::bind(bind).await {
        Ok(_) => Check::pass("monitor", format!("{bind} is free ({rule})")),
        Err(e) => Check::fail(
            "monitor",
            format!("cannot listen on {bind}: {e} (is a fleet running already?)"),
            "stop what listens there, or choose another [monitor] bind",
        ),
    }
}
