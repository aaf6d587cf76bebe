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
        r#"{"url": "http://127.0.0.1:9/hook", "secret_token": "s3cret"}"#,
    )
    .await;
    assert_eq!(
        (r.body["result"].as_bool(), r.body["description"].as_str()),
        (Some(true), Some("Webhook was set"))
    );
    let r = poll.await.unwrap();
    let first_conflict = tokio::time::Instant::now();
    assert_eq!(
        (r.status, r.body["description"].as_str()),
        (409, Some("Conflict: terminated by setWebhook request"))
    );
    // setWebhook is limited to one a second.
    let r = api(a, "setWebhook", r#"{"url": "http://127.0.0.1:9/hook"}"#).await;
    assert_eq!(
        (r.status, &r.body["parameters"]["retry_after"]),
        (429, &serde_json::json!(1))
    );
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let r = api(a, "setWebhook", r#"{"url": "http://127.0.0.1:9/hook"}"#).await;
    assert_eq!(r.body["description"], "Webhook is already set");
    e.inject_message(TOKEN, 7, 7, "pending").unwrap();
    let r = api(a, "getUpdates", "{}").await;
    assert_eq!(r.status, 409);
    // A bot gets one 409 in 3 s; the next one waited.
    assert!(
        first_conflict.elapsed() >= Duration::from_millis(2500),
        "{:?}",
        first_conflict.elapsed()
    );
    assert_eq!(
        r.body["description"],
        "Conflict: can't use getUpdates method while webhook is active; use deleteWebhook to delete the webhook first"
    );
    let info = api(a, "getWebhookInfo", "{}").await;
    assert_eq!(info.body["result"]["url"], "http://127.0.0.1:9/hook");
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

/// A webhook receiver on loopback: records each request's secret header
/// and body; answers 500 to the first `fail` requests, 200 after.
async fn receiver(
    fail: usize,
) -> (
    std::net::SocketAddr,
    tokio::sync::mpsc::UnboundedReceiver<(String, serde_json::Value)>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut seen = 0;
        loop {
            let (mut conn, _) = listener.accept().await.unwrap();
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            // Read the head, then the body by its length.
            let (head, mut body) = loop {
                let n = conn.read(&mut chunk).await.unwrap();
                if n == 0 {
                    break (String::new(), Vec::new());
                }
                buf.extend_from_slice(&chunk[..n]);
                if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    break (
                        String::from_utf8_lossy(&buf[..i]).to_ascii_lowercase(),
                        buf[i + 4..].to_vec(),
                    );
                }
            };
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            while body.len() < length {
                let n = conn.read(&mut chunk).await.unwrap();
                body.extend_from_slice(&chunk[..n]);
            }
            let secret = head
                .lines()
                .find_map(|l| l.strip_prefix("x-telegram-bot-api-secret-token:"))
                .map(|v| v.trim().to_owned())
                .unwrap_or_default();
            seen += 1;
            let status = if seen <= fail {
                "500 Internal Server Error"
            } else {
                "200 OK"
            };
            let _ = conn
                .write_all(
                    format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                        .as_bytes(),
                )
                .await;
            let _ = tx.send((secret, serde_json::from_slice(&body).unwrap_or_default()));
        }
    });
    (addr, rx)
}

#[tokio::test]
async fn updates_are_delivered_to_the_webhook_in_order_and_retried() {
    let e = emulator().await;
    let a = e.addr();
    let (hook, mut received) = receiver(1).await;
    e.inject_message(TOKEN, 7, 7, "first").unwrap();
    let r = api(
        a,
        "setWebhook",
        &format!(r#"{{"url": "http://{hook}/hook", "secret_token": "s3cret_-X"}}"#),
    )
    .await;
    assert_eq!(r.status, 200);
    e.inject_message(TOKEN, 7, 7, "second").unwrap();
    let mut texts = Vec::new();
    for _ in 0..3 {
        let (secret, update) = tokio::time::timeout(Duration::from_secs(5), received.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            secret, "s3cret_-x",
            "the header (lower-cased by the receiver)"
        );
        texts.push(update["message"]["text"].as_str().unwrap().to_owned());
    }
    // The first POST was refused and sent again, before the second update.
    assert_eq!(texts, ["first", "first", "second"]);
    for _ in 0..50 {
        if api(a, "getWebhookInfo", "{}").await.body["result"]["pending_update_count"] == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        api(a, "getWebhookInfo", "{}").await.body["result"]["pending_update_count"],
        0
    );
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let r = api(
        a,
        "setWebhook",
        r#"{"url": "http://127.0.0.1:9/h", "secret_token": "no spaces"}"#,
    )
    .await;
    assert_eq!(
        (r.status, r.body["description"].as_str()),
        (
            400,
            Some("Bad Request: secret token contains unallowed characters")
        )
    );
}

/// A webhook receiver that serves connections at once, holds each POST
/// for `hold` before answering 200, and reports `(chat, text, concurrent
/// requests when it arrived)` for each.
async fn slow_receiver(
    hold: Duration,
) -> (
    std::net::SocketAddr,
    tokio::sync::mpsc::UnboundedReceiver<(i64, String, usize)>,
) {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let open = Arc::new(AtomicUsize::new(0));
    tokio::spawn(async move {
        loop {
            let (mut conn, _) = listener.accept().await.unwrap();
            let (tx, open) = (tx.clone(), open.clone());
            tokio::spawn(async move {
                // One request per connection at a time; keep-alive serves
                // several in sequence.
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                        let n = conn.read(&mut chunk).await.unwrap_or(0);
                        if n == 0 {
                            return;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                        continue;
                    };
                    let head = String::from_utf8_lossy(&buf[..i]).to_ascii_lowercase();
                    let length: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|v| v.trim().parse().ok())
                        .unwrap_or(0);
                    while buf.len() < i + 4 + length {
                        let n = conn.read(&mut chunk).await.unwrap_or(0);
                        if n == 0 {
                            return;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                    }
                    let body: serde_json::Value =
                        serde_json::from_slice(&buf[i + 4..i + 4 + length]).unwrap_or_default();
                    buf.drain(..i + 4 + length);
                    let now_open = open.fetch_add(1, Ordering::SeqCst) + 1;
                    let message = &body["message"];
                    let _ = tx.send((
                        message["chat"]["id"].as_i64().unwrap_or(0),
                        message["text"].as_str().unwrap_or("").to_owned(),
                        now_open,
                    ));
                    tokio::time::sleep(hold).await;
                    open.fetch_sub(1, Ordering::SeqCst);
                    if conn
                        .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    (addr, rx)
}

#[tokio::test]
async fn webhook_deliveries_run_in_parallel_up_to_max_connections_but_one_chat_at_a_time() {
    let e = emulator().await;
    for user in [8, 9, 10] {
        e.add_user(user, "user");
    }
    let a = e.addr();
    let (hook, mut received) = slow_receiver(Duration::from_millis(300)).await;
    for text in ["7 first", "7 second", "7 third"] {
        e.inject_message(TOKEN, 7, 7, text).unwrap();
    }
    for chat in [8, 9, 10] {
        e.inject_message(TOKEN, chat, chat, &format!("{chat} only"))
            .unwrap();
    }
    let start = Instant::now();
    let r = api(
        a,
        "setWebhook",
        &format!(r#"{{"url": "http://{hook}/hook", "max_connections": 3}}"#),
    )
    .await;
    assert_eq!(r.status, 200);
    let mut seen = Vec::new();
    for _ in 0..6 {
        let got = tokio::time::timeout(Duration::from_secs(10), received.recv())
            .await
            .expect("every update delivered")
            .unwrap();
        seen.push(got);
    }
    let most = seen.iter().map(|s| s.2).max().unwrap();
    assert_eq!(most, 3, "three connections at once, no more: {seen:?}");
    let chat7: Vec<&str> = seen
        .iter()
        .filter(|s| s.0 == 7)
        .map(|s| s.1.as_str())
        .collect();
    assert_eq!(chat7, ["7 first", "7 second", "7 third"], "{seen:?}");
    // Chat 7's next update is posted only after the previous one was
    // answered: its third arrives after two holds of 300 ms, while the
    // other chats were served alongside.
    assert!(
        start.elapsed() >= Duration::from_millis(600),
        "{:?}",
        start.elapsed()
    );
    let first_other = seen.iter().position(|s| s.0 != 7).unwrap();
    assert!(
        first_other < 3,
        "other chats do not wait for chat 7: {seen:?}"
    );
}

#[tokio::test]
async fn a_repeated_offset_is_slowed_as_the_real_server_does() {
    let e = emulator().await;
    let a = e.addr();
    for text in ["a", "b", "c"] {
        e.inject_message(TOKEN, 7, 7, text).unwrap();
    }
    let r = api(a, "getUpdates", r#"{"offset": 0}"#).await;
    assert_eq!(ids(&r).len(), 3);
    // The same offset within 0.5 s: one update at most.
    let r = api(a, "getUpdates", r#"{"offset": 0}"#).await;
    assert_eq!(ids(&r).len(), 1);
    // Confirmed, then asked again at once with no timeout: the poll is
    // stretched to 3 s and answers with nothing.
    let next = ids(&r)[0] + 3;
    let body = format!(r#"{{"offset": {next}, "timeout": 0}}"#);
    assert_eq!(ids(&api(a, "getUpdates", &body).await), Vec::<i64>::new());
    let start = Instant::now();
    assert_eq!(ids(&api(a, "getUpdates", &body).await), Vec::<i64>::new());
    assert!(
        start.elapsed() >= Duration::from_millis(2900),
        "{:?}",
        start.elapsed()
    );
}
