//! Query results through the tiered cache (feature `cache`): cache-aside,
//! keyed by the query's fingerprint and parameters, tagged with the tables
//! the result depends on, and invalidated when a write through the same
//! handle changes one of them — in this process's L1, in Redis and, through
//! the cache's invalidation bus, in every other process.

use parking_lot::Mutex;
use std::sync::Arc;

use botfleet_cache::{TieredCache, TieredCacheBuilder};
use serde::Serialize;
use serde::de::DeserializeOwned;
use sqlx::any::AnyRow;

use crate::fingerprint::{Fingerprint, fnv64};
use crate::{Database, Error, Result, Value};

/// Cached results of queries of one shape family (one cache namespace),
/// decoded into `T`. Cheap to clone.
#[derive(Clone)]
pub struct QueryCache<T> {
    cache: TieredCache<String, T>,
    db: Database,
}

impl<T> std::fmt::Debug for QueryCache<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueryCache").finish_non_exhaustive()
    }
}

impl<T> QueryCache<T>
where
    T: Clone + Serialize + DeserializeOwned + Send + Sync + 'static,
{
    /// A result cache over `builder` (its namespace, TTL, capacity and
    /// Redis), invalidated by writes through `db`.
    pub fn new(db: &Database, builder: TieredCacheBuilder<String, T>) -> QueryCache<T> {
        let cache = builder
            .tags(|key: &String, _: &T| tables_of(key).map(|t| format!("table:{t}")).collect())
            .build();
        let on_write = cache.clone();
        db.on_write(move |table| {
            let cache = on_write.clone();
            async move { cache.invalidate_tag(&format!("table:{table}")).await }
        });
        QueryCache {
            cache,
            db: db.clone(),
        }
    }

    /// The result of `sql` with `params`: from the cache, or by running the
    /// query and turning its rows into a `T` with `decode`. `tables` are the
    /// tables the result depends on (lower case, as in the SQL); a write to
    /// any of them through this handle drops it.
    pub async fn fetch<D>(
        &self,
        sql: &str,
        params: Vec<Value>,
        tables: &[&str],
        decode: D,
    ) -> Result<T>
    where
        D: FnOnce(Vec<AnyRow>) -> Result<T>,
    {
        let key = key(sql, &params, tables);
        // A loader error comes back through the cache boxed; keep ours.
        let failed: Arc<Mutex<Option<Error>>> = Arc::default();
        let stash = failed.clone();
        let db = self.db.clone();
        let loaded = self
            .cache
            .get_or_load(&key, || async move {
                let rows = db.query(sql).bind_all(params).fetch_all().await;
                match rows.and_then(decode) {
                    Ok(value) => Ok(Some(value)),
                    Err(e) => {
                        let message = e.to_string();
                        *stash.lock() = Some(e);
                        Err(message)
                    }
                }
            })
            .await;
        match loaded {
            Ok(Some(value)) => Ok(value),
            Ok(None) => Err(Error::Cache(format!(
                "no cached result for `{}`",
                Fingerprint::of(sql).text
            ))),
            Err(e) => Err(failed
                .lock()
                .take()
                .unwrap_or_else(|| Error::Cache(e.to_string()))),
        }
    }

    /// The underlying cache (statistics, metrics, explicit invalidation).
    pub fn cache(&self) -> &TieredCache<String, T> {
        &self.cache
    }
}

/// `<tables>|<fingerprint id>|<hash of the exact SQL and parameters>`: the
/// tables first, so the tagger can read them back; the fingerprint groups a
/// shape's entries; the hash covers the exact text, so literals written into
/// the SQL (which the fingerprint normalizes away) still tell results apart.
fn key(sql: &str, params: &[Value], tables: &[&str]) -> String {
    let mut tables: Vec<String> = tables.iter().map(|t| t.to_ascii_lowercase()).collect();
    tables.sort();
    tables.dedup();
    let mut exact = serde_json::to_vec(params).unwrap_or_default();
    let params_len = exact.len();
    exact.push(0);
    exact.extend_from_slice(sql.as_bytes());
    format!(
        "{}|{}|{:016x}{:04x}",
        tables.join(","),
        Fingerprint::of(sql).id_hex(),
        fnv64(&exact),
        (params_len ^ sql.len()) & 0xffff
    )
}

fn tables_of(key: &str) -> impl Iterator<Item = &str> {
    key.split('|')
        .next()
        .unwrap_or("")
        .split(',')
        .filter(|t| !t.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_carry_their_tables_and_differ_by_parameters() {
        let a = key(
            "SELECT * FROM p WHERE id = $1",
            &[Value::from(1_i64)],
            &["Profiles", "likes"],
        );
        let b = key(
            "SELECT * FROM p WHERE id = $1",
            &[Value::from(2_i64)],
            &["likes", "profiles"],
        );
        assert!(a.starts_with("likes,profiles|"), "{a}");
        assert_ne!(a, b);
        assert_eq!(tables_of(&a).collect::<Vec<_>>(), ["likes", "profiles"]);
        let c = key("SELECT 1", &[], &[]);
        assert_eq!(tables_of(&c).count(), 0);
        // Literals in the SQL tell results apart, though the shape is one.
        assert_ne!(
            key("SELECT * FROM p WHERE id = 5", &[], &[]),
            key("SELECT * FROM p WHERE id = 6", &[], &[])
        );
    }
}
