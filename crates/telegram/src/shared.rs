//! One send budget for a token shared by several processes, in Redis.
//!
//! Each process keeps its own [`Limiter`](crate::limiter::Limiter) (order,
//! priorities, fairness among its chats); before a send leaves, it also
//! takes a place in the token's and the chat's windows in Redis with one
//! atomic Lua script, timed by Redis's clock, so the processes together stay
//! within the limits. The windows work as in the local limiter: a send
//! counts from when it leaves until a window after its answer; a send still
//! "in flight" after `IN_FLIGHT_MAX` (its process died) stops counting.
//!
//! With Redis unreachable the budget is skipped (each process then keeps
//! only its local limits) and a warning is logged: sending degrades, it
//! does not stop.

use std::time::Duration;

use redis::aio::MultiplexedConnection;
use tokio::sync::Mutex;

use crate::limiter::{ChatKey, Limits};

/// How long a send may stay in flight before it stops counting.
const IN_FLIGHT_MAX_MS: u64 = 30_000;

/// Takes a place, or says how long to wait. KEYS: the token's in-flight
/// and done sets, the chat's. ARGV: member, token max, token window (ms),
/// chat max, chat window, group max (0: not a group), group window,
/// in-flight limit (ms). Scores: start time (in flight), answer time (done).
const TAKE: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local stale = now - tonumber(ARGV[8])
local function count(flight, done, window)
  redis.call('ZREMRANGEBYSCORE', flight, '-inf', stale)
  return redis.call('ZCOUNT', flight, stale, '+inf') + redis.call('ZCOUNT', done, now - window, '+inf')
end
local function wait(flight, done, window, max)
  -- Until the oldest counting answer leaves the window (in-flight sends
  -- need their answer first: look again soon).
  local n = redis.call('ZCOUNT', flight, stale, '+inf')
  if n >= max then return 50 end
  local first = redis.call('ZRANGEBYSCORE', done, now - window, '+inf', 'WITHSCORES', 'LIMIT', 0, 1)
  if first[2] then return math.max(1, tonumber(first[2]) + window - now) end
  return 50
end
local checks = {
  {KEYS[1], KEYS[2], tonumber(ARGV[3]), tonumber(ARGV[2])},
  {KEYS[3], KEYS[4], tonumber(ARGV[5]), tonumber(ARGV[4])},
}
if tonumber(ARGV[6]) > 0 then
  table.insert(checks, {KEYS[3], KEYS[4], tonumber(ARGV[7]), tonumber(ARGV[6])})
end
for _, c in ipairs(checks) do
  if count(c[1], c[2], c[3]) >= c[4] then return wait(c[1], c[2], c[3], c[4]) end
end
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('ZADD', KEYS[3], now, ARGV[1])
for _, k in ipairs({KEYS[1], KEYS[3]}) do redis.call('PEXPIRE', k, tonumber(ARGV[8]) + 120000) end
return 0
";

/// Ends a place: `done` moves it to the answered sets at Redis's time;
/// otherwise it is forgotten (the send did not count). KEYS as for TAKE;
/// ARGV: member, 1 for done, the longest window (ms).
const FINISH: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
if ARGV[2] == '1' then
  redis.call('ZADD', KEYS[2], now, ARGV[1])
  redis.call('ZADD', KEYS[4], now, ARGV[1])
end
for _, k in ipairs({KEYS[2], KEYS[4]}) do
  redis.call('ZREMRANGEBYSCORE', k, '-inf', now - tonumber(ARGV[3]))
  redis.call('PEXPIRE', k, tonumber(ARGV[3]) + 120000)
end
return 0
";

/// A token's budget in Redis, shared by every process that sends for it.
pub struct SharedBudget {
    client: redis::Client,
    connection: Mutex<Option<MultiplexedConnection>>,
    /// `bf:tg:<bot>:`: the keys of this token.
    prefix: String,
    limits: Limits,
    process: String,
    next: std::sync::atomic::AtomicU64,
    /// After a failure, Redis is not tried again before this (no per-send
    /// wait on a dead connection).
    down_until: parking_lot::Mutex<Option<tokio::time::Instant>>,
}

/// How long Redis is left alone after it failed.
const PROBE_INTERVAL: Duration = Duration::from_secs(1);

impl std::fmt::Debug for SharedBudget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedBudget")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

/// A place taken in the shared windows.
#[derive(Debug)]
pub(crate) struct Place {
    member: String,
    keys: [String; 4],
}

impl SharedBudget {
    /// The budget of the bot named `bot` (the same name in every process:
    /// it names the Redis keys, never the token) at `url`.
    pub fn new(url: &str, bot: &str, limits: Limits) -> Result<SharedBudget, redis::RedisError> {
        Ok(SharedBudget {
            client: redis::Client::open(url)?,
            connection: Mutex::new(None),
            prefix: format!("bf:tg:{bot}:"),
            limits,
            // Unique per process and budget, so members never collide.
            process: {
                use std::hash::BuildHasher;
                let salt = std::collections::hash_map::RandomState::new().hash_one(bot);
                format!("{}-{salt:x}", std::process::id())
            },
            next: std::sync::atomic::AtomicU64::new(0),
            down_until: parking_lot::Mutex::new(None),
        })
    }

    fn mark_down(&self) {
        let until = tokio::time::Instant::now() + PROBE_INTERVAL;
        *self.down_until.lock() = Some(until);
    }

    async fn connection(&self) -> Option<MultiplexedConnection> {
        let down = *self.down_until.lock();
        if down.is_some_and(|d| tokio::time::Instant::now() < d) {
            return None;
        }
        let mut slot = self.connection.lock().await;
        if slot.is_none() {
            let connect = self.client.get_multiplexed_async_connection();
            match tokio::time::timeout(Duration::from_millis(250), connect).await {
                Ok(Ok(c)) => *slot = Some(c),
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "the shared send budget's Redis is unreachable; limiting locally only");
                    self.mark_down();
                }
                Err(_) => {
                    tracing::warn!(
                        "the shared send budget's Redis does not answer; limiting locally only"
                    );
                    self.mark_down();
                }
            }
        }
        slot.clone()
    }

    fn keys(&self, chat: &ChatKey) -> [String; 4] {
        let chat = match chat {
            ChatKey::Id(id) => id.to_string(),
            ChatKey::Username(u) => format!("@{u}"),
        };
        let p = &self.prefix;
        [
            format!("{p}token:flight"),
            format!("{p}token:done"),
            format!("{p}chat:{chat}:flight"),
            format!("{p}chat:{chat}:done"),
        ]
    }

    /// Waits for a place for a send to `chat`. `None` when Redis cannot be
    /// used (the send goes on under the local limits only).
    pub(crate) async fn take(&self, chat: &ChatKey, paid: bool) -> Option<Place> {
        let n = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let member = format!("{}:{n}", self.process);
        let keys = self.keys(chat);
        let l = &self.limits;
        let token = if paid { l.paid } else { l.token };
        let group = match chat {
            ChatKey::Id(id) if *id >= 0 => None,
            _ => Some(l.group),
        };
        loop {
            let mut conn = self.connection().await?;
            let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
            let wait: Result<u64, _> = redis::cmd("EVAL")
                .arg(TAKE)
                .arg(4)
                .arg(&keys[..])
                .arg(&member)
                .arg(token.max)
                .arg(ms(token.window))
                .arg(l.chat.max)
                .arg(ms(l.chat.window))
                .arg(group.map_or(0, |g| g.max))
                .arg(group.map_or(0, |g| ms(g.window)))
                .arg(IN_FLIGHT_MAX_MS)
                .query_async(&mut conn)
                .await;
            match wait {
                Ok(0) => return Some(Place { member, keys }),
                Ok(ms) => tokio::time::sleep(Duration::from_millis(ms.min(1_000))).await,
                Err(e) => {
                    tracing::warn!(error = %e, "the shared send budget failed; limiting locally only");
                    *self.connection.lock().await = None;
                    self.mark_down();
                    return None;
                }
            }
        }
    }

    /// Ends a place: `answered` if Telegram answered (it counted; a 429 or
    /// an unsent request does not).
    pub(crate) async fn finish(&self, place: Place, answered: bool) {
        let Some(mut conn) = self.connection().await else {
            return;
        };
        let l = &self.limits;
        let longest = l
            .chat
            .window
            .max(l.group.window)
            .max(l.token.window)
            .max(l.paid.window);
        let result: Result<i64, _> = redis::cmd("EVAL")
            .arg(FINISH)
            .arg(4)
            .arg(&place.keys[..])
            .arg(&place.member)
            .arg(if answered { "1" } else { "0" })
            .arg(u64::try_from(longest.as_millis()).unwrap_or(u64::MAX))
            .query_async(&mut conn)
            .await;
        if let Err(e) = result {
            tracing::warn!(error = %e, "could not end a place in the shared send budget");
        }
    }
}
