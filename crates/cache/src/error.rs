//! Errors of the tiered cache.

use std::sync::Arc;

/// Any error a loader returns.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Why a cache call failed. Cloneable: one failed load is handed to every
/// caller that waited for it.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The loader failed. Nothing was cached; the next call loads again.
    #[error("loading {namespace}:{key} failed: {source}")]
    Load {
        /// The cache's namespace.
        namespace: String,
        /// The key, as it appears in Redis.
        key: String,
        /// The loader's error.
        #[source]
        source: Arc<BoxError>,
    },
    /// A value's encoding is larger than the configured maximum.
    #[error(
        "{namespace}:{key}: value of {size} bytes is larger than the maximum of {max} bytes (raise `max_value_bytes` or cache less)"
    )]
    TooLarge {
        /// The cache's namespace.
        namespace: String,
        /// The key.
        key: String,
        /// The encoded size.
        size: usize,
        /// The configured maximum.
        max: usize,
    },
    /// A required write ([`TieredCache::set_required`](crate::TieredCache::set_required))
    /// did not reach Redis: it is down or its breaker is open.
    #[error("{namespace}:{key}: Redis is unavailable; the required write was not made")]
    Unavailable {
        /// The cache's namespace.
        namespace: String,
        /// The key.
        key: String,
    },
}

impl Error {
    /// Whether the error says a dependency is unavailable (Redis), rather
    /// than that the call was wrong: worth retrying later.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Error::Unavailable { .. })
    }
}
