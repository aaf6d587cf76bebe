//! `botfleet-worker`: the SDK a Rust bot links to become a botfleet worker.
//!
//! `botfleet run` starts the bot's program with `BOTFLEET_SOCKET` and friends
//! in its environment; [`run`] connects to the supervisor, says hello,
//! handles each update it is given with the bot's handler, and acks it.
//! Bot API calls made through [`Context::api`] travel to the supervisor,
//! which sends them through the token's one limiter, and come back with
//! their result.
//!
//! ```no_run
//! use botfleet_worker::{Context, HandlerResult, Update};
//! use botfleet_telegram::updates::UpdateContent;
//!
//! async fn handle(update: Update, cx: Context) -> HandlerResult {
//!     if let UpdateContent::Message(message) = update.content()? {
//!         if let Some(text) = &message.text {
//!             cx.api().send_message(message.chat.id, &format!("you said: {text}")).await?;
//!         }
//!     }
//!     Ok(())
//! }
//!
//! #[tokio::main]
//! async fn main() {
//!     if let Err(e) = botfleet_worker::run(handle).await {
//!         eprintln!("{e}");
//!         std::process::exit(1);
//!     }
//! }
//! ```
//!
//! What the SDK does for every bot:
//! - updates of different chats are handled concurrently (the supervisor
//!   sends a chat's next update only after this one's ack);
//! - each update is acked when its handler returns; an update id already
//!   handled by this process is acked again without running the handler;
//! - a handler that panics is logged with the update id and acked as
//!   failed (or run again, [`Worker::panic_retries`]), and the worker goes
//!   on;
//! - heartbeats and metrics go to the supervisor on its schedule; on
//!   `drain` the worker finishes what it holds and says so.

mod api;
mod dedupe;
mod update;

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use botfleet_protocol::stats::Stat;
use botfleet_protocol::{
    Ack, DEFAULT_MAX_BATCH, Delivery, Encoding, FrameReader, Hello, Message, Outcome,
    PROTOCOL_VERSION, Series, SeriesValue, WorkerMetrics, env, write_batched,
};
use futures_util::FutureExt;
use tokio::net::UnixStream;
use tokio::sync::{Notify, mpsc};
use tokio::time::Instant;

pub use api::{Api, ApiError, BroadcastReport};
pub use botfleet_db::Database;
pub use update::{Update, UpdateError};

use dedupe::Dedupe;

/// What a handler returns: any error is logged and the update acked as
/// failed.
pub type HandlerResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

/// A handler's error that asks for the update to be handed out again
/// later, in its chat's order (a dependency the handler needs is down).
/// Errors of the database that say it is unavailable, required cache writes
/// that did not reach Redis, and Bot API calls that failed for the network
/// or a 5xx, are taken the same way without it.
#[derive(Debug, thiserror::Error)]
#[error("retry later: {0}")]
pub struct Retry(pub String);

/// Whether `e`, or an error that caused it, says a dependency is
/// unavailable rather than that the update is wrong: [`Retry`], a database
/// error that [`botfleet_db::Error::is_unavailable`], a required cache write
/// that did not reach Redis (`TieredCache::set_required`), a Bot API call that
/// failed without an answer from Telegram, with a 5xx, or with 429.
pub fn is_outage(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(e);
    while let Some(e) = cause {
        if e.is::<Retry>() {
            return true;
        }
        if let Some(db) = e.downcast_ref::<botfleet_db::Error>() {
            if db.is_unavailable() {
                return true;
            }
        }
        if let Some(cache) = e.downcast_ref::<botfleet_cache::Error>() {
            if cache.is_unavailable() {
                return true;
            }
        }
        if let Some(api) = e.downcast_ref::<ApiError>() {
            if api.code == 0 || api.code == 429 || api.code >= 500 {
                return true;
            }
        }
        cause = e.source();
    }
    false
}

/// Why a worker stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An environment variable the supervisor sets is missing or wrong.
    #[error("{0}")]
    Environment(String),
    /// The supervisor's socket could not be reached.
    #[error("cannot connect to the supervisor at {path}: {source}")]
    Connect {
        /// The socket's path.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The supervisor refused the worker, or broke the protocol.
    #[error("the supervisor refused this worker: {0}")]
    Refused(String),
    /// The connection failed.
    #[error("the connection to the supervisor failed: {0}")]
    Connection(String),
    /// The bot's database could not be opened.
    #[error("cannot open the bot's database: {0}")]
    Database(#[from] botfleet_db::Error),
    /// The start-up hook ([`Worker::on_start`], [`with_state`]) failed.
    #[error("the worker's start-up failed: {0}")]
    Start(String),
}

/// What a handler gets besides the update: the Bot API, the database, and
/// where the update stands.
#[derive(Clone)]
pub struct Context {
    shared: Arc<Shared>,
    update_id: i64,
    attempt: u32,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("bot", &self.shared.bot)
            .field("worker_id", &self.shared.worker_id)
            .field("update_id", &self.update_id)
            .finish_non_exhaustive()
    }
}

impl Context {
    /// The Bot API, through the supervisor's limiter.
    pub fn api(&self) -> &Api {
        &self.shared.api
    }

    /// The bot's database, with the pool size the fleet budget gave this
    /// worker; `None` when the supervisor gave no database.
    pub fn db(&self) -> Option<&Database> {
        self.shared.db.as_ref()
    }

    /// The fleet's Redis (`[redis]`), for caches shared by the bot's
    /// workers; `None` when the fleet has none.
    pub fn redis(&self) -> Option<&botfleet_cache::Redis> {
        self.shared.redis.as_ref()
    }

    /// A tiered cache builder for `namespace`, with this bot's key prefix,
    /// the fleet's Redis as L2 when there is one, and the fleet file's
    /// `[cache]` settings for the namespace (capacity, ttl, negative_ttl,
    /// jitter, refresh_ahead, lease, max_value_bytes); calls on the
    /// builder after this one take precedence over the file. Build each cache once
    /// (in a `OnceLock` of the program, say) and share it across updates.
    pub fn cache<K, V>(&self, namespace: &str) -> botfleet_cache::TieredCacheBuilder<K, V>
    where
        K: std::hash::Hash
            + Eq
            + Clone
            + std::fmt::Display
            + std::str::FromStr
            + Send
            + Sync
            + 'static,
        V: Clone + serde::Serialize + serde::de::DeserializeOwned + Send + Sync + 'static,
    {
        let mut builder = botfleet_cache::TieredCache::<K, V>::builder(namespace).bot(self.bot());
        if let Some(cache) = &self.shared.cache {
            let s = cache.settings(namespace);
            builder = builder
                .capacity(s.capacity.max(1))
                .ttl(Duration::from_millis(s.ttl_ms.max(1)))
                .negative_ttl(Duration::from_millis(s.negative_ttl_ms))
                .jitter(s.jitter)
                .refresh_ahead(s.refresh_ahead)
                .max_value_bytes(usize::try_from(cache.max_value_bytes).unwrap_or(usize::MAX))
                .lease(Duration::from_millis(cache.lease_ms));
        }
        match &self.shared.redis {
            Some(redis) => builder.redis(redis.clone()),
            None => builder,
        }
    }

    /// The update's `update_id`.
    pub fn update_id(&self) -> i64 {
        self.update_id
    }

    /// 0 the first time; more when the update is handled again after a
    /// worker died with it.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// The bot's name in fleet.toml.
    pub fn bot(&self) -> &str {
        &self.shared.bot
    }

    /// This worker's id.
    pub fn worker_id(&self) -> u32 {
        self.shared.worker_id
    }
}

struct Shared {
    bot: String,
    worker_id: u32,
    api: Api,
    db: Option<Database>,
    redis: Option<botfleet_cache::Redis>,
    /// The fleet file's `[cache]`, which every cache starts from.
    cache: Option<env::CacheEnv>,
    outbox: mpsc::UnboundedSender<Message>,
    in_flight: AtomicU32,
    /// The average time (ns) of a handler's first step, polled inline.
    inline_ns: AtomicU64,
    idle: Notify,
    handled: AtomicU64,
    failed: AtomicU64,
    /// Updates handed back for a retry (a dependency was unavailable).
    retried: AtomicU64,
    /// Handling time of every update, summed, µs.
    handler_us: AtomicU64,
    /// Handling times (µs) since the last metrics message; their quantiles
    /// come from an HDR histogram at each heartbeat (the one quantile
    /// definition of botfleet), a push is all an update pays.
    times: Mutex<Vec<u64>>,
    dedupe: Mutex<Dedupe>,
    /// The process's metrics, forwarded to the supervisor (`None`: the
    /// program installed a recorder of its own).
    metrics: Option<botfleet_monitor::Registry>,
}

/// A handler's future, boxed (what [`Worker::before`] makes).
pub type HandlerFuture = std::pin::Pin<Box<dyn Future<Output = HandlerResult> + Send>>;

/// Work a worker does once, after it connected and before it says ready.
type StartHook = Box<
    dyn FnOnce(Context) -> std::pin::Pin<Box<dyn Future<Output = HandlerResult> + Send>> + Send,
>;

/// A worker with options; [`run`] is `Worker::new(handler).run()`.
pub struct Worker<H> {
    handler: H,
    panic_retries: u32,
    remember: usize,
    start: Option<StartHook>,
    /// Where to connect instead of `BOTFLEET_SOCKET`.
    socket: Option<String>,
}

impl<H> std::fmt::Debug for Worker<H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("panic_retries", &self.panic_retries)
            .field("remember", &self.remember)
            .field("start", &self.start.is_some())
            .finish_non_exhaustive()
    }
}

/// A worker whose handler gets state built once at start-up: `init` runs
/// after the worker connected and before it says ready (so no update
/// arrives before it is done), with a [`Context`] that has the bot's
/// database, Redis and Bot API; its value is handed to every call of
/// `handler`. Migrations, caches and background tasks belong in `init`,
/// not in a global or in the first update.
///
/// An error from `init` ends the worker before it is ready
/// ([`Error::Start`]); the supervisor restarts it as it restarts a crash.
///
/// ```no_run
/// use std::sync::Arc;
/// use botfleet_worker::{Context, HandlerResult, Update};
///
/// struct Bot { greeting: String }
///
/// async fn handle(update: Update, cx: Context, bot: Arc<Bot>) -> HandlerResult {
///     let _ = (update, cx, &bot.greeting);
///     Ok(())
/// }
///
/// # async fn f() -> Result<(), botfleet_worker::Error> {
/// botfleet_worker::with_state(
///     |cx: Context| async move {
///         if let Some(db) = cx.db() {
///             db.migrate(&[]).await?;
///         }
///         Ok(Bot { greeting: "hello".into() })
///     },
///     handle,
/// )
/// .run()
/// .await
/// # }
/// ```
pub fn with_state<S, I, IF, H, F>(
    init: I,
    handler: H,
) -> Worker<impl Fn(Update, Context) -> F + Send + Sync + 'static>
where
    S: Send + Sync + 'static,
    I: FnOnce(Context) -> IF + Send + 'static,
    IF: Future<Output = Result<S, Box<dyn std::error::Error + Send + Sync>>> + Send + 'static,
    H: Fn(Update, Context, Arc<S>) -> F + Send + Sync + 'static,
    F: Future<Output = HandlerResult> + Send + 'static,
{
    let state: Arc<std::sync::OnceLock<Arc<S>>> = Arc::default();
    let set = state.clone();
    Worker::new(move |update: Update, cx: Context| {
        // The start hook ran before `ready`, so the state is there for
        // every update.
        let state = state
            .get()
            .cloned()
            .expect("the start-up hook runs before the first update");
        handler(update, cx, state)
    })
    .on_start(move |cx| async move {
        let value = init(cx).await?;
        let _ = set.set(Arc::new(value));
        Ok(())
    })
}

/// Runs `handler` as a botfleet worker until the supervisor says stop.
pub async fn run<H, F>(handler: H) -> Result<(), Error>
where
    H: Fn(Update, Context) -> F + Send + Sync + 'static,
    F: Future<Output = HandlerResult> + Send + 'static,
{
    Worker::new(handler).run().await
}

impl<H, F> Worker<H>
where
    H: Fn(Update, Context) -> F + Send + Sync + 'static,
    F: Future<Output = HandlerResult> + Send + 'static,
{
    /// A worker for `handler`.
    pub fn new(handler: H) -> Self {
        Worker {
            handler,
            panic_retries: 0,
            remember: 10_000,
            start: None,
            socket: None,
        }
    }

    /// Work to do once, after the worker connected and before it says
    /// ready (migrations, warming a cache, starting a background task);
    /// an error ends the worker before it is ready ([`Error::Start`]).
    /// [`with_state`] builds on it to hand the handler what `hook` built.
    pub fn on_start<I, IF>(mut self, hook: I) -> Self
    where
        I: FnOnce(Context) -> IF + Send + 'static,
        IF: Future<Output = HandlerResult> + Send + 'static,
    {
        self.start = Some(Box::new(move |cx| Box::pin(hook(cx))));
        self
    }

    /// Runs `hook` before the handler of every update, as a middleware: an
    /// error from it fails the update as the handler's would (a
    /// [`Retry`] hands it back), and the handler does not run. Its time
    /// counts as the handler's. What it needs of the update and the
    /// context it clones: the future it returns is its own.
    ///
    /// ```no_run
    /// # async fn f() -> Result<(), botfleet_worker::Error> {
    /// botfleet_worker::Worker::new(|_update, _cx| async { Ok(()) })
    ///     .before(|update, _cx| {
    ///         let id = update.id();
    ///         async move {
    ///             if id < 0 {
    ///                 return Err("a negative update id".into());
    ///             }
    ///             Ok(())
    ///         }
    ///     })
    ///     .run()
    ///     .await
    /// # }
    /// ```
    pub fn before<B, BF>(
        self,
        hook: B,
    ) -> Worker<impl Fn(Update, Context) -> HandlerFuture + Send + Sync + 'static>
    where
        B: Fn(&Update, &Context) -> BF + Send + Sync + 'static,
        BF: Future<Output = HandlerResult> + Send + 'static,
    {
        let handler = Arc::new(self.handler);
        Worker {
            handler: move |update: Update, cx: Context| {
                let first = hook(&update, &cx);
                let handler = handler.clone();
                Box::pin(async move {
                    first.await?;
                    handler(update, cx).await
                }) as HandlerFuture
            },
            panic_retries: self.panic_retries,
            remember: self.remember,
            start: self.start,
            socket: self.socket,
        }
    }

    /// Connects to `socket` instead of the supervisor's (`BOTFLEET_SOCKET`):
    /// for a worker that relays its own link, as the demo's `ipc` fault
    /// knob does (the supervisor checks that the process it started is the
    /// one connecting, so the relay must run in this process).
    pub fn socket(mut self, socket: impl Into<String>) -> Self {
        self.socket = Some(socket.into());
        self
    }

    /// How many more times an update is handled after its handler panicked
    /// (default 0: acked as failed at once).
    pub fn panic_retries(mut self, n: u32) -> Self {
        self.panic_retries = n;
        self
    }

    /// How many handled update ids are remembered to drop duplicates
    /// (default 10,000).
    pub fn remember(mut self, n: usize) -> Self {
        self.remember = n.max(1);
        self
    }

    /// Connects to the supervisor named by the environment and serves it
    /// until it says stop or goes away: the handshake, the bot's database
    /// and Redis, the start-up hook, `ready`, then updates until the end.
    pub async fn run(self) -> Result<(), Error> {
        // Before the database opens: it makes its metric handles then. A
        // supervisor without a monitor says so: nothing is recorded then.
        let metrics = if std::env::var(botfleet_protocol::env::METRICS).as_deref() == Ok("off") {
            None
        } else {
            botfleet_monitor::install(botfleet_monitor::registry::DEFAULT_SERIES_CAP)
        };
        let mut env = WorkerEnv::from_env()?;
        if let Some(socket) = self.socket {
            env.socket = socket;
        }
        let Link {
            mut reader,
            outbox,
            writer,
            welcome,
            first,
        } = Link::open(&env).await?;
        // Heartbeats from the handshake on: opening the database (which may
        // be down, and is then retried) is start-up, bounded by the
        // supervisor's `ready_timeout`, not a hang.
        let every = Duration::from_millis(u64::from(welcome.heartbeat_ms.max(10)));
        let early_beats = tokio::spawn(bare_heartbeats(outbox.clone(), every));
        let services = open_services_retrying(&env).await;
        early_beats.abort();
        let (db, redis) = services?;
        let shared = Arc::new(Shared {
            bot: env.bot,
            worker_id: env.worker_id,
            api: Api::new(outbox.clone()),
            db,
            redis,
            cache: env.cache.clone(),
            outbox: outbox.clone(),
            in_flight: AtomicU32::new(0),
            inline_ns: AtomicU64::new(0),
            idle: Notify::new(),
            handled: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            retried: AtomicU64::new(0),
            handler_us: AtomicU64::new(0),
            // 1 µs to an hour; longer handlers count as an hour.
            times: Mutex::new(Vec::new()),
            dedupe: Mutex::new(Dedupe::new(self.remember)),
            metrics,
        });
        let mut first = first;
        if let Some(hook) = self.start {
            let early = start_up(
                hook,
                &shared,
                &mut reader,
                first.take(),
                welcome.heartbeat_ms,
            )
            .await?;
            first = Some(early);
        }
        let _ = outbox.send(Message::Ready);
        let heartbeat = tokio::spawn(heartbeats(
            shared.clone(),
            Duration::from_millis(u64::from(welcome.heartbeat_ms.max(10))),
        ));
        let handler = Arc::new(self.handler);
        let result = serve(&shared, &handler, &mut reader, first, self.panic_retries).await;
        heartbeat.abort();
        drop(outbox);
        shared.api.close();
        drop(shared);
        // Let queued acks reach the socket.
        let _ = tokio::time::timeout(Duration::from_secs(1), writer).await;
        result
    }
}

/// The worker's end of its connection, after the handshake.
struct Link {
    reader: FrameReader<tokio::net::unix::OwnedReadHalf>,
    /// What the writer task sends, coalesced into frames.
    outbox: mpsc::UnboundedSender<Message>,
    writer: tokio::task::JoinHandle<std::io::Result<()>>,
    welcome: botfleet_protocol::Welcome,
    /// What followed the welcome in its frame (a drain, updates): served
    /// first.
    first: Option<Vec<Message>>,
}

impl Link {
    /// Connects to the supervisor's socket, says hello and reads the
    /// welcome.
    async fn open(env: &WorkerEnv) -> Result<Link, Error> {
        let stream = UnixStream::connect(&env.socket)
            .await
            .map_err(|source| Error::Connect {
                path: env.socket.clone(),
                source,
            })?;
        let (read, mut write) = stream.into_split();
        let (outbox, mut rx) = mpsc::unbounded_channel();
        let max_batch = env.max_batch;
        let writer = tokio::spawn(async move {
            write_batched(&mut rx, &mut write, Encoding::Binary, max_batch, |_| {}).await
        });
        let mut reader = FrameReader::new(read).trust_json();
        let _ = outbox.send(Message::Hello(Hello {
            version: PROTOCOL_VERSION,
            worker_id: env.worker_id,
            pid: std::process::id(),
            bot: env.bot.clone(),
            capabilities: Vec::new(),
        }));
        let (welcome, first) = match reader.read().await {
            Ok(Some((_, messages))) => {
                let mut messages = messages.into_iter();
                match messages.next() {
                    Some(Message::Welcome(w)) => (w, Some(messages.collect::<Vec<_>>())),
                    Some(Message::Error { message, .. }) => return Err(Error::Refused(message)),
                    other => {
                        return Err(Error::Refused(format!(
                            "expected welcome, got {}",
                            other.map_or("nothing", |m| m.name())
                        )));
                    }
                }
            }
            Ok(None) => return Err(Error::Refused("the connection closed".into())),
            Err(e) => return Err(Error::Connection(e.to_string())),
        };
        Ok(Link {
            reader,
            outbox,
            writer,
            welcome,
            first,
        })
    }
}

/// Heartbeats alone (no metrics yet), until aborted.
async fn bare_heartbeats(outbox: mpsc::UnboundedSender<Message>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    let mut seq = 0;
    loop {
        tick.tick().await;
        seq += 1;
        if outbox.send(Message::Heartbeat(seq)).is_err() {
            return;
        }
    }
}

/// [`open_services`], again every second while the database is
/// unavailable (an outage at start-up waits it out; the supervisor's
/// `ready_timeout` bounds the wait).
async fn open_services_retrying(
    env: &WorkerEnv,
) -> Result<(Option<Database>, Option<botfleet_cache::Redis>), Error> {
    let mut said = false;
    loop {
        match open_services(env).await {
            Err(Error::Database(e)) if e.is_unavailable() => {
                if !said {
                    tracing::warn!("the database is unavailable; trying again every second: {e}");
                    said = true;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            other => return other,
        }
    }
}

/// The bot's database (pool sized by the fleet's budget) and Redis, when
/// the supervisor gave them.
async fn open_services(
    env: &WorkerEnv,
) -> Result<(Option<Database>, Option<botfleet_cache::Redis>), Error> {
    let db = match &env.database_url {
        Some(url) => {
            let mut builder = Database::builder(url.clone())
                .bot(env.bot.clone())
                .application_name(format!("botfleet/{}/{}", env.bot, env.worker_id));
            if let Some(size) = env.pool_size {
                builder = builder.pool_size(size);
            }
            Some(builder.connect().await?)
        }
        None => None,
    };
    let redis = match &env.redis_url {
        Some(url) => Some(
            botfleet_cache::Redis::new(url)
                .map_err(|e| Error::Environment(format!("{}: {e}", env::REDIS_URL)))?,
        ),
        None => None,
    };
    Ok((db, redis))
}

/// Serves the supervisor's frames until it says stop or goes away: each
/// update's handler is started (its first step polled here, the acks of
/// those done at once sent together), results go to the waiting calls, a
/// drain is answered once nothing is in flight.
async fn serve<H, F>(
    shared: &Arc<Shared>,
    handler: &Arc<H>,
    reader: &mut FrameReader<tokio::net::unix::OwnedReadHalf>,
    mut first: Option<Vec<Message>>,
    panic_retries: u32,
) -> Result<(), Error>
where
    H: Fn(Update, Context) -> F + Send + Sync + 'static,
    F: Future<Output = HandlerResult> + Send + 'static,
{
    loop {
        let messages = match first.take() {
            Some(rest) => rest,
            None => match reader.read().await {
                Ok(Some((_, messages))) => messages,
                // The supervisor went away: nothing more to do.
                Ok(None) => return Ok(()),
                Err(e) => return Err(Error::Connection(e.to_string())),
            },
        };
        let mut stop = false;
        for m in messages {
            match m {
                Message::Updates(mut list) => {
                    // Every handler's first step runs here, and the acks of
                    // those done at once leave as one message.
                    let acks = std::future::poll_fn(|cx| {
                        let acks: Vec<Ack> = list
                            .drain(..)
                            .filter_map(|d| start(shared, handler, d, panic_retries, cx))
                            .collect();
                        std::task::Poll::Ready(acks)
                    })
                    .await;
                    if !acks.is_empty() {
                        let n = acks.len() as u32;
                        let _ = shared.outbox.send(Message::Acks(acks));
                        acked(shared, n);
                    }
                }
                Message::Results(results) => shared.api.resolve(results),
                Message::Drain => {
                    tokio::spawn(drained_when_idle(shared.clone()));
                }
                Message::Shutdown => stop = true,
                Message::Error { code, message } => {
                    tracing::error!(code, "the supervisor closes the connection: {message}");
                    stop = true;
                }
                other => {
                    tracing::warn!(
                        message = other.name(),
                        "unexpected message from the supervisor; ignored"
                    );
                }
            }
        }
        if stop {
            return Ok(());
        }
    }
}

/// Says `drained` once nothing is in flight.
async fn drained_when_idle(shared: Arc<Shared>) {
    loop {
        let idle = shared.idle.notified();
        if shared.in_flight.load(Ordering::SeqCst) == 0 {
            break;
        }
        idle.await;
    }
    let _ = shared.outbox.send(Message::Drained);
}

/// Runs the start-up hook before `ready`. Heartbeats go on meanwhile (a
/// long start-up is bounded by `ready_timeout`, not taken for a hang), and
/// the supervisor's frames are read, so the hook's Bot API calls get their
/// results; what else arrives is returned, to be served after `ready`.
async fn start_up(
    hook: StartHook,
    shared: &Arc<Shared>,
    reader: &mut FrameReader<tokio::net::unix::OwnedReadHalf>,
    first: Option<Vec<Message>>,
    heartbeat_ms: u32,
) -> Result<Vec<Message>, Error> {
    let beats = tokio::spawn(heartbeats(
        shared.clone(),
        Duration::from_millis(u64::from(heartbeat_ms.max(10))),
    ));
    let mut hook = tokio::spawn(hook(Context {
        shared: shared.clone(),
        update_id: 0,
        attempt: 0,
    }));
    let mut early = Vec::new();
    let keep = |messages: Vec<Message>, early: &mut Vec<Message>| {
        for m in messages {
            match m {
                Message::Results(results) => shared.api.resolve(results),
                other => early.push(other),
            }
        }
    };
    keep(first.unwrap_or_default(), &mut early);
    let outcome = loop {
        tokio::select! {
            done = &mut hook => break done,
            // Cancel-safe: a frame half read when the hook finishes is
            // finished by the next read.
            read = reader.read() => match read {
                Ok(Some((_, messages))) => keep(messages, &mut early),
                Ok(None) => {
                    hook.abort();
                    beats.abort();
                    return Err(Error::Connection("the supervisor closed the connection during start-up".into()));
                }
                Err(e) => {
                    hook.abort();
                    beats.abort();
                    return Err(Error::Connection(e.to_string()));
                }
            },
        }
    };
    beats.abort();
    match outcome {
        Ok(Ok(())) => Ok(early),
        Ok(Err(e)) => Err(Error::Start(e.to_string())),
        Err(e) => Err(Error::Start(format!("the start-up hook panicked: {e}"))),
    }
}

/// Starts handling one delivery: polls its handler once with the reader's
/// `cx` and returns the ack when it is done at once; a handler that waits
/// on something goes on in a task of its own, which sends its ack.
///
/// Handlers whose first step keeps the reader busy (over
/// [`INLINE_LIMIT`] on average) are spawned without that first poll, so
/// work that does not await spreads over the runtime's threads.
fn start<H, F>(
    shared: &Arc<Shared>,
    handler: &Arc<H>,
    delivery: Delivery,
    panic_retries: u32,
    cx: &mut std::task::Context<'_>,
) -> Option<Ack>
where
    H: Fn(Update, Context) -> F + Send + Sync + 'static,
    F: Future<Output = HandlerResult> + Send + 'static,
{
    let id = delivery.update_id;
    // Released by `acked` once the ack is on its way.
    shared.in_flight.fetch_add(1, Ordering::SeqCst);
    let duplicate = lock(&shared.dedupe).contains(id);
    if duplicate {
        tracing::debug!(update_id = id, "already handled; acked again");
        return Some(Ack {
            update_id: id,
            outcome: Outcome::Handled,
        });
    }
    let began = Instant::now();
    let mut work = Box::pin(handle(
        shared.clone(),
        handler.clone(),
        delivery,
        panic_retries,
    ));
    let inline_ns = shared.inline_ns.load(Ordering::Relaxed);
    if inline_ns <= INLINE_LIMIT.as_nanos() as u64 {
        let polled = work.as_mut().poll(cx);
        // A moving average over about 16 updates of the first step's time.
        let took = began.elapsed().as_nanos() as u64;
        shared
            .inline_ns
            .store(inline_ns - inline_ns / 16 + took / 16, Ordering::Relaxed);
        if let std::task::Poll::Ready(outcome) = polled {
            return Some(finish(shared, id, outcome, took / 1000));
        }
    } else {
        // Decay, so a bot whose handlers got quicker polls inline again.
        shared
            .inline_ns
            .store(inline_ns - inline_ns / 64, Ordering::Relaxed);
    }
    let shared = shared.clone();
    tokio::spawn(async move {
        let outcome = work.await;
        let ack = finish(&shared, id, outcome, began.elapsed().as_micros() as u64);
        let _ = shared.outbox.send(Message::Acks(vec![ack]));
        acked(&shared, 1);
    });
    None
}

/// How long, on average, a handler's first step may keep the reader busy
/// before handlers are spawned instead of polled inline.
const INLINE_LIMIT: Duration = Duration::from_micros(100);

/// Runs the handler (again after a panic, up to `panic_retries` times).
async fn handle<H, F>(
    shared: Arc<Shared>,
    handler: Arc<H>,
    delivery: Delivery,
    panic_retries: u32,
) -> Outcome
where
    H: Fn(Update, Context) -> F + Send + Sync + 'static,
    F: Future<Output = HandlerResult> + Send + 'static,
{
    let id = delivery.update_id;
    let update = Update::new(id, delivery.update);
    let mut tries = 0;
    let mut update = Some(update);
    loop {
        // A copy only while a retry may still need the update.
        let this = if tries < panic_retries {
            update.clone()
        } else {
            update.take()
        }
        .expect("the update is kept while retries remain");
        let cx = Context {
            shared: shared.clone(),
            update_id: id,
            attempt: delivery.attempt,
        };
        // A panic is caught where it happens, so it neither kills the
        // worker nor needs a task of its own.
        let caught = std::panic::AssertUnwindSafe(handler(this, cx))
            .catch_unwind()
            .await
            .map_err(|payload| panic_message(&*payload));
        match caught {
            Ok(Ok(())) => return Outcome::Handled,
            Ok(Err(e)) if is_outage(&*e) => {
                tracing::warn!(
                    update_id = id,
                    "a dependency is unavailable; the update goes again later: {e}"
                );
                return Outcome::Retry;
            }
            Ok(Err(e)) => {
                tracing::warn!(update_id = id, "the handler failed: {e}");
                return Outcome::Failed;
            }
            Err(_) if tries < panic_retries => {
                tries += 1;
                tracing::error!(
                    update_id = id,
                    "the handler panicked; running it again ({tries} of {panic_retries})"
                );
            }
            Err(why) => {
                tracing::error!(
                    update_id = id,
                    "the handler panicked: {why}; acked as failed"
                );
                return Outcome::Failed;
            }
        }
    }
}

/// Counts an update handled in `micros`, remembers its id, and gives its
/// ack.
fn finish(shared: &Shared, id: i64, outcome: Outcome, micros: u64) -> Ack {
    let counter = match outcome {
        Outcome::Handled => &shared.handled,
        Outcome::Failed => &shared.failed,
        Outcome::Retry => &shared.retried,
    };
    counter.fetch_add(1, Ordering::Relaxed);
    shared.handler_us.fetch_add(micros, Ordering::Relaxed);
    lock(&shared.times).push(micros);
    // An update to retry comes again, and must then be handled.
    if outcome != Outcome::Retry {
        lock(&shared.dedupe).insert(id);
    }
    Ack {
        update_id: id,
        outcome,
    }
}

/// `n` updates are acked: the drain may be waiting for the last.
fn acked(shared: &Shared, n: u32) {
    if n > 0 && shared.in_flight.fetch_sub(n, Ordering::SeqCst) == n {
        shared.idle.notify_waiters();
    }
}

/// A panic's message, for the log.
fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_owned())
}

/// The per-update locks of the SDK are std's: on the update path they
/// measured about 10 % more batched updates a second in `bench ipc` than
/// parking_lot's. Nothing panics while holding one, so a poisoned lock
/// only means a panic elsewhere, and its data is still whole.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// An empty histogram of handling times: 1 µs to an hour (a longer
/// handler counts as an hour), three significant digits.
fn handling_histogram() -> hdrhistogram::Histogram<u64> {
    hdrhistogram::Histogram::new_with_bounds(1, 3_600_000_000, 3)
        .expect("the bounds and 3 significant digits are valid")
}

/// The handling times' p50 and p99 since the last call, µs; the
/// histogram starts again.
fn take_quantiles(times: &mut hdrhistogram::Histogram<u64>) -> (u64, u64) {
    let quantiles = (times.value_at_quantile(0.5), times.value_at_quantile(0.99));
    times.reset();
    quantiles
}

/// A heartbeat and the metrics, every `every`.
async fn heartbeats(shared: Arc<Shared>, every: Duration) {
    let mut seq = 0;
    let mut tick = tokio::time::interval(every);
    // One histogram for the worker's life, emptied at each heartbeat.
    let mut histogram = handling_histogram();
    // Each series' value as last sent.
    let mut sent: HashMap<SeriesKey, SeriesValue> = HashMap::new();
    loop {
        tick.tick().await;
        seq += 1;
        let times = std::mem::take(&mut *lock(&shared.times));
        for micros in times {
            histogram.saturating_record(micros);
        }
        let (p50, p99) = take_quantiles(&mut histogram);
        let metrics = WorkerMetrics {
            handled: shared.handled.load(Ordering::Relaxed),
            failed: shared.failed.load(Ordering::Relaxed),
            in_flight: shared.in_flight.load(Ordering::Relaxed),
            handling_p50_us: p50,
            handling_p99_us: p99,
        };
        if shared.outbox.send(Message::Heartbeat(seq)).is_err()
            || shared.outbox.send(Message::Metrics(metrics)).is_err()
            || shared.outbox.send(Message::Stats(stats(&shared))).is_err()
        {
            return;
        }
        if let Some(registry) = &shared.metrics {
            // The pool's and the caches' gauges and counters are exported
            // on demand; the latencies were recorded as they happened.
            if let Some(db) = &shared.db {
                db.report_metrics();
            }
            botfleet_cache::report_all_metrics();
            let changed = changed_series(registry, &mut sent);
            if !changed.is_empty() && shared.outbox.send(Message::Series(changed)).is_err() {
                return;
            }
        }
    }
}

/// A series' name and labels.
type SeriesKey = (String, Vec<(String, String)>);

/// The series of `registry` whose value is not the one in `sent` (which
/// then holds it): what a `series` message carries (docs/protocol.md,
/// "Worker metrics").
fn changed_series(
    registry: &botfleet_monitor::Registry,
    sent: &mut HashMap<SeriesKey, SeriesValue>,
) -> Vec<Series> {
    use botfleet_monitor::registry::Value;
    let mut out = Vec::new();
    for s in registry.snapshot().series {
        let value = match s.value {
            Value::Counter(n) => SeriesValue::Counter(n),
            Value::FloatCounter(v) => SeriesValue::Counter(v as u64),
            Value::Gauge(v) => SeriesValue::Gauge(v),
            Value::Histogram { buckets, sum, .. } => {
                // Cumulative, ending with +Inf -> per bucket.
                let mut bounds = Vec::with_capacity(buckets.len());
                let mut counts = Vec::with_capacity(buckets.len());
                let mut below = 0;
                for (bound, cumulative) in buckets {
                    if bound.is_finite() {
                        bounds.push(bound);
                    }
                    counts.push(cumulative.saturating_sub(below));
                    below = cumulative;
                }
                SeriesValue::Histogram {
                    bounds,
                    counts,
                    sum,
                }
            }
        };
        let key = (s.name, s.labels);
        if sent.get(&key) != Some(&value) {
            sent.insert(key.clone(), value.clone());
            out.push(Series {
                name: key.0,
                labels: key.1,
                value,
            });
        }
    }
    out
}

/// The worker's own stats (docs/protocol.md, "Worker stats"): handling,
/// Bot API and database time, pool use, the tiered caches' counters.
fn stats(shared: &Shared) -> Vec<(String, f64)> {
    let mut out: Vec<(String, f64)> = Vec::with_capacity(Stat::ALL.len());
    let mut put = |stat: Stat, value: f64| out.push((stat.name().to_owned(), value));
    put(Stat::Handled, shared.handled.load(Ordering::Relaxed) as f64);
    put(
        Stat::HandlerUs,
        shared.handler_us.load(Ordering::Relaxed) as f64,
    );
    let (calls, wait_us) = shared.api.totals();
    put(Stat::ApiCalls, calls as f64);
    put(Stat::ApiUs, wait_us as f64);
    if let Some(db) = &shared.db {
        let (queries, time) = db.query_totals();
        put(Stat::DbQueries, queries as f64);
        put(Stat::DbUs, time.as_secs_f64() * 1e6);
        put(
            Stat::DbBatchWaitUs,
            botfleet_db::batch::write_wait_us_total() as f64,
        );
        let pool = db.status();
        put(Stat::DbPoolSize, f64::from(pool.max));
        put(Stat::DbPoolOpen, f64::from(pool.open));
        put(Stat::DbPoolInUse, f64::from(pool.in_use));
        put(Stat::DbPoolWaiters, f64::from(pool.waiters));
    }
    let caches = botfleet_cache::all_stats();
    let sum = |f: fn(&botfleet_cache::Stats) -> u64| caches.iter().map(f).sum::<u64>() as f64;
    put(Stat::CacheL1Hits, sum(|s| s.l1_hits));
    put(Stat::CacheL1Misses, sum(|s| s.l1_misses));
    put(Stat::CacheL2Hits, sum(|s| s.l2_hits));
    put(Stat::CacheL2Misses, sum(|s| s.l2_misses));
    put(Stat::CacheLoads, sum(|s| s.loads));
    out
}

/// What the supervisor tells a worker through its environment.
struct WorkerEnv {
    socket: String,
    worker_id: u32,
    bot: String,
    database_url: Option<String>,
    redis_url: Option<String>,
    pool_size: Option<u32>,
    /// `BOTFLEET_CACHE`: the fleet file's `[cache]`.
    cache: Option<env::CacheEnv>,
    /// `BOTFLEET_IPC_MAX_BATCH`: acks and actions per frame (1 turns
    /// batching off, for `botfleet bench ipc`).
    max_batch: usize,
}

impl WorkerEnv {
    fn from_env() -> Result<WorkerEnv, Error> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let number = |name: &str| -> Result<Option<u64>, Error> {
            var(name)
                .map(|v| {
                    v.parse()
                        .map_err(|_| Error::Environment(format!("{name} is not a number: {v}")))
                })
                .transpose()
        };
        let socket = var(env::SOCKET).ok_or_else(|| {
            Error::Environment(format!(
                "{} is not set: a worker is started by `botfleet run`, which gives it the supervisor's socket",
                env::SOCKET
            ))
        })?;
        let worker_id = number(env::WORKER_ID)?
            .ok_or_else(|| Error::Environment(format!("{} is not set", env::WORKER_ID)))?;
        let too_big = |name: &str| Error::Environment(format!("{name} is out of range"));
        Ok(WorkerEnv {
            socket,
            worker_id: u32::try_from(worker_id).map_err(|_| too_big(env::WORKER_ID))?,
            bot: var(env::BOT).unwrap_or_else(|| "-".to_owned()),
            database_url: var(env::DATABASE_URL),
            redis_url: var(env::REDIS_URL),
            pool_size: number(env::DB_POOL_SIZE)?
                .map(|n| u32::try_from(n).map_err(|_| too_big(env::DB_POOL_SIZE)))
                .transpose()?,
            cache: var(env::CACHE)
                .map(|v| {
                    serde_json::from_str(&v).map_err(|e| {
                        Error::Environment(format!("{} is not the [cache] JSON: {e}", env::CACHE))
                    })
                })
                .transpose()?,
            max_batch: number(env::IPC_MAX_BATCH)?.map_or(Ok(DEFAULT_MAX_BATCH), |n| {
                usize::try_from(n).map_err(|_| too_big(env::IPC_MAX_BATCH))
            })?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handling_quantiles_cover_slow_handlers_and_start_again() {
        let mut h = handling_histogram();
        for micros in 1..=100u64 {
            h.saturating_record(micros * 100_000);
        }
        let (p50, p99) = take_quantiles(&mut h);
        // 5 s and 9.9 s, within the histogram's three digits.
        assert!((4_990_000..=5_010_000).contains(&p50), "{p50}");
        assert!((9_890_000..=9_910_000).contains(&p99), "{p99}");
        assert_eq!(take_quantiles(&mut h), (0, 0));
    }

    /// A handler error that wraps another.
    #[derive(Debug, thiserror::Error)]
    #[error("handling failed")]
    struct Wrapped(#[source] Box<dyn std::error::Error + Send + Sync>);

    #[test]
    fn outages_are_told_from_wrong_updates_through_their_causes() {
        let api = |code| ApiError {
            method: "sendMessage".into(),
            code,
            description: String::new(),
            migrate_to_chat_id: None,
        };
        let redis_down = botfleet_cache::Error::Unavailable {
            namespace: "sessions".into(),
            key: "42".into(),
        };
        let too_large = botfleet_cache::Error::TooLarge {
            namespace: "sessions".into(),
            key: "42".into(),
            size: 10,
            max: 1,
        };
        assert!(is_outage(&Retry("redis".into())));
        assert!(is_outage(&redis_down));
        assert!(is_outage(&Wrapped(Box::new(redis_down))));
        for code in [0, 429, 500, 502] {
            assert!(is_outage(&api(code)), "{code}");
        }
        assert!(!is_outage(&api(400)));
        assert!(!is_outage(&api(403)));
        assert!(!is_outage(&too_large));
        assert!(!is_outage(&Wrapped("a bug".into())));
    }
}
