//! Arbitrary input never panics, and every error points inside the file.

use botfleet_config::FleetConfig;
use proptest::prelude::*;

use crate::env;

const HEADERS: &[&str] = &[
    "[database]",
    "[redis]",
    "[monitor]",
    "[[bot]]",
    "[bot.worker]",
    "[bot.webhook]",
    "[bot.worker.env]",
    "[bot]",
    "[[database]]",
    "[cache]",
];
const KEYS: &[&str] = &[
    "environment",
    "url",
    "bind",
    "token",
    "name",
    "mode",
    "min_workers",
    "max_workers",
    "command",
    "args",
    "env",
    "listen",
    "secret_token",
    "worker",
    "webhook",
    "database.url",
    "worker.command",
    "\"quoted key\"",
    "x",
];
const VALUES: &[&str] = &[
    "\"dev\"",
    "\"prod\"",
    "\"high-performance\"",
    "1",
    "0",
    "-1",
    "9999999999999999999",
    "1.5",
    "true",
    "1979-05-27T07:32:00Z",
    "[]",
    "[\"a\", 1]",
    "{}",
    "{ command = \"x\" }",
    "\"${TOKEN_A}\"",
    "\"${MISSING}\"",
    "\"${\"",
    "\"$${X}\"",
    "\"${X:-}\"",
    "\"polling\"",
    "\"webhook\"",
    "\"127.0.0.1:8001\"",
    "\"0.0.0.0:1\"",
    "\"postgres://u:p@h/d\"",
    "\"redis://h\"",
    "\"110201543:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw1\"",
    "\"é\"",
    "'lit'",
    "\"\"\"multi\nline\"\"\"",
];

fn line() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(HEADERS).prop_map(str::to_owned),
        (prop::sample::select(KEYS), prop::sample::select(VALUES))
            .prop_map(|(k, v)| format!("{k} = {v}")),
        "[ -~]{0,30}",
        Just(String::new()),
    ]
}

fn check(text: &str) {
    let result = FleetConfig::parse(text, "fleet.toml", &env(&[("TOKEN_A", crate::TOKEN_A)]));
    match result {
        Ok(config) => {
            assert!(!config.bots.is_empty());
            let shown = config.to_redacted_toml();
            assert!(
                !shown.contains("AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw1"),
                "{shown}"
            );
        }
        Err(error) => {
            let lines = text.split('\n').count();
            assert!(!error.diagnostics().is_empty());
            for d in error.diagnostics() {
                assert!(
                    d.position.line >= 1 && d.position.line <= lines,
                    "{d} in {text:?}"
                );
                assert!(d.position.column >= 1, "{d}");
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_text_never_panics(text in any::<String>()) {
        check(&text);
    }

    #[test]
    fn arbitrary_toml_like_files_never_panic(lines in prop::collection::vec(line(), 0..24)) {
        check(&lines.join("\n"));
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        check(&String::from_utf8_lossy(&bytes));
    }
}
