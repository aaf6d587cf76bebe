//! botfleet-db against real servers: SQLite files and PostgreSQL from
//! botfleet-testkit.

mod batch;
mod budget;
mod handle;
mod support;
