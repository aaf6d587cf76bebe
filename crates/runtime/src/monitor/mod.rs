//! The monitor of a running fleet, as `botfleet run`, `demo` and
//! `bench fleet` start it: its readiness from the fleet's status and its
//! dependencies (`deps.rs`), its fleet view, its alert rules sent through
//! the fleet's bots, and a clear line when it cannot start (the fleet runs
//! on without it: its users' answers matter more than its metrics).

mod analysis;
mod deps;

use std::sync::Arc;

use crate::{FleetView, Status};
use botfleet_monitor::alerts::Engine;
use botfleet_monitor::fleet::{BotSummary, FleetSource, FleetSummary};
use botfleet_monitor::{
    Alerting, Monitor, ProcessList, Readiness, ReadyCheck, Sources, TelegramSend,
};

/// The monitor, and the task that polls the fleet's dependencies.
pub struct Running {
    monitor: Monitor,
    poller: tokio::task::JoinHandle<()>,
}

impl Running {
    /// Where it listens.
    pub fn addr(&self) -> std::net::SocketAddr {
        self.monitor.addr()
    }

    /// Takes the operator's actions on the control API from whoever holds
    /// `token` (`botfleet_monitor::control`).
    pub fn start_control(&mut self, token: &str, send: botfleet_monitor::control::ControlSend) {
        self.monitor.start_control(token, send);
    }

    /// Stops both.
    pub async fn stop(self) {
        self.poller.abort();
        self.monitor.stop().await;
    }
}

/// Starts the monitor on `config`'s `[monitor] bind` over the installed
/// registry, the polling of its database and Redis, and the alert `rules`
/// (notifying `[alerts]`' receivers); `None` (and an ERROR line) when it
/// cannot listen.
pub async fn start(
    config: &botfleet_config::FleetConfig,
    view: FleetView,
    rules: Vec<botfleet_config::RuleGroup>,
) -> Option<Running> {
    // Installed by the CLI before the command ran; a program embedding
    // its own recorder gets an empty page rather than none.
    let registry = botfleet_monitor::installed().unwrap_or_default();
    registry.set_cap(config.monitor.series_cap);
    let health = Arc::new(deps::Health::default());
    let processes: ProcessList = {
        let view = view.clone();
        Arc::new(move || view.processes())
    };
    let ready: ReadyCheck = {
        let view = view.clone();
        let health = health.clone();
        Arc::new(move || {
            let view = view.clone();
            let health = health.clone();
            Box::pin(async move {
                let mut r = readiness(&view.status().await);
                r.reasons.extend(health.problems());
                r.ready = r.reasons.is_empty();
                r
            })
        })
    };
    let telegram: TelegramSend = {
        let view = view.clone();
        Arc::new(move |bot, chat, text| {
            let view = view.clone();
            Box::pin(async move { view.send_text(&bot, chat, &text).await })
        })
    };
    let book = view.logs().clone();
    let logs: botfleet_monitor::logs::LogSource = Arc::new(move |q| {
        book.query(q.bot.as_deref(), q.worker, q.since_ms, &q.level, q.limit)
            .into_iter()
            .filter_map(|l| serde_json::to_value(l).ok())
            .collect()
    });
    let fleet: FleetSource = Arc::new(move || {
        let view = view.clone();
        Box::pin(async move {
            let mut bots: Vec<BotSummary> = view.status().await.iter().map(bot_summary).collect();
            bots.extend(view.stopped().into_iter().map(|name| BotSummary {
                name,
                state: "stopped".to_owned(),
                ..BotSummary::default()
            }));
            FleetSummary {
                bots,
                workers: view.workers(),
            }
        })
    });
    let sources = Sources {
        ready,
        processes,
        fleet,
    };
    match Monitor::start(&config.monitor, registry.clone(), sources).await {
        Ok(mut monitor) => {
            monitor.serve_logs(logs);
            monitor.serve_analysis(analysis::source(config));
            match Engine::new(&rules) {
                Ok(engine) => monitor.start_alerting(Alerting {
                    engine,
                    config: config.alerts.clone(),
                    telegram: Some(telegram),
                }),
                // Checked before the fleet started; a rule that fails here
                // is reported and alerting stays off.
                Err(e) => tracing::error!("the alert rules cannot run: {e}"),
            }
            Some(Running {
                monitor,
                poller: tokio::spawn(deps::poll(config.clone(), registry, health)),
            })
        }
        Err(e) => {
            tracing::error!("{e}; the fleet runs without its monitor");
            None
        }
    }
}

/// What `/api/v1/fleet` shows of a bot.
fn bot_summary(s: &Status) -> BotSummary {
    BotSummary {
        name: s.bot.clone(),
        state: if s.failed_bot {
            "failed"
        } else if s.ready_workers > 0 {
            "ready"
        } else {
            "starting"
        }
        .to_owned(),
        queue: (s.queued + s.unacked) as u64,
        restarts: s.restarts,
        failed: s.failed,
        dead_lettered: s.dead_lettered,
    }
}

/// Ready when every bot has a ready worker and none is failed.
fn readiness(bots: &[Status]) -> Readiness {
    let mut reasons = Vec::new();
    for s in bots {
        if s.failed_bot {
            reasons.push(format!(
                "bot {} is failed: its workers exceeded their restart intensity (it is retried after restart.failed_retry)",
                s.bot
            ));
        } else if s.ready_workers == 0 {
            reasons.push(format!("bot {} has no ready worker yet", s.bot));
        }
    }
    if bots.is_empty() {
        reasons.push("no bot runs".to_owned());
    }
    Readiness {
        ready: reasons.is_empty(),
        reasons,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_bot_or_one_without_workers_makes_the_fleet_not_ready() {
        let bot = |name: &str, ready: usize, failed: bool| Status {
            bot: name.to_owned(),
            ready_workers: ready,
            failed_bot: failed,
            ..Status::default()
        };
        assert!(readiness(&[bot("a", 2, false), bot("b", 1, false)]).ready);
        let r = readiness(&[bot("a", 2, false), bot("b", 0, true), bot("c", 0, false)]);
        assert!(!r.ready);
        assert_eq!(r.reasons.len(), 2);
        assert!(r.reasons[0].starts_with("bot b is failed"), "{r:?}");
        assert_eq!(r.reasons[1], "bot c has no ready worker yet");
        assert!(!readiness(&[]).ready);
    }
}
