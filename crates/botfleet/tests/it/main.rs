//! Integration tests of the `botfleet` binary: the real executable, run as a
//! user would run it.

#[cfg(feature = "bench")]
mod bench;
#[cfg(feature = "bench")]
mod bots;
mod compare;
mod config;
mod dashboard;
mod dead_letters;
mod deploy;
mod doctor;
mod emulator;
mod rules;
mod run;
mod tune;

#[path = "../support/mod.rs"]
mod support;
pub(crate) use support::*;
