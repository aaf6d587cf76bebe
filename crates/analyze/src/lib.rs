//! botfleet's judgement on measurements. [`compare`] tells a real change
//! from noise over runs of a benchmark or a command, with the rank
//! statistics of [`stats`] (docs/compare.md). [`fleet`] names a running
//! fleet's bottleneck from its monitor's store (`botfleet analyze`,
//! docs/analyze.md). [`doctor`] is the readiness check's report and
//! rules (`botfleet doctor`).

pub mod compare;
pub mod doctor;
pub mod fleet;
pub mod stats;
