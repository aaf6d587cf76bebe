//! botfleet's monitor: the metrics recorder every component of the process
//! reports to through the `metrics` facade ([`Registry`], installed by
//! [`install`] before any command runs), and the HTTP server on
//! `[monitor].bind` ([`Monitor`]) that serves them:
//!
//! - `/`: the dashboard (`dashboard.rs`: live charts of the store, the
//!   workers, the alerts; a login form when a token is wanted);
//! - `/metrics`: Prometheus text 0.0.4, or OpenMetrics 1.0 when the
//!   scraper's `Accept` asks for it (the same at `/metrics/all`; only the
//!   database's at `/metrics/database`, the caches' at `/metrics/cache`);
//! - `/performance/report`: the fleet, the host and the dependencies as
//!   JSON;
//! - `/health`: 200 while the process serves;
//! - `/ready`: 200 when every bot is ready, 503 with the reasons when not;
//! - `/api/v1/fleet`: every bot and worker with its figures (`fleet.rs`);
//! - `/api/v1/series` and `/api/v1/names`: the store's series (`store.rs`:
//!   every series each second for an hour, by the minute for a day);
//! - `/api/v1/query` and `/api/v1/query_range`: a PromQL expression
//!   evaluated now, or at each step of a range (`promql.rs`);
//! - `/api/v1/alerts`, `/api/v1/rules`, `/api/v1/silences`: the alert
//!   rules' state and the silences (`alerts.rs`, `notify.rs`);
//! - `POST /api/v1/reload`, `POST /api/v1/bots/{bot}/restart|stop|start`:
//!   the operator's actions, with the control token (`control.rs`).
//!
//! With a `monitor.token`, every path but `/health` (and the dashboard's
//! login form and assets) wants it as `Authorization: Bearer <token>` or
//! the dashboard's cookie, compared in constant time; the fleet
//! file refuses a bind off loopback without one.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use botfleet_config::MonitorConfig;
use serde::Serialize;
use subtle::ConstantTimeEq;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub mod alerts;
pub mod anomaly;
mod api;
pub mod control;
mod dashboard;
pub mod expo;
pub mod fleet;
mod help;
pub mod logs;
pub mod notify;
pub mod procfs;
pub mod promql;
pub mod registry;
pub mod rules;
pub mod store;

pub use expo::Format;
pub use registry::{Registry, Snapshot};

/// The process's registry, once [`install`]ed (`None`: another recorder
/// was there first).
static INSTALLED: OnceLock<Option<Registry>> = OnceLock::new();

/// Installs a [`Registry`] of `cap` series as the process's metrics
/// recorder (once: later calls return the first) and returns it; `None`
/// when the program installed a recorder of its own first. Call it before
/// anything records: components cache their handles.
pub fn install(cap: usize) -> Option<Registry> {
    INSTALLED
        .get_or_init(|| {
            let registry = Registry::new(cap);
            match metrics::set_global_recorder(registry.clone()) {
                Ok(()) => Some(registry),
                Err(_) => {
                    tracing::warn!("a metrics recorder was installed before botfleet's; the monitor does not see its metrics");
                    None
                }
            }
        })
        .clone()
}

/// The registry [`install`] installed, if any.
pub fn installed() -> Option<Registry> {
    INSTALLED.get().cloned().flatten()
}

/// The fleet's analysis over a window of the store (`/performance/report`,
/// `botfleet analyze`): `(store, now, window_s)` to a JSON document. The
/// analyzer lives above the monitor (`botfleet-analyze`); the program
/// hands it in with [`Monitor::serve_analysis`].
pub type AnalysisSource = Arc<
    dyn Fn(Arc<store::Store>, i64, u64) -> Pin<Box<dyn Future<Output = serde_json::Value> + Send>>
        + Send
        + Sync,
>;

/// The analysis [`Monitor::serve_analysis`] was given.
struct ServedAnalysis(AnalysisSource);

impl std::fmt::Debug for ServedAnalysis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ServedAnalysis")
    }
}

/// Whether the fleet is ready to serve, and if not, why.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Readiness {
    /// Every bot has a ready worker and none is failed.
    pub ready: bool,
    /// What is not ready, one line each.
    pub reasons: Vec<String>,
}

/// Asks the fleet how ready it is (for `/ready`).
pub type ReadyCheck =
    Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Readiness> + Send>> + Send + Sync>;

/// Lists the worker processes to sample (bot, slot, pid), each second.
pub type ProcessList = Arc<dyn Fn() -> Vec<procfs::WorkerProcess> + Send + Sync>;

/// What the monitor asks the fleet.
#[derive(Clone)]
pub struct Sources {
    /// For `/ready`.
    pub ready: ReadyCheck,
    /// The worker processes to sample each second.
    pub processes: ProcessList,
    /// For `/api/v1/fleet`.
    pub fleet: fleet::FleetSource,
}

impl std::fmt::Debug for Sources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sources").finish_non_exhaustive()
    }
}

/// Why the monitor could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The address could not be bound.
    #[error(
        "cannot listen on {addr} (monitor.bind): {source}; choose a free port in [monitor] bind"
    )]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// Sends a text to a chat as a bot of the fleet, through its limiter:
/// `(bot, chat_id, text)`.
pub type TelegramSend = Arc<
    dyn Fn(String, i64, String) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send>>
        + Send
        + Sync,
>;

/// What [`Monitor::start_alerting`] runs: the rules, the `[alerts]`
/// section, and how to reach Telegram.
pub struct Alerting {
    /// The rules.
    pub engine: alerts::Engine,
    /// `[alerts]`: interval, route, receivers.
    pub config: botfleet_config::AlertsConfig,
    /// Sends the Telegram receivers' messages (`None`: none are sent).
    pub telegram: Option<TelegramSend>,
}

impl std::fmt::Debug for Alerting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Alerting")
            .field("engine", &self.engine)
            .finish_non_exhaustive()
    }
}

/// The alerting state the API reads.
#[derive(Debug)]
struct AlertsShared {
    engine: parking_lot::Mutex<alerts::Engine>,
    silences: parking_lot::Mutex<Vec<notify::Silence>>,
    next_silence: std::sync::atomic::AtomicU64,
}

/// The running HTTP server.
#[derive(Debug)]
pub struct Monitor {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
    sampler: JoinHandle<()>,
    alerting: Option<JoinHandle<()>>,
    store: Arc<store::Store>,
    /// The second each sample was stored at, as the sampler stores it.
    sampled: tokio::sync::watch::Receiver<i64>,
    alerts: Arc<OnceLock<Arc<AlertsShared>>>,
    control: Arc<OnceLock<control::ControlShared>>,
    logs: Arc<OnceLock<logs::Served>>,
    analysis: Arc<OnceLock<ServedAnalysis>>,
}

/// A live event of the dashboard's stream and the second it is of.
type LiveEvent = (i64, Arc<str>);

#[derive(Clone)]
struct AppState {
    store: Arc<store::Store>,
    fleet: fleet::FleetSource,
    registry: Registry,
    token: Option<Arc<[u8]>>,
    ready: ReadyCheck,
    alerts: Arc<OnceLock<Arc<AlertsShared>>>,
    control: Arc<OnceLock<control::ControlShared>>,
    logs: Arc<OnceLock<logs::Served>>,
    analysis: Arc<OnceLock<ServedAnalysis>>,
    /// The live stream's latest event and its second, made once for every
    /// dashboard connected (`dashboard::stream`).
    live: Arc<tokio::sync::Mutex<Option<LiveEvent>>>,
}

impl Monitor {
    /// Listens on `config.bind` and serves `registry` and what `sources`
    /// tell until [`Monitor::stop`]; samples the host, this process and the
    /// workers from /proc into `registry`, and `registry` into its store,
    /// every second meanwhile.
    pub async fn start(
        config: &MonitorConfig,
        registry: Registry,
        sources: Sources,
    ) -> Result<Monitor, Error> {
        let Sources {
            ready,
            processes,
            fleet,
        } = sources;
        let listener = tokio::net::TcpListener::bind(config.bind)
            .await
            .map_err(|source| Error::Bind {
                addr: config.bind,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| Error::Bind {
            addr: config.bind,
            source,
        })?;
        let store = Arc::new(store::Store::with_retention(
            config.store_series,
            (config.retention.as_secs() / 60) as usize,
        ));
        let sampled = registry.clone();
        let kept = store.clone();
        let (sampled_tx, sampled_rx) = tokio::sync::watch::channel(0i64);
        let sampler = tokio::spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                procfs::sample(&sampled, std::path::Path::new("/proc"), &processes());
                let now = unix_now();
                kept.record(now, &sampled.snapshot());
                // The rules run on what was just stored.
                sampled_tx.send_replace(now);
                sampled.set_gauge("botfleet_monitor_store_series", &[], kept.len() as f64);
                sampled.set_float_counter(
                    "botfleet_monitor_store_dropped_total",
                    &[],
                    kept.dropped() as f64,
                );
            }
        });
        let alerts = Arc::new(OnceLock::new());
        let control = Arc::new(OnceLock::new());
        let logs = Arc::new(OnceLock::new());
        let analysis = Arc::new(OnceLock::new());
        let state = AppState {
            live: Arc::default(),
            analysis: analysis.clone(),
            logs: logs.clone(),
            store: store.clone(),
            alerts: alerts.clone(),
            control: control.clone(),
            fleet,
            registry,
            token: config
                .token
                .as_ref()
                .map(|t| Arc::from(t.expose().as_bytes())),
            ready,
        };
        let app = axum::Router::new()
            .route("/metrics", get(metrics_text))
            .route("/metrics/all", get(metrics_text))
            .route("/metrics/database", get(metrics_database))
            .route("/metrics/cache", get(metrics_cache))
            .route("/performance/report", get(performance_report))
            .route("/health", get(health))
            .route("/ready", get(ready_json))
            .route("/api/v1/series", get(series_json))
            .route("/api/v1/names", get(names_json))
            .route("/api/v1/fleet", get(fleet_json))
            .route("/api/v1/query", get(api::query))
            .route("/api/v1/query_range", get(api::query_range))
            .route("/api/v1/alerts", get(api::alerts))
            .route("/api/v1/alerts/history", get(api::history))
            .route("/api/v1/rules", get(api::rules))
            .route(
                "/api/v1/silences",
                get(api::silences).post(api::add_silence),
            )
            .route(
                "/api/v1/silences/{id}",
                axum::routing::delete(api::drop_silence),
            )
            .route("/api/v1/logs", get(logs::logs))
            .route("/", get(dashboard::page))
            .route("/login", axum::routing::post(dashboard::login))
            .route("/assets/{file}", get(dashboard::asset))
            .route("/api/v1/dashboard", get(dashboard::charts))
            .route("/api/v1/stream", get(dashboard::stream))
            .route("/api/v1/reload", axum::routing::post(control::reload))
            .route("/api/v1/dead-letters", get(control::dead_letters))
            .route(
                "/api/v1/dead-letters/{bot}/{what}",
                axum::routing::post(control::dead_letter),
            )
            .route(
                "/api/v1/dead-letters/{bot}/{id}/{what}",
                axum::routing::post(control::dead_letter),
            )
            .route(
                "/api/v1/bots/{bot}/{action}",
                axum::routing::post(control::bot),
            )
            .fallback(not_found)
            .with_state(state);
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stopped.await;
                })
                .await;
            if let Err(e) = served {
                tracing::error!("the monitor's server stopped: {e}");
            }
        });
        Ok(Monitor {
            addr,
            stop: Some(stop),
            task,
            sampler,
            alerting: None,
            store,
            sampled: sampled_rx,
            alerts,
            control,
            logs,
            analysis,
        })
    }

    /// Serves `source`'s analysis in `/performance/report` (its
    /// `analysis` and `findings`).
    pub fn serve_analysis(&mut self, source: AnalysisSource) {
        if self.analysis.set(ServedAnalysis(source)).is_err() {
            tracing::warn!("the analysis was served twice; the second is ignored");
        }
    }

    /// Serves the workers' recent output at `/api/v1/logs` from `source`.
    pub fn serve_logs(&mut self, source: logs::LogSource) {
        if self.logs.set(logs::Served(source)).is_err() {
            tracing::warn!("the logs were served twice; the second is ignored");
        }
    }

    /// Takes actions on the control API (`control.rs`) from whoever holds
    /// `token`, carried out by `send`.
    pub fn start_control(&mut self, token: &str, send: control::ControlSend) {
        let shared = control::ControlShared {
            token: Arc::from(token.as_bytes()),
            send,
        };
        if self.control.set(shared).is_err() {
            tracing::warn!("the control API was started twice; the second is ignored");
        }
    }

    /// Evaluates `alerting`'s rules every `[alerts].interval` over the
    /// store, each time right after the sampler stored a second, serves their alerts and silences on the API, and notifies
    /// the receivers (`notify.rs`).
    pub fn start_alerting(&mut self, alerting: Alerting) {
        let Alerting {
            engine,
            config,
            telegram,
        } = alerting;
        let shared = Arc::new(AlertsShared {
            engine: parking_lot::Mutex::new(engine),
            silences: parking_lot::Mutex::new(Vec::new()),
            next_silence: std::sync::atomic::AtomicU64::new(1),
        });
        if self.alerts.set(shared.clone()).is_err() {
            tracing::warn!("alerting was started twice; the second is ignored");
            return;
        }
        let store = self.store.clone();
        let generator = format!("http://{}/api/v1/alerts", self.addr);
        self.alerting = Some(tokio::spawn(api::run_alerting(
            shared,
            store,
            self.sampled.clone(),
            config,
            telegram,
            generator,
        )));
    }

    /// The address it listens on (the port chosen when `bind` said 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops serving; requests in progress finish.
    pub async fn stop(mut self) {
        self.sampler.abort();
        if let Some(alerting) = self.alerting.take() {
            alerting.abort();
        }
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
    }
}

/// Refuses a request without the token, when there is one.
fn refused(state: &AppState, headers: &HeaderMap) -> Option<Response> {
    if authorized(state, headers) {
        return None;
    }
    Some(
        (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            "the monitor wants its token: Authorization: Bearer <monitor.token>\n",
        )
            .into_response(),
    )
}

/// Whether the request may read: no token set, or it carries the token
/// as `Authorization: Bearer` or as the dashboard's cookie (both compared
/// in constant time).
fn authorized(state: &AppState, headers: &HeaderMap) -> bool {
    let Some(token) = state.token.as_ref() else {
        return true;
    };
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::as_bytes)
        .unwrap_or_default();
    let cookie = dashboard::cookie_token(headers).unwrap_or_default();
    bool::from(bearer.ct_eq(token)) | bool::from(cookie.as_bytes().ct_eq(token))
}

async fn metrics_text(State(state): State<AppState>, headers: HeaderMap) -> Response {
    metrics_of(&state, &headers, &[])
}

/// The database's metrics: botfleet-db's in the supervisor and its
/// workers, and the PostgreSQL the monitor polls.
async fn metrics_database(State(state): State<AppState>, headers: HeaderMap) -> Response {
    metrics_of(&state, &headers, &["botfleet_db_", "botfleet_postgres_"])
}

/// The caches' metrics: the tiered caches of the workers, and the Redis
/// the monitor polls.
async fn metrics_cache(State(state): State<AppState>, headers: HeaderMap) -> Response {
    metrics_of(&state, &headers, &["botfleet_cache_", "botfleet_redis_"])
}

/// The registry's series whose name starts with one of `prefixes` (all
/// with none), in the format `Accept` asks for.
fn metrics_of(state: &AppState, headers: &HeaderMap, prefixes: &[&str]) -> Response {
    if let Some(refusal) = refused(state, headers) {
        return refusal;
    }
    let format = Format::from_accept(headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()));
    let body = state.registry.render(format, |name| {
        prefixes.is_empty() || prefixes.iter().any(|p| name.starts_with(p))
    });
    ([(header::CONTENT_TYPE, format.content_type())], body).into_response()
}

/// `/performance/report[?window=5m]`: the fleet at a glance, the host and
/// the dependencies, and the analyzer's findings over the window, as JSON
/// (docs/analyze.md).
async fn performance_report(
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
    let window_s = match pairs.iter().find(|(k, _)| k == "window") {
        None => DEFAULT_WINDOW_S,
        Some((_, text)) => match botfleet_config::duration::parse(text) {
            Some(d) if d.as_secs() >= 2 => d.as_secs(),
            _ => {
                return bad_request(format!(
                    "window={text:?}: give a duration of 2 s or more, such as 30s, 5m or 1h"
                ));
            }
        },
    };
    let analysis = match state.analysis.get() {
        Some(ServedAnalysis(source)) => {
            Some(source(state.store.clone(), unix_now(), window_s).await)
        }
        None => None,
    };
    let summary = (state.fleet)().await;
    let store = &state.store;
    let host_cpu = {
        let busy = ["user", "nice", "system", "irq", "softirq", "steal"]
            .iter()
            .filter_map(|mode| {
                store.increase(
                    "botfleet_host_cpu_seconds_total",
                    &[("mode".to_owned(), (*mode).to_owned())],
                    10,
                )
            })
            .fold(None, |acc: Option<(f64, f64)>, (n, secs)| {
                let (sum, s) = acc.unwrap_or((0.0, secs));
                Some((sum + n, s.max(secs)))
            });
        let cpus = store
            .latest("botfleet_host_cpus", &[])
            .unwrap_or(1.0)
            .max(1.0);
        busy.filter(|(_, secs)| *secs > 0.0)
            .map(|(n, secs)| (n / secs / cpus * 10_000.0).round() / 100.0)
    };
    let report = serde_json::json!({
        "generated_at": unix_now(),
        "fleet": fleet::json(&summary, store, unix_now() as u64),
        "host": {
            "cpu_pct": host_cpu,
            "memory_total_bytes": store.latest("botfleet_host_memory_total_bytes", &[]),
            "memory_available_bytes": store.latest("botfleet_host_memory_available_bytes", &[]),
            "load1": store.latest("botfleet_host_load1", &[]),
        },
        "dependencies": {
            "postgres_up": store.latest("botfleet_postgres_up", &[]),
            "redis_up": store.latest("botfleet_redis_up", &[]),
        },
        "findings": analysis.as_ref().and_then(|a| a.get("findings").cloned()).unwrap_or_default(),
        "analysis": analysis,
    });
    axum::Json(report).into_response()
}

async fn health() -> Response {
    (StatusCode::OK, "ok\n").into_response()
}

async fn ready_json(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Some(refusal) = refused(&state, &headers) {
        return refusal;
    }
    let readiness = (state.ready)().await;
    let status = if readiness.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(readiness)).into_response()
}

async fn not_found(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Some(refusal) = refused(&state, &headers) {
        return refusal;
    }
    (
        StatusCode::NOT_FOUND,
        "no such page; the monitor serves / (the dashboard), /metrics, /metrics/all, /metrics/database, /metrics/cache, /performance/report, /health, /ready, /api/v1/fleet, /api/v1/series, /api/v1/names, /api/v1/query, /api/v1/query_range, /api/v1/alerts, /api/v1/rules, /api/v1/silences and /api/v1/logs, and takes POST /api/v1/reload and /api/v1/bots/BOT/restart|stop|start\n",
    )
        .into_response()
}

/// Seconds since the Unix epoch.
/// The analysis window when the request names none, seconds.
const DEFAULT_WINDOW_S: u64 = 300;

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// The pairs of a request's query string, or why not.
fn query_pairs(uri: &Uri) -> Result<Vec<(String, String)>, String> {
    serde_urlencoded::from_str(uri.query().unwrap_or_default())
        .map_err(|e| format!("the query string: {e}"))
}

/// A 400 with what was wrong, as JSON.
fn bad_request(message: String) -> Response {
    (
        StatusCode::BAD_REQUEST,
        axum::Json(serde_json::json!({ "error": message })),
    )
        .into_response()
}

/// `/api/v1/series?name=N[&start=S][&end=E][&step=D][&agg=A][&label.K=V...]`:
/// the stored series named `N` whose label `K` is `V` (each `label.`
/// pair), from `S` to `E` (Unix seconds; default the last 5 minutes) every
/// `D` seconds (default 1 up to an hour, else 60), older than an hour from
/// the minutes folded by `A` (`min`, `max`, `mean`, `last`; default `last`
/// for counters and histogram parts, else `mean`).
async fn series_json(State(state): State<AppState>, headers: HeaderMap, uri: Uri) -> Response {
    if let Some(refusal) = refused(&state, &headers) {
        return refusal;
    }
    let pairs = match query_pairs(&uri) {
        Ok(p) => p,
        Err(e) => return bad_request(e),
    };
    let mut name = None;
    let (mut start, mut end, mut step, mut agg) = (None, None, None, None);
    let mut matchers = Vec::new();
    for (k, v) in pairs {
        let number = |v: &str| {
            v.parse::<i64>()
                .map_err(|_| format!("`{k}` must be a whole number of seconds, not {v:?}"))
        };
        let parsed = match k.as_str() {
            "name" => {
                name = Some(v);
                Ok(())
            }
            "start" => number(&v).map(|n| start = Some(n)),
            "end" => number(&v).map(|n| end = Some(n)),
            "step" => number(&v).map(|n| step = Some(n)),
            "agg" => store::Aggregate::parse(&v)
                .map(|a| agg = Some(a))
                .ok_or_else(|| format!("`agg` is one of min, max, mean, last; not {v:?}")),
            other => match other.strip_prefix("label.") {
                Some(label) => {
                    matchers.push((label.to_owned(), v));
                    Ok(())
                }
                None => Err(format!(
                    "unknown parameter `{other}`; known: name, start, end, step, agg, label.<name>"
                )),
            },
        };
        if let Err(message) = parsed {
            return bad_request(message);
        }
    }
    let Some(name) = name else {
        return bad_request("`name` is required (see /api/v1/names)".to_owned());
    };
    let end = end.unwrap_or_else(unix_now);
    let start = start.unwrap_or(end - 300);
    if start > end {
        return bad_request(format!("`start` ({start}) is after `end` ({end})"));
    }
    let step = step.unwrap_or(if end - start <= 3600 { 1 } else { 60 });
    if step < 1 || (end - start) / step > 11_000 {
        return bad_request(format!(
            "`step` {step} gives more than 11,000 points from {start} to {end}; use a larger step"
        ));
    }
    let counter_like = ["_total", "_bucket", "_count", "_sum"]
        .iter()
        .any(|s| name.ends_with(s));
    let agg = agg.unwrap_or(if counter_like {
        store::Aggregate::Last
    } else {
        store::Aggregate::Mean
    });
    let series = state.store.query(&name, &matchers, start, end, step, agg);
    axum::Json(serde_json::json!({
        "name": name,
        "start": start,
        "end": end,
        "step": step,
        "series": series,
    }))
    .into_response()
}

/// `/api/v1/names`: the names of the stored series.
async fn names_json(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Some(refusal) = refused(&state, &headers) {
        return refusal;
    }
    axum::Json(serde_json::json!({ "names": state.store.names() })).into_response()
}

/// `/api/v1/fleet`: every bot and worker with its figures.
async fn fleet_json(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Some(refusal) = refused(&state, &headers) {
        return refusal;
    }
    let summary = (state.fleet)().await;
    axum::Json(fleet::json(&summary, &state.store, unix_now() as u64)).into_response()
}
