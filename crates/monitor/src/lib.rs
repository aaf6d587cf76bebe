//! botfleet's monitor: the metrics recorder every component of the process
//! reports to through the `metrics` facade ([`Registry`], installed by
//! [`install`] before any command runs), and the HTTP server on
//! `[monitor].bind` ([`Monitor`]) that serves them:
//!
//! - `/metrics`: Prometheus text 0.0.4, or OpenMetrics 1.0 when the
//!   scraper's `Accept` asks for it (the same at `/metrics/all`);
//! - `/health`: 200 while the process serves;
//! - `/ready`: 200 when every bot is ready, 503 with the reasons when not.
//!
//! With a `monitor.token`, every path but `/health` wants it as
//! `Authorization: Bearer <token>`, compared in constant time; the fleet
//! file refuses a bind off loopback without one.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use botfleet_config::MonitorConfig;
use serde::Serialize;
use subtle::ConstantTimeEq;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub mod expo;
mod help;
pub mod procfs;
pub mod registry;

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

/// The running HTTP server.
#[derive(Debug)]
pub struct Monitor {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
    sampler: JoinHandle<()>,
}

#[derive(Clone)]
struct AppState {
    registry: Registry,
    token: Option<Arc<[u8]>>,
    ready: ReadyCheck,
}

impl Monitor {
    /// Listens on `config.bind` and serves `registry` and `ready` until
    /// [`Monitor::stop`]; samples the host, this process and `processes`
    /// from /proc into `registry` every second meanwhile.
    pub async fn start(
        config: &MonitorConfig,
        registry: Registry,
        ready: ReadyCheck,
        processes: ProcessList,
    ) -> Result<Monitor, Error> {
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
        let sampled = registry.clone();
        let sampler = tokio::spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                procfs::sample(&sampled, std::path::Path::new("/proc"), &processes());
            }
        });
        let state = AppState {
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
            .route("/health", get(health))
            .route("/ready", get(ready_json))
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
        })
    }

    /// The address it listens on (the port chosen when `bind` said 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops serving; requests in progress finish.
    pub async fn stop(mut self) {
        self.sampler.abort();
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
    }
}

/// Refuses a request without the token, when there is one.
fn refused(state: &AppState, headers: &HeaderMap) -> Option<Response> {
    let token = state.token.as_ref()?;
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::as_bytes)
        .unwrap_or_default();
    if bool::from(given.ct_eq(token)) {
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

async fn metrics_text(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Some(refusal) = refused(&state, &headers) {
        return refusal;
    }
    let format = Format::from_accept(headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()));
    let body = expo::render(&state.registry.snapshot(), format);
    ([(header::CONTENT_TYPE, format.content_type())], body).into_response()
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
        "no such page; the monitor serves /metrics, /metrics/all, /health and /ready\n",
    )
        .into_response()
}
