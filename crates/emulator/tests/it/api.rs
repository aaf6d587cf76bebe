//! Routing, parameters, the error envelope and the error paths.

use botfleet_emulator::{ChatKind, Emulator, EmulatorConfig, Faults};
use serde_json::json;

use crate::{TOKEN, api, http};

async fn emulator() -> Emulator {
    let e = Emulator::start(EmulatorConfig::default()).await.unwrap();
    e.add_bot(TOKEN, "dating_bot").unwrap();
    e.add_user(1001, "Ann");
    e.add_group(-1001, "Fans", ChatKind::Supergroup);
    e
}

#[tokio::test]
async fn methods_are_case_insensitive_and_take_every_parameter_form() {
    let e = emulator().await;
    let a = e.addr();
    for (method, path, body) in [
        ("GET", format!("/bot{TOKEN}/getMe"), None),
        ("POST", format!("/bot{TOKEN}/GETME"), Some("{}")),
        ("GET", format!("/bot{TOKEN}/getme?x=1"), None),
    ] {
        let r = http(a, method, &path, body).await;
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(r.body["ok"], true);
        assert_eq!(r.body["result"]["id"], 110201543);
        assert_eq!(r.body["result"]["is_bot"], true);
        assert_eq!(r.body["result"]["username"], "dating_bot");
    }
    // JSON, form and query string carry the same parameters.
    let json = api(a, "sendMessage", r##"{"chat_id": 1001, "text": "hi #1"}"##).await;
    assert_eq!(json.status, 200, "{json:?}");
    let m = &json.body["result"];
    assert_eq!(
        (m["chat"]["id"].as_i64(), m["chat"]["type"].as_str()),
        (Some(1001), Some("private"))
    );
    assert_eq!(
        (m["message_id"].as_i64(), m["text"].as_str()),
        (Some(1), Some("hi #1"))
    );
    assert!(m["date"].as_i64().unwrap() > 1_700_000_000);
    assert_eq!(m["from"]["id"], 110201543);
    tokio::time::sleep(std::time::Duration::from_millis(1_050)).await;
    let form = http(
        a,
        "POST",
        &format!("/bot{TOKEN}/SendMessage"),
        Some("form:chat_id=1001&text=hi%20%232"),
    )
    .await;
    assert_eq!(
        (form.status, form.body["result"]["text"].as_str()),
        (200, Some("hi #2"))
    );
    tokio::time::sleep(std::time::Duration::from_millis(1_050)).await;
    let query = http(
        a,
        "GET",
        &format!("/bot{TOKEN}/sendmessage?chat_id=1001&text=three"),
        None,
    )
    .await;
    assert_eq!(
        (query.status, query.body["result"]["message_id"].as_i64()),
        (200, Some(3))
    );
}

#[tokio::test]
async fn errors_have_the_real_envelope_and_descriptions() {
    let e = emulator().await;
    let a = e.addr();
    let cases = [
        (
            format!("/bot{TOKEN}/noSuchMethod"),
            404,
            "Not Found: method not found",
        ),
        (
            "/bot123/getMe".to_owned(),
            401,
            "Unauthorized: invalid token specified",
        ),
        ("/bot999:unknown/getMe".to_owned(), 401, "Unauthorized"),
    ];
    for (path, code, description) in cases {
        let r = http(a, "POST", &path, Some("{}")).await;
        assert_eq!(r.status, code, "{path}");
        assert_eq!(
            r.body,
            json!({ "ok": false, "error_code": code, "description": description }),
            "{path}"
        );
    }
    let r = api(a, "sendMessage", r#"{"chat_id": 555, "text": "x"}"#).await;
    assert_eq!(
        (r.status, r.body["description"].as_str()),
        (400, Some("Bad Request: chat not found"))
    );
    let r = api(a, "sendMessage", r#"{"chat_id": 1001, "text": " "}"#).await;
    assert_eq!(r.body["description"], "Bad Request: message text is empty");
    let long = "x".repeat(4097);
    let r = api(
        a,
        "sendMessage",
        &format!(r#"{{"chat_id": 1001, "text": "{long}"}}"#),
    )
    .await;
    assert_eq!(r.body["description"], "Bad Request: message is too long");
    assert!(e.block(TOKEN, 1001));
    let r = api(a, "sendMessage", r#"{"chat_id": 1001, "text": "x"}"#).await;
    assert_eq!(
        (r.status, r.body["description"].as_str()),
        (403, Some("Forbidden: bot was blocked by the user"))
    );
    e.add_group(-77, "Old", ChatKind::Group);
    e.migrate(-77, -1_000_000_000_077, "New");
    let r = api(a, "sendMessage", r#"{"chat_id": -77, "text": "x"}"#).await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.body["description"],
        "Bad Request: group chat was upgraded to a supergroup chat"
    );
    assert_eq!(
        r.body["parameters"]["migrate_to_chat_id"],
        -1_000_000_000_077_i64
    );
    let r = http(
        a,
        "POST",
        &format!("/bot{TOKEN}/sendMessage"),
        Some("{not json"),
    )
    .await;
    assert_eq!(r.status, 400, "{r:?}");
}

#[tokio::test]
async fn faults_can_be_injected() {
    let e = emulator().await;
    let a = e.addr();
    e.set_faults(Faults {
        restart_burst: 2,
        ..Faults::default()
    });
    for _ in 0..2 {
        let r = api(a, "getMe", "{}").await;
        assert_eq!(r.status, 500);
        assert_eq!(r.body["description"], "Internal Server Error: restart");
    }
    assert_eq!(api(a, "getMe", "{}").await.status, 200);
    e.set_faults(Faults {
        random_429: 1.0,
        retry_after: (2, 2),
        ..Faults::default()
    });
    let r = api(a, "sendMessage", r#"{"chat_id": 1001, "text": "x"}"#).await;
    assert_eq!(
        (r.status, r.body["parameters"]["retry_after"].as_u64()),
        (429, Some(2))
    );
    let stats = e.stats(110201543);
    assert_eq!(stats.rejected_429.get("injected"), Some(&1));
    assert_eq!(stats.errors, 2, "the two restarts");
}

#[tokio::test]
async fn the_control_plane_works_over_http() {
    let e = Emulator::start(EmulatorConfig::default()).await.unwrap();
    let a = e.addr();
    let r = http(
        a,
        "POST",
        "/control/bots",
        Some(&format!(r#"{{"token": "{TOKEN}", "username": "x_bot"}}"#)),
    )
    .await;
    assert_eq!(r.body["id"], 110201543);
    http(
        a,
        "POST",
        "/control/users",
        Some(r#"{"id": 5, "first_name": "Eve"}"#),
    )
    .await;
    let r = http(
        a,
        "POST",
        "/control/updates",
        Some(&format!(
            r#"{{"token": "{TOKEN}", "chat_id": 5, "from": 5, "text": "/start"}}"#
        )),
    )
    .await;
    assert_eq!(r.body["update_id"], 1);
    let r = api(a, "getUpdates", "{}").await;
    assert_eq!(r.body["result"][0]["message"]["text"], "/start");
    assert_eq!(r.body["result"][0]["message"]["from"]["first_name"], "Eve");
    api(a, "sendMessage", r#"{"chat_id": 5, "text": "welcome"}"#).await;
    let log = http(a, "GET", "/control/log", None).await;
    let sends: Vec<_> = log
        .body
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["method"] == "sendmessage")
        .collect();
    assert_eq!(sends.len(), 1);
    assert_eq!(sends[0]["text"], "welcome");
    assert!(
        !log.body.to_string().contains(TOKEN),
        "the log never holds a token"
    );
    let stats = http(a, "GET", "/control/stats?bot_id=110201543", None).await;
    assert_eq!(stats.body["accepted"], 1);
    let r = http(
        a,
        "POST",
        "/control/groups",
        Some(r#"{"id": 5, "title": "x"}"#),
    )
    .await;
    assert_eq!(r.status, 400, "group ids are negative");
}
