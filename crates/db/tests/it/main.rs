//! botfleet-db against real servers: SQLite files and PostgreSQL from
//! botfleet-testkit.

mod advise;
mod batch;
mod budget;
#[cfg(feature = "cache")]
mod cache;
mod handle;
mod support;
