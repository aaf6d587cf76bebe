//! `botfleet config check` and `botfleet config show`.

use expect_test::expect;

use crate::{TOKEN, botfleet, scratch, stderr, stdout};

const VALID: &str = r#"environment = "prod"
[database]
url = "postgres://bot:${DB_PASSWORD}@127.0.0.1:5432/fleet"

[[bot]]
name = "dating"
token = "${DATING_TOKEN}"
[bot.worker]
command = "dating-bot"
env = { DATABASE_URL = "postgres://bot:${DB_PASSWORD}@127.0.0.1/fleet" }
"#;

#[test]
fn check_accepts_the_example_config() {
    let examples = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples");
    let output = botfleet(
        std::path::Path::new(examples),
        &["config", "check", "fleet.toml"],
        &[],
    );
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    expect![[r#"
        fleet.toml: ok: environment "prod", 2 bots (dating, analytics), 4 to 9 workers, PostgreSQL, Redis, monitor on 127.0.0.1:8001
    "#]]
    .assert_eq(&stdout(&output));
}

#[test]
fn check_reports_every_mistake_and_exits_64() {
    let dir = scratch("three-mistakes");
    std::fs::write(
        dir.join("fleet.toml"),
        r#"environment = "prod"
[database]
url = "postgres://127.0.0.1/fleet"

[[bot]]
name = "dating"
token = "12345:not-a-token"
min_workers = 4
max_workers = 2
[bot.worker]
comand = "dating-bot"
"#,
    )
    .unwrap();
    let output = botfleet(&dir, &["config", "check"], &[]);
    assert_eq!(output.status.code(), Some(64));
    assert_eq!(stdout(&output), "");
    expect![[r#"
        fleet.toml:7:9: bot[0].token: malformed bot token: the part after `:` has 11 characters, not 35; expected `<bot id>:<35 characters of A-Z a-z 0-9 _ ->`
        fleet.toml:8:15: bot[0].min_workers: min_workers (4) is greater than max_workers (2)
        fleet.toml:10:1: bot[0].worker: missing `command`, the worker program to run
        fleet.toml:11:1: bot[0].worker.comand: unknown key `comand` (did you mean `command`?)
        error: fleet.toml has 4 problems
    "#]]
    .assert_eq(&stderr(&output));
}

#[test]
fn missing_file_exits_66_and_says_why() {
    let dir = scratch("missing");
    let output = botfleet(&dir, &["config", "check", "nope.toml"], &[]);
    assert_eq!(output.status.code(), Some(66));
    expect![[r#"
        error: cannot load the fleet configuration (give its path, or set BOTFLEET_CONFIG): cannot read nope.toml: No such file or directory (os error 2)
    "#]]
    .assert_eq(&stderr(&output));
}

#[test]
fn the_file_can_come_from_botfleet_config() {
    let dir = scratch("env-file");
    std::fs::write(dir.join("my-fleet.toml"), VALID).unwrap();
    let vars = [
        ("BOTFLEET_CONFIG", "my-fleet.toml"),
        ("DATING_TOKEN", TOKEN),
        ("DB_PASSWORD", "pw-123456"),
    ];
    let output = botfleet(&dir, &["config", "check"], &vars);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(stdout(&output).starts_with("my-fleet.toml: ok: "));
}

#[test]
fn show_prints_the_resolved_config_without_secrets() {
    let dir = scratch("show");
    std::fs::write(dir.join("fleet.toml"), VALID).unwrap();
    let vars = [
        ("DATING_TOKEN", TOKEN),
        ("DB_PASSWORD", "pw-123456"),
        ("RUST_LOG", "trace"),
    ];
    let output = botfleet(&dir, &["-vvv", "config", "show"], &vars);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    expect![[r##"
        # Resolved configuration (environment = "prod"); secrets are shown as ***.
        environment = "prod"

        [database]
        url = "postgres://bot:***@127.0.0.1:5432/fleet"
        reserve = 5
        slow_query = "250ms"
        slow_query_log_interval = "1m"
        explain_slow_queries = true

        [database.pool]
        min_connections = 1
        max_connections = 10
        acquire_timeout = "2s"
        idle_timeout = "10m"
        max_lifetime = "30m"
        ping_idle_after = "1m"
        connect_timeout = "2s"
        statement_timeout = "5s"

        [database.batcher]
        max_rows = 100
        linger = "10ms"
        queue = 10000
        when_full = "wait"

        [monitor]
        bind = "127.0.0.1:8001"
        series_cap = 10000
        store_series = 2000
        retention = "24h"
        poll_interval = "5s"

        [cache]
        capacity = 50000
        ttl = "5m"
        negative_ttl = "30s"
        jitter = 0.1
        refresh_ahead = 0.2
        max_value_bytes = 1048576
        lease = "2s"
        redis_timeout = "250ms"
        redis_probe_interval = "1s"
        warming = true
        prefetch = true

        [telegram]
        api_url = "https://api.telegram.org"
        timeout = "30s"
        max_in_flight = 64
        attempts = 8
        first_backoff = "500ms"

        [telegram.limits]
        chat = "1/1s"
        group = "20/1m"
        token = "30/1s"
        paid = "1000/1s"

        [[bot]]
        name = "dating"
        token = "***"
        mode = "polling"
        min_workers = 2
        max_workers = 8
        db_weight = 1.0
        heartbeat_interval = "1s"
        ready_timeout = "10s"
        shutdown_grace = "10s"
        handling_deadline = "1m"
        max_attempts = 3

        [bot.worker]
        command = "dating-bot"
        args = []

        [bot.worker.env]
        DATABASE_URL = "***"

        [bot.restart]
        intensity = 5
        period = "10s"
        first_backoff = "100ms"
        max_backoff = "10s"
        failed_retry = "1m"
        failed_retry_max = "30m"

        [bot.scaling]
        target_queue_per_worker = 10
        target_latency = "200ms"
        tick = "1s"
        scale_down_window = "1m"

        [alerts]
        interval = "10s"
        default_rules = true
        rule_files = []

        [alerts.route]
        group_by = ["alertname", "bot"]
        group_wait = "30s"
        group_interval = "5m"
        repeat_interval = "4h"
    "##]]
    .assert_eq(&stdout(&output));
    let all = format!("{}{}", stdout(&output), stderr(&output));
    assert!(
        stderr(&output).contains("Loaded the fleet configuration."),
        "{all}"
    );
    for secret in [TOKEN, &TOKEN[10..], "pw-123456"] {
        assert!(!all.contains(secret), "{secret} leaked:\n{all}");
    }
}

#[test]
fn errors_and_logs_never_show_a_token() {
    let dir = scratch("leak");
    // A token with one character too many, a token in a syntax error, and a
    // token in an unknown key's value.
    let almost = format!("{TOKEN}x");
    std::fs::write(
        dir.join("fleet.toml"),
        format!("[[bot]]\nname = \"a\"\ntoken = \"{almost}\"\ntokn = \"{TOKEN}\"\n[bot.worker]\ncommand = \"x\"\n"),
    )
    .unwrap();
    std::fs::write(
        dir.join("broken.toml"),
        format!("[[bot]]\ntoken = \"{TOKEN}\n"),
    )
    .unwrap();
    for file in ["fleet.toml", "broken.toml"] {
        let output = botfleet(
            &dir,
            &["-vvv", "config", "show", file],
            &[("RUST_LOG", "trace")],
        );
        assert_eq!(output.status.code(), Some(64));
        let all = format!("{}{}", stdout(&output), stderr(&output));
        assert!(all.contains(&format!("{file}:")), "{all}");
        assert!(!all.contains(&TOKEN[10..]), "token leaked:\n{all}");
    }
}

#[test]
fn usage_errors_exit_64_and_help_exits_0() {
    let dir = scratch("usage");
    let output = botfleet(&dir, &["config", "frobnicate"], &[]);
    assert_eq!(output.status.code(), Some(64));
    assert!(
        stderr(&output).contains("unrecognized subcommand"),
        "{}",
        stderr(&output)
    );
    let output = botfleet(&dir, &["config", "--help"], &[]);
    assert_eq!(output.status.code(), Some(0));
    assert!(stdout(&output).contains("check"));
    let output = botfleet(&dir, &["-v", "-q", "config", "check"], &[]);
    assert_eq!(output.status.code(), Some(64));
}

#[test]
fn a_bad_log_filter_is_reported_not_fatal() {
    let examples = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples");
    let output = botfleet(
        std::path::Path::new(examples),
        &["config", "check"],
        &[("BOTFLEET_LOG", "botfleet=loud")],
    );
    assert_eq!(output.status.code(), Some(0));
    assert!(
        stderr(&output).contains("ignoring BOTFLEET_LOG"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn check_warns_of_a_worker_command_that_is_not_found() {
    let dir = scratch("command-not-found");
    std::fs::write(
        dir.join("fleet.toml"),
        format!(
            r#"[[bot]]
name = "typo"
token = "{TOKEN}"
[bot.worker]
command = "pyhton3"

[[bot]]
name = "path"
token = "110201544:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw2"
[bot.worker]
command = "./bots/worker.py"

[[bot]]
name = "fine"
token = "110201545:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw3"
[bot.worker]
command = "sh"
"#
        ),
    )
    .unwrap();
    let output = botfleet(&dir, &["config", "check"], &[]);
    // Valid, so exit 0, but said.
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    expect![[r#"
        fleet.toml: warning: bot `typo`: worker command `pyhton3` is not found in PATH; its workers cannot start
        fleet.toml: warning: bot `path`: worker command `./bots/worker.py`: No such file or directory (os error 2); its workers cannot start
    "#]]
    .assert_eq(&stderr(&output));
}

#[test]
fn only_a_regular_file_of_at_most_1_mib_is_read() {
    let dir = scratch("odd-files");
    #[expect(
        clippy::disallowed_methods,
        reason = "the test makes a FIFO with the system's tool"
    )]
    let made = std::process::Command::new("mkfifo")
        .arg(dir.join("fifo.toml"))
        .status()
        .unwrap();
    assert!(made.success());
    std::fs::create_dir(dir.join("dir.toml")).unwrap();
    std::fs::write(dir.join("big.toml"), vec![b'#'; 2 << 20]).unwrap();
    for (file, words) in [
        // A FIFO nobody writes to would block the read forever.
        (
            "fifo.toml",
            "it is not a regular file (a FIFO, socket or device)",
        ),
        // A device that never ends would be read until memory runs out.
        (
            "/dev/zero",
            "it is not a regular file (a FIFO, socket or device)",
        ),
        ("dir.toml", "it is a directory"),
        (
            "big.toml",
            "it has 2097152 bytes; a fleet file is at most 1048576 bytes (1 MiB)",
        ),
    ] {
        let output = botfleet(&dir, &["config", "check", file], &[]);
        assert_eq!(
            output.status.code(),
            Some(66),
            "{file}: {}",
            stderr(&output)
        );
        assert!(
            stderr(&output).contains(words),
            "{file}: {}",
            stderr(&output)
        );
    }
}

#[test]
fn a_file_that_is_not_utf8_is_reported_at_its_first_bad_byte() {
    let dir = scratch("not-utf8");
    let mut text = format!("[[bot]]\nname = \"echo\"\ntoken = \"{TOKEN}\"\n").into_bytes();
    text.extend_from_slice(b"# caf\xe9\n");
    std::fs::write(dir.join("fleet.toml"), text).unwrap();
    let output = botfleet(&dir, &["config", "check"], &[]);
    assert_eq!(output.status.code(), Some(64), "{}", stderr(&output));
    expect![[r#"
        fleet.toml:4:6: the file is not UTF-8: byte 0xe9 cannot start or continue a character here (save it as UTF-8)
        error: fleet.toml has 1 problem
    "#]]
    .assert_eq(&stderr(&output));
}

#[test]
fn defaults_may_nest_and_a_bad_default_is_named_as_such() {
    let dir = scratch("nested-defaults");
    std::fs::write(
        dir.join("fleet.toml"),
        r#"[[bot]]
name = "echo"
token = "${ECHO_TOKEN:-${FLEET_TOKEN}}"
min_workers = "${WORKERS:-two}"
[bot.worker]
command = "sh"
"#,
    )
    .unwrap();
    let output = botfleet(&dir, &["config", "check"], &[("FLEET_TOKEN", TOKEN)]);
    assert_eq!(output.status.code(), Some(64), "{}", stderr(&output));
    expect![[r#"
        fleet.toml:4:15: bot[0].min_workers: expected an integer, but the default "two" (`WORKERS` is not set or empty) does not give one
        error: fleet.toml has 1 problem
    "#]]
    .assert_eq(&stderr(&output));
    let output = botfleet(
        &dir,
        &["config", "check"],
        &[("FLEET_TOKEN", TOKEN), ("WORKERS", "2")],
    );
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(!stderr(&output).contains(TOKEN));
}
