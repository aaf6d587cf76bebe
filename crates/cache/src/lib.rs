//! `botfleet-cache`: one cache API over three tiers for bot workers.
//!
//! L1 is in-process memory, bounded by an eviction policy
//! ([`policy::WTinyLfu`], adaptive Window-TinyLFU); L2 is Redis, shared by
//! every process of the fleet; L3 is the caller's loader, usually a database
//! query.
//!
//! This crate must not depend on the runtime or the database layer: the
//! loader is the caller's closure. The eviction policies must not depend on
//! Redis at all: they see key hashes and weights only, so the `sim` feature
//! can replay access traces through exactly the code the cache runs.

mod breaker;
mod bus;
mod codec;
mod error;
mod flight;
mod hot;
pub mod l1;
mod l2;
mod loading;
mod metrics;
pub mod policy;
mod prefetch;
#[cfg(feature = "sim")]
pub mod sim;
mod tiered;

pub use error::{BoxError, Error};
pub use l2::{DEFAULT_PROBE_INTERVAL, DEFAULT_TIMEOUT, Redis, RedisUrlError};
pub use loading::LoadingCache;
pub use tiered::{
    DEFAULT_CAPACITY, DEFAULT_JITTER, DEFAULT_MAX_VALUE_BYTES, DEFAULT_NEGATIVE_TTL, DEFAULT_TTL,
    Stats, TieredCache, TieredCacheBuilder, all_stats, report_all_metrics,
};
