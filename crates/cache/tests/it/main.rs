//! Integration tests of `botfleet-cache`.

mod tiered;
