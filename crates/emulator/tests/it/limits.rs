//! Telegram's limits, enforced with 429 and retry_after.

use std::time::Duration;

use botfleet_emulator::{ChatKind, Emulator, EmulatorConfig};

use crate::{TOKEN, api};

#[tokio::test]
async fn each_scope_is_enforced_with_retry_after() {
    let e = Emulator::start(EmulatorConfig::default()).await.unwrap();
    e.add_bot(TOKEN, "b_bot").unwrap();
    for id in 1..=40 {
        e.add_user(id, "u");
    }
    e.add_group(-100, "g", ChatKind::Supergroup);
    let a = e.addr();
    // Per chat: the second message within a second.
    assert_eq!(
        api(a, "sendMessage", r#"{"chat_id": 1, "text": "a"}"#)
            .await
            .status,
        200
    );
    let r = api(a, "sendMessage", r#"{"chat_id": 1, "text": "b"}"#).await;
    assert_eq!(r.status, 429);
    assert_eq!(r.body["description"], "Too Many Requests: retry after 1");
    assert_eq!(r.body["parameters"]["retry_after"], 1);
    assert!(r.headers.contains("retry-after: 1"), "{}", r.headers);
    assert_eq!(
        r.raw,
        r#"{"ok":false,"error_code":429,"description":"Too Many Requests: retry after 1","parameters":{"retry_after":1}}"#,
        "the real server's bytes"
    );
    // Per token: 30 a second over distinct chats (chat 1 used one).
    let mut accepted = 1;
    let mut refused = None;
    for id in 2..=40 {
        let r = api(
            a,
            "sendMessage",
            &format!(r#"{{"chat_id": {id}, "text": "x"}}"#),
        )
        .await;
        if r.status == 200 {
            accepted += 1;
        } else {
            refused = Some(r);
            break;
        }
    }
    assert_eq!(accepted, 30);
    assert_eq!(refused.unwrap().status, 429);
    // Paid broadcasts are allowed past it.
    let r = api(
        a,
        "sendMessage",
        r#"{"chat_id": 40, "text": "paid", "allow_paid_broadcast": true}"#,
    )
    .await;
    assert_eq!(r.status, 200, "{r:?}");
    let stats = e.stats(110201543);
    assert_eq!(stats.max_per_token_window, 31, "30 plus one paid");
    assert_eq!(stats.max_per_chat_window, 1);
    assert_eq!(stats.rejected_429.get("chat"), Some(&1));
    assert_eq!(stats.rejected_429.get("token"), Some(&1));
}

#[tokio::test(start_paused = true)]
async fn a_group_takes_twenty_a_minute() {
    let e = Emulator::start(EmulatorConfig::default()).await.unwrap();
    e.add_bot(TOKEN, "b_bot").unwrap();
    e.add_group(-100, "g", ChatKind::Supergroup);
    let a = e.addr();
    for i in 0..20 {
        let r = api(
            a,
            "sendMessage",
            &format!(r##"{{"chat_id": -100, "text": "#{i}"}}"##),
        )
        .await;
        assert_eq!(r.status, 200, "{i}: {r:?}");
        tokio::time::advance(Duration::from_secs(1)).await;
    }
    let r = api(a, "sendMessage", r##"{"chat_id": -100, "text": "#20"}"##).await;
    assert_eq!(r.status, 429);
    assert_eq!(
        r.body["parameters"]["retry_after"], 40,
        "the first of the 20 leaves the window at 60 s"
    );
    tokio::time::advance(Duration::from_secs(40)).await;
    assert_eq!(
        api(a, "sendMessage", r##"{"chat_id": -100, "text": "#21"}"##)
            .await
            .status,
        200
    );
    let stats = e.stats(110201543);
    assert_eq!(stats.max_per_group_window, 20);
    assert_eq!(stats.order_violations, 0);
    assert_eq!(stats.rejected_429.get("group"), Some(&1));
}
