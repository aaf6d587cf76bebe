//! The client against the emulator: typed calls, typed errors, retries, and
//! the limiter at full rate with no 429.

use std::time::Duration;

use botfleet_emulator::{ChatKind, Emulator, EmulatorConfig, Faults};
use botfleet_telegram::methods::{GetChatParams, GetUpdatesParams, SendMessageParams};
use botfleet_telegram::updates::UpdateContent;
use botfleet_telegram::{Client, ErrorKind};
use tokio::time::Instant;

const TOKEN: &str = "110201543:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw1";

async fn setup() -> (Emulator, Client) {
    let e = Emulator::start(EmulatorConfig::default()).await.unwrap();
    e.add_bot(TOKEN, "dating_bot").unwrap();
    e.add_user(1001, "Ann");
    e.add_group(-1_001_000_000_001, "Fans", ChatKind::Supergroup);
    let client = Client::builder(TOKEN)
        .base_url(e.base_url())
        .bot("dating")
        .retries(4, Duration::from_millis(20))
        .build()
        .unwrap();
    (e, client)
}

fn text(chat: i64, t: &str) -> SendMessageParams {
    SendMessageParams::builder().chat_id(chat).text(t).build()
}

#[tokio::test]
async fn typed_calls_round_trip() {
    let (e, client) = setup().await;
    let me = client.get_me().await.unwrap();
    assert_eq!(
        (me.id, me.is_bot, me.username.as_deref()),
        (110201543, true, Some("dating_bot"))
    );
    let m = client.send_message(&text(1001, "hello")).await.unwrap();
    assert_eq!((m.chat.id, m.text.as_deref()), (1001, Some("hello")));
    e.inject_message(TOKEN, 1001, 1001, "/start").unwrap();
    let updates = client
        .get_updates(&GetUpdatesParams::builder().timeout(5u32).build())
        .await
        .unwrap();
    assert_eq!(updates.len(), 1);
    let UpdateContent::Message(msg) = &updates[0].content else {
        panic!("{:?}", updates[0])
    };
    assert_eq!(
        (
            msg.text.as_deref(),
            msg.from.as_ref().map(|u| u.first_name.as_str())
        ),
        (Some("/start"), Some("Ann"))
    );
    let chat = client
        .get_chat(
            &GetChatParams::builder()
                .chat_id(-1_001_000_000_001_i64)
                .build(),
        )
        .await
        .unwrap();
    assert_eq!(chat.title.as_deref(), Some("Fans"));
}

#[tokio::test]
async fn errors_are_typed_and_never_show_the_token() {
    let (e, client) = setup().await;
    let err = client.send_message(&text(555, "x")).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::ChatNotFound);
    assert!(!err.is_retryable());
    assert_eq!(
        err.to_string(),
        "sendMessage failed: Bad Request: chat not found (not retryable)"
    );
    e.block(TOKEN, 1001);
    assert_eq!(
        client
            .send_message(&text(1001, "x"))
            .await
            .unwrap_err()
            .kind,
        ErrorKind::Blocked
    );
    e.add_group(-5, "old", ChatKind::Group);
    e.migrate(-5, -1_001_000_000_005, "new");
    assert_eq!(
        client.send_message(&text(-5, "x")).await.unwrap_err().kind,
        ErrorKind::Migrated(-1_001_000_000_005)
    );
    let stranger = Client::builder("999:nope")
        .base_url(e.base_url())
        .build()
        .unwrap();
    let err = stranger.get_me().await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Unauthorized);
    // Nothing listens on port 1: a connection error, without the URL.
    let nowhere = Client::builder(TOKEN)
        .base_url("http://127.0.0.1:1")
        .retries(2, Duration::from_millis(5))
        .build()
        .unwrap();
    let err = nowhere.get_me().await.unwrap_err();
    assert!(matches!(err.kind, ErrorKind::Connect(_)), "{err}");
    for text in [err.to_string(), format!("{err:?}"), format!("{nowhere:?}")] {
        assert!(
            !text.contains("AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw1"),
            "{text}"
        );
    }
}

#[tokio::test]
async fn restarts_and_injected_429s_are_retried_and_nothing_is_lost() {
    let (e, client) = setup().await;
    e.set_faults(Faults {
        restart_burst: 2,
        ..Faults::default()
    });
    assert_eq!(
        client.get_me().await.unwrap().id,
        110201543,
        "after two 500s"
    );
    for id in 1..=10 {
        e.add_user(2000 + id, "u");
    }
    e.set_faults(Faults {
        random_429: 0.3,
        retry_after: (1, 1),
        ..Faults::default()
    });
    let sends = (1..=10).map(|id| {
        let client = client.clone();
        tokio::spawn(async move {
            client
                .send_message(&text(2000 + id, &format!("#{id}")))
                .await
        })
    });
    for s in sends {
        s.await.unwrap().unwrap();
    }
    let stats = e.stats(110201543);
    assert_eq!(stats.accepted, 10, "every message delivered once");
    assert!(
        stats.rejected_429.get("injected").copied().unwrap_or(0) >= 1,
        "{stats:?}"
    );
    assert_eq!(stats.rejected_429.get("token"), None);
    assert_eq!(stats.rejected_429.get("chat"), None);
    let (chat, token) = client.limiter().refused();
    assert_eq!(
        chat + token,
        stats.rejected_429["injected"],
        "every 429 counted once"
    );
    assert_eq!(client.limiter().waiting(), 0);
}

#[tokio::test]
async fn sixty_chats_at_full_rate_without_a_429() {
    let (e, client) = setup().await;
    for id in 0..60 {
        e.add_user(3000 + id, "u");
    }
    let start = Instant::now();
    let sends: Vec<_> = (0..60)
        .map(|id| {
            let client = client.clone();
            tokio::spawn(async move { client.send_message(&text(3000 + id, "hi")).await })
        })
        .collect();
    for s in sends {
        s.await.unwrap().unwrap();
    }
    let took = start.elapsed();
    let stats = e.stats(110201543);
    assert_eq!(stats.accepted, 60);
    assert!(stats.rejected_429.is_empty(), "{stats:?}");
    assert_eq!(
        stats.max_per_token_window, 30,
        "the full allowance, not more"
    );
    // 30 now, 30 a second later: just over one second.
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_millis(1_500),
        "{took:?}"
    );
}

#[tokio::test]
async fn the_config_file_sets_the_url_and_the_limits() {
    // A token allowed 5 sends a second, in both the emulator and the file.
    let text_config = r#"
[telegram]
api_url = "URL"
[telegram.limits]
token = "5/1s"
[[bot]]
name = "dating"
token = "110201543:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw1"
worker.command = "dating-bot"
"#;
    let e_limits = botfleet_emulator::Limits {
        token: botfleet_emulator::Limit {
            max: 5,
            window: Duration::from_secs(1),
        },
        ..Default::default()
    };
    let e = Emulator::start(EmulatorConfig::default().limits(e_limits))
        .await
        .unwrap();
    e.add_bot(TOKEN, "dating_bot").unwrap();
    let config = botfleet_config::FleetConfig::parse(
        &text_config.replace("URL", &e.base_url()),
        "fleet.toml",
        &std::collections::HashMap::new(),
    )
    .unwrap();
    let client = Client::builder(TOKEN)
        .config(&config.telegram)
        .build()
        .unwrap();
    for id in 0..10 {
        e.add_user(5000 + id, "u");
    }
    let start = Instant::now();
    let sends: Vec<_> = (0..10)
        .map(|id| {
            let client = client.clone();
            tokio::spawn(async move { client.send_message(&text(5000 + id, "hi")).await })
        })
        .collect();
    for s in sends {
        s.await.unwrap().unwrap();
    }
    let stats = e.stats(110201543);
    assert_eq!(stats.accepted, 10);
    assert!(stats.rejected_429.is_empty(), "{stats:?}");
    assert_eq!(stats.max_per_token_window, 5);
    assert!(
        start.elapsed() >= Duration::from_secs(1),
        "5 now, 5 a second later"
    );
}

#[tokio::test]
async fn a_broadcast_reports_what_it_did() {
    let (e, client) = setup().await;
    let mut chats = Vec::new();
    for id in 0..40 {
        e.add_user(5000 + id, "u");
        chats.push(5000 + id);
    }
    for id in 0..3 {
        e.block(TOKEN, 5000 + id);
    }
    chats.extend([9, 8]); // no such chats
    e.add_group(-7, "old", ChatKind::Group);
    e.migrate(-7, -1_001_000_000_007, "new");
    chats.push(-7);
    let b = client.broadcast(chats, text(0, "news"));
    let mut progress = b.watch();
    let report = b.finish().await;
    assert_eq!(report.sent, 38, "{report:?}"); // 40 - 3 blocked + 1 migrated
    assert_eq!(report.failed.get("blocked"), Some(&3));
    assert_eq!(report.failed.get("chat_not_found"), Some(&2));
    assert_eq!(report.migrated, [(-7, -1_001_000_000_007)]);
    let last = *progress.borrow_and_update();
    assert_eq!((last.total, last.sent, last.failed), (43, 38, 5));
    let stats = e.stats(110201543);
    assert!(stats.rejected_429.is_empty(), "{stats:?}");
    assert!(
        report.duration >= Duration::from_secs(1),
        "38 sends need two token windows"
    );
}

#[tokio::test]
async fn reads_are_served_from_the_cache_until_membership_changes() {
    use botfleet_telegram::Reads;
    use botfleet_telegram::types::ChatMember;
    let (e, client) = setup().await;
    let group = -1_001_000_000_001_i64;
    let reads = Reads::new(client.clone(), "dating", Duration::from_secs(60), None);
    for _ in 0..5 {
        assert_eq!(reads.get_me().await.unwrap().id, 110201543);
        assert_eq!(
            reads.get_chat(group).await.unwrap().title.as_deref(),
            Some("Fans")
        );
        assert!(reads.get_chat_member_count(group).await.unwrap() > 0);
        let admins = reads.get_chat_administrators(group).await.unwrap();
        assert!(matches!(admins[0], ChatMember::Creator(_)), "{admins:?}");
        let me = reads.get_chat_member(group, 1001).await.unwrap();
        assert!(matches!(me, ChatMember::Member(_)), "{me:?}");
    }
    assert_eq!(
        (reads.reads(), reads.calls(), reads.calls_saved()),
        (25, 5, 20)
    );
    // Bot API errors are returned as they are, and not cached.
    let err = reads.get_chat(-5).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::ChatNotFound);
    assert_eq!(reads.calls(), 6);

    // A member left: the member, the count and the admins are read again.
    let update = serde_json::json!({
        "chat_member": {
            "chat": { "id": group, "type": "supergroup", "title": "Fans" },
            "from": { "id": 1001, "is_bot": false, "first_name": "Ann" },
            "date": 1_760_000_000,
            "old_chat_member": { "status": "member", "user": { "id": 1001, "is_bot": false, "first_name": "Ann" } },
            "new_chat_member": { "status": "left", "user": { "id": 1001, "is_bot": false, "first_name": "Ann" } }
        }
    });
    e.inject_update(TOKEN, update).unwrap();
    let updates = client
        .get_updates(&GetUpdatesParams::builder().build())
        .await
        .unwrap();
    reads.observe(&updates[0]).await;
    reads.get_chat_member(group, 1001).await.unwrap();
    reads.get_chat_member_count(group).await.unwrap();
    reads.get_chat_administrators(group).await.unwrap();
    reads.get_chat(group).await.unwrap();
    assert_eq!(reads.calls(), 9, "three re-read, the chat still cached");
}

/// Two processes (two clients, each with its own local limiter) send 30
/// messages each for one token at once.
async fn two_processes(shared: Option<&botfleet_testkit::TestRedis>) -> botfleet_emulator::Stats {
    use botfleet_telegram::SharedBudget;
    use botfleet_telegram::limiter::Limits;
    let (e, _) = setup().await;
    let mut tasks = Vec::new();
    for p in 0..2 {
        let mut builder = Client::builder(TOKEN)
            .base_url(e.base_url())
            .retries(2, Duration::from_millis(20));
        if let Some(redis) = shared {
            let budget = SharedBudget::new(
                redis.url(),
                &format!("{}dating", redis.prefix()),
                Limits::default(),
            )
            .unwrap();
            builder = builder.shared_budget(budget);
        }
        let client = builder.build().unwrap();
        for i in 0..30 {
            let chat = 7000 + p * 100 + i;
            e.add_user(chat, "u");
            let client = client.clone();
            tasks.push(tokio::spawn(async move {
                client.send_message(&text(chat, "hi")).await
            }));
        }
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    e.stats(110201543)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processes_sharing_a_budget_in_redis_get_no_429() {
    let redis = tokio::task::spawn_blocking(|| botfleet_testkit::redis().unwrap())
        .await
        .unwrap();
    let shared = two_processes(Some(&redis)).await;
    assert_eq!(shared.accepted, 60);
    assert!(shared.rejected_429.is_empty(), "{shared:?}");
    assert_eq!(shared.max_per_token_window, 30);
    // Without it, each process uses the whole allowance: Telegram refuses.
    let alone = two_processes(None).await;
    assert_eq!(alone.accepted, 60, "429s are retried");
    assert!(
        alone.rejected_429.get("token").copied().unwrap_or(0) > 0,
        "{alone:?}"
    );
}

#[tokio::test]
async fn an_unreachable_shared_budget_degrades_to_local_limits() {
    use botfleet_telegram::SharedBudget;
    use botfleet_telegram::limiter::Limits;
    let (e, _) = setup().await;
    let budget = SharedBudget::new("redis://127.0.0.1:1", "dating", Limits::default()).unwrap();
    let client = Client::builder(TOKEN)
        .base_url(e.base_url())
        .shared_budget(budget)
        .build()
        .unwrap();
    for i in 0..5 {
        e.add_user(8000 + i, "u");
        client
            .send_message(&text(8000 + i, "still sent"))
            .await
            .unwrap();
    }
    assert_eq!(e.stats(110201543).accepted, 5);
}
