//! `botfleet rules check|test|export`.

use crate::{TOKEN, botfleet, scratch, stderr, stdout};

const RULES: &str = r#"
[[groups]]
name = "queues"
[[groups.rules]]
alert = "Backlog"
expr = 'max by (bot) (botfleet_queue_depth) > 100'
for = "1m"
labels = { severity = "warning" }
annotations = { summary = "{{ $labels.bot }} has {{ $value }} queued" }
"#;

const TESTS: &str = r#"
rule_files = ["rules.toml"]
evaluation_interval = "15s"

[[tests]]
name = "a backlog that lasts fires, a blip does not"
interval = "15s"
[[tests.input_series]]
series = 'botfleet_queue_depth{bot="dating"}'
values = "0 500 0 0 150x10"
[[tests.input_series]]
series = 'botfleet_queue_depth{bot="shop"}'
values = "0x20"
[[tests.alert_rule_test]]
eval_time = "30s"
alertname = "Backlog"
[[tests.alert_rule_test]]
eval_time = "2m"
alertname = "Backlog"
[[tests.alert_rule_test.exp_alerts]]
exp_labels = { bot = "dating", severity = "warning" }
exp_annotations = { summary = "dating has 150 queued" }
"#;

#[test]
fn rules_are_checked_tested_and_exported_for_promtool() {
    let dir = scratch("rules");
    std::fs::write(dir.join("rules.toml"), RULES).unwrap();
    std::fs::write(dir.join("rules_test.toml"), TESTS).unwrap();
    let out = botfleet(&dir, &["rules", "check", "rules.toml"], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out), "rules.toml: ok: 1 rules in 1 groups\n");

    let out = botfleet(&dir, &["rules", "test", "rules_test.toml"], &[]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    assert!(
        stdout(&out).contains("rules_test.toml: passed: 1 tests, 2 alert checks, 0 failed"),
        "{}",
        stdout(&out)
    );
    // The same test expecting the wrong thing fails, and says what differs.
    std::fs::write(
        dir.join("wrong_test.toml"),
        TESTS.replace("dating has 150 queued", "dating is fine"),
    )
    .unwrap();
    let out = botfleet(&dir, &["rules", "test", "wrong_test.toml"], &[]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let said = stdout(&out);
    assert!(said.contains("FAILED wrong_test.toml:"), "{said}");
    assert!(
        said.contains("expected firing, not found: {bot=\"dating\", severity=\"warning\"}"),
        "{said}"
    );
    assert!(said.contains("firing, not expected:"), "{said}");

    // Exported, Prometheus's own checker accepts the file's rules and the
    // built-in pack (botfleet's anomalous() rules left out, said so).
    let fleet = format!(
        "[[bot]]\nname = \"echo\"\ntoken = \"{TOKEN}\"\nworker.command = \"true\"\n[alerts]\nrule_files = [\"rules.toml\"]\n"
    );
    std::fs::write(dir.join("fleet.toml"), fleet).unwrap();
    let out = botfleet(&dir, &["rules", "export", "--config", "fleet.toml"], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let yaml = stdout(&out);
    assert!(
        yaml.contains("alert: \"Backlog\"") && yaml.contains("alert: \"BotFailed\""),
        "{yaml}"
    );
    assert!(
        yaml.contains("# Left out (botfleet's anomalous()"),
        "{yaml}"
    );
    let (ok, said) = botfleet_testkit::check_rules(&yaml).unwrap();
    assert!(ok, "promtool check rules: {said}\n{yaml}");
    let out = botfleet(&dir, &["rules", "check", "--config", "fleet.toml"], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stdout(&out).starts_with("fleet.toml: ok: "),
        "{}",
        stdout(&out)
    );
}

#[test]
fn bad_rules_say_what_and_where_and_stop_run() {
    let dir = scratch("rules-bad");
    std::fs::write(
        dir.join("rules.toml"),
        RULES
            .replace("> 100", "> ")
            .replace("{{ $value }}", "{{ .Value }}"),
    )
    .unwrap();
    let out = botfleet(&dir, &["rules", "check", "rules.toml"], &[]);
    assert_eq!(out.status.code(), Some(64));
    assert!(
        stderr(&out).contains("rules.toml:6:8: groups[0].rules[0].expr: not valid PromQL"),
        "{}",
        stderr(&out)
    );
    // Valid PromQL that botfleet cannot evaluate, and a template it cannot
    // fill, are refused too.
    std::fs::write(
        dir.join("rules.toml"),
        RULES.replace("{{ $value }}", "{{ .Value }}"),
    )
    .unwrap();
    let out = botfleet(&dir, &["rules", "check", "rules.toml"], &[]);
    assert_eq!(out.status.code(), Some(64));
    assert!(
        stderr(&out).contains("rules.toml:6 (alert Backlog, group queues): summary:"),
        "{}",
        stderr(&out)
    );
    let fleet = format!(
        "[[bot]]\nname = \"echo\"\ntoken = \"{TOKEN}\"\nworker.command = \"true\"\n[alerts]\nrule_files = [\"rules.toml\"]\n"
    );
    std::fs::write(dir.join("fleet.toml"), fleet).unwrap();
    let out = botfleet(&dir, &["run", "fleet.toml", "--data-dir", "data"], &[]);
    assert_eq!(out.status.code(), Some(64), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("the alert rules of fleet.toml are invalid"),
        "{}",
        stderr(&out)
    );
}
