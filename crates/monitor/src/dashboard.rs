//! The dashboard: one page and its script and style, built into the
//! binary (no network needed), drawing the store's series with a chart
//! module of its own, live over server-sent events.
//!
//! - `/`: the page (with a token set and none given: a login form, which
//!   sets an HttpOnly, SameSite=Strict cookie the API then accepts);
//! - `/assets/app.js`, `/assets/style.css`;
//! - `/api/v1/dashboard`: the charts, each a PromQL expression;
//! - `/api/v1/stream`: every second, the fleet, the alerts (and their
//!   last 20 changes) and each chart's newest values, as an SSE `data:`
//!   line of JSON.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;

use crate::{AppState, authorized, refused, unix_now};

const PAGE: &str = include_str!("dashboard/index.html");
const LOGIN: &str = include_str!("dashboard/login.html");
const APP: &str = include_str!("dashboard/app.js");
const STYLE: &str = include_str!("dashboard/style.css");

/// The cookie that carries the token for the browser.
const COOKIE: &str = "botfleet_token";

/// A chart: its id, title, unit and expression (one line per element);
/// `band`: drawn with each line's anomaly band (the EWMA baseline ± 3 σ
/// the alert rules' detector judges against); `forecast`: with each
/// line's least-squares trend drawn a quarter of the range ahead.
pub(crate) struct Chart {
    id: &'static str,
    title: &'static str,
    unit: &'static str,
    expr: &'static str,
    band: bool,
    forecast: bool,
}

/// The overview's charts; a bot's page shows its own lines of each.
pub(crate) const CHARTS: &[Chart] = &[
    Chart {
        id: "rate",
        title: "Updates handled per second",
        unit: "/s",
        expr: "sum by (bot) (rate(botfleet_updates_acked_total[30s]))",
        band: true,
        forecast: false,
    },
    Chart {
        id: "p99",
        title: "Latency p99 (dispatch to ack)",
        unit: "s",
        expr: "histogram_quantile(0.99, sum by (bot, le) (rate(botfleet_update_handling_seconds_bucket[1m])))",
        band: true,
        forecast: false,
    },
    Chart {
        id: "p50",
        title: "Latency p50",
        unit: "s",
        expr: "histogram_quantile(0.5, sum by (bot, le) (rate(botfleet_update_handling_seconds_bucket[1m])))",
        band: false,
        forecast: false,
    },
    Chart {
        id: "errors",
        title: "Updates failed per second",
        unit: "/s",
        expr: "sum by (bot) (rate(botfleet_updates_failed_total[1m]))",
        band: false,
        forecast: false,
    },
    Chart {
        id: "calls",
        title: "Bot API calls per second",
        unit: "/s",
        expr: "sum by (bot) (rate(botfleet_telegram_calls_total[30s]))",
        band: false,
        forecast: false,
    },
    // Every send passes the limiter once per attempt and records its wait.
    Chart {
        id: "sends",
        title: "Telegram sends, % of the token's allowance",
        unit: "%",
        expr: "100 * sum by (bot) (rate(botfleet_telegram_limiter_wait_seconds_count[30s])) / on (bot) max by (bot) (botfleet_telegram_allowance_per_second)",
        band: false,
        forecast: false,
    },
    Chart {
        id: "limiter",
        title: "Limiter wait p99",
        unit: "s",
        expr: "histogram_quantile(0.99, sum by (bot, le) (rate(botfleet_telegram_limiter_wait_seconds_bucket[1m])))",
        band: false,
        forecast: false,
    },
    Chart {
        id: "throttled",
        title: "429s from Telegram per second",
        unit: "/s",
        expr: "sum by (bot) (rate(botfleet_telegram_429_total[1m]))",
        band: false,
        forecast: false,
    },
    Chart {
        id: "workers",
        title: "Workers ready, and restarts in the last minute",
        unit: "",
        expr: r#"label_replace(sum by (bot) (botfleet_workers_ready), "what", "ready", "", "") or label_replace(sum by (bot) (increase(botfleet_worker_restarts_total[1m])), "what", "restarts", "", "")"#,
        band: false,
        forecast: false,
    },
    Chart {
        id: "cpu",
        title: "Workers' CPU (cores)",
        unit: "",
        expr: "sum by (bot) (rate(botfleet_worker_cpu_seconds_total[30s]))",
        band: false,
        forecast: false,
    },
    Chart {
        id: "memory",
        title: "Workers' memory",
        unit: "B",
        expr: "sum by (bot) (botfleet_worker_resident_memory_bytes)",
        band: false,
        forecast: true,
    },
    Chart {
        id: "pool",
        title: "Database pool: connections in use, idle, and callers waiting",
        unit: "",
        expr: r#"label_replace(sum by (bot) (botfleet_db_pool_connections_in_use), "state", "in use", "", "") or label_replace(sum by (bot) (botfleet_db_pool_connections_idle), "state", "idle", "", "") or label_replace(sum by (bot) (botfleet_db_pool_waiters), "state", "waiting", "", "")"#,
        band: false,
        forecast: true,
    },
    Chart {
        id: "acquire",
        title: "Database acquire wait p99",
        unit: "s",
        expr: "histogram_quantile(0.99, sum by (bot, le) (rate(botfleet_db_acquire_wait_seconds_bucket[1m])))",
        band: false,
        forecast: false,
    },
    Chart {
        id: "cache",
        title: "Cache hit ratio",
        unit: "%",
        expr: "100 * sum by (bot, tier) (rate(botfleet_cache_hits_total[1m])) / (sum by (bot, tier) (rate(botfleet_cache_hits_total[1m])) + sum by (bot, tier) (rate(botfleet_cache_misses_total[1m])))",
        band: false,
        forecast: false,
    },
    Chart {
        id: "loads",
        title: "Cache loads per second (misses that ran the loader)",
        unit: "/s",
        expr: "sum by (bot) (rate(botfleet_cache_loads_total[1m]))",
        band: false,
        forecast: false,
    },
    Chart {
        id: "queue",
        title: "Queue and journal depth",
        unit: "",
        expr: r#"label_replace(sum by (bot) (botfleet_queue_depth), "of", "queue", "", "") or label_replace(sum by (bot) (botfleet_journal_depth), "of", "journal", "", "")"#,
        band: false,
        forecast: true,
    },
];

/// The token in the request's dashboard cookie, if any.
pub(crate) fn cookie_token(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            let (k, v) = pair.trim().split_once('=')?;
            (k == COOKIE).then(|| v.to_owned())
        })
}

fn html(body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response()
}

/// `/`: the page, or the login form when the token is wanted.
pub(crate) async fn page(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if authorized(&state, &headers) {
        html(PAGE)
    } else {
        html(LOGIN)
    }
}

/// `POST /login` with the form's `token`: the cookie, or the form again.
pub(crate) async fn login(State(state): State<AppState>, body: String) -> Response {
    let given: Vec<(String, String)> = serde_urlencoded::from_str(&body).unwrap_or_default();
    let token = given
        .iter()
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v.as_str())
        .unwrap_or_default();
    let right = state
        .token
        .as_ref()
        .is_some_and(|t| bool::from(token.as_bytes().ct_eq(t)));
    // A token with characters a cookie cannot hold is never right.
    let plain = token
        .bytes()
        .all(|b| b.is_ascii_graphic() && b != b';' && b != b',');
    if !right || !plain {
        return (
            StatusCode::UNAUTHORIZED,
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            LOGIN.replace(
                "<!--error-->",
                "<p class=\"error\">That is not the monitor's token.</p>",
            ),
        )
            .into_response();
    }
    (
        StatusCode::SEE_OTHER,
        [
            (header::LOCATION, "/".to_owned()),
            (
                header::SET_COOKIE,
                format!("{COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/"),
            ),
        ],
    )
        .into_response()
}

/// `/assets/{file}`: the script and the style.
pub(crate) async fn asset(Path(file): Path<String>) -> Response {
    let (body, kind) = match file.as_str() {
        "app.js" => (APP, "text/javascript; charset=utf-8"),
        "style.css" => (STYLE, "text/css; charset=utf-8"),
        _ => return (StatusCode::NOT_FOUND, "no such asset\n").into_response(),
    };
    ([(header::CONTENT_TYPE, kind)], body).into_response()
}

/// `/api/v1/dashboard`: the charts.
pub(crate) async fn charts(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Some(refusal) = refused(&state, &headers) {
        return refusal;
    }
    let charts: Vec<serde_json::Value> = CHARTS
        .iter()
        .map(|c| {
            serde_json::json!({
                "id": c.id, "title": c.title, "unit": c.unit, "expr": c.expr,
                "band": c.band, "forecast": c.forecast,
            })
        })
        .collect();
    axum::Json(serde_json::json!({ "charts": charts })).into_response()
}

/// Each chart's values at `t`: `{id: [[labels, value], ...]}`.
fn chart_values(store: &crate::store::Store, t: i64) -> serde_json::Value {
    // Parsed once for the process, not at every tick of every dashboard.
    static PARSED: std::sync::OnceLock<Vec<Option<botfleet_config::promql::Expr>>> =
        std::sync::OnceLock::new();
    let parsed = PARSED.get_or_init(|| {
        CHARTS
            .iter()
            .map(|c| botfleet_config::promql::parse(c.expr).ok())
            .collect()
    });
    let mut out = serde_json::Map::new();
    for (c, expr) in CHARTS.iter().zip(parsed) {
        let Some(expr) = expr else {
            continue;
        };
        let points: Vec<serde_json::Value> =
            match crate::promql::eval(store, expr, t, &mut Default::default()) {
                Ok(crate::promql::Value::Vector(v)) => v
                    .into_iter()
                    .filter(|s| s.value.is_finite())
                    .map(|s| {
                        let labels: serde_json::Map<String, serde_json::Value> = s
                            .labels
                            .into_iter()
                            .map(|(k, v)| (k, serde_json::Value::String(v)))
                            .collect();
                        serde_json::json!([labels, s.value])
                    })
                    .collect(),
                _ => Vec::new(),
            };
        out.insert(c.id.to_owned(), serde_json::Value::Array(points));
    }
    serde_json::Value::Object(out)
}

/// The live event of this second, `{t, fleet, alerts, charts}`: made by
/// the first dashboard to ask in the second, the others wait for it and
/// share it, so a dashboard more costs a copy, not an evaluation.
async fn live_event(state: &AppState) -> Arc<str> {
    let t = unix_now();
    let mut live = state.live.lock().await;
    if let Some((at, event)) = &*live {
        if *at == t {
            return Arc::clone(event);
        }
    }
    let summary = (state.fleet)().await;
    let fleet = crate::fleet::json(&summary, &state.store, t as u64);
    let (alerts, history) = state
        .alerts
        .get()
        .map(|a| {
            let engine = a.engine.lock();
            let history = engine.history();
            let recent = history[history.len().saturating_sub(20)..].to_vec();
            (engine.alerts(), recent)
        })
        .unwrap_or_default();
    let data = serde_json::json!({
        "t": t,
        "fleet": fleet,
        "alerts": alerts,
        "history": history,
        "charts": chart_values(&state.store, t),
    });
    let event: Arc<str> = Arc::from(data.to_string());
    *live = Some((t, Arc::clone(&event)));
    event
}

/// `/api/v1/stream`: every second, `{t, fleet, alerts, charts}`.
pub(crate) async fn stream(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Some(refusal) = refused(&state, &headers) {
        return refusal;
    }
    let ticks = tokio::time::interval(Duration::from_secs(1));
    let events = futures_util::stream::unfold((state, ticks), |(state, mut ticks)| async move {
        ticks.tick().await;
        let event = Event::default().data(&*live_event(&state).await);
        Some((Ok::<_, Infallible>(event), (state, ticks)))
    });
    Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response()
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_chart_is_promql_the_monitor_evaluates() {
        for c in super::CHARTS {
            let expr =
                botfleet_config::promql::parse(c.expr).unwrap_or_else(|e| panic!("{}: {e}", c.id));
            crate::promql::check(&expr).unwrap_or_else(|e| panic!("{}: {e}", c.id));
        }
    }
}
