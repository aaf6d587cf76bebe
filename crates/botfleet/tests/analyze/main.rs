//! `botfleet analyze` against `botfleet demo` with each fault knob: a test
//! binary of its own, so its demos (one burns every CPU on purpose) run
//! while no other test does.

#[cfg(feature = "bench")]
mod analyze;
#[path = "../support/mod.rs"]
mod support;
pub(crate) use support::*;
