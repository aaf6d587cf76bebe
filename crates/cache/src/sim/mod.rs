//! Offline simulation of L1 policies on access traces: the hit-ratio half of
//! `botfleet bench cache`, and a tool to replay one's own traces.

mod opt;
mod trace;

pub use opt::belady_hits;
pub use trace::{Format, Request, TraceError, parse, read};

use crate::policy::{EvictionPolicy, access};

/// A cache under simulation: ours, a reference, or a peer library.
pub trait Simulated {
    /// One read; `true` on a hit. On a miss the simulated cache inserts the
    /// key, as a read-through cache does.
    fn access(&mut self, request: Request) -> bool;
}

/// An [`EvictionPolicy`] as a simulated cache.
pub struct PolicySim<P> {
    policy: P,
    evicted: Vec<u64>,
}

impl<P: EvictionPolicy> PolicySim<P> {
    /// Wraps `policy`.
    pub fn new(policy: P) -> Self {
        PolicySim {
            policy,
            evicted: Vec::new(),
        }
    }

    /// The policy, for inspection after a run.
    pub fn policy(&self) -> &P {
        &self.policy
    }
}

impl<P: EvictionPolicy> Simulated for PolicySim<P> {
    fn access(&mut self, request: Request) -> bool {
        self.evicted.clear();
        access(
            &mut self.policy,
            request.key,
            request.weight,
            &mut self.evicted,
        )
    }
}

/// Replays `trace` through `cache`; returns the number of hits.
pub fn replay(cache: &mut dyn Simulated, trace: &[Request]) -> u64 {
    trace.iter().filter(|r| cache.access(**r)).count() as u64
}
