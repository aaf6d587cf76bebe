//! One module per subcommand. Each takes its typed arguments, writes to
//! stdout/stderr explicitly (so a closed pipe is an error, not a panic) and
//! returns the exit code.

pub(crate) mod analyze;
pub(crate) mod compare;
pub(crate) mod config;
pub(crate) mod control;
pub(crate) mod db;
pub(crate) mod dead_letters;
#[cfg(feature = "bench")]
pub(crate) mod demo;
pub(crate) mod doctor;
pub(crate) mod emulator;
pub(crate) mod live;
pub(crate) mod remote;
pub(crate) mod rules;
pub(crate) mod run;
pub(crate) mod tune;
