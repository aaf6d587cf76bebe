//! `[[bot]]`: one Telegram bot of the fleet and the workers that serve it.

use std::net::SocketAddr;

use crate::preset::Preset;
use crate::reader::{Ctx, Spanned, Table, Text, choice};
use crate::secret::{Secret, is_secret_name, url_password};
use crate::sections::socket_addr;
use crate::supervision::Supervision;
use crate::tree::Span;

/// The most workers one bot may have.
pub const MAX_WORKERS_LIMIT: u32 = 1024;
/// The longest bot name.
pub const MAX_BOT_NAME: usize = 32;
/// The default address a webhook-mode bot listens on.
pub const DEFAULT_WEBHOOK_LISTEN: &str = "127.0.0.1:8443";

/// One bot of the fleet.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct BotConfig {
    /// A short name: metric label, Redis key prefix, log field.
    pub name: String,
    /// The Bot API token.
    pub token: BotToken,
    /// How updates arrive.
    pub mode: IngestMode,
    /// Webhook settings; present exactly when `mode` is `webhook`.
    pub webhook: Option<WebhookConfig>,
    /// The worker process to run.
    pub worker: WorkerConfig,
    /// The fewest workers kept running.
    pub min_workers: u32,
    /// The most workers the autoscaler may start.
    pub max_workers: u32,
    /// This bot's share of the fleet's database connections, relative to
    /// the other bots (default 1).
    pub db_weight: f64,
    /// Heartbeats, readiness, shutdown, restarts and scaling.
    pub supervision: Supervision,
}

/// How a bot receives its updates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum IngestMode {
    /// `getUpdates` long polling.
    Polling,
    /// Telegram POSTs updates to a webhook.
    Webhook,
}

impl IngestMode {
    /// The spelling used in `fleet.toml`.
    pub fn as_str(self) -> &'static str {
        match self {
            IngestMode::Polling => "polling",
            IngestMode::Webhook => "webhook",
        }
    }
}

/// A Telegram bot token, `<bot id>:<35 characters>`. Never printed.
#[derive(Clone, Debug, PartialEq)]
pub struct BotToken {
    token: Secret<String>,
    bot_id: u64,
}

impl BotToken {
    /// Validates `token`. The error says what is wrong without quoting it.
    pub fn parse(token: &str) -> Result<BotToken, String> {
        const SECRET_LEN: usize = 35;
        const FORMAT: &str = "expected `<bot id>:<35 characters of A-Z a-z 0-9 _ ->`";
        if token.is_empty() {
            return Err(format!("the token is empty; {FORMAT}"));
        }
        let Some((id, secret)) = token.split_once(':') else {
            return Err(format!("malformed bot token: no `:` found; {FORMAT}"));
        };
        if id.is_empty() || id.len() > 20 || !id.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!(
                "malformed bot token: the part before `:` must be the bot's numeric id; {FORMAT}"
            ));
        }
        let bot_id = id
            .parse::<u64>()
            .map_err(|_| format!("malformed bot token: the bot id is out of range; {FORMAT}"))?;
        if let Some(position) = secret
            .chars()
            .position(|c| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'))
        {
            return Err(format!(
                "malformed bot token: character {} after `:` is not one of A-Z a-z 0-9 _ -; {FORMAT}",
                position + 1
            ));
        }
        let len = secret.chars().count();
        if len != SECRET_LEN {
            return Err(format!(
                "malformed bot token: the part after `:` has {len} characters, not {SECRET_LEN}; {FORMAT}"
            ));
        }
        Ok(BotToken {
            token: Secret::new(token.to_owned()),
            bot_id,
        })
    }

    /// The whole token. Do not log it.
    pub fn expose(&self) -> &str {
        self.token.expose()
    }

    /// The bot's numeric id (the part before `:`), which is public.
    pub fn bot_id(&self) -> u64 {
        self.bot_id
    }
}

/// `[bot.webhook]`: where Telegram delivers updates in webhook mode.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct WebhookConfig {
    /// The public HTTPS URL given to `setWebhook`.
    pub url: String,
    /// The local address the webhook endpoint listens on (usually behind a
    /// reverse proxy that terminates TLS).
    pub listen: SocketAddr,
    /// Checked against the `X-Telegram-Bot-Api-Secret-Token` header.
    pub secret_token: Secret<String>,
}

/// `[bot.worker]`: the program that handles this bot's updates.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct WorkerConfig {
    /// The program to run (a path, or a name looked up on `PATH`).
    pub command: String,
    /// Its arguments.
    pub args: Vec<WorkerValue>,
    /// Extra environment variables, in file order.
    pub env: Vec<(String, WorkerValue)>,
}

/// An argument or environment value of a worker, with whether it may be a
/// secret (it came from `${VAR}`, or its variable name looks like one).
#[derive(Clone, PartialEq)]
pub struct WorkerValue {
    value: String,
    sensitive: bool,
}

impl std::fmt::Debug for WorkerValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.sensitive {
            write!(f, "WorkerValue({})", crate::REDACTED)
        } else {
            write!(f, "WorkerValue({:?})", self.value)
        }
    }
}

/// The value, or `***` when it may be a secret.
impl std::fmt::Display for WorkerValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.sensitive {
            f.write_str(crate::REDACTED)
        } else {
            f.write_str(&self.value)
        }
    }
}

impl WorkerValue {
    /// A value that is not a secret.
    pub fn plain(value: impl Into<String>) -> WorkerValue {
        WorkerValue {
            value: value.into(),
            sensitive: false,
        }
    }

    /// A value that may be a secret: never shown.
    pub fn secret(value: impl Into<String>) -> WorkerValue {
        WorkerValue {
            value: value.into(),
            sensitive: true,
        }
    }

    /// The value.
    pub fn value(&self) -> &str {
        &self.value
    }

    /// Whether printing must replace it with `***`.
    pub fn is_sensitive(&self) -> bool {
        self.sensitive
    }
}

/// What checks across bots need of a bot, even one with other problems.
pub(crate) struct BotKeys {
    pub(crate) path: String,
    pub(crate) name: Option<(String, Span)>,
    pub(crate) token: Option<(String, Span)>,
}

/// Reads one `[[bot]]` table: the bot if it is valid, and its keys in any case.
pub(crate) fn bot(
    cx: &mut Ctx<'_>,
    mut t: Table<'_>,
    preset: &Preset,
) -> (Option<BotConfig>, BotKeys) {
    let name = t
        .string(cx, "name")
        .and_then(|name| check_name(cx, &t, name));
    if !t.contains("name") {
        cx.error(
            &t.span,
            t.path(),
            "missing `name` (a short id such as \"dating\")",
        );
    }

    let token = t
        .string(cx, "token")
        .and_then(|token| match BotToken::parse(&token.value.value) {
            Ok(parsed) => Some((parsed, token.span)),
            Err(message) => {
                let hint = if token.value.from_env && token.value.value.is_empty() {
                    " (the environment variable is set but empty)"
                } else {
                    ""
                };
                cx.error(
                    &token.span,
                    &t.key_path("token"),
                    format!("{message}{hint}"),
                );
                None
            }
        });
    if !t.contains("token") {
        cx.error(
            &t.span,
            t.path(),
            "missing `token` (write token = \"${BOT_TOKEN}\" and set BOT_TOKEN in the environment)",
        );
    }

    let mode = match t.string(cx, "mode") {
        Some(mode) => choice(
            cx,
            &mode,
            &t.key_path("mode"),
            &[
                ("polling", IngestMode::Polling),
                ("webhook", IngestMode::Webhook),
            ],
        ),
        None if t.contains("mode") => None,
        None => Some(IngestMode::Polling),
    };

    let webhook_given = t.contains("webhook");
    let webhook = t.table(cx, "webhook").and_then(|w| webhook(cx, w));
    match mode {
        Some(IngestMode::Webhook) if !webhook_given => cx.error(
            &t.span_of("mode"),
            &t.key_path("mode"),
            "mode = \"webhook\" needs a [bot.webhook] table with `url` and `secret_token`",
        ),
        Some(IngestMode::Polling) if webhook_given => cx.error(
            &t.span_of("webhook"),
            &t.key_path("webhook"),
            "webhook settings are given but the bot's mode is \"polling\"; set mode = \"webhook\" or remove them",
        ),
        _ => {}
    }

    let worker_given = t.contains("worker");
    let worker = t.table(cx, "worker").and_then(|w| worker(cx, w));
    if !worker_given {
        cx.error(
            &t.span,
            t.path(),
            "missing [bot.worker] with the `command` that handles this bot's updates",
        );
    }

    let limit = i64::from(MAX_WORKERS_LIMIT);
    let min = t.integer(cx, "min_workers", 1..=limit);
    let max = t.integer(cx, "max_workers", 1..=limit);
    let min_given = t.contains("min_workers");
    let max_given = t.contains("max_workers");
    let workers = match (min, max) {
        (Some(min), Some(max)) if min.value > max.value => {
            cx.error(
                &min.span,
                &t.key_path("min_workers"),
                format!(
                    "min_workers ({}) is greater than max_workers ({})",
                    min.value, max.value
                ),
            );
            None
        }
        // Only one given: the other default yields to it.
        (Some(min), None) if !max_given => {
            let min = min.value as u32;
            Some((min, preset.max_workers.max(min)))
        }
        (None, Some(max)) if !min_given => {
            let max = max.value as u32;
            Some((preset.min_workers.min(max), max))
        }
        (None, None) if !min_given && !max_given => Some((preset.min_workers, preset.max_workers)),
        (Some(min), Some(max)) => Some((min.value as u32, max.value as u32)),
        _ => None,
    };
    let db_weight = t
        .float(cx, "db_weight", 0.01..=1000.0)
        .map_or(1.0, |v| v.value);
    let supervision = crate::supervision::supervision(cx, &mut t);
    let path = t.path().to_owned();
    t.finish(cx);
    let keys = BotKeys {
        path,
        name: name.clone(),
        token: token
            .as_ref()
            .map(|(token, span)| (token.expose().to_owned(), span.clone())),
    };
    let config = (|| {
        let (min_workers, max_workers) = workers?;
        Some(BotConfig {
            name: name?.0,
            token: token?.0,
            mode: mode?,
            webhook,
            worker: worker?,
            min_workers,
            max_workers,
            db_weight,
            supervision,
        })
    })();
    (config, keys)
}

fn check_name(cx: &mut Ctx<'_>, t: &Table<'_>, name: Spanned<Text>) -> Option<(String, Span)> {
    let value = &name.value.value;
    let valid = value.len() <= MAX_BOT_NAME
        && value.starts_with(|c: char| c.is_ascii_lowercase())
        && value
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if !valid {
        cx.error(
            &name.span,
            &t.key_path("name"),
            format!(
                "`{value}` is not a valid bot name: use 1 to {MAX_BOT_NAME} lowercase letters, digits, `-` or `_`, starting with a letter (it becomes a metric label and a Redis key prefix)"
            ),
        );
        return None;
    }
    Some((name.value.value, name.span))
}

/// Whether `url` is `https://`, or `http://` to this machine (the
/// emulator).
pub(crate) fn is_https_or_loopback(url: &str) -> bool {
    let host = url
        .strip_prefix("http://")
        .map(|rest| rest.split(['/', ':', '?']).next().unwrap_or(""));
    url.starts_with("https://") || matches!(host, Some("127.0.0.1" | "localhost" | "[::1]"))
}

fn webhook(cx: &mut Ctx<'_>, mut t: Table<'_>) -> Option<WebhookConfig> {
    let url = t.string(cx, "url").and_then(|url| {
        if is_https_or_loopback(&url.value.value) {
            Some(url.value.value)
        } else {
            cx.error(
                &url.span,
                &t.key_path("url"),
                "Telegram delivers webhooks over HTTPS only: the url must start with https:// (http:// is accepted for 127.0.0.1 and localhost, for the emulator)",
            );
            None
        }
    });
    if !t.contains("url") {
        cx.error(
            &t.span,
            t.path(),
            "missing `url`, the public HTTPS address given to setWebhook",
        );
    }
    let listen_default: SocketAddr = DEFAULT_WEBHOOK_LISTEN
        .parse()
        .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 8443)));
    let listen = match t.string(cx, "listen") {
        Some(listen) => socket_addr(cx, &listen, &t.key_path("listen")),
        None if t.contains("listen") => None,
        None => Some(listen_default),
    };
    let secret = t.string(cx, "secret_token").and_then(|secret| {
        let value = &secret.value.value;
        let valid = (1..=256).contains(&value.len())
            && value
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if valid {
            Some(Secret::new(secret.value.value))
        } else {
            cx.error(
                &secret.span,
                &t.key_path("secret_token"),
                "must be 1 to 256 characters of A-Z a-z 0-9 _ - (Telegram's rule for secret_token)",
            );
            None
        }
    });
    if !t.contains("secret_token") {
        cx.error(
            &t.span,
            t.path(),
            "missing `secret_token`: without it anyone who finds the URL can post fake updates",
        );
    }
    t.finish(cx);
    Some(WebhookConfig {
        url: url?,
        listen: listen?,
        secret_token: secret?,
    })
}

fn worker(cx: &mut Ctx<'_>, mut t: Table<'_>) -> Option<WorkerConfig> {
    let command = t.string(cx, "command").and_then(|command| {
        if command.value.value.trim().is_empty() {
            cx.error(&command.span, &t.key_path("command"), "must not be empty");
            None
        } else {
            Some(command.value.value)
        }
    });
    if !t.contains("command") {
        cx.error(
            &t.span,
            t.path(),
            "missing `command`, the worker program to run",
        );
    }
    let args = t
        .string_array(cx, "args")
        .unwrap_or_default()
        .into_iter()
        .map(|arg| {
            let sensitive = arg.value.from_env || url_password(&arg.value.value).is_some();
            WorkerValue {
                value: arg.value.value,
                sensitive,
            }
        })
        .collect();
    let mut env = Vec::new();
    for (key, value) in t.string_map(cx, "env").unwrap_or_default() {
        let path = t.key_path("env");
        let name = &key.value;
        if name.is_empty() || name.contains(['=', '\0']) {
            cx.error(
                &key.span,
                &path,
                format!("`{name}` is not a valid environment variable name"),
            );
            continue;
        }
        if value.value.value.contains('\0') {
            cx.error(
                &value.span,
                &format!("{path}.{name}"),
                "must not contain a NUL character",
            );
            continue;
        }
        let sensitive = value.value.from_env
            || is_secret_name(name)
            || url_password(&value.value.value).is_some();
        env.push((
            key.value,
            WorkerValue {
                value: value.value.value,
                sensitive,
            },
        ));
    }
    t.finish(cx);
    Some(WorkerConfig {
        command: command?,
        args,
        env,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsawq";

    #[test]
    fn valid_token() {
        let token = BotToken::parse(GOOD).unwrap();
        assert_eq!(token.bot_id(), 123_456_789);
        assert_eq!(token.expose(), GOOD);
        assert!(!format!("{token:?}").contains("AAHdq"));
    }

    #[test]
    fn token_errors_never_quote_the_token() {
        let cases = [
            ("", "empty"),
            ("123456789AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsawq", "no `:`"),
            ("12a:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsawq", "numeric id"),
            (":AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsawq", "numeric id"),
            ("123:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw", "34 characters"),
            ("123:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsawq1", "36 characters"),
            ("123:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsa+q", "character 34"),
            (
                "99999999999999999999:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsawq",
                "out of range",
            ),
        ];
        for (token, expected) in cases {
            let error = BotToken::parse(token).unwrap_err();
            assert!(error.contains(expected), "{token:?}: {error}");
            if token.len() > 3 {
                assert!(!error.contains(&token[4..]), "{error}");
            }
        }
    }
}
