//! Integration tests of the testkit: real servers start, serve, die and come
//! back, and nothing is left behind.

mod cleanup;
mod postgres;
mod redis;
