//! Every kind of error, with its `fleet.toml:LINE:COL`.

use expect_test::expect;

use crate::{MINIMAL, errors, parse};

#[test]
fn minimal_file_is_valid() {
    let config = parse(MINIMAL).unwrap();
    assert_eq!(config.bots.len(), 1);
    assert_eq!(config.bots[0].name, "dating");
    assert_eq!(config.bots[0].worker.command, "dating-bot");
}

#[test]
fn syntax_error() {
    expect![[r#"fleet.toml:2:10: TOML syntax error: invalid basic string, expected `"`"#]]
        .assert_eq(&errors("[[bot]]\nname = \"x\n"));
    expect!["fleet.toml:3:1: TOML syntax error: duplicate key"].assert_eq(&errors(
        "[monitor]\nbind = \"127.0.0.1:1\"\nbind = \"127.0.0.1:2\"\n",
    ));
}

#[test]
fn unknown_keys_with_and_without_suggestion() {
    let bot = MINIMAL.replace("[bot.worker]", "min_worker = 1\ncolour = 1\n[bot.worker]");
    let text = format!(
        "enviroment = \"dev\"\n[databse]\nurl = \"sqlite::memory:\"\n{bot}[bot.worker.opts]\n"
    );
    expect![[r#"
        fleet.toml:1:1: enviroment: unknown key `enviroment` (did you mean `environment`?)
        fleet.toml:2:2: databse: unknown key `databse` (did you mean `database`?)
        fleet.toml:7:1: bot[0].min_worker: unknown key `min_worker` (did you mean `min_workers`?)
        fleet.toml:8:1: bot[0].colour: unknown key `colour`; the keys here are `db_weight`, `handling_deadline`, `heartbeat_interval`, `max_attempts`, `max_workers`, `min_workers`, `mode`, `name`, `ready_timeout`, `restart`, `scaling`, `shutdown_grace`, `token`, `webhook`, `worker`
        fleet.toml:11:13: bot[0].worker.opts: unknown key `opts`; the keys here are `args`, `command`, `env`"#]]
    .assert_eq(&errors(&text));
}

#[test]
fn wrong_types() {
    let text = r#"environment = 3
[redis]
url = ["redis://x"]
[bot]
name = "x"
"#;
    expect![[r#"
        fleet.toml:1:15: environment: expected a string, found an integer
        fleet.toml:3:7: redis.url: expected a string, found an array
        fleet.toml:4:1: bot: expected an array of tables: write `[[bot]]`, not `[bot]`"#]]
    .assert_eq(&errors(text));

    let text = MINIMAL.replace(
        "[bot.worker]",
        "min_workers = \"2\"\nmax_workers = 2.5\n[bot.worker]\nargs = \"--x\"\nenv = { A = 1 }",
    );
    expect![[r#"
        fleet.toml:4:15: bot[0].min_workers: expected an integer, found a string (write 2, without quotes)
        fleet.toml:5:15: bot[0].max_workers: expected an integer, found a float
        fleet.toml:7:8: bot[0].worker.args: expected an array of strings, found a string
        fleet.toml:8:13: bot[0].worker.env.A: expected a string, found an integer"#]]
    .assert_eq(&errors(&text));
}

#[test]
fn out_of_range_values() {
    let text = MINIMAL.replace(
        "[bot.worker]",
        "min_workers = 0\nmax_workers = 5000\n[bot.worker]",
    );
    expect![[r#"
        fleet.toml:4:15: bot[0].min_workers: must be between 1 and 1024, found 0
        fleet.toml:5:15: bot[0].max_workers: must be between 1 and 1024, found 5000"#]]
    .assert_eq(&errors(&text));
}

#[test]
fn min_workers_above_max_workers() {
    let text = MINIMAL.replace(
        "[bot.worker]",
        "min_workers = 5\nmax_workers = 2\n[bot.worker]",
    );
    expect!["fleet.toml:4:15: bot[0].min_workers: min_workers (5) is greater than max_workers (2)"]
        .assert_eq(&errors(&text));
}

#[test]
fn duplicate_bot_names_and_tokens() {
    let text = format!("{MINIMAL}{MINIMAL}");
    expect![[r#"
        fleet.toml:7:8: bot[1].name: duplicate bot name `dating` (first used on line 2)
        fleet.toml:8:9: bot[1].token: the same token is used by bot `dating` (line 3); Telegram allows one update consumer per token"#]]
    .assert_eq(&errors(&text));
}

#[test]
fn malformed_tokens() {
    let text = MINIMAL.replace("${TOKEN_A}", "123:abc");
    expect!["fleet.toml:3:9: bot[0].token: malformed bot token: the part after `:` has 3 characters, not 35; expected `<bot id>:<35 characters of A-Z a-z 0-9 _ ->`"]
        .assert_eq(&errors(&text));
    let text = MINIMAL.replace(
        "${TOKEN_A}",
        "bot110201543:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw1",
    );
    expect!["fleet.toml:3:9: bot[0].token: malformed bot token: the part before `:` must be the bot's numeric id; expected `<bot id>:<35 characters of A-Z a-z 0-9 _ ->`"]
        .assert_eq(&errors(&text));
}

#[test]
fn missing_and_malformed_variables() {
    let text = MINIMAL.replace("${TOKEN_A}", "${DATING_TOKEN}").replace(
        "command = \"dating-bot\"",
        "command = \"${BIN_DIR}/dating-bot\"\nargs = [\"${LOCALE\", \"${}\"]",
    );
    expect![[r#"
        fleet.toml:3:9: bot[0].token: environment variable `DATING_TOKEN` is not set (set it, or give a default with `${DATING_TOKEN:-default}`)
        fleet.toml:5:11: bot[0].worker.command: environment variable `BIN_DIR` is not set (set it, or give a default with `${BIN_DIR:-default}`)
        fleet.toml:6:9: bot[0].worker.args[0]: `${` is not closed by `}` (write `$$` for a literal `$`)
        fleet.toml:6:21: bot[0].worker.args[1]: `${}` is not a valid variable reference (names use A-Z, a-z, 0-9 and _, and do not start with a digit)"#]]
    .assert_eq(&errors(&text));
}

#[test]
fn unknown_enum_values() {
    let text = format!(
        "environment = \"production\"\n{}",
        MINIMAL.replace("[bot.worker]", "mode = \"pull\"\n[bot.worker]")
    );
    expect![[r#"
        fleet.toml:1:15: environment: unknown value `production` (did you mean `prod`?); expected one of `dev`, `staging`, `prod`, `high-performance`
        fleet.toml:5:8: bot[0].mode: unknown value `pull`; expected one of `polling`, `webhook`"#]]
    .assert_eq(&errors(&text));
}

#[test]
fn webhook_rules() {
    let text = MINIMAL.replace("[bot.worker]", "mode = \"webhook\"\n[bot.worker]");
    expect![[r#"fleet.toml:4:8: bot[0].mode: mode = "webhook" needs a [bot.webhook] table with `url` and `secret_token`"#]]
        .assert_eq(&errors(&text));

    let text = format!(
        "{MINIMAL}[bot.webhook]\nurl = \"https://x.example/hook\"\nsecret_token = \"abc\"\n"
    );
    expect![[r#"fleet.toml:6:1: bot[0].webhook: webhook settings are given but the bot's mode is "polling"; set mode = "webhook" or remove them"#]]
        .assert_eq(&errors(&text));

    let text = format!(
        "{}[bot.webhook]\nurl = \"http://bots.example/hook\"\nlisten = \"localhost:80\"\nsecret_token = \"not secret!\"\n",
        MINIMAL.replace("[bot.worker]", "mode = \"webhook\"\n[bot.worker]")
    );
    expect![[r#"
        fleet.toml:8:7: bot[0].webhook.url: Telegram delivers webhooks over HTTPS only: the url must start with https:// (http:// is accepted for 127.0.0.1 and localhost, for the emulator)
        fleet.toml:9:10: bot[0].webhook.listen: `localhost:80` is not an IP address and port (for example "127.0.0.1:8001" or "[::1]:8001")
        fleet.toml:10:16: bot[0].webhook.secret_token: must be 1 to 256 characters of A-Z a-z 0-9 _ - (Telegram's rule for secret_token)"#]]
    .assert_eq(&errors(&text));

    let text = format!(
        "{}[bot.webhook]\nlisten = \"127.0.0.1:9000\"\n",
        MINIMAL.replace("[bot.worker]", "mode = \"webhook\"\n[bot.worker]")
    );
    expect![[r#"
        fleet.toml:7:1: bot[0].webhook: missing `url`, the public HTTPS address given to setWebhook
        fleet.toml:7:1: bot[0].webhook: missing `secret_token`: without it anyone who finds the URL can post fake updates"#]]
    .assert_eq(&errors(&text));
}

#[test]
fn missing_required_keys() {
    expect![[r#"
        fleet.toml:1:1: bot[0]: missing `name` (a short id such as "dating")
        fleet.toml:1:1: bot[0]: missing `token` (write token = "${BOT_TOKEN}" and set BOT_TOKEN in the environment)
        fleet.toml:1:1: bot[0]: missing [bot.worker] with the `command` that handles this bot's updates"#]]
    .assert_eq(&errors("[[bot]]\nmode = \"polling\"\n"));
    let text = MINIMAL.replace("command = \"dating-bot\"", "args = []");
    expect!["fleet.toml:4:1: bot[0].worker: missing `command`, the worker program to run"]
        .assert_eq(&errors(&text));
    let text = MINIMAL.replace("command = \"dating-bot\"", "command = \" \"");
    expect!["fleet.toml:5:11: bot[0].worker.command: must not be empty"].assert_eq(&errors(&text));
}

#[test]
fn no_bots() {
    expect!["fleet.toml:1:1: the fleet has no bots: add a [[bot]] table with `name`, `token` and [bot.worker]"]
        .assert_eq(&errors("environment = \"dev\"\n"));
}

#[test]
fn bot_names() {
    let text = MINIMAL.replace("name = \"dating\"", "name = \"Dating Bot\"");
    expect!["fleet.toml:2:8: bot[0].name: `Dating Bot` is not a valid bot name: use 1 to 32 lowercase letters, digits, `-` or `_`, starting with a letter (it becomes a metric label and a Redis key prefix)"]
        .assert_eq(&errors(&text));
}

#[test]
fn production_needs_a_database_url() {
    let text = format!("environment = \"prod\"\n{MINIMAL}");
    expect![[r#"fleet.toml:1:15: environment: environment = "prod" needs `database.url` (a PostgreSQL URL such as "${DATABASE_URL}"); only "dev" falls back to the embedded SQLite database"#]]
        .assert_eq(&errors(&text));
    let text = format!("environment = \"staging\"\n[database]\n{MINIMAL}");
    assert!(errors(&text).contains("needs `database.url`"));
}

#[test]
fn urls() {
    let text = format!(
        "[database]\nurl = \"mysql://root:pw@db/x\"\n[redis]\nurl = \"127.0.0.1:6379\"\n{MINIMAL}"
    );
    expect![[r#"
        fleet.toml:2:7: database.url: unsupported URL scheme `mysql`; expected postgres://, postgresql:// or sqlite:
        fleet.toml:4:7: redis.url: not a URL; expected one starting with redis://, rediss://, redis+unix:// or unix://"#]]
    .assert_eq(&errors(&text));
    let text = format!("[redis]\n{MINIMAL}");
    expect![[r#"fleet.toml:1:1: redis: missing `url` (for example "redis://127.0.0.1:6379"); remove the [redis] section to use the in-process cache"#]]
        .assert_eq(&errors(&text));
}

#[test]
fn monitor_rules() {
    let text = format!("[monitor]\nbind = \"0.0.0.0:8001\"\n{MINIMAL}");
    expect!["fleet.toml:2:8: monitor.bind: binding the monitor to 0.0.0.0:8001, which is not a loopback address, requires `monitor.token` (the dashboard shows the fleet's internals)"]
        .assert_eq(&errors(&text));
    let text = format!("[monitor]\nbind = \"0.0.0.0:8001\"\ntoken = \"short\"\n{MINIMAL}");
    expect!["fleet.toml:3:9: monitor.token: must be at least 16 characters long"]
        .assert_eq(&errors(&text));
    let text = format!("[monitor]\nbind = \"8001\"\n{MINIMAL}");
    expect![[r#"fleet.toml:2:8: monitor.bind: `8001` is not an IP address and port (for example "127.0.0.1:8001" or "[::1]:8001")"#]]
        .assert_eq(&errors(&text));
    let text = format!(
        "[monitor]\npoll_interval = \"100ms\"\nretention = \"30d\"\nseries_cap = 5\n{MINIMAL}"
    );
    expect![[r#"
        fleet.toml:2:17: monitor.poll_interval: must be at least 1s, or 0 to poll nothing
        fleet.toml:3:13: monitor.retention: must be between 1h and 168h, found 720h
        fleet.toml:4:14: monitor.series_cap: must be between 100 and 1000000, found 5"#]]
    .assert_eq(&errors(&text));
}

#[test]
fn monitor_keys_are_read() {
    let text = format!(
        "[monitor]\nseries_cap = 500\nstore_series = 300\nretention = \"2h\"\npoll_interval = \"0\"\n{MINIMAL}"
    );
    let parsed = parse(&text).unwrap();
    assert_eq!(parsed.monitor.series_cap, 500);
    assert_eq!(parsed.monitor.store_series, 300);
    assert_eq!(
        parsed.monitor.retention,
        std::time::Duration::from_secs(7200)
    );
    assert!(parsed.monitor.poll_interval.is_zero());
}

#[test]
fn worker_env_names() {
    let text = MINIMAL.replace(
        "command = \"dating-bot\"",
        "command = \"x\"\nenv = { \"A=B\" = \"1\" }",
    );
    expect!["fleet.toml:6:9: bot[0].worker.env: `A=B` is not a valid environment variable name"]
        .assert_eq(&errors(&text));
}

#[test]
fn all_errors_at_once_in_file_order() {
    let text = r#"environment = "prod"
[database]
url = "postgres://u:pw@db/fleet"

[[bot]]
name = "dating"
token = "12345:short"
min_workers = 3
max_workers = 1
[bot.worker]
command = "dating-bot"
[bot.workerr]
"#;
    expect![[r#"
        fleet.toml:7:9: bot[0].token: malformed bot token: the part after `:` has 5 characters, not 35; expected `<bot id>:<35 characters of A-Z a-z 0-9 _ ->`
        fleet.toml:8:15: bot[0].min_workers: min_workers (3) is greater than max_workers (1)
        fleet.toml:12:6: bot[0].workerr: unknown key `workerr` (did you mean `worker`?)"#]]
    .assert_eq(&errors(text));
}

#[test]
fn counts_may_come_from_the_environment() {
    let text = MINIMAL.replace("[bot.worker]", "max_workers = \"${MAX:-7}\"\n[bot.worker]");
    assert_eq!(parse(&text).unwrap().bots[0].max_workers, 7);
    let text = MINIMAL.replace("[bot.worker]", "max_workers = \"${TOKEN_A}\"\n[bot.worker]");
    expect!["fleet.toml:4:15: bot[0].max_workers: expected an integer, but the environment variable `TOKEN_A` does not give one"]
        .assert_eq(&errors(&text));
}

#[test]
fn unreadable_file() {
    let error = botfleet_config::load(std::path::Path::new("does/not/exist.toml")).unwrap_err();
    assert!(matches!(error, botfleet_config::ConfigError::Read { .. }));
    assert_eq!(error.to_string(), "cannot read does/not/exist.toml");
}

#[test]
fn cache_section() {
    let text = format!(
        "[cache]\ncapacity = 0\nttl = \"5 minutes\"\njitter = 0.7\nwarming = \"yes\"\nlease = \"2m\"\nttll = \"1s\"\n[cache.namespace.profiles]\nttl = \"10x\"\nrefresh_ahead = true\n{MINIMAL}"
    );
    expect![[r#"
        fleet.toml:2:12: cache.capacity: must be between 1 and 100000000, found 0
        fleet.toml:3:7: cache.ttl: `5 minutes` is not a duration: write a number and a unit, ms, s, m or h ("250ms", "30s", "5m"), or a number of seconds
        fleet.toml:4:10: cache.jitter: must be between 0 and 0.5, found 0.7
        fleet.toml:5:11: cache.warming: expected a boolean (true or false), found a string
        fleet.toml:6:9: cache.lease: must be between 0 and 1m, found 2m
        fleet.toml:7:1: cache.ttll: unknown key `ttll` (did you mean `ttl`?)
        fleet.toml:9:7: cache.namespace.profiles.ttl: `10x` is not a duration: write a number and a unit, ms, s, m or h ("250ms", "30s", "5m"), or a number of seconds
        fleet.toml:10:17: cache.namespace.profiles.refresh_ahead: expected a number, found a boolean"#]]
    .assert_eq(&errors(&text));
}

#[test]
fn database_settings() {
    let text = format!(
        "[database]\nreserve = -1\n[database.pool]\nmin_connections = 9\nmax_connections = 3\nping_idle_after = \"soon\"\n[database.batcher]\nwhen_full = \"drop\"\nlinger = \"2m\"\n{MINIMAL}"
    );
    expect![[r#"
        fleet.toml:2:11: database.reserve: must be between 0 and 10000, found -1
        fleet.toml:4:19: database.pool.min_connections: min_connections (9) is greater than max_connections (3)
        fleet.toml:6:19: database.pool.ping_idle_after: `soon` is not a duration: write a number and a unit, ms, s, m or h ("250ms", "30s", "5m"), or a number of seconds
        fleet.toml:8:13: database.batcher.when_full: unknown value `drop`; expected one of `wait`, `error`
        fleet.toml:9:10: database.batcher.linger: must be between 0 and 1m, found 2m"#]].assert_eq(&errors(&text));
}
