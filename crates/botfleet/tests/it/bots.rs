//! The reference bots end to end: conversations scripted through the
//! emulator, the bots as real worker processes (`botfleet demo-worker`)
//! under the supervisor, and the replies and the database checked. Each
//! scenario runs on SQLite with the in-process cache, and on PostgreSQL and
//! Redis started by the testkit.

use std::time::Duration;

use botfleet_config::{BotFile, FleetFile};
use botfleet_db::{Database, Row};
use botfleet_emulator::{ChatKind, Emulator, EmulatorConfig, Limits};
use botfleet_protocol::stats::Stat;
use botfleet_runtime::{Fleet, RunOptions};
use botfleet_testkit::TempDir;
use serde_json::json;

const DATING: &str = "110201543:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw1";
const ANALYTICS: &str = "220302654:AAGjJ7rRq6cl8mTnUf0m8l6rHd0qXz3xYp2";

/// Where the bots keep their data in one test.
enum Storage {
    Sqlite,
    Servers {
        database: botfleet_testkit::TestDatabase,
        redis: botfleet_testkit::TestRedis,
    },
}

impl Storage {
    fn new(servers: bool) -> Storage {
        if servers {
            Storage::Servers {
                database: botfleet_testkit::database().unwrap(),
                redis: botfleet_testkit::redis().unwrap(),
            }
        } else {
            Storage::Sqlite
        }
    }
}

/// One test's world: the emulator, the fleet of both bots, the database.
struct World {
    emulator: Emulator,
    fleet: Option<Fleet>,
    db: Database,
    _dir: TempDir,
    _storage: Storage,
}

impl World {
    async fn start(servers: bool, env: &[(&str, &str)]) -> World {
        World::start_with(servers, env, 1).await
    }

    /// With `analytics` workers for the analytics bot.
    async fn start_with(servers: bool, env: &[(&str, &str)], analytics: u32) -> World {
        let storage = Storage::new(servers);
        let emulator = Emulator::start(
            EmulatorConfig::default()
                .limits(Limits::unlimited())
                .lenient_chats(),
        )
        .await
        .unwrap();
        emulator.add_bot(DATING, "dating_bot").unwrap();
        emulator.add_bot(ANALYTICS, "analytics_bot").unwrap();
        let dir = TempDir::new("bots").unwrap();
        let (database, redis) = match &storage {
            Storage::Sqlite => (
                format!(
                    "sqlite://{}?mode=rwc",
                    dir.path().join("bots.sqlite").display()
                ),
                None,
            ),
            Storage::Servers { database, redis } => {
                (database.url().to_owned(), Some(redis.url().to_owned()))
            }
        };
        let exe = env!("CARGO_BIN_EXE_botfleet");
        let mut file = FleetFile::new()
            .set("environment", "dev")
            .database(database.clone())
            .telegram_api(emulator.base_url())
            .set("telegram.limits.chat", "1000/1s")
            .set("telegram.limits.group", "1000/1s")
            .set("telegram.limits.token", "100000/1s");
        if let Some(url) = redis {
            file = file.redis(url);
        }
        let mut analytics_bot = BotFile::new("analytics", ANALYTICS)
            .workers(analytics, analytics)
            .command(exe, ["demo-worker", "analytics"]);
        for (name, value) in env {
            analytics_bot = analytics_bot.env(name, *value);
        }
        let config = file
            .bot(
                BotFile::new("dating", DATING)
                    .workers(2, 2)
                    .command(exe, ["demo-worker", "dating"]),
            )
            .bot(analytics_bot)
            .parse()
            .unwrap();
        let db = Database::builder(database.clone())
            .bot("test")
            .pool_size(2)
            .connect()
            .await
            .unwrap();
        // The tables exist before the test writes to them.
        db.migrate(dating_bot::MIGRATIONS).await.unwrap();
        db.migrate(analytics_bot::MIGRATIONS).await.unwrap();
        let fleet = Fleet::start(
            &config,
            RunOptions::default()
                .socket_dir(dir.path().join("run"))
                .data_dir(dir.path().join("data")),
        )
        .await
        .unwrap();
        World {
            emulator,
            fleet: Some(fleet),
            db,
            _dir: dir,
            _storage: storage,
        }
    }

    fn user(&self, id: i64, name: &str) {
        self.emulator.add_user(id, name);
    }

    fn text(&self, token: &str, chat: i64, from: i64, text: &str) {
        self.emulator
            .inject_message(token, chat, from, text)
            .unwrap();
    }

    /// A press of the button `data` by `user` in their private chat.
    fn press(&self, user: i64, name: &str, data: &str) {
        let query = json!({
            "id": format!("{user}-{data}"),
            "from": { "id": user, "is_bot": false, "first_name": name },
            "chat_instance": format!("{user}"),
            "data": data,
            "message": {
                "message_id": 1,
                "date": 0,
                "chat": { "id": user, "type": "private" },
                "text": "",
            },
        });
        self.emulator
            .inject_update(DATING, json!({ "callback_query": query }))
            .unwrap();
    }

    /// The texts the bots sent to `chat`, in order.
    fn replies(&self, chat: i64) -> Vec<String> {
        self.emulator
            .log()
            .into_iter()
            .filter(|l| l.status == 200 && l.method == "sendmessage" && l.chat_id == Some(chat))
            .filter_map(|l| l.text)
            .collect()
    }

    /// Waits until `chat` has at least `n` replies; they.
    async fn wait_replies(&self, chat: i64, n: usize) -> Vec<String> {
        let end = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let r = self.replies(chat);
            if r.len() >= n {
                return r;
            }
            assert!(
                tokio::time::Instant::now() < end,
                "chat {chat}: {} replies of {n} after 30 s: {r:#?}",
                r.len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Walks `user` through the profile wizard with buttons; waits for the
    /// last answer.
    async fn profile(&self, user: i64, name: &str, age: u32, gender: &str, look: &str) {
        let before = self.replies(user).len();
        self.text(DATING, user, user, "/start");
        self.press(user, name, "name:tg");
        self.press(user, name, &format!("age:{age}"));
        self.press(user, name, &format!("gender:{gender}"));
        self.press(user, name, &format!("look:{look}"));
        self.press(user, name, "city:Berlin");
        self.text(DATING, user, user, &format!("I am {name}"));
        let replies = self.wait_replies(user, before + 7).await;
        assert!(
            replies.last().unwrap().starts_with("Your profile is ready"),
            "{replies:#?}"
        );
    }

    async fn count(&self, sql: &str) -> i64 {
        self.db
            .query(sql)
            .fetch_one()
            .await
            .unwrap()
            .try_get::<i64, _>(0)
            .unwrap()
    }

    async fn stop(mut self) {
        let report = self.fleet.take().unwrap().shutdown().await;
        for bot in &report.bots {
            assert_eq!(bot.failed, 0, "{bot:?}");
        }
        self.db.close().await;
    }
}

async fn profile_creation(servers: bool) {
    let w = World::start(servers, &[]).await;
    w.user(1, "Ann");
    w.profile(1, "Ann", 27, "f", "m").await;
    let row = w
        .db
        .query("SELECT name, age, gender, looking_for, city, bio, step, min_age, max_age FROM dating_profiles WHERE user_id = 1")
        .fetch_one()
        .await
        .unwrap();
    let get = |c: &str| row.try_get::<String, _>(c).unwrap();
    assert_eq!(
        (
            get("name"),
            get("gender"),
            get("looking_for"),
            get("city"),
            get("bio"),
            get("step")
        ),
        (
            "Ann".into(),
            "f".into(),
            "m".into(),
            "Berlin".into(),
            "I am Ann".into(),
            "done".into()
        )
    );
    let ages: Vec<i64> = ["age", "min_age", "max_age"]
        .iter()
        .map(|c| row.try_get::<i64, _>(*c).unwrap())
        .collect();
    assert_eq!(ages, [27, 21, 33]);
    // The first question, the six answers' questions, the end.
    // One message per answer: the welcome carries the first question.
    let replies = w.replies(1);
    assert_eq!(replies.len(), 7, "{replies:#?}");
    assert!(
        replies[0].starts_with(
            "Welcome! Let's make your profile: six quick questions.\n\nWhat is your name?"
        ),
        "{replies:#?}"
    );
    assert!(replies[1].starts_with("How old are you?"), "{replies:#?}");
    w.text(DATING, 1, 1, "/profile");
    let replies = w.wait_replies(1, 8).await;
    assert_eq!(replies[7], "Your profile:\n\nAnn, 27, Berlin\n\nI am Ann");
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dating_profile_creation_sqlite() {
    profile_creation(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dating_profile_creation_postgres_redis() {
    profile_creation(true).await;
}

async fn browsing(servers: bool) {
    let w = World::start(servers, &[]).await;
    // Twelve men in Berlin looking for women, aged 25 to 30; one of them
    // has blocked the user, one is 50 (out of range), one is in Lisbon.
    for i in 0..12 {
        w.db.query("INSERT INTO dating_profiles (user_id, chat_id, step, name, age, gender, looking_for, city, bio, min_age, max_age, updated_at) VALUES ($1, $1, 'done', $2, $3, 'm', 'f', 'Berlin', '', 18, 99, 0)")
            .bind(1000 + i)
            .bind(format!("Man{i}"))
            .bind(25 + i % 6)
            .execute()
            .await
            .unwrap();
    }
    for (id, name, age, city) in [(2000, "Old", 50, "Berlin"), (2001, "Far", 27, "Lisbon")] {
        w.db.query("INSERT INTO dating_profiles (user_id, chat_id, step, name, age, gender, looking_for, city, bio, min_age, max_age, updated_at) VALUES ($1, $1, 'done', $2, $3, 'm', 'f', $4, '', 18, 99, 0)")
            .bind(id)
            .bind(name)
            .bind(age)
            .bind(city)
            .execute()
            .await
            .unwrap();
    }
    w.db.query(
        "INSERT INTO dating_verdicts (user_id, other_id, verdict, at) VALUES (1005, 1, 'block', 0)",
    )
    .execute()
    .await
    .unwrap();
    w.user(1, "Ann");
    w.profile(1, "Ann", 27, "f", "m").await;
    let before = w.replies(1).len();
    // Thirteen /next: eleven candidates, then nobody new (twice).
    for _ in 0..13 {
        w.text(DATING, 1, 1, "/next");
    }
    let replies = w.wait_replies(1, before + 13).await;
    let shown: Vec<&String> = replies[before..].iter().collect();
    let names: Vec<String> = shown
        .iter()
        .filter(|t| t.starts_with("Man"))
        .map(|t| t.split(',').next().unwrap().to_owned())
        .collect();
    let mut unique = names.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(
        unique.len(),
        names.len(),
        "a candidate shown twice: {names:?}"
    );
    assert_eq!(names.len(), 11, "{shown:#?}");
    assert!(
        !names.contains(&"Man5".to_owned()),
        "a user who blocked her was shown"
    );
    assert!(
        shown[11..].iter().all(|t| t.starts_with("No one new")),
        "{shown:#?}"
    );
    // A skip, a like and a block are recorded as verdicts.
    w.press(1, "Ann", "skip:1000");
    w.press(1, "Ann", "like:1001");
    w.press(1, "Ann", "block:1002");
    w.wait_replies(1, before + 16).await;
    let verdicts = w
        .db
        .query("SELECT other_id, verdict FROM dating_verdicts WHERE user_id = 1 AND other_id IN (1000, 1001, 1002) ORDER BY other_id")
        .fetch_all()
        .await
        .unwrap()
        .iter()
        .map(|r| r.try_get::<String, _>(1).unwrap())
        .collect::<Vec<_>>();
    assert_eq!(verdicts, ["skip", "like", "block"]);
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dating_browsing_never_repeats_nor_shows_a_blocker_sqlite() {
    browsing(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dating_browsing_never_repeats_nor_shows_a_blocker_postgres_redis() {
    browsing(true).await;
}

async fn mutual_like(servers: bool) {
    let w = World::start(servers, &[]).await;
    w.user(1, "Ann");
    w.user(2, "Bob");
    w.profile(1, "Ann", 27, "f", "m").await;
    w.profile(2, "Bob", 29, "m", "f").await;
    let (a0, b0) = (w.replies(1).len(), w.replies(2).len());
    w.text(DATING, 1, 1, "/next");
    assert!(w.wait_replies(1, a0 + 1).await[a0].starts_with("Bob, 29, Berlin"));
    w.press(1, "Ann", "like:2");
    // Nobody else: Ann is told so; no match yet.
    assert!(w.wait_replies(1, a0 + 2).await[a0 + 1].starts_with("No one new"));
    w.text(DATING, 2, 2, "/next");
    assert!(w.wait_replies(2, b0 + 1).await[b0].starts_with("Ann, 27, Berlin"));
    w.press(2, "Bob", "like:1");
    let ann = w.wait_replies(1, a0 + 3).await;
    let bob = w.wait_replies(2, b0 + 2).await;
    assert_eq!(ann[a0 + 2], "It's a match: you and Bob like each other!");
    assert_eq!(bob[b0 + 1], "It's a match: you and Ann like each other!");
    assert_eq!(w.count("SELECT COUNT(*) FROM dating_matches").await, 2);
    w.text(DATING, 1, 1, "/matches");
    let ann = w.wait_replies(1, a0 + 4).await;
    assert_eq!(ann[a0 + 3], "Your matches (page 1):\n- Bob, 29, Berlin");
    // Blocking removes the match both ways.
    w.press(1, "Ann", "block:2");
    w.wait_replies(1, a0 + 5).await;
    assert_eq!(w.count("SELECT COUNT(*) FROM dating_matches").await, 0);
    w.text(DATING, 2, 2, "/matches");
    let bob = w.wait_replies(2, b0 + 3).await;
    assert!(bob[b0 + 2].starts_with("No matches yet"), "{bob:#?}");
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dating_mutual_like_tells_both_and_a_block_unmatches_sqlite() {
    mutual_like(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dating_mutual_like_tells_both_and_a_block_unmatches_postgres_redis() {
    mutual_like(true).await;
}

async fn stats(servers: bool) {
    let w = World::start(servers, &[]).await;
    let group = -1_001_000_000_001;
    w.emulator
        .add_group(group, "Chess club", ChatKind::Supergroup);
    for (id, name) in [(1, "Ann"), (2, "Bob"), (3, "Cid")] {
        w.user(id, name);
    }
    // Ann 4, Bob 2, Cid 1, then Ann's /stats: 8 messages.
    for from in [1, 1, 2, 1, 3, 2, 1] {
        w.text(ANALYTICS, group, from, &format!("message from {from}"));
    }
    w.text(ANALYTICS, group, 1, "/stats");
    let replies = w.wait_replies(group, 1).await;
    let text = &replies[0];
    assert!(text.starts_with("Messages today: 8\nLast 7 days: 8\nTop posters:\n- Ann: 5\n- Bob: 2\n- Cid: 1\nBusiest hours (UTC):\n- "), "{text}");
    assert!(text.contains("\nMembers: "), "{text}");
    assert_eq!(
        w.count("SELECT COUNT(*) FROM analytics_events WHERE chat_id = -1001000000001")
            .await,
        8
    );
    assert_eq!(
        w.count("SELECT COUNT(*) FROM analytics_events WHERE kind = 'command'")
            .await,
        1
    );
    // The workers report their own stats, summed per bot by the supervisor.
    let end = tokio::time::Instant::now() + Duration::from_secs(30);
    let stats = loop {
        let status = w.fleet.as_ref().unwrap().status().await;
        let s = status
            .into_iter()
            .find(|s| s.bot == "analytics")
            .unwrap()
            .worker_stats;
        if s.get(Stat::Handled.name()).copied().unwrap_or(0.0) >= 8.0 {
            break s;
        }
        assert!(tokio::time::Instant::now() < end, "{s:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let get = |k: Stat| stats.get(k.name()).copied().unwrap_or(-1.0);
    assert!(get(Stat::DbQueries) >= 3.0, "{stats:?}");
    assert!(get(Stat::DbUs) > 0.0, "{stats:?}");
    // /stats missed the aggregates, the member and the admin counts.
    assert!(get(Stat::CacheLoads) >= 3.0, "{stats:?}");
    assert!(get(Stat::ApiCalls) >= 3.0, "{stats:?}");
    assert!(get(Stat::HandlerUs) >= get(Stat::DbUs), "{stats:?}");
    assert!(get(Stat::DbPoolSize) >= 1.0, "{stats:?}");
    w.stop().await;
}

/// The demo's summary line of `bot` and its numbers: "received N,
/// handled N, failed N, ...".
fn demo_summary<'a>(stdout: &'a str, bot: &str) -> (&'a str, Vec<u64>) {
    let line = stdout
        .lines()
        .find(|l| l.trim_start().starts_with(bot) && l.contains("received"))
        .unwrap_or_else(|| panic!("no summary of {bot}: {stdout}"));
    let numbers = line
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|n| n.parse().ok())
        .collect();
    (line, numbers)
}

#[test]
fn the_demo_runs_both_bots_and_loses_nothing() {
    let dir = crate::scratch("demo");
    let out = crate::botfleet(
        &dir,
        &["demo", "--duration", "4s", "--users", "300", "--rate", "20"],
        &[],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for bot in ["dating", "analytics"] {
        let (line, numbers) = demo_summary(&stdout, bot);
        assert!(numbers[0] > 0, "{line}");
        assert_eq!(numbers[0], numbers[1], "{line}");
        assert_eq!(numbers[2], 0, "{line}");
    }
    assert!(stdout.contains("complete profiles"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn analytics_stats_match_the_recorded_events_sqlite() {
    stats(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn analytics_stats_match_the_recorded_events_postgres_redis() {
    stats(true).await;
}

async fn digest(servers: bool) {
    let w = World::start(servers, &[("ANALYTICS_ADMIN", "9")]).await;
    w.user(9, "Admin");
    w.user(1, "Ann");
    let groups = [-1_001_000_000_001, -1_001_000_000_002, -1_001_000_000_003];
    for (i, g) in groups.iter().enumerate() {
        w.emulator
            .add_group(*g, &format!("Group {}", i + 1), ChatKind::Supergroup);
        w.text(ANALYTICS, *g, 1, "/subscribe");
        // Subscribing twice changes nothing.
        w.text(ANALYTICS, *g, 1, "/subscribe");
        w.wait_replies(*g, 2).await;
    }
    // Not the admin: refused.
    w.text(ANALYTICS, 1, 1, "/digest");
    assert_eq!(
        w.wait_replies(1, 1).await[0],
        "Only the bot's admin can send the digest."
    );
    w.text(ANALYTICS, 9, 9, "/digest");
    let report = w.wait_replies(9, 1).await;
    assert_eq!(report[0], "Digest delivered to 3 of 3 chats.");
    for (i, g) in groups.iter().enumerate() {
        let digests: Vec<String> = w
            .replies(*g)
            .into_iter()
            .filter(|t| t.starts_with("Digest for"))
            .collect();
        assert_eq!(
            digests,
            [format!(
                "Digest for Group {}: 2 messages today, 2 in 7 days. Most active: Ann (2).",
                i + 1
            )]
        );
    }
    w.stop().await;
}

/// The scheduled digest, every 2 s here: each period is claimed by one of
/// two workers, and each subscriber gets one digest per period.
async fn scheduled_digest(servers: bool) {
    let w = World::start_with(
        servers,
        &[("ANALYTICS_ADMIN", "9"), ("ANALYTICS_DIGEST_EVERY", "2s")],
        2,
    )
    .await;
    w.user(9, "Admin");
    w.user(1, "Ann");
    let groups = [-1_001_000_000_001, -1_001_000_000_002];
    for (i, g) in groups.iter().enumerate() {
        w.emulator
            .add_group(*g, &format!("Group {}", i + 1), ChatKind::Supergroup);
        w.text(ANALYTICS, *g, 1, "/subscribe");
        w.wait_replies(*g, 1).await;
    }
    // Both workers start their schedule with their first update.
    for i in 0..20 {
        w.text(ANALYTICS, groups[i % 2], 1, "hello");
    }
    let reports = w.wait_replies(9, 2).await;
    // Between two periods (a broadcast takes milliseconds, periods are
    // 2 s apart), every count agrees.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let reports = w.replies(9).len().max(reports.len());
    for r in w.replies(9) {
        assert_eq!(r, "Digest delivered to 2 of 2 chats.");
    }
    for g in groups {
        let digests = w
            .replies(g)
            .into_iter()
            .filter(|t| t.starts_with("Digest for"))
            .count();
        assert_eq!(digests, reports, "group {g}");
    }
    assert_eq!(
        w.count("SELECT COUNT(*) FROM analytics_digests").await,
        reports as i64
    );
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn analytics_scheduled_digest_goes_out_once_per_period_sqlite() {
    scheduled_digest(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn analytics_scheduled_digest_goes_out_once_per_period_postgres_redis() {
    scheduled_digest(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn analytics_digest_reaches_every_subscriber_once_sqlite() {
    digest(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn analytics_digest_reaches_every_subscriber_once_postgres_redis() {
    digest(true).await;
}

async fn killed_mid_conversation(servers: bool) {
    let w = World::start(servers, &[]).await;
    w.user(1, "Ann");
    w.text(DATING, 1, 1, "/start");
    w.press(1, "Ann", "name:tg");
    w.press(1, "Ann", "age:27");
    w.wait_replies(1, 3).await;
    // Every dating worker dies with SIGKILL; the conversation goes on.
    let fleet = w.fleet.as_ref().unwrap();
    for (bot, _, pid) in fleet.workers() {
        if bot == "dating" && pid > 0 {
            rustix::process::kill_process(
                rustix::process::Pid::from_raw(pid as i32).unwrap(),
                rustix::process::Signal::KILL,
            )
            .unwrap();
        }
    }
    w.press(1, "Ann", "gender:f");
    w.press(1, "Ann", "look:m");
    w.press(1, "Ann", "city:Berlin");
    w.press(1, "Ann", "bio:skip");
    // Every question was asked, in order, and the wizard ended; a press
    // the dead worker had answered but not acked may be answered again.
    let end = tokio::time::Instant::now() + Duration::from_secs(30);
    let replies = loop {
        let r = w.replies(1);
        if r.last()
            .is_some_and(|t| t.starts_with("Your profile is ready"))
        {
            break r;
        }
        assert!(tokio::time::Instant::now() < end, "{r:#?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let mut questions: Vec<&str> = replies
        .iter()
        .map(|t| t.lines().last().unwrap_or(""))
        .collect();
    questions.dedup();
    assert_eq!(
        questions,
        [
            "What is your name? Type it, or:",
            "How old are you? Type it, or:",
            "You are:",
            "You would like to meet:",
            "Your city? Type it, or:",
            "A few words about you (or skip):",
            "Your profile is ready. /next shows someone new.",
        ],
        "{replies:#?}"
    );
    let step: String =
        w.db.query("SELECT step, gender, looking_for, city FROM dating_profiles WHERE user_id = 1")
            .fetch_one()
            .await
            .unwrap()
            .try_get("step")
            .unwrap();
    assert_eq!(step, "done");
    let restarts: u64 = w
        .fleet
        .as_ref()
        .unwrap()
        .status()
        .await
        .iter()
        .filter(|s| s.bot == "dating")
        .map(|s| s.restarts)
        .sum();
    assert!(restarts >= 2, "the workers were not restarted: {restarts}");
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dating_worker_killed_mid_conversation_loses_nothing_sqlite() {
    killed_mid_conversation(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dating_worker_killed_mid_conversation_loses_nothing_postgres_redis() {
    killed_mid_conversation(true).await;
}

/// The demo is operated as `run` is, from another process through
/// `--url` and `--token-file` (restart, stop, start under its traffic,
/// nothing lost), then stops cleanly on Ctrl-C with its summary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_is_operated_from_the_cli_and_stops_cleanly_on_ctrl_c() {
    let dir = crate::scratch("demo-ctrl-c");
    let crate::Demo {
        child,
        lines,
        reading,
    } = crate::demo(
        &dir,
        &[
            "demo",
            "--users",
            "200",
            "--rate",
            "10",
            "--monitor",
            "127.0.0.1:0",
        ],
        std::process::Stdio::piped(),
    );
    // "from another terminal: botfleet status|... --url URL --token-file FILE"
    let (url, token_file) = loop {
        let line = lines
            .recv_timeout(Duration::from_secs(60))
            .expect("the demo never said how to reach it");
        if let Some(reach) = crate::demo_reach(&line) {
            break reach;
        }
    };
    let cli = |args: &[&str]| {
        let mut args: Vec<String> = args.iter().map(|s| (*s).to_owned()).collect();
        args.extend(["--url".to_owned(), url.clone()]);
        let dir = dir.clone();
        async move {
            tokio::task::spawn_blocking(move || {
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                crate::botfleet(&dir, &args, &[])
            })
            .await
            .unwrap()
        }
    };
    let said = |out: &std::process::Output| format!("{}{}", crate::stdout(out), crate::stderr(out));
    // Both bots listed with their workers' pids (reading needs no token on
    // loopback).
    let mut ready = false;
    for _ in 0..100 {
        let out = cli(&["status", "--json"]).await;
        assert_eq!(out.status.code(), Some(0), "{}", said(&out));
        let status: serde_json::Value = serde_json::from_str(&crate::stdout(&out)).unwrap();
        let pids = |bot: &str| -> Vec<u64> {
            status["bots"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|b| b["name"] == bot)
                .flat_map(|b| b["workers"].as_array().unwrap().clone())
                .filter_map(|w| w["pid"].as_u64())
                .filter(|pid| *pid > 0)
                .collect()
        };
        if !pids("dating").is_empty() && !pids("analytics").is_empty() {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(ready, "the demo's workers were never listed");
    // Actions take the token the demo wrote, and only it.
    let out = cli(&["restart", "dating", "--token-file", &token_file]).await;
    assert_eq!(crate::stdout(&out), "dating restarted\n", "{}", said(&out));
    let out = cli(&["stop", "analytics", "--token-file", &token_file]).await;
    assert_eq!(crate::stdout(&out), "analytics stopped\n", "{}", said(&out));
    tokio::time::sleep(Duration::from_secs(1)).await;
    let out = cli(&["start", "analytics", "--token-file", &token_file]).await;
    assert_eq!(crate::stdout(&out), "analytics started\n", "{}", said(&out));
    std::fs::write(dir.join("wrong.token"), "wrong").unwrap();
    let out = cli(&["restart", "dating", "--token-file", "wrong.token"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(said(&out).contains("refused the token"), "{}", said(&out));
    let token = std::fs::read_to_string(&token_file).unwrap();
    // Ctrl-C: the users stop, the fleet drains, the summary follows.
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(child.id() as i32).unwrap(),
        rustix::process::Signal::INT,
    )
    .unwrap();
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    let stdout = reading.join().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("upd/s"), "{stdout}");
    assert!(stdout.contains("\n> dating restarted\n"), "{stdout}");
    assert!(stdout.contains("\n> analytics started\n"), "{stdout}");
    assert!(stdout.contains("\nsummary after "), "{stdout}");
    // Nothing lost across the restart and the stop.
    for bot in ["dating", "analytics"] {
        let (line, numbers) = demo_summary(&stdout, bot);
        assert!(numbers[0] > 0, "{line}");
        assert_eq!(numbers[0], numbers[1], "{line}");
    }
    assert!(
        !std::path::Path::new(&token_file).exists(),
        "the token file outlived the demo"
    );
    assert!(
        !stdout.contains(token.trim()) && !stderr.contains(token.trim()),
        "the control token leaked"
    );
}
