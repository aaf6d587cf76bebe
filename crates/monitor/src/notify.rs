//! Notifications of firing and resolved alerts, and silences.
//!
//! - **Telegram chats** get alerts grouped and throttled with
//!   Alertmanager's meaning ([`Grouper`]): alerts with equal values of
//!   `group_by` make one message; a new group waits `group_wait` (so the
//!   alerts of one fault arrive together), a notified group tells of new or
//!   resolved alerts no sooner than `group_interval` after its last
//!   message, and repeats a still-firing group after `repeat_interval`.
//!   The fleet's own bot sends them, through its limiter.
//! - **Alertmanager receivers** get every alert's state as Prometheus
//!   sends it (POST `/api/v2/alerts`, at each change and every minute
//!   while firing, `endsAt` ahead so a lost monitor resolves them), and
//!   group them themselves.
//! - **Silences** mute the alerts whose labels match all their matchers
//!   until they end: a silenced alert is listed, marked, and sent nowhere.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use botfleet_config::Route;
use serde::{Deserialize, Serialize};

use crate::alerts::{Alert, State};

/// One message's worth: a group's alerts that are news.
#[derive(Clone, Debug, PartialEq)]
pub struct Notification {
    /// The group's labels (the `group_by` values).
    pub group: BTreeMap<String, String>,
    /// Its alerts: firing ones, and those resolved since the last message.
    pub alerts: Vec<Alert>,
}

impl Notification {
    /// Whether any of its alerts fires.
    pub fn firing(&self) -> bool {
        self.alerts.iter().any(|a| a.state == State::Firing)
    }

    /// The message sent to a Telegram chat: plain text, under Telegram's
    /// 4,096 characters.
    pub fn text(&self) -> String {
        let firing: Vec<&Alert> = self
            .alerts
            .iter()
            .filter(|a| a.state == State::Firing)
            .collect();
        let resolved: Vec<&Alert> = self
            .alerts
            .iter()
            .filter(|a| a.state == State::Resolved)
            .collect();
        let group: Vec<String> = self.group.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let mut out = if firing.is_empty() {
            format!("✅ RESOLVED {}", group.join(" "))
        } else {
            format!("🔥 FIRING {} ({} firing)", group.join(" "), firing.len())
        };
        for (title, alerts) in [("Firing", &firing), ("Resolved", &resolved)] {
            if alerts.is_empty() {
                continue;
            }
            out.push_str(&format!("\n\n{title}:"));
            for (i, a) in alerts.iter().enumerate() {
                let line = alert_line(a);
                if out.len() + line.len() > 3800 {
                    out.push_str(&format!("\n… and {} more", alerts.len() - i));
                    break;
                }
                out.push_str(&line);
            }
        }
        out
    }
}

fn alert_line(a: &Alert) -> String {
    let labels: Vec<String> = a
        .labels
        .iter()
        .filter(|(k, _)| *k != "alertname")
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let mut line = format!("\n• {} [{}]", a.name(), labels.join(", "));
    if let Some(summary) = a.annotations.get("summary") {
        line.push_str(&format!("\n  {summary}"));
    }
    if let Some(description) = a.annotations.get("description") {
        line.push_str(&format!("\n  {description}"));
    }
    line
}

#[derive(Debug)]
struct Group {
    labels: BTreeMap<String, String>,
    /// The newest state of each alert, by its labels, and whether a
    /// silence mutes it.
    alerts: BTreeMap<BTreeMap<String, String>, (Alert, bool)>,
    created: i64,
    /// When its last message went, and which alerts fired then.
    sent: Option<(i64, Vec<BTreeMap<String, String>>)>,
}

/// Groups alerts and says when each group is due a message.
#[derive(Debug)]
pub struct Grouper {
    route: Route,
    groups: HashMap<BTreeMap<String, String>, Group>,
}

impl Grouper {
    /// A grouper with `route`'s `group_by` and timers.
    pub fn new(route: Route) -> Grouper {
        Grouper {
            route,
            groups: HashMap::new(),
        }
    }

    /// Takes the engine's alerts at `now` and returns the messages due.
    /// Pending alerts are nobody's business; `muted` ones (silenced) are
    /// kept track of but told of neither firing nor, while muted, resolved.
    pub fn tick(
        &mut self,
        alerts: &[Alert],
        muted: &dyn Fn(&Alert) -> bool,
        now: i64,
    ) -> Vec<Notification> {
        for a in alerts.iter().filter(|a| a.state != State::Pending) {
            let key: BTreeMap<String, String> = self
                .route
                .group_by
                .iter()
                .filter_map(|k| a.labels.get(k).map(|v| (k.clone(), v.clone())))
                .collect();
            if a.state == State::Resolved && !self.groups.contains_key(&key) {
                // Resolved before it was ever told: nothing to say.
                continue;
            }
            let group = self.groups.entry(key.clone()).or_insert_with(|| Group {
                labels: key,
                alerts: BTreeMap::new(),
                created: now,
                sent: None,
            });
            group.alerts.insert(a.labels.clone(), (a.clone(), muted(a)));
        }
        // Alerts the engine no longer lists (forgotten) end.
        let listed: Vec<&BTreeMap<String, String>> = alerts.iter().map(|a| &a.labels).collect();
        for group in self.groups.values_mut() {
            for (labels, (alert, _)) in &mut group.alerts {
                if !listed.contains(&labels) && alert.state == State::Firing {
                    alert.state = State::Resolved;
                    alert.resolved_at = Some(now);
                }
            }
        }
        let secs = |d: Duration| d.as_secs() as i64;
        let (wait, interval, repeat) = (
            secs(self.route.group_wait),
            secs(self.route.group_interval),
            secs(self.route.repeat_interval),
        );
        let mut due = Vec::new();
        for group in self.groups.values_mut() {
            let told: Vec<BTreeMap<String, String>> = group
                .sent
                .as_ref()
                .map(|(_, t)| t.clone())
                .unwrap_or_default();
            let firing: Vec<&Alert> = group
                .alerts
                .values()
                .filter(|(a, muted)| a.state == State::Firing && !muted)
                .map(|(a, _)| a)
                .collect();
            let resolved: Vec<&Alert> = group
                .alerts
                .values()
                .filter(|(a, muted)| {
                    a.state == State::Resolved && !muted && told.contains(&a.labels)
                })
                .map(|(a, _)| a)
                .collect();
            let send = match &group.sent {
                None => now - group.created >= wait && !firing.is_empty(),
                Some((at, _)) => {
                    let news =
                        firing.iter().any(|a| !told.contains(&a.labels)) || !resolved.is_empty();
                    (news && now - at >= interval) || (!firing.is_empty() && now - at >= repeat)
                }
            };
            if !send {
                continue;
            }
            let alerts: Vec<Alert> = firing
                .iter()
                .chain(&resolved)
                .map(|a| (*a).clone())
                .collect();
            let now_told = firing.iter().map(|a| a.labels.clone()).collect();
            group.alerts.retain(|_, (a, _)| a.state == State::Firing);
            group.sent = Some((now, now_told));
            due.push(Notification {
                group: group.labels.clone(),
                alerts,
            });
        }
        // A group with nothing firing and nothing left to tell ends.
        self.groups.retain(|_, g| {
            !g.alerts.is_empty() || g.sent.as_ref().is_some_and(|(_, told)| !told.is_empty())
        });
        due.sort_by(|a, b| a.group.cmp(&b.group));
        due
    }
}

/// One matcher of a silence.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Matcher {
    /// The label.
    pub name: String,
    /// The value, or the regular expression (matched whole).
    pub value: String,
    /// Whether `value` is a regular expression.
    #[serde(default)]
    pub is_regex: bool,
    /// Whether it matches when equal (true, the default) or when not.
    #[serde(default = "yes")]
    pub is_equal: bool,
}

fn yes() -> bool {
    true
}

/// A silence, as the API takes and lists it.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Silence {
    /// Its id.
    pub id: String,
    /// What it mutes: alerts matching all of them.
    pub matchers: Vec<Matcher>,
    /// When it began (Unix seconds).
    pub starts_at: i64,
    /// When it ends.
    pub ends_at: i64,
    /// Who made it.
    pub created_by: String,
    /// Why.
    pub comment: String,
    #[serde(skip)]
    compiled: Vec<Option<regex::Regex>>,
}

impl Silence {
    /// A silence of `matchers` from `now` to `ends_at`; a bad regular
    /// expression, an empty list or an end in the past is an error.
    pub fn new(
        id: String,
        matchers: Vec<Matcher>,
        now: i64,
        ends_at: i64,
        created_by: String,
        comment: String,
    ) -> Result<Silence, String> {
        if matchers.is_empty() {
            return Err("a silence needs at least one matcher".to_owned());
        }
        if ends_at <= now {
            return Err("the silence ends before it starts".to_owned());
        }
        let compiled = matchers
            .iter()
            .map(|m| {
                if !m.is_regex {
                    return Ok(None);
                }
                regex::Regex::new(&format!("^(?:{})$", m.value))
                    .map(Some)
                    .map_err(|e| format!("matcher {}: {e}", m.name))
            })
            .collect::<Result<_, _>>()?;
        Ok(Silence {
            id,
            matchers,
            starts_at: now,
            ends_at,
            created_by,
            comment,
            compiled,
        })
    }

    /// Whether it mutes `labels` at `now`.
    pub fn mutes(&self, labels: &BTreeMap<String, String>, now: i64) -> bool {
        if now < self.starts_at || now >= self.ends_at {
            return false;
        }
        self.matchers.iter().zip(&self.compiled).all(|(m, re)| {
            let value = labels.get(&m.name).map_or("", String::as_str);
            let hit = match re {
                Some(re) => re.is_match(value),
                None => value == m.value,
            };
            hit == m.is_equal
        })
    }
}

/// The body Alertmanager's `POST /api/v2/alerts` takes for `alerts` at
/// `now`: firing ones end `hold` seconds ahead unless sent again.
pub fn alertmanager_body(
    alerts: &[Alert],
    now: i64,
    hold: i64,
    generator: &str,
) -> serde_json::Value {
    let items: Vec<serde_json::Value> = alerts
        .iter()
        .filter(|a| a.state != State::Pending)
        .map(|a| {
            let ends = match a.state {
                State::Resolved => a.resolved_at.unwrap_or(now),
                _ => now + hold,
            };
            serde_json::json!({
                "labels": a.labels,
                "annotations": a.annotations,
                "startsAt": rfc3339(a.fired_at.unwrap_or(a.active_at)),
                "endsAt": rfc3339(ends),
                "generatorURL": generator,
            })
        })
        .collect();
    serde_json::Value::Array(items)
}

/// `2026-12-07T17:07:42Z`.
pub fn rfc3339(unix: i64) -> String {
    let days = unix.div_euclid(86_400);
    let secs = unix.rem_euclid(86_400);
    // Civil from days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert(name: &str, bot: &str, state: State, t: i64) -> Alert {
        Alert {
            labels: [
                ("alertname".to_owned(), name.to_owned()),
                ("bot".to_owned(), bot.to_owned()),
            ]
            .into(),
            annotations: [("summary".to_owned(), format!("{name} on {bot}"))].into(),
            state,
            value: 1.0,
            active_at: t,
            fired_at: (state != State::Pending).then_some(t),
            resolved_at: (state == State::Resolved).then_some(t),
            group: "g".to_owned(),
        }
    }

    fn route() -> Route {
        let mut r = Route::default();
        r.group_by = vec!["bot".to_owned()];
        r.group_wait = Duration::from_secs(30);
        r.group_interval = Duration::from_secs(300);
        r.repeat_interval = Duration::from_secs(3600);
        r
    }

    fn names(n: &[Notification]) -> Vec<Vec<(String, State)>> {
        n.iter()
            .map(|n| {
                n.alerts
                    .iter()
                    .map(|a| (a.name().to_owned(), a.state))
                    .collect()
            })
            .collect()
    }

    #[test]
    fn group_wait_gathers_group_interval_throttles_repeat_interval_repeats() {
        let mut g = Grouper::new(route());
        let a = alert("A", "dating", State::Firing, 0);
        let b = alert("B", "dating", State::Firing, 10);
        // Pending alerts are nobody's business.
        assert!(
            g.tick(&[alert("P", "dating", State::Pending, 0)], &|_| false, 0)
                .is_empty()
        );
        assert!(g.tick(std::slice::from_ref(&a), &|_| false, 0).is_empty());
        assert!(
            g.tick(&[a.clone(), b.clone()], &|_| false, 10).is_empty(),
            "waiting"
        );
        let first = g.tick(&[a.clone(), b.clone()], &|_| false, 30);
        assert_eq!(
            names(&first),
            [[
                ("A".to_owned(), State::Firing),
                ("B".to_owned(), State::Firing)
            ]],
            "both in one message after group_wait"
        );
        assert_eq!(first[0].group["bot"], "dating");
        // Nothing new: quiet.
        assert!(g.tick(&[a.clone(), b.clone()], &|_| false, 200).is_empty());
        // B resolves at 240: told at the group interval, not before.
        let b_done = alert("B", "dating", State::Resolved, 240);
        assert!(
            g.tick(&[a.clone(), b_done.clone()], &|_| false, 240)
                .is_empty()
        );
        let second = g.tick(&[a.clone(), b_done.clone()], &|_| false, 330);
        assert_eq!(
            names(&second),
            [[
                ("A".to_owned(), State::Firing),
                ("B".to_owned(), State::Resolved)
            ]]
        );
        // Still firing: repeated after repeat_interval.
        assert!(
            g.tick(std::slice::from_ref(&a), &|_| false, 3000)
                .is_empty()
        );
        assert_eq!(
            names(&g.tick(std::slice::from_ref(&a), &|_| false, 330 + 3600)).len(),
            1
        );
        // Another bot is another group, with its own wait.
        let c = alert("A", "shop", State::Firing, 4000);
        assert!(g.tick(&[a.clone(), c.clone()], &|_| false, 4000).is_empty());
        let third = g.tick(&[a.clone(), c.clone()], &|_| false, 4030);
        assert_eq!(third.len(), 1);
        assert_eq!(third[0].group["bot"], "shop");
        // A resolves; once told, the group ends.
        let a_done = alert("A", "dating", State::Resolved, 5000);
        let told = g.tick(&[a_done, c.clone()], &|_| false, 5000);
        assert_eq!(names(&told), [[("A".to_owned(), State::Resolved)]]);
        assert!(!told[0].firing());
        assert!(
            told[0].text().starts_with("✅ RESOLVED bot=dating"),
            "{}",
            told[0].text()
        );
        assert!(
            g.tick(std::slice::from_ref(&c), &|_| false, 9000).len() == 1,
            "shop repeats, dating is gone"
        );
    }

    #[test]
    fn a_silenced_alert_is_told_neither_firing_nor_resolved() {
        let mut g = Grouper::new(route());
        let a = alert("A", "x", State::Firing, 0);
        let b = alert("B", "x", State::Firing, 0);
        assert!(g.tick(&[a.clone(), b.clone()], &|_| false, 0).is_empty());
        let told = g.tick(&[a.clone(), b.clone()], &|_| false, 30);
        assert_eq!(told[0].alerts.len(), 2);
        // B silenced: no message says it resolved, and a repeat leaves it out.
        let b_muted = |x: &Alert| x.name() == "B";
        assert!(g.tick(&[a.clone(), b.clone()], &b_muted, 400).is_empty());
        let repeat = g.tick(&[a.clone(), b.clone()], &b_muted, 30 + 3600);
        assert_eq!(names(&repeat), [[("A".to_owned(), State::Firing)]]);
        // All silenced: nothing at all.
        assert!(
            g.tick(&[a.clone(), b.clone()], &|_| true, 30 + 7200)
                .is_empty()
        );
    }

    #[test]
    fn an_alert_resolved_before_its_group_was_told_is_never_sent() {
        let mut g = Grouper::new(route());
        assert!(
            g.tick(&[alert("A", "x", State::Firing, 0)], &|_| false, 0)
                .is_empty()
        );
        assert!(
            g.tick(&[alert("A", "x", State::Resolved, 10)], &|_| false, 10)
                .is_empty()
        );
        assert!(g.tick(&[], &|_| false, 60).is_empty());
    }

    #[test]
    fn silences_match_all_their_matchers_while_they_last() {
        let m = |name: &str, value: &str, is_regex: bool, is_equal: bool| Matcher {
            name: name.to_owned(),
            value: value.to_owned(),
            is_regex,
            is_equal,
        };
        let s = Silence::new(
            "1".into(),
            vec![
                m("alertname", "A|B", true, true),
                m("bot", "shop", false, false),
            ],
            100,
            200,
            "ops".into(),
            "deploy".into(),
        )
        .unwrap();
        let labels = |name: &str, bot: &str| alert(name, bot, State::Firing, 0).labels;
        assert!(s.mutes(&labels("A", "dating"), 150));
        assert!(s.mutes(&labels("B", "dating"), 150));
        assert!(
            !s.mutes(&labels("AB", "dating"), 150),
            "the regex matches whole"
        );
        assert!(!s.mutes(&labels("A", "shop"), 150));
        assert!(!s.mutes(&labels("A", "dating"), 200), "over");
        assert!(
            Silence::new(
                "2".into(),
                vec![m("a", "(", true, true)],
                0,
                10,
                String::new(),
                String::new()
            )
            .is_err()
        );
        assert!(Silence::new("3".into(), vec![], 0, 10, String::new(), String::new()).is_err());
    }

    #[test]
    fn times_are_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_796_663_262), "2026-12-07T17:07:42Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn alertmanager_gets_firing_alerts_ending_ahead_and_resolved_ones_ended() {
        let body = alertmanager_body(
            &[
                alert("A", "x", State::Firing, 100),
                alert("B", "x", State::Resolved, 150),
                alert("C", "x", State::Pending, 150),
            ],
            200,
            240,
            "http://127.0.0.1:8001/api/v1/alerts",
        );
        let items = body.as_array().unwrap();
        assert_eq!(items.len(), 2);
        assert_eq!(items[0]["endsAt"], rfc3339(440));
        assert_eq!(items[1]["endsAt"], rfc3339(150));
        assert_eq!(items[0]["labels"]["alertname"], "A");
    }
}
