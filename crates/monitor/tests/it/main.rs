//! The monitor's HTTP server on a real socket.

use std::sync::Arc;

use botfleet_config::{BotFile, FleetFile};
use botfleet_monitor::fleet::{BotSummary, FleetSummary, WorkerSummary};
use botfleet_monitor::{Monitor, Readiness, ReadyCheck, Registry, Sources};

const TOKEN: &str = "a-monitor-token-of-32-characters";

fn config(bind: &str, token: Option<&str>) -> botfleet_config::MonitorConfig {
    let mut file = FleetFile::new().set("monitor.bind", bind).bot(
        BotFile::new("echo", "110201543:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw1")
            .command("true", [""; 0]),
    );
    if let Some(token) = token {
        file = file.set("monitor.token", token);
    }
    file.parse().unwrap().monitor
}

fn ready(ready: bool) -> ReadyCheck {
    Arc::new(move || {
        Box::pin(async move {
            Readiness {
                ready,
                reasons: if ready {
                    Vec::new()
                } else {
                    vec!["bot dating is failed".to_owned()]
                },
            }
        })
    })
}

/// Sources: `ready`, this test process as the one worker of bot dating.
fn sources(ready: ReadyCheck) -> Sources {
    Sources {
        ready,
        processes: Arc::new(|| {
            vec![botfleet_monitor::procfs::WorkerProcess {
                bot: "dating".into(),
                slot: 0,
                pid: std::process::id(),
            }]
        }),
        fleet: Arc::new(|| {
            Box::pin(async {
                FleetSummary {
                    bots: vec![BotSummary {
                        name: "dating".into(),
                        state: "ready".into(),
                        queue: 2,
                        ..BotSummary::default()
                    }],
                    workers: vec![WorkerSummary {
                        bot: "dating".into(),
                        slot: 0,
                        pid: std::process::id(),
                        ready: true,
                        started_unix: 1,
                        restarts: 3,
                    }],
                }
            })
        }),
    }
}

fn registry() -> Registry {
    let r = Registry::new(100);
    metrics::with_local_recorder(&r, || {
        metrics::counter!("botfleet_test_updates_total", "bot" => "dating").increment(7);
    });
    r
}

#[tokio::test]
async fn metrics_health_and_ready_are_served() {
    let m = Monitor::start(
        &config("127.0.0.1:0", None),
        registry(),
        sources(ready(false)),
    )
    .await
    .unwrap();
    let base = format!("http://{}", m.addr());
    let r = reqwest::get(format!("{base}/metrics")).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let text = r.text().await.unwrap();
    assert!(
        text.contains("botfleet_test_updates_total{bot=\"dating\"} 7\n"),
        "{text}"
    );
    let om = reqwest::Client::new()
        .get(format!("{base}/metrics/all"))
        .header("accept", "application/openmetrics-text; version=1.0.0")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(om.ends_with("# EOF\n"), "{om}");
    assert_eq!(
        reqwest::get(format!("{base}/health"))
            .await
            .unwrap()
            .status(),
        200
    );
    let r = reqwest::get(format!("{base}/ready")).await.unwrap();
    assert_eq!(r.status(), 503);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["reasons"][0], "bot dating is failed");
    let r = reqwest::get(format!("{base}/nothing")).await.unwrap();
    assert_eq!(r.status(), 404);
    assert!(r.text().await.unwrap().contains("/metrics"));
    m.stop().await;
    assert!(reqwest::get(format!("{base}/health")).await.is_err());
}

#[tokio::test]
async fn off_loopback_every_page_but_health_wants_the_token() {
    let m = Monitor::start(
        &config("0.0.0.0:0", Some(TOKEN)),
        registry(),
        sources(ready(true)),
    )
    .await
    .unwrap();
    let base = format!("http://127.0.0.1:{}", m.addr().port());
    let client = reqwest::Client::new();
    for path in [
        "/metrics",
        "/metrics/all",
        "/metrics/database",
        "/metrics/cache",
        "/performance/report",
        "/ready",
        "/api/v1/fleet",
        "/api/v1/series?name=x",
        "/api/v1/names",
        "/nothing",
    ] {
        let r = client.get(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(r.status(), 401, "{path}");
        let body = r.text().await.unwrap();
        assert!(!body.contains(TOKEN), "the token leaked: {body}");
        let r = client
            .get(format!("{base}{path}"))
            .bearer_auth("a-monitor-token-of-32-characterZ")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{path}, a wrong token");
    }
    let r = client
        .get(format!("{base}/metrics"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = client
        .get(format!("{base}/ready"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        client
            .get(format!("{base}/health"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    m.stop().await;
}

#[tokio::test]
async fn a_taken_port_is_a_clear_error() {
    let first = Monitor::start(
        &config("127.0.0.1:0", None),
        registry(),
        sources(ready(true)),
    )
    .await
    .unwrap();
    let taken = first.addr().to_string();
    let err = Monitor::start(&config(&taken, None), registry(), sources(ready(true)))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with(&format!("cannot listen on {taken} (monitor.bind): ")),
        "{err}"
    );
    first.stop().await;
}

#[tokio::test]
async fn the_store_keeps_every_second_and_answers_queries() {
    let m = Monitor::start(
        &config("127.0.0.1:0", None),
        registry(),
        sources(ready(true)),
    )
    .await
    .unwrap();
    let base = format!("http://{}", m.addr());
    // Three samples: at the start and after each second.
    tokio::time::sleep(std::time::Duration::from_millis(2300)).await;
    let get = |q: &str| {
        let url = format!("{base}{q}");
        async move { reqwest::get(url).await.unwrap() }
    };
    let names: serde_json::Value = get("/api/v1/names").await.json().await.unwrap();
    assert!(
        names["names"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n == "botfleet_test_updates_total"),
        "{names}"
    );
    let r = get("/api/v1/series?name=botfleet_test_updates_total&label.bot=dating").await;
    assert_eq!(r.status(), 200);
    let body: serde_json::Value = r.json().await.unwrap();
    let series = body["series"].as_array().unwrap();
    assert_eq!(series.len(), 1, "{body}");
    assert_eq!(series[0]["labels"]["bot"], "dating");
    let points = series[0]["points"].as_array().unwrap();
    assert!(points.len() >= 2, "{body}");
    assert!(points.iter().all(|p| p[1] == 7.0), "{body}");
    assert_eq!(body["step"], 1);
    // The fleet: its bot and its one worker, this process, with CPU and
    // memory from the samples.
    let fleet: serde_json::Value = get("/api/v1/fleet").await.json().await.unwrap();
    let bot = &fleet["bots"][0];
    assert_eq!(bot["name"], "dating", "{fleet}");
    assert_eq!(bot["queue"], 2);
    let worker = &bot["workers"][0];
    assert_eq!(worker["pid"], std::process::id());
    assert_eq!(worker["state"], "ready");
    assert_eq!(worker["restarts"], 3);
    assert!(worker["uptime_s"].as_u64().unwrap() > 1_000_000, "{fleet}");
    assert!(worker["rss_mib"].as_f64().unwrap() > 1.0, "{fleet}");
    assert!(worker["cpu_pct"].as_f64().unwrap() >= 0.0, "{fleet}");
    // The endpoints of the platform botfleet was specified from.
    let db = get("/metrics/database").await.text().await.unwrap();
    assert!(!db.contains("botfleet_test_updates_total"), "{db}");
    let cache = get("/metrics/cache").await.text().await.unwrap();
    assert!(!cache.contains("process_"), "{cache}");
    let report: serde_json::Value = get("/performance/report").await.json().await.unwrap();
    assert_eq!(report["fleet"]["bots"][0]["name"], "dating", "{report}");
    assert!(
        report["host"]["memory_total_bytes"].as_f64().unwrap() > 0.0,
        "{report}"
    );
    assert!(report["host"]["cpu_pct"].as_f64().is_some(), "{report}");
    // A window that is no duration, or under 2 s, is refused with the reason.
    for window in ["soon", "1s", "-5m"] {
        let refused = get(&format!("/performance/report?window={window}")).await;
        assert_eq!(refused.status(), 400, "window={window}");
        let body = refused.text().await.unwrap();
        assert!(body.contains("give a duration of 2 s or more"), "{body}");
    }
    // The host is sampled too.
    let body: serde_json::Value = get("/api/v1/series?name=process_resident_memory_bytes")
        .await
        .json()
        .await
        .unwrap();
    assert!(
        body["series"][0]["points"][0][1].as_f64().unwrap() > 0.0,
        "{body}"
    );
    for (query, says) in [
        ("/api/v1/series", "`name` is required"),
        (
            "/api/v1/series?name=x&start=yesterday",
            "`start` must be a whole number",
        ),
        ("/api/v1/series?name=x&start=10&end=5", "is after `end`"),
        (
            "/api/v1/series?name=x&start=0&end=1000000&step=1",
            "more than 11,000 points",
        ),
        ("/api/v1/series?name=x&agg=median", "`agg` is one of"),
        ("/api/v1/series?name=x&bot=a", "unknown parameter `bot`"),
    ] {
        let r = get(query).await;
        assert_eq!(r.status(), 400, "{query}");
        let body: serde_json::Value = r.json().await.unwrap();
        assert!(
            body["error"].as_str().unwrap().contains(says),
            "{query}: {body}"
        );
    }
    m.stop().await;
}

/// Alerting in the monitor: a rule over the registry's series fires, the
/// Telegram receiver is handed the message, the API lists the alert and
/// takes silences; every alerting path wants the token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_fire_notify_and_are_silenced_through_the_api() {
    use botfleet_monitor::alerts::Engine;
    use botfleet_monitor::{Alerting, TelegramSend};
    let text = r#"
[[bot]]
name = "echo"
token = "110201543:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw1"
worker.command = "true"
[alerts]
interval = "1s"
route.group_wait = "0s"
route.group_interval = "1s"
[[alerts.telegram]]
bot = "echo"
chat_id = 42
[[alerts.groups]]
name = "test"
[[alerts.groups.rules]]
alert = "Backlog"
expr = "botfleet_queue_depth > 100"
annotations = { summary = "{{ $labels.bot }}: {{ $value }}" }
"#;
    let fleet = botfleet_config::FleetConfig::parse(
        text,
        "fleet.toml",
        &std::collections::HashMap::<String, String>::new(),
    )
    .unwrap();
    let registry = registry();
    registry.set_gauge(
        "botfleet_queue_depth",
        &[("bot".into(), "dating".into())],
        500.0,
    );
    let sent: Arc<parking_lot::Mutex<Vec<(String, i64, String)>>> = Arc::default();
    let to = sent.clone();
    let telegram: TelegramSend = Arc::new(move |bot, chat, text| {
        to.lock().push((bot, chat, text));
        Box::pin(async { Ok(()) })
    });
    let mut m = Monitor::start(
        &config("127.0.0.1:0", Some(TOKEN)),
        registry.clone(),
        sources(ready(true)),
    )
    .await
    .unwrap();
    m.start_alerting(Alerting {
        engine: Engine::new(&fleet.alerts.groups).unwrap(),
        config: fleet.alerts.clone(),
        telegram: Some(telegram),
    });
    let base = format!("http://{}", m.addr());
    let client = reqwest::Client::new();
    for path in [
        "/api/v1/alerts",
        "/api/v1/rules",
        "/api/v1/silences",
        "/api/v1/query?query=up",
    ] {
        let r = client.get(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(r.status(), 401, "{path}");
    }
    let get = |path: &str| {
        let request = client.get(format!("{base}{path}")).bearer_auth(TOKEN);
        async move {
            request
                .send()
                .await
                .unwrap()
                .json::<serde_json::Value>()
                .await
                .unwrap()
        }
    };
    let mut alerts = serde_json::Value::Null;
    for _ in 0..100 {
        alerts = get("/api/v1/alerts").await;
        if alerts["alerts"][0]["state"] == "firing" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let alert = &alerts["alerts"][0];
    assert_eq!(alert["state"], "firing", "{alerts}");
    assert_eq!(alert["labels"]["alertname"], "Backlog");
    assert_eq!(alert["annotations"]["summary"], "dating: 500");
    assert_eq!(alert["silenced"], false);
    for _ in 0..50 {
        if !sent.lock().is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    {
        let sent = sent.lock();
        assert_eq!(sent.len(), 1, "{sent:?}");
        assert_eq!((sent[0].0.as_str(), sent[0].1), ("echo", 42));
        assert!(
            sent[0].2.starts_with("🔥 FIRING alertname=Backlog"),
            "{}",
            sent[0].2
        );
        assert!(sent[0].2.contains("dating: 500"), "{}", sent[0].2);
    }
    let rules = get("/api/v1/rules").await;
    assert_eq!(rules["rules"][0]["active"], 1, "{rules}");
    let q = get("/api/v1/query?query=sum(botfleet_queue_depth)%20*%202").await;
    assert_eq!(q["data"]["result"][0]["value"][1], "1000", "{q}");
    // Over a range, step by step: what a chart draws.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let r = get(&format!(
        "/api/v1/query_range?query=sum%20by%20(bot)%20(botfleet_queue_depth)&start={}&end={now}&step=1",
        now - 10
    ))
    .await;
    assert_eq!(r["data"]["resultType"], "matrix", "{r}");
    assert_eq!(r["data"]["result"][0]["metric"]["bot"], "dating", "{r}");
    let values = r["data"]["result"][0]["values"].as_array().unwrap();
    assert!(
        !values.is_empty() && values.iter().all(|v| v[1] == "500"),
        "{r}"
    );
    let bad = get(&format!("/api/v1/query_range?query=up&start={now}&end=0")).await;
    assert!(
        bad["error"].as_str().unwrap().contains("not a range"),
        "{bad}"
    );
    // A silence: listed, marks the alert, and can be ended.
    let post = |body: serde_json::Value| {
        let request = client
            .post(format!("{base}/api/v1/silences"))
            .bearer_auth(TOKEN)
            .json(&body);
        async move { request.send().await.unwrap() }
    };
    let r = post(serde_json::json!({
        "matchers": [{"name": "alertname", "value": "Back.*", "isRegex": true}],
        "duration": "1h", "createdBy": "ops", "comment": "deploy",
    }))
    .await;
    assert_eq!(r.status(), 200);
    let id = r.json::<serde_json::Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(get("/api/v1/alerts").await["alerts"][0]["silenced"], true);
    assert_eq!(
        get("/api/v1/silences").await["silences"][0]["comment"],
        "deploy"
    );
    // Silenced, the resolution is not told either.
    registry.set_gauge(
        "botfleet_queue_depth",
        &[("bot".into(), "dating".into())],
        0.0,
    );
    for _ in 0..50 {
        if get("/api/v1/alerts").await["alerts"][0]["state"] == "resolved" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(
        get("/api/v1/alerts").await["alerts"][0]["state"],
        "resolved"
    );
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert_eq!(sent.lock().len(), 1, "{:?}", sent.lock());
    let delete = |id: String| {
        let request = client
            .delete(format!("{base}/api/v1/silences/{id}"))
            .bearer_auth(TOKEN);
        async move { request.send().await.unwrap().status() }
    };
    assert_eq!(delete(id.clone()).await, 200);
    assert_eq!(delete(id).await, 404);
    // Bad silences are refused with the reason.
    for (body, says) in [
        (
            serde_json::json!({"matchers": [{"name": "a", "value": "(", "isRegex": true}], "duration": "1h"}),
            "matcher a",
        ),
        (
            serde_json::json!({"matchers": [], "duration": "1h"}),
            "at least one matcher",
        ),
        (
            serde_json::json!({"matchers": [{"name": "a", "value": "b"}], "duration": "soon"}),
            "is not a duration",
        ),
        (
            serde_json::json!({"matchers": [{"name": "a", "value": "b"}]}),
            "either `duration`",
        ),
    ] {
        let r = post(body).await;
        assert_eq!(r.status(), 400);
        let said = r.text().await.unwrap();
        assert!(said.contains(says), "{said}");
    }
    m.stop().await;
}
