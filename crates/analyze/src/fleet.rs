//! The fleet's analyzer (`botfleet analyze`, `/performance/report`): where
//! an update's time goes, per bot, from the metrics the supervisor and its
//! workers report; how saturated the host and the processes are (the USE
//! method); the state of each dependency; and the bottlenecks, ranked, each
//! with the figures that prove it and the setting to change.
//!
//! It reads the monitor's [`Store`] with PromQL, over a window (5 minutes
//! by default). The kinds of finding and their thresholds are
//! docs/analyze.md's; [`KINDS`] lists them.

use std::collections::BTreeMap;

use botfleet_monitor::promql::{self, Sample, Value};
use botfleet_monitor::store::Store;
use serde::Serialize;

/// Every kind of finding, in docs/analyze.md's order.
pub const KINDS: &[&str] = &[
    "db.down",
    "cache.redis_down",
    "host.memory",
    "host.cpu",
    "db.missing_index",
    "db.pool_exhausted",
    "db.slow_query",
    "cache.too_small",
    "telegram.rate_limited",
    "telegram.slow_api",
    "ipc",
    "handler.errors",
    "workers.capped_by_budget",
    "workers.saturated",
    "healthy",
];

/// A part of an update's time is a bottleneck when it takes at least this
/// share of the time it is part of...
const SHARE: f64 = 0.2;
/// ...and at least this much per update, seconds.
const FLOOR_S: f64 = 0.005;
/// A query is slow from this mean time, seconds.
const SLOW_QUERY_S: f64 = 0.01;
/// A Bot API call is slow from this mean time, seconds.
const SLOW_API_S: f64 = 0.1;
/// Sends at this share of the token's allowance mean the limit binds.
const ALLOWANCE_USED: f64 = 0.8;
/// Handler failures from this share of the updates.
const FAILED_SHARE: f64 = 0.01;
/// The host's CPU is saturated from this busy share...
const HOST_BUSY: f64 = 0.9;
/// ...when the fleet's processes use at least this share of it.
const FLEET_SHARE: f64 = 0.5;
/// Memory is short under this share available...
const MEMORY_FREE: f64 = 0.1;
/// ...or when, at the fleet's growth, it runs out within this, seconds.
const MEMORY_HORIZON_S: f64 = 3600.0;
/// Growth below this (bytes/s) is noise.
const MEMORY_GROWTH: f64 = 1024.0 * 1024.0;
/// An L1 hit ratio under this, full and evicting, is a cache too small.
const HIT_RATIO: f64 = 0.8;

/// What the analyzer reads.
#[derive(Debug)]
pub struct Input<'a> {
    /// The monitor's store.
    pub store: &'a Store,
    /// Now, Unix seconds.
    pub now: i64,
    /// The window looked at, seconds.
    pub window_s: u64,
    /// What `db advise` found, when it was asked (PostgreSQL).
    pub advice: Option<Advice>,
}

/// The index advisor's findings, as the analyzer needs them (the caller
/// runs `botfleet_db::advise`).
#[derive(Clone, Debug, Default, Serialize)]
pub struct Advice {
    /// Indexes the planner confirmed.
    pub indexes: Vec<IndexAdvice>,
    /// Large tables read mostly by sequential scans.
    pub seq_scanned: Vec<SeqScanned>,
    /// What the advisor could not do (no `pg_stat_statements`...).
    pub notes: Vec<String>,
}

/// One index to create.
#[derive(Clone, Debug, Serialize)]
pub struct IndexAdvice {
    /// The table.
    pub table: String,
    /// `CREATE INDEX CONCURRENTLY ...`.
    pub create: String,
    /// The query it serves.
    pub query: String,
    /// The planner's cost without it...
    pub cost_before: f64,
    /// ...and with it.
    pub cost_after: f64,
    /// The table's rows.
    pub table_rows: f64,
}

/// A large table read by sequential scans.
#[derive(Clone, Debug, Serialize)]
pub struct SeqScanned {
    /// The table.
    pub table: String,
    /// Its rows.
    pub rows: f64,
    /// Sequential scans of it.
    pub seq_scans: i64,
    /// Index scans of it.
    pub index_scans: i64,
}

/// The analysis (the JSON of `botfleet analyze --json`).
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// Nothing binds.
    pub healthy: bool,
    /// The window, seconds.
    pub window_s: u64,
    /// The bottlenecks, the worst first (`healthy` alone when none).
    pub findings: Vec<Finding>,
    /// Where each bot's updates spend their time.
    pub bots: Vec<Breakdown>,
    /// The host and the processes.
    pub saturation: Saturation,
    /// PostgreSQL and Redis.
    pub dependencies: Dependencies,
    /// What the analyzer could not see.
    pub notes: Vec<String>,
}

/// One bottleneck.
#[derive(Clone, Debug, Serialize)]
pub struct Finding {
    /// One of [`KINDS`].
    pub kind: &'static str,
    /// 1 for the worst.
    pub rank: u32,
    /// The bot it is about, if one.
    pub bot: Option<String>,
    /// One line: what binds.
    pub summary: String,
    /// The figures that prove it.
    pub evidence: Vec<Evidence>,
    /// What to change.
    pub fix: String,
    #[serde(skip)]
    tier: u8,
    #[serde(skip)]
    score: f64,
}

/// One figure behind a finding.
#[derive(Clone, Debug, Serialize)]
pub struct Evidence {
    /// The series (or expression) it comes from.
    pub series: String,
    /// Its value, in the series' unit.
    pub value: f64,
    /// The threshold it crossed.
    pub threshold: f64,
    /// What the value is, for people.
    pub what: String,
}

/// Where one bot's updates spend their time, seconds per update (means over
/// the window).
#[derive(Clone, Debug, Default, Serialize)]
pub struct Breakdown {
    /// The bot.
    pub bot: String,
    /// Updates acked per second.
    pub updates_per_s: f64,
    /// Waiting for a worker (in the supervisor's queue).
    pub queue_s: f64,
    /// From dispatch to ack.
    pub handling_s: f64,
    /// Of it, in the handler (the workers' own account).
    pub handler_s: f64,
    /// Of it, between the supervisor and the handler (sockets, frames).
    pub ipc_s: f64,
    /// CPU of the bot's workers per update.
    pub cpu_s: f64,
    /// Waiting for a database connection.
    pub db_acquire_s: f64,
    /// Running queries.
    pub db_query_s: f64,
    /// Redis round trips of the caches.
    pub cache_l2_s: f64,
    /// The caches' loaders (their queries included).
    pub cache_load_s: f64,
    /// Waiting for Telegram's limits.
    pub telegram_limiter_s: f64,
    /// Telegram's answers.
    pub telegram_api_s: f64,
    /// Handler time not accounted for by the parts above.
    pub other_s: f64,
    /// The queries, the most time per update first.
    pub queries: Vec<QueryTime>,
}

/// One query shape's time.
#[derive(Clone, Debug, Serialize)]
pub struct QueryTime {
    /// The fingerprint id (`botfleet db queries` gives its text).
    pub query: String,
    /// Seconds per update.
    pub per_update_s: f64,
    /// Mean seconds per call.
    pub mean_s: f64,
    /// Calls per second.
    pub calls_per_s: f64,
}

/// The USE method's saturation figures.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Saturation {
    /// The host's CPUs.
    pub cpus: Option<f64>,
    /// Their busy share, 0–1.
    pub host_cpu_busy: Option<f64>,
    /// CPUs the fleet's processes use (supervisor and workers).
    pub fleet_cpus: Option<f64>,
    /// Memory available, share of the total.
    pub memory_available: Option<f64>,
    /// How fast the workers' memory grows, bytes/s.
    pub worker_memory_growth: Option<f64>,
    /// The supervisor's open descriptors.
    pub supervisor_fds: Option<f64>,
    /// The most a worker has open.
    pub worker_fds_max: Option<f64>,
    /// The busiest worker's CPU, cores.
    pub busiest_worker_cpus: Option<f64>,
}

/// The dependencies' state.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Dependencies {
    /// PostgreSQL answered the monitor's last poll (`None`: not polled).
    pub postgres_up: Option<bool>,
    /// Redis answered it.
    pub redis_up: Option<bool>,
    /// Workers whose cache sees Redis unavailable.
    pub redis_unavailable_to_workers: f64,
    /// Failed connection attempts to the database, per second.
    pub db_connect_errors_per_s: f64,
}

/// The evaluation context: the store, the time and the window.
struct Q<'a> {
    store: &'a Store,
    now: i64,
    window: String,
}

impl Q<'_> {
    /// `text` with `$w` replaced by the window, evaluated now; nothing when
    /// it fails (a series that is not there yet).
    fn vector(&self, text: &str) -> Vec<Sample> {
        let text = text.replace("$w", &self.window);
        let Ok(expr) = botfleet_config::promql::parse(&text) else {
            debug_assert!(false, "the analyzer's own query does not parse: {text}");
            return Vec::new();
        };
        match promql::eval(self.store, &expr, self.now, &mut promql::State::default()) {
            Ok(Value::Vector(v)) => v.into_iter().filter(|s| s.value.is_finite()).collect(),
            Ok(Value::Scalar(x)) if x.is_finite() => vec![Sample {
                labels: Vec::new(),
                value: x,
            }],
            _ => Vec::new(),
        }
    }

    /// The value of each series by the value of its label `label`.
    fn by(&self, label: &str, text: &str) -> BTreeMap<String, f64> {
        self.vector(text)
            .into_iter()
            .filter_map(|s| label_of(&s, label).map(|l| (l.to_owned(), s.value)))
            .collect()
    }

    /// The one value of `text` (the first series').
    fn one(&self, text: &str) -> Option<f64> {
        self.vector(text).first().map(|s| s.value)
    }
}

fn label_of<'s>(s: &'s Sample, name: &str) -> Option<&'s str> {
    s.labels
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// Seconds as people read them.
pub fn human_s(s: f64) -> String {
    if s >= 1.0 {
        format!("{s:.2} s")
    } else if s >= 0.001 {
        format!("{:.1} ms", s * 1e3)
    } else {
        format!("{:.0} µs", s * 1e6)
    }
}

/// `n word`, or `n words`.
fn count(n: f64, word: &str) -> String {
    if n == 1.0 {
        format!("1 {word}")
    } else {
        format!("{n:.0} {word}s")
    }
}

fn pct(x: f64) -> String {
    format!("{:.0} %", x * 100.0)
}

/// Analyzes the window before `input.now`.
pub fn analyze(input: &Input<'_>) -> Report {
    let q = Q {
        store: input.store,
        now: input.now,
        window: format!("{}s", input.window_s.max(2)),
    };
    let mut notes = Vec::new();
    let bots = breakdowns(&q);
    let saturation = saturation(&q);
    let dependencies = dependencies(&q);
    let mut findings = Vec::new();
    outages(&q, &dependencies, &mut findings);
    host(&q, &saturation, &bots, &mut findings);
    for b in &bots {
        per_bot(&q, b, input.advice.as_ref(), &mut findings);
    }
    caches(&q, &mut findings);
    capacity(&q, &bots, &mut findings);
    if bots.iter().all(|b| b.updates_per_s == 0.0) {
        notes.push(format!(
            "no updates were handled in the last {}: where the time goes is unknown",
            q.window
        ));
    }
    if let Some(advice) = &input.advice {
        notes.extend(advice.notes.iter().cloned());
    }
    findings.sort_by(|a, b| {
        a.tier
            .cmp(&b.tier)
            .then(b.score.total_cmp(&a.score))
            .then(a.kind.cmp(b.kind))
    });
    let healthy = findings.is_empty();
    if healthy {
        findings.push(Finding {
            kind: "healthy",
            rank: 1,
            bot: None,
            summary: "nothing binds: every part of an update's time and every resource is under its threshold".to_owned(),
            evidence: bots
                .iter()
                .map(|b| Evidence {
                    series: format!("botfleet_update_handling_seconds{{bot=\"{}\"}}", b.bot),
                    value: b.queue_s + b.handling_s,
                    threshold: 0.0,
                    what: format!(
                        "{}: {:.1} updates/s, {} per update from arrival to ack",
                        b.bot,
                        b.updates_per_s,
                        human_s(b.queue_s + b.handling_s)
                    ),
                })
                .collect(),
            fix: "nothing to change".to_owned(),
            tier: 9,
            score: 0.0,
        });
    }
    for (i, f) in findings.iter_mut().enumerate() {
        f.rank = i as u32 + 1;
    }
    Report {
        healthy,
        window_s: input.window_s,
        findings,
        bots,
        saturation,
        dependencies,
        notes,
    }
}

/// Whether the database's share of the time is large enough that the
/// index advisor should look (the caller then runs it and analyzes
/// again with its advice); not while the database is down.
pub fn wants_advice(report: &Report) -> bool {
    let down = report.findings.iter().any(|f| f.kind == "db.down");
    !down
        && report
            .findings
            .iter()
            .any(|f| f.kind == "db.slow_query" || f.kind == "db.pool_exhausted")
}

fn breakdowns(q: &Q<'_>) -> Vec<Breakdown> {
    let per = |text: &str| q.by("bot", text);
    let acked = per("sum by (bot) (rate(botfleet_updates_acked_total[$w]))");
    let received = per("sum by (bot) (rate(botfleet_updates_received_total[$w]))");
    let queue = per("sum by (bot) (avg_over_time(botfleet_queue_depth[$w]))");
    let handling = per(
        "sum by (bot) (rate(botfleet_update_handling_seconds_sum[$w])) / sum by (bot) (rate(botfleet_update_handling_seconds_count[$w]))",
    );
    let handler = per("sum by (bot) (rate(botfleet_handler_seconds_total[$w]))");
    let cpu = per("sum by (bot) (rate(botfleet_worker_cpu_seconds_total[$w]))");
    let acquire = per("sum by (bot) (rate(botfleet_db_acquire_wait_seconds_sum[$w]))");
    let query = per("sum by (bot) (rate(botfleet_db_query_duration_seconds_sum[$w]))");
    let l2 = per("sum by (bot) (rate(botfleet_cache_l2_round_trip_seconds_sum[$w]))");
    let load = per("sum by (bot) (rate(botfleet_cache_load_duration_seconds_sum[$w]))");
    let limiter = per("sum by (bot) (rate(botfleet_telegram_limiter_wait_seconds_sum[$w]))");
    let api = per("sum by (bot) (rate(botfleet_telegram_call_duration_seconds_sum[$w]))");
    let queries =
        q.vector("sum by (bot, query) (rate(botfleet_db_query_duration_seconds_sum[$w]))");
    let calls =
        q.vector("sum by (bot, query) (rate(botfleet_db_query_duration_seconds_count[$w]))");
    let mut out = Vec::new();
    for (bot, &a) in &acked {
        let per_update = |m: &BTreeMap<String, f64>| {
            if a > 0.0 {
                m.get(bot).copied().unwrap_or(0.0) / a
            } else {
                0.0
            }
        };
        let mut b = Breakdown {
            bot: bot.clone(),
            updates_per_s: a,
            queue_s: match received.get(bot) {
                Some(&r) if r > 0.0 => queue.get(bot).copied().unwrap_or(0.0) / r,
                _ => 0.0,
            },
            handling_s: handling.get(bot).copied().unwrap_or(0.0),
            handler_s: per_update(&handler),
            cpu_s: per_update(&cpu),
            db_acquire_s: per_update(&acquire),
            db_query_s: per_update(&query),
            cache_l2_s: per_update(&l2),
            cache_load_s: per_update(&load),
            telegram_limiter_s: per_update(&limiter),
            telegram_api_s: per_update(&api),
            ..Breakdown::default()
        };
        b.ipc_s = (b.handling_s - b.handler_s).max(0.0);
        b.other_s = (b.handler_s
            - b.db_acquire_s
            - b.db_query_s
            - b.cache_l2_s
            - b.telegram_limiter_s
            - b.telegram_api_s)
            .max(0.0);
        for s in queries.iter().filter(|s| label_of(s, "bot") == Some(bot)) {
            let Some(id) = label_of(s, "query") else {
                continue;
            };
            let n = calls
                .iter()
                .find(|c| c.labels == s.labels)
                .map_or(0.0, |c| c.value);
            b.queries.push(QueryTime {
                query: id.to_owned(),
                per_update_s: if a > 0.0 { s.value / a } else { 0.0 },
                mean_s: if n > 0.0 { s.value / n } else { 0.0 },
                calls_per_s: n,
            });
        }
        b.queries
            .sort_by(|x, y| y.per_update_s.total_cmp(&x.per_update_s));
        b.queries.truncate(10);
        out.push(b);
    }
    out
}

fn saturation(q: &Q<'_>) -> Saturation {
    let cpus = q.one("max(botfleet_host_cpus)");
    let idle = q.one(
        "sum(rate(botfleet_host_cpu_seconds_total{mode=\"idle\"}[$w])) + sum(rate(botfleet_host_cpu_seconds_total{mode=\"iowait\"}[$w]))",
    );
    let fleet = q.one(
        "sum(rate(process_cpu_seconds_total[$w])) + sum(rate(botfleet_worker_cpu_seconds_total[$w]))",
    );
    let total = q.one("max(botfleet_host_memory_total_bytes)");
    let available = q.one("max(botfleet_host_memory_available_bytes)");
    Saturation {
        cpus,
        host_cpu_busy: match (cpus, idle) {
            (Some(c), Some(i)) if c > 0.0 => Some((1.0 - i / c).clamp(0.0, 1.0)),
            _ => None,
        },
        fleet_cpus: fleet,
        memory_available: match (total, available) {
            (Some(t), Some(a)) if t > 0.0 => Some(a / t),
            _ => None,
        },
        worker_memory_growth: q.one("sum(deriv(botfleet_worker_resident_memory_bytes[$w]))"),
        supervisor_fds: q.one("max(process_open_fds)"),
        worker_fds_max: q.one("max(botfleet_worker_open_fds)"),
        busiest_worker_cpus: q.one("max(rate(botfleet_worker_cpu_seconds_total[$w]))"),
    }
}

fn dependencies(q: &Q<'_>) -> Dependencies {
    Dependencies {
        postgres_up: q.one("max(botfleet_postgres_up)").map(|v| v > 0.0),
        redis_up: q.one("max(botfleet_redis_up)").map(|v| v > 0.0),
        redis_unavailable_to_workers: q
            .one("count(botfleet_cache_redis_available == 0)")
            .unwrap_or(0.0),
        db_connect_errors_per_s: q
            .one("sum(rate(botfleet_db_connect_errors_total[$w]))")
            .unwrap_or(0.0),
    }
}

#[expect(clippy::too_many_arguments, reason = "a finding is this many things")]
fn finding(
    kind: &'static str,
    tier: u8,
    score: f64,
    bot: Option<&str>,
    summary: String,
    evidence: Vec<Evidence>,
    fix: String,
    out: &mut Vec<Finding>,
) {
    out.push(Finding {
        kind,
        rank: 0,
        bot: bot.map(str::to_owned),
        summary,
        evidence,
        fix,
        tier,
        score,
    });
}

fn ev(series: impl Into<String>, value: f64, threshold: f64, what: impl Into<String>) -> Evidence {
    Evidence {
        series: series.into(),
        value,
        threshold,
        what: what.into(),
    }
}

fn outages(q: &Q<'_>, d: &Dependencies, out: &mut Vec<Finding>) {
    let connect_errors = q.by(
        "bot",
        "sum by (bot) (increase(botfleet_db_connect_errors_total[$w]))",
    );
    let failing: Vec<(&String, &f64)> = connect_errors.iter().filter(|(_, n)| **n >= 1.0).collect();
    if d.postgres_up == Some(false) || !failing.is_empty() {
        let mut evidence = Vec::new();
        if d.postgres_up == Some(false) {
            evidence.push(ev(
                "botfleet_postgres_up",
                0.0,
                1.0,
                "the monitor's last poll of PostgreSQL failed",
            ));
        }
        for (bot, n) in &failing {
            evidence.push(ev(
                format!(
                    "increase(botfleet_db_connect_errors_total{{bot=\"{bot}\"}}[{}])",
                    q.window
                ),
                **n,
                1.0,
                format!("{bot}'s workers failed to open a connection {n:.0} times"),
            ));
        }
        finding(
            "db.down",
            0,
            1.0,
            None,
            "the database does not answer".to_owned(),
            evidence,
            "start the database or restore the path to it (`botfleet doctor` checks database.url); meanwhile updates that need it are handed back and retried with backoff, none is lost".to_owned(),
            out,
        );
    }
    let errors = q
        .one("sum(rate(botfleet_cache_l2_unavailable_total[$w]))")
        .unwrap_or(0.0);
    if d.redis_up == Some(false) || d.redis_unavailable_to_workers > 0.0 || errors >= 0.1 {
        let mut evidence = Vec::new();
        if d.redis_up == Some(false) {
            evidence.push(ev(
                "botfleet_redis_up",
                0.0,
                1.0,
                "the monitor's last poll of Redis failed",
            ));
        }
        if d.redis_unavailable_to_workers > 0.0 {
            evidence.push(ev(
                "botfleet_cache_redis_available",
                d.redis_unavailable_to_workers,
                0.0,
                format!(
                    "{:.0} workers see Redis unavailable (their caches' breaker is open)",
                    d.redis_unavailable_to_workers
                ),
            ));
        }
        if errors >= 0.1 {
            evidence.push(ev(
                format!(
                    "sum(rate(botfleet_cache_l2_unavailable_total[{}]))",
                    q.window
                ),
                errors,
                0.1,
                format!("{errors:.1} Redis calls a second skipped or failed"),
            ));
        }
        finding(
            "cache.redis_down",
            0,
            0.9,
            None,
            "Redis does not answer: the caches run on L1 and the database alone".to_owned(),
            evidence,
            "start Redis or restore the path to it ([redis] url; `botfleet doctor` checks it); the caches fall back to L1 and their loaders meanwhile, so the database takes their reads".to_owned(),
            out,
        );
    }
}

fn host(q: &Q<'_>, s: &Saturation, bots: &[Breakdown], out: &mut Vec<Finding>) {
    if let (Some(busy), Some(fleet), Some(cpus)) = (s.host_cpu_busy, s.fleet_cpus, s.cpus) {
        if busy >= HOST_BUSY && fleet >= FLEET_SHARE * cpus {
            let mut evidence = vec![
                ev(
                    "botfleet_host_cpu_seconds_total",
                    busy,
                    HOST_BUSY,
                    format!("the host's {cpus:.0} CPUs are {} busy", pct(busy)),
                ),
                ev(
                    "process_cpu_seconds_total + botfleet_worker_cpu_seconds_total",
                    fleet,
                    FLEET_SHARE * cpus,
                    format!("the fleet's processes use {fleet:.2} of them"),
                ),
            ];
            let heaviest = bots
                .iter()
                .max_by(|a, b| (a.cpu_s * a.updates_per_s).total_cmp(&(b.cpu_s * b.updates_per_s)));
            if let Some(b) = heaviest {
                evidence.push(ev(
                    format!(
                        "rate(botfleet_worker_cpu_seconds_total{{bot=\"{}\"}}[{}])",
                        b.bot, q.window
                    ),
                    b.cpu_s,
                    0.0,
                    format!(
                        "{}'s workers burn {} of CPU per update",
                        b.bot,
                        human_s(b.cpu_s)
                    ),
                ));
            }
            finding(
                "host.cpu",
                1,
                busy,
                heaviest.map(|b| b.bot.as_str()),
                format!(
                    "the host's CPU is full ({} busy), mostly the fleet's",
                    pct(busy)
                ),
                evidence,
                format!(
                    "more workers cannot help: cut the CPU each update costs{} (profile the handler; move heavy work out of the update path), or give the fleet more CPUs (a larger machine, or spread the bots over machines)",
                    heaviest
                        .map(|b| format!(" ({}: {} per update)", b.bot, human_s(b.cpu_s)))
                        .unwrap_or_default()
                ),
                out,
            );
        }
    }
    let available = s.memory_available;
    let total = q.one("max(botfleet_host_memory_total_bytes)");
    let growth = s.worker_memory_growth.unwrap_or(0.0);
    let left = match (available, total) {
        (Some(a), Some(t)) if growth >= MEMORY_GROWTH => Some(a * t / growth),
        _ => None,
    };
    let short = available.is_some_and(|a| a < MEMORY_FREE);
    if short || left.is_some_and(|l| l < MEMORY_HORIZON_S) {
        let by_bot = q.by(
            "bot",
            "sum by (bot) (deriv(botfleet_worker_resident_memory_bytes[$w]))",
        );
        let worst = by_bot.iter().max_by(|a, b| a.1.total_cmp(b.1));
        let mut evidence = Vec::new();
        if let Some(a) = available {
            evidence.push(ev(
                "botfleet_host_memory_available_bytes / botfleet_host_memory_total_bytes",
                a,
                MEMORY_FREE,
                format!("{} of the host's memory is available", pct(a)),
            ));
        }
        if let Some((bot, g)) = worst {
            evidence.push(ev(
                format!(
                    "sum(deriv(botfleet_worker_resident_memory_bytes{{bot=\"{bot}\"}}[{}]))",
                    q.window
                ),
                *g,
                MEMORY_GROWTH,
                format!("{bot}'s workers grow by {:.1} MiB/s", g / 1048576.0),
            ));
        }
        if let Some(l) = left {
            evidence.push(ev(
                "predicted time until memory runs out, s",
                l,
                MEMORY_HORIZON_S,
                format!("at this rate memory runs out in {:.0} min", l / 60.0),
            ));
        }
        finding(
            "host.memory",
            1,
            1.0 - available.unwrap_or(0.0),
            worst.map(|(b, _)| b.as_str()),
            match worst {
                Some((bot, g)) if *g >= MEMORY_GROWTH => format!("{bot}'s workers keep growing: memory runs short"),
                _ => "the host is short of memory".to_owned(),
            },
            evidence,
            match worst {
                Some((bot, g)) if *g >= MEMORY_GROWTH => format!(
                    "{bot}'s workers grow without bound (a leak: a cache or list that never drops entries?); find it with a heap profile, and meanwhile restart its workers before memory runs out (`botfleet restart {bot}` rolls them one at a time, nothing is lost)"
                ),
                _ => "free memory on the host, or lower max_workers (each worker's resident memory is in botfleet status)".to_owned(),
            },
            out,
        );
    }
}

fn per_bot(q: &Q<'_>, b: &Breakdown, advice: Option<&Advice>, out: &mut Vec<Finding>) {
    let bot = b.bot.as_str();
    let w = &q.window;
    let handler = b.handler_s.max(1e-9);
    let e2e = (b.queue_s + b.handling_s).max(1e-9);
    // The database: waiting for a connection.
    if b.db_acquire_s >= FLOOR_S && b.db_acquire_s / handler >= SHARE {
        let share = b.db_acquire_s / handler;
        let size = q.one(&format!(
            "max(botfleet_db_pool_connections_max{{bot=\"{bot}\"}})"
        ));
        let waiters = q.one(&format!(
            "sum(max_over_time(botfleet_db_pool_waiters{{bot=\"{bot}\"}}[$w]))"
        ));
        let timeouts = q
            .one(&format!(
                "sum(increase(botfleet_db_acquire_timeouts_total{{bot=\"{bot}\"}}[$w]))"
            ))
            .unwrap_or(0.0);
        let usable = q.one("max(botfleet_db_budget_usable_connections)");
        let mut evidence = vec![ev(
            format!(
                "rate(botfleet_db_acquire_wait_seconds_sum{{bot=\"{bot}\"}}[{w}]) / rate(botfleet_updates_acked_total[{w}])"
            ),
            b.db_acquire_s,
            FLOOR_S,
            format!(
                "each update waits {} for a connection, {} of its handler's time",
                human_s(b.db_acquire_s),
                pct(share)
            ),
        )];
        if let Some(n) = waiters {
            evidence.push(ev(
                format!("max_over_time(botfleet_db_pool_waiters{{bot=\"{bot}\"}}[{w}])"),
                n,
                0.0,
                format!("up to {} waited at once", count(n, "caller")),
            ));
        }
        if timeouts > 0.0 {
            evidence.push(ev(
                format!("increase(botfleet_db_acquire_timeouts_total{{bot=\"{bot}\"}}[{w}])"),
                timeouts,
                0.0,
                format!("{timeouts:.0} acquires gave up"),
            ));
        }
        let size = size.unwrap_or(1.0).max(1.0);
        evidence.push(ev(
            format!("botfleet_db_pool_connections_max{{bot=\"{bot}\"}}"),
            size,
            0.0,
            format!("each worker's pool has {}", count(size, "connection")),
        ));
        finding(
            "db.pool_exhausted",
            2,
            share,
            Some(bot),
            format!(
                "{bot}'s updates wait for a database connection: {} per update",
                human_s(b.db_acquire_s)
            ),
            evidence,
            format!(
                "the pool of {size:.0} per worker is too small for how long {bot} holds a connection (queries take only {} per update: look for a transaction or a held connection around slow work, and keep it short); or give it more: raise [database.pool] max_connections from {size:.0} to {:.0}{}",
                human_s(b.db_query_s),
                (size * 2.0).max(size + 1.0),
                match usable {
                    Some(u) => format!(
                        " (the budget divides {u:.0} connections among the workers; raise the bot's db_weight to give it a larger share)"
                    ),
                    None => String::new(),
                }
            ),
            out,
        );
    }
    // The queries: one shape taking much of the handler's time.
    let slow: Vec<&QueryTime> = b
        .queries
        .iter()
        .filter(|t| {
            t.per_update_s >= FLOOR_S
                && t.per_update_s / handler >= SHARE
                && t.mean_s >= SLOW_QUERY_S
        })
        .collect();
    let index = advice.and_then(|adv| adv.indexes.first());
    if let (Some(ix), Some(first)) = (index, slow.first()) {
        let mut evidence = vec![ev(
            format!(
                "rate(botfleet_db_query_duration_seconds_sum{{bot=\"{bot}\",query=\"{}\"}}[{w}])",
                first.query
            ),
            first.mean_s,
            SLOW_QUERY_S,
            format!(
                "query {} takes {} a call, {} per update",
                first.query,
                human_s(first.mean_s),
                human_s(first.per_update_s)
            ),
        )];
        evidence.push(ev(
            "db advise: the planner's cost before and after the index",
            ix.cost_before,
            ix.cost_after,
            format!("on {} ({:.0} rows) the planner's cost falls from {:.0} to {:.0} with the index, for: {}", ix.table, ix.table_rows, ix.cost_before, ix.cost_after, ix.query),
        ));
        if let Some(t) = advice.and_then(|adv| adv.seq_scanned.iter().find(|t| t.table == ix.table))
        {
            evidence.push(ev(
                format!("pg_stat_user_tables{{relname=\"{}\"}}.seq_scan", t.table),
                t.seq_scans as f64,
                t.index_scans as f64,
                format!(
                    "{} was read by {} sequential scans and {} index scans",
                    t.table, t.seq_scans, t.index_scans
                ),
            ));
        }
        finding(
            "db.missing_index",
            2,
            slow.iter().map(|t| t.per_update_s).sum::<f64>() / handler + 0.05,
            Some(bot),
            format!("{bot}'s queries scan {} without an index", ix.table),
            evidence,
            format!(
                "create the index: {} (or `botfleet db advise --apply`)",
                ix.create
            ),
            out,
        );
    } else if let (None, Some(first), Some(adv)) = (index, slow.first(), advice) {
        if let Some(t) = adv.seq_scanned.first() {
            finding(
                "db.missing_index",
                2,
                first.per_update_s / handler + 0.05,
                Some(bot),
                format!(
                    "{bot}'s queries are slow and {} is read by sequential scans",
                    t.table
                ),
                vec![
                    ev(
                        format!(
                            "rate(botfleet_db_query_duration_seconds_sum{{bot=\"{bot}\",query=\"{}\"}}[{w}])",
                            first.query
                        ),
                        first.mean_s,
                        SLOW_QUERY_S,
                        format!(
                            "query {} takes {} a call",
                            first.query,
                            human_s(first.mean_s)
                        ),
                    ),
                    ev(
                        format!("pg_stat_user_tables{{relname=\"{}\"}}.seq_scan", t.table),
                        t.seq_scans as f64,
                        t.index_scans as f64,
                        format!(
                            "{} ({:.0} rows) was read by {} sequential scans and {} index scans",
                            t.table, t.rows, t.seq_scans, t.index_scans
                        ),
                    ),
                ],
                format!(
                    "index the columns {bot}'s queries filter {} on; install pg_stat_statements (shared_preload_libraries) and `botfleet db advise` names the exact index",
                    t.table
                ),
                out,
            );
        }
    }
    for t in slow {
        finding(
            "db.slow_query",
            2,
            t.per_update_s / handler,
            Some(bot),
            format!(
                "one query of {bot} takes {} a call, {} of the handler's time",
                human_s(t.mean_s),
                pct(t.per_update_s / handler)
            ),
            vec![ev(
                format!(
                    "rate(botfleet_db_query_duration_seconds_sum{{bot=\"{bot}\",query=\"{}\"}}[{w}]) / rate(botfleet_db_query_duration_seconds_count[{w}])",
                    t.query
                ),
                t.mean_s,
                SLOW_QUERY_S,
                format!(
                    "query {} ({:.1} calls/s) takes {} a call",
                    t.query,
                    t.calls_per_s,
                    human_s(t.mean_s)
                ),
            )],
            format!(
                "find its text with `botfleet db queries` (fingerprint {}) or the slow-query log, run EXPLAIN ANALYZE on it; no index would help it (`botfleet db advise` proposed none): make it do less work, cache its result, or run it off the update path",
                t.query
            ),
            out,
        );
    }
    // Telegram's limits.
    let sends = q
        .one(&format!(
            "sum(rate(botfleet_telegram_limiter_wait_seconds_count{{bot=\"{bot}\"}}[$w]))"
        ))
        .unwrap_or(0.0);
    let allowance = q.one(&format!(
        "max(botfleet_telegram_allowance_per_second{{bot=\"{bot}\"}})"
    ));
    let rejected = q
        .one(&format!(
            "sum(increase(botfleet_telegram_429_total{{bot=\"{bot}\"}}[$w]))"
        ))
        .unwrap_or(0.0);
    let used = allowance.filter(|x| *x > 0.0).map(|x| sends / x);
    let limited = b.telegram_limiter_s >= FLOOR_S
        && b.telegram_limiter_s / e2e >= SHARE
        && used.is_none_or(|u| u >= ALLOWANCE_USED);
    if limited || rejected >= 1.0 {
        let mut evidence = vec![ev(
            format!(
                "rate(botfleet_telegram_limiter_wait_seconds_sum{{bot=\"{bot}\"}}[{w}]) / rate(botfleet_updates_acked_total[{w}])"
            ),
            b.telegram_limiter_s,
            FLOOR_S,
            format!(
                "each update waits {} for Telegram's limits, {} of its time",
                human_s(b.telegram_limiter_s),
                pct(b.telegram_limiter_s / e2e)
            ),
        )];
        if let (Some(u), Some(x)) = (used, allowance) {
            evidence.push(ev(
                format!("rate(botfleet_telegram_limiter_wait_seconds_count{{bot=\"{bot}\"}}[{w}]) / botfleet_telegram_allowance_per_second"),
                u,
                ALLOWANCE_USED,
                format!("{sends:.1} sends/s of the token's {x:.0}/s"),
            ));
        }
        if rejected >= 1.0 {
            evidence.push(ev(
                format!("increase(botfleet_telegram_429_total{{bot=\"{bot}\"}}[{w}])"),
                rejected,
                0.0,
                format!("Telegram refused {rejected:.0} calls with 429"),
            ));
        }
        finding(
            "telegram.rate_limited",
            2,
            (b.telegram_limiter_s / e2e).max(if rejected >= 1.0 { 0.5 } else { 0.0 }),
            Some(bot),
            format!("{bot} sends at Telegram's limit: its replies queue in the limiter"),
            evidence,
            format!(
                "no setting raises Telegram's limit of {} messages/s per token: send fewer messages per update (edit one message instead of sending several), mark bulk sends as broadcasts so replies go first, or enable paid broadcasts for bulk sends (allow_paid_broadcast, up to 1,000/s)",
                allowance.map_or("30".to_owned(), |x| format!("{x:.0}"))
            ),
            out,
        );
    }
    // Telegram's answers.
    if b.telegram_api_s >= FLOOR_S && b.telegram_api_s / handler >= SHARE {
        let mean = q.one(&format!(
            "sum(rate(botfleet_telegram_call_duration_seconds_sum{{bot=\"{bot}\"}}[$w])) / sum(rate(botfleet_telegram_call_duration_seconds_count{{bot=\"{bot}\"}}[$w]))"
        ));
        if mean.is_some_and(|m| m >= SLOW_API_S) {
            let m = mean.unwrap_or(0.0);
            finding(
                "telegram.slow_api",
                2,
                b.telegram_api_s / handler,
                Some(bot),
                format!("Telegram answers {bot}'s calls slowly: {} a call", human_s(m)),
                vec![
                    ev(
                        format!("rate(botfleet_telegram_call_duration_seconds_sum{{bot=\"{bot}\"}}[{w}]) / rate(botfleet_telegram_call_duration_seconds_count[{w}])"),
                        m,
                        SLOW_API_S,
                        format!("a Bot API call takes {} to answer", human_s(m)),
                    ),
                    ev(
                        format!("rate(botfleet_handler_api_seconds_total{{bot=\"{bot}\"}}[{w}]) / rate(botfleet_handler_seconds_total[{w}])"),
                        b.telegram_api_s / handler,
                        SHARE,
                        format!("{} of the handler's time waits for Telegram's answers", pct(b.telegram_api_s / handler)),
                    ),
                ],
                "the Bot API server (telegram.api_url) is slow to answer: check the network path to it (DNS, proxy, a far region; a local Bot API server cuts it), and let handlers reply without waiting for answers they do not use".to_owned(),
                out,
            );
        }
    }
    // Between the supervisor and the handlers.
    let frame_errors = q
        .one(&format!(
            "sum(increase(botfleet_ipc_frame_errors_total{{bot=\"{bot}\"}}[$w]))"
        ))
        .unwrap_or(0.0);
    if (b.ipc_s >= FLOOR_S && b.ipc_s / e2e >= SHARE && b.handler_s > 0.0) || frame_errors >= 1.0 {
        let mut evidence = vec![ev(
            format!(
                "rate(botfleet_update_handling_seconds_sum{{bot=\"{bot}\"}}[{w}]) / rate(botfleet_update_handling_seconds_count[{w}]) - rate(botfleet_handler_seconds_total[{w}]) / rate(botfleet_updates_acked_total[{w}])"
            ),
            b.ipc_s,
            FLOOR_S,
            format!(
                "{} per update between the supervisor's dispatch and the ack is not the handler's ({} of the update's time; the handler took {})",
                human_s(b.ipc_s),
                pct(b.ipc_s / e2e),
                human_s(b.handler_s)
            ),
        )];
        if frame_errors >= 1.0 {
            evidence.push(ev(
                format!("increase(botfleet_ipc_frame_errors_total{{bot=\"{bot}\"}}[{w}])"),
                frame_errors,
                0.0,
                format!("{frame_errors:.0} bad frames from {bot}'s workers"),
            ));
        }
        finding(
            "ipc",
            2,
            (b.ipc_s / e2e).max(if frame_errors >= 1.0 { 0.5 } else { 0.0 }),
            Some(bot),
            format!(
                "{bot}'s updates lose {} per update between the supervisor and the handler",
                human_s(b.ipc_s)
            ),
            evidence,
            format!(
                "the path between the supervisor and {bot}'s handlers is slow: a worker that blocks its event loop (synchronous work in an async handler: move it to spawn_blocking or run_in_executor) or reads its socket late, a worker's socket proxied or throttled, or a supervisor starved of CPU{}",
                if frame_errors >= 1.0 {
                    "; and a worker writes bad frames (docs/protocol.md)"
                } else {
                    ""
                }
            ),
            out,
        );
    }
    // The handlers' own errors.
    let failed = q
        .one(&format!(
            "sum(increase(botfleet_updates_failed_total{{bot=\"{bot}\"}}[$w]))"
        ))
        .unwrap_or(0.0);
    let acked = q
        .one(&format!(
            "sum(increase(botfleet_updates_acked_total{{bot=\"{bot}\"}}[$w]))"
        ))
        .unwrap_or(0.0);
    if failed >= 3.0 && acked > 0.0 && failed / acked >= FAILED_SHARE {
        let share = failed / acked;
        finding(
            "handler.errors",
            2,
            (share * 3.0).min(1.0),
            Some(bot),
            format!("{} of {bot}'s updates fail in the handler", pct(share)),
            vec![ev(
                format!(
                    "increase(botfleet_updates_failed_total{{bot=\"{bot}\"}}[{w}]) / increase(botfleet_updates_acked_total[{w}])"
                ),
                share,
                FAILED_SHARE,
                format!("{failed:.0} of {acked:.0} updates failed"),
            )],
            format!(
                "read the errors: `botfleet logs {bot} --level error`; failed updates go to the dead letters (`botfleet dead-letters list`) and can be replayed once the handler is fixed"
            ),
            out,
        );
    }
}

fn caches(q: &Q<'_>, out: &mut Vec<Finding>) {
    let hits =
        q.vector("sum by (bot, namespace) (rate(botfleet_cache_hits_total{tier=\"l1\"}[$w]))");
    let misses =
        q.vector("sum by (bot, namespace) (rate(botfleet_cache_misses_total{tier=\"l1\"}[$w]))");
    let evictions = q.vector("sum by (bot, namespace) (rate(botfleet_cache_evictions_total[$w]))");
    let entries = q.vector("sum by (bot, namespace) (botfleet_cache_l1_entries)");
    let capacity = q.vector("max by (bot, namespace) (botfleet_cache_l1_capacity)");
    let workers = q.vector("count by (bot, namespace) (botfleet_cache_l1_capacity)");
    let find = |v: &[Sample], like: &Sample| {
        v.iter()
            .find(|s| s.labels == like.labels)
            .map_or(0.0, |s| s.value)
    };
    let w = &q.window;
    for m in &misses {
        let (Some(bot), Some(ns)) = (label_of(m, "bot"), label_of(m, "namespace")) else {
            continue;
        };
        let h = find(&hits, m);
        let e = find(&evictions, m);
        let cap = find(&capacity, m);
        let n = find(&entries, m) / find(&workers, m).max(1.0);
        let ratio = if h + m.value > 0.0 {
            h / (h + m.value)
        } else {
            1.0
        };
        if m.value >= 1.0 && ratio < HIT_RATIO && e >= 0.25 * m.value && cap > 0.0 && n >= 0.9 * cap
        {
            finding(
                "cache.too_small",
                2,
                (1.0 - ratio) * 0.6,
                Some(bot),
                format!(
                    "{bot}'s cache {ns} is full and evicts what is read again: {} of its reads hit",
                    pct(ratio)
                ),
                vec![
                    ev(
                        format!(
                            "rate(botfleet_cache_hits_total{{bot=\"{bot}\",namespace=\"{ns}\",tier=\"l1\"}}[{w}]) / (hits + misses)"
                        ),
                        ratio,
                        HIT_RATIO,
                        format!("L1 answers {} of the reads", pct(ratio)),
                    ),
                    ev(
                        format!(
                            "rate(botfleet_cache_evictions_total{{bot=\"{bot}\",namespace=\"{ns}\"}}[{w}])"
                        ),
                        e,
                        0.25 * m.value,
                        format!("{e:.1} evictions/s for {:.1} misses/s", m.value),
                    ),
                    ev(
                        format!("botfleet_cache_l1_entries{{bot=\"{bot}\",namespace=\"{ns}\"}}"),
                        n,
                        cap,
                        format!("{n:.0} entries of a capacity of {cap:.0} per worker"),
                    ),
                ],
                format!(
                    "raise the capacity of {ns}: [cache.namespace.\"{ns}\"] capacity = {:.0} (now {cap:.0}), watching the workers' memory",
                    (cap * 8.0).max(1000.0)
                ),
                out,
            );
        }
    }
}

fn capacity(q: &Q<'_>, bots: &[Breakdown], out: &mut Vec<Finding>) {
    let capped = q.by(
        "bot",
        "sum by (bot) (increase(botfleet_scale_capped_total[$w]))",
    );
    let max = q.by("bot", "max by (bot) (botfleet_workers_max)");
    let usable = q.one("max(botfleet_db_budget_usable_connections)");
    let planned: f64 = max.values().sum();
    let target = q.by("bot", "max by (bot) (botfleet_bot_target_latency_seconds)");
    let w = &q.window;
    for b in bots {
        let bot = b.bot.as_str();
        let ticks = capped.get(bot).copied().unwrap_or(0.0);
        let e2e = b.queue_s + b.handling_s;
        let slow = target.get(bot).is_none_or(|t| e2e > *t);
        if ticks < 3.0 || !slow {
            continue;
        }
        let m = max.get(bot).copied().unwrap_or(0.0);
        let mut evidence = vec![
            ev(
                format!("increase(botfleet_scale_capped_total{{bot=\"{bot}\"}}[{w}])"),
                ticks,
                3.0,
                format!("the autoscaler wanted more than max_workers ({m:.0}) {ticks:.0} times"),
            ),
            ev(
                format!("botfleet_update_handling_seconds{{bot=\"{bot}\"}} (mean, with the queue)"),
                e2e,
                target.get(bot).copied().unwrap_or(0.0),
                format!(
                    "an update takes {} from arrival to ack{}",
                    human_s(e2e),
                    target
                        .get(bot)
                        .map(|t| format!(", over the target of {}", human_s(*t)))
                        .unwrap_or_default()
                ),
            ),
        ];
        match usable {
            Some(u) if u - planned < 1.0 => {
                evidence.push(ev(
                    "botfleet_db_budget_usable_connections - sum(botfleet_workers_max)",
                    u - planned,
                    1.0,
                    format!("the budget's {u:.0} connections are all planned for the fleet's {planned:.0} workers at their maximum, one each at least"),
                ));
                finding(
                    "workers.capped_by_budget",
                    3,
                    1.0,
                    Some(bot),
                    format!(
                        "{bot} needs more workers than the database's connection budget allows"
                    ),
                    evidence,
                    format!(
                        "raise max_connections on the PostgreSQL server (each worker needs a connection: {} more for {bot} to double its {m:.0} workers), then raise its max_workers; or lower database.reserve, or cut its handler time ({} per update)",
                        m.max(1.0),
                        human_s(b.handler_s)
                    ),
                    out,
                );
            }
            _ => {
                let room = usable.map(|u| (u - planned).floor());
                if let Some(r) = room {
                    evidence.push(ev(
                        "botfleet_db_budget_usable_connections - sum(botfleet_workers_max)",
                        r,
                        1.0,
                        format!("the connection budget leaves room for {r:.0} more workers"),
                    ));
                }
                let to = match room {
                    Some(r) => m + r.min(m.max(1.0)),
                    None => (m * 2.0).max(m + 1.0),
                };
                finding(
                    "workers.saturated",
                    3,
                    0.9,
                    Some(bot),
                    format!("{bot}'s workers are all busy and updates wait for them"),
                    evidence,
                    format!(
                        "raise max_workers of {bot} from {m:.0} to {to:.0}{}; or cut the handler's time ({} per update)",
                        if usable.is_some() {
                            " (the connection budget allows it)"
                        } else {
                            ""
                        },
                        human_s(b.handler_s)
                    ),
                    out,
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use botfleet_monitor::Registry;

    /// A store with `seconds` of one bot at 10 updates/s, each update
    /// spending `handler_s` in its handler, `acquire_s` of it waiting for a
    /// connection; `postgres_up` as the monitor's poll saw it.
    fn store(seconds: i64, handler_s: f64, acquire_s: f64, postgres_up: f64) -> (Store, i64) {
        let registry = Registry::new(1000);
        let store = Store::with_retention(1000, 10);
        let bot = vec![("bot".to_owned(), "dating".to_owned())];
        let now = 1_800_000_000;
        for t in now - seconds..=now {
            let n = (t - (now - seconds)) as f64 * 10.0;
            registry.set_float_counter("botfleet_updates_acked_total", &bot, n);
            registry.set_float_counter("botfleet_updates_received_total", &bot, n);
            registry.set_float_counter("botfleet_update_handling_seconds_count", &bot, n);
            registry.set_float_counter(
                "botfleet_update_handling_seconds_sum",
                &bot,
                n * (handler_s + 0.0005),
            );
            registry.set_float_counter("botfleet_handler_seconds_total", &bot, n * handler_s);
            registry.set_float_counter("botfleet_db_acquire_wait_seconds_sum", &bot, n * acquire_s);
            registry.set_gauge("botfleet_db_pool_connections_max", &bot, 2.0);
            registry.set_gauge("botfleet_postgres_up", &[], postgres_up);
            store.record(t, &registry.snapshot());
        }
        (store, now)
    }

    fn kinds(store: &Store, now: i64) -> Vec<&'static str> {
        analyze(&Input {
            store,
            now,
            window_s: 30,
            advice: None,
        })
        .findings
        .iter()
        .map(|f| f.kind)
        .collect()
    }

    #[test]
    fn a_quiet_fleet_is_healthy() {
        let (s, now) = store(60, 0.004, 0.0001, 1.0);
        assert_eq!(kinds(&s, now), ["healthy"]);
    }

    #[test]
    fn waiting_for_connections_is_the_pool() {
        let (s, now) = store(60, 0.1, 0.06, 1.0);
        let report = analyze(&Input {
            store: &s,
            now,
            window_s: 30,
            advice: None,
        });
        assert_eq!(report.findings[0].kind, "db.pool_exhausted");
        assert_eq!(report.findings[0].rank, 1);
        assert!(
            (report.bots[0].db_acquire_s - 0.06).abs() < 1e-6,
            "{:?}",
            report.bots[0]
        );
        assert!(
            report.findings[0].fix.contains("from 2 to 4"),
            "{}",
            report.findings[0].fix
        );
    }

    #[test]
    fn an_outage_ranks_above_what_it_slows() {
        let (s, now) = store(60, 0.1, 0.06, 0.0);
        assert_eq!(kinds(&s, now), ["db.down", "db.pool_exhausted"]);
        let report = analyze(&Input {
            store: &s,
            now,
            window_s: 30,
            advice: None,
        });
        assert!(
            !wants_advice(&report),
            "no advisor while the database is down"
        );
    }

    #[test]
    fn every_kind_is_documented() {
        let doc = include_str!("../../../docs/analyze.md");
        for kind in KINDS {
            assert!(
                doc.contains(&format!("| `{kind}` |")),
                "docs/analyze.md lacks {kind}"
            );
        }
    }
}
