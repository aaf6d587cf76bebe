//! Secrets never appear in printed configuration or in errors.

use botfleet_config::FleetConfig;

use crate::{TOKEN_A, TOKEN_B, env};

const FILE: &str = r#"environment = "prod"
[database]
url = "postgres://bot:${DB_PASSWORD}@db:5432/fleet?sslmode=require&sslpassword=${DB_PASSWORD}"
[redis]
url = "redis://:redis-secret-pw@127.0.0.1:6379/1"
[monitor]
bind = "0.0.0.0:8001"
token = "monitor-token-0123456789"

[[bot]]
name = "dating"
token = "${TOKEN_A}"
[bot.worker]
command = "dating-bot"
args = ["--token", "${TOKEN_A}", "--verbose"]
env = { API_KEY = "plain-api-key-value", FROM_ENV = "${EXTRA}", LEVEL = "info" }

[[bot]]
name = "analytics"
token = "${TOKEN_B}"
mode = "webhook"
[bot.webhook]
url = "https://bots.example/analytics"
secret_token = "webhook-secret-token"
[bot.worker]
command = "analytics-bot"
"#;

const SECRETS: &[&str] = &[
    TOKEN_A,
    TOKEN_B,
    "AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw1",
    "db-pass-word",
    "redis-secret-pw",
    "monitor-token-0123456789",
    "plain-api-key-value",
    "extra-secret-value",
    "webhook-secret-token",
];

fn config() -> FleetConfig {
    let env = env(&[
        ("TOKEN_A", TOKEN_A),
        ("TOKEN_B", TOKEN_B),
        ("DB_PASSWORD", "db-pass-word"),
        ("EXTRA", "extra-secret-value"),
    ]);
    FleetConfig::parse(FILE, "fleet.toml", &env).unwrap()
}

#[test]
fn redacted_toml_shows_no_secret() {
    let config = config();
    let shown = config.to_redacted_toml();
    for secret in SECRETS {
        assert!(!shown.contains(secret), "{secret} leaked:\n{shown}");
    }
    // The non-secret parts stay readable.
    for visible in [
        "postgres://bot:***@db:5432/fleet?sslmode=require&sslpassword=***",
        "redis://:***@127.0.0.1:6379/1",
        "\"--verbose\"",
        "LEVEL = \"info\"",
        "https://bots.example/analytics",
    ] {
        assert!(shown.contains(visible), "{visible} missing:\n{shown}");
    }
    // It is TOML in the fleet.toml schema: only the redacted values fail.
    let reparsed = FleetConfig::parse(&shown, "shown.toml", &env(&[])).unwrap_err();
    for diagnostic in reparsed.diagnostics() {
        assert!(
            diagnostic.key.ends_with(".token") || diagnostic.key.ends_with("secret_token"),
            "{diagnostic}"
        );
    }
}

#[test]
fn debug_output_shows_no_secret() {
    let debug = format!("{:?}", config());
    for secret in SECRETS {
        assert!(!debug.contains(secret), "{secret} leaked:\n{debug}");
    }
}

#[test]
fn scrub_removes_every_secret() {
    let config = config();
    let text = format!("sent with {TOKEN_A} and webhook-secret-token and db-pass-word");
    assert_eq!(config.scrub(&text), "sent with *** and *** and ***");
}

#[test]
fn errors_never_quote_a_secret() {
    // Secrets in the wrong place: a malformed token, a password in a URL with a
    // bad scheme, a webhook secret with bad characters, a token that is a
    // TOML syntax error.
    let file = r#"[database]
url = "mysql://root:db-pass-word@db/x"
[[bot]]
name = "x"
token = "110201543:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw1-extra"
mode = "webhook"
[bot.webhook]
url = "https://x.example/h"
secret_token = "webhook-secret-token!"
[bot.worker]
command = "x"
"#;
    let shown = FleetConfig::parse(file, "fleet.toml", &env(&[]))
        .unwrap_err()
        .to_string();
    for secret in SECRETS {
        assert!(!shown.contains(secret), "{secret} leaked:\n{shown}");
    }
    let broken = "[[bot]]\ntoken = \"110201543:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw1\n";
    let shown = FleetConfig::parse(broken, "fleet.toml", &env(&[]))
        .unwrap_err()
        .to_string();
    assert!(!shown.contains("AAHdq"), "{shown}");
}
