//! Polling with a deadline. The testkit is synchronous (it drives external
//! processes for tests of any kind), so it waits with real time and
//! `thread::sleep`; async crates must not, hence the scoped exceptions.

use std::time::Duration;

/// Calls `probe` every `interval` until it returns `Some`, or until `timeout`
/// has passed (then `None`). `probe` runs at least once.
#[expect(
    clippy::disallowed_methods,
    clippy::disallowed_types,
    reason = "sync test helper waiting on an external process"
)]
pub(crate) fn poll<T>(
    timeout: Duration,
    interval: Duration,
    mut probe: impl FnMut() -> Option<T>,
) -> Option<T> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if let Some(value) = probe() {
            return Some(value);
        }
        let now = std::time::Instant::now();
        if now >= deadline {
            return None;
        }
        sleep(interval.min(deadline - now));
    }
}

pub(crate) fn sleep(duration: Duration) {
    #[expect(
        clippy::disallowed_methods,
        reason = "sync test helper waiting on an external process"
    )]
    std::thread::sleep(duration);
}
