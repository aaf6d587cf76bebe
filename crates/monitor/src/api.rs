//! The alerting half of the monitor: its loop (evaluate, notify) and its
//! API (`/api/v1/query`, `/api/v1/alerts`, `/api/v1/rules`,
//! `/api/v1/silences`).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use botfleet_config::AlertsConfig;
use serde::Deserialize;

use crate::alerts::{Alert, State as AlertState};
use crate::notify::{self, Grouper, Matcher, Silence};
use crate::store::Store;
use crate::{AlertsShared, AppState, TelegramSend, bad_request, query_pairs, refused, unix_now};

/// What Alertmanager was told: each alert's labels and state.
type Told = Vec<(BTreeMap<String, String>, AlertState)>;

/// How often firing alerts are sent to Alertmanager again, at the least.
const RESEND: i64 = 60;

/// Evaluates the rules each interval, right after the sampler stored a
/// second (so a sample is judged as soon as it is kept), and notifies the
/// receivers.
pub(crate) async fn run_alerting(
    shared: Arc<AlertsShared>,
    store: Arc<Store>,
    mut sampled: tokio::sync::watch::Receiver<i64>,
    config: AlertsConfig,
    telegram: Option<TelegramSend>,
    generator: String,
) {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .ok();
    let mut grouper = Grouper::new(config.route.clone());
    let every = (config.interval.as_secs() as i64).max(1);
    let mut evaluated = i64::MIN;
    // What Alertmanager was last told, and when.
    let mut told: (Told, i64) = (Vec::new(), i64::MIN);
    let hold = 4 * (config.interval.as_secs() as i64).max(RESEND);
    loop {
        if sampled.changed().await.is_err() {
            // The monitor stopped.
            return;
        }
        let now = *sampled.borrow_and_update();
        if evaluated != i64::MIN && now - evaluated < every {
            continue;
        }
        evaluated = now;
        let alerts = {
            let mut engine = shared.engine.lock();
            engine.eval(&store, now);
            engine.alerts()
        };
        let silences: Vec<Silence> = {
            let mut silences = shared.silences.lock();
            silences.retain(|s| s.ends_at > now);
            silences.clone()
        };
        let muted = |a: &Alert| silences.iter().any(|s| s.mutes(&a.labels, now));
        let heard: Vec<Alert> = alerts.iter().filter(|a| !muted(a)).cloned().collect();
        let mut counts: HashMap<&str, f64> =
            [("pending", 0.0), ("firing", 0.0), ("resolved", 0.0)].into();
        for a in &alerts {
            *counts.entry(state_name(a.state)).or_default() += 1.0;
        }
        for (state, n) in counts {
            metrics::gauge!("botfleet_alerts", "state" => state).set(n);
        }
        if let Some(send) = &telegram {
            for notification in grouper.tick(&alerts, &muted, now) {
                let text = notification.text();
                for r in &config.telegram {
                    let send = send.clone();
                    let (bot, chat, text) = (r.bot.clone(), r.chat_id, text.clone());
                    tokio::spawn(async move {
                        let outcome = match send(bot.clone(), chat, text).await {
                            Ok(()) => "sent",
                            Err(e) => {
                                tracing::warn!(bot = %bot, chat, error = %e, "an alert notification to Telegram failed");
                                "failed"
                            }
                        };
                        metrics::counter!("botfleet_alert_notifications_total", "receiver" => "telegram", "outcome" => outcome).increment(1);
                    });
                }
            }
        }
        if let (Some(http), false) = (&http, config.alertmanager.is_empty()) {
            let now_told: Told = heard
                .iter()
                .filter(|a| a.state != AlertState::Pending)
                .map(|a| (a.labels.clone(), a.state))
                .collect();
            let firing = now_told.iter().any(|(_, s)| *s == AlertState::Firing);
            if now_told != told.0 || (firing && now - told.1 >= RESEND) {
                let body = notify::alertmanager_body(&heard, now, hold, &generator);
                if body.as_array().is_some_and(|a| !a.is_empty()) {
                    for r in &config.alertmanager {
                        post_alertmanager(http, &r.url, &body).await;
                    }
                }
                told = (now_told, now);
            }
        }
    }
}

async fn post_alertmanager(http: &reqwest::Client, url: &str, body: &serde_json::Value) {
    let shown = botfleet_config::redact_url(url);
    let outcome = match http
        .post(format!("{url}/api/v2/alerts"))
        .json(body)
        .send()
        .await
    {
        Ok(r) if r.status().is_success() => "sent",
        Ok(r) => {
            tracing::warn!(receiver = %shown, status = %r.status(), "Alertmanager refused the alerts");
            "failed"
        }
        Err(e) => {
            tracing::warn!(receiver = %shown, error = %botfleet_config::redact_url(&e.to_string()), "Alertmanager could not be reached");
            "failed"
        }
    };
    metrics::counter!("botfleet_alert_notifications_total", "receiver" => "alertmanager", "outcome" => outcome).increment(1);
}

fn state_name(state: AlertState) -> &'static str {
    match state {
        AlertState::Pending => "pending",
        AlertState::Firing => "firing",
        AlertState::Resolved => "resolved",
    }
}

fn alerting_off() -> Response {
    (
        StatusCode::NOT_FOUND,
        axum::Json(serde_json::json!({ "error": "alerting is not running in this process" })),
    )
        .into_response()
}

/// `/api/v1/alerts`: every pending, firing and recently resolved alert,
/// with whether a silence mutes it.
pub(crate) async fn alerts(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Some(refusal) = refused(&state, &headers) {
        return refusal;
    }
    let Some(shared) = state.alerts.get() else {
        return alerting_off();
    };
    let now = unix_now();
    let alerts = shared.engine.lock().alerts();
    let silences = shared.silences.lock();
    let listed: Vec<serde_json::Value> = alerts
        .iter()
        .map(|a| {
            let mut v = serde_json::to_value(a).unwrap_or_default();
            v["silenced"] = silences.iter().any(|s| s.mutes(&a.labels, now)).into();
            v
        })
        .collect();
    axum::Json(serde_json::json!({ "alerts": listed })).into_response()
}

/// `/api/v1/alerts/history`: the last changes of the alerts' states.
pub(crate) async fn history(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Some(refusal) = refused(&state, &headers) {
        return refusal;
    }
    let Some(shared) = state.alerts.get() else {
        return alerting_off();
    };
    axum::Json(serde_json::json!({ "history": shared.engine.lock().history() })).into_response()
}

/// `/api/v1/rules`: every rule with its health.
pub(crate) async fn rules(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Some(refusal) = refused(&state, &headers) {
        return refusal;
    }
    let Some(shared) = state.alerts.get() else {
        return alerting_off();
    };
    axum::Json(serde_json::json!({ "rules": shared.engine.lock().rules() })).into_response()
}

/// `/api/v1/silences`: the silences in force.
pub(crate) async fn silences(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Some(refusal) = refused(&state, &headers) {
        return refusal;
    }
    let Some(shared) = state.alerts.get() else {
        return alerting_off();
    };
    let now = unix_now();
    let listed: Vec<Silence> = shared
        .silences
        .lock()
        .iter()
        .filter(|s| s.ends_at > now)
        .cloned()
        .collect();
    axum::Json(serde_json::json!({ "silences": listed })).into_response()
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct NewSilence {
    matchers: Vec<Matcher>,
    /// Unix seconds.
    ends_at: Option<i64>,
    /// Or a duration such as "2h".
    duration: Option<String>,
    #[serde(default)]
    created_by: String,
    #[serde(default)]
    comment: String,
}

/// `POST /api/v1/silences` with `{"matchers": [{"name", "value",
/// "isRegex", "isEqual"}], "duration": "2h" | "endsAt": UNIX, "createdBy",
/// "comment"}`: answers `{"id"}`.
pub(crate) async fn add_silence(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if let Some(refusal) = refused(&state, &headers) {
        return refusal;
    }
    let Some(shared) = state.alerts.get() else {
        return alerting_off();
    };
    let asked: NewSilence = match serde_json::from_slice(&body) {
        Ok(a) => a,
        Err(e) => return bad_request(format!("the silence: {e}")),
    };
    let now = unix_now();
    let ends_at = match (asked.ends_at, asked.duration) {
        (Some(t), None) => t,
        (None, Some(d)) => match botfleet_config::duration::parse(&d) {
            Some(d) => now + d.as_secs() as i64,
            None => {
                return bad_request(format!(
                    "`duration` {d:?} is not a duration: {}",
                    botfleet_config::duration::SYNTAX
                ));
            }
        },
        _ => {
            return bad_request(
                "give either `duration` (\"2h\") or `endsAt` (Unix seconds)".to_owned(),
            );
        }
    };
    let id = shared
        .next_silence
        .fetch_add(1, Ordering::Relaxed)
        .to_string();
    match Silence::new(
        id.clone(),
        asked.matchers,
        now,
        ends_at,
        asked.created_by,
        asked.comment,
    ) {
        Ok(silence) => {
            tracing::info!(id = %id, ends_at, "a silence was added");
            shared.silences.lock().push(silence);
            (StatusCode::OK, axum::Json(serde_json::json!({ "id": id }))).into_response()
        }
        Err(e) => bad_request(e),
    }
}

/// `DELETE /api/v1/silences/{id}`: ends a silence.
pub(crate) async fn drop_silence(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Some(refusal) = refused(&state, &headers) {
        return refusal;
    }
    let Some(shared) = state.alerts.get() else {
        return alerting_off();
    };
    let mut silences = shared.silences.lock();
    let before = silences.len();
    silences.retain(|s| s.id != id);
    if silences.len() == before {
        return (
            StatusCode::NOT_FOUND,
            axum::Json(serde_json::json!({ "error": format!("no silence {id}") })),
        )
            .into_response();
    }
    axum::Json(serde_json::json!({ "id": id })).into_response()
}

/// `/api/v1/query?query=EXPR[&time=UNIX]`: a PromQL expression evaluated
/// over the store, in Prometheus's result shape.
pub(crate) async fn query(State(state): State<AppState>, headers: HeaderMap, uri: Uri) -> Response {
    if let Some(refusal) = refused(&state, &headers) {
        return refusal;
    }
    let pairs = match query_pairs(&uri) {
        Ok(p) => p,
        Err(e) => return bad_request(e),
    };
    let mut text = None;
    let mut t = unix_now();
    for (k, v) in pairs {
        match k.as_str() {
            "query" => text = Some(v),
            "time" => match v.parse::<f64>() {
                Ok(x) => t = x as i64,
                Err(_) => return bad_request(format!("`time` must be Unix seconds, not {v:?}")),
            },
            other => {
                return bad_request(format!("unknown parameter `{other}`; known: query, time"));
            }
        }
    }
    let Some(text) = text else {
        return bad_request("`query` is required: a PromQL expression".to_owned());
    };
    let expr = match botfleet_config::promql::parse(&text) {
        Ok(e) => e,
        Err(e) => return bad_request(format!("not valid PromQL: {}", e.trim())),
    };
    let value = match crate::promql::eval(&state.store, &expr, t, &mut Default::default()) {
        Ok(v) => v,
        Err(e) => return bad_request(e),
    };
    let labels =
        |l: &[(String, String)]| -> BTreeMap<String, String> { l.iter().cloned().collect() };
    let float = crate::expo::float;
    let (kind, result) = match value {
        crate::promql::Value::Scalar(v) => ("scalar", serde_json::json!([t, float(v)])),
        crate::promql::Value::String(s) => ("string", serde_json::json!([t, s])),
        crate::promql::Value::Vector(v) => (
            "vector",
            v.iter()
                .map(|s| serde_json::json!({ "metric": labels(&s.labels), "value": [t, float(s.value)] }))
                .collect(),
        ),
        crate::promql::Value::Matrix(m) => (
            "matrix",
            m.iter()
                .map(|(l, points)| {
                    let values: Vec<serde_json::Value> = points
                        .iter()
                        .map(|(t, v)| serde_json::json!([t, float(*v)]))
                        .collect();
                    serde_json::json!({ "metric": labels(l), "values": values })
                })
                .collect(),
        ),
    };
    axum::Json(serde_json::json!({
        "status": "success",
        "data": { "resultType": kind, "result": result },
    }))
    .into_response()
}

/// `/api/v1/query_range?query=EXPR&start=UNIX&end=UNIX&step=SECONDS`: the
/// expression evaluated at each step from `start` to `end` (default: the
/// last 5 minutes, every second up to an hour, else every minute), in
/// Prometheus's matrix shape — what the dashboard's charts draw. At most
/// 11,000 steps.
pub(crate) async fn query_range(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    if let Some(refusal) = refused(&state, &headers) {
        return refusal;
    }
    let pairs = match query_pairs(&uri) {
        Ok(p) => p,
        Err(e) => return bad_request(e),
    };
    let (mut text, mut start, mut end, mut step) = (None, None, None, None);
    for (k, v) in pairs {
        let number = |v: &str| {
            v.parse::<f64>()
                .map(|x| x as i64)
                .map_err(|_| format!("`{k}` must be a number of seconds, not {v:?}"))
        };
        let parsed = match k.as_str() {
            "query" => {
                text = Some(v);
                Ok(())
            }
            "start" => number(&v).map(|n| start = Some(n)),
            "end" => number(&v).map(|n| end = Some(n)),
            "step" => number(&v).map(|n| step = Some(n)),
            other => Err(format!(
                "unknown parameter `{other}`; known: query, start, end, step"
            )),
        };
        if let Err(e) = parsed {
            return bad_request(e);
        }
    }
    let Some(text) = text else {
        return bad_request("`query` is required: a PromQL expression".to_owned());
    };
    let end = end.unwrap_or_else(unix_now);
    let start = start.unwrap_or(end - 300);
    let step = step.unwrap_or(if end - start <= 3600 { 1 } else { 60 });
    if start > end || step < 1 || (end - start) / step > 11_000 {
        return bad_request(format!(
            "from {start} to {end} every {step} s is not a range of 1 to 11,000 steps"
        ));
    }
    let expr = match botfleet_config::promql::parse(&text) {
        Ok(e) => e,
        Err(e) => return bad_request(format!("not valid PromQL: {}", e.trim())),
    };
    // One series per label set, its points in time order.
    let mut series: BTreeMap<Vec<(String, String)>, Vec<serde_json::Value>> = BTreeMap::new();
    let mut state_of = crate::promql::State::default();
    let mut t = start;
    while t <= end {
        let value = match crate::promql::eval(&state.store, &expr, t, &mut state_of) {
            Ok(v) => v,
            Err(e) => return bad_request(e),
        };
        let samples = match value {
            crate::promql::Value::Vector(v) => v,
            crate::promql::Value::Scalar(v) => vec![crate::promql::Sample {
                labels: Vec::new(),
                value: v,
            }],
            _ => {
                return bad_request(
                    "a range query wants an instant vector or a number at each step".to_owned(),
                );
            }
        };
        for s in samples {
            series
                .entry(s.labels)
                .or_default()
                .push(serde_json::json!([t, crate::expo::float(s.value)]));
        }
        t += step;
    }
    let result: Vec<serde_json::Value> = series
        .into_iter()
        .map(|(labels, values)| {
            let metric: BTreeMap<String, String> = labels.into_iter().collect();
            serde_json::json!({ "metric": metric, "values": values })
        })
        .collect();
    axum::Json(serde_json::json!({
        "status": "success",
        "data": { "resultType": "matrix", "result": result },
    }))
    .into_response()
}
