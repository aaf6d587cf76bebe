//! `[alerts]` and rule files.

use std::time::Duration;

use botfleet_config::parse_rules;

use crate::{MINIMAL, env, errors, parse};

#[test]
fn defaults_load_the_built_in_rules_with_alertmanagers_timers() {
    let a = parse(MINIMAL).unwrap().alerts;
    assert!(a.default_rules);
    assert_eq!(a.interval, Duration::from_secs(10));
    assert_eq!(a.route.group_by, ["alertname", "bot"]);
    assert_eq!(a.route.group_wait, Duration::from_secs(30));
    assert_eq!(a.route.group_interval, Duration::from_secs(300));
    assert_eq!(a.route.repeat_interval, Duration::from_secs(4 * 3600));
    assert!(a.groups.is_empty() && a.telegram.is_empty() && a.alertmanager.is_empty());
}

#[test]
fn rules_receivers_and_route_are_read() {
    let text = format!(
        r#"{MINIMAL}
[alerts]
interval = "5s"
default_rules = false
rule_files = ["more.toml"]
route.group_wait = "10s"
route.group_by = ["alertname"]
[[alerts.telegram]]
bot = "dating"
chat_id = -100200300
[[alerts.alertmanager]]
url = "http://127.0.0.1:9093/"
[[alerts.groups]]
name = "dating"
labels = {{ team = "dates" }}
[[alerts.groups.rules]]
alert = "DatingSlow"
expr = 'histogram_quantile(0.99, sum by (le) (rate(botfleet_update_seconds_bucket{{bot="dating"}}[5m]))) > 0.5'
for = "2m"
keep_firing_for = "1m"
labels = {{ severity = "page" }}
annotations = {{ summary = "p99 of {{{{ $labels.bot }}}} is {{{{ $value }}}}" }}
"#
    );
    let a = parse(&text).unwrap().alerts;
    assert_eq!(a.interval, Duration::from_secs(5));
    assert!(!a.default_rules);
    assert_eq!(a.rule_files, ["more.toml"]);
    assert_eq!(a.route.group_wait, Duration::from_secs(10));
    assert_eq!(a.route.group_by, ["alertname"]);
    assert_eq!(
        (a.telegram[0].bot.as_str(), a.telegram[0].chat_id),
        ("dating", -100200300)
    );
    assert_eq!(a.alertmanager[0].url, "http://127.0.0.1:9093");
    let rule = &a.groups[0].rules[0];
    assert_eq!(
        a.groups[0].labels,
        [("team".to_owned(), "dates".to_owned())]
    );
    assert_eq!(rule.alert, "DatingSlow");
    assert_eq!(rule.for_, Duration::from_secs(120));
    assert_eq!(rule.keep_firing_for, Duration::from_secs(60));
    assert_eq!(
        rule.annotations[0].1,
        "p99 of {{ $labels.bot }} is {{ $value }}"
    );
    assert!(rule.origin.starts_with("fleet.toml:"), "{}", rule.origin);
}

#[test]
fn bad_rules_and_receivers_say_what_and_where() {
    let text = format!(
        r#"{MINIMAL}
[alerts]
[[alerts.telegram]]
bot = "nobody"
chat_id = 1
[[alerts.alertmanager]]
url = "127.0.0.1:9093/api"
[[alerts.groups]]
name = "g"
[[alerts.groups.rules]]
alert = "Broken"
expr = "rate(x[5m]) >"
[[alerts.groups.rules]]
record = "job:x:rate"
alert = "9lives"
expr = "x"
"#
    );
    let e = errors(&text);
    assert!(
        e.contains("alerts.telegram[0].bot: no bot is named `nobody`"),
        "{e}"
    );
    assert!(
        e.contains(
            "alerts.alertmanager[0].url: `127.0.0.1:9093/api` is not an Alertmanager address"
        ),
        "{e}"
    );
    assert!(
        e.contains("alerts.groups[0].rules[0].expr: not valid PromQL"),
        "{e}"
    );
    assert!(e.contains("recording rules are not supported"), "{e}");
    assert!(e.contains("`9lives` is not a valid alert name"), "{e}");
    // Each with its line.
    assert!(e.lines().all(|l| l.starts_with("fleet.toml:")), "{e}");
}

#[test]
fn a_rules_file_holds_groups_and_reports_its_own_name() {
    let ok = parse_rules(
        "[[groups]]\nname = \"a\"\n[[groups.rules]]\nalert = \"Up\"\nexpr = \"up == 0\"\nfor = \"1m\"\n",
        "rules.toml",
        &env(&[]),
    )
    .unwrap();
    assert_eq!(ok[0].rules[0].origin, "rules.toml:5");
    let e = parse_rules(
        "[[groups]]\nname = \"a\"\n[[groups]]\nname = \"a\"\nrules = []\nextra = 1\n",
        "rules.toml",
        &env(&[]),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("rules.toml:4:8: groups[1].name: a second group named `a`"),
        "{e}"
    );
    assert!(e.contains("groups[1].extra"), "{e}");
}
