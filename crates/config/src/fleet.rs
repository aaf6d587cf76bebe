//! The whole `fleet.toml`: reading the root table and the checks across
//! sections.

use std::collections::HashMap;

use crate::bot::{self, BotConfig};
use crate::cache::{self, CacheConfig};
use crate::env::Env;
use crate::error::ConfigError;
use crate::preset::Environment;
use crate::reader::{Ctx, Table, choice};
use crate::sections::{self, DatabaseConfig, MonitorConfig, RedisConfig};
use crate::telegram::{self, TelegramConfig};

/// A validated fleet configuration, with presets applied and `${VAR}`
/// references resolved.
///
/// Secrets (tokens, passwords, webhook secrets) are held in types that never
/// print them; [`FleetConfig::to_redacted_toml`] shows the whole resolved
/// configuration safely.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct FleetConfig {
    /// The preset family every section derives its defaults from.
    pub environment: Environment,
    /// `[database]`.
    pub database: DatabaseConfig,
    /// `[redis]`; `None` means the in-process fallback.
    pub redis: Option<RedisConfig>,
    /// `[monitor]`.
    pub monitor: MonitorConfig,
    /// `[cache]`, with the preset's defaults.
    pub cache: CacheConfig,
    /// `[telegram]`: the Bot API client and the send limits.
    pub telegram: TelegramConfig,
    /// `[[bot]]`, in file order.
    pub bots: Vec<BotConfig>,
    /// `[alerts]`: rules, grouping, receivers.
    pub alerts: crate::AlertsConfig,
    /// `[logs]`: per-bot log files, when set.
    pub logs: Option<crate::LogFilesConfig>,
}

impl FleetConfig {
    /// Reads `text`, the content of the file called `file_name` (as errors
    /// should name it), resolving `${VAR}` from `env`.
    ///
    /// Every problem is reported, not only the first, each with its
    /// `FILE:LINE:COL`.
    pub fn parse(text: &str, file_name: &str, env: &dyn Env) -> Result<FleetConfig, ConfigError> {
        crate::reader::read_document(text, file_name, env, read)
    }

    /// Every secret value in this configuration (tokens, passwords, webhook
    /// and monitor secrets, sensitive worker values), for scrubbing text that
    /// must be shown to a user.
    pub fn secrets(&self) -> Vec<&str> {
        let mut secrets = Vec::new();
        if let Some(url) = &self.database.url {
            secrets.extend(url.password());
        }
        if let Some(redis) = &self.redis {
            secrets.extend(redis.password());
        }
        if let Some(token) = &self.monitor.token {
            secrets.push(token.expose().as_str());
        }
        for bot in &self.bots {
            secrets.push(bot.token.expose());
            if let Some(webhook) = &bot.webhook {
                secrets.push(webhook.secret_token.expose().as_str());
            }
            let values = bot
                .worker
                .args
                .iter()
                .chain(bot.worker.env.iter().map(|(_, v)| v));
            secrets.extend(values.filter(|v| v.is_sensitive()).map(|v| v.value()));
        }
        // Very short values ("", "1") would blank out unrelated text; they are
        // not worth protecting by scrubbing.
        secrets.retain(|s| s.len() >= 4);
        secrets.sort_unstable_by_key(|s| std::cmp::Reverse(s.len()));
        secrets.dedup();
        secrets
    }

    /// `text` with every occurrence of a secret of this configuration
    /// replaced by `***`.
    pub fn scrub(&self, text: &str) -> String {
        self.secrets().iter().fold(text.to_owned(), |text, secret| {
            text.replace(secret, crate::REDACTED)
        })
    }
}

fn read(cx: &mut Ctx<'_>, mut root: Table<'_>) -> Option<FleetConfig> {
    let environment = match root.string(cx, "environment") {
        Some(env) => choice(cx, &env, "environment", &Environment::ALL),
        None if root.contains("environment") => None,
        None => Some(Environment::default()),
    };
    let preset = environment.unwrap_or_default().preset();
    let cache_table = root.table(cx, "cache");
    let cache = cache::cache(cx, cache_table, &preset);

    let (database, url_given) = match root.table(cx, "database") {
        Some(t) => sections::database(cx, t, &preset.database),
        None => (
            DatabaseConfig {
                url: None,
                settings: preset.database.clone(),
            },
            false,
        ),
    };
    if let Some(env) = environment {
        // An invalid url was reported already; only a missing one is news.
        if preset.requires_database_url && !url_given {
            let span = root.span_of("environment");
            cx.error(
                &span,
                "environment",
                format!(
                    "environment = \"{env}\" needs `database.url` (a PostgreSQL URL such as \"${{DATABASE_URL}}\"); only \"dev\" falls back to the embedded SQLite database"
                ),
            );
        }
    }
    let redis = root.table(cx, "redis").and_then(|t| sections::redis(cx, t));
    let telegram_table = root.table(cx, "telegram");
    let telegram = telegram::telegram(cx, telegram_table);
    let monitor_table = root.table(cx, "monitor");
    let monitor = sections::monitor(cx, monitor_table);
    let logs_table = root.table(cx, "logs");
    let logs = sections::logs(cx, logs_table);

    let bot_tables = root.array_of_tables(cx, "bot");
    let bot_given = root.contains("bot");
    let mut bots = Vec::new();
    let mut keys = Vec::new();
    for table in bot_tables {
        let (config, bot_keys) = bot::bot(cx, table, &preset);
        bots.extend(config);
        keys.push(bot_keys);
    }
    if !bot_given {
        let span = 0..0;
        cx.error(
            &span,
            "",
            "the fleet has no bots: add a [[bot]] table with `name`, `token` and [bot.worker]",
        );
    }
    check_unique(cx, &keys);
    let names: Vec<String> = bots.iter().map(|b| b.name.clone()).collect();
    let alerts_table = root.table(cx, "alerts");
    let alerts = crate::alerts::alerts(cx, alerts_table, &names);
    root.finish(cx);

    Some(FleetConfig {
        environment: environment?,
        database,
        redis,
        monitor,
        cache,
        telegram,
        bots,
        alerts,
        logs,
    })
}

fn check_unique(cx: &mut Ctx<'_>, bots: &[bot::BotKeys]) {
    let mut names: HashMap<&str, (&str, usize)> = HashMap::new();
    let mut tokens: HashMap<&str, (&str, usize)> = HashMap::new();
    for bot in bots {
        let path = &bot.path;
        if let Some((name, span)) = &bot.name {
            let line = cx.line(span);
            if let Some((_, first_line)) = names.get(name.as_str()) {
                cx.error(
                    span,
                    &format!("{path}.name"),
                    format!("duplicate bot name `{name}` (first used on line {first_line})"),
                );
            } else {
                names.insert(name, (name, line));
            }
        }
        if let Some((token, span)) = &bot.token {
            let line = cx.line(span);
            let this_name = bot.name.as_ref().map_or("?", |(n, _)| n.as_str());
            if let Some((first_name, first_line)) = tokens.get(token.as_str()) {
                cx.error(
                    span,
                    &format!("{path}.token"),
                    format!(
                        "the same token is used by bot `{first_name}` (line {first_line}); Telegram allows one update consumer per token"
                    ),
                );
            } else {
                tokens.insert(token, (this_name, line));
            }
        }
    }
}
