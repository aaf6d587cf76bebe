//! The database layer of a bot worker: one [`Database`] handle over
//! PostgreSQL or the embedded SQLite, with
//!
//! - presets per environment (`botfleet_config::DatabaseSettings`), applied
//!   to the pool: size, acquire and connect timeouts, idle timeout, lifetime,
//!   liveness checks only for connections idle a while, statement timeout and
//!   `application_name`;
//! - a connection budget for the whole fleet ([`budget`]), so the pools of
//!   all processes never exceed what PostgreSQL allows;
//! - pool health and per-query timing through the `metrics` facade, and a
//!   slow-query log with plans;
//! - migrations ([`Database::migrate`]), a write batcher ([`batch`]) and,
//!   with the feature `cache`, a query result cache over `botfleet-cache`
//!   (`QueryCache`).
//!
//! ```no_run
//! # async fn f() -> botfleet_db::Result<()> {
//! use botfleet_db::{Database, Row};
//! let db = Database::builder("postgres://bot@127.0.0.1/fleet")
//!     .settings(botfleet_config::Environment::Prod.preset().database)
//!     .pool_size(3)
//!     .application_name("botfleet/dating/1")
//!     .bot("dating")
//!     .connect()
//!     .await?;
//! let row = db.query("SELECT name FROM profiles WHERE user_id = $1").bind(42_i64).fetch_one().await?;
//! let name: String = row.try_get("name").expect("a text column");
//! # Ok(()) }
//! ```

mod database;
mod error;
mod fingerprint;
mod metrics;
mod value;

pub mod advise;
pub mod batch;
pub mod budget;
#[cfg(feature = "cache")]
mod cache;
mod migrate;

#[cfg(feature = "cache")]
pub use cache::QueryCache;
pub use database::{
    Database, DatabaseBuilder, PoolStatus, Query, QueryStats, Transaction, TxQuery,
};
pub use error::{Error, Result};
pub use fingerprint::{Fingerprint, StatementKind};
pub use migrate::Migration;
pub use value::Value;

/// sqlx, for row decoding (`Row::try_get`, `FromRow`) and what the handle
/// does not wrap.
pub use sqlx;
pub use sqlx::Row;
pub use sqlx::any::AnyRow;
