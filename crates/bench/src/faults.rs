//! The demo's fault knobs (`botfleet demo --fault KIND`): each injects the
//! bottleneck `botfleet analyze` names by the same kind (docs/analyze.md),
//! so a user can see each diagnosis and the tests can check it.
//!
//! Some act on the fleet file or the world (a tiny cache, a tight budget,
//! a slow Bot API, the path to PostgreSQL or Redis cut); the others run in
//! the demo's workers, before each update's handler
//! ([`botfleet_worker::Worker::before`]): CPU burned, memory kept, a
//! connection held, a failure, a slow or unindexed query. `ipc` puts a
//! delay line between a worker and the supervisor's socket.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use botfleet_worker::{Context, HandlerResult, Update};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One injected bottleneck, named by the kind `analyze` gives it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// The path to PostgreSQL is cut 5 s into the traffic (`--postgres`).
    DbDown,
    /// The path to Redis is cut 5 s into the traffic (`--redis`).
    RedisDown,
    /// Each update keeps 1 MiB for good: the workers grow until memory
    /// runs out.
    HostMemory,
    /// Each update burns 100 ms of CPU: more than the host has.
    HostCpu,
    /// Each update also reads a 200,000-row table by a column whose index
    /// was dropped (`--postgres`).
    MissingIndex,
    /// One connection per worker, and each update holds it 150 ms in a
    /// transaction.
    PoolExhausted,
    /// Each update also runs a query that takes 30 ms in the server and
    /// that no index helps (`--postgres`).
    SlowQuery,
    /// Every cache's L1 holds 8 entries.
    CacheTooSmall,
    /// The token's allowance is 8 sends a second, below what the users ask
    /// for.
    RateLimited,
    /// The Bot API answers after 300 ms (±50).
    SlowApi,
    /// 25 ms each way between the supervisor and each worker.
    Ipc,
    /// One update in five fails in the handler.
    HandlerErrors,
    /// Each worker handles one update at a time, 250 ms each, and the
    /// connection budget has no room for more workers (`--postgres`).
    CappedByBudget,
    /// Each worker handles one update at a time, 250 ms each.
    Saturated,
}

impl Fault {
    /// Every knob.
    pub const ALL: [Fault; 14] = [
        Fault::DbDown,
        Fault::RedisDown,
        Fault::HostMemory,
        Fault::HostCpu,
        Fault::MissingIndex,
        Fault::PoolExhausted,
        Fault::SlowQuery,
        Fault::CacheTooSmall,
        Fault::RateLimited,
        Fault::SlowApi,
        Fault::Ipc,
        Fault::HandlerErrors,
        Fault::CappedByBudget,
        Fault::Saturated,
    ];

    /// The kind of finding it injects, which is also the knob's name.
    pub const fn kind(self) -> &'static str {
        match self {
            Fault::DbDown => "db.down",
            Fault::RedisDown => "cache.redis_down",
            Fault::HostMemory => "host.memory",
            Fault::HostCpu => "host.cpu",
            Fault::MissingIndex => "db.missing_index",
            Fault::PoolExhausted => "db.pool_exhausted",
            Fault::SlowQuery => "db.slow_query",
            Fault::CacheTooSmall => "cache.too_small",
            Fault::RateLimited => "telegram.rate_limited",
            Fault::SlowApi => "telegram.slow_api",
            Fault::Ipc => "ipc",
            Fault::HandlerErrors => "handler.errors",
            Fault::CappedByBudget => "workers.capped_by_budget",
            Fault::Saturated => "workers.saturated",
        }
    }

    /// The knob named `text` (a kind), or an error listing them.
    pub fn parse(text: &str) -> Result<Fault, String> {
        Fault::ALL
            .into_iter()
            .find(|f| f.kind() == text)
            .ok_or_else(|| {
                format!(
                    "no fault knob {text:?}; the knobs are {}",
                    Fault::ALL.map(Fault::kind).join(", ")
                )
            })
    }

    /// What it needs of the demo's options: `Some(flag)` when it needs
    /// `--postgres` or `--redis`.
    pub const fn needs(self) -> Option<&'static str> {
        match self {
            Fault::DbDown | Fault::MissingIndex | Fault::SlowQuery | Fault::CappedByBudget => {
                Some("--postgres")
            }
            Fault::RedisDown => Some("--redis"),
            _ => None,
        }
    }

    /// What it does, in one line.
    pub const fn what(self) -> &'static str {
        match self {
            Fault::DbDown => "the path to PostgreSQL is cut 5 s into the traffic",
            Fault::RedisDown => "the path to Redis is cut 5 s into the traffic",
            Fault::HostMemory => "each update keeps 1 MiB for good",
            Fault::HostCpu => "each update burns 100 ms of CPU",
            Fault::MissingIndex => {
                "each update also reads a 200,000-row table by a column whose index was dropped"
            }
            Fault::PoolExhausted => {
                "one connection per worker, held 150 ms by each update in a transaction"
            }
            Fault::SlowQuery => {
                "each update also runs a query that takes 30 ms in the server, which no index helps"
            }
            Fault::CacheTooSmall => "every cache's L1 holds 8 entries",
            Fault::RateLimited => {
                "the token's allowance is 8 sends a second, below what the users ask for"
            }
            Fault::SlowApi => "the Bot API answers after 300 ms (±50)",
            Fault::Ipc => "25 ms each way between the supervisor and each worker",
            Fault::HandlerErrors => "one update in five fails in the handler",
            Fault::CappedByBudget => {
                "one update at a time per worker, 250 ms each, and no room in the connection budget for more workers"
            }
            Fault::Saturated => "one update at a time per worker, 250 ms each",
        }
    }

    /// Whether it runs in the workers, before each handler.
    pub const fn in_worker(self) -> bool {
        matches!(
            self,
            Fault::HostMemory
                | Fault::HostCpu
                | Fault::MissingIndex
                | Fault::PoolExhausted
                | Fault::SlowQuery
                | Fault::Ipc
                | Fault::HandlerErrors
                | Fault::CappedByBudget
                | Fault::Saturated
        )
    }
}

/// The table `db.missing_index` reads.
pub const LOOKUP_TABLE: &str = "demo_fault_lookups";
/// Its rows.
pub const LOOKUP_ROWS: i64 = 200_000;

/// A future of the hook.
type Step = Pin<Box<dyn Future<Output = HandlerResult> + Send>>;

/// Memory the `host.memory` knob keeps, never freed while the worker runs.
static KEPT: parking_lot::Mutex<Vec<Vec<u8>>> = parking_lot::Mutex::new(Vec::new());

/// The step the demo's workers run before each handler for `faults`.
pub fn before(faults: &[Fault]) -> impl Fn(&Update, &Context) -> Step + Send + Sync + 'static {
    let faults: Arc<[Fault]> = faults.iter().copied().filter(|f| f.in_worker()).collect();
    // One update at a time per worker, for the saturation knobs.
    let one_at_a_time = Arc::new(tokio::sync::Mutex::new(()));
    move |update: &Update, cx: &Context| {
        let faults = faults.clone();
        let id = update.id();
        let user = update_user(update);
        let db = cx.db().cloned();
        let one_at_a_time = one_at_a_time.clone();
        Box::pin(async move {
            for fault in faults.iter() {
                match fault {
                    Fault::HostCpu => {
                        let until = tokio::time::Instant::now() + Duration::from_millis(100);
                        let mut x = 0u64;
                        while tokio::time::Instant::now() < until {
                            x = std::hint::black_box(
                                x.wrapping_mul(6364136223846793005).wrapping_add(1),
                            );
                        }
                    }
                    Fault::HostMemory => {
                        // Written, so the pages are resident.
                        KEPT.lock().push(vec![0x5a; 1 << 20]);
                    }
                    Fault::HandlerErrors => {
                        if id.rem_euclid(5) == 0 {
                            return Err(format!(
                                "update {id}: a failure injected by --fault handler.errors"
                            )
                            .into());
                        }
                    }
                    Fault::Saturated | Fault::CappedByBudget => {
                        let _one = one_at_a_time.lock().await;
                        tokio::time::sleep(Duration::from_millis(250)).await;
                    }
                    Fault::PoolExhausted => {
                        if let Some(db) = &db {
                            let mut tx = db.begin().await?;
                            tx.query("SELECT 1 AS one").fetch_one().await?;
                            tokio::time::sleep(Duration::from_millis(150)).await;
                            tx.commit().await?;
                        }
                    }
                    Fault::SlowQuery => {
                        if let Some(db) = &db {
                            // Time in the server (a lock, a slow disk), not
                            // CPU of the host's.
                            db.query("SELECT pg_sleep(0.03)::text AS slept")
                                .fetch_one()
                                .await?;
                        }
                    }
                    Fault::MissingIndex => {
                        if let Some(db) = &db {
                            db.query(
                                "SELECT payload FROM demo_fault_lookups WHERE user_id = $1 LIMIT 1",
                            )
                            .bind(user)
                            .fetch_optional()
                            .await?;
                        }
                    }
                    Fault::DbDown
                    | Fault::RedisDown
                    | Fault::CacheTooSmall
                    | Fault::RateLimited
                    | Fault::SlowApi
                    | Fault::Ipc => {}
                }
            }
            Ok(())
        }) as Step
    }
}

/// The user an update is from (0 when none), for the lookup.
fn update_user(update: &Update) -> i64 {
    use botfleet_telegram::updates::UpdateContent;
    match update.content() {
        Ok(UpdateContent::Message(m)) => m.from.as_ref().map_or(0, |u| u.id as i64),
        Ok(UpdateContent::CallbackQuery(q)) => q.from.id as i64,
        _ => 0,
    }
}

/// Creates `db.missing_index`'s table: 200,000 rows, read by `user_id`,
/// whose index is dropped (as a migration that lost it would).
pub async fn seed_lookups(db: &botfleet_db::Database) -> anyhow::Result<()> {
    for sql in [
        "DROP TABLE IF EXISTS demo_fault_lookups",
        "CREATE TABLE demo_fault_lookups (id BIGINT PRIMARY KEY, user_id BIGINT NOT NULL, payload TEXT NOT NULL)",
        "INSERT INTO demo_fault_lookups SELECT i, 100000001 + (i * 7919) % 1000000, md5(i::text) FROM generate_series(1, 200000) AS s(i)",
        "CREATE INDEX demo_fault_lookups_user ON demo_fault_lookups (user_id)",
        "DROP INDEX demo_fault_lookups_user",
        "ANALYZE demo_fault_lookups",
        // The advisor reads the statements from here when it can.
        "CREATE EXTENSION IF NOT EXISTS pg_stat_statements",
    ] {
        if let Err(e) = db.query(sql).execute().await {
            if sql.starts_with("CREATE EXTENSION") {
                tracing::info!(
                    "pg_stat_statements is not available ({e}); the advisor sees the sequential scans only"
                );
            } else {
                return Err(e.into());
            }
        }
    }
    Ok(())
}

/// A TCP relay in front of a server, to cut the path to it: after
/// [`Relay::cut`], open connections close and new ones are refused.
pub struct Relay {
    addr: std::net::SocketAddr,
    cut: tokio::sync::watch::Sender<bool>,
}

impl Relay {
    /// Listens on a free loopback port and relays to `target`.
    pub async fn start(target: std::net::SocketAddr) -> std::io::Result<Relay> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let (cut, watch) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            let mut stop = watch.clone();
            loop {
                tokio::select! {
                    _ = stop.changed() => break,
                    accepted = listener.accept() => {
                        let Ok((mut inbound, _)) = accepted else { continue };
                        let mut stop = watch.clone();
                        tokio::spawn(async move {
                            let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await else {
                                return;
                            };
                            tokio::select! {
                                _ = stop.changed() => {}
                                _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                            }
                        });
                    }
                }
            }
            // The listener drops here: the port refuses from now on.
        });
        Ok(Relay { addr, cut })
    }

    /// Where clients connect.
    pub fn addr(&self) -> std::net::SocketAddr {
        self.addr
    }

    /// Cuts the path: every connection closes, the port refuses.
    pub fn cut(&self) {
        let _ = self.cut.send(true);
    }
}

/// The parts of `scheme://[user[:password]@]host[:port][/...]`: scheme,
/// user part (with its `@`), host and port, and the rest.
fn split_url(url: &str) -> Option<(&str, &str, &str, &str)> {
    let (scheme, rest) = url.split_once("://")?;
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let authority = &rest[..end];
    let (user, host) = match authority.rfind('@') {
        Some(at) => (&authority[..=at], &authority[at + 1..]),
        None => ("", authority),
    };
    Some((scheme, user, host, &rest[end..]))
}

/// The address a server URL names (PostgreSQL's port 5432 and Redis's 6379
/// by default).
pub fn target_of(url: &str) -> Option<std::net::SocketAddr> {
    use std::net::ToSocketAddrs;
    let (scheme, _, host, _) = split_url(url)?;
    if host
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
    {
        host.to_socket_addrs().ok()?.next()
    } else {
        let port = if scheme.starts_with("redis") {
            6379
        } else {
            5432
        };
        (host.trim_matches(['[', ']']), port)
            .to_socket_addrs()
            .ok()?
            .next()
    }
}

/// `url` with its host and port replaced by `addr`.
pub fn redirect(url: &str, addr: std::net::SocketAddr) -> Option<String> {
    let (scheme, user, _, rest) = split_url(url)?;
    Some(format!("{scheme}://{user}{addr}{rest}"))
}

/// Puts a delay line of `delay` each way between this worker and the
/// supervisor's socket (`BOTFLEET_SOCKET`): returns the socket of this
/// process the worker's SDK is to connect to instead
/// ([`botfleet_worker::Worker::socket`]); every byte through it arrives
/// `delay` late. This process connects to the supervisor, as the
/// supervisor's check of the connecting process wants.
pub fn delay_line(delay: Duration) -> anyhow::Result<String> {
    use anyhow::Context as _;
    let real = std::env::var(botfleet_protocol::env::SOCKET)
        .context("the ipc knob runs in a worker of `botfleet demo`, which gives BOTFLEET_SOCKET")?;
    let line = format!("{real}.line-{}", std::process::id());
    let _ = std::fs::remove_file(&line);
    let listener = tokio::net::UnixListener::bind(&line)
        .with_context(|| format!("cannot listen on {line}"))?;
    let path = line.clone();
    tokio::spawn(async move {
        let Ok((inbound, _)) = listener.accept().await else {
            return;
        };
        let _ = std::fs::remove_file(&path);
        let Ok(outbound) = tokio::net::UnixStream::connect(&real).await else {
            return;
        };
        let (in_read, in_write) = inbound.into_split();
        let (out_read, out_write) = outbound.into_split();
        tokio::join!(
            delayed(in_read, out_write, delay),
            delayed(out_read, in_write, delay)
        );
    });
    Ok(line)
}

/// Copies `from` to `to`, each chunk `delay` after it was read.
async fn delayed(
    mut from: impl tokio::io::AsyncRead + Unpin,
    mut to: impl tokio::io::AsyncWrite + Unpin,
    delay: Duration,
) {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(tokio::time::Instant, Vec<u8>)>();
    let read = async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match from.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if tx
                        .send((tokio::time::Instant::now() + delay, buf[..n].to_vec()))
                        .is_err()
                    {
                        break;
                    }
                }
            }
        }
    };
    let write = async move {
        while let Some((at, bytes)) = rx.recv().await {
            tokio::time::sleep_until(at).await;
            if to.write_all(&bytes).await.is_err() {
                break;
            }
        }
        let _ = to.shutdown().await;
    };
    tokio::join!(read, write);
}
