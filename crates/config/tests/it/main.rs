//! Integration tests of `botfleet-config`: one module per area.

mod alerts;
mod errors;
mod logs;
mod presets;
mod properties;
mod secrets;
mod telegram;

use std::collections::HashMap;

use botfleet_config::{ConfigError, FleetConfig};

pub(crate) const TOKEN_A: &str = "110201543:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw1";
pub(crate) const TOKEN_B: &str = "220302654:AAGjJ7rRq6cl8mTnUf0m8l6rHd0qXz3xYp2";

pub(crate) fn env(vars: &[(&str, &str)]) -> HashMap<String, String> {
    vars.iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

pub(crate) fn parse(text: &str) -> Result<FleetConfig, ConfigError> {
    FleetConfig::parse(
        text,
        "fleet.toml",
        &env(&[("TOKEN_A", TOKEN_A), ("TOKEN_B", TOKEN_B)]),
    )
}

/// The diagnostics of an invalid file, one per line.
pub(crate) fn errors(text: &str) -> String {
    match parse(text) {
        Ok(config) => panic!("expected errors, got a valid config: {config:?}"),
        Err(error) => {
            assert!(!error.diagnostics().is_empty());
            error.to_string()
        }
    }
}

/// A valid one-bot file, to which tests append or in which they replace.
pub(crate) const MINIMAL: &str = r#"[[bot]]
name = "dating"
token = "${TOKEN_A}"
[bot.worker]
command = "dating-bot"
"#;
