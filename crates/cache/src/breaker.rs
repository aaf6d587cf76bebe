//! A circuit breaker for the Redis tier (invariant 5: a dead Redis
//! degrades, it does not fail).
//!
//! Closed: every call goes to Redis. After a failure it opens: calls skip
//! Redis at once (no wait on a dead connection) for `probe_interval`. Then one
//! call is let through as a probe; success closes the breaker, failure opens
//! it for another interval.

use parking_lot::Mutex;
use std::time::Duration;

use tokio::time::Instant;

#[derive(Debug)]
enum State {
    Closed,
    Open { until: Instant },
    Probing,
}

/// What a caller may do now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Permit {
    /// Call Redis.
    Call,
    /// Call Redis as the probe after an outage: report the outcome.
    Probe,
    /// Skip Redis.
    Skip,
}

#[derive(Debug)]
pub(crate) struct Breaker {
    state: Mutex<State>,
    probe_interval: Duration,
}

/// A change the caller must act on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Transition {
    None,
    /// Redis just failed after working: the breaker opened.
    Opened,
    /// Redis works again after an outage: caches must drop what they may
    /// have missed.
    Recovered,
}

impl Breaker {
    pub(crate) fn new(probe_interval: Duration) -> Self {
        Breaker {
            state: Mutex::new(State::Closed),
            probe_interval,
        }
    }

    fn state(&self) -> parking_lot::MutexGuard<'_, State> {
        self.state.lock()
    }

    pub(crate) fn permit(&self) -> Permit {
        let mut state = self.state();
        match *state {
            State::Closed => Permit::Call,
            State::Open { until } if Instant::now() >= until => {
                *state = State::Probing;
                Permit::Probe
            }
            State::Open { .. } | State::Probing => Permit::Skip,
        }
    }

    pub(crate) fn success(&self) -> Transition {
        let mut state = self.state();
        match *state {
            State::Closed => Transition::None,
            _ => {
                *state = State::Closed;
                Transition::Recovered
            }
        }
    }

    pub(crate) fn failure(&self) -> Transition {
        let mut state = self.state();
        let was_closed = matches!(*state, State::Closed);
        *state = State::Open {
            until: Instant::now() + self.probe_interval,
        };
        if was_closed {
            Transition::Opened
        } else {
            Transition::None
        }
    }

    pub(crate) fn is_open(&self) -> bool {
        !matches!(*self.state(), State::Closed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn opens_probes_and_recovers() {
        let b = Breaker::new(Duration::from_millis(500));
        assert_eq!(b.permit(), Permit::Call);
        assert_eq!(b.failure(), Transition::Opened);
        assert_eq!(b.permit(), Permit::Skip);
        tokio::time::advance(Duration::from_millis(501)).await;
        assert_eq!(b.permit(), Permit::Probe);
        assert_eq!(b.permit(), Permit::Skip, "one probe at a time");
        assert_eq!(b.failure(), Transition::None);
        assert_eq!(b.permit(), Permit::Skip);
        tokio::time::advance(Duration::from_millis(501)).await;
        assert_eq!(b.permit(), Permit::Probe);
        assert_eq!(b.success(), Transition::Recovered);
        assert_eq!(b.permit(), Permit::Call);
        assert!(!b.is_open());
    }
}
