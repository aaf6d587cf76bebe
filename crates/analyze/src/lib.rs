//! botfleet's judgement on measurements. [`compare`] tells a real change
//! from noise over runs of a benchmark or a command, with the rank
//! statistics of [`stats`] (docs/compare.md). The fleet's analyzer
//! (`botfleet analyze`) and readiness check (`botfleet doctor`) are to
//! join it.

pub mod compare;
pub mod stats;
