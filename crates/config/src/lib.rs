//! `botfleet-config`: the `fleet.toml` schema.
//!
//! A fleet file says *what* runs: the environment preset, the database, Redis,
//! the monitor and each bot with its worker command. This crate reads it into
//! a typed [`FleetConfig`]:
//!
//! - `${VAR}` and `${VAR:-default}` are resolved from the environment, so
//!   tokens and passwords never sit in the file;
//! - presets fill in what the file leaves out ([`Environment::preset`]);
//! - every problem is reported at once as `FILE:LINE:COL: key: message`,
//!   with "did you mean" suggestions for misspelt keys and values;
//! - secrets are held in types that never print them, and
//!   [`FleetConfig::to_redacted_toml`] shows the resolved file with `***`.
//!
//! It is *not* the place for how a process runs (CLI flags and `BOTFLEET_*`
//! variables) and it must not depend on any other botfleet crate: it is a
//! leaf that the runtime, the database layer and the binary read from.
//!
//! Later parts of botfleet add their own sections (`[cache]`,
//! `[telegram]`, alerts, scaling) as a new module with a reader function and a
//! field on [`FleetConfig`]; `docs/config.md` describes how.
//!
//! ```
//! use std::collections::HashMap;
//!
//! let env: HashMap<String, String> = [(
//!     "DATING_TOKEN".to_owned(),
//!     "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsawq".to_owned(),
//! )]
//! .into();
//! let text = r#"
//! [[bot]]
//! name = "dating"
//! token = "${DATING_TOKEN}"
//! worker.command = "dating-bot"
//! "#;
//! let config = botfleet_config::FleetConfig::parse(text, "fleet.toml", &env).unwrap();
//! assert_eq!(config.bots[0].token.bot_id(), 123456789);
//! assert!(!config.to_redacted_toml().contains("AAHdq"));
//! ```

mod alerts;
mod bot;
mod builder;
mod cache;
mod database;
pub mod duration;
mod env;
mod error;
mod fleet;
mod interpolate;
mod preset;
pub mod promql;
mod reader;
mod secret;
mod sections;
mod show;
mod source;
mod supervision;
mod telegram;
mod tree;

use std::path::Path;

pub use alerts::{
    AlertRule, AlertTest, AlertmanagerReceiver, AlertsConfig, ExpectedAlert, Route, RuleGroup,
    RuleTest, RuleTests, TelegramReceiver, parse_rule_tests, parse_rules,
};
pub use bot::{
    BotConfig, BotToken, DEFAULT_WEBHOOK_LISTEN, IngestMode, MAX_BOT_NAME, MAX_WORKERS_LIMIT,
    WebhookConfig, WorkerConfig, WorkerValue,
};
pub use builder::{BotFile, FleetFile, UNLIMITED_SENDS};
pub use cache::{CacheConfig, CacheSettings};
pub use database::{BatcherSettings, DatabaseSettings, PoolSettings, WhenFull};
pub use env::{Env, ProcessEnv};
pub use error::{ConfigError, Diagnostic};
pub use fleet::FleetConfig;
pub use preset::{Environment, Preset};
pub use secret::{REDACTED, Secret, redact_url, url_password};
pub use sections::{
    Backend, DEFAULT_MONITOR_BIND, DatabaseConfig, DatabaseUrl, LogFilesConfig, MonitorConfig,
    RedisConfig,
};
pub use source::Position;
pub use supervision::{RestartPolicy, Scaling, Supervision};
pub use telegram::{SendLimit, SendLimits, TELEGRAM_API_URL, TelegramConfig};

/// The configuration file used when none is named.
pub const DEFAULT_CONFIG_FILE: &str = "fleet.toml";

/// Reads and validates the file at `path`, resolving `${VAR}` from the
/// process environment. Errors name the file as `path` was given.
pub fn load(path: &Path) -> Result<FleetConfig, ConfigError> {
    load_with_env(path, &ProcessEnv)
}

/// Like [`load`], with `${VAR}` resolved from `env`.
pub fn load_with_env(path: &Path, env: &dyn Env) -> Result<FleetConfig, ConfigError> {
    let name = path.display().to_string();
    let text = read_text(path, &name)?;
    FleetConfig::parse(&text, &name, env)
}

/// The largest fleet file read.
pub const MAX_FILE: u64 = 1 << 20;

/// The text of the fleet file at `path`: a regular file of at most
/// [`MAX_FILE`] bytes (a FIFO would block the read, a device never end),
/// in UTF-8 (the first byte that is not is reported with its position).
fn read_text(path: &Path, name: &str) -> Result<String, ConfigError> {
    use std::io::Read;
    let err = |source| ConfigError::Read {
        path: path.to_owned(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(err)?;
    if !meta.is_file() {
        let kind = if meta.is_dir() {
            "a directory"
        } else {
            "not a regular file (a FIFO, socket or device)"
        };
        return Err(err(std::io::Error::other(format!(
            "it is {kind}; a fleet file is a regular file"
        ))));
    }
    let too_large = |size: u64| {
        err(std::io::Error::other(format!(
            "it has {size} bytes; a fleet file is at most {MAX_FILE} bytes (1 MiB)"
        )))
    };
    if meta.len() > MAX_FILE {
        return Err(too_large(meta.len()));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    std::fs::File::open(path)
        .map_err(err)?
        .take(MAX_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(err)?;
    if bytes.len() as u64 > MAX_FILE {
        return Err(too_large(bytes.len() as u64));
    }
    String::from_utf8(bytes).map_err(|e| {
        let at = e.utf8_error().valid_up_to();
        let bytes = e.into_bytes();
        let before = String::from_utf8_lossy(&bytes[..at]);
        let position = source::Source::new(name, &before).position(at);
        ConfigError::Invalid(vec![Diagnostic {
            file: name.to_owned(),
            position,
            key: String::new(),
            message: format!(
                "the file is not UTF-8: byte 0x{:02x} cannot start or continue a character here (save it as UTF-8)",
                bytes[at]
            ),
        }])
    })
}
