//! `botfleet-runtime`: the supervisor of a fleet.
//!
//! For each bot of a fleet file it runs one ingest (one `getUpdates`
//! consumer per token), a dispatcher that routes updates to worker
//! processes by chat over batched frames on a Unix socket
//! (`botfleet-protocol`), the bot's one send limiter (`botfleet-telegram`)
//! through which every worker's Bot API calls go, and a supervisor per
//! worker slot that restarts what dies. [`Fleet::shutdown`] stops it
//! without losing an update.
//!
//! The promises (ARCHITECTURE.md, invariants): the offset is confirmed only
//! after every update of a batch was acked (1); a chat's updates are
//! handled one at a time, in order (2); one limiter per token (3); pools
//! sized by the fleet's connection budget (4); frames carry whatever was
//! queued, nothing waits to fill them (6).

mod bot;
mod conn;
pub mod dead;
mod dispatcher;
mod ingest;
pub mod journal;
pub mod logbook;
pub mod monitor;
mod process;
mod ring;
mod route;
mod scale;
mod sender;
mod slot;

use parking_lot::Mutex;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::time::Duration;

use botfleet_config::{Backend, FleetConfig};
use botfleet_telegram::Client;
use tokio::net::UnixListener;
use tokio::sync::{Notify, mpsc, oneshot, watch};
use tokio::task::JoinHandle;

pub use bot::Status;
pub use process::find_program;

use bot::{BotCtx, Event};
use conn::Registry;

/// Why the fleet could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The socket directory or socket could not be made.
    #[error("cannot set up the worker socket in {dir}: {source}")]
    Socket {
        /// The directory.
        dir: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A bot's client could not be built.
    #[error("bot {bot}: {source}")]
    Client {
        /// The bot.
        bot: String,
        /// Why.
        source: botfleet_telegram::Error,
    },
    /// A bot's webhook endpoint could not start.
    #[error("bot {bot}: {message}")]
    Webhook {
        /// The bot.
        bot: String,
        /// What failed.
        message: String,
    },
    /// A bot's journal could not be opened.
    #[error("bot {bot}: cannot open its journal in {dir}: {source}")]
    Journal {
        /// The bot.
        bot: String,
        /// The journal's directory.
        dir: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The database could not be reached to plan the connection budget.
    #[error("cannot plan the database connection budget: {0}")]
    Database(#[from] botfleet_db::Error),
    /// The fleet does not fit the database's connections.
    #[error("{0}")]
    Budget(#[from] botfleet_db::budget::PlanError),
}

/// How [`Fleet::start`] runs.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct RunOptions {
    /// Where the worker socket goes (a fresh directory, mode 0700). Default:
    /// a new directory under the system's temporary directory.
    pub socket_dir: Option<PathBuf>,
    /// Where the embedded SQLite database lives when the fleet file gives
    /// no `database.url` (`environment = "dev"`). Default: `botfleet-data`
    /// in the current directory.
    pub data_dir: Option<PathBuf>,
}

impl RunOptions {
    /// Puts the socket directory at `dir`.
    pub fn socket_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.socket_dir = Some(dir.into());
        self
    }

    /// Puts the embedded database in `dir`.
    pub fn data_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.data_dir = Some(dir.into());
        self
    }
}

/// What a fleet did, at shutdown.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct Report {
    /// Each bot's final status.
    pub bots: Vec<Status>,
}

/// A running fleet.
pub struct Fleet {
    bots: Vec<BotRun>,
    /// The configuration in force (what a reload compares with).
    config: FleetConfig,
    /// The database URL and pool sizes workers get.
    database_url: Option<String>,
    pool_sizes: HashMap<String, u32>,
    options: RunOptions,
    /// Told when any bot is marked failed.
    failed_notify: Arc<Notify>,
    registry: Registry,
    socket: PathBuf,
    accept: JoinHandle<()>,
    socket_dir: PathBuf,
    owns_socket_dir: bool,
    view: FleetView,
}

/// A handle on a running fleet's bots for readers elsewhere (the
/// monitor): cheap to clone, it follows reloads, and sees no bot once the
/// fleet has stopped.
#[derive(Clone, Default)]
pub struct FleetView {
    bots: Arc<Mutex<Vec<Arc<bot::BotCtx>>>>,
    /// Every worker's recent output.
    logs: logbook::LogBook,
    /// Bots of the configuration stopped by an operator.
    stopped: Arc<Mutex<Vec<String>>>,
    workers: Registry,
}

impl std::fmt::Debug for FleetView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FleetView")
            .field("bots", &self.bots.lock().len())
            .finish()
    }
}

impl FleetView {
    /// Every worker's recent output (`botfleet logs`).
    pub fn logs(&self) -> &logbook::LogBook {
        &self.logs
    }

    /// Bots of the configuration an operator stopped.
    pub fn stopped(&self) -> Vec<String> {
        self.stopped.lock().clone()
    }

    /// Sends `text` to `chat` as `bot`, through the client (and limiter)
    /// its ingest uses: the monitor's alerts to an operator's chat.
    pub async fn send_text(&self, bot: &str, chat: i64, text: &str) -> Result<(), String> {
        let client = self
            .bots
            .lock()
            .iter()
            .find(|b| b.name == bot)
            .map(|b| b.client.clone())
            .ok_or_else(|| format!("no bot {bot} runs"))?;
        let params = botfleet_telegram::methods::SendMessageParams::builder()
            .chat_id(chat)
            .text(text)
            .build();
        client
            .send_message(&params)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    /// The worker slots with a process now: bot, slot index, pid, whether
    /// it is ready, when it started, the slot's restarts.
    pub fn workers(&self) -> Vec<botfleet_monitor::fleet::WorkerSummary> {
        use std::sync::atomic::Ordering;
        let workers = self.workers.lock();
        let mut out: Vec<_> = workers
            .values()
            .filter_map(|(bot, slot)| {
                let pid = slot.pid.load(Ordering::SeqCst);
                (pid > 0).then(|| botfleet_monitor::fleet::WorkerSummary {
                    bot: bot.name.clone(),
                    slot: slot.index,
                    pid,
                    ready: slot.is_ready.load(Ordering::SeqCst),
                    started_unix: slot.started_unix.load(Ordering::Relaxed),
                    restarts: slot.restarts.load(Ordering::Relaxed),
                })
            })
            .collect();
        out.sort_unstable_by(|a, b| (&a.bot, a.slot).cmp(&(&b.bot, b.slot)));
        out
    }

    /// The worker processes running now, to sample.
    pub fn processes(&self) -> Vec<botfleet_monitor::procfs::WorkerProcess> {
        self.workers()
            .into_iter()
            .map(|w| botfleet_monitor::procfs::WorkerProcess {
                bot: w.bot,
                slot: w.slot,
                pid: w.pid,
            })
            .collect()
    }

    /// Each bot's status now.
    pub async fn status(&self) -> Vec<Status> {
        let bots = self.bots.lock().clone();
        let mut out = Vec::with_capacity(bots.len());
        for ctx in bots {
            let (tx, rx) = oneshot::channel();
            ctx.send(Event::Status(tx));
            if let Ok(s) = rx.await {
                out.push(s);
            }
        }
        out
    }
}

impl std::fmt::Debug for Fleet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fleet")
            .field(
                "bots",
                &self.bots.iter().map(|b| &b.ctx.name).collect::<Vec<_>>(),
            )
            .field("socket_dir", &self.socket_dir)
            .finish_non_exhaustive()
    }
}

/// One running bot: what it shares, and the tasks that serve it.
struct BotRun {
    ctx: Arc<BotCtx>,
    stop_ingest: watch::Sender<bool>,
    stop_slots: watch::Sender<bool>,
    ingest: Ingest,
    /// The autoscaler, which owns the worker slots.
    scaler: JoinHandle<()>,
    /// Asks the autoscaler to roll the workers onto a new spec.
    roll: mpsc::UnboundedSender<scale::Roll>,
}

/// A bot's ingest task.
enum Ingest {
    /// Long polling; returns the offset to confirm.
    Poll(JoinHandle<i64>),
    /// The webhook endpoint.
    Webhook(JoinHandle<()>),
}

/// What [`Fleet::reload`] did, bot by bot.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Reloaded {
    /// Bots started.
    pub added: Vec<String>,
    /// Bots drained and stopped.
    pub removed: Vec<String>,
    /// Bots whose workers were replaced one by one (a new command, args
    /// or environment).
    pub rolled: Vec<String>,
    /// Bots stopped and started again (another token, mode, or supervision
    /// setting).
    pub restarted: Vec<String>,
    /// What could not be done: bots that did not start, rolls given up.
    pub problems: Vec<String>,
    /// Sections that changed but apply only at the next start.
    pub not_applied: Vec<&'static str>,
}

/// The fleet file's `[cache]` as the workers get it (`env::CACHE`).
fn cache_env(cache: &botfleet_config::CacheConfig) -> String {
    use botfleet_protocol::env::{CacheEnv, CacheSettings};
    let settings = |s: &botfleet_config::CacheSettings| CacheSettings {
        capacity: s.capacity,
        ttl_ms: s.ttl.as_millis() as u64,
        negative_ttl_ms: s.negative_ttl.as_millis() as u64,
        jitter: s.jitter,
        refresh_ahead: s.refresh_ahead,
    };
    let carried = CacheEnv {
        defaults: settings(&cache.defaults),
        namespaces: cache
            .namespaces
            .iter()
            .map(|(name, s)| (name.clone(), settings(s)))
            .collect(),
        max_value_bytes: cache.max_value_bytes,
        lease_ms: cache.lease.as_millis() as u64,
    };
    serde_json::to_string(&carried).unwrap_or_default()
}

static NEXT_WORKER: AtomicU64 = AtomicU64::new(1);

/// A worker id never used before in this process.
pub(crate) fn next_worker_id() -> u32 {
    NEXT_WORKER.fetch_add(1, std::sync::atomic::Ordering::Relaxed) as u32
}

/// The environment of `bot`'s workers: the fleet file's `[bot.worker] env`,
/// then the contract of `botfleet_protocol::env` (the socket, the bot, the
/// database and its pool size, Redis); the slot adds the worker's id.
fn worker_env(
    bot: &botfleet_config::BotConfig,
    socket: &Path,
    database_url: Option<&str>,
    redis: Option<&botfleet_config::RedisConfig>,
    pool_size: Option<u32>,
    cache: &botfleet_config::CacheConfig,
) -> Vec<(String, String)> {
    use botfleet_protocol::env;
    let mut vars: Vec<(String, String)> = bot
        .worker
        .env
        .iter()
        .map(|(k, v)| (k.clone(), v.value().to_owned()))
        .collect();
    vars.push((env::SOCKET.into(), socket.display().to_string()));
    vars.push((env::BOT.into(), bot.name.clone()));
    if let Some(url) = database_url {
        vars.push((env::DATABASE_URL.into(), url.to_owned()));
    }
    if let Some(redis) = redis {
        vars.push((env::REDIS_URL.into(), redis.expose_url().to_owned()));
    }
    if let Some(size) = pool_size {
        vars.push((env::DB_POOL_SIZE.into(), size.to_string()));
    }
    vars.push((env::CACHE.into(), cache_env(cache)));
    if botfleet_monitor::installed().is_none() {
        // Nobody would read what the workers forward.
        vars.push((env::METRICS.into(), "off".into()));
    }
    vars
}

impl Fleet {
    /// Starts every bot of `config`: the socket, the workers (each bot's
    /// `min_workers`), the dispatchers and ingest.
    pub async fn start(config: &FleetConfig, options: RunOptions) -> Result<Fleet, Error> {
        // Each bot's worker output, and its files when `[logs]` says so
        // (a relative folder is in the data directory).
        let logs = match &config.logs {
            Some(l) => {
                let dir = if l.dir.is_absolute() {
                    l.dir.clone()
                } else {
                    options
                        .data_dir
                        .clone()
                        .unwrap_or_else(|| PathBuf::from("botfleet-data"))
                        .join(&l.dir)
                };
                logbook::LogBook::with_files(dir, l.max_bytes, l.keep)
            }
            None => logbook::LogBook::default(),
        };
        let (socket_dir, owns_socket_dir) = match &options.socket_dir {
            Some(dir) => (dir.clone(), false),
            None => (
                std::env::temp_dir().join(format!(
                    "botfleet-{}-{}",
                    std::process::id(),
                    NEXT_WORKER.load(std::sync::atomic::Ordering::Relaxed)
                )),
                true,
            ),
        };
        raise_fd_limit();
        let socket = make_socket(&socket_dir)?;
        let listener = UnixListener::bind(&socket).map_err(|source| Error::Socket {
            dir: socket_dir.clone(),
            source,
        })?;
        let (database_url, pool_sizes) = database_plan(config, &options).await?;
        let registry: Registry = Arc::new(Mutex::new(HashMap::new()));
        let workers_view = registry.clone();
        let accept = tokio::spawn(conn::accept(listener, registry.clone()));
        let mut fleet = Fleet {
            bots: Vec::new(),
            config: config.clone(),
            database_url,
            pool_sizes,
            options,
            failed_notify: Arc::new(Notify::new()),
            registry,
            socket,
            accept,
            socket_dir,
            owns_socket_dir,
            view: FleetView {
                bots: Arc::default(),
                logs,
                stopped: Arc::default(),
                workers: workers_view,
            },
        };
        for bot in &config.bots {
            match fleet.start_bot(bot).await {
                Ok(run) => fleet.bots.push(run),
                Err(e) => {
                    // What started stops in order before the error.
                    fleet.shutdown().await;
                    return Err(e);
                }
            }
        }
        fleet.publish();
        tracing::info!(bots = fleet.bots.len(), socket = %fleet.socket.display(), "fleet started");
        Ok(fleet)
    }

    /// Where the fleet keeps its files (the journal, the embedded
    /// database).
    fn data_dir(&self) -> PathBuf {
        self.options
            .data_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from("botfleet-data"))
    }

    /// The worker process spec of `bot` under the current plan.
    fn spec(&self, bot: &botfleet_config::BotConfig) -> process::Spec {
        process::Spec {
            program: bot.worker.command.clone(),
            args: bot
                .worker
                .args
                .iter()
                .map(|a| a.value().to_owned())
                .collect(),
            env: worker_env(
                bot,
                &self.socket,
                self.database_url.as_deref(),
                self.config.redis.as_ref(),
                self.pool_sizes.get(&bot.name).copied(),
                &self.config.cache,
            ),
        }
    }

    /// Starts one bot: its client, actor, autoscaler (which starts its
    /// workers) and ingest.
    async fn start_bot(&self, bot: &botfleet_config::BotConfig) -> Result<BotRun, Error> {
        let client = Client::builder(bot.token.expose())
            .config(&self.config.telegram)
            .bot(bot.name.clone())
            .build()
            .map_err(|source| Error::Client {
                bot: bot.name.clone(),
                source,
            })?;
        // What the dashboard sets the bot's sends against.
        let allowance = &self.config.telegram.limits.token;
        metrics::gauge!("botfleet_telegram_allowance_per_second", "bot" => bot.name.clone())
            .set(f64::from(allowance.max) / allowance.window.as_secs_f64());
        let journal_dir = self.data_dir().join("journal");
        let (journal, recovered) =
            journal::Journal::open(&journal_dir, &bot.name, journal::MAX_DEPTH).map_err(
                |source| Error::Journal {
                    bot: bot.name.clone(),
                    dir: journal_dir.clone(),
                    source,
                },
            )?;
        let (events, rx) = mpsc::unbounded_channel();
        let ctx = Arc::new(BotCtx {
            name: bot.name.clone(),
            config: bot.clone(),
            client,
            events,
            spec: Mutex::new(self.spec(bot)),
            failed: AtomicBool::new(false),
            failure: Mutex::default(),
            restarts: AtomicU64::new(0),
            failed_notify: self.failed_notify.clone(),
            calling: std::sync::atomic::AtomicUsize::new(0),
            journal,
            data_dir: self.data_dir(),
            logs: self.view.logs.clone(),
        });
        tokio::spawn(bot::actor(ctx.clone(), rx));
        if recovered.cut > 0 {
            tracing::warn!(bot = %bot.name, bytes = recovered.cut, "the journal ended in a torn record (a crash in mid-write); cut it off");
        }
        if !recovered.pending.is_empty() {
            tracing::warn!(
                bot = %bot.name,
                updates = recovered.pending.len(),
                "handing out the updates the journal kept from the last run, in chat order"
            );
            ctx.send(Event::Recovered {
                updates: recovered.pending,
                strikes: recovered.strikes,
            });
        }
        let (stop_ingest, ingest_rx) = watch::channel(false);
        let (stop_slots, slots_rx) = watch::channel(false);
        let (roll, rolls) = mpsc::unbounded_channel();
        let ingest = match bot.mode {
            botfleet_config::IngestMode::Webhook => {
                let server =
                    ingest::webhook(ctx.clone(), ingest_rx)
                        .await
                        .map_err(|e| Error::Webhook {
                            bot: bot.name.clone(),
                            message: e.to_string(),
                        })?;
                Ingest::Webhook(server)
            }
            // Telegram's offset moves past what the journal has.
            _ => Ingest::Poll(tokio::spawn(ingest::poll(
                ctx.clone(),
                ingest_rx,
                recovered.high + 1,
            ))),
        };
        // The bot's autoscaler owns its worker slots.
        let scaler = tokio::spawn(scale::run(
            ctx.clone(),
            self.registry.clone(),
            slots_rx,
            rolls,
        ));
        Ok(BotRun {
            ctx,
            stop_ingest,
            stop_slots,
            ingest,
            scaler,
            roll,
        })
    }

    /// The worker socket's path.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Every worker slot: its bot, its worker id and its process id (0
    /// while it has no process).
    pub fn workers(&self) -> Vec<(String, u32, u32)> {
        let registry = self.registry.lock();
        let mut out: Vec<_> = registry
            .iter()
            .map(|(&id, (bot, slot))| {
                (
                    bot.name.clone(),
                    id,
                    slot.pid.load(std::sync::atomic::Ordering::SeqCst),
                )
            })
            .collect();
        out.sort_unstable();
        out
    }

    /// Each bot's status now.
    pub async fn status(&self) -> Vec<Status> {
        self.view.status().await
    }

    /// A handle that reads the fleet's status from elsewhere.
    pub fn view(&self) -> FleetView {
        self.view.clone()
    }

    /// Tells the view which bots run now.
    fn publish(&self) {
        *self.view.bots.lock() = self.bots.iter().map(|b| b.ctx.clone()).collect();
    }

    /// Restarts `bot`'s workers one at a time, as a reload rolls them: each
    /// new one ready before an old one leaves (when `max_workers` allows),
    /// each old one drained first. Nothing is lost.
    ///
    /// The request is made now; the future returned borrows nothing, so the
    /// caller can await it elsewhere while the fleet serves other requests.
    pub fn restart_bot(
        &self,
        bot: &str,
    ) -> impl std::future::Future<Output = Result<(), String>> + Send + 'static {
        let bot = bot.to_owned();
        let asked = match self.bots.iter().find(|b| b.ctx.name == bot) {
            None => Err(self.no_such_bot(&bot)),
            Some(run) => {
                let spec = run.ctx.spec.lock().clone();
                let (tx, rx) = oneshot::channel();
                run.roll
                    .send(scale::Roll { spec, done: tx })
                    .map(|()| rx)
                    .map_err(|_| format!("bot {bot}: its autoscaler is gone"))
            }
        };
        async move {
            asked?
                .await
                .map_err(|_| format!("bot {bot}: its autoscaler is gone"))?
                .map_err(|e| format!("bot {bot}: {e}"))
        }
    }

    /// Stops `bot` without losing an update (its ingest confirms only what
    /// was acked, its workers drain); it stays in the configuration,
    /// stopped, until [`Fleet::start_stopped_bot`] or the next start.
    pub async fn stop_bot(&mut self, bot: &str) -> Result<(), String> {
        let at = self
            .bots
            .iter()
            .position(|b| b.ctx.name == bot)
            .ok_or_else(|| self.no_such_bot(bot))?;
        let run = self.bots.remove(at);
        self.publish();
        stop_bots(vec![run]).await;
        self.view.stopped.lock().push(bot.to_owned());
        Ok(())
    }

    /// Starts again a bot [`Fleet::stop_bot`] stopped.
    pub async fn start_stopped_bot(&mut self, bot: &str) -> Result<(), String> {
        if self.bots.iter().any(|b| b.ctx.name == bot) {
            return Err(format!("bot {bot} is running already"));
        }
        let config = self
            .config
            .bots
            .iter()
            .find(|b| b.name == bot)
            .cloned()
            .ok_or_else(|| self.no_such_bot(bot))?;
        let run = self
            .start_bot(&config)
            .await
            .map_err(|e| format!("bot {bot} did not start: {e}"))?;
        self.bots.push(run);
        self.view.stopped.lock().retain(|b| b != bot);
        self.publish();
        Ok(())
    }

    /// Bots stopped by [`Fleet::stop_bot`].
    pub fn stopped_bots(&self) -> Vec<String> {
        self.view.stopped()
    }

    fn no_such_bot(&self, bot: &str) -> String {
        let names: Vec<&str> = self.config.bots.iter().map(|b| b.name.as_str()).collect();
        if names.contains(&bot) {
            format!("bot {bot} is stopped")
        } else {
            format!("no bot is named {bot}; the fleet has {}", names.join(", "))
        }
    }

    /// The bots failed now (their restart intensity was exceeded; each is
    /// retried after its `failed_retry`).
    pub fn failed_bots(&self) -> Vec<String> {
        self.bots
            .iter()
            .filter(|b| b.ctx.failed.load(std::sync::atomic::Ordering::SeqCst))
            .map(|b| b.ctx.name.clone())
            .collect()
    }

    /// Waits until some bot is marked failed (its restart intensity was
    /// exceeded); returns its name.
    pub async fn failed(&self) -> String {
        loop {
            // Created before the check, so a failure between the two still
            // wakes it.
            let notified = self.failed_notify.notified();
            if let Some(b) = self
                .bots
                .iter()
                .find(|b| b.ctx.failed.load(std::sync::atomic::Ordering::SeqCst))
            {
                return b.ctx.name.clone();
            }
            notified.await;
        }
    }

    /// Applies `new` to the running fleet: bots that are new start, bots
    /// that are gone drain and stop, a bot whose worker command, arguments
    /// or environment changed has its workers replaced one at a time
    /// (each new one ready before an old one leaves, when `max_workers`
    /// allows; an old one drained before it stops), and a bot with another
    /// token, mode or supervision setting is stopped and started again.
    /// Nothing is lost: a stopping bot's ingest confirms only what was
    /// acked. Changes outside `[[bot]]` apply at the next start.
    pub async fn reload(&mut self, new: &FleetConfig) -> Reloaded {
        let mut done = Reloaded::default();
        let old = &self.config;
        let sections: [(&'static str, bool); 7] = [
            ("environment", old.environment != new.environment),
            ("[database]", old.database != new.database),
            ("[redis]", old.redis != new.redis),
            ("[monitor]", old.monitor != new.monitor),
            ("[cache]", old.cache != new.cache),
            ("[telegram]", old.telegram != new.telegram),
            ("[logs]", old.logs != new.logs),
        ];
        done.not_applied = sections
            .into_iter()
            .filter_map(|(name, changed)| changed.then_some(name))
            .collect();
        // Pool sizes for the new set of bots; an unreachable database keeps
        // the sizes planned before (new bots get the preset's).
        match database_plan(new, &self.options).await {
            Ok((_, sizes)) => self.pool_sizes = sizes,
            Err(e) => done.problems.push(format!(
                "the connection budget was not planned again ({e}); pool sizes stay as they were"
            )),
        }
        let mut runs: HashMap<String, BotRun> = std::mem::take(&mut self.bots)
            .into_iter()
            .map(|r| (r.ctx.name.clone(), r))
            .collect();
        // Gone, or changed beyond the worker spec: stopped first, so a
        // restarted bot's token has one consumer at a time.
        let mut stopping = Vec::new();
        for (name, run) in std::mem::take(&mut runs) {
            match new.bots.iter().find(|b| b.name == name) {
                None => {
                    done.removed.push(name);
                    stopping.push(run);
                }
                Some(b) if !same_but_worker(&run.ctx.config, b) => {
                    done.restarted.push(name);
                    stopping.push(run);
                }
                Some(_) => {
                    runs.insert(name, run);
                }
            }
        }
        stop_bots(stopping).await;
        // Only the bots change; the rest applies at the next start.
        self.config.bots = new.bots.clone();
        for bot in &new.bots {
            match runs.remove(&bot.name) {
                Some(run) => {
                    let spec = self.spec(bot);
                    if *run.ctx.spec.lock() != spec {
                        let (tx, rx) = oneshot::channel();
                        let _ = run.roll.send(scale::Roll { spec, done: tx });
                        match rx.await {
                            Ok(Ok(())) => done.rolled.push(bot.name.clone()),
                            Ok(Err(e)) => done.problems.push(format!("bot {}: {e}", bot.name)),
                            Err(_) => done
                                .problems
                                .push(format!("bot {}: its autoscaler is gone", bot.name)),
                        }
                    }
                    self.bots.push(run);
                }
                None => match self.start_bot(bot).await {
                    Ok(run) => {
                        if !done.restarted.contains(&bot.name) {
                            done.added.push(bot.name.clone());
                        }
                        self.bots.push(run);
                    }
                    Err(e) => done
                        .problems
                        .push(format!("bot {} did not start: {e}", bot.name)),
                },
            }
        }
        // Every bot of the new file runs now, those stopped included.
        self.view.stopped.lock().clear();
        self.publish();
        done
    }

    /// Stops the fleet without losing an update: ingest stops (the batch in
    /// hand gets the grace period to be acked) and the offset is confirmed;
    /// workers are told to drain, then to shut down; a worker still running
    /// after the grace period gets SIGTERM, and SIGKILL after another.
    pub async fn shutdown(mut self) -> Report {
        self.view.bots.lock().clear();
        let bots = stop_bots(std::mem::take(&mut self.bots)).await;
        self.accept.abort();
        if self.owns_socket_dir {
            let _ = std::fs::remove_dir_all(&self.socket_dir);
        }
        tracing::info!("stopped");
        Report { bots }
    }
}

/// Whether `a` and `b` differ at most in their worker spec (command,
/// arguments, environment): a roll of the workers applies the change.
fn same_but_worker(a: &botfleet_config::BotConfig, b: &botfleet_config::BotConfig) -> bool {
    let mut b = b.clone();
    b.worker = a.worker.clone();
    *a == b
}

/// Stops `runs` in order, without losing an update: ingest first (the batch
/// in hand gets the grace period to be acked, then its offset is
/// confirmed), then the workers drain, then they are shut down and their
/// slots stopped. Returns each bot's final status.
async fn stop_bots(runs: Vec<BotRun>) -> Vec<Status> {
    if runs.is_empty() {
        return Vec::new();
    }
    tracing::info!("stopping ingest");
    for run in &runs {
        let _ = run.stop_ingest.send(true);
    }
    let mut rest = Vec::new();
    for run in runs {
        match run.ingest {
            Ingest::Poll(task) => {
                if let Ok(offset) = task.await {
                    ingest::confirm(&run.ctx, offset).await;
                }
            }
            Ingest::Webhook(server) => {
                let _ = server.await;
            }
        }
        rest.push((run.ctx, run.stop_slots, run.scaler));
    }
    let grace = rest
        .iter()
        .map(|(ctx, _, _)| ctx.config.supervision.shutdown_grace)
        .max()
        .unwrap_or(Duration::from_secs(10));
    tracing::info!("draining the workers");
    let mut drains = Vec::new();
    for (ctx, _, _) in &rest {
        let (tx, rx) = oneshot::channel();
        ctx.send(Event::Drain(tx));
        drains.push(rx);
    }
    for rx in drains {
        let _ = tokio::time::timeout(grace, rx).await;
    }
    let mut statuses = Vec::new();
    for (ctx, _, _) in &rest {
        let (tx, rx) = oneshot::channel();
        ctx.send(Event::Status(tx));
        if let Ok(s) = rx.await {
            statuses.push(s);
        }
        ctx.send(Event::Shutdown);
    }
    for (_, stop, _) in &rest {
        let _ = stop.send(true);
    }
    for (ctx, _, scaler) in rest {
        let _ = scaler.await;
        ctx.send(Event::Stop);
    }
    statuses
}

/// Raises the soft limit of open files to the hard limit: a fleet holds a
/// few per worker (its pipes and connection) and its sockets.
fn raise_fd_limit() {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    if let (Some(current), Some(maximum)) = (limit.current, limit.maximum) {
        if current < maximum {
            let raised = Rlimit {
                current: Some(maximum),
                maximum: Some(maximum),
            };
            if let Err(e) = setrlimit(Resource::Nofile, raised) {
                tracing::debug!(
                    "cannot raise the open files limit from {current} to {maximum}: {e}"
                );
            }
        }
    }
}

/// Creates `dir` with mode 0700 (or checks an existing one is private) and
/// returns the socket's path in it.
fn make_socket(dir: &Path) -> Result<PathBuf, Error> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let err = |source| Error::Socket {
        dir: dir.to_owned(),
        source,
    };
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(err)?;
        }
        Err(e) => return Err(err(e)),
    }
    let socket = dir.join("supervisor.sock");
    match std::fs::remove_file(&socket) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(err(e)),
    }
    Ok(socket)
}

/// The database URL workers get, and each bot's pool size from the fleet
/// budget (PostgreSQL) or the preset (SQLite).
async fn database_plan(
    config: &FleetConfig,
    options: &RunOptions,
) -> Result<(Option<String>, HashMap<String, u32>), Error> {
    let settings = &config.database.settings;
    let url = match &config.database.url {
        Some(url) => url.expose().to_owned(),
        None => {
            let dir = options
                .data_dir
                .clone()
                .unwrap_or_else(|| PathBuf::from("botfleet-data"));
            std::fs::create_dir_all(&dir).map_err(|source| Error::Socket {
                dir: dir.clone(),
                source,
            })?;
            format!("sqlite://{}?mode=rwc", dir.join("fleet.sqlite").display())
        }
    };
    let backend = config
        .database
        .url
        .as_ref()
        .map_or(Backend::Sqlite, |u| u.backend());
    let mut sizes = HashMap::new();
    if backend == Backend::Postgres {
        let limits =
            botfleet_db::budget::ServerLimits::fetch(&url, settings, "botfleet/supervisor").await?;
        if let Some(limits) = limits {
            let plan = botfleet_db::budget::plan_fleet(config, limits)?;
            metrics::gauge!("botfleet_db_budget_usable_connections").set(f64::from(plan.usable));
            for b in plan.bots {
                sizes.insert(b.name, b.pool_size);
            }
        }
    } else {
        for bot in &config.bots {
            sizes.insert(bot.name.clone(), settings.pool.max_connections);
        }
    }
    Ok((Some(url), sizes))
}
