//! `[cache]`: the tiered cache of every worker.

use std::time::Duration;

use crate::preset::Preset;
use crate::reader::{Ctx, Table};

/// Settings for the caches of one namespace (or the defaults of all).
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct CacheSettings {
    /// L1 capacity in entries, per namespace and process.
    pub capacity: u64,
    /// How long values stay.
    pub ttl: Duration,
    /// How long "not found" is remembered (zero: not at all).
    pub negative_ttl: Duration,
    /// The share of each TTL taken off at random.
    pub jitter: f64,
    /// The share at the end of the TTL in which reads refresh the entry in
    /// the background (zero: off).
    pub refresh_ahead: f64,
}

/// `[cache]`.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct CacheConfig {
    /// Settings of namespaces not named below.
    pub defaults: CacheSettings,
    /// Per-namespace overrides, from `[cache.namespace.<name>]`.
    pub namespaces: Vec<(String, CacheSettings)>,
    /// Largest encoded value stored in Redis.
    pub max_value_bytes: u64,
    /// Cross-process load lease (zero: off).
    pub lease: Duration,
    /// Bound on one Redis call.
    pub redis_timeout: Duration,
    /// Wait before probing an unreachable Redis again.
    pub redis_probe_interval: Duration,
    /// Warm L1 from Redis with the hot set at start.
    pub warming: bool,
    /// Prefetch keys that usually follow the one read.
    pub prefetch: bool,
}

impl CacheConfig {
    /// The settings of `namespace`.
    pub fn settings(&self, namespace: &str) -> &CacheSettings {
        self.namespaces
            .iter()
            .find(|(n, _)| n == namespace)
            .map_or(&self.defaults, |(_, s)| s)
    }
}

const MS: Duration = Duration::from_millis(1);
const DAY: Duration = Duration::from_secs(86_400);

pub(crate) fn cache(cx: &mut Ctx<'_>, table: Option<Table<'_>>, preset: &Preset) -> CacheConfig {
    let defaults = preset.cache.defaults.clone();
    let Some(mut t) = table else {
        return preset.cache.clone();
    };
    let defaults = settings(cx, &mut t, &defaults);
    let mut namespaces = Vec::new();
    for (name, mut nt) in t.named_tables(cx, "namespace") {
        let s = settings(cx, &mut nt, &defaults);
        nt.finish(cx);
        namespaces.push((name, s));
    }
    let p = &preset.cache;
    let config = CacheConfig {
        defaults,
        namespaces,
        max_value_bytes: t
            .integer(cx, "max_value_bytes", 64..=(512 << 20))
            .map_or(p.max_value_bytes, |v| v.value as u64),
        lease: t
            .duration(cx, "lease", Duration::ZERO..=Duration::from_secs(60))
            .map_or(p.lease, |v| v.value),
        redis_timeout: t
            .duration(cx, "redis_timeout", MS..=Duration::from_secs(10))
            .map_or(p.redis_timeout, |v| v.value),
        redis_probe_interval: t
            .duration(
                cx,
                "redis_probe_interval",
                10 * MS..=Duration::from_secs(300),
            )
            .map_or(p.redis_probe_interval, |v| v.value),
        warming: t.boolean(cx, "warming").map_or(p.warming, |v| v.value),
        prefetch: t.boolean(cx, "prefetch").map_or(p.prefetch, |v| v.value),
    };
    t.finish(cx);
    config
}

fn settings(cx: &mut Ctx<'_>, t: &mut Table<'_>, base: &CacheSettings) -> CacheSettings {
    CacheSettings {
        capacity: t
            .integer(cx, "capacity", 1..=100_000_000)
            .map_or(base.capacity, |v| v.value as u64),
        ttl: t
            .duration(cx, "ttl", MS..=DAY)
            .map_or(base.ttl, |v| v.value),
        negative_ttl: t
            .duration(cx, "negative_ttl", Duration::ZERO..=DAY)
            .map_or(base.negative_ttl, |v| v.value),
        jitter: t
            .float(cx, "jitter", 0.0..=0.5)
            .map_or(base.jitter, |v| v.value),
        refresh_ahead: t
            .float(cx, "refresh_ahead", 0.0..=0.9)
            .map_or(base.refresh_ahead, |v| v.value),
    }
}
