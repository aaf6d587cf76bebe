//! `[alerts]`: alert rules, how firing alerts are grouped and throttled,
//! and where they are sent. Rules have Prometheus's shape and meaning
//! (`groups` of `rules` with `alert`, `expr`, `for`, `keep_firing_for`,
//! `labels`, `annotations`), in TOML; a rules file holds `[[groups]]` the
//! same way, so one file can serve `rule_files` and `botfleet rules`.

use std::time::Duration;

use crate::reader::{Ctx, Spanned, Table, Text, read_document};
use crate::{ConfigError, Env};

/// `[alerts]`.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct AlertsConfig {
    /// How often every rule is evaluated.
    pub interval: Duration,
    /// Whether the built-in rules for a bot fleet are loaded.
    pub default_rules: bool,
    /// More rule files, as written (relative to the fleet file's folder).
    pub rule_files: Vec<String>,
    /// Rule groups written in the fleet file (`[[alerts.groups]]`).
    pub groups: Vec<RuleGroup>,
    /// Grouping and throttling of notifications.
    pub route: Route,
    /// Telegram chats that get the notifications (`[[alerts.telegram]]`).
    pub telegram: Vec<TelegramReceiver>,
    /// Alertmanager-compatible receivers (`[[alerts.alertmanager]]`).
    pub alertmanager: Vec<AlertmanagerReceiver>,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        AlertsConfig {
            interval: Duration::from_secs(10),
            default_rules: true,
            rule_files: Vec::new(),
            groups: Vec::new(),
            route: Route::default(),
            telegram: Vec::new(),
            alertmanager: Vec::new(),
        }
    }
}

/// Alertmanager's grouping timers, with its meaning and defaults.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct Route {
    /// Alerts with equal values of these labels make one notification.
    pub group_by: Vec<String>,
    /// How long a new group waits before its first notification.
    pub group_wait: Duration,
    /// How long a notified group waits before telling of changes.
    pub group_interval: Duration,
    /// How long before a still-firing group is notified again.
    pub repeat_interval: Duration,
}

impl Default for Route {
    fn default() -> Self {
        Route {
            group_by: vec!["alertname".to_owned(), "bot".to_owned()],
            group_wait: Duration::from_secs(30),
            group_interval: Duration::from_secs(300),
            repeat_interval: Duration::from_secs(4 * 3600),
        }
    }
}

/// A Telegram chat that gets notifications, sent by a bot of the fleet
/// through its limiter.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct TelegramReceiver {
    /// The bot (of `[[bot]]`) that sends.
    pub bot: String,
    /// The operator's chat.
    pub chat_id: i64,
}

/// An Alertmanager (or compatible) receiver: alerts are POSTed to
/// `<url>/api/v2/alerts`.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct AlertmanagerReceiver {
    /// `http://host:port`, without a path.
    pub url: String,
}

/// A group of rules.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct RuleGroup {
    /// Its name (unique within its file).
    pub name: String,
    /// Labels added to every alert of the group.
    pub labels: Vec<(String, String)>,
    /// Its rules.
    pub rules: Vec<AlertRule>,
}

/// An alerting rule.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct AlertRule {
    /// The alert's name (`alertname`).
    pub alert: String,
    /// The PromQL expression; each element it returns is an alert.
    pub expr: String,
    /// How long an element must hold before it fires (pending meanwhile).
    pub for_: Duration,
    /// How long a firing alert keeps firing after its element is gone.
    pub keep_firing_for: Duration,
    /// Labels added to (and overriding) the element's.
    pub labels: Vec<(String, String)>,
    /// Texts templated with `{{ $labels.NAME }}` and `{{ $value }}`.
    pub annotations: Vec<(String, String)>,
    /// Where it is written: `FILE:LINE`.
    pub origin: String,
}

impl RuleGroup {
    /// A group built in code (the default pack, tests).
    pub fn new(name: &str, rules: Vec<AlertRule>) -> RuleGroup {
        RuleGroup {
            name: name.to_owned(),
            labels: Vec::new(),
            rules,
        }
    }
}

impl AlertRule {
    /// A rule built in code (the default pack, tests).
    pub fn new(alert: &str, expr: &str) -> AlertRule {
        AlertRule {
            alert: alert.to_owned(),
            expr: expr.to_owned(),
            for_: Duration::ZERO,
            keep_firing_for: Duration::ZERO,
            labels: Vec::new(),
            annotations: Vec::new(),
            origin: "built in".to_owned(),
        }
    }

    /// Sets `for`.
    pub fn for_(mut self, d: Duration) -> AlertRule {
        self.for_ = d;
        self
    }

    /// Sets `keep_firing_for`.
    pub fn keep_firing_for(mut self, d: Duration) -> AlertRule {
        self.keep_firing_for = d;
        self
    }

    /// Adds a label.
    pub fn label(mut self, name: &str, value: &str) -> AlertRule {
        self.labels.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Adds an annotation.
    pub fn annotation(mut self, name: &str, value: &str) -> AlertRule {
        self.annotations.push((name.to_owned(), value.to_owned()));
        self
    }
}

/// Reads a rules file: `[[groups]]` with `[[groups.rules]]`, as in
/// `[alerts]`. Every problem is reported with its `FILE:LINE:COL`.
pub fn parse_rules(
    text: &str,
    file_name: &str,
    env: &dyn Env,
) -> Result<Vec<RuleGroup>, ConfigError> {
    read_document(text, file_name, env, |cx, mut root| {
        let groups = rule_groups(cx, &mut root, "groups");
        root.finish(cx);
        Some(groups)
    })
}

const MINUTE: Duration = Duration::from_secs(60);
const DAY: Duration = Duration::from_secs(86_400);

pub(crate) fn alerts(cx: &mut Ctx<'_>, t: Option<Table<'_>>, bots: &[String]) -> AlertsConfig {
    let base = AlertsConfig::default();
    let Some(mut t) = t else {
        return base;
    };
    let interval = t
        .duration(cx, "interval", Duration::from_secs(1)..=5 * MINUTE)
        .map_or(base.interval, |v| v.value);
    let default_rules = t
        .boolean(cx, "default_rules")
        .map_or(base.default_rules, |v| v.value);
    let rule_files = t
        .string_array(cx, "rule_files")
        .map(|files| files.into_iter().map(|f| f.value.value).collect())
        .unwrap_or_default();
    let groups = rule_groups(cx, &mut t, "groups");
    let route_table = t.table(cx, "route");
    let route = route(cx, route_table);
    let telegram = t
        .array_of_tables(cx, "telegram")
        .into_iter()
        .filter_map(|mut r| {
            let bot = r.string(cx, "bot");
            let chat_id = r.integer(cx, "chat_id", i64::MIN..=i64::MAX);
            let bot = match bot {
                Some(bot) if bots.contains(&bot.value.value) => Some(bot.value.value),
                Some(bot) => {
                    cx.error(
                        &bot.span,
                        &r.key_path("bot"),
                        format!(
                            "no bot is named `{}`; alerts are sent by one of the fleet's bots ({})",
                            bot.value.value,
                            bots.join(", ")
                        ),
                    );
                    None
                }
                None => {
                    let span = r.span.clone();
                    cx.error(
                        &span,
                        &r.key_path("bot"),
                        "is required: the bot of the fleet that sends the alerts",
                    );
                    None
                }
            };
            if chat_id.is_none() && !r.contains("chat_id") {
                let span = r.span.clone();
                cx.error(
                    &span,
                    &r.key_path("chat_id"),
                    "is required: the operator's chat (the bot must be able to write to it)",
                );
            }
            r.finish(cx);
            Some(TelegramReceiver {
                bot: bot?,
                chat_id: chat_id?.value,
            })
        })
        .collect();
    let alertmanager = t
        .array_of_tables(cx, "alertmanager")
        .into_iter()
        .filter_map(|mut r| {
            let url = r.string(cx, "url");
            let path = r.key_path("url");
            let span = r.span.clone();
            r.finish(cx);
            let Some(url) = url else {
                cx.error(&span, &path, "is required, such as \"http://127.0.0.1:9093\"");
                return None;
            };
            let text = url.value.value.trim_end_matches('/');
            let valid = text
                .strip_prefix("http://")
                .or_else(|| text.strip_prefix("https://"))
                .is_some_and(|rest| !rest.is_empty() && !rest.contains('/'));
            if !valid {
                cx.error(
                    &url.span,
                    &path,
                    format!(
                        "`{text}` is not an Alertmanager address: write http://HOST:PORT, without a path (alerts go to /api/v2/alerts)"
                    ),
                );
                return None;
            }
            Some(AlertmanagerReceiver {
                url: text.to_owned(),
            })
        })
        .collect();
    t.finish(cx);
    AlertsConfig {
        interval,
        default_rules,
        rule_files,
        groups,
        route,
        telegram,
        alertmanager,
    }
}

fn route(cx: &mut Ctx<'_>, t: Option<Table<'_>>) -> Route {
    let base = Route::default();
    let Some(mut t) = t else {
        return base;
    };
    let group_by = t
        .string_array(cx, "group_by")
        .map_or(base.group_by.clone(), |v| {
            v.into_iter().map(|s| s.value.value).collect()
        });
    let group_wait = t
        .duration(cx, "group_wait", Duration::ZERO..=DAY)
        .map_or(base.group_wait, |v| v.value);
    let group_interval = t
        .duration(cx, "group_interval", Duration::from_secs(1)..=DAY)
        .map_or(base.group_interval, |v| v.value);
    let repeat_interval = t
        .duration(cx, "repeat_interval", Duration::from_secs(1)..=7 * DAY)
        .map_or(base.repeat_interval, |v| v.value);
    t.finish(cx);
    Route {
        group_by,
        group_wait,
        group_interval,
        repeat_interval,
    }
}

fn rule_groups(cx: &mut Ctx<'_>, t: &mut Table<'_>, key: &'static str) -> Vec<RuleGroup> {
    let mut names: Vec<String> = Vec::new();
    t.array_of_tables(cx, key)
        .into_iter()
        .filter_map(|mut g| {
            let name = g.string(cx, "name");
            let labels = pairs(cx, &mut g, "labels");
            let rules: Vec<AlertRule> = g
                .array_of_tables(cx, "rules")
                .into_iter()
                .filter_map(|r| rule(cx, r))
                .collect();
            let span = g.span.clone();
            let path = g.key_path("name");
            g.finish(cx);
            let name = match name {
                Some(n) if names.contains(&n.value.value) => {
                    cx.error(
                        &n.span,
                        &path,
                        format!("a second group named `{}`", n.value.value),
                    );
                    return None;
                }
                Some(n) => n.value.value,
                None => {
                    cx.error(&span, &path, "is required: every group of rules has a name");
                    return None;
                }
            };
            names.push(name.clone());
            Some(RuleGroup {
                name,
                labels,
                rules,
            })
        })
        .collect()
}

fn rule(cx: &mut Ctx<'_>, mut r: Table<'_>) -> Option<AlertRule> {
    if r.contains("record") {
        let span = r.span_of("record");
        cx.error(
            &span,
            &r.key_path("record"),
            "recording rules are not supported: write the expression into the alert's `expr`",
        );
    }
    let alert = r.string(cx, "alert");
    let expr = r.string(cx, "expr");
    let for_ = r
        .duration(cx, "for", Duration::ZERO..=DAY)
        .map_or(Duration::ZERO, |v| v.value);
    let keep_firing_for = r
        .duration(cx, "keep_firing_for", Duration::ZERO..=DAY)
        .map_or(Duration::ZERO, |v| v.value);
    let labels = pairs(cx, &mut r, "labels");
    let annotations = pairs(cx, &mut r, "annotations");
    let span = r.span.clone();
    let alert_path = r.key_path("alert");
    let expr_path = r.key_path("expr");
    r.finish(cx);
    let alert = match alert {
        Some(a) if valid_name(&a.value.value) => a.value.value,
        Some(a) => {
            cx.error(
                &a.span,
                &alert_path,
                format!(
                    "`{}` is not a valid alert name (letters, digits and _, not starting with a digit)",
                    a.value.value
                ),
            );
            return None;
        }
        None => {
            cx.error(&span, &alert_path, "is required: the alert's name");
            return None;
        }
    };
    let Some(expr) = expr else {
        cx.error(&span, &expr_path, "is required: a PromQL expression");
        return None;
    };
    if let Err(e) = crate::promql::parse(&expr.value.value) {
        cx.error(
            &expr.span,
            &expr_path,
            format!("not valid PromQL: {}", e.trim()),
        );
        return None;
    }
    let origin = format!("{}:{}", cx.source.name, cx.line(&expr.span));
    Some(AlertRule {
        alert,
        expr: expr.value.value,
        for_,
        keep_firing_for,
        labels,
        annotations,
        origin,
    })
}

fn pairs(cx: &mut Ctx<'_>, t: &mut Table<'_>, key: &'static str) -> Vec<(String, String)> {
    let path = t.key_path(key);
    t.string_map(cx, key)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|(k, v): (Spanned<String>, Spanned<Text>)| {
            if !valid_name(&k.value) {
                cx.error(
                    &k.span,
                    &format!("{path}.{}", k.value),
                    "is not a valid label name (letters, digits and _, not starting with a digit)",
                );
                return None;
            }
            Some((k.value, v.value.value))
        })
        .collect()
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A rules test file (`botfleet rules test`), promtool's in TOML: which
/// rules, and tests of synthetic series with the alerts expected.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct RuleTests {
    /// Rule files, relative to the test file.
    pub rule_files: Vec<String>,
    /// Whether the built-in rules are tested too.
    pub default_rules: bool,
    /// How often the rules are evaluated.
    pub evaluation_interval: Duration,
    /// The tests.
    pub tests: Vec<RuleTest>,
}

/// One test: series and the alerts expected at given times.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct RuleTest {
    /// Its name (for the report).
    pub name: String,
    /// The time between two values of a series.
    pub interval: Duration,
    /// `(series, values)`: `name{label="value"}` and promtool's notation
    /// (`1 2 _ 3`, `0+10x5`, `5x3`, `_x2`).
    pub input_series: Vec<(String, String)>,
    /// The checks.
    pub alert_rule_test: Vec<AlertTest>,
    /// Where it is written: `FILE:LINE`.
    pub origin: String,
}

/// The alerts of `alertname` expected firing at `eval_time`.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct AlertTest {
    /// Since the test's start.
    pub eval_time: Duration,
    /// The alert.
    pub alertname: String,
    /// Each firing alert: its labels (without `alertname`) and, when
    /// given, its annotations.
    pub exp_alerts: Vec<ExpectedAlert>,
    /// Where it is written: `FILE:LINE`.
    pub origin: String,
}

/// One alert expected.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct ExpectedAlert {
    /// Its labels, `alertname` aside.
    pub exp_labels: Vec<(String, String)>,
    /// Its annotations (not compared when absent).
    pub exp_annotations: Option<Vec<(String, String)>>,
}

/// Reads a rules test file.
pub fn parse_rule_tests(
    text: &str,
    file_name: &str,
    env: &dyn Env,
) -> Result<RuleTests, ConfigError> {
    read_document(text, file_name, env, |cx, mut root| {
        let rule_files = root
            .string_array(cx, "rule_files")
            .map(|f| f.into_iter().map(|s| s.value.value).collect())
            .unwrap_or_default();
        let default_rules = root.boolean(cx, "default_rules").is_some_and(|b| b.value);
        let evaluation_interval = root
            .duration(cx, "evaluation_interval", Duration::from_secs(1)..=DAY)
            .map_or(Duration::from_secs(60), |v| v.value);
        let tests = root
            .array_of_tables(cx, "tests")
            .into_iter()
            .enumerate()
            .map(|(i, mut t)| {
                let origin = format!("{}:{}", cx.source.name, cx.line(&t.span));
                let name = t
                    .string(cx, "name")
                    .map_or_else(|| format!("test {}", i + 1), |n| n.value.value);
                let interval = t
                    .duration(cx, "interval", Duration::from_secs(1)..=DAY)
                    .map_or(evaluation_interval, |v| v.value);
                let input_series = t
                    .array_of_tables(cx, "input_series")
                    .into_iter()
                    .filter_map(|mut s| {
                        let series = s.string(cx, "series");
                        let values = s.string(cx, "values");
                        let span = s.span.clone();
                        let path = s.path().to_owned();
                        s.finish(cx);
                        match (series, values) {
                            (Some(a), Some(b)) => Some((a.value.value, b.value.value)),
                            _ => {
                                cx.error(&span, &path, "needs `series` and `values`");
                                None
                            }
                        }
                    })
                    .collect();
                let alert_rule_test = t
                    .array_of_tables(cx, "alert_rule_test")
                    .into_iter()
                    .filter_map(|mut a| {
                        let origin = format!("{}:{}", cx.source.name, cx.line(&a.span));
                        let eval_time = a.duration(cx, "eval_time", Duration::ZERO..=7 * DAY);
                        let alertname = a.string(cx, "alertname");
                        let exp_alerts = a
                            .array_of_tables(cx, "exp_alerts")
                            .into_iter()
                            .map(|mut e| {
                                let exp_labels = pairs(cx, &mut e, "exp_labels");
                                let exp_annotations = e
                                    .contains("exp_annotations")
                                    .then(|| pairs(cx, &mut e, "exp_annotations"));
                                e.finish(cx);
                                ExpectedAlert {
                                    exp_labels,
                                    exp_annotations,
                                }
                            })
                            .collect();
                        let span = a.span.clone();
                        let path = a.path().to_owned();
                        a.finish(cx);
                        match (eval_time, alertname) {
                            (Some(e), Some(n)) => Some(AlertTest {
                                eval_time: e.value,
                                alertname: n.value.value,
                                exp_alerts,
                                origin,
                            }),
                            _ => {
                                cx.error(&span, &path, "needs `eval_time` and `alertname`");
                                None
                            }
                        }
                    })
                    .collect();
                t.finish(cx);
                RuleTest {
                    name,
                    interval,
                    input_series,
                    alert_rule_test,
                    origin,
                }
            })
            .collect();
        root.finish(cx);
        Some(RuleTests {
            rule_files,
            default_rules,
            evaluation_interval,
            tests,
        })
    })
}
