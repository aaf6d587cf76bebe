//! Alert rules with Prometheus's semantics, evaluated over the [`Store`].
//!
//! Each element an expression returns is an alert, identified by its labels
//! (the element's, without `__name__`, then the group's, then the rule's,
//! and `alertname`). A new element is **pending**; after `for` it is
//! **firing** (at once without `for`). When its element is gone a pending
//! alert is dropped, and a firing one keeps firing for `keep_firing_for`,
//! then is **resolved**: kept [`RESOLVED_KEPT`] seconds so the notifier can
//! say so, then forgotten. Annotations and label values are templated with
//! `{{ $labels.NAME }}`, `{{ $value }}` and the pipes `humanize`,
//! `humanizePercentage` and `humanizeDuration`, as Prometheus writes them.
//!
//! The engine is driven by the time it is given, so tests step it through
//! paused time; the monitor evaluates it every `[alerts].interval`.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use botfleet_config::promql::Expr;
use botfleet_config::{AlertRule, RuleGroup};
use serde::Serialize;

use crate::promql::{self, Labels, Value};
use crate::store::Store;

/// How long a resolved alert stays listed (seconds).
pub const RESOLVED_KEPT: i64 = 900;

/// The name of the group of built-in rules.
pub const DEFAULT_GROUP: &str = "botfleet";

/// An alert's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// Its condition holds, for less than `for`.
    Pending,
    /// Its condition held for `for` (or holds within `keep_firing_for`).
    Firing,
    /// It fired and is over.
    Resolved,
}

/// One alert, as the API shows it and the notifier sends it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Alert {
    /// Its labels, `alertname` included.
    pub labels: BTreeMap<String, String>,
    /// Its templated annotations.
    pub annotations: BTreeMap<String, String>,
    /// Its state.
    pub state: State,
    /// The expression's value when last seen.
    pub value: f64,
    /// When its condition first held (Unix seconds).
    pub active_at: i64,
    /// When it started firing.
    pub fired_at: Option<i64>,
    /// When it was resolved.
    pub resolved_at: Option<i64>,
    /// The rule's group.
    pub group: String,
}

impl Alert {
    /// Its `alertname`.
    pub fn name(&self) -> &str {
        self.labels.get("alertname").map_or("", String::as_str)
    }
}

/// A rule's health, as the API shows it.
#[derive(Clone, Debug, Serialize)]
pub struct RuleStatus {
    /// Its group.
    pub group: String,
    /// Its alert name.
    pub alert: String,
    /// Its expression.
    pub expr: String,
    /// `for`, in seconds.
    pub for_s: u64,
    /// `keep_firing_for`, in seconds.
    pub keep_firing_for_s: u64,
    /// Where it is written.
    pub origin: String,
    /// The last evaluation's error, if it failed.
    pub error: Option<String>,
    /// Its alerts now pending or firing.
    pub active: usize,
}

struct Rule {
    group: String,
    group_labels: Vec<(String, String)>,
    rule: AlertRule,
    expr: Expr,
    state: promql::State,
    alerts: HashMap<Labels, Alert>,
    /// When each alert's element was last seen.
    last_seen: HashMap<Labels, i64>,
    error: Option<String>,
}

/// A change of an alert's state, for the history.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Transition {
    /// When (Unix seconds).
    pub t: i64,
    /// The alert's labels.
    pub labels: BTreeMap<String, String>,
    /// Its state before (`None`: it was inactive).
    pub from: Option<State>,
    /// Its state after (`None`: inactive again, a pending alert dropped).
    pub to: Option<State>,
}

/// Transitions kept.
pub const HISTORY: usize = 500;

/// The rule engine.
pub struct Engine {
    rules: Vec<Rule>,
    history: std::collections::VecDeque<Transition>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("rules", &self.rules.len())
            .finish()
    }
}

impl Engine {
    /// An engine of `groups`' rules; an expression or template it cannot
    /// evaluate is an error naming the rule and where it is written.
    pub fn new(groups: &[RuleGroup]) -> Result<Engine, String> {
        let mut rules = Vec::new();
        for group in groups {
            for rule in &group.rules {
                let at = || {
                    format!(
                        "{} (alert {}, group {})",
                        rule.origin, rule.alert, group.name
                    )
                };
                let expr = botfleet_config::promql::parse(&rule.expr)
                    .map_err(|e| format!("{}: not valid PromQL: {}", at(), e.trim()))?;
                promql::check(&expr).map_err(|e| format!("{}: {e}", at()))?;
                for (name, text) in rule.annotations.iter().chain(&rule.labels) {
                    check_template(text).map_err(|e| format!("{}: {name}: {e}", at()))?;
                }
                rules.push(Rule {
                    group: group.name.clone(),
                    group_labels: group.labels.clone(),
                    rule: rule.clone(),
                    expr,
                    state: promql::State::default(),
                    alerts: HashMap::new(),
                    last_seen: HashMap::new(),
                    error: None,
                });
            }
        }
        Ok(Engine {
            rules,
            history: std::collections::VecDeque::new(),
        })
    }

    /// Rules loaded.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Evaluates every rule at `t` (Unix seconds) and moves the alerts'
    /// states on.
    pub fn eval(&mut self, store: &Store, t: i64) {
        let before: HashMap<BTreeMap<String, String>, State> = self
            .alerts()
            .into_iter()
            .map(|a| (a.labels, a.state))
            .collect();
        for rule in &mut self.rules {
            rule.eval(store, t);
        }
        let after = self.alerts();
        let mut changes: Vec<Transition> = after
            .iter()
            .filter(|a| before.get(&a.labels) != Some(&a.state))
            .map(|a| Transition {
                t,
                labels: a.labels.clone(),
                from: before.get(&a.labels).copied(),
                to: Some(a.state),
            })
            .collect();
        for (labels, state) in before {
            if state != State::Resolved && !after.iter().any(|a| a.labels == labels) {
                changes.push(Transition {
                    t,
                    labels,
                    from: Some(state),
                    to: None,
                });
            }
        }
        for change in changes {
            if self.history.len() == HISTORY {
                self.history.pop_front();
            }
            self.history.push_back(change);
        }
    }

    /// The last [`HISTORY`] changes of state, oldest first.
    pub fn history(&self) -> Vec<Transition> {
        self.history.iter().cloned().collect()
    }

    /// The alerts pending, firing, and resolved within [`RESOLVED_KEPT`],
    /// sorted by name and labels.
    pub fn alerts(&self) -> Vec<Alert> {
        let mut out: Vec<Alert> = self
            .rules
            .iter()
            .flat_map(|r| r.alerts.values().cloned())
            .collect();
        out.sort_by(|a, b| a.labels.cmp(&b.labels));
        out
    }

    /// Every rule with its health.
    pub fn rules(&self) -> Vec<RuleStatus> {
        self.rules
            .iter()
            .map(|r| RuleStatus {
                group: r.group.clone(),
                alert: r.rule.alert.clone(),
                expr: r.rule.expr.clone(),
                for_s: r.rule.for_.as_secs(),
                keep_firing_for_s: r.rule.keep_firing_for.as_secs(),
                origin: r.rule.origin.clone(),
                error: r.error.clone(),
                active: r
                    .alerts
                    .values()
                    .filter(|a| a.state != State::Resolved)
                    .count(),
            })
            .collect()
    }
}

impl Rule {
    fn eval(&mut self, store: &Store, t: i64) {
        let elements = match promql::eval(store, &self.expr, t, &mut self.state) {
            Ok(Value::Vector(v)) => {
                self.error = None;
                v
            }
            Ok(Value::Scalar(v)) => {
                self.error = None;
                vec![promql::Sample {
                    labels: Vec::new(),
                    value: v,
                }]
            }
            Ok(_) => {
                self.error = Some("the expression is not an instant vector".to_owned());
                return;
            }
            Err(e) => {
                tracing::warn!(alert = %self.rule.alert, origin = %self.rule.origin, error = %e, "an alert rule failed to evaluate");
                self.error = Some(e);
                return;
            }
        };
        let for_ = secs(self.rule.for_);
        let keep = secs(self.rule.keep_firing_for);
        let mut present = Vec::new();
        for element in elements {
            let mut labels: BTreeMap<String, String> = element
                .labels
                .iter()
                .filter(|(k, _)| k != "__name__")
                .cloned()
                .collect();
            let data = (labels.clone(), element.value);
            for (k, v) in self.group_labels.iter().chain(&self.rule.labels) {
                labels.insert(k.clone(), template(v, &data.0, data.1));
            }
            labels.insert("alertname".to_owned(), self.rule.alert.clone());
            let key: Labels = labels.clone().into_iter().collect();
            let annotations = self
                .rule
                .annotations
                .iter()
                .map(|(k, v)| (k.clone(), template(v, &data.0, data.1)))
                .collect();
            self.last_seen.insert(key.clone(), t);
            present.push(key.clone());
            let alert = self.alerts.entry(key).or_insert_with(|| Alert {
                labels,
                annotations: BTreeMap::new(),
                state: State::Pending,
                value: element.value,
                active_at: t,
                fired_at: None,
                resolved_at: None,
                group: self.group.clone(),
            });
            if alert.state == State::Resolved {
                // It came back: a new alert.
                *alert = Alert {
                    state: State::Pending,
                    active_at: t,
                    fired_at: None,
                    resolved_at: None,
                    ..alert.clone()
                };
            }
            alert.value = element.value;
            alert.annotations = annotations;
            if alert.state == State::Pending && t - alert.active_at >= for_ {
                alert.state = State::Firing;
                alert.fired_at = Some(t);
            }
        }
        let last_seen = &self.last_seen;
        self.alerts.retain(|key, alert| {
            if present.contains(key) {
                return true;
            }
            match alert.state {
                State::Pending => false,
                State::Firing => {
                    let seen = last_seen.get(key).copied().unwrap_or(t);
                    if keep > 0 && t - seen < keep {
                        return true;
                    }
                    alert.state = State::Resolved;
                    alert.resolved_at = Some(t);
                    true
                }
                State::Resolved => t - alert.resolved_at.unwrap_or(t) < RESOLVED_KEPT,
            }
        });
        let alerts = &self.alerts;
        self.last_seen.retain(|key, _| alerts.contains_key(key));
    }
}

fn secs(d: Duration) -> i64 {
    d.as_secs() as i64
}

/// Fills `{{ $labels.NAME }}`, `{{ $value }}` and their pipes in `text`.
pub fn template(text: &str, labels: &BTreeMap<String, String>, value: f64) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(open) = rest.find("{{") {
        out.push_str(&rest[..open]);
        let Some(close) = rest[open..].find("}}") else {
            out.push_str(&rest[open..]);
            return out;
        };
        let inner = &rest[open + 2..open + close];
        out.push_str(&action(inner, labels, value).unwrap_or_default());
        rest = &rest[open + close + 2..];
    }
    out.push_str(rest);
    out
}

/// Checks that every `{{ }}` of `text` is one [`template`] fills.
fn check_template(text: &str) -> Result<(), String> {
    let mut rest = text;
    while let Some(open) = rest.find("{{") {
        let Some(close) = rest[open..].find("}}") else {
            return Err(format!("`{{{{` without `}}}}` in {text:?}"));
        };
        let inner = &rest[open + 2..open + close];
        action(inner, &BTreeMap::new(), 0.0).ok_or_else(|| {
            format!(
                "`{{{{{inner}}}}}` is not a template botfleet fills: use {{{{ $labels.NAME }}}} or {{{{ $value }}}}, optionally | humanize, humanizePercentage or humanizeDuration"
            )
        })?;
        rest = &rest[open + close + 2..];
    }
    Ok(())
}

fn action(inner: &str, labels: &BTreeMap<String, String>, value: f64) -> Option<String> {
    let mut parts = inner.split('|').map(str::trim);
    let head = parts.next()?;
    let pipe = parts.next();
    if parts.next().is_some() {
        return None;
    }
    if let Some(name) = head.strip_prefix("$labels.") {
        if pipe.is_some() || name.is_empty() {
            return None;
        }
        return Some(labels.get(name).cloned().unwrap_or_default());
    }
    if head != "$value" {
        return None;
    }
    Some(match pipe {
        None => crate::expo::float(value),
        Some("humanize") => humanize(value),
        Some("humanizePercentage") => format!("{}%", humanize(value * 100.0)),
        Some("humanizeDuration") => humanize_duration(value),
        Some(_) => return None,
    })
}

/// 1234567 → `1.235M`, 0.0042 → `4.2m`.
fn humanize(v: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return crate::expo::float(v);
    }
    const UP: [&str; 6] = ["k", "M", "G", "T", "P", "E"];
    const DOWN: [&str; 4] = ["m", "u", "n", "p"];
    let (mut x, mut unit) = (v, "");
    if v.abs() >= 1000.0 {
        for u in UP {
            if x.abs() < 1000.0 {
                break;
            }
            x /= 1000.0;
            unit = u;
        }
    } else if v.abs() < 1.0 {
        for u in DOWN {
            if x.abs() >= 1.0 {
                break;
            }
            x *= 1000.0;
            unit = u;
        }
    }
    // Four significant digits, as Go's %.4g.
    let decimals = (3 - x.abs().log10().floor() as i32).clamp(0, 3) as usize;
    let text = format!("{x:.decimals$}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    format!("{text}{unit}")
}

/// 3725 → `1h 2m 5s`.
fn humanize_duration(v: f64) -> String {
    if !v.is_finite() {
        return crate::expo::float(v);
    }
    if v.abs() < 1.0 {
        return format!("{}ms", (v * 1000.0).round());
    }
    let total = v.abs().round() as u64;
    let (d, h, m, s) = (
        total / 86_400,
        total / 3600 % 24,
        total / 60 % 60,
        total % 60,
    );
    let mut parts = Vec::new();
    for (n, unit) in [(d, "d"), (h, "h"), (m, "m"), (s, "s")] {
        if n > 0 {
            parts.push(format!("{n}{unit}"));
        }
    }
    let sign = if v < 0.0 { "-" } else { "" };
    format!("{sign}{}", parts.join(" "))
}

/// The built-in rules for a bot fleet (`[alerts].default_rules`).
pub fn default_rules() -> RuleGroup {
    let m = |n: u64| Duration::from_secs(60 * n);
    let s = Duration::from_secs;
    let rules = vec![
        AlertRule::new("BotFailed", "max by (bot) (botfleet_bot_failed) == 1")
            .label("severity", "critical")
            .annotation("summary", "Bot {{ $labels.bot }} has failed")
            .annotation("description", "{{ $labels.bot }}'s workers kept crashing past its restart intensity; the supervisor retries it later. `botfleet logs {{ $labels.bot }}` shows why."),
        AlertRule::new(
            "WorkerRestartLoop",
            "sum by (bot) (increase(botfleet_worker_restarts_total[10m])) > 5",
        )
        .label("severity", "warning")
        .annotation("summary", "Workers of {{ $labels.bot }} restart in a loop")
        .annotation("description", "{{ $value | humanize }} restarts of {{ $labels.bot }}'s workers in 10 minutes."),
        AlertRule::new(
            "TelegramThrottled",
            "sum by (bot) (increase(botfleet_telegram_429_total[5m])) > 0",
        )
        .keep_firing_for(m(5))
        .label("severity", "warning")
        .annotation("summary", "Telegram answers {{ $labels.bot }} with 429")
        .annotation("description", "{{ $value | humanize }} sends of {{ $labels.bot }} were refused with 429 Too Many Requests in 5 minutes: the limits in [telegram.limits] are above what Telegram allows this token."),
        AlertRule::new(
            "DeadLetters",
            "sum by (bot) (increase(botfleet_dead_letters_total[15m])) > 0",
        )
        .label("severity", "warning")
        .annotation("summary", "Updates of {{ $labels.bot }} became dead letters")
        .annotation("description", "{{ $value | humanize }} updates of {{ $labels.bot }} failed every attempt in 15 minutes; `botfleet dead-letters list {{ $labels.bot }}` shows them."),
        AlertRule::new("DatabasePoolSaturated", "max by (bot) (botfleet_db_pool_waiters) > 0")
            .for_(m(1))
            .label("severity", "warning")
            .annotation("summary", "{{ $labels.bot }} waits for database connections")
            .annotation("description", "{{ $value | humanize }} callers of {{ $labels.bot }} wait for a connection from a full pool."),
        AlertRule::new(
            "DatabaseAcquireSlow",
            "histogram_quantile(0.99, sum by (bot, le) (rate(botfleet_db_acquire_wait_seconds_bucket[5m]))) > 0.1",
        )
        .for_(m(2))
        .label("severity", "warning")
        .annotation("summary", "Getting a connection takes {{ $value | humanizeDuration }} for {{ $labels.bot }}")
        .annotation("description", "The p99 wait for a pooled connection of {{ $labels.bot }} is over 100 ms: the pool is too small for its load, or queries hold connections too long."),
        AlertRule::new(
            "CacheHitRatioFalling",
            "(sum by (bot) (rate(botfleet_cache_hits_total[5m])) / (sum by (bot) (rate(botfleet_cache_hits_total[5m])) + sum by (bot) (rate(botfleet_cache_misses_total[5m])))) < (sum by (bot) (rate(botfleet_cache_hits_total[1h])) / (sum by (bot) (rate(botfleet_cache_hits_total[1h])) + sum by (bot) (rate(botfleet_cache_misses_total[1h])))) - 0.2 and sum by (bot) (rate(botfleet_cache_misses_total[5m])) > 1",
        )
        .for_(m(5))
        .label("severity", "warning")
        .annotation("summary", "The cache hit ratio of {{ $labels.bot }} fell to {{ $value | humanizePercentage }}")
        .annotation("description", "Over the last 5 minutes {{ $labels.bot }}'s cache answered {{ $value | humanizePercentage }} of reads, 20 points below its last hour."),
        AlertRule::new(
            "BotSlow",
            "histogram_quantile(0.99, sum by (bot, le) (rate(botfleet_update_handling_seconds_bucket[5m]))) > on (bot) max by (bot) (botfleet_bot_target_latency_seconds)",
        )
        .for_(m(5))
        .label("severity", "warning")
        .annotation("summary", "p99 of {{ $labels.bot }} is {{ $value | humanizeDuration }}, over its target")
        .annotation("description", "Updates of {{ $labels.bot }} take {{ $value | humanizeDuration }} at the 99th percentile, more than its scaling.target_latency."),
        AlertRule::new(
            "QueueGrowing",
            "deriv(botfleet_queue_depth[10m]) > 1 and botfleet_queue_depth > 100",
        )
        .for_(m(5))
        .label("severity", "warning")
        .annotation("summary", "The queue of {{ $labels.bot }} grows")
        .annotation("description", "{{ $labels.bot }}'s queue grows by {{ $value | humanize }} updates a second: its workers do not keep up."),
        AlertRule::new(
            "JournalGrowing",
            "deriv(botfleet_journal_depth[10m]) > 1 and botfleet_journal_depth > 1000",
        )
        .for_(m(5))
        .label("severity", "warning")
        .annotation("summary", "The journal of {{ $labels.bot }} grows")
        .annotation("description", "Unacked updates of {{ $labels.bot }} grow by {{ $value | humanize }} a second; ingest waits at 10,000."),
        AlertRule::new(
            "PostgresConnectionsExhaustedSoon",
            "predict_linear(botfleet_postgres_backends[30m], 3600) > botfleet_postgres_max_connections",
        )
        .for_(m(5))
        .label("severity", "warning")
        .annotation("summary", "PostgreSQL runs out of connections within the hour")
        .annotation("description", "At the trend of the last 30 minutes PostgreSQL will have {{ $value | humanize }} connections in an hour, more than max_connections."),
        AlertRule::new(
            "MemoryExhaustedSoon",
            "predict_linear(botfleet_host_memory_available_bytes[1h], 4 * 3600) < 0",
        )
        .for_(m(5))
        .label("severity", "warning")
        .annotation("summary", "The host runs out of memory within four hours")
        .annotation("description", "At the trend of the last hour, available memory reaches zero within four hours."),
        AlertRule::new("PostgresDown", "botfleet_postgres_up == 0")
            .for_(s(30))
            .label("severity", "critical")
            .annotation("summary", "PostgreSQL does not answer the monitor")
            .annotation("description", "The monitor's polls of PostgreSQL fail; updates that need it are retried until it is back."),
        AlertRule::new("RedisDown", "botfleet_redis_up == 0")
            .for_(s(30))
            .label("severity", "critical")
            .annotation("summary", "Redis does not answer the monitor")
            .annotation("description", "The monitor's polls of Redis fail; caches fall back to their first tier."),
        AlertRule::new(
            "UpdateRateAnomalous",
            "anomalous(sum by (bot) (rate(botfleet_updates_received_total[1m])), 1, \"both\")",
        )
        .for_(m(2))
        .label("severity", "info")
        .annotation("summary", "The update rate of {{ $labels.bot }} is unusual: {{ $value | humanize }}/s")
        .annotation("description", "{{ $labels.bot }} receives {{ $value | humanize }} updates a second, far from its recent baseline."),
        AlertRule::new(
            "LatencyAnomalous",
            "anomalous(histogram_quantile(0.99, sum by (bot, le) (rate(botfleet_update_handling_seconds_bucket[1m]))), 0.05, \"up\")",
        )
        .for_(m(2))
        .label("severity", "info")
        .annotation("summary", "p99 of {{ $labels.bot }} jumped to {{ $value | humanizeDuration }}")
        .annotation("description", "{{ $labels.bot }}'s p99 is far above its recent baseline."),
    ];
    RuleGroup::new(DEFAULT_GROUP, rules)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_fill_labels_values_and_pipes_and_reject_the_rest() {
        let labels: BTreeMap<String, String> = [("bot".to_owned(), "dating".to_owned())].into();
        assert_eq!(
            template("{{ $labels.bot }} at {{$value}}", &labels, 2.5),
            "dating at 2.5"
        );
        assert_eq!(
            template("{{ $value | humanize }}", &labels, 1_234_567.0),
            "1.235M"
        );
        assert_eq!(template("{{ $value | humanize }}", &labels, 0.0042), "4.2m");
        assert_eq!(
            template("{{ $value | humanizePercentage }}", &labels, 0.25),
            "25%"
        );
        assert_eq!(
            template("{{ $value | humanizeDuration }}", &labels, 3725.0),
            "1h 2m 5s"
        );
        assert_eq!(
            template("{{ $value | humanizeDuration }}", &labels, 0.25),
            "250ms"
        );
        assert!(check_template("{{ $labels.bot }} {{ $value | humanize }}").is_ok());
        assert!(check_template("{{ .Labels.bot }}").is_err());
        assert!(check_template("{{ $value | printf \"%f\" }}").is_err());
        assert!(check_template("{{ $value").is_err());
    }

    fn gauge(store: &Store, t: i64, v: Option<f64>) {
        use crate::registry::{Series, Snapshot, Value};
        let series = v
            .map(|v| Series {
                name: "queue".to_owned(),
                labels: vec![("bot".to_owned(), "a".to_owned())],
                value: Value::Gauge(v),
            })
            .into_iter()
            .collect();
        store.record(t, &Snapshot { series });
    }

    const T0: i64 = 1_796_645_040;

    fn state(engine: &Engine) -> Vec<(State, Option<i64>, Option<i64>)> {
        engine
            .alerts()
            .iter()
            .map(|a| {
                (
                    a.state,
                    a.fired_at.map(|t| t - T0),
                    a.resolved_at.map(|t| t - T0),
                )
            })
            .collect()
    }

    #[test]
    fn pending_then_firing_after_for_then_resolved_after_keep_firing_for() {
        let rule = AlertRule::new("Backlog", "queue > 10")
            .for_(Duration::from_secs(30))
            .keep_firing_for(Duration::from_secs(20))
            .label("severity", "page")
            .annotation("summary", "{{ $labels.bot }} has {{ $value }} queued");
        let mut engine = Engine::new(&[RuleGroup::new("g", vec![rule])]).unwrap();
        let store = Store::new(10);
        // Paused time: the engine sees only the seconds it is given, every
        // 10 s as at its default interval.
        let step = |engine: &mut Engine, t: i64, v: f64| {
            gauge(&store, T0 + t, Some(v));
            engine.eval(&store, T0 + t);
            state(engine)
        };
        assert_eq!(step(&mut engine, 0, 5.0), []);
        assert_eq!(step(&mut engine, 10, 50.0), [(State::Pending, None, None)]);
        assert_eq!(step(&mut engine, 20, 50.0), [(State::Pending, None, None)]);
        assert_eq!(step(&mut engine, 30, 50.0), [(State::Pending, None, None)]);
        assert_eq!(
            step(&mut engine, 40, 60.0),
            [(State::Firing, Some(40), None)],
            "30 s after 10"
        );
        // The condition ends at 50: keeps firing 20 s after it was last true.
        assert_eq!(
            step(&mut engine, 50, 1.0),
            [(State::Firing, Some(40), None)]
        );
        assert_eq!(
            step(&mut engine, 55, 1.0),
            [(State::Firing, Some(40), None)]
        );
        assert_eq!(
            step(&mut engine, 60, 1.0),
            [(State::Resolved, Some(40), Some(60))]
        );
        let alert = &engine.alerts()[0];
        assert_eq!(alert.labels["alertname"], "Backlog");
        assert_eq!(alert.labels["severity"], "page");
        assert_eq!(alert.labels["bot"], "a");
        assert!(!alert.labels.contains_key("__name__"));
        assert_eq!(alert.annotations["summary"], "a has 60 queued");
        // It comes back: a new alert, pending again from its new start.
        assert_eq!(step(&mut engine, 70, 99.0), [(State::Pending, None, None)]);
        assert_eq!(engine.alerts()[0].active_at, T0 + 70);
        // A pending alert whose condition ends is dropped without firing.
        assert_eq!(step(&mut engine, 80, 1.0), []);
        // Every change is in the history, in order.
        let changes: Vec<(i64, Option<State>, Option<State>)> = engine
            .history()
            .iter()
            .map(|c| (c.t - T0, c.from, c.to))
            .collect();
        assert_eq!(
            changes,
            [
                (10, None, Some(State::Pending)),
                (40, Some(State::Pending), Some(State::Firing)),
                (60, Some(State::Firing), Some(State::Resolved)),
                (70, Some(State::Resolved), Some(State::Pending)),
                (80, Some(State::Pending), None),
            ]
        );
        // Resolved alerts are listed for RESOLVED_KEPT seconds only.
        for t in [90, 100, 110, 120, 130] {
            step(&mut engine, t, 50.0);
        }
        assert_eq!(step(&mut engine, 140, 0.0)[0].0, State::Firing);
        assert_eq!(step(&mut engine, 150, 0.0)[0].0, State::Resolved);
        gauge(&store, T0 + 150 + RESOLVED_KEPT, Some(0.0));
        engine.eval(&store, T0 + 150 + RESOLVED_KEPT);
        assert_eq!(state(&engine), []);
    }

    #[test]
    fn without_for_an_alert_fires_at_once_and_stale_series_end_it() {
        let rule = AlertRule::new("Backlog", "queue > 10");
        let mut engine = Engine::new(&[RuleGroup::new("g", vec![rule])]).unwrap();
        let store = Store::new(10);
        gauge(&store, T0, Some(50.0));
        engine.eval(&store, T0);
        assert_eq!(state(&engine), [(State::Firing, Some(0), None)]);
        // No sample for five minutes: the series is stale, the alert ends.
        gauge(&store, T0 + 301, None);
        engine.eval(&store, T0 + 301);
        assert_eq!(state(&engine), [(State::Resolved, Some(0), Some(301))]);
    }

    #[test]
    fn a_rule_that_cannot_be_evaluated_is_refused_with_its_origin() {
        let rule = AlertRule::new("Bad", "label_join(queue, \"a\", \",\", \"c\")");
        let e = Engine::new(&[RuleGroup::new("g", vec![rule])]).unwrap_err();
        assert!(
            e.contains("built in (alert Bad, group g)") && e.contains("label_join"),
            "{e}"
        );
        let rule = AlertRule::new("Bad", "queue > 1").annotation("summary", "{{ .Value }}");
        let e = Engine::new(&[RuleGroup::new("g", vec![rule])]).unwrap_err();
        assert!(e.contains("summary"), "{e}");
    }

    #[test]
    fn the_default_rules_load() {
        let engine = Engine::new(&[default_rules()]).unwrap();
        assert_eq!(engine.len(), default_rules().rules.len());
    }
}
