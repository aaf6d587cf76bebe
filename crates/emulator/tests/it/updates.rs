//! getUpdates and webhooks.

use std::time::Duration;

use botfleet_emulator::{Emulator, EmulatorConfig};
use tokio::time::Instant;

use crate::{TOKEN, api};

async fn emulator() -> Emulator {
    let e = Emulator::start(EmulatorConfig::default()).await.unwrap();
    e.add_bot(TOKEN, "b_bot").unwrap();
    e.add_user(7, "Ann");
    e
}

fn ids(r: &crate::Reply) -> Vec<i64> {
    r.body["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["update_id"].as_i64().unwrap())
        .collect()
}

#[tokio::test]
async fn offsets_confirm_and_limits_clamp() {
    let e = emulator().await;
    let a = e.addr();
    for i in 0..5 {
        e.inject_message(TOKEN, 7, 7, &format!("m{i}")).unwrap();
    }
    assert_eq!(ids(&api(a, "getUpdates", "{}").await), [1, 2, 3, 4, 5]);
    assert_eq!(
        ids(&api(a, "getUpdates", r#"{"limit": 0}"#).await),
        [1],
        "limit clamps to 1"
    );
    // Confirming 1 and 2 forgets them.
    assert_eq!(
        ids(&api(a, "getUpdates", r#"{"offset": 3}"#).await),
        [3, 4, 5]
    );
    assert_eq!(
        ids(&api(a, "getUpdates", r#"{"offset": 0}"#).await),
        [3, 4, 5]
    );
    // A negative offset keeps the last ones and forgets the rest.
    assert_eq!(ids(&api(a, "getUpdates", r#"{"offset": -1}"#).await), [5]);
    assert_eq!(ids(&api(a, "getUpdates", "{}").await), [5]);
    let r = api(a, "getUpdates", r#"{"offset": 6, "timeout": 0}"#).await;
    assert_eq!(ids(&r), Vec::<i64>::new());
    assert_eq!(r.body["ok"], true);
}

#[tokio::test]
async fn a_long_poll_wakes_at_once_and_the_older_poll_gets_409() {
    let e = emulator().await;
    let a = e.addr();
    let start = Instant::now();
    let poll = tokio::spawn(async move { api(a, "getUpdates", r#"{"timeout": 30}"#).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    e.inject_message(TOKEN, 7, 7, "hello").unwrap();
    let r = poll.await.unwrap();
    assert_eq!(ids(&r), [1]);
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );

    let older =
        tokio::spawn(async move { api(a, "getUpdates", r#"{"offset": 2, "timeout": 30}"#).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let newer =
        tokio::spawn(async move { api(a, "getUpdates", r#"{"offset": 2, "timeout": 1}"#).await });
    let r = older.await.unwrap();
    assert_eq!(r.status, 409);
    assert_eq!(
        r.body["description"],
        "Conflict: terminated by other getUpdates request; make sure that only one bot instance is running"
    );
    let r = newer.await.unwrap();
    assert_eq!((r.status, ids(&r)), (200, vec![]));
}

#[tokio::test]
async fn webhooks_exclude_polling() {
    let e = emulator().await;
    let a = e.addr();
    let poll = tokio::spawn(async move { api(a, "getUpdates", r#"{"timeout": 30}"#).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let r = api(
        a,
        "setWebhook",
        r#"{"url": "https://example.invalid/hook", "secret_token": "s3cret"}"#,
    )
    .await;
    assert_eq!(
        (r.body["result"].as_bool(), r.body["description"].as_str()),
        (Some(true), Some("Webhook was set"))
    );
    let r = poll.await.unwrap();
    assert_eq!(
        (r.status, r.body["description"].as_str()),
        (409, Some("Conflict: terminated by setWebhook request"))
    );
    let r = api(
        a,
        "setWebhook",
        r#"{"url": "https://example.invalid/hook"}"#,
    )
    .await;
    assert_eq!(r.body["description"], "Webhook is already set");
    e.inject_message(TOKEN, 7, 7, "pending").unwrap();
    let r = api(a, "getUpdates", "{}").await;
    assert_eq!(r.status, 409);
    assert_eq!(
        r.body["description"],
        "Conflict: can't use getUpdates method while webhook is active; use deleteWebhook to delete the webhook first"
    );
    let info = api(a, "getWebhookInfo", "{}").await;
    assert_eq!(info.body["result"]["url"], "https://example.invalid/hook");
    assert_eq!(info.body["result"]["pending_update_count"], 1);
    assert_eq!(info.body["result"]["max_connections"], 40);
    let r = api(a, "deleteWebhook", r#"{"drop_pending_updates": true}"#).await;
    assert_eq!(r.body["description"], "Webhook was deleted");
    let r = api(a, "getUpdates", "{}").await;
    assert_eq!((r.status, ids(&r)), (200, vec![]), "dropped");
    assert_eq!(
        api(a, "deleteWebhook", "{}").await.body["description"],
        "Webhook is already deleted"
    );
}
