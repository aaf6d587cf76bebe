//! The environment the supervisor gives each worker process: the names both
//! sides use (docs/protocol.md, "Environment"). The supervisor sets them,
//! the worker SDKs read them; nothing else spells them out.

/// The supervisor's Unix socket, to connect to.
pub const SOCKET: &str = "BOTFLEET_SOCKET";
/// The worker's id (a number), to send in `hello`.
pub const WORKER_ID: &str = "BOTFLEET_WORKER_ID";
/// The bot's name in the fleet file.
pub const BOT: &str = "BOTFLEET_BOT";
/// The fleet's database URL (the embedded SQLite file in dev). The same
/// name is the `--database-url` fallback of `botfleet tune` and `db`.
pub const DATABASE_URL: &str = "BOTFLEET_DATABASE_URL";
/// The fleet's Redis URL, when the fleet file has `[redis]`.
pub const REDIS_URL: &str = "BOTFLEET_REDIS_URL";
/// This worker's pool size, from the fleet's connection budget.
pub const DB_POOL_SIZE: &str = "BOTFLEET_DB_POOL_SIZE";
/// Acks and actions per frame the worker may coalesce (default
/// [`DEFAULT_MAX_BATCH`](crate::DEFAULT_MAX_BATCH); 1 turns batching off,
/// for `botfleet bench ipc`).
pub const IPC_MAX_BATCH: &str = "BOTFLEET_IPC_MAX_BATCH";

/// The fleet file's `[cache]` settings for the worker's caches, as the
/// JSON of a [`CacheEnv`] (absent: the SDK's defaults).
pub const CACHE: &str = "BOTFLEET_CACHE";

/// One namespace's cache settings (or the defaults of all).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CacheSettings {
    /// L1 capacity, entries per process.
    pub capacity: u64,
    /// How long values stay, milliseconds.
    pub ttl_ms: u64,
    /// How long "not found" is remembered, milliseconds (0: not at all).
    pub negative_ttl_ms: u64,
    /// The share of each TTL taken off at random.
    pub jitter: f64,
    /// The share at the end of the TTL in which reads refresh the entry.
    pub refresh_ahead: f64,
}

/// What [`CACHE`] carries.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CacheEnv {
    /// Settings of namespaces not named in `namespaces`.
    pub defaults: CacheSettings,
    /// Per-namespace settings.
    pub namespaces: std::collections::BTreeMap<String, CacheSettings>,
    /// Largest encoded value stored in Redis.
    pub max_value_bytes: u64,
    /// The cross-process load lease, milliseconds (0: off).
    pub lease_ms: u64,
}

impl CacheEnv {
    /// The settings of `namespace`.
    pub fn settings(&self, namespace: &str) -> &CacheSettings {
        self.namespaces.get(namespace).unwrap_or(&self.defaults)
    }
}

/// `off` when the supervisor collects no metrics (no monitor): the worker
/// then sends no `series` messages and need not record any.
pub const METRICS: &str = "BOTFLEET_METRICS";

/// Every variable of the contract, in the order docs/protocol.md lists
/// them.
pub const ALL: [&str; 9] = [
    SOCKET,
    WORKER_ID,
    BOT,
    DATABASE_URL,
    DB_POOL_SIZE,
    REDIS_URL,
    CACHE,
    IPC_MAX_BATCH,
    METRICS,
];
