//! Migrations: numbered SQL scripts applied once, in order, in one
//! transaction, by whichever worker process starts first (the others wait
//! on a lock, then find nothing to do). Applied scripts are recorded with a
//! checksum in `botfleet_migrations`; a script changed after it was applied
//! is an error, not a silent divergence.

use sqlx::{Executor, Row};

use crate::{Database, Error, Result};

/// One migration. Keep them in a `const` slice next to the code that needs
/// them; never edit one that has shipped, add a new one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Migration {
    /// Its number; applied in increasing order.
    pub version: i64,
    /// A short description, for the record and error messages.
    pub description: &'static str,
    /// One or more SQL statements, separated by `;`.
    pub sql: &'static str,
}

/// A key for `pg_advisory_xact_lock`: "botfleet" in ASCII.
const LOCK_KEY: i64 = 0x626f_7466_6c65_6574;

impl Database {
    /// Applies the migrations not applied yet; returns how many it applied.
    pub async fn migrate(&self, migrations: &[Migration]) -> Result<usize> {
        let mut sorted = migrations.to_vec();
        sorted.sort_by_key(|m| m.version);
        if let Some(w) = sorted.windows(2).find(|w| w[0].version == w[1].version) {
            return Err(Error::Migrate(format!(
                "two migrations have version {} (`{}` and `{}`)",
                w[0].version, w[0].description, w[1].description
            )));
        }
        let postgres = self.backend() == botfleet_config::Backend::Postgres;
        let mut conn = self.acquire().await?;
        let fail = |what: &str, e: sqlx::Error| Error::Migrate(format!("{what}: {e}"));
        conn.execute(if postgres { "BEGIN" } else { "BEGIN IMMEDIATE" })
            .await
            .map_err(|e| fail("cannot start the migration transaction", e))?;
        let result = async {
            if postgres {
                sqlx::query("SELECT pg_advisory_xact_lock($1)")
                    .bind(LOCK_KEY)
                    .execute(&mut *conn)
                    .await
                    .map_err(|e| fail("cannot take the migration lock", e))?;
            }
            conn.execute(
                "CREATE TABLE IF NOT EXISTS botfleet_migrations (version BIGINT PRIMARY KEY, description TEXT NOT NULL, checksum TEXT NOT NULL)",
            )
            .await
            .map_err(|e| fail("cannot create botfleet_migrations", e))?;
            let applied = sqlx::query("SELECT version, checksum FROM botfleet_migrations")
                .fetch_all(&mut *conn)
                .await
                .map_err(|e| fail("cannot read botfleet_migrations", e))?;
            let applied: Vec<(i64, String)> = applied
                .iter()
                .map(|r| (r.try_get(0).unwrap_or(-1), r.try_get(1).unwrap_or_default()))
                .collect();
            let mut count = 0;
            for m in &sorted {
                let checksum = checksum(m.sql);
                match applied.iter().find(|(v, _)| *v == m.version) {
                    Some((_, c)) if *c == checksum => continue,
                    Some(_) => {
                        return Err(Error::Migrate(format!(
                            "migration {} ({}) was changed after it was applied; add a new migration instead",
                            m.version, m.description
                        )));
                    }
                    None => {}
                }
                conn.execute(m.sql).await.map_err(|e| {
                    fail(&format!("migration {} ({})", m.version, m.description), e)
                })?;
                sqlx::query(
                    "INSERT INTO botfleet_migrations (version, description, checksum) VALUES ($1, $2, $3)",
                )
                .bind(m.version)
                .bind(m.description)
                .bind(checksum)
                .execute(&mut *conn)
                .await
                .map_err(|e| fail("cannot record a migration", e))?;
                tracing::info!(version = m.version, description = m.description, "migration applied");
                count += 1;
            }
            Ok(count)
        }
        .await;
        let end = if result.is_ok() { "COMMIT" } else { "ROLLBACK" };
        if let Err(e) = conn.execute(end).await {
            conn.close_on_drop();
            if result.is_ok() {
                return Err(fail("cannot commit the migrations", e));
            }
        }
        result
    }
}

/// Of the exact text: any edit, even of a literal, changes it.
fn checksum(sql: &str) -> String {
    format!("{:016x}", crate::fingerprint::fnv64(sql.as_bytes()))
}
