//! [`LoadingCache`]: a cache that knows its loader, which makes
//! refresh-ahead possible.

use parking_lot::Mutex;
use std::collections::{HashMap, HashSet};
use std::fmt::Display;
use std::hash::Hash;
use std::pin::Pin;
use std::str::FromStr;
use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{BoxError, Error};
use crate::tiered::TieredCache;

type LoadFuture<V> = Pin<Box<dyn Future<Output = Result<Option<V>, BoxError>> + Send>>;
type Loader<K, V> = Arc<dyn Fn(K) -> LoadFuture<V> + Send + Sync>;

/// A [`TieredCache`] with its loader. Reads in the last part of an
/// entry's TTL (the builder's `refresh_ahead`) return the current value at
/// once and reload it in the background, one reload per key at a time.
/// Everything else of the cache (`set`, `invalidate`, `stats`, ...) is
/// reached through `Deref`.
pub struct LoadingCache<K, V> {
    cache: TieredCache<K, V>,
    loader: Loader<K, V>,
    refreshing: Arc<Mutex<HashSet<K>>>,
}

impl<K, V> Clone for LoadingCache<K, V> {
    fn clone(&self) -> Self {
        LoadingCache {
            cache: self.cache.clone(),
            loader: Arc::clone(&self.loader),
            refreshing: Arc::clone(&self.refreshing),
        }
    }
}

impl<K, V> std::ops::Deref for LoadingCache<K, V> {
    type Target = TieredCache<K, V>;

    fn deref(&self) -> &Self::Target {
        &self.cache
    }
}

impl<K, V> TieredCache<K, V>
where
    K: Hash + Eq + Clone + Display + FromStr + Send + Sync + 'static,
    V: Clone + Serialize + DeserializeOwned + Send + Sync + 'static,
{
    /// This cache with `loader` for every miss and refresh.
    pub fn with_loader<F, Fut, E>(self, loader: F) -> LoadingCache<K, V>
    where
        F: Fn(K) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Option<V>, E>> + Send + 'static,
        E: Into<BoxError> + 'static,
    {
        let loader: Loader<K, V> = Arc::new(move |key| {
            let load = loader(key);
            Box::pin(async move { load.await.map_err(Into::into) })
        });
        LoadingCache {
            cache: self,
            loader,
            refreshing: Arc::new(Mutex::new(HashSet::new())),
        }
    }
}

impl<K, V> LoadingCache<K, V>
where
    K: Hash + Eq + Clone + Display + FromStr + Send + Sync + 'static,
    V: Clone + Serialize + DeserializeOwned + Send + Sync + 'static,
{
    /// The value of `key`, loaded on a miss (see
    /// [`TieredCache::get_or_load`]); refreshed in the background when read
    /// near the end of its TTL.
    pub async fn get(&self, key: &K) -> Result<Option<V>, Error> {
        if let Some((value, due)) = self.cache.lookup_marked(key) {
            if due {
                self.refresh_in_background(key.clone());
            }
            return Ok(value);
        }
        let loader = Arc::clone(&self.loader);
        let owned = key.clone();
        self.cache.get_or_load(key, move || loader(owned)).await
    }

    /// The values of `keys`, in order; the misses are loaded concurrently.
    pub async fn get_many(&self, keys: &[K]) -> Result<Vec<Option<V>>, Error> {
        let loader = Arc::clone(&self.loader);
        self.cache
            .get_many(keys, move |missing| async move {
                let loads = missing.into_iter().map(|key| {
                    let load = loader(key.clone());
                    async move { load.await.map(|value| (key, value)) }
                });
                let mut found = HashMap::new();
                for result in futures_util::future::join_all(loads).await {
                    let (key, value) = result?;
                    if let Some(value) = value {
                        found.insert(key, value);
                    }
                }
                Ok::<_, BoxError>(found)
            })
            .await
    }

    fn refresh_in_background(&self, key: K) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        {
            let mut refreshing = self.refreshing.lock();
            if !refreshing.insert(key.clone()) {
                return;
            }
        }
        let this = self.clone();
        runtime.spawn(async move {
            let loader = Arc::clone(&this.loader);
            let owned = key.clone();
            this.cache.refresh(key.clone(), move || loader(owned)).await;
            this.refreshing.lock().remove(&key);
        });
    }
}
