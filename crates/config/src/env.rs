//! Where `${VAR}` references get their values.

use std::collections::HashMap;

/// A source of environment variables for `${VAR}` interpolation.
///
/// The process environment in production ([`ProcessEnv`]); a map in tests, so
/// no test has to mutate the environment of a multi-threaded process.
pub trait Env {
    /// The value of `name`, or `None` when it is not set (or not valid UTF-8).
    fn var(&self, name: &str) -> Option<String>;
}

/// The environment of the current process.
#[derive(Clone, Copy, Debug, Default)]
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

impl<S: std::hash::BuildHasher> Env for HashMap<String, String, S> {
    fn var(&self, name: &str) -> Option<String> {
        self.get(name).cloned()
    }
}

impl<E: Env + ?Sized> Env for &E {
    fn var(&self, name: &str) -> Option<String> {
        (**self).var(name)
    }
}
