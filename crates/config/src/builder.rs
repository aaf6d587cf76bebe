//! A typed builder of fleet files, for tests, benchmarks and the demo: the
//! file is written with `toml_edit` (so a path or a token with a quote in it
//! is escaped, never spliced into a template) and read back by the same
//! parser as any fleet file, so what a test runs is what a user could have
//! written.
//!
//! ```
//! use botfleet_config::{BotFile, FleetFile};
//!
//! let file = FleetFile::new()
//!     .set("telegram.api_url", "http://127.0.0.1:8081")
//!     .bot(
//!         BotFile::new("echo", "110201543:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw1")
//!             .workers(1, 2)
//!             .command("/usr/bin/echo-bot", ["--quiet"])
//!             .set("restart.intensity", 10),
//!     );
//! let config = file.parse().unwrap();
//! assert_eq!(config.bots[0].max_workers, 2);
//! assert!(file.to_toml().contains("[[bot]]"));
//! ```

use std::collections::HashMap;

use toml_edit::{Array, ArrayOfTables, DocumentMut, Item, Table, Value};

use crate::{ConfigError, FleetConfig};

/// Telegram's send limits lifted: what throughput tests and benchmarks set
/// when the emulator accepts every send at once.
pub const UNLIMITED_SENDS: &str = "100000/1s";

/// A fleet file under construction.
#[derive(Clone, Debug, Default)]
pub struct FleetFile {
    doc: DocumentMut,
}

impl FleetFile {
    /// An empty fleet file (the `dev` preset, no bots yet) whose monitor
    /// listens on a port the system picks: generated fleets (tests,
    /// benchmarks, the demo) run side by side.
    pub fn new() -> Self {
        FleetFile::default().set("monitor.bind", "127.0.0.1:0")
    }

    /// Sets the key at the dotted `path` (`"environment"`,
    /// `"telegram.api_url"`, `"database.pool.size"`), making the tables on
    /// the way.
    pub fn set(mut self, path: &str, value: impl Into<Value>) -> Self {
        set(self.doc.as_table_mut(), path, value.into());
        self
    }

    /// `[database] url`.
    pub fn database(self, url: impl Into<String>) -> Self {
        self.set("database.url", url.into())
    }

    /// `[redis] url`.
    pub fn redis(self, url: impl Into<String>) -> Self {
        self.set("redis.url", url.into())
    }

    /// `[telegram] api_url`: the emulator's address, say.
    pub fn telegram_api(self, url: impl Into<String>) -> Self {
        self.set("telegram.api_url", url.into())
    }

    /// Lifts the sender's chat, group and token limits
    /// ([`UNLIMITED_SENDS`]), for an emulator without limits.
    pub fn unlimited_sends(self) -> Self {
        self.set("telegram.limits.chat", UNLIMITED_SENDS)
            .set("telegram.limits.group", UNLIMITED_SENDS)
            .set("telegram.limits.token", UNLIMITED_SENDS)
    }

    /// Adds a `[[bot]]`.
    pub fn bot(mut self, bot: BotFile) -> Self {
        let bots = self
            .doc
            .entry("bot")
            .or_insert_with(|| Item::ArrayOfTables(ArrayOfTables::new()));
        if let Some(list) = bots.as_array_of_tables_mut() {
            list.push(bot.table);
        }
        self
    }

    /// The file's text.
    pub fn to_toml(&self) -> String {
        self.doc.to_string()
    }

    /// The file read as a fleet file called `fleet.toml`, without
    /// environment variables.
    pub fn parse(&self) -> Result<FleetConfig, ConfigError> {
        FleetConfig::parse(&self.to_toml(), "fleet.toml", &HashMap::new())
    }
}

/// One `[[bot]]` of a [`FleetFile`].
#[derive(Clone, Debug)]
pub struct BotFile {
    table: Table,
}

impl BotFile {
    /// A bot called `name` with `token`.
    pub fn new(name: &str, token: &str) -> Self {
        BotFile {
            table: Table::new(),
        }
        .set("name", name)
        .set("token", token)
    }

    /// Sets the key at the dotted `path` inside the bot
    /// (`"heartbeat_interval"`, `"restart.intensity"`, `"scaling.tick"`).
    pub fn set(mut self, path: &str, value: impl Into<Value>) -> Self {
        set(&mut self.table, path, value.into());
        self
    }

    /// `min_workers` and `max_workers`.
    pub fn workers(self, min: u32, max: u32) -> Self {
        self.set("min_workers", i64::from(min))
            .set("max_workers", i64::from(max))
    }

    /// `[bot.worker]`: the program and its arguments.
    pub fn command<I, S>(self, program: impl Into<String>, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let args: Array = args.into_iter().map(|a| Value::from(a.into())).collect();
        self.set("worker.command", program.into())
            .set("worker.args", args)
    }

    /// One variable of `[bot.worker] env`.
    pub fn env(self, name: &str, value: impl Into<String>) -> Self {
        let path = format!("worker.env.{name}");
        self.set(&path, value.into())
    }
}

/// Sets `path` (dotted) in `table`, making the tables on the way; the
/// last table made is written as a `[section]`, the ones above it as
/// dotted keys.
fn set(table: &mut Table, path: &str, value: Value) {
    let mut keys = path.split('.').peekable();
    let mut table = table;
    while let Some(key) = keys.next() {
        if keys.peek().is_none() {
            table.insert(key, Item::Value(value));
            return;
        }
        let item = table.entry(key).or_insert_with(|| {
            let mut t = Table::new();
            t.set_implicit(true);
            Item::Table(t)
        });
        if !item.is_table() {
            // A value stood where a table goes: the later call wins.
            *item = Item::Table(Table::new());
        }
        table = item.as_table_mut().expect("a table, made above if need be");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_and_backslashes_are_escaped_not_spliced() {
        let file = FleetFile::new().bot(
            BotFile::new("a", "110201543:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw1")
                .command(r#"/tmp/we"ird\path"#, [r#"--x="y""#])
                .env("GREETING", "say \"hi\"\n"),
        );
        let config = file.parse().unwrap();
        let bot = &config.bots[0];
        assert_eq!(bot.worker.command, r#"/tmp/we"ird\path"#);
        assert_eq!(bot.worker.args[0].value(), r#"--x="y""#);
        assert_eq!(bot.worker.env[0].0, "GREETING");
        assert_eq!(bot.worker.env[0].1.value(), "say \"hi\"\n");
    }

    #[test]
    fn sections_and_limits_reach_the_config() {
        let config = FleetFile::new()
            .telegram_api("http://127.0.0.1:1")
            .unlimited_sends()
            .bot(
                BotFile::new("a", "110201543:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw1")
                    .workers(2, 3)
                    .command("x", Vec::<String>::new())
                    .set("heartbeat_interval", "200ms")
                    .set("restart.intensity", 7),
            )
            .parse()
            .unwrap();
        let bot = &config.bots[0];
        assert_eq!((bot.min_workers, bot.max_workers), (2, 3));
        assert_eq!(
            bot.supervision.heartbeat_interval,
            std::time::Duration::from_millis(200)
        );
        assert_eq!(bot.supervision.restart.intensity, 7);
        assert_eq!(config.telegram.api_url, "http://127.0.0.1:1");
    }

    #[test]
    fn a_mistake_is_reported_like_in_any_fleet_file() {
        let error = FleetFile::new()
            .bot(BotFile::new("a", "not a token").command("x", ["y"]))
            .parse()
            .unwrap_err();
        assert!(error.to_string().contains("fleet.toml:"), "{error}");
    }
}
