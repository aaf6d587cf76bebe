//! Invariant 4 across processes.
