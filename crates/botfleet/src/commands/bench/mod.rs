//! `botfleet bench <area>`: every performance promise as a command that
//! prints a table (progress on stderr) or exactly one JSON document
//! (`--json`). The contract is in docs/benchmarks.md.

pub(crate) mod cache;
pub(crate) mod db;
mod machine;
mod peers;
mod stats;
pub(crate) mod telegram;

pub(crate) use machine::Machine;
