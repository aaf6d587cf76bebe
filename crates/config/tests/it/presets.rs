//! Environment presets and defaults.

use botfleet_config::{Backend, Environment, IngestMode};

use crate::{MINIMAL, parse};

#[test]
fn dev_is_the_default_and_needs_no_database() {
    let config = parse(MINIMAL).unwrap();
    assert_eq!(config.environment, Environment::Dev);
    assert!(config.database.url.is_none());
    assert!(config.redis.is_none());
    assert_eq!(config.monitor.bind.to_string(), "127.0.0.1:8001");
    let bot = &config.bots[0];
    assert_eq!(bot.mode, IngestMode::Polling);
    assert_eq!((bot.min_workers, bot.max_workers), (1, 2));
}

#[test]
fn each_environment_sets_worker_defaults() {
    for (name, env) in Environment::ALL {
        let text =
            format!("environment = \"{name}\"\n[database]\nurl = \"postgres://db/x\"\n{MINIMAL}");
        let config = parse(&text).unwrap();
        assert_eq!(config.environment, env);
        let preset = env.preset();
        let bot = &config.bots[0];
        assert_eq!(
            (bot.min_workers, bot.max_workers),
            (preset.min_workers, preset.max_workers)
        );
        assert_eq!(
            config.database.url.as_ref().unwrap().backend(),
            Backend::Postgres
        );
    }
}

#[test]
fn one_sided_worker_counts_pull_the_other_default_along() {
    let prod = "environment = \"prod\"\n[database]\nurl = \"postgres://db/x\"\n";
    let text = format!(
        "{prod}{}",
        MINIMAL.replace("[bot.worker]", "min_workers = 12\n[bot.worker]")
    );
    let bot = &parse(&text).unwrap().bots[0];
    assert_eq!((bot.min_workers, bot.max_workers), (12, 12));
    let text = format!(
        "{prod}{}",
        MINIMAL.replace("[bot.worker]", "max_workers = 1\n[bot.worker]")
    );
    let bot = &parse(&text).unwrap().bots[0];
    assert_eq!((bot.min_workers, bot.max_workers), (1, 1));
}

#[test]
fn the_example_config_is_valid() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/fleet.toml");
    let text = std::fs::read_to_string(path).unwrap();
    let config =
        botfleet_config::FleetConfig::parse(&text, "examples/fleet.toml", &crate::env(&[]))
            .unwrap();
    assert_eq!(config.environment, Environment::Prod);
    assert_eq!(config.bots.len(), 2);
    assert_eq!(config.bots[1].mode, IngestMode::Webhook);
}

#[test]
fn cache_defaults_come_from_the_preset_and_namespaces_override_them() {
    use std::time::Duration;
    let config = parse(MINIMAL).unwrap();
    assert_eq!(config.cache, Environment::Dev.preset().cache);
    assert_eq!(config.cache.defaults.capacity, 1_000);
    assert_eq!(config.cache.lease, Duration::ZERO);

    let text = format!(
        "environment = \"prod\"\n[database]\nurl = \"postgres://db/x\"\n[cache]\nttl = \"10m\"\nprefetch = false\n[cache.namespace.stats]\nttl = \"30s\"\ncapacity = 500\n{MINIMAL}"
    );
    let cache = parse(&text).unwrap().cache;
    assert_eq!(cache.defaults.capacity, 50_000, "from the prod preset");
    assert_eq!(
        cache.defaults.ttl,
        Duration::from_secs(600),
        "from the file"
    );
    assert!(!cache.prefetch);
    let stats = cache.settings("stats");
    assert_eq!((stats.capacity, stats.ttl), (500, Duration::from_secs(30)));
    assert_eq!(stats.negative_ttl, Duration::from_secs(30), "inherited");
    assert_eq!(cache.settings("profiles"), &cache.defaults);
}

#[test]
fn database_settings_come_from_the_preset_and_the_file_overrides_them() {
    use botfleet_config::WhenFull;
    use std::time::Duration;
    let config = parse(MINIMAL).unwrap();
    assert_eq!(config.database.settings, Environment::Dev.preset().database);
    assert_eq!(
        config.database.settings.pool.ping_idle_after,
        Duration::ZERO,
        "dev pings on every acquire"
    );
    assert_eq!(config.bots[0].db_weight, 1.0);

    let text = format!(
        "environment = \"prod\"\n[database]\nurl = \"postgres://db/x\"\nreserve = 7\nslow_query = \"50ms\"\n[database.pool]\nmax_connections = 4\nstatement_timeout = \"0s\"\n[database.batcher]\nmax_rows = 500\nwhen_full = \"error\"\n{}",
        MINIMAL.replace("[bot.worker]", "db_weight = 2.5\n[bot.worker]")
    );
    let config = parse(&text).unwrap();
    let s = &config.database.settings;
    let prod = Environment::Prod.preset().database;
    assert_eq!((s.reserve, s.slow_query), (7, Duration::from_millis(50)));
    assert_eq!(s.pool.max_connections, 4);
    assert_eq!(s.pool.statement_timeout, Duration::ZERO);
    assert_eq!(
        s.pool.acquire_timeout, prod.pool.acquire_timeout,
        "inherited"
    );
    assert_eq!(s.pool.ping_idle_after, Duration::from_secs(60));
    assert_eq!(
        (s.batcher.max_rows, s.batcher.when_full),
        (500, WhenFull::Error)
    );
    assert_eq!(s.batcher.linger, Duration::from_millis(10));
    assert_eq!(config.bots[0].db_weight, 2.5);
}

#[test]
fn every_preset_fits_its_own_rules() {
    for (_, env) in Environment::ALL {
        let d = env.preset().database;
        assert!(d.pool.min_connections <= d.pool.max_connections, "{env}");
        assert!(d.pool.connect_timeout <= d.pool.acquire_timeout, "{env}");
        assert_eq!(d.batcher.max_rows, 100, "{env}: the issue's default");
    }
}

#[test]
fn supervision_has_defaults_and_the_file_overrides_them() {
    let config = parse(crate::MINIMAL).unwrap();
    let s = &config.bots[0].supervision;
    assert_eq!(s.heartbeat_interval, std::time::Duration::from_secs(1));
    assert_eq!(s.restart.intensity, 5);
    let text = format!(
        r#"{}heartbeat_interval = "250ms"
shutdown_grace = "3s"
[bot.restart]
intensity = 2
period = "30s"
first_backoff = "50ms"
[bot.scaling]
target_queue_per_worker = 4
target_latency = "50ms"
"#,
        crate::MINIMAL.replace(
            "[bot.worker]\ncommand = \"dating-bot\"\n",
            "worker.command = \"dating-bot\"\n"
        )
    );
    let config = parse(&text).unwrap();
    let s = &config.bots[0].supervision;
    assert_eq!(s.heartbeat_interval, std::time::Duration::from_millis(250));
    assert_eq!(s.shutdown_grace, std::time::Duration::from_secs(3));
    assert_eq!((s.restart.intensity, s.restart.period.as_secs()), (2, 30));
    assert_eq!(
        s.restart.first_backoff,
        std::time::Duration::from_millis(50)
    );
    assert_eq!(s.scaling.target_queue_per_worker, 4);
    assert_eq!(s.scaling.tick, std::time::Duration::from_secs(1), "default");
    let e = crate::errors(&format!(
        "{}[bot.restart]\nfirst_backoff = \"2s\"\nmax_backoff = \"1s\"\nintensty = 3\n",
        crate::MINIMAL
    ));
    assert!(
        e.contains("bot[0].restart.max_backoff: max_backoff is shorter than first_backoff"),
        "{e}"
    );
    assert!(
        e.contains("bot[0].restart.intensty: unknown key `intensty` (did you mean `intensity`?)"),
        "{e}"
    );
}
