//! Integration tests of `botfleet-cache`.

mod redis;
mod tiered;
