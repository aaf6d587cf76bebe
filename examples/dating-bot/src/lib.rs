//! The reference dating bot, a botfleet worker.
//!
//! - `/start` walks a new user through a profile (name, age, gender, who
//!   they look for, city, a short bio), mostly with inline buttons; `/profile`
//!   shows it and offers to edit it.
//! - `/next` shows a candidate: same city, age within the user's range,
//!   looking for the user's gender, never shown to this user before, not
//!   blocked either way; with Like / Skip / Block buttons. Each user's
//!   candidate queue and every profile card are read through the tiered
//!   cache; verdicts are written to the database.
//! - A like that is returned makes a match, and both users are told (two
//!   sends through the supervisor's limiter).
//! - `/matches` lists matches five to a page; blocking removes the match both
//!   ways and drops both users' cached cards and queues.
//!
//! Every step works on PostgreSQL and on the embedded SQLite: the SQL is the
//! subset both speak (`ON CONFLICT`, `$n` parameters, `BIGINT` everywhere).
//! "Never shown twice" does not rest on the cache: a candidate is recorded
//! as shown with an insert that does nothing when the pair exists (or the
//! candidate has blocked the user), and only a row actually inserted is
//! shown. A stale queue in another worker's memory costs a skipped entry,
//! never a repeat.

use std::sync::Arc;
use std::time::Duration;

use botfleet_cache::TieredCache;
use botfleet_db::batch::Row as SeedRow;
use botfleet_db::{Database, Migration, Row};
use botfleet_telegram::types::{ChatType, MaybeInaccessibleMessage};
use botfleet_telegram::updates::UpdateContent;
use botfleet_worker::{Context, HandlerResult, Update};
use serde::{Deserialize, Serialize};
use serde_json::{Value as Json, json};

/// The bot's schema. Versions 10_001 and up belong to this bot, so it can
/// share a database with other bots.
pub const MIGRATIONS: &[Migration] = &[Migration {
    version: 10_001,
    description: "dating: profiles, verdicts, matches",
    sql: "CREATE TABLE dating_profiles (
        user_id BIGINT PRIMARY KEY,
        chat_id BIGINT NOT NULL,
        step TEXT NOT NULL,
        name TEXT,
        age BIGINT,
        gender TEXT,
        looking_for TEXT,
        city TEXT,
        bio TEXT,
        min_age BIGINT,
        max_age BIGINT,
        updated_at BIGINT NOT NULL
    );
    CREATE INDEX dating_profiles_browse ON dating_profiles (city, gender, age);
    CREATE TABLE dating_verdicts (
        user_id BIGINT NOT NULL,
        other_id BIGINT NOT NULL,
        verdict TEXT NOT NULL,
        at BIGINT NOT NULL,
        PRIMARY KEY (user_id, other_id)
    );
    CREATE TABLE dating_matches (
        user_id BIGINT NOT NULL,
        other_id BIGINT NOT NULL,
        at BIGINT NOT NULL,
        PRIMARY KEY (user_id, other_id)
    )",
}];

/// The cities a profile can pick with a button (any other can be typed).
pub const CITIES: [&str; 5] = ["Berlin", "Lisbon", "Warsaw", "Madrid", "Prague"];
/// The ages offered as buttons (any from 18 to 99 can be typed).
const AGES: [i64; 6] = [19, 23, 27, 31, 36, 45];
/// Candidates loaded into a user's queue at a time.
const QUEUE: i64 = 20;
/// Matches on one page of `/matches`.
const PAGE: i64 = 5;
/// How far from the user's own age the default range reaches.
const AGE_SPAN: i64 = 6;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What `/next` shows of a profile.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Card {
    /// Whose profile.
    pub user_id: i64,
    /// Their private chat with the bot.
    pub chat_id: i64,
    /// Their name.
    pub name: String,
    /// Their age.
    pub age: i64,
    /// Their city.
    pub city: String,
    /// Their few words (may be empty).
    pub bio: String,
}

impl Card {
    fn text(&self) -> String {
        let mut text = format!("{}, {}, {}", self.name, self.age, self.city);
        if !self.bio.is_empty() {
            text.push_str("\n\n");
            text.push_str(&self.bio);
        }
        text
    }
}

/// The bot's state in this worker process: the database and its caches.
struct Bot {
    db: Database,
    /// Candidate ids still to show, per user.
    queues: TieredCache<i64, Vec<i64>>,
    /// Profile cards, per user (only complete profiles).
    cards: TieredCache<i64, Card>,
}

impl Bot {
    /// The worker's start-up, before its first update: the tables and the
    /// caches.
    async fn open(cx: Context) -> Result<Bot, BoxError> {
        let db = cx
            .db()
            .ok_or("the dating bot needs a database: give the fleet a [database] (or run it in environment \"dev\")")?
            .clone();
        db.migrate(MIGRATIONS).await?;
        Ok(Bot {
            db,
            queues: cx
                .cache::<i64, Vec<i64>>("dating.queue")
                .ttl(Duration::from_secs(600))
                .build(),
            cards: cx
                .cache::<i64, Card>("dating.card")
                .ttl(Duration::from_secs(300))
                .build(),
        })
    }
}

/// Runs the dating bot as a botfleet worker until the supervisor says stop.
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
    let mut worker = botfleet_worker::with_state(Bot::open, handle).before(before);
    if let Some(socket) = socket {
        worker = worker.socket(socket);
    }
    worker.run().await
}

/// The handler: messages in private chats and button presses.
async fn handle(update: Update, cx: Context, bot: Arc<Bot>) -> HandlerResult {
    match update.content()? {
        UpdateContent::Message(m) => {
            if m.chat.type_field != ChatType::Private {
                return Ok(());
            }
            let Some(from) = &m.from else { return Ok(()) };
            let user = User {
                id: from.id as i64,
                chat: m.chat.id,
                first_name: from.first_name.clone(),
            };
            bot.on_text(&cx, &user, m.text.as_deref().unwrap_or(""))
                .await
        }
        UpdateContent::CallbackQuery(q) => {
            let chat = match &q.message {
                Some(MaybeInaccessibleMessage::Message(m)) => m.chat.id,
                Some(MaybeInaccessibleMessage::InaccessibleMessage(m)) => m.chat.id,
                None => q.from.id as i64,
            };
            let user = User {
                id: q.from.id as i64,
                chat,
                first_name: q.from.first_name.clone(),
            };
            let result = bot
                .on_button(&cx, &user, q.data.as_deref().unwrap_or(""))
                .await;
            // The spinner on the button stops either way.
            cx.api()
                .call::<_, Json>("answerCallbackQuery", &json!({ "callback_query_id": q.id }))
                .await?;
            result
        }
        _ => Ok(()),
    }
}

/// Who an update comes from.
struct User {
    id: i64,
    chat: i64,
    first_name: String,
}

/// A user's own profile, as stored.
#[derive(Debug)]
struct Profile {
    step: String,
    age: Option<i64>,
    gender: Option<String>,
    looking_for: Option<String>,
    city: Option<String>,
    min_age: Option<i64>,
    max_age: Option<i64>,
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn buttons(rows: &[&[(&str, &str)]]) -> Json {
    let rows: Vec<Vec<Json>> = rows
        .iter()
        .map(|row| {
            row.iter()
                .map(|(text, data)| json!({ "text": text, "callback_data": data }))
                .collect()
        })
        .collect();
    json!({ "inline_keyboard": rows })
}

fn menu() -> Json {
    buttons(&[&[
        ("Next", "next"),
        ("Matches", "matches:0"),
        ("Profile", "profile"),
    ]])
}

impl Bot {
    async fn send(
        &self,
        cx: &Context,
        chat: i64,
        text: &str,
        markup: Option<Json>,
    ) -> HandlerResult {
        let mut params = json!({ "chat_id": chat, "text": text });
        if let Some(markup) = markup {
            params["reply_markup"] = markup;
        }
        cx.api().call::<_, Json>("sendMessage", &params).await?;
        Ok(())
    }

    async fn profile(&self, user: i64) -> Result<Option<Profile>, BoxError> {
        let row = self
            .db
            .query("SELECT step, age, gender, looking_for, city, min_age, max_age FROM dating_profiles WHERE user_id = $1")
            .bind(user)
            .fetch_optional()
            .await?;
        Ok(match row {
            None => None,
            Some(r) => Some(Profile {
                step: r.try_get("step")?,
                age: r.try_get("age")?,
                gender: r.try_get("gender")?,
                looking_for: r.try_get("looking_for")?,
                city: r.try_get("city")?,
                min_age: r.try_get("min_age")?,
                max_age: r.try_get("max_age")?,
            }),
        })
    }

    async fn on_text(&self, cx: &Context, user: &User, text: &str) -> HandlerResult {
        let text = text.trim();
        let command = text.split_whitespace().next().unwrap_or("");
        let command = command.split('@').next().unwrap_or("");
        match command {
            "/start" => return self.start(cx, user).await,
            "/next" => return self.next(cx, user).await,
            "/profile" => return self.show_profile(cx, user).await,
            "/matches" => return self.matches(cx, user, 0).await,
            _ => {}
        }
        let Some(profile) = self.profile(user.id).await? else {
            return self
                .send(cx, user.chat, "Hi! Send /start to make your profile.", None)
                .await;
        };
        match profile.step.as_str() {
            "name" => {
                let name: String = text.chars().take(40).collect();
                if name.is_empty() || name.starts_with('/') {
                    return self.ask(cx, user, "name").await;
                }
                self.set(user, "name", name.into(), "age").await?;
                self.ask(cx, user, "age").await
            }
            "age" => match text.parse::<i64>() {
                Ok(age) if (18..=99).contains(&age) => {
                    self.set(user, "age", age.into(), "gender").await?;
                    self.ask(cx, user, "gender").await
                }
                _ => {
                    self.ask_after(
                        cx,
                        user,
                        "age",
                        "Your age, as a number from 18 to 99, please.",
                    )
                    .await
                }
            },
            "city" if !text.is_empty() && !text.starts_with('/') => {
                let city: String = text.chars().take(40).collect();
                self.set(user, "city", city.into(), "bio").await?;
                self.ask(cx, user, "bio").await
            }
            "bio" if !text.starts_with('/') => {
                let bio: String = text.chars().take(300).collect();
                self.finish(cx, user, Some(bio)).await
            }
            "done" => {
                self.send(
                    cx,
                    user.chat,
                    "/next shows someone new, /matches your matches, /profile your profile.",
                    Some(menu()),
                )
                .await
            }
            step => self.ask(cx, user, step).await,
        }
    }

    async fn on_button(&self, cx: &Context, user: &User, data: &str) -> HandlerResult {
        let (verb, arg) = data.split_once(':').unwrap_or((data, ""));
        match verb {
            "next" => return self.next(cx, user).await,
            "profile" => return self.show_profile(cx, user).await,
            "matches" => return self.matches(cx, user, arg.parse().unwrap_or(0)).await,
            "edit" => {
                self.db
                    .query("UPDATE dating_profiles SET step = 'name', updated_at = $2 WHERE user_id = $1")
                    .bind(user.id)
                    .bind(now())
                    .execute()
                    .await?;
                return self.ask(cx, user, "name").await;
            }
            "like" | "skip" | "block" => {
                let Ok(other) = arg.parse::<i64>() else {
                    return Ok(());
                };
                return match verb {
                    "like" => self.like(cx, user, other).await,
                    "skip" => {
                        self.verdict(user.id, other, "skip").await?;
                        self.next(cx, user).await
                    }
                    _ => self.block(cx, user, other).await,
                };
            }
            _ => {}
        }
        // The wizard's buttons: only at their own step.
        let Some(profile) = self.profile(user.id).await? else {
            return self.start(cx, user).await;
        };
        let step = profile.step.as_str();
        match (verb, step) {
            ("name", "name") => {
                let name: String = user.first_name.chars().take(40).collect();
                self.set(user, "name", name.into(), "age").await?;
                self.ask(cx, user, "age").await
            }
            ("age", "age") => match arg.parse::<i64>() {
                Ok(age) if (18..=99).contains(&age) => {
                    self.set(user, "age", age.into(), "gender").await?;
                    self.ask(cx, user, "gender").await
                }
                _ => self.ask(cx, user, "age").await,
            },
            ("gender", "gender") if matches!(arg, "f" | "m") => {
                self.set(user, "gender", arg.to_owned().into(), "looking_for")
                    .await?;
                self.ask(cx, user, "looking_for").await
            }
            ("look", "looking_for") if matches!(arg, "f" | "m" | "any") => {
                self.set(user, "looking_for", arg.to_owned().into(), "city")
                    .await?;
                self.ask(cx, user, "city").await
            }
            ("city", "city") if CITIES.contains(&arg) => {
                self.set(user, "city", arg.to_owned().into(), "bio").await?;
                self.ask(cx, user, "bio").await
            }
            ("bio", "bio") => self.finish(cx, user, None).await,
            // A press redelivered after a worker died: its step is done, and
            // the dead worker most likely answered it already.
            _ if cx.attempt() > 0 => Ok(()),
            // A button of an earlier message: say where the user is.
            (_, "done") => {
                self.send(cx, user.chat, "Your profile is complete.", Some(menu()))
                    .await
            }
            (_, step) => self.ask(cx, user, step).await,
        }
    }

    async fn start(&self, cx: &Context, user: &User) -> HandlerResult {
        let created = self
            .db
            .query("INSERT INTO dating_profiles (user_id, chat_id, step, updated_at) VALUES ($1, $2, 'name', $3) ON CONFLICT (user_id) DO NOTHING")
            .bind(user.id)
            .bind(user.chat)
            .bind(now())
            .execute()
            .await?;
        if created > 0 {
            return self
                .ask_after(
                    cx,
                    user,
                    "name",
                    "Welcome! Let's make your profile: six quick questions.",
                )
                .await;
        }
        match self.profile(user.id).await? {
            Some(p) if p.step == "done" => {
                self.send(cx, user.chat, "Welcome back!", Some(menu()))
                    .await
            }
            Some(p) => self.ask(cx, user, &p.step).await,
            None => self.ask(cx, user, "name").await,
        }
    }

    /// Asks the question of wizard step `step`.
    async fn ask(&self, cx: &Context, user: &User, step: &str) -> HandlerResult {
        self.ask_after(cx, user, step, "").await
    }

    /// Asks the question of `step` after `preface`, in one message: a
    /// chat takes one message a second, and a second message would hold
    /// this update's ack (and with it the bot's next poll) for that second.
    async fn ask_after(
        &self,
        cx: &Context,
        user: &User,
        step: &str,
        preface: &str,
    ) -> HandlerResult {
        let ages: Vec<(String, String)> = AGES
            .iter()
            .map(|a| (a.to_string(), format!("age:{a}")))
            .collect();
        let age_row: Vec<(&str, &str)> =
            ages.iter().map(|(t, d)| (t.as_str(), d.as_str())).collect();
        let cities: Vec<(&str, String)> =
            CITIES.iter().map(|c| (*c, format!("city:{c}"))).collect();
        let city_row: Vec<(&str, &str)> = cities.iter().map(|(t, d)| (*t, d.as_str())).collect();
        let use_name = format!("Use \"{}\"", user.first_name);
        let (text, markup) = match step {
            "name" => (
                "What is your name? Type it, or:",
                buttons(&[&[(&use_name, "name:tg")]]),
            ),
            "age" => ("How old are you? Type it, or:", buttons(&[&age_row])),
            "gender" => (
                "You are:",
                buttons(&[&[("a woman", "gender:f"), ("a man", "gender:m")]]),
            ),
            "looking_for" => (
                "You would like to meet:",
                buttons(&[&[
                    ("women", "look:f"),
                    ("men", "look:m"),
                    ("anyone", "look:any"),
                ]]),
            ),
            "city" => ("Your city? Type it, or:", buttons(&[&city_row])),
            "bio" => (
                "A few words about you (or skip):",
                buttons(&[&[("Skip", "bio:skip")]]),
            ),
            _ => {
                return self
                    .send(cx, user.chat, "Your profile is complete.", Some(menu()))
                    .await;
            }
        };
        if preface.is_empty() {
            self.send(cx, user.chat, text, Some(markup)).await
        } else {
            self.send(cx, user.chat, &format!("{preface}\n\n{text}"), Some(markup))
                .await
        }
    }

    async fn set(
        &self,
        user: &User,
        column: &str,
        value: botfleet_db::Value,
        next: &str,
    ) -> Result<(), BoxError> {
        // `column` is one of the wizard's own names, never user input.
        let sql = match column {
            "name" => {
                "UPDATE dating_profiles SET name = $2, step = $3, updated_at = $4 WHERE user_id = $1"
            }
            "age" => {
                "UPDATE dating_profiles SET age = $2, step = $3, updated_at = $4 WHERE user_id = $1"
            }
            "gender" => {
                "UPDATE dating_profiles SET gender = $2, step = $3, updated_at = $4 WHERE user_id = $1"
            }
            "looking_for" => {
                "UPDATE dating_profiles SET looking_for = $2, step = $3, updated_at = $4 WHERE user_id = $1"
            }
            "city" => {
                "UPDATE dating_profiles SET city = $2, step = $3, updated_at = $4 WHERE user_id = $1"
            }
            other => return Err(format!("no profile field `{other}`").into()),
        };
        self.db
            .query(sql)
            .bind(user.id)
            .bind(value)
            .bind(next.to_owned())
            .bind(now())
            .execute()
            .await?;
        Ok(())
    }

    async fn finish(&self, cx: &Context, user: &User, bio: Option<String>) -> HandlerResult {
        let age = self
            .profile(user.id)
            .await?
            .and_then(|p| p.age)
            .unwrap_or(18);
        self.db
            .query("UPDATE dating_profiles SET bio = $2, step = 'done', min_age = $3, max_age = $4, updated_at = $5 WHERE user_id = $1")
            .bind(user.id)
            .bind(bio.unwrap_or_default())
            .bind((age - AGE_SPAN).max(18))
            .bind(age + AGE_SPAN)
            .bind(now())
            .execute()
            .await?;
        // The card and the queue were built from the old profile.
        self.cards.invalidate(&user.id).await;
        self.queues.invalidate(&user.id).await;
        self.send(
            cx,
            user.chat,
            "Your profile is ready. /next shows someone new.",
            Some(menu()),
        )
        .await
    }

    async fn show_profile(&self, cx: &Context, user: &User) -> HandlerResult {
        match self.card(user.id).await? {
            Some(card) => {
                self.send(
                    cx,
                    user.chat,
                    &format!("Your profile:\n\n{}", card.text()),
                    Some(buttons(&[&[("Edit", "edit"), ("Next", "next")]])),
                )
                .await
            }
            None => self.start(cx, user).await,
        }
    }

    /// A complete profile's card, cache-first.
    async fn card(&self, user: i64) -> Result<Option<Card>, BoxError> {
        let db = &self.db;
        Ok(self
            .cards
            .get_or_load(&user, || async move {
                let row = db
                    .query("SELECT user_id, chat_id, name, age, city, bio FROM dating_profiles WHERE user_id = $1 AND step = 'done'")
                    .bind(user)
                    .fetch_optional()
                    .await?;
                let Some(r) = row else { return Ok::<_, BoxError>(None) };
                Ok(Some(Card {
                    user_id: r.try_get("user_id")?,
                    chat_id: r.try_get("chat_id")?,
                    name: r.try_get::<Option<String>, _>("name")?.unwrap_or_default(),
                    age: r.try_get::<Option<i64>, _>("age")?.unwrap_or_default(),
                    city: r.try_get::<Option<String>, _>("city")?.unwrap_or_default(),
                    bio: r.try_get::<Option<String>, _>("bio")?.unwrap_or_default(),
                }))
            })
            .await?)
    }

    /// The next candidates for `me` from the database.
    async fn load_queue(&self, me: i64) -> Result<Option<Vec<i64>>, BoxError> {
        let Some(p) = self.profile(me).await? else {
            return Ok(None);
        };
        let (Some(gender), Some(looking_for), Some(city)) = (p.gender, p.looking_for, p.city)
        else {
            return Ok(None);
        };
        let age = p.age.unwrap_or(18);
        let rows = self
            .db
            .query(
                "SELECT p.user_id FROM dating_profiles p
                 WHERE p.city = $2 AND p.step = 'done' AND p.user_id <> $1
                   AND ($3 = 'any' OR p.gender = $3)
                   AND (p.looking_for = 'any' OR p.looking_for = $4)
                   AND p.age BETWEEN $5 AND $6
                   AND NOT EXISTS (SELECT 1 FROM dating_verdicts v WHERE v.user_id = $1 AND v.other_id = p.user_id)
                   AND NOT EXISTS (SELECT 1 FROM dating_verdicts v WHERE v.user_id = p.user_id AND v.other_id = $1 AND v.verdict = 'block')
                 ORDER BY p.updated_at DESC, p.user_id
                 LIMIT $7",
            )
            .bind(me)
            .bind(city)
            .bind(looking_for)
            .bind(gender)
            .bind(p.min_age.unwrap_or((age - AGE_SPAN).max(18)))
            .bind(p.max_age.unwrap_or(age + AGE_SPAN))
            .bind(QUEUE)
            .fetch_all()
            .await?;
        let ids = rows
            .iter()
            .map(|r| r.try_get::<i64, _>("user_id"))
            .collect::<Result<Vec<i64>, _>>()?;
        Ok(Some(ids))
    }

    /// Shows `user` the next candidate nobody has shown them.
    async fn next(&self, cx: &Context, user: &User) -> HandlerResult {
        match self.profile(user.id).await? {
            Some(p) if p.step == "done" => {}
            Some(p) => {
                return self
                    .ask_after(cx, user, &p.step, "Finish your profile first.")
                    .await;
            }
            None => return self.start(cx, user).await,
        }
        let mut reloaded = false;
        loop {
            let queue = self
                .queues
                .get_or_load(&user.id, || self.load_queue(user.id))
                .await?
                .unwrap_or_default();
            let Some((&head, rest)) = queue.split_first() else {
                if reloaded {
                    return self
                        .send(
                            cx,
                            user.chat,
                            "No one new around you for now. Try again later.",
                            Some(menu()),
                        )
                        .await;
                }
                // An empty queue in the cache may be old: ask the database.
                self.queues.invalidate(&user.id).await;
                reloaded = true;
                continue;
            };
            self.queues.set(user.id, rest.to_vec()).await?;
            // Recorded as shown only if never shown and not blocked by them.
            let shown = self
                .db
                .query(
                    "INSERT INTO dating_verdicts (user_id, other_id, verdict, at)
                     SELECT $1, $2, 'shown', $3
                     WHERE NOT EXISTS (SELECT 1 FROM dating_verdicts WHERE user_id = $2 AND other_id = $1 AND verdict = 'block')
                     ON CONFLICT (user_id, other_id) DO NOTHING",
                )
                .bind(user.id)
                .bind(head)
                .bind(now())
                .execute()
                .await?;
            if shown == 0 {
                continue;
            }
            let Some(card) = self.card(head).await? else {
                continue;
            };
            let (like, skip, block) = (
                format!("like:{head}"),
                format!("skip:{head}"),
                format!("block:{head}"),
            );
            return self
                .send(
                    cx,
                    user.chat,
                    &card.text(),
                    Some(buttons(&[&[
                        ("Like", &like),
                        ("Skip", &skip),
                        ("Block", &block),
                    ]])),
                )
                .await;
        }
    }

    /// Turns a shown candidate's verdict into `verdict`; whether it was
    /// shown.
    async fn verdict(&self, me: i64, other: i64, verdict: &str) -> Result<bool, BoxError> {
        let changed = self
            .db
            .query("UPDATE dating_verdicts SET verdict = $3, at = $4 WHERE user_id = $1 AND other_id = $2 AND verdict = 'shown'")
            .bind(me)
            .bind(other)
            .bind(verdict.to_owned())
            .bind(now())
            .execute()
            .await?;
        Ok(changed > 0)
    }

    async fn like(&self, cx: &Context, user: &User, other: i64) -> HandlerResult {
        if self.verdict(user.id, other, "like").await? {
            let liked_back = self
                .db
                .query("SELECT 1 FROM dating_verdicts WHERE user_id = $1 AND other_id = $2 AND verdict = 'like'")
                .bind(other)
                .bind(user.id)
                .fetch_optional()
                .await?
                .is_some();
            if liked_back {
                // Whoever inserts the pair tells both: a match is announced
                // once even when both like at the same moment.
                let made = self
                    .db
                    .query("INSERT INTO dating_matches (user_id, other_id, at) VALUES ($1, $2, $3), ($2, $1, $3) ON CONFLICT (user_id, other_id) DO NOTHING")
                    .bind(user.id)
                    .bind(other)
                    .bind(now())
                    .execute()
                    .await?;
                if made > 0 {
                    let (mine, theirs) = (self.card(user.id).await?, self.card(other).await?);
                    if let (Some(mine), Some(theirs)) = (mine, theirs) {
                        self.send(
                            cx,
                            user.chat,
                            &format!("It's a match: you and {} like each other!", theirs.name),
                            Some(menu()),
                        )
                        .await?;
                        self.send(
                            cx,
                            theirs.chat_id,
                            &format!("It's a match: you and {} like each other!", mine.name),
                            Some(menu()),
                        )
                        .await?;
                        return Ok(());
                    }
                }
            }
        }
        self.next(cx, user).await
    }

    async fn block(&self, cx: &Context, user: &User, other: i64) -> HandlerResult {
        let mut tx = self.db.begin().await?;
        tx.query(
            "INSERT INTO dating_verdicts (user_id, other_id, verdict, at) VALUES ($1, $2, 'block', $3)
             ON CONFLICT (user_id, other_id) DO UPDATE SET verdict = 'block', at = $3",
        )
        .bind(user.id)
        .bind(other)
        .bind(now())
        .execute()
        .await?;
        tx.query("DELETE FROM dating_matches WHERE (user_id = $1 AND other_id = $2) OR (user_id = $2 AND other_id = $1)")
            .bind(user.id)
            .bind(other)
            .execute()
            .await?;
        tx.commit().await?;
        // Neither sees the other again, whatever their caches hold.
        self.cards.invalidate_many([&user.id, &other]).await;
        self.queues.invalidate_many([&user.id, &other]).await;
        self.send(
            cx,
            user.chat,
            "Blocked: you will not see each other again.",
            Some(menu()),
        )
        .await
    }

    async fn matches(&self, cx: &Context, user: &User, page: i64) -> HandlerResult {
        let page = page.max(0);
        let rows = self
            .db
            .query("SELECT other_id FROM dating_matches WHERE user_id = $1 ORDER BY at DESC, other_id LIMIT $2 OFFSET $3")
            .bind(user.id)
            .bind(PAGE + 1)
            .bind(page * PAGE)
            .fetch_all()
            .await?;
        let mut ids = rows
            .iter()
            .map(|r| r.try_get::<i64, _>("other_id"))
            .collect::<Result<Vec<i64>, _>>()?;
        let more = ids.len() as i64 > PAGE;
        ids.truncate(PAGE as usize);
        if ids.is_empty() && page == 0 {
            return self
                .send(
                    cx,
                    user.chat,
                    "No matches yet. /next shows someone new.",
                    Some(menu()),
                )
                .await;
        }
        let mut text = format!("Your matches (page {}):", page + 1);
        let mut rows: Vec<Vec<(String, String)>> = Vec::new();
        for id in ids {
            if let Some(card) = self.card(id).await? {
                text.push_str(&format!("\n- {}, {}, {}", card.name, card.age, card.city));
                rows.push(vec![(
                    format!("Block {}", card.name),
                    format!("block:{id}"),
                )]);
            }
        }
        let mut nav = Vec::new();
        if page > 0 {
            nav.push(("Previous".to_owned(), format!("matches:{}", page - 1)));
        }
        if more {
            nav.push(("More".to_owned(), format!("matches:{}", page + 1)));
        }
        if !nav.is_empty() {
            rows.push(nav);
        }
        let rows: Vec<Vec<(&str, &str)>> = rows
            .iter()
            .map(|r| r.iter().map(|(t, d)| (t.as_str(), d.as_str())).collect())
            .collect();
        let rows: Vec<&[(&str, &str)]> = rows.iter().map(Vec::as_slice).collect();
        self.send(cx, user.chat, &text, Some(buttons(&rows))).await
    }
}

/// A row for [`botfleet_db::batch::Batcher`]-style seeding: the columns of
/// a complete profile, for demos and benchmarks that start with a
/// population (`user_id, chat_id, step, name, age, gender, looking_for,
/// city, bio, min_age, max_age, updated_at`).
pub fn seed_row(
    user_id: i64,
    name: &str,
    age: i64,
    gender: &str,
    looking_for: &str,
    city: &str,
) -> SeedRow {
    vec![
        user_id.into(),
        user_id.into(),
        "done".to_owned().into(),
        name.to_owned().into(),
        age.into(),
        gender.to_owned().into(),
        looking_for.to_owned().into(),
        city.to_owned().into(),
        String::new().into(),
        (age - AGE_SPAN).max(18).into(),
        (age + AGE_SPAN).into(),
        0_i64.into(),
    ]
}

/// The columns of [`seed_row`].
pub const SEED_COLUMNS: [&str; 12] = [
    "user_id",
    "chat_id",
    "step",
    "name",
    "age",
    "gender",
    "looking_for",
    "city",
    "bio",
    "min_age",
    "max_age",
    "updated_at",
];
