//! `[telegram]`: the Bot API client and the send limits.

use std::time::Duration;

use botfleet_config::{SendLimit, SendLimits, TELEGRAM_API_URL};

use crate::{MINIMAL, errors, parse};

#[test]
fn defaults_are_telegrams_own() {
    let config = parse(MINIMAL).unwrap();
    assert_eq!(config.telegram.api_url, TELEGRAM_API_URL);
    assert_eq!(config.telegram.limits, SendLimits::default());
    assert_eq!(config.telegram.max_in_flight, 64);
}

#[test]
fn the_file_sets_the_url_the_client_and_the_limits() {
    let text = format!(
        r#"[telegram]
api_url = "http://127.0.0.1:8081/"
timeout = "10s"
max_in_flight = 16
attempts = 3
first_backoff = "100ms"
[telegram.limits]
group = "10/1m"
token = "25/1s"
{MINIMAL}"#
    );
    let t = parse(&text).unwrap().telegram;
    assert_eq!(
        t.api_url, "http://127.0.0.1:8081",
        "the trailing slash goes"
    );
    assert_eq!(t.timeout, Duration::from_secs(10));
    assert_eq!((t.max_in_flight, t.attempts), (16, 3));
    assert_eq!(t.first_backoff, Duration::from_millis(100));
    assert_eq!(
        t.limits.group,
        SendLimit {
            max: 10,
            window: Duration::from_secs(60)
        }
    );
    assert_eq!(t.limits.token.max, 25);
    assert_eq!(
        t.limits.chat,
        SendLimits::default().chat,
        "not given: default"
    );
    // `config show` writes the limits back the way the file takes them.
    let shown = parse(&text).unwrap().to_redacted_toml();
    assert!(shown.contains("group = \"10/1m\""), "{shown}");
    assert!(shown.contains("paid = \"1000/1s\""), "{shown}");
}

#[test]
fn bad_values_say_what_and_where() {
    let text = format!(
        r#"[telegram]
api_url = "http://api.example.org"
max_in_flight = 0
[telegram.limits]
chat = "1 per second"
group = "0/1m"
tokn = "30/1s"
{MINIMAL}"#
    );
    let e = errors(&text);
    expect_test::expect![[r#"
        fleet.toml:2:11: telegram.api_url: the Bot API is reached over HTTPS: the url must start with https:// (http:// is accepted for 127.0.0.1 and localhost, for the emulator)
        fleet.toml:3:17: telegram.max_in_flight: must be between 1 and 10000, found 0
        fleet.toml:5:8: telegram.limits.chat: expected MAX/WINDOW, such as "20/1m" or "30/1s", with MAX at least 1, found "1 per second"
        fleet.toml:6:9: telegram.limits.group: expected MAX/WINDOW, such as "20/1m" or "30/1s", with MAX at least 1, found "0/1m"
        fleet.toml:7:1: telegram.limits.tokn: unknown key `tokn` (did you mean `token`?)"#]]
    .assert_eq(&e);
}
