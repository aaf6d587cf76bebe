//! Environment presets: the defaults each `environment` implies.
//!
//! A preset only supplies defaults; every value can be set explicitly in
//! `fleet.toml`. Later sections (database pools, cache, Telegram limits,
//! alerts, scaling) add their own fields here, so one `environment = "prod"`
//! line picks sensible values for the whole fleet. The rationale for every
//! value is in `docs/config.md`.

use std::time::Duration;

use crate::cache::{CacheConfig, CacheSettings};
use crate::database::{self, DatabaseSettings};

const MS: Duration = Duration::from_millis(1);
const S: Duration = Duration::from_secs(1);

/// The preset family of a fleet, from `environment = "..."`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Environment {
    /// A developer's machine: one small worker per bot, embedded SQLite allowed.
    #[default]
    Dev,
    /// Pre-production: production behaviour at a smaller size.
    Staging,
    /// Production.
    Prod,
    /// Production on a dedicated machine, sized for throughput.
    HighPerformance,
}

impl Environment {
    /// Every environment with its `fleet.toml` spelling.
    pub const ALL: [(&'static str, Environment); 4] = [
        ("dev", Environment::Dev),
        ("staging", Environment::Staging),
        ("prod", Environment::Prod),
        ("high-performance", Environment::HighPerformance),
    ];

    /// The spelling used in `fleet.toml`.
    pub fn as_str(self) -> &'static str {
        match self {
            Environment::Dev => "dev",
            Environment::Staging => "staging",
            Environment::Prod => "prod",
            Environment::HighPerformance => "high-performance",
        }
    }

    /// The defaults of this environment.
    pub fn preset(self) -> Preset {
        match self {
            Environment::Dev => Preset {
                min_workers: 1,
                max_workers: 2,
                requires_database_url: false,
                cache: cache_preset(1_000, 60, 10, 0, false),
                database: database::preset(5, 0, 5 * S, Duration::ZERO, 30 * S, 100 * MS, 3),
            },
            Environment::Staging => Preset {
                min_workers: 1,
                max_workers: 4,
                requires_database_url: true,
                cache: cache_preset(10_000, 300, 30, 2_000, true),
                database: database::preset(10, 1, 3 * S, 30 * S, 10 * S, 100 * MS, 5),
            },
            Environment::Prod => Preset {
                min_workers: 2,
                max_workers: 8,
                requires_database_url: true,
                cache: cache_preset(50_000, 300, 30, 2_000, true),
                database: database::preset(10, 1, 2 * S, 60 * S, 5 * S, 250 * MS, 5),
            },
            Environment::HighPerformance => Preset {
                min_workers: 4,
                max_workers: 16,
                requires_database_url: true,
                cache: cache_preset(200_000, 600, 60, 2_000, true),
                database: database::preset(20, 2, S, 60 * S, 2 * S, 50 * MS, 10),
            },
        }
    }
}

impl std::fmt::Display for Environment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Defaults implied by an [`Environment`].
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct Preset {
    /// Default `min_workers` of a bot.
    pub min_workers: u32,
    /// Default `max_workers` of a bot.
    pub max_workers: u32,
    /// Whether `database.url` must be given (only `dev` may fall back to the
    /// embedded SQLite database).
    pub requires_database_url: bool,
    /// `[cache]` defaults.
    pub cache: CacheConfig,
    /// `[database]` defaults (pool, reserve, slow queries, batcher).
    pub database: DatabaseSettings,
}

fn cache_preset(
    capacity: u64,
    ttl_s: u64,
    negative_s: u64,
    lease_ms: u64,
    prefetch: bool,
) -> CacheConfig {
    CacheConfig {
        defaults: CacheSettings {
            capacity,
            ttl: Duration::from_secs(ttl_s),
            negative_ttl: Duration::from_secs(negative_s),
            jitter: 0.1,
            refresh_ahead: 0.2,
        },
        namespaces: Vec::new(),
        max_value_bytes: 1 << 20,
        lease: Duration::from_millis(lease_ms),
        redis_timeout: Duration::from_millis(250),
        redis_probe_interval: Duration::from_secs(1),
        warming: true,
        prefetch,
    }
}
