//! Printing a resolved configuration: the redacted TOML of `config show` and
//! the one-line summary of `config check`.

use toml_edit::{Array, ArrayOfTables, DocumentMut, Item, Table, value};

use crate::bot::{BotConfig, WorkerValue};
use crate::cache::{CacheConfig, CacheSettings};
use crate::database::DatabaseSettings;
use crate::duration::format as format_duration;
use crate::fleet::FleetConfig;
use crate::secret::REDACTED;
use crate::sections::Backend;
use crate::telegram::TelegramConfig;

impl FleetConfig {
    /// The resolved configuration as TOML: presets applied, `${VAR}`
    /// resolved, every secret replaced by `***`. Feeding it back (with the
    /// secrets filled in) yields the same configuration.
    pub fn to_redacted_toml(&self) -> String {
        let mut doc = DocumentMut::new();
        doc["environment"] = value(self.environment.as_str());

        let mut database = Table::new();
        match &self.database.url {
            Some(url) => database["url"] = value(url.redacted()),
            None => {
                database
                    .decor_mut()
                    .set_suffix("# url not set: the embedded SQLite database is used\n");
            }
        }
        database_settings_into(&mut database, &self.database.settings);
        doc["database"] = Item::Table(database);

        if let Some(redis) = &self.redis {
            let mut t = Table::new();
            t["url"] = value(redis.redacted_url());
            doc["redis"] = Item::Table(t);
        }

        let mut monitor = Table::new();
        monitor["bind"] = value(self.monitor.bind.to_string());
        if self.monitor.token.is_some() {
            monitor["token"] = value(REDACTED);
        }
        monitor["series_cap"] = value(self.monitor.series_cap as i64);
        monitor["store_series"] = value(self.monitor.store_series as i64);
        monitor["retention"] = value(format_duration(self.monitor.retention));
        monitor["poll_interval"] = value(format_duration(self.monitor.poll_interval));
        doc["monitor"] = Item::Table(monitor);
        doc["cache"] = Item::Table(cache_table(&self.cache));
        doc["telegram"] = Item::Table(telegram_table(&self.telegram));

        let mut bots = ArrayOfTables::new();
        for bot in &self.bots {
            bots.push(bot_table(bot));
        }
        doc["bot"] = Item::ArrayOfTables(bots);
        doc["alerts"] = Item::Table(alerts_table(&self.alerts));
        if let Some(logs) = &self.logs {
            let mut t = Table::new();
            t["dir"] = value(logs.dir.display().to_string());
            t["max_size_mib"] = value((logs.max_bytes / (1024 * 1024)) as i64);
            t["keep"] = value(i64::from(logs.keep));
            doc["logs"] = Item::Table(t);
        }

        let header = format!(
            "# Resolved configuration (environment = \"{}\"); secrets are shown as {REDACTED}.\n",
            self.environment
        );
        // Defence in depth: no secret may reach the output, whatever path it
        // took into the document.
        self.scrub(&(header + &doc.to_string()))
    }

    /// One line for `config check`: environment, bots, workers, storage.
    pub fn summary(&self) -> String {
        let names: Vec<&str> = self.bots.iter().map(|b| b.name.as_str()).collect();
        let min: u32 = self.bots.iter().map(|b| b.min_workers).sum();
        let max: u32 = self.bots.iter().map(|b| b.max_workers).sum();
        let database = match self.database.url.as_ref().map(|u| u.backend()) {
            Some(Backend::Postgres) => "PostgreSQL",
            Some(Backend::Sqlite) => "SQLite",
            None => "embedded SQLite",
        };
        let cache = if self.redis.is_some() {
            "Redis"
        } else {
            "in-process cache"
        };
        let plural = if names.len() == 1 { "" } else { "s" };
        format!(
            "environment \"{}\", {} bot{plural} ({}), {min} to {max} workers, {database}, {cache}, monitor on {}",
            self.environment,
            names.len(),
            names.join(", "),
            self.monitor.bind
        )
    }
}

fn bot_table(bot: &BotConfig) -> Table {
    let mut t = Table::new();
    t["name"] = value(bot.name.as_str());
    t["token"] = value(REDACTED);
    t["mode"] = value(bot.mode.as_str());
    t["min_workers"] = value(i64::from(bot.min_workers));
    t["max_workers"] = value(i64::from(bot.max_workers));
    t["db_weight"] = value(bot.db_weight);
    let s = &bot.supervision;
    t["heartbeat_interval"] = value(format_duration(s.heartbeat_interval));
    t["ready_timeout"] = value(format_duration(s.ready_timeout));
    t["shutdown_grace"] = value(format_duration(s.shutdown_grace));
    t["handling_deadline"] = value(format_duration(s.handling_deadline));
    t["max_attempts"] = value(i64::from(s.max_attempts));
    if let Some(webhook) = &bot.webhook {
        let mut w = Table::new();
        w["url"] = value(webhook.url.as_str());
        w["listen"] = value(webhook.listen.to_string());
        w["secret_token"] = value(REDACTED);
        t["webhook"] = Item::Table(w);
    }
    let mut worker = Table::new();
    worker["command"] = value(bot.worker.command.as_str());
    let args: Array = bot.worker.args.iter().map(shown).collect();
    worker["args"] = value(args);
    if !bot.worker.env.is_empty() {
        let mut env = Table::new();
        for (name, v) in &bot.worker.env {
            env[name.as_str()] = value(shown(v));
        }
        worker["env"] = Item::Table(env);
    }
    t["worker"] = Item::Table(worker);
    let r = &s.restart;
    let mut restart = Table::new();
    restart["intensity"] = value(i64::from(r.intensity));
    restart["period"] = value(format_duration(r.period));
    restart["first_backoff"] = value(format_duration(r.first_backoff));
    restart["max_backoff"] = value(format_duration(r.max_backoff));
    restart["failed_retry"] = value(format_duration(r.failed_retry));
    restart["failed_retry_max"] = value(format_duration(r.failed_retry_max));
    t["restart"] = Item::Table(restart);
    let c = &s.scaling;
    let mut scaling = Table::new();
    scaling["target_queue_per_worker"] = value(i64::from(c.target_queue_per_worker));
    scaling["target_latency"] = value(format_duration(c.target_latency));
    scaling["tick"] = value(format_duration(c.tick));
    scaling["scale_down_window"] = value(format_duration(c.scale_down_window));
    t["scaling"] = Item::Table(scaling);
    t
}

fn settings_into(t: &mut Table, s: &CacheSettings) {
    t["capacity"] = value(s.capacity as i64);
    t["ttl"] = value(format_duration(s.ttl));
    t["negative_ttl"] = value(format_duration(s.negative_ttl));
    t["jitter"] = value(s.jitter);
    t["refresh_ahead"] = value(s.refresh_ahead);
}

fn database_settings_into(t: &mut Table, s: &DatabaseSettings) {
    let d = |d| value(format_duration(d));
    t["reserve"] = value(i64::from(s.reserve));
    t["slow_query"] = d(s.slow_query);
    t["slow_query_log_interval"] = d(s.slow_query_log_interval);
    t["explain_slow_queries"] = value(s.explain_slow_queries);
    let p = &s.pool;
    let mut pool = Table::new();
    pool["min_connections"] = value(i64::from(p.min_connections));
    pool["max_connections"] = value(i64::from(p.max_connections));
    pool["acquire_timeout"] = d(p.acquire_timeout);
    pool["idle_timeout"] = d(p.idle_timeout);
    pool["max_lifetime"] = d(p.max_lifetime);
    pool["ping_idle_after"] = d(p.ping_idle_after);
    pool["connect_timeout"] = d(p.connect_timeout);
    pool["statement_timeout"] = d(p.statement_timeout);
    t["pool"] = Item::Table(pool);
    let b = &s.batcher;
    let mut batcher = Table::new();
    batcher["max_rows"] = value(i64::from(b.max_rows));
    batcher["linger"] = d(b.linger);
    batcher["queue"] = value(i64::from(b.queue));
    batcher["when_full"] = value(b.when_full.as_str());
    t["batcher"] = Item::Table(batcher);
}

fn telegram_table(c: &TelegramConfig) -> Table {
    let mut t = Table::new();
    t["api_url"] = value(&c.api_url);
    t["timeout"] = value(format_duration(c.timeout));
    t["max_in_flight"] = value(i64::from(c.max_in_flight));
    t["attempts"] = value(i64::from(c.attempts));
    t["first_backoff"] = value(format_duration(c.first_backoff));
    let mut limits = Table::new();
    limits["chat"] = value(c.limits.chat.to_config_string());
    limits["group"] = value(c.limits.group.to_config_string());
    limits["token"] = value(c.limits.token.to_config_string());
    limits["paid"] = value(c.limits.paid.to_config_string());
    t["limits"] = Item::Table(limits);
    t
}

fn cache_table(c: &CacheConfig) -> Table {
    let mut t = Table::new();
    settings_into(&mut t, &c.defaults);
    t["max_value_bytes"] = value(c.max_value_bytes as i64);
    t["lease"] = value(format_duration(c.lease));
    t["redis_timeout"] = value(format_duration(c.redis_timeout));
    t["redis_probe_interval"] = value(format_duration(c.redis_probe_interval));
    t["warming"] = value(c.warming);
    t["prefetch"] = value(c.prefetch);
    if !c.namespaces.is_empty() {
        let mut namespaces = Table::new();
        namespaces.set_implicit(true);
        for (name, s) in &c.namespaces {
            let mut n = Table::new();
            settings_into(&mut n, s);
            namespaces[name.as_str()] = Item::Table(n);
        }
        t["namespace"] = Item::Table(namespaces);
    }
    t
}

fn shown(v: &WorkerValue) -> &str {
    if v.is_sensitive() {
        REDACTED
    } else {
        v.value()
    }
}

fn alerts_table(alerts: &crate::AlertsConfig) -> Table {
    let mut t = Table::new();
    t["interval"] = value(format_duration(alerts.interval));
    t["default_rules"] = value(alerts.default_rules);
    let files: toml_edit::Array = alerts.rule_files.iter().map(String::as_str).collect();
    t["rule_files"] = value(files);
    let mut route = Table::new();
    let group_by: toml_edit::Array = alerts.route.group_by.iter().map(String::as_str).collect();
    route["group_by"] = value(group_by);
    route["group_wait"] = value(format_duration(alerts.route.group_wait));
    route["group_interval"] = value(format_duration(alerts.route.group_interval));
    route["repeat_interval"] = value(format_duration(alerts.route.repeat_interval));
    t["route"] = Item::Table(route);
    let mut groups = ArrayOfTables::new();
    for group in &alerts.groups {
        let mut g = Table::new();
        g["name"] = value(group.name.as_str());
        let mut rules = ArrayOfTables::new();
        for rule in &group.rules {
            let mut r = Table::new();
            r["alert"] = value(rule.alert.as_str());
            r["expr"] = value(rule.expr.as_str());
            if !rule.for_.is_zero() {
                r["for"] = value(format_duration(rule.for_));
            }
            if !rule.keep_firing_for.is_zero() {
                r["keep_firing_for"] = value(format_duration(rule.keep_firing_for));
            }
            rules.push(r);
        }
        g["rules"] = Item::ArrayOfTables(rules);
        groups.push(g);
    }
    if !groups.is_empty() {
        t["groups"] = Item::ArrayOfTables(groups);
    }
    let mut telegram = ArrayOfTables::new();
    for r in &alerts.telegram {
        let mut x = Table::new();
        x["bot"] = value(r.bot.as_str());
        x["chat_id"] = value(r.chat_id);
        telegram.push(x);
    }
    if !telegram.is_empty() {
        t["telegram"] = Item::ArrayOfTables(telegram);
    }
    let mut managers = ArrayOfTables::new();
    for r in &alerts.alertmanager {
        let mut x = Table::new();
        x["url"] = value(crate::redact_url(&r.url));
        managers.push(x);
    }
    if !managers.is_empty() {
        t["alertmanager"] = Item::ArrayOfTables(managers);
    }
    t
}
