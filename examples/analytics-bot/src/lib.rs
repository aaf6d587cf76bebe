//! The reference analytics bot, a botfleet worker.
//!
//! - Every message it sees in a group is recorded (chat, user, time, type,
//!   length) through the botfleet-db write batcher; the handler returns once
//!   its row is written, so an acked update is never a lost event.
//! - `/stats` answers, for the chat it is sent in, messages today and in the
//!   last 7 days, the top posters and the busiest hours, from aggregates
//!   computed in SQL and cached for 30 s; the member and administrator
//!   counts come cache-first from getChatMemberCount and
//!   getChatAdministrators.
//! - `/subscribe` and `/unsubscribe` a chat to the digest; `/digest` sends
//!   every subscribed chat its digest now, and a scheduled digest goes out
//!   every `ANALYTICS_DIGEST_EVERY` (default 24 h; one worker of the fleet
//!   claims each period in the database). Digests are a broadcast at the
//!   limiter's broadcast priority, so replies to users go first; the
//!   delivery report goes to the admin (`ANALYTICS_ADMIN`, a user id), or to
//!   whoever sent `/digest` when no admin is set.
//!
//! The SQL is the subset PostgreSQL and SQLite both speak.

use std::sync::Arc;
use std::time::Duration;

use botfleet_cache::TieredCache;
use botfleet_db::batch::Batcher;
use botfleet_db::{Database, Migration, Row};
use botfleet_telegram::types::{ChatType, Message};
use botfleet_telegram::updates::UpdateContent;
use botfleet_worker::{Context, HandlerResult, Update};
use serde::{Deserialize, Serialize};
use serde_json::{Value as Json, json};

/// The bot's schema. Versions 20_001 and up belong to this bot, so it can
/// share a database with other bots.
pub const MIGRATIONS: &[Migration] = &[Migration {
    version: 20_001,
    description: "analytics: events, subscriptions, digest periods",
    sql: "CREATE TABLE analytics_events (
        chat_id BIGINT NOT NULL,
        user_id BIGINT NOT NULL,
        name TEXT NOT NULL,
        at BIGINT NOT NULL,
        kind TEXT NOT NULL,
        length BIGINT NOT NULL
    );
    CREATE INDEX analytics_events_chat_at ON analytics_events (chat_id, at);
    CREATE TABLE analytics_subscriptions (
        chat_id BIGINT PRIMARY KEY,
        title TEXT NOT NULL,
        at BIGINT NOT NULL
    );
    CREATE TABLE analytics_digests (
        period BIGINT PRIMARY KEY,
        worker BIGINT NOT NULL,
        at BIGINT NOT NULL
    )",
}];

/// The columns the batcher writes, in order.
pub const EVENT_COLUMNS: [&str; 6] = ["chat_id", "user_id", "name", "at", "kind", "length"];
/// How long `/stats` aggregates are cached.
const STATS_TTL: Duration = Duration::from_secs(30);
/// How long member and administrator counts are cached.
const MEMBERS_TTL: Duration = Duration::from_secs(600);
const DAY: i64 = 86_400;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// One chat's statistics, as `/stats` shows them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    /// Messages since midnight (UTC).
    pub today: i64,
    /// Messages in the last 7 days.
    pub week: i64,
    /// The three who wrote most in 7 days: name and count.
    pub top: Vec<(String, i64)>,
    /// The three busiest hours of the day (UTC) over 7 days: hour and count.
    pub hours: Vec<(i64, i64)>,
}

struct Bot {
    db: Database,
    events: Batcher,
    stats: TieredCache<i64, Stats>,
    members: TieredCache<i64, i64>,
    admins: TieredCache<i64, i64>,
    admin: Option<i64>,
}

impl Bot {
    /// The worker's start-up, before its first update: the tables, the
    /// event batcher, the caches and the scheduled digests.
    async fn open(cx: Context) -> Result<Arc<Bot>, BoxError> {
        let db = cx
            .db()
            .ok_or("the analytics bot needs a database: give the fleet a [database] (or run it in environment \"dev\")")?
            .clone();
        db.migrate(MIGRATIONS).await?;
        let events = Batcher::start(
            &db,
            "analytics_events",
            &EVENT_COLUMNS,
            &db.settings().batcher,
        )?;
        let admin = match std::env::var("ANALYTICS_ADMIN") {
            Ok(v) => Some(
                v.parse::<i64>()
                    .map_err(|_| format!("ANALYTICS_ADMIN: `{v}` is not a user id"))?,
            ),
            Err(_) => None,
        };
        let every = match std::env::var("ANALYTICS_DIGEST_EVERY") {
            Ok(v) => botfleet_config::duration::parse(&v)
                .filter(|d| !d.is_zero())
                .ok_or_else(|| {
                    format!("ANALYTICS_DIGEST_EVERY: `{v}` is not a period such as 24h, 30m or 90s")
                })?,
            Err(_) => Duration::from_secs(DAY as u64),
        };
        let bot = Arc::new(Bot {
            db,
            events,
            stats: cx
                .cache::<i64, Stats>("analytics.stats")
                .ttl(STATS_TTL)
                .build(),
            members: cx
                .cache::<i64, i64>("analytics.members")
                .ttl(MEMBERS_TTL)
                .build(),
            admins: cx
                .cache::<i64, i64>("analytics.admins")
                .ttl(MEMBERS_TTL)
                .build(),
            admin,
        });
        tokio::spawn(scheduled_digests(bot.clone(), cx, every));
        Ok(bot)
    }
}

/// Runs the analytics bot as a botfleet worker until the supervisor says
/// stop, then writes every event still queued.
pub async fn run() -> Result<(), botfleet_worker::Error> {
    run_with(|_, _| async { Ok(()) }, None).await
}

/// [`run`], with `before` run ahead of each update's handler
/// ([`botfleet_worker::Worker::before`]) and connecting to `socket` when
/// given ([`botfleet_worker::Worker::socket`]): the demo's fault knobs.
pub async fn run_with<B, BF>(
    before: B,
    socket: Option<String>,
) -> Result<(), botfleet_worker::Error>
where
    B: Fn(&Update, &Context) -> BF + Send + Sync + 'static,
    BF: Future<Output = HandlerResult> + Send + 'static,
{
    // The state outlives the worker's loop: its batcher is flushed after.
    let kept: Arc<std::sync::OnceLock<Arc<Bot>>> = Arc::default();
    let keep = kept.clone();
    let start = move |cx: Context| async move {
        let bot = Bot::open(cx).await?;
        let _ = keep.set(bot.clone());
        Ok::<_, BoxError>(bot)
    };
    let mut worker = botfleet_worker::with_state(start, |update, cx, bot: Arc<Arc<Bot>>| {
        handle(update, cx, Arc::clone(&bot))
    })
    .before(before);
    if let Some(socket) = socket {
        worker = worker.socket(socket);
    }
    let result = worker.run().await;
    if let Some(bot) = kept.get() {
        finish(bot).await;
    }
    result
}

/// Writes every event still queued, before the process exits.
async fn finish(bot: &Bot) {
    {
        let report = bot.events.clone().shutdown(Duration::from_secs(5)).await;
        if !report.unwritten.is_empty() {
            warn(&format!(
                "{} events could not be written before exit",
                report.unwritten.len()
            ));
        }
    }
}

#[expect(
    clippy::print_stderr,
    reason = "the worker's stderr goes to the supervisor's log"
)]
fn warn(message: &str) {
    eprintln!("analytics-bot: {message}");
}

/// The handler: group messages are recorded; commands are answered.
async fn handle(update: Update, cx: Context, bot: Arc<Bot>) -> HandlerResult {
    let UpdateContent::Message(m) = update.content()? else {
        return Ok(());
    };
    let text = m.text.as_deref().unwrap_or("");
    let group = matches!(m.chat.type_field, ChatType::Group | ChatType::Supergroup);
    if group {
        bot.record(m).await?;
    }
    let command = text.split_whitespace().next().unwrap_or("");
    let command = command.split('@').next().unwrap_or("");
    match command {
        "/stats" => bot.answer_stats(&cx, m).await,
        "/subscribe" => {
            let title = m.chat.title.clone().unwrap_or_else(|| "this chat".to_owned());
            bot.db
                .query("INSERT INTO analytics_subscriptions (chat_id, title, at) VALUES ($1, $2, $3) ON CONFLICT (chat_id) DO NOTHING")
                .bind(m.chat.id)
                .bind(title)
                .bind(now())
                .execute()
                .await?;
            send(&cx, m.chat.id, "Subscribed: this chat gets the daily digest. /unsubscribe stops it.").await
        }
        "/unsubscribe" => {
            bot.db
                .query("DELETE FROM analytics_subscriptions WHERE chat_id = $1")
                .bind(m.chat.id)
                .execute()
                .await?;
            send(&cx, m.chat.id, "Unsubscribed: no more digests here.").await
        }
        "/digest" => {
            let from = m.from.as_ref().map(|u| u.id as i64);
            if bot.admin.is_some() && from != bot.admin {
                return send(&cx, m.chat.id, "Only the bot's admin can send the digest.").await;
            }
            let report = bot.digest(&cx).await?;
            let to = bot.admin.unwrap_or(m.chat.id);
            send(&cx, to, &report).await
        }
        "/start" | "/help" if !group => {
            send(
                &cx,
                m.chat.id,
                "Add me to a group: I count its messages. /stats shows them, /subscribe sends a daily digest.",
            )
            .await
        }
        _ => Ok(()),
    }
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

async fn send(cx: &Context, chat: i64, text: &str) -> HandlerResult {
    cx.api()
        .call::<_, Json>("sendMessage", &json!({ "chat_id": chat, "text": text }))
        .await?;
    Ok(())
}

/// What kind of message it is, for the record.
fn kind(m: &Message) -> &'static str {
    if m.text.as_deref().is_some_and(|t| t.starts_with('/')) {
        "command"
    } else if m.text.is_some() {
        "text"
    } else if m.photo.is_some() {
        "photo"
    } else if m.sticker.is_some() {
        "sticker"
    } else if m.document.is_some() {
        "document"
    } else {
        "other"
    }
}

impl Bot {
    async fn record(&self, m: &Message) -> Result<(), BoxError> {
        let (user, name) = match &m.from {
            Some(u) => (u.id as i64, u.first_name.clone()),
            None => (0, String::new()),
        };
        let length = m
            .text
            .as_deref()
            .or(m.caption.as_deref())
            .map_or(0, |t| t.chars().count() as i64);
        self.events
            .write(vec![
                m.chat.id.into(),
                user.into(),
                name.into(),
                (m.date as i64).into(),
                kind(m).to_owned().into(),
                length.into(),
            ])
            .await?;
        Ok(())
    }

    /// The chat's statistics from the database.
    async fn compute(&self, chat: i64) -> Result<Stats, BoxError> {
        let now = now();
        let since_week = now - 7 * DAY;
        let midnight = now - now.rem_euclid(DAY);
        let row = self
            .db
            .query("SELECT COUNT(*) AS week, COUNT(CASE WHEN at >= $3 THEN 1 END) AS today FROM analytics_events WHERE chat_id = $1 AND at >= $2")
            .bind(chat)
            .bind(since_week)
            .bind(midnight)
            .fetch_one()
            .await?;
        let week: i64 = row.try_get("week")?;
        let today: i64 = row.try_get("today")?;
        let top = self
            .db
            .query("SELECT user_id, MAX(name) AS name, COUNT(*) AS n FROM analytics_events WHERE chat_id = $1 AND at >= $2 GROUP BY user_id ORDER BY n DESC, user_id LIMIT 3")
            .bind(chat)
            .bind(since_week)
            .fetch_all()
            .await?
            .iter()
            .map(|r| Ok((r.try_get::<String, _>("name")?, r.try_get::<i64, _>("n")?)))
            .collect::<Result<Vec<_>, BoxError>>()?;
        let hours = self
            .db
            .query("SELECT (at % 86400) / 3600 AS hour, COUNT(*) AS n FROM analytics_events WHERE chat_id = $1 AND at >= $2 GROUP BY (at % 86400) / 3600 ORDER BY n DESC, hour LIMIT 3")
            .bind(chat)
            .bind(since_week)
            .fetch_all()
            .await?
            .iter()
            .map(|r| Ok((r.try_get::<i64, _>("hour")?, r.try_get::<i64, _>("n")?)))
            .collect::<Result<Vec<_>, BoxError>>()?;
        Ok(Stats {
            today,
            week,
            top,
            hours,
        })
    }

    async fn answer_stats(&self, cx: &Context, m: &Message) -> HandlerResult {
        let chat = m.chat.id;
        let stats = self
            .stats
            .get_or_load(&chat, || async { self.compute(chat).await.map(Some) })
            .await?
            .unwrap_or_default();
        let mut text = format!(
            "Messages today: {}\nLast 7 days: {}",
            stats.today, stats.week
        );
        if !stats.top.is_empty() {
            text.push_str("\nTop posters:");
            for (name, n) in &stats.top {
                text.push_str(&format!("\n- {name}: {n}"));
            }
        }
        if !stats.hours.is_empty() {
            text.push_str("\nBusiest hours (UTC):");
            for (hour, n) in &stats.hours {
                text.push_str(&format!("\n- {hour:02}:00: {n}"));
            }
        }
        if matches!(m.chat.type_field, ChatType::Group | ChatType::Supergroup) {
            let api = cx.api();
            let members = self
                .members
                .get_or_load(&chat, || async {
                    api.call::<_, i64>("getChatMemberCount", &json!({ "chat_id": chat }))
                        .await
                        .map(Some)
                })
                .await?;
            let admins = self
                .admins
                .get_or_load(&chat, || async {
                    api.call::<_, Vec<Json>>("getChatAdministrators", &json!({ "chat_id": chat }))
                        .await
                        .map(|a| Some(a.len() as i64))
                })
                .await?;
            if let (Some(members), Some(admins)) = (members, admins) {
                text.push_str(&format!("\nMembers: {members}, admins: {admins}"));
            }
        }
        send(cx, chat, &text).await
    }

    /// Sends every subscribed chat its digest; the delivery report.
    async fn digest(&self, cx: &Context) -> Result<String, BoxError> {
        let chats = self
            .db
            .query("SELECT chat_id, title FROM analytics_subscriptions ORDER BY chat_id")
            .fetch_all()
            .await?;
        let mut messages = Vec::with_capacity(chats.len());
        for r in &chats {
            let chat: i64 = r.try_get("chat_id")?;
            let title: String = r.try_get("title")?;
            let s = self.compute(chat).await?;
            let mut text = format!(
                "Digest for {title}: {} messages today, {} in 7 days.",
                s.today, s.week
            );
            if let Some((name, n)) = s.top.first() {
                text.push_str(&format!(" Most active: {name} ({n})."));
            }
            messages.push((chat, text));
        }
        let report = cx.api().broadcast(messages).await;
        let mut text = format!(
            "Digest delivered to {} of {} chats",
            report.delivered, report.total
        );
        if !report.failed.is_empty() {
            let failed: Vec<String> = report
                .failed
                .iter()
                .map(|(chat, e)| format!("{chat} ({})", e.description))
                .collect();
            text.push_str(&format!("; failed: {}", failed.join(", ")));
        }
        text.push('.');
        Ok(text)
    }
}

/// Every `every`, the first worker to claim the period sends the digest and
/// reports to the admin.
async fn scheduled_digests(bot: Arc<Bot>, cx: Context, every: Duration) {
    let secs = every.as_secs().max(1) as i64;
    loop {
        let now = now();
        let next = (now / secs + 1) * secs;
        tokio::time::sleep(Duration::from_secs((next - now).max(1) as u64)).await;
        let period = next / secs;
        let claimed = bot
            .db
            .query("INSERT INTO analytics_digests (period, worker, at) VALUES ($1, $2, $3) ON CONFLICT (period) DO NOTHING")
            .bind(period)
            .bind(i64::from(cx.worker_id()))
            .bind(now)
            .execute()
            .await;
        match claimed {
            Ok(1) => match bot.digest(&cx).await {
                Ok(report) => {
                    if let Some(admin) = bot.admin {
                        let _ = send(&cx, admin, &report).await;
                    }
                }
                Err(e) => warn(&format!("the scheduled digest failed: {e}")),
            },
            Ok(_) => {}
            Err(e) => warn(&format!("cannot claim the digest period: {e}")),
        }
    }
}
